"""Tests for deapi_ds.emulator._media: fake images, speech, transcripts and videos."""

from __future__ import annotations

import ast
import hashlib
import io
import pathlib
import subprocess
import sys
import time

import av
import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from deapi_ds.emulator import _media as media
from deapi_ds.emulator._media import (
    MediaError,
    audio_duration,
    image_size,
    make_video_with_audio,
    render_mp4,
    render_png,
    synthesize_speech,
    transcribe_audio,
)

UNICODE_TEXT = "Café naïve — déjà vu! Emoji 🎉🚀 work. 你好，世界。 Ünïcödé ß € “quotes”?"
TOLERANCE_S = 0.05  # word times must be this close to where the word's tones really are


def truth(text: str, speed: float = 1.0) -> list[tuple[str, float, float]]:
    """Where synthesize_speech really put each word (word, start, end) in seconds."""
    return media._speech_layout(text, speed)[4]


def assert_words_match(
    words: list[dict], expected: list[tuple[str, float, float]], shift: float = 0.0
) -> None:
    assert [w["word"] for w in words] == [w for w, _, _ in expected]
    for got, (word, start, end) in zip(words, expected, strict=True):
        assert abs(got["start"] - (start - shift)) <= TOLERANCE_S, (word, got, start - shift)
        assert abs(got["end"] - (end - shift)) <= TOLERANCE_S, (word, got, end - shift)
        assert got["start"] < got["end"]


def decode(data: bytes, filename: str = "audio") -> tuple[np.ndarray, int]:
    return media._decode_audio(data, filename)


def wav_bytes(samples: np.ndarray, sr: int) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, samples, sr, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def resample(samples: np.ndarray, sr: int, target: int) -> np.ndarray:
    """Resample with FFmpeg's resampler, independently of the module's helper."""
    resampler = av.AudioResampler(format="flt", layout="mono", rate=target)
    frame = av.AudioFrame.from_ndarray(
        samples.astype(np.float32).reshape(1, -1), format="flt", layout="mono"
    )
    frame.sample_rate = sr
    out = [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
    out += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    return np.concatenate(out)


# ------------------------------------------------------------------------------ speech round trip


@pytest.mark.parametrize("fmt", ["mp3", "wav", "flac", "opus", "aac", "pcm"])
def test_round_trip_every_format_is_exact_with_accurate_word_times(fmt: str) -> None:
    audio = synthesize_speech(UNICODE_TEXT, voice="alloy", fmt=fmt)
    result = transcribe_audio(audio, f"speech.{fmt}")
    assert result["text"] == UNICODE_TEXT
    assert_words_match(result["words"], truth(UNICODE_TEXT))
    assert [w for s in result["segments"] for w in s["words"]] == result["words"]
    assert " ".join(s["text"] for s in result["segments"]) == UNICODE_TEXT


def test_formats_are_what_they_claim() -> None:
    def speech(fmt: str) -> bytes:
        return synthesize_speech("Format check.", voice="alloy", fmt=fmt)

    assert speech("wav")[:4] == b"RIFF" and speech("flac")[:4] == b"fLaC"
    opus = speech("opus")
    assert opus[:4] == b"OggS" and b"OpusHead" in opus[:100]
    assert sf.info(io.BytesIO(opus)).samplerate in (24_000, 48_000)
    mp3 = speech("mp3")
    assert mp3[:3] == b"ID3" or mp3[0] == 0xFF
    assert sf.info(io.BytesIO(mp3)).format == "MP3"
    aac = speech("aac")
    assert aac[0] == 0xFF and aac[1] & 0xF6 == 0xF0  # ADTS sync word
    with av.open(io.BytesIO(aac)) as container:
        assert container.streams.audio[0].codec_context.name == "aac"
    pcm = speech("pcm")
    assert len(pcm) % 2 == 0
    assert len(pcm) / 2 / 24_000 == pytest.approx(audio_duration(speech("wav")), abs=1e-3)


@pytest.mark.parametrize("speed", [0.5, 0.75, 1.5, 2.0])
@pytest.mark.parametrize("fmt", ["mp3", "opus"])
def test_round_trip_at_other_speeds(speed: float, fmt: str) -> None:
    text = "Speed changes timing, not the words. Réglé?"
    result = transcribe_audio(synthesize_speech(text, voice="nova", fmt=fmt, speed=speed))
    assert result["text"] == text
    assert_words_match(result["words"], truth(text, speed))


def test_faster_speech_is_shorter() -> None:
    text = "The quick brown fox jumps over the lazy dog."
    durations = [
        audio_duration(synthesize_speech(text, voice="echo", fmt="wav", speed=s))
        for s in (0.5, 1.0, 1.5, 2.0)
    ]
    assert durations == sorted(durations, reverse=True)
    assert durations[0] > 1.6 * durations[1] > 0  # nearly twice as long at half speed


@pytest.mark.parametrize("voice", ["alloy", "echo", "fable", "onyx", "nova", "shimmer", "af_bella"])
def test_voices_sound_different_but_decode_the_same(voice: str) -> None:
    text = "Every voice says the same thing."
    audio = synthesize_speech(text, voice=voice, fmt="opus", speed=0.5)
    assert audio != synthesize_speech(text, voice="other voice", fmt="opus", speed=0.5)
    assert transcribe_audio(audio)["text"] == text


def test_random_unicode_texts_round_trip() -> None:
    rng = np.random.default_rng(7)
    alphabet = [chr(c) for c in [*range(33, 127), *range(0xC0, 0x17F)]] + list("你好世界😀🚀€…")
    for _ in range(6):
        words = [
            "".join(rng.choice(alphabet, size=rng.integers(1, 10)))
            for _ in range(rng.integers(1, 15))
        ]
        text = " ".join(words)
        audio = synthesize_speech(text, voice="fable", fmt="mp3", speed=1.5)
        assert transcribe_audio(audio)["text"] == text


def test_whitespace_is_normalised_like_speech() -> None:
    audio = synthesize_speech("  Two\n\nlines\tand   spaces.  ", voice="alloy", fmt="wav")
    assert transcribe_audio(audio)["text"] == "Two lines and spaces."


def test_resampled_to_16k_mono_and_stereo_44k_still_decode() -> None:
    samples, sr = decode(synthesize_speech(UNICODE_TEXT, voice="onyx", fmt="mp3"))
    assert sr == 24_000
    mono16 = resample(samples, sr, 16_000)
    result = transcribe_audio(wav_bytes(mono16, 16_000), "16k.wav")
    assert result["text"] == UNICODE_TEXT
    assert_words_match(result["words"], truth(UNICODE_TEXT))
    stereo = resample(samples, sr, 44_100)
    buf = io.BytesIO()
    sf.write(buf, np.stack([stereo, 0.5 * stereo], axis=1), 44_100, format="MP3")
    assert transcribe_audio(buf.getvalue(), "stereo.mp3")["text"] == UNICODE_TEXT


def test_quiet_and_slightly_noisy_audio_still_decode() -> None:
    samples, sr = decode(synthesize_speech("Quiet please.", voice="alloy", fmt="wav"))
    noise = np.random.default_rng(0).normal(0, 0.003, len(samples)).astype(np.float32)
    assert transcribe_audio(wav_bytes(samples * 0.05, sr))["text"] == "Quiet please."
    assert transcribe_audio(wav_bytes(samples + noise, sr))["text"] == "Quiet please."


@pytest.mark.parametrize("fmt", ["wav", "mp3"])
def test_cut_at_a_silence_between_words(fmt: str) -> None:
    text = "First part of the clip. Second part follows here now."
    audio = synthesize_speech(text, voice="alloy", fmt=fmt)
    words = transcribe_audio(audio)["words"]
    samples, sr = decode(audio)
    expected = truth(text)
    for k in (2, 4, 6):  # inside a sentence and at the sentence break
        cut = (words[k]["end"] + words[k + 1]["start"]) / 2
        index = round(cut * sr)
        head = transcribe_audio(wav_bytes(samples[:index], sr), "head.wav")
        tail = transcribe_audio(wav_bytes(samples[index:], sr), "tail.wav")
        assert_words_match(head["words"], expected[: k + 1])
        assert_words_match(tail["words"], expected[k + 1 :], shift=index / sr)
        assert f"{head['text']} {tail['text']}" == text
        assert tail["duration"] == pytest.approx((len(samples) - index) / sr, abs=2e-3)


def test_concatenated_clips_decode_to_both_texts() -> None:
    first, sr = decode(synthesize_speech("Hello from clip one", voice="alloy", fmt="mp3"))
    second, _ = decode(synthesize_speech("and clip two.", voice="nova", fmt="flac"))
    result = transcribe_audio(wav_bytes(np.concatenate([first, second]), sr))
    assert result["text"] == "Hello from clip one and clip two."
    offset = len(first) / sr
    assert_words_match(result["words"][4:], truth("and clip two."), shift=-offset)


def test_long_text_gives_one_segment_per_sentence() -> None:
    sentences = [
        "Data scientists like tables.",
        "They also like plots!",
        "Do they like waiting?",
        "No.",
        "So batches help a lot.",
    ]
    text = " ".join(sentences)
    result = transcribe_audio(synthesize_speech(text, voice="alloy", fmt="mp3"))
    segments = result["segments"]
    assert [s["text"] for s in segments] == sentences
    assert [s["id"] for s in segments] == list(range(len(sentences)))
    for seg in segments:
        assert seg["start"] == seg["words"][0]["start"] and seg["end"] == seg["words"][-1]["end"]
        assert set(seg) >= {"seek", "tokens", "temperature", "avg_logprob", "compression_ratio"}
        assert 0.0 <= seg["no_speech_prob"] <= 1.0
    starts = [s["start"] for s in segments]
    assert starts == sorted(starts)
    assert result["duration"] > segments[-1]["end"]


def test_duration_grows_with_text_like_speech() -> None:
    short = synthesize_speech("Hi.", voice="alloy", fmt="wav")
    text = "The emulator speaks at a pace close to a real voice, sentence after sentence."
    long = synthesize_speech(text, voice="alloy", fmt="wav")
    assert audio_duration(short) < audio_duration(long)
    chars_per_second = len(text) / audio_duration(long)
    assert 10 <= chars_per_second <= 16


def test_empty_text_is_silence() -> None:
    audio = synthesize_speech("", voice="alloy", fmt="wav")
    result = transcribe_audio(audio)
    assert result["text"] == "" and result["segments"] == [] and result["words"] == []
    assert result["duration"] == pytest.approx(0.5)


# ------------------------------------------------------------------------------ video with audio


def test_video_with_audio_is_playable_and_transcribes_back() -> None:
    text = "Welcome to the interview. Tell us about yourself."
    speech = synthesize_speech(text, voice="onyx", fmt="mp3")
    mp4 = make_video_with_audio(speech, width=160, height=120, fps=5)
    assert mp4[4:8] == b"ftyp"
    assert mp4.find(b"moov") < mp4.find(b"mdat")  # +faststart
    with av.open(io.BytesIO(mp4)) as container:
        video, audio = container.streams.video[0], container.streams.audio[0]
        assert video.codec_context.name == "h264" and audio.codec_context.name == "aac"
        assert (video.codec_context.width, video.codec_context.height) == (160, 120)
        frames = sum(1 for _ in container.decode(video=0))
    speech_seconds = audio_duration(speech)
    assert frames == pytest.approx(speech_seconds * 5, abs=1.5)
    result = transcribe_audio(mp4, "interview.mp4")
    assert result["text"] == text
    assert_words_match(result["words"], truth(text))
    assert result["duration"] == pytest.approx(speech_seconds, abs=0.05)
    assert audio_duration(mp4, "interview.mp4") == pytest.approx(speech_seconds, abs=0.05)


def test_video_with_44k_audio() -> None:
    samples, sr = decode(synthesize_speech("Odd rates work too.", voice="echo", fmt="wav"))
    mp4 = make_video_with_audio(wav_bytes(resample(samples, sr, 44_100), 44_100))
    assert transcribe_audio(mp4, "clip.mov")["text"] == "Odd rates work too."


# ------------------------------------------------------------------------------ other audio


def test_other_audio_gives_deterministic_pseudo_text() -> None:
    sr = 16_000
    rng = np.random.default_rng(1)
    noise = (rng.normal(0, 0.1, 4 * sr)).astype(np.float32)
    data = wav_bytes(noise, sr)
    result = transcribe_audio(data, "noise.wav")
    assert result == transcribe_audio(data, "noise.wav")
    assert 6 <= len(result["words"]) <= 14  # a few words per second of sound
    assert result["text"] and result["text"].endswith(".")
    other = transcribe_audio(wav_bytes(noise[::-1].copy(), sr), "noise.wav")
    assert other["text"] != result["text"]
    t = np.arange(3 * sr) / sr
    chord = 0.2 * (np.sin(2 * np.pi * 440 * t) + np.sin(2 * np.pi * 660 * t))
    assert transcribe_audio(wav_bytes(chord.astype(np.float32), sr))["text"]


def test_silence_gives_empty_text() -> None:
    result = transcribe_audio(wav_bytes(np.zeros(32_000, dtype=np.float32), 16_000))
    assert result["text"] == "" and result["segments"] == []
    assert result["duration"] == pytest.approx(2.0)


def test_pseudo_text_only_covers_sound() -> None:
    sr = 16_000
    samples = np.zeros(6 * sr, dtype=np.float32)
    samples[2 * sr : 4 * sr] = np.random.default_rng(2).normal(0, 0.1, 2 * sr)
    words = transcribe_audio(wav_bytes(samples, sr))["words"]
    assert words and all(1.9 <= w["start"] < w["end"] <= 4.1 for w in words)


# ------------------------------------------------------------------------------ options


def test_language_given_or_guessed() -> None:
    def lang(text: str, **kwargs: object) -> str:
        audio = synthesize_speech(text, voice="alloy", fmt="wav")
        return transcribe_audio(audio, **kwargs)["language"]

    assert lang("The cat is on the table.") == "en"
    assert lang("Le chat est sur la table et il dort.") == "fr"
    assert lang("El perro está en la casa.") == "es"
    assert lang("Der Hund ist nicht hier.") == "de"
    assert lang("Il gatto è sul tavolo.") == "it"
    assert lang("Eu não sei o que é isso.") == "pt"
    assert lang("你好世界") == "zh"
    assert lang("The cat.", language="pl") == "pl"


def test_word_timestamps_false_leaves_words_out() -> None:
    audio = synthesize_speech("No words please.", voice="alloy", fmt="wav")
    result = transcribe_audio(audio, word_timestamps=False)
    assert result["text"] == "No words please."
    assert "words" not in result and all("words" not in s for s in result["segments"])


def test_raw_pcm_is_read_by_file_name() -> None:
    pcm = synthesize_speech("Raw samples.", voice="alloy", fmt="pcm")
    assert transcribe_audio(pcm, "speech.pcm")["text"] == "Raw samples."
    assert audio_duration(pcm, "speech.raw") == pytest.approx(len(pcm) / 2 / 24_000)


# ------------------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    ("data", "filename", "fragment"),
    [
        (b"", "empty.mp3", "empty"),
        (b"Dear diary, this is a text file and not audio.\n" * 20, "notes.mp3", "look like text"),
        (b"\x00\x01\x02" * 1000, "noise.bin", "cannot decode"),
        (b"\x00" * 1001, "odd.pcm", "odd number of bytes"),
    ],
)
def test_undecodable_audio_raises_media_error(data: bytes, filename: str, fragment: str) -> None:
    with pytest.raises(MediaError) as info:
        transcribe_audio(data, filename)
    message = str(info.value)
    assert filename in message and fragment in message.lower()
    with pytest.raises(MediaError):
        audio_duration(data, filename)
    assert isinstance(info.value, ValueError)


def test_video_without_sound_raises_media_error() -> None:
    with pytest.raises(MediaError, match="no audio track"):
        transcribe_audio(render_mp4("silent film", 32, 32, 1.0), "film.mp4")


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"fmt": "ogg"}, "'fmt'"),
        ({"fmt": "mp3", "speed": 5.0}, "'speed'"),
        ({"fmt": "mp3", "speed": 0.1}, "'speed'"),
    ],
)
def test_bad_speech_arguments(kwargs: dict, fragment: str) -> None:
    with pytest.raises(MediaError, match=fragment):
        synthesize_speech("text", voice="alloy", **kwargs)


# ------------------------------------------------------------------------------ images


def pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.float32)


@pytest.mark.parametrize("size", [(1, 1), (64, 48), (512, 512), (1024, 576), (333, 777)])
def test_png_has_exact_size(size: tuple[int, int]) -> None:
    png = render_png("a red fox in the snow", *size)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert image_size(png) == size
    assert Image.open(io.BytesIO(png)).format == "PNG"


def test_png_is_deterministic_and_depends_on_prompt_and_seed() -> None:
    a = render_png("a red fox in the snow", 128, 128, seed=1)
    assert a == render_png("a red fox in the snow", 128, 128, seed=1)
    b = render_png("a blue whale in the ocean", 128, 128, seed=1)
    c = render_png("a red fox in the snow", 128, 128, seed=2)
    assert np.abs(pixels(a) - pixels(b)).mean() > 20  # visibly different
    assert np.abs(pixels(a) - pixels(c)).mean() > 20
    assert pixels(a).std() > 10  # not a flat colour


def test_png_with_unicode_prompt() -> None:
    png = render_png("Ünïcödé prompt 🎨 with émojis and 中文", 200, 100)
    assert image_size(png) == (200, 100)


def test_edit_is_derived_from_the_source() -> None:
    source = render_png("a red fox in the snow", 256, 256, seed=3)
    other = render_png("a city skyline at night", 256, 256, seed=9)
    edit = render_png("make it look like winter", 128, 128, source=source)
    assert image_size(edit) == (128, 128)
    assert edit == render_png("make it look like winter", 128, 128, source=source)
    assert edit != render_png("make it look like winter", 128, 128, source=other)

    def similarity(x: bytes) -> float:
        small = np.asarray(
            Image.open(io.BytesIO(x)).convert("L").resize((128, 128)), dtype=np.float64
        )[:96]  # above the caption band
        edited = np.asarray(Image.open(io.BytesIO(edit)).convert("L"), dtype=np.float64)[:96]
        flipped = edited[:, ::-1]
        return max(
            np.corrcoef(small.ravel(), edited.ravel())[0, 1],
            np.corrcoef(small.ravel(), flipped.ravel())[0, 1],
        )

    assert similarity(source) > 0.6
    assert similarity(source) > similarity(other) + 0.2


def test_image_errors() -> None:
    with pytest.raises(MediaError, match="empty"):
        image_size(b"")
    with pytest.raises(MediaError, match="cannot decode"):
        image_size(b"GIF? no, just text")
    with pytest.raises(MediaError, match="source"):
        render_png("edit", 64, 64, source=b"not an image")
    with pytest.raises(MediaError, match="'width'"):
        render_png("x", 0, 64)
    jpeg = io.BytesIO()
    Image.new("RGB", (40, 30), (10, 200, 30)).save(jpeg, "JPEG")
    assert image_size(jpeg.getvalue()) == (40, 30)


# ------------------------------------------------------------------------------ videos


def test_mp4_is_small_playable_and_moves() -> None:
    started = time.perf_counter()
    mp4 = render_mp4("a cat surfing a wave", 256, 256, 2.0, fps=8, seed=4)
    elapsed = time.perf_counter() - started
    assert len(mp4) < 200_000
    assert mp4.find(b"moov") < mp4.find(b"mdat")
    with av.open(io.BytesIO(mp4)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert container.duration / 1e6 == pytest.approx(2.0, abs=0.2)
        frames = [f.to_ndarray(format="rgb24").astype(np.float32) for f in container.decode(stream)]
    assert len(frames) == 16
    assert frames[0].shape == (256, 256, 3)
    assert np.abs(frames[0] - frames[8]).mean() > 1.0  # the shapes move
    assert mp4 == render_mp4("a cat surfing a wave", 256, 256, 2.0, fps=8, seed=4)
    assert mp4 != render_mp4("a dog surfing a wave", 256, 256, 2.0, fps=8, seed=4)
    print(f"render_mp4 256x256 2 s: {len(mp4)} bytes in {elapsed:.3f} s")


def test_mp4_odd_size_is_rounded_up_to_even() -> None:
    mp4 = render_mp4("odd", 33, 21, 0.5, fps=4)
    with av.open(io.BytesIO(mp4)) as container:
        ctx = container.streams.video[0].codec_context
        assert (ctx.width, ctx.height) == (34, 22)


def test_mp4_argument_errors() -> None:
    with pytest.raises(MediaError, match="'seconds'"):
        render_mp4("x", 32, 32, 0)
    with pytest.raises(MediaError, match="'fps'"):
        render_mp4("x", 32, 32, 1.0, fps=0)


# ------------------------------------------------------------------------------ determinism


def test_same_bytes_in_same_dict_out() -> None:
    audio = synthesize_speech(UNICODE_TEXT, voice="shimmer", fmt="opus")
    assert audio == synthesize_speech(UNICODE_TEXT, voice="shimmer", fmt="opus")
    assert transcribe_audio(audio, "a.opus") == transcribe_audio(audio, "a.opus")


_HASH_SCRIPT = """
import hashlib, sys
from deapi_ds.emulator import _media as m
speech = m.synthesize_speech("Hello there.", voice="alloy", fmt="wav")
outputs = [
    m.synthesize_speech("Hello there.", voice="alloy", fmt=fmt)
    for fmt in ("mp3", "wav", "flac", "opus", "aac", "pcm")
] + [
    m.render_png("a fox", 64, 48, seed=3),
    m.render_mp4("a fox", 96, 64, 1.0, fps=8, seed=3),
    m.make_video_with_audio(speech),
]
print(" ".join(hashlib.sha256(o).hexdigest() for o in outputs))
"""


def test_outputs_are_identical_across_processes() -> None:
    """Encoders can be non-deterministic (Ogg stream serials, x264 threads and B-frames)."""
    root = pathlib.Path(__file__).resolve().parents[1]
    runs = {
        subprocess.run(
            [sys.executable, "-c", _HASH_SCRIPT],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        for _ in range(2)
    }
    speech = synthesize_speech("Hello there.", voice="alloy", fmt="wav")
    here = [
        synthesize_speech("Hello there.", voice="alloy", fmt=fmt)
        for fmt in ("mp3", "wav", "flac", "opus", "aac", "pcm")
    ] + [
        render_png("a fox", 64, 48, seed=3),
        render_mp4("a fox", 96, 64, 1.0, fps=8, seed=3),
        make_video_with_audio(speech),
    ]
    assert runs == {" ".join(hashlib.sha256(o).hexdigest() for o in here)}


# ------------------------------------------------------------------------------ speed & layering


def test_transcribing_a_minute_is_fast() -> None:
    """Not a timed assertion: prints the decode speed, checks a 60 s+ clip decodes exactly."""
    text = " ".join(
        ["The quick brown fox jumps over the lazy dog, again and again."] * 14
        + ["Pack my box with five dozen liquor jugs!"] * 2
    )
    audio = synthesize_speech(text, voice="alloy", fmt="mp3")
    started = time.perf_counter()
    result = transcribe_audio(audio, "minute.mp3")
    elapsed = time.perf_counter() - started
    assert result["duration"] >= 60
    assert result["text"] == text
    print(f"transcribed {result['duration']:.0f} s of mp3 in {elapsed:.3f} s")


def test_module_imports_nothing_from_deapi_ds_outside_the_emulator() -> None:
    tree = ast.parse(pathlib.Path(media.__file__).read_text(encoding="utf-8"))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level <= 1, "relative imports must stay inside deapi_ds.emulator"
            if node.level == 0 and node.module:
                imported.add(node.module)
    top_level = {name.split(".")[0] for name in imported}
    assert top_level - set(sys.stdlib_module_names) <= {"av", "numpy", "soundfile", "PIL"}
    assert not {n for n in imported if n.startswith("deapi_ds") and ".emulator" not in n}


def test_docstring_examples_run() -> None:
    import doctest

    failures, _ = doctest.testmod(media, optionflags=doctest.ELLIPSIS)
    assert failures == 0
