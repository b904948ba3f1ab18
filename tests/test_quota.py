"""Daily quotas: the ledger shared across processes, the engine's checks, the server's verdict."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

import deapi_ds
from deapi_ds import _quota
from deapi_ds._quota import QuotaGuard, QuotaLedger, days_needed, quota_plan, record_requests
from deapi_ds.emulator import Emulator, Fault
from deapi_ds.testing import emulated

ROOT = Path(__file__).resolve().parents[1]
DEAPI = "https://oai.deapi.ai/v1"
#: 2026-12-07 23:00 UTC, one hour before a reset
START = dt.datetime(2026, 12, 7, 23, 0, tzinfo=dt.UTC).timestamp()


class UTC:
    """One fake wall clock for the emulator (Unix seconds) and the ledger (datetime)."""

    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def datetime(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.now, dt.UTC)


@pytest.fixture
def utc(monkeypatch):
    clock = UTC()
    monkeypatch.setattr(_quota, "utc_now", clock.datetime)
    return clock


def basic(**options):
    return deapi_ds.get_config(**{"base_url": DEAPI, "tier": "basic", **options})


def small_quota(client, **quotas):
    """Give a client's engine a quota guard with small Basic limits (the real ones are big)."""
    aclient = client.aclient
    profile = dataclasses.replace(aclient.profile, daily_quotas={"basic": quotas})
    aclient.profile = profile
    client.engine.quota = QuotaGuard(aclient.settings, profile)
    return client


# --------------------------------------------------------------------------- the ledger


def test_quota_status_per_tier_and_limits(utc):
    status = deapi_ds.quota_status("embeddings", settings=basic())
    assert (status.endpoint, status.limit, status.used, status.remaining) == (
        "embeddings",
        500,
        0,
        500,
    )
    assert status.resets_at == dt.datetime(2026, 12, 8, tzinfo=dt.UTC)
    assert "0 of 500 requests used today" in str(status)
    for endpoint, limit in [
        ("audio.transcriptions", 10),
        ("images.generations", 100),
        ("images.edits", 15),
        ("audio.speech", 300),
        ("videos", 15),
        ("videos.retrieve", 200),
        ("price", 200),
    ]:
        assert deapi_ds.quota_status(endpoint, settings=basic()).limit == limit, endpoint
    assert deapi_ds.quota_status("embeddings", settings=basic(tier="premium")).limit is None
    assert deapi_ds.quota_status("embeddings", settings=basic(limits="seed")).limit is None
    assert deapi_ds.quota_status("models", settings=basic()).limit is None


def test_record_and_reset_at_midnight_utc(utc):
    settings = basic()
    assert record_requests("embeddings", 3, settings=settings) == 3
    record_requests("audio.speech", settings=settings)
    status = deapi_ds.quota_status("embeddings", settings=settings)
    assert (status.used, status.remaining) == (3, 497)
    utc.now += 3600  # 00:00 UTC
    assert deapi_ds.quota_status("embeddings", settings=settings).used == 0
    with pytest.raises(deapi_ds.InvalidParameterError, match="n must be an int"):
        record_requests("embeddings", -1, settings=settings)


def test_emulator_counts_never_mix_with_deapis(utc):
    record_requests("embeddings", 7, settings=basic())
    other = deapi_ds.get_config(base_url="http://127.0.0.1:8000/v1", tier="basic")
    assert deapi_ds.quota_status("embeddings", settings=other).used == 0
    record_requests("embeddings", 2, settings=other)
    assert deapi_ds.quota_status("embeddings", settings=basic()).used == 7
    folder = Path(basic().cache_path) / ".quota"
    assert sorted(p.name for p in folder.iterdir()) == ["127.0.0.1_8000_v1", "deapi"]


def test_two_ledgers_on_one_folder_share_the_count_and_refuse_past_the_limit(tmp_path, utc):
    a, b = QuotaLedger(str(tmp_path)), QuotaLedger(str(tmp_path))
    for _ in range(3):
        a.reserve("embeddings", limit=5)
    b.reserve("embeddings", 2, limit=5)
    with pytest.raises(_quota.QuotaFull):
        a.reserve("embeddings", limit=5)
    assert a.usage("embeddings") == b.usage("embeddings") == (5, False)
    b.mark_spent("audio.speech")
    assert a.usage("audio.speech") == (0, True)


@pytest.mark.slow
def test_processes_share_one_count(tmp_path):
    code = (
        "import deapi_ds\n"
        "from deapi_ds._quota import record_requests\n"
        "s = deapi_ds.get_config(base_url='https://oai.deapi.ai/v1', tier='basic')\n"
        "for _ in range(40): record_requests('embeddings', settings=s)\n"
    )
    env = {**os.environ, "DEAPI_DS_CACHE_DIR": str(tmp_path), "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env) for _ in range(2)]
    for _ in range(40):
        record_requests(
            "embeddings",
            settings=deapi_ds.get_config(base_url=DEAPI, tier="basic", cache_dir=str(tmp_path)),
        )
    assert [p.wait(timeout=60) for p in procs] == [0, 0]
    settings = deapi_ds.get_config(base_url=DEAPI, tier="basic", cache_dir=str(tmp_path))
    assert deapi_ds.quota_status("embeddings", settings=settings).used == 120


def test_days_needed():
    assert days_needed(977, 500, 500) == 2
    assert days_needed(977, 500, 100) == 3
    assert days_needed(500, 500, 500) == 1
    assert days_needed(0, 500, 500) == 0
    assert days_needed(10**6, None, None) == 1


def test_two_million_row_embed_takes_two_days_on_basic(utc):
    """The measure, scaled down: 2,000,000 rows / 2048 inputs per request = 977 requests (the
    bench runs the real 2M-row estimate: bench/bench_quota.py). Here 19,540 rows at 20 inputs
    per request make the same 977 requests."""
    texts = [f"row {i} about topic {i % 17}" for i in range(19_540)]
    with deapi_ds.config_context(base_url=DEAPI, api_key="dpn-sk-1|test-not-a-key"):
        est = deapi_ds.estimate(texts, cache=None, max_inputs=20)
        assert est.requests == 977 == -(-2_000_000 // 2048)
        plan = quota_plan("embeddings", est.requests)
    assert (plan.limit, plan.remaining_today, plan.days, plan.fits_today) == (500, 500, 2, False)
    assert str(plan) == (
        "977 embeddings requests vs a quota of 500/day on the basic tier (500 left today): 2 days"
    )


# --------------------------------------------------------------------------- the engine


def test_engine_stops_before_sending_past_the_local_quota(utc):
    emu = Emulator(profile="today", utc_clock=utc)
    with emulated(emulator=emu, tier="basic", rpm=10**6) as env:
        client = small_quota(env.client, embeddings=3)
        for i in range(3):
            client.embeddings([f"text {i}"])
        with pytest.raises(deapi_ds.QuotaExceededError) as info:
            client.embeddings(["one too many"])
        assert emu.stats("embeddings")["requests"] == 3  # nothing sent for the fourth
        exc = info.value
        assert isinstance(exc, deapi_ds.RateLimitError) and not exc.retryable
        assert (exc.endpoint, exc.limit) == ("embeddings", 3)
        assert exc.resets_at == dt.datetime(2026, 12, 8, tzinfo=dt.UTC)
        assert "resets at 2026-12-08 00:00 UTC" in str(exc)
        # another "notebook" (a second client on the same cache folder) sees the same count
        other = small_quota(deapi_ds.Client(), embeddings=3)
        with pytest.raises(deapi_ds.QuotaExceededError):
            other.embeddings(["from another notebook"])
        client.images_generate("not counted against embeddings", size="512x512")
        utc.now += 3600  # past 00:00 UTC
        client.embeddings(["a new day"])
    assert emu.stats("embeddings")["requests"] == 4


def test_every_attempt_counts_retries_included(utc):
    emu = Emulator(profile="today", utc_clock=utc)
    emu.configure("embeddings", script=[503, 503, None])
    with emulated(emulator=emu, tier="basic", rpm=10**6) as env:
        client = small_quota(env.client, embeddings=10)
        client.engine.retry.base = 0.001
        client.embeddings(["x"])
        assert deapi_ds.quota_status("embeddings").used == 3


def test_server_quota_429_becomes_quota_exceeded_and_stops_at_once(utc):
    emu = Emulator(profile="today", daily_quotas={"embeddings": 2}, utc_clock=utc)
    with emulated(emulator=emu, tier="unlimited", rpm=10**6) as env:
        client = env.client
        client.embeddings(["a"])
        client.embeddings(["b"])
        with pytest.raises(deapi_ds.QuotaExceededError) as info:
            client.embeddings(["c"])
        assert emu.stats("embeddings")["requests"] == 3  # the 429 is not retried
        exc = info.value
        assert exc.status_code == 429 and exc.message == "Too Many Attempts."
        assert exc.resets_at == dt.datetime(2026, 12, 8, tzinfo=dt.UTC)
        with pytest.raises(deapi_ds.QuotaExceededError):
            client.embeddings(["d"])  # known spent: not even sent
        assert emu.stats("embeddings")["requests"] == 3
        utc.now += 3600
        assert client.embeddings(["e"]).matrix.shape == (1, 1024)
    assert emu.stats("embeddings")["requests"] == 4


def test_server_verdict_is_written_to_the_ledger_for_other_processes(utc):
    emu = Emulator(profile="today", daily_quotas={"embeddings": 1}, utc_clock=utc)
    with emulated(emulator=emu, tier="basic", rpm=10**6) as env:
        env.client.embeddings(["a"])
        with pytest.raises(deapi_ds.QuotaExceededError):
            env.client.embeddings(["b"])
        status = deapi_ds.quota_status("embeddings")
        assert status.spent and status.remaining == 0 and status.used == 2


@pytest.mark.parametrize(
    "fault, quota",
    [
        (Fault(status=429, retry_after="86400"), True),
        (
            Fault(status=429, headers={"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "7200"}),
            True,
        ),
        (Fault(status=429, body={"message": "Daily limit reached."}), True),
        (Fault(status=429, retry_after="1"), False),
    ],
)
def test_which_429s_mean_the_day_is_over(fault, quota, utc):
    emu = Emulator(utc_clock=utc)
    emu.configure("embeddings", script=[fault])
    with emulated(emulator=emu, rpm=10**6, max_retry_wait=600) as env:
        env.client.engine.retry.base = 0.001
        env.client.engine._sleep = _no_sleep
        env.client.engine.limiter("embeddings")._sleep = _no_sleep
        if quota:
            with pytest.raises(deapi_ds.QuotaExceededError):
                env.client.embeddings(["x"])
            assert emu.stats("embeddings")["requests"] == 1
        else:
            env.client.embeddings(["x"])
            assert emu.stats("embeddings")["requests"] == 2


async def _no_sleep(seconds: float) -> None:
    return None


def test_quota_error_pickles_and_is_in_the_tree():
    exc = deapi_ds.QuotaExceededError("embeddings", limit=500, tier="basic")
    again = pickle.loads(pickle.dumps(exc))
    assert (again.endpoint, again.limit, again.resets_at) == ("embeddings", 500, exc.resets_at)
    assert str(again) == str(exc)
    assert "QuotaExceededError" in deapi_ds._exceptions.__doc__
    assert "QuotaExceededError" in deapi_ds.__all__
