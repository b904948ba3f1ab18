"""Vectors in any common form as one C-contiguous float32 matrix (shared by search, plotting
and the dask helpers)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from ._common import is_missing as _is_missing_vector
from ._exceptions import InvalidParameterError

__all__ = ["as_matrix"]


def _stack(values: Sequence[Any] | np.ndarray, name: str) -> np.ndarray:
    """Object array/list of 1-D vectors (None/NaN for missing rows) → (n, d) float32."""
    n = len(values)
    missing = np.fromiter((_is_missing_vector(v) for v in values), dtype=bool, count=n)
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
    import pyarrow as pa  # lazy
    import pyarrow.compute as pc  # lazy

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
