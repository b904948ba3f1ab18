"""Rich display: inline thumbnails, audio/video players, media tables and progress bars.

Everything here renders as **static HTML** (inline styles, embedded ``data:`` URIs, no
JavaScript), so results survive export to HTML, GitHub and VS Code, and every rich output
comes with a ``text/plain`` alternative. Thumbnails are small (a 160 px thumbnail stays under
about 15 KB), so notebooks stay small too. IPython, ipywidgets and tqdm's notebook bar are
imported lazily.

The building blocks, from smallest to largest:

>>> from deapi_ds.display import thumbnail_data_uri, audio_html, image_grid_html
>>> from PIL import Image
>>> thumbnail_data_uri(Image.new("RGB", (1024, 768), "teal")).startswith("data:image/jpeg")
True
>>> "<audio controls" in audio_html(b"RIFF\\x24\\x00\\x00\\x00WAVEfmt ", start=1.5, end=3)
True
>>> html = image_grid_html([{"image": Image.new("RGB", (64, 64)), "caption": "a <b>"}])
>>> "a &lt;b&gt;" in html
True

Result objects get ``_repr_mimebundle_`` from :class:`MediaFrameMixin` (or call
:func:`mimebundle` directly); long-running tasks report through :func:`progress`.
"""

from __future__ import annotations

import base64
import html
import io
import math
import os
import string
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote

import numpy as np
import pandas as pd

from deapi_ds._common import is_missing as _is_missing
from deapi_ds._exceptions import InvalidParameterError

if TYPE_CHECKING:
    from PIL import Image as PILImage

__all__ = [
    "MediaFrameMixin",
    "ProgressBar",
    "audio_html",
    "format_label",
    "frame_grid_html",
    "frame_html",
    "grid_items",
    "guess_mime",
    "image_grid_html",
    "mimebundle",
    "progress",
    "thumbnail_data_uri",
    "video_html",
]

#: Byte budget of one encoded thumbnail at 160 px; scaled with the thumbnail's area.
_THUMB_BUDGET_160 = 15_000
_MEDIA_KINDS = ("image", "audio", "video")
_FONT = "font-family:system-ui,-apple-system,'Segoe UI',sans-serif;font-size:12px"
_NOTE_STYLE = "color:#777;font-style:italic"


# --------------------------------------------------------------------------- small helpers


def _esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def _truncate(text: str, max_chars: int) -> str:
    if max_chars > 0 and len(text) > max_chars:
        return text[: max(1, max_chars - 1)].rstrip() + "…"
    return text


def _human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("bytes", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{n:,} bytes" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")  # pragma: no cover


def _as_bytes(data: object, what: str) -> bytes:
    if isinstance(data, bytes):
        return data
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data)
    raise InvalidParameterError(
        f"{what} must be bytes (the encoded file). Got {type(data).__name__}."
    )


def guess_mime(data: bytes, kind: str = "audio") -> str:
    """Guess a MIME type from the first bytes of an encoded file.

    ``kind`` ("audio", "video" or "image") decides between e.g. ``audio/mp4`` and
    ``video/mp4`` for containers that can hold either.

    >>> guess_mime(b"fLaC\\x00\\x00\\x00\\x22")
    'audio/flac'
    >>> guess_mime(b"\\x00\\x00\\x00\\x18ftypisom", kind="video")
    'video/mp4'
    """
    head = bytes(data[:64])
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "audio/wav"
    if head.startswith(b"fLaC"):
        return "audio/flac"
    if head.startswith(b"OggS"):
        return "audio/ogg"
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return "audio/aiff"
    if head.startswith(b"ID3"):
        return "audio/mpeg"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand == b"qt  ":
            return "video/quicktime"
        if kind == "audio" or brand in (b"M4A ", b"M4B "):
            return "audio/mp4"
        return "video/mp4"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "audio/webm" if kind == "audio" else "video/webm"
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:
        # MPEG audio frame sync; layer bits 00 mean ADTS AAC.
        return "audio/aac" if head[1] & 0x06 == 0 else "audio/mpeg"
    return {"audio": "audio/mpeg", "video": "video/mp4"}.get(kind, "application/octet-stream")


def _describe_bytes(data: bytes) -> str:
    """A short text stand-in for an encoded file, e.g. ``<PNG · 12.3 KB>``."""
    mime = guess_mime(data, kind="other")
    label = {
        "application/octet-stream": "bytes",
        "audio/mpeg": "MP3",
        "audio/wav": "WAV",
        "audio/flac": "FLAC",
        "audio/ogg": "Ogg",
        "audio/aac": "AAC",
        "audio/aiff": "AIFF",
    }.get(mime, mime.split("/")[-1].upper())
    return f"<{label} · {_human_bytes(len(data))}>"


# --------------------------------------------------------------------------- thumbnails


def _open_image(image: Any) -> PILImage.Image:
    """Bytes, a path, a numpy array or a PIL image → a PIL image (not modified later)."""
    from PIL import Image, UnidentifiedImageError  # lazy

    if isinstance(image, Image.Image):
        return image
    if isinstance(image, (bytes, bytearray, memoryview)):
        if len(image) == 0:
            raise InvalidParameterError("The image is empty (0 bytes).")
        try:
            return Image.open(io.BytesIO(bytes(image)))
        except UnidentifiedImageError as exc:
            raise InvalidParameterError(
                f"These {len(image):,} bytes are not an image Pillow can read "
                f"(they start with {bytes(image[:8])!r})."
            ) from exc
        except Image.DecompressionBombError as exc:
            raise InvalidParameterError(f"The image is too large to open safely: {exc}") from exc
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        if not path.is_file():
            raise InvalidParameterError(f"Image file not found: {str(path)!r}.")
        with Image.open(path) as im:
            im.load()
            return im
    if isinstance(image, np.ndarray):
        arr = image
        if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (1, 3, 4)):
            raise InvalidParameterError(
                f"An image array must have shape (height, width) or (height, width, 1|3|4). "
                f"Got {arr.shape}."
            )
        if arr.ndim == 3 and arr.shape[2] == 1:
            arr = arr[:, :, 0]
        if arr.dtype.kind == "f":
            arr = (np.clip(np.nan_to_num(arr), 0.0, 1.0) * 255).round().astype(np.uint8)
        elif arr.dtype.kind == "b":
            arr = arr.astype(np.uint8) * 255
        elif arr.dtype != np.uint8:
            arr = np.clip(arr, 0, 255).astype(np.uint8)
        return Image.fromarray(np.ascontiguousarray(arr))
    raise InvalidParameterError(
        "An image must be bytes (PNG/JPEG/WebP...), a file path, a PIL image or a numpy array. "
        f"Got {type(image).__name__}."
    )


def _normalize_mode(im: PILImage.Image) -> PILImage.Image:
    """Convert any Pillow mode to L, LA, RGB or RGBA, dropping an alpha that is fully opaque."""
    from PIL import Image  # lazy

    mode = im.mode
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    elif mode in ("PA", "RGBa", "RGBX"):
        im = im.convert("RGBA" if mode != "RGBX" else "RGB")
    elif mode == "La":
        im = im.convert("LA")
    elif mode == "1":
        im = im.convert("L")
    elif mode in ("I", "F") or mode.startswith("I;"):
        arr = np.asarray(im, dtype=np.float64)
        finite = arr[np.isfinite(arr)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        scaled = (np.nan_to_num(arr, nan=lo) - lo) / (hi - lo if hi > lo else 1.0)
        im = Image.fromarray((np.clip(scaled, 0, 1) * 255).round().astype(np.uint8), "L")
    elif mode not in ("L", "LA", "RGB", "RGBA"):
        im = im.convert("RGB")
    if im.mode in ("RGBA", "LA"):
        lo, _hi = im.getchannel("A").getextrema()
        if lo == 255:
            im = im.convert("RGB" if im.mode == "RGBA" else "L")
    return im


def _flatten_alpha(im: PILImage.Image, background: str = "white") -> PILImage.Image:
    """Composite an RGBA/LA image over a background (``convert("RGB")`` would show black)."""
    from PIL import Image  # lazy

    if im.mode not in ("RGBA", "LA"):
        return im
    rgba = im.convert("RGBA")
    base = Image.new("RGBA", rgba.size, background)
    return Image.alpha_composite(base, rgba).convert("RGB")


def _thumbnail(image: Any, max_side: int) -> PILImage.Image:
    from PIL import Image, ImageOps  # lazy

    im = _open_image(image)
    if getattr(im, "format", None) == "JPEG" and hasattr(im, "draft"):
        try:  # decode big JPEGs at a reduced scale: much faster, same result after resizing
            im.draft("RGB", (max_side, max_side))
        except (OSError, ValueError):  # pragma: no cover - draft is best effort
            pass
    try:
        im = ImageOps.exif_transpose(im) or im
    except (OSError, ValueError, SyntaxError):  # broken EXIF: show the image as stored
        pass
    im = _normalize_mode(im)
    w, h = im.size
    scale = min(1.0, max_side / max(w, h, 1))
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    if size != im.size:
        im = im.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
    elif im is image:
        im = im.copy()
    return im


def _encode(im: PILImage.Image, fmt: str, quality: int = 85) -> bytes:
    buf = io.BytesIO()
    if fmt == "JPEG":
        im.save(buf, "JPEG", quality=quality, optimize=True)
    elif fmt == "WEBP":
        im.save(buf, "WEBP", quality=quality)
    else:
        im.save(buf, "PNG", optimize=True)
    return buf.getvalue()


def _encode_bounded(im: PILImage.Image, fmt: str, budget: int) -> tuple[bytes, str]:
    """Encode within ``budget`` bytes: lower the quality, quantize PNGs, then shrink."""
    from PIL import Image  # lazy

    while True:
        if fmt == "PNG":
            data = _encode(im, "PNG")
            if len(data) <= budget:
                return data, "PNG"
            quantized = im.quantize(256, method=Image.Quantize.FASTOCTREE)
            data = _encode(quantized, "PNG")
            if len(data) <= budget:
                return data, "PNG"
            if im.mode in ("RGBA", "LA"):
                # Keep the transparency as long as possible, then fall back to JPEG.
                small = im.resize(
                    (max(1, im.width * 3 // 4), max(1, im.height * 3 // 4)),
                    Image.Resampling.LANCZOS,
                )
                if min(small.size) >= 48:
                    im = small
                    continue
            im, fmt = _flatten_alpha(im), "JPEG"
        for quality in (85, 75, 60, 45, 30):
            data = _encode(im, fmt, quality)
            if len(data) <= budget:
                return data, fmt
        if max(im.size) <= 16:
            return data, fmt
        im = im.resize(
            (max(1, im.width * 3 // 4), max(1, im.height * 3 // 4)), Image.Resampling.LANCZOS
        )


def thumbnail_data_uri(
    image: bytes | PILImage.Image | np.ndarray | str | os.PathLike[str],
    *,
    max_side: int = 160,
    fmt: str | None = None,
) -> str:
    """A small thumbnail of ``image`` as a ``data:`` URI for an ``<img src=...>``.

    ``image`` is encoded bytes (PNG, JPEG, WebP, ...), a PIL image, a uint8/float numpy array
    or a file path; it is never modified. The thumbnail fits in ``max_side`` pixels, keeps the
    aspect ratio and EXIF orientation, and is encoded as JPEG, or as PNG when the image has
    transparency (``fmt="PNG"``, ``"JPEG"`` or ``"WEBP"`` asks for a format; a JPEG of a
    transparent image is composited on white). The encoded size stays under about 15 KB at
    160 px, scaled with the area for other sizes: noisy images get a lower JPEG quality, and a
    PNG over that budget is quantized to 256 colours, then sent as JPEG if still too big (the
    URI's MIME type always says which). A grid of 100 thumbnails thus adds at most ~2 MB.

    >>> from PIL import Image
    >>> uri = thumbnail_data_uri(Image.new("RGBA", (800, 400), (255, 0, 0, 128)))
    >>> uri[:22]
    'data:image/png;base64,'
    """
    if not isinstance(max_side, int) or isinstance(max_side, bool) or max_side < 8:
        raise InvalidParameterError(
            f"The 'max_side' parameter of thumbnail_data_uri() must be an int >= 8 (pixels). "
            f"Got {max_side!r}."
        )
    if fmt is not None:
        fmt = fmt.upper().replace("JPG", "JPEG")
        if fmt not in ("JPEG", "PNG", "WEBP"):
            raise InvalidParameterError(
                f"The 'fmt' parameter of thumbnail_data_uri() must be 'JPEG', 'PNG', 'WEBP' "
                f"or None (JPEG, or PNG for transparent images). Got {fmt!r}."
            )
    im = _thumbnail(image, max_side)
    has_alpha = im.mode in ("RGBA", "LA")
    if fmt is None:
        fmt = "PNG" if has_alpha else "JPEG"
    if fmt == "JPEG" and has_alpha:
        im = _flatten_alpha(im)
    budget = max(4_000, int(_THUMB_BUDGET_160 * (max_side / 160) ** 2))
    data, fmt = _encode_bounded(im, fmt, budget)
    mime = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}[fmt]
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _img_tag(image: Any, max_side: int, alt: str = "") -> str:
    uri = thumbnail_data_uri(image, max_side=max_side)
    return (
        f'<img src="{uri}" alt="{_esc(_truncate(alt, 200))}" '
        f'style="max-width:{max_side}px;max-height:{max_side}px;display:block">'
    )


# --------------------------------------------------------------------------- audio / video


def _seconds(value: float | None, name: str) -> float | None:
    if value is None or _is_missing(value):
        return None
    try:
        out = float(value)
    except (TypeError, ValueError) as exc:
        raise InvalidParameterError(
            f"The '{name}' parameter of audio_html() must be a number of seconds or None. "
            f"Got {value!r}."
        ) from exc
    if not math.isfinite(out) or out < 0:
        raise InvalidParameterError(
            f"The '{name}' parameter of audio_html() must be a finite number of seconds >= 0. "
            f"Got {value!r}."
        )
    return out


def _fmt_seconds(value: float) -> str:
    return f"{value:.3f}".rstrip("0").rstrip(".") or "0"


def _note(text: str) -> str:
    return f'<span style="{_NOTE_STYLE}">{_esc(text)}</span>'


def audio_html(
    data: bytes | None,
    *,
    mime: str | None = None,
    start: float | None = None,
    end: float | None = None,
    max_bytes: int = 2_000_000,
) -> str:
    """An ``<audio controls>`` player with the clip embedded as a ``data:`` URI.

    ``start``/``end`` (seconds) add a media fragment (``#t=1.5,3.2``) so the player plays just
    that segment of the clip, which is how a transcript segment or a search hit is played.
    ``mime`` is guessed from the first bytes (WAV, MP3, FLAC, Ogg/Opus, MP4/M4A, WebM, AIFF)
    when not given. Clips larger than ``max_bytes`` are not embedded: a short note says so, to
    keep notebooks small.

    >>> audio_html(None)
    '<span style="color:#777;font-style:italic">no audio</span>'
    >>> "#t=1.5,3" in audio_html(b"ID3\\x04\\x00", start=1.5, end=3)
    True
    """
    if data is None or _is_missing(data):
        return _note("no audio")
    raw = _as_bytes(data, "The audio data")
    if not raw:
        return _note("no audio (0 bytes)")
    t0, t1 = _seconds(start, "start"), _seconds(end, "end")
    if t0 is not None and t1 is not None and t1 < t0:
        raise InvalidParameterError(
            f"audio_html() got end={end!r} before start={start!r}; end must be >= start."
        )
    if len(raw) > max_bytes:
        return _note(
            f"audio not embedded: {_human_bytes(len(raw))} is over max_bytes="
            f"{max_bytes:,}; save it to a file to listen"
        )
    mime = mime or guess_mime(raw, kind="audio")
    fragment = ""
    if t0 is not None or t1 is not None:
        fragment = "#t=" + (_fmt_seconds(t0) if t0 is not None else "0")
        if t1 is not None:
            fragment += "," + _fmt_seconds(t1)
    b64 = base64.b64encode(raw).decode("ascii")
    return (
        f'<audio controls preload="metadata" style="max-width:100%" '
        f'src="data:{_esc(mime)};base64,{b64}{fragment}"></audio>'
    )


def _href(path: str | os.PathLike[str]) -> str:
    """A link target for a saved file: relative to the working directory when inside it."""
    p = Path(path)
    try:
        rel = p.resolve().relative_to(Path.cwd().resolve())
        return quote(rel.as_posix())
    except ValueError:
        return p.resolve().as_uri() if p.is_absolute() or p.exists() else quote(p.as_posix())


def video_html(
    data: bytes | None = None,
    *,
    path: str | os.PathLike[str] | None = None,
    max_bytes: int = 5_000_000,
    width: int = 320,
    height: int | None = None,
) -> str:
    """A ``<video controls>`` player with the video embedded, or a link to the saved file.

    Small videos (up to ``max_bytes``) are embedded as a ``data:`` URI so the notebook keeps
    them after export. Larger ones are linked to ``path`` (relative to the working directory
    when possible, so the link works from a notebook next to the file). With only ``path``
    given, the file is read and embedded if it is small enough. The player is ``width`` px
    wide and at most ``height`` px tall (default: 3/2 of the width), so a portrait video is
    letterboxed instead of filling the screen.

    >>> "<video controls" in video_html(b"\\x00\\x00\\x00\\x18ftypisom" + bytes(100))
    True
    >>> video_html(bytes(10_000), path="out/clip.mp4", max_bytes=1_000)
    '<a href="out/clip.mp4" target="_blank">▶ clip.mp4 (10.0 KB)</a>'
    """
    if data is None and path is None:
        raise InvalidParameterError(
            "video_html() needs data=... (the video bytes) or path=... (a saved video file)."
        )
    raw = None if data is None or _is_missing(data) else _as_bytes(data, "The video data")
    size = len(raw) if raw is not None else None
    if raw is None and path is not None and Path(path).is_file():
        size = Path(path).stat().st_size
        if size <= max_bytes:
            raw = Path(path).read_bytes()
    if raw is not None and len(raw) <= max_bytes:
        mime = guess_mime(raw, kind="video")
        b64 = base64.b64encode(raw).decode("ascii")
        max_height = int(height) if height is not None else int(width) * 3 // 2
        # A fixed width (no percentage): inside a table cell, ``max-width:100%`` lets the
        # browser shrink the player to a sliver.
        return (
            f'<video controls preload="metadata" width="{int(width)}" '
            f'style="width:{int(width)}px;max-height:{max_height}px;background:#000" '
            f'src="data:{_esc(mime)};base64,{b64}"></video>'
        )
    if path is not None:
        label = f"▶ {Path(path).name}" + (f" ({_human_bytes(size)})" if size is not None else "")
        return f'<a href="{_esc(_href(path))}" target="_blank">{_esc(label)}</a>'
    return _note(
        f"video not embedded: {_human_bytes(size or 0)} is over max_bytes={max_bytes:,}; "
        "save it with .download(path) to link it"
    )


# --------------------------------------------------------------------------- image grids


def _caption_html(text: str, max_chars: int = 300) -> str:
    return "<br>".join(_esc(line) for line in _truncate(text, max_chars).split("\n"))


def _placeholder_tile(thumb: int, error: str) -> str:
    return (
        f'<div style="width:{thumb}px;height:{thumb}px;box-sizing:border-box;'
        "background:#eeeeee;border:1px dashed #c0392b;color:#a93226;padding:8px;"
        'overflow:hidden;overflow-wrap:anywhere;line-height:1.3">'
        f"<b>⚠ failed</b><br>{_caption_html(error, 240)}</div>"
    )


def image_grid_html(
    items: Sequence[Mapping[str, Any]],
    *,
    col_wrap: int = 4,
    thumb: int = 160,
    max_items: int | None = 200,
) -> str:
    """A static HTML grid of thumbnails with captions; failed items become placeholder tiles.

    Each item is a mapping with ``"image"`` (bytes, PIL image, array or None), ``"caption"``
    (text, escaped; ``\\n`` starts a new line) and ``"error"`` (None, or the error text shown
    on a grey placeholder tile instead of the image). Images of mixed sizes are fitted into
    ``thumb`` x ``thumb`` tiles, ``col_wrap`` tiles per row (the last row may be partial).
    Only thumbnails are embedded and at most ``max_items`` tiles are drawn (a note counts the
    rest), so the output size stays bounded.

    >>> from PIL import Image
    >>> html = image_grid_html(
    ...     [{"image": Image.new("RGB", (512, 256)), "caption": "a cat"},
    ...      {"image": None, "caption": "a dog", "error": "500 Server Error"}],
    ...     col_wrap=2)
    >>> "⚠ failed" in html and "a cat" in html
    True
    """
    if not isinstance(col_wrap, int) or isinstance(col_wrap, bool) or col_wrap < 1:
        raise InvalidParameterError(
            f"The 'col_wrap' parameter of image_grid_html() must be an int >= 1. Got {col_wrap!r}."
        )
    if not isinstance(thumb, int) or isinstance(thumb, bool) or thumb < 16:
        raise InvalidParameterError(
            f"The 'thumb' parameter of image_grid_html() must be an int >= 16 (pixels). "
            f"Got {thumb!r}."
        )
    items = list(items)
    shown = items if max_items is None else items[:max_items]
    tiles = []
    for i, item in enumerate(shown):
        if not isinstance(item, Mapping):
            raise InvalidParameterError(
                f"image_grid_html() items must be mappings with 'image', 'caption' and 'error' "
                f"keys. Item {i} is a {type(item).__name__}."
            )
        caption = "" if _is_missing(item.get("caption")) else str(item.get("caption"))
        error = item.get("error")
        error = None if _is_missing(error) or error == "" else str(error)
        image = item.get("image")
        body = None
        if error is None:
            if _is_missing(image):
                error = "no image"
            else:
                try:
                    body = (
                        f'<div style="width:{thumb}px;height:{thumb}px;display:flex;'
                        "align-items:center;justify-content:center;background:#f6f6f6;"
                        f'overflow:hidden">{_img_tag(image, thumb, caption)}</div>'
                    )
                except (InvalidParameterError, OSError, ValueError) as exc:
                    error = f"could not show the image: {exc}"
        if body is None:
            body = _placeholder_tile(thumb, error or "no image")
        cap = (
            f'<figcaption style="margin-top:4px;line-height:1.25;overflow-wrap:anywhere" '
            f'title="{_esc(_truncate(caption, 1000))}">{_caption_html(caption)}</figcaption>'
            if caption
            else ""
        )
        tiles.append(f'<figure style="margin:0;width:{thumb}px">{body}{cap}</figure>')
    ncols = max(1, min(col_wrap, len(shown)))
    footer = ""
    if len(shown) < len(items):
        footer = (
            f'<div style="{_FONT};{_NOTE_STYLE};margin-top:6px">{len(shown):,} of '
            f"{len(items):,} images shown (max_items={max_items})</div>"
        )
    return (
        f'<div style="display:grid;grid-template-columns:repeat({ncols},{thumb}px);'
        f'gap:10px;align-items:start;{_FONT}">' + "".join(tiles) + "</div>" + footer
    )


class _FormatDict(dict):
    def __missing__(self, key: str) -> str:
        raise KeyError(key)


def format_label(
    record: Mapping[str, Any], label: str | Callable[[Mapping[str, Any]], str] | None
) -> str:
    """The label of one row: a column name, a format string like ``"{prompt} s={seed}"``,
    or a callable taking the row as a mapping.

    >>> format_label({"prompt": "a cat", "seed": 7}, "{prompt} s={seed}")
    'a cat s=7'
    >>> format_label({"prompt": "a cat"}, "prompt")
    'a cat'
    """
    if label is None:
        return ""
    if callable(label):
        return str(label(record))
    if label in record:
        value = record[label]
        return "" if _is_missing(value) else str(value)
    fields = [f for _, f, _, _ in string.Formatter().parse(label) if f is not None]
    if not fields:
        raise InvalidParameterError(
            f"label={label!r} is neither a column nor a format string like '{{prompt}} "
            f"s={{seed}}'. Available columns: {sorted(map(str, record))}."
        )
    try:
        return label.format_map(_FormatDict(record))
    except KeyError as exc:
        raise InvalidParameterError(
            f"label={label!r} refers to {exc.args[0]!r}, which is not a column. "
            f"Available columns: {sorted(map(str, record))}."
        ) from None
    except (ValueError, IndexError, AttributeError) as exc:
        raise InvalidParameterError(f"label={label!r} is not a valid format string: {exc}") from exc


def grid_items(
    data: pd.DataFrame,
    *,
    image: str = "image",
    label: str | Callable[[Mapping[str, Any]], str] | None = None,
    error: str | None = "error",
) -> list[dict[str, Any]]:
    """Turn a frame with an image column into the items of :func:`image_grid_html`."""
    if image not in data.columns:
        raise InvalidParameterError(
            f"Column {image!r} not found (image=...). Available columns: {list(data.columns)}."
        )
    records = data.to_dict("records")
    has_error = error is not None and error in data.columns
    return [
        {
            "image": rec.get(image),
            "caption": format_label(rec, label),
            "error": rec.get(error) if has_error else None,
        }
        for rec in records
    ]


def frame_grid_html(
    data: pd.DataFrame,
    *,
    image: str = "image",
    label: str | Callable[[Mapping[str, Any]], str] | None = None,
    error: str | None = "error",
    col_wrap: int = 4,
    thumb: int = 160,
    max_items: int | None = 200,
) -> str:
    """:func:`image_grid_html` for a frame: one tile per row, captioned by ``label``.

    >>> import pandas as pd
    >>> from PIL import Image
    >>> df = pd.DataFrame({"prompt": ["a cat"], "seed": [1], "image": [Image.new("RGB", (8, 8))]})
    >>> "a cat · 1" in frame_grid_html(df, label="{prompt} · {seed}")
    True
    """
    return image_grid_html(
        grid_items(data, image=image, label=label, error=error),
        col_wrap=col_wrap,
        thumb=thumb,
        max_items=max_items,
    )


# --------------------------------------------------------------------------- tables


def _cell_text(value: Any, max_chars: int) -> str:
    """A short plain-text rendering of one cell (bytes and arrays are summarized)."""
    from PIL import Image  # lazy

    if isinstance(value, (bytes, bytearray, memoryview)):
        return _describe_bytes(value if isinstance(value, bytes) else bytes(value))
    if isinstance(value, Image.Image):
        return f"<image {value.width}×{value.height} {value.mode}>"
    if isinstance(value, np.ndarray):
        flat = value.ravel()
        head = ", ".join(f"{x:.4g}" if flat.dtype.kind == "f" else str(x) for x in flat[:3])
        more = ", …" if flat.size > 3 else ""
        return f"array{value.shape} {value.dtype} [{head}{more}]"
    if isinstance(value, (float, np.floating)) and not _is_missing(value):
        return f"{value:.6g}"
    if isinstance(value, (list, tuple, dict, set)):
        return _truncate(repr(value), max_chars)
    return _truncate(str(value), max_chars)


def _read_if_path(value: Any) -> Any:
    if isinstance(value, (str, os.PathLike)) and Path(value).is_file():
        return Path(value).read_bytes()
    return value


def _check_media(data: pd.DataFrame, media: Mapping[str, str] | None) -> dict[str, str]:
    if media is None:
        return {c: c for c in _MEDIA_KINDS if c in data.columns}
    out = {}
    for column, kind in media.items():
        if column not in data.columns:
            raise InvalidParameterError(
                f"Media column {column!r} not found (media=...). "
                f"Available columns: {list(data.columns)}."
            )
        if kind not in _MEDIA_KINDS:
            raise InvalidParameterError(
                f"media={{{column!r}: {kind!r}}}: the kind must be one of {list(_MEDIA_KINDS)}."
            )
        out[column] = kind
    return out


def frame_html(
    df: pd.DataFrame,
    *,
    media: Mapping[str, str] | None = None,
    max_rows: int = 50,
    thumb: int = 96,
    clip: tuple[str, str] | None = None,
    max_chars: int = 120,
    max_media_bytes: int = 20_000_000,
    title: str | None = None,
) -> str:
    """A static HTML table of ``df`` with media columns shown inline.

    ``media`` maps column names to ``"image"``, ``"audio"`` or ``"video"`` (by default the
    columns named image, audio and video): images become ``thumb`` px thumbnails, audio and
    video become players (cells may hold the bytes or a path to a file). ``clip=("start",
    "end")`` names columns of seconds that clip each audio player to its segment. Other cells
    are escaped and cut at ``max_chars``; bytes are never dumped (``<PNG · 12.3 KB>``) and
    arrays are summarized. At most ``max_rows`` rows are shown and at most
    ``max_media_bytes`` of audio/video are embedded in all; a footer counts rows and columns.

    >>> import pandas as pd
    >>> html = frame_html(pd.DataFrame({"text": ["<b>hi</b>"], "audio": [b"RIFF0000WAVE"]}))
    >>> "&lt;b&gt;hi&lt;/b&gt;" in html and "<audio" in html
    True
    """
    if not isinstance(df, pd.DataFrame):
        raise InvalidParameterError(f"frame_html() needs a DataFrame. Got {type(df).__name__}.")
    if not isinstance(max_rows, int) or max_rows < 0:
        raise InvalidParameterError(
            f"The 'max_rows' parameter of frame_html() must be an int >= 0. Got {max_rows!r}."
        )
    kinds = _check_media(df, media)
    if clip is not None:
        missing = [c for c in clip if c not in df.columns]
        if len(clip) != 2 or missing:
            raise InvalidParameterError(
                f"clip={clip!r} must name two columns (start, end) in seconds. Missing: "
                f"{missing}. Available columns: {list(df.columns)}."
            )
    td = "padding:3px 8px;border-bottom:1px solid #e3e3e3;vertical-align:top;text-align:left"
    th = td + ";font-weight:600;border-bottom:1px solid #999"
    index_name = "" if df.index.name is None else str(df.index.name)
    head = f'<th style="{th}">{_esc(index_name)}</th>' + "".join(
        f'<th style="{th}">{_esc(c)}</th>' for c in df.columns
    )
    budget = max_media_bytes
    rows = []
    shown = df.iloc[:max_rows]
    for label, rec in zip(shown.index, shown.itertuples(index=False, name=None), strict=True):
        cells = [f'<th style="{td};font-weight:600">{_esc(_cell_text(label, max_chars))}</th>']
        record = dict(zip(df.columns, rec, strict=True))  # for the clip columns
        for column, value in zip(df.columns, rec, strict=True):
            kind = kinds.get(column)
            if kind is None or _is_missing(value):
                text = "" if _is_missing(value) and kind else _cell_text(value, max_chars)
                full = str(value) if isinstance(value, str) and len(value) > max_chars else None
                tip = f' title="{_esc(_truncate(full, 1000))}"' if full else ""
                dim = ";color:#aaa" if _is_missing(value) else ""  # NA columns stay quiet
                cells.append(f'<td style="{td}{dim}"{tip}>{_esc(text)}</td>')
                continue
            try:
                if kind == "image":
                    cell = _img_tag(_read_if_path(value), thumb)
                elif kind == "video" and isinstance(value, (str, os.PathLike)):
                    cell = video_html(
                        path=value, max_bytes=min(budget, 5_000_000), width=240, height=180
                    )
                    if "base64," in cell:
                        budget -= Path(value).stat().st_size
                else:
                    raw = _as_bytes(_read_if_path(value), f"Column {column!r}")
                    if len(raw) > budget:
                        cell = _note(
                            f"{kind} not embedded: the table's media budget "
                            f"(max_media_bytes={max_media_bytes:,}) is used up"
                        )
                    elif kind == "audio":
                        start = record[clip[0]] if clip else None
                        end = record[clip[1]] if clip else None
                        cell = audio_html(raw, start=start, end=end, max_bytes=budget)
                    else:
                        cell = video_html(raw, max_bytes=budget, width=240, height=180)
                    if "base64," in cell:
                        budget -= len(raw)
            except (InvalidParameterError, OSError, ValueError) as exc:
                cell = _note(f"cannot show {kind}: {exc}")
            cells.append(f'<td style="{td}">{cell}</td>')
        rows.append("<tr>" + "".join(cells) + "</tr>")
    n, m = df.shape
    count = (
        f"{n:,} rows × {m:,} columns"
        if len(shown) == n
        else (f"{len(shown):,} of {n:,} rows shown × {m:,} columns")
    )
    caption = f'<div style="font-weight:600;margin-bottom:4px">{_esc(title)}</div>' if title else ""
    return (
        f'<div style="{_FONT};overflow-x:auto">{caption}'
        f'<table style="border-collapse:collapse"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
        f'<div style="color:#666;margin-top:4px">{count}</div></div>'
    )


def _text_frame(df: pd.DataFrame, max_rows: int, max_chars: int = 50) -> str:
    """``df.to_string`` with bytes, arrays and images summarized instead of dumped."""
    shown = df.iloc[:max_rows]
    from PIL import Image  # lazy

    out = shown.copy()
    for column in out.columns:
        col = out[column]
        if col.dtype == object:
            summarize = col.map(
                lambda v: isinstance(v, (bytes, bytearray, memoryview, np.ndarray, Image.Image))
            )
            if summarize.any():
                out[column] = col.map(
                    lambda v: _cell_text(v, max_chars) if not _is_missing(v) else v
                ).astype(object)
    text = out.to_string(max_colwidth=max_chars)
    n, m = df.shape
    if len(shown) < n:
        text += f"\n... {n:,} rows × {m:,} columns ({len(shown):,} shown)"
    else:
        text += f"\n\n[{n:,} rows × {m:,} columns]"
    return text


def mimebundle(
    df: pd.DataFrame,
    *,
    media: Mapping[str, str] | None = None,
    max_rows: int = 50,
    title: str | None = None,
    include: Sequence[str] | None = None,
    exclude: Sequence[str] | None = None,
    **html_options: Any,
) -> dict[str, str]:
    """``{"text/plain": ..., "text/html": ...}`` for a result's ``_repr_mimebundle_``.

    The text form summarizes bytes/arrays like the HTML one; ``html_options`` go to
    :func:`frame_html` (``thumb``, ``clip``, ``max_chars``, ``max_media_bytes``).

    >>> import pandas as pd
    >>> sorted(mimebundle(pd.DataFrame({"a": [1]})))
    ['text/html', 'text/plain']
    """
    bundle: dict[str, str] = {}

    def wanted(mime: str) -> bool:
        return (include is None or mime in include) and (exclude is None or mime not in exclude)

    if wanted("text/plain"):
        text = _text_frame(df, max_rows=min(max_rows, 20))
        bundle["text/plain"] = f"{title}\n{text}" if title else text
    if wanted("text/html"):
        bundle["text/html"] = frame_html(
            df, media=media, max_rows=max_rows, title=title, **html_options
        )
    return bundle


class MediaFrameMixin:
    """Rich notebook display for result objects that wrap a DataFrame.

    Subclasses implement :meth:`_display_frame`; they may set ``_display_media`` (the
    ``media`` mapping of :func:`frame_html`) and override :meth:`_display_title` or
    :meth:`_display_html` (e.g. to show an image grid instead of a table)::

        class SpeechResult(MediaFrameMixin):
            _display_media = {"audio": "audio"}

            def _display_frame(self):
                return self.frame
    """

    _display_media: ClassVar[Mapping[str, str] | None] = None
    _display_max_rows: ClassVar[int] = 50

    def _display_frame(self) -> pd.DataFrame:
        raise NotImplementedError(f"{type(self).__name__} must implement _display_frame()")

    def _display_title(self) -> str | None:
        return None

    def _display_html(self) -> str:
        return frame_html(
            self._display_frame(),
            media=self._display_media,
            max_rows=self._display_max_rows,
            title=self._display_title(),
        )

    def _repr_html_(self) -> str:
        return self._display_html()

    def _repr_mimebundle_(
        self, include: Sequence[str] | None = None, exclude: Sequence[str] | None = None
    ) -> dict[str, str]:
        bundle = {}
        if include is None or "text/plain" in include:
            title = self._display_title()
            text = _text_frame(self._display_frame(), max_rows=20)
            bundle["text/plain"] = f"{title}\n{text}" if title else text
        if include is None or "text/html" in include:
            bundle["text/html"] = self._display_html()
        return {k: v for k, v in bundle.items() if not exclude or k not in exclude}


# --------------------------------------------------------------------------- progress


def _progress_enabled() -> bool:
    try:
        from deapi_ds._config import get_config  # lazy
    except ImportError:  # pragma: no cover - the config module is always there in releases
        return True
    return bool(getattr(get_config(), "progress", True))


def _format_wait(seconds: float) -> str:
    seconds = max(1, math.ceil(seconds))
    if seconds < 120:
        return f"~{seconds}s"
    if seconds < 7200:
        return f"~{round(seconds / 60)}min"
    return f"~{seconds / 3600:.1f}h"


#: tqdm's default bar without the rate and the time left (for runs mostly served from the cache)
_CACHED_BAR_FORMAT = "{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]"


class ProgressBar:
    """A tqdm bar that also counts cached and failed rows and shows rate-limit waits.

    Made by :func:`progress`; use it as a context manager or call :meth:`close`.
    """

    def __init__(self, bar: Any) -> None:
        self._bar = bar
        self._cached = 0
        self._failed = 0
        self._wait: float | None = None

    @property
    def n(self) -> int:
        """Rows counted so far (done, cached and failed)."""
        return int(self._bar.n)

    @property
    def total(self) -> int | None:
        return self._bar.total

    @total.setter
    def total(self, value: int | None) -> None:
        self._bar.total = value
        self._bar.refresh()

    @property
    def cached(self) -> int:
        return self._cached

    @property
    def failed(self) -> int:
        return self._failed

    def update(self, n: int = 1, *, failed: int = 0) -> None:
        """Advance by ``n`` finished rows, of which ``failed`` ended in an error."""
        if failed:
            self._failed += failed
            self._refresh_postfix(refresh=False)
        self._bar.update(n)

    def set_cached(self, n: int) -> None:
        """Count ``n`` more rows served from the cache, all at once (adds to the total)."""
        if n < 0:
            raise InvalidParameterError(f"set_cached() needs a count >= 0. Got {n!r}.")
        if n:
            self._cached += n
            self._refresh_postfix(refresh=False)
            self._bar.update(n)
            self._bar.refresh()  # show the jump at once, whatever tqdm's mininterval

    def waiting(self, seconds: float | None) -> None:
        """Show "waiting on rate limit ~Ns" (``None`` clears it)."""
        self._wait = None if seconds is None else float(seconds)
        self._refresh_postfix(refresh=True)

    def _refresh_postfix(self, refresh: bool) -> None:
        if self._cached * 2 > max(self._bar.total or 0, self._bar.n):
            self._hide_rate()
        parts = []
        if self._cached:
            parts.append(f"{self._cached:,} cached")
        if self._failed:
            parts.append(f"{self._failed:,} failed")
        if self._wait is not None:
            parts.append(f"waiting on rate limit {_format_wait(self._wait)}")
        self._bar.set_postfix_str(", ".join(parts), refresh=refresh)

    def _hide_rate(self) -> None:
        """Show counts and time only: for a run served mostly from the cache, or over in under a
        second, a rate such as 10,381,940 rows/s (and the time left it implies) says nothing."""
        if not getattr(self._bar, "disable", True) and self._bar.bar_format is None:
            self._bar.bar_format = _CACHED_BAR_FORMAT

    def close(self) -> None:
        if not getattr(self._bar, "disable", True) and self._bar.format_dict["elapsed"] < 1.0:
            self._hide_rate()
        if self._wait is not None:
            self._wait = None
            self._refresh_postfix(refresh=False)
        self._bar.close()

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<ProgressBar {self._bar!s}>"


def progress(
    total: int | None,
    *,
    desc: str,
    unit: str = "row",
    disable: bool | None = None,
    file: IO[str] | None = None,
    leave: bool = True,
) -> ProgressBar:
    """A progress bar: a widget in notebooks, text in terminals (``tqdm.auto``).

    ``disable=None`` follows the configuration (``DEAPI_DS_PROGRESS``); ``file=`` forces a text
    bar written to that stream. Without ipywidgets the notebook falls back to the text bar.

    >>> import io
    >>> out = io.StringIO()
    >>> with progress(10, desc="embed", disable=False, file=out) as bar:
    ...     bar.set_cached(4)
    ...     bar.waiting(12)
    ...     bar.update(6)
    >>> "4 cached" in out.getvalue() and "waiting on rate limit ~12s" in out.getvalue()
    True
    """
    if disable is None:
        disable = not _progress_enabled()
    options = {"total": total, "desc": desc, "unit": unit, "disable": disable, "leave": leave}
    if unit == "s":  # audio seconds are fractional: print 40.8 rather than 40.84100000000001
        options["unit_scale"] = True
    if file is not None:
        from tqdm.std import tqdm as text_tqdm  # lazy

        return ProgressBar(text_tqdm(file=file, **options))
    from tqdm.auto import tqdm as auto_tqdm  # lazy

    try:
        return ProgressBar(auto_tqdm(**options))
    except ImportError:  # tqdm.notebook without ipywidgets ("IProgress not found")
        from tqdm.std import tqdm as text_tqdm  # lazy

        return ProgressBar(text_tqdm(**options))
