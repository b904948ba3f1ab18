"""Local audio/video helpers for transcription: probe, extract, find silences, split, stitch.

Everything here is a pure function over bytes or a path; nothing touches the network. Media are
decoded and encoded in-process with PyAV (FFmpeg libraries shipped in the ``av`` wheel), so no
system ffmpeg is needed.

* :func:`probe` reads a file's duration (sample-exact for MP3, whose metadata can be wrong), its
  audio codec, sample rate, channels and whether it carries video.
* :func:`extract_audio` decodes the audio track (of an audio or a video file), optionally a
  ``[start, end)`` window, and re-encodes it as mp3, opus (in Ogg), wav, flac or m4a (AAC).
* :func:`find_silences` lists the pauses, from the RMS energy of 10 ms windows of 16 kHz mono PCM.
* :func:`split_audio` cuts a file into chunks whose encoded size is at most ``max_bytes``,
  cutting inside pauses when there is one near the target boundary, otherwise with an overlap.
* :func:`prepare_upload` is the upload policy: a video is reduced to its audio track when that
  is smaller; whatever is still over the limit is split.
* :func:`stitch_segments` joins the per-chunk transcription segments back onto the timeline of
  the original file and drops the segments duplicated by an overlap.
* :func:`format_srt`, :func:`format_vtt`, :func:`parse_srt`, :func:`parse_vtt` write and read
  subtitles.

Errors: a file that is empty, is not audio or video, is corrupt or has no audio stream raises
:class:`MediaError` (a ``ValueError``) whose message names the file. A path that cannot be read
raises the usual ``OSError``. A bad argument raises ``ValueError`` naming the parameter.

Example::

    >>> import io, numpy as np, soundfile as sf
    >>> buf = io.BytesIO()
    >>> sf.write(buf, np.zeros(16_000, dtype="float32"), 16_000, format="WAV")
    >>> probe(buf.getvalue(), name="one_second.wav").duration
    1.0
"""

from __future__ import annotations

import io
import math
import os
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

from ._lazy import lazy_module

av = lazy_module("av")  # lazy: PyAV costs ~0.3 s at import

__all__ = [
    "AUDIO_EXTENSIONS",
    "VIDEO_EXTENSIONS",
    "Chunk",
    "clip_audio",
    "concat_audio",
    "convert_audio",
    "MediaError",
    "MediaInfo",
    "extract_audio",
    "find_silences",
    "format_srt",
    "format_vtt",
    "parse_srt",
    "parse_vtt",
    "prepare_upload",
    "probe",
    "split_audio",
    "stitch_segments",
]

MediaInput = bytes | bytearray | memoryview | str | os.PathLike

#: Audio containers a Whisper-style transcription API takes. OpenAI documents flac, m4a, mp3,
#: mp4, mpeg, mpga, oga, ogg, wav and webm; deAPI says "audio and video". ``.opus`` (Ogg Opus)
#: and ``.aac`` (ADTS) are common enough to accept: :func:`prepare_upload` sends ``.opus`` as
#: ``.ogg`` and re-encodes ``.aac`` to mp3. ``.wma`` is left out (proprietary; pass it through a
#: custom extension list if you need it, it is then re-encoded to mp3 before upload).
AUDIO_EXTENSIONS: frozenset[str] = frozenset(
    {
        ".mp3",
        ".mpga",
        ".mpeg",
        ".m4a",
        ".mp4",
        ".wav",
        ".ogg",
        ".oga",
        ".opus",
        ".flac",
        ".webm",
        ".aac",
    }
)
#: Video containers whose audio track can be transcribed.
VIDEO_EXTENSIONS: frozenset[str] = frozenset(
    {".mp4", ".mov", ".avi", ".mkv", ".webm", ".wmv", ".mpeg", ".m4v"}
)
# Extensions sent as they are by prepare_upload (OpenAI's documented list); others are re-encoded.
_UPLOAD_EXTENSIONS = frozenset(
    {".flac", ".m4a", ".mp3", ".mp4", ".mpeg", ".mpga", ".oga", ".ogg", ".wav", ".webm"}
)
_VIDEO_UPLOAD_EXTENSIONS = frozenset({".mp4", ".mpeg", ".webm"})

# Containers whose duration metadata is exact; anything else (mp3, adts, mpeg) is decoded.
_TRUSTED_DURATION = frozenset({"wav", "flac", "ogg", "mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm"})

# fmt -> (FFmpeg muxer, encoder names to try, supported sample rates or None = any)
_MP3_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)
_OPUS_RATES = (8000, 12000, 16000, 24000, 48000)
_AAC_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 64000, 88200, 96000)
_ENCODERS: dict[str, tuple[str, tuple[str, ...], tuple[int, ...] | None]] = {
    "mp3": ("mp3", ("libmp3lame",), _MP3_RATES),
    "opus": ("ogg", ("libopus", "opus"), _OPUS_RATES),
    "wav": ("wav", ("pcm_s16le",), None),
    "flac": ("flac", ("flac",), None),
    "m4a": ("ipod", ("aac",), _AAC_RATES),
}
# Default bit rate per channel for the lossy formats.
_DEFAULT_BITRATE = {"mp3": 64_000, "opus": 32_000, "m4a": 64_000}
# File extension used when a chunk of this fmt is uploaded (Ogg Opus travels as .ogg).
_UPLOAD_SUFFIX = {"opus": "ogg"}

_ANALYSIS_RATE = 16_000  # Whisper's own rate; plenty for silence detection
_WINDOW = 0.010  # seconds per energy window in find_silences


class MediaError(ValueError):
    """A file cannot be used as audio: empty, not media, corrupt, or without an audio stream.

    The message names the file and says why, e.g.
    ``"notes.mp3: not a readable audio or video file (Invalid data found when processing input)"``.
    ``name`` and ``reason`` are kept as attributes.
    """

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"{name}: {reason}")
        self.name = name
        self.reason = reason

    def __reduce__(self) -> tuple[type[MediaError], tuple[str, str]]:
        return (type(self), (self.name, self.reason))


@dataclass(frozen=True)
class MediaInfo:
    """What :func:`probe` found out about a media file.

    ``duration`` is in seconds (of the audio track); ``container`` is a short name such as
    ``"mp3"``, ``"wav"``, ``"ogg"``, ``"mp4"``, ``"webm"``; ``size`` is in bytes.
    """

    duration: float | None
    has_audio: bool
    has_video: bool
    container: str
    audio_codec: str | None
    sample_rate: int | None
    channels: int | None
    size: int


@dataclass(frozen=True)
class Chunk:
    """One piece of a file ready to upload.

    ``start`` and ``end`` are seconds in the ORIGINAL file; ``fmt`` is the file type (``"mp3"``,
    ``"opus"``, ``"wav"``... or the original extension when the bytes are the original file).
    """

    data: bytes = field(repr=False)
    start: float
    end: float
    index: int
    fmt: str

    @property
    def duration(self) -> float:
        """Length in seconds (``end - start``)."""
        return self.end - self.start

    @property
    def size(self) -> int:
        """Size of ``data`` in bytes."""
        return len(self.data)

    def filename(self, stem: str = "audio") -> str:
        """A file name for the upload: ``stem`` + zero-padded index + extension.

        Ogg Opus chunks get ``.ogg`` (the extension Whisper-style APIs accept). Pass ``stem``
        without an extension.

        >>> Chunk(b"", 0.0, 1.0, 3, "opus").filename("talk")
        'talk.003.ogg'
        """
        suffix = _UPLOAD_SUFFIX.get(self.fmt, self.fmt)
        return f"{stem}.{self.index:03d}.{suffix}"


# --------------------------------------------------------------------------------------------
# input handling


def _describe(data: MediaInput, name: str | None) -> tuple[str, str]:
    """Return (display name, lower-case extension with dot or '')."""
    if name is None:
        if isinstance(data, (str, os.PathLike)):
            name = os.fspath(data)
            name = name if isinstance(name, str) else name.decode(errors="replace")
        else:
            name = "<bytes>"
    ext = os.path.splitext(name)[1].lower() if name != "<bytes>" else ""
    return name, ext


def _size_of(data: MediaInput) -> int:
    if isinstance(data, (bytes, bytearray, memoryview)):
        return memoryview(data).nbytes
    if isinstance(data, (str, os.PathLike)):
        return os.stat(data).st_size
    raise TypeError(
        "Media input must be bytes or a path (str or os.PathLike); "
        f"got {type(data).__name__}. Read the file first or pass its path."
    )


def _read_bytes(data: MediaInput) -> bytes:
    if isinstance(data, bytes):
        return data
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data)
    with open(data, "rb") as fh:
        return fh.read()


@contextmanager
def _open(data: MediaInput, name: str) -> Iterator[Any]:
    """Open ``data`` with PyAV; FFmpeg failures become MediaError naming the file."""
    if _size_of(data) == 0:
        raise MediaError(name, "the file is empty (0 bytes)")
    if isinstance(data, (bytes, bytearray, memoryview)):
        source: Any = io.BytesIO(data)
    else:
        source = os.fspath(data)
    try:
        container = av.open(source, "r")
    except av.FFmpegError as exc:
        raise MediaError(
            name,
            f"not a readable audio or video file ({_ffmpeg_reason(exc)}); "
            "check that it is not truncated or a different kind of file renamed",
        ) from exc
    try:
        yield container
    except av.FFmpegError as exc:
        raise MediaError(name, f"corrupt audio ({_ffmpeg_reason(exc)})") from exc
    finally:
        container.close()


def _ffmpeg_reason(exc: BaseException) -> str:
    strerror = getattr(exc, "strerror", None)
    return strerror or str(exc)


def _audio_stream(container: Any, name: str) -> Any:
    if container.streams.audio:
        return container.streams.audio[0]
    kinds = [
        f"{s.type} {s.codec_context.name}" if s.codec_context is not None else str(s.type)
        for s in container.streams
    ]
    found = ", ".join(kinds) if kinds else "none"
    raise MediaError(name, f"has no audio stream (streams found: {found})")


def _has_real_video(container: Any) -> bool:
    """True when a video stream is not just cover art (an attached picture)."""
    for stream in container.streams.video:
        disposition = stream.disposition
        if not (disposition & av.stream.Disposition.attached_pic):
            return True
    return False


def _container_name(container: Any, ext: str) -> str:
    names = container.format.name.split(",")
    if ext and ext.lstrip(".") in names:
        return ext.lstrip(".")
    if "mp4" in names:
        return "mp4"
    if names[0] == "matroska" and "webm" in names:
        return "webm" if ext == ".webm" else "matroska"
    return names[0]


# --------------------------------------------------------------------------------------------
# probe


def probe(data: MediaInput, *, name: str | None = None) -> MediaInfo:
    """Describe a media file: duration, audio codec, sample rate, channels, video, size.

    The duration is that of the audio track, read from the container when its metadata is
    exact (wav, flac, ogg, mp4/m4a, webm/mkv) and otherwise counted by decoding the audio
    (mp3, whose metadata is wrong for VBR files without a header, adts aac, mpeg...).

    Raises :class:`MediaError` for an empty file, a file that is not audio or video, corrupt
    audio, or a file without an audio stream (``has_audio`` is therefore always true).

    >>> import io, numpy as np, soundfile as sf
    >>> buf = io.BytesIO()
    >>> sf.write(buf, np.zeros((24_000, 2), dtype="float32"), 48_000, format="FLAC")
    >>> info = probe(buf.getvalue(), name="x.flac")
    >>> info.duration, info.container, info.audio_codec, info.sample_rate, info.channels
    (0.5, 'flac', 'flac', 48000, 2)
    """
    display, ext = _describe(data, name)
    size = _size_of(data)
    with _open(data, display) as container:
        stream = _audio_stream(container, display)
        ctx = stream.codec_context
        has_video = _has_real_video(container)
        fmt_name = container.format.name
        meta: float | None = None
        if stream.duration is not None and stream.time_base is not None:
            meta = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            meta = container.duration / av.time_base
        # Opus metadata counts the encoder's pre-skip (6.5 ms a clip): decode and count instead
        trusted = fmt_name in _TRUSTED_DURATION and ctx.name != "opus"
        if trusted and meta is not None and meta > 0:
            # Cheap check that the audio decodes at all, then trust the metadata.
            if not any(frame.samples for frame in _first_frames(container, stream)):
                raise MediaError(display, "no decodable audio (the audio stream is empty)")
            duration = meta
        else:
            duration = _decoded_duration(container, stream, display)
        codec = ctx.codec.canonical_name if ctx.codec is not None else ctx.name
        return MediaInfo(
            duration=duration,
            has_audio=True,
            has_video=has_video,
            container=_container_name(container, ext),
            audio_codec=codec,
            sample_rate=int(ctx.sample_rate) or None,
            channels=int(ctx.layout.nb_channels) or None,
            size=size,
        )


def _first_frames(container: Any, stream: Any, limit: int = 8) -> Iterator[Any]:
    for i, frame in enumerate(container.decode(stream)):
        yield frame
        if frame.samples or i >= limit:
            return


def _decoded_duration(container: Any, stream: Any, name: str) -> float:
    samples: dict[int, int] = {}  # per sample rate, so the sum stays exact
    for frame in container.decode(stream):
        if frame.samples:
            samples[frame.sample_rate] = samples.get(frame.sample_rate, 0) + frame.samples
    seconds = sum(Fraction(n, rate) for rate, n in samples.items())
    if seconds <= 0:
        raise MediaError(name, "no decodable audio (the audio stream is empty)")
    return float(seconds)


# --------------------------------------------------------------------------------------------
# decode / encode


def _check_window(start: float | None, end: float | None) -> None:
    if start is not None and (not math.isfinite(start) or start < 0):
        raise ValueError(f"start must be a number of seconds >= 0; got {start!r}.")
    if end is not None and (not math.isfinite(end) or end <= 0):
        raise ValueError(f"end must be a number of seconds > 0; got {end!r}.")
    if start is not None and end is not None and end <= start:
        raise ValueError(f"end ({end}) must be after start ({start}).")


def _decode(
    data: MediaInput,
    name: str,
    *,
    rate: int | None = None,
    mono: bool = True,
    start: float | None = None,
    end: float | None = None,
) -> tuple[np.ndarray, int]:
    """Decode the first audio track to float32 planar PCM of shape (channels, samples).

    Time 0 is the first decoded sample; ``start``/``end`` are counted in output samples, so
    they agree with :func:`probe`'s durations.
    """
    _check_window(start, end)
    with _open(data, name) as container:
        stream = _audio_stream(container, name)
        src_channels = stream.codec_context.layout.nb_channels or 1
        out_rate = int(rate or stream.codec_context.sample_rate or 48_000)
        layout = "mono" if mono or src_channels == 1 else "stereo"
        resampler = av.AudioResampler(format="fltp", layout=layout, rate=out_rate)
        first = 0 if start is None else round(start * out_rate)
        last = None if end is None else round(end * out_rate)
        pieces: list[np.ndarray] = []
        position = 0  # output samples seen so far

        def take(frames: list[Any]) -> bool:
            nonlocal position
            for out in frames:
                block = out.to_ndarray()
                n = block.shape[1]
                lo, hi = max(first - position, 0), n if last is None else min(last - position, n)
                if hi > lo:
                    pieces.append(block[:, lo:hi])
                position += n
                if last is not None and position >= last:
                    return False
            return True

        keep_going = True
        for frame in container.decode(stream):
            if not frame.samples:
                continue
            frame.pts = None  # the resampler needs no timestamps; odd ones upset it
            if not take(resampler.resample(frame)):
                keep_going = False
                break
        if keep_going:
            take(resampler.resample(None))
    if position == 0:
        raise MediaError(name, "no decodable audio (the audio stream is empty)")
    channels = 1 if layout == "mono" else 2
    if not pieces:
        return np.zeros((channels, 0), dtype=np.float32), out_rate
    pcm = np.concatenate(pieces, axis=1).astype(np.float32, copy=False)
    return pcm, out_rate


def _check_fmt(fmt: str) -> str:
    key = fmt.lower().lstrip(".") if isinstance(fmt, str) else fmt
    if key not in _ENCODERS:
        raise ValueError(
            f"fmt must be one of {sorted(_ENCODERS)}; got {fmt!r}. "
            "Use 'mp3' for the widest compatibility."
        )
    return key


def _output_rate(fmt: str, source_rate: int, requested: int | None) -> int:
    rates = _ENCODERS[fmt][2]
    if requested is not None:
        if not isinstance(requested, int) or requested <= 0:
            raise ValueError(f"sample_rate must be a positive int; got {requested!r}.")
        if rates is not None and requested not in rates:
            raise ValueError(
                f"sample_rate={requested} is not supported by {fmt}; use one of {list(rates)}."
            )
        return requested
    if rates is None or source_rate in rates:
        return source_rate
    higher = [r for r in rates if r >= source_rate]
    return min(higher) if higher else max(rates)


def _encoder_name(fmt: str) -> str:
    for candidate in _ENCODERS[fmt][1]:
        if candidate in av.codecs_available:
            return candidate
    raise RuntimeError(f"This PyAV build has no encoder for {fmt} ({_ENCODERS[fmt][1]}).")


def _encode(pcm: np.ndarray, rate: int, fmt: str, bitrate: int | None) -> bytes:
    """Encode float32 planar PCM (channels, samples) at ``rate`` into ``fmt`` bytes."""
    muxer = _ENCODERS[fmt][0]
    channels = pcm.shape[0]
    layout = "mono" if channels == 1 else "stereo"
    buf = io.BytesIO()
    with av.open(buf, "w", format=muxer) as out:
        stream = out.add_stream(_encoder_name(fmt), rate=rate)
        stream.layout = layout
        if fmt in _DEFAULT_BITRATE:
            stream.bit_rate = int(bitrate or _DEFAULT_BITRATE[fmt] * channels)
        time_base = Fraction(1, rate)
        block = 1 << 16
        for offset in range(0, pcm.shape[1], block):
            piece = np.ascontiguousarray(pcm[:, offset : offset + block])
            frame = av.AudioFrame.from_ndarray(piece, format="fltp", layout=layout)
            frame.sample_rate = rate
            frame.pts = offset
            frame.time_base = time_base
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


def extract_audio(
    data: MediaInput,
    *,
    fmt: str = "mp3",
    bitrate: int | None = None,
    sample_rate: int | None = None,
    mono: bool = True,
    start: float | None = None,
    end: float | None = None,
    name: str | None = None,
) -> bytes:
    """Decode the audio track (of an audio or video file) and re-encode it.

    ``fmt`` is ``"mp3"`` (libmp3lame), ``"opus"`` (Opus in Ogg; 8/12/16/24/48 kHz),
    ``"wav"`` (16-bit PCM), ``"flac"`` or ``"m4a"`` (AAC). ``bitrate`` (bit/s) applies to the
    lossy formats and defaults to 64k (mp3, m4a) or 32k (opus) per channel; it is ignored for
    wav and flac. ``sample_rate`` defaults to the source rate, or the nearest rate the format
    supports. ``start``/``end`` select the window ``[start, end)`` in seconds.

    >>> import io, numpy as np, soundfile as sf
    >>> buf = io.BytesIO()
    >>> sf.write(buf, np.zeros(48_000, dtype="float32"), 16_000, format="WAV")
    >>> mp3 = extract_audio(buf.getvalue(), fmt="mp3", start=1.0, end=2.5)
    >>> round(probe(mp3, name="clip.mp3").duration, 3)
    1.5
    """
    key = _check_fmt(fmt)
    display, _ = _describe(data, name)
    if bitrate is not None and (not isinstance(bitrate, int) or bitrate <= 0):
        raise ValueError(f"bitrate must be a positive int (bit/s); got {bitrate!r}.")
    with _open(data, display) as container:
        source_rate = int(_audio_stream(container, display).codec_context.sample_rate or 48_000)
    rate = _output_rate(key, source_rate, sample_rate)
    pcm, rate = _decode(data, display, rate=rate, mono=mono, start=start, end=end)
    if pcm.shape[1] == 0:
        raise ValueError(
            f"{display}: the window start={start}, end={end} holds no audio "
            f"(the audio is {probe(data, name=display).duration:.3f} s long)."
        )
    return _encode(pcm, rate, key, bitrate)


def concat_audio(parts: Sequence[bytes], fmt: str, *, name: str | None = None) -> bytes:
    """Join encoded clips into one clip of ``fmt`` (mp3, wav, flac, opus, m4a).

    Each part is decoded to PCM at the first part's sample rate, the samples are concatenated
    and encoded once, so the result is one valid file lasting the sum of the parts.
    """
    if fmt not in _ENCODERS:
        raise ValueError(f"Cannot encode {fmt!r}; use one of {sorted(_ENCODERS)}.")
    label = name or f"part.{fmt}"
    first, rate = _decode(parts[0], label)
    pcm = [first] + [_decode(data, label, rate=rate)[0] for data in parts[1:]]
    return _encode(np.concatenate(pcm, axis=1), rate, fmt, None)


#: Raw formats :func:`convert_audio` writes besides the encoders': OpenAI's ``pcm`` (24 kHz
#: signed 16-bit little-endian mono, no header) and ``aac`` (ADTS frames).
_PCM_RATE = 24_000


def convert_audio(data: bytes, src_fmt: str, dst_fmt: str, *, bitrate: int | None = None) -> bytes:
    """Re-encode a clip from ``src_fmt`` to ``dst_fmt`` (mp3, wav, flac, opus, m4a, aac, pcm).

    The audio keeps its samples: it is decoded once at its own sample rate (or the nearest
    rate ``dst_fmt`` supports) and channels, and encoded once, so the result lasts as long as
    the source (to the sample for wav, flac and pcm; Opus durations are counted from the
    decoded samples by :func:`probe`). Used to give speech in formats a server does not return
    itself (deAPI's gateway today answers mp3 only). ``src_fmt == dst_fmt`` returns ``data``.

    >>> import io, numpy as np, soundfile as sf
    >>> buf = io.BytesIO()
    >>> sf.write(buf, np.zeros(24_000, dtype="float32"), 24_000, format="WAV")
    >>> flac = convert_audio(buf.getvalue(), "wav", "flac")
    >>> probe(flac, name="x.flac").duration
    1.0
    """
    src = str(src_fmt).lower().lstrip(".")
    dst = str(dst_fmt).lower().lstrip(".")
    if src == dst:
        return bytes(data)
    label = f"speech.{'ogg' if src == 'opus' else src}"
    if dst == "pcm":
        pcm, _ = _decode(data, label, rate=_PCM_RATE, mono=True)
        return (np.clip(pcm[0], -1.0, 1.0) * 32767.0).round().astype("<i2").tobytes()
    key = "m4a" if dst == "aac" else _check_fmt(dst)
    with _open(data, label) as container:
        stream = _audio_stream(container, label)
        source_rate = int(stream.codec_context.sample_rate or 48_000)
        channels = stream.codec_context.layout.nb_channels or 1
    rate = _output_rate(key, source_rate, None)
    pcm, rate = _decode(data, label, rate=rate, mono=channels == 1)
    if dst == "aac":
        return _encode_adts(pcm, rate, bitrate)
    return _encode(pcm, rate, key, bitrate)


def _encode_adts(pcm: np.ndarray, rate: int, bitrate: int | None) -> bytes:
    """AAC in ADTS frames (what OpenAI's ``aac`` speech format is)."""
    buf = io.BytesIO()
    layout = "mono" if pcm.shape[0] == 1 else "stereo"
    with av.open(buf, "w", format="adts") as out:
        stream = out.add_stream(_encoder_name("m4a"), rate=rate)
        stream.layout = layout
        stream.bit_rate = int(bitrate or _DEFAULT_BITRATE["m4a"] * pcm.shape[0])
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(pcm), format="fltp", layout=layout)
        frame.sample_rate = rate
        frame.pts = 0
        frame.time_base = Fraction(1, rate)
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


def clip_audio(
    data: MediaInput,
    spans: Sequence[tuple[float, float]],
    *,
    fmt: str = "mp3",
    bitrate: int = 32_000,
    sample_rate: int = _ANALYSIS_RATE,
    name: str | None = None,
) -> list[bytes]:
    """Encode the ``[start, end)`` windows of one file as small clips, decoding it only once.

    For a table of segments that play their own audio: each clip is mono ``sample_rate`` audio
    at ``bitrate`` (a 5 s speech clip in mp3 is about 20 KB), so a page of segments stays
    small. Only the part of the file from the first start to the last end is decoded. A window
    beyond the end of the audio gives ``b""``.

    >>> import io, numpy as np, soundfile as sf
    >>> buf = io.BytesIO()
    >>> sf.write(buf, np.zeros(48_000, dtype="float32"), 16_000, format="WAV")
    >>> clips = clip_audio(buf.getvalue(), [(0.0, 1.0), (2.0, 3.0), (5.0, 6.0)])
    >>> [round(probe(c, name="c.mp3").duration, 2) for c in clips[:2]], clips[2]
    ([1.0, 1.0], b'')
    """
    key = _check_fmt(fmt)
    display, _ = _describe(data, name)
    if not isinstance(bitrate, int) or bitrate <= 0:
        raise ValueError(f"bitrate must be a positive int (bit/s); got {bitrate!r}.")
    windows = [(float(a), float(b)) for a, b in spans]
    for a, b in windows:
        _check_window(a, b)
    if not windows:
        return []
    rate = _output_rate(key, sample_rate, sample_rate)
    first, last = min(a for a, _ in windows), max(b for _, b in windows)
    pcm, rate = _decode(data, display, rate=rate, mono=True, start=first or None, end=last)
    base = round(first * rate)
    clips = []
    for a, b in windows:
        piece = pcm[:, max(0, round(a * rate) - base) : max(0, round(b * rate) - base)]
        clips.append(_encode(piece, rate, key, bitrate) if piece.shape[1] else b"")
    return clips


# --------------------------------------------------------------------------------------------
# silences


def _check_silence_args(min_silence: float, threshold_db: float) -> None:
    if not (isinstance(min_silence, (int, float)) and min_silence > 0):
        raise ValueError(f"min_silence must be a number of seconds > 0; got {min_silence!r}.")
    if not (isinstance(threshold_db, (int, float)) and threshold_db < 0):
        raise ValueError(
            f"threshold_db must be negative (dB relative to full scale, e.g. -35.0); "
            f"got {threshold_db!r}."
        )


def _silences_from_pcm(
    pcm: np.ndarray, rate: int, min_silence: float, threshold_db: float
) -> list[tuple[float, float]]:
    mono = pcm.mean(axis=0) if pcm.ndim == 2 else pcm
    n = mono.shape[0]
    if n == 0:
        return []
    win = max(1, round(rate * _WINDOW))
    count = -(-n // win)
    padded = np.zeros(count * win, dtype=np.float32)
    padded[:n] = mono
    frames = padded.reshape(count, win)
    energy = np.einsum("ij,ij->i", frames, frames) / win
    if n % win:  # the last window is partial: average over its real samples only
        energy[-1] = energy[-1] * win / (n % win)
    silent = energy < 10.0 ** (threshold_db / 10.0)
    edges = np.flatnonzero(np.diff(np.concatenate(([False], silent, [False])).astype(np.int8)))
    starts, ends = edges[0::2], edges[1::2]
    result = []
    for s, e in zip(starts, ends, strict=True):
        t0, t1 = s * win / rate, min(e * win, n) / rate
        if t1 - t0 >= min_silence - 1e-9:
            result.append((round(float(t0), 3), round(float(t1), 3)))
    return result


def find_silences(
    data: MediaInput,
    *,
    min_silence: float = 0.3,
    threshold_db: float = -35.0,
    name: str | None = None,
) -> list[tuple[float, float]]:
    """Return ``(start, end)`` seconds of every pause of at least ``min_silence`` seconds.

    A pause is a run of 10 ms windows whose RMS level (of 16 kHz mono PCM) is below
    ``threshold_db`` dBFS. Leading and trailing silence are included.

    >>> import io, numpy as np, soundfile as sf
    >>> sr = 16_000
    >>> tone = 0.5 * np.sin(2 * np.pi * 440 * np.arange(sr) / sr)
    >>> audio = np.concatenate([tone, np.zeros(sr // 2), tone]).astype("float32")
    >>> buf = io.BytesIO()
    >>> sf.write(buf, audio, sr, format="WAV")
    >>> find_silences(buf.getvalue())
    [(1.0, 1.5)]
    """
    _check_silence_args(min_silence, threshold_db)
    display, _ = _describe(data, name)
    pcm, rate = _decode(data, display, rate=_ANALYSIS_RATE, mono=True)
    return _silences_from_pcm(pcm, rate, min_silence, threshold_db)


# --------------------------------------------------------------------------------------------
# splitting


def _bytes_per_second(fmt: str, bitrate: int, rate: int) -> float:
    if fmt == "wav":
        return rate * 2.0
    if fmt == "flac":
        return rate * 2.0 * 0.75  # flac rarely compresses speech below ~60 % of PCM
    return bitrate / 8.0 * 1.03


def _plan(
    lo: float,
    hi: float,
    target: float,
    silences: Sequence[tuple[float, float]],
    overlap: float,
) -> list[tuple[float, float]]:
    """Cut [lo, hi) into spans of at most ``target`` seconds, preferring cuts inside silences."""
    length = hi - lo
    if length <= target:
        return [(lo, hi)]
    count = max(2, math.ceil((length - overlap) / (target - overlap)))
    aim = min(target, (length + (count - 1) * overlap) / count)
    spans: list[tuple[float, float]] = []
    pos = lo
    while hi - pos > target:
        ideal = pos + aim
        earliest, limit = pos + 0.5 * aim, pos + target
        best: float | None = None
        for s, e in silences:
            if s >= limit:
                break
            pad = min(0.1, (e - s) / 4)
            inner_lo, inner_hi = max(s + pad, earliest), min(e - pad, limit)
            if inner_hi <= inner_lo:
                continue
            cut = min(max((s + e) / 2, inner_lo), inner_hi)
            if best is None or abs(cut - ideal) < abs(best - ideal):
                best = cut
        if best is not None:
            spans.append((pos, best))
            pos = best
        else:
            spans.append((pos, ideal))
            pos = ideal - overlap
    spans.append((pos, hi))
    return spans


def split_audio(
    data: MediaInput,
    *,
    max_bytes: int,
    fmt: str = "mp3",
    overlap: float = 1.0,
    bitrate: int = 64_000,
    sample_rate: int = _ANALYSIS_RATE,
    min_silence: float = 0.3,
    threshold_db: float = -35.0,
    name: str | None = None,
) -> list[Chunk]:
    """Split a file into encoded chunks of at most ``max_bytes`` bytes each.

    A file already within ``max_bytes`` comes back as one chunk holding the original bytes
    (``fmt`` = its extension). Otherwise the audio is decoded once to mono ``sample_rate`` PCM
    (16 kHz, Whisper's own rate), cut into spans whose estimated size (``bitrate`` x duration
    plus a margin) fits, and each span is encoded as ``fmt``; a chunk that still comes out too
    big is split again. Cuts go inside a pause (see :func:`find_silences`) near the target
    boundary, so no word is cut; where there is no pause, consecutive chunks overlap by
    ``overlap`` seconds. ``Chunk.start``/``Chunk.end`` are seconds in the original file.

    >>> import io, numpy as np, soundfile as sf
    >>> sr = 16_000
    >>> tone = 0.5 * np.sin(2 * np.pi * 300 * np.arange(3 * sr) / sr)
    >>> audio = np.concatenate([tone, np.zeros(sr), tone]).astype("float32")
    >>> buf = io.BytesIO()
    >>> sf.write(buf, audio, sr, format="WAV")
    >>> chunks = split_audio(buf.getvalue(), max_bytes=40_000, bitrate=64_000)
    >>> [(c.start, c.end, c.fmt) for c in chunks]
    [(0.0, 3.5, 'mp3'), (3.5, 7.0, 'mp3')]
    """
    key = _check_fmt(fmt)
    if not isinstance(max_bytes, int) or max_bytes <= 0:
        raise ValueError(f"max_bytes must be a positive int; got {max_bytes!r}.")
    if not (isinstance(overlap, (int, float)) and 0 <= overlap):
        raise ValueError(f"overlap must be a number of seconds >= 0; got {overlap!r}.")
    if not isinstance(bitrate, int) or bitrate <= 0:
        raise ValueError(f"bitrate must be a positive int (bit/s); got {bitrate!r}.")
    _check_silence_args(min_silence, threshold_db)
    display, ext = _describe(data, name)
    if _size_of(data) <= max_bytes:
        info = probe(data, name=display)
        original_fmt = ext.lstrip(".") or info.container
        return [Chunk(_read_bytes(data), 0.0, float(info.duration or 0.0), 0, original_fmt)]

    rate = _output_rate(key, sample_rate, sample_rate)
    pcm, rate = _decode(data, display, rate=rate, mono=True)
    total = pcm.shape[1] / rate
    silences = _silences_from_pcm(pcm, rate, min_silence, threshold_db)
    per_second = _bytes_per_second(key, bitrate, rate)
    overhead = 2048.0
    target = (max_bytes * 0.92 - overhead) / per_second
    shortest = max(1.0, 2.5 * overlap)
    if target < shortest:
        raise ValueError(
            f"max_bytes={max_bytes} is too small for {display}: {key} at {bitrate} bit/s holds "
            f"only {max(target, 0):.2f} s per chunk (need at least {shortest:.1f} s). "
            "Raise max_bytes, lower bitrate or overlap."
        )

    pending = _plan(0.0, total, target, silences, overlap)
    done: list[tuple[float, float, bytes]] = []
    while pending:
        lo, hi = pending.pop(0)
        i0, i1 = round(lo * rate), min(round(hi * rate), pcm.shape[1])
        encoded = _encode(pcm[:, i0:i1], rate, key, bitrate)
        if len(encoded) <= max_bytes:
            done.append((i0 / rate, i1 / rate, encoded))
            continue
        smaller = (hi - lo) * max_bytes / len(encoded) * 0.85
        if smaller < shortest:
            raise ValueError(
                f"max_bytes={max_bytes} is too small for {display}: {hi - lo:.2f} s of {key} "
                f"encodes to {len(encoded)} bytes. Raise max_bytes or lower bitrate."
            )
        pending[:0] = _plan(lo, hi, smaller, silences, overlap)
    return [
        Chunk(encoded, start, end, index, key) for index, (start, end, encoded) in enumerate(done)
    ]


def prepare_upload(
    data: MediaInput,
    *,
    name: str,
    max_bytes: int,
    prefer_audio_only: bool = True,
    fmt: str = "mp3",
    bitrate: int = 64_000,
    sample_rate: int = _ANALYSIS_RATE,
    info: MediaInfo | None = None,
    max_video_bytes: int | None = None,
) -> list[Chunk]:
    """Turn one file into the chunk(s) to upload for transcription.

    Policy, in order:

    1. Files whose extension a Whisper-style API may not take (anything outside flac, m4a,
       mp3, mp4, mpeg, mpga, oga, ogg, wav, webm) are re-encoded to ``fmt``; Ogg Opus files
       named ``.opus`` are sent unchanged as ``ogg``.
    2. A video (``prefer_audio_only=True``) is replaced by its audio track, encoded as ``fmt``
       (mono, ``sample_rate``, ``bitrate``), when that is smaller.
    3. Whatever is still over ``max_bytes`` is split with :func:`split_audio`, from the
       original file, so timestamps stay exact.

    ``max_bytes`` is the limit for audio; ``max_video_bytes`` (default: ``max_bytes``) the
    limit for a video sent as it is (deAPI today: 20 MB audio, 50 MB video).

    Returns chunks in order; ``Chunk.filename(stem)`` gives an upload name. Raises
    :class:`MediaError` for files that are not usable audio. Pass ``info`` (what :func:`probe`
    returned for these bytes) when you already probed the file, so it is not probed again.
    """
    display, ext = _describe(data, name)
    key = _check_fmt(fmt)
    if not isinstance(max_bytes, int) or max_bytes <= 0:
        raise ValueError(f"max_bytes must be a positive int; got {max_bytes!r}.")
    if info is None:
        info = probe(data, name=display)
    elif not isinstance(info, MediaInfo):
        raise TypeError(f"info must be a MediaInfo from probe(); got {type(info).__name__}.")
    duration = float(info.duration or 0.0)
    original = _read_bytes(data)
    current, current_fmt = original, ext.lstrip(".") or info.container

    convert = ext not in _UPLOAD_EXTENSIONS and not (ext == ".opus" and info.container == "ogg")
    if ext == ".opus" and not convert:
        current_fmt = "ogg"
    if convert or (prefer_audio_only and info.has_video):
        audio = extract_audio(
            original, fmt=key, bitrate=bitrate, sample_rate=sample_rate, mono=True, name=display
        )
        if convert or len(audio) < len(current):
            current, current_fmt = audio, key

    limit = max_bytes
    if current is original and info.has_video and max_video_bytes is not None:
        if not isinstance(max_video_bytes, int) or max_video_bytes <= 0:
            raise ValueError(f"max_video_bytes must be a positive int; got {max_video_bytes!r}.")
        limit = max_video_bytes
    if len(current) <= limit:
        return [Chunk(current, 0.0, duration, 0, current_fmt)]
    return split_audio(
        original,
        max_bytes=max_bytes,
        fmt=key,
        bitrate=bitrate,
        sample_rate=sample_rate,
        name=display,
    )


# --------------------------------------------------------------------------------------------
# stitching


def _shifted(value: Any, offset: float) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return value
    return float(value) + offset


def _number(value: Any) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def _word_text(word: Mapping[str, Any]) -> str:
    text = word.get("word")
    if text is None:
        text = word.get("text")
    if text is None or (isinstance(text, float) and math.isnan(text)):
        return ""
    return str(text)


def _join_words(words: Sequence[Mapping[str, Any]], original: Any) -> str:
    """Rebuild a segment's text from (a subset of) its words.

    Whisper's words carry their leading space (``" hello"``): they are concatenated as they
    are. Words already stripped (as deapi_ds stores them) are joined with a space, unless the
    segment's original text shows that its script writes words without spaces (Japanese,
    Chinese...), in which case they are concatenated.
    """
    texts = [_word_text(w) for w in words]
    if any(t[:1].isspace() or t[-1:].isspace() for t in texts):
        return "".join(texts).strip()
    text = "" if original is None or isinstance(original, float) else str(original).strip()
    sep = " " if (not text or any(ch.isspace() for ch in text)) else ""
    return sep.join(t.strip() for t in texts if t.strip()).strip()


def _trim_words(
    seg: dict[str, Any], low: float | None, high: float | None
) -> dict[str, Any] | None:
    """Keep the words of ``seg`` (already on the original timeline) starting in [low, high).

    A word without a start follows the nearest timed word before it in the segment (or after
    it, when none precedes). A segment whose words were trimmed gets its text rebuilt and its
    start/end moved to its kept words; ``None`` means no word is left (drop the segment).
    """
    words: list[dict[str, Any]] = seg["words"]
    starts = [_number(w.get("start")) for w in words]
    decisions: list[bool | None] = [
        None if s is None else (low is None or s >= low) and (high is None or s < high)
        for s in starts
    ]
    previous: bool | None = None
    for i, decision in enumerate(decisions):  # untimed words follow the previous timed one
        if decision is None:
            decisions[i] = previous
        else:
            previous = decision
    following: bool | None = None
    for i in range(len(decisions) - 1, -1, -1):  # ... or the next one, at the segment's head
        if decisions[i] is None:
            decisions[i] = following
        else:
            following = decisions[i]
    kept = [w for w, keep in zip(words, decisions, strict=True) if keep]
    if len(kept) == len(words):
        return seg
    if not kept:
        return None
    seg["text"] = _join_words(kept, seg.get("text"))
    seg["words"] = kept
    kept_starts = [s for s in (_number(w.get("start")) for w in kept) if s is not None]
    kept_ends = [e for e in (_number(w.get("end")) for w in kept) if e is not None]
    if kept_starts:
        seg["start"] = min(kept_starts)
    if kept_ends:
        seg["end"] = max(kept_ends)
    return seg


def stitch_segments(
    chunks_results: Sequence[tuple[Chunk, Sequence[Mapping[str, Any]]]],
    *,
    tolerance: float = 0.05,
) -> list[dict[str, Any]]:
    """Join per-chunk transcription segments onto the original file's timeline.

    Each segment's ``start``/``end`` (and those of its ``words``, if any) is offset by its
    chunk's ``start``. Where chunk k+1 overlaps chunk k (``chunk[k+1].start < chunk[k].end``),
    the speech of the overlap was transcribed twice and is de-duplicated:

    * Segments with word timestamps are cut at the middle of the overlap,
      ``mid = (chunk[k+1].start + chunk[k].end) / 2``: chunk k keeps the words starting before
      ``mid``, chunk k+1 those starting at or after it (a word without a start follows its
      neighbours in the segment). A segment that lost words gets its text rebuilt from the
      kept ones and its ``start``/``end`` moved to them; a segment left with no words is
      dropped.
    * Other segments (no word timestamps, or in a chunk that does not overlap the previous
      one) are dropped as duplicates when their midpoint lies in the region chunk k already
      covered, or when they end no later than the last kept segment (+ ``tolerance``). A
      segment that starts inside the overlap but runs well past it is kept: dropping it
      would lose the rest of the sentence.

    Chunks cut in a silence (no overlap) are not trimmed. Segments without timestamps are kept
    as they are. ``id`` is renumbered 0, 1, 2...; the input dicts are not modified.

    >>> a = Chunk(b"", 0.0, 10.0, 0, "mp3")
    >>> b = Chunk(b"", 9.0, 20.0, 1, "mp3")
    >>> out = stitch_segments([
    ...     (a, [{"id": 0, "start": 0.0, "end": 9.5, "text": "one"}]),
    ...     (b, [{"id": 0, "start": 0.0, "end": 0.5, "text": "one"},
    ...          {"id": 1, "start": 1.0, "end": 4.0, "text": "two"}]),
    ... ])
    >>> [(s["id"], s["start"], s["end"], s["text"]) for s in out]
    [(0, 0.0, 9.5, 'one'), (1, 10.0, 13.0, 'two')]

    With words, an overlap cut in the middle of speech keeps each word once:

    >>> w = lambda text, start, end: {"word": text, "start": start, "end": end}
    >>> out = stitch_segments([
    ...     (a, [{"start": 8.0, "end": 10.0, "text": "red green blue",
    ...           "words": [w(" red", 8.0, 8.8), w(" green", 8.8, 9.6), w(" blue", 9.6, 10.0)]}]),
    ...     (b, [{"start": 0.1, "end": 2.0, "text": "green blue sky",
    ...           "words": [w(" green", 0.1, 0.6), w(" blue", 0.6, 1.0), w(" sky", 1.0, 2.0)]}]),
    ... ])
    >>> [(s["start"], s["end"], s["text"]) for s in out]
    [(8.0, 9.6, 'red green'), (9.6, 11.0, 'blue sky')]
    """
    ordered = sorted(chunks_results, key=lambda pair: pair[0].index)
    # Word-level cut between each pair of overlapping consecutive chunks (original seconds).
    cuts: list[float | None] = [
        (float(nxt.start) + float(prev.end)) / 2 if float(nxt.start) < float(prev.end) else None
        for (prev, _), (nxt, _) in zip(ordered, ordered[1:], strict=False)
    ]
    result: list[dict[str, Any]] = []
    last_kept_end: float | None = None
    covered_until: float | None = None  # end of the previous chunk, in original seconds
    for k, (chunk, segments) in enumerate(ordered):
        offset = float(chunk.start)
        low = cuts[k - 1] if k > 0 else None
        high = cuts[k] if k < len(cuts) else None
        # Duplicates can only come from the previous chunks: compare with their state only.
        previous_end = last_kept_end
        for segment in segments:
            seg = dict(segment)
            start, end = _number(seg.get("start")), _number(seg.get("end"))
            if start is not None:
                seg["start"] = start + offset
            if end is not None:
                seg["end"] = end + offset
            timed_words = False
            if isinstance(seg.get("words"), list):
                words = []
                for word in seg["words"]:
                    w = dict(word)
                    for key in ("start", "end"):
                        if key in w:
                            w[key] = _shifted(w[key], offset)
                    timed_words = timed_words or _number(w.get("start")) is not None
                    words.append(w)
                seg["words"] = words
            if timed_words and (low is not None or high is not None):
                trimmed = _trim_words(seg, low, high)
                if trimmed is None:
                    continue
                seg = trimmed
            start, end = _number(seg.get("start")), _number(seg.get("end"))
            if timed_words and low is not None:
                # The word cut already de-duplicated the overlap with the previous chunk.
                if end is not None:
                    last_kept_end = end if last_kept_end is None else max(last_kept_end, end)
            elif start is not None and end is not None:
                if covered_until is not None and (start + end) / 2 < covered_until:
                    continue
                if previous_end is not None and end <= previous_end + tolerance:
                    continue
                last_kept_end = end if last_kept_end is None else max(last_kept_end, end)
            result.append(seg)
        covered_until = float(chunk.end)
    for i, seg in enumerate(result):
        seg["id"] = i
    return result


# --------------------------------------------------------------------------------------------
# subtitles


def _records(segments: Any) -> list[Mapping[str, Any]]:
    if hasattr(segments, "to_dict") and hasattr(segments, "columns"):  # a DataFrame
        return list(segments.to_dict("records"))
    return list(segments)


def _timestamp(seconds: float, sep: str) -> str:
    millis = round(seconds * 1000)
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{sep}{millis:03d}"


def _cues(
    segments: Any, text_key: str, function: str
) -> Iterator[tuple[float, float, str, Mapping[str, Any]]]:
    for i, seg in enumerate(_records(segments)):
        start, end = _number(seg.get("start")), _number(seg.get("end"))
        if start is None or end is None:
            raise ValueError(
                f"{function}(): segment {i} has no start/end time ({seg.get('start')!r}, "
                f"{seg.get('end')!r}); subtitles need timestamps (use response_format="
                "'verbose_json')."
            )
        if start < 0:
            raise ValueError(f"{function}(): segment {i} starts before 0 ({start}).")
        text = seg.get(text_key)
        if text is None or (isinstance(text, float) and math.isnan(text)):
            text = ""
        lines = [line.strip() for line in str(text).strip().splitlines()]
        text = "\n".join(line for line in lines if line)
        if not text:
            continue
        yield start, max(start, end), text, seg


def format_srt(
    segments: Iterable[Mapping[str, Any]] | Any,
    *,
    text_key: str = "text",
    speaker_key: str | None = "speaker",
) -> str:
    """Format segments (dicts or a DataFrame with start, end, text) as SubRip (SRT).

    Cues are numbered from 1; blank lines inside a text are removed (they would end the cue);
    segments with empty text are skipped; an end before its start is clamped to the start.
    A segment's ``speaker`` (if present and not empty) prefixes its text (``SPEAKER_00: ...``);
    ``speaker_key=None`` leaves speakers out.

    >>> print(format_srt([{"start": 3661.5, "end": 3663.25, "text": "Hello\\nworld"}]), end="")
    1
    01:01:01,500 --> 01:01:03,250
    Hello
    world
    """
    blocks = []
    for n, (start, end, text, seg) in enumerate(_cues(segments, text_key, "format_srt"), 1):
        speaker = seg.get(speaker_key) if speaker_key else None
        if isinstance(speaker, str) and speaker.strip():
            text = f"{speaker.strip()}: {text}"
        blocks.append(f"{n}\n{_timestamp(start, ',')} --> {_timestamp(end, ',')}\n{text}\n")
    return "\n".join(blocks)


def _vtt_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def format_vtt(
    segments: Iterable[Mapping[str, Any]] | Any,
    *,
    text_key: str = "text",
    speaker_key: str | None = "speaker",
) -> str:
    """Format segments (dicts or a DataFrame with start, end, text) as WebVTT.

    ``&``, ``<`` and ``>`` are escaped; a segment's ``speaker`` (if present and not empty)
    becomes a voice tag ``<v SPEAKER>``. Pass ``speaker_key=None`` to leave speakers out.

    >>> print(format_vtt([{"start": 1.0, "end": 2.0, "text": "a < b", "speaker": "S1"}]), end="")
    WEBVTT
    <BLANKLINE>
    00:00:01.000 --> 00:00:02.000
    <v S1>a &lt; b
    """
    blocks = ["WEBVTT\n"]
    for start, end, text, seg in _cues(segments, text_key, "format_vtt"):
        body = _vtt_escape(text)
        speaker = seg.get(speaker_key) if speaker_key else None
        if isinstance(speaker, str) and speaker.strip():
            body = f"<v {speaker.strip()}>" + body
        blocks.append(f"{_timestamp(start, '.')} --> {_timestamp(end, '.')}\n{body}\n")
    return "\n".join(blocks)


_TIME = r"(?:(\d+):)?(\d{1,2}):(\d{1,2})[,.](\d{1,3})"
_TIMING = re.compile(rf"^\s*{_TIME}\s*-->\s*{_TIME}(?:\s.*)?$")


def _seconds(hours: str | None, minutes: str, secs: str, frac: str) -> float:
    value = int(hours or 0) * 3600 + int(minutes) * 60 + int(secs) + int(frac.ljust(3, "0")) / 1000
    return round(value, 3)


def _parse_blocks(text: str, kind: str) -> list[tuple[float, float, list[str]]]:
    lines = text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n").split("\n")
    cues: list[tuple[float, float, list[str]]] = []
    i = 0
    while i < len(lines):
        match = _TIMING.match(lines[i])
        if not match:
            if "-->" in lines[i]:
                raise ValueError(f"parse_{kind}(): bad cue timing on line {i + 1}: {lines[i]!r}")
            i += 1
            continue
        g = match.groups()
        start, end = _seconds(*g[:4]), _seconds(*g[4:])
        i += 1
        body: list[str] = []
        while i < len(lines) and lines[i].strip():
            body.append(lines[i])
            i += 1
        cues.append((start, end, body))
    return cues


def parse_srt(text: str) -> list[dict[str, Any]]:
    """Parse SubRip text into ``[{"id", "start", "end", "text"}]`` (ids from 0).

    >>> parse_srt("1\\n00:00:01,000 --> 00:00:02,500\\nHi\\n")
    [{'id': 0, 'start': 1.0, 'end': 2.5, 'text': 'Hi'}]
    """
    return [
        {"id": i, "start": start, "end": end, "text": "\n".join(line.strip() for line in body)}
        for i, (start, end, body) in enumerate(_parse_blocks(text, "srt"))
    ]


_VOICE = re.compile(r"<v(?:\.[^ >]*)?\s+([^>]*)>")
_TAG = re.compile(r"<[^>]*>")
_ENTITIES = {"&lt;": "<", "&gt;": ">", "&nbsp;": "\u00a0", "&lrm;": "\u200e", "&rlm;": "\u200f"}


def _vtt_text(body: list[str]) -> tuple[str, str | None]:
    raw = "\n".join(line.strip() for line in body)
    voice = _VOICE.search(raw)
    plain = _TAG.sub("", raw)
    for entity, char in _ENTITIES.items():
        plain = plain.replace(entity, char)
    plain = plain.replace("&amp;", "&")
    return plain, (voice.group(1).strip() if voice else None)


def parse_vtt(text: str) -> list[dict[str, Any]]:
    """Parse WebVTT text into ``[{"id", "start", "end", "text"}]`` (+ ``"speaker"`` from ``<v>``).

    Cue identifiers, cue settings, NOTE/STYLE/REGION blocks and markup tags are skipped;
    entities are decoded.

    >>> parse_vtt("WEBVTT\\n\\n00:01.000 --> 00:02.000 align:start\\n<v Ann>Tom &amp; Jerry\\n")
    [{'id': 0, 'start': 1.0, 'end': 2.0, 'text': 'Tom & Jerry', 'speaker': 'Ann'}]
    """
    if not text.lstrip("\ufeff").startswith("WEBVTT"):
        raise ValueError("parse_vtt(): the text does not start with 'WEBVTT'; is it SRT?")
    result = []
    for i, (start, end, body) in enumerate(_parse_blocks(text, "vtt")):
        plain, speaker = _vtt_text(body)
        cue: dict[str, Any] = {"id": i, "start": start, "end": end, "text": plain}
        if speaker is not None:
            cue["speaker"] = speaker
        result.append(cue)
    return result


def stitch_records(parts: Sequence[tuple[Chunk, dict[str, Any]]]) -> dict[str, Any]:
    """Join chunks' transcription records (text, language, segments, words) onto the original
    file's timeline: offsets added, the overlap de-duplicated (:func:`stitch_segments`)."""
    pairs = []
    loose: list[dict[str, Any]] = []
    for chunk, rec in parts:
        by_seg: dict[int, list[dict[str, Any]]] = {}
        for order, w in enumerate(rec["words"]):
            w = {**w, "_chunk": chunk.index, "_ord": order}
            if w["segment"] is None:
                for k in ("start", "end"):
                    if w[k] is not None:
                        w[k] = w[k] + chunk.start
                loose.append(w)
            else:
                by_seg.setdefault(int(w["segment"]), []).append(w)
        segs = [{**s, "words": by_seg.get(int(s["id"]), [])} for s in rec["segments"]]
        pairs.append((chunk, segs))
    stitched = stitch_segments(pairs)
    segments, words = [], []
    for seg in stitched:
        for w in seg.pop("words", []) or []:
            words.append({**w, "segment": int(seg["id"])})
        segments.append(seg)
    words.extend(loose)
    words.sort(key=lambda w: (w["_chunk"], w["_ord"]))
    for w in words:
        w.pop("_chunk", None)
        w.pop("_ord", None)
    recs = [rec for _, rec in parts]
    if segments:
        text = " ".join(s["text"] for s in segments if s["text"])
    else:
        text = " ".join(r["text"] for r in recs if r["text"])
    languages = Counter(r["language"] for r in recs if r["language"])
    durations = [r["api_duration"] for r in recs]
    return {
        "text": text,
        "language": languages.most_common(1)[0][0] if languages else None,
        "api_duration": None if any(d is None for d in durations) else float(sum(durations)),
        "response_format": recs[0]["response_format"] if recs else None,
        "segments": segments,
        "words": words,
    }
