"""Per-file footer metadata and the in-process key index of one namespace (task + model)."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from .._lazy import lazy_module
from . import _keys
from ._codec import _FORMAT_META
from ._keys import _Keys

pq = lazy_module("pyarrow.parquet")  # lazy: only reads and writes need it

_UNSET = object()


@dataclasses.dataclass
class _FileMeta:
    """What the footer of one part file says (cheap to read, cached per (path, size))."""

    num_rows: int
    row_offsets: np.ndarray  # start row of each row group, plus the total at the end
    schema: pa.Schema
    created_min: pd.Timestamp | None
    created_max: pd.Timestamp | None


@dataclasses.dataclass
class _FileEntry:
    name: str
    path: str
    size: int
    meta: _FileMeta
    hi: np.ndarray
    lo: np.ndarray


@dataclasses.dataclass
class _Index:
    """Keys of one namespace: newest occurrence of every key, found by its first 64 bits."""

    listing: tuple[tuple[str, int], ...]
    files: list[_FileEntry]  # oldest first
    engine: pd.Index  # unique first-64-bit values (uint64)
    file_of: np.ndarray  # int32, per engine position
    row_of: np.ndarray  # int64
    lo_of: np.ndarray  # uint64: the other 64 bits, to confirm the match
    _schema: Any = dataclasses.field(default=None, repr=False)

    def __post_init__(self) -> None:
        self._schema = _UNSET

    @classmethod
    def build(cls, listing: tuple[tuple[str, int], ...], files: list[_FileEntry]) -> _Index:
        if not files:
            empty = np.empty(0, np.uint64)
            return cls(
                listing, files, pd.Index(empty), np.empty(0, np.int32), np.empty(0, np.int64), empty
            )
        newest_first = files[::-1]
        hi = np.concatenate([f.hi for f in newest_first])
        lo = np.concatenate([f.lo for f in newest_first])
        file_ids = np.concatenate(
            [np.full(len(f.hi), len(files) - 1 - i, np.int32) for i, f in enumerate(newest_first)]
        )
        rows = np.concatenate([np.arange(len(f.hi), dtype=np.int64) for f in newest_first])
        # A 64-bit prefix shared by two different keys (~1e-8 chance among 1e6 keys) only makes
        # one of them a miss: every hit is confirmed against all 128 bits.
        uniq, first = np.unique(hi, return_index=True)
        return cls(listing, files, pd.Index(uniq), file_ids[first], rows[first], lo[first])

    def locate(self, keys: _Keys) -> np.ndarray:
        """Entry position of each key (into file_of/row_of), or -1."""
        if not len(self.engine) or not len(keys):
            return np.full(len(keys), -1, np.int64)
        pos = self.engine.get_indexer(keys.hi).astype(np.int64, copy=False)
        found = pos >= 0
        found[found] = self.lo_of[pos[found]] == keys.lo[found]
        pos[~found] = -1
        return pos

    def schema(self) -> pa.Schema | None:
        """All columns of the namespace (types unified across files), computed once."""
        if self._schema is _UNSET:
            schemas = [f.meta.schema for f in self.files]
            if not schemas:
                self._schema = None
            else:
                try:
                    self._schema = pa.unify_schemas(schemas, promote_options="permissive")
                except (pa.ArrowInvalid, pa.ArrowTypeError):
                    self._schema = schemas[-1]
        return self._schema  # type: ignore[return-value]


def _read_meta(pf: pq.ParquetFile, name: str) -> _FileMeta:
    md = pf.metadata
    schema = pf.schema_arrow
    meta = schema.metadata or {}
    version = meta.get(_FORMAT_META)
    if version is None:
        raise _Foreign("it was not written by the deapi_ds cache (no format marker)")
    try:
        version_int = int(version)
    except ValueError:
        raise _Foreign(f"its cache format marker {version!r} is not a number") from None
    if version_int > _keys.CACHE_FORMAT_VERSION:
        raise _Foreign(
            f"it uses cache format {version_int}, newer than this deapi_ds ({_keys.CACHE_FORMAT_VERSION});"
            " upgrade deapi_ds to read it"
        )
    if "key" not in schema.names:
        raise _Foreign("it has no 'key' column")
    offsets = np.zeros(md.num_row_groups + 1, np.int64)
    for i in range(md.num_row_groups):
        offsets[i + 1] = offsets[i] + md.row_group(i).num_rows
    cmin = cmax = None
    col = next((j for j in range(md.num_columns) if md.schema.column(j).path == "created"), None)
    if col is not None and md.num_row_groups:
        lows, highs = [], []
        for i in range(md.num_row_groups):
            st = md.row_group(i).column(col).statistics
            if st is None or not st.has_min_max:
                lows = highs = []
                break
            lows.append(st.min)
            highs.append(st.max)
        if lows:
            cmin, cmax = pd.Timestamp(min(lows)), pd.Timestamp(max(highs))
    schema = schema.remove_metadata()
    return _FileMeta(md.num_rows, offsets, schema, cmin, cmax)


class _Foreign(Exception):
    """A file in a cache folder that is not a readable cache part (reason in the message)."""


def _created_bounds(meta: _FileMeta) -> tuple[pd.Timestamp | None, pd.Timestamp | None]:
    return meta.created_min, meta.created_max
