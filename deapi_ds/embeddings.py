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
import importlib
import json
import re
import sys
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa

from ._cache import (
    USE_DEFAULT,
    embedding_array,
    embedding_matrix,
    resolve_cache,
)
from ._client import AsyncClient, Client
from ._common import is_missing as _is_missing
from ._estimate import Estimate
from ._exceptions import (
    APIStatusError,
    InvalidParameterError,
    PayloadTooLargeError,
    ResponseValidationError,
)
from ._pipeline import (
    CACHED,
    ERROR,
    FATAL_ERRORS,
    LOOKUP_CHUNK,
    OK,
    PENDING,
    QUOTA,
    Answer,
    Outcome,
    Progress,
    Task,
    as_series,
    check_outcome,
    quota_fields,
    run_task,
)
from ._pipeline import text_problem as _text_problem
from ._profiles import get_profile
from ._result import STATUS_DTYPE, ResultFrame, plural
from ._tasks import resolve_client, syncify

__all__ = [
    "EmbeddingResult",
    "EmbeddingTransformer",
    "Estimate",
    "aembed",
    "aestimate",
    "aestimate_embed",
    "embed",
    "estimate",
    "estimate_embed",
    "estimate_tokens",
]

TASK = "embeddings"
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


def _tokens_or_broken(text: str) -> int:
    """:func:`estimate_tokens`, or -1 for a text that is not valid UTF-8 (lone surrogates)."""
    try:
        return estimate_tokens(text)
    except UnicodeEncodeError:
        return -1


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
            (0 if not t or t.isspace() else _tokens_or_broken(t) for t in uniques),
            dtype=np.int64,
            count=len(uniques),
        )
        broken = {  # lone surrogates (not UTF-8): found by the token estimate's encode
            int(j): _text_problem(uniques[j]) for j in np.flatnonzero(u_tokens < 0)
        }
        u_tokens[u_tokens < 0] = 0
        limit = max_input_tokens if max_input_tokens is not None else np.iinfo(np.int64).max
        fits = (u_tokens > 0) & (u_tokens <= limit)
        # distinct texts that fit are units 0..k-1, in order of first appearance
        u_unit = np.where(fits, np.cumsum(fits) - 1, -1)
        units.extend(np.asarray(uniques, dtype=object)[fits].tolist())
        unit_tokens.extend(u_tokens[fits].tolist())
        row_unit[str_rows] = u_unit[codes]
        row_tokens = u_tokens[codes]
        kind[str_rows[row_tokens == 0]] = _EMPTY
        if broken:  # lone surrogates: not valid UTF-8, cannot be sent
            for pos in np.flatnonzero(np.isin(codes, list(broken))):
                i = int(str_rows[pos])
                kind[i] = _ERROR
                error_type[i] = "InvalidText"
                error[i] = f"row {labels[i]!r} {broken[int(codes[pos])]}"
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
            try:
                value = str(value)
            except Exception as exc:  # noqa: BLE001 - a broken __str__ is this row's error
                kind[i] = _ERROR
                error_type[i] = "TypeError"
                error[i] = (
                    f"row {labels[i]!r}: str() of its {type(value).__name__} value failed "
                    f"({type(exc).__name__}: {exc}); convert the column yourself"
                )
                continue
            if (problem := _text_problem(value)) is not None:
                kind[i] = _ERROR
                error_type[i] = "InvalidText"
                error[i] = f"row {labels[i]!r} {problem}"
                continue
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
        """A :class:`deapi_ds.SearchIndex` over these vectors, queries embedded with the same
        model. ``data`` is the frame whose rows were embedded (default: the status frame);
        ``kwargs`` go to :class:`~deapi_ds.SearchIndex` (``text_column=``, ``dtype=`` ...).

        The search layer builds on this module and is looked up only when called (a static
        import either way would close a cycle).
        """
        search = importlib.import_module("deapi_ds.search")
        return search._index._embedding_search_index(self, data, **kwargs)

    def summary(self) -> str:
        """One line: rows per status, dimension and requests sent."""
        base = super().summary()
        dims = self.matrix.shape[1] if self.matrix.ndim == 2 else 0
        return f"{base}, {dims} dims, {plural(int(self.usage.get('requests', 0)), 'request')}"


# --- the task --------------------------------------------------------------------------------


class _EmbedTask(Task):
    """Embeddings on the pipeline: units are the distinct texts of the column."""

    name = TASK
    func = "embed"
    endpoint = "embeddings"
    cache_columns = ("embedding",)

    def __init__(
        self,
        plan: _Plan,
        *,
        aclient: AsyncClient,
        model: str,
        params: dict[str, Any],
        dim: int | None,
        on_long: str,
        encoding_format: str,
        dimensions: int | None,
        max_inputs: int,
        max_total_tokens: int,
    ) -> None:
        self.plan = plan
        self.contents = plan.units
        self.aclient = aclient
        self.model = model
        self.params = params
        self.params_json = json.dumps(params, sort_keys=True)
        self.dim = dim
        self.on_long = on_long
        self.encoding_format = encoding_format
        self.dimensions = dimensions
        self.max_inputs = max_inputs
        self.max_total_tokens = max_total_tokens
        # vectors per unit; one extra last row stays NaN: rows without a vector point at it
        self.unit_vecs: np.ndarray | None = None
        self.server_chunked: set[int] = set()
        self.usage = {
            "requests": 0,
            "prompt_tokens": 0,
            "total_tokens": 0,
            "retries": 0,
            "split": 0,
        }

    def weights(self) -> np.ndarray:
        return self.plan.rows_per_unit()

    def pack(self, ids: np.ndarray) -> list[np.ndarray]:
        batches = _pack(ids.tolist(), self.plan.unit_tokens, self.max_inputs, self.max_total_tokens)
        return [np.asarray(b, dtype=np.int64) for b in batches]

    def ensure(self, d: int) -> np.ndarray:
        if self.unit_vecs is None:
            self.dim = d
            self.unit_vecs = np.full((len(self.plan.units) + 1, d), np.nan, dtype=np.float32)
        elif self.unit_vecs.shape[1] != d:
            raise ResponseValidationError(
                f"The server returned {d}-dimensional vectors but earlier ones have "
                f"{self.unit_vecs.shape[1]} (model {self.model!r})."
            )
        return self.unit_vecs

    # cache ------------------------------------------------------------------------------------
    def from_cache(self, ids: np.ndarray, table: pa.Table) -> np.ndarray:
        vecs = embedding_matrix(table.column("embedding"))
        if vecs.ndim != 2 or (self.dim and vecs.shape[1] != self.dim):
            return ids[:0]  # another dimension (a different server behind the same name)
        good = np.isfinite(vecs).all(axis=1)  # never serve a broken vector as cached
        self.ensure(vecs.shape[1])[ids[good]] = vecs[good]
        return ids[good]

    def accept(self, ids: np.ndarray, value: np.ndarray) -> None:
        self.ensure(value.shape[1])[ids] = value

    def to_cache(self, ids: np.ndarray, value: np.ndarray, keys: Sequence[str]) -> pa.Table:
        return pa.table(
            {
                "key": pa.array(keys, pa.string()),
                "embedding": embedding_array(np.ascontiguousarray(value, dtype=np.float32)),
                "tokens": pa.array(self.plan.unit_tokens[ids], pa.int64()),
                "params": pa.array([self.params_json] * len(ids), pa.string()),
            }
        )

    # the call ---------------------------------------------------------------------------------
    def _expected_dim(self) -> int | None:
        if self.dim:
            return self.dim
        return self.unit_vecs.shape[1] if self.unit_vecs is not None else None

    async def request(self, texts: list[str], *, strict: bool = True) -> Any:
        out = await self.aclient.embeddings(
            texts,
            model=self.model,
            encoding_format=self.encoding_format,
            dimensions=self.dimensions,
            strict=strict,
            expected_dimension=self._expected_dim(),
        )
        self.usage["requests"] += 1
        self.usage["prompt_tokens"] += int(out.prompt_tokens or 0)
        self.usage["total_tokens"] += int(out.total_tokens or out.prompt_tokens or 0)
        expected = self._expected_dim()
        if out.present is not None and out.present.any() and expected is None:
            self.ensure(out.matrix.shape[1])
        return out

    async def call(self, ids: np.ndarray) -> Answer:
        texts = [self.plan.units[u] for u in ids]
        try:
            out = await self.request(texts, strict=False)
        except FATAL_ERRORS:
            raise
        except APIStatusError as exc:
            if _too_big(exc) and len(ids) > 1 and not exc.retryable:
                self.usage["split"] += 1
                half = len(ids) // 2
                return _merge(await self._half(ids[:half]), await self._half(ids[half:]))
            if _too_big(exc) and len(ids) == 1 and self.on_long != "error":
                return await self._shrunk(ids, texts[0], exc)
            raise
        present, invalid = out.present, out.invalid
        if out.problems:
            self.usage["retries"] += 1
            wrong_dim = [p for p in out.problems if "dimensions" in p]
            if wrong_dim and not present.any() and not invalid.any():
                # every vector of another dimension: asking again cannot help
                raise ResponseValidationError(wrong_dim[0], endpoint="POST /v1/embeddings")
        errors = {
            int(u): ResponseValidationError(
                f"The server returned a vector with NaN, inf or null values for this input "
                f"(model {self.model!r}); it was not cached.",
                endpoint="POST /v1/embeddings",
            )
            for u in ids[invalid]
        }
        if present.all():  # the usual case: no copy of the batch's vectors
            return Answer(ids, out.matrix, errors)
        return Answer(ids[present], out.matrix[present], errors)

    async def _half(self, ids: np.ndarray) -> Answer:
        """One half of a batch the server found too large: its own errors stay its own."""
        try:
            return await self.call(ids)
        except FATAL_ERRORS:
            raise
        except (APIStatusError, ResponseValidationError) as exc:
            return Answer(ids[:0], None, {int(u): exc for u in ids})

    async def _shrunk(self, ids: np.ndarray, text: str, exc: APIStatusError) -> Answer:
        try:
            vec = await self.shrink(text, exc)
        except FATAL_ERRORS:
            raise
        except (APIStatusError, ResponseValidationError) as failed:
            return Answer(ids[:0], None, {int(ids[0]): failed})
        statuses = {}
        if self.on_long == "truncate":
            statuses[int(ids[0])] = _U_TRUNCATED
        else:
            self.server_chunked.add(int(ids[0]))
        return Answer(ids, vec[None, :], statuses=statuses)

    async def shrink(self, text: str, exc: APIStatusError, depth: int = 0) -> np.ndarray:
        """One text the server refused as too large: truncate it, or split it and average the
        pieces (``on_long``), halving the estimate until the server accepts it."""
        limit = max(1, estimate_tokens(text) // 2)
        parts = (
            [_truncate(text, limit)] if self.on_long == "truncate" else _split_pieces(text, limit)
        )
        if depth >= 8 or not parts or not parts[0] or parts == [text]:
            raise exc
        self.usage["split"] += 1
        vecs = []
        for part in parts:
            try:
                vecs.append((await self.request([part])).matrix[0])
            except FATAL_ERRORS:
                raise
            except APIStatusError as again:
                if not _too_big(again):
                    raise
                vecs.append(await self.shrink(part, again, depth + 1))
        if len(vecs) == 1:
            return vecs[0]
        return _combine(np.stack(vecs), [len(p) for p in parts])


def _too_big(exc: APIStatusError) -> bool:
    return isinstance(exc, PayloadTooLargeError) or (
        getattr(exc, "status_code", None) in (400, 422)
        and any(w in str(exc.message).lower() for w in _SIZE_WORDS)
    )


def _merge(a: Answer, b: Answer) -> Answer:
    """Two halves' answers as one (the halves are disjoint)."""
    values = [v for v in (a.value, b.value) if v is not None and len(v)]
    value = np.concatenate(values) if values else None
    return Answer(
        np.concatenate([a.ids, b.ids]),
        value,
        {**a.errors, **b.errors},
        {**a.statuses, **b.statuses},
    )


def _resolve_limits(
    mp: Any, max_inputs: int | None, max_input_tokens: int | None, max_total_tokens: int | None
) -> tuple[int, int | None, int]:
    max_inputs = max_inputs or (mp.max_inputs if mp and mp.max_inputs else 2048)
    max_input_tokens = max_input_tokens or (mp.max_input_tokens if mp else None)
    max_total_tokens = max_total_tokens or (
        mp.max_total_tokens if mp and mp.max_total_tokens else 300_000
    )
    for name, value in (("max_inputs", max_inputs), ("max_total_tokens", max_total_tokens)):
        if value < 1:
            raise InvalidParameterError(f"{name} must be >= 1. Got {value}.")
    return max_inputs, max_input_tokens, max_total_tokens


def _check_options(on_empty: str, on_long: str) -> None:
    if on_empty not in ("empty", "raise"):
        raise InvalidParameterError(f"on_empty must be 'empty' or 'raise'. Got {on_empty!r}.")
    if on_long not in ("truncate", "error", "chunk"):
        raise InvalidParameterError(
            f"on_long must be 'truncate', 'error' or 'chunk'. Got {on_long!r}."
        )


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
    client: Client | AsyncClient | None = None,
    cache: Any = USE_DEFAULT,
    progress: bool | None = None,
) -> EmbeddingResult:
    """Embed a text column: ``await deapi_ds.aembed(df, "text")`` (async twin of :func:`embed`)."""
    task, store, settings, profile, mp, series = _prepare(
        data,
        column,
        model=model,
        on_empty=on_empty,
        convert=convert,
        on_long=on_long,
        max_inputs=max_inputs,
        max_input_tokens=max_input_tokens,
        max_total_tokens=max_total_tokens,
        dimensions=dimensions,
        encoding_format=encoding_format,
        client=client,
        cache=cache,
    )
    plan, aclient = task.plan, task.aclient
    show = settings.progress if progress is None else progress
    est = _estimate(task, store, settings, profile, mp) if show else None
    if est is not None and (est.requests > 20 or (est.rpm and est.requests > est.rpm)):
        print(f"deapi_ds.embed: {est}", file=sys.stderr)

    bar = Progress(plan.n, desc=f"embed {model}", unit="row", show=show, engine=aclient.engine)
    no_request = int(np.count_nonzero((plan.kind == _EMPTY) | (plan.kind == _ERROR)))
    bar.advance(no_request, failed=int(np.count_nonzero(plan.kind == _ERROR)))
    try:
        outcome = await run_task(task, store=store, aclient=aclient, progress=bar)
    finally:
        bar.close()
    if task.unit_vecs is None:
        task.ensure(task.dim or (mp.dimension if mp and mp.dimension else 0) or 0)
    return check_outcome(
        _result(task, series, outcome), func="embed", input_failed=plan.kind == _ERROR
    )


def _prepare(
    data: Any,
    column: Any,
    *,
    model: str,
    on_empty: str,
    convert: bool,
    on_long: str,
    max_inputs: int | None,
    max_input_tokens: int | None,
    max_total_tokens: int | None,
    dimensions: int | None,
    encoding_format: str,
    client: Any,
    cache: Any,
) -> tuple[_EmbedTask, Any, Any, Any, Any, pd.Series]:
    """Check the options, classify the rows and build the task (shared by embed and its
    estimate)."""
    series = as_series(data, column, func="embed")
    _check_options(on_empty, on_long)
    aclient = resolve_client(client)
    settings = aclient.settings
    profile = get_profile(settings)
    mp = profile.model(model)
    max_inputs, max_input_tokens, max_total_tokens = _resolve_limits(
        mp, max_inputs, max_input_tokens, max_total_tokens
    )
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
    store = resolve_cache(cache)
    task = _EmbedTask(
        plan,
        aclient=aclient,
        model=model,
        params=params,
        dim=mp.dimension if mp and mp.dimension and dimensions is None else dimensions,
        on_long=on_long,
        encoding_format=encoding_format,
        dimensions=dimensions,
        max_inputs=max_inputs,
        max_total_tokens=max_total_tokens,
    )
    return task, store, settings, profile, mp, series


def _estimate(task: _EmbedTask, store: Any, settings: Any, profile: Any, mp: Any) -> Estimate:
    """What the run would send (cache state now; nothing is spent)."""
    plan = task.plan
    n_units = len(plan.units)
    have = np.zeros(n_units, dtype=bool)
    keys = task.keys()
    for start in range(0, n_units, LOOKUP_CHUNK):
        have[start : start + LOOKUP_CHUNK] = store.contains(
            TASK, task.model, keys[start : start + LOOKUP_CHUNK]
        )
    missing = np.flatnonzero(~have)
    requests = len(task.pack(missing)) if len(missing) else 0
    tokens = int(plan.unit_tokens[missing].sum()) if len(missing) else 0
    price = profile.price(TASK, task.model, tokens=tokens) if mp is not None else None
    return Estimate(
        func="embed",
        model=task.model,
        rows=plan.n,
        unique=n_units,
        cached=int(have.sum()),
        empty=int(np.count_nonzero(plan.kind == _EMPTY)),
        errors=int(np.count_nonzero(plan.kind == _ERROR)),
        requests=requests,
        quantity=tokens,
        unit="tokens",
        cost_usd=price.usd if price is not None else None,
        price_note=price.note if price is not None else None,
        rpm=settings.rpm_for(TASK) or profile.rpm_for(TASK, settings.effective_tier),
        concurrency=settings.max_concurrency,
        **quota_fields(settings, task.endpoint),
    )


def _result(task: _EmbedTask, series: pd.Series, outcome: Outcome) -> EmbeddingResult:
    plan = task.plan
    unit_status = outcome.status.copy()  # the pipeline's codes are ours (see _U_* below)
    unit_status[unit_status == PENDING] = _U_ERROR
    unit_error = {u: outcome.error_of(u) for u in outcome.errors}
    for u in np.flatnonzero(outcome.status == PENDING).tolist():
        unit_error.setdefault(u, ("Cancelled", "not sent: the run stopped before this row"))
    assert task.unit_vecs is not None
    matrix, status = _assemble(plan, task.unit_vecs, unit_status, unit_error)
    frame = pd.DataFrame(
        {
            "status": pd.array(status, dtype=STATUS_DTYPE),
            "error_type": pd.array(plan.error_type, dtype=STATUS_DTYPE),
            "error": pd.array(plan.error, dtype=STATUS_DTYPE),
            "tokens": _row_tokens(plan),
        },
        index=series.index,
    )
    chunked_rows = plan.chunked + (
        int(np.count_nonzero(np.isin(plan.row_unit, list(task.server_chunked))))
        if task.server_chunked
        else 0
    )
    usage = dict(task.usage)
    usage.update(
        rows=plan.n,
        unique=len(plan.units),
        cached_rows=int(np.count_nonzero(status == "cached")),
        truncated_rows=int(np.count_nonzero(status == "truncated")),
        chunked_rows=chunked_rows,
        empty_rows=int(np.count_nonzero(status == "empty")),
        error_rows=int(np.count_nonzero(status == "error")),
        quota_rows=int(np.count_nonzero(status == "quota")),
        uncached_rows=outcome.uncached_rows,
    )
    return EmbeddingResult(frame, matrix, usage=usage, model=task.model)


# unit outcomes (one per distinct text sent or looked up)
# the pipeline's codes (OK, CACHED, ERROR, QUOTA) are mapped onto these before assembly; a
# text the server made us truncate is marked _U_TRUNCATED by the task itself
_U_PENDING, _U_OK, _U_CACHED, _U_ERROR, _U_QUOTA, _U_TRUNCATED = (
    PENDING,
    OK,
    CACHED,
    ERROR,
    QUOTA,
    5,
)
_STATUS_NAMES = np.array(["ok", "ok", "cached", "error", "quota", "truncated"], dtype=object)


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
    for i in simple[(st == _U_ERROR) | (st == _U_QUOTA)]:
        plan.error_type[i], plan.error[i] = unit_error[int(row_unit[i])]
    for i, (ids, weights) in plan.chunks.items():
        states = unit_status[ids]
        bad = np.flatnonzero((states == _U_ERROR) | (states == _U_QUOTA))
        if bad.size:
            status[i] = "error" if (states == _U_ERROR).any() else "quota"
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
``max_total_tokens`` (override the provider's limits), ``cache`` (None turns it off),
``progress``, ``client``. :func:`estimate_embed` takes the same arguments and tells what the
call would send and cost, spending nothing.

When every row that was sent fails for the same reason, a :class:`~deapi_ds.BatchError` is
raised (``.partial`` holds the result, ``.error`` the cause); when some fail, one line says
how many and where to look (``result.failed``).

>>> res = deapi_ds.embed(df, "text")
>>> df["embedding"] = res.to_series()
"""


async def aestimate_embed(
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
    client: Client | AsyncClient | None = None,
    cache: Any = USE_DEFAULT,
) -> Estimate:
    """What :func:`embed` would send: requests, tokens, cost, time and days of daily quota
    (``await deapi_ds.aestimate_embed(df, "text")``; spends nothing)."""
    task, store, settings, profile, mp, _ = _prepare(
        data,
        column,
        model=model,
        on_empty=on_empty,
        convert=convert,
        on_long=on_long,
        max_inputs=max_inputs,
        max_input_tokens=max_input_tokens,
        max_total_tokens=max_total_tokens,
        dimensions=dimensions,
        encoding_format=encoding_format,
        client=client,
        cache=cache,
    )
    return _estimate(task, store, settings, profile, mp)


estimate_embed = syncify(aestimate_embed)
estimate_embed.__doc__ = """What :func:`embed` would send, without sending anything: an :class:`Estimate` with
requests, tokens, cost (reference price), minutes at the rate limit and days of daily quota.
Takes the same arguments as :func:`embed`.

>>> print(deapi_ds.estimate_embed(df, "text"))
"""


async def aestimate(data: Any, column: Any = None, **kwargs: Any) -> Estimate:
    """Deprecated alias of :func:`aestimate_embed`."""
    warnings.warn(
        "deapi_ds.aestimate() is now deapi_ds.aestimate_embed()", DeprecationWarning, stacklevel=2
    )
    return await aestimate_embed(data, column, **kwargs)


def estimate(data: Any, column: Any = None, **kwargs: Any) -> Estimate:
    """Deprecated alias of :func:`estimate_embed` (one ``estimate_<function>`` per task now)."""
    warnings.warn(
        "deapi_ds.estimate() is now deapi_ds.estimate_embed()", DeprecationWarning, stacklevel=2
    )
    return estimate_embed(data, column, **kwargs)


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
            from ._config import get_config  # lazy

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
