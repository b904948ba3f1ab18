"""Transcription: folders and lists of audio/video into files, segments and words frames."""

from __future__ import annotations

import io
import shutil
import warnings

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

import deapi_ds
from deapi_ds import _media
from deapi_ds._client import AsyncClient, Transcription
from deapi_ds.emulator._media import make_video_with_audio, synthesize_speech
from deapi_ds.transcription import (
    TranscriptionResult,
    normalize_language,
    transcribe,
    transcribe_folder,
)

EP = "audio.transcriptions"
TEXT_A = "Hello there. How are you today?"
TEXT_B = "The second file talks about the budget."
TEXT_C = "A flac file in a sub folder."
TEXT_V = "Welcome to the show. Our guest is here."
LONG = " ".join(f"Sentence number {i} is about topic {i * 7}." for i in range(14))


def speech(text: str, fmt: str = "mp3", voice: str = "af_bella") -> bytes:
    return synthesize_speech(text, voice=voice, fmt=fmt)


def tone_wav(seconds: float = 1.5, sr: int = 16_000) -> bytes:
    t = np.arange(int(seconds * sr)) / sr
    buf = io.BytesIO()
    sf.write(buf, (0.3 * np.sin(2 * np.pi * 440 * t)).astype("float32"), sr, format="WAV")
    return buf.getvalue()


def requests(emulator) -> int:
    return emulator.stats(EP)["requests"]


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "interviews"
    (root / "sub").mkdir(parents=True)
    (root / ".private").mkdir()
    (root / "a.mp3").write_bytes(speech(TEXT_A, "mp3"))
    (root / "b.wav").write_bytes(speech(TEXT_B, "wav", voice="am_adam"))
    (root / "sub" / "c.flac").write_bytes(speech(TEXT_C, "flac"))
    (root / "tone.wav").write_bytes(tone_wav())
    (root / "video.mp4").write_bytes(make_video_with_audio(speech(TEXT_V, "mp3", voice="bf_emma")))
    (root / "fake.mp3").write_text("this is a text file renamed to mp3\n" * 20)
    (root / "empty.wav").write_bytes(b"")
    (root / ".hidden.mp3").write_bytes(speech("hidden", "mp3"))
    (root / ".private" / "secret.wav").write_bytes(speech("secret", "wav"))
    (root / "notes.txt").write_text("not listed")
    (root / "sub" / "loop").symlink_to(root, target_is_directory=True)  # a symbolic-link loop
    (root / "gone.mp3").symlink_to(tmp_path / "missing.mp3")  # unreadable (broken link)
    return root


# --- a folder in, three tables out ------------------------------------------------------------


def test_folder_every_file_a_row(emulator, folder):
    res = transcribe_folder(folder)
    assert isinstance(res, TranscriptionResult)
    files = res.files
    assert files["file"].tolist() == [
        "a.mp3", "b.wav", "empty.wav", "fake.mp3", "gone.mp3", "sub/c.flac", "tone.wav",
        "video.mp4",
    ]  # fmt: skip
    by = files.set_index("file")
    status = by["status"].to_dict()
    assert status == {
        "a.mp3": "ok", "b.wav": "ok", "empty.wav": "error", "fake.mp3": "error",
        "gone.mp3": "error", "sub/c.flac": "ok", "tone.wav": "ok", "video.mp4": "ok",
    }  # fmt: skip
    assert by.loc["a.mp3", "text"] == TEXT_A
    assert by.loc["b.wav", "text"] == TEXT_B
    assert by.loc["sub/c.flac", "text"] == TEXT_C
    assert by.loc["video.mp4", "text"] == TEXT_V
    assert by.loc["tone.wav", "text"]  # pseudo-words over a tone, but transcribed
    assert by.loc["a.mp3", "language"] == "en"
    assert by.loc["a.mp3", "n_segments"] == 2
    assert "empty" in by.loc["empty.wav", "error"] and "0 bytes" in by.loc["empty.wav", "error"]
    assert "fake.mp3" in by.loc["fake.mp3", "error"]
    assert "not a readable audio" in by.loc["fake.mp3", "error"]
    assert by.loc["fake.mp3", "error_type"] == "MediaError"
    assert "cannot read" in by.loc["gone.mp3", "error"]
    assert not by.loc[["empty.wav", "fake.mp3", "gone.mp3"], "retryable"].any()
    assert by.loc["a.mp3", "retryable"] is pd.NA
    # durations read locally, for every readable audio file
    for name in ("a.mp3", "b.wav", "sub/c.flac", "tone.wav", "video.mp4"):
        expected = _media.probe(str(folder / name)).duration
        assert by.loc[name, "duration"] == pytest.approx(expected, abs=1e-6)
    assert by.loc["tone.wav", "duration"] == pytest.approx(1.5)
    # one request per good file; hidden files, other extensions and the loop are not listed
    assert requests(emulator) == 5
    assert res.meta["ignored"] == 1
    assert files["model"].eq("WhisperLargeV3").all()
    assert files["path"].dtype == "string" and files["status"].dtype == "string"
    assert files["cached"].dtype == "boolean" and not files["cached"].any()
    # segments: seconds from the start of the file, inside the file, with quality fields
    segs = res.segments
    assert set(segs["file"]) == {"a.mp3", "b.wav", "sub/c.flac", "tone.wav", "video.mp4"}
    assert {"avg_logprob", "no_speech_prob", "compression_ratio"} <= set(segs.columns)
    a = segs[segs["file"] == "a.mp3"]
    assert a["text"].tolist() == ["Hello there.", "How are you today?"]
    assert a["segment"].tolist() == [0, 1]
    assert (a["start"] < a["end"]).all() and a["end"].max() <= by.loc["a.mp3", "duration"]
    # WhisperLargeV3 gives no word timestamps unless asked
    assert res.words.empty and list(res.words.columns)[:5] == [
        "file", "segment", "word", "start", "end"
    ]  # fmt: skip


def test_cache_rerun_and_renamed_copy_send_nothing(emulator, folder, tmp_path):
    first = transcribe_folder(folder, pattern="*.mp3")
    assert requests(emulator) == 1  # a.mp3 (fake.mp3 and gone.mp3 fail locally)
    again = transcribe_folder(folder, pattern="*.mp3")
    assert requests(emulator) == 1
    assert again.files.set_index("file").loc["a.mp3", "status"] == "cached"
    assert bool(again.files.set_index("file").loc["a.mp3", "cached"])
    pd.testing.assert_frame_equal(first.segments, again.segments)
    # renamed and moved elsewhere: same bytes, no new request
    other = tmp_path / "elsewhere"
    other.mkdir()
    shutil.copy(folder / "a.mp3", other / "renamed_interview.mp3")
    moved = transcribe_folder(other)
    assert requests(emulator) == 1
    assert moved.files["status"].tolist() == ["cached"]
    assert moved.files["text"].tolist() == [TEXT_A]
    assert moved.segments["file"].tolist() == ["renamed_interview.mp3"] * 2
    # other parameters are other cache entries
    transcribe_folder(other, language="en")
    assert requests(emulator) == 2


def test_identical_inputs_are_sent_once(emulator):
    clip = speech(TEXT_A)
    res = transcribe([clip, clip, bytearray(clip)], cache=None)
    assert requests(emulator) == 1
    assert res.files["status"].tolist() == ["ok", "ok", "ok"]
    assert res.files["file"].tolist() == ["bytes[0]", "bytes[1]", "bytes[2]"]
    assert len(res.segments) == 6


def test_series_input_keeps_index_and_marks_missing(emulator, tmp_path):
    path = tmp_path / "x.wav"
    path.write_bytes(speech(TEXT_B, "wav"))
    s = pd.Series([str(path), None, speech(TEXT_A, "flac"), 42], index=["p", "n", "b", "i"])
    res = transcribe(s)
    assert list(res.files.index) == ["p", "n", "b", "i"]
    assert res.files["status"].tolist() == ["ok", "skipped", "ok", "error"]
    assert res.files.loc["i", "error_type"] == "InvalidInput"
    assert res.files.loc["b", "text"] == TEXT_A
    assert res.files.loc["b", "name"] == "bytes[b].flac"  # the upload got a real extension
    assert res.files.loc["p", "path"] == str(path)
    assert requests(emulator) == 2
    df = pd.DataFrame({"audio": [str(path)], "other": [1]})
    assert transcribe(df, "audio").files["text"].tolist() == [TEXT_B]
    with pytest.raises(deapi_ds.InvalidParameterError, match="Available columns"):
        transcribe(df, "nope")
    with pytest.raises(deapi_ds.InvalidParameterError, match="transcribe_folder"):
        transcribe(str(tmp_path))


# --- big files --------------------------------------------------------------------------------


def test_split_file_matches_single_shot(emulator):
    audio = speech(LONG, "wav")  # ~37 s of 24 kHz PCM (~1.8 MB)
    assert len(audio) > 1_000_000
    whole = transcribe([audio], cache=None, model="WhisperLargeV3Ct2")
    assert requests(emulator) == 1
    split = transcribe([audio], model="WhisperLargeV3Ct2", max_upload_mb=0.1)
    n_chunks = int(split.files["chunks"].iloc[0])
    assert n_chunks >= 3
    assert requests(emulator) == 1 + n_chunks
    assert split.files["status"].tolist() == ["ok"]
    assert split.files["text"].iloc[0] == whole.files["text"].iloc[0] == LONG
    a, b = whole.segments, split.segments
    assert len(a) == len(b) == 14
    assert a["text"].tolist() == b["text"].tolist()
    np.testing.assert_allclose(b["start"].to_numpy(float), a["start"].to_numpy(float), atol=0.1)
    np.testing.assert_allclose(b["end"].to_numpy(float), a["end"].to_numpy(float), atol=0.1)
    wa, wb = whole.words, split.words
    assert wa["word"].tolist() == wb["word"].tolist() == LONG.split()
    np.testing.assert_allclose(wb["start"].to_numpy(float), wa["start"].to_numpy(float), atol=0.1)
    assert wb["segment"].tolist() == wa["segment"].tolist()
    assert split.files["duration"].iloc[0] == pytest.approx(whole.files["duration"].iloc[0])
    # paid once: the stitched file is cached whole
    transcribe([audio], model="WhisperLargeV3Ct2", max_upload_mb=0.1)
    assert requests(emulator) == 1 + n_chunks


class _RecordingClient(AsyncClient):
    """The real client, remembering what was uploaded."""

    async def transcribe(self, file, **kwargs):  # type: ignore[override]
        self.uploads = [*getattr(self, "uploads", []), (kwargs["filename"], len(file))]
        return await super().transcribe(file, **kwargs)


def test_video_is_reduced_to_its_audio_track(emulator):
    video = make_video_with_audio(speech(TEXT_V), width=320, height=240, fps=25)
    client = _RecordingClient()
    res = transcribe([video], cache=None, client=client)
    assert res.files["text"].tolist() == [TEXT_V]
    assert res.files["duration"].iloc[0] == pytest.approx(_media.probe(video).duration)
    [(filename, size)] = client.uploads
    assert filename.endswith(".mp3") and size < len(video)  # the audio track, not the video


def test_failed_chunk_is_the_only_one_sent_again(emulator):
    deapi_ds.set_config(max_retries=0)
    audio = speech(LONG, "wav")
    emulator.configure(EP, script=[None, 500])
    with pytest.raises(deapi_ds.BatchError) as info:  # the only file failed: loud
        transcribe([audio], max_upload_mb=0.1, concurrency=1)
    res = info.value.partial
    n_chunks = int(res.files["chunks"].iloc[0])
    row = res.files.iloc[0]
    assert row["status"] == "error" and bool(row["retryable"])
    assert row["error_type"] == "ServerError"
    assert f"chunk 2 of {n_chunks}" in row["error"]
    assert requests(emulator) == n_chunks
    again = transcribe([audio], max_upload_mb=0.1, concurrency=1)
    assert again.files["status"].tolist() == ["ok"]
    assert requests(emulator) == n_chunks + 1  # only the failed chunk
    assert again.files["text"].iloc[0] == LONG


# --- paid once: resume -------------------------------------------------------------------------


def _clips(tmp_path, n):
    root = tmp_path / "clips"
    root.mkdir()
    for i in range(n):
        (root / f"clip{i:02d}.mp3").write_bytes(speech(f"Clip number {i} is short."))
    return root


def test_rerun_after_server_errors_sends_only_missing(emulator, tmp_path):
    deapi_ds.set_config(max_retries=0)
    root = _clips(tmp_path, 6)
    emulator.configure(EP, script=[None, None, 503, 500, 500, 502])
    first = transcribe_folder(root, concurrency=1)
    assert first.files["status"].tolist() == ["ok"] * 2 + ["error"] * 4
    assert first.files["retryable"].iloc[2:].all()
    assert requests(emulator) == 6
    second = transcribe_folder(root)
    assert second.files["status"].tolist() == ["cached"] * 2 + ["ok"] * 4
    assert requests(emulator) == 10
    assert second.files["text"].tolist() == [f"Clip number {i} is short." for i in range(6)]


def test_crash_mid_run_keeps_what_finished(emulator, tmp_path):
    root = _clips(tmp_path, 5)
    emulator.configure(EP, script=[None, None, 401])
    with pytest.raises(deapi_ds.AuthenticationError):
        transcribe_folder(root, concurrency=1)
    sent = requests(emulator)
    assert sent == 3
    res = transcribe_folder(root)
    assert (res.files["status"] == "cached").sum() == 2
    assert requests(emulator) == sent + 3


# --- validation before spending ------------------------------------------------------------------


def test_parameters_are_checked_before_any_request(emulator, tmp_path):
    path = tmp_path / "a.mp3"
    path.write_bytes(speech(TEXT_A))
    with pytest.raises(deapi_ds.InvalidParameterError, match="WhisperLargeV3Ct2"):
        transcribe([path], word_timestamps=True)
    with pytest.raises(deapi_ds.InvalidParameterError, match="to_srt"):
        transcribe([path], response_format="srt")
    with pytest.raises(deapi_ds.InvalidParameterError, match="ISO-639-1"):
        transcribe([path], language="English")
    with pytest.raises(deapi_ds.InvalidParameterError, match="max_upload_mb"):
        transcribe([path], max_upload_mb=0)
    with pytest.raises(deapi_ds.InvalidParameterError, match="cannot do"):
        transcribe([path], model="Kokoro")
    with pytest.raises(deapi_ds.InvalidParameterError, match="does not exist"):
        transcribe_folder(tmp_path / "nope")
    assert requests(emulator) == 0


def test_text_and_json_formats(emulator, tmp_path):
    path = tmp_path / "a.mp3"
    path.write_bytes(speech(TEXT_A))
    for fmt in ("text", "json"):
        res = transcribe([path], response_format=fmt)
        assert res.files["text"].tolist() == [TEXT_A]
        assert res.files["n_segments"].isna().all()
        assert res.segments.empty
        assert res.files["duration"].notna().all()


# --- words --------------------------------------------------------------------------------------


def test_word_timestamps_with_ct2(emulator, tmp_path):
    path = tmp_path / "a.mp3"
    path.write_bytes(speech(TEXT_A))
    res = transcribe([path], model="WhisperLargeV3Ct2")
    words = res.words
    assert words["word"].tolist() == TEXT_A.split()
    assert words["segment"].tolist() == [0, 0, 1, 1, 1, 1]
    assert words["start"].notna().all() and (words["start"] < words["end"]).all()
    assert res.meta["word_timestamps"] is True
    no_words = transcribe([path], model="WhisperLargeV3Ct2", word_timestamps=False)
    assert no_words.words.empty and requests(emulator) == 2


class _GappyClient(AsyncClient):
    """Answers like a server that leaves some word timestamps out."""

    async def transcribe(self, file, **kwargs):  # type: ignore[override]
        self.calls = getattr(self, "calls", 0) + 1
        return Transcription(
            text="one two three and four",
            language="english",
            duration=2.0,
            segments=[
                {"id": 0, "start": 0.0, "end": 1.0, "text": "one two"},
                {"id": 1, "start": 1.0, "end": 2.0, "text": "three and four"},
            ],
            words=[
                {"word": "one", "start": 0.1, "end": 0.4},
                {"word": "two"},
                {"word": "three", "start": 1.1, "end": None},
                {"word": "and"},
                {"word": "four", "start": 1.5, "end": 1.9},
            ],
        )


def test_missing_word_timestamps_stay_missing(emulator):
    client = _GappyClient()
    res = transcribe([speech("x")], client=client, cache=None)
    assert client.calls == 1
    w = res.words
    assert w["word"].tolist() == ["one", "two", "three", "and", "four"]
    assert w["start"].isna().tolist() == [False, True, False, True, False]
    assert w["end"].isna().tolist() == [False, True, True, True, False]
    assert w.loc[1, "start"] is pd.NA and w["start"].dtype == "Float64"
    # a word without times takes its neighbours' segment only when they agree
    assert w["segment"].astype("object").tolist() == [0, pd.NA, 1, 1, 1]
    assert res.files["language"].tolist() == ["en"]  # "english" -> ISO code


def test_normalize_language():
    assert normalize_language("English") == "en"
    assert normalize_language("en-US") == "en"
    assert normalize_language("yue") == "yue"
    assert normalize_language("") is None


# --- analysis helpers ----------------------------------------------------------------------------


def test_srt_and_vtt_parse_back(emulator, folder, tmp_path):
    res = transcribe_folder(folder, pattern="*.mp*")
    segs = res.segments_of("a.mp3")
    for text, parse in (
        (res.to_srt("a.mp3"), _media.parse_srt),
        (res.to_vtt("a.mp3"), _media.parse_vtt),
    ):
        cues = parse(text)
        assert [c["text"] for c in cues] == segs["text"].tolist()
        np.testing.assert_allclose(
            [c["start"] for c in cues], segs["start"].to_numpy(float), atol=1e-3
        )
        np.testing.assert_allclose([c["end"] for c in cues], segs["end"].to_numpy(float), atol=1e-3)
    target = tmp_path / "a.srt"
    res.to_srt(str(folder / "a.mp3"), path=target)  # a path works as the file id
    assert _media.parse_srt(target.read_text())[0]["text"] == "Hello there."
    written = res.export_subtitles(tmp_path / "subs", fmt="vtt")
    assert sorted(written["file"]) == ["a.mp3", "video.mp4"]
    assert (tmp_path / "subs" / "a.vtt").exists() and (tmp_path / "subs" / "video.vtt").exists()
    with pytest.raises(deapi_ds.InvalidParameterError, match="no transcript"):
        res.to_srt("fake.mp3")
    with pytest.raises(deapi_ds.InvalidParameterError, match="not in this result"):
        res.to_srt("nothing.mp3")


def test_stats_search_and_play(emulator, folder):
    res = transcribe_folder(folder, pattern="*.wav", model="WhisperLargeV3Ct2")
    stats = res.speaking_stats().set_index("file")
    b = stats.loc["b.wav"]
    assert b["words"] == len(TEXT_B.split())
    seg = res.segments_of("b.wav")
    assert b["speaking_time"] == pytest.approx(float((seg["end"] - seg["start"]).sum()))
    assert b["words_per_minute"] == pytest.approx(b["words"] / b["speaking_time"] * 60)
    assert stats.loc["empty.wav", "words"] is pd.NA
    hits = res.search_text("budget")
    assert hits["file"].tolist() == ["b.wav"]
    assert res.search_text(r"bud\w+", regex=True)["file"].tolist() == ["b.wav"]
    assert res.search_text("BUDGET", case=True).empty
    html = res.play(hits.iloc[0])
    markup = html._repr_html_() if hasattr(html, "_repr_html_") else html.data
    assert "<audio" in markup and f"#t={hits.iloc[0]['start']:g}"[:6] in markup
    view = res.view_segments("b.wav")
    view_markup = view._repr_html_() if hasattr(view, "_repr_html_") else view.data
    assert view_markup.count("<audio") == len(seg)


def test_semantic_search_over_segments(emulator, folder):
    pytest.importorskip("deapi_ds.embeddings")
    res = transcribe_folder(folder, pattern="*.wav")
    found = res.semantic_search("the budget file", k=2)
    assert found["rank"].tolist() == [1, 2]
    assert found.iloc[0]["file"] == "b.wav"


def test_progress_counts_audio_seconds(emulator, folder, monkeypatch):
    from deapi_ds import display

    seen = {}

    class Bar:
        def __init__(self, total, desc, unit, disable):
            seen.update(unit=unit, n=0.0, cached=0.0)
            self.total = total

        def __setattr__(self, name, value):  # the total grows as files are probed
            seen[name] = value

        def update(self, n=1, *, failed=0):
            seen["n"] += n

        def set_cached(self, n):
            seen["cached"] += n

        def waiting(self, seconds):
            pass

        def close(self):
            pass

    monkeypatch.setattr(
        display, "progress", lambda total, desc, unit, disable: Bar(total, desc, unit, disable)
    )
    res = transcribe_folder(folder, pattern="*.mp3")
    assert seen["unit"] == "s"
    assert seen["total"] == pytest.approx(res.files["duration"].sum(), abs=0.1)
    assert seen["n"] == pytest.approx(seen["total"], abs=0.1)
    transcribe_folder(folder, pattern="*.mp3")
    assert seen["cached"] == pytest.approx(seen["total"], abs=0.1)


def test_keep_audio_plays_after_the_file_is_gone(emulator, tmp_path):
    path = tmp_path / "a.mp3"
    path.write_bytes(speech(TEXT_A))
    kept = transcribe([path], keep_audio=True)
    reread = transcribe([path])
    path.unlink()
    html = kept.play((str(path), 1))
    markup = html._repr_html_() if hasattr(html, "_repr_html_") else html.data
    assert "<audio" in markup and "#t=" in markup
    with pytest.raises(deapi_ds.InvalidParameterError, match="keep_audio=True"):
        reread.play(reread.segments.iloc[0])


# --- review: hardening ---------------------------------------------------------------------------


def test_each_file_is_probed_once(emulator, tmp_path, monkeypatch):
    (tmp_path / "a.mp3").write_bytes(speech(TEXT_A))
    (tmp_path / "v.mp4").write_bytes(make_video_with_audio(speech(TEXT_V)))
    probed = []
    real = _media.probe
    monkeypatch.setattr(_media, "probe", lambda data, **k: probed.append(k) or real(data, **k))
    res = transcribe_folder(tmp_path, cache=None)
    assert res.files["status"].tolist() == ["ok", "ok"]
    assert res.files["text"].tolist() == [TEXT_A, TEXT_V]
    assert len(probed) == 2  # prepare_upload takes the probe's result


def test_progress_bar_never_runs_past_its_total(emulator):
    from tqdm import TqdmWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", TqdmWarning)  # "clamping frac to range [0, 1]"
        # no pauses, so the chunks overlap and add up to more seconds than the file has
        split = transcribe([tone_wav(40.0)], max_upload_mb=0.1, progress=True)
        assert split.files["status"].tolist() == ["ok"] and split.files["chunks"].iloc[0] >= 3
        # a cached rerun whose seconds (3.12) round down at one decimal place
        clips = [tone_wav(s) for s in (1.04, 1.04, 1.04)]
        transcribe(clips, progress=True)
        transcribe(clips, progress=True)
    assert [str(w.message) for w in caught if issubclass(w.category, TqdmWarning)] == []


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_split_file_in_text_formats_looks_like_a_whole_one(emulator, fmt):
    res = transcribe([speech(LONG, "wav"), speech(TEXT_A)], max_upload_mb=0.1, response_format=fmt)
    assert res.files["chunks"].tolist() == [res.files["chunks"].iloc[0], 1]
    assert res.files["chunks"].iloc[0] >= 3
    assert res.files["text"].tolist() == [LONG, TEXT_A]  # the overlap is not repeated
    assert res.files["n_segments"].isna().all()
    assert res.segments.empty and res.words.empty


def test_view_segments_embeds_each_segment_not_the_file(emulator, tmp_path):
    import base64
    import re

    path = tmp_path / "long.mp3"
    path.write_bytes(speech(LONG, "mp3"))
    res = transcribe([path])
    segs = res.segments
    assert len(segs) == 14 and path.stat().st_size < 2_000_000  # small enough to embed whole
    view = res.view_segments()
    markup = view._repr_html_() if hasattr(view, "_repr_html_") else view.data
    assert markup.count("<audio") == 14
    assert len(markup) < 2 * path.stat().st_size  # was 14 copies of the whole file (x 4/3)
    uris = re.findall(r'src="data:audio/[^;]+;base64,([^"#]+)', markup)
    clip = base64.b64decode(uris[3])
    expected = float(segs["end"].iloc[3] - segs["start"].iloc[3])
    assert _media.probe(clip, name="c.mp3").duration == pytest.approx(expected, abs=0.05)


def test_unreadable_and_vanishing_files_are_rows(emulator, tmp_path, monkeypatch):
    from deapi_ds import transcription

    for name in ("a.mp3", "b.mp3", "c.mp3", "d.mp3"):
        (tmp_path / name).write_bytes(speech(f"File {name} speaking.", voice="am_adam"))
    real_open, real_walk, real_probe = open, transcription._walk, _media.probe

    def no_permission(file, *args, **kwargs):  # chmod 000 cannot stop root: fake it
        if str(file).endswith("b.mp3"):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    def walk_then_delete(*args, **kwargs):  # deleted between listing and reading
        found = real_walk(*args, **kwargs)
        (tmp_path / "c.mp3").unlink()
        return found

    def probe_then_delete(data, **kwargs):  # deleted between probing and uploading
        info = real_probe(data, **kwargs)
        if kwargs.get("name") == "d.mp3":
            (tmp_path / "d.mp3").unlink()
        return info

    monkeypatch.setattr(transcription, "open", no_permission, raising=False)
    monkeypatch.setattr(transcription, "_walk", walk_then_delete)
    monkeypatch.setattr(_media, "probe", probe_then_delete)
    res = transcribe_folder(tmp_path, cache=None)
    by = res.files.set_index("file")
    assert by["status"].tolist() == ["ok", "error", "error", "error"]
    assert by.loc["a.mp3", "text"] == "File a.mp3 speaking."
    assert by.loc["b.mp3", "error"] == "b.mp3: cannot read the file (Permission denied)."
    assert by.loc["b.mp3", "error_type"] == "PermissionError"
    for name in ("c.mp3", "d.mp3"):
        assert by.loc[name, "error"] == f"{name}: cannot read the file (No such file or directory)."
        assert by.loc[name, "error_type"] == "FileNotFoundError"
    assert not by.loc[["b.mp3", "c.mp3", "d.mp3"], "retryable"].any()
    assert requests(emulator) == 1


def test_folder_that_cannot_be_listed_warns(emulator, tmp_path, monkeypatch):
    import os

    (tmp_path / "locked").mkdir()
    (tmp_path / "locked" / "x.mp3").write_bytes(speech(TEXT_A))
    (tmp_path / "a.mp3").write_bytes(speech(TEXT_A))
    real_scandir = os.scandir

    def scandir(path="."):
        if str(path).endswith("locked"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    with pytest.warns(UserWarning, match=r"could not list 1 folder.*locked \(Permission denied\)"):
        res = transcribe_folder(tmp_path)
    assert res.files["file"].tolist() == ["a.mp3"]
    assert res.meta["unlisted"] == [str(tmp_path / "locked")]


def test_summary_uses_a_readable_unit():
    from deapi_ds.transcription import _human_duration

    assert _human_duration(41.2) == "41 s"
    assert _human_duration(750) == "12.5 min"
    assert _human_duration(3.25 * 3600) == "3.25 h"
