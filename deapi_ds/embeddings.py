"""Embeddings for DataFrame columns: packed, deduplicated, cached, aligned float32 matrices.

>>> import deapi_ds, pandas as pd
>>> deapi_ds.use_emulator()
>>> df = pd.DataFrame({"text": ["a cat", "a dog", None]})
>>> res = deapi_ds.embed(df, "text")
>>> res.matrix.shape, list(res.status)
((3, 1024), ['ok', 'ok', 'empty'])
>>> df["embedding"] = res.to_series()          # float32 fixed-size lists, no Python lists

How a call works: every row is classified (text, empty, not a string, too long), identical texts
are sent once, rows already in the cache are not sent at all, and the rest are packed into as few
requests as the provider allows (deAPI: 2048 inputs, 8192 tokens per input, 300,000 tokens per
request). Each batch's vectors are written to the cache as soon as it returns, so an interrupted
run loses nothing it paid for. Vectors are reassembled by the response's ``index`` field; any
count, index or dimension mismatch makes that batch's rows errors, never a shift.

Token counts are estimated conservatively without a tokenizer: ``ceil(utf8_bytes / 3) + words``
(at least the real BGE-M3 count for ordinary text). When the server still rejects a request as too
large, the batch is split in half and retried, never dropped.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa

from ._cache import USE_DEFAULT, embedding_array, embedding_matrix, make_keys, resolve_cache
from ._client import AsyncClient, Client
from ._exceptions import (
    APIStatusError,
    InvalidParameterError,
    PayloadTooLargeError,
    ResponseValidationError,
)
from ._profiles import get_profile
from ._result import STATUS_DTYPE, ResultFrame
from ._tasks import FATAL_ERRORS, as_series, map_batches, resolve_client, syncify

__all__ = [
    "EmbeddingResult",
    "EmbeddingTransformer",
    "Estimate",
    "aembed",
    "aestimate",
    "embed",
    "estimate",
    "estimate_tokens",
]

TASK = "embeddings"
LOOKUP_CHUNK = 65_536
_SIZE_WORDS = ("token", "too long", "too large", "too many", "maximum", "exceed", "limit", "length")


def estimate_tokens(text: str) -> int:
    """Conservative token estimate: ``ceil(utf8_bytes / 3) + words`` (at least 1)."""
    n_bytes = len(text.encode("utf-8"))
    return max(1, -(-n_bytes // 3) + len(text.split()))


def _truncate(text: str, max_tokens: int) -> str:
    """The longest prefix whose estimate fits ``max_tokens`` (cut at a word boundary if possible)."""
    lo, hi = 0, len(text)
    while lo < hi:  # binary search on characters
        mid = (lo + hi + 1) // 2
        if estimate_tokens(text[:mid]) <= max_tokens:
            lo = mid
        else:
            hi = mid - 1
    cut = text[:lo]
    space = cut.rfind(" ")
    if space > len(cut) * 0.8:
        cut = cut[:space]
    return cut


def _split_pieces(text: str, max_tokens: int) -> list[str]:
    pieces = []
    rest = text
    while rest:
        if estimate_tokens(rest) <= max_tokens:
            pieces.append(rest)
            break
        piece = _truncate(rest, max_tokens)
        if not piece:
            piece = rest[: max(1, max_tokens)]
        pieces.append(piece)
        rest = rest[len(piece) :].lstrip()
    return pieces


# --- input handling --------------------------------------------------------------------------


@dataclasses.dataclass
class _Plan:
    n: int
    status: np.ndarray  # object array of status strings
    error_type: np.ndarray
    error: np.ndarray
    row_units: list[list[int] | None]  # per row: unit ids (pieces); None = no request
    row_weights: list[list[float] | None]
    units: list[str]  # unique texts to embed
    unit_tokens: np.ndarray
    truncated: int = 0
    chunked: int = 0


def _classify(
    series: pd.Series,
    *,
    on_empty: str,
    convert: bool,
    on_long: str,
    max_input_tokens: int | None,
) -> _Plan:
    n = len(series)
    status = np.full(n, "ok", dtype=object)
    error_type = np.full(n, None, dtype=object)
    error = np.full(n, None, dtype=object)
    row_units: list[list[int] | None] = [None] * n
    row_weights: list[list[float] | None] = [None] * n
    unit_index: dict[str, int] = {}
    units: list[str] = []
    truncated = chunked = 0
    values = series.to_numpy(dtype=object, na_value=None)
    labels = series.index
    empty_rows = []

    def unit(text: str) -> int:
        uid = unit_index.get(text)
        if uid is None:
            uid = unit_index[text] = len(units)
            units.append(text)
        return uid

    for i, value in enumerate(values):
        if value is None or (isinstance(value, float) and math.isnan(value)):
            status[i] = "empty"
            empty_rows.append(i)
            continue
        if not isinstance(value, str):
            if not convert:
                status[i] = "error"
                error_type[i] = "TypeError"
                error[i] = (
                    f"row {labels[i]!r} is of type {type(value).__name__}, not a string; pass "
                    "convert=True to embed str(value)"
                )
                continue
            value = str(value)
        if not value.strip():
            status[i] = "empty"
            empty_rows.append(i)
            continue
        if max_input_tokens is not None and estimate_tokens(value) > max_input_tokens:
            if on_long == "error":
                status[i] = "error"
                error_type[i] = "InputTooLong"
                error[i] = (
                    f"row {labels[i]!r} has about {estimate_tokens(value)} tokens, over the model's "
                    f"{max_input_tokens}; use on_long='truncate' or 'chunk'"
                )
                continue
            if on_long == "truncate":
                value = _truncate(value, max_input_tokens)
                status[i] = "truncated"
                truncated += 1
            else:  # chunk
                pieces = _split_pieces(value, max_input_tokens)
                row_units[i] = [unit(p) for p in pieces]
                row_weights[i] = [float(len(p)) for p in pieces]
                chunked += 1
                continue
        row_units[i] = [unit(value)]
        row_weights[i] = [1.0]
    if empty_rows and on_empty == "raise":
        shown = [labels[i] for i in empty_rows[:10]]
        raise InvalidParameterError(
            f"{len(empty_rows)} rows are empty or missing (labels {shown}"
            f"{' ...' if len(empty_rows) > 10 else ''}). Drop them, or use on_empty='empty' to get "
            "NaN vectors for them."
        )
    unit_tokens = np.fromiter((estimate_tokens(u) for u in units), dtype=np.int64, count=len(units))
    return _Plan(
        n, status, error_type, error, row_units, row_weights, units, unit_tokens, truncated, chunked
    )


def _pack(
    unit_ids: Sequence[int], tokens: np.ndarray, max_inputs: int, max_tokens: int
) -> list[list[int]]:
    batches: list[list[int]] = []
    current: list[int] = []
    total = 0
    for uid in unit_ids:
        t = int(tokens[uid])
        if current and (len(current) >= max_inputs or total + t > max_tokens):
            batches.append(current)
            current, total = [], 0
        current.append(uid)
        total += t
    if current:
        batches.append(current)
    return batches


# --- results ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Estimate:
    """What a call would send: requests, tokens, cost and time (nothing is spent)."""

    rows: int
    unique: int
    cached: int
    empty: int
    errors: int
    requests: int
    tokens: int
    cost_usd: float | None
    rpm: float | None
    concurrency: int
    model: str

    @property
    def minutes(self) -> float | None:
        """Minutes the rate limit alone needs for the requests (None without a limit)."""
        if not self.rpm:
            return None if self.requests else 0.0
        return self.requests / self.rpm

    def __str__(self) -> str:
        cost = f"~${self.cost_usd:.4f}" if self.cost_usd is not None else "cost unknown"
        if self.requests == 0:
            when = "nothing to send"
        elif self.rpm:
            when = f"~{self.requests / self.rpm:.1f} min at {self.rpm:g} requests/min"
        else:
            when = "no client-side rate limit"
        return (
            f"{self.model}: {self.rows:,} rows ({self.unique:,} unique, {self.cached:,} cached, "
            f"{self.empty:,} empty) -> {self.requests:,} requests, ~{self.tokens:,} tokens, "
            f"{cost}, {when}"
        )

    def __repr__(self) -> str:
        return f"Estimate({self})"


class EmbeddingResult(ResultFrame):
    """Embeddings aligned with the input.

    ``.matrix`` is a C-contiguous float32 array (rows x dimension), row i for input row i (NaN
    for rows without a vector). ``.frame`` holds per-row ``status`` (ok, cached, empty,
    truncated, error), ``error_type`` and ``error``, indexed like the input. ``.usage`` sums what
    was sent.
    """

    def __init__(
        self, frame: pd.DataFrame, matrix: np.ndarray, *, usage: Mapping[str, Any], model: str
    ):
        super().__init__(frame, meta={"model": model})
        self.matrix = matrix
        self.usage = dict(usage)
        self.model = model

    @property
    def dimension(self) -> int:
        return int(self.matrix.shape[1])

    @property
    def status(self) -> pd.Series:
        return self.frame["status"]

    def to_series(self, name: str = "embedding", *, arrow: bool = False) -> pd.Series:
        """The vectors as a DataFrame column, without copying and without Python lists.

        By default each cell is a float32 numpy view of its row of :attr:`matrix` (``None``
        where there is no vector); ``df.to_parquet`` stores the column as ``list<float>`` and
        ``pd.read_parquet`` gives float32 arrays back. ``arrow=True`` gives an Arrow
        ``fixed_size_list<float>[dim]`` column instead (read it back with
        ``pd.read_parquet(..., dtype_backend="pyarrow")``: pandas cannot rebuild that dtype
        from parquet metadata otherwise).
        """
        ok = self.ok
        if arrow:
            arr = embedding_array(self.matrix)
            if not ok.all():
                arr = pa.FixedSizeListArray.from_arrays(
                    arr.values, self.dimension, mask=pa.array(~ok)
                )
            return pd.Series(pd.arrays.ArrowExtensionArray(arr), index=self.frame.index, name=name)
        cells = np.empty(len(self.matrix), dtype=object)
        for i in np.flatnonzero(ok):
            cells[i] = self.matrix[i]
        return pd.Series(cells, index=self.frame.index, name=name, dtype=object)

    def to_frame(self, data: pd.DataFrame | None = None, name: str = "embedding") -> pd.DataFrame:
        """``data`` (or the status frame) with the vectors as a column."""
        base = self.frame if data is None else data
        return base.assign(**{name: self.to_series(name)})

    def search_index(self, data: pd.DataFrame | None = None, **kwargs: Any) -> Any:
        """A :class:`deapi_ds.search.SearchIndex` over these vectors (queries embedded with the same model)."""
        from .search import SearchIndex, default_embedder

        frame = self.frame if data is None else data
        return SearchIndex(frame, self.matrix, embed=default_embedder(self.model), **kwargs)

    def summary(self) -> str:
        base = super().summary()
        return f"{base}, {self.matrix.shape[1] if self.matrix.ndim == 2 else 0} dims, {self.usage.get('requests', 0)} requests"


# --- the task --------------------------------------------------------------------------------


async def aembed(
    data: Any,
    column: Any = None,
    *,
    model: str = "Bge_M3_FP16",
    on_empty: Literal["empty", "raise"] = "empty",
    convert: bool = False,
    on_long: Literal["truncate", "error", "chunk"] = "truncate",
    max_inputs: int | None = None,
    max_input_tokens: int | None = None,
    max_total_tokens: int | None = None,
    dimensions: int | None = None,
    encoding_format: Literal["base64", "float"] = "base64",
    dry_run: bool = False,
    client: Client | AsyncClient | None = None,
    cache: Any = USE_DEFAULT,
    progress: bool | None = None,
) -> EmbeddingResult | Estimate:
    """Embed a text column: ``await deapi_ds.aembed(df, "text")`` (async twin of :func:`embed`)."""
    series = as_series(data, column, func="embed")
    if on_empty not in ("empty", "raise"):
        raise InvalidParameterError(f"on_empty must be 'empty' or 'raise'. Got {on_empty!r}.")
    if on_long not in ("truncate", "error", "chunk"):
        raise InvalidParameterError(
            f"on_long must be 'truncate', 'error' or 'chunk'. Got {on_long!r}."
        )
    aclient = resolve_client(client)
    settings = aclient.settings
    profile = get_profile(settings)
    mp = profile.model(model)
    max_inputs = max_inputs or (mp.max_inputs if mp and mp.max_inputs else 2048)
    max_input_tokens = max_input_tokens or (mp.max_input_tokens if mp else None)
    max_total_tokens = max_total_tokens or (
        mp.max_total_tokens if mp and mp.max_total_tokens else 300_000
    )
    for name, value in (("max_inputs", max_inputs), ("max_total_tokens", max_total_tokens)):
        if value < 1:
            raise InvalidParameterError(f"{name} must be >= 1. Got {value}.")
    if mp is not None:
        profile.require_task(model, "txt2embedding", func="embed")

    plan = _classify(
        series,
        on_empty=on_empty,
        convert=convert,
        on_long=on_long,
        max_input_tokens=max_input_tokens,
    )
    params: dict[str, Any] = {}
    if dimensions is not None:
        params["dimensions"] = dimensions
    params_json = json.dumps(params, sort_keys=True)
    store = resolve_cache(cache)
    keys = make_keys(TASK, model, params, plan.units) if plan.units else []
    n_units = len(plan.units)
    dim = mp.dimension if mp and mp.dimension and dimensions is None else dimensions
    unit_vecs: np.ndarray | None = None
    have = np.zeros(n_units, dtype=bool)
    cached_found: list[tuple[np.ndarray, np.ndarray]] = []
    for start in range(0, n_units, LOOKUP_CHUNK):
        chunk_keys = keys[start : start + LOOKUP_CHUNK]
        table = store.lookup(TASK, model, chunk_keys, columns=["key", "embedding"])
        if table.num_rows == 0:
            continue
        pos = {k: start + i for i, k in enumerate(chunk_keys)}
        ids = np.fromiter(
            (pos[k] for k in table.column("key").to_pylist()), dtype=np.int64, count=table.num_rows
        )
        vecs = embedding_matrix(table.column("embedding"))
        have[ids] = True
        cached_found.append((ids, vecs))

    missing = np.flatnonzero(~have)
    max_tokens_per_request = max_total_tokens
    batches = _pack(missing.tolist(), plan.unit_tokens, max_inputs, max_tokens_per_request)
    rpm = settings.rpm_for(TASK) or profile.rpm_for(TASK, settings.effective_tier)
    est = Estimate(
        rows=plan.n,
        unique=n_units,
        cached=int(have.sum()),
        empty=int((plan.status == "empty").sum()),
        errors=int((plan.status == "error").sum()),
        requests=len(batches),
        tokens=int(plan.unit_tokens[missing].sum()) if len(missing) else 0,
        cost_usd=(
            float(plan.unit_tokens[missing].sum()) / 1000 * mp.price_per_1k_tokens
            if mp and mp.price_per_1k_tokens
            else None
        ),
        rpm=rpm,
        concurrency=settings.max_concurrency,
        model=model,
    )
    if dry_run:
        return est
    show = settings.progress if progress is None else progress
    if show and (est.requests > 20 or (rpm and est.requests > rpm)):
        print(f"deapi_ds.embed: {est}", file=sys.stderr)

    # vectors per unit, filled from cache then from responses
    def ensure(d: int) -> np.ndarray:
        nonlocal unit_vecs, dim
        if unit_vecs is None:
            dim = d
            unit_vecs = np.full((n_units, d), np.nan, dtype=np.float32)
        elif unit_vecs.shape[1] != d:
            raise ResponseValidationError(
                f"The server returned {d}-dimensional vectors but earlier ones have "
                f"{unit_vecs.shape[1]} (model {model!r})."
            )
        return unit_vecs

    for ids, vecs in cached_found:
        ensure(vecs.shape[1])[ids] = vecs
    cached_found.clear()

    unit_status = np.where(have, "cached", "pending").astype(object)
    unit_error: dict[int, tuple[str, str]] = {}
    usage = {"requests": 0, "prompt_tokens": 0, "total_tokens": 0, "retries": 0, "split": 0}
    from .display import progress as make_progress

    bar = make_progress(plan.n, desc=f"embed {model}", unit="row", disable=not show)
    # each row counts 1 on the bar, shared among its units (chunked rows have several)
    rows_per_unit = np.zeros(n_units, dtype=np.float64)
    for units in plan.row_units:
        if units:
            for u in units:
                rows_per_unit[u] += 1.0 / len(units)
    shown = {"done": 0.0, "reported": 0}
    bar.set_cached(max(0, round(plan.n - rows_per_unit[missing].sum())))
    previous_wait = aclient.engine.on_wait
    aclient.engine.on_wait = bar.waiting

    async def send(
        batch: list[int], depth: int = 0
    ) -> list[tuple[list[int], np.ndarray | BaseException]]:
        texts = [plan.units[u] for u in batch]

        async def request() -> Any:
            out = await aclient.embeddings(
                texts, model=model, encoding_format=encoding_format, dimensions=dimensions
            )
            expected = dim if dim else (unit_vecs.shape[1] if unit_vecs is not None else None)
            if expected and out.matrix.shape[1] != expected:
                raise ResponseValidationError(
                    f"The server returned {out.matrix.shape[1]}-dimensional vectors; {model} "
                    f"vectors have {expected} dimensions.",
                    endpoint="POST /v1/embeddings",
                )
            return out

        try:
            try:
                out = await request()
            except ResponseValidationError:
                usage["retries"] += 1
                out = await request()
        except FATAL_ERRORS:
            raise
        except APIStatusError as exc:
            too_big = isinstance(exc, PayloadTooLargeError) or (
                getattr(exc, "status_code", None) in (400, 422)
                and any(w in str(exc.message).lower() for w in _SIZE_WORDS)
            )
            if too_big and len(batch) > 1 and not exc.retryable:
                usage["split"] += 1
                half = len(batch) // 2
                return await send(batch[:half], depth + 1) + await send(batch[half:], depth + 1)
            if too_big and len(batch) == 1 and on_long == "truncate" and depth < 8:
                uid = batch[0]
                shorter = _truncate(plan.units[uid], max(1, estimate_tokens(plan.units[uid]) // 2))
                if shorter and shorter != plan.units[uid]:
                    usage["split"] += 1
                    try:
                        again = await aclient.embeddings(
                            [shorter],
                            model=model,
                            encoding_format=encoding_format,
                            dimensions=dimensions,
                        )
                    except APIStatusError as exc2:
                        return [(batch, exc2)]
                    unit_status[uid] = "truncated"
                    usage["requests"] += 1
                    return [(batch, again.matrix)]
            return [(batch, exc)]
        except ResponseValidationError as exc:
            return [(batch, exc)]
        usage["requests"] += 1
        usage["prompt_tokens"] += int(out.prompt_tokens or 0)
        usage["total_tokens"] += int(out.total_tokens or out.prompt_tokens or 0)
        return [(batch, out.matrix)]

    def record(batch: list[int], parts: Any, error: BaseException | None) -> None:
        if error is not None:
            parts = [(batch, error)]
        for ids, outcome in parts:
            ids_arr = np.asarray(ids, dtype=np.int64)
            if isinstance(outcome, BaseException):
                for u in ids:
                    unit_status[u] = "error"
                    unit_error[u] = (type(outcome).__name__, str(outcome))
            else:
                vecs = np.ascontiguousarray(outcome, dtype=np.float32)
                ensure(vecs.shape[1])[ids_arr] = vecs
                for u in ids:
                    if unit_status[u] == "pending":
                        unit_status[u] = "ok"
                store.write(
                    TASK,
                    model,
                    pa.table(
                        {
                            "key": pa.array([keys[u] for u in ids], pa.string()),
                            "embedding": embedding_array(vecs),
                            "tokens": pa.array(plan.unit_tokens[ids_arr], pa.int64()),
                            "params": pa.array([params_json] * len(ids), pa.string()),
                        }
                    ),
                )
            shown["done"] += float(rows_per_unit[ids_arr].sum())
        step = round(shown["done"]) - shown["reported"]
        if step > 0:
            shown["reported"] += step
            bar.update(step)

    try:
        await map_batches(batches, send, on_done=record, limit=max(1, settings.max_concurrency) * 2)
    finally:
        aclient.engine.on_wait = previous_wait
        bar.close()

    # assemble rows
    if unit_vecs is None:
        ensure(dim or (mp.dimension if mp and mp.dimension else 0) or 0)
    assert unit_vecs is not None
    d = unit_vecs.shape[1]
    simple = all(u is None or len(u) == 1 for u in plan.row_units)
    row_unit = np.array([u[0] if u else -1 for u in plan.row_units], dtype=np.int64)
    if simple and n_units == plan.n and np.array_equal(row_unit, np.arange(plan.n)):
        matrix = unit_vecs  # every row its own unit, in order: no copy
    else:
        matrix = np.full((plan.n, d), np.nan, dtype=np.float32)
        has = row_unit >= 0
        if simple:
            matrix[has] = unit_vecs[row_unit[has]]
        else:
            for i, units in enumerate(plan.row_units):
                if not units:
                    continue
                if len(units) == 1:
                    matrix[i] = unit_vecs[units[0]]
                else:
                    w = np.asarray(plan.row_weights[i], dtype=np.float32)
                    v = (unit_vecs[units] * w[:, None]).sum(axis=0) / w.sum()
                    norm = np.linalg.norm(v)
                    matrix[i] = v / norm if norm > 0 else v
    status = plan.status.copy()
    for i, units in enumerate(plan.row_units):
        if not units:
            continue
        states = [unit_status[u] for u in units]
        if "error" in states:
            u = units[states.index("error")]
            status[i] = "error"
            plan.error_type[i], plan.error[i] = unit_error[u]
            matrix[i] = np.nan
        elif status[i] == "truncated" or "truncated" in states:
            status[i] = "truncated"
        elif all(s == "cached" for s in states):
            status[i] = "cached"
        else:
            status[i] = "ok"
    frame = pd.DataFrame(
        {
            "status": pd.array(status, dtype=STATUS_DTYPE),
            "error_type": pd.array(plan.error_type, dtype=STATUS_DTYPE),
            "error": pd.array(plan.error, dtype=STATUS_DTYPE),
            "tokens": pd.array(
                [int(plan.unit_tokens[u].sum()) if u else pd.NA for u in plan.row_units],
                dtype="Int64",
            ),
        },
        index=series.index,
    )
    usage.update(
        rows=plan.n,
        unique=n_units,
        cached_rows=int((status == "cached").sum()),
        truncated_rows=int((status == "truncated").sum()),
        chunked_rows=plan.chunked,
        empty_rows=int((status == "empty").sum()),
        error_rows=int((status == "error").sum()),
        estimated_tokens=est.tokens,
        estimated_cost_usd=est.cost_usd,
    )
    return EmbeddingResult(frame, np.ascontiguousarray(matrix), usage=usage, model=model)


embed = syncify(aembed)
embed.__doc__ = """Embed a text column into an aligned float32 matrix.

``data`` is a Series, a list of texts, or a DataFrame with ``column`` (a name or a Series).
Returns an :class:`EmbeddingResult`: ``.matrix`` (rows x dimension, float32, C-contiguous, row i
for input row i), ``.frame`` with per-row ``status`` (ok, cached, empty, truncated, error) and
errors, ``.usage``; ``.to_series()`` gives a column to put into a DataFrame.

Options: ``on_empty`` ('empty' gives NaN vectors without a request; 'raise'), ``convert``
(embed ``str(value)`` of non-strings instead of an error row), ``on_long`` ('truncate', 'error',
'chunk': split, embed, average weighted by length), ``max_inputs`` / ``max_input_tokens`` /
``max_total_tokens`` (override the provider's limits), ``dry_run=True`` (returns an
:class:`Estimate`, spends nothing), ``cache`` (None turns it off), ``progress``, ``client``.

>>> res = deapi_ds.embed(df, "text")
>>> df["embedding"] = res.to_series()
"""


async def aestimate(data: Any, column: Any = None, **kwargs: Any) -> Estimate:
    """Requests, tokens, cost and time an :func:`embed` call would need (spends nothing)."""
    kwargs["dry_run"] = True
    result = await aembed(data, column, **kwargs)
    assert isinstance(result, Estimate)
    return result


estimate = syncify(aestimate)


class EmbeddingTransformer:
    """A scikit-learn compatible transformer: texts in, the float32 embedding matrix out.

    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.linear_model import LogisticRegression
    >>> pipe = make_pipeline(EmbeddingTransformer(), LogisticRegression())
    """

    def __init__(
        self,
        model: str = "Bge_M3_FP16",
        *,
        on_long: str = "truncate",
        convert: bool = True,
        cache: Any = USE_DEFAULT,
        progress: bool | None = False,
    ) -> None:
        self.model = model
        self.on_long = on_long
        self.convert = convert
        self.cache = cache
        self.progress = progress

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {
            "model": self.model,
            "on_long": self.on_long,
            "convert": self.convert,
            "cache": self.cache,
            "progress": self.progress,
        }

    def set_params(self, **params: Any) -> EmbeddingTransformer:
        for key, value in params.items():
            if key not in self.get_params():
                raise InvalidParameterError(
                    f"Invalid parameter {key!r} for EmbeddingTransformer. Valid: {sorted(self.get_params())}."
                )
            setattr(self, key, value)
        return self

    def fit(self, X: Any, y: Any = None) -> EmbeddingTransformer:
        self.n_features_in_ = 1
        return self

    def transform(self, X: Any) -> np.ndarray:
        if isinstance(X, pd.DataFrame):
            if X.shape[1] != 1:
                raise InvalidParameterError(
                    f"EmbeddingTransformer takes one text column; got {X.shape[1]} columns. "
                    "Use a ColumnTransformer to pick it."
                )
            X = X.iloc[:, 0]
        elif isinstance(X, np.ndarray) and X.ndim == 2:
            X = X[:, 0]
        res = embed(
            X,
            model=self.model,
            on_long=self.on_long,
            convert=self.convert,
            cache=self.cache,
            progress=self.progress,
        )
        failed = res.frame["status"].eq("error")
        if failed.any():
            first = res.frame.loc[failed, "error"].iloc[0]
            raise ResponseValidationError(
                f"{int(failed.sum())} rows could not be embedded (first: {first})."
            )
        return np.nan_to_num(res.matrix, nan=0.0)

    def fit_transform(self, X: Any, y: Any = None) -> np.ndarray:
        return self.fit(X, y).transform(X)

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        dim = getattr(self, "_dim", None) or 1024
        return np.array([f"embedding{i}" for i in range(dim)], dtype=object)

    def __repr__(self) -> str:
        return f"EmbeddingTransformer(model={self.model!r})"
