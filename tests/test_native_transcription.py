"""transcribe() with links and speakers, through native jobs on the in-process emulator."""

from __future__ import annotations

import pandas as pd
import pytest

import deapi_ds
from deapi_ds import _native_transcription as nt
from deapi_ds.emulator import synthesize_dialogue

PODCAST = "https://youtu.be/emuPodcast01"
TURNS = [
    ("am_adam", "Hello and welcome. Today we test diarization."),
    ("af_bella", "Thanks Adam. I will speak second."),
    ("bm_george", "And I am the third voice here."),
    ("am_adam", "Back to me for the closing words."),
    ("af_bella", "Goodbye everyone."),
]


@pytest.fixture
def emu(emulator):
    emulator.native.job_seconds = (0.01, 0.02)
    return emulator


@pytest.fixture
def talk(tmp_path):
    path = tmp_path / "talk.mp3"
    path.write_bytes(synthesize_dialogue(TURNS))
    return str(path)


def test_diarized_file_every_word_has_the_right_speaker(emu, talk):
    res = deapi_ds.transcribe([talk], diarize=True, progress=False)
    assert res.files["status"].tolist() == ["ok"]
    label = {"am_adam": "SPEAKER_00", "af_bella": "SPEAKER_01", "bm_george": "SPEAKER_02"}
    expected = [(w, label[v]) for v, text in TURNS for w in text.split()]
    got = list(zip(res.words["word"], res.words["speaker"], strict=True))
    assert got == expected  # 100% of words carry the right speaker
    assert res.segments["speaker"].notna().all()
    assert res.meta["native"]["native_model"] == "WhisperLargeV3Ct2"
    speakers = res.speakers.set_index("speaker")
    assert speakers.loc["SPEAKER_00", "turns"] == 2 and speakers.loc["SPEAKER_02", "turns"] == 1
    assert speakers.loc["SPEAKER_01", "words"] == len(
        "Thanks Adam. I will speak second. Goodbye everyone.".split()
    )
    assert speakers["share"].sum() == pytest.approx(1.0)
    assert (speakers["longest_monologue"] <= speakers["talk_time"]).all()
    turns = res.turn_taking()
    pairs = set(zip(turns["speaker"], turns["next_speaker"], strict=True))
    assert pairs == {("SPEAKER_00", "SPEAKER_01"), ("SPEAKER_01", "SPEAKER_02"),
                     ("SPEAKER_02", "SPEAKER_00")}  # fmt: skip
    srt, vtt = res.to_srt(talk), res.to_vtt(talk)
    assert "SPEAKER_00: Hello and welcome." in srt and "<v SPEAKER_01>Thanks Adam." in vtt
    assert len(res.search_text("second", speaker="SPEAKER_01")) == 1
    assert res.search_text("second", speaker="SPEAKER_00").empty
    fig = res.talk_time_chart()
    assert len(fig.axes[0].patches) == 3
    timeline = res.speaker_timeline(talk)
    assert [t.get_text() for t in timeline.axes[0].get_yticklabels()] == [
        "SPEAKER_00", "SPEAKER_01", "SPEAKER_02"
    ]  # fmt: skip


def test_links_with_metadata_failures_and_row_alignment(emu):
    links = pd.Series(
        [PODCAST, "https://www.youtube.com/watch?v=emuPrivate04", None,
         "https://www.youtube.com/watch?v=emuMusic0003"],
        index=["a", "b", "c", "d"],
    )  # fmt: skip
    res = deapi_ds.transcribe(links, include_metadata=True, progress=False)
    files = res.files
    assert list(files.index) == ["a", "b", "c", "d"]
    assert files["status"].tolist() == ["ok", "error", "skipped", "no_speech"]
    assert files.loc["a", "title"] == "The Data Show #12: embeddings"
    assert files.loc["a", "view_count"] == 48213 and files.loc["a", "platform"] == "youtube"
    assert files.loc["a", "duration"] > 20
    assert files.loc["b", "error_reason"] == "SOURCE_PRIVATE" and files.loc["b", "refunded"]
    assert files.loc["b", "retryable"] == False  # noqa: E712 - a pandas NA-aware boolean
    assert files.loc["d", "text"] == ""
    flagged = res.flagged()
    assert flagged["flag"].tolist() == ["no_speech"]


def test_rerun_resumes_recorded_jobs_and_then_reads_the_cache(emu, tmp_path):
    emu.native.job_seconds = (0.05, 0.2)
    links = [PODCAST, "https://x.com/i/spaces/1emuSpaceAbc"]
    from deapi_ds import _jobs

    # the "kernel dies" while the jobs run: every job id is already in the cache
    original = _jobs.JobRunner._wait

    async def die(self, *args, **kwargs):
        raise deapi_ds.ConfigurationError("the kernel died")  # fatal: the run stops here

    _jobs.JobRunner._wait = die
    try:
        with pytest.raises(deapi_ds.ConfigurationError, match="kernel died"):
            deapi_ds.transcribe(links, diarize=True, progress=False)
    finally:
        _jobs.JobRunner._wait = original
    assert emu.native.submitted() == 2
    res = deapi_ds.transcribe(links, diarize=True, progress=False)
    assert res.files["status"].tolist() == ["ok", "ok"]
    assert res.meta["native"]["jobs"] == 0 and res.meta["native"]["resumed"] == 2
    assert emu.native.submitted() == 2  # nothing paid twice
    again = deapi_ds.transcribe(links, diarize=True, progress=False)
    assert again.files["status"].tolist() == ["cached", "cached"]
    assert set(again.segments["speaker"]) == {"SPEAKER_00", "SPEAKER_01", "SPEAKER_02"}


def test_tiktok_needs_ct2_and_gateway_refuses_native_options(emu, talk):
    tiktok = "https://www.tiktok.com/@emu.creator/video/7300000000000000001"
    res = deapi_ds.transcribe([tiktok, PODCAST], progress=False)
    assert res.files["status"].tolist() == ["error", "ok"]
    assert "WhisperLargeV3Ct2" in res.files["error"].iloc[0]
    assert emu.native.submitted() == 1  # the TikTok row was refused before sending
    ok = deapi_ds.transcribe([tiktok], model="WhisperLargeV3Ct2", progress=False)
    assert ok.files["status"].tolist() == ["ok"] and ok.files["text"].iloc[0].startswith("Tip one")
    with pytest.raises(deapi_ds.InvalidParameterError, match="api='auto'"):
        deapi_ds.transcribe([talk], diarize=True, api="gateway")
    with pytest.raises(deapi_ds.InvalidParameterError, match="native API"):
        deapi_ds.transcribe([PODCAST], api="gateway")
    with pytest.raises(deapi_ds.InvalidParameterError, match="'api'"):
        deapi_ds.transcribe([talk], api="fast")


def test_files_stay_on_the_gateway_unless_native_is_asked(emu, talk):
    res = deapi_ds.transcribe([talk], progress=False)
    assert res.files["status"].tolist() == ["ok"]
    assert emu.stats("audio.transcriptions")["ok"] == 1 and emu.native.submitted() == 0
    assert "speaker" not in res.segments.columns and "flag" in res.segments.columns
    native = deapi_ds.transcribe([talk], api="native", progress=False)
    assert emu.native.submitted() == 1
    assert native.files["text"].iloc[0] == res.files["text"].iloc[0]


def test_quality_flags_and_link_normalisation():
    segs = pd.DataFrame(
        {"no_speech_prob": [0.9, 0.1, 0.1, None], "compression_ratio": [1.0, 3.0, 1.0, None],
         "avg_logprob": [-0.1, -0.1, -1.5, None]}
    )  # fmt: skip
    assert nt.quality_flags(segs).tolist()[:3] == ["silence", "repetition", "low_confidence"]
    assert pd.isna(nt.quality_flags(segs).iloc[3])
    assert nt.normalize_link("https://youtu.be/abc?si=xyz") == "https://youtu.be/abc"
    assert nt.normalize_link("https://www.youtube.com/watch?t=5&v=abc") == (
        "https://youtube.com/watch?v=abc"
    )
    assert nt.is_link("https://kick.com/a/videos/b") and not nt.is_link("/tmp/a.mp3")


def test_estimate_counts_native_rows_factor_and_unknown_links(emu, talk):
    plain = deapi_ds.estimate_transcribe([talk])
    diar = deapi_ds.estimate_transcribe([talk, PODCAST], diarize=True, include_metadata=True)
    assert diar.quantity == pytest.approx(plain.quantity, abs=0.1) and plain.quantity > 5
    assert diar.cost_usd == pytest.approx(plain.cost_usd * 1.5, rel=1e-3)  # x1.5; the link: unknown
    assert diar.extra["unknown_duration"] == 1 and "unknown duration" in diar.price_note
    assert diar.requests == 2 and emu.native.submitted() == 0
    assert emu.stats("v2.price")["requests"] == 0  # an estimate sends nothing
    quoted = deapi_ds.estimate_transcribe(
        [PODCAST], diarize=True, include_metadata=True, quote=True
    )
    assert quoted.extra["quote_usd"] > 0.005 and emu.stats("v2.price")["requests"] == 1
