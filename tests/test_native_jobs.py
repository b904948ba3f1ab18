"""The job layer end to end against the in-process emulator, on a fake clock (no real waiting).

The emulator, the engine's rate limiter and the job runner share one clock; sleeping advances
it. So job durations, rate-limit windows and URL expiry play out exactly, in milliseconds.
"""

from __future__ import annotations

import asyncio
import heapq

import anyio
import pytest

import deapi_ds
from deapi_ds._config import get_config
from deapi_ds._engine import Engine, RetryPolicy
from deapi_ds._jobs import JobItem, JobRunner, NativeBackend
from deapi_ds._native import (
    AsyncNativeClient,
    background_removal_request,
    ocr_request,
    result_json,
    transcription_request,
)
from deapi_ds.emulator import Emulator, Fault, render_text_image, synthesize_dialogue
from deapi_ds.emulator._transport import EmulatorTransport

KEY = "dpn-sk-42|fake-key-for-tests"
PODCAST = "https://www.youtube.com/watch?v=emuPodcast01"


async def _all_tasks_blocked() -> None:
    """Return once every other task waits on a future (anyio's version polls every 0.1 s)."""
    this = asyncio.current_task()
    while True:
        await asyncio.sleep(0)
        if all(
            task is this or (task._fut_waiter is not None and not task._fut_waiter.done())
            for task in asyncio.all_tasks()
        ):
            return


class InlineTransport(EmulatorTransport):
    """The emulator answering inside the event loop (no worker thread): with nothing running
    off-loop, "every task is blocked" means "every task waits for the clock"."""

    async def handle_async_request(self, request):
        body = await request.aread()
        response = self.emulator.handle(
            request.method, self._path(request), request.headers, body, scheme=request.url.scheme
        )
        return self._answer(request, response)


class World:
    """An emulator, a native client and a runner on one virtual clock.

    ``sleep`` parks the task until the clock reaches its wake time; when every task is blocked
    the clock jumps to the earliest wake time. So rate-limit windows, job durations and URL
    expiry play out exactly as in real time, in milliseconds.
    """

    def __init__(self, *, tier: str = "unlimited", job_seconds=(2.0, 8.0), **runner):
        self.now = 0.0
        self._sleepers: list[tuple[float, int, anyio.Event]] = []
        self.emu = Emulator(clock=lambda: self.now)
        self.emu.native.job_seconds = job_seconds
        self.settings = get_config(api_key=KEY, transport=InlineTransport(self.emu), tier=tier)
        self.client = self.make_client(self.settings)
        self.accepted: list[tuple[object, str]] = []
        self.runner = self.make_runner(**runner)

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await anyio.sleep(0)
            return
        event = anyio.Event()
        heapq.heappush(self._sleepers, (self.now + seconds, id(event), event))
        await event.wait()

    async def _drive(self, kill_at: float | None, kill: anyio.CancelScope) -> None:
        while True:
            await _all_tasks_blocked()
            if not self._sleepers:
                await anyio.sleep(0.001)  # only the main task's end can come now
                continue
            wake, _, event = heapq.heappop(self._sleepers)
            if kill_at is not None and wake > kill_at:
                self.now = kill_at
                kill.cancel()  # the kernel dies: nothing after this instant happens
                return
            self.now = max(self.now, wake)
            event.set()

    def make_client(self, settings) -> AsyncNativeClient:
        profile = deapi_ds._profiles.DEAPI
        tier = settings.tier
        engine = Engine(
            max_concurrency=8,
            rpm=lambda ep: profile.rpm_for(ep, tier),
            retry=RetryPolicy(5, max_retry_wait=300.0),
            clock=lambda: self.now,
            sleep=self.sleep,
        )
        return AsyncNativeClient(settings=settings, engine=engine)

    def make_runner(self, backend=None, **options) -> JobRunner:
        options.setdefault("poll", 1.0)
        options.setdefault("max_poll", 10.0)
        return JobRunner(
            backend or NativeBackend(self.client),
            sleep=self.sleep,
            clock=lambda: self.now,
            **options,
        )

    def record(self, key, job_id) -> None:
        self.accepted.append((key, job_id))

    def run(self, items, runner=None, *, kill_at: float | None = None):
        """Run the items; ``kill_at``: stop everything at that virtual time (returns [])."""
        runner = runner or self.runner
        out: list = []
        errors: list[BaseException] = []

        async def go():
            self._sleepers.clear()
            async with anyio.create_task_group() as tg:
                kill = anyio.CancelScope()
                tg.start_soon(self._drive, kill_at, kill)
                try:
                    with kill:
                        out.extend(await runner.run_many(items, on_accepted=self.record))
                except Exception as exc:  # noqa: BLE001 - re-raised outside the task group
                    errors.append(exc)
                finally:
                    tg.cancel_scope.cancel()

        anyio.run(go)
        if errors:
            raise errors[0]
        return out


def test_end_to_end_mixed_jobs_row_aligned():
    w = World()
    turns = [("am_adam", "Good morning. Shall we start?"), ("af_bella", "Yes, let us begin.")]
    items = [
        JobItem("link", transcription_request(source_url=PODCAST, timestamps="word", diarize=True,
                                              include_metadata=True)),
        JobItem("file", transcription_request(source_file=synthesize_dialogue(turns),
                                              filename="talk.mp3", timestamps="word", diarize=True)),
        JobItem("plain", transcription_request(source_url="https://kick.com/emu-streamer/videos/9f8e7d6c-0001")),
        JobItem("ocr", ocr_request(render_text_image("Total: 12.00"))),
        JobItem("rmbg", background_removal_request(render_text_image("logo"))),
        JobItem("private", transcription_request(source_url="https://youtu.be/emuPrivate04")),
    ]  # fmt: skip
    outcomes = w.run(items)
    assert [o.key for o in outcomes] == [i.key for i in items]
    by = {o.key: o for o in outcomes}
    assert [k for k, _ in w.accepted] and {k for k, _ in w.accepted} == set(by)
    link = result_json(by["link"].final, by["link"].content)
    assert link["segments"][0]["speaker"] == "SPEAKER_00"
    assert {s["speaker"] for s in link["segments"]} == {"SPEAKER_00", "SPEAKER_01"}
    assert by["link"].metadata["title"].startswith("The Data Show")
    words = [(wd["word"], wd["speaker"]) for s in result_json(by["file"].final, by["file"].content)["segments"] for wd in s["words"]]  # fmt: skip
    assert words == [(x, "SPEAKER_00") for x in turns[0][1].split()] + [
        (x, "SPEAKER_01") for x in turns[1][1].split()
    ]
    assert (
        by["plain"].result == "Hello kick. Questions go in the chat."
        and by["plain"].content is None
    )
    assert by["ocr"].result == "Total: 12.00"
    assert by["rmbg"].content[:8] == b"\x89PNG\r\n\x1a\n"
    private = by["private"]
    assert private.status == "error" and private.error_reason == "SOURCE_PRIVATE"
    assert private.retryable is False and private.refunded is True and private.submits == 1
    assert "SOURCE_PRIVATE" in private.error
    assert w.emu.native.submitted() == len(items)


def test_ids_are_recorded_before_waiting_and_resume_pays_nothing():
    w = World(job_seconds=(5.0, 60.0), timeout=10.0)
    items = [JobItem(i, ocr_request(render_text_image(f"Page {i}"))) for i in range(6)]
    first = w.run(items)
    assert [o.status for o in first] == ["running"] * 6  # the "kernel died" mid-run
    ids = dict(w.accepted)
    assert len(ids) == 6 and [o.job_id for o in first] == [ids[i] for i in range(6)]
    # a fresh client and runner (new kernel) given the cached ids: polling resumes
    w2_client = w.make_client(w.client.settings)
    runner = w.make_runner(NativeBackend(w2_client))
    w.accepted.clear()
    resumed = w.run([JobItem(i, items[i].request, job_id=ids[i]) for i in range(6)], runner)
    assert [o.result for o in resumed] == [f"Page {i}" for i in range(6)]
    assert all(o.resumed and o.submits == 0 for o in resumed)
    assert w.accepted == [] and w.emu.native.submitted() == 6  # 0 resubmitted


def test_retryable_failures_are_resubmitted_within_the_budget():
    w = World(max_resubmits=2)
    w.emu.native.fail_next("CAPACITY_UNAVAILABLE")
    (ok,) = w.run([JobItem("a", transcription_request(source_url=PODCAST))])
    assert ok.ok and ok.submits == 2 and len(ok.job_ids) == 2
    assert [k for k, _ in w.accepted] == ["a", "a"]  # each new id recorded at once
    w.emu.native.fail_next("TIMEOUT", "TIMEOUT", "TIMEOUT")
    (bad,) = w.run([JobItem("b", transcription_request(source_url=PODCAST))])
    assert bad.status == "error" and bad.submits == 3 and bad.retryable is True
    assert bad.error_code == "WORKER_TIMEOUT" and bad.error_reason == "TIMEOUT"
    # the emulator's own flaky link: fails once, works on the resubmission
    (flaky,) = w.run(
        [JobItem("c", transcription_request(source_url="https://youtu.be/emuFlaky0006"))]
    )
    assert flaky.ok and flaky.submits == 2


def test_a_resumed_id_the_server_lost_is_resubmitted():
    w = World()
    request = ocr_request(render_text_image("Again"))
    (o,) = w.run([JobItem("x", request, job_id="11111111-2222-4333-a444-555555555555")])
    assert o.ok and o.result == "Again" and o.submits == 1 and o.resumed


def test_expired_result_url_is_refreshed_from_the_job():
    w = World()
    w.emu.native.result_ttl = 5.0
    backend = NativeBackend(w.client)
    expire_first = [True]

    class Slow(NativeBackend):
        async def fetch(self, status, request):
            if expire_first[0]:  # the caller was slow: the pre-signed URL is now stale
                expire_first[0] = False
                w.now += 6.0
            return await backend.fetch(status, request)

    runner = w.make_runner(Slow(w.client))
    (o,) = w.run([JobItem("img", background_removal_request(render_text_image("x")))], runner)
    assert o.ok and o.content[:4] == b"\x89PNG"
    results = w.emu.stats("v2.results")
    assert results["errors"] == 1 and results["ok"] == 1  # one 403 (expired), one fresh download


def test_status_endpoint_429_is_honoured():
    w = World()  # the client does not know about the server's limit
    w.emu.configure("v2.jobs", script=[None, Fault(status=429, retry_after="20")])
    items = [JobItem(i, ocr_request(render_text_image(f"Doc {i}"))) for i in range(2)]
    outcomes = w.run(items)
    assert [o.result for o in outcomes] == ["Doc 0", "Doc 1"]
    stats = w.emu.stats("v2.jobs")
    assert stats["errors"] == 1 and stats["ok"] >= 2
    throttled = [h for h in w.emu.history if h["endpoint"] == "v2.jobs" and h["status"] == 429]
    assert len(throttled) == 1
    assert w.now >= 20  # the Retry-After was waited for before the next status read
    # the server's X-RateLimit-* headers teach the client its limit, so 429s stay rare
    w2 = World()
    w2.emu.configure("v2.jobs", rpm=3)
    outcomes = w2.run([JobItem(i, ocr_request(render_text_image(f"D{i}"))) for i in range(4)])
    assert all(o.ok for o in outcomes)
    assert w2.client.engine.limiter("v2.jobs").rpm == 3


def test_basic_limits_are_kept_client_side():
    # Basic on both sides (OCR 5/min, job status 50/min and 200/day): never a 429
    w = World(tier="basic")
    w.emu.native.limits("basic")
    items = [JobItem(i, ocr_request(render_text_image(f"Scan {i}"))) for i in range(20)]
    outcomes = w.run(items)
    assert [o.result for o in outcomes] == [f"Scan {i}" for i in range(20)]
    assert w.emu.stats("v2.jobs")["rate_limited"] == 0
    assert w.emu.stats("v2.images.ocr")["rate_limited"] == 0
    assert w.emu.stats("v2.jobs")["requests"] <= 200  # within the day's status budget
    # 20 submissions at 5 per 61 s window: the last starts after 3 full windows
    assert 3 * 61 <= w.now <= 3 * 61 + 60


def test_fatal_errors_stop_the_run():
    w = World()
    bad = Emulator(api_key="dpn-sk-1|otherotherother", clock=lambda: w.now)
    client = w.make_client(
        get_config(api_key=KEY, transport=InlineTransport(bad), tier="unlimited")
    )
    runner = w.make_runner(NativeBackend(client))
    with pytest.raises(deapi_ds.AuthenticationError):
        w.run([JobItem(i, ocr_request(render_text_image("x"))) for i in range(3)], runner)
    with pytest.raises(deapi_ds.InvalidParameterError, match="max_poll"):
        JobRunner(NativeBackend(client), poll=5, max_poll=1)


def test_a_killed_run_loses_no_job():
    w = World(job_seconds=(2.0, 8.0))
    items = [JobItem(i, transcription_request(source_url=PODCAST)) for i in range(10)]
    assert w.run(items, kill_at=5.0) == []  # the kernel died 5 s in
    ids = dict(w.accepted)
    assert len(ids) == 10  # every accepted job was recorded before any waiting
    runner = w.make_runner(NativeBackend(w.make_client(w.settings)))
    resumed = w.run([JobItem(i, items[i].request, job_id=ids[i]) for i in range(10)], runner)
    assert all(o.ok and o.submits == 0 for o in resumed)
    assert w.emu.native.submitted() == 10 and w.emu.stats("v2.audio.transcriptions")["jobs"] == 10
