"""Near-duplicates: pairs of rows whose vectors have a cosine similarity above a threshold.

Two ways to find them, both with memory bounded by a chunk (never the n x n matrix):

* ``method="exact"``: every pair, in blocks of ``chunk_rows`` x ``4 * chunk_rows`` float32
  scores. Compute grows as n² x d (200,000 x 1,024 is ~4e13 flops: minutes on 2 cores).
* ``method="lsh"``: random-hyperplane hashing (SimHash) finds candidate pairs, whose cosine is
  then computed exactly (no false pairs, scores exact). The number of bands is chosen so a
  pair exactly at the threshold is found with probability >= ``recall`` (default 0.999);
  pairs above the threshold are found more surely still. Compute grows as n x d x bits.
* ``method="auto"`` (default) is exact while that is a few seconds of work (n² x d <= 2e11:
  about 14,000 rows of 1,024 dimensions) or cheaper than hashing, and LSH beyond.

>>> import numpy as np
>>> v = np.array([[1, 0], [0.99, 0.05], [0, 1], [1, 0]], dtype=np.float32)
>>> near_duplicates(v, threshold=0.98)
   a  b     score
0  0  3  1.000000
1  0  1  0.998727
2  1  3  0.998727
>>> duplicate_groups(near_duplicates(v, threshold=0.98))
   row  group  size
0    0      0     3
1    1      0     3
2    3      0     3
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
import pandas as pd

from deapi_ds._exceptions import InvalidParameterError

from ._dense import _check_int, _row_weights, as_matrix

__all__ = ["duplicate_groups", "near_duplicates"]

#: Candidate pairs verified at once (two gathered blocks of this many rows).
_VERIFY_PAIRS = 8192


def _vectors_and_labels(data: Any, column: Any, where: str) -> tuple[np.ndarray, pd.Index]:
    """(matrix, row labels) from an array, a frame + vector column, an index or a result."""
    from ._index import SearchIndex

    if isinstance(data, SearchIndex):
        return data.vectors, data.frame.index
    matrix = getattr(data, "matrix", None)
    if isinstance(matrix, np.ndarray) and hasattr(data, "frame"):  # an EmbeddingResult
        return matrix, data.frame.index
    if isinstance(data, pd.DataFrame):
        column = "embedding" if column is None else column
        if column not in data.columns:
            raise InvalidParameterError(
                f"Column {column!r} not found ({where}(data, column)). "
                f"Available columns: {list(data.columns)}."
            )
        return as_matrix(data[column], name=f"Column {column!r}"), data.index
    if column is not None:
        raise InvalidParameterError(f"{where}(data, column) takes a column only with a DataFrame.")
    m = as_matrix(data, name="data")
    index = data.index if isinstance(data, pd.Series) else pd.RangeIndex(len(m))
    return m, index


def _exact_pairs(
    x: np.ndarray, inv: np.ndarray, valid: np.ndarray, threshold: float, chunk_rows: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = x.shape[0]
    wide = 4 * chunk_rows
    out_a, out_b, out_s = [], [], []
    for i0 in range(0, n, chunk_rows):
        a = np.asarray(x[i0 : i0 + chunk_rows], dtype=np.float32) * inv[i0 : i0 + chunk_rows, None]
        for j0 in range(i0, n, wide):
            b = np.asarray(x[j0 : j0 + wide], dtype=np.float32)
            scores = a @ b.T
            scores *= inv[j0 : j0 + wide]
            hit = scores >= threshold
            r, c = np.nonzero(hit)
            r, c = r + i0, c + j0
            keep = (c > r) & valid[r] & valid[c]
            out_a.append(r[keep])
            out_b.append(c[keep])
            out_s.append(scores[hit][keep])
    return np.concatenate(out_a), np.concatenate(out_b), np.concatenate(out_s)


def _lsh_plan(n: int, threshold: float, recall: float) -> tuple[int, int]:
    """(bits per band, bands) so random pairs rarely collide and a pair at the threshold is
    found with probability >= recall."""
    bits = min(30, max(8, math.ceil(math.log2(max(n, 2))) + 2))
    p = 1 - math.acos(min(1.0, max(-1.0, threshold))) / math.pi
    hit = p**bits
    bands = math.ceil(math.log(1 - recall) / math.log(1 - hit)) if hit < 1 else 1
    return bits, max(1, bands)


def _band_codes(
    x: np.ndarray, valid: np.ndarray, bits: int, bands: int, chunk_rows: int, seed: int
) -> np.ndarray:
    n, d = x.shape
    planes = np.random.default_rng(seed).standard_normal((d, bits * bands), dtype=np.float32)
    codes = np.zeros((n, bands), dtype=np.int32)
    for s in range(0, n, chunk_rows):
        block = np.asarray(x[s : s + chunk_rows], dtype=np.float32)
        signs = (block @ planes > 0).reshape(len(block), bands, bits)
        out = codes[s : s + len(block)]
        for bit in range(bits):
            out |= signs[:, :, bit].astype(np.int32) << bit
    codes[~valid] = -1 - np.arange(np.count_nonzero(~valid), dtype=np.int32)[:, None]
    return codes


def _pairs_in_runs(order: np.ndarray, sorted_codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All pairs of rows sharing a code (rows in ``order``, codes sorted alike)."""
    edges = np.flatnonzero(np.diff(sorted_codes)) + 1
    starts = np.concatenate([[0], edges])
    sizes = np.diff(np.concatenate([starts, [sorted_codes.size]]))
    multi = sizes > 1
    starts, sizes = starts[multi], sizes[multi]
    if starts.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    run_of = np.repeat(np.arange(starts.size), sizes)
    local = np.arange(sizes.sum()) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    pos = starts[run_of] + local
    partners = sizes[run_of] - 1 - local
    first = np.repeat(pos, partners)
    offset = np.arange(partners.sum()) - np.repeat(np.cumsum(partners) - partners, partners)
    second = first + 1 + offset
    a, b = order[first], order[second]
    return np.minimum(a, b), np.maximum(a, b)


def _lsh_pairs(
    x: np.ndarray,
    inv: np.ndarray,
    valid: np.ndarray,
    threshold: float,
    chunk_rows: int,
    recall: float,
    seed: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = x.shape[0]
    bits, bands = _lsh_plan(n, threshold, recall)
    codes = _band_codes(x, valid, bits, bands, chunk_rows, seed)
    keys = []
    for band in range(bands):
        col = codes[:, band]
        order = np.argsort(col, kind="stable")
        a, b = _pairs_in_runs(order, col[order])
        keys.append(np.unique(a * n + b))
    del codes
    cand = np.unique(np.concatenate(keys)) if keys else np.zeros(0, np.int64)
    del keys
    ca, cb = np.divmod(cand, n)
    out_s = np.empty(cand.size, dtype=np.float32)
    for s in range(0, cand.size, _VERIFY_PAIRS):
        ia, ib = ca[s : s + _VERIFY_PAIRS], cb[s : s + _VERIFY_PAIRS]
        va = np.asarray(x[ia], dtype=np.float32)
        vb = np.asarray(x[ib], dtype=np.float32)
        out_s[s : s + ia.size] = np.einsum("ij,ij->i", va, vb) * inv[ia] * inv[ib]
    keep = out_s >= threshold
    return ca[keep], cb[keep], out_s[keep]


def near_duplicates(
    data: Any,
    column: Any = None,
    *,
    threshold: float = 0.95,
    method: Literal["auto", "exact", "lsh"] = "auto",
    chunk_rows: int = 2048,
    recall: float = 0.999,
    seed: int = 0,
) -> pd.DataFrame:
    """Pairs of rows whose vectors have a cosine similarity of at least ``threshold``.

    ``data`` is a DataFrame with a vector ``column`` (default ``"embedding"``), a
    :class:`~deapi_ds.search.SearchIndex`, an :class:`~deapi_ds.EmbeddingResult` or a matrix.
    Rows without a vector are never paired. ``method``: ``"exact"`` compares every pair,
    ``"lsh"`` hashes first (each pair at the threshold found with probability >= ``recall``;
    every pair reported is verified, so scores are exact), ``"auto"`` is exact up to about
    n² x d = 2e11 (14,000 x 1,024) and LSH beyond.
    Memory is bounded by ``chunk_rows`` (scores of ``chunk_rows x 4*chunk_rows``), never the
    n x n matrix; ``seed`` makes the hashing repeatable.

    Returns a frame with ``a`` and ``b`` (the rows' index labels, ``a`` before ``b`` in the
    data) and ``score``, best first. :func:`duplicate_groups` joins the pairs into groups.
    """
    where = "near_duplicates()"
    if (
        isinstance(threshold, bool)
        or not isinstance(threshold, (int, float))
        or not -1 < threshold <= 1
    ):
        raise InvalidParameterError(
            f"The 'threshold' parameter of {where} must be a cosine in (-1, 1]. Got {threshold!r}."
        )
    if method not in ("auto", "exact", "lsh"):
        raise InvalidParameterError(
            f"The 'method' parameter of {where} must be 'auto', 'exact' or 'lsh'. Got {method!r}."
        )
    if not 0 < recall < 1:
        raise InvalidParameterError(
            f"The 'recall' parameter of {where} must be in (0, 1). Got {recall!r}."
        )
    chunk_rows = _check_int(chunk_rows, "chunk_rows", 1, where)
    x, labels = _vectors_and_labels(data, column, "near_duplicates")
    n, d = x.shape
    inv, valid = _row_weights(x, 65536)
    if method == "auto":
        bits, bands = _lsh_plan(n, threshold, recall)
        # exact when it is a few seconds of work (n² x d <= 2e11) or cheaper than hashing
        method = "exact" if n * n * d <= 2e11 or n / 2 <= 4 * bits * bands else "lsh"
    if method == "exact":
        a, b, s = _exact_pairs(x, inv, valid, float(threshold), chunk_rows)
    else:
        a, b, s = _lsh_pairs(x, inv, valid, float(threshold), chunk_rows, recall, seed)
    order = np.lexsort((b, a, -s))
    a, b, s = a[order], b[order], s[order]
    return pd.DataFrame(
        {"a": labels[a], "b": labels[b], "score": np.minimum(s, 1.0).astype(np.float32)}
    )


def duplicate_groups(pairs: pd.DataFrame) -> pd.DataFrame:
    """Join near-duplicate ``pairs`` (columns ``a`` and ``b``) into groups (union-find).

    Returns one row per row that has a duplicate: ``row``, ``group`` (0, 1, ... in the order
    the groups first appear in ``pairs``) and ``size`` (rows in the group), sorted by group and row order.
    Keep one row per group with ``groups.drop_duplicates("group")``.
    """
    if not isinstance(pairs, pd.DataFrame) or not {"a", "b"} <= set(pairs.columns):
        raise InvalidParameterError(
            "duplicate_groups() needs the frame of near_duplicates() (columns 'a' and 'b')."
        )
    if pairs.empty:
        return pd.DataFrame(
            {
                "row": pairs["a"].iloc[:0],
                "group": np.zeros(0, np.int64),
                "size": np.zeros(0, np.int64),
            }
        )
    both = pd.concat([pairs["a"], pairs["b"]], ignore_index=True)
    codes, uniques = pd.factorize(both, sort=False)
    m = len(pairs)
    a, b = codes[:m], codes[m:]
    parent = np.arange(len(uniques))
    while True:  # hook every pair onto the smaller root, then compress paths
        ra, rb = parent[a], parent[b]
        if (ra == rb).all():
            break
        low = np.minimum(ra, rb)
        np.minimum.at(parent, ra, low)
        np.minimum.at(parent, rb, low)
        while True:
            up = parent[parent]
            if (up == parent).all():
                break
            parent = up
    _, group = np.unique(parent, return_inverse=True)  # a root is its group's first row
    size = np.bincount(group)
    out = pd.DataFrame({"row": uniques, "group": group, "size": size[group]})
    out = out.sort_values(["group"], kind="stable").reset_index(drop=True)
    return out
