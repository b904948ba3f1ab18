"""Engine overhead against bare httpx on loopback, at 1, 16 and 128 concurrent requests.

    python bench/bench_engine.py [--requests 400] [--latency 0.02]

The emulator runs in its own process with a fixed latency; both sides send the same
``POST /v1/embeddings`` (one short input, base64) and parse the JSON. deapi_ds adds its rate
limiter (no limit set), concurrency limiter, retry wrapper, error translation and base64 decoding.
Goal (issue 2): under 5% extra wall time.
"""

from __future__ import annotations

import argparse
import asyncio

import httpx
from _common import Timer, emulator_process

import deapi_ds
from deapi_ds._engine import Engine

KEY = "dpn-sk-0|bench"


async def bare(base: str, n: int, concurrency: int) -> None:
    sem = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(
        max_connections=max(16, concurrency * 2), max_keepalive_connections=max(8, concurrency)
    )
    async with httpx.AsyncClient(
        base_url=base, headers={"Authorization": f"Bearer {KEY}"}, limits=limits, timeout=60
    ) as client:

        async def one(i: int) -> None:
            async with sem:
                r = await client.post(
                    "/embeddings",
                    json={
                        "model": "Bge_M3_FP16",
                        "input": [f"text {i}"],
                        "encoding_format": "base64",
                    },
                )
                r.raise_for_status()
                r.json()

        await asyncio.gather(*(one(i) for i in range(n)))


async def ours(base: str, n: int, concurrency: int) -> None:
    client = deapi_ds.AsyncClient(KEY, base_url=base, max_concurrency=concurrency, tier="unlimited")
    client.engine = Engine(max_concurrency=concurrency)
    try:
        await asyncio.gather(*(client.embeddings([f"text {i}"]) for i in range(n)))
    finally:
        await client.aclose()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=400)
    ap.add_argument("--latency", type=float, default=0.02)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    print(
        f"# bench_engine: {args.requests} requests per run, emulator latency {args.latency}s, best of {args.repeat}"
    )
    with emulator_process(f"emu.configure('embeddings', latency={args.latency})") as base:
        print(f"{'concurrency':>11} {'bare httpx s':>13} {'deapi_ds s':>11} {'overhead':>9}")
        for concurrency in (1, 16, 128):
            n = args.requests if concurrency > 1 else max(50, args.requests // 8)
            times = {"bare": [], "ours": []}
            for _ in range(args.repeat):
                for name, fn in (("bare", bare), ("ours", ours)):
                    with Timer() as t:
                        asyncio.run(fn(base, n, concurrency))
                    times[name].append(t.seconds)
            b, o = min(times["bare"]), min(times["ours"])
            print(
                f"{concurrency:>11} {b:>13.3f} {o:>11.3f} {100 * (o - b) / b:>8.1f}%   ({n} requests)"
            )


if __name__ == "__main__":
    main()
