"""Exact cosine top-k search over embedded frames, with memory bounded by a chunk.

:func:`top_k` is the engine: for each chunk of corpus rows it computes ``queries @ chunk.T``
in float32, keeps each query's k best with ``argpartition`` (or, once a running best exists,
by gathering only the scores above the current k-th best) and merges them with the running
best. Memory is one chunk's scores (``queries x chunk_rows`` float32), never the corpus: the
corpus is read chunk by chunk and never copied whole, so a ``np.memmap`` works too. Rows
without a vector (NaN rows, from failed embeddings) and all-zero rows are never returned.

:class:`SearchIndex` puts a frame and its vectors together and returns results as a frame:

>>> import numpy as np, pandas as pd
>>> frame = pd.DataFrame({"text": ["cats", "dogs", "cars"]}, index=[10, 11, 12])
>>> vectors = np.array([[1, 0.1, 0], [0.9, 0.3, 0], [0, 0, 1]], dtype=np.float32)
>>> index = SearchIndex(frame, vectors)
>>> index.search(np.array([1, 0, 0], dtype=np.float32), k=2)[["rank", "text", "row"]]
   rank  text  row
0     1  cats   10
1     2  dogs   11
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from deapi_ds._exceptions import InvalidParameterError

if TYPE_CHECKING:
    import ipywidgets

__all__ = ["SearchIndex", "as_matrix", "default_embedder", "search", "top_k"]

#: Largest score block (queries x chunk rows) computed at once: 32 Mi floats = 128 MiB.
_MAX_BLOCK_ELEMS = 1 << 25
#: Columns of the result frame that come before the original columns; clashing names in the
#: frame are prefixed with "data_".
_META = ("query", "rank", "score", "row")

EmbedFn = Callable[[list[str]], Any]


# --------------------------------------------------------------------------- vector columns


def _is_missing(value: object) -> bool:
    if value is None:
        return True
    if np.ndim(value) != 0 or isinstance(value, (str, bytes)):
        return False
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _stack(values: Sequence[Any] | np.ndarray, name: str) -> np.ndarray:
    """Object array/list of 1-D vectors (None/NaN for missing rows) → (n, d) float32."""
    n = len(values)
    missing = np.fromiter((_is_missing(v) for v in values), dtype=bool, count=n)
    present = np.flatnonzero(~missing)
    if present.size == 0:
        raise InvalidParameterError(
            f"{name} holds no vectors: all {n:,} rows are missing (None/NaN)."
        )
    first = int(present[0])
    d = np.asarray(values[first]).shape
    if len(d) != 1 or d[0] == 0:
        raise InvalidParameterError(f"{name} must hold 1-D vectors; row {first} has shape {d}.")
    dim = d[0]
    out = np.full((n, dim), np.nan, dtype=np.float32)
    for i in present:
        vec = values[i]
        try:
            row = np.asarray(vec, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise InvalidParameterError(
                f"{name}: row {i} is not a numeric vector ({type(vec).__name__})."
            ) from exc
        if row.shape != (dim,):
            raise InvalidParameterError(
                f"{name}: row {i} has shape {row.shape} but row {first} has ({dim},); all "
                "vectors must have the same dimension (were they made by different models?)."
            )
        out[i] = row
    return out


def _arrow_matrix(array: Any, name: str) -> np.ndarray:
    """A pyarrow (fixed-size) list array of floats → (n, d) float32, null rows as NaN."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    n = len(array)
    typ = array.type
    nulls = array.is_null().to_numpy(zero_copy_only=False)
    if pa.types.is_fixed_size_list(typ):
        dim = typ.list_size
        child = array.values.slice(array.offset * dim, n * dim)
        flat = child.to_numpy(zero_copy_only=False)
        out = np.asarray(flat, dtype=np.float32).reshape(n, dim)
        if nulls.any():
            out = out.copy() if not out.flags.writeable else out
            out[nulls] = np.nan
        return np.ascontiguousarray(out)
    if pa.types.is_list(typ) or pa.types.is_large_list(typ):
        lengths = pc.list_value_length(array).to_numpy(zero_copy_only=False)
        present = ~nulls
        if not present.any():
            raise InvalidParameterError(f"{name} holds no vectors: all {n:,} rows are null.")
        dims = np.unique(lengths[present].astype(np.int64))
        if dims.size != 1 or dims[0] == 0:
            first = int(np.flatnonzero(present)[0])
            raise InvalidParameterError(
                f"{name}: the vectors have different lengths {dims.tolist()[:5]} (row {first} "
                f"has {int(lengths[first])}); all vectors must have the same dimension."
            )
        dim = int(dims[0])
        flat = np.asarray(array.flatten().to_numpy(zero_copy_only=False), dtype=np.float32)
        out = np.full((n, dim), np.nan, dtype=np.float32)
        out[present] = flat.reshape(-1, dim)
        return out
    raise InvalidParameterError(
        f"{name} has Arrow type {typ}; expected a list or fixed_size_list of floats."
    )


def as_matrix(vectors: Any, *, name: str = "vectors") -> np.ndarray:
    """Vectors in any common form → a C-contiguous (n, d) float32 matrix (NaN rows for missing).

    Accepts a 2-D array (not copied when already float32 and C-contiguous), a Series or
    list of 1-D arrays (None/NaN for rows without a vector), a pandas ``ArrowDtype``
    (fixed-size) list column, a pyarrow array, or a DataFrame of numeric columns.

    >>> as_matrix(pd.Series([np.ones(3), None])).tolist()
    [[1.0, 1.0, 1.0], [nan, nan, nan]]
    """
    if isinstance(vectors, pd.DataFrame):
        try:
            return np.ascontiguousarray(vectors.to_numpy(dtype=np.float32))
        except (TypeError, ValueError) as exc:
            raise InvalidParameterError(
                f"{name}: a DataFrame of vectors must have numeric columns only."
            ) from exc
    if isinstance(vectors, pd.Series):
        if isinstance(vectors.dtype, pd.ArrowDtype):
            return _arrow_matrix(vectors.array.__arrow_array__(), name)
        if vectors.dtype != object:
            raise InvalidParameterError(
                f"{name} is a column of scalars ({vectors.dtype}), not of vectors. Pass the "
                "column that holds the embeddings, or a 2-D array."
            )
        return _stack(vectors.to_numpy(dtype=object), name)
    if type(vectors).__module__.startswith("pyarrow"):
        return _arrow_matrix(vectors, name)
    if isinstance(vectors, np.ndarray):
        if vectors.dtype == object:
            if vectors.ndim != 1:
                raise InvalidParameterError(f"{name}: an object array of vectors must be 1-D.")
            return _stack(vectors, name)
        if vectors.ndim != 2:
            raise InvalidParameterError(
                f"{name} must be 2-D (rows × dimensions). Got shape {vectors.shape}."
            )
        if vectors.dtype.kind not in "fiub":
            raise InvalidParameterError(f"{name} must be numeric. Got dtype {vectors.dtype}.")
        return np.ascontiguousarray(vectors, dtype=np.float32)
    if isinstance(vectors, (list, tuple)):
        if any(np.ndim(v) == 1 for v in vectors):
            objects = np.empty(len(vectors), dtype=object)
            for i, v in enumerate(vectors):
                objects[i] = v
            return _stack(objects, name)
        return as_matrix(np.asarray(vectors, dtype=np.float32), name=name)
    raise InvalidParameterError(
        f"{name} must be a 2-D array, a column of vectors or a list of vectors. "
        f"Got {type(vectors).__name__}."
    )


# --------------------------------------------------------------------------- top-k


def _check_int(value: Any, name: str, minimum: int, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise InvalidParameterError(
            f"The '{name}' parameter of {where} must be an int >= {minimum}. Got {value!r}."
        )
    return int(value)


def _prepare_queries(queries: Any, normalized: bool) -> tuple[np.ndarray, np.ndarray]:
    """(q, d) float32 queries (normalized unless told they are) and their validity."""
    q = np.array(queries, dtype=np.float32, ndmin=2, copy=True)
    if q.ndim != 2:
        raise InvalidParameterError(
            f"queries must be 1-D (one vector) or 2-D (queries × dimensions). Got shape {q.shape}."
        )
    sq = np.einsum("ij,ij->i", q, q)
    valid = np.isfinite(sq) & (sq > 0)
    q[~valid] = 0.0
    if not normalized:
        q[valid] /= np.sqrt(sq[valid])[:, None]
    return q, valid


def _row_weights(corpus: np.ndarray, chunk_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Inverse row norms (0 for rows without a usable vector) and row validity, chunk-wise."""
    n = corpus.shape[0]
    inv = np.zeros(n, dtype=np.float32)
    for s in range(0, n, chunk_rows):
        x = np.asarray(corpus[s : s + chunk_rows], dtype=np.float32)
        sq = np.einsum("ij,ij->i", x, x)
        ok = np.isfinite(sq) & (sq > 0)
        inv[s : s + len(x)][ok] = 1.0 / np.sqrt(sq[ok])
    return inv, inv > 0


def _merge(
    scores: np.ndarray,
    cols: np.ndarray | int,
    best_s: np.ndarray,
    best_i: np.ndarray,
    k: int,
) -> None:
    """Merge a block of scores into the running best (in place).

    ``cols`` maps the block's columns to corpus rows: an offset (contiguous rows) or an
    array of row ids. ``best_s``/``best_i`` are (queries, k), unsorted, -inf/-1 when empty.
    """
    nq, m = scores.shape
    thr = best_s.min(axis=1)
    sparse = False
    if m > k and np.isfinite(thr).all():
        # Once every query has k results, usually only a few new scores beat its k-th best:
        # find them with one comparison pass (flatnonzero is much faster than a 2-D nonzero).
        above = scores > thr[:, None]
        if not np.count_nonzero(above):
            return
        flat = np.flatnonzero(above)
        if flat.size <= nq * max(4 * k, m // 16):
            r, c = np.divmod(flat, m)
            counts = np.bincount(r, minlength=nq)
            widest = int(counts.max())
            sparse = widest <= max(4 * k, m // 16)
    if sparse:
        # Gather the candidates into a small (queries, widest) block padded with -inf.
        pos = np.arange(r.size) - np.repeat(np.cumsum(counts) - counts, counts)
        cand_s = np.full((nq, widest), -np.inf, dtype=np.float32)
        cand_c = np.zeros((nq, widest), dtype=np.int64)
        cand_s[r, pos] = scores[r, c]
        cand_c[r, pos] = c
    elif m > k:
        part = np.argpartition(scores, m - k, axis=1)[:, m - k :]
        cand_s = np.take_along_axis(scores, part, axis=1)
        _lowest_rows_on_ties(scores, part, cand_s, k)
        cand_c = part.astype(np.int64, copy=False)
    else:
        cand_s = scores
        cand_c = np.broadcast_to(np.arange(m, dtype=np.int64), (nq, m))
    cand_i = cand_c + cols if isinstance(cols, int) else cols[cand_c]
    all_s = np.concatenate([best_s, cand_s], axis=1)
    all_i = np.concatenate([best_i, cand_i], axis=1)
    # Small arrays (k + candidates wide): an exact sort, score descending then row ascending.
    keep = np.lexsort((all_i, -all_s), axis=-1)[:, :k]
    best_s[:] = np.take_along_axis(all_s, keep, axis=1)
    best_i[:] = np.take_along_axis(all_i, keep, axis=1)


def _lowest_rows_on_ties(scores: np.ndarray, part: np.ndarray, cand_s: np.ndarray, k: int) -> None:
    """Make an argpartition's pick deterministic: among scores equal to the k-th best, keep
    the lowest columns (argpartition picks arbitrary ones). Rarely needed; fixed in place."""
    kth = cand_s.min(axis=1)
    finite = np.isfinite(kth)
    if not finite.any():
        return
    level = np.where(finite, kth, np.inf)[:, None]
    tied = np.count_nonzero(scores == level, axis=1) > np.count_nonzero(cand_s == level, axis=1)
    for r in np.flatnonzero(tied):
        row = scores[r]
        greater = np.flatnonzero(row > kth[r])
        equal = np.flatnonzero(row == kth[r])[: k - greater.size]
        part[r] = np.concatenate([greater, equal])
        cand_s[r] = row[part[r]]


def _top_k(
    q: np.ndarray,
    q_valid: np.ndarray,
    corpus: np.ndarray,
    k: int,
    chunk_rows: int,
    mask: np.ndarray | None,
    weights: tuple[np.ndarray, np.ndarray] | None,
    normalized: bool,
) -> tuple[np.ndarray, np.ndarray]:
    nq, n = q.shape[0], corpus.shape[0]
    best_s = np.full((nq, k), -np.inf, dtype=np.float32)
    best_i = np.full((nq, k), -1, dtype=np.int64)
    qblock = max(1, min(nq, _MAX_BLOCK_ELEMS // max(1, min(chunk_rows, n))))
    for s in range(0, n, chunk_rows):
        x = np.asarray(corpus[s : s + chunk_rows], dtype=np.float32)  # copies only if needed
        m = x.shape[0]
        if weights is not None:
            w, valid = weights[0][s : s + m], weights[1][s : s + m]
        else:
            sq = np.einsum("ij,ij->i", x, x)
            valid = np.isfinite(sq) & (sq > 0)
            w = None
            if not normalized:
                w = np.zeros(m, dtype=np.float32)
                w[valid] = 1.0 / np.sqrt(sq[valid])
        if normalized:
            w = None
        if mask is not None:
            valid = valid & mask[s : s + m]
        n_valid = int(np.count_nonzero(valid))
        if n_valid == 0:
            continue
        cols: np.ndarray | int = s
        if n_valid < m // 2:  # heavy filter or many failed rows: score only the valid rows
            keep = np.flatnonzero(valid)
            x = x[keep]
            w = None if w is None else w[keep]
            cols = keep + s
            all_valid = True
        else:
            all_valid = n_valid == m
        xt = x.T
        for qs in range(0, nq, qblock):
            scores = q[qs : qs + qblock] @ xt
            if w is not None:
                with np.errstate(invalid="ignore", over="ignore"):  # inf rows: masked below
                    scores *= w
            if not all_valid:
                scores[:, ~valid] = -np.inf
            _merge(scores, cols, best_s[qs : qs + qblock], best_i[qs : qs + qblock], k)
    # Sort each query's k best: score descending, then row ascending (deterministic ties).
    order = np.lexsort((best_i, -best_s), axis=-1)
    best_s = np.take_along_axis(best_s, order, axis=1)
    best_i = np.take_along_axis(best_i, order, axis=1)
    empty = ~np.isfinite(best_s) | ~q_valid[:, None]
    best_i[empty] = -1
    best_s[empty] = np.nan
    return best_i, best_s


def top_k(
    queries: np.ndarray,
    corpus: np.ndarray,
    k: int = 10,
    *,
    chunk_rows: int = 131072,
    mask: np.ndarray | None = None,
    normalized: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact cosine top-k: for each query, the ``k`` most similar corpus rows.

    Returns ``(indices, scores)``, both of shape (queries, k): int64 row positions in
    ``corpus`` and float32 cosine similarities, sorted by score descending (ties by lower
    row). A single 1-D query gives arrays of shape (1, k).

    * Rows that are NaN (failed embeddings), non-finite or all zero are never returned, nor
      are rows where ``mask`` (a bool array of length n) is False.
    * When fewer than ``k`` rows qualify, the remaining slots are padded with index ``-1``
      and score ``NaN`` (so shapes stay fixed); a query that is NaN or all zero gets only
      padding. :meth:`SearchIndex.search` drops the padding and returns fewer rows.
    * Queries and corpus rows are normalized to unit length unless ``normalized=True``
      (then scores are plain inner products). The corpus is normalized chunk by chunk,
      never copied whole; it may be float16/float64 or a ``np.memmap``.
    * Work is done ``chunk_rows`` corpus rows at a time with float32 matrix products, so
      memory is bounded by ``queries x chunk_rows`` scores (queries are split into blocks
      so that is at most 128 MiB), not by the corpus.

    >>> rng = np.random.default_rng(0)
    >>> corpus = rng.standard_normal((1000, 8)).astype(np.float32)
    >>> idx, scores = top_k(corpus[[3, 7]], corpus, k=3, chunk_rows=256)
    >>> idx[:, 0].tolist(), bool(np.allclose(scores[:, 0], 1.0))
    ([3, 7], True)
    """
    where = "top_k()"
    k = _check_int(k, "k", 1, where)
    chunk_rows = _check_int(chunk_rows, "chunk_rows", 1, where)
    if not isinstance(corpus, np.ndarray):
        corpus = as_matrix(corpus, name="corpus")
    if corpus.ndim != 2 or corpus.dtype.kind not in "fiub":
        raise InvalidParameterError(
            f"corpus must be a 2-D numeric array (rows × dimensions). Got shape "
            f"{corpus.shape} and dtype {corpus.dtype}."
        )
    q, q_valid = _prepare_queries(queries, normalized)
    if q.shape[1] != corpus.shape[1]:
        raise InvalidParameterError(
            f"The queries have {q.shape[1]} dimensions but the corpus has {corpus.shape[1]}; "
            "embed both with the same model."
        )
    if mask is not None:
        mask = np.asarray(mask)
        if mask.dtype != bool or mask.shape != (corpus.shape[0],):
            raise InvalidParameterError(
                f"mask must be a bool array with one value per corpus row "
                f"({corpus.shape[0]:,}). Got dtype {mask.dtype} and shape {mask.shape}."
            )
    return _top_k(q, q_valid, corpus, k, chunk_rows, mask, None, normalized)


# --------------------------------------------------------------------------- the index


def _where_mask(frame: pd.DataFrame, where: Any, level: int) -> np.ndarray | None:
    """A row filter (expression, bool Series/array or callable) → bool array of len(frame)."""
    if where is None:
        return None
    if isinstance(where, str):
        try:
            result = frame.eval(where, level=level + 1)
        except Exception as exc:  # pandas raises many kinds: undefined names, syntax, types
            raise InvalidParameterError(
                f"where={where!r} could not be evaluated on the frame ({type(exc).__name__}: "
                f"{exc}). Available columns: {list(frame.columns)}."
            ) from exc
    elif callable(where):
        result = where(frame)
    else:
        result = where
    if isinstance(result, pd.Series):
        if not result.index.equals(frame.index):
            if not frame.index.is_unique:
                raise InvalidParameterError(
                    "where= is a Series whose index differs from the frame's, and the frame's "
                    "index has duplicates, so it cannot be aligned. Pass a bool array instead."
                )
            result = result.reindex(frame.index)  # rows the Series does not mention: False
        if result.dtype != bool:
            if not (result.dtype == "boolean" or result.dtype == object):
                raise InvalidParameterError(
                    f"where= must select rows with booleans; got values of dtype {result.dtype}."
                )
            try:
                result = result.astype("boolean").fillna(False).astype(bool)
            except (TypeError, ValueError) as exc:
                raise InvalidParameterError(
                    "where= must select rows with booleans (True/False/NA); got other values."
                ) from exc
        return result.to_numpy(dtype=bool)
    arr = np.asarray(result)
    if arr.dtype != bool or arr.shape != (len(frame),):
        raise InvalidParameterError(
            "where= must be a query string (e.g. \"lang == 'en'\"), a bool Series aligned with "
            f"the frame, or a bool array of length {len(frame):,}. Got dtype {arr.dtype} "
            f"and shape {arr.shape}."
        )
    return arr


def default_embedder(model: str = "Bge_M3_FP16") -> EmbedFn:
    """Embed query texts with :func:`deapi_ds.embed` (cached, no progress bar) and ``model``.

    The default of :class:`SearchIndex` and :func:`search`: queries must be embedded with the
    model that embedded the corpus.
    """

    def embed_queries(texts: list[str]) -> np.ndarray:
        from .embeddings import embed

        return embed(list(texts), model=model, progress=False).matrix

    embed_queries.model = model  # type: ignore[attr-defined]
    return embed_queries


class SearchIndex:
    """Exact semantic search over a frame whose rows have vectors.

    ``vectors`` is aligned with ``frame`` (row i of the matrix is row i of the frame; NaN rows
    are rows without a vector and are never returned). ``embed`` turns a list of query texts
    into a (len, d) array, so that :meth:`search` accepts text; ``text_column`` names the
    column shown by :meth:`widget`.

    >>> frame = pd.DataFrame({"text": ["red apple", "green pear", "blue car"]})
    >>> vectors = np.eye(3, dtype=np.float32)
    >>> fake_embed = lambda texts: np.array([[t.count("apple"), t.count("pear"),
    ...                                       t.count("car")] for t in texts], dtype=float)
    >>> index = SearchIndex(frame, vectors, embed=fake_embed, text_column="text")
    >>> index.search(["car", "apple"], k=1)[["query", "rank", "text"]]
       query  rank       text
    0    car     1   blue car
    1  apple     1  red apple
    """

    def __init__(
        self,
        frame: pd.DataFrame,
        vectors: Any,
        *,
        embed: EmbedFn | None = None,
        text_column: str | None = None,
        chunk_rows: int = 131072,
    ) -> None:
        if not isinstance(frame, pd.DataFrame):
            raise InvalidParameterError(
                f"SearchIndex needs a DataFrame as frame. Got {type(frame).__name__}."
            )
        matrix = as_matrix(vectors, name="vectors")
        if matrix.shape[0] != len(frame):
            raise InvalidParameterError(
                f"vectors has {matrix.shape[0]:,} rows but the frame has {len(frame):,}; they "
                "must be aligned (row i of vectors belongs to row i of the frame)."
            )
        if text_column is not None and text_column not in frame.columns:
            raise InvalidParameterError(
                f"Column {text_column!r} not found (text_column=...). "
                f"Available columns: {list(frame.columns)}."
            )
        if embed is not None and not callable(embed):
            raise InvalidParameterError(
                "embed must be a callable taking a list of texts and returning their vectors."
            )
        self._frame = frame
        self._vectors = matrix
        self._embed = embed if embed is not None else default_embedder()
        self._text_column = text_column
        self._chunk_rows = _check_int(chunk_rows, "chunk_rows", 1, "SearchIndex()")
        self._weights = _row_weights(matrix, self._chunk_rows)
        self._query_cache: OrderedDict[str, np.ndarray] = OrderedDict()

    @classmethod
    def from_frame(
        cls,
        df: pd.DataFrame,
        vector_column: str = "embedding",
        *,
        embed: EmbedFn | None = None,
        text_column: str | None = None,
        chunk_rows: int = 131072,
    ) -> SearchIndex:
        """An index over ``df`` whose ``vector_column`` holds one vector per row.

        The column may hold numpy arrays (None/NaN for rows without one) or be an Arrow
        (fixed-size) list column, as written to parquet. It is left out of search results.

        >>> df = pd.DataFrame({"text": ["a", "b"], "embedding": [np.ones(4), -np.ones(4)]})
        >>> SearchIndex.from_frame(df)
        deapi_ds.SearchIndex(2 rows × 4 dims, columns=['text'])
        """
        if not isinstance(df, pd.DataFrame):
            raise InvalidParameterError(
                f"SearchIndex.from_frame() needs a DataFrame. Got {type(df).__name__}."
            )
        if vector_column not in df.columns:
            raise InvalidParameterError(
                f"Column {vector_column!r} not found (vector_column=...). "
                f"Available columns: {list(df.columns)}."
            )
        vectors = as_matrix(df[vector_column], name=f"Column {vector_column!r}")
        return cls(
            df.drop(columns=[vector_column]),
            vectors,
            embed=embed,
            text_column=text_column,
            chunk_rows=chunk_rows,
        )

    @property
    def frame(self) -> pd.DataFrame:
        """The frame whose rows are searched (without the vector column)."""
        return self._frame

    @property
    def vectors(self) -> np.ndarray:
        """The (rows, dimensions) float32 matrix."""
        return self._vectors

    @property
    def dim(self) -> int:
        """The vectors' dimension."""
        return int(self._vectors.shape[1])

    def __len__(self) -> int:
        return len(self._frame)

    def __repr__(self) -> str:
        n, d = self._vectors.shape
        parts = [f"{n:,} rows × {d} dims"]
        missing = n - int(np.count_nonzero(self._weights[1]))
        if missing:
            parts.append(f"{missing:,} without vectors")
        if self._text_column is not None:
            parts.append(f"text_column={self._text_column!r}")
        else:
            cols = list(map(str, self._frame.columns))
            parts.append(f"columns={cols[:6] + ['…'] if len(cols) > 6 else cols}")
        if self._embed is not None:
            parts.append(f"embed={getattr(self._embed, '__name__', type(self._embed).__name__)}")
        return f"deapi_ds.SearchIndex({', '.join(parts)})"

    # -- queries

    def _embed_texts(self, texts: list[str]) -> np.ndarray:
        if self._embed is None:
            raise InvalidParameterError(
                "Text queries need an embedding function: build the index with embed=... "
                "(e.g. SearchIndex(df, vectors, embed=deapi_ds.search.default_embedder("
                "'Bge_M3_FP16'))), or pass query vectors as a numpy array."
            )
        todo = list(dict.fromkeys(t for t in texts if t not in self._query_cache))
        if todo:
            got = self._embed(todo)
            vectors = as_matrix(getattr(got, "vectors", got), name="embed(...) result")
            if vectors.shape != (len(todo), self.dim):
                raise InvalidParameterError(
                    f"embed(...) returned shape {vectors.shape} for {len(todo)} texts; expected "
                    f"({len(todo)}, {self.dim}) to match the index (same model?)."
                )
            for text, vec in zip(todo, vectors, strict=True):
                self._query_cache[text] = vec
                if len(self._query_cache) > 256:
                    self._query_cache.popitem(last=False)
        for text in texts:
            self._query_cache.move_to_end(text, last=True)
        return np.stack([self._query_cache[t] for t in texts])

    def _queries(self, queries: Any) -> tuple[np.ndarray, Any]:
        if isinstance(queries, str):
            queries = [queries]
        if isinstance(queries, pd.Series) and queries.dtype != object:
            if pd.api.types.is_string_dtype(queries.dtype):
                queries = queries.tolist()
        if isinstance(queries, (list, tuple, pd.Series)) and len(queries) > 0:
            items = list(queries)
            if all(isinstance(t, str) for t in items):
                return self._embed_texts(items), pd.array(items, dtype="string")
        if isinstance(queries, (list, tuple)) and len(queries) == 0:
            raise InvalidParameterError("search() got no queries (an empty list).")
        vectors = as_matrix(np.atleast_2d(np.asarray(queries, dtype=np.float32)), name="queries")
        if vectors.shape[1] != self.dim:
            raise InvalidParameterError(
                f"The query vectors have {vectors.shape[1]} dimensions but the index has "
                f"{self.dim}; embed them with the same model."
            )
        return vectors, np.arange(len(vectors), dtype=np.int64)

    def search(
        self,
        queries: str | Sequence[str] | np.ndarray,
        k: int = 10,
        *,
        where: str | pd.Series | np.ndarray | Callable[[pd.DataFrame], Any] | None = None,
    ) -> pd.DataFrame:
        """The ``k`` best rows for each query, as a frame in rank order.

        ``queries`` is a text, a list of texts (embedded with ``embed``) or query vectors
        (1-D for one, 2-D for many). ``where`` filters rows first: a ``df.query``-style
        expression (``"lang == 'en' and year > @year"``; ``@names`` come from the caller), a
        bool Series aligned with the frame, a bool array, or a callable taking the frame.

        The result has the columns ``query`` (the text, or the query's position for
        vectors), ``rank`` (1..k), ``score`` (cosine similarity), then the frame's columns,
        then ``row`` (the frame's index label of the hit). Original columns named query,
        rank, score or row are renamed ``data_<name>``. A query gets fewer than ``k`` rows
        when fewer rows qualify (rows without vectors are never returned).
        """
        return self._search(queries, k, where, level=1)

    def _search(self, queries: Any, k: int, where: Any, level: int) -> pd.DataFrame:
        k = _check_int(k, "k", 1, "search()")
        mask = _where_mask(self._frame, where, level=level + 1)
        vectors, labels = self._queries(queries)
        q, q_valid = _prepare_queries(vectors, normalized=False)
        if not q_valid.all():
            bad = [str(labels[i]) for i in np.flatnonzero(~q_valid)[:3]]
            warnings.warn(
                f"{int((~q_valid).sum())} queries have no usable vector (NaN or zero), e.g. "
                f"{bad}; they return no rows.",
                UserWarning,
                stacklevel=level + 2,
            )
        idx, scores = _top_k(
            q, q_valid, self._vectors, k, self._chunk_rows, mask, self._weights, False
        )
        qi, rank = np.nonzero(idx >= 0)
        pos = idx[qi, rank]
        hits = self._frame.iloc[pos]
        renamed = {c: f"data_{c}" for c in hits.columns if c in _META}
        body = hits.reset_index(drop=True).rename(columns=renamed)
        meta = pd.DataFrame(
            {
                "query": labels[qi],
                "rank": (rank + 1).astype(np.int64),
                "score": scores[qi, rank].astype(np.float32),
            }
        )
        out = pd.concat([meta, body], axis=1)
        out["row"] = hits.index.to_numpy() if hits.index.nlevels == 1 else list(hits.index)
        return out

    # -- notebook

    def widget(
        self, *, k: int = 5, columns: Sequence[str] | None = None, placeholder: str = "Search…"
    ) -> ipywidgets.VBox:
        """A search box with live results: type a query, press Enter, see the top ``k``.

        Returns an ``ipywidgets.VBox`` of a ``Text`` box and an ``HTML`` widget holding a
        static results table (the HTML widget is used rather than ``Output`` so results are a
        plain string, which survives notebook export and testing). Searches run on submit
        (Enter or leaving the box), not on every keystroke. ``columns`` picks the frame
        columns shown (default: ``text_column``, or all of them).
        """
        import ipywidgets as widgets

        from deapi_ds.display import frame_html

        if self._embed is None:
            raise InvalidParameterError(
                "widget() needs text queries: build the index with embed=... (a function that "
                "turns a list of texts into vectors)."
            )
        k = _check_int(k, "k", 1, "widget()")
        if columns is None:
            shown = [self._text_column] if self._text_column else list(self._frame.columns)
        else:
            missing = [c for c in columns if c not in self._frame.columns]
            if missing:
                raise InvalidParameterError(
                    f"Columns {missing} not found (columns=...). "
                    f"Available columns: {list(self._frame.columns)}."
                )
            shown = list(columns)
        box = widgets.Text(
            placeholder=placeholder,
            continuous_update=False,
            layout=widgets.Layout(width="min(100%, 640px)"),
        )
        results = widgets.HTML(value="")

        def run(change: dict[str, Any]) -> None:
            text = str(change["new"]).strip()
            if not text:
                results.value = ""
                return
            try:
                found = self.search(text, k=k)
                table = found[["rank", "score", *[_result_column(c) for c in shown], "row"]]
                results.value = frame_html(table.set_index("rank"), max_rows=k)
            except Exception as exc:  # show the error in the widget, not in the kernel log
                from html import escape

                results.value = (
                    f'<span style="color:#a93226">{escape(type(exc).__name__)}: '
                    f"{escape(str(exc))}</span>"
                )

        box.observe(run, names="value")
        return widgets.VBox([box, results])


def _result_column(column: Any) -> Any:
    """The name of a frame column in search results (clashing names get a data_ prefix)."""
    return f"data_{column}" if column in _META else column


def search(
    queries: str | Sequence[str] | np.ndarray,
    data: pd.DataFrame | SearchIndex,
    *,
    k: int = 10,
    vectors: Any = None,
    vector_column: str = "embedding",
    embed: EmbedFn | None = None,
    where: str | pd.Series | np.ndarray | Callable[[pd.DataFrame], Any] | None = None,
) -> pd.DataFrame:
    """Exact cosine search of ``queries`` over ``data``: the ``k`` best rows per query.

    ``data`` is a :class:`SearchIndex` or a DataFrame whose ``vector_column`` holds the
    vectors (or pass ``vectors=`` aligned with its rows). Text queries need ``embed``. See
    :meth:`SearchIndex.search` for ``where`` and the result's columns. For many searches
    over the same frame, build a :class:`SearchIndex` once.

    >>> df = pd.DataFrame({"text": ["x", "y"], "embedding": [np.array([1., 0]), np.array([0., 1])]})
    >>> search(np.array([0.2, 1.0]), df, k=1)[["rank", "text", "row"]]
       rank text  row
    0     1    y    1
    """
    if isinstance(data, SearchIndex):
        index = data
        if embed is not None:
            index = SearchIndex.__new__(SearchIndex)
            index.__dict__.update(data.__dict__)
            index._embed = embed
            index._query_cache = OrderedDict()
    elif isinstance(data, pd.DataFrame):
        if vectors is not None:
            index = SearchIndex(data, vectors, embed=embed)
        else:
            index = SearchIndex.from_frame(data, vector_column, embed=embed)
    else:
        raise InvalidParameterError(
            f"search() needs a DataFrame or a SearchIndex as data. Got {type(data).__name__}."
        )
    return index._search(queries, k, where, level=1)
