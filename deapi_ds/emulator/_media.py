"""Deterministic fake media for the deAPI emulator: images, speech, transcripts and videos.

Everything here is a pure function from bytes/str to bytes/dict. Nothing touches the network or
the file system, and the same input always gives the same output.

Speech is not a voice: :func:`synthesize_speech` turns every UTF-8 byte of the text into a short
dual-tone burst (one of 16 "low" by one of 16 "high" frequencies, like DTMF), separates bytes by a
short silence, words by a longer one and sentences by a much longer one.
:func:`transcribe_audio` finds the bursts from the energy envelope and reads each burst's two
tones with a small DFT, so it needs no alignment: the text comes back exactly after lossy
encoding (mp3, Opus, AAC), resampling, cutting at a silence, concatenation or muxing into a video,
with word timestamps relative to the bytes it was given. Any other audio (noise, music, real
speech) gets deterministic pseudo-text derived from a hash of its samples.

>>> wav = synthesize_speech("Hello world. How are you?", voice="alloy", fmt="wav")
>>> result = transcribe_audio(wav, "speech.wav")
>>> result["text"], [s["text"] for s in result["segments"]]
('Hello world. How are you?', ['Hello world.', 'How are you?'])
>>> image_size(render_png("a red fox", 64, 48))
(64, 48)

Only the standard library, numpy, Pillow, soundfile and PyAV are used: this package must not
import anything from ``deapi_ds`` outside ``deapi_ds.emulator``.
"""

from __future__ import annotations

import hashlib
import io
import math
import random
import re
import unicodedata
import zlib
from collections.abc import Iterable
from fractions import Fraction
from typing import Any

import av
import numpy as np
import soundfile as sf
from PIL import Image, ImageDraw, ImageFont, ImageOps, UnidentifiedImageError

__all__ = [
    "MediaError",
    "SPEECH_FORMATS",
    "audio_duration",
    "image_size",
    "make_video_with_audio",
    "render_mp4",
    "render_png",
    "synthesize_speech",
    "transcribe_audio",
    "voice_class",
]


class MediaError(ValueError):
    """Raised when media bytes cannot be decoded or a media parameter is unsupported.

    >>> try:
    ...     audio_duration(b"just some text", "notes.mp3")
    ... except MediaError as exc:
    ...     print("cannot decode" in str(exc).lower())
    True
    """


# --------------------------------------------------------------------------------------------
# Shared helpers
# --------------------------------------------------------------------------------------------


def _digest(*parts: object) -> bytes:
    """SHA-256 over the reprs of ``parts`` (stable across processes, unlike ``hash()``)."""
    h = hashlib.sha256()
    for part in parts:
        h.update(part if isinstance(part, bytes) else repr(part).encode("utf-8"))
        h.update(b"\x1f")
    return h.digest()


def _rng(*parts: object) -> random.Random:
    """A ``random.Random`` seeded from ``parts`` (its stream is stable across Python versions)."""
    return random.Random(int.from_bytes(_digest(*parts)[:8], "big"))


def _palette(rng: random.Random, n: int) -> list[tuple[int, int, int]]:
    """``n`` saturated RGB colours with well-spread hues."""
    base = rng.random()
    colours = []
    for i in range(n):
        hue = (base + i / n + rng.uniform(-0.08, 0.08)) % 1.0
        sat = rng.uniform(0.55, 0.95)
        val = rng.uniform(0.55, 0.98)
        colours.append(_hsv_to_rgb(hue, sat, val))
    return colours


def _hsv_to_rgb(h: float, s: float, v: float) -> tuple[int, int, int]:
    i = int(h * 6.0) % 6
    f = h * 6.0 - int(h * 6.0)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    r, g, b = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]
    return round(r * 255), round(g * 255), round(b * 255)


def _check_size(width: int, height: int, *, where: str, limit: int = 8192) -> None:
    for name, value in (("width", width), ("height", height)):
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= limit:
            raise MediaError(
                f"The {name!r} argument of {where}() must be an int in [1, {limit}]. Got {value!r}."
            )


# --------------------------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------------------------


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except (ImportError, OSError, TypeError):  # Pillow without FreeType
        return ImageFont.load_default()


def _ascii_caption(prompt: str, max_words: int = 8) -> str:
    """The first words of ``prompt`` in ASCII (Pillow's embedded font has no other glyphs)."""
    text = unicodedata.normalize("NFKD", " ".join(prompt.split()[:max_words]))
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    return text.encode("ascii", "replace").decode("ascii")


def _gradient(width: int, height: int, rng: random.Random) -> np.ndarray:
    """An HxWx3 uint8 linear gradient between two prompt colours at a prompt-derived angle."""
    c1, c2 = (np.array(c, dtype=np.float32) for c in _palette(rng, 2))
    angle = rng.uniform(0, 2 * math.pi)
    ys = np.linspace(-0.5, 0.5, height, dtype=np.float32)[:, None]
    xs = np.linspace(-0.5, 0.5, width, dtype=np.float32)[None, :]
    u = xs * math.cos(angle) + ys * math.sin(angle)
    u = (u - u.min()) / max(float(u.max() - u.min()), 1e-6)
    img = c1 * (1 - u[..., None]) + c2 * u[..., None]
    return np.clip(img, 0, 255).astype(np.uint8)


def _draw_caption(img: Image.Image, text: str) -> None:
    """Draw ``text`` on a dark band at the bottom of ``img`` (in place), shortened to fit."""
    if not text or img.height < 8:
        return
    size = max(8, min(img.height // 12, img.width // 10, 48))
    font = _font(size)
    draw = ImageDraw.Draw(img)
    margin = max(2, size // 4)
    while text and draw.textlength(text, font=font) > img.width - 2 * margin:
        text = text[:-2] + "~" if len(text) > 2 else ""
    if not text:
        return
    band_top = img.height - size - 2 * margin
    draw.rectangle((0, band_top, img.width, img.height), fill=(16, 16, 24))
    draw.text((margin, band_top + margin), text, fill=(245, 245, 245), font=font)


def _png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def render_png(
    prompt: str,
    width: int,
    height: int,
    seed: int | None = None,
    *,
    source: bytes | None = None,
) -> bytes:
    """Render a deterministic PNG of exactly ``width`` x ``height`` pixels for ``prompt``.

    Colours, gradient angle and shapes derive from a hash of ``(prompt, seed)``, so different
    prompts give visibly different pictures; the first words of the prompt are drawn as a
    caption. With ``source`` (the bytes of any image Pillow reads) the result is an *edit*: the
    source is cropped/scaled to the size, tinted with the prompt's colours and captioned.

    >>> png = render_png("a lighthouse at dusk", 96, 64, seed=7)
    >>> png[:8] == b"\\x89PNG\\r\\n\\x1a\\n", image_size(png)
    (True, (96, 64))
    >>> png == render_png("a lighthouse at dusk", 96, 64, seed=7)
    True
    >>> edit = render_png("make it blue", 32, 32, source=png)
    >>> image_size(edit)
    (32, 32)
    """
    _check_size(width, height, where="render_png")
    rng = _rng("png", prompt, seed)
    if source is not None:
        src = _open_image(source, where="render_png(source=...)")
        base = ImageOps.fit(src.convert("RGB"), (width, height), Image.Resampling.LANCZOS)
        if rng.random() < 0.5:
            base = ImageOps.mirror(base)
        tint = Image.fromarray(_gradient(width, height, rng), "RGB")
        img = Image.blend(base, tint, 0.35)
        draw = ImageDraw.Draw(img)
        border = max(1, min(width, height) // 40)
        draw.rectangle((0, 0, width - 1, height - 1), outline=_palette(rng, 1)[0], width=border)
    else:
        img = Image.fromarray(_gradient(width, height, rng), "RGB")
        draw = ImageDraw.Draw(img)
        colours = _palette(rng, 5)
        for i in range(rng.randint(3, 6)):
            cx, cy = rng.uniform(0, width), rng.uniform(0, height)
            rx = rng.uniform(0.08, 0.3) * width
            ry = rng.uniform(0.08, 0.3) * height
            box = (cx - rx, cy - ry, cx + rx, cy + ry)
            colour = colours[i % len(colours)]
            if rng.random() < 0.5:
                draw.ellipse(box, fill=colour)
            else:
                draw.rectangle(box, fill=colour)
    _draw_caption(img, _ascii_caption(prompt))
    return _png_bytes(img)


def _open_image(data: bytes, *, where: str) -> Image.Image:
    if not isinstance(data, bytes | bytearray | memoryview) or len(data) == 0:
        raise MediaError(
            f"{where}: the image is empty (0 bytes). Pass the bytes of a PNG/JPEG/WebP."
        )
    try:
        img = Image.open(io.BytesIO(bytes(data)))
        img.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise MediaError(
            f"{where}: cannot decode the {len(data)} bytes as an image ({exc}). "
            "Pass the bytes of a PNG, JPEG or WebP file."
        ) from None
    return img


def image_size(data: bytes) -> tuple[int, int]:
    """Return ``(width, height)`` of an image given as bytes; raise MediaError otherwise.

    >>> image_size(render_png("x", 20, 10))
    (20, 10)
    """
    if not isinstance(data, bytes | bytearray | memoryview) or len(data) == 0:
        raise MediaError("image_size(): the image is empty (0 bytes).")
    try:
        with Image.open(io.BytesIO(bytes(data))) as img:
            return int(img.width), int(img.height)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise MediaError(
            f"image_size(): cannot decode the {len(data)} bytes as an image ({exc})."
        ) from None


# --------------------------------------------------------------------------------------------
# Speech synthesis (text -> tones)
# --------------------------------------------------------------------------------------------

#: Output formats of :func:`synthesize_speech` (OpenAI's ``response_format`` values).
SPEECH_FORMATS: tuple[str, ...] = ("mp3", "wav", "flac", "opus", "aac", "pcm")

_SR = 24_000  # synthesis rate: OpenAI's TTS rate, and one that Opus and AAC accept
_LOW = 500.0 + 95.0 * np.arange(16)  # low nibble tones, 500 .. 1925 Hz
_HIGH = 2150.0 + 100.0 * np.arange(16)  # high nibble tones, 2150 .. 3650 Hz (< 4 kHz)
_GRID = np.concatenate([_LOW, _HIGH])
_AAC_OPTIONS = {"aac_coder": "fast"}  # 3-4x faster than the default "twoloop", same decoding
_AAC_PRIMING = 1024  # samples an AAC decoder adds in front of raw ADTS streams
_LEAD_S, _TAIL_S = 0.2, 0.3
# Gap classes seen by the decoder (seconds): < _WORD_GAP_S inside a word, < _SENT_GAP_S between
# words, otherwise between sentences. The encoder keeps every speed in 0.25..4 clear of them.
_WORD_GAP_S, _SENT_GAP_S = 0.06, 0.36
_SENTENCE_END = (".", "!", "?", "…", "。", "！", "？", "؟", "।")
_CLOSERS = "\"')]}»”’」』"
# Speaker marker: every clip starts, inside its leading silence, with one burst of two *low*
# tones (a byte always has one low and one high tone, so a marker never reads as text). The
# pair names the voice, so clips of different voices joined together carry their turns, and a
# diarizing transcription labels every word with the voice that spoke it.
_MARKER_START_S, _MARKER_S = 0.06, 0.05
_MARKER_PAIRS: tuple[tuple[int, int], ...] = tuple(
    (i, j) for i in range(16) for j in range(i + 2, 16)
)  # 91 voice classes; neighbouring tones are never paired (cleaner separation)


def _clamp(value: float, low: float, high: float) -> float:
    return min(max(value, low), high)


def _timing(speed: float) -> tuple[float, float, float, float]:
    """(tone, byte gap, word gap, sentence gap) durations in seconds for a speed."""
    tone = _clamp(0.045 / speed, 0.02, 0.1)
    byte_gap = _clamp(0.025 / math.sqrt(speed), 0.018, 0.035)
    word_gap = _clamp(0.12 / speed, 0.085, 0.28)
    sentence_gap = _clamp(0.5 / speed, 0.42, 1.0)
    return tone, byte_gap, word_gap, sentence_gap


def _voice_params(voice: str) -> dict[str, float]:
    """Per-voice timbre: a small pitch offset, attack time and tone balance (never decoding)."""
    rng = _rng("voice", voice)
    return {
        "offset_hz": rng.uniform(-8.0, 8.0),
        "attack_s": rng.uniform(0.003, 0.007),
        "low_amp": rng.uniform(0.26, 0.32),
        "high_amp": rng.uniform(0.22, 0.3),
    }


def voice_class(voice: str) -> int:
    """The speaker-marker class of a voice: distinct for every voice the emulator lists (the
    OpenAI aliases, then Kokoro's voices in order); other names are hashed onto a class.

    >>> voice_class("alloy") != voice_class("echo")
    True
    """
    from ._models import KOKORO_VOICES, OPENAI_VOICE_ALIASES

    known = list(OPENAI_VOICE_ALIASES) + [v for vs in KOKORO_VOICES.values() for v in vs]
    if voice in known:
        return known.index(voice) % len(_MARKER_PAIRS)
    return int.from_bytes(_digest("voice-class", voice)[:4], "big") % len(_MARKER_PAIRS)


def _normalise_text(text: str) -> str:
    """Collapse runs of whitespace to one space, as a listener (or Whisper) would hear them."""
    return " ".join(text.split())


def _is_sentence_end(word: str) -> bool:
    return word.rstrip(_CLOSERS).endswith(_SENTENCE_END)


def _speech_layout(
    text: str, speed: float
) -> tuple[list[int], list[int], int, int, list[tuple[str, float, float]]]:
    """Where the tones of ``text`` go at 24 kHz: (burst start samples, byte codes, tone length,
    total length, [(word, start_s, end_s)]). The word times are the ground truth that
    :func:`transcribe_audio` reports."""
    tone_s, byte_gap_s, word_gap_s, sentence_gap_s = _timing(speed)
    tone_n = round(tone_s * _SR)
    starts: list[int] = []
    codes: list[int] = []
    spans: list[tuple[str, float, float]] = []
    pos = round(_LEAD_S * _SR)
    words = _normalise_text(text).split(" ") if text.strip() else []
    for i, word in enumerate(words):
        first = pos
        for j, byte in enumerate(word.encode("utf-8")):
            if j:
                pos += round(byte_gap_s * _SR)
            starts.append(pos)
            codes.append(byte)
            pos += tone_n
        spans.append((word, first / _SR, pos / _SR))
        if i + 1 < len(words):
            gap = sentence_gap_s if _is_sentence_end(word) else word_gap_s
            pos += round(gap * _SR)
    return starts, codes, tone_n, pos + round(_TAIL_S * _SR), spans


def _speech_signal(text: str, voice: str, speed: float) -> np.ndarray:
    """The float32 mono signal at 24 kHz that encodes ``text``."""
    starts, codes, tone_n, total, _ = _speech_layout(text, speed)
    params = _voice_params(voice)
    signal = np.zeros(total, dtype=np.float32)
    if not codes:
        signal[: len(_marker_burst(voice))] += _marker_burst(voice)
        return signal
    t = np.arange(tone_n, dtype=np.float64) / _SR
    ramp_n = max(1, min(round(params["attack_s"] * _SR), tone_n // 4))
    envelope = np.ones(tone_n)
    ramp = 0.5 - 0.5 * np.cos(np.linspace(0.0, math.pi, ramp_n))
    envelope[:ramp_n] = ramp
    envelope[-ramp_n:] = ramp[::-1]
    offset = params["offset_hz"]
    templates: dict[int, np.ndarray] = {}
    for byte in set(codes):
        low = params["low_amp"] * np.sin(2 * math.pi * (_LOW[byte & 15] + offset) * t)
        high = params["high_amp"] * np.sin(2 * math.pi * (_HIGH[byte >> 4] + offset) * t + 1.0)
        templates[byte] = ((low + high) * envelope).astype(np.float32)
    for start, byte in zip(starts, codes, strict=True):
        signal[start : start + tone_n] = templates[byte]
    signal[: len(_marker_burst(voice))] += _marker_burst(voice)
    return signal


def _marker_burst(voice: str) -> np.ndarray:
    """Leading silence holding the voice's speaker marker (ends well before the first byte)."""
    low_i, low_j = _MARKER_PAIRS[voice_class(voice)]
    start, n = round(_MARKER_START_S * _SR), round(_MARKER_S * _SR)
    t = np.arange(n, dtype=np.float64) / _SR
    ramp_n = round(0.005 * _SR)
    envelope = np.ones(n)
    ramp = 0.5 - 0.5 * np.cos(np.linspace(0.0, math.pi, ramp_n))
    envelope[:ramp_n], envelope[-ramp_n:] = ramp, ramp[::-1]
    tones = 0.28 * np.sin(2 * math.pi * _LOW[low_i] * t) + 0.28 * np.sin(
        2 * math.pi * _LOW[low_j] * t + 1.0
    )
    out = np.zeros(start + n, dtype=np.float32)
    out[start:] = (tones * envelope).astype(np.float32)
    return out


def _ogg_crc(page: bytes) -> int:
    """Ogg's CRC-32 (poly 0x04C11DB7, unreflected, init 0) computed with zlib's reflected CRC."""
    crc = (~zlib.crc32(page.translate(_BIT_REVERSE), 0xFFFFFFFF)) & 0xFFFFFFFF
    return int(f"{crc:032b}"[::-1], 2)


_BIT_REVERSE = bytes(int(f"{i:08b}"[::-1], 2) for i in range(256))


def _fix_ogg_serial(data: bytes, serial: int = 0x64654150) -> bytes:
    """Give every Ogg page a fixed stream serial (libsndfile picks a random one) and re-CRC."""
    out = bytearray(data)
    i = 0
    while i + 27 <= len(out) and out[i : i + 4] == b"OggS":
        nseg = out[i + 26]
        length = 27 + nseg + sum(out[i + 27 : i + 27 + nseg])
        out[i + 14 : i + 18] = serial.to_bytes(4, "little")
        out[i + 22 : i + 26] = b"\0\0\0\0"
        out[i + 22 : i + 26] = _ogg_crc(bytes(out[i : i + length])).to_bytes(4, "little")
        i += length
    return bytes(out)


def _encode_adts(signal: np.ndarray, sr: int, bit_rate: int = 64_000) -> bytes:
    """AAC in a raw ADTS stream (what OpenAI's ``response_format="aac"`` returns), via PyAV."""
    # ADTS has no edit list, so decoders also output the encoder's priming samples: drop as
    # many samples from our leading silence to keep every tone at its time.
    signal = signal[_AAC_PRIMING:]
    buf = io.BytesIO()
    with av.open(buf, "w", format="adts", options={"fflags": "+bitexact"}) as out:
        stream = out.add_stream("aac", rate=sr, options=_AAC_OPTIONS)
        stream.layout = "mono"
        stream.bit_rate = bit_rate
        _mux_audio(out, stream, signal, sr)
    return buf.getvalue()


def _mux_audio(out: Any, stream: Any, signal: np.ndarray, sr: int) -> None:
    frame_size = stream.codec_context.frame_size or 1024
    samples = np.ascontiguousarray(signal, dtype=np.float32)
    for i in range(0, len(samples), frame_size):
        frame = av.AudioFrame.from_ndarray(
            samples[i : i + frame_size].reshape(1, -1), format="flt", layout="mono"
        )
        frame.sample_rate = sr
        frame.pts = i
        frame.time_base = Fraction(1, sr)
        for packet in stream.encode(frame):
            out.mux(packet)
    for packet in stream.encode(None):
        out.mux(packet)


def synthesize_speech(text: str, *, voice: str, fmt: str, speed: float = 1.0) -> bytes:
    """Return audio bytes in format ``fmt`` whose tones encode ``text`` (see module docstring).

    ``fmt`` is one of ``"mp3"``, ``"wav"``, ``"flac"``, ``"opus"`` (Ogg/Opus), ``"aac"`` (ADTS)
    or ``"pcm"`` (raw signed 16-bit little-endian mono); everything is 24 kHz mono. At speed 1
    English text lasts about 12-13 characters per second; ``speed`` (0.25-4) shortens or
    lengthens it. ``voice`` changes the timbre slightly. Whitespace runs count as one space.

    >>> wav = synthesize_speech("Hi there.", voice="nova", fmt="wav")
    >>> transcribe_audio(wav)["text"]
    'Hi there.'
    >>> fast = synthesize_speech("Hi there.", voice="nova", fmt="wav", speed=2.0)
    >>> audio_duration(fast) < audio_duration(wav)
    True
    """
    if not isinstance(text, str):
        raise MediaError(f"The 'text' argument of synthesize_speech() must be a str. Got {text!r}.")
    if fmt not in SPEECH_FORMATS:
        raise MediaError(
            f"The 'fmt' argument of synthesize_speech() must be one of {list(SPEECH_FORMATS)}. "
            f"Got {fmt!r}."
        )
    if isinstance(speed, bool) or not isinstance(speed, int | float) or not 0.25 <= speed <= 4.0:
        raise MediaError(
            f"The 'speed' argument of synthesize_speech() must be a number in [0.25, 4.0]. "
            f"Got {speed!r}."
        )
    signal = _speech_signal(text, str(voice), float(speed))
    if fmt == "pcm":
        return (np.clip(signal, -1.0, 1.0) * 32767.0).round().astype("<i2").tobytes()
    if fmt == "aac":
        return _encode_adts(signal, _SR)
    buf = io.BytesIO()
    if fmt == "wav":
        sf.write(buf, signal, _SR, format="WAV", subtype="PCM_16")
    elif fmt == "flac":
        sf.write(buf, signal, _SR, format="FLAC", subtype="PCM_16")
    elif fmt == "mp3":
        sf.write(buf, signal, _SR, format="MP3")
    else:  # opus
        # ~47 kbit/s: libopus's CELT mode, 3x faster to encode than the default ~30 kbit/s
        sf.write(buf, signal, _SR, format="OGG", subtype="OPUS", compression_level=0.8)
        return _fix_ogg_serial(buf.getvalue())
    return buf.getvalue()


# --------------------------------------------------------------------------------------------
# Decoding audio bytes
# --------------------------------------------------------------------------------------------


def _looks_like_text(data: bytes) -> bool:
    head = data[:512]
    try:
        decoded = head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(ch.isprintable() or ch in "\r\n\t" for ch in decoded)


def _decode_audio(data: bytes, filename: str = "audio") -> tuple[np.ndarray, int]:
    """Decode any audio/video bytes to (float32 mono samples, sample rate)."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise MediaError(f"Audio {filename!r} must be bytes. Got {type(data).__name__}.")
    data = bytes(data)
    if not data:
        raise MediaError(f"Audio file {filename!r} is empty (0 bytes). Pass the file's contents.")
    if filename.lower().endswith((".pcm", ".raw")):
        if len(data) % 2:
            raise MediaError(
                f"Audio file {filename!r} is named as raw PCM (s16le, 24 kHz, mono) but has an "
                f"odd number of bytes ({len(data)})."
            )
        return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0, _SR
    if data[:4] in (b"RIFF", b"fLaC", b"OggS", b"FORM"):
        try:
            samples, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
            return np.ascontiguousarray(samples.mean(axis=1, dtype=np.float32)), int(sr)
        except (sf.LibsndfileError, RuntimeError, TypeError, ValueError):
            pass  # e.g. an Ogg stream libsndfile does not know: let FFmpeg try
    return _decode_with_av(data, filename)


def _decode_with_av(data: bytes, filename: str) -> tuple[np.ndarray, int]:
    hint = " The first bytes look like text, not audio." if _looks_like_text(data) else ""
    try:
        container = av.open(io.BytesIO(data), "r")
    except (av.FFmpegError, ValueError, OSError) as exc:
        raise MediaError(
            f"Cannot decode {filename!r} ({len(data)} bytes) as audio or video: {exc}.{hint} "
            "Supported: wav, mp3, flac, ogg/opus, m4a/aac, webm, mp4/mov with an audio track."
        ) from None
    with container:
        if not container.streams.audio:
            raise MediaError(
                f"{filename!r} has no audio track (streams: "
                f"{[s.type for s in container.streams] or 'none'}).{hint} "
                "Pass an audio file or a video with sound."
            )
        stream = container.streams.audio[0]
        rate = int(stream.codec_context.sample_rate or stream.rate or _SR)
        resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
        chunks: list[np.ndarray] = []
        try:
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
        except (av.FFmpegError, ValueError) as exc:
            if not chunks:
                raise MediaError(f"Cannot decode the audio of {filename!r}: {exc}.{hint}") from None
            # a damaged tail: keep what decoded, like ffmpeg does
    samples = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)
    return samples.astype(np.float32, copy=False), rate


def audio_duration(data: bytes, filename: str = "audio") -> float:
    """Exact duration in seconds of audio/video bytes (decoded, not read from metadata).

    >>> round(audio_duration(synthesize_speech("", voice="alloy", fmt="wav")), 2)
    0.5
    """
    samples, sr = _decode_audio(data, filename)
    return len(samples) / sr


# --------------------------------------------------------------------------------------------
# Transcription (tones -> text)
# --------------------------------------------------------------------------------------------

_HOP_S = 0.002
_DFT_CHUNK = 512  # bursts analysed per matrix product (bounds memory on long files)


def _frame_energy(samples: np.ndarray, hop: int) -> np.ndarray:
    n = len(samples) // hop
    if n == 0:
        return np.zeros(0)
    frames = samples[: n * hop].astype(np.float64).reshape(n, hop)
    frames = frames - frames.mean()
    energy = np.einsum("ij,ij->i", frames, frames) / hop
    return np.convolve(energy, np.ones(3) / 3.0, mode="same")


def _runs(active: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start (inclusive) and end (exclusive) indexes of the True runs of a boolean array."""
    padded = np.concatenate([[False], active, [False]]).astype(np.int8)
    edges = np.diff(padded)
    return np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)


def _merge_runs(
    starts: np.ndarray, ends: np.ndarray, min_gap: int, min_len: int
) -> tuple[np.ndarray, np.ndarray]:
    """Merge runs separated by fewer than ``min_gap`` frames, then drop runs under ``min_len``."""
    if len(starts) == 0:
        return starts, ends
    keep = np.concatenate([[True], (starts[1:] - ends[:-1]) >= min_gap])
    group = np.cumsum(keep) - 1
    new_starts = starts[keep]
    new_ends = np.zeros_like(new_starts)
    np.maximum.at(new_ends, group, ends)
    long_enough = (new_ends - new_starts) >= min_len
    return new_starts[long_enough], new_ends[long_enough]


def _analyse_bursts(
    samples: np.ndarray, sr: int, starts: np.ndarray, ends: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decode each burst [start, end) (in samples) to a byte; also say whether it is a clean
    dual tone on the grid, and which speaker marker it is (-1: none). Vectorised: one matrix
    product per chunk of bursts."""
    trim = round(0.003 * sr)
    max_len = round(0.04 * sr)  # longer windows would be too sharp for the voices' pitch offsets
    n = np.arange(max_len)
    basis = np.exp(-2j * math.pi * np.outer(n, _GRID) / sr)  # max_len x 32
    codes = np.zeros(len(starts), dtype=np.int64)
    valid = np.zeros(len(starts), dtype=bool)
    markers = np.full(len(starts), -1, dtype=np.int64)
    for c0 in range(0, len(starts), _DFT_CHUNK):
        cs, ce = starts[c0 : c0 + _DFT_CHUNK], ends[c0 : c0 + _DFT_CHUNK]
        block = np.zeros((len(cs), max_len))
        wsum = np.zeros(len(cs))
        wsq = np.zeros(len(cs))
        for k, (s, e) in enumerate(zip(cs, ce, strict=True)):
            s, e = int(s) + trim, int(e) - trim
            if e - s < 8:
                continue
            if e - s > max_len:  # a long burst: analyse its middle
                s += (e - s - max_len) // 2
                e = s + max_len
            w = np.hanning(e - s)
            block[k, : e - s] = samples[s:e] * w
            wsum[k], wsq[k] = w.sum(), (w * w).sum()
        spectrum = np.abs(block @ basis)  # bursts x 32
        ok = wsum > 0
        amp = np.where(ok[:, None], 2.0 * spectrum / np.where(ok, wsum, 1.0)[:, None], 0.0)
        power = amp**2 / 2.0
        total = np.einsum("ij,ij->i", block, block) / np.where(ok, wsq, 1.0)
        low, high = power[:, :16], power[:, 16:]
        lo_idx, hi_idx = low.argmax(axis=1), high.argmax(axis=1)
        rows = np.arange(len(cs))
        lo_best, hi_best = low[rows, lo_idx], high[rows, hi_idx]
        low2 = np.sort(low, axis=1)[:, -2]
        high2 = np.sort(high, axis=1)[:, -2]
        purity = (lo_best + hi_best) / np.maximum(total, 1e-20)
        clean = ok & (purity > 0.5) & (low2 < 0.25 * lo_best) & (high2 < 0.25 * hi_best)
        codes[c0 : c0 + len(cs)] = lo_idx + 16 * hi_idx
        valid[c0 : c0 + len(cs)] = clean
        markers[c0 : c0 + len(cs)] = _marker_classes(low, high, total, ok & ~clean)
    return codes, valid, markers


_PAIR_CLASS = {pair: k for k, pair in enumerate(_MARKER_PAIRS)}


def _marker_classes(
    low: np.ndarray, high: np.ndarray, total: np.ndarray, candidates: np.ndarray
) -> np.ndarray:
    """Speaker-marker class of each burst (-1: not a marker): two strong low tones, no high."""
    out = np.full(len(low), -1, dtype=np.int64)
    order = np.argsort(low, axis=1)
    for k in np.flatnonzero(candidates):
        j1, j2, j3 = order[k, -1], order[k, -2], order[k, -3]
        p1, p2, p3 = low[k, j1], low[k, j2], low[k, j3]
        if (
            (p1 + p2) / max(total[k], 1e-20) > 0.5
            and p2 > 0.4 * p1
            and p3 < 0.25 * p2
            and high[k].max() < 0.1 * p2
        ):
            out[k] = _PAIR_CLASS.get((int(min(j1, j2)), int(max(j1, j2))), -1)
    return out


def _decode_tones(
    samples: np.ndarray, sr: int
) -> list[list[tuple[str, float, float, int | None]]] | None:
    """Sentences of (word, start, end, voice class) encoded by :func:`synthesize_speech`, or
    None when the audio is not such speech. An empty list means silence. The voice class is
    that of the last speaker marker before the word (None before any marker); a marker always
    starts a new sentence."""
    hop = max(1, round(_HOP_S * sr))
    energy = _frame_energy(samples, hop)
    if len(energy) == 0 or energy.max() < 1e-8:
        return []
    active = energy > energy.max() * 10 ** (-1.6)
    starts, ends = _runs(active)
    starts, ends = _merge_runs(
        starts, ends, min_gap=max(1, round(0.008 / _HOP_S)), min_len=round(0.012 / _HOP_S)
    )
    if len(starts) == 0:
        return None
    codes, valid, markers = _analyse_bursts(samples, sr, starts * hop, ends * hop)
    is_marker = markers >= 0
    if is_marker.all():
        return []  # only speaker markers: a silent clip
    if valid[~is_marker].mean() < 0.85:
        return None
    # the voice speaking at each burst, and where a new turn starts
    turn = np.maximum.accumulate(np.where(is_marker, np.arange(len(markers)), -1))
    voice = np.where(turn >= 0, markers[np.maximum(turn, 0)], -1)
    keep = ~is_marker
    kept_turn = turn[keep]
    new_turn = np.concatenate([[False], kept_turn[1:] != kept_turn[:-1]])
    starts, ends, codes, voice = starts[keep], ends[keep], codes[keep], voice[keep]
    frame_s = hop / sr  # frames are ``hop`` samples long
    gaps = (starts[1:] - ends[:-1]) * frame_s
    sentences: list[list[tuple[str, float, float, int | None]]] = []
    current: list[tuple[str, float, float, int | None]] = []
    first = 0  # index of the first burst of the current word
    for i in range(1, len(starts) + 1):
        gap = gaps[i - 1] if i < len(starts) else math.inf
        if i < len(starts) and new_turn[i]:
            gap = math.inf
        if gap < _WORD_GAP_S:
            continue
        word = bytes(codes[first:i].astype(np.uint8)).decode("utf-8", errors="replace")
        speaker = int(voice[first]) if voice[first] >= 0 else None
        current.append((word, starts[first] * frame_s, ends[i - 1] * frame_s, speaker))
        if gap >= _SENT_GAP_S:
            sentences.append(current)
            current = []
        first = i
    return sentences


_PSEUDO_WORDS = (
    "the a and of to in we it this that is was for on with as you they be at one have from "
    "or had by word but what some can out other were all there when up use your how said an "
    "each she which do their time if will way about many then them would write like so these "
    "her long make thing see him two has look more day could go come did number sound no most "
    "people my over know water than call first who may down side been now find"
).split()


def _pseudo_sentences(samples: np.ndarray, sr: int) -> list[list[tuple[str, float, float]]]:
    """Deterministic pseudo-words (about 2.5 per second) over the non-silent parts of audio that
    was not made by :func:`synthesize_speech`."""
    hop = max(1, round(0.02 * sr))
    energy = _frame_energy(samples, hop)
    if len(energy) == 0 or energy.max() < 1e-8:
        return []
    starts, ends = _runs(energy > max(energy.max() * 10 ** (-3.5), 1e-8))
    starts, ends = _merge_runs(starts, ends, min_gap=15, min_len=5)  # gaps >= 0.3 s, runs >= 0.1 s
    rng = _rng("pseudo", sr, hashlib.sha256(samples.tobytes()).digest())
    frame_s = hop / sr
    sentences: list[list[tuple[str, float, float]]] = []
    for s, e in zip(starts, ends, strict=True):
        t0, t1 = s * frame_s, e * frame_s
        count = max(1, round((t1 - t0) * 2.5))
        slot = (t1 - t0) / count
        words = [
            (rng.choice(_PSEUDO_WORDS), t0 + k * slot, t0 + (k + 0.8) * slot) for k in range(count)
        ]
        for k0 in range(0, len(words), 12):
            chunk = words[k0 : k0 + 12]
            first, last = chunk[0], chunk[-1]
            chunk[0] = (first[0].capitalize(), first[1], first[2])
            chunk[-1] = (last[0] + ".", last[1], last[2])
            sentences.append(chunk)
    return sentences


_STOP_WORDS: dict[str, frozenset[str]] = {
    "en": frozenset(
        "the and is are was to of in that it you for with this have not be on what how".split()
    ),
    "es": frozenset(
        "el la los las que de y en es un una por con para del se no lo como cómo qué está "
        "estás muy bien hola pero más".split()
    ),
    "fr": frozenset(
        "le la les des est et un une que dans pour pas qui sur avec du au ce je vous nous "
        "bonjour très mais".split()
    ),
    "it": frozenset(
        "il lo la gli le che di e un una per non con del della sono è questo ciao sei molto".split()
    ),
    "pt": frozenset(
        "o a os as que de e um uma para com não do da em é você isso olá muito obrigado "
        "está".split()
    ),
    "de": frozenset(
        "der die das und ist nicht ein eine zu den mit von ich sie es auf für wie hallo "
        "sehr".split()
    ),
}
#: Letters that only (or mostly) one of the stop-word languages uses; each counts as 2 words.
_LETTER_HINTS = {
    "ñ": "es",
    "¿": "es",
    "¡": "es",
    "ß": "de",
    "ä": "de",
    "ã": "pt",
    "õ": "pt",
    "œ": "fr",
    "ê": "fr",
    "ò": "it",
    "ì": "it",
}
_SCRIPTS: tuple[tuple[str, str], ...] = (
    ("HIRAGANA", "ja"),
    ("KATAKANA", "ja"),
    ("HANGUL", "ko"),
    ("CJK", "zh"),
    ("CYRILLIC", "ru"),
    ("ARABIC", "ar"),
    ("GREEK", "el"),
    ("HEBREW", "he"),
    ("DEVANAGARI", "hi"),
    ("THAI", "th"),
)


def _guess_language(text: str) -> str:
    """ISO 639-1 code guessed from scripts, then from stop words; "en" when unsure."""
    letters = [ch for ch in text if ch.isalpha()]
    if not letters:
        return "en"
    counts: dict[str, int] = {}
    for ch in letters:
        name = unicodedata.name(ch, "")
        for prefix, lang in _SCRIPTS:
            if name.startswith(prefix):
                counts[lang] = counts.get(lang, 0) + 1
                break
    if counts:
        lang, count = max(counts.items(), key=lambda kv: kv[1])
        if count * 2 >= len(letters):
            if lang == "zh" and "ja" in counts:
                return "ja"  # Japanese mixes kanji with kana
            return lang
    tokens = re.findall(r"[^\W\d_]+", text.lower())
    scores = {lang: sum(tok in words for tok in tokens) for lang, words in _STOP_WORDS.items()}
    for ch in text.lower():
        if ch in _LETTER_HINTS:
            scores[_LETTER_HINTS[ch]] += 2
    best = max(scores, key=lambda lang: scores[lang])
    return best if scores[best] > 0 else "en"


def _compression_ratio(text: str) -> float:
    raw = text.encode("utf-8")
    return round(len(raw) / len(zlib.compress(raw)), 4) if raw else 0.0


def transcribe_audio(
    data: bytes,
    filename: str = "audio",
    *,
    language: str | None = None,
    word_timestamps: bool = True,
    diarize: bool = False,
) -> dict[str, Any]:
    """Transcribe audio/video bytes into an OpenAI ``verbose_json``-shaped dict.

    Audio from :func:`synthesize_speech` comes back as its exact text (whitespace normalised),
    one segment per sentence, with word times relative to the start of ``data``; other audio gets
    deterministic pseudo-text; silence gives ``""``. ``language`` is echoed when given, else
    guessed. With ``word_timestamps=False`` the ``"words"`` keys are left out (as OpenAI does
    without ``timestamp_granularities=["word"]``). ``diarize=True`` adds a ``"speaker"``
    (``SPEAKER_00``, ``SPEAKER_01``… in order of first appearance) to every segment and word:
    the voice whose marker precedes it (see :func:`voice_class`); clips of several voices
    joined together are labelled turn by turn. Raises MediaError for empty/undecodable bytes.

    >>> mp3 = synthesize_speech("Bonjour le monde. Ça va?", voice="echo", fmt="mp3")
    >>> out = transcribe_audio(mp3, "clip.mp3")
    >>> out["text"], out["language"], len(out["segments"])
    ('Bonjour le monde. Ça va?', 'fr', 2)
    >>> [w["word"] for w in out["words"]]
    ['Bonjour', 'le', 'monde.', 'Ça', 'va?']
    """
    samples, sr = _decode_audio(data, filename)
    decoded = _decode_tones(samples, sr)
    synthetic = decoded is not None
    sentences = decoded if decoded is not None else _pseudo_sentences(samples, sr)
    segments: list[dict[str, Any]] = []
    all_words: list[dict[str, Any]] = []
    labels: dict[int | None, str] = {}
    for sentence in sentences:
        words = [{"word": w, "start": round(s, 3), "end": round(e, 3)} for w, s, e, *_ in sentence]
        text = " ".join(w["word"] for w in words)
        voice = sentence[0][3] if len(sentence[0]) > 3 else None
        segment: dict[str, Any] = {
            "id": len(segments),
            "seek": 0,
            "start": words[0]["start"],
            "end": words[-1]["end"],
            "text": text,
            "tokens": [],
            "temperature": 0.0,
            "avg_logprob": -0.08 if synthetic else -0.74,
            "compression_ratio": _compression_ratio(text),
            "no_speech_prob": 0.004 if synthetic else 0.21,
        }
        if diarize:
            speaker = labels.setdefault(voice, f"SPEAKER_{len(labels):02d}")
            segment["speaker"] = speaker
            for w in words:
                w["speaker"] = speaker
        if word_timestamps:
            segment["words"] = words
        segments.append(segment)
        all_words.extend(words)
    text = " ".join(seg["text"] for seg in segments)
    result: dict[str, Any] = {
        "text": text,
        "language": language or (_guess_language(text) if synthetic else "en"),
        "duration": round(len(samples) / sr, 3),
        "segments": segments,
    }
    if word_timestamps:
        result["words"] = all_words
    return result


# --------------------------------------------------------------------------------------------
# Video
# --------------------------------------------------------------------------------------------


def _faststart(data: bytes) -> bytes:
    """Move the ``moov`` box in front of ``mdat`` (FFmpeg's +faststart needs a real file) and
    shift the chunk offsets (stco/co64) accordingly."""
    boxes: list[tuple[bytes, int, int]] = []  # (type, start, end)
    i = 0
    while i + 8 <= len(data):
        size = int.from_bytes(data[i : i + 4], "big")
        kind = data[i + 4 : i + 8]
        if size == 1:
            size = int.from_bytes(data[i + 8 : i + 16], "big")
        elif size == 0:
            size = len(data) - i
        if size < 8:
            raise MediaError("internal error: malformed MP4 box while moving moov to the front")
        boxes.append((kind, i, i + size))
        i += size
    kinds = [k for k, _, _ in boxes]
    if b"moov" not in kinds or b"mdat" not in kinds or kinds.index(b"moov") < kinds.index(b"mdat"):
        return data
    _, ms, me = boxes[kinds.index(b"moov")]
    moov = bytearray(data[ms:me])
    _shift_chunk_offsets(moov, 8, len(moov), len(moov))
    out = bytearray()
    for kind, s, e in boxes:
        if kind == b"mdat":
            out += moov
        if kind != b"moov":
            out += data[s:e]
    return bytes(out)


_CONTAINER_BOXES = {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"edts", b"dinf", b"udta"}


def _shift_chunk_offsets(buf: bytearray, start: int, end: int, delta: int) -> None:
    i = start
    while i + 8 <= end:
        size = int.from_bytes(buf[i : i + 4], "big")
        kind = bytes(buf[i + 4 : i + 8])
        if size < 8:
            return
        if kind in _CONTAINER_BOXES:
            _shift_chunk_offsets(buf, i + 8, i + size, delta)
        elif kind in (b"stco", b"co64"):
            count = int.from_bytes(buf[i + 12 : i + 16], "big")
            width = 4 if kind == b"stco" else 8
            dtype = ">u4" if width == 4 else ">u8"
            lo, hi = i + 16, i + 16 + count * width
            offsets = np.frombuffer(bytes(buf[lo:hi]), dtype=dtype).astype(np.uint64) + delta
            if width == 4 and offsets.size and offsets.max() >= 2**32:
                raise MediaError("internal error: MP4 too large for 32-bit chunk offsets")
            buf[lo:hi] = offsets.astype(dtype).tobytes()
        i += size


def _even(value: int) -> int:
    return max(2, value + (value % 2))


def _open_mp4() -> tuple[io.BytesIO, Any]:
    buf = io.BytesIO()
    return buf, av.open(buf, "w", format="mp4", options={"fflags": "+bitexact"})


def _add_h264(out: Any, width: int, height: int, fps: int) -> Any:
    # x264 gave slightly different bytes from run to run with threads or with B-frames (its
    # B-frame decision reads memory it did not write): one thread, no B-frames is reproducible.
    options = {"crf": "30", "preset": "veryfast", "x264-params": "bframes=0"}
    stream = out.add_stream("libx264", rate=fps, options=options)
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    stream.codec_context.thread_count = 1
    stream.codec_context.thread_type = "NONE"
    return stream


def _rgb_to_yuv420p(rgb: np.ndarray) -> np.ndarray:
    """BT.601 limited-range RGB -> planar YUV 4:2:0 as the (h * 3 / 2, w) array PyAV expects.

    Converting here rather than letting FFmpeg's swscale do it keeps the encoded bytes
    identical from run to run (swscale's output was not always bit-identical)."""
    h, w = rgb.shape[:2]
    r, g, b = (rgb[..., i].astype(np.float32) for i in range(3))
    y = 16.0 + (65.481 * r + 128.553 * g + 24.966 * b) / 255.0
    cb = 128.0 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255.0
    cr = 128.0 + (112.0 * r - 93.786 * g - 18.214 * b) / 255.0

    def half(plane: np.ndarray) -> np.ndarray:
        return plane.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))

    planes = [y.reshape(-1), half(cb).reshape(-1), half(cr).reshape(-1)]
    return np.clip(np.concatenate(planes).round(), 0, 255).astype(np.uint8).reshape(h * 3 // 2, w)


def _planes(frame: np.ndarray, w: int, h: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Writable (Y, U, V) views of a yuv420p frame stored as one (h * 3 / 2, w) array."""
    flat = frame.reshape(-1)
    quarter = w * h // 4
    return (
        flat[: w * h].reshape(h, w),
        flat[w * h : w * h + quarter].reshape(h // 2, w // 2),
        flat[w * h + quarter :].reshape(h // 2, w // 2),
    )


def _yuv_colour(rgb: tuple[int, int, int]) -> tuple[int, int, int]:
    patch = np.empty((2, 2, 3), dtype=np.uint8)
    patch[:] = rgb
    y, u, v = _planes(_rgb_to_yuv420p(patch), 2, 2)
    return int(y[0, 0]), int(u[0, 0]), int(v[0, 0])


def _fill_disc(
    frame: np.ndarray, w: int, h: int, cx: float, cy: float, r: float, colour: tuple[int, ...]
) -> None:
    """Draw a filled disc on a yuv420p frame in place (chroma at half resolution)."""
    for plane, scale, value in zip(_planes(frame, w, h), (1, 2, 2), colour, strict=True):
        ph, pw = plane.shape
        x0, x1 = max(0, int((cx - r) / scale)), min(pw, int((cx + r) / scale) + 1)
        y0, y1 = max(0, int((cy - r) / scale)), min(ph, int((cy + r) / scale) + 1)
        if x0 >= x1 or y0 >= y1:
            continue
        xs = (np.arange(x0, x1) + 0.5) * scale - cx
        ys = (np.arange(y0, y1) + 0.5) * scale - cy
        inside = ys[:, None] ** 2 + xs[None, :] ** 2 <= r * r
        plane[y0:y1, x0:x1][inside] = value


def _encode_frames(out: Any, stream: Any, frames: Iterable[np.ndarray]) -> None:
    """Encode yuv420p frames given as (h * 3 / 2, w) uint8 arrays."""
    for index, yuv in enumerate(frames):
        frame = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
        frame.pts = index
        for packet in stream.encode(frame):
            out.mux(packet)
    for packet in stream.encode(None):
        out.mux(packet)


def render_mp4(
    prompt: str,
    width: int,
    height: int,
    seconds: float,
    *,
    fps: int = 8,
    seed: int | None = None,
) -> bytes:
    """A small playable H.264 MP4 (yuv420p, moov first) of ``round(seconds * fps)`` frames.

    Shapes coloured from a hash of ``(prompt, seed)`` move over a gradient, so frames differ
    over time and between prompts. Odd sizes are rounded up to even (yuv420p needs them).

    >>> mp4 = render_mp4("a cat surfing", 64, 48, 1.0, fps=4)
    >>> mp4[4:8], mp4 == render_mp4("a cat surfing", 64, 48, 1.0, fps=4)
    (b'ftyp', True)
    """
    _check_size(width, height, where="render_mp4", limit=4096)
    if isinstance(fps, bool) or not isinstance(fps, int) or not 1 <= fps <= 60:
        raise MediaError(
            f"The 'fps' argument of render_mp4() must be an int in [1, 60]. Got {fps!r}."
        )
    if not isinstance(seconds, int | float) or not 0 < seconds <= 600:
        raise MediaError(
            f"The 'seconds' argument of render_mp4() must be a number in (0, 600]. Got {seconds!r}."
        )
    w, h = _even(width), _even(height)
    rng = _rng("mp4", prompt, seed)
    background = _rgb_to_yuv420p(_gradient(w, h, rng))
    shapes = [
        (
            _yuv_colour(colour),
            rng.uniform(0.06, 0.16) * min(w, h),  # radius
            rng.uniform(0.3, 1.2),  # x frequency (cycles per second)
            rng.uniform(0.3, 1.2),  # y frequency
            rng.uniform(0, 2 * math.pi),  # phase
        )
        for colour in _palette(rng, 3)
    ]
    n_frames = max(1, round(seconds * fps))

    def frames() -> Iterable[np.ndarray]:
        for index in range(n_frames):
            t = index / fps
            frame = background.copy()
            for colour, radius, fx, fy, phase in shapes:
                cx = w / 2 + (w / 2 - radius) * math.sin(2 * math.pi * fx * t + phase)
                cy = h / 2 + (h / 2 - radius) * math.cos(2 * math.pi * fy * t + phase * 1.7)
                _fill_disc(frame, w, h, cx, cy, radius, colour)
            yield frame

    buf, out = _open_mp4()
    with out:
        _encode_frames(out, _add_h264(out, w, h, fps), frames())
    return _faststart(buf.getvalue())


_AAC_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)


def make_video_with_audio(
    audio: bytes, *, width: int = 160, height: int = 120, fps: int = 5
) -> bytes:
    """Mux ``audio`` (any decodable format) as AAC under a simple H.264 picture into an MP4.

    The video lasts as long as the audio; a bar shows the playback position. Used to make
    "video interviews" that transcribe back to the speech's text.

    >>> speech = synthesize_speech("Welcome to the show.", voice="onyx", fmt="mp3")
    >>> transcribe_audio(make_video_with_audio(speech), "interview.mp4")["text"]
    'Welcome to the show.'
    """
    _check_size(width, height, where="make_video_with_audio", limit=4096)
    if isinstance(fps, bool) or not isinstance(fps, int) or not 1 <= fps <= 60:
        raise MediaError(
            f"The 'fps' argument of make_video_with_audio() must be an int in [1, 60]. Got {fps!r}."
        )
    samples, sr = _decode_audio(audio, "audio")
    if sr not in _AAC_RATES:
        samples, sr = _resample(samples, sr, 48_000 if sr > 24_000 else 24_000)
    duration = len(samples) / sr
    w, h = _even(width), _even(height)
    n_frames = max(1, math.ceil(duration * fps))

    background = np.empty((h, w, 3), dtype=np.uint8)
    background[:] = (24, 28, 40)
    background = _rgb_to_yuv420p(background)
    bar_colour = _yuv_colour((90, 200, 140))
    bar_top = h - max(2, h // 10) // 2 * 2  # even, so chroma rows line up

    def frames() -> Iterable[np.ndarray]:
        for index in range(n_frames):
            frame = background.copy()
            bar = round(w * (index + 1) / n_frames) // 2 * 2
            for plane, scale, value in zip(
                _planes(frame, w, h), (1, 2, 2), bar_colour, strict=True
            ):
                plane[bar_top // scale :, : bar // scale] = value
            yield frame

    buf, out = _open_mp4()
    with out:
        video = _add_h264(out, w, h, fps)
        sound = out.add_stream("aac", rate=sr, options=_AAC_OPTIONS)
        sound.layout = "mono"
        sound.bit_rate = 96_000
        _encode_frames(out, video, frames())
        _mux_audio(out, sound, samples, sr)
    return _faststart(buf.getvalue())


def _resample(samples: np.ndarray, sr: int, target: int) -> tuple[np.ndarray, int]:
    """Resample mono float32 audio with FFmpeg's resampler (via PyAV)."""
    resampler = av.AudioResampler(format="flt", layout="mono", rate=target)
    frame = av.AudioFrame.from_ndarray(
        np.ascontiguousarray(samples, dtype=np.float32).reshape(1, -1), format="flt", layout="mono"
    )
    frame.sample_rate = sr
    chunks = [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
    chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    return (np.concatenate(chunks) if chunks else np.zeros(0, np.float32)), target
