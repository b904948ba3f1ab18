"""Client, transport and engine against httpx.MockTransport (no network, no real sleeps)."""

from __future__ import annotations

import asyncio
import base64
import email.utils
import json
import logging
import time

import httpx
import numpy as np
import pandas as pd
import pytest

import deapi_ds
from deapi_ds._engine import Engine, RateLimiter, RetryPolicy, run_sync
from deapi_ds._transport import parse_error, parse_retry_after

KEY = "dpn-sk-4242|FAKE-SuperSecretValue-0123456789"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def make_client(handler, *, clock: FakeClock | None = None, retries: int = 3, rpm=None, **options):
    clock = clock or FakeClock()
    engine = Engine(
        max_concurrency=options.pop("max_concurrency", 4),
        rpm=rpm,
        retry=RetryPolicy(retries, max_retry_wait=options.pop("max_retry_wait", 300.0)),
        clock=clock,
        sleep=clock.sleep,
    )
    return deapi_ds.AsyncClient(
        KEY,
        base_url="https://oai.deapi.ai/v1",
        transport=httpx.MockTransport(handler),
        engine=engine,
        **options,
    )


def embedding_payload(n: int, dim: int = 4, *, b64: bool = True, order=None):
    order = list(range(n)) if order is None else order
    data = []
    for i in order:
        vec = np.full(dim, float(i), dtype="<f4")
        emb = base64.b64encode(vec.tobytes()).decode() if b64 else vec.tolist()
        data.append({"object": "embedding", "index": i, "embedding": emb})
    return {
        "object": "list",
        "data": data,
        "model": "Bge_M3_FP16",
        "usage": {"prompt_tokens": n, "total_tokens": n},
    }


def run(coro):
    return asyncio.run(coro)


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_retries_counted_exactly(status):
    calls = []

    def handler(request):
        calls.append(request)
        if len(calls) < 3:
            return httpx.Response(status, json={"error": {"message": "busy"}})
        return httpx.Response(200, json=embedding_payload(1))

    clock = FakeClock()
    client = make_client(handler, clock=clock)
    out = run(client.embeddings("hi"))
    assert len(calls) == 3
    assert out.matrix.shape == (1, 4)
    assert len(clock.sleeps) == 2


@pytest.mark.parametrize("status", [500, 429])
def test_bounded_attempts(status):
    calls = []

    def handler(request):
        calls.append(1)
        return httpx.Response(status, json={"error": {"message": "down"}})

    client = make_client(handler, retries=2)
    expected = deapi_ds.ServerError if status == 500 else deapi_ds.RateLimitError
    with pytest.raises(expected):
        run(client.embeddings("hi"))
    assert len(calls) == 3


@pytest.mark.parametrize("status", [400, 401, 403, 404, 413, 422])
def test_never_retried(status):
    calls = []

    def handler(request):
        calls.append(1)
        return httpx.Response(status, json={"error": {"message": "no"}})

    client = make_client(handler)
    with pytest.raises(deapi_ds.APIStatusError) as info:
        run(client.embeddings("hi"))
    assert len(calls) == 1
    assert info.value.status_code == status
    assert info.value.endpoint == "POST /v1/embeddings"


def test_retry_after_seconds_and_date():
    calls = []
    date = email.utils.formatdate(time.time() + 120, usegmt=True)

    def handler(request):
        calls.append(1)
        if len(calls) == 1:
            return httpx.Response(
                429, headers={"Retry-After": "7"}, json={"message": "Too Many Attempts."}
            )
        if len(calls) == 2:
            return httpx.Response(
                503, headers={"Retry-After": date}, json={"message": "Server Error"}
            )
        return httpx.Response(200, json=embedding_payload(1))

    clock = FakeClock()
    run(make_client(handler, clock=clock).embeddings("x"))
    # first wait honours 7 s (plus < 0.25 s jitter); the 429 also holds the endpoint's limiter
    assert 7 <= clock.sleeps[0] < 7.3
    assert any(110 < s < 125 for s in clock.sleeps[1:])
    assert parse_retry_after("120") == 120
    assert parse_retry_after(None) is None
    assert 100 < parse_retry_after(date) <= 120


def test_retry_after_above_cap_raises_with_hint():
    def handler(request):
        return httpx.Response(
            429, headers={"Retry-After": "86400"}, json={"message": "Too Many Attempts."}
        )

    client = make_client(handler, max_retry_wait=600)
    with pytest.raises(deapi_ds.RateLimitError, match="max_retry_wait") as info:
        run(client.embeddings("x"))
    assert info.value.retry_after == 86400


def test_connection_errors_and_timeouts_retried():
    calls = []

    def handler(request):
        calls.append(1)
        if len(calls) == 1:
            raise httpx.RemoteProtocolError("peer closed connection", request=request)
        if len(calls) == 2:
            raise httpx.ReadTimeout("slow", request=request)
        return httpx.Response(200, json=embedding_payload(2))

    out = run(make_client(handler).embeddings(["a", "b"]))
    assert len(calls) == 3 and out.matrix.shape == (2, 4)


def test_timeout_error_type():
    def handler(request):
        raise httpx.ConnectTimeout("nope", request=request)

    with pytest.raises(deapi_ds.APITimeoutError):
        run(make_client(handler, retries=0).embeddings("a"))


def test_openai_and_native_error_shapes():
    e = parse_error(
        400,
        {"x-request-id": "req_1"},
        json.dumps(
            {
                "error": {
                    "message": "n must be <= 4",
                    "type": "invalid_request_error",
                    "param": "n",
                    "code": "bad",
                }
            }
        ).encode(),
        endpoint="POST /v1/images/generations",
    )
    assert isinstance(e, deapi_ds.BadRequestError)
    assert e.param == "n" and e.code == "bad" and e.request_id == "req_1"
    assert "n must be <= 4" in str(e) and "POST /v1/images/generations" in str(e)
    native = parse_error(
        422,
        {},
        json.dumps(
            {
                "message": "The width field is required. (and 1 more error)",
                "errors": {"width": ["The width field is required."], "height": ["bad"]},
            }
        ).encode(),
        endpoint="POST /v1/images/generations",
    )
    assert isinstance(native, deapi_ds.UnprocessableEntityError)
    assert native.errors["width"] == ["The width field is required."] and native.param == "width"
    old = parse_error(
        401,
        {},
        b'{"data": null, "message": "Unauthenticated.", "errors": [], "statusCode": 401}',
        endpoint="GET /v1/models",
    )
    assert isinstance(old, deapi_ds.AuthenticationError) and "DEAPI_API_KEY" in str(old)
    listed = parse_error(
        422,
        {},
        b'{"message": "bad", "errors": [{"field": "seed", "messages": ["must be int"]}]}',
        endpoint="x",
    )
    assert listed.errors == {"seed": ["must be int"]}
    html = parse_error(502, {}, b"<html>Bad gateway</html>", endpoint="x")
    assert isinstance(html, deapi_ds.ServerError) and "Bad gateway" in str(html)


def test_unknown_model_suggests_models():
    for status, body in [
        (
            422,
            {
                "message": "The selected model is invalid.",
                "errors": {"model": ["The selected model is invalid."]},
            },
        ),
        (
            404,
            {
                "error": {
                    "message": "The model 'x' does not exist",
                    "code": "model_not_found",
                    "param": "model",
                }
            },
        ),
    ]:
        e = parse_error(status, {}, json.dumps(body).encode(), endpoint="POST /v1/embeddings")
        assert isinstance(e, deapi_ds.ModelNotFoundError)
        assert "deapi_ds.models()" in str(e)


def test_key_never_leaks(caplog):
    caplog.set_level(logging.DEBUG)
    seen_auth = []

    def handler(request):
        seen_auth.append(request.headers.get("authorization"))
        # a hostile server echoing the key back
        return httpx.Response(401, json={"error": {"message": f"bad key {KEY} / Bearer {KEY}"}})

    client = make_client(handler)
    with pytest.raises(deapi_ds.AuthenticationError) as info:
        run(client.embeddings("x"))
    assert seen_auth == [f"Bearer {KEY}"]
    texts = [str(info.value), repr(info.value), caplog.text, repr(client), repr(client.settings)]
    for text in texts:
        assert KEY not in text and "SuperSecretValue" not in text


def test_key_only_sent_to_api_host():
    seen = {}

    def handler(request):
        seen[request.url.host] = request.headers.get("authorization")
        return httpx.Response(200, content=b"png")

    client = make_client(handler)
    assert run(client.download("https://cdn.example.com/img.png")) == b"png"
    assert seen["cdn.example.com"] is None


def test_user_agent_and_payloads():
    seen = []

    def handler(request):
        seen.append(request)
        return httpx.Response(200, json=embedding_payload(3, b64=False, order=[2, 0, 1]))

    out = run(make_client(handler).embeddings(["a", "b", "c"], encoding_format="float"))
    assert seen[0].headers["user-agent"].startswith(f"deapi-ds/{deapi_ds.__version__}")
    body = json.loads(seen[0].content)
    assert body == {"model": "Bge_M3_FP16", "input": ["a", "b", "c"], "encoding_format": "float"}
    # reassembled by index, never by position
    assert out.matrix[:, 0].tolist() == [0.0, 1.0, 2.0]
    assert out.matrix.dtype == np.float32 and out.matrix.flags.c_contiguous


@pytest.mark.parametrize(
    "payload, match",
    [
        (embedding_payload(2), "2 items for 3 inputs"),
        (
            {
                **embedding_payload(3),
                "data": embedding_payload(3)["data"][:2] + [embedding_payload(3)["data"][0]],
            },
            "index 0 twice",
        ),
        (
            {
                "data": [
                    {"index": 0, "embedding": [1.0, 2.0]},
                    {"index": 1, "embedding": [1.0]},
                    {"index": 2, "embedding": [1.0, 2.0]},
                ]
            },
            "dimensions",
        ),
        ({"data": [{"index": 5, "embedding": [1.0]}] * 3}, "index 5"),
    ],
)
def test_embedding_response_mismatch_is_an_error(payload, match):
    def handler(request):
        return httpx.Response(200, json=payload)

    with pytest.raises(deapi_ds.ResponseValidationError, match=match):
        run(make_client(handler).embeddings(["a", "b", "c"]))


def test_rate_limiter_keeps_rpm():
    clock = FakeClock()
    limiter = RateLimiter(10, clock=clock, sleep=clock.sleep)

    async def go():
        starts = []
        for _ in range(35):
            await limiter.acquire()
            starts.append(clock.now)
        return starts

    starts = run(go())
    # never more than 10 starts in any 60 s window (the limiter keeps a 1 s safety margin)
    for i in range(len(starts)):
        window = [s for s in starts if starts[i] <= s < starts[i] + 60]
        assert len(window) <= 10
    assert starts[-1] - starts[0] == pytest.approx(3 * limiter.window, abs=1)  # 3 full waits


def test_rate_limiter_adapts_to_headers():
    clock = FakeClock()
    limiter = RateLimiter(300, clock=clock, sleep=clock.sleep)
    limiter.update_from_headers({"x-ratelimit-limit": "10", "x-ratelimit-remaining": "0"})
    assert limiter.rpm == 10
    assert limiter.delay() == pytest.approx(limiter.window / 10)


def test_engine_rpm_through_client():
    clock = FakeClock()
    starts = []

    def handler(request):
        starts.append(clock.now)
        return httpx.Response(200, json=embedding_payload(1))

    client = make_client(handler, clock=clock, rpm={"embeddings": 3})

    async def go():
        for _ in range(7):
            await client.embeddings("a")

    run(go())
    assert starts[3] - starts[0] >= 60 and starts[6] - starts[3] >= 60


def test_wait_notice_logged_once(caplog):
    clock = FakeClock()
    limiter = RateLimiter(1, name="embeddings", clock=clock, sleep=clock.sleep)

    async def go():
        for _ in range(3):
            await limiter.acquire()

    with caplog.at_level(logging.WARNING, logger="deapi_ds"):
        run(go())
    notices = [r for r in caplog.records if "waiting about" in r.getMessage()]
    assert len(notices) == 1 and "61 s" in notices[0].getMessage()


def test_sync_client_inside_running_loop():
    def handler(request):
        return httpx.Response(
            200,
            json={
                "object": "list",
                "data": [{"id": "Kokoro", "object": "model", "created": 1, "owned_by": "deapi"}],
            },
        )

    client = deapi_ds.Client(KEY, transport=httpx.MockTransport(handler))

    async def notebook_cell():
        # a Jupyter cell runs inside a running loop; asyncio.run would fail here
        return client.models()

    models = asyncio.run(notebook_cell())
    assert models[0].id == "Kokoro"
    assert client.models()[0].owned_by == "deapi"


def test_async_and_sync_parity():
    def handler(request):
        return httpx.Response(200, json=embedding_payload(2))

    sync = deapi_ds.Client(KEY, transport=httpx.MockTransport(handler)).embeddings(["a", "b"])
    aout = asyncio.run(
        deapi_ds.AsyncClient(KEY, transport=httpx.MockTransport(handler)).embeddings(["a", "b"])
    )
    np.testing.assert_array_equal(sync.matrix, aout.matrix)


def test_run_sync_cancels_on_keyboard_interrupt():
    import _thread
    import threading

    finished = []

    async def slow():
        import anyio

        try:
            await anyio.sleep(30)
        finally:
            finished.append("cleanup")

    timer = threading.Timer(0.3, _thread.interrupt_main)
    timer.start()
    started = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        run_sync(slow)
    assert time.perf_counter() - started < 3
    deadline = time.time() + 2
    while not finished and time.time() < deadline:
        time.sleep(0.01)
    assert finished == ["cleanup"]

    async def quick():
        return 42

    assert run_sync(quick) == 42  # still usable


def test_mask_refused_locally():
    def handler(request):  # pragma: no cover - must not be called
        raise AssertionError("no request expected")

    with pytest.raises(deapi_ds.InvalidParameterError, match="inpainting"):
        run(make_client(handler).images_edit(b"png", "make it blue", mask=b"mask"))


def test_multipart_requests():
    seen = []

    def handler(request):
        seen.append(request)
        if request.url.path.endswith("/audio/transcriptions"):
            return httpx.Response(
                200,
                json={
                    "text": "hello",
                    "language": "en",
                    "duration": 1.5,
                    "segments": [
                        {
                            "id": 0,
                            "start": 0,
                            "end": 1.5,
                            "text": "hello",
                            "words": [{"word": "hello", "start": 0.1, "end": 0.5}],
                        }
                    ],
                },
            )
        return httpx.Response(
            200, json={"created": 1, "data": [{"b64_json": base64.b64encode(b"PNG").decode()}]}
        )

    client = make_client(handler)
    t = run(
        client.transcribe(
            b"RIFF....", filename="a.wav", timestamp_granularities=["word", "segment"]
        )
    )
    assert t.text == "hello" and t.duration == 1.5 and t.words[0]["word"] == "hello"
    body = seen[0].content
    assert (
        b'name="file"; filename="a.wav"' in body and body.count(b"timestamp_granularities[]") == 2
    )
    out = run(client.images_edit([b"a", b"b"], "blend", model="Flux_2_Klein_4B_BF16"))
    assert out.images[0].data == b"PNG"
    assert seen[1].content.count(b'name="image[]"') == 2


def test_retry_after_longer_than_a_minute_up_to_the_cap():
    """Retry-After of 90 s is honoured when the cap allows it; one second more raises at once."""
    for retry_after, cap, calls_expected in (("90", 90.0, 2), ("91", 90.0, 1)):
        calls = []

        def handler(request, calls=calls, retry_after=retry_after):
            calls.append(1)
            if len(calls) == 1:
                return httpx.Response(429, headers={"Retry-After": retry_after}, json={})
            return httpx.Response(200, json=embedding_payload(1))

        clock = FakeClock()
        client = make_client(handler, clock=clock, max_retry_wait=cap)
        if calls_expected == 2:
            run(client.embeddings("x"))
            assert 90 <= clock.sleeps[0] < 90.25 and len(clock.sleeps) == 1
        else:
            with pytest.raises(deapi_ds.RateLimitError, match="max_retry_wait"):
                run(client.embeddings("x"))
            assert clock.sleeps == []
        assert len(calls) == calls_expected


def test_backoff_is_exponential_capped_and_jittered():
    import random

    policy = RetryPolicy(10, base=1.0, cap=60.0, rng=random.Random(7))
    for attempt in range(1, 10):
        backoff = min(60.0, 2.0 ** (attempt - 1))
        waits = [policy.wait_for(attempt, None) for _ in range(50)]
        assert all(backoff / 2 <= w <= backoff for w in waits)
        assert len(set(waits)) > 40  # jittered, not a fixed schedule
    assert max(policy.wait_for(30, None) for _ in range(50)) <= 60.0


def test_429_wait_is_announced_once_and_shown_on_the_bar(caplog):
    """A long server-imposed wait (429 + Retry-After) is said once, like the limiter's own waits."""
    calls = []

    def handler(request):
        calls.append(1)
        if len(calls) <= 3:
            return httpx.Response(429, headers={"Retry-After": "20"}, json={})
        return httpx.Response(200, json=embedding_payload(1))

    clock = FakeClock()
    client = make_client(handler, clock=clock)
    bar: list[float | None] = []
    client.engine.add_wait_listener(bar.append)
    with caplog.at_level(logging.WARNING, logger="deapi_ds"):
        run(client.embeddings("x"))
    notices = [r.getMessage() for r in caplog.records if "waiting about" in r.getMessage()]
    assert len(notices) == 1 and "20 s" in notices[0] and "429" in notices[0]
    assert bar[-1] is None and any(w is not None and w >= 20 for w in bar)
    assert len(calls) == 4


def test_limiter_adapts_to_the_servers_headers_end_to_end():
    """No client-side limit configured: the emulator's X-RateLimit-* headers teach it one."""
    from deapi_ds.emulator import Emulator

    clock = FakeClock()
    emu = Emulator(clock=clock).configure("embeddings", rpm=3)
    client = deapi_ds.AsyncClient(
        KEY,
        base_url="https://oai.deapi.ai/v1",
        transport=emu.transport(),
        engine=Engine(rpm=None, retry=RetryPolicy(3), clock=clock, sleep=clock.sleep),
    )

    async def go():
        for i in range(7):
            await client.embeddings([f"t{i}"])

    run(go())
    stats = emu.stats("embeddings")
    assert stats["ok"] == 7 and stats["rate_limited"] == 0  # never a 429
    assert client.engine.limiter("embeddings").rpm == 3


def test_sync_and_async_calls_share_a_client_across_event_loops():
    """deapi_ds.models() (private loop), then `await amodels()` in fresh loops, then sync again;
    and one AsyncClient reused over several asyncio.run() calls, on real sockets."""
    emu = deapi_ds.use_emulator(loopback=True)
    try:
        assert len(deapi_ds.models()) >= 8

        async def cell():
            return len(await deapi_ds.amodels())

        assert [asyncio.run(cell()) for _ in range(3)] == [len(deapi_ds.models())] * 3
        client = deapi_ds.AsyncClient()
        shapes = [asyncio.run(client.embeddings([f"t{i}"])).matrix.shape for i in range(3)]
        assert shapes == [(1, 1024)] * 3
    finally:
        emu._deapi_ds_server[0].close()


def test_sync_calls_from_many_threads_at_once():
    from concurrent.futures import ThreadPoolExecutor

    emu = deapi_ds.use_emulator(loopback=True)
    try:

        def work(i):
            result = deapi_ds.embed([f"thread {i} text {j}" for j in range(20)])
            return result.frame["status"].eq("ok").sum(), result.matrix.shape

        with ThreadPoolExecutor(8) as pool:
            outcomes = list(pool.map(work, range(16)))
        assert outcomes == [(20, (20, 1024))] * 16
        assert emu.stats("embeddings")["inputs"] == 320
    finally:
        emu._deapi_ds_server[0].close()


CTRL_C_SCRIPT = r"""
import os, sys, time
import deapi_ds
emu = deapi_ds.use_emulator()
deapi_ds.set_config(rpm={"embeddings": 3})   # 3 batches, then a 61 s wait
texts = [f"text number {i}" for i in range(10)]
print("READY", flush=True)
started = time.perf_counter()
try:
    deapi_ds.embed(texts, max_inputs=1)
except KeyboardInterrupt:
    print(f"INTERRUPTED {time.perf_counter() - started:.2f}", flush=True)
print("SENT", emu.stats("embeddings")["requests"], flush=True)
deapi_ds.set_config(rpm=None)
again = deapi_ds.embed(texts, max_inputs=1)               # the process is still usable
print("RERUN", dict(again.frame["status"].value_counts()), emu.stats("embeddings")["requests"])
"""


def test_ctrl_c_during_a_rate_limited_embed_subprocess(tmp_path):
    """SIGINT while deapi_ds.embed waits on the rate limit: it stops within ~2 s, finished
    batches are cached, and a rerun in the same process pays only for the rest."""
    import os
    import signal
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith(("DEAPI_", "OPENAI_"))}
    env.update(DEAPI_DS_CACHE_DIR=str(tmp_path / "cache"), DEAPI_DS_PROGRESS="0")
    proc = subprocess.Popen(
        [sys.executable, "-c", CTRL_C_SCRIPT],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout.readline().strip() == "READY"
        time.sleep(1.0)  # three batches done, waiting ~60 s for the fourth slot
        sent_at = time.perf_counter()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        elapsed = time.perf_counter() - sent_at
    finally:
        proc.kill()
    lines = dict(line.split(" ", 1) for line in out.strip().splitlines())
    assert "INTERRUPTED" in lines, err
    assert elapsed < 5  # the interrupt lands at once; the rest is the rerun and exit
    assert lines["SENT"] == "3"
    assert lines["RERUN"] == "{'ok': 7, 'cached': 3} 10", err
    assert err.count("waiting about") == 1


def test_models_frame_joins_the_profile():
    deapi_ds.use_emulator()
    frame = deapi_ds.models()
    assert frame["id"].tolist()[:2] == ["Flux1schnell", "ZImageTurbo_INT8"]
    assert str(frame["id"].dtype) == "string" and frame["known"].all()
    by_id = frame.set_index("id")
    assert by_id.loc["Bge_M3_FP16", "dimension"] == 1024
    assert by_id.loc["Bge_M3_FP16", "max_inputs"] == 2048
    assert by_id.loc["Flux1schnell", "max_n"] == 4
    assert by_id.loc["Flux1schnell", "max_size"] == 2048
    assert by_id.loc["Kokoro", "voices"] > 6 and "opus" in by_id.loc["Kokoro", "formats"]
    assert bool(by_id.loc["WhisperLargeV3Ct2", "word_timestamps"]) is True
    assert bool(by_id.loc["WhisperLargeV3", "word_timestamps"]) is False
    # transcription-only facts are missing, not False/True, for other models
    assert pd.isna(by_id.loc["Flux1schnell", "word_timestamps"])
    assert pd.isna(by_id.loc["Bge_M3_FP16", "verbose_json"])
    assert pd.isna(by_id.loc["Kokoro", "dimension"])
    assert str(frame["created"].dtype).startswith("datetime64")


def test_use_emulator_loopback_rerun_replaces_the_server():
    import socket

    first = deapi_ds.use_emulator(loopback=True)
    first_port = first._deapi_ds_server[0].port
    assert deapi_ds.get_config().base_url.startswith("http://127.0.0.1:")
    second = deapi_ds.use_emulator(loopback=True)  # a notebook cell run again
    try:
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", first_port), timeout=1).close()
        assert len(deapi_ds.models()) >= 8 and second.stats("models")["requests"] == 1
        assert first.stats("models")["requests"] == 0
    finally:
        deapi_ds.use_emulator()  # back to in-process; stops the loopback server
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", second._deapi_ds_server[0].port), timeout=1)


def test_every_running_task_sees_rate_limit_waits():
    clock = FakeClock()
    engine = Engine(rpm={"embeddings": 1}, clock=clock, sleep=clock.sleep)
    first, second = [], []
    stop_first = engine.add_wait_listener(first.append)
    engine.add_wait_listener(second.append)

    async def go():
        async def ok():
            return None

        await engine.call("embeddings", ok)
        await engine.call("embeddings", ok)

    run(go())
    assert first and second and first == second  # both bars heard the wait and its end
    assert first[-1] is None and first[0] > 50
    stop_first()
    first.clear()
    second.clear()
    run(go())
    assert first == [] and second
