"""The one task path under every task (embeddings, images, speech, video, transcription, and
the native tasks).

::

    input ──► rows (one as_series, one notion of "missing", one text check)
          ──► units: the distinct pieces of work, keyed (task, model, params, content)
          ──► cache lookup ──► pack into batches (the task's rule)
          ──► per batch: re-check the cache, claim the keys against other processes,
              the task's call through the engine (rate limit, daily quota, retries)
          ──► validate; keep the valid part of a partial answer; re-ask only what is missing
          ──► persist the batch (one failure policy: warn once, keep the results, go on)
          ──► per-unit status + error ──► progress (one adapter, rate-limit waits shown)
          ──► the task assembles its aligned result

A task module supplies a :class:`Task`: how to key its units (:meth:`Task.keys`), how to pack
them (:meth:`Task.pack`), the call for one batch (:meth:`Task.call`, returning an
:class:`Answer`), cache table ↔ values (:meth:`Task.from_cache`, :meth:`Task.to_cache`) and
where good values go (:meth:`Task.accept`). Everything else is here, once.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import re
import sys
import warnings
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import anyio
import numpy as np
import pandas as pd
import pyarrow as pa

from . import _exceptions
from ._cache import ResultCache, make_keys
from ._common import is_missing
from ._exceptions import (
    AuthenticationError,
    BatchError,
    CacheWarning,
    ConfigurationError,
    DeapiError,
    InvalidParameterError,
    ModelNotFoundError,
    PermissionDeniedError,
    QuotaExceededError,
    ResponseValidationError,
)
from ._quota import quota_status

__all__ = [
    "CACHED",
    "ERROR",
    "FATAL_ERRORS",
    "OK",
    "PENDING",
    "QUOTA",
    "Answer",
    "Outcome",
    "Progress",
    "Task",
    "as_series",
    "check_outcome",
    "is_missing",
    "map_batches",
    "run_task",
    "text_problem",
]

B = TypeVar("B")
R = TypeVar("R")

#: Errors after which no other batch can succeed: stop the run instead of failing every row.
FATAL_ERRORS: tuple[type[BaseException], ...] = (
    ConfigurationError,
    AuthenticationError,
    PermissionDeniedError,
    ModelNotFoundError,
    InvalidParameterError,
)

# unit outcomes
PENDING, OK, CACHED, ERROR, QUOTA = 0, 1, 2, 3, 4
STATUS_NAMES = np.array(["pending", "ok", "cached", "error", "quota"], dtype=object)

LOOKUP_CHUNK = 65_536


# --- rows --------------------------------------------------------------------------------------


_SURROGATE = re.compile("[\ud800-\udfff]")


def text_problem(value: str) -> str | None:
    """Why ``value`` cannot be sent as UTF-8 JSON (a lone surrogate), or None."""
    found = _SURROGATE.search(value)
    if found is not None:
        ch = found.group()
        return (
            f"contains a lone surrogate {ch!r} at position {found.start()}, which is not valid "
            "UTF-8 and cannot be sent; clean it first, e.g. "
            "s.str.encode('utf-8', 'replace').str.decode('utf-8')"
        )
    return None


def as_series(
    data: Any,
    column: Any = None,
    *,
    func: str,
    what: str = "texts",
    default_column: str | None = None,
) -> pd.Series:
    """Normalise a task's input to a Series, keeping a Series' or DataFrame's index.

    ``data`` is a str, a sequence, a Series, or a DataFrame with ``column`` (a name or a Series;
    a one-column frame or ``default_column`` needs none). Errors name the function and list the
    available columns.
    """
    if isinstance(data, pd.DataFrame):
        if isinstance(column, pd.Series):
            return column
        if column is None:
            if default_column is not None and default_column in data.columns:
                column = default_column
            elif data.shape[1] == 1:
                return data.iloc[:, 0]
            else:
                raise InvalidParameterError(
                    f"{func}() got a DataFrame with {data.shape[1]} columns; say which one holds "
                    f"the {what}: {func}(df, 'column'). Available columns: {list(data.columns)}."
                )
        if column not in data.columns:
            raise InvalidParameterError(
                f"Column {column!r} not found. Available columns: {list(data.columns)}."
            )
        return data[column]
    if isinstance(column, pd.Series) and data is None:
        return column
    if column is not None:
        raise InvalidParameterError(
            f"{func}(data, column) takes a column only when data is a DataFrame; got "
            f"{type(data).__name__}."
        )
    if isinstance(data, pd.Series):
        return data
    if isinstance(data, str | bytes | bytearray | memoryview | os.PathLike):
        return pd.Series([data], dtype=object)
    if isinstance(data, dict):
        raise InvalidParameterError(
            f"{func}() got a dict; its keys would be taken as the {what}. Pass "
            f"pd.Series(d) (the values, with the keys as the index) or list(d.values())."
        )
    if isinstance(data, np.ndarray) and data.ndim != 1:
        raise InvalidParameterError(
            f"{func}() takes a 1-D array of {what}; got shape {data.shape}."
        )
    try:
        values = list(data)
    except TypeError:
        raise InvalidParameterError(
            f"{func}() takes a str, a list of {what}, a Series or a DataFrame and a column name; "
            f"got {type(data).__name__}."
        ) from None
    return pd.Series(values, dtype=object)


# --- running batches ---------------------------------------------------------------------------


async def map_batches(
    batches: Sequence[B],
    worker: Callable[[B], Awaitable[R]],
    *,
    on_done: Callable[[B, R | None, BaseException | None], Any],
    limit: int = 64,
    stop_on: tuple[type[BaseException], ...] = (),
) -> BaseException | None:
    """Run ``worker(batch)`` for every batch, at most ``limit`` at once.

    ``on_done(batch, result, error)`` is called (in the loop thread, shielded from
    cancellation) as each batch finishes; a batch's ordinary error is passed to it and the run
    goes on. An error from :data:`FATAL_ERRORS` cancels the remaining batches and is raised
    after the finished ones have been handed to ``on_done``. An error from ``stop_on`` (a spent
    daily quota) is handed to ``on_done`` too, stops the batches not yet started, and is
    returned. Cancellation (Ctrl-C) propagates.
    """
    semaphore = anyio.Semaphore(max(1, limit))
    fatal: list[BaseException] = []
    stopped: list[BaseException] = []

    async def one(batch: B, tg: anyio.abc.TaskGroup) -> None:
        async with semaphore:
            if fatal or stopped:
                if stopped and not fatal:
                    with anyio.CancelScope(shield=True):
                        await _maybe_await(on_done(batch, None, stopped[0]))
                return
            try:
                result = await worker(batch)
            except FATAL_ERRORS as exc:
                if not fatal:
                    fatal.append(exc)
                tg.cancel_scope.cancel()
                return
            except Exception as exc:  # noqa: BLE001 - becomes this batch's per-row error
                result, error = None, exc
                if stop_on and isinstance(exc, stop_on) and not stopped:
                    stopped.append(exc)
            else:
                error = None
            # shielded: a batch that was paid for is recorded even if the run is being cancelled
            with anyio.CancelScope(shield=True):
                await _maybe_await(on_done(batch, result, error))

    async with anyio.create_task_group() as tg:
        for batch in batches:
            tg.start_soon(one, batch, tg)
    if fatal:
        raise fatal[0]
    return stopped[0] if stopped else None


async def _maybe_await(value: Any) -> Any:
    if hasattr(value, "__await__"):
        return await value
    return value


# --- what a task supplies ----------------------------------------------------------------------


@dataclasses.dataclass
class Answer:
    """What one batch call returned.

    ``ids`` are the units answered well and ``value`` their results, aligned with ``ids`` (in
    the task's own type: matrix rows, a list of records, ...). ``errors`` maps units to a
    definite per-unit error (not asked again). Units of the batch in neither were missing from
    the server's answer: the pipeline asks for them again, up to the retry budget.
    """

    ids: np.ndarray
    value: Any
    errors: dict[int, BaseException] = dataclasses.field(default_factory=dict)
    statuses: dict[int, int] = dataclasses.field(default_factory=dict)


class Task:
    """One run of a task, as the pipeline sees it. Subclass and fill in what is the task's own.

    Attributes: ``name`` (the cache namespace, e.g. ``"embeddings"``), ``func`` (the public
    function, for messages), ``model``, ``params`` (output-changing parameters, part of every
    key), ``cache_columns`` (read back from the cache), ``endpoint`` (the engine endpoint of
    its requests, for rate limits and quotas), ``contents`` (one key input per unit: str or
    bytes).
    """

    name: str = ""
    func: str = ""
    model: str = ""
    endpoint: str = ""
    params: dict[str, Any]
    contents: Sequence[str | bytes]
    #: columns read back from the cache besides ``key`` (None: all of them)
    cache_columns: Sequence[str] | None = ()
    #: progress bar unit and description
    unit_name: str = "row"
    #: batches in flight at once (None: twice the client's max_concurrency)
    concurrency: int | None = None
    #: set by the pipeline: persists a table with the one failure policy (job ids at creation)
    writer: CacheWriter

    def keys(self) -> list[str]:
        """One cache key per unit (default: from ``contents``)."""
        if not len(self.contents):
            return []
        return make_keys(self.name, self.model, self.params, self.contents)

    def weights(self) -> np.ndarray | None:
        """Progress weight of each unit (rows it stands for, seconds of audio, ...); None: 1."""
        return None

    async def ahead(self, ids: np.ndarray) -> None:
        """Work that runs beside the sends, after the cache lookup (default: none); e.g. probing
        files so that uploads start at once. ``ids`` are the units to send."""

    async def ready(self, ids: np.ndarray) -> None:
        """Wait until a batch can be sent (default: at once); e.g. until its file is probed.
        Runs before the batch takes its turn, so requests still go out in input order."""

    def pack(self, ids: np.ndarray) -> list[np.ndarray]:
        """Batches of units to send (default: one unit per request)."""
        return [ids[i : i + 1] for i in range(len(ids))]

    async def call(self, ids: np.ndarray) -> Answer:
        """Send one batch; raise for a batch-level error."""
        raise NotImplementedError

    def from_cache(self, ids: np.ndarray, table: pa.Table) -> np.ndarray:
        """Take cached rows (``table`` has ``key`` + ``cache_columns``, rows for ``ids`` in
        order); return the ids accepted (others are treated as not cached)."""
        raise NotImplementedError

    def accept(self, ids: np.ndarray, value: Any) -> None:
        """Store good results for ``ids`` (from :meth:`call`)."""
        raise NotImplementedError

    def to_cache(self, ids: np.ndarray, value: Any, keys: Sequence[str]) -> pa.Table | None:
        """The cache table for a batch's good results (None: nothing to store)."""
        raise NotImplementedError


# --- the pieces of the path ----------------------------------------------------------------------


class Progress:
    """The one progress adapter: a bar in the task's unit (rows, images, clips, or fractional
    audio seconds with ``unit="s"``), counting cached and failed work and showing the
    engine's rate-limit waits. ``failed`` counts are items (rows, files), not weights."""

    def __init__(
        self, total: float, *, desc: str, unit: str, show: bool | None, engine: Any = None
    ) -> None:
        from .display import progress as make_progress  # lazy: widgets

        self._exact = unit == "s"
        self._total = float(total)
        self._shown_total = self._q(total)
        self._bar = make_progress(
            self._shown_total, desc=desc, unit=unit, disable=None if show is None else not show
        )
        self._done = 0.0
        self._failed = 0.0
        self._reported: float = 0
        self._reported_failed = 0
        self._stop = engine.add_wait_listener(self._bar.waiting) if engine is not None else None

    def _q(self, value: float) -> float:
        return round(float(value), 3) if self._exact else round(value)

    @property
    def bar(self) -> Any:
        return self._bar

    def cached(self, weight: float) -> None:
        """Work found in the cache (counted as done at once)."""
        step = self._q(weight)
        if step > 0:
            self._bar.set_cached(step)
            self._reported += step
        self._done += weight

    def grow(self, weight: float) -> None:
        """The total grows (transcription learns durations as it probes files)."""
        self._total += weight
        self._set_total(max(self._q(self._total), self._reported))

    def _set_total(self, value: float) -> None:
        if value != self._shown_total:
            self._shown_total = value
            self._bar.total = value

    def advance(self, weight: float, failed: float = 0.0) -> None:
        self._done += weight
        self._failed += failed
        step = max(0, self._q(self._done) - self._reported)
        if self._exact:
            step = round(step, 3)
        failed_step = max(0, round(self._failed) - self._reported_failed)
        if step > 0 or failed_step > 0:
            new = self._reported + step
            if new > self._shown_total:
                self._set_total(new)
            self._reported = new
            self._reported_failed += failed_step
            self._bar.update(step, failed=failed_step)

    def close(self, complete: bool = True) -> None:
        if complete and self._reported < self._shown_total:
            self._bar.update(self._shown_total - self._reported)  # rounding of shared units
            self._reported = self._shown_total
        if self._stop is not None:
            self._stop()
        self._bar.close()


class CacheWriter:
    """Persists batches, one at a time, off the event loop, with the one failure policy: a
    failed write warns once with the reason, the results stay in the returned object and the
    run goes on (a rerun pays for those rows again, and the warning says so)."""

    def __init__(self, store: Any, task: str, model: str, func: str) -> None:
        self.store = store
        self.task = task
        self.model = model
        self.func = func
        self.failed_rows = 0
        self.written_rows = 0
        self._lock: anyio.Lock | None = None
        self._pending: list[pa.Table] = []
        self._offload = isinstance(store, ResultCache)

    async def write(self, table: pa.Table | None) -> None:
        """Persist ``table`` before returning. Tables that arrive while a write is in progress
        go out together in the next one (group commit: a fast run does not leave one parquet
        file per request, and the network is not held up by the disk)."""
        if table is None or table.num_rows == 0:
            return
        if self._lock is None:
            self._lock = anyio.Lock()
        self._pending.append(table)
        async with self._lock:
            if not self._pending:
                return  # written by the previous holder of the lock
            tables, self._pending = self._pending, []
            for group in _combinable(tables):
                await self._write_one(group)

    async def _write_one(self, table: pa.Table) -> None:
        try:
            if self._offload:
                await anyio.to_thread.run_sync(self.store.write, self.task, self.model, table)
            else:
                self.store.write(self.task, self.model, table)
        except Exception as exc:  # noqa: BLE001 - the one cache-write failure policy
            self._failed(exc, table.num_rows)
        else:
            self.written_rows += table.num_rows

    def _failed(self, exc: BaseException, rows: int) -> None:
        first = self.failed_rows == 0
        self.failed_rows += rows
        if first:
            warnings.warn(
                f"{self.func}(): the cache could not be written ({type(exc).__name__}: {exc}). "
                "The results are in the returned object, but a rerun will pay for them again; "
                "later write failures of this call are not reported again.",
                CacheWarning,
                stacklevel=2,
            )


def _combinable(tables: list[pa.Table]) -> list[pa.Table]:
    """Tables with the same schema concatenated (others stay apart)."""
    groups: dict[pa.Schema, list[pa.Table]] = {}
    for table in tables:
        groups.setdefault(table.schema, []).append(table)
    return [g[0] if len(g) == 1 else pa.concat_tables(g) for g in groups.values()]


def _lookup(store: Any, task: Task, keys: list[str], ids: np.ndarray) -> pa.Table | None:
    """Cached rows for ``keys`` (a failed read warns and counts as a miss)."""
    try:
        columns = None if task.cache_columns is None else ["key", *task.cache_columns]
        table = store.lookup(task.name, task.model, keys, columns=columns)
    except (DeapiError, OSError) as exc:
        warnings.warn(
            f"{task.func}(): the cache could not be read ({exc}); those rows are sent again.",
            CacheWarning,
            stacklevel=3,
        )
        return None
    return table if table.num_rows else None


@dataclasses.dataclass
class Outcome:
    """Per-unit results of a run."""

    status: np.ndarray  # int8 per unit: PENDING/OK/CACHED/ERROR/QUOTA (or a task's own code)
    errors: dict[int, BaseException]
    requests: int
    stopped: BaseException | None  # the QuotaExceededError that stopped the run, if any
    uncached_rows: int

    def error_of(self, uid: int) -> tuple[str, str]:
        exc = self.errors[uid]
        return type(exc).__name__, str(exc) or type(exc).__name__


class _Run:
    """The shared state of one task run (see :func:`run_task`)."""

    def __init__(
        self,
        task: Task,
        *,
        store: Any,
        engine: Any,
        max_retries: int,
        retry_wait: Callable[[int], float],
        concurrency: int,
        progress: Progress | None,
    ) -> None:
        self.task = task
        self.store = store
        self.engine = engine
        self.max_retries = max_retries
        self.retry_wait = retry_wait
        self.concurrency = concurrency
        self.progress = progress
        self.keys = task.keys()
        n = len(self.keys)
        self.status = np.zeros(n, dtype=np.int8)
        self.errors: dict[int, BaseException] = {}
        w = task.weights()
        self.weights = np.ones(n, dtype=np.float64) if w is None else np.asarray(w, np.float64)
        self.writer = CacheWriter(store, task.name, task.model, task.func)
        task.writer = self.writer  # job-style tasks record job ids the moment they exist
        self.requests = 0
        self.real_cache = isinstance(store, ResultCache)
        # launch-order tickets: requests go out in input order whatever the threads do
        self._tickets = 0
        self._served = 0
        self._done_tickets: set[int] = set()
        self._turns: dict[int, anyio.Event] = {}

    # lookup ---------------------------------------------------------------------------------
    def lookup_all(self) -> None:
        n = len(self.keys)
        for start in range(0, n, LOOKUP_CHUNK):
            ids = np.arange(start, min(n, start + LOOKUP_CHUNK), dtype=np.int64)
            self.take_cached(ids)
        if self.progress is not None:
            self.progress.cached(float(self.weights[self.status == CACHED].sum()))

    def take_cached(self, ids: np.ndarray, table: Any = False) -> np.ndarray:
        """Look ``ids`` up (or take ``table``, looked up already); accepted ones become CACHED.
        Returns the ids still to send."""
        keys = [self.keys[i] for i in ids]
        if table is False:
            table = _lookup(self.store, self.task, keys, ids)
        if table is None:
            return ids
        pos = {k: int(i) for k, i in zip(keys, ids, strict=True)}
        found = np.fromiter(
            (pos[k] for k in table.column("key").to_pylist()), np.int64, count=table.num_rows
        )
        accepted = self.task.from_cache(found, table)
        self.status[accepted] = CACHED
        return ids[self.status[ids] == PENDING]

    # one batch ------------------------------------------------------------------------------
    async def send(self, ids: np.ndarray) -> None:
        # Claim the batch's keys first, then re-check the cache: a process that released a
        # claim had written its results before, so whatever another notebook, process or Dask
        # worker paid for since our lookup is read here instead of paid for twice; keys
        # another live process holds are waited for. Both run in worker threads, side by
        # side for several batches; a ticket taken at launch keeps the requests in input order.
        ticket = self._tickets
        self._tickets += 1
        claim = None
        try:
            if self.real_cache:
                claim = await anyio.to_thread.run_sync(self._claim, ids)
                for _ in range(3):  # another process may claim again while we wait
                    if claim is None or claim.mine.all():
                        break
                    claim, ids = await self._wait_for_others(ids, claim)
                if len(ids):
                    ids = await self._recheck(ids)
            if len(ids):
                await self.task.ready(ids)
            await self._turn(ticket)
            self._pass(ticket)  # the next batch may go as soon as this one is on its way
            ticket = -1
            if len(ids):
                await self._ask(ids)
        finally:
            if ticket >= 0:  # gave up before its turn: let the batches after it go
                self._pass(ticket)
            if claim is not None:
                claim.release()

    async def _turn(self, ticket: int) -> None:
        """Wait until every batch launched before this one has sent (or given up)."""
        while self._served < ticket:
            event = self._turns.setdefault(ticket, anyio.Event())
            await event.wait()

    def _pass(self, ticket: int) -> None:
        self._done_tickets.add(ticket)
        while self._served in self._done_tickets:
            self._done_tickets.discard(self._served)
            self._served += 1
            event = self._turns.pop(self._served, None)
            if event is not None:
                event.set()

    async def _recheck(self, ids: np.ndarray) -> np.ndarray:
        before = ids
        ids = self.take_cached(ids, await self._lookup_off_loop(ids))
        self._advance_cached(before, ids)
        return ids

    async def _lookup_off_loop(self, ids: np.ndarray) -> pa.Table | None:
        """The cache lookup of a batch in a worker thread: a write in progress (in its own
        thread) must not hold up the event loop and with it every other batch."""
        keys = [self.keys[i] for i in ids]
        return await anyio.to_thread.run_sync(_lookup, self.store, self.task, keys, ids)

    def _claim(self, ids: np.ndarray) -> Any:
        claim = getattr(self.store, "claim", None)
        if claim is None or not self.real_cache:
            return None
        return claim(self.task.name, self.task.model, [self.keys[i] for i in ids])

    async def _wait_for_others(self, ids: np.ndarray, claim: Any) -> tuple[Any, np.ndarray]:
        """Rows another live process has in flight: let go of ours (no process waits while
        holding keys another one may wait for), wait for the others, take what they delivered
        from the cache, and claim anew what is still to send."""
        others = ids[~claim.mine]
        keys = [self.keys[i] for i in others]
        claim.release()
        task = self.task
        await anyio.to_thread.run_sync(
            lambda: self.store.wait_released(task.name, task.model, keys, timeout=600.0)
        )
        still = self.take_cached(others, await self._lookup_off_loop(others))
        self._advance_cached(others, still)
        ids = np.sort(np.concatenate([ids[claim.mine], still]))
        return await anyio.to_thread.run_sync(self._claim, ids), ids

    def _advance_cached(self, before: np.ndarray, after: np.ndarray) -> None:
        if self.progress is not None and len(after) < len(before):
            taken = np.setdiff1d(before, after, assume_unique=True)
            self.progress.advance(float(self.weights[taken].sum()))

    async def _ask(self, ids: np.ndarray) -> None:
        """The task's call, keeping the valid part of every answer and asking again only for
        what is missing, within the retry budget."""
        attempt = 0
        while True:
            self.requests += 1
            answer = await self.task.call(ids)
            with anyio.CancelScope(shield=True):
                await self._record(answer)
            missing = ids[self.status[ids] == PENDING]
            if not len(missing):
                return
            attempt += 1
            if attempt > self.max_retries:
                err = ResponseValidationError(
                    f"The server's answers left this input out {attempt} times; giving up "
                    "(raise max_retries to try longer)."
                )
                self._fail(missing, err)
                return
            await anyio.sleep(self.retry_wait(attempt))
            ids = missing

    async def _record(self, answer: Answer) -> None:
        ids = np.asarray(answer.ids, dtype=np.int64)
        if len(ids):
            self.task.accept(ids, answer.value)
            self.status[ids] = OK
            for uid, code in answer.statuses.items():
                self.status[uid] = code
            table = self.task.to_cache(ids, answer.value, [self.keys[i] for i in ids])
            if self.progress is not None:
                self.progress.advance(float(self.weights[ids].sum()))
            await self.writer.write(table)
        for uid, exc in answer.errors.items():
            self._fail(np.array([uid], dtype=np.int64), exc)

    def _fail(self, ids: np.ndarray, exc: BaseException, code: int = ERROR) -> None:
        ids = ids[self.status[ids] == PENDING]
        if not len(ids):
            return
        self.status[ids] = code
        for uid in ids.tolist():
            self.errors[uid] = exc
        if self.progress is not None:
            w = float(self.weights[ids].sum())
            self.progress.advance(w, failed=w if code == ERROR else 0.0)

    def on_done(self, ids: np.ndarray, _: Any, error: BaseException | None) -> None:
        if error is not None:
            code = QUOTA if isinstance(error, QuotaExceededError) else ERROR
            self._fail(ids, error, code)


async def run_task(
    task: Task,
    *,
    store: Any,
    aclient: Any,
    progress: Progress | None = None,
    pending: np.ndarray | None = None,
    lookup: bool = True,
) -> Outcome:
    """Run ``task`` through the whole path and return each unit's outcome.

    ``pending`` limits the units to send (default: all that are not cached); ``lookup=False``
    skips the initial cache lookup (the caller did it).
    """
    settings = aclient.settings
    policy = aclient.engine.retry
    run = _Run(
        task,
        store=store,
        engine=aclient.engine,
        max_retries=settings.max_retries,
        # the first re-ask of missing inputs goes at once, later ones back off
        retry_wait=lambda attempt: 0.0 if attempt <= 1 else policy.wait_for(attempt - 1, None),
        concurrency=task.concurrency or max(1, settings.max_concurrency) * 2,
        progress=progress,
    )
    if lookup and len(run.keys):
        run.lookup_all()
    ids = np.flatnonzero(run.status == PENDING) if pending is None else pending
    batches = task.pack(ids) if len(ids) else []
    _announce_quota(task, settings, len(batches))
    failure: list[BaseException] = []
    stopped: BaseException | None = None
    async with anyio.create_task_group() as tg:
        if len(ids):
            tg.start_soon(task.ahead, ids)
        try:
            stopped = await map_batches(
                batches,
                run.send,
                on_done=run.on_done,
                limit=run.concurrency,
                stop_on=(QuotaExceededError,),
            )
        except Exception as exc:  # a fatal error: stop the work ahead too, raise it unwrapped
            failure.append(exc)
            tg.cancel_scope.cancel()
    if failure:
        raise failure[0]
    return Outcome(run.status, run.errors, run.requests, stopped, run.writer.failed_rows)


def quota_fields(settings: Any, endpoint: str) -> dict[str, int | None]:
    """``daily_quota`` and ``quota_left`` for an estimate (None when the tier has none)."""
    status = quota_status(endpoint, settings)
    return {"daily_quota": status.limit, "quota_left": status.remaining}


def _announce_quota(task: Task, settings: Any, requests: int) -> None:
    """Before the first request: say so when the run needs more requests than today's quota
    has left (the engine then stops at the quota; unsent rows get status ``quota``)."""
    if not requests or not task.endpoint:
        return
    status = quota_status(task.endpoint, settings)
    if status.remaining is None or requests <= status.remaining:
        return
    print(
        f"deapi_ds.{task.func}: this run needs about {requests:,} {task.endpoint} requests but "
        f"the daily quota ({status.limit:,} on the {status.tier} tier) has {status.remaining:,} "
        f"left today; what fits is sent, the rest gets status 'quota' (the quota resets at "
        f"{status.resets_at:%Y-%m-%d %H:%M} UTC; rerun then to finish, or set the tier you "
        "have with set_config(tier=...)).",
        file=sys.stderr,
    )


# --- after the run ---------------------------------------------------------------------------------


def check_outcome(
    result: Any,
    *,
    func: str,
    frame: pd.DataFrame | None = None,
    input_failed: np.ndarray | None = None,
) -> Any:
    """Raise or summarise failures.

    When every row that was sent failed for the same kind of reason (a bad key, an unreachable
    host, a model the account cannot use, a server that answers nonsense), raise a
    :class:`~deapi_ds.BatchError` carrying the partial result and the first error; rows refused
    before sending (``input_failed``, e.g. non-strings) do not count as sent. When some rows
    failed, print one line saying how many, the most common error and where to look.
    """
    frame = result.frame if frame is None else frame
    if "status" not in frame.columns or not len(frame):
        return result
    status = frame["status"].astype(object).to_numpy()
    failed = status == "error"
    quota = status == "quota"
    if quota.any():
        why = str(frame["error"].astype(object).to_numpy()[np.flatnonzero(quota)[0]])
        print(
            f"deapi_ds.{func}: the daily quota stopped the run; {int(quota.sum()):,} rows were "
            f"not sent (status 'quota', finished rows are cached; a rerun after the reset pays "
            f"only for these). {why}",
            file=sys.stderr,
        )
    if not failed.any():
        return result
    kinds = frame["error_type"].astype(object).to_numpy()
    messages = frame["error"].astype(object).to_numpy()
    counts = collections.Counter(str(k) for k in kinds[failed])
    common, n_common = counts.most_common(1)[0]
    first = int(np.flatnonzero(failed & (kinds.astype(str) == common))[0])
    message = str(messages[first])
    pre = np.zeros(len(frame), bool) if input_failed is None else np.asarray(input_failed, bool)
    sent = ~np.isin(status, ["empty", "skipped"]) & ~pre
    sent_failed = failed & sent
    if sent.any() and sent_failed.sum() == sent.sum() and not (failed & pre).any():
        if len({str(k) for k in kinds[sent_failed]}) == 1:
            raise BatchError(
                f"{func}(): every row failed with {common}: {message} (the partial result "
                "is on this error's .partial)",
                partial=result,
                error=_error_of(result, first, common, message),
            )
    print(
        f"deapi_ds.{func}: {int(failed.sum()):,} of {len(frame):,} rows failed "
        f"(most common: {common}, {n_common:,} rows: {message[:200]}); see result.failed.",
        file=sys.stderr,
    )
    return result


def _error_of(result: Any, row: int, kind: str, message: str) -> BaseException:
    """The exception behind a failed row (rebuilt from its type name when it was not kept)."""
    errors = getattr(result, "_errors", None)
    if errors and row in errors:
        return errors[row]

    cls = getattr(_exceptions, kind, None)
    if isinstance(cls, type) and issubclass(cls, BaseException):
        try:
            return cls(message)
        except TypeError:
            pass
    return DeapiError(f"{kind}: {message}")
