"""deapi_ds.dask on a two-process LocalCluster against the loopback emulator."""

from __future__ import annotations

import glob
import os
import sys
import time

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

dd = pytest.importorskip("dask.dataframe")
distributed = pytest.importorskip("distributed")

import cloudpickle  # noqa: E402  (installed with distributed)

import deapi_ds  # noqa: E402
import deapi_ds.dask as ddx  # noqa: E402
from deapi_ds._cache import ResultCache  # noqa: E402
from deapi_ds.emulator import Emulator  # noqa: E402

KEY = "dpn-sk-7|dask-worker-secret"
MODEL = "Bge_M3_FP16"


@pytest.fixture(scope="module")
def cluster():
    """One emulator on loopback and one LocalCluster whose workers inherit the key from the env."""
    emu = Emulator()
    server = emu.serve()
    mp = pytest.MonkeyPatch()
    mp.setenv("DEAPI_API_KEY", KEY)
    mp.setenv("DEAPI_BASE_URL", server.base_url)
    mp.setenv("DEAPI_DS_PROGRESS", "0")
    # Dask's profiler calls sys._current_frames() every few ms; on CPython 3.11 a garbage
    # collection inside it that frees a threading.local deadlocks the worker (gh-106883)
    mp.setenv("DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED", "False")
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # helpers below run on workers
    lc = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    )
    client = distributed.Client(lc)
    try:
        yield client, emu, server
    finally:
        client.close()
        lc.close()
        server.close()
        mp.undo()
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


@pytest.fixture
def env(cluster, monkeypatch, _clean_config):
    """This process sees the same key and base URL as the workers; fresh emulator state."""
    client, emu, server = cluster
    monkeypatch.setenv("DEAPI_API_KEY", KEY)
    monkeypatch.setenv("DEAPI_BASE_URL", server.base_url)
    emu.reset_faults()
    emu.reset_stats()
    emu.clock = time.monotonic
    yield client, emu
    emu.reset_faults()
    emu.clock = time.monotonic


def _texts(n: int, tag: str) -> list[str]:
    return [
        f"{tag} review {i}: the {['red', 'blue', 'green'][i % 3]} one arrived on time"
        for i in range(n)
    ]


def _same_matrix(a: np.ndarray, b: np.ndarray) -> None:
    assert a.dtype == np.float32 and b.dtype == np.float32
    np.testing.assert_array_equal(a, b)  # NaN rows compare equal


def test_clear_error_when_dask_is_missing(monkeypatch):
    for name in [m for m in sys.modules if m == "dask" or m.startswith("dask.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "dask", None)  # `import dask` now raises ImportError
    for call in (
        lambda: ddx.embed(object(), "text"),
        lambda: ddx.transcribe(object()),
        lambda: ddx.to_matrix(object()),
    ):
        with pytest.raises(ImportError, match=r"needs dask.*pip install 'deapi-ds\[dask\]'"):
            call()


def test_local_cache_with_workers_on_other_hosts_warns(monkeypatch, tmp_path):
    class RemoteCluster:
        def scheduler_info(self):
            return {"workers": {"tcp://10.20.30.40:4567": {}, "tcp://127.0.0.1:4568": {}}}

    monkeypatch.setattr(distributed, "default_client", lambda: RemoteCluster())
    with pytest.warns(UserWarning, match=r"local folder but workers run on other hosts \(10\.20"):
        ddx._make_job("embeddings", str(tmp_path), None, None, "embed")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ddx._make_job("embeddings", "memory://shared-cache", None, None, "embed")  # a URL: fine


def test_embed_matches_single_process(env, tmp_path):
    client, emu = env
    texts = _texts(40, "match")
    values: list[str | None] = []
    for p in range(4):  # 4 partitions of 11 rows: 10 texts and one missing value each
        values += texts[p * 10 : p * 10 + 5] + [None] + texts[p * 10 + 5 : p * 10 + 10]
    df = pd.DataFrame({"text": values, "n": range(44)}, index=pd.RangeIndex(100, 144))
    ddf = dd.from_pandas(df, npartitions=4)
    assert ddf.map_partitions(len).compute().tolist() == [11, 11, 11, 11]

    lazy = ddx.embed(ddf, "text", cache=str(tmp_path / "cluster"), max_inputs=5)
    assert lazy.divisions == ddf.divisions and lazy.npartitions == 4
    assert emu.stats("embeddings")["requests"] == 0  # lazy: nothing sent yet
    out = lazy.compute()
    cluster_stats = emu.stats("embeddings")

    emu.reset_stats()
    single = deapi_ds.embed(df, "text", cache=str(tmp_path / "single"), max_inputs=5)
    single_stats = emu.stats("embeddings")

    assert cluster_stats["requests"] == single_stats["requests"] == 8
    assert cluster_stats["inputs"] == single_stats["inputs"] == 40
    assert list(out.columns) == ["status", "error_type", "error", "tokens", "embedding"]
    assert out.index.equals(df.index)
    pd.testing.assert_frame_equal(
        out[["status", "error_type", "error", "tokens"]], single.frame, check_names=False
    )
    assert (out["status"] == "empty").sum() == 4
    pd.testing.assert_series_equal(
        out["embedding"].isna(), single.to_series().isna(), check_names=False
    )
    cell = out["embedding"].iloc[0]
    assert isinstance(cell, np.ndarray) and cell.dtype == np.float32 and cell.shape == (1024,)

    _same_matrix(ddx.to_matrix(out), single.matrix)  # computed frame -> numpy
    lazy_matrix = ddx.to_matrix(lazy, dimension=1024)  # lazy: one chunk per partition
    assert lazy_matrix.dtype == np.float32 and lazy_matrix.numblocks == (4, 1)
    emu.reset_stats()
    _same_matrix(lazy_matrix.compute(), single.matrix)
    again = lazy.compute()
    assert emu.stats("embeddings")["requests"] == 0  # the shared cache answers every row
    assert set(again["status"]) == {"cached", "empty"}


def test_refusals_before_anything_is_sent(env, tmp_path):
    client, emu = env
    ddf = dd.from_pandas(pd.DataFrame({"text": ["a", "b"], "x": [1, 2]}), npartitions=1)
    with pytest.raises(deapi_ds.InvalidParameterError, match="shared by all workers"):
        ddx.embed(ddf, "text", cache=None)
    with deapi_ds.config_context(cache_enabled=False):
        with pytest.raises(deapi_ds.InvalidParameterError, match="DEAPI_DS_CACHE=0"):
            ddx.embed(ddf, "text")
    with pytest.raises(deapi_ds.InvalidParameterError, match="Available columns"):
        ddx.embed(ddf)
    with pytest.raises(deapi_ds.InvalidParameterError, match="'nope' not found"):
        ddx.embed(ddf, "nope")
    with pytest.raises(deapi_ds.InvalidParameterError, match="holds the API key"):
        ddx.embed(ddf, "text", client=deapi_ds.Client())
    with pytest.raises(deapi_ds.InvalidParameterError, match="unknown option 'max_input'"):
        ddx.embed(ddf, "text", max_input=3)
    with pytest.raises(deapi_ds.InvalidParameterError, match="from_pandas"):
        ddx.embed(pd.Series(["a"]))
    with pytest.raises(deapi_ds.InvalidParameterError, match="rpm must be"):
        ddx.embed(ddf, "text", rpm=0)
    with pytest.raises(deapi_ds.InvalidParameterError, match="looks like a credential"):
        ddx.embed(
            ddf,
            "text",
            cache=ResultCache("memory://c", storage_options={"secret": "s3cr3t"}),
        )
    deapi_ds.use_emulator()  # in-process transport: workers cannot reach it
    with pytest.raises(deapi_ds.ConfigurationError, match="loopback"):
        ddx.embed(ddf, "text")
    assert emu.stats("embeddings")["requests"] == 0


def test_key_never_enters_the_task_graph(env, monkeypatch, tmp_path):
    client, emu = env
    monkeypatch.delenv("DEAPI_API_KEY")
    deapi_ds.set_config(api_key="dpn-sk-9|only-in-the-notebook")
    ddf = dd.from_pandas(pd.DataFrame({"text": _texts(4, "graph")}), npartitions=2)
    lazy = ddx.embed(ddf, "text", cache=str(tmp_path))
    graph = cloudpickle.dumps(dict(lazy.__dask_graph__()))
    assert b"only-in-the-notebook" not in graph
    assert b"dask-worker-secret" not in graph
    assert emu.stats("embeddings")["requests"] == 0  # building the graph sends nothing


def _embed_without_key(part, job):
    """Runs on a worker: the same partition function with the key removed from its env."""
    saved = os.environ.pop("DEAPI_API_KEY")
    try:
        return ddx._embed_partition(part, job, MODEL, {})
    finally:
        os.environ["DEAPI_API_KEY"] = saved


def test_worker_without_key_names_the_variable(env, tmp_path):
    client, emu = env
    job = ddx._make_job("embeddings", str(tmp_path), None, None, "embed")
    future = client.submit(_embed_without_key, pd.Series(["hello"]), job, pure=False)
    with pytest.raises(deapi_ds.MissingAPIKeyError, match="DEAPI_API_KEY") as info:
        future.result(timeout=60)
    assert "Dask worker tcp://" in str(info.value)
    assert emu.stats("embeddings")["requests"] == 0


def test_rate_limit_held_across_the_cluster(env, tmp_path, monkeypatch):
    """The emulator enforces 3 requests per window; 9 requests from 2 workers never get a 429.

    Windows are shortened for speed: the emulator counts 3 requests per 1.5 s and the cluster
    budget 3 requests per 3 s, so the budget is stricter than the server while any overshoot
    (several requests at once from two workers) is still answered with 429.
    """
    client, emu = env
    monkeypatch.setattr(emu._configs["embeddings"], "WINDOW", 1.5, raising=False)
    monkeypatch.setattr(ddx, "RATE_WINDOW_SECONDS", 3.0)
    emu.configure("embeddings", rpm=3)
    ddf = dd.from_pandas(pd.DataFrame({"text": _texts(9, "rate")}), npartitions=3)

    # control: without a cluster-wide budget the emulator does see the overshoot
    with deapi_ds.config_context(max_retries=0):  # a 429 becomes an error row, not a retry
        free = ddx.embed(ddf, "text", cache=str(tmp_path / "free"), max_inputs=1).compute()
    assert emu.stats("embeddings")["rate_limited"] > 0
    assert (free["status"] == "error").any()

    time.sleep(1.6)  # let the emulator's window empty
    emu.reset_stats()
    started = time.monotonic()
    with deapi_ds.config_context(max_retries=0):
        out = ddx.embed(ddf, "text", cache=str(tmp_path / "held"), max_inputs=1, rpm=3).compute()
    elapsed = time.monotonic() - started
    stats = emu.stats("embeddings")
    assert stats["rate_limited"] == 0
    assert stats["requests"] == 9 and stats["inputs"] == 9
    assert (out["status"] == "ok").all()
    assert elapsed >= 2 * 3.0  # 9 requests at 3 per window need two waits


def test_max_concurrency_is_cluster_wide(env, tmp_path):
    """max_concurrency=1 across two workers: the 4 requests (0.4 s each) never overlap."""
    client, emu = env
    emu.configure("embeddings", latency=0.4)
    ddf = dd.from_pandas(pd.DataFrame({"text": _texts(4, "inflight")}), npartitions=2)
    started = time.monotonic()
    out = ddx.embed(ddf, "text", cache=str(tmp_path), max_inputs=1, max_concurrency=1).compute()
    elapsed = time.monotonic() - started
    assert emu.stats("embeddings")["requests"] == 4
    assert (out["status"] == "ok").all()
    assert elapsed >= 4 * 0.4  # one at a time; two workers x two batches would take ~0.8 s


async def _exit_now() -> None:
    """Runs on the victim worker: the process dies at once, without any cleanup."""
    os._exit(1)


def _cache_rows(folder) -> int:
    files = glob.glob(os.path.join(folder, "embeddings", MODEL, "part-*.parquet"))
    return sum(pq.read_metadata(f).num_rows for f in files)


def test_worker_killed_mid_run_never_pays_twice(env, tmp_path):
    client, emu = env
    emu.configure("embeddings", latency=0.25)
    texts = _texts(48, "kill")
    ddf = dd.from_pandas(pd.DataFrame({"text": texts}), npartitions=8)
    cache = str(tmp_path / "kill")
    with deapi_ds.config_context(max_concurrency=1):  # one batch in flight per worker
        lazy = ddx.embed(ddf, "text", cache=cache, max_inputs=3)
        future = client.compute(lazy)
        deadline = time.monotonic() + 60
        while emu.stats("embeddings")["requests"] < 4 and time.monotonic() < deadline:
            time.sleep(0.02)
        busy = [w for w, tasks in client.processing().items() if tasks]
        victim = busy[0]
        sent_before_kill = emu.stats("embeddings")["requests"]
        client.run(_exit_now, workers=[victim], wait=False)
        out = future.result(timeout=120)  # Dask reruns the lost partitions elsewhere
        future.release()  # so that the rerun below is computed, not served from memory
    assert sent_before_kill < 16  # the worker really died mid-run
    assert (out["status"].isin(["ok", "cached"])).all()
    billed = emu.stats("embeddings")["inputs"]
    written = _cache_rows(cache)
    # every answer that arrived was cached exactly once: no row paid for twice ...
    assert written == 48
    # ... except the killed worker's in-flight batch (at most 1 batch of 3), whose answer died
    assert billed - written in (0, 3)

    emu.reset_stats()
    with deapi_ds.config_context(max_concurrency=1):
        again = ddx.embed(ddf, "text", cache=cache, max_inputs=3).compute()
    assert emu.stats("embeddings")["requests"] == 0
    assert (again["status"] == "cached").all()
    _same_matrix(ddx.to_matrix(again), ddx.to_matrix(out))


def _speech_files(folder, sentences):
    from deapi_ds.emulator._media import synthesize_speech

    folder.mkdir()
    paths = []
    for i, sentence in enumerate(sentences):
        path = folder / f"clip{i}.wav"
        path.write_bytes(synthesize_speech(sentence, voice="af_bella", fmt="wav"))
        paths.append(str(path))
    return paths


def test_transcribe_matches_single_process(env, tmp_path):
    client, emu = env
    sentences = ["Hello from the first clip.", "A second short clip.", "Number three.", "Last one."]
    paths = _speech_files(tmp_path / "audio", sentences)
    series = pd.Series(paths, index=pd.RangeIndex(10, 14), name="path")
    ds = dd.from_pandas(series, npartitions=2)

    tables = ddx.transcribe_tables(ds, cache=str(tmp_path / "cluster"), language="en")
    assert tables.files.divisions == ds.divisions
    files, segments, words = client.gather(
        client.compute([tables.files, tables.segments, tables.words])
    )
    cluster_requests = emu.stats("audio.transcriptions")["requests"]

    emu.reset_stats()
    from deapi_ds.transcription import transcribe

    single = transcribe(series, cache=str(tmp_path / "single"), language="en")
    assert cluster_requests == emu.stats("audio.transcriptions")["requests"] == 4
    assert files.index.equals(series.index)
    cols = ["file", "text", "language", "status", "n_segments"]
    pd.testing.assert_frame_equal(files[cols], single.files[cols])
    assert files["text"].str.contains("first clip").iloc[0]
    assert set(segments["file"]) == set(paths)
    pd.testing.assert_frame_equal(
        segments.drop(columns="speaker").reset_index(drop=True),
        single.segments.reset_index(drop=True),
        check_dtype=False,
    )
    assert {"file", "segment", "word", "start", "end", "probability"} <= set(words.columns)

    # a bag of paths works too, and every file now comes from the shared cache
    import dask.bag as db

    emu.reset_stats()
    from_bag = ddx.transcribe(
        db.from_sequence(paths, npartitions=2), cache=str(tmp_path / "cluster"), language="en"
    ).compute()
    assert emu.stats("audio.transcriptions")["requests"] == 0
    assert from_bag["status"].eq("cached").all()
    assert sorted(from_bag["file"]) == sorted(paths)
