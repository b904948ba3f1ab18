"""Bounded answers (issue 15, item 9) and the emulator's server faults used by the hardening tests.

Every answer is read as a stream with a byte budget that the endpoint could legitimately need
for the request (:data:`deapi_ds._client.MAX_RESPONSE_BYTES`, ``embeddings_budget`` ...);
gzip/deflate are inflated in bounded steps, so a gzip bomb fails fast with bounded memory.
"""

from __future__ import annotations

import base64
import gzip
import json
import math
import time
import tracemalloc
import zlib

import anyio
import httpx
import numpy as np
import pytest

import deapi_ds
from deapi_ds._client import embeddings_budget, images_budget, speech_budget
from deapi_ds._config import get_config
from deapi_ds._transport import MAX_ERROR_BYTES, Transport
from deapi_ds.emulator import Emulator, Fault
from deapi_ds.emulator._faults import gzip_bomb

KEY = "dpn-sk-1|test"
MiB = 1024 * 1024


def emulated_client(emu: Emulator, **options) -> deapi_ds.Client:
    return deapi_ds.Client(
        KEY,
        base_url="http://emulator.deapi-ds.invalid/v1",
        transport=emu.transport(),
        tier="unlimited",
        **options,
    )


# ---------------------------------------------------------------------------- gzip bombs


def test_a_gzip_bomb_fails_fast_with_bounded_memory_in_process():
    gzip_bomb()  # built once (cached), outside the measurement
    emu = Emulator().configure("embeddings", script=["gzip_bomb"])
    client = emulated_client(emu, max_retries=3)
    tracemalloc.start()
    started = time.monotonic()
    try:
        with pytest.raises(deapi_ds.ResponseValidationError, match="more than") as info:
            client.embeddings(["a"])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.monotonic() - started < 3.0
    assert peak < 48 * MiB, f"peak {peak / MiB:.0f} MiB while reading a 2 GiB bomb"
    assert "gzip" in str(info.value) and "Nothing was cached" in str(info.value)
    assert emu.stats("embeddings")["requests"] == 1  # never retried: it cannot get better


def test_a_gzip_bomb_fails_fast_on_loopback():
    gzip_bomb()
    emu = Emulator().configure("models", script=["gzip_bomb"])
    with emu.serve() as server:
        client = deapi_ds.Client(KEY, base_url=server.base_url)
        started = time.monotonic()
        tracemalloc.start()
        try:
            with pytest.raises(deapi_ds.ResponseValidationError, match="16.0 MiB"):
                client.models()
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        client.close()
    assert time.monotonic() - started < 3.0
    assert peak < 64 * MiB


def test_budgets_follow_the_request():
    assert embeddings_budget(1) < 2 * MiB < embeddings_budget(2048)
    assert images_budget(4) > 4 * images_budget(1) - 4 * MiB
    assert speech_budget(10) < speech_budget(4000) <= 1024 * MiB


# ----------------------------------------------------------- real compressed answers still work


def _serve(body: bytes, encoding: str | None, status: int = 200) -> httpx.AsyncBaseTransport:
    class T(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request):
            headers = {"Content-Type": "application/json"}
            if encoding:
                headers["Content-Encoding"] = encoding
            return httpx.Response(status, headers=headers, stream=httpx.ByteStream(body))

    return T()


def _fetch(body: bytes, encoding: str | None, *, max_bytes: int | None = None, status=200):
    settings = get_config(
        api_key=KEY,
        base_url="http://x.deapi-ds.invalid/v1",
        transport=_serve(body, encoding, status),
    )
    transport = Transport(settings)

    async def go():
        try:
            return await transport.request("GET", "/models", endpoint="models", max_bytes=max_bytes)
        finally:
            await transport.aclose()

    return anyio.run(go)


PAYLOAD = json.dumps({"data": [{"id": f"model-{i}"} for i in range(5000)]}).encode()


@pytest.mark.parametrize(
    "encoding, body",
    [
        (None, PAYLOAD),
        ("identity", PAYLOAD),
        ("gzip", gzip.compress(PAYLOAD)),
        ("gzip", gzip.compress(PAYLOAD[:1000]) + gzip.compress(PAYLOAD[1000:])),  # two members
        ("gzip", gzip.compress(PAYLOAD) + b"\x00" * 16),  # padding after the stream
        ("deflate", zlib.compress(PAYLOAD)),
        ("deflate", zlib.compress(PAYLOAD)[2:-4]),  # raw deflate, as some servers send
    ],
)
def test_compressed_answers_are_decoded_exactly(encoding, body):
    result = _fetch(body, encoding)
    assert result.content == PAYLOAD
    assert len(result.json()["data"]) == 5000


def test_an_answer_over_its_budget_is_refused_whatever_the_encoding():
    for encoding, body in ((None, PAYLOAD), ("gzip", gzip.compress(PAYLOAD))):
        with pytest.raises(deapi_ds.ResponseValidationError, match="more than 1000 bytes"):
            _fetch(body, encoding, max_bytes=1000)
    assert _fetch(PAYLOAD, None, max_bytes=len(PAYLOAD)).content == PAYLOAD  # exactly fits


def test_a_corrupt_gzip_body_is_a_connection_error_not_a_crash():
    with pytest.raises(deapi_ds.APIConnectionError, match="corrupt"):
        _fetch(b"\x1f\x8b\x08\x00garbage-garbage", "gzip")


def test_a_huge_error_body_is_cut_not_refused():
    body = json.dumps({"error": {"message": "x" * (2 * MAX_ERROR_BYTES)}}).encode()
    with pytest.raises(deapi_ds.APIStatusError) as info:
        _fetch(gzip.compress(body), "gzip", status=500)
    assert info.value.status_code == 500


# ------------------------------------------------------------------ the emulator's new faults


@pytest.mark.parametrize("encoding_format", ["float", "base64"])
def test_nan_vectors_fault(encoding_format):
    emu = Emulator().configure("embeddings", script=["nan_vectors", None])
    http = httpx.Client(
        transport=emu.transport(),
        base_url="https://oai.deapi.ai/v1",
        headers={"Authorization": f"Bearer {KEY}"},
    )
    body = {"model": "Bge_M3_FP16", "input": list("abcd"), "encoding_format": encoding_format}
    items = sorted(http.post("/embeddings", json=body).json()["data"], key=lambda d: d["index"])

    def vector(item):
        raw = item["embedding"]
        if raw is None or isinstance(raw, list):
            return raw
        return np.frombuffer(base64.b64decode(raw), "<f4")

    vectors = [vector(item) for item in items]
    assert math.isnan(vectors[0][0]) and math.isinf(vectors[1][0]) and vectors[2] is None
    assert np.isfinite(np.asarray(vectors[3], dtype=np.float32)).all()
    clean = http.post("/embeddings", json=body).json()["data"]  # the script is spent
    assert all(item["embedding"] is not None for item in clean)
    emu.configure("embeddings", nan_vectors=True)
    again = http.post("/embeddings", json=body).json()["data"]
    assert sum(item["embedding"] is None for item in again) == 1


def test_trickle_fault_sends_the_whole_body_slowly():
    emu = Emulator().configure("models", script=[Fault(kind="trickle", interval=0.001)])
    http = httpx.Client(
        transport=emu.transport(),
        base_url="https://oai.deapi.ai/v1",
        headers={"Authorization": f"Bearer {KEY}"},
    )
    normal = http.get("/models").json()  # script entry 1 is the trickle
    assert http.get("/models").json() == normal


def test_gzip_bomb_fault_is_a_valid_gzip_stream():
    emu = Emulator().configure("models", script=[Fault(kind="gzip_bomb", size=5_000_000)])
    answer = emu.handle("GET", "/v1/models", {"Authorization": f"Bearer {KEY}"})
    assert answer.headers["Content-Encoding"] == "gzip"
    assert len(answer.body) < 10_000
    assert gzip.decompress(answer.body) == bytes(5_000_000)


def test_fault_options_are_checked():
    with pytest.raises(ValueError, match="size"):
        Fault(kind="trickle", size=10)
    with pytest.raises(ValueError, match="interval"):
        Fault(kind="trickle", interval=0)
    with pytest.raises(ValueError, match="interval"):
        Fault(kind="drop", interval=1)
    assert Fault.coerce("gzip_bomb") == Fault(kind="gzip_bomb")
