"""Tests for deapi_ds.video: job lifecycle, failures, resume after a restart, polling, display."""

from __future__ import annotations

import anyio
import pandas as pd
import pytest

import deapi_ds
from deapi_ds import _cache, _tasks, video
from deapi_ds._catalog import EMULATOR_BASE_URL
from deapi_ds._engine import Engine
from deapi_ds.emulator import Emulator
from deapi_ds.video import VideoJob, VideoJobs, agenerate_video, generate_video

FAST = {"poll": 0.01, "max_poll": 0.02, "size": "256x256", "seconds": 2}


def wire(emu: Emulator) -> Emulator:
    """Make ``emu`` the default client, as deapi_ds.use_emulator() does."""
    _tasks.clear_shared_clients()
    deapi_ds.set_config(
        base_url=EMULATOR_BASE_URL,
        api_key="dpn-sk-0|emulator",
        transport=emu.transport(),
        tier="unlimited",
    )
    return emu


@pytest.fixture
def emu():
    return wire(Emulator(video_polls_to_complete=2))


def counts(emu: Emulator) -> tuple[int, int, int]:
    return tuple(
        emu.stats(ep)["requests"] for ep in ("videos", "videos.retrieve", "videos.content")
    )


def restart() -> None:
    """What a kernel restart forgets: shared clients and the in-memory cache indexes."""
    _tasks.clear_shared_clients()
    _cache._instances.clear()


# --------------------------------------------------------------------------- lifecycle


def test_single_job_lifecycle(emu, tmp_path):
    job = generate_video("a lighthouse at dusk", wait=False, **FAST).jobs[0]
    assert isinstance(job, VideoJob)
    assert job.id.startswith("video_") and job.status == "queued" and job.progress == 0
    assert counts(emu) == (1, 0, 0)
    job.refresh()
    assert job.status == "in_progress" and job.progress == 50
    job.wait(poll=0.01)
    assert job.status == "completed" and job.progress == 100 and job.done and job.ok
    assert job.video[4:8] == b"ftyp"
    assert counts(emu) == (1, 2, 1)
    path = job.download(tmp_path / "clip.mp4")
    assert path == tmp_path / "clip.mp4" and path.read_bytes() == job.video
    folder_path = job.download(f"{tmp_path}/out/")
    assert folder_path.parent == tmp_path / "out"
    assert folder_path.name == f"a_lighthouse_at_dusk_{job.id}.mp4"
    assert counts(emu) == (1, 2, 1)  # the bytes are fetched once
    assert "status='completed'" in repr(job)


def test_wait_true_polls_and_downloads_immediately(emu):
    job = generate_video("a red kite over hills", **FAST).jobs[0]
    assert job.status == "completed" and job.video is not None
    assert counts(emu) == (1, 2, 1)
    assert job.seconds == "2" and job.size == "256x256"


def test_many_prompts_give_an_aligned_frame_of_jobs(emu):
    prompts = pd.Series(
        ["a red kite", "this one will fail", None, "a red kite", "a blue whale"],
        index=[10, 11, 12, 13, 14],
    )
    jobs = generate_video(prompts, **FAST)
    assert isinstance(jobs, VideoJobs)
    assert jobs.index.tolist() == [10, 11, 12, 13, 14]
    assert jobs.status.tolist() == ["ok", "error", "empty", "ok", "ok"]
    assert counts(emu)[0] == 3  # the repeated prompt shares one job
    assert jobs.id.iloc[0] == jobs.id.iloc[3]
    failed = jobs.failed
    assert failed["error_type"].tolist() == ["JobFailedError"]
    assert "failed" in failed["error"].iloc[0] and failed["id"].iloc[0].startswith("video_")
    assert jobs.frame["server_status"].iloc[1] == "failed"
    assert all(v[4:8] == b"ftyp" for v in jobs.video.iloc[[0, 3, 4]])
    assert jobs.frame["status"].dtype == "string"


def test_dataframe_column_input(emu):
    df = pd.DataFrame({"idea": ["a cat", "a dog"]}, index=["x", "y"])
    jobs = generate_video(df, "idea", wait=False, **FAST)
    assert jobs.index.tolist() == ["x", "y"]
    assert jobs.status.tolist() == ["queued", "queued"]
    jobs.wait(poll=0.01)
    assert jobs.status.tolist() == ["ok", "ok"]
    assert counts(emu) == (2, 4, 2)


def test_failed_single_job_records_or_raises(emu):
    job = generate_video("please fail now", **FAST).jobs[0]
    assert job.status == "error" and job.server_status == "failed"
    assert job.error_type == "JobFailedError" and job.video is None
    assert counts(emu)[2] == 0  # nothing to download
    other = generate_video("another fail", wait=False, **FAST).jobs[0]
    with pytest.raises(deapi_ds.JobFailedError) as info:
        other.wait(poll=0.01, raise_on_error=True)
    assert info.value.job_id == other.id


def test_a_create_error_is_a_row_and_the_other_jobs_go_on(emu):
    emu.configure("videos", script=[400])
    jobs = generate_video(["first", "second"], **FAST)
    assert sorted(jobs.status.tolist()) == ["error", "ok"]
    assert jobs.failed["error_type"].tolist() == ["BadRequestError"]
    assert jobs.failed["id"].isna().all()


def test_timeout_returns_unfinished_jobs(emu):
    emu.video_polls_to_complete = 1000
    job = generate_video("a slow one", timeout=0.05, **FAST).jobs[0]
    assert job.status == "in_progress" and not job.done
    assert counts(emu)[2] == 0


# --------------------------------------------------------------------------- resume


def test_resume_after_a_restart_pays_nothing_again(emu):
    prompts = ["a red kite", "a blue whale", "a green frog"]
    first = generate_video(prompts, wait=False, **FAST)
    assert counts(emu) == (3, 0, 0)
    ids = first.id.tolist()

    restart()
    wire(emu)  # a new client on the same (remote) service
    second = generate_video(prompts, **FAST)
    assert counts(emu)[0] == 3  # no new job was paid for
    assert counts(emu)[1] >= 3 and counts(emu)[2] == 3
    assert second.id.tolist() == ids
    assert second.status.tolist() == ["ok"] * 3
    assert second.resumed.all()

    restart()
    before = counts(emu)
    third = generate_video(prompts, **FAST)
    assert counts(emu) == before  # downloaded videos come from the cache
    assert third.status.tolist() == ["cached"] * 3
    assert third.video.tolist() == second.video.tolist()


def test_job_id_is_recorded_before_polling(emu, tmp_path):
    job = generate_video("a recorded job", wait=False, **FAST).jobs[0]
    table = _cache.default_cache().lookup(
        "videos", "Ltx2_3_22B_Dist_INT8", [job._key], columns=["video_id"]
    )
    assert table["video_id"].to_pylist() == [job.id]


def test_rerun_after_a_failure_creates_a_new_job(emu):
    first = generate_video("this will fail", **FAST).jobs[0]
    assert first.status == "error"
    second = generate_video("this will fail", **FAST).jobs[0]
    assert counts(emu)[0] == 2
    assert second.id != first.id and second.status == "error"


def test_unknown_recorded_job_is_created_again(emu):
    generate_video("a kite", wait=False, **FAST).jobs[0]
    fresh = wire(Emulator(video_polls_to_complete=1))  # a service that forgot every job
    job = generate_video("a kite", **FAST).jobs[0]
    assert job.ok and not job.resumed
    assert fresh.stats("videos")["requests"] == 1
    assert fresh.stats("videos.retrieve")["errors"] == 1  # the 404 for the recorded id


def test_a_completed_job_whose_result_expired_is_created_again(emu, monkeypatch):
    job = generate_video("a kite", wait=False, **FAST).jobs[0]
    job.wait(poll=0.01, download=False)  # done, never downloaded
    assert job.ok and job.video is None and job.expires_at
    later = job.expires_at + 1
    monkeypatch.setattr(video, "time", type("Clock", (), {"time": staticmethod(lambda: later)}))
    again = generate_video("a kite", **FAST).jobs[0]
    assert again.ok and again.id != job.id
    assert counts(emu)[0] == 2


def test_from_id_resumes_any_job(emu):
    job = generate_video("a moonrise", wait=False, **FAST).jobs[0]
    restart()
    client = deapi_ds.Client(
        api_key="dpn-sk-0|emulator", base_url=EMULATOR_BASE_URL, transport=emu.transport()
    )
    again = VideoJob.from_id(job.id, client=client)
    assert again.resumed and again.status == "in_progress" and again.prompt == "a moonrise"
    again.wait(poll=0.01)
    assert again.ok and again.video[4:8] == b"ftyp"
    assert counts(emu) == (1, 2, 1)
    missing = VideoJob.from_id("video_nope", client=client)
    assert missing.status == "error" and missing.error_type == "NotFoundError"


# --------------------------------------------------------------------------- polling


def test_polling_backs_off_from_1s_by_1_5_up_to_10s(monkeypatch):
    emu = wire(Emulator(video_polls_to_complete=9))
    delays: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        delays.append(seconds)
        await anyio.sleep(0)

    monkeypatch.setattr(video, "_sleep", fake_sleep)
    job = generate_video("a long one", size="256x256", seconds=2).jobs[0]
    assert job.ok
    assert delays == pytest.approx([1.0, 1.5, 2.25, 3.375, 5.0625, 7.59375, 10.0, 10.0, 10.0])
    assert counts(emu)[1] == 9


def test_polling_respects_the_status_endpoint_rate_limit():
    now = [0.0]

    def clock() -> float:
        return now[0]

    async def sleep(seconds: float) -> None:
        now[0] += seconds
        await anyio.sleep(0)

    emu = Emulator(video_polls_to_complete=3, clock=clock)
    emu.configure("videos.retrieve", rpm=4)  # the server answers 429 above 4 per minute
    # one request at a time, so the fake clock never jumps while a request is in flight
    engine = Engine(max_concurrency=1, rpm={"videos.retrieve": 4}, clock=clock, sleep=sleep)
    client = deapi_ds.AsyncClient(
        api_key="dpn-sk-0|emulator",
        base_url=EMULATOR_BASE_URL,
        transport=emu.transport(),
        engine=engine,
    )
    jobs = generate_video(["one", "two", "three"], client=client, **FAST)
    assert jobs.status.tolist() == ["ok"] * 3
    assert emu.stats("videos.retrieve")["rate_limited"] == 0
    assert emu.stats("videos.retrieve")["requests"] == 9
    assert now[0] >= 120.0  # 9 polls at 4 per minute: the limiter waited two windows
    assert engine.limiter("videos.retrieve").total_wait >= 120.0


def test_bad_parameters_raise_before_spending(emu):
    for kwargs, pattern in [
        ({"size": "huge"}, r"'size' parameter of generate_video\(\) must look like"),
        ({"seconds": -1}, r"'seconds' parameter of generate_video\(\) must be a positive"),
        ({"model": "Kokoro"}, r"cannot do txt2video"),
        ({"poll": 0}, r"'poll' parameter of generate_video\(\)"),
        ({"poll": 5, "max_poll": 1}, r"'max_poll'.*must be >= poll"),
    ]:
        with pytest.raises(deapi_ds.InvalidParameterError, match=pattern):
            generate_video("x", **kwargs).jobs[0]
    with pytest.raises(deapi_ds.InvalidParameterError, match="not a str"):
        generate_video(["ok", 3])
    assert counts(emu) == (0, 0, 0)


def test_async_twin(emu):
    async def main():
        return await agenerate_video(["a", "b"], **FAST)

    jobs = anyio.run(main)
    assert jobs.status.tolist() == ["ok", "ok"]


# --------------------------------------------------------------------------- display


def test_inline_html_embeds_small_videos_and_links_large_ones(emu, tmp_path, monkeypatch):
    jobs = generate_video(["a cat", "a dog", "will fail"], **FAST)
    html = jobs._repr_mimebundle_()["text/html"]
    assert html.count("<video") == 2
    size = sum(len(v) for v in jobs.video.iloc[:2])
    assert len(html) < size * 4 / 3 + 20_000
    assert "VideoJobs: 3 rows" in html

    single = jobs.jobs[0]
    assert "<video" in single._repr_html_()

    # over the budget and saved: links, not embedded bytes
    monkeypatch.setattr(video, "INLINE_VIDEO_BYTES", 100)
    monkeypatch.setattr(video, "INLINE_TABLE_BUDGET", 100)
    paths = jobs.download(tmp_path / "videos")
    assert paths.notna().tolist() == [True, True, False]
    small = jobs._repr_mimebundle_()["text/html"]
    assert "<video" not in small and small.count("<a href") == 2
    assert len(small) < 10_000
    assert "<a href" in single._repr_html_() and "<video" not in single._repr_html_()


# --------------------------------------------------------------------------- review additions


def test_resume_counts_are_exact(emu):
    prompts = ["a red kite", "a blue whale"]
    generate_video(prompts, wait=False, **FAST)
    assert counts(emu) == (2, 0, 0)
    restart()
    wire(emu)
    again = generate_video(prompts, **FAST)
    # per job: one status check of the recorded id, one more poll to completion, one download
    assert counts(emu) == (2, 4, 2)
    assert again.status.tolist() == ["ok", "ok"] and again.resumed.all()


def test_a_recorded_job_found_done_is_downloaded_on_the_rerun(emu):
    first = generate_video(["a kite", "a whale"], wait=False, **FAST)
    first.wait(poll=0.01, download=False)  # done on the server, never fetched
    assert first.video.isna().all() and counts(emu) == (2, 4, 0)
    restart()
    wire(emu)
    again = generate_video(["a kite", "a whale"], **FAST)
    assert counts(emu) == (2, 6, 2)  # one status check each, then the download; no new job
    assert again.status.tolist() == ["ok", "ok"]
    assert all(v[4:8] == b"ftyp" for v in again.video)
    restart()
    third = generate_video(["a kite", "a whale"], **FAST)
    assert third.status.tolist() == ["cached", "cached"] and counts(emu) == (2, 6, 2)


def test_download_of_many_keeps_going_when_one_video_cannot_be_fetched(emu, tmp_path):
    jobs = generate_video(["one", "two", "three"], wait=False, **FAST)
    jobs.wait(poll=0.01, download=False)
    emu.configure("videos.content", script=[None, 404])
    paths = jobs.download(tmp_path / "out")
    assert paths.notna().sum() == 2
    assert sorted(jobs.status.tolist()) == ["error", "ok", "ok"]
    bad = jobs.failed
    assert bad["error_type"].tolist() == ["NotFoundError"]
    assert (
        "Downloading the video" in bad["error"].iloc[0]
        and bad["id"].iloc[0] in bad["error"].iloc[0]
    )
    assert len(list((tmp_path / "out").iterdir())) == 2


@pytest.mark.parametrize("bad", ["", "../v1/models", "video_1/content", "a b", ".."])
def test_from_id_refuses_ids_that_are_not_ids(emu, bad):
    with pytest.raises(deapi_ds.InvalidParameterError, match="needs a job id"):
        VideoJob.from_id(bad)
    assert counts(emu) == (0, 0, 0)


def test_ctrl_c_during_wait_leaves_the_jobs_resumable(emu):
    import _thread
    import threading
    import time

    emu.video_polls_to_complete = 10_000
    interrupted = False
    timer = threading.Timer(0.3, _thread.interrupt_main)
    try:
        timer.start()
        try:
            generate_video(["a kite", "a whale"], timeout=20, **FAST)
        finally:
            timer.join()
            time.sleep(0.05)  # let a late interrupt land inside this try
    except KeyboardInterrupt:
        interrupted = True
    assert interrupted
    created = counts(emu)[0]
    assert created == 2

    restart()
    wire(emu)
    jobs = generate_video(["a kite", "a whale"], wait=False, **FAST)
    assert counts(emu)[0] == 2 and jobs.resumed.all()  # no new job was paid for
    assert jobs.status.tolist() == ["in_progress", "in_progress"]

    job = jobs.jobs[0]
    timer = threading.Timer(0.3, _thread.interrupt_main)
    interrupted = False
    try:
        timer.start()
        try:
            job.wait(timeout=20, poll=0.01, max_poll=0.02)
        finally:
            timer.join()
            time.sleep(0.05)
    except KeyboardInterrupt:
        interrupted = True
    assert interrupted and not job.done and job.id is not None
    emu.video_polls_to_complete = 1
    job.wait(poll=0.01)
    assert job.ok and job.video[4:8] == b"ftyp"
    assert counts(emu)[0] == 2


def test_downloading_a_failed_job_says_why_there_is_no_video(emu):
    job = generate_video("please fail now", **FAST).jobs[0]
    with pytest.raises(deapi_ds.InvalidParameterError, match="has no video to download: .*failed"):
        job.download()
    assert counts(emu)[2] == 0
