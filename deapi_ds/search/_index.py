"""``SearchIndex``: dense, lexical and hybrid search over a frame, as frames; save and load.

A :class:`SearchIndex` holds a frame, its vectors (float32, or float16 to halve memory) and,
when it has a ``text_column``, a BM25 index built on first use. ``search(..., mode=...)``:

* ``"dense"``: exact cosine top-k over the vectors (:func:`~deapi_ds.search.top_k`);
* ``"lexical"``: BM25 over the text column;
* ``"hybrid"``: both, each taking ``candidates`` rows, fused by reciprocal rank
  (``fusion="rrf"``: ``2 * (w / (60 + dense rank) + (1 - w) / (60 + lexical rank))``) or by a
  weighted sum of scores (``fusion="weighted"``: ``w * cosine + (1 - w) * BM25 / the query's
  best BM25``, both computed for every candidate), ``w`` being ``weight``.
  Hits say which side found them (``found_by``) and their rank on each side.

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

import json
import shutil
import sys
import warnings
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from deapi_ds._exceptions import InvalidParameterError
from deapi_ds.embeddings import EmbeddingResult, embed

from ._dense import _check_int, _prepare_queries, _row_weights, _top_k, as_matrix
from ._lexical import BM25

if TYPE_CHECKING:
    import ipywidgets

__all__ = ["SearchIndex", "default_embedder", "search"]

EmbedFn = Callable[[list[str]], Any]
Mode = Literal["dense", "lexical", "hybrid"]
Where = str | pd.Series | np.ndarray | Callable[[pd.DataFrame], Any] | None

#: Columns of the result frame that come before the original columns; clashing names in the
#: frame are prefixed with "data_".
_META = ("query", "rank", "score", "found_by", "dense_rank", "lexical_rank", "row")
_MODES = ("dense", "lexical", "hybrid")
_RRF_K = 60
_FORMAT = 1


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
        return embed(list(texts), model=model, progress=False).matrix

    embed_queries.model = model  # type: ignore[attr-defined]
    return embed_queries


def _is_vector_column(column: pd.Series) -> bool:
    """True for a column holding vectors (arrays / lists of numbers, or an Arrow list type)."""
    dtype = column.dtype
    if isinstance(dtype, pd.ArrowDtype):
        import pyarrow as pa

        typ = dtype.pyarrow_dtype
        return pa.types.is_list(typ) or pa.types.is_fixed_size_list(typ)
    if not pd.api.types.is_object_dtype(dtype):
        return False
    first = column.first_valid_index()
    if first is None:
        return False
    value = column.loc[first]
    if isinstance(value, pd.Series):  # duplicate labels
        value = value.iloc[0]
    return isinstance(value, np.ndarray) and value.ndim == 1 and value.dtype.kind in "fiu"


def _check_mode(mode: Any, where: str) -> str:
    if mode not in _MODES:
        raise InvalidParameterError(
            f"The 'mode' parameter of {where} must be one of {list(_MODES)}. Got {mode!r}."
        )
    return mode


class SearchIndex:
    """Semantic, keyword and hybrid search over a frame whose rows have vectors.

    ``vectors`` is aligned with ``frame`` (row i of the matrix is row i of the frame; NaN rows
    are rows without a vector and are never returned by dense search). ``embed`` turns a list
    of query texts into a (len, d) array, so that :meth:`search` accepts text (default:
    :func:`deapi_ds.embed` with Bge_M3_FP16); ``text_column`` names the column searched by
    ``mode="lexical"`` / ``"hybrid"`` and shown by :meth:`widget`. ``dtype="float16"`` stores
    the vectors in half the memory (scores are still computed in float32). Columns of
    ``frame`` that hold vectors are left out of the index's frame and of search results.

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
        dtype: Literal["float32", "float16"] = "float32",
    ) -> None:
        if not isinstance(frame, pd.DataFrame):
            raise InvalidParameterError(
                f"SearchIndex needs a DataFrame as frame. Got {type(frame).__name__}."
            )
        if dtype not in ("float32", "float16"):
            raise InvalidParameterError(
                f"The 'dtype' parameter of SearchIndex() must be 'float32' or 'float16'. "
                f"Got {dtype!r}."
            )
        matrix = vectors if isinstance(vectors, np.memmap) else as_matrix(vectors, name="vectors")
        if matrix.ndim != 2 or matrix.shape[0] != len(frame):
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
        vector_columns = [c for c in frame.columns if _is_vector_column(frame[c])]
        self._frame = frame.drop(columns=vector_columns) if vector_columns else frame
        if dtype == "float16" and matrix.dtype != np.float16:
            matrix = matrix.astype(np.float16)
        self._vectors = matrix
        self._embed = embed if embed is not None else default_embedder()
        self._text_column = text_column
        self._chunk_rows = _check_int(chunk_rows, "chunk_rows", 1, "SearchIndex()")
        self._weights = _row_weights(matrix, self._chunk_rows)
        self._query_cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lexical: BM25 | None = None

    @classmethod
    def from_frame(
        cls,
        df: pd.DataFrame,
        vector_column: str = "embedding",
        *,
        embed: EmbedFn | None = None,
        text_column: str | None = None,
        chunk_rows: int = 131072,
        dtype: Literal["float32", "float16"] = "float32",
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
            dtype=dtype,
        )

    @property
    def frame(self) -> pd.DataFrame:
        """The frame whose rows are searched (without the vector columns)."""
        return self._frame

    @property
    def vectors(self) -> np.ndarray:
        """The (rows, dimensions) matrix (float32, or float16 when built with that dtype)."""
        return self._vectors

    @property
    def dim(self) -> int:
        """The number of dimensions of the vectors."""
        return int(self._vectors.shape[1])

    @property
    def text_column(self) -> str | None:
        """The column searched by lexical and hybrid search (None: dense search only)."""
        return self._text_column

    @property
    def lexical(self) -> BM25:
        """The BM25 index over ``text_column`` (built on first use)."""
        if self._lexical is None:
            if self._text_column is None:
                raise InvalidParameterError(
                    "Lexical and hybrid search need the text: build the index with "
                    "text_column=... (e.g. res.search_index(df, text_column='text'))."
                )
            self._lexical = BM25(self._frame[self._text_column].tolist())
        return self._lexical

    def __len__(self) -> int:
        return len(self._frame)

    def __repr__(self) -> str:
        n, d = self._vectors.shape
        parts = [f"{n:,} rows × {d} dims"]
        if self._vectors.dtype == np.float16:
            parts[0] += " float16"
        missing = n - int(np.count_nonzero(self._weights[1]))
        if missing:
            parts.append(f"{missing:,} without vectors")
        if self._text_column is not None:
            parts.append(f"text_column={self._text_column!r}")
        else:
            cols = list(map(str, self._frame.columns))
            parts.append(f"columns={cols[:6] + ['…'] if len(cols) > 6 else cols}")
        if self._embed is not None and getattr(self._embed, "model", None) is None:
            parts.append(f"embed={getattr(self._embed, '__name__', type(self._embed).__name__)}")
        return f"deapi_ds.SearchIndex({', '.join(parts)})"

    def with_embed(self, embed: EmbedFn) -> SearchIndex:
        """The same index (sharing its vectors and frame) with another query embedder."""
        other = SearchIndex.__new__(SearchIndex)
        other.__dict__.update(self.__dict__)
        other._embed = embed
        other._query_cache = OrderedDict()
        return other

    # -- queries

    def _embed_texts(self, texts: list[str]) -> np.ndarray:
        """Query vectors, embedding only texts not in the (256 most recent) query cache."""
        known = {t: self._query_cache[t] for t in texts if t in self._query_cache}
        todo = list(dict.fromkeys(t for t in texts if t not in known))
        if todo:
            got = self._embed(todo)
            vectors = as_matrix(getattr(got, "vectors", got), name="embed(...) result")
            if vectors.shape != (len(todo), self.dim):
                raise InvalidParameterError(
                    f"embed(...) returned shape {vectors.shape} for {len(todo)} texts; expected "
                    f"({len(todo)}, {self.dim}) to match the index (same model?)."
                )
            known.update(zip(todo, vectors, strict=True))
        for text in dict.fromkeys(texts):
            self._query_cache[text] = known[text]
            self._query_cache.move_to_end(text, last=True)
        while len(self._query_cache) > 256:
            self._query_cache.popitem(last=False)
        return np.stack([known[t] for t in texts])

    def _query_texts(self, queries: Any) -> list[str] | None:
        """The queries as a list of texts, or None when they are vectors."""
        if isinstance(queries, str):
            return [queries]
        if isinstance(queries, pd.Series) and pd.api.types.is_string_dtype(queries.dtype):
            queries = queries.tolist()
        if isinstance(queries, (list, tuple, pd.Series)):
            if len(queries) == 0:
                raise InvalidParameterError("search() got no queries (an empty list).")
            items = list(queries)
            is_text = [isinstance(t, str) for t in items]
            if all(is_text):
                return items
            if any(is_text):
                bad = is_text.index(False)
                raise InvalidParameterError(
                    f"search(): query {bad} is {items[bad]!r}, not a text; every query must be "
                    "a str (drop missing ones first, e.g. queries.dropna())."
                )
        return None

    def _query_vectors(self, queries: Any) -> np.ndarray:
        vectors = as_matrix(np.atleast_2d(np.asarray(queries, dtype=np.float32)), name="queries")
        if vectors.shape[1] != self.dim:
            raise InvalidParameterError(
                f"The query vectors have {vectors.shape[1]} dimensions but the index has "
                f"{self.dim}; embed them with the same model."
            )
        return vectors

    def search(
        self,
        queries: str | Sequence[str] | np.ndarray,
        k: int = 10,
        *,
        where: Where = None,
        mode: Mode = "dense",
        fusion: Literal["rrf", "weighted"] = "rrf",
        weight: float = 0.5,
        candidates: int | None = None,
        group_by: str | None = None,
    ) -> pd.DataFrame:
        """The ``k`` best rows for each query, as a frame in rank order.

        ``queries`` is a text, a list of texts (embedded with ``embed`` for dense search) or
        query vectors (1-D for one, 2-D for many; dense search only). ``where`` filters rows
        first, on every mode: a ``df.query``-style expression (``"lang == 'en' and year >
        @year"``; ``@names`` come from the caller), a bool Series aligned with the frame, a
        bool array, or a callable taking the frame.

        ``mode`` is ``"dense"`` (cosine over the vectors), ``"lexical"`` (BM25 over
        ``text_column``) or ``"hybrid"`` (both, fused: ``fusion="rrf"`` or ``"weighted"``,
        ``weight`` being the dense side's share; each side contributes its ``candidates``
        best rows, default ``max(50, 2 * k)``). ``group_by`` names a column (e.g. ``"doc"`` in
        a frame from :func:`~deapi_ds.search.chunk`): only the best row of each group is kept,
        so passages search returns ``k`` documents, each with its best passage.

        The result has the columns ``query`` (the text, or the query's position for
        vectors), ``rank`` (1..k), ``score`` (cosine similarity, BM25 score or fused score),
        for hybrid search ``found_by`` ("dense", "lexical" or "both"), ``dense_rank`` and
        ``lexical_rank`` (NA when that side did not find the row), then the frame's columns,
        then ``row`` (the frame's index label of the hit). Original columns with these names
        are renamed ``data_<name>``. A query gets fewer than ``k`` rows when fewer rows
        qualify (rows without vectors are never found by dense search, rows sharing no word
        with the query never by lexical search).
        """
        return self._search(queries, k, where, mode, fusion, weight, candidates, group_by, level=1)

    def _search(
        self,
        queries: Any,
        k: int,
        where: Any,
        mode: Any,
        fusion: Any,
        weight: Any,
        candidates: Any,
        group_by: Any,
        level: int,
    ) -> pd.DataFrame:
        k = _check_int(k, "k", 1, "search()")
        mode = _check_mode(mode, "search()")
        if fusion not in ("rrf", "weighted"):
            raise InvalidParameterError(
                f"The 'fusion' parameter of search() must be 'rrf' or 'weighted'. Got {fusion!r}."
            )
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0 <= weight <= 1:
            raise InvalidParameterError(
                f"The 'weight' parameter of search() must be a number in [0, 1]. Got {weight!r}."
            )
        if candidates is not None:
            candidates = _check_int(candidates, "candidates", 1, "search()")
        if group_by is not None and group_by not in self._frame.columns:
            raise InvalidParameterError(
                f"Column {group_by!r} not found (group_by=...). "
                f"Available columns: {list(self._frame.columns)}."
            )
        mask = _where_mask(self._frame, where, level=level + 1)
        texts = self._query_texts(queries)
        if texts is None and mode != "dense":
            raise InvalidParameterError(
                f"mode={mode!r} needs text queries (a str or a list of str); query vectors "
                "can only be searched with mode='dense'."
            )
        labels: Any = (
            pd.array(texts, dtype="string") if texts is not None else None
        )  # vectors: set below
        q = q_valid = None
        if mode != "lexical":
            vectors = (
                self._embed_texts(texts) if texts is not None else self._query_vectors(queries)
            )
            if labels is None:
                labels = np.arange(len(vectors), dtype=np.int64)
            q, q_valid = _prepare_queries(vectors, normalized=False)
            if not q_valid.all():
                bad = [str(labels[i]) for i in np.flatnonzero(~q_valid)[:3]]
                warnings.warn(
                    f"{int((~q_valid).sum())} queries have no usable vector (NaN or zero), e.g. "
                    f"{bad}; dense search returns no rows for them.",
                    UserWarning,
                    stacklevel=level + 2,
                )
        fetch = k if group_by is None else min(len(self), 4 * k)
        while True:
            n_cand = (
                (max(candidates, fetch) if candidates else max(50, 2 * fetch))
                if mode == "hybrid"
                else fetch
            )
            idx, scores, extra = self._ranked(
                texts, q, q_valid, fetch, n_cand, mode, mask, fusion, weight
            )
            hits = self._hits(labels, idx, scores, extra)
            if group_by is None:
                return hits.drop(columns="_q")
            best = hits.drop_duplicates(["_q", group_by])
            got = best.groupby("_q").size().reindex(range(len(labels)), fill_value=0)
            short = (got < k) & (
                hits.groupby("_q").size().reindex(got.index, fill_value=0) >= fetch
            )
            if not short.any() or fetch >= len(self):
                best = best.groupby("_q", sort=False).head(k).reset_index(drop=True)
                best["rank"] = best.groupby("_q").cumcount().to_numpy(np.int64) + 1
                return best.drop(columns="_q")
            fetch = min(len(self), fetch * 4)

    def _ranked(
        self,
        texts: list[str] | None,
        q: np.ndarray | None,
        q_valid: np.ndarray | None,
        k: int,
        n_cand: int,
        mode: str,
        mask: np.ndarray | None,
        fusion: str,
        weight: float,
    ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """(indices, scores) of shape (queries, k), padded -1 / NaN, and hybrid extras."""
        if mode == "dense":
            idx, scores = _top_k(
                q, q_valid, self._vectors, k, self._chunk_rows, mask, self._weights, False
            )
            return idx, scores, {}
        if mode == "lexical":
            idx, scores = self.lexical.top_k(texts, k, mask=mask)
            return idx, scores, {}
        d_idx, d_s = _top_k(
            q, q_valid, self._vectors, n_cand, self._chunk_rows, mask, self._weights, False
        )
        l_idx, l_s = self.lexical.top_k(texts, n_cand, mask=mask)

        def scorer(i: int, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            x = np.asarray(self._vectors[rows], dtype=np.float32)
            cosine = (x @ q[i]) * self._weights[0][rows]
            docs, scores = self.lexical.scores(texts[i])
            at = np.minimum(np.searchsorted(docs, rows), max(docs.size - 1, 0))
            hit = docs[at] == rows if docs.size else np.zeros(rows.size, dtype=bool)
            return cosine, np.where(hit, scores[at] if docs.size else 0.0, 0.0)

        return _fuse(d_idx, d_s, l_idx, l_s, k, fusion, weight, scorer)

    def _hits(
        self, labels: Any, idx: np.ndarray, scores: np.ndarray, extra: dict[str, np.ndarray]
    ) -> pd.DataFrame:
        qi, rank = np.nonzero(idx >= 0)
        pos = idx[qi, rank]
        hits = self._frame.iloc[pos]
        renamed = {c: f"data_{c}" for c in hits.columns if c in _META}
        body = hits.reset_index(drop=True).rename(columns=renamed)
        meta = {
            "query": labels[qi],
            "rank": (rank + 1).astype(np.int64),
            "score": scores[qi, rank].astype(np.float32),
        }
        if extra:
            meta["found_by"] = pd.Categorical.from_codes(
                extra["found_by"][qi, rank], categories=["dense", "lexical", "both"]
            )
            for side in ("dense_rank", "lexical_rank"):
                values = extra[side][qi, rank]
                meta[side] = pd.array(np.where(values > 0, values, 0), dtype="Int64")
                meta[side][values <= 0] = pd.NA
        out = pd.concat([pd.DataFrame(meta), body], axis=1)
        out["row"] = hits.index.to_numpy() if hits.index.nlevels == 1 else list(hits.index)
        out["_q"] = qi
        return out

    # -- files

    def save(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write the index to the folder ``path``: vectors, frame, lexical index, settings.

        Files: ``vectors.npy`` (float32 or float16), ``frame.parquet`` (the frame with its
        index), ``bm25/`` (when there is a ``text_column``) and ``index.json``. Nothing is
        pickled, so loading someone else's index runs no code. An existing folder is an
        error unless ``overwrite=True``. Returns the folder.
        """
        path = Path(path)
        if path.exists():
            if not overwrite:
                raise InvalidParameterError(
                    f"{path} exists; pass overwrite=True to replace it, or another path."
                )
            if not (path / "index.json").exists() and any(path.iterdir()):
                raise InvalidParameterError(
                    f"{path} is a non-empty folder that is not a saved index; refusing to "
                    "overwrite it. Choose another path."
                )
            shutil.rmtree(path)
        tmp = path.with_name(path.name + ".tmp-save")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            np.save(tmp / "vectors.npy", np.ascontiguousarray(self._vectors), allow_pickle=False)
            try:
                self._frame.to_parquet(tmp / "frame.parquet")
            except Exception as exc:  # pyarrow refuses some object columns
                raise InvalidParameterError(
                    f"The index's frame cannot be written to parquet ({type(exc).__name__}: "
                    f"{exc}); convert or drop the offending columns first."
                ) from exc
            if self._text_column is not None:
                self.lexical.save(tmp / "bm25")
            header = {
                "format": _FORMAT,
                "rows": len(self),
                "dim": self.dim,
                "dtype": str(self._vectors.dtype),
                "text_column": self._text_column,
                "chunk_rows": self._chunk_rows,
                "model": getattr(self._embed, "model", None),
            }
            (tmp / "index.json").write_text(json.dumps(header, indent=1))
            tmp.rename(path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return path

    @classmethod
    def load(
        cls, path: str | Path, *, embed: EmbedFn | None = None, mmap: bool = False
    ) -> SearchIndex:
        """An index written by :meth:`save`. Queries are embedded with ``embed``, or with
        :func:`deapi_ds.embed` and the model recorded at save time. ``mmap=True`` maps the
        vectors from disk instead of reading them (for indexes larger than memory)."""
        path = Path(path)
        if not (path / "index.json").exists():
            raise InvalidParameterError(
                f"{path} is not a saved SearchIndex (no index.json); write one with index.save()."
            )
        header = json.loads((path / "index.json").read_text())
        if header.get("format") != _FORMAT:
            raise InvalidParameterError(
                f"{path}: index format {header.get('format')!r} is not {_FORMAT}; rebuild it "
                "with this version of deapi_ds."
            )
        vectors = np.load(path / "vectors.npy", allow_pickle=False, mmap_mode="r" if mmap else None)
        frame = pd.read_parquet(path / "frame.parquet")
        if embed is None and header.get("model"):
            embed = default_embedder(header["model"])
        self = cls(
            frame,
            vectors,
            embed=embed,
            text_column=header.get("text_column"),
            chunk_rows=int(header.get("chunk_rows", 131072)),
            dtype="float16" if vectors.dtype == np.float16 else "float32",
        )
        if header.get("text_column") is not None and (path / "bm25").exists():
            self._lexical = BM25.load(path / "bm25")
            if len(self._lexical) != len(self):
                raise InvalidParameterError(
                    f"{path}: the lexical index has {len(self._lexical):,} rows but the frame "
                    f"{len(self):,}; the files are from different indexes."
                )
        return self

    # -- notebook

    def widget(
        self,
        *,
        k: int = 5,
        columns: Sequence[str] | None = None,
        placeholder: str = "Search…",
        mode: Mode = "dense",
    ) -> ipywidgets.VBox:
        """A search box with live results: type a query, press Enter, see the top ``k``.

        Returns an ``ipywidgets.VBox`` of a ``Text`` box and an ``HTML`` widget holding a
        static results table (the HTML widget is used rather than ``Output`` so results are a
        plain string, which survives notebook export and testing). Searches run on submit
        (Enter or leaving the box), not on every keystroke, with ``mode``. ``columns`` picks
        the frame columns shown (default: ``text_column``, or all of them).
        """
        import ipywidgets as widgets

        from deapi_ds.display import frame_html

        k = _check_int(k, "k", 1, "widget()")
        mode = _check_mode(mode, "widget()")
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
                found = self.search(text, k=k, mode=mode)
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


def _fuse(
    d_idx: np.ndarray,
    d_s: np.ndarray,
    l_idx: np.ndarray,
    l_s: np.ndarray,
    k: int,
    fusion: str,
    weight: float,
    scorer: Callable[[int, np.ndarray], tuple[np.ndarray, np.ndarray]] | None = None,
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Fuse two ranked candidate lists per query.

    ``rrf``: reciprocal ranks. ``weighted``: ``weight * cosine + (1 - weight) * BM25 / the
    query's best BM25``, where ``scorer(query, rows)`` gives both scores of every candidate
    (also for rows only one side found, so a row is not penalised for missing a cut-off)."""
    nq = d_idx.shape[0]
    idx = np.full((nq, k), -1, dtype=np.int64)
    out = np.full((nq, k), np.nan, dtype=np.float32)
    found = np.zeros((nq, k), dtype=np.int8)
    ranks = {side: np.zeros((nq, k), dtype=np.int64) for side in ("dense_rank", "lexical_rank")}
    for i in range(nq):
        sides = []
        for ids, s in ((d_idx[i], d_s[i]), (l_idx[i], l_s[i])):
            ok = ids >= 0
            sides.append((ids[ok], s[ok]))
        (di, ds), (li, ls) = sides
        rows, inverse = np.unique(np.concatenate([di, li]), return_inverse=True)
        if rows.size == 0:
            continue
        fused = np.zeros(rows.size, dtype=np.float64)
        side_rank = np.zeros((2, rows.size), dtype=np.int64)
        for j, (ids, w) in enumerate(((di, weight), (li, 1 - weight))):
            at = inverse[: di.size] if j == 0 else inverse[di.size :]
            side_rank[j, at] = np.arange(1, ids.size + 1)
            if fusion == "rrf":
                fused[at] += 2 * w / (_RRF_K + np.arange(1, ids.size + 1))
        if fusion == "weighted" and scorer is not None:
            cosine, bm25 = scorer(i, rows)
            best = float(ls.max()) if ls.size else 0.0
            lexical = bm25 / best if best > 0 else np.zeros(rows.size)
            fused = weight * np.nan_to_num(cosine, nan=-1.0) + (1 - weight) * lexical
        order = np.lexsort((rows, -fused))[:k]
        m = order.size
        idx[i, :m] = rows[order]
        out[i, :m] = fused[order]
        in_d, in_l = side_rank[0, order] > 0, side_rank[1, order] > 0
        found[i, :m] = np.where(in_d & in_l, 2, np.where(in_d, 0, 1))
        ranks["dense_rank"][i, :m] = side_rank[0, order]
        ranks["lexical_rank"][i, :m] = side_rank[1, order]
    return idx, out, {"found_by": found, **ranks}


def _result_column(column: Any) -> Any:
    """The name of a frame column in search results (clashing names get a data_ prefix)."""
    return f"data_{column}" if column in _META else column


def _looks_like_data(value: Any) -> bool:
    return isinstance(value, (pd.DataFrame, SearchIndex))


def search(
    data: pd.DataFrame | SearchIndex,
    queries: str | Sequence[str] | np.ndarray,
    *,
    k: int = 10,
    mode: Mode = "dense",
    vectors: Any = None,
    vector_column: str = "embedding",
    text_column: str | None = None,
    embed: EmbedFn | None = None,
    where: Where = None,
    fusion: Literal["rrf", "weighted"] = "rrf",
    weight: float = 0.5,
    candidates: int | None = None,
    group_by: str | None = None,
) -> pd.DataFrame:
    """Search ``data`` for ``queries``: the ``k`` best rows per query, as a frame.

    ``data`` is a :class:`SearchIndex` or a DataFrame whose ``vector_column`` holds the
    vectors (or pass ``vectors=`` aligned with its rows; ``text_column=`` for lexical and
    hybrid search). Text queries are embedded with ``embed`` (default: :func:`deapi_ds.embed`).
    ``mode``, ``where``, ``fusion``, ``weight``, ``candidates``, ``group_by`` and the result's
    columns are those of :meth:`SearchIndex.search`. For many searches over the same frame,
    build a :class:`SearchIndex` once.

    ``search(queries, data)`` (the order before 0.1.0) still works, with a DeprecationWarning.

    >>> df = pd.DataFrame({"text": ["x", "y"], "embedding": [np.array([1., 0]), np.array([0., 1])]})
    >>> search(df, np.array([0.2, 1.0]), k=1)[["rank", "text", "row"]]
       rank text  row
    0     1    y    1
    """
    # called as deapi_ds.search(...): the callable module adds a frame before the user's
    extra = int(sys._getframe(1).f_globals.get("__name__") == "deapi_ds.search")
    if not _looks_like_data(data) and _looks_like_data(queries):
        warnings.warn(
            "search(queries, data) is deprecated: pass the data first, "
            "search(data, queries, ...), like every deapi_ds function.",
            DeprecationWarning,
            stacklevel=2 + extra,
        )
        data, queries = queries, data
    if isinstance(data, SearchIndex):
        index = data if embed is None else data.with_embed(embed)
        if text_column is not None and text_column != index.text_column:
            raise InvalidParameterError(
                f"text_column={text_column!r} differs from the index's "
                f"({index.text_column!r}); build the index with the column to search."
            )
    elif isinstance(data, pd.DataFrame):
        if vectors is not None:
            index = SearchIndex(data, vectors, embed=embed, text_column=text_column)
        else:
            index = SearchIndex.from_frame(
                data, vector_column, embed=embed, text_column=text_column
            )
    else:
        raise InvalidParameterError(
            f"search() needs a DataFrame or a SearchIndex as data. Got {type(data).__name__}."
        )
    return index._search(
        queries, k, where, mode, fusion, weight, candidates, group_by, level=1 + extra
    )


def _embedding_search_index(
    self: EmbeddingResult, data: pd.DataFrame | None = None, **kwargs: Any
) -> SearchIndex:
    """A :class:`deapi_ds.SearchIndex` over these vectors, queries embedded with the same model.

    ``data`` is the frame whose rows were embedded (default: the result's status frame);
    ``kwargs`` go to :class:`SearchIndex` (``text_column=``, ``dtype=``, ``chunk_rows=``).
    """
    frame = self.frame if data is None else data
    kwargs.setdefault("embed", default_embedder(self.model))
    return SearchIndex(frame, self.matrix, **kwargs)
