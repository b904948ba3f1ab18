"""A 2-million-row embed against deAPI's Basic daily quota (500 embeddings requests per day).

    python bench/bench_quota.py [--rows 2000000] [--tier basic]

Estimates (nothing is sent) the requests ``deapi_ds.embed`` needs for ``rows`` short texts
(deAPI packs at most 2048 inputs / 300,000 tokens per request) and sets them against the
daily quota of the tier, as the estimate will show it: 2,000,000 rows -> 977 requests -> 2 days
on Basic (500 per day), 1 day on Premium (no daily limit).
"""

from __future__ import annotations

import argparse
import tempfile
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--tier", default="basic", choices=["basic", "premium"])
    args = parser.parse_args()

    import deapi_ds
    from deapi_ds._quota import quota_plan

    deapi_ds.set_config(
        api_key="dpn-sk-0|bench-not-a-key",
        base_url="https://oai.deapi.ai/v1",
        tier=args.tier,
        cache_dir=tempfile.mkdtemp(prefix="deapi_ds_bench_quota_"),
        progress=False,
    )
    texts = [f"row {i} short text about topic {i % 17}" for i in range(args.rows)]
    start = time.perf_counter()
    est = deapi_ds.estimate(texts, cache=None)
    seconds = time.perf_counter() - start
    plan = quota_plan("embeddings", est.requests)
    print(f"estimate of {args.rows:,} rows: {est.requests:,} requests ({seconds:.1f} s to plan)")
    print(plan)


if __name__ == "__main__":
    main()
