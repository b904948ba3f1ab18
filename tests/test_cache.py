"""The parquet result cache (deapi_ds._cache / deapi_ds.cache): keys, storage, safety, concurrency.

Regenerate the format fixtures (only when CACHE_FORMAT_VERSION changes, into a new folder):
``python tests/test_cache.py tests/data/cache_vN``.
"""

from __future__ import annotations

import datetime as dt
import multiprocessing
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from deapi_ds import _cache
from deapi_ds._cache import (
    USE_DEFAULT,
    CacheWarning,
    NullCache,
    ResultCache,
    embedding_array,
    embedding_matrix,
    make_key,
    make_keys,
    params_json,
    resolve_cache,
)
from deapi_ds._exceptions import InvalidParameterError

DATA = Path(__file__).parent / "data" / "cache_v1"
EMB, BGE = "embeddings", "Bge_M3_FP16"
FAKE_KEY = "dpn-sk-4242|FAKE-Zq8sKkT0p-SecretValueXyZ"


def emb_table(keys, matrix, **extra):
    return pa.table({"key": keys, "embedding": embedding_array(matrix), **extra})


def parts(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("part-*.parquet"))


# ------------------------------------------------------------------------------------------
# keys
# ------------------------------------------------------------------------------------------


def test_key_shape_and_determinism():
    k = make_key(EMB, BGE, {"dimensions": 256}, "hello")
    assert re.fullmatch(r"[0-9a-f]{32}", k)
    assert k == make_key(EMB, BGE, {"dimensions": 256}, "hello")
    assert make_key(EMB, BGE, {}, "hello") == make_key(EMB, BGE, {}, b"hello")
    assert make_key(EMB, BGE, {}, "héllo") == make_key(EMB, BGE, {}, "héllo".encode())
    assert make_key(EMB, BGE, None, "x") == make_key(EMB, BGE, {}, "x")


def test_key_is_pinned():
    """Changing the key derivation silently invalidates every user's cache: bump the version."""
    assert make_key(EMB, BGE, {}, "hello") == "18a3897b41733e75bc8b7b8525ade454"


@pytest.mark.parametrize(
    "other",
    [
        ("transcription", BGE, {"dimensions": 256}, "hello"),  # task
        (EMB, "Bge_M3_FP32", {"dimensions": 256}, "hello"),  # model
        (EMB, BGE, {"dimensions": 512}, "hello"),  # a param's value
        (EMB, BGE, {"dimensions": "256"}, "hello"),  # a param's type
        (EMB, BGE, {"dimensions": 256, "user": "x"}, "hello"),  # an extra param
        (EMB, BGE, {}, "hello"),  # a missing param
        (EMB, BGE, {"dimensions": 256}, "hello "),  # content
        (EMB, BGE, {"dimensions": 256}, b"hello\x00"),  # content bytes
    ],
)
def test_key_changes_with_each_component(other):
    assert make_key(*other) != make_key(EMB, BGE, {"dimensions": 256}, "hello")


def test_key_changes_with_format_version(monkeypatch):
    before = make_key(EMB, BGE, {}, "hello")
    monkeypatch.setattr(_cache._keys, "CACHE_FORMAT_VERSION", 2)
    assert make_key(EMB, BGE, {}, "hello") != before


def test_key_parts_are_length_prefixed():
    assert make_key("ab", "c", {}, "x") != make_key("a", "bc", {}, "x")
    assert make_key(EMB, "m", {}, "ab") != make_key(EMB, "ma", {}, "b")


def test_key_params_canonical():
    a = make_key(EMB, BGE, {"a": 1, "b": [1, 2], "c": {"y": 1, "x": 2}}, "t")
    b = make_key(EMB, BGE, {"c": {"x": 2, "y": 1}, "b": [1, 2], "a": 1}, "t")
    assert a == b
    assert make_key(EMB, BGE, {"n": np.int64(3)}, "t") == make_key(EMB, BGE, {"n": 3}, "t")
    assert params_json({"b": 1, "a": "é"}) == '{"a":"é","b":1}'


@pytest.mark.parametrize(
    "params, content",
    [({"x": float("nan")}, "t"), ({"x": object()}, "t"), ("notamapping", "t"), ({}, 3)],
)
def test_key_rejects_bad_input(params, content):
    with pytest.raises(InvalidParameterError):
        make_key(EMB, BGE, params, content)


def test_key_rejects_empty_names():
    with pytest.raises(InvalidParameterError, match="task"):
        make_key("", BGE, {}, "x")
    with pytest.raises(InvalidParameterError, match="model"):
        make_key(EMB, None, {}, "x")


def test_make_keys_matches_make_key_and_is_fast():
    texts = [f"short text {i}" for i in range(200_000)]
    t0 = time.perf_counter()
    keys = make_keys(EMB, BGE, {"dimensions": 8}, texts)
    elapsed = time.perf_counter() - t0
    assert keys[::20_000] == [make_key(EMB, BGE, {"dimensions": 8}, t) for t in texts[::20_000]]
    assert len(set(keys)) == len(texts)
    assert elapsed < 4.0, f"make_keys took {elapsed:.2f}s for 200k texts"
    with pytest.raises(InvalidParameterError, match=r"contents\[1\]"):
        make_keys(EMB, BGE, {}, ["a", 2])


# ------------------------------------------------------------------------------------------
# embeddings <-> arrow
# ------------------------------------------------------------------------------------------


def test_embedding_array_and_matrix_zero_copy():
    m = np.arange(12, dtype=np.float32).reshape(4, 3)
    arr = embedding_array(m)
    assert pa.types.is_fixed_size_list(arr.type) and arr.type.list_size == 3
    assert arr.type.value_type == pa.float32() and not arr.type.value_field.nullable
    back = embedding_matrix(arr)
    assert np.shares_memory(back, m)
    assert back.flags.c_contiguous and back.dtype == np.float32
    np.testing.assert_array_equal(embedding_matrix(arr.slice(1, 2)), m[1:3])
    np.testing.assert_array_equal(embedding_matrix(pa.chunked_array([arr[:1], arr[1:]])), m)
    writable = embedding_matrix(arr, copy=True)
    writable[0, 0] = 99
    assert m[0, 0] == 0


def test_embedding_conversions():
    m64 = np.random.default_rng(0).standard_normal((3, 5))
    np.testing.assert_allclose(embedding_matrix(embedding_array(m64)), m64.astype(np.float32))
    series = pd.Series(list(m64.astype(np.float32)))
    np.testing.assert_allclose(embedding_matrix(series), m64.astype(np.float32))
    var = pa.array([[1.0, 2.0], [3.0, 4.0]], pa.list_(pa.float64()))
    np.testing.assert_array_equal(embedding_matrix(var), [[1, 2], [3, 4]])
    assert embedding_matrix(pa.chunked_array([], pa.list_(pa.float32(), 4))).shape == (0, 4)
    with pytest.raises(InvalidParameterError, match="different lengths"):
        embedding_matrix(pa.array([[1.0], [1.0, 2.0]]))
    with pytest.raises(InvalidParameterError, match="missing"):
        embedding_matrix(pa.array([[1.0, 2.0], None], pa.list_(pa.float32(), 2)))
    with pytest.raises(InvalidParameterError, match="2-D"):
        embedding_array(np.zeros(3, np.float32))


# ------------------------------------------------------------------------------------------
# write / lookup
# ------------------------------------------------------------------------------------------


def transcript_table(keys):
    seg = pa.struct([("start", pa.float64()), ("end", pa.float64()), ("text", pa.string())])
    return pa.table(
        {
            "key": keys,
            "text": ["hello world", "bonjour"],
            "language": ["en", "fr"],
            "duration": [2.5, 1.0],
            "segments": pa.array(
                [
                    [
                        {"start": 0.0, "end": 1.2, "text": "hello"},
                        {"start": 1.2, "end": 2.5, "text": "world"},
                    ],
                    [{"start": 0.0, "end": 1.0, "text": "bonjour"}],
                ],
                pa.list_(seg),
            ),
            "params": [params_json({"include_ts": True})] * 2,
            "seconds": pa.array([2.5, 1.0], pa.float64()),
        }
    )


def test_roundtrip_all_value_kinds(tmp_path):
    cache = ResultCache(tmp_path)
    ekeys = make_keys(EMB, BGE, {}, ["a", "b", "c"])
    m = np.random.default_rng(1).standard_normal((3, 8)).astype(np.float32)
    cache.write(EMB, BGE, emb_table(ekeys, m, tokens=pa.array([1, 2, 3], pa.int64())))
    tkeys = make_keys("transcription", "WhisperLargeV3", {}, [b"RIFF1", b"RIFF2"])
    cache.write("transcription", "WhisperLargeV3", transcript_table(tkeys))
    ikeys = make_keys("images", "Flux1schnell", {"size": "512x512"}, ["a cat"])
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
    cache.write("images", "Flux1schnell", pd.DataFrame({"key": ikeys, "image": [png]}))

    got = cache.lookup(EMB, BGE, ekeys)
    assert got.column_names == ["key", "embedding", "tokens", "model", "created"]
    assert got["key"].to_pylist() == ekeys
    np.testing.assert_array_equal(embedding_matrix(got["embedding"]), m)
    assert got["model"].to_pylist() == [BGE] * 3
    assert got.schema.field("created").type == pa.timestamp("us", tz="UTC")

    tr = cache.lookup(
        "transcription", "WhisperLargeV3", tkeys[::-1], columns=["segments", "language"]
    )
    assert tr.column_names == ["key", "segments", "language"]
    assert tr["language"].to_pylist() == ["fr", "en"]
    assert tr["segments"].to_pylist()[1][1] == {"start": 1.2, "end": 2.5, "text": "world"}

    img = cache.lookup("images", "Flux1schnell", ikeys, columns=["image"])
    assert img["image"].to_pylist() == [png]

    # pandas reads a namespace folder directly
    df = pd.read_parquet(tmp_path / "transcription" / "WhisperLargeV3")
    assert sorted(df["text"]) == ["bonjour", "hello world"]
    assert list(df["segments"].iloc[0][0].keys()) == ["start", "end", "text"]
    edf = pd.read_parquet(tmp_path / EMB / BGE)
    np.testing.assert_array_equal(np.stack(edf["embedding"].to_numpy()), m)

    md = pq.read_metadata(parts(tmp_path / EMB)[0]).row_group(0)
    codecs = {md.column(i).path_in_schema: md.column(i).compression for i in range(md.num_columns)}
    assert codecs["embedding.list.element"] == "UNCOMPRESSED"  # vectors: fast reads
    assert codecs["key"] == codecs["model"] == "ZSTD"


def test_vectors_with_nullable_items_mix_with_ours(tmp_path):
    cache = ResultCache(tmp_path)
    k = make_keys(EMB, BGE, {}, ["a", "b", "c"])
    nullable = pa.FixedSizeListArray.from_arrays(pa.array([1.0, 2.0], pa.float32()), 2)
    cache.write(EMB, BGE, pa.table({"key": k[:1], "embedding": nullable}))
    with_null = pa.array([[1.0, None]], pa.list_(pa.float32(), 2))  # kept as written
    cache.write(EMB, BGE, pa.table({"key": k[1:2], "embedding": with_null}))
    cache.write(EMB, BGE, emb_table(k[2:], np.array([[5.0, 6.0]], np.float32)))
    for _ in range(2):
        got = cache.lookup(EMB, BGE, [k[0], k[2]])
        np.testing.assert_array_equal(embedding_matrix(got["embedding"]), [[1, 2], [5, 6]])
        assert cache.lookup(EMB, BGE, k[1:2])["embedding"].to_pylist() == [[1.0, None]]
        cache.compact()
    assert len(parts(tmp_path)) == 1


def test_lookup_order_missing_and_duplicates(tmp_path):
    cache = ResultCache(tmp_path)
    keys = make_keys(EMB, BGE, {}, [str(i) for i in range(10)])
    m = np.arange(40, dtype=np.float32).reshape(10, 4)
    cache.write(EMB, BGE, emb_table(keys[:5], m[:5]))
    cache.write(EMB, BGE, emb_table(keys[5:], m[5:]))
    absent = make_key(EMB, BGE, {}, "absent")
    req = [keys[7], absent, keys[2], keys[7], keys[9]]
    mask = cache.contains(EMB, BGE, req)
    assert mask.tolist() == [True, False, True, True, True]
    got = cache.lookup(EMB, BGE, req, columns=["embedding"])
    assert got["key"].to_pylist() == [k for k, hit in zip(req, mask, strict=True) if hit]
    np.testing.assert_array_equal(embedding_matrix(got["embedding"])[:, 0], [28, 8, 28, 36])
    only_keys = cache.lookup(EMB, BGE, req, columns=[])
    assert only_keys.column_names == ["key"] and only_keys.num_rows == 4
    unknown = cache.lookup(EMB, BGE, req, columns=["embedding", "nope"])
    assert unknown["nope"].null_count == 4
    empty = cache.lookup(EMB, BGE, [absent], columns=["embedding"])
    assert empty.num_rows == 0 and empty.schema.field("embedding").type.list_size == 4
    assert cache.lookup(EMB, "other", keys).num_rows == 0
    assert cache.lookup(EMB, BGE, []).num_rows == 0


def test_keys_accepted_as_series_and_arrow(tmp_path):
    cache = ResultCache(tmp_path)
    keys = make_keys(EMB, BGE, {}, ["a", "b"])
    cache.write(EMB, BGE, emb_table(keys, np.ones((2, 2), np.float32)))
    for form in (
        pd.Series(keys),
        pd.Series(keys, dtype=object),
        np.array(keys),
        pa.array(keys),
        pa.chunked_array([keys[:1], keys[1:]], pa.large_string()),
    ):
        assert cache.contains(EMB, BGE, form).tolist() == [True, True]
        assert cache.lookup(EMB, BGE, form)["key"].to_pylist() == keys


@pytest.mark.parametrize("bad", [["abc"], ["G" * 32], [None], [b"0" * 32], ["é" * 32], "0" * 32])
def test_lookup_rejects_malformed_keys(tmp_path, bad):
    with pytest.raises(InvalidParameterError, match="key"):
        ResultCache(tmp_path).lookup(EMB, BGE, bad)


def test_newest_write_wins_and_batch_dedupes(tmp_path):
    cache = ResultCache(tmp_path)
    k = make_keys(EMB, BGE, {}, ["x", "y"])
    cache.write(
        EMB, BGE, emb_table([k[0], k[1], k[0]], np.array([[1.0], [2.0], [3.0]], np.float32))
    )
    assert embedding_matrix(cache.lookup(EMB, BGE, k)["embedding"]).ravel().tolist() == [3.0, 2.0]
    cache.write(EMB, BGE, emb_table([k[1]], np.array([[5.0]], np.float32)))
    assert embedding_matrix(cache.lookup(EMB, BGE, k)["embedding"]).ravel().tolist() == [3.0, 5.0]
    cache.compact()
    assert len(parts(tmp_path)) == 1
    assert pq.read_metadata(parts(tmp_path)[0]).num_rows == 2
    assert embedding_matrix(cache.lookup(EMB, BGE, k)["embedding"]).ravel().tolist() == [3.0, 5.0]


def test_write_validation(tmp_path):
    cache = ResultCache(tmp_path)
    k = make_key(EMB, BGE, {}, "x")
    with pytest.raises(InvalidParameterError, match="'key' column"):
        cache.write(EMB, BGE, pa.table({"embedding": [1]}))
    with pytest.raises(InvalidParameterError, match=r"key\[0\]"):
        cache.write(EMB, BGE, pa.table({"key": ["nothex"]}))
    with pytest.raises(InvalidParameterError, match="'model' column"):
        cache.write(EMB, BGE, pa.table({"key": [k], "model": ["other"]}))
    with pytest.raises(InvalidParameterError, match="parquet"):
        cache.write(EMB, BGE, pd.DataFrame({"key": [k], "obj": [object()]}))
    with pytest.raises(InvalidParameterError, match="Table or a pandas DataFrame"):
        cache.write(EMB, BGE, [{"key": k}])
    assert not list(tmp_path.rglob("*.parquet"))
    cache.write(EMB, BGE, pa.table({"key": pa.array([], pa.string())}))  # empty batch: no file
    assert not list(tmp_path.rglob("*.parquet"))


def test_created_column_kept_and_cast(tmp_path):
    cache = ResultCache(tmp_path)
    k = make_key(EMB, BGE, {}, "x")
    when = pd.Timestamp("2024-01-02 03:04:05.123456789")
    cache.write(EMB, BGE, pd.DataFrame({"key": [k], "created": [when]}))
    got = cache.lookup(EMB, BGE, [k])["created"].to_pylist()[0]
    assert got == dt.datetime(2024, 1, 2, 3, 4, 5, 123456, tzinfo=dt.UTC)


def test_model_names_with_slashes_are_encoded(tmp_path):
    cache = ResultCache(tmp_path)
    model = "BAAI/bge-m3:latest"
    k = make_keys(EMB, model, {}, ["a"])
    cache.write(EMB, model, emb_table(k, np.ones((1, 2), np.float32)))
    assert (tmp_path / EMB / "BAAI%2Fbge-m3%3Alatest").is_dir()
    assert cache.info()["model"].tolist() == [model]
    assert cache.contains(EMB, model, k).all()
    cache.write(EMB, "..", emb_table(k, np.ones((1, 2), np.float32)))
    assert (tmp_path / EMB / "%2E.").is_dir()


# ------------------------------------------------------------------------------------------
# index, partial reads, retries
# ------------------------------------------------------------------------------------------


def test_index_is_reused_until_listing_changes(tmp_path, monkeypatch):
    cache = ResultCache(tmp_path)
    other = ResultCache(tmp_path)  # stands for another process
    keys = make_keys(EMB, BGE, {}, [str(i) for i in range(6)])
    cache.write(EMB, BGE, emb_table(keys[:3], np.ones((3, 2), np.float32)))
    calls = []
    real = ResultCache._load

    def spy(self, path, size, with_keys):
        calls.append((Path(path).name, with_keys))
        return real(self, path, size, with_keys)

    monkeypatch.setattr(ResultCache, "_load", spy)
    cache.lookup(EMB, BGE, keys)
    n = len(calls)
    cache.lookup(EMB, BGE, keys)
    cache.contains(EMB, BGE, keys)
    assert len(calls) == n  # nothing re-read
    other.write(EMB, BGE, emb_table(keys[3:], np.ones((3, 2), np.float32)))
    assert cache.contains(EMB, BGE, keys).all()
    assert len(calls) == n + 1  # only the new file's keys were read


def test_lookup_reads_only_needed_row_groups_and_columns(tmp_path, monkeypatch):
    monkeypatch.setattr(_cache._codec, "_ROW_GROUP_BYTES", 2048)
    cache = ResultCache(tmp_path)
    keys = make_keys(EMB, BGE, {}, [str(i) for i in range(5000)])
    m = np.random.default_rng(2).standard_normal((5000, 16)).astype(np.float32)
    cache.write(EMB, BGE, emb_table(keys, m, blob=pa.array([b"x" * 50] * 5000)))
    assert pq.ParquetFile(parts(tmp_path)[0]).num_row_groups > 10
    seen = []
    real = pq.ParquetFile.read_row_group

    def spy(self, i, columns=None, **kw):
        seen.append((i, tuple(columns)))
        return real(self, i, columns=columns, **kw)

    monkeypatch.setattr(pq.ParquetFile, "read_row_group", spy)
    got = cache.lookup(EMB, BGE, [keys[4321]], columns=["embedding"])
    np.testing.assert_array_equal(embedding_matrix(got["embedding"]), m[4321:4322])
    # the key column comes along: every row served is checked against the key asked for
    assert len(seen) == 1 and seen[0][1] == ("key", "embedding")
    seen.clear()
    full = cache.lookup(EMB, BGE, keys[::-1], columns=["embedding"])
    np.testing.assert_array_equal(embedding_matrix(full["embedding"]), m[::-1])


def test_lookup_retries_when_files_vanish(tmp_path, monkeypatch):
    reader, writer = ResultCache(tmp_path), ResultCache(tmp_path, compact_threshold=100)
    keys = make_keys(EMB, BGE, {}, [str(i) for i in range(4)])
    for i in range(4):
        writer.write(EMB, BGE, emb_table(keys[i : i + 1], np.full((1, 2), i, np.float32)))
    stale = reader._index(EMB, BGE)
    writer.compact()  # deletes every file the stale index points to
    served = []
    real = ResultCache._index

    def once_stale(self, task, model):
        if not served:
            served.append(1)
            return stale
        return real(self, task, model)

    monkeypatch.setattr(ResultCache, "_index", once_stale)
    got = reader.lookup(EMB, BGE, keys)
    assert embedding_matrix(got["embedding"])[:, 0].tolist() == [0, 1, 2, 3]
    assert len(served) == 1


# ------------------------------------------------------------------------------------------
# compaction
# ------------------------------------------------------------------------------------------


def test_auto_compaction_keeps_every_row(tmp_path):
    cache = ResultCache(tmp_path, compact_threshold=4)
    keys = make_keys(EMB, BGE, {}, [str(i) for i in range(30)])
    for i in range(30):
        cache.write(EMB, BGE, emb_table(keys[i : i + 1], np.full((1, 3), i, np.float32)))
        assert len(parts(tmp_path)) <= 4
        assert cache.contains(EMB, BGE, keys[: i + 1]).all()
    got = cache.lookup(EMB, BGE, keys)
    assert embedding_matrix(got["embedding"])[:, 0].tolist() == list(range(30))
    assert cache.info()["rows"].tolist() == [30]
    assert not list(tmp_path.rglob(".tmp-*"))


def test_compaction_respects_newest_across_unmerged_big_file(tmp_path):
    """A (old, small), B (big, not merged), C (small): B's value for k must still win over A's."""
    cache = ResultCache(tmp_path, compact_threshold=100, compact_max_bytes=20_000)
    k, other, newer = make_keys(EMB, BGE, {}, ["k", "other", "newer"])
    cache.write(EMB, BGE, emb_table([k, other], np.array([[1.0], [7.0]], np.float32)))  # A
    filler = make_keys(EMB, BGE, {}, [f"f{i}" for i in range(2000)])
    big = np.zeros((2001, 1), np.float32)
    big[0] = 2.0
    cache.write(EMB, BGE, emb_table([k, *filler], big))  # B
    cache.write(EMB, BGE, emb_table([newer], np.array([[3.0]], np.float32)))  # C
    sizes = sorted(p.stat().st_size for p in parts(tmp_path))
    assert sizes[-1] >= 20_000 > sizes[1]
    cache.compact()
    assert len(parts(tmp_path)) == 2
    got = cache.lookup(EMB, BGE, [k, other, newer])
    assert embedding_matrix(got["embedding"]).ravel().tolist() == [2.0, 7.0, 3.0]
    fresh = ResultCache(tmp_path)
    assert embedding_matrix(fresh.lookup(EMB, BGE, [k])["embedding"]).ravel().tolist() == [2.0]


def test_compaction_with_a_concurrent_writer_keeps_the_newer_value(tmp_path, monkeypatch):
    """Files written after the compactor listed the folder must stay newer than the merged file."""
    cache = ResultCache(tmp_path, compact_threshold=100)
    k, x = make_keys(EMB, BGE, {}, ["k", "x"])
    cache.write(EMB, BGE, pd.DataFrame({"key": [k], "v": [1]}))
    cache.write(EMB, BGE, pd.DataFrame({"key": [x], "v": [1]}))
    stale = cache._index(EMB, BGE)
    ResultCache(tmp_path).write(EMB, BGE, pd.DataFrame({"key": [k], "v": [9]}))  # another process
    monkeypatch.setattr(ResultCache, "_index", lambda self, task, model: stale)
    cache.compact(EMB, BGE)
    monkeypatch.undo()
    assert len(parts(tmp_path)) == 2
    assert ResultCache(tmp_path).lookup(EMB, BGE, [k, x])["v"].to_pylist() == [9, 1]


def test_compaction_unifies_schemas(tmp_path):
    cache = ResultCache(tmp_path)
    k = make_keys(EMB, BGE, {}, ["a", "b", "c"])
    cache.write(EMB, BGE, pa.table({"key": k[:1], "text": ["x"]}))
    cache.write(
        EMB, BGE, pa.table({"key": k[1:2], "text": ["y"], "tokens": pa.array([3], pa.int64())})
    )
    cache.write(EMB, BGE, pa.table({"key": k[2:], "error": pa.nulls(1)}))  # null column dropped
    before = cache.lookup(EMB, BGE, k)
    cache.compact()
    assert len(parts(tmp_path)) == 1
    after = cache.lookup(EMB, BGE, k)
    assert after["text"].to_pylist() == before["text"].to_pylist() == ["x", "y", None]
    assert after["tokens"].to_pylist() == [None, 3, None]
    assert "error" not in after.column_names


# ------------------------------------------------------------------------------------------
# corrupt, truncated, foreign files
# ------------------------------------------------------------------------------------------


def test_truncated_file_is_skipped_with_warning(tmp_path):
    cache = ResultCache(tmp_path, compact_threshold=100)
    keys = make_keys(EMB, BGE, {}, ["a", "b", "c", "d"])
    cache.write(EMB, BGE, emb_table(keys[:2], np.ones((2, 2), np.float32)))
    cache.write(EMB, BGE, emb_table(keys[2:], np.ones((2, 2), np.float32)))
    victim = parts(tmp_path)[0]
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 2])
    fresh = ResultCache(tmp_path)
    with pytest.warns(CacheWarning, match=re.escape(victim.name)):
        mask = fresh.contains(EMB, BGE, keys)
    assert mask.tolist() == [False, False, True, True]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once per file, not on every lookup
        assert fresh.lookup(EMB, BGE, keys).num_rows == 2
    # the caller recomputes and writes again; compaction leaves the bad file alone
    fresh.write(EMB, BGE, emb_table(keys[:2], np.ones((2, 2), np.float32)))
    fresh.compact()
    assert fresh.contains(EMB, BGE, keys).all()
    assert victim.exists()
    assert fresh.clear() == 4  # clear() removes it too (its rows are unknown, so not counted)
    assert not parts(tmp_path)


@pytest.mark.parametrize("kind", ["garbage", "foreign", "newer", "badkeys"])
def test_corrupt_and_foreign_files_are_skipped(tmp_path, kind):
    ns = tmp_path / EMB / BGE
    cache = ResultCache(tmp_path)
    good = make_keys(EMB, BGE, {}, ["good"])
    cache.write(EMB, BGE, emb_table(good, np.ones((1, 2), np.float32)))
    bad = ns / "part-20200101T000000000000Z-0123456789abcdef0123456789abcdef.parquet"
    if kind == "garbage":
        bad.write_bytes(b"PAR1" + os.urandom(200) + b"PAR1")
    elif kind == "foreign":
        pq.write_table(pa.table({"key": good, "x": [1]}), bad)
    elif kind == "newer":
        t = pa.table({"key": good}).replace_schema_metadata({b"deapi_ds.cache_format": b"99"})
        pq.write_table(t, bad)
    else:
        t = pa.table({"key": ["k1"]}).replace_schema_metadata({b"deapi_ds.cache_format": b"1"})
        pq.write_table(t, bad)
    with pytest.warns(CacheWarning, match=re.escape(bad.name)):
        got = ResultCache(tmp_path).lookup(EMB, BGE, good)
    assert got.num_rows == 1


def test_non_part_parquet_in_namespace_warns(tmp_path):
    cache = ResultCache(tmp_path)
    good = make_keys(EMB, BGE, {}, ["good"])
    cache.write(EMB, BGE, emb_table(good, np.ones((1, 2), np.float32)))
    (tmp_path / EMB / BGE / "mine.parquet").write_bytes(b"not ours")
    (tmp_path / EMB / BGE / "notes.txt").write_text("ignored silently")
    with pytest.warns(CacheWarning, match="mine.parquet"):
        assert ResultCache(tmp_path).contains(EMB, BGE, good).all()


# ------------------------------------------------------------------------------------------
# safety
# ------------------------------------------------------------------------------------------


def test_no_key_material_on_disk(tmp_path, monkeypatch):
    """A caller that holds an API key writes, compacts and reads: no byte of the key lands on disk."""
    monkeypatch.setenv("DEAPI_API_KEY", FAKE_KEY)
    cache = ResultCache(tmp_path, compact_threshold=2)
    params = {"dimensions": 8}
    for b in range(4):
        texts = [f"row {b}-{i}" for i in range(5)]
        keys = make_keys(EMB, BGE, params, texts)
        cache.write(
            EMB,
            BGE,
            emb_table(
                keys,
                np.ones((5, 8), np.float32),
                params=[params_json(params)] * 5,
                tokens=pa.array([3] * 5, pa.int64()),
            ),
        )
    cache.write(
        "speech",
        "Kokoro",
        pa.table({"key": make_keys("speech", "Kokoro", {}, ["x"]), "audio": [b"RIFF"]}),
    )
    cache.compact()
    cache.info()
    repr(cache)
    blob = b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())
    assert blob  # the scan looked at something
    secret = FAKE_KEY.split("|")[1].encode()
    for needle in (FAKE_KEY.encode(), secret, b"dpn-sk-", b"Bearer", b"Authorization"):
        assert needle not in blob
    for p in tmp_path.rglob("*.parquet"):
        assert p.read_bytes()[:4] == b"PAR1"
        meta = pq.read_schema(p).metadata
        assert set(meta) == {b"deapi_ds.cache_format"}  # no pandas/pickled metadata


def test_ordinary_text_mentioning_bearer_is_cached(tmp_path):
    cache = ResultCache(tmp_path)
    text = "the Bearer token goes in the header, she said"
    cache.write(EMB, BGE, pa.table({"key": [make_key(EMB, BGE, {}, "t")], "text": [text]}))
    assert cache.lookup(EMB, BGE, [make_key(EMB, BGE, {}, "t")]).column("text").to_pylist() == [
        text
    ]


@pytest.mark.parametrize(
    "table",
    [
        pa.table({"params": ['{"api_key":"dpn-sk-1|abc"}']}),
        pa.table({"headers": ["Bearer abcdefghijklmnop0123"]}),
        pa.table({"seg": pa.array([[{"text": "x dpn-sk-1|abc"}]])}),
        pa.table({"dpn-sk-col": [1]}),
    ],
)
def test_write_refuses_secrets(tmp_path, table):
    cache = ResultCache(tmp_path)
    table = table.add_column(0, "key", pa.array([make_key(EMB, BGE, {}, "x")]))
    with pytest.raises(ValueError, match="API key"):
        cache.write(EMB, BGE, table)
    with pytest.raises(ValueError, match="API key"):
        NullCache().write(EMB, BGE, table)
    assert not list(tmp_path.rglob("*.parquet"))


def test_files_are_written_atomically_and_synced(tmp_path, monkeypatch):
    synced, replaced = [], []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd))[1])
    monkeypatch.setattr(
        os, "replace", lambda a, b: (replaced.append((a, b)), real_replace(a, b))[1]
    )
    ResultCache(tmp_path).write(EMB, BGE, pa.table({"key": make_keys(EMB, BGE, {}, ["x"])}))
    assert len(replaced) == 1 and len(synced) >= 1
    src, dst = map(Path, replaced[0])
    assert src.name.startswith(".tmp-") and src.parent == dst.parent
    assert re.fullmatch(r"part-\d{8}T\d{12}Z-[0-9a-f]{32}\.parquet", dst.name)

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(pq, "write_table", boom)
    with pytest.raises(Exception, match="disk full"):
        ResultCache(tmp_path).write(EMB, BGE, pa.table({"key": make_keys(EMB, BGE, {}, ["y"])}))
    assert len(parts(tmp_path)) == 1 and not list(tmp_path.rglob(".tmp-*"))


# ------------------------------------------------------------------------------------------
# info / clear / repr
# ------------------------------------------------------------------------------------------


def test_info_clear_and_repr(tmp_path):
    cache = ResultCache(tmp_path)
    assert cache.info().columns.tolist() == [
        "task",
        "model",
        "rows",
        "files",
        "bytes",
        "oldest",
        "newest",
    ]
    assert repr(cache) == f"ResultCache({str(tmp_path)!r}, 0 tasks, 0 rows, 0 B)"
    old = pd.Timestamp.now(tz="UTC") - pd.Timedelta(days=10)
    k = make_keys(EMB, BGE, {}, [str(i) for i in range(6)])
    cache.write(EMB, BGE, pd.DataFrame({"key": k[:2], "created": [old, old]}))
    cache.write(
        EMB, BGE, pd.DataFrame({"key": k[2:4], "created": [old, pd.Timestamp.now(tz="UTC")]})
    )
    cache.write(EMB, "Other", pd.DataFrame({"key": k[4:]}))
    cache.write("images", "Flux1schnell", pa.table({"key": k[:1], "image": [b"png"]}))
    info = cache.info()
    assert info[["task", "model", "rows", "files"]].values.tolist() == [
        [EMB, BGE, 4, 2],
        [EMB, "Other", 2, 1],
        ["images", "Flux1schnell", 1, 1],
    ]
    assert str(info["oldest"].dtype) == "datetime64[us, UTC]"
    assert (info["bytes"] > 0).all()
    assert info["oldest"].iloc[0] == old.floor("us")
    assert re.fullmatch(r"ResultCache\('.*', 2 tasks, 7 rows, [\d.]+ kB\)", repr(cache))

    assert cache.clear(older_than="7d") == 3  # whole old file + one row of the mixed file
    assert cache.contains(EMB, BGE, k[:4]).tolist() == [False, False, False, True]
    assert cache.clear(older_than=dt.timedelta(0)) == 4  # everything written before now
    cache.write(EMB, BGE, pd.DataFrame({"key": k[:2]}))
    cache.write(EMB, "Other", pd.DataFrame({"key": k[:1]}))
    assert cache.clear(model="Other") == 1
    assert cache.clear(task="images") == 0
    assert cache.clear(task=EMB) == 2
    assert cache.info().empty
    assert not (tmp_path / EMB).exists()
    with pytest.raises(InvalidParameterError, match="older_than"):
        cache.clear(older_than="soon")


@pytest.mark.parametrize("age", [30, 0, 1.5, np.int64(7), "30", " 2.5 ", "-1"])
def test_clear_refuses_ages_without_a_unit(tmp_path, age):
    """A bare number used to be read as nanoseconds: clear(older_than=30) wiped everything."""
    cache = ResultCache(tmp_path)
    k = make_keys(EMB, BGE, {}, ["a"])
    cache.write(EMB, BGE, pa.table({"key": k}))
    with pytest.raises(InvalidParameterError, match="needs a unit"):
        cache.clear(older_than=age)
    with pytest.raises(InvalidParameterError, match="needs a unit"):
        NullCache().clear(older_than=age)
    assert cache.contains(EMB, BGE, k).all()
    assert cache.clear(older_than=np.timedelta64(1, "D")) == 0  # numpy timedeltas are fine
    assert cache.clear(older_than="1 day") == 0


def test_clear_leaves_folders_that_held_no_cache_files(tmp_path):
    (tmp_path / "projects" / "empty-but-mine").mkdir(parents=True)
    (tmp_path / "notes").mkdir()
    cache = ResultCache(tmp_path)  # a folder that is not only a cache
    cache.write(EMB, BGE, pa.table({"key": make_keys(EMB, BGE, {}, ["a"])}))
    assert cache.clear() == 1
    assert (tmp_path / "projects" / "empty-but-mine").is_dir() and (tmp_path / "notes").is_dir()
    assert not (tmp_path / EMB).exists()  # the cache's own emptied folders do go


def test_clear_rewrite_keeps_newest_order(tmp_path):
    """Rewriting a partly-expired file must not let its rows overtake newer writes."""
    cache = ResultCache(tmp_path)
    k = make_keys(EMB, BGE, {}, ["a", "b"])
    old = pd.Timestamp.now(tz="UTC") - pd.Timedelta(days=3)
    cache.write(
        EMB,
        BGE,
        pd.DataFrame({"key": k, "v": [1, 1], "created": [old, pd.Timestamp.now(tz="UTC")]}),
    )
    cache.write(EMB, BGE, pd.DataFrame({"key": k[1:], "v": [2]}))
    assert cache.clear(older_than="1d") == 1
    assert cache.lookup(EMB, BGE, k)["v"].to_pylist() == [2]


# ------------------------------------------------------------------------------------------
# NullCache, resolve_cache, the public module
# ------------------------------------------------------------------------------------------


def test_null_cache_has_the_same_api():
    null = NullCache()
    k = make_keys(EMB, BGE, {}, ["a", "b"])
    null.write(EMB, BGE, pa.table({"key": k}))
    assert null.contains(EMB, BGE, k).tolist() == [False, False]
    got = null.lookup(EMB, BGE, k, columns=["embedding"])
    assert got.num_rows == 0 and got.column_names == ["key", "embedding"]
    assert null.lookup(EMB, BGE, k).column_names == ["key"]
    assert null.info().columns.tolist() == [
        "task",
        "model",
        "rows",
        "files",
        "bytes",
        "oldest",
        "newest",
    ]
    assert null.clear() == 0 and null.compact() is None
    assert repr(null) == "NullCache()"
    public = {n for n in dir(ResultCache) if not n.startswith("_")} - {"location"}
    assert public <= {n for n in dir(NullCache) if not n.startswith("_")}


def test_resolve_cache(tmp_path, monkeypatch):
    from deapi_ds import _config
    from deapi_ds import cache as cache_mod

    assert isinstance(resolve_cache(None), NullCache)
    assert isinstance(resolve_cache(False), NullCache)
    explicit = ResultCache(tmp_path / "x")
    assert resolve_cache(explicit) is explicit
    by_path = resolve_cache(tmp_path / "y")
    assert isinstance(by_path, ResultCache) and by_path.location == str(tmp_path / "y")
    assert resolve_cache(str(tmp_path / "y")) is by_path  # one instance (and index) per location

    monkeypatch.setenv("DEAPI_DS_CACHE_DIR", str(tmp_path / "env"))
    default = resolve_cache()
    assert isinstance(default, ResultCache) and default.location == str(tmp_path / "env")
    assert resolve_cache(USE_DEFAULT) is default and resolve_cache(True) is default
    assert cache_mod.location() == str(tmp_path / "env")
    with cache_mod.disabled():
        assert isinstance(resolve_cache(), NullCache)
        assert isinstance(resolve_cache(tmp_path / "y"), ResultCache)  # explicit still applies
    assert isinstance(resolve_cache(), ResultCache)
    with _config.config_context(cache_dir=str(tmp_path / "ctx"), cache_compact_threshold=3):
        ctx = resolve_cache()
        assert ctx.location == str(tmp_path / "ctx") and ctx.compact_threshold == 3
    monkeypatch.setenv("DEAPI_DS_CACHE", "0")
    assert isinstance(resolve_cache(), NullCache)
    with pytest.raises(InvalidParameterError, match="cache must be"):
        resolve_cache(42)


def test_default_cache_is_scoped_per_server(tmp_path, monkeypatch):
    """The emulator's (or another server's) answers never come back as deAPI results."""
    import httpx

    import deapi_ds
    from deapi_ds import cache as cache_mod

    root = tmp_path / "c"
    monkeypatch.setenv("DEAPI_DS_CACHE_DIR", str(root))
    texts = ["the same text", "on two servers"]
    deapi_ds.use_emulator()
    assert deapi_ds.embed(texts).status.tolist() == ["ok", "ok"]
    assert deapi_ds.embed(texts).status.tolist() == ["cached", "cached"]  # still cached there
    emulator_cache = cache_mod.location()
    assert emulator_cache == str(root / ".providers" / "emulator.deapi-ds.invalid_v1")
    assert cache_mod.info()["rows"].tolist() == [2]
    assert pd.read_parquet(f"{emulator_cache}/{EMB}/{BGE}").shape[0] == 2

    sent = []

    def deapi(request):  # stands in for deAPI: every request that reaches it is recorded
        sent.append(request)
        return httpx.Response(500, json={"error": {"message": "down", "type": "server_error"}})

    deapi_ds.set_config(
        base_url=None, api_key="dpn-sk-1|k", transport=httpx.MockTransport(deapi), max_retries=0
    )
    assert cache_mod.location() == str(root)
    assert cache_mod.info().empty  # the deAPI cache does not show the emulator's rows
    with pytest.raises(deapi_ds.BatchError) as info:  # every row failed the same way
        deapi_ds.embed(texts)
    res = info.value.partial
    assert len(sent) == 1 and res.status.tolist() == ["error", "error"]  # not served fakes
    assert cache_mod.clear() == 0
    assert ResultCache(emulator_cache).contains(EMB, BGE, make_keys(EMB, BGE, {}, texts)).all()

    # an fsspec location is scoped the same way; deAPI hosts are not scoped
    assert _cache.provider_scope("https://api.deapi.ai/v1") is None
    assert _cache.provider_scope("http://user:pw@LocalHost:8000/v1/") == "localhost_8000_v1"
    deapi_ds.set_config(cache_dir="memory://shared", base_url="http://127.0.0.1:9/v1")
    assert cache_mod.location() == "memory://shared/.providers/127.0.0.1_9_v1"


def test_cache_pickles_by_location(tmp_path):
    import pickle

    cache = ResultCache(tmp_path, compact_threshold=7)
    k = make_keys(EMB, BGE, {}, ["a"])
    cache.write(EMB, BGE, pa.table({"key": k}))
    cache.contains(EMB, BGE, k)  # builds the in-process index (holds a lock)
    clone = pickle.loads(pickle.dumps(cache))
    assert clone.location == cache.location and clone.compact_threshold == 7
    assert clone.contains(EMB, BGE, k).all()
    assert pickle.loads(pickle.dumps(USE_DEFAULT)) is USE_DEFAULT


def test_failed_auto_compaction_warns_but_keeps_the_batch(tmp_path, monkeypatch):
    cache = ResultCache(tmp_path, compact_threshold=1)
    k = make_keys(EMB, BGE, {}, ["a", "b"])
    cache.write(EMB, BGE, pa.table({"key": k[:1]}))

    def broken(self, task, model):
        raise OSError("no space left")

    monkeypatch.setattr(ResultCache, "_compact_namespace", broken)
    with pytest.warns(CacheWarning, match="no space left"):
        cache.write(EMB, BGE, pa.table({"key": k[1:]}))
    assert cache.contains(EMB, BGE, k).all()


def test_public_module_functions(tmp_path, monkeypatch):
    from deapi_ds import cache as cache_mod

    monkeypatch.setenv("DEAPI_DS_CACHE_DIR", str(tmp_path / "c"))
    store = resolve_cache()
    k = make_keys(EMB, BGE, {}, ["a", "b"])
    store.write(EMB, BGE, pa.table({"key": k[:1]}))
    store.write(EMB, BGE, pa.table({"key": k[1:]}))
    assert cache_mod.info()["rows"].tolist() == [2]
    cache_mod.compact()
    assert cache_mod.info()["files"].tolist() == [1]
    assert cache_mod.clear() == 2
    assert cache_mod.info().empty
    assert set(cache_mod.__all__) >= {
        "ResultCache",
        "make_key",
        "info",
        "clear",
        "compact",
        "location",
        "disabled",
    }


# ------------------------------------------------------------------------------------------
# fsspec (non-local) storage, in memory
# ------------------------------------------------------------------------------------------


def test_fsspec_memory_location():
    import fsspec

    url = f"memory://deapi-cache-{os.getpid()}-{time.time_ns()}"
    cache = ResultCache(url, compact_threshold=3)
    keys = make_keys(EMB, BGE, {}, [str(i) for i in range(8)])
    for i in range(8):
        cache.write(EMB, BGE, emb_table(keys[i : i + 1], np.full((1, 2), i, np.float32)))
    fs = fsspec.filesystem("memory")
    files = [p for p in fs.find(url) if p.endswith(".parquet")]
    assert 1 <= len(files) <= 3
    got = ResultCache(url).lookup(EMB, BGE, keys)
    assert embedding_matrix(got["embedding"])[:, 0].tolist() == list(range(8))
    assert cache.info()["rows"].tolist() == [8]
    assert repr(cache).startswith(f"ResultCache({url!r}, 1 task, 8 rows")
    assert cache.clear() == 8
    assert not [p for p in fs.find(url) if p.endswith(".parquet")]


# ------------------------------------------------------------------------------------------
# format fixtures written by CACHE_FORMAT_VERSION 1
# ------------------------------------------------------------------------------------------

FIXTURE_EMB = ["the quick brown fox", "jumps over", "the lazy dog"]
FIXTURE_SEGMENTS = pa.list_(
    pa.struct([("start", pa.float64()), ("end", pa.float64()), ("text", pa.string())])
)


def _fixture_matrix() -> np.ndarray:
    return (np.arange(12, dtype=np.float32).reshape(3, 4) / 8).astype(np.float32)


def write_fixture(folder: Path) -> None:
    """Writes the small cache kept under tests/data/cache_v<CACHE_FORMAT_VERSION>."""
    cache = ResultCache(folder)
    created = pd.Timestamp("2026-01-01T00:00:00Z")
    keys = make_keys(EMB, BGE, {}, FIXTURE_EMB)
    cache.write(
        EMB,
        BGE,
        emb_table(
            keys,
            _fixture_matrix(),
            params=["{}"] * 3,
            tokens=pa.array([4, 2, 3], pa.int64()),
            created=pa.array([created] * 3, pa.timestamp("us", "UTC")),
        ),
    )
    tkey = make_key("transcription", "WhisperLargeV3", {"include_ts": True}, b"RIFF fixture audio")
    cache.write(
        "transcription",
        "WhisperLargeV3",
        pa.table(
            {
                "key": [tkey],
                "text": ["Hello there."],
                "language": ["en"],
                "duration": [1.5],
                "segments": pa.array(
                    [[{"start": 0.0, "end": 1.5, "text": "Hello there."}]], FIXTURE_SEGMENTS
                ),
                "params": [params_json({"include_ts": True})],
                "seconds": [1.5],
                "created": pa.array([created], pa.timestamp("us", "UTC")),
            }
        ),
    )
    ikey = make_key("images", "Flux1schnell", {"size": "512x512", "seed": 1}, "a red square")
    cache.write(
        "images",
        "Flux1schnell",
        pa.table(
            {
                "key": [ikey],
                "image": [b"\x89PNG fixture"],
                "created": pa.array([created], pa.timestamp("us", "UTC")),
            }
        ),
    )


def test_format_v1_fixtures_still_read(tmp_path):
    assert _cache.CACHE_FORMAT_VERSION == 1, "new format: add tests/data/cache_vN, keep v1's test"
    folder = tmp_path / "cache_v1"
    shutil.copytree(DATA, folder)
    cache = ResultCache(folder)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheWarning)
        keys = make_keys(EMB, BGE, {}, FIXTURE_EMB)
        got = cache.lookup(EMB, BGE, keys)
        np.testing.assert_array_equal(embedding_matrix(got["embedding"]), _fixture_matrix())
        assert got["tokens"].to_pylist() == [4, 2, 3]
        tkey = make_key(
            "transcription", "WhisperLargeV3", {"include_ts": True}, b"RIFF fixture audio"
        )
        tr = cache.lookup("transcription", "WhisperLargeV3", [tkey]).to_pylist()[0]
        assert tr["text"] == "Hello there." and tr["segments"][0]["end"] == 1.5
        ikey = make_key("images", "Flux1schnell", {"size": "512x512", "seed": 1}, "a red square")
        assert cache.lookup("images", "Flux1schnell", [ikey])["image"].to_pylist() == [
            b"\x89PNG fixture"
        ]
        info = cache.info()
    assert info["rows"].sum() == 5
    assert (info["oldest"] == pd.Timestamp("2026-01-01T00:00:00Z")).all()
    assert pd.read_parquet(folder / EMB / BGE)["tokens"].tolist() == [4, 2, 3]
    # the fixture is byte-for-byte what this version reads: nothing was rewritten
    assert sorted(p.name for p in parts(folder)) == sorted(p.name for p in parts(DATA))


# ------------------------------------------------------------------------------------------
# processes: concurrent writers, kill -9
# ------------------------------------------------------------------------------------------


def _writer_process(location: str, worker: int, batches: int, rows: int) -> None:
    cache = ResultCache(location, compact_threshold=4)
    for b in range(batches):
        texts = [f"w{worker}-b{b}-r{i}" for i in range(rows)]
        keys = make_keys(EMB, BGE, {}, texts)
        vals = np.full((rows, 4), worker * 1000 + b, np.float32)
        cache.write(EMB, BGE, emb_table(keys, vals))


@pytest.mark.timeout(120)
def test_two_processes_write_at_once_while_a_reader_reads(tmp_path):
    batches, rows = 50, 3
    ctx = multiprocessing.get_context("spawn")
    procs = [
        ctx.Process(target=_writer_process, args=(str(tmp_path), w, batches, rows)) for w in (1, 2)
    ]
    for p in procs:
        p.start()
    reader = ResultCache(tmp_path)
    all_keys = {
        w: [
            make_keys(EMB, BGE, {}, [f"w{w}-b{b}-r{i}" for i in range(rows)])
            for b in range(batches)
        ]
        for w in (1, 2)
    }
    flat = [k for w in (1, 2) for batch in all_keys[w] for k in batch]
    seen_max, partial_reads = 0, 0
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheWarning)  # no corrupt or half-written file is ever seen
        while any(p.is_alive() for p in procs):
            got = reader.lookup(EMB, BGE, flat, columns=["embedding"])
            vals = embedding_matrix(got["embedding"])[:, 0] if got.num_rows else np.empty(0)
            hit = dict(zip(got["key"].to_pylist(), vals.tolist(), strict=True))
            for w in (1, 2):  # every batch is written whole, and a key never changes its value
                for b, batch in enumerate(all_keys[w]):
                    present = [k in hit for k in batch]
                    assert all(present) or not any(present)
                    assert all(hit[k] == w * 1000 + b for k in batch if k in hit)
            assert len(hit) >= seen_max  # nothing ever disappears
            seen_max = len(hit)
            partial_reads += 0 < len(hit) < len(flat)
            time.sleep(0.05)
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert partial_reads >= 3  # the reader really ran while the writers were busy
    final = ResultCache(tmp_path)
    assert final.contains(EMB, BGE, flat).all()
    # automatic compaction kept the folder small: past the threshold (4) each writer compacts,
    # unless the other one holds the compaction lock, then the next write past it does
    assert len(parts(tmp_path)) <= 4 + 4
    assert final.info()["rows"].tolist() == [len(flat)]


_KILL_CHILD = """
import sys, numpy as np, pyarrow as pa
from deapi_ds._cache import ResultCache, make_keys, embedding_array
cache = ResultCache(sys.argv[1], compact_threshold=5)
b = 0
while True:
    keys = make_keys("embeddings", "m", {}, [f"b{b}-r{i}" for i in range(200)])
    cache.write("embeddings", "m", pa.table({"key": keys, "embedding": embedding_array(np.full((200, 64), b, np.float32))}))
    print(b, flush=True)
    b += 1
"""


@pytest.mark.timeout(120)
def test_kill_9_keeps_every_finished_batch(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILL_CHILD, str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parent.parent,
    )
    finished = -1
    try:
        while finished < 12:
            line = proc.stdout.readline()
            assert line, "writer died early"
            finished = int(line)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    cache = ResultCache(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheWarning)
        for b in range(finished + 1):
            keys = make_keys("embeddings", "m", {}, [f"b{b}-r{i}" for i in range(200)])
            got = cache.lookup("embeddings", "m", keys)
            assert got.num_rows == 200
            assert (embedding_matrix(got["embedding"]) == b).all()
        df = pd.read_parquet(tmp_path / "embeddings" / "m")  # a killed writer leaves only dot-files
    assert len(df) >= 200 * (finished + 1)


_EMBED_CHILD = """
import sys, numpy as np, deapi_ds
base_url, cache, lo, hi = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
texts = [f"row {i}: the parcel arrived on time" for i in range(lo, hi)]
deapi_ds.set_config(base_url=base_url, api_key="dpn-sk-1|child", max_concurrency=2, progress=False)
res = deapi_ds.embed(texts, cache=cache, max_inputs=10)
np.save(sys.argv[5], res.matrix)
print(sorted(set(res.status)), flush=True)
"""


def _row_texts(lo: int, hi: int) -> list[str]:
    return [f"row {i}: the parcel arrived on time" for i in range(lo, hi)]


def _embed_child(base_url: str, cache: Path, lo: int, hi: int, out: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", _EMBED_CHILD, base_url, str(cache), str(lo), str(hi), str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parent.parent,
    )


@pytest.mark.timeout(120)
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["kill-9", "ctrl-c"])
def test_embed_killed_mid_run_rerun_pays_only_for_missing_rows(tmp_path, sig):
    """A real deapi_ds.embed in a subprocess against the loopback emulator, stopped mid-run."""
    import deapi_ds
    from deapi_ds.emulator import Emulator
    from deapi_ds.testing import emulated

    n, per_batch = 200, 10
    cache_dir = tmp_path / "cache"
    emu = Emulator().configure("embeddings", latency=0.1)
    with emu.serve() as server:
        proc = _embed_child(server.base_url, cache_dir, 0, n, tmp_path / "m.npy")
        try:
            deadline = time.monotonic() + 60
            while len(parts(cache_dir)) < 4:  # four batches written, the rest still to come
                assert proc.poll() is None, f"embed ended early: {proc.communicate()}"
                assert time.monotonic() < deadline
                time.sleep(0.005)
        finally:
            proc.send_signal(sig)
            proc.communicate(timeout=30)
        time.sleep(0.3)  # a request the child sent just before dying still reaches the emulator
        assert proc.returncode != 0 and not (tmp_path / "m.npy").exists()  # really interrupted
        paid = emu.stats("embeddings")
        keys = make_keys(EMB, BGE, {}, _row_texts(0, n))
        with warnings.catch_warnings():
            warnings.simplefilter("error", CacheWarning)  # nothing half-written is ever seen
            have = ResultCache(cache_dir).contains(EMB, BGE, keys)
        cached = int(have.sum())
        assert 0 < cached < n and cached % per_batch == 0  # whole batches only
        # every batch answered was written, except those the pipeline held at the kill: at most
        # 2 x max_concurrency = 4 (sent, or answered and waiting for the write in progress;
        # writes overlap the network)
        assert 0 <= paid["inputs"] - cached <= 4 * per_batch

        emu.reset_stats()
        with deapi_ds.config_context(base_url=server.base_url, api_key="dpn-sk-1|p"):
            res = deapi_ds.embed(_row_texts(0, n), cache=str(cache_dir), max_inputs=per_batch)
        rerun = emu.stats("embeddings")
    assert rerun["inputs"] == n - cached  # exactly the missing rows ...
    assert rerun["requests"] == -(-(n - cached) // per_batch)  # ... in as few requests
    assert (res.status == "cached").sum() == cached and (res.status == "ok").sum() == n - cached
    fresh = Emulator()
    with emulated(emulator=fresh):
        expected = deapi_ds.embed(_row_texts(0, n), cache=None).matrix
    np.testing.assert_array_equal(res.matrix, expected)


@pytest.mark.timeout(180)
def test_four_processes_embed_overlapping_rows_and_pay_each_once(tmp_path):
    """Four real embed() runs at once over overlapping rows (0-299, 100-399, 200-499,
    300-599), one cache folder: rows another live process has in flight are waited for
    (a claim per batch), so each of the 600 distinct rows is paid exactly once."""
    import deapi_ds
    from deapi_ds.emulator import Emulator
    from deapi_ds.testing import emulated

    cache_dir = tmp_path / "cache"
    emu = Emulator().configure("embeddings", latency=0.1)
    ranges = ((0, 300), (100, 400), (200, 500), (300, 600))
    with emu.serve() as server:
        procs = [
            _embed_child(server.base_url, cache_dir, lo, hi, tmp_path / f"m{lo}.npy")
            for lo, hi in ranges
        ]
        for p in procs:
            out, err = p.communicate(timeout=150)
            assert p.returncode == 0, err
            assert out.strip() in ("['ok']", "['cached', 'ok']", "['cached']")
        paid = emu.stats("embeddings")
    with emulated():
        expected = deapi_ds.embed(_row_texts(0, 600), cache=None).matrix
    for lo, hi in ranges:
        np.testing.assert_array_equal(np.load(tmp_path / f"m{lo}.npy"), expected[lo:hi])
    keys = make_keys(EMB, BGE, {}, _row_texts(0, 600))
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheWarning)
        got = ResultCache(cache_dir).lookup(EMB, BGE, keys)
    assert got.num_rows == 600  # no row lost
    np.testing.assert_array_equal(embedding_matrix(got["embedding"]), expected)  # none corrupt
    assert paid["inputs"] == 600  # nothing paid twice


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else DATA)
    if target.exists() and any(target.iterdir()):
        sys.exit(f"{target} is not empty; fixtures are never rewritten in place.")
    write_fixture(target)
    print(f"wrote {sorted(str(p.relative_to(target)) for p in parts(target))}")


_HOLD_LOCK = """
import sys, filelock
lock = filelock.FileLock(sys.argv[1], timeout=0)
lock.acquire()
print("held", flush=True)
sys.stdin.readline()
"""


def test_compaction_skips_a_namespace_another_process_is_compacting(tmp_path):
    from deapi_ds._cache._storage import meta_dir

    cache = ResultCache(tmp_path, compact_threshold=1000)
    for b in range(4):
        cache.write(EMB, BGE, pa.table({"key": make_keys(EMB, BGE, {}, [f"lock {b}"])}))
    lock_path = Path(meta_dir(str(tmp_path), EMB, BGE)) / "compact.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD_LOCK, str(lock_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"  # another process is compacting
        cache.compact()
        assert len(parts(tmp_path)) == 4  # left alone, nothing merged twice
    finally:
        os.kill(holder.pid, signal.SIGKILL)  # a compactor that dies holding the lock ...
        holder.wait(30)
    cache.compact()  # ... never blocks the next one: the OS released its lock
    assert len(parts(tmp_path)) == 1
    assert cache.info()["rows"].tolist() == [4]
