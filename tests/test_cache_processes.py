"""Processes sharing one cache folder: live writers' temp files (15.11) and claims (15.12)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from deapi_ds._cache import (
    CacheWarning,
    NullCache,
    ResultCache,
    embedding_array,
    embedding_matrix,
    make_keys,
)

EMB, BGE = "embeddings", "Bge_M3_FP16"
ROOT = Path(__file__).parent.parent


def _child(code: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )


def _kill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)


def _table(keys: list[str], value: float) -> pa.Table:
    return pa.table(
        {"key": keys, "embedding": embedding_array(np.full((len(keys), 8), value, np.float32))}
    )


# ------------------------------------------------------------------------------------------
# 15.11: clear() and compaction never touch a live writer's temporary file
# ------------------------------------------------------------------------------------------

_PAUSED_WRITER = """
import os, sys, numpy as np, pyarrow as pa
from deapi_ds._cache import ResultCache, make_keys, embedding_array
from deapi_ds._cache._codec import write_parquet, _prepare
cache = ResultCache(sys.argv[1])
keys = make_keys("embeddings", "m", {}, [f"slow {i}" for i in range(100)])
table = _prepare(pa.table({"key": keys, "embedding": embedding_array(np.ones((100, 8), np.float32))}), "m")
with cache._store.atomic_write(cache._ns_path("embeddings", "m")) as tmp:
    with open(tmp, "wb") as f:
        f.write(b"PAR1 half-written")
    print(tmp, flush=True)
    sys.stdin.readline()  # paused mid-write
    write_parquet(table, tmp)
print("done", flush=True)
"""


def _seed(folder: Path) -> None:
    cache = ResultCache(folder)
    for b in range(3):
        keys = make_keys(EMB, "m", {}, [f"seed {b} {i}" for i in range(5)])
        cache.write(EMB, "m", _table(keys, b))


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_clear_and_compact_remove_only_dead_writers_temp_files(tmp_path):
    _seed(tmp_path)
    live, dead = _child(_PAUSED_WRITER, str(tmp_path)), _child(_PAUSED_WRITER, str(tmp_path))
    try:
        live_tmp = Path(live.stdout.readline().strip())
        dead_tmp = Path(dead.stdout.readline().strip())
        _kill(dead)  # kill -9 mid-write
        assert live_tmp.name.startswith(".tmp-") and live_tmp.exists() and dead_tmp.exists()
        other = ResultCache(tmp_path, compact_threshold=2)
        other.compact()  # compaction sweeps the dead writer's file ...
        assert not dead_tmp.exists() and live_tmp.exists()
        # ... and clear() too (a writer whose owner lock is free is dead, like one never seen)
        ns = live_tmp.parent
        orphans = [ns / f".tmp-{pid}x{'a' * 12}-{'0' * 32}.parquet" for pid in (1, 2)]
        for orphan in orphans:
            orphan.write_bytes(b"PAR1 orphan")
        (tmp_path / ".deapi_ds" / "owners" / f"2x{'a' * 12}.lock").write_text("")
        assert other.clear() == 15
        assert live_tmp.exists() and not any(o.exists() for o in orphans)
        live.stdin.write("\n")  # the live writer finishes its batch as if nothing happened
        live.stdin.flush()
        out, err = live.communicate(timeout=60)
        assert live.returncode == 0, err
        assert out.strip() == "done"
    finally:
        _kill(live)
        _kill(dead)
    keys = make_keys(EMB, "m", {}, [f"slow {i}" for i in range(100)])
    assert ResultCache(tmp_path).contains(EMB, "m", keys).all()  # its batch landed whole
    owners = list((tmp_path / ".deapi_ds" / "owners").glob("*.lock"))
    assert len(owners) <= 2  # dead writers' owner files are swept (ours may remain)


_LOOP_WRITER = """
import sys, numpy as np, pyarrow as pa
from deapi_ds._cache import ResultCache, make_keys, embedding_array
cache = ResultCache(sys.argv[1], compact_threshold=3)
for b in range(40):
    keys = make_keys("embeddings", "m", {}, [f"loop {b} {i}" for i in range(50)])
    cache.write("embeddings", "m", pa.table({"key": keys, "embedding": embedding_array(np.full((50, 64), b, np.float32))}))
print("done", flush=True)
"""


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_clear_in_a_loop_never_crashes_a_concurrent_writer(tmp_path):
    writer = _child(_LOOP_WRITER, str(tmp_path))
    cache = ResultCache(tmp_path)
    try:
        while writer.poll() is None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", CacheWarning)  # files vanish under compaction
                cache.clear()
            time.sleep(0.002)
        out, err = writer.communicate(timeout=60)
    finally:
        _kill(writer)
    assert writer.returncode == 0, err
    assert out.strip() == "done"


# ------------------------------------------------------------------------------------------
# 15.12: claims
# ------------------------------------------------------------------------------------------

_CLAIMER = """
import sys, time, numpy as np, pyarrow as pa
from deapi_ds._cache import ResultCache, make_keys, embedding_array
cache = ResultCache(sys.argv[1])
keys = make_keys("embeddings", "Bge_M3_FP16", {}, [f"row {i}" for i in range(int(sys.argv[2]), int(sys.argv[3]))])
claim = cache.claim("embeddings", "Bge_M3_FP16", keys)
print(int(claim.mine.sum()), flush=True)
sys.stdin.readline()  # "computing" until the test says so
if sys.argv[4] == "write":
    vals = np.arange(len(keys) * 8, dtype=np.float32).reshape(len(keys), 8)
    cache.write("embeddings", "Bge_M3_FP16", pa.table({"key": keys, "embedding": embedding_array(vals)}))
claim.release()
print("released", flush=True)
sys.stdin.readline()
"""


def _rows(lo: int, hi: int) -> list[str]:
    return make_keys(EMB, BGE, {}, [f"row {i}" for i in range(lo, hi)])


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_second_process_waits_for_rows_in_flight_and_reads_them(tmp_path):
    first = _child(_CLAIMER, str(tmp_path), "0", "100", "write")
    try:
        assert first.stdout.readline().strip() == "100"  # it holds rows 0-99
        cache = ResultCache(tmp_path)
        keys = _rows(50, 150)
        claim = cache.claim(EMB, BGE, keys)
        assert claim.others.tolist() == [True] * 50 + [False] * 50  # 50-99: in flight there
        assert claim.mine.tolist() == [False] * 50 + [True] * 50

        t0 = time.monotonic()
        held = cache.wait_released(EMB, BGE, keys, timeout=0.3)
        assert time.monotonic() - t0 >= 0.25 and held.tolist() == claim.others.tolist()

        def answer() -> None:
            time.sleep(0.5)
            first.stdin.write("\n")
            first.stdin.flush()

        import threading

        threading.Thread(target=answer, daemon=True).start()
        t0 = time.monotonic()
        held = cache.wait_released(EMB, BGE, np.asarray(keys)[claim.others].tolist(), timeout=30)
        assert not held.any() and time.monotonic() - t0 >= 0.4  # it really waited
        assert first.stdout.readline().strip() == "released"
        # the waited-for rows are read from the cache, not sent again
        got = cache.lookup(EMB, BGE, np.asarray(keys)[claim.others].tolist())
        assert got.num_rows == 50
        np.testing.assert_array_equal(
            embedding_matrix(got["embedding"]),
            np.arange(100 * 8, dtype=np.float32).reshape(100, 8)[50:],
        )
        claim.release()
    finally:
        _kill(first)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_claim_dies_with_its_process(tmp_path):
    holder = _child(_CLAIMER, str(tmp_path), "0", "10", "none")
    try:
        assert holder.stdout.readline().strip() == "10"
        cache = ResultCache(tmp_path)
        assert cache.claim(EMB, BGE, _rows(0, 10)).others.all()
    finally:
        _kill(holder)  # kill -9: never released
    claims = tmp_path / ".deapi_ds" / "ns" / EMB / BGE / "claims"
    assert len(list(claims.glob("*.claim"))) == 1  # its file is still there ...
    assert not cache.wait_released(EMB, BGE, _rows(0, 10), timeout=5).any()  # ... but void
    with cache.claim(EMB, BGE, _rows(0, 10)) as claim:
        assert claim.mine.all()
        assert len(list(claims.glob("*.claim"))) == 1  # the dead one was removed, ours is there
    assert not list(claims.glob("*.claim"))  # released on leaving the block


def test_claims_within_one_process_and_release(tmp_path):
    cache = ResultCache(tmp_path)
    keys = _rows(0, 20)
    a = cache.claim(EMB, BGE, keys)
    assert a.mine.all() and not a.others.any()
    assert cache.claim(EMB, BGE, keys).mine.all()  # this process's own claims never block it
    assert not cache.wait_released(EMB, BGE, keys, timeout=0).any()
    a.release()
    a.release()  # idempotent
    assert repr(a) == "Claim(mine=20, others=0)"
    assert cache.claim(EMB, BGE, []).mine.shape == (0,)


def test_no_claims_without_a_local_cache():
    null = NullCache().claim(EMB, BGE, _rows(0, 3))
    assert null.mine.tolist() == [True] * 3 and not null.others.any()
    assert NullCache().wait_released(EMB, BGE, _rows(0, 3), timeout=None).tolist() == [False] * 3
    remote = ResultCache("memory://claims-test")
    assert remote.claim(EMB, BGE, _rows(0, 3)).mine.all()
    assert not remote.wait_released(EMB, BGE, _rows(0, 3), timeout=1).any()


_HOLDER = """
import sys
from deapi_ds._cache import ResultCache, make_keys
cache = ResultCache(sys.argv[1])
claims = [
    cache.claim("embeddings", "Bge_M3_FP16", make_keys("embeddings", "Bge_M3_FP16", {}, [f"held {j} {i}" for i in range(2048)]))
    for j in range(3)
]
print(sum(int(c.mine.sum()) for c in claims), flush=True)
sys.stdin.readline()
"""


@pytest.mark.slow
def test_a_claim_per_batch_is_cheap(tmp_path):
    """A 2,048-key claim among a few live claim files costs milliseconds (loose bound)."""
    holder = _child(_HOLDER, str(tmp_path))
    try:
        assert holder.stdout.readline().strip() == str(3 * 2048)
        cache = ResultCache(tmp_path)
        batches = [_rows(b * 2048, (b + 1) * 2048) for b in range(20)]
        cache.claim(EMB, BGE, batches[0]).release()  # warm: claim files read once
        t0 = time.perf_counter()
        for keys in batches[1:]:
            claim = cache.claim(EMB, BGE, keys)
            assert claim.mine.all()
            claim.release()
        per_claim = (time.perf_counter() - t0) / (len(batches) - 1)
        assert per_claim < 0.05, f"{per_claim * 1000:.1f} ms per claim"
        held = [f"held {j} {i}" for j in (0, 2) for i in range(0, 2048, 512)]
        assert cache.claim(EMB, BGE, make_keys(EMB, BGE, {}, held)).others.all()
    finally:
        _kill(holder)


def test_a_folder_that_cannot_hold_claims_warns_and_claims_everything(tmp_path, monkeypatch):
    from deapi_ds._cache import _claims

    def refuse(*a, **k):
        raise PermissionError("read-only file system")

    cache = ResultCache(tmp_path)
    cache.claim(EMB, "other", _rows(0, 1)).release()  # this process's owner file exists
    monkeypatch.setattr(_claims.os, "makedirs", refuse)
    with pytest.warns(CacheWarning, match="read-only file system"):
        claim = cache.claim(EMB, BGE, _rows(0, 4))
    assert claim.mine.all()
    claim.release()
