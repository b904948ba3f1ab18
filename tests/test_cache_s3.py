"""The result cache on S3 (fsspec URL), against moto's S3 server on loopback.

Skipped when moto[server], s3fs or boto3 are not installed (``pip install 'deapi-ds[test]'``).
"""

from __future__ import annotations

import socket
import warnings

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

moto_server = pytest.importorskip("moto.server", reason="needs moto[server]")
s3fs = pytest.importorskip("s3fs", reason="needs s3fs")
boto3 = pytest.importorskip("boto3", reason="needs boto3 (installed with moto)")

from deapi_ds._cache import (  # noqa: E402
    CacheWarning,
    ResultCache,
    embedding_array,
    embedding_matrix,
    make_keys,
    resolve_cache,
)

EMB, BGE = "embeddings", "Bge_M3_FP16"
BUCKET = "deapi-ds-cache-test"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3_endpoint():
    port = _free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    url = f"http://127.0.0.1:{port}"
    try:
        boto3.client(
            "s3",
            endpoint_url=url,
            aws_access_key_id="x",
            aws_secret_access_key="y",
            region_name="us-east-1",
        ).create_bucket(Bucket=BUCKET)
        yield url
    finally:
        server.stop()


@pytest.fixture
def s3_location(s3_endpoint, request):
    prefix = f"s3://{BUCKET}/{request.node.name}"
    options = {"key": "x", "secret": "y", "client_kwargs": {"endpoint_url": s3_endpoint}}
    return prefix, options


def test_write_lookup_compact_info_clear_on_s3(s3_location):
    url, options = s3_location
    cache = ResultCache(url, storage_options=options, compact_threshold=3)
    keys = make_keys(EMB, BGE, {}, [f"text {i}" for i in range(10)])
    m = np.random.default_rng(0).standard_normal((10, 16)).astype(np.float32)
    for i in range(0, 10, 2):
        cache.write(
            EMB, BGE, pa.table({"key": keys[i : i + 2], "embedding": embedding_array(m[i : i + 2])})
        )
    cache.write("speech", "Kokoro", pa.table({"key": keys[:1], "audio": [b"RIFF...."]}))

    fs = s3fs.S3FileSystem(**options)
    listed = fs.ls(f"{BUCKET}/test_write_lookup_compact_info_clear_on_s3/{EMB}/{BGE}", refresh=True)
    assert 1 <= len(listed) <= 3  # auto-compaction ran
    assert all(p.rsplit("/", 1)[-1].startswith("part-") for p in listed)

    reader = ResultCache(url, storage_options=options)  # another machine: fresh listing
    got = reader.lookup(EMB, BGE, keys[::-1], columns=["embedding"])
    np.testing.assert_array_equal(embedding_matrix(got["embedding"]), m[::-1])
    assert reader.contains(EMB, BGE, keys).all()

    # a write by someone else is seen (no stale listing)
    more = make_keys(EMB, BGE, {}, ["later"])
    cache.write(
        EMB,
        BGE,
        pa.table({"key": more, "embedding": embedding_array(np.ones((1, 16), np.float32))}),
    )
    assert reader.contains(EMB, BGE, more).all()

    cache.compact()
    assert (
        len(fs.ls(f"{BUCKET}/test_write_lookup_compact_info_clear_on_s3/{EMB}/{BGE}", refresh=True))
        == 1
    )
    assert reader.lookup(EMB, BGE, keys + more).num_rows == 11

    df = pd.read_parquet(f"{url}/{EMB}/{BGE}", storage_options=options)
    assert len(df) == 11 and df["embedding"].iloc[0].dtype == np.float32

    info = reader.info()
    assert info[["task", "model", "rows", "files"]].values.tolist() == [
        [EMB, BGE, 11, 1],
        ["speech", "Kokoro", 1, 1],
    ]
    assert repr(reader).startswith(f"ResultCache({url!r}, 2 tasks, 12 rows")

    assert reader.clear(task="speech") == 1
    assert cache.clear(older_than="1h") == 0
    assert cache.clear() == 11
    assert reader.info().empty
    assert not [
        p
        for p in fs.find(f"{BUCKET}/test_write_lookup_compact_info_clear_on_s3")
        if p.endswith(".parquet")
    ]


def test_corrupt_object_on_s3_is_skipped(s3_location):
    url, options = s3_location
    cache = ResultCache(url, storage_options=options)
    keys = make_keys(EMB, BGE, {}, ["a", "b"])
    cache.write(EMB, BGE, pa.table({"key": keys[:1], "v": [1]}))
    fs = s3fs.S3FileSystem(**options)
    bad = f"{BUCKET}/test_corrupt_object_on_s3_is_skipped/{EMB}/{BGE}/part-20200101T000000000000Z-{'0' * 32}.parquet"
    fs.pipe(bad, b"PAR1 truncated")
    with pytest.warns(CacheWarning, match="part-20200101T000000000000Z"):
        assert ResultCache(url, storage_options=options).contains(EMB, BGE, keys).tolist() == [
            True,
            False,
        ]


def test_resolve_cache_uses_configured_s3_location(s3_location):
    from deapi_ds import _config

    url, options = s3_location
    with _config.config_context(cache_dir=url, cache_storage_options=options):
        cache = resolve_cache()
        assert isinstance(cache, ResultCache) and cache.location == url
        keys = make_keys(EMB, BGE, {}, ["x"])
        cache.write(EMB, BGE, pa.table({"key": keys, "v": [5]}))
        with warnings.catch_warnings():
            warnings.simplefilter("error", CacheWarning)
            assert resolve_cache().lookup(EMB, BGE, keys)["v"].to_pylist() == [5]
