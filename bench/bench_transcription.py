"""Benchmark: 200 short clips through deapi_ds.transcribe against the LOOPBACK emulator.

Two runs, both over real HTTP on 127.0.0.1 (the emulator's threaded server):

1. **Rate limited.** The emulator enforces ``--rpm`` requests per minute on
   ``/v1/audio/transcriptions`` (429 beyond it) and deapi_ds is configured with the same limit
   (``set_config(rpm=...)``). With a sliding 60 s window, request k cannot start before request
   k - rpm + 60 s; with ``--concurrency`` requests in flight of ``--latency`` seconds each, the
   shortest possible wall time is :func:`rate_bound` (the rate limit alone would allow
   ``floor((N - 1) / rpm) * 60 + latency``; both are printed). Goal: within 10% of the bound.
2. **Latency only.** No rate limit; each answer takes ``--latency`` seconds; deapi_ds keeps
   ``--concurrency`` requests in flight. Bound: ``ceil(N / concurrency) * latency``.
   Goal: at least 90% of it (bound / wall >= 0.9). ``--baseline`` also times a bare
   ``httpx.AsyncClient`` doing the same uploads, i.e. what the loopback server itself allows
   (the emulator decodes every upload in one Python process, which costs a few ms each).

The emulator runs in a child process (``Emulator().serve()`` there), so its CPU does not
compete with deapi_ds for the GIL.

Run (defaults take about 85 s)::

    python bench/bench_transcription.py
    python bench/bench_transcription.py --clips 200 --rpm 180 --latency 0.75 --concurrency 8

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


def rate_bound(n: int, rpm: int, concurrency: int, latency: float) -> float:
    """Shortest possible wall time under both limits (greedy schedule, which is optimal for
    identical requests): request k starts when a slot is free and, if k >= rpm, no earlier than
    request k - rpm + 60 s (the sliding window); each takes ``latency``."""
    import heapq

    slots = [0.0] * concurrency
    starts: list[float] = []
    end = 0.0
    for k in range(n):
        free = heapq.heappop(slots)
        start = max(free, starts[k - rpm] + 60.0 if k >= rpm else 0.0)
        starts.append(start)
        end = max(end, start + latency)
        heapq.heappush(slots, start + latency)
    return end


def make_clips(n: int) -> list[bytes]:
    """``n`` distinct short WAV clips (about 0.6 s) that the emulator decodes back to their text.

    Short WAV keeps the emulator's own decoding (a few ms per request) small next to the
    injected latency, so the run measures deapi_ds's scheduling, not the fake server's CPU.
    """
    return [synthesize_speech(f"{i}.", voice="af_bella", fmt="wav") for i in range(n)]


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


def raw_httpx(clips: list[bytes], base_url: str, concurrency: int) -> float:
    """The same uploads with a bare httpx.AsyncClient: what the transport and server allow."""
    import anyio
    import httpx

    async def go() -> float:
        async with httpx.AsyncClient(
            base_url=base_url, headers={"Authorization": "Bearer dpn-sk-0|bench"}, timeout=60
        ) as http:
            sem = anyio.Semaphore(concurrency)

            async def one(clip: bytes) -> None:
                async with sem:
                    r = await http.post(
                        "/audio/transcriptions",
                        data={"model": "WhisperLargeV3", "response_format": "verbose_json"},
                        files={"file": ("clip.wav", clip, "audio/wav")},
                    )
                    r.raise_for_status()

            start = time.perf_counter()
            async with anyio.create_task_group() as tg:
                for clip in clips:
                    tg.start_soon(one, clip)
            return time.perf_counter() - start

    return anyio.run(go)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=200)
    parser.add_argument("--rpm", type=int, default=180, help="requests per minute (run 1)")
    parser.add_argument("--latency", type=float, default=0.75, help="seconds per answer")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--no-cache", action="store_true")
    parser.add_argument(
        "--baseline", action="store_true", help="also time bare httpx (the transport's ceiling)"
    )
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
        pure = math.floor((n - 1) / args.rpm) * 60 + args.latency
        bound = rate_bound(n, args.rpm, args.concurrency, args.latency)
        ratio = wall / bound
        good = ratio <= 1.10 and ok == n
        failures += not good
        print(
            f"[rate limit {args.rpm}/min, concurrency {args.concurrency}] wall {wall:.2f} s vs "
            f"bound {bound:.2f} s (rate limit + concurrency; the rate limit alone: {pure:.2f} s) "
            f"-> {ratio:.3f}x the bound (goal <= 1.10: {'PASS' if good else 'FAIL'}; "
            f"{wall / pure:.3f}x the rate-only bound); {st['requests']} requests, "
            f"{st['rate_limited']} answered 429, {ok}/{n} ok"
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
    if args.baseline:
        with emulator_process(None, args.latency) as (base_url, stats):
            raw = raw_httpx(clips, base_url, args.concurrency)
        print(
            f"[baseline: bare httpx.AsyncClient, {args.concurrency} in flight, no deapi_ds] wall "
            f"{raw:.2f} s -> {bound / raw:.1%} of the concurrency bound; deapi_ds reached "
            f"{raw / wall:.1%} of the bare transport"
        )
    print(f"total {time.perf_counter() - t0:.1f} s")
    deapi_ds.reset_config()
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
