"""The same tasks on a Dask cluster: one shared cache, one rate limit for the whole cluster.

Use it when a column has millions of rows or a folder holds terabytes of audio and you already
run Dask (``pip install 'deapi-ds[dask]'``). Every partition runs the ordinary task function
(:func:`deapi_ds.embed`, :func:`deapi_ds.transcribe`) on a worker; the results come back as Dask
collections aligned with the input partitions (same divisions, same index).

>>> import dask.dataframe as dd, deapi_ds.dask as ddx          # doctest: +SKIP
>>> from distributed import Client
>>> client = Client("tcp://scheduler:8786")                     # or Client() for a local cluster
>>> ddf = dd.read_parquet("s3://bucket/reviews/")
>>> emb = ddx.embed(ddf, "text", cache="s3://bucket/deapi-cache")
>>> emb = emb.persist()                                          # status, error_type, error, tokens, embedding
>>> X = ddx.to_matrix(emb).compute()                             # float32 (rows x 1024)

One cache
    All workers read and write one cache location: a shared folder (NFS mounted at the same path
    on every worker) or an fsspec URL such as ``s3://bucket/prefix``. Every batch is written as
    soon as its answer arrives, so a lost worker costs at most the batches it had in flight, and a
    rerun (or Dask's own retry of the lost partitions) pays only for rows not yet cached. A run
    without a cache (``cache=None``, ``DEAPI_DS_CACHE=0``) is refused: it would pay again for every
    row on every retry. Identical texts inside one partition are sent once; identical texts in
    different partitions that run at the same time may be sent once per partition
    (``drop_duplicates`` first if your column repeats a lot).

One rate limit (the choice made here)
    deAPI limits requests per minute per account. Dividing the budget by the number of workers
    would waste it when partitions are uneven and overshoot when an adaptive cluster grows, so
    the limit is enforced *cluster-wide* with a :class:`distributed.Semaphore` named
    ``deapi_ds-<endpoint>-rpm`` whose ``max_leases`` is the budget: every request (and every
    retry) takes a lease just before it is sent, and the lease is given back one window
    (60 s plus a small margin) later. So at most ``rpm`` requests start in any minute across the
    whole cluster, whatever the number of workers or partitions. The budget is ``rpm=`` or,
    by default, the configured one (``DEAPI_DS_RPM`` / ``tier``). ``max_concurrency=`` optionally
    caps the requests in flight across the cluster with a second semaphore
    (``deapi_ds-<endpoint>``); without it each worker process keeps the configured
    ``max_concurrency`` (``DEAPI_DS_CONCURRENCY``). Caveats: the scheduler frees the leases of a
    worker that dies only after ``distributed.scheduler.locks.lease-timeout`` (30 s); a semaphore
    keeps the ``max_leases`` of the latest job that registered it, so run concurrent jobs on
    one account with the same budget. Without a distributed scheduler (the threaded scheduler)
    the process-local limiter applies.

Configuration and the API key
    The non-secret settings of the calling process (base_url, tier, rpm, timeouts, retries,
    max_concurrency, profile) travel with the tasks and are applied with ``config_context`` on
    the worker. The API key never enters the task graph: each worker reads ``DEAPI_API_KEY`` from
    its own environment. A ``LocalCluster`` started after the variable is set inherits it; for a
    remote cluster set it where the workers are started (job script, container or pod spec,
    ``dask worker`` service). A worker without a key fails with an error naming the variable.
    Cache credentials (S3 keys) likewise belong to the workers' environment, not to
    ``storage_options``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import heapq
import inspect
import itertools
import logging
import math
import socket
import threading
import time
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, NamedTuple, TypeVar
from urllib.parse import urlsplit

import anyio
import numpy as np
import pandas as pd

from . import embeddings as _embeddings
from ._cache import USE_DEFAULT, NullCache, ResultCache, _shared_cache, resolve_cache
from ._client import AsyncClient
from ._config import config_context, get_config, is_loopback
from ._engine import Engine, RetryPolicy
from ._exceptions import (
    BatchError,
    ConfigurationError,
    InvalidParameterError,
    MissingAPIKeyError,
)
from ._profiles import get_profile
from ._result import STATUS_DTYPE
from ._tasks import _settings_key

__all__ = ["TranscriptionTables", "embed", "to_matrix", "transcribe", "transcribe_tables"]

logger = logging.getLogger("deapi_ds")
T = TypeVar("T")

#: Length of the provider's rate-limit window in seconds (deAPI counts requests per minute).
RATE_WINDOW_SECONDS = 60.0
#: Settings copied from the caller to the workers. Never the key, the transport or the cache.
_FORWARDED = (
    "base_url",
    "tier",
    "rpm",
    "timeout",
    "connect_timeout",
    "max_retries",
    "max_retry_wait",
    "max_concurrency",
    "profile",
    "limits",
    "max_upload_mb",
    "allow_insecure_http",
    "user_agent_extra",
)
_SECRET_OPTION_WORDS = ("secret", "token", "password", "credential", "key")
_EMBED_REFUSED = {
    "client": "a client holds the API key and cannot be sent to workers",
    "dry_run": "estimate on the client with deapi_ds.estimate_embed(sample) instead",
    "progress": "workers show no progress bars; use distributed.progress(result.persist())",
    "data": None,
    "column": None,
    "model": None,
    "cache": None,
}
_TRANSCRIBE_REFUSED = {
    "client": "a client holds the API key and cannot be sent to workers",
    "progress": "workers show no progress bars; use distributed.progress(result.persist())",
    "keep_audio": "audio bytes are not sent back from the workers",
    "data": None,
    "column": None,
    "model": None,
    "cache": None,
}


def _require_dask() -> Any:
    try:
        import dask
        import dask.dataframe  # noqa: F401
    except ImportError as exc:  # pragma: no cover - the extra is installed in the test env
        raise ImportError(
            "deapi_ds.dask needs dask and distributed: pip install 'deapi-ds[dask]'"
        ) from exc
    return dask


# --------------------------------------------------------------------------------------------
# what travels in the task graph (non-secret)
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Job:
    endpoint: str
    overrides: tuple[tuple[str, Any], ...]
    cache_location: str
    cache_options: tuple[tuple[str, Any], ...]
    cache_compact_threshold: int
    rpm: float | None
    window: float
    max_concurrency: int | None


def _check_storage_options(options: Mapping[str, Any], path: str = "storage_options") -> None:
    for name, value in options.items():
        where = f"{path}[{name!r}]"
        if isinstance(value, Mapping):
            _check_storage_options(value, where)
        elif any(w in str(name).lower() for w in _SECRET_OPTION_WORDS) and value:
            raise InvalidParameterError(
                f"The cache's {where} looks like a credential; deapi_ds.dask does not put "
                "credentials into the Dask task graph. Give the workers their own credentials "
                "(environment variables such as AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, an "
                "instance role, or a config file) and keep only non-secret options such as "
                "endpoint_url in storage_options."
            )


def _local_hosts() -> set[str]:
    hosts = {"localhost", socket.gethostname()}
    with contextlib.suppress(OSError):
        hosts.update(socket.gethostbyname_ex(socket.gethostname())[2])
    return hosts


def _warn_if_not_shared(location: str) -> None:
    """A local folder is only shared when every worker runs on this machine (or mounts it)."""
    if "://" in location:
        return
    try:
        from distributed import default_client

        client = default_client()
    except (ImportError, ValueError):
        return
    try:
        workers = client.scheduler_info().get("workers", {})
    except Exception:  # noqa: BLE001 - only a hint
        return
    local = _local_hosts()
    remote = sorted(
        {
            h
            for h in (urlsplit(addr).hostname for addr in workers)
            if h and h not in local and not is_loopback(f"tcp://{h}")
        }
    )
    if remote:
        warnings.warn(
            f"The cache {location!r} is a local folder but workers run on other hosts "
            f"({', '.join(remote[:3])}). It must be the same shared folder (e.g. NFS) mounted at "
            "this path on every worker; otherwise use an fsspec URL such as "
            "cache='s3://bucket/deapi-cache', or rows will be paid for again.",
            stacklevel=3,
        )


def _make_job(
    endpoint: str, cache: Any, rpm: float | None, max_concurrency: int | None, func: str
) -> _Job:
    settings = get_config()
    if settings.transport is not None:
        raise ConfigurationError(
            f"deapi_ds.dask.{func}() cannot use an in-process transport (such as "
            "deapi_ds.use_emulator()): Dask workers are other processes. Serve the emulator on "
            "loopback instead: deapi_ds.use_emulator(loopback=True), or Emulator().serve() and "
            "DEAPI_BASE_URL=<its base_url> set before the cluster starts."
        )
    store = resolve_cache(cache, settings=settings)
    if isinstance(store, NullCache):
        raise InvalidParameterError(
            f"deapi_ds.dask.{func}() needs a result cache shared by all workers (cache is off: "
            f"cache={cache!r}, or DEAPI_DS_CACHE=0 / cache_enabled=False). Without it a lost "
            "worker or a rerun pays again for every row. Pass cache='s3://bucket/prefix' or a "
            "shared folder, or set DEAPI_DS_CACHE_DIR."
        )
    if not isinstance(store, ResultCache):
        raise InvalidParameterError(
            f"cache must be a folder, an fsspec URL or a ResultCache. Got {type(store).__name__}."
        )
    _check_storage_options(store.storage_options)
    _warn_if_not_shared(store.location)
    if rpm is None:
        rpm = settings.rpm_for(endpoint) or get_profile(settings).rpm_for(
            endpoint, settings.effective_tier
        )
    if rpm is not None:
        if isinstance(rpm, bool) or not isinstance(rpm, int | float) or not rpm >= 1:
            raise InvalidParameterError(
                f"rpm must be a number of requests per minute >= 1 for the whole cluster. Got {rpm!r}."
            )
        rpm = float(rpm)
    if max_concurrency is not None and (
        isinstance(max_concurrency, bool)
        or not isinstance(max_concurrency, int)
        or max_concurrency < 1
    ):
        raise InvalidParameterError(
            f"max_concurrency must be an int >= 1 (requests in flight across the cluster). "
            f"Got {max_concurrency!r}."
        )
    overrides = tuple((name, getattr(settings, name)) for name in _FORWARDED)
    overrides += (("progress", False), ("cache_dir", store.location))
    return _Job(
        endpoint=endpoint,
        overrides=overrides,
        cache_location=store.location,
        cache_options=tuple(sorted(store.storage_options.items())),
        cache_compact_threshold=store.compact_threshold,
        rpm=rpm,
        window=float(RATE_WINDOW_SECONDS),
        max_concurrency=max_concurrency,
    )


def _check_kwargs(
    kwargs: Mapping[str, Any], afn: Callable[..., Any], refused: Mapping[str, str | None], func: str
) -> None:
    valid = set(inspect.signature(afn).parameters) - set(refused)
    for name in kwargs:
        if name in refused and refused[name]:
            raise InvalidParameterError(
                f"deapi_ds.dask.{func}() does not take {name}=: {refused[name]}."
            )
        if name not in valid:
            raise InvalidParameterError(
                f"deapi_ds.dask.{func}() got an unknown option {name!r}. Valid options: "
                f"{sorted(valid)}, plus cache, rpm and max_concurrency."
            )


# --------------------------------------------------------------------------------------------
# the cluster-wide gate (runs on the workers)
# --------------------------------------------------------------------------------------------


class _Releaser:
    """One daemon thread per process that gives semaphore leases back when they are due."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Any]] = []
        self._cv = threading.Condition()
        self._count = itertools.count()
        self._thread: threading.Thread | None = None

    def schedule(self, delay: float, semaphore: Any) -> None:
        with self._cv:
            heapq.heappush(self._heap, (time.monotonic() + delay, next(self._count), semaphore))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="deapi_ds-lease-release", daemon=True
                )
                self._thread.start()
            self._cv.notify()

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._heap:
                    self._cv.wait()
                due, _, semaphore = self._heap[0]
                delay = due - time.monotonic()
                if delay > 0:
                    self._cv.wait(delay)
                    continue
                heapq.heappop(self._heap)
            try:
                semaphore.release()
            except Exception:  # noqa: BLE001 - the scheduler frees it after the lease timeout
                logger.warning("deapi_ds: could not release a rate-limit lease", exc_info=True)


_releaser = _Releaser()


async def _take(semaphore: Any, release_after: float | None = None) -> None:
    """Acquire one lease without blocking the event loop; cancellation never leaks a lease."""

    def attempt() -> bool:
        ok = semaphore.acquire(timeout=1.0)
        if ok and release_after is not None:
            _releaser.schedule(release_after, semaphore)  # scheduled even if we get cancelled
        return bool(ok)

    while True:
        with anyio.CancelScope(shield=True):
            ok = await anyio.to_thread.run_sync(attempt)
        if ok:
            return
        await anyio.sleep(0)  # a checkpoint: cancellation lands between attempts


class _Gate:
    """Cluster-wide limits for one endpoint, held by distributed semaphores."""

    def __init__(self, rate: Any | None, inflight: Any | None, hold: float) -> None:
        self.rate = rate
        self.inflight = inflight
        self.hold = hold

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        holding = False
        try:
            if self.inflight is not None:
                await _take(self.inflight)
                holding = True
            if self.rate is not None:  # last, right before the request is sent
                await _take(self.rate, release_after=self.hold)
            yield
        finally:
            if holding:
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(self.inflight.release)


class _ClusterEngine(Engine):
    """The engine, with every attempt on ``endpoint`` passing the cluster-wide gate."""

    def __init__(self, *, endpoint: str, gate: _Gate, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._gated_endpoint = endpoint
        self._gate = gate

    async def call(self, endpoint: str, fn: Callable[[], Awaitable[T]]) -> T:
        if endpoint != self._gated_endpoint:
            return await super().call(endpoint, fn)
        gate = self._gate

        async def attempt() -> T:
            async with gate.slot():
                return await fn()

        return await super().call(endpoint, attempt)


_worker_lock = threading.Lock()
_worker_clients: dict[Any, AsyncClient] = {}
_semaphores: dict[tuple[str, int], Any] = {}


def _in_distributed_worker() -> Any:
    try:
        from distributed import get_worker

        return get_worker()
    except (ImportError, ValueError):
        return None


def _semaphore(name: str, max_leases: int) -> Any:
    from distributed import Semaphore

    with _worker_lock:
        sem = _semaphores.get((name, max_leases))
        if sem is None:  # one instance per process: constructing re-registers max_leases
            sem = Semaphore(max_leases=max_leases, name=name)
            _semaphores[(name, max_leases)] = sem
        return sem


def _worker_client(job: _Job) -> AsyncClient:
    """The worker process's client for this job's settings (call inside its config_context)."""
    settings = get_config()
    worker = _in_distributed_worker()
    if settings.api_key is None:
        where = f"the Dask worker {worker.address}" if worker is not None else "this process"
        raise MissingAPIKeyError(
            f"No deAPI key on {where}: set the DEAPI_API_KEY environment variable in every "
            "worker's environment (deapi_ds never sends the key through the task graph). A "
            "LocalCluster inherits it when it is set before the cluster starts; for a remote "
            "cluster set it where the workers are launched (job script, container or pod spec)."
        )
    settings.require_key()  # the plain-http and OPENAI_API_KEY checks, on the worker
    gated = worker is not None and (job.rpm is not None or job.max_concurrency is not None)
    ident = (_settings_key(settings), job.endpoint, job.rpm, job.window, job.max_concurrency, gated)
    with _worker_lock:
        client = _worker_clients.get(ident)
    if client is not None:
        return client
    profile = get_profile(settings)
    tier = settings.effective_tier

    def rpm_for(endpoint: str) -> float | None:
        if endpoint == job.endpoint:
            return None if gated else job.rpm  # the gate holds the cluster-wide budget
        return settings.rpm_for(endpoint) or profile.rpm_for(endpoint, tier)

    concurrency = settings.max_concurrency
    if job.max_concurrency is not None:
        concurrency = min(concurrency, job.max_concurrency)
    options: dict[str, Any] = {
        "max_concurrency": concurrency,
        "rpm": rpm_for,
        "retry": RetryPolicy(settings.max_retries, max_retry_wait=settings.max_retry_wait),
    }
    if gated:
        rate = _semaphore(f"deapi_ds-{job.endpoint}-rpm", max(1, int(job.rpm))) if job.rpm else None
        inflight = (
            _semaphore(f"deapi_ds-{job.endpoint}", job.max_concurrency)
            if job.max_concurrency
            else None
        )
        hold = job.window + max(0.5, 0.02 * job.window)
        engine: Engine = _ClusterEngine(
            endpoint=job.endpoint, gate=_Gate(rate, inflight, hold), **options
        )
    else:
        engine = Engine(**options)
    # the local limiter adapts to X-RateLimit-* headers in the same window as the budget
    engine.limiter(job.endpoint).window = job.window
    client = AsyncClient(settings=settings, engine=engine)
    with _worker_lock:
        return _worker_clients.setdefault(ident, client)


def _job_cache(job: _Job) -> ResultCache:
    return _shared_cache(job.cache_location, dict(job.cache_options), job.cache_compact_threshold)


# --------------------------------------------------------------------------------------------
# embeddings
# --------------------------------------------------------------------------------------------

_EMBED_COLUMNS = ("status", "error_type", "error", "tokens", "embedding")


def _embed_meta(index: pd.Index) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "status": pd.array([], dtype=STATUS_DTYPE),
            "error_type": pd.array([], dtype=STATUS_DTYPE),
            "error": pd.array([], dtype=STATUS_DTYPE),
            "tokens": pd.array([], dtype="Int64"),
            "embedding": pd.Series([], dtype=object).array,
        },
        index=index[:0],
    )


def _embed_partition(
    part: pd.Series, job: _Job, model: str, kwargs: Mapping[str, Any]
) -> pd.DataFrame:
    """Runs on a worker: embed one partition with the shared cache and the cluster gate."""
    with config_context(**dict(job.overrides)):
        client = _worker_client(job)
        try:
            res = _embeddings.embed(
                part, model=model, client=client, cache=_job_cache(job), progress=False, **kwargs
            )
        except BatchError as exc:  # every row of this partition failed: they stay rows
            res = exc.partial
    frame = res.frame[["status", "error_type", "error", "tokens"]]
    return frame.assign(embedding=res.to_series())


def _dask_series(data: Any, column: Any, func: str) -> Any:
    _require_dask()
    import dask.dataframe as dd

    if isinstance(data, dd.DataFrame):
        columns = list(data.columns)
        if column is None:
            if len(columns) == 1:
                return data[columns[0]]
            raise InvalidParameterError(
                f"deapi_ds.dask.{func}() got a Dask DataFrame with {len(columns)} columns; say "
                f"which one to use: {func}(ddf, 'column'). Available columns: {columns}."
            )
        if column not in columns:
            raise InvalidParameterError(
                f"Column {column!r} not found. Available columns: {columns}."
            )
        return data[column]
    if column is not None:
        raise InvalidParameterError(
            f"deapi_ds.dask.{func}(data, column) takes a column only when data is a Dask "
            f"DataFrame; got {type(data).__name__}."
        )
    if isinstance(data, dd.Series):
        return data
    if isinstance(data, pd.DataFrame | pd.Series):
        raise InvalidParameterError(
            f"deapi_ds.dask.{func}() takes Dask collections; for a pandas object call "
            f"deapi_ds.{func}(...) directly, or wrap it: dask.dataframe.from_pandas(df, npartitions=8)."
        )
    raise InvalidParameterError(
        f"deapi_ds.dask.{func}() takes a Dask DataFrame and a column, or a Dask Series; got "
        f"{type(data).__name__}."
    )


def embed(
    data: Any,
    column: Any = None,
    *,
    model: str = "Bge_M3_FP16",
    cache: Any = USE_DEFAULT,
    rpm: float | None = None,
    max_concurrency: int | None = None,
    **embed_kwargs: Any,
) -> Any:
    """Embed a text column of a Dask DataFrame on the cluster; returns a lazy Dask DataFrame.

    ``data`` is a Dask DataFrame with ``column``, or a Dask Series. The result has the input's
    partitions, divisions and index, and the columns ``status``, ``error_type``, ``error``
    (string), ``tokens`` (Int64) and ``embedding`` (object cells holding float32 numpy vectors,
    NaN vectors where a row has none, exactly like :meth:`EmbeddingResult.to_series`). Use
    :func:`to_matrix` for a float32 matrix.

    - ``cache``: the location every worker shares (default: the configured ``cache_dir``); a
      run without a cache is refused.
    - ``rpm``: requests per minute for the whole cluster (default: the configured budget);
      ``max_concurrency``: requests in flight across the cluster (default: the configured
      ``max_concurrency`` per worker process). See the module docstring.
    - Other options as in :func:`deapi_ds.embed` (``on_long``, ``on_empty``, ``convert``,
      ``max_inputs``, ``dimensions``, ...). Batches are packed per partition, so partitions
      should hold at least ``max_inputs`` rows (2048 for deAPI) for full requests.

    >>> emb = deapi_ds.dask.embed(ddf, "text", cache="s3://bucket/deapi-cache")  # doctest: +SKIP
    >>> ddf = ddf.assign(embedding=emb["embedding"])                              # doctest: +SKIP
    """
    series = _dask_series(data, column, "embed")
    _check_kwargs(embed_kwargs, _embeddings.aembed, _EMBED_REFUSED, "embed")
    if not isinstance(model, str) or not model:
        raise InvalidParameterError(
            f"model must be a model name such as 'Bge_M3_FP16'. Got {model!r}."
        )
    job = _make_job(_embeddings.TASK, cache, rpm, max_concurrency, "embed")
    return series.map_partitions(
        _embed_partition,
        job,
        model,
        dict(embed_kwargs),
        meta=_embed_meta(series._meta.index),
    )


def _has_vector(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def _stack(cells: pd.Series, dimension: int) -> np.ndarray:
    out = np.full((len(cells), dimension), np.nan, dtype=np.float32)
    for i, value in enumerate(cells.to_numpy(dtype=object)):
        if not _has_vector(value):
            continue
        vec = np.asarray(value, dtype=np.float32)
        if vec.shape != (dimension,):
            raise InvalidParameterError(
                f"Row {cells.index[i]!r} of column {cells.name!r} holds a vector of shape "
                f"{vec.shape}; expected ({dimension},). Pass the right dimension= to to_matrix()."
            )
        out[i] = vec
    return out


def _first_dimension(cells: Any) -> int:
    for i in range(cells.npartitions):
        part = cells.partitions[i].compute()
        for value in part.to_numpy(dtype=object):
            if _has_vector(value):
                return int(np.asarray(value).shape[-1])
    raise InvalidParameterError(
        "No row has a vector, so the dimension is unknown; pass dimension= to to_matrix()."
    )


def to_matrix(data: Any, column: str = "embedding", *, dimension: int | None = None) -> Any:
    """The vectors of ``column`` as a float32 matrix, one chunk per partition (NaN rows where none).

    Given the Dask DataFrame from :func:`embed`, returns a lazy ``dask.array`` (row chunks are
    unknown until computed; ``.compute()`` gives a C-contiguous numpy matrix). Given a computed
    pandas DataFrame, returns the numpy matrix directly. Without ``dimension`` it is taken from
    the first vector, which computes the first partitions that hold one (they are cached, so the
    full computation later does not pay for them again).

    >>> X = deapi_ds.dask.to_matrix(emb).compute()       # doctest: +SKIP
    """
    if isinstance(data, pd.DataFrame):
        if column not in data.columns:
            raise InvalidParameterError(
                f"Column {column!r} not found. Available columns: {list(data.columns)}."
            )
        cells = data[column]
        if dimension is None:
            found = next((v for v in cells.to_numpy(dtype=object) if _has_vector(v)), None)
            if found is None:
                raise InvalidParameterError(
                    "No row has a vector, so the dimension is unknown; pass dimension=."
                )
            dimension = int(np.asarray(found).shape[-1])
        return np.ascontiguousarray(_stack(cells, int(dimension)))
    _require_dask()
    import dask.dataframe as dd

    if not isinstance(data, dd.DataFrame):
        raise InvalidParameterError(
            f"to_matrix() takes the Dask DataFrame returned by deapi_ds.dask.embed() (or a "
            f"computed pandas DataFrame). Got {type(data).__name__}."
        )
    if column not in data.columns:
        raise InvalidParameterError(
            f"Column {column!r} not found. Available columns: {list(data.columns)}."
        )
    cells = data[column]
    if dimension is None:
        dimension = _first_dimension(cells)
    if isinstance(dimension, bool) or not isinstance(dimension, int) or dimension < 1:
        raise InvalidParameterError(f"dimension must be an int >= 1. Got {dimension!r}.")
    return cells.map_partitions(_stack, dimension, meta=np.empty((0, dimension), dtype=np.float32))


# --------------------------------------------------------------------------------------------
# transcription
# --------------------------------------------------------------------------------------------


class TranscriptionTables(NamedTuple):
    """The three tables of a cluster transcription, as lazy Dask DataFrames.

    They share the per-partition tasks: ``dask.compute(t.files, t.segments, t.words)`` runs
    each partition once (computing them separately is free too, from the cache).
    """

    files: Any
    segments: Any
    words: Any


def _transcription_metas(model: str) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    from . import transcription as _tr

    empty = _tr._assemble([], pd.RangeIndex(0), model=model, meta={}, kept={})
    return (
        empty.files.iloc[:0],
        _normalize_segments(empty.segments),
        _normalize_words(empty.words),
    )


def _normalize_segments(frame: pd.DataFrame) -> pd.DataFrame:
    if "speaker" not in frame.columns:  # the same columns in every partition
        frame = frame.assign(speaker=pd.array([None] * len(frame), dtype="string"))
    return frame


def _normalize_words(frame: pd.DataFrame) -> pd.DataFrame:
    if "probability" not in frame.columns:
        frame = frame.assign(probability=pd.array([None] * len(frame), dtype="Float64"))
    return frame


def _transcribe_partition(
    part: Any, job: _Job, model: str, kwargs: Mapping[str, Any]
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Runs on a worker: transcribe one partition of paths; returns (files, segments, words)."""
    from . import transcription as _tr

    if not isinstance(part, pd.Series):  # a bag partition: a list of paths
        part = pd.Series(list(part), dtype=object)
    with config_context(**dict(job.overrides)):
        client = _worker_client(job)
        try:
            res = _tr.transcribe(
                part, model=model, client=client, cache=_job_cache(job), progress=False, **kwargs
            )
        except BatchError as exc:  # every file of this partition failed: they stay rows
            res = exc.partial
    return (
        res.files,
        _normalize_segments(res.segments).reset_index(drop=True),
        _normalize_words(res.words).reset_index(drop=True),
    )


def transcribe_tables(
    paths: Any,
    column: Any = None,
    *,
    model: str = "WhisperLargeV3",
    cache: Any = USE_DEFAULT,
    rpm: float | None = None,
    max_concurrency: int | None = None,
    **kwargs: Any,
) -> TranscriptionTables:
    """Transcribe a Dask collection of audio/video paths; returns files, segments and words.

    ``paths`` is a Dask Series (or a Dask DataFrame with ``column``) of paths every worker can
    read (a shared folder), or a ``dask.bag`` of paths. ``files`` keeps the Series' partitions,
    divisions and index (for a bag the index restarts at 0 in each partition);
    ``segments`` and ``words`` join on ``file`` (the path). Options as in
    :func:`deapi_ds.transcribe` (``language``, ``response_format``, ``word_timestamps``,
    ``max_upload_mb``, ``concurrency``), plus ``cache``, ``rpm`` and ``max_concurrency`` as in
    :func:`embed`.

    >>> t = deapi_ds.dask.transcribe_tables(dd.from_pandas(paths, npartitions=16))  # doctest: +SKIP
    >>> files, segments = dask.compute(t.files, t.segments)                          # doctest: +SKIP
    """
    dask = _require_dask()
    import dask.bag as db
    import dask.dataframe as dd

    from . import transcription as _tr

    _check_kwargs(kwargs, _tr.atranscribe, _TRANSCRIBE_REFUSED, "transcribe")
    if isinstance(paths, db.Bag):
        if column is not None:
            raise InvalidParameterError("column= applies to a Dask DataFrame, not to a bag.")
        parts = paths.to_delayed()
        divisions = None
    else:
        series = _dask_series(paths, column, "transcribe")
        parts = series.to_delayed()
        divisions = series.divisions
    job = _make_job(_tr.TASK, cache, rpm, max_concurrency, "transcribe")
    files_meta, seg_meta, word_meta = _transcription_metas(model)
    if divisions is not None:
        files_meta = files_meta.set_axis(series._meta.index[:0])
    run = dask.delayed(_transcribe_partition, pure=True)
    results = [run(part, job, model, dict(kwargs)) for part in parts]
    return TranscriptionTables(
        files=dd.from_delayed([r[0] for r in results], meta=files_meta, divisions=divisions),
        segments=dd.from_delayed([r[1] for r in results], meta=seg_meta),
        words=dd.from_delayed([r[2] for r in results], meta=word_meta),
    )


def transcribe(
    paths: Any,
    column: Any = None,
    *,
    model: str = "WhisperLargeV3",
    cache: Any = USE_DEFAULT,
    rpm: float | None = None,
    max_concurrency: int | None = None,
    **kwargs: Any,
) -> Any:
    """Transcribe a Dask collection of paths; returns the lazy ``files`` table (one row per path).

    The same as ``transcribe_tables(...).files``; see :func:`transcribe_tables` for the segments
    and words.

    >>> files = deapi_ds.dask.transcribe(ddf, "path", language="en").compute()  # doctest: +SKIP
    """
    return transcribe_tables(
        paths,
        column,
        model=model,
        cache=cache,
        rpm=rpm,
        max_concurrency=max_concurrency,
        **kwargs,
    ).files
