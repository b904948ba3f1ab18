"""Benchmark: exact top-k cosine search with deapi_ds.search vs faiss IndexFlatIP.

100 queries over N x 384 float32 vectors, k=10 (the figures of issue 5: within 1.5x of
faiss at N=1,000,000). faiss is optional (``pip install faiss-cpu``; it is not a dependency
of deapi_ds); without it only deapi_ds is timed.

    python bench/bench_search.py                 # N=200,000, a quick run
    python bench/bench_search.py --n 1000000     # the full figure (~1.5 GB of vectors)
    python bench/bench_search.py --n 1000000 --threads 1   # steadier on a busy machine

Vectors are random normal rows, normalized to unit length so that faiss' inner product is
the cosine similarity. Timings are the best of ``--repeat`` runs. Peak RSS is measured per
phase (Linux: VmHWM reset through /proc/self/clear_refs) and includes the vectors.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _threads_from_argv(argv: list[str]) -> None:
    """Apply --threads before numpy loads OpenBLAS (the variables are read at load time)."""
    for i, arg in enumerate(argv):
        value = arg.split("=", 1)[1] if arg.startswith("--threads=") else None
        if arg == "--threads" and i + 1 < len(argv):
            value = argv[i + 1]
        if value:
            for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
                os.environ[var] = value


_threads_from_argv(sys.argv[1:])

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deapi_ds.search import SearchIndex, top_k  # noqa: E402

GIB = 1024**3


def rss_bytes(field: str = "VmRSS") -> int:
    """Current (VmRSS) or peak (VmHWM) resident set size of this process."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False when not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def make_unit_rows(n: int, d: int, seed: int, chunk: int = 100_000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.empty((n, d), dtype=np.float32)
    for s in range(0, n, chunk):
        block = rng.standard_normal((min(chunk, n - s), d), dtype=np.float32)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        out[s : s + len(block)] = block
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200_000, help="corpus rows (default 200,000)")
    parser.add_argument("--d", type=int, default=384, help="dimensions (default 384)")
    parser.add_argument("--queries", type=int, default=100, help="queries (default 100)")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--chunk-rows", type=int, default=131072)
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement (best)")
    parser.add_argument("--no-faiss", action="store_true", help="skip faiss even if installed")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="BLAS/OpenMP threads for both libraries (default: all cores); 1 gives steadier "
        "figures on a shared machine",
    )
    args = parser.parse_args(argv)

    print(
        f"deapi_ds.search benchmark: {args.queries} queries x {args.n:,} x {args.d} float32, "
        f"k={args.k}, chunk_rows={args.chunk_rows:,}; cpus={os.cpu_count()}, "
        f"threads={args.threads or 'all'}, "
        f"numpy {np.__version__}"
    )
    t0 = time.perf_counter()
    corpus = make_unit_rows(args.n, args.d, args.seed)
    queries = make_unit_rows(args.queries, args.d, args.seed + 1)
    gen = time.perf_counter() - t0
    base_rss = rss_bytes()
    print(
        f"data: {corpus.nbytes / GIB:.2f} GiB generated in {gen:.1f} s; "
        f"RSS {base_rss / GIB:.2f} GiB"
    )
    top_k(queries[:2], corpus[:10_000], k=args.k)  # warm up BLAS threads
    import pandas as pd

    t_index = time.perf_counter()
    index = SearchIndex(pd.DataFrame(index=pd.RangeIndex(args.n)), corpus)
    t_index = time.perf_counter() - t_index
    cr = args.chunk_rows
    methods: dict[str, Callable[[], Any]] = {
        "deapi_ds top_k(normalized=True)": lambda: top_k(
            queries, corpus, args.k, chunk_rows=cr, normalized=True
        ),
        "deapi_ds top_k (normalizes chunks)": lambda: top_k(queries, corpus, args.k, chunk_rows=cr),
        "deapi_ds SearchIndex.search -> frame": lambda: index.search(queries, k=args.k),
        "deapi_ds top_k, 1 query": lambda: top_k(
            queries[:1], corpus, args.k, chunk_rows=cr, normalized=True
        ),
    }

    # Peak RSS, one phase at a time, before faiss holds its copy of the vectors.
    can_reset = reset_peak()
    peaks: dict[str, float] = {}
    results: dict[str, Any] = {}
    for name, fn in methods.items():
        reset_peak()
        results[name] = fn()
        peaks[name] = rss_bytes("VmHWM") if can_reset else float("nan")

    faiss_name = "faiss IndexFlatIP.search"
    if not args.no_faiss:
        try:
            import faiss
        except ImportError:
            print("faiss is not installed (pip install faiss-cpu): timing deapi_ds only.")
        else:
            faiss.cvar.distance_compute_blas_threshold = 20  # see VERIFIED.md
            if args.threads:
                faiss.omp_set_num_threads(args.threads)
            reset_peak()
            t_add = time.perf_counter()
            flat = faiss.IndexFlatIP(args.d)
            flat.add(corpus)
            t_add = time.perf_counter() - t_add
            methods[faiss_name] = lambda: flat.search(queries, args.k)
            methods[faiss_name + ", 1 query"] = lambda: flat.search(queries[:1], args.k)
            for name in (faiss_name, faiss_name + ", 1 query"):
                results[name] = methods[name]()
                peaks[name] = rss_bytes("VmHWM") if can_reset else float("nan")
            ours_idx = results["deapi_ds top_k(normalized=True)"][0]
            faiss_idx = results[faiss_name][1]
            same = np.mean(
                [
                    set(a) == set(b)
                    for a, b in zip(ours_idx.tolist(), faiss_idx.tolist(), strict=True)
                ]
            )
            print(
                f"faiss {faiss.__version__}: IndexFlatIP.add took {t_add:.2f} s (a copy of "
                f"the vectors); top-{args.k} sets identical to deapi_ds for {same:.0%} of queries"
            )

    # Timings: the methods take turns, so a busy neighbour slows all of them alike.
    times: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(args.repeat):
        for name, fn in methods.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)

    print(f"SearchIndex construction (row norms, no copy): {t_index:.2f} s")
    print(f"load average before/after the timings: {os.getloadavg()[0]:.1f}")
    print()
    faiss_time = min(times[faiss_name]) if faiss_name in times else None
    width = max(len(name) for name in methods)
    header = f"{'':{width}}  {'best s':>7}  {'median s':>8}  {'peak RSS':>9}  {'vs faiss':>8}"
    print(header)
    for name in methods:
        best, median = min(times[name]), float(np.median(times[name]))
        ratio = f"{best / faiss_time:.2f}x" if faiss_time else "-"
        peak = peaks[name]
        peak_s = f"{peak / GIB:.2f} GiB" if peak == peak else "n/a"
        print(f"{name:{width}}  {best:7.3f}  {median:8.3f}  {peak_s:>9}  {ratio:>8}")
    if faiss_time:
        ours = min(times["deapi_ds SearchIndex.search -> frame"])
        ratio = ours / faiss_time
        goal = "meets" if ratio <= 1.5 else "misses"
        print(
            f"\ndeapi_ds SearchIndex.search / faiss IndexFlatIP = {ratio:.2f} "
            f"({goal} the 1.5x goal of issue 5)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
