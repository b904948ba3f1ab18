"""Static HTML display: thumbnails, players, grids, tables and progress bars."""

from __future__ import annotations

import base64
import io
import re
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from deapi_ds._exceptions import InvalidParameterError
from deapi_ds.display import (
    MediaFrameMixin,
    audio_html,
    format_label,
    frame_grid_html,
    frame_html,
    guess_mime,
    image_grid_html,
    mimebundle,
    progress,
    thumbnail_data_uri,
    video_html,
)

HOSTILE = "<script>alert(1)</script>"
RNG = np.random.default_rng(0)


class Parsed(HTMLParser):
    """Collects start tags (with attributes) and text, and fails on malformed nesting."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)

    def all(self, tag: str) -> list[dict[str, str | None]]:
        return [attrs for t, attrs in self.tags if t == tag]

    @property
    def joined(self) -> str:
        return "".join(self.text)


def noise_png(w: int, h: int, mode: str = "RGB") -> bytes:
    channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    arr = RNG.integers(0, 256, (h, w, channels), dtype=np.uint8)
    im = Image.fromarray(arr[:, :, 0] if channels == 1 else arr, mode)
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


def decode_uri(uri: str) -> tuple[str, Image.Image, int]:
    head, b64 = uri.split(",", 1)
    data = base64.b64decode(b64)
    return head, Image.open(io.BytesIO(data)), len(data)


def assert_static(html: str) -> Parsed:
    parsed = Parsed(html)
    tags = {t for t, _ in parsed.tags}
    assert "script" not in tags
    assert "<script" not in html.lower()
    for _, attrs in parsed.tags:
        assert not any(name.startswith("on") for name in attrs), attrs  # no event handlers
    return parsed


# --------------------------------------------------------------------------- thumbnails


@pytest.mark.parametrize("size", [(1024, 768), (300, 2000), (160, 160), (40, 20)])
def test_thumbnail_is_small_and_fits(size):
    uri = thumbnail_data_uri(noise_png(*size))
    head, im, nbytes = decode_uri(uri)
    assert head == "data:image/jpeg;base64"
    assert max(im.size) <= 160
    assert max(im.size) == min(160, max(size))
    assert nbytes <= 15_000


def test_thumbnail_keeps_alpha_and_bounds_png():
    head, im, nbytes = decode_uri(thumbnail_data_uri(noise_png(600, 400, "RGBA")))
    assert head == "data:image/png;base64"
    assert im.mode in ("RGBA", "P")
    assert "A" in im.convert("RGBA").getbands()
    assert nbytes <= 15_000


def test_thumbnail_jpeg_of_transparent_image_is_composited_on_white():
    im = Image.new("RGBA", (200, 200), (255, 0, 0, 0))  # fully transparent red
    head, thumb, _ = decode_uri(thumbnail_data_uri(im, fmt="JPEG"))
    assert head == "data:image/jpeg;base64"
    r, g, b = thumb.convert("RGB").getpixel((10, 10))
    assert min(r, g, b) > 240  # white, not black or red


def test_thumbnail_opaque_rgba_becomes_jpeg_and_input_is_not_modified():
    im = Image.new("RGBA", (500, 300), (0, 128, 0, 255))
    uri = thumbnail_data_uri(im, max_side=64)
    assert uri.startswith("data:image/jpeg")
    assert im.size == (500, 300) and im.mode == "RGBA"
    small = Image.new("RGB", (50, 50))
    thumbnail_data_uri(small)
    assert small.size == (50, 50)


@pytest.mark.parametrize(
    "image",
    [
        Image.new("I;16", (300, 100)),
        Image.new("P", (300, 100)),
        Image.new("1", (300, 100)),
        Image.new("CMYK", (300, 100)),
        Image.new("LA", (300, 100), (10, 100)),
        np.zeros((50, 80, 3), dtype=np.float32),
        np.full((50, 80), 200, dtype=np.uint8),
    ],
    ids=["I;16", "P", "1", "CMYK", "LA", "float-array", "gray-array"],
)
def test_thumbnail_handles_modes_and_arrays(image):
    _, im, _ = decode_uri(thumbnail_data_uri(image))
    assert max(im.size) <= 160


def test_thumbnail_respects_exif_orientation():
    im = Image.new("RGB", (400, 200), "blue")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° on display
    buf = io.BytesIO()
    im.save(buf, "JPEG", exif=exif)
    _, thumb, _ = decode_uri(thumbnail_data_uri(buf.getvalue()))
    assert thumb.size == (80, 160)


def test_thumbnail_errors_are_clear():
    with pytest.raises(InvalidParameterError, match="not an image"):
        thumbnail_data_uri(b"hello world")
    with pytest.raises(InvalidParameterError, match="empty"):
        thumbnail_data_uri(b"")
    with pytest.raises(InvalidParameterError, match="max_side"):
        thumbnail_data_uri(Image.new("RGB", (8, 8)), max_side=0)
    with pytest.raises(InvalidParameterError, match="fmt"):
        thumbnail_data_uri(Image.new("RGB", (8, 8)), fmt="BMP")


# --------------------------------------------------------------------------- audio / video


def wav_bytes(seconds: float = 0.2) -> bytes:
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, np.zeros(int(16000 * seconds), dtype=np.float32), 16000, format="WAV")
    return buf.getvalue()


@pytest.mark.parametrize(
    ("data", "mime"),
    [
        (b"RIFF\x00\x00\x00\x00WAVEfmt ", "audio/wav"),
        (b"ID3\x04\x00\x00", "audio/mpeg"),
        (b"\xff\xfb\x90\x00", "audio/mpeg"),
        (b"\xff\xf1\x50\x80", "audio/aac"),
        (b"fLaC\x00\x00", "audio/flac"),
        (b"OggS\x00\x02", "audio/ogg"),
        (b"\x00\x00\x00\x20ftypM4A ", "audio/mp4"),
        (b"\x1a\x45\xdf\xa3", "audio/webm"),
    ],
)
def test_guess_mime_audio(data, mime):
    assert guess_mime(data, kind="audio") == mime


def test_audio_html_embeds_and_clips():
    data = wav_bytes()
    html = audio_html(data, start=1.5, end=3.25)
    parsed = assert_static(html)
    (audio,) = parsed.all("audio")
    assert "controls" in audio
    src = audio["src"]
    assert src.startswith("data:audio/wav;base64,")
    assert src.endswith("#t=1.5,3.25")
    assert base64.b64decode(src.split(",", 1)[1].split("#")[0]) == data
    assert audio_html(data, start=2).endswith('#t=2"></audio>')
    assert '#t=0,4"' in audio_html(data, end=4)
    assert "#t=" not in audio_html(data, start=float("nan"))


def test_audio_html_too_large_is_a_note_not_data():
    data = wav_bytes(1.0)
    html = audio_html(data, max_bytes=1000)
    assert "data:" not in html and "<audio" not in html
    assert "not embedded" in html and "max_bytes=1,000" in html


def test_audio_html_missing_and_bad_inputs():
    assert "no audio" in audio_html(None)
    assert "no audio" in audio_html(b"")
    with pytest.raises(InvalidParameterError, match="end must be >= start"):
        audio_html(b"ID3", start=3, end=1)
    with pytest.raises(InvalidParameterError, match="start"):
        audio_html(b"ID3", start=-1)
    with pytest.raises(InvalidParameterError, match="bytes"):
        audio_html("clip.mp3")


def test_video_html_embeds_small_and_links_large(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    small = b"\x00\x00\x00\x18ftypisom" + bytes(500)
    parsed = assert_static(video_html(small))
    (video,) = parsed.all("video")
    assert video["src"].startswith("data:video/mp4;base64,") and "controls" in video

    big = b"\x00\x00\x00\x18ftypisom" + bytes(20_000)
    (tmp_path / "out").mkdir()
    path = tmp_path / "out" / "my clip.mp4"
    path.write_bytes(big)
    html = video_html(big, path=path, max_bytes=10_000)
    parsed = assert_static(html)
    assert not parsed.all("video")
    (link,) = parsed.all("a")
    assert link["href"] == "out/my%20clip.mp4"
    assert "my clip.mp4" in parsed.joined and "20.0 KB" in parsed.joined

    # path only: read and embedded when small, linked when large
    assert "<video" in video_html(path=path, max_bytes=50_000)
    assert "<video" not in video_html(path=path, max_bytes=1_000)
    note = video_html(big, max_bytes=1_000)
    assert "not embedded" in note and "data:" not in note
    with pytest.raises(InvalidParameterError, match="needs data"):
        video_html()


def test_video_player_keeps_its_size_in_tables_and_letterboxes_portrait():
    clip = b"\x00\x00\x00\x18ftypisom" + bytes(500)
    (video,) = assert_static(video_html(clip)).all("video")
    # no percentage width: in an auto-sized table cell that shrinks the player to a sliver
    assert "max-width:100%" not in video["style"]
    assert "width:320px" in video["style"] and "max-height:480px" in video["style"]
    (video,) = assert_static(video_html(clip, width=200, height=120)).all("video")
    assert "width:200px" in video["style"] and "max-height:120px" in video["style"]
    table = frame_html(pd.DataFrame({"video": [clip]}))
    (video,) = assert_static(table).all("video")
    assert "width:240px" in video["style"] and "max-height:180px" in video["style"]


def test_frame_html_dims_missing_values():
    html = frame_html(pd.DataFrame({"status": ["ok"], "error": pd.array([None], dtype="string")}))
    cells = re.findall(r"<td style=\"([^\"]*)\"[^>]*>([^<]*)</td>", html)
    assert cells[0] == (cells[0][0], "ok") and "color:#aaa" not in cells[0][0]
    assert cells[1][1] == "&lt;NA&gt;" and "color:#aaa" in cells[1][0]


# --------------------------------------------------------------------------- image grids


def test_image_grid_html_tiles_captions_placeholders_partial_row():
    items = [
        {"image": noise_png(512, 256), "caption": HOSTILE + " seed=1", "error": None},
        {"image": Image.new("RGB", (100, 900), "red"), "caption": "tall"},
        {"image": None, "caption": "failed one", "error": "500: <b>boom</b>"},
        {"image": b"not an image", "caption": "broken bytes"},
        {"image": noise_png(64, 64, "RGBA"), "caption": "small\nsecond line"},
        {"image": noise_png(2000, 300), "caption": "wide"},
    ]
    html = image_grid_html(items, col_wrap=4, thumb=160)
    parsed = assert_static(html)
    assert len(parsed.all("figure")) == 6  # 4 + a partial row of 2
    assert "repeat(4,160px)" in html
    imgs = parsed.all("img")
    assert len(imgs) == 4  # two failures drawn as placeholder tiles
    for img in imgs:
        assert img["src"].startswith("data:image/")
        assert len(img["src"]) < 15_000 * 4 / 3 + 100
    assert HOSTILE not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<b>boom</b>" not in html and "&lt;b&gt;boom&lt;/b&gt;" in html
    assert parsed.joined.count("⚠ failed") == 2
    assert "not an image" in parsed.joined
    assert "small<br>second line" in html
    assert len(html) < 6 * 21_000


def test_image_grid_html_bounds_output_and_validates():
    items = [{"image": Image.new("RGB", (32, 32)), "caption": str(i)} for i in range(12)]
    html = image_grid_html(items, max_items=5, col_wrap=3)
    assert len(Parsed(html).all("img")) == 5
    assert "5 of 12 images shown" in html
    assert "repeat(2,160px)" in image_grid_html(items[:2], col_wrap=4)
    with pytest.raises(InvalidParameterError, match="col_wrap"):
        image_grid_html(items, col_wrap=0)
    with pytest.raises(InvalidParameterError, match="Item 0"):
        image_grid_html(["not a mapping"])


def test_frame_grid_html_and_labels():
    df = pd.DataFrame(
        {
            "prompt": ["a cat", HOSTILE],
            "seed": [1, 2],
            "image": [Image.new("RGB", (64, 64)), None],
            "error": [None, "content policy"],
        }
    )
    html = frame_grid_html(df, label="{prompt} s={seed}")
    parsed = assert_static(html)
    assert "a cat s=1" in parsed.joined
    assert "content policy" in parsed.joined
    assert HOSTILE not in html
    assert format_label({"prompt": "x"}, "prompt") == "x"
    assert format_label({"prompt": "x", "seed": 3}, lambda r: f"{r['seed']}!") == "3!"
    with pytest.raises(InvalidParameterError, match="'model', which is not a column"):
        format_label({"prompt": "x"}, "{model}")
    with pytest.raises(InvalidParameterError, match="neither a column"):
        format_label({"prompt": "x"}, "nope")


# --------------------------------------------------------------------------- tables


def test_frame_html_media_escaping_and_footer():
    png = noise_png(300, 200)
    df = pd.DataFrame(
        {
            "text": [HOSTILE, "x" * 500, "ok"],
            "image": [png, None, Image.new("RGB", (10, 10))],
            "audio": [wav_bytes(), wav_bytes(), None],
            "start": [1.0, 2.0, 0.0],
            "end": [2.5, 3.0, 1.0],
            "raw": [png, b"\x00\x01", None],
            "embedding": [np.arange(384, dtype=np.float32)] * 3,
        },
        index=pd.Index(["r1", "r2", "r3"], name="id"),
    )
    html = frame_html(df, clip=("start", "end"))
    parsed = assert_static(html)
    assert len(parsed.all("tr")) == 4  # header + 3 rows
    assert len(parsed.all("img")) == 2
    audios = parsed.all("audio")
    assert len(audios) == 2 and audios[0]["src"].endswith("#t=1,2.5")
    assert HOSTILE not in html and "&lt;script&gt;" in html
    assert "x" * 500 not in parsed.joined and "x" * 100 + "…" in parsed.joined
    assert any(attrs.get("title") == "x" * 500 for _, attrs in parsed.tags)
    assert "\\x89PNG" not in html and "<PNG · " in parsed.joined
    assert "array(384,) float32 [0, 1, 2, …]" in parsed.joined
    assert "3 rows × 7 columns" in parsed.joined
    assert "id" in parsed.joined and "r2" in parsed.joined


def test_frame_html_limits_rows_and_media_budget():
    df = pd.DataFrame({"n": range(100), "audio": [wav_bytes(0.1)] * 100})
    html = frame_html(df, max_rows=10, max_media_bytes=3 * len(wav_bytes(0.1)))
    parsed = assert_static(html)
    assert len(parsed.all("tr")) == 11
    assert len(parsed.all("audio")) == 3
    assert "media budget" in parsed.joined
    assert "10 of 100 rows shown × 2 columns" in parsed.joined


def test_frame_html_validation():
    df = pd.DataFrame({"a": [1]})
    with pytest.raises(InvalidParameterError, match="Media column 'image' not found"):
        frame_html(df, media={"image": "image"})
    with pytest.raises(InvalidParameterError, match="kind must be one of"):
        frame_html(df, media={"a": "gif"})
    with pytest.raises(InvalidParameterError, match="clip"):
        frame_html(df, clip=("start", "end"))


def test_mimebundle_and_mixin_never_dump_bytes():
    png = noise_png(100, 100)
    df = pd.DataFrame({"prompt": ["a"], "image": [png]})
    bundle = mimebundle(df, title="1 image")
    assert set(bundle) == {"text/plain", "text/html"}
    assert bundle["text/plain"].startswith("1 image\n")
    assert "PNG · " in bundle["text/plain"] and "\\x89" not in bundle["text/plain"]
    assert "<img" in bundle["text/html"]
    assert set(mimebundle(df, include=["text/plain"])) == {"text/plain"}

    class Result(MediaFrameMixin):
        _display_media = {"image": "image"}

        def __init__(self, frame):
            self.frame = frame

        def _display_frame(self):
            return self.frame

        def _display_title(self):
            return "Images"

    result = Result(df)
    bundle = result._repr_mimebundle_()
    assert bundle["text/plain"].startswith("Images\n")
    assert "<img" in bundle["text/html"] and "<img" in result._repr_html_()
    assert set(result._repr_mimebundle_(exclude=["text/html"])) == {"text/plain"}


# --------------------------------------------------------------------------- progress


def last_line(text: str) -> str:
    return re.split(r"[\r\n]+", text.strip())[-1]


def test_progress_text_mode_cached_waiting_and_failed():
    out = io.StringIO()
    with progress(10, desc="embed", disable=False, file=out) as bar:
        bar.set_cached(4)
        assert "4 cached" in last_line(out.getvalue())
        assert bar.n == 4 and bar.cached == 4
        bar.waiting(12.2)
        assert "waiting on rate limit ~13s" in last_line(out.getvalue())
        bar.waiting(None)
        assert "waiting" not in last_line(out.getvalue())
        bar.waiting(600)
        assert "~10min" in last_line(out.getvalue())
        bar.update(6, failed=1)
        assert bar.n == 10 and bar.failed == 1
    final = last_line(out.getvalue())
    assert "10/10" in final and "embed" in final and "1 failed" in final
    assert "waiting" not in final  # cleared when closing
    with pytest.raises(InvalidParameterError):
        bar.set_cached(-1)


def test_progress_disabled_and_config(monkeypatch):
    out = io.StringIO()
    with progress(5, desc="quiet", disable=True, file=out) as bar:
        bar.set_cached(5)
        bar.waiting(3)
    assert out.getvalue() == ""
    monkeypatch.setenv("DEAPI_DS_PROGRESS", "0")  # disable=None follows the configuration
    with progress(5, desc="quiet", file=out) as bar:
        bar.update(5)
    assert out.getvalue() == ""
    monkeypatch.setenv("DEAPI_DS_PROGRESS", "1")
    with progress(5, desc="loud", file=out) as bar:
        bar.update(5)
    assert "loud" in out.getvalue()


def test_progress_falls_back_to_text_without_widgets(monkeypatch, capsys):
    import tqdm.auto

    def no_widgets(*args, **kwargs):
        raise ImportError("IProgress not found. Please update jupyter and ipywidgets.")

    monkeypatch.setattr(tqdm.auto, "tqdm", no_widgets)
    with progress(3, desc="fallback", disable=False) as bar:
        bar.update(3)
    assert "fallback" in capsys.readouterr().err
    bar.total = 7  # settable after the fact
    assert bar.total == 7
