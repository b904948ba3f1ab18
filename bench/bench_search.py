"""Benchmarks of deapi_ds.search: dense vs faiss, hybrid vs dense, chunking, near-duplicates,
and the quality of dense / lexical / hybrid search on data/'s labelled queries.

    python bench/bench_search.py dense --n 1000000   # top-k vs faiss IndexFlatIP (issue 5)
    python bench/bench_search.py hybrid              # 100 queries x 1,000,000 passages (issue 19)
    python bench/bench_search.py chunk               # MB of text per second, one core
    python bench/bench_search.py duplicates          # 200,000 x 1,024 near-duplicates
    python bench/bench_search.py quality             # recall@10 / nDCG@10 on data/
    python bench/bench_search.py all                 # the four issue-19 figures, default sizes

``dense``: 100 queries over N x 384 float32 vectors, k=10 (the figures of issue 5: within
1.5x of faiss at N=1,000,000). faiss is optional (``pip install faiss-cpu``; it is not a
dependency of deapi_ds); without it only deapi_ds is timed. ``--threads 1`` gives steadier
figures on a busy machine. With no sub-command, ``dense`` runs (the old command line).

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


def dense_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="bench_search.py dense", description=__doc__.splitlines()[0]
    )
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


# --------------------------------------------------------------------------- issue 19


def synthetic_passages(
    n: int, seed: int = 0, vocab_size: int = 50_000
) -> tuple[list[str], list[str]]:
    """n passages of 20-60 Zipf-distributed words (s=1.1), and the vocabulary (by rank)."""
    rng = np.random.default_rng(seed)
    vocab = [f"w{i}" for i in range(vocab_size)]
    ranks = np.arange(1, vocab_size + 1)
    p = ranks**-1.1
    p /= p.sum()
    lengths = rng.integers(20, 61, n)
    ids = rng.choice(vocab_size, size=int(lengths.sum()), p=p)
    words = np.asarray(vocab, dtype=object)[ids]
    out, pos = [], 0
    for length in lengths.tolist():
        out.append(" ".join(words[pos : pos + length]))
        pos += length
    return out, vocab


def hybrid_main(argv: list[str]) -> int:
    """Hybrid (dense + BM25, fused) vs dense alone through SearchIndex.search, text queries."""
    parser = argparse.ArgumentParser(prog="bench_search.py hybrid")
    parser.add_argument("--n", type=int, default=1_000_000, help="passages (default 1,000,000)")
    parser.add_argument("--d", type=int, default=384)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    import pandas as pd

    t0 = time.perf_counter()
    texts, vocab = synthetic_passages(args.n)
    corpus = make_unit_rows(args.n, args.d, 0)
    rng = np.random.default_rng(1)
    # queries: 2-5 words, from frequent (rank 10) to rare (rank 20,000) words
    q_texts = [
        " ".join(vocab[int(r)] for r in rng.integers(10, 20_000, rng.integers(2, 6)))
        for _ in range(args.queries)
    ]
    q_vecs = dict(zip(q_texts, make_unit_rows(args.queries, args.d, 2), strict=True))

    def embed(batch: list[str]) -> np.ndarray:
        return np.stack([q_vecs[t] for t in batch])

    gen = time.perf_counter() - t0
    index = SearchIndex(pd.DataFrame({"text": texts}), corpus, embed=embed, text_column="text")
    t0 = time.perf_counter()
    lexical = index.lexical
    build = time.perf_counter() - t0
    print(
        f"hybrid benchmark: {args.queries} text queries over {args.n:,} passages "
        f"(synthetic Zipf text, 20-60 words) x {args.d} float32, k={args.k}; cpus={os.cpu_count()}"
    )
    print(f"data generated in {gen:.1f} s; {lexical!r} built in {build:.1f} s")
    index.search(q_texts[:2], k=args.k)  # warm up (and fill the query-vector cache)
    modes: dict[str, dict[str, Any]] = {
        "dense": {"mode": "dense"},
        "lexical": {"mode": "lexical"},
        "hybrid rrf": {"mode": "hybrid"},
        "hybrid weighted": {"mode": "hybrid", "fusion": "weighted"},
    }
    times: dict[str, list[float]] = {m: [] for m in modes}
    for _ in range(args.repeat):
        for name, options in modes.items():
            t0 = time.perf_counter()
            index.search(q_texts, k=args.k, **options)
            times[name].append(time.perf_counter() - t0)
    dense = min(times["dense"])
    print(f"load average: {os.getloadavg()[0]:.1f}\n")
    print(f"{'':16}  {'best s':>7}  {'median s':>8}  {'vs dense':>8}")
    for name, ts in times.items():
        print(f"{name:16}  {min(ts):7.3f}  {float(np.median(ts)):8.3f}  {min(ts) / dense:7.2f}x")
    ratio = min(times["hybrid rrf"]) / dense
    print(
        f"\nhybrid (rrf) / dense = {ratio:.2f} ({'meets' if ratio <= 2 else 'misses'} the 2x goal "
        "of issue 19)"
    )
    return 0


def long_documents(total_mb: float, seed: int = 0) -> list[str]:
    """Documents of ~20 KB: sentences of 5-25 words, a paragraph break every ~10 sentences."""
    rng = np.random.default_rng(seed)
    words = np.array(
        "the of and a to in is was for on that with as by at from market rocket bread river "
        "mountain keyboard science orbit recipe concert doctor travel budget season".split()
    )
    docs, size = [], 0
    while size < total_mb * 1e6:
        parts = []
        for _ in range(160):
            sentence = " ".join(rng.choice(words, rng.integers(5, 26)))
            parts.append(sentence.capitalize() + rng.choice([".", ".", ".", "?", "!"]))
            if rng.random() < 0.1:
                parts.append("\n\n")
        doc = " ".join(parts)
        docs.append(doc)
        size += len(doc)
    return docs


def chunk_main(argv: list[str]) -> int:
    """MB of text per second of deapi_ds.search.chunk (one core: numpy, no threads)."""
    parser = argparse.ArgumentParser(prog="bench_search.py chunk")
    parser.add_argument("--mb", type=float, default=20.0, help="MB of text (default 20)")
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    from deapi_ds.search import chunk

    docs = long_documents(args.mb)
    short = [s for d in docs[: max(1, len(docs) // 2)] for s in d.split("\n\n")]
    mb = sum(map(len, docs)) / 1e6
    mb_short = sum(map(len, short)) / 1e6
    print(
        f"chunk benchmark: {mb:.1f} MB in {len(docs):,} documents of ~{mb * 1e6 / len(docs) / 1000:.0f} KB, "
        f"and {mb_short:.1f} MB in {len(short):,} paragraphs; max_tokens={args.max_tokens}"
    )
    print(f"{'':36}  {'passages':>9}  {'CPU s':>6}  {'wall s':>6}  {'MB/s (CPU)':>10}")
    for label, data, overlap in (
        ("long documents", docs, 0),
        ("long documents, overlap=32", docs, 32),
        ("paragraphs (~0.8 KB each)", short, 0),
    ):
        size = sum(map(len, data)) / 1e6
        best_cpu, best_wall = float("inf"), float("inf")
        for _ in range(args.repeat):
            c0, w0 = time.process_time(), time.perf_counter()
            out = chunk(data, max_tokens=args.max_tokens, overlap=overlap)
            best_cpu = min(best_cpu, time.process_time() - c0)
            best_wall = min(best_wall, time.perf_counter() - w0)
        print(
            f"{label:36}  {len(out):9,}  {best_cpu:6.2f}  {best_wall:6.2f}  {size / best_cpu:10.1f}"
        )
    print(f"load average: {os.getloadavg()[0]:.1f} (CPU time is what one core spent)")
    return 0


def duplicates_main(argv: list[str]) -> int:
    """near_duplicates over N x D unit vectors with planted near-duplicate pairs."""
    parser = argparse.ArgumentParser(prog="bench_search.py duplicates")
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--d", type=int, default=1024)
    parser.add_argument("--pairs", type=int, default=2000, help="planted near-duplicate pairs")
    parser.add_argument("--threshold", type=float, default=0.95)
    parser.add_argument("--exact-sample", type=int, default=20_000, help="rows timed exactly")
    args = parser.parse_args(argv)
    from deapi_ds.search import near_duplicates

    rng = np.random.default_rng(5)
    x = make_unit_rows(args.n, args.d, 4)
    src = rng.choice(args.n // 2, args.pairs, replace=False)
    dst = args.n // 2 + rng.choice(args.n - args.n // 2, args.pairs, replace=False)
    noise = rng.uniform(0.0, 0.35, args.pairs).astype(np.float32)[:, None] / np.sqrt(args.d)
    x[dst] = x[src] + noise * rng.standard_normal((args.pairs, args.d), dtype=np.float32)
    x[dst] /= np.linalg.norm(x[dst], axis=1, keepdims=True)
    true_cos = np.einsum("ij,ij->i", x[src], x[dst])
    truth = {
        (int(min(a, b)), int(max(a, b)))
        for a, b, c in zip(src, dst, true_cos, strict=True)
        if c >= args.threshold
    }
    base = rss_bytes()
    can_reset = reset_peak()
    print(
        f"near-duplicates benchmark: {args.n:,} x {args.d} float32 ({x.nbytes / 2**20:.0f} MiB), "
        f"{args.pairs:,} planted pairs ({len(truth):,} at cosine >= {args.threshold}); "
        f"cpus={os.cpu_count()}"
    )
    t0 = time.perf_counter()
    found = near_duplicates(x, threshold=args.threshold)
    took = time.perf_counter() - t0
    peak = rss_bytes("VmHWM") if can_reset else float("nan")
    pairs = set(zip(found["a"].tolist(), found["b"].tolist(), strict=True))
    recall = len(pairs & truth) / max(1, len(truth))
    print(
        f"near_duplicates(method='auto' -> lsh): {took:.1f} s, {len(found):,} pairs, recall of "
        f"the planted pairs {recall:.4f}, other pairs {len(pairs - truth)}"
    )
    extra = (peak - base) / x.nbytes
    print(
        f"peak RSS over the vectors: +{(peak - base) / 2**20:.0f} MiB = {extra:.1%} of the vectors "
        f"({'meets' if extra <= 0.25 else 'misses'} the +25% goal); "
        f"{'meets' if took < 60 else 'misses'} the 60 s goal"
    )
    m = args.exact_sample
    t0 = time.perf_counter()
    near_duplicates(x[:m], threshold=args.threshold, method="exact")
    exact = time.perf_counter() - t0
    print(
        f"exact method on {m:,} rows: {exact:.1f} s; all {args.n:,} rows would take "
        f"~{exact * (args.n / m) ** 2:.0f} s (n² x d)"
    )
    print(f"load average: {os.getloadavg()[0]:.1f}")
    return 0


def quality_main(argv: list[str]) -> int:
    """recall@10 / nDCG@10 of dense, lexical and hybrid search on data/ (the emulator)."""
    parser = argparse.ArgumentParser(prog="bench_search.py quality")
    parser.parse_args(argv)
    import tempfile

    import pandas as pd

    import deapi_ds
    from deapi_ds.search import evaluate

    root = Path(__file__).resolve().parents[1] / "data"
    deapi_ds.use_emulator()
    deapi_ds.set_config(cache_dir=tempfile.mkdtemp(prefix="bench_search_"))
    corpus = pd.read_csv(root / "corpus.csv", dtype={"topic": "string", "text": "string"})
    queries = pd.read_csv(root / "queries.csv", dtype="string")
    index = deapi_ds.embed(corpus, "text", progress=False).search_index(
        corpus.set_index("id"), text_column="text"
    )
    labels = queries.assign(relevant=queries["relevant_ids"].str.split()).explode("relevant")
    ev = evaluate(
        index,
        labels[["query", "relevant"]],
        k=[1, 10],
        configs={
            "dense": {"mode": "dense"},
            "lexical (BM25)": {"mode": "lexical"},
            "hybrid rrf": {"mode": "hybrid"},
            "hybrid weighted 0.5": {"mode": "hybrid", "fusion": "weighted"},
        },
    )
    print(
        f"quality on data/: {len(corpus):,} documents, {len(queries)} labelled queries "
        "(12-13 relevant each), emulator embeddings (lexical hashes)"
    )
    print(ev.table[["recall@10", "ndcg@10", "mrr@10", "ms_per_query"]].round(3).to_string())
    return 0


COMMANDS = {
    "hybrid": hybrid_main,
    "chunk": chunk_main,
    "duplicates": duplicates_main,
    "quality": quality_main,
}


def all_main(argv: list[str]) -> int:
    for name in ("quality", "chunk", "hybrid", "duplicates"):
        print(f"\n===== {name}")
        COMMANDS[name]([])
    return 0


COMMANDS["all"] = all_main


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv.pop(0) if argv and argv[0] in {"dense", *COMMANDS} else "dense"
    if command == "dense":
        return dense_main(argv)
    return COMMANDS[command](argv)


if __name__ == "__main__":
    raise SystemExit(main())
