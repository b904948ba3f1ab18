"""Dense search: vectors in any form → a float32 matrix, and exact cosine top-k over it.

:func:`top_k` is the engine: for each chunk of corpus rows it computes ``queries @ chunk.T``
in float32, keeps each query's k best with ``argpartition`` (or, once a running best exists,
by gathering only the scores above the current k-th best) and merges them with the running
best. Memory is one chunk's scores (``queries x chunk_rows`` float32), never the corpus: the
corpus is read chunk by chunk and never copied whole, so a ``np.memmap`` works too. Rows
without a vector (NaN rows, from failed embeddings) and all-zero rows are never returned.

>>> import numpy as np
>>> vectors = np.array([[1, 0.1, 0], [0.9, 0.3, 0], [0, 0, 1]], dtype=np.float32)
>>> top_k(np.array([1, 0, 0]), vectors, k=2)[0].tolist()
[[0, 1]]
"""

from __future__ import annotations

from typing import Any

import numpy as np

from deapi_ds._exceptions import InvalidParameterError
from deapi_ds._vectors import as_matrix

__all__ = ["as_matrix", "top_k"]

#: Largest score block (queries x chunk rows) computed at once: 32 Mi floats = 128 MiB.
_MAX_BLOCK_ELEMS = 1 << 25


# --------------------------------------------------------------------------- vector columns


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
