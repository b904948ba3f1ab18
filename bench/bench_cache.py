"""Benchmark of the parquet result cache (figures are printed, not asserted).

1. Key lookup at scale: a cache of ``--n-keys`` entries (key + ``--dim`` float32 vector, written
   in batches then compacted); time to check ``--n-keys`` keys cold (fresh process: lists the
   folder and reads the key column) and warm, and to fetch all their vectors as a matrix.
2. A fully cached embedding rerun: ``--n-embed`` rows x ``--embed-dim`` written the way the
   embed task writes them (one file per API batch, auto-compaction), then hash the texts, look
   them all up and assemble the (n, dim) float32 matrix, against a plain ``pd.read_parquet`` of
   the same folder (goal: within 2x).

Each measurement runs in its own process (``--repeat`` times; the best time and the highest
peak RSS are shown), so that its peak RSS is its own and the OS page cache is warm.

3. ``--scenario write``: the cost of ``ResultCache.write()`` for the embed path of issue 13:
   ``--write-rows`` unique rows (300,000) in batches of 2,048 x 1,024 float32, each batch one
   ``write()`` (temp file, page checksums, fsync, atomic rename, automatic compaction), printed as
   rows/s with the slowest batch, the parquet encoding and fsync shares, and the ratio to a run
   without cache at ``--net-rate`` rows/s (22,000: issue 13's 2-core figure), both when writes
   run in line with the network and when they overlap it.

    python bench/bench_cache.py                                   # small, < 60 s
    python bench/bench_cache.py --n-keys 1000000 --n-embed 200000  # the sizes of issue 4
    python bench/bench_cache.py --scenario write                   # write throughput (issue 13)
    python bench/bench_cache.py --scenario write --code /tmp/base  # the same for another checkout
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
if "--code" in sys.argv:  # measure another checkout (before/after): --code /path/to/checkout
    sys.path.insert(0, str(Path(sys.argv[sys.argv.index("--code") + 1]).resolve()))

from deapi_ds._cache import (  # noqa: E402
    ResultCache,
    embedding_array,
    embedding_matrix,
    make_keys,
)

TASK = "embeddings"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def texts(prefix: str, n: int) -> list[str]:
    return [f"{prefix} document number {i}: some short text" for i in range(n)]


def build(location: str, model: str, n: int, dim: int, batch: int, threshold: int) -> dict:
    cache = ResultCache(location, compact_threshold=threshold)
    rng = np.random.default_rng(0)
    t_keys = t_write = 0.0
    t0 = time.perf_counter()
    for start in range(0, n, batch):
        stop = min(n, start + batch)
        s = time.perf_counter()
        keys = make_keys(TASK, model, {}, texts(model, stop)[start:stop])
        t_keys += time.perf_counter() - s
        vecs = rng.random((stop - start, dim), dtype=np.float32)
        s = time.perf_counter()
        cache.write(TASK, model, pa.table({"key": keys, "embedding": embedding_array(vecs)}))
        t_write += time.perf_counter() - s
    s = time.perf_counter()
    cache.compact(TASK, model)
    t_compact = time.perf_counter() - s
    info = cache.info()
    row = info[info["model"] == model].iloc[0]
    return {
        "total_s": time.perf_counter() - t0,
        "write_s": t_write,
        "final_compact_s": t_compact,
        "files": int(row["files"]),
        "rows": int(row["rows"]),
        "mb": row["bytes"] / 1e6,
    }


def phase_lookup(location: str, model: str, n: int) -> dict:
    keys = make_keys(TASK, model, {}, texts(model, n))
    cache = ResultCache(location)
    out = {}
    s = time.perf_counter()
    mask = cache.contains(TASK, model, keys)
    out["contains_cold_s"] = time.perf_counter() - s
    assert mask.all(), f"{(~mask).sum()} keys missing"
    s = time.perf_counter()
    cache.contains(TASK, model, keys)
    out["contains_warm_s"] = time.perf_counter() - s
    s = time.perf_counter()
    table = cache.lookup(TASK, model, keys, columns=[])
    out["lookup_keys_only_warm_s"] = time.perf_counter() - s
    assert table.num_rows == n
    out["rss_after_keys_mb"] = peak_rss_mb()
    s = time.perf_counter()
    table = cache.lookup(TASK, model, keys, columns=["embedding"])
    matrix = embedding_matrix(table["embedding"])
    out["lookup_vectors_warm_s"] = time.perf_counter() - s
    assert matrix.shape[0] == n
    out["peak_rss_mb"] = peak_rss_mb()
    return out


def phase_rerun(location: str, model: str, n: int) -> dict:
    s = time.perf_counter()
    keys = make_keys(TASK, model, {}, texts(model, n))
    t_keys = time.perf_counter() - s
    cache = ResultCache(location)
    table = cache.lookup(TASK, model, keys, columns=["embedding"])
    matrix = embedding_matrix(table["embedding"])
    total = time.perf_counter() - s
    assert matrix.shape[0] == n and table["key"].to_pylist()[:3] == keys[:3]
    return {"keys_s": t_keys, "rerun_s": total, "peak_rss_mb": peak_rss_mb()}


def phase_read_parquet(location: str, model: str, n: int) -> dict:
    folder = os.path.join(location, TASK, model)
    s = time.perf_counter()
    df = pd.read_parquet(folder, columns=["key", "embedding"])
    t_read = time.perf_counter() - s
    matrix = np.stack(df["embedding"].to_numpy())
    total = time.perf_counter() - s
    assert matrix.shape[0] == n
    return {"read_parquet_s": t_read, "read_parquet_stack_s": total, "peak_rss_mb": peak_rss_mb()}


def phase_write(location: str, model: str, n: int, batch: int = 2048, dim: int = 1024) -> dict:
    """``n`` unique rows written as ``write()`` calls of ``batch`` x ``dim`` float32."""
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    pool = [rng.standard_normal((batch, dim), dtype=np.float32) for _ in range(4)]
    cache = ResultCache(location)
    times, t_keys = [], 0.0
    for b, start in enumerate(range(0, n, batch)):
        stop = min(n, start + batch)
        s = time.perf_counter()
        keys = make_keys(TASK, model, {}, [f"{model} {i}" for i in range(start, stop)])
        t_keys += time.perf_counter() - s
        table = pa.table({"key": keys, "embedding": embedding_array(pool[b % 4][: stop - start])})
        s = time.perf_counter()
        cache.write(TASK, model, table)
        times.append(time.perf_counter() - s)
    # the shares of one batch: the cache's parquet encoding (in memory), and an fsync of that size
    try:
        from deapi_ds._cache._codec import _prepare, write_parquet
    except ImportError:  # a checkout from before the cache package
        from deapi_ds._cache import _prepare, _row_group_size, _write_options

        def write_parquet(table, where):
            pq.write_table(
                table, where, row_group_size=_row_group_size(table), **_write_options(table.schema)
            )

    table = _prepare(
        pa.table({"key": keys, "embedding": embedding_array(pool[0][: len(keys)])}), model
    )
    encode = []
    for _ in range(5):
        sink = pa.BufferOutputStream()
        s = time.perf_counter()
        write_parquet(table, sink)
        encode.append(time.perf_counter() - s)
    data = sink.getvalue()
    fsyncs = []
    for _ in range(3):
        fd, path = tempfile.mkstemp(dir=location)
        os.write(fd, data)
        s = time.perf_counter()
        os.fsync(fd)
        fsyncs.append(time.perf_counter() - s)
        os.close(fd)
        os.unlink(path)
    return {
        "rows": n,
        "write_s": sum(times),
        "median_batch_ms": float(np.median(times)) * 1000,
        "max_batch_ms": max(times) * 1000,
        "keys_s": t_keys,
        "encode_ms": min(encode) * 1000,
        "fsync_ms": float(np.median(fsyncs)) * 1000,
        "peak_rss_mb": peak_rss_mb(),
    }


PHASES = {
    "lookup": phase_lookup,
    "rerun": phase_rerun,
    "read_parquet": phase_read_parquet,
    "write": phase_write,
}


def run_phase(
    name: str, location: str, model: str, n: int, repeat: int, code: str | None = None
) -> dict:
    """Run a phase ``repeat`` times, each in a fresh process; best time, highest peak RSS."""
    runs = []
    for _ in range(repeat):
        proc = subprocess.run(
            [
                sys.executable,
                __file__,
                "--phase",
                name,
                "--dir",
                location,
                "--model",
                model,
                "--n",
                str(n),
                *(["--code", code] if code else []),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode:
            raise SystemExit(f"phase {name} failed:\n{proc.stderr}")
        runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    return {k: (max if "rss" in k else min)(r[k] for r in runs) for k in runs[0]}


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--n-keys",
        type=int,
        default=100_000,
        help="entries for the key lookup (1000000 in issue 4)",
    )
    ap.add_argument("--dim", type=int, default=384, help="vector size of those entries")
    ap.add_argument("--key-batch", type=int, default=0, help="rows per write (default n-keys / 10)")
    ap.add_argument(
        "--n-embed", type=int, default=20_000, help="rows of the cached embedding rerun (200000)"
    )
    ap.add_argument(
        "--embed-dim", type=int, default=1024, help="embedding size (1024 for Bge_M3_FP16)"
    )
    ap.add_argument("--embed-batch", type=int, default=512, help="rows per API batch / cache file")
    ap.add_argument("--threshold", type=int, default=64, help="compact_threshold")
    ap.add_argument(
        "--repeat", type=int, default=3, help="runs per measurement (best time is shown)"
    )
    ap.add_argument("--dir", help="cache folder (default: a temporary folder, removed afterwards)")
    ap.add_argument("--keep", action="store_true", help="keep the cache folder")
    ap.add_argument("--scenario", choices=["lookup", "write"], default="lookup")
    ap.add_argument("--write-rows", type=int, default=300_000, help="rows of the write scenario")
    ap.add_argument(
        "--net-rate", type=float, default=22_000, help="rows/s of the same run without cache"
    )
    ap.add_argument("--code", help="import deapi_ds from this checkout instead (before/after)")
    ap.add_argument("--phase", choices=sorted(PHASES), help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.phase:
        print(json.dumps(PHASES[args.phase](args.dir, args.model, args.n)))
        return

    location = args.dir or tempfile.mkdtemp(prefix="deapi_ds_bench_")
    if args.scenario == "write":
        try:
            scenario_write(args, location)
        finally:
            if not args.keep and not args.dir:
                shutil.rmtree(location, ignore_errors=True)
        return
    try:
        print(
            f"cache folder: {location}  (numpy {np.__version__}, pyarrow {pa.__version__}, pandas {pd.__version__})"
        )
        s = time.perf_counter()
        keys = make_keys(TASK, "Hash", {}, texts("hash", 1_000_000))
        print(f"make_keys: 1,000,000 short texts in {time.perf_counter() - s:.2f} s")
        del keys

        n = args.n_keys
        built = build(
            location, "Keys", n, args.dim, args.key_batch or max(1, n // 10), args.threshold
        )
        print(
            f"\n[1] build {n:,} x {args.dim} entries: {built['total_s']:.1f} s "
            f"(writes {built['write_s']:.1f} s, final compaction {built['final_compact_s']:.1f} s) "
            f"-> {built['files']} file(s), {built['mb']:.0f} MB"
        )
        r = run_phase("lookup", location, "Keys", n, args.repeat)
        print(
            f"    contains() of {n:,} keys, cold (list + read key column): {r['contains_cold_s']:.2f} s"
        )
        print(
            f"    contains() warm: {r['contains_warm_s']:.2f} s; lookup(columns=[]) warm: {r['lookup_keys_only_warm_s']:.2f} s"
        )
        print(f"    peak RSS after key lookups: {r['rss_after_keys_mb']:.0f} MB")
        print(
            f"    lookup(columns=['embedding']) + matrix, warm: {r['lookup_vectors_warm_s']:.2f} s; "
            f"peak RSS {r['peak_rss_mb']:.0f} MB (vectors alone: {n * args.dim * 4 / 1e6:.0f} MB)"
        )

        m = args.n_embed
        built = build(location, "Bge_M3_FP16", m, args.embed_dim, args.embed_batch, args.threshold)
        print(
            f"\n[2] write {m:,} x {args.embed_dim} in batches of {args.embed_batch}: {built['total_s']:.1f} s "
            f"-> {built['files']} file(s), {built['mb']:.0f} MB"
        )
        rerun = run_phase("rerun", location, "Bge_M3_FP16", m, args.repeat)
        plain = run_phase("read_parquet", location, "Bge_M3_FP16", m, args.repeat)
        print(
            f"    cached rerun (hash texts + lookup + matrix): {rerun['rerun_s']:.2f} s "
            f"(hashing {rerun['keys_s']:.2f} s), peak RSS {rerun['peak_rss_mb']:.0f} MB"
        )
        print(
            f"    pd.read_parquet(folder): {plain['read_parquet_s']:.2f} s; + np.stack to a matrix: "
            f"{plain['read_parquet_stack_s']:.2f} s, peak RSS {plain['peak_rss_mb']:.0f} MB"
        )
        print(
            f"    ratio rerun / read_parquet: {rerun['rerun_s'] / plain['read_parquet_s']:.2f}x "
            f"(/ read_parquet+stack: {rerun['rerun_s'] / plain['read_parquet_stack_s']:.2f}x; goal <= 2x)"
        )
    finally:
        if not args.keep and not args.dir:
            shutil.rmtree(location, ignore_errors=True)


def scenario_write(args: argparse.Namespace, location: str) -> None:
    import deapi_ds

    print(
        f"cache folder: {location}  (deapi_ds from {Path(deapi_ds.__file__).parent.parent}, "
        f"pyarrow {pa.__version__}, {os.cpu_count()} cores)"
    )
    runs = []
    for r in range(args.repeat):
        shutil.rmtree(os.path.join(location, TASK), ignore_errors=True)
        runs.append(run_phase("write", location, f"W{r}", args.write_rows, 1, args.code))
    best = min(runs, key=lambda r: r["write_s"])
    rate = best["rows"] / best["write_s"]
    net = args.net_rate
    print(
        f"write(): {best['rows']:,} rows in batches of 2,048 x 1,024 float32: {rate:,.0f} rows/s "
        f"(best of {args.repeat}; median batch {best['median_batch_ms']:.0f} ms, slowest "
        f"{best['max_batch_ms']:.0f} ms)"
    )
    print(
        f"    one batch: parquet encoding {best['encode_ms']:.0f} ms, fsync of 8 MB "
        f"{best['fsync_ms']:.0f} ms; make_keys {best['keys_s'] / best['rows'] * 2048 * 1000:.1f} ms"
    )
    print(
        f"    ratio to a run without cache at {net:,.0f} rows/s: {rate / (rate + net):.2f}x with "
        f"writes in line with the network, {min(1.0, rate / net):.2f}x with writes overlapping it"
    )


if __name__ == "__main__":
    main()
