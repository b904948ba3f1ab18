"""No hangs (issue 15, item 4; issue 14, item 8).

- A ``Retry-After`` longer than ``max_retry_wait`` (or endless) fails that call at once and
  never holds the rate limiter for later calls.
- A server that trickles its answer one byte per second cannot outlive ``timeout``: one
  request attempt has a total deadline.
- A host that does not resolve, or a remote host that refuses connections, fails in well
  under 2 s with one non-retried ``APIConnectionError``; timeouts, resets and loopback
  refusals are still retried.
- ``_transport`` no longer imports ``_engine`` (what both need lives in ``_loops``).
"""

from __future__ import annotations

import ast
import socket
import time
from pathlib import Path

import anyio
import httpx
import pytest

import deapi_ds
from deapi_ds._client import AsyncClient
from deapi_ds._engine import Engine, RateLimiter, RetryPolicy
from deapi_ds._transport import parse_retry_after
from deapi_ds.emulator import Emulator, Fault

PKG = Path(__file__).resolve().parents[1] / "deapi_ds"
KEY = "dpn-sk-1|test"


def emulated_client(emu: Emulator, **options) -> deapi_ds.Client:
    return deapi_ds.Client(
        KEY,
        base_url="http://emulator.deapi-ds.invalid/v1",
        transport=emu.transport(),
        tier="unlimited",
        **options,
    )


# ------------------------------------------------------------------------------- Retry-After


@pytest.mark.parametrize("retry_after", ["3600", "inf", "Infinity", "1e300"])
def test_a_retry_after_beyond_the_cap_never_blocks_later_calls(retry_after):
    """The call fails at once (the day's quota is taken as spent) and later calls of the
    client are not held by the limiter: they fail at once too, until the reset, with the
    same clear error (no OverflowError for an endless wait)."""
    emu = Emulator().configure("embeddings", script=[Fault(status=429, retry_after=retry_after)])
    client = emulated_client(emu, max_retry_wait=5)
    started = time.monotonic()
    with pytest.raises(deapi_ds.QuotaExceededError) as info:
        client.embeddings(["a"])
    assert "OverflowError" not in repr(info.value)
    assert info.value.resets_at is not None
    with pytest.raises(deapi_ds.QuotaExceededError):
        client.embeddings(["b"])  # at once: known spent, nothing sent
    assert time.monotonic() - started < 2.0
    assert emu.stats("embeddings")["requests"] == 1
    assert client.engine.limiter("embeddings").delay() == 0.0


@pytest.mark.parametrize("retry_after", ["3600", "inf"])
def test_without_a_quota_guard_the_limiter_is_not_held_either(retry_after):
    """The engine alone (no daily-quota guard): the limiter never takes the long wait."""

    async def main() -> tuple[float, int]:
        emu = Emulator().configure(
            "embeddings", script=[Fault(status=429, retry_after=retry_after)]
        )
        engine = Engine(retry=RetryPolicy(2, max_retry_wait=5))
        client = AsyncClient(
            KEY,
            base_url="http://emulator.deapi-ds.invalid/v1",
            transport=emu.transport(),
            engine=engine,
        )
        with pytest.raises(deapi_ds.RateLimitError, match="max_retry_wait"):
            await client.embeddings(["a"])
        started = time.monotonic()
        out = await client.embeddings(["b"])
        return time.monotonic() - started, out.matrix.shape[0]

    elapsed, rows = anyio.run(main)
    assert rows == 1 and elapsed < 1.0


def test_a_retry_after_within_the_cap_is_still_honoured():
    emu = Emulator().configure("embeddings", script=[Fault(status=429, retry_after="1"), None])
    client = emulated_client(emu, max_retry_wait=5)
    started = time.monotonic()
    client.embeddings(["a"])
    assert 1.0 <= time.monotonic() - started < 3.0
    assert emu.stats("embeddings")["requests"] == 2


def test_parse_retry_after_edge_values():
    assert parse_retry_after("nan") is None
    assert parse_retry_after("inf") == float("inf")
    assert parse_retry_after("-5") == 0.0
    assert parse_retry_after("soon") is None


def test_block_for_ignores_waits_beyond_the_cap_and_non_finite_ones():
    now = [0.0]
    limiter = RateLimiter(None, clock=lambda: now[0])
    limiter.block_for(float("inf"))
    limiter.block_for(float("nan"))
    limiter.block_for(3600, cap=300)
    assert limiter.delay() == 0.0
    limiter.block_for(30, cap=300)
    assert limiter.delay() == 30.0


# ------------------------------------------------------------------------- total deadline


def test_a_trickling_answer_ends_at_the_configured_timeout_in_process():
    emu = Emulator().configure("embeddings", script=["trickle"])
    client = emulated_client(emu, timeout=1.0, max_retries=0)
    started = time.monotonic()
    with pytest.raises(deapi_ds.APITimeoutError, match="did not finish within 1 s"):
        client.embeddings(["a"])
    assert time.monotonic() - started < 2.5


def test_a_trickling_answer_ends_at_the_configured_timeout_on_loopback():
    emu = Emulator().configure("embeddings", script=["trickle"])
    with emu.serve() as server:
        client = deapi_ds.Client(KEY, base_url=server.base_url, timeout=1.5, max_retries=0)
        started = time.monotonic()
        with pytest.raises(deapi_ds.APITimeoutError):
            client.embeddings(["a"])
        elapsed = time.monotonic() - started
        client.close()
    assert 1.4 <= elapsed < 3.0


def test_a_total_timeout_is_retried_like_any_timeout():
    emu = Emulator().configure("embeddings", script=[Fault(kind="trickle", interval=5), None])
    client = emulated_client(emu, timeout=0.5, max_retries=1)
    client.engine.retry.base = 0.01
    assert client.embeddings(["a"]).matrix.shape == (1, 1024)
    assert emu.stats("embeddings")["requests"] == 2


# ------------------------------------------------------------------ unreachable hosts, fast


def test_a_host_that_does_not_resolve_fails_fast_and_once():
    client = deapi_ds.Client(KEY, base_url="https://no-such-host.deapi-ds.invalid/v1")
    started = time.monotonic()
    with pytest.raises(deapi_ds.APIConnectionError, match="does not resolve") as info:
        client.embeddings(["a"])
    assert time.monotonic() - started < 2.0
    assert not isinstance(info.value, deapi_ds.APITimeoutError)
    assert info.value.retryable is False
    assert "no-such-host.deapi-ds.invalid" in str(info.value)
    assert client.engine.attempts["embeddings"] == 1


class _Refusing(httpx.AsyncBaseTransport):
    """Fails every request the way httpx reports a refused TCP connection."""

    def __init__(self) -> None:
        self.calls = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        try:
            raise ConnectionRefusedError(111, "Connection refused")
        except ConnectionRefusedError as exc:
            raise httpx.ConnectError("All connection attempts failed", request=request) from exc


def test_a_remote_host_that_refuses_fails_fast_and_once():
    transport = _Refusing()
    client = deapi_ds.Client(KEY, base_url="https://api.example.com/v1", transport=transport)
    started = time.monotonic()
    with pytest.raises(deapi_ds.APIConnectionError, match="refused the connection") as info:
        client.embeddings(["a"])
    assert time.monotonic() - started < 2.0
    assert transport.calls == 1 and info.value.retryable is False


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_loopback_refusal_is_still_retried():
    """A local server may be starting up (the emulator, a proxy): keep retrying there."""

    async def main() -> int:
        engine = Engine(retry=RetryPolicy(2, base=0.01))
        client = AsyncClient(KEY, base_url=f"http://127.0.0.1:{_closed_port()}/v1", engine=engine)
        with pytest.raises(deapi_ds.APIConnectionError) as info:
            await client.embeddings(["a"])
        assert info.value.retryable is True
        await client.aclose()
        return engine.attempts["embeddings"]

    assert anyio.run(main) == 3


def test_drops_and_timeouts_are_still_retried():
    emu = Emulator().configure("embeddings", script=["drop", "truncate", None])
    client = emulated_client(emu, max_retries=3)
    client.engine.retry.base = 0.01
    assert client.embeddings(["a"]).matrix.shape == (1, 1024)
    assert emu.stats("embeddings")["requests"] == 3


# ------------------------------------------------------------------------------- layering


def _deapi_imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module:
            names.add(node.module)
    return names


def test_transport_does_not_import_the_engine():
    assert "_engine" not in _deapi_imports(PKG / "_transport.py")
    assert _deapi_imports(PKG / "_loops.py") == set()
    assert "_loops" in _deapi_imports(PKG / "_engine.py")
