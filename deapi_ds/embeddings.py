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

Token counts are estimated conservatively without a tokenizer: ``ceil(utf8_bytes / 3)`` plus one per word and punctuation mark
(at least the real BGE-M3 count for ordinary text). When the server still rejects a request as too
large, the batch is split in half and retried, never dropped; a single text it refuses follows
``on_long`` (truncated further, or split into pieces that are averaged; 'error' makes it an error
row).
"""

from __future__ import annotations

import dataclasses
import json
import re
import sys
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa

from ._cache import (
    USE_DEFAULT,
    ResultCache,
    embedding_array,
    embedding_matrix,
    make_keys,
    resolve_cache,
)
from ._client import AsyncClient, Client
from ._exceptions import (
    APIStatusError,
    InvalidParameterError,
    PayloadTooLargeError,
    ResponseValidationError,
)
from ._profiles import get_profile
from ._result import STATUS_DTYPE, ResultFrame, plural
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


_PIECES = re.compile(r"\w+|[^\w\s]")


def estimate_tokens(text: str) -> int:
    """Conservative token estimate: ``ceil(utf8_bytes / 3)`` plus one per word and per
    punctuation mark (at least 1). Sub-word tokenizers (BGE-M3's XLM-R) split words into
    pieces and punctuation into tokens of their own; this stays above their count for text in
    any script, at the price of a few more, smaller requests for punctuation-heavy text.
    """
    n_bytes = len(text.encode("utf-8"))
    return max(1, -(-n_bytes // 3) + len(_PIECES.findall(text)))


def _truncate(text: str, max_tokens: int) -> str:
    """The longest prefix whose estimate fits ``max_tokens`` (cut at a word boundary if possible)."""
    # every character is at least one UTF-8 byte, so a prefix longer than 3 * max_tokens
    # characters is over the limit: the search never looks further (long texts stay cheap)
    lo, hi = 0, min(len(text), 3 * max_tokens)
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
    """Consecutive pieces of ``text``, each within ``max_tokens`` (whitespace between pieces is
    dropped). Linear in the text's length: each piece is looked for in a bounded window."""
    pieces = []
    start, n = 0, len(text)
    span = 3 * max(1, max_tokens)  # no piece is longer (see _truncate)
    while start < n:
        window = text[start : start + span + 1]
        if start + len(window) >= n and estimate_tokens(window) <= max_tokens:
            pieces.append(window)
            break
        piece = _truncate(window, max_tokens) or window[: max(1, max_tokens)]
        pieces.append(piece)
        start += len(piece)
        while start < n and text[start].isspace():
            start += 1
    return pieces


# --- input handling --------------------------------------------------------------------------


# row kinds (before any request): what classification decided for each row
_OK, _TRUNCATED, _CHUNKED, _EMPTY, _ERROR = 0, 1, 2, 3, 4


@dataclasses.dataclass
class _Plan:
    n: int
    kind: np.ndarray  # int8 per row: _OK, _TRUNCATED, _CHUNKED, _EMPTY, _ERROR
    error_type: np.ndarray  # object per row (None when no error)
    error: np.ndarray
    row_unit: np.ndarray  # int64 per row: its unit id; -1 = no request or chunked
    chunks: dict[int, tuple[list[int], list[float]]]  # chunked row -> (unit ids, weights)
    units: list[str]  # unique texts to embed
    unit_tokens: np.ndarray

    @property
    def truncated(self) -> int:
        return int(np.count_nonzero(self.kind == _TRUNCATED))

    @property
    def chunked(self) -> int:
        return len(self.chunks)

    def rows_per_unit(self) -> np.ndarray:
        """How many rows each unit stands for (a chunked row is shared among its pieces)."""
        simple = self.row_unit[self.row_unit >= 0]
        out = np.bincount(simple, minlength=len(self.units)).astype(np.float64)
        for ids, _ in self.chunks.values():
            for u in ids:
                out[u] += 1.0 / len(ids)
        return out


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):  # arrays, lists: not a missing scalar
        return False


def _classify(
    series: pd.Series,
    *,
    on_empty: str,
    convert: bool,
    on_long: str,
    max_input_tokens: int | None,
) -> _Plan:
    """Decide, for every row, what is sent: one unit, several (chunked) or none.

    Identical strings are classified once (``pd.factorize``), and the token estimate is made
    once per distinct text, so a column of 2 million short rows costs one hash pass plus a
    little work per distinct text.
    """
    n = len(series)
    kind = np.zeros(n, dtype=np.int8)
    error_type = np.full(n, None, dtype=object)
    error = np.full(n, None, dtype=object)
    row_unit = np.full(n, -1, dtype=np.int64)
    chunks: dict[int, tuple[list[int], list[float]]] = {}
    values = series.to_numpy(dtype=object, na_value=None)
    labels = series.index
    units: list[str] = []
    unit_tokens: list[int] = []
    index: dict[str, int] | None = None  # text -> unit id, built only when needed

    def unit(text: str, tokens: int | None = None) -> int:
        nonlocal index
        if index is None:
            index = {t: i for i, t in enumerate(units)}
        uid = index.get(text)
        if uid is None:
            uid = index[text] = len(units)
            units.append(text)
            unit_tokens.append(estimate_tokens(text) if tokens is None else tokens)
        return uid

    def too_long(i: int, tokens: int) -> None:
        kind[i] = _ERROR
        error_type[i] = "InputTooLong"
        error[i] = (
            f"row {labels[i]!r} has about {tokens} tokens, over the model's {max_input_tokens}; "
            "use on_long='truncate' or 'chunk'"
        )

    def long_text(i: int, text: str, tokens: int) -> None:
        """Row ``i`` holds ``text``, over the per-input limit: apply ``on_long``."""
        assert max_input_tokens is not None
        if on_long == "error":
            too_long(i, tokens)
        elif on_long == "truncate":
            kind[i] = _TRUNCATED
            row_unit[i] = unit(_truncate(text, max_input_tokens))
        else:
            pieces = _split_pieces(text, max_input_tokens)
            kind[i] = _CHUNKED
            chunks[i] = ([unit(p) for p in pieces], [float(len(p)) for p in pieces])

    if isinstance(series.dtype, pd.StringDtype):
        is_str = ~series.isna().to_numpy(dtype=bool)
    else:
        is_str = np.fromiter((type(v) is str for v in values), dtype=bool, count=n)
    str_rows = np.flatnonzero(is_str)
    if str_rows.size:
        codes, uniques = pd.factorize(values[str_rows])
        u_tokens = np.fromiter(
            (0 if not t or t.isspace() else estimate_tokens(t) for t in uniques),
            dtype=np.int64,
            count=len(uniques),
        )
        limit = max_input_tokens if max_input_tokens is not None else np.iinfo(np.int64).max
        fits = (u_tokens > 0) & (u_tokens <= limit)
        # distinct texts that fit are units 0..k-1, in order of first appearance
        u_unit = np.where(fits, np.cumsum(fits) - 1, -1)
        units.extend(np.asarray(uniques, dtype=object)[fits].tolist())
        unit_tokens.extend(u_tokens[fits].tolist())
        row_unit[str_rows] = u_unit[codes]
        row_tokens = u_tokens[codes]
        kind[str_rows[row_tokens == 0]] = _EMPTY
        for pos in np.flatnonzero(row_tokens > limit):
            i = int(str_rows[pos])
            long_text(i, values[i], int(row_tokens[pos]))
    for i in np.flatnonzero(~is_str).tolist():  # missing values and non-strings
        value = values[i]
        if _is_missing(value):
            kind[i] = _EMPTY
            continue
        if not isinstance(value, str):  # str subclasses (np.str_) are strings
            if not convert:
                kind[i] = _ERROR
                error_type[i] = "TypeError"
                error[i] = (
                    f"row {labels[i]!r} is of type {type(value).__name__}, not a string; pass "
                    "convert=True to embed str(value)"
                )
                continue
            value = str(value)
        if not value or value.isspace():
            kind[i] = _EMPTY
            continue
        tokens = estimate_tokens(value)
        if max_input_tokens is not None and tokens > max_input_tokens:
            long_text(i, value, tokens)
        else:
            row_unit[i] = unit(value, tokens)
    if on_empty == "raise":
        empty_rows = np.flatnonzero(kind == _EMPTY)
        if empty_rows.size:
            shown = [labels[i] for i in empty_rows[:10]]
            raise InvalidParameterError(
                f"{empty_rows.size} rows are empty or missing (labels {shown}"
                f"{' ...' if empty_rows.size > 10 else ''}). Drop them, or use on_empty='empty' "
                "to get NaN vectors for them."
            )
    return _Plan(
        n,
        kind,
        error_type,
        error,
        row_unit,
        chunks,
        units,
        np.asarray(unit_tokens, dtype=np.int64),
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
            f"{self.empty:,} empty) -> {plural(self.requests, 'request')}, ~{self.tokens:,} tokens, "
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

    def _take(self, positions: np.ndarray) -> EmbeddingResult:
        new = self._subset(positions)  # a row selection keeps its vectors
        new.matrix = np.ascontiguousarray(self.matrix[positions])
        return new

    @property
    def dimension(self) -> int:
        """The vectors' dimension (columns of :attr:`matrix`)."""
        return int(self.matrix.shape[1])

    @property
    def status(self) -> pd.Series:
        """Each row's status: ok, cached, empty, truncated or error."""
        return self.frame["status"]

    def to_series(self, name: str = "embedding", *, arrow: bool = False) -> pd.Series:
        """The vectors as a DataFrame column, without copying and without Python lists.

        By default each cell is a float32 numpy view of its row of :attr:`matrix`; a row
        without a vector (empty text, error) holds a NaN vector of the same dimension, as in
        :attr:`matrix`, so ``np.stack(column)`` always works. ``df.to_parquet`` stores the column
        as ``list<float>`` and ``pd.read_parquet`` gives float32 arrays back. ``arrow=True``
        gives an Arrow ``fixed_size_list<float>[dim]`` column instead (read it back with
        ``pd.read_parquet(..., dtype_backend="pyarrow")``: pandas cannot rebuild that dtype
        from parquet metadata otherwise).
        """
        if arrow:
            arr = embedding_array(self.matrix)
            arr = pa.FixedSizeListArray.from_arrays(arr.values, self.dimension)  # nullable items
            return pd.Series(pd.arrays.ArrowExtensionArray(arr), index=self.frame.index, name=name)
        cells = np.empty(len(self.matrix), dtype=object)
        for i, row in enumerate(self.matrix):  # row views; rows without a vector are NaN rows
            cells[i] = row
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
        """One line: rows per status, dimension and requests sent."""
        base = super().summary()
        dims = self.matrix.shape[1] if self.matrix.ndim == 2 else 0
        return f"{base}, {dims} dims, {plural(int(self.usage.get('requests', 0)), 'request')}"


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
    batches = _pack(missing.tolist(), plan.unit_tokens, max_inputs, max_total_tokens)
    rpm = settings.rpm_for(TASK) or profile.rpm_for(TASK, settings.effective_tier)
    tokens_to_send = int(plan.unit_tokens[missing].sum()) if len(missing) else 0
    est = Estimate(
        rows=plan.n,
        unique=n_units,
        cached=int(have.sum()),
        empty=int(np.count_nonzero(plan.kind == _EMPTY)),
        errors=int(np.count_nonzero(plan.kind == _ERROR)),
        requests=len(batches),
        tokens=tokens_to_send,
        cost_usd=(
            tokens_to_send / 1000 * mp.price_per_1k_tokens
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

    # Vectors per unit, filled from the cache then from responses. One extra last row stays
    # NaN: rows without a vector point at it (row_unit -1), so assembly is one np.take.
    def ensure(d: int) -> np.ndarray:
        nonlocal unit_vecs, dim
        if unit_vecs is None:
            dim = d
            unit_vecs = np.full((n_units + 1, d), np.nan, dtype=np.float32)
        elif unit_vecs.shape[1] != d:
            raise ResponseValidationError(
                f"The server returned {d}-dimensional vectors but earlier ones have "
                f"{unit_vecs.shape[1]} (model {model!r})."
            )
        return unit_vecs

    for ids, vecs in cached_found:
        ensure(vecs.shape[1])[ids] = vecs
    cached_found.clear()

    unit_status = np.where(have, _U_CACHED, _U_PENDING).astype(np.int8)
    unit_error: dict[int, tuple[str, str]] = {}
    server_chunked: set[int] = set()
    usage = {"requests": 0, "prompt_tokens": 0, "total_tokens": 0, "retries": 0, "split": 0}
    from .display import progress as make_progress

    bar = make_progress(plan.n, desc=f"embed {model}", unit="row", disable=not show)
    # each row counts 1 on the bar, shared among its units (chunked rows have several)
    rows_per_unit = plan.rows_per_unit()
    bar.set_cached(round(float(rows_per_unit[have].sum())))
    no_request = int(np.count_nonzero((plan.kind == _EMPTY) | (plan.kind == _ERROR)))
    if no_request:  # empty rows and rows refused before sending are done at once
        bar.update(no_request, failed=est.errors)
    shown = {"done": 0.0, "reported": 0}
    stop_showing_waits = aclient.engine.add_wait_listener(bar.waiting)

    def too_big(exc: APIStatusError) -> bool:
        return isinstance(exc, PayloadTooLargeError) or (
            getattr(exc, "status_code", None) in (400, 422)
            and any(w in str(exc.message).lower() for w in _SIZE_WORDS)
        )

    async def request(texts: list[str]) -> Any:
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
        usage["requests"] += 1
        usage["prompt_tokens"] += int(out.prompt_tokens or 0)
        usage["total_tokens"] += int(out.total_tokens or out.prompt_tokens or 0)
        return out

    async def shrink(text: str, exc: APIStatusError, depth: int = 0) -> np.ndarray:
        """One text the server refused as too large: truncate it, or split it and average the
        pieces (``on_long``), halving the estimate until the server accepts it."""
        limit = max(1, estimate_tokens(text) // 2)
        parts = [_truncate(text, limit)] if on_long == "truncate" else _split_pieces(text, limit)
        if depth >= 8 or not parts or not parts[0] or parts == [text]:
            raise exc
        usage["split"] += 1
        vecs = []
        for part in parts:
            try:
                vecs.append((await request([part])).matrix[0])
            except FATAL_ERRORS:
                raise
            except APIStatusError as again:
                if not too_big(again):
                    raise
                vecs.append(await shrink(part, again, depth + 1))
        if len(vecs) == 1:
            return vecs[0]
        return _combine(np.stack(vecs), [len(p) for p in parts])

    recheck = isinstance(store, ResultCache)

    async def send(batch: list[int]) -> list[tuple[list[int], np.ndarray | BaseException]]:
        parts: list[tuple[list[int], np.ndarray | BaseException]] = []
        if recheck:
            # another notebook, process or Dask worker may have paid for some of these rows
            # since our lookup: take them from the cache instead of paying twice
            batch_keys = [keys[u] for u in batch]
            found = store.lookup(TASK, model, batch_keys, columns=["key", "embedding"])
            if found.num_rows:
                where = {k: i for i, k in enumerate(batch_keys)}
                hit = [batch[where[k]] for k in found.column("key").to_pylist()]
                unit_status[np.asarray(hit, dtype=np.int64)] = _U_CACHED
                parts.append((hit, embedding_matrix(found.column("embedding"))))
                taken = set(hit)
                batch = [u for u in batch if u not in taken]
                if not batch:
                    return parts
        return parts + await fetch(batch)

    async def fetch(batch: list[int]) -> list[tuple[list[int], np.ndarray | BaseException]]:
        texts = [plan.units[u] for u in batch]
        try:
            try:
                out = await request(texts)
            except ResponseValidationError:
                usage["retries"] += 1
                out = await request(texts)
        except FATAL_ERRORS:
            raise
        except APIStatusError as exc:
            if too_big(exc) and len(batch) > 1 and not exc.retryable:
                usage["split"] += 1
                half = len(batch) // 2
                return await fetch(batch[:half]) + await fetch(batch[half:])
            if too_big(exc) and len(batch) == 1 and on_long != "error":
                try:
                    vec = await shrink(texts[0], exc)
                except FATAL_ERRORS:
                    raise
                except (APIStatusError, ResponseValidationError) as failed:
                    return [(batch, failed)]
                if on_long == "truncate":
                    unit_status[batch[0]] = _U_TRUNCATED
                else:
                    server_chunked.add(batch[0])
                return [(batch, vec[None, :])]
            return [(batch, exc)]
        except ResponseValidationError as exc:
            return [(batch, exc)]
        return [(batch, out.matrix)]

    def record(batch: list[int], parts: Any, error: BaseException | None) -> None:
        if error is not None:
            parts = [(batch, error)]
        failed = 0.0
        for ids, outcome in parts:
            ids_arr = np.asarray(ids, dtype=np.int64)
            if isinstance(outcome, BaseException):
                unit_status[ids_arr] = _U_ERROR
                for u in ids:
                    unit_error[u] = (type(outcome).__name__, str(outcome))
                failed += float(rows_per_unit[ids_arr].sum())
            else:
                vecs = np.ascontiguousarray(outcome, dtype=np.float32)
                ensure(vecs.shape[1])[ids_arr] = vecs
                pending = ids_arr[unit_status[ids_arr] == _U_PENDING]
                unit_status[pending] = _U_OK
                paid = unit_status[ids_arr] != _U_CACHED  # rows found by the re-check are stored
                if paid.any():
                    fresh = ids_arr[paid]
                    store.write(
                        TASK,
                        model,
                        pa.table(
                            {
                                "key": pa.array([keys[u] for u in fresh], pa.string()),
                                "embedding": embedding_array(np.ascontiguousarray(vecs[paid])),
                                "tokens": pa.array(plan.unit_tokens[fresh], pa.int64()),
                                "params": pa.array([params_json] * len(fresh), pa.string()),
                            }
                        ),
                    )
            shown["done"] += float(rows_per_unit[ids_arr].sum())
        step = round(shown["done"]) - shown["reported"]
        if step > 0:
            shown["reported"] += step
            bar.update(step, failed=min(step, round(failed)))

    try:
        await map_batches(batches, send, on_done=record, limit=max(1, settings.max_concurrency) * 2)
        if bar.n < plan.n:  # rounding of rows shared among chunk pieces
            bar.update(plan.n - bar.n)
    finally:
        stop_showing_waits()
        bar.close()

    if unit_vecs is None:
        ensure(dim or (mp.dimension if mp and mp.dimension else 0) or 0)
    assert unit_vecs is not None
    matrix, status = _assemble(plan, unit_vecs, unit_status, unit_error)
    frame = pd.DataFrame(
        {
            "status": pd.array(status, dtype=STATUS_DTYPE),
            "error_type": pd.array(plan.error_type, dtype=STATUS_DTYPE),
            "error": pd.array(plan.error, dtype=STATUS_DTYPE),
            "tokens": _row_tokens(plan),
        },
        index=series.index,
    )
    chunked_rows = plan.chunked + int(
        np.count_nonzero(np.isin(plan.row_unit, list(server_chunked))) if server_chunked else 0
    )
    usage.update(
        rows=plan.n,
        unique=n_units,
        cached_rows=int(np.count_nonzero(status == "cached")),
        truncated_rows=int(np.count_nonzero(status == "truncated")),
        chunked_rows=chunked_rows,
        empty_rows=int(np.count_nonzero(status == "empty")),
        error_rows=int(np.count_nonzero(status == "error")),
        estimated_tokens=est.tokens,
        estimated_cost_usd=est.cost_usd,
    )
    return EmbeddingResult(frame, matrix, usage=usage, model=model)


# unit outcomes (one per distinct text sent or looked up)
_U_PENDING, _U_OK, _U_CACHED, _U_TRUNCATED, _U_ERROR = 0, 1, 2, 3, 4
_STATUS_NAMES = np.array(["ok", "ok", "cached", "truncated", "error"], dtype=object)


def _combine(vecs: np.ndarray, weights: Sequence[float]) -> np.ndarray:
    """The length-weighted mean of a chunked text's piece vectors, L2-normalised."""
    w = np.asarray(weights, dtype=np.float32)
    v = (vecs * w[:, None]).sum(axis=0) / w.sum()
    norm = np.linalg.norm(v)
    return v / norm if norm > 0 else v


def _assemble(
    plan: _Plan,
    unit_vecs: np.ndarray,
    unit_status: np.ndarray,
    unit_error: Mapping[int, tuple[str, str]],
) -> tuple[np.ndarray, np.ndarray]:
    """Rows' matrix and status from the units' vectors and outcomes (vectorised; loops only
    over chunked and failed rows). ``unit_vecs`` has one extra NaN row, at index -1."""
    n, n_units = plan.n, len(plan.units)
    row_unit = plan.row_unit
    if not plan.chunks and n_units == n and np.array_equal(row_unit, np.arange(n)):
        matrix = unit_vecs[:n]  # every row its own unit, in order: no copy (C-contiguous)
    else:
        matrix = np.empty((n, unit_vecs.shape[1]), dtype=np.float32)
        step = max(1, (1 << 26) // max(1, unit_vecs.shape[1]))  # bounded temporaries
        for s in range(0, n, step):
            np.take(
                unit_vecs, row_unit[s : s + step], axis=0, out=matrix[s : s + step], mode="wrap"
            )
    status = np.full(n, "ok", dtype=object)
    status[plan.kind == _EMPTY] = "empty"
    status[plan.kind == _ERROR] = "error"
    simple = np.flatnonzero(row_unit >= 0)
    st = unit_status[row_unit[simple]]
    status[simple] = _STATUS_NAMES[st]
    status[simple[(plan.kind[simple] == _TRUNCATED) & (st != _U_ERROR)]] = "truncated"
    for i in simple[st == _U_ERROR]:
        plan.error_type[i], plan.error[i] = unit_error[int(row_unit[i])]
    for i, (ids, weights) in plan.chunks.items():
        states = unit_status[ids]
        bad = np.flatnonzero(states == _U_ERROR)
        if bad.size:
            status[i] = "error"
            plan.error_type[i], plan.error[i] = unit_error[ids[int(bad[0])]]
            matrix[i] = np.nan
            continue
        matrix[i] = _combine(unit_vecs[ids], weights)
        if (states == _U_TRUNCATED).any():
            status[i] = "truncated"
        elif (states == _U_CACHED).all():
            status[i] = "cached"
    return matrix, status


def _row_tokens(plan: _Plan) -> pd.arrays.IntegerArray:
    """Estimated tokens per row (missing for rows without a request)."""
    tokens = np.zeros(plan.n, dtype=np.int64)
    has = plan.row_unit >= 0
    tokens[has] = plan.unit_tokens[plan.row_unit[has]]
    for i, (ids, _) in plan.chunks.items():
        tokens[i] = int(plan.unit_tokens[ids].sum())
        has[i] = True
    return pd.arrays.IntegerArray(tokens, ~has)


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
        """The constructor's parameters (scikit-learn API)."""
        return {
            "model": self.model,
            "on_long": self.on_long,
            "convert": self.convert,
            "cache": self.cache,
            "progress": self.progress,
        }

    def set_params(self, **params: Any) -> EmbeddingTransformer:
        """Set constructor parameters (scikit-learn API); returns self."""
        for key, value in params.items():
            if key not in self.get_params():
                raise InvalidParameterError(
                    f"Invalid parameter {key!r} for EmbeddingTransformer. Valid: {sorted(self.get_params())}."
                )
            setattr(self, key, value)
        return self

    def fit(self, X: Any, y: Any = None) -> EmbeddingTransformer:
        """Nothing to learn: returns self (scikit-learn API)."""
        self.n_features_in_ = 1
        return self

    def transform(self, X: Any) -> np.ndarray:
        """Embed the texts ``X`` (a list, Series or one-column frame): the float32 matrix."""
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
        self.dimension_ = res.dimension
        return np.nan_to_num(res.matrix, nan=0.0)

    def fit_transform(self, X: Any, y: Any = None) -> np.ndarray:
        """``fit(X).transform(X)``."""
        return self.fit(X, y).transform(X)

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """``embedding0`` ... one name per dimension: the dimension of the last
        :meth:`transform`, or before any, the model's dimension from the provider profile."""
        dim = getattr(self, "dimension_", None)
        if dim is None:
            from ._config import get_config

            mp = get_profile(get_config()).model(self.model)
            dim = mp.dimension if mp is not None else None
        if not dim:
            raise InvalidParameterError(
                f"The dimension of {self.model!r} is not known before the first transform(); "
                "call fit_transform (or transform) first."
            )
        return np.array([f"embedding{i}" for i in range(dim)], dtype=object)

    def __repr__(self) -> str:
        return f"EmbeddingTransformer(model={self.model!r})"
