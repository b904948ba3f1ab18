"""Tests for deapi_ds._media: probe, extract, silences, split, prepare_upload, stitch, SRT/VTT.

All media are made here with numpy + soundfile (wav/flac/mp3/opus) and PyAV (m4a, mp4 with
H.264 video + AAC audio), so no system ffmpeg is needed.
"""

from __future__ import annotations

import io
import pickle
from fractions import Fraction

import av
import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from deapi_ds import _media
from deapi_ds._media import (
    AUDIO_EXTENSIONS,
    VIDEO_EXTENSIONS,
    Chunk,
    MediaError,
    extract_audio,
    find_silences,
    format_srt,
    format_vtt,
    parse_srt,
    parse_vtt,
    prepare_upload,
    probe,
    split_audio,
    stitch_segments,
)

SR = 44_100


# --------------------------------------------------------------------------------------------
# media factories


def tones_and_silences(pattern: list[tuple[str, float]], sr: int = SR) -> np.ndarray:
    """Mono float32 audio: ("tone", seconds) / ("silence", seconds) pieces in order."""
    pieces = []
    freq = 300.0
    for kind, seconds in pattern:
        n = round(seconds * sr)
        if kind == "tone":
            t = np.arange(n) / sr
            pieces.append(0.4 * np.sin(2 * np.pi * freq * t))
            freq = 300.0 + (freq + 137.0) % 900.0
        else:
            pieces.append(np.zeros(n))
    return np.concatenate(pieces).astype(np.float32)


def encode_sf(audio: np.ndarray, sr: int, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, audio, sr, format=fmt, **kwargs)
    return buf.getvalue()


def encode_av(audio: np.ndarray, sr: int, muxer: str = "ipod", codec: str = "aac") -> bytes:
    buf = io.BytesIO()
    with av.open(buf, "w", format=muxer) as out:
        stream = out.add_stream(codec, rate=sr)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(audio[None, :], format="fltp", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = sr, 0, Fraction(1, sr)
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


def encode_mp4(audio: np.ndarray | None, sr: int, seconds: float, fps: int = 10) -> bytes:
    """An mp4 with H.264 video (64x64, noisy frames so it is bigger than its audio) + AAC."""
    buf = io.BytesIO()
    rng = np.random.default_rng(1)
    with av.open(buf, "w", format="mp4") as out:
        video = out.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = 64, 64, "yuv420p"
        audio_stream = None
        if audio is not None:
            audio_stream = out.add_stream("aac", rate=sr)
            audio_stream.layout = "mono"
        for i in range(round(seconds * fps)):
            img = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            for packet in video.encode(frame):
                out.mux(packet)
        for packet in video.encode(None):
            out.mux(packet)
        if audio_stream is not None:
            frame = av.AudioFrame.from_ndarray(audio[None, :], format="fltp", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = sr, 0, Fraction(1, sr)
            for packet in audio_stream.encode(frame):
                out.mux(packet)
            for packet in audio_stream.encode(None):
                out.mux(packet)
    return buf.getvalue()


def strip_xing_frame(mp3: bytes) -> bytes:
    """Remove the first MPEG-1 Layer III frame (the Xing/Info header) from an mp3."""
    pos = 0
    if mp3[:3] == b"ID3":
        size = mp3[6:10]
        pos = 10 + (size[0] << 21 | size[1] << 14 | size[2] << 7 | size[3])
    while not (mp3[pos] == 0xFF and mp3[pos + 1] & 0xE0 == 0xE0):
        pos += 1
    header = mp3[pos : pos + 4]
    assert b"Xing" in mp3[pos : pos + 200] or b"Info" in mp3[pos : pos + 200]
    bitrates = [0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320]
    rates = [44100, 48000, 32000]
    bitrate = bitrates[header[2] >> 4] * 1000
    rate = rates[(header[2] >> 2) & 3]
    padding = (header[2] >> 1) & 1
    length = 144 * bitrate // rate + padding
    return mp3[:pos] + mp3[pos + length :]


SPEECHY = [("silence", 0.2), ("tone", 1.3), ("silence", 0.6), ("tone", 2.1), ("silence", 0.5)]
SPEECHY += [("tone", 1.8), ("silence", 0.4)]  # 6.9 s


@pytest.fixture(scope="module")
def clip() -> np.ndarray:
    return tones_and_silences(SPEECHY)


@pytest.fixture(scope="module")
def files(clip) -> dict[str, bytes]:
    opus_audio = tones_and_silences(SPEECHY, sr=48_000)
    return {
        "wav": encode_sf(clip, SR, "WAV"),
        "flac": encode_sf(clip, SR, "FLAC"),
        "mp3": encode_sf(clip, SR, "MP3"),
        "opus": encode_sf(opus_audio, 48_000, "OGG", subtype="OPUS"),
        "m4a": encode_av(clip, SR),
        "webm": encode_av(opus_audio, 48_000, "webm", "libopus"),
        "mp4": encode_mp4(clip, SR, seconds=len(clip) / SR),
    }


CLIP_SECONDS = sum(seconds for _, seconds in SPEECHY)


# --------------------------------------------------------------------------------------------
# probe


@pytest.mark.parametrize("fmt", ["wav", "flac", "mp3", "opus", "m4a", "mp4", "webm"])
def test_probe_duration_within_50ms(files, fmt):
    info = probe(files[fmt], name=f"clip.{fmt}")
    assert info.duration == pytest.approx(CLIP_SECONDS, abs=0.05)
    assert info.has_audio
    assert info.has_video is (fmt == "mp4")
    assert info.size == len(files[fmt])
    assert info.channels == 1
    expected = {"wav": "pcm_s16le", "flac": "flac", "mp3": "mp3", "opus": "opus", "webm": "opus"}
    assert info.audio_codec == expected.get(fmt, "aac")
    assert info.container == {"opus": "ogg"}.get(fmt, fmt)


def test_probe_reads_paths_and_names_by_extension(tmp_path, files):
    path = tmp_path / "talk.m4a"
    path.write_bytes(files["m4a"])
    from_path, from_str = probe(path), probe(str(path))
    assert from_path == from_str
    assert from_path.container == "m4a" and from_path.size == len(files["m4a"])
    assert from_path.duration == pytest.approx(CLIP_SECONDS, abs=0.05)


def test_probe_vbr_mp3_without_header_is_exact():
    rng = np.random.default_rng(0)
    quiet = np.zeros(3 * SR)  # 32 kbit/s frames first...
    loud = 0.5 * rng.standard_normal(5 * SR)  # ...then 320 kbit/s frames
    audio = np.concatenate([quiet, loud]).astype(np.float32)
    vbr = encode_sf(audio, SR, "MP3", bitrate_mode="VARIABLE", compression_level=0.0)
    headerless = strip_xing_frame(vbr)
    with av.open(io.BytesIO(headerless)) as container:  # the metadata estimate is wrong...
        estimate = container.duration / av.time_base
    assert abs(estimate - 8.0) > 2.0
    assert abs(sf.info(io.BytesIO(headerless)).duration - 8.0) > 2.0  # ...and libsndfile's too
    assert probe(headerless, name="vbr.mp3").duration == pytest.approx(8.0, abs=0.05)


def test_probe_ignores_cover_art_as_video(clip):
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp3") as out:
        stream = out.add_stream("libmp3lame", rate=SR)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(clip[None, :], format="fltp", layout="mono")
        frame.sample_rate = SR
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    info = probe(buf.getvalue(), name="song.mp3")
    assert info.has_video is False


def test_media_error_for_text_file_named_mp3(tmp_path):
    path = tmp_path / "notes.mp3"
    path.write_text("These are my meeting notes, not audio.\n" * 20)
    with pytest.raises(MediaError, match=r"notes\.mp3: not a readable audio or video file"):
        probe(path)
    with pytest.raises(MediaError, match="notes.mp3"):
        extract_audio(path)


def test_media_error_for_empty_and_random_bytes():
    with pytest.raises(MediaError, match=r"empty\.wav: the file is empty"):
        probe(b"", name="empty.wav")
    with pytest.raises(MediaError, match=r"<bytes>: the file is empty"):
        find_silences(b"")
    noise = np.random.default_rng(3).integers(0, 256, 20_000, dtype=np.uint8).tobytes()
    with pytest.raises(MediaError, match="junk.bin") as info:
        probe(noise, name="junk.bin")
    assert isinstance(info.value, ValueError)
    assert info.value.name == "junk.bin"
    copy = pickle.loads(pickle.dumps(info.value))  # crosses process boundaries (dask)
    assert str(copy) == str(info.value) and copy.reason == info.value.reason


def test_media_error_for_truncated_file(files):
    half = files["m4a"][: len(files["m4a"]) // 2]  # the index (moov) is at the end
    with pytest.raises(MediaError, match=r"cut\.m4a: not a readable audio or video file"):
        probe(half, name="cut.m4a")


def test_media_error_for_video_without_audio():
    silent_video = encode_mp4(None, SR, seconds=1.0)
    with pytest.raises(
        MediaError, match=r"screen\.mp4: has no audio stream \(streams found: video"
    ):
        probe(silent_video, name="screen.mp4")


def test_missing_path_raises_oserror(tmp_path):
    with pytest.raises(FileNotFoundError):
        probe(tmp_path / "nope.wav")


def test_wrong_input_type_is_a_type_error():
    with pytest.raises(TypeError, match="bytes or a path"):
        probe(12345)  # type: ignore[arg-type]


def test_extension_sets():
    assert {".mp3", ".wav", ".m4a", ".ogg", ".opus", ".flac", ".webm"} <= AUDIO_EXTENSIONS
    assert {".mp4", ".mov", ".mkv", ".webm", ".avi"} <= VIDEO_EXTENSIONS
    assert all(ext.startswith(".") and ext == ext.lower() for ext in AUDIO_EXTENSIONS)


# --------------------------------------------------------------------------------------------
# extract_audio


def test_extract_audio_from_video_is_smaller_and_keeps_duration(files):
    video = files["mp4"]
    audio = extract_audio(video, fmt="mp3", bitrate=32_000, sample_rate=16_000, name="v.mp4")
    assert len(audio) < len(video)
    info = probe(audio, name="v.mp3")
    assert not info.has_video
    assert info.audio_codec == "mp3" and info.sample_rate == 16_000 and info.channels == 1
    assert info.duration == pytest.approx(CLIP_SECONDS, abs=0.05)


@pytest.mark.parametrize(
    ("fmt", "rate", "codec", "container"),
    [
        ("mp3", 22_050, "mp3", "mp3"),
        ("opus", 24_000, "opus", "ogg"),
        ("wav", 16_000, "pcm_s16le", "wav"),
        ("flac", 16_000, "flac", "flac"),
        ("m4a", 16_000, "aac", "mp4"),
    ],
)
def test_extract_audio_formats_and_window(files, fmt, rate, codec, container):
    out = extract_audio(files["wav"], fmt=fmt, sample_rate=rate, start=1.0, end=4.0)
    info = probe(out)
    assert info.audio_codec == codec and info.container == container
    # Opus always decodes at 48 kHz; the others keep the rate asked for.
    assert info.sample_rate == (48_000 if fmt == "opus" else rate)
    assert info.duration == pytest.approx(3.0, abs=0.05)


def test_extract_audio_window_keeps_the_right_samples(clip, files):
    # [1.5, 2.0) lies in the 0.6 s pause; [2.2, 2.6) in the second tone.
    quiet = extract_audio(files["flac"], fmt="wav", start=1.55, end=2.05)
    loud = extract_audio(files["flac"], fmt="wav", start=2.2, end=2.6)
    q, _ = sf.read(io.BytesIO(quiet), dtype="float32")
    x, _ = sf.read(io.BytesIO(loud), dtype="float32")
    assert len(q) == round(0.5 * SR) and np.abs(q).max() < 1e-3
    assert len(x) == round(0.4 * SR) and np.sqrt(np.mean(x**2)) > 0.2


def test_extract_audio_stereo_and_argument_errors(files):
    stereo = np.stack([np.zeros(SR), 0.3 * np.ones(SR)], axis=1).astype(np.float32)
    wav = encode_sf(stereo, SR, "WAV")
    out = probe(extract_audio(wav, fmt="flac", mono=False))
    assert out.channels == 2
    with pytest.raises(ValueError, match="fmt must be one of"):
        extract_audio(wav, fmt="ogg-vorbis")
    with pytest.raises(ValueError, match="sample_rate=44100 is not supported by opus"):
        extract_audio(wav, fmt="opus", sample_rate=44_100)
    with pytest.raises(ValueError, match="end .* must be after start"):
        extract_audio(wav, start=0.5, end=0.2)
    with pytest.raises(ValueError, match="holds no audio"):
        extract_audio(wav, start=5.0, end=6.0)


# --------------------------------------------------------------------------------------------
# find_silences


def test_find_silences_on_tone_silence_tone(files):
    found = find_silences(files["wav"])  # the 0.2 s lead-in is shorter than min_silence
    expected = [(1.5, 2.1), (4.2, 4.7), (6.5, 6.9)]
    assert len(found) == len(expected)
    for (s, e), (s0, e0) in zip(found, expected, strict=True):
        assert s == pytest.approx(s0, abs=0.02) and e == pytest.approx(e0, abs=0.02)


def test_find_silences_min_silence_threshold_and_lossy_input(files):
    assert len(find_silences(files["wav"], min_silence=0.55)) == 1  # only the 0.6 s pause
    loud_floor = find_silences(files["wav"], threshold_db=-3.0)  # everything counts as silence
    assert loud_floor == [(0.0, pytest.approx(CLIP_SECONDS, abs=0.02))]
    from_mp3 = find_silences(files["mp3"])
    assert [round(s, 1) for s, _ in from_mp3] == [1.5, 4.2, 6.5]
    with_lead_in = find_silences(files["mp3"], min_silence=0.1)
    assert with_lead_in[0] == (0.0, pytest.approx(0.2, abs=0.03))
    with pytest.raises(ValueError, match="threshold_db must be negative"):
        find_silences(files["wav"], threshold_db=10)
    with pytest.raises(ValueError, match="min_silence"):
        find_silences(files["wav"], min_silence=0)


# --------------------------------------------------------------------------------------------
# split_audio


@pytest.fixture(scope="module")
def minute():
    """~60 s of 'speech': tones of 2.6-4.4 s separated by 0.5-0.8 s pauses."""
    rng = np.random.default_rng(7)
    pattern: list[tuple[str, float]] = []
    pauses: list[tuple[float, float]] = []
    t = 0.0
    while t < 58.0:
        tone = float(rng.uniform(2.6, 4.4))
        pause = float(rng.uniform(0.5, 0.8))
        pattern += [("tone", tone), ("silence", pause)]
        pauses.append((t + tone, t + tone + pause))
        t += tone + pause
    return encode_sf(tones_and_silences(pattern, sr=16_000), 16_000, "WAV"), t, pauses


def test_split_audio_cuts_inside_silences_under_the_limit(minute):
    wav, total, pauses = minute
    max_bytes = 80_000  # 64 kbit/s mp3 -> about 9 s per chunk
    chunks = split_audio(wav, max_bytes=max_bytes, fmt="mp3", bitrate=64_000, name="minute.wav")
    assert 5 <= len(chunks) <= 10
    assert [c.index for c in chunks] == list(range(len(chunks)))
    assert chunks[0].start == 0.0 and chunks[-1].end == pytest.approx(total, abs=1e-3)
    for chunk in chunks:
        assert chunk.fmt == "mp3" and len(chunk.data) <= max_bytes
        assert probe(chunk.data, name="c.mp3").duration == pytest.approx(chunk.duration, abs=0.05)
    for before, after in zip(chunks, chunks[1:], strict=False):
        assert after.start == before.end  # cut in a pause: no overlap needed
        assert any(s < before.end < e for s, e in pauses), before.end


def test_split_audio_without_pauses_overlaps(monkeypatch):
    rng = np.random.default_rng(5)
    noise = (0.3 * rng.standard_normal(30 * 16_000)).astype(np.float32)
    wav = encode_sf(noise, 16_000, "WAV")
    chunks = split_audio(wav, max_bytes=60_000, fmt="opus", bitrate=32_000, overlap=1.5)
    assert len(chunks) >= 3
    assert all(len(c.data) <= 60_000 and c.fmt == "opus" for c in chunks)
    for before, after in zip(chunks, chunks[1:], strict=False):
        assert before.end - after.start == pytest.approx(1.5, abs=1e-3)
    assert chunks[-1].end == pytest.approx(30.0, abs=1e-3)
    assert chunks[0].filename("talk") == "talk.000.ogg"


def test_split_audio_resplits_chunks_that_encode_too_big(monkeypatch):
    # White noise does not compress in FLAC, so the size estimate is too low at first.
    noise = (0.9 * np.random.default_rng(2).uniform(-1, 1, 12 * 16_000)).astype(np.float32)
    wav = encode_sf(noise, 16_000, "WAV")
    calls = []
    real_encode = _media._encode

    def counting(pcm, rate, fmt, bitrate):
        out = real_encode(pcm, rate, fmt, bitrate)
        calls.append(len(out))
        return out

    monkeypatch.setattr(_media, "_encode", counting)
    chunks = split_audio(wav, max_bytes=100_000, fmt="flac", overlap=0.5)
    assert all(len(c.data) <= 100_000 for c in chunks)
    assert any(size > 100_000 for size in calls)  # the verification step did re-split
    assert len(calls) > len(chunks)
    assert chunks[-1].end == pytest.approx(12.0, abs=1e-3)
    covered = [(c.start, c.end) for c in chunks]
    assert all(b[0] < a[1] for a, b in zip(covered, covered[1:], strict=False))


def test_split_audio_small_file_is_returned_unchanged(files):
    chunks = split_audio(files["m4a"], max_bytes=10_000_000, name="Talk.M4A")
    assert len(chunks) == 1
    (chunk,) = chunks
    assert chunk.data == files["m4a"] and chunk.fmt == "m4a" and chunk.index == 0
    assert (chunk.start, chunk.end) == (0.0, pytest.approx(CLIP_SECONDS, abs=0.05))
    assert "data" not in repr(chunk)


def test_split_audio_argument_errors(minute, files):
    wav = minute[0]
    with pytest.raises(ValueError, match="max_bytes=3000 is too small"):
        split_audio(wav, max_bytes=3_000)
    with pytest.raises(ValueError, match="max_bytes must be a positive int"):
        split_audio(wav, max_bytes=0)
    with pytest.raises(MediaError, match="x.mp3"):
        split_audio(b"not audio at all" * 10, max_bytes=10, name="x.mp3")


# --------------------------------------------------------------------------------------------
# prepare_upload


def test_prepare_upload_video_becomes_its_audio_track(files):
    video = files["mp4"]
    chunks = prepare_upload(video, name="meeting.mp4", max_bytes=10_000_000)
    assert len(chunks) == 1 and chunks[0].fmt == "mp3"
    assert len(chunks[0].data) < len(video)
    assert probe(chunks[0].data).duration == pytest.approx(CLIP_SECONDS, abs=0.05)
    kept = prepare_upload(video, name="meeting.mp4", max_bytes=10_000_000, prefer_audio_only=False)
    assert kept[0].data == video and kept[0].fmt == "mp4"


def test_prepare_upload_keeps_small_audio_and_splits_big(files, minute):
    same = prepare_upload(files["flac"], name="a.flac", max_bytes=len(files["flac"]))
    assert len(same) == 1 and same[0].data == files["flac"] and same[0].fmt == "flac"
    wav, total, pauses = minute
    parts = prepare_upload(wav, name="long.wav", max_bytes=150_000)
    assert len(parts) >= 2 and all(len(p.data) <= 150_000 for p in parts)
    assert parts[-1].end == pytest.approx(total, abs=1e-3)
    # The whole file as mp3 fits: re-encoding is not needed for a .wav, splitting is.
    assert all(p.fmt == "mp3" for p in parts)


def test_prepare_upload_renames_opus_and_converts_unknown_containers(files, clip):
    opus = prepare_upload(files["opus"], name="voice.opus", max_bytes=10_000_000)
    assert opus[0].data == files["opus"] and opus[0].fmt == "ogg"
    aiff = encode_sf(clip, SR, "AIFF")
    converted = prepare_upload(aiff, name="old.aiff", max_bytes=10_000_000)
    assert converted[0].fmt == "mp3" and converted[0].data != aiff
    assert probe(converted[0].data).duration == pytest.approx(CLIP_SECONDS, abs=0.05)
    with pytest.raises(MediaError, match="fake.mp3"):
        prepare_upload(b"hello " * 100, name="fake.mp3", max_bytes=100)


def test_prepare_upload_reuses_a_given_probe(files, monkeypatch):
    info = probe(files["mp4"], name="meeting.mp4")
    calls = []
    monkeypatch.setattr(_media, "probe", lambda *a, **k: calls.append(a) or info)
    chunks = prepare_upload(files["mp4"], name="meeting.mp4", max_bytes=10_000_000, info=info)
    assert calls == [] and chunks[0].fmt == "mp3" and chunks[0].end == info.duration
    prepare_upload(files["flac"], name="a.flac", max_bytes=10_000_000)
    assert len(calls) == 1  # without info= it probes
    with pytest.raises(TypeError, match="MediaInfo"):
        prepare_upload(files["flac"], name="a.flac", max_bytes=10_000_000, info={"duration": 1})


def test_clip_audio_decodes_once_and_cuts_each_window(clip, files, monkeypatch):
    decodes = []
    real = _media._decode
    monkeypatch.setattr(_media, "_decode", lambda *a, **k: decodes.append(k) or real(*a, **k))
    spans = [(0.5, 1.0), (1.25, 2.0), (CLIP_SECONDS + 1, CLIP_SECONDS + 2)]
    clips = _media.clip_audio(files["wav"], spans, name="a.wav")
    assert len(decodes) == 1 and decodes[0]["start"] == 0.5
    assert [probe(c, name="c.mp3").duration for c in clips[:2]] == [
        pytest.approx(0.5, abs=0.03),
        pytest.approx(0.75, abs=0.03),
    ]
    assert clips[2] == b""  # past the end of the audio
    assert _media.clip_audio(files["wav"], []) == []
    with pytest.raises(ValueError, match="end"):
        _media.clip_audio(files["wav"], [(2.0, 1.0)])


# --------------------------------------------------------------------------------------------
# stitch_segments


def test_stitch_segments_offsets_and_drops_overlap_duplicates():
    a = Chunk(b"", 0.0, 30.0, 0, "mp3")
    b = Chunk(b"", 29.0, 60.0, 1, "mp3")  # 1 s overlap [29, 30)
    c = Chunk(b"", 55.0, 70.0, 2, "mp3")  # 5 s overlap [55, 60)
    seg_a = [
        {"id": 0, "start": 0.0, "end": 10.0, "text": "A1"},
        {"id": 1, "start": 10.0, "end": 29.8, "text": "A2"},
    ]
    seg_b = [
        {"id": 0, "start": 0.0, "end": 0.8, "text": "A2 tail again"},  # midpoint 29.4: dup
        {
            "id": 1,
            "start": 0.7,
            "end": 12.0,
            "text": "B1",
            "words": [
                {"word": "B", "start": 0.7, "end": 1.2},
                {"word": "one", "start": None, "end": None},
            ],
        },
        {"id": 2, "start": 12.0, "end": 28.0, "text": "B2"},
    ]
    seg_c = [
        {"id": 0, "start": 0.5, "end": 2.0, "text": "B2 again"},  # ends before 57.0: dup
        {"id": 1, "start": 1.8, "end": 9.0, "text": "C1"},  # midpoint 60.4: new
    ]
    original = [dict(s) for s in seg_b]
    out = stitch_segments([(c, seg_c), (a, seg_a), (b, seg_b)])  # any order: sorted by index
    assert [s["text"] for s in out] == ["A1", "A2", "B1", "B2", "C1"]
    assert [s["id"] for s in out] == [0, 1, 2, 3, 4]
    starts = [s["start"] for s in out]
    assert starts == pytest.approx([0.0, 10.0, 29.7, 41.0, 56.8], abs=0.1)
    assert out[2]["words"][0]["start"] == pytest.approx(29.7)
    assert out[2]["words"][1]["start"] is None  # a missing timestamp stays missing
    assert seg_b == original  # inputs untouched


def test_stitch_segments_keeps_short_segments_inside_one_chunk():
    a, b = Chunk(b"", 0.0, 10.0, 0, "mp3"), Chunk(b"", 10.0, 20.0, 1, "mp3")
    seg_a = [
        {"start": 0.0, "end": 5.0, "text": "long"},
        {"start": 4.0, "end": 4.5, "text": "inside the previous one"},  # same chunk: kept
    ]
    seg_b = [{"start": 0.0, "end": 2.0, "text": "next"}]
    out = stitch_segments([(a, seg_a), (b, seg_b)])
    assert [(s["text"], s["start"]) for s in out] == [
        ("long", 0.0),
        ("inside the previous one", 4.0),
        ("next", 10.0),
    ]


def test_stitch_segments_without_timestamps_keeps_everything():
    a, b = Chunk(b"", 0.0, 10.0, 0, "mp3"), Chunk(b"", 10.0, 20.0, 1, "mp3")
    out = stitch_segments([(a, [{"text": "one"}]), (b, [{"text": "two"}])])
    assert out == [{"text": "one", "id": 0}, {"text": "two", "id": 1}]


def _w(text: str, start: float | None, end: float | None) -> dict:
    return {"word": text, "start": start, "end": end}


def _seg(words: list[dict], **extra) -> dict:
    """A Whisper-style segment (chunk-relative times) built from its words."""
    timed = [w for w in words if w["start"] is not None]
    return {
        "start": timed[0]["start"],
        "end": max(w["end"] for w in timed),
        "text": "".join(w["word"] for w in words),
        "words": words,
        **extra,
    }


def _all_words(out: list[dict]) -> list[str]:
    return [w["word"].strip() for s in out for w in s["words"]]


def test_stitch_segments_cuts_overlapping_words_at_the_middle_of_the_overlap():
    # Speech ran through the cut: both chunks heard "brown fox jumps" in [29, 30).
    a = Chunk(b"", 0.0, 30.0, 0, "mp3")
    b = Chunk(b"", 29.0, 60.0, 1, "mp3")  # mid = 29.5
    seg_a = [
        _seg([_w(" Hello", 0.0, 0.5), _w(" world.", 0.5, 1.0)]),
        _seg(
            [
                _w(" The", 28.0, 28.4),
                _w(" quick", 28.4, 28.9),
                _w(" brown", 28.9, 29.3),
                _w(" fox", 29.3, 29.6),  # starts 29.3 < 29.5: kept from chunk a
                _w(" jumps", 29.6, 29.9),  # starts at 29.6: chunk b's
            ]
        ),
    ]
    seg_b = [
        _seg(
            [
                _w(" brown", 0.0, 0.3),  # 29.0: chunk a's
                _w(" fox", 0.3, 0.6),  # 29.3: chunk a's
                _w(" jumps", 0.6, 0.9),  # 29.6: kept
                _w(" over", 0.9, 1.2),
                _w(" the", 1.2, 1.4),
                _w(" dog.", 1.4, 2.0),
            ]
        ),
        _seg([_w(" Bye.", 5.0, 5.5)]),
    ]
    original_a, original_b = [dict(s) for s in seg_a], [dict(s) for s in seg_b]
    out = stitch_segments([(a, seg_a), (b, seg_b)])

    expected = "Hello world. The quick brown fox jumps over the dog. Bye.".split()
    assert _all_words(out) == expected  # each word exactly once, none lost
    assert " ".join(s["text"] for s in out).split() == expected
    assert [s["text"] for s in out] == [
        " Hello world.",  # untouched: Whisper's text as it came
        "The quick brown fox",  # trimmed tail, text rebuilt from its words
        "jumps over the dog.",  # trimmed head
        " Bye.",
    ]
    assert [s["id"] for s in out] == [0, 1, 2, 3]
    spans = [t for s in out for t in (s["start"], s["end"])]
    assert spans == pytest.approx([0.0, 1.0, 28.0, 29.6, 29.6, 31.0, 34.0, 34.5])
    word_starts = [w["start"] for s in out for w in s["words"]]
    assert word_starts == pytest.approx(
        [0.0, 0.5, 28.0, 28.4, 28.9, 29.3, 29.6, 29.9, 30.2, 30.4, 34.0]
    )
    assert word_starts == sorted(word_starts)
    assert out[2]["words"][0] == {"word": " jumps", "start": pytest.approx(29.6), "end": 29.9}
    assert seg_a == original_a and seg_b == original_b  # inputs untouched
    assert seg_b[0]["words"][0] == _w(" brown", 0.0, 0.3)


def test_stitch_segments_rebuilds_text_of_stripped_words_with_spaces():
    """deapi_ds stores words stripped; CJK text (no spaces) is concatenated, not spaced."""
    a, b = Chunk(b"", 0.0, 10.0, 0, "mp3"), Chunk(b"", 9.0, 20.0, 1, "mp3")  # mid 9.5
    seg_a = [
        {
            "start": 8.0,
            "end": 9.9,
            "text": "one two, three",
            "words": [_w("one", 8.0, 8.6), _w("two,", 8.6, 9.2), _w("three", 9.6, 9.9)],
        }
    ]
    seg_b = [
        {
            "start": 0.6,
            "end": 2.0,
            "text": "三四五",
            "words": [_w("三", 0.6, 0.9), _w("四", 0.9, 1.5), _w("五", 1.5, 2.0)],
        }
    ]
    out = stitch_segments([(a, seg_a), (b, seg_b)])
    assert [(s["text"], s["start"], s["end"]) for s in out] == [
        ("one two,", 8.0, 9.2),
        ("三四五", 9.6, 11.0),  # not trimmed: text kept exactly
    ]
    seg_b[0]["words"][0]["start"] = 0.4  # "三" now starts at 9.4 < 9.5: chunk a's
    out = stitch_segments([(a, seg_a), (b, seg_b)])
    assert [(s["text"], s["start"]) for s in out] == [("one two,", 8.0), ("四五", 9.9)]


def test_stitch_segments_drops_a_segment_left_without_words():
    a, b = Chunk(b"", 0.0, 10.0, 0, "mp3"), Chunk(b"", 8.0, 20.0, 1, "mp3")  # mid 9.0
    seg_a = [_seg([_w(" one", 7.0, 8.0), _w(" two", 8.0, 8.9)]), _seg([_w(" three", 9.2, 9.8)])]
    seg_b = [
        _seg([_w(" one", 0.0, 0.1)]),  # 8.0: chunk a's, whole segment dropped
        _seg([_w(" two", 0.1, 0.9), _w(" three", 1.2, 1.8), _w(" four", 2.0, 3.0)]),
    ]
    out = stitch_segments([(a, seg_a), (b, seg_b)])
    assert [s["text"] for s in out] == [" one two", "three four"]  # a's " three" went to b
    assert [s["id"] for s in out] == [0, 1]
    assert _all_words(out) == ["one", "two", "three", "four"]
    assert [w["start"] for w in out[1]["words"]] == pytest.approx([9.2, 10.0])


def test_stitch_segments_leaves_chunks_cut_in_a_silence_untouched():
    a, b = Chunk(b"", 0.0, 10.0, 0, "mp3"), Chunk(b"", 10.0, 20.0, 1, "mp3")  # no overlap
    seg_a = [_seg([_w(" late", 9.0, 9.6), _w(" word", 9.9, 10.0)])]
    seg_b = [_seg([_w(" early", 0.0, 0.4), _w(" words", 0.4, 1.0)])]
    out = stitch_segments([(a, seg_a), (b, seg_b)])
    assert [s["text"] for s in out] == [" late word", " early words"]  # text not rebuilt
    assert [(s["start"], s["end"]) for s in out] == [(9.0, 10.0), (10.0, 11.0)]
    assert out[0]["words"] == seg_a[0]["words"]
    assert [w["start"] for w in out[1]["words"]] == [10.0, 10.4]


def test_stitch_segments_without_words_keeps_the_segment_rule_in_an_overlap():
    a, b = Chunk(b"", 0.0, 30.0, 0, "mp3"), Chunk(b"", 29.0, 60.0, 1, "mp3")
    seg_a = [{"start": 20.0, "end": 29.9, "text": "brown fox jumps", "words": []}]
    seg_b = [
        {"start": 0.0, "end": 0.9, "text": "fox jumps"},  # midpoint 29.45 < 30: duplicate
        {"start": 0.6, "end": 5.0, "text": "jumps over the dog", "words": []},  # kept whole
    ]
    out = stitch_segments([(a, seg_a), (b, seg_b)])
    assert [(s["id"], s["text"], s["start"]) for s in out] == [
        (0, "brown fox jumps", 20.0),
        (1, "jumps over the dog", pytest.approx(29.6)),
    ]


def test_stitch_segments_three_overlapping_chunks():
    a = Chunk(b"", 0.0, 10.0, 0, "mp3")
    b = Chunk(b"", 9.0, 20.0, 1, "mp3")  # cut at 9.5
    c = Chunk(b"", 19.0, 30.0, 2, "mp3")  # cut at 19.5
    seg_a = [_seg([_w(" a1", 8.0, 9.0), _w(" a2", 9.2, 9.6), _w(" b1", 9.7, 10.0)])]
    seg_b = [
        _seg([_w(" a2", 0.2, 0.6), _w(" b1", 0.7, 1.5), _w(" b2", 2.0, 5.0)]),
        _seg([_w(" b3", 9.0, 10.3), _w(" c1", 10.6, 11.0)]),
    ]
    seg_c = [_seg([_w(" b3", 0.0, 0.3), _w(" c1", 0.6, 2.0), _w(" c2", 3.0, 4.0)])]
    out = stitch_segments([(c, seg_c), (b, seg_b), (a, seg_a)])  # any order: sorted by index
    assert _all_words(out) == ["a1", "a2", "b1", "b2", "b3", "c1", "c2"]
    assert [s["text"] for s in out] == ["a1 a2", "b1 b2", "b3", "c1 c2"]
    spans = [t for s in out for t in (s["start"], s["end"])]
    assert spans == pytest.approx([8.0, 9.6, 9.7, 14.0, 18.0, 19.3, 19.6, 23.0])
    assert [s["id"] for s in out] == [0, 1, 2, 3]


def test_stitch_segments_keeps_words_without_timestamps_with_their_neighbours():
    a, b = Chunk(b"", 0.0, 10.0, 0, "mp3"), Chunk(b"", 9.0, 20.0, 1, "mp3")  # mid 9.5
    seg_a = [
        _seg(
            [
                _w(" one", 8.0, 8.5),
                _w(" 2,000", None, None),  # between kept words: kept
                _w(" three", 9.0, 9.4),
                _w(" four", 9.6, 9.9),  # chunk b's
                _w(" 5%", None, None),  # follows "four": chunk b's
            ]
        )
    ]
    seg_b = [
        _seg(
            [
                _w(" 2,000", None, None),  # heads the segment: follows "three" (chunk a's)
                _w(" three", 0.0, 0.4),
                _w(" four", 0.6, 0.9),
                _w(" 5%", None, None),  # follows "four": kept
                _w(" six", 1.2, 2.0),
            ]
        )
    ]
    out = stitch_segments([(a, seg_a), (b, seg_b)])
    assert _all_words(out) == ["one", "2,000", "three", "four", "5%", "six"]
    assert [s["text"] for s in out] == ["one 2,000 three", "four 5% six"]
    untimed = [w for s in out for w in s["words"] if w["word"] in (" 2,000", " 5%")]
    assert [(w["start"], w["end"]) for w in untimed] == [(None, None), (None, None)]  # not invented
    spans = [t for s in out for t in (s["start"], s["end"])]
    assert spans == pytest.approx([8.0, 9.4, 9.6, 11.0])


def test_split_transcribe_stitch_matches_whole_file():
    """End to end with the emulator's tone 'speech': chunk timestamps map back within 0.1 s."""
    emulator_media = pytest.importorskip("deapi_ds.emulator._media")
    sentences = [
        "The quick brown fox jumps over the lazy dog.",
        "Pack my box with five dozen liquor jugs.",
        "How vexingly quick daft zebras jump!",
        "Sphinx of black quartz, judge my vow.",
        "Grüße aus Köln, sagte sie.",
        "The five boxing wizards jump quickly.",
    ]
    mp3 = emulator_media.synthesize_speech(" ".join(sentences), voice="alloy", fmt="mp3")
    whole = emulator_media.transcribe_audio(mp3, "talk.mp3")
    chunks = split_audio(mp3, max_bytes=40_000, bitrate=48_000, name="talk.mp3")
    assert len(chunks) >= 2 and all(len(c.data) <= 40_000 for c in chunks)
    results = [
        (chunk, emulator_media.transcribe_audio(chunk.data, chunk.filename("talk"))["segments"])
        for chunk in chunks
    ]
    stitched = stitch_segments(results)
    assert [s["text"] for s in stitched] == [s["text"] for s in whole["segments"]]
    for got, want in zip(stitched, whole["segments"], strict=True):
        assert got["start"] == pytest.approx(want["start"], abs=0.1)
        assert got["end"] == pytest.approx(want["end"], abs=0.1)
        for w_got, w_want in zip(got["words"], want["words"], strict=True):
            assert w_got["start"] == pytest.approx(w_want["start"], abs=0.1)


# --------------------------------------------------------------------------------------------
# SRT / VTT

SEGMENTS = [
    {"start": 0.0, "end": 1.5, "text": "Hello there."},
    {"start": 3725.125, "end": 3728.9994, "text": "Zwei Zeilen:\nÜber Straße & Café <ok>"},
    {"start": 36_000.0, "end": 36_002.25, "text": "日本語のテキスト 🎙️ --> arrows"},
]


def _times_texts(parsed):
    return [(s["start"], s["end"], s["text"]) for s in parsed]


def test_srt_round_trip_hours_unicode_multiline():
    srt = format_srt(SEGMENTS)
    assert "01:02:05,125 --> 01:02:08,999" in srt and "10:00:00,000 --> 10:00:02,250" in srt
    assert srt.startswith("1\n00:00:00,000 --> 00:00:01,500\nHello there.\n\n2\n")
    parsed = parse_srt(srt)
    assert _times_texts(parsed) == [
        (0.0, 1.5, "Hello there."),
        (3725.125, 3728.999, "Zwei Zeilen:\nÜber Straße & Café <ok>"),
        (36000.0, 36002.25, "日本語のテキスト 🎙️ --> arrows"),
    ]
    assert [s["id"] for s in parsed] == [0, 1, 2]
    assert parse_srt("\ufeff" + srt.replace("\n", "\r\n")) == parsed


def test_vtt_round_trip_escapes_and_speakers():
    with_speaker = [dict(SEGMENTS[0], speaker="SPEAKER_1"), *SEGMENTS[1:]]
    vtt = format_vtt(with_speaker)
    assert vtt.startswith("WEBVTT\n\n00:00:00.000 --> 00:00:01.500\n<v SPEAKER_1>Hello there.")
    assert "Café &lt;ok&gt;" in vtt and "--&gt; arrows" in vtt and "&amp;" in vtt
    parsed = parse_vtt(vtt)
    assert _times_texts(parsed) == _times_texts(parse_srt(format_srt(SEGMENTS)))
    assert parsed[0]["speaker"] == "SPEAKER_1" and "speaker" not in parsed[1]
    assert "<v" not in format_vtt(with_speaker, speaker_key=None)


def test_format_accepts_dataframe_and_cleans_text():
    frame = pd.DataFrame(
        {
            "start": [0.0, 2.0, 4.0],
            "end": [1.0, 1.5, 5.0],  # the second ends before it starts: clamped
            "text": pd.array(["  a\n\n  b ", "c", pd.NA], dtype="string"),
        }
    )
    srt = format_srt(frame)
    assert parse_srt(srt) == [
        {"id": 0, "start": 0.0, "end": 1.0, "text": "a\nb"},  # blank line inside removed
        {"id": 1, "start": 2.0, "end": 2.0, "text": "c"},
    ]  # the empty third segment is skipped
    assert len(parse_vtt(format_vtt(frame))) == 2


def test_format_errors_name_the_segment():
    with pytest.raises(ValueError, match=r"format_srt\(\): segment 1 has no start/end"):
        format_srt([{"start": 0, "end": 1, "text": "x"}, {"start": None, "end": 2, "text": "y"}])
    with pytest.raises(ValueError, match="starts before 0"):
        format_vtt([{"start": -1.0, "end": 1.0, "text": "x"}])


def test_parse_vtt_of_foreign_file():
    text = (
        "WEBVTT - made elsewhere\n\nNOTE a comment\nspanning lines\n\n"
        "STYLE\n::cue { color: red }\n\n"
        "intro\n00:05.250 --> 00:07.000 line:0 position:20%\n<c.loud>Hi</c> <i>there</i>&nbsp;!\n\n"
        "1:02:03.004 --> 1:02:04.5\nLast\n"
    )
    assert parse_vtt(text) == [
        {"id": 0, "start": 5.25, "end": 7.0, "text": "Hi there\u00a0!"},
        {"id": 1, "start": 3723.004, "end": 3724.5, "text": "Last"},
    ]
    with pytest.raises(ValueError, match="does not start with 'WEBVTT'"):
        parse_vtt(format_srt(SEGMENTS))
    with pytest.raises(ValueError, match="bad cue timing on line 3"):
        parse_srt("1\nhello\n00:00:01 --> 00:00:02\nx\n")


def test_probe_opus_duration_excludes_the_pre_skip():
    import io

    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, np.zeros(48_000, dtype=np.float32), 48_000, format="OGG", subtype="OPUS")
    assert _media.probe(buf.getvalue(), name="one_second.opus").duration == pytest.approx(
        1.0, abs=0.001
    )


def test_concat_audio_lasts_the_sum_of_its_parts():
    import io

    import soundfile as sf

    parts = []
    for seconds in (0.5, 0.25, 1.0):
        buf = io.BytesIO()
        sf.write(buf, np.zeros(int(24_000 * seconds), dtype=np.float32), 24_000, format="WAV")
        parts.append(buf.getvalue())
    joined = _media.concat_audio(parts, "wav")
    assert _media.probe(joined, name="joined.wav").duration == pytest.approx(1.75, abs=0.001)
