"""Embedding throughput and memory against the loopback emulator (in its own process).

    python bench/bench_embeddings.py rate     [--rpm 20 --rows 81920]     rate-limit bound
    python bench/bench_embeddings.py latency  [--latency 1.0 --rows 40960] concurrency bound
    python bench/bench_embeddings.py memory   [--rows 200000]             peak RSS vs the matrix
    python bench/bench_embeddings.py cachecost [--rows 300000]            cache on vs off, instant server

``rate``: the emulator enforces ``rpm`` (sliding 60 s window) and the client is told the same
limit. The bound is rpm x 2048 rows per minute (the largest batch deAPI allows); the first
window's burst is excluded by sending 2x the rows one window allows and timing from the first
to the last response. Compared with the cookbook's one request per row through the ``openai``
SDK and the SDK with 2048-input batches sent one after another (each run capped at --cap s and
reported as rows/s); LangChain's OpenAIEmbeddings when ``langchain_openai`` is installed.

``latency``: no rate limit, a fixed server latency; the bound is ceil(requests / concurrency)
x latency. Short texts and 256-input batches keep the emulator's own CPU time (one process)
small next to the latency.

``memory``: peak RSS growth of embedding ``rows`` x 1024 against the size of the float32 matrix
(goal: at most 1.5x).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _common import Timer, current_rss_mb, emulator_process, peak_rss_mb

KEY = "dpn-sk-0|bench"


def make_texts(n: int, prefix: str) -> list[str]:
    return [
        f"{prefix} {i} sample text about topic {i % 17} with words {i % 101} {i % 53}"
        for i in range(n)
    ]


def run_ours(base: str, texts: list[str], max_inputs: int | None = None, **config) -> float:
    import deapi_ds

    deapi_ds.set_config(base_url=base, api_key=KEY, cache_enabled=False, progress=False, **config)
    with Timer() as t:
        res = deapi_ds.embed(texts, cache=None, progress=False, max_inputs=max_inputs)
    assert (res.frame["status"] == "ok").all(), res.summary()
    return t.seconds


def run_openai_rows(base: str, texts: list[str], cap: float) -> tuple[int, float]:
    from openai import OpenAI

    client = OpenAI(base_url=base, api_key=KEY, max_retries=10)
    done, start = 0, time.perf_counter()
    for text in texts:
        client.embeddings.create(model="Bge_M3_FP16", input=text)
        done += 1
        if time.perf_counter() - start > cap:
            break
    return done, time.perf_counter() - start


def run_openai_batches(
    base: str, texts: list[str], cap: float, size: int = 2048
) -> tuple[int, float]:
    from openai import OpenAI

    client = OpenAI(base_url=base, api_key=KEY, max_retries=10)
    done, start = 0, time.perf_counter()
    for i in range(0, len(texts), size):
        client.embeddings.create(model="Bge_M3_FP16", input=texts[i : i + size])
        done += len(texts[i : i + size])
        if time.perf_counter() - start > cap:
            break
    return done, time.perf_counter() - start


def run_langchain(base: str, texts: list[str], cap: float) -> tuple[int, float] | None:
    try:
        from langchain_openai import OpenAIEmbeddings
    except ImportError:
        return None
    emb = OpenAIEmbeddings(
        model="Bge_M3_FP16", api_key=KEY, base_url=base, check_embedding_ctx_length=False
    )
    done, start = 0, time.perf_counter()
    step = 1000  # LangChain's default chunk_size
    for i in range(0, len(texts), step * 4):
        emb.embed_documents(texts[i : i + step * 4])
        done += len(texts[i : i + step * 4])
        if time.perf_counter() - start > cap:
            break
    return done, time.perf_counter() - start


def scenario_rate(args) -> None:
    windows = args.windows
    rows = args.rows or args.rpm * 2048 * windows
    conf = f"emu.configure('embeddings', rpm={args.rpm}, latency={args.latency})"
    print(
        f"# rate: emulator and client at {args.rpm} requests/min, latency {args.latency}s, {rows:,} rows ({-(-rows // 2048)} requests)"
    )
    with emulator_process(f"emu.configure('embeddings', latency={args.latency})") as base:
        burst = run_ours(
            base, make_texts(args.rpm * 2048, "burst")
        )  # one window's requests, no limit
    with emulator_process(conf) as base:
        seconds = run_ours(base, make_texts(rows, "ours"), rpm={"embeddings": args.rpm})
    requests = -(-rows // 2048)
    # the last window's requests may start 60 s x (windows - 1) after the first; then they take `burst`
    ideal = 61.0 * (-(-requests // args.rpm) - 1) + burst
    print(
        f"deapi_ds: {rows:,} rows in {seconds:.1f} s; bound set by the limit x 2048-row batches: {ideal:.1f} s "
        f"(one window's {args.rpm} requests take {burst:.1f} s here) -> {100 * ideal / seconds:.0f}% of the bound"
    )
    results = {"deapi_ds": rows / seconds}
    for name, fn in (
        ("openai SDK, one row per request", run_openai_rows),
        ("openai SDK, 2048-input batches one after another", run_openai_batches),
        ("LangChain OpenAIEmbeddings", run_langchain),
    ):
        with emulator_process(conf) as base:
            out = fn(base, make_texts(rows, name[:6]), args.cap)
        if out is None:
            print(f"{name}: not installed, skipped")
            continue
        done, secs = out
        results[name] = done / secs
        print(f"{name}: {done:,} rows in {secs:.1f} s -> {done / secs:,.1f} rows/s")
    for name, r in results.items():
        if name != "deapi_ds":
            print(
                f"deapi_ds ({results['deapi_ds']:,.0f} rows/s) / {name}: {results['deapi_ds'] / r:,.1f}x"
            )


async def _bare_httpx(base: str, texts: list[str], size: int, concurrency: int) -> float:
    """The same batches sent by hand with httpx at the same concurrency (the achievable bound)."""
    import asyncio
    import base64 as b64

    import httpx

    sem = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency * 2, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(
        base_url=base, headers={"Authorization": f"Bearer {KEY}"}, limits=limits, timeout=120
    ) as client:

        async def one(chunk: list[str]) -> None:
            async with sem:
                r = await client.post(
                    "/embeddings",
                    json={"model": "Bge_M3_FP16", "input": chunk, "encoding_format": "base64"},
                )
                r.raise_for_status()
                for item in r.json()["data"]:
                    np.frombuffer(b64.b64decode(item["embedding"]), dtype="<f4")

        start = time.perf_counter()
        await asyncio.gather(*(one(texts[i : i + size]) for i in range(0, len(texts), size)))
        return time.perf_counter() - start


def scenario_latency(args) -> None:
    import asyncio

    rows = args.rows or 8192
    size = args.max_inputs
    print(
        f"# latency: no rate limit, latency {args.latency}s, concurrency {args.concurrency}, "
        f"{rows:,} rows in batches of {size}"
    )
    conf = f"emu.configure('embeddings', latency={args.latency})"
    with emulator_process(conf) as base:
        # short texts and moderate batches keep the emulator's own CPU time (one process, one GIL)
        # small next to the latency, so what is measured is how well the client fills its slots
        bare = asyncio.run(
            _bare_httpx(base, [f"b{i}" for i in range(rows)], size, args.concurrency)
        )
        seconds = run_ours(
            base, [f"q{i}" for i in range(rows)], max_inputs=size, max_concurrency=args.concurrency
        )
        batches = -(-rows // size)
        bound_s = -(-batches // args.concurrency) * args.latency
        print(
            f"deapi_ds: {rows:,} rows ({batches} requests) in {seconds:.2f} s; latency-only bound "
            f"{bound_s:.2f} s -> {100 * bound_s / seconds:.0f}%; hand-written httpx at the same "
            f"concurrency {bare:.2f} s -> deapi_ds reaches {100 * bare / seconds:.0f}% of it"
        )
        done, secs = run_openai_batches(base, [f"s{i}" for i in range(rows)], args.cap, size)
        print(
            f"openai SDK, {size}-input batches one after another: {done:,} rows in {secs:.2f} s "
            f"-> deapi_ds {secs / done * rows / seconds:.1f}x faster"
        )


def scenario_memory(args) -> None:
    rows = args.rows or 200_000
    matrix_mb = rows * 1024 * 4 / 2**20
    print(f"# memory: {rows:,} rows x 1024 float32 = {matrix_mb:,.0f} MB")
    texts = make_texts(rows, "mem")
    with emulator_process("") as base:
        import deapi_ds

        deapi_ds.set_config(base_url=base, api_key=KEY, progress=False, max_concurrency=2)
        before = current_rss_mb()
        with Timer() as t:
            res = deapi_ds.embed(texts, cache=None, progress=False)
        peak = peak_rss_mb()
    growth = peak - before
    print(
        f"embedded in {t.seconds:.1f} s; RSS before {before:,.0f} MB, peak {peak:,.0f} MB -> growth {growth:,.0f} MB = {growth / matrix_mb:.2f}x the matrix (goal <= 1.5x)"
    )
    assert res.matrix.dtype == np.float32


def scenario_cachecost(args) -> None:
    """The cache's cost on a fast run: a server that answers at once (precomputed base64 bodies
    per batch size, in-process httpx transport), ``rows`` unique texts, cache off vs on."""
    import base64
    import json
    import tempfile

    import httpx

    import deapi_ds

    dim = 1024
    vec = base64.b64encode(np.random.default_rng(0).random(dim, dtype=np.float32).tobytes())
    bodies: dict[int, bytes] = {}

    def body(n: int) -> bytes:
        if n not in bodies:
            items = [
                {"object": "embedding", "index": i, "embedding": vec.decode()} for i in range(n)
            ]
            usage = {"prompt_tokens": n, "total_tokens": n}
            bodies[n] = json.dumps(
                {"object": "list", "data": items, "model": "Bge_M3_FP16", "usage": usage}
            ).encode()
        return bodies[n]

    def handler(request: httpx.Request) -> httpx.Response:
        n = len(json.loads(request.content)["input"])
        return httpx.Response(200, content=body(n), headers={"content-type": "application/json"})

    rows = args.rows or 300_000
    deapi_ds.set_config(
        base_url="https://bench.invalid/v1",
        api_key=KEY,
        transport=httpx.MockTransport(handler),
        tier="unlimited",
        progress=False,
    )
    results = {}
    for label in ("cache off", "cache on", "cache off ", "cache on "):
        texts = make_texts(rows, f"{label.strip()}-{time.perf_counter_ns()}")
        with tempfile.TemporaryDirectory() as folder:
            cache = None if "off" in label else folder
            with Timer() as t:
                res = deapi_ds.embed(texts, cache=cache, progress=False)
            assert (res.frame["status"] == "ok").all(), res.summary()
        results.setdefault(label.strip(), []).append(rows / t.seconds)
        print(f"{label.strip():9s}: {rows / t.seconds:>9,.0f} rows/s ({t.seconds:.1f} s)")
    off, on = max(results["cache off"]), max(results["cache on"])
    print(f"cache on / cache off (best of 2): {on / off:.2f}x  (goal >= 0.8x)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("scenario", choices=["rate", "latency", "memory", "cachecost"])
    ap.add_argument("--rows", type=int, default=0)
    ap.add_argument("--rpm", type=int, default=20)
    ap.add_argument("--latency", type=float, default=0.05)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument(
        "--max-inputs", type=int, default=256, help="latency scenario: inputs per request"
    )
    ap.add_argument("--cap", type=float, default=70.0, help="seconds per baseline run")
    ap.add_argument(
        "--windows", type=int, default=2, help="rate scenario: minutes of rate-limited work"
    )
    args = ap.parse_args()
    scenarios = {
        "rate": scenario_rate,
        "latency": scenario_latency,
        "memory": scenario_memory,
        "cachecost": scenario_cachecost,
    }
    scenarios[args.scenario](args)


if __name__ == "__main__":
    main()
