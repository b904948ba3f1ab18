"""Cache integrity (issue 15.8): a damaged cache file is skipped with a warning, never served."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from deapi_ds._cache import (
    CacheWarning,
    ResultCache,
    embedding_array,
    embedding_matrix,
    make_keys,
)

EMB, BGE = "embeddings", "Bge_M3_FP16"


def _write(cache: ResultCache, prefix: str, n: int, dim: int) -> tuple[list[str], np.ndarray]:
    keys = make_keys(EMB, BGE, {}, [f"{prefix} {i}" for i in range(n)])
    m = np.random.default_rng(len(prefix)).standard_normal((n, dim)).astype(np.float32)
    cache.write(EMB, BGE, pa.table({"key": keys, "embedding": embedding_array(m)}))
    return keys, m


def _newest_part(folder: Path) -> Path:
    return max(folder.rglob("part-*.parquet"), key=lambda p: p.stat().st_mtime_ns)


def _column_range(path: Path, name: str) -> tuple[int, int]:
    """Byte range of the data pages of column ``name`` in row group 0."""
    md = pq.read_metadata(path)
    for j in range(md.num_columns):
        col = md.row_group(0).column(j)
        if col.path_in_schema.split(".")[0] == name:
            start = col.dictionary_page_offset or col.data_page_offset
            return start, start + col.total_compressed_size
    raise AssertionError(name)


def _damage(path: Path, offset: int, zero_block: bool) -> None:
    data = bytearray(path.read_bytes())
    if zero_block:
        data[offset : offset + 4096] = bytes(len(data[offset : offset + 4096]))
    else:
        data[offset] ^= 0x10
    path.write_bytes(bytes(data))


def test_files_carry_page_checksums(tmp_path):
    cache = ResultCache(tmp_path)
    _write(cache, "crc", 10, 8)
    data = _newest_part(tmp_path).read_bytes()
    # a damaged page is caught by pyarrow itself when checksums are verified
    start, stop = _column_range(_newest_part(tmp_path), "embedding")
    bad = bytearray(data)
    bad[stop - 3] ^= 0x01
    with pytest.raises(OSError, match="(?i)crc|checksum"):
        pq.ParquetFile(pa.BufferReader(bytes(bad)), page_checksum_verification=True).read()


@pytest.mark.parametrize("zero_block", [False, True], ids=["flipped-bit", "zeroed-4k-block"])
@pytest.mark.parametrize("column", ["embedding", "key"])
def test_a_damaged_file_is_skipped_and_never_served(tmp_path, zero_block, column):
    cache = ResultCache(tmp_path)
    good_keys, good = _write(cache, "intact", 50, 32)
    bad_keys, _ = _write(cache, "damaged", 300, 256)  # ~300 kB of vectors
    target = _newest_part(tmp_path)
    start, stop = _column_range(target, column)
    offset = (start + stop) // 2 if not zero_block else max(start, (start + stop) // 2 - 2048)
    _damage(target, offset, zero_block)

    fresh = ResultCache(tmp_path)  # a later run: nothing known about the file yet
    with pytest.warns(CacheWarning, match=target.name):
        got = fresh.lookup(EMB, BGE, good_keys + bad_keys, columns=["embedding"])
    assert got["key"].to_pylist() == good_keys  # the damaged file's rows are misses
    np.testing.assert_array_equal(embedding_matrix(got["embedding"]), good)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheWarning)  # warned once per file, not per call
        assert not fresh.contains(EMB, BGE, bad_keys).any()


def test_a_damaged_file_is_skipped_by_a_process_that_indexed_it_before(tmp_path):
    cache = ResultCache(tmp_path)
    keys, m = _write(cache, "seen", 200, 64)
    assert cache.contains(EMB, BGE, keys).all()  # the key index of this process holds them
    target = _newest_part(tmp_path)
    start, stop = _column_range(target, "embedding")
    _damage(target, (start + stop) // 2, zero_block=False)
    with pytest.warns(CacheWarning, match=target.name):
        got = cache.lookup(EMB, BGE, keys)
    assert got.num_rows == 0
    # the recomputed rows are written again and served from the new file
    cache.write(EMB, BGE, pa.table({"key": keys, "embedding": embedding_array(m)}))
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheWarning)
        again = cache.lookup(EMB, BGE, keys)
    np.testing.assert_array_equal(embedding_matrix(again["embedding"]), m)


def test_compaction_never_copies_a_damaged_file(tmp_path):
    cache = ResultCache(tmp_path, compact_threshold=1000)
    k1, m1 = _write(cache, "one", 20, 16)
    k2, _ = _write(cache, "two", 20, 16)
    damaged = _newest_part(tmp_path)
    start, stop = _column_range(damaged, "embedding")
    _damage(damaged, (start + stop) // 2, zero_block=False)
    k3, m3 = _write(cache, "three", 20, 16)
    fresh = ResultCache(tmp_path)
    with pytest.warns(CacheWarning, match=damaged.name):
        fresh.compact()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CacheWarning)
        got = ResultCache(tmp_path).lookup(EMB, BGE, k1 + k2 + k3)
    assert got["key"].to_pylist() == k1 + k3
    np.testing.assert_array_equal(embedding_matrix(got["embedding"]), np.vstack([m1, m3]))
    assert damaged.exists()  # left for the user to inspect or clear(); it serves nothing


def test_embed_rerun_after_corruption_recomputes_the_same_vectors(tmp_path, emulator):
    import deapi_ds

    texts = [f"document {i}: the parcel arrived on time" for i in range(120)]
    folder = tmp_path / "c"
    with deapi_ds.config_context(max_concurrency=1):  # one batch at a time: a file per batch
        first = deapi_ds.embed(texts, cache=str(folder), max_inputs=40)
    assert set(first.status) == {"ok"}
    files = sorted(folder.rglob("part-*.parquet"))
    assert len(files) == 3
    start, stop = _column_range(files[1], "embedding")
    _damage(files[1], (start + stop) // 2, zero_block=True)
    from deapi_ds import _cache

    _cache._instances.clear()  # a new session: nothing of the file is known in memory

    with pytest.warns(CacheWarning, match=files[1].name):
        again = deapi_ds.embed(texts, cache=str(folder), max_inputs=40)
    assert (again.status == "cached").sum() == 80 and (again.status == "ok").sum() == 40
    fresh = deapi_ds.embed(texts, cache=None, max_inputs=40)
    np.testing.assert_array_equal(again.matrix, fresh.matrix)
    np.testing.assert_array_equal(again.matrix, first.matrix)


def test_a_damaged_footer_is_caught_before_pyarrow_reads_it(tmp_path):
    """Bits flipped across the parquet footer: never a crash, a wrong row or an exception.

    Some damaged footers abort the whole process inside pyarrow; the footer's CRC32 is in the
    file name (``part-<time>-<...c...><crc>.parquet``) and checked before pyarrow parses it.
    """
    import struct

    cache = ResultCache(tmp_path)
    keys, m = _write(cache, "footer", 8, 4)
    target = _newest_part(tmp_path)
    assert target.name[5 + 22 + 1 + 12] == "c"  # a checked name
    orig = target.read_bytes()
    length = struct.unpack("<I", orig[-8:-4])[0]
    for pos in range(len(orig) - 8 - length, len(orig), 2):
        data = bytearray(orig)
        data[pos] ^= 0x04
        target.write_bytes(bytes(data))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            got = ResultCache(tmp_path).lookup(EMB, BGE, keys)
        assert got.num_rows == 0, pos
        assert any(target.name in str(w.message) for w in caught), pos
    target.write_bytes(orig)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheWarning)
        got = ResultCache(tmp_path).lookup(EMB, BGE, keys)
    np.testing.assert_array_equal(embedding_matrix(got["embedding"]), m)
