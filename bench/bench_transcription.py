"""Benchmark: 200 short clips through deapi_ds.transcribe against the LOOPBACK emulator.

Two runs, both over real HTTP on 127.0.0.1 (the emulator's threaded server):

1. **Rate limited.** The emulator enforces ``--rpm`` requests per minute on
   ``/v1/audio/transcriptions`` (429 beyond it) and deapi_ds is configured with the same limit
   (``set_config(rpm=...)``). With a sliding 60 s window, request k cannot start before request
   k - rpm + 60 s, so N requests cannot finish before ``floor((N - 1) / rpm) * 60 + latency``.
   Goal: wall time within 10% of that bound.
2. **Latency only.** No rate limit; each answer takes ``--latency`` seconds; deapi_ds keeps
   ``--concurrency`` requests in flight. Bound: ``ceil(N / concurrency) * latency``.
   Goal: at least 90% of it (bound / wall >= 0.9).

Run (defaults take about 80 s)::

    python bench/bench_transcription.py
    python bench/bench_transcription.py --clips 200 --rpm 120 --latency 0.5 --concurrency 8

Each run uses a fresh result cache (so every clip is sent and each answer is written to the
cache as it arrives, as in real use); ``--no-cache`` measures without it.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import multiprocessing
import shlex
import sys
import tempfile
import time

import deapi_ds
from deapi_ds import _tasks
from deapi_ds.emulator import Emulator
from deapi_ds.emulator._media import synthesize_speech
from deapi_ds.transcription import transcribe

EP = "audio.transcriptions"


def _serve(conn, rpm: int | None, latency: float) -> None:
    """Child process: the loopback emulator (its CPU does not compete for our GIL)."""
    emu = Emulator().configure(EP, rpm=rpm, latency=latency)
    with emu.serve() as server:
        conn.send(server.base_url)
        conn.recv()  # "stop"
        conn.send(emu.stats(EP))


@contextlib.contextmanager
def emulator_process(rpm: int | None, latency: float):
    """Start ``Emulator().serve()`` in a child process; yields (base_url, stats())."""
    parent, child = multiprocessing.Pipe()
    proc = multiprocessing.get_context("spawn").Process(
        target=_serve, args=(child, rpm, latency), daemon=True
    )
    proc.start()
    base_url = parent.recv()
    stats: dict = {}

    def get_stats() -> dict:
        return stats

    try:
        yield base_url, get_stats
    finally:
        parent.send("stop")
        stats.update(parent.recv())
        proc.join(10)


def make_clips(n: int) -> list[bytes]:
    words = "alpha bravo charlie delta echo foxtrot golf hotel india juliet".split()
    return [
        synthesize_speech(f"Clip {i} {words[i % 10]}.", voice="af_bella", fmt="wav")
        for i in range(n)
    ]


def run(
    clips: list[bytes], base_url: str, *, rpm: int | None, concurrency: int, cache: bool
) -> tuple[float, int]:
    _tasks.clear_shared_clients()
    deapi_ds.set_config(
        base_url=base_url,
        api_key="dpn-sk-0|bench",
        transport=None,
        tier="unlimited",
        rpm=rpm,
        max_concurrency=concurrency,
        progress=False,
    )
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        res = transcribe(clips, cache=folder if cache else None)
        wall = time.perf_counter() - start
    ok = int(res.files["status"].isin(["ok"]).sum())
    if ok != len(clips):
        print(res.files[res.files["status"] != "ok"][["file", "error"]].head(), file=sys.stderr)
    return wall, ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=200)
    parser.add_argument("--rpm", type=int, default=120, help="requests per minute (run 1)")
    parser.add_argument("--latency", type=float, default=0.5, help="seconds per answer")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--no-cache", action="store_true")
    parser.add_argument("--skip-rate", action="store_true", help="only the latency run")
    args = parser.parse_args(argv)
    print("command:", shlex.join([sys.executable, *sys.argv]))

    t0 = time.perf_counter()
    clips = make_clips(args.clips)
    seconds = sum(deapi_ds._media.probe(c, name="c.wav").duration for c in clips)
    print(
        f"{len(clips)} clips, {seconds:.0f} s of audio, made in {time.perf_counter() - t0:.1f} s; "
        f"latency {args.latency} s, concurrency {args.concurrency}, "
        f"cache {'off' if args.no_cache else 'on (fresh folder)'}"
    )
    failures = 0
    n = len(clips)
    if not args.skip_rate:
        with emulator_process(args.rpm, args.latency) as (base_url, stats):
            wall, ok = run(
                clips, base_url, rpm=args.rpm, concurrency=args.concurrency,
                cache=not args.no_cache,
            )  # fmt: skip
        st = stats()
        bound = math.floor((n - 1) / args.rpm) * 60 + args.latency
        ratio = wall / bound
        good = ratio <= 1.10 and ok == n
        failures += not good
        print(
            f"[rate limit {args.rpm}/min] wall {wall:.2f} s vs bound {bound:.2f} s -> "
            f"{ratio:.3f}x the bound (goal <= 1.10: {'PASS' if good else 'FAIL'}); "
            f"{st['requests']} requests, {st['rate_limited']} answered 429, {ok}/{n} ok"
        )
    with emulator_process(None, args.latency) as (base_url, stats):
        wall, ok = run(
            clips, base_url, rpm=None, concurrency=args.concurrency, cache=not args.no_cache
        )
    st = stats()
    bound = math.ceil(n / args.concurrency) * args.latency
    eff = bound / wall
    good = eff >= 0.90 and ok == n
    failures += not good
    print(
        f"[latency only, concurrency {args.concurrency}] wall {wall:.2f} s vs bound "
        f"{bound:.2f} s -> {eff:.1%} of the concurrency bound (goal >= 90%: "
        f"{'PASS' if good else 'FAIL'}); {st['requests']} requests, {ok}/{n} ok"
    )
    print(f"total {time.perf_counter() - t0:.1f} s")
    deapi_ds.reset_config()
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
