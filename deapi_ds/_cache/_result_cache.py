"""The cache objects: :class:`ResultCache` (a folder or fsspec URL) and :class:`NullCache`."""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import re
import threading
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from .._exceptions import CacheError, CacheWarning, InvalidParameterError
from .._lazy import lazy_module
from ._claims import Claim, ClaimBoard, unclaimed
from ._codec import (
    _CREATED_TYPE,
    _ROWS,
    _conform,
    _empty_result,
    _prepare,
    _row_group_size,
    format_metadata,
    write_options,
    write_parquet,
)
from ._index import _created_bounds, _FileEntry, _FileMeta, _Foreign, _Index, _read_meta
from ._keys import _check_name, _Keys, _to_keys
from ._storage import (
    _PART_RE,
    _STALE_TMP_SECONDS,
    FooterMismatch,
    _decode_name,
    _encode_name,
    _make_store,
    check_footer,
    compaction_lock,
    sweep_owners,
)

pq = lazy_module("pyarrow.parquet")  # lazy: only reads and writes need it

#: Files at least this big are complete batches: compaction neither counts nor merges them
#: (rewriting 8 MB embedding batches cost more than the few file opens it saves).
_BIG_FILE_BYTES = 4 * 2**20
#: A temporary file without an owner is removed by clear() after this many seconds.
_CLEAR_LEGACY_TMP_SECONDS = 600


_AGE_RE = re.compile(
    r"(\d+(?:\.\d+)?)\s*(s|secs?|seconds?|m|mins?|minutes?|h|hours?|d|days?|w|weeks?)"
)
_NUMBER_RE = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)")
_AGE_UNITS = {
    **dict.fromkeys(["s", "sec", "second"], 1),
    **dict.fromkeys(["m", "min", "minute"], 60),
    **dict.fromkeys(["h", "hour"], 3600),
    **dict.fromkeys(["d", "day"], 86400),
    **dict.fromkeys(["w", "week"], 604800),
}


def _parse_age(older_than: _dt.timedelta | str | None) -> _dt.timedelta | None:
    if older_than is None:
        return None
    if isinstance(older_than, _dt.timedelta):
        age = older_than
    elif isinstance(older_than, np.timedelta64):
        age = pd.Timedelta(older_than).to_pytimedelta()
    elif (isinstance(older_than, int | float | np.number) and not isinstance(older_than, bool)) or (
        isinstance(older_than, str) and _NUMBER_RE.fullmatch(older_than.strip())
    ):
        # a bare number would be read as nanoseconds and clear everything: demand a unit
        n = str(older_than).strip()
        raise InvalidParameterError(
            f"older_than needs a unit: '{n}d' for days, '{n}h' for hours, '{n}min' for minutes, "
            f"or a datetime.timedelta. Got {older_than!r}."
        )
    else:
        match = _AGE_RE.fullmatch(str(older_than).strip().lower())
        try:
            if match:
                number, unit = float(match.group(1)), match.group(2).rstrip("s") or "s"
                age = _dt.timedelta(seconds=number * _AGE_UNITS[unit])
            else:
                age = pd.Timedelta(older_than).to_pytimedelta()
        except (ValueError, TypeError, KeyError):
            raise InvalidParameterError(
                f"older_than must be a datetime.timedelta or a string such as '7d', '12h' or "
                f"'30min'. Got {older_than!r}."
            ) from None
    if age < _dt.timedelta(0):
        raise InvalidParameterError(f"older_than must not be negative. Got {older_than!r}.")
    return age


def _format_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"  # pragma: no cover


_INFO_COLUMNS = ["task", "model", "rows", "files", "bytes", "oldest", "newest"]


def _empty_info() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "task": pd.Series([], dtype="str"),
            "model": pd.Series([], dtype="str"),
            "rows": pd.Series([], dtype="int64"),
            "files": pd.Series([], dtype="int64"),
            "bytes": pd.Series([], dtype="int64"),
            "oldest": pd.Series([], dtype="datetime64[us, UTC]"),
            "newest": pd.Series([], dtype="datetime64[us, UTC]"),
        }
    )


class ResultCache:
    """A folder (or fsspec URL) of parquet files holding one row per API result.

    Parameters
    ----------
    location:
        A folder (``~`` is expanded) or an fsspec URL such as ``"s3://bucket/prefix"``.
    storage_options:
        Passed to fsspec for URLs, e.g. ``{"endpoint_url": "http://127.0.0.1:9000"}``.
    compact_threshold:
        After a write, a namespace (task + model) holding more files than this is compacted.
    compact_max_bytes:
        Files at least this big are left alone by compaction; merged files stay near this size.

    Example::

        >>> import tempfile, pyarrow as pa
        >>> from deapi_ds.cache import ResultCache, make_key
        >>> cache = ResultCache(tempfile.mkdtemp())
        >>> k = make_key("speech", "Kokoro", {"voice": "af_bella"}, "Hello!")
        >>> cache.write("speech", "Kokoro", pa.table({"key": [k], "audio": [b"RIFF..."]}))
        >>> cache.lookup("speech", "Kokoro", [k], columns=["audio"])["audio"].to_pylist()
        [b'RIFF...']
    """

    __module__ = "deapi_ds"

    def __init__(
        self,
        location: str | os.PathLike[str],
        *,
        storage_options: Mapping[str, Any] | None = None,
        compact_threshold: int = 64,
        compact_max_bytes: int = 256 * 2**20,
    ) -> None:
        location = os.fspath(location)
        if not isinstance(location, str) or not location:
            raise InvalidParameterError(
                f"The cache location must be a folder or URL. Got {location!r}."
            )
        if not isinstance(compact_threshold, int) or compact_threshold < 1:
            raise InvalidParameterError(
                f"compact_threshold must be an int >= 1. Got {compact_threshold!r}."
            )
        self._store = _make_store(location, storage_options)
        self.location: str = self._store.root if not self._store.remote else location.rstrip("/")
        self.storage_options: dict[str, Any] = dict(storage_options or {})
        self.compact_threshold = compact_threshold
        self.compact_max_bytes = int(compact_max_bytes)
        self._lock = threading.RLock()
        self._indexes: dict[tuple[str, str], _Index] = {}
        self._entries: dict[tuple[str, int], _FileEntry] = {}
        self._metas: dict[tuple[str, int], _FileMeta] = {}
        self._bad: dict[tuple[str, int], str] = {}
        self._claims = None if self._store.remote else ClaimBoard(self._store.root)

    def __reduce__(self) -> Any:
        """Pickle by location (Dask workers), never with the in-process index or locks."""
        location = self.location
        return (
            _rebuild_cache,
            (location, self.storage_options, self.compact_threshold, self.compact_max_bytes),
        )

    # -- paths and listings ----------------------------------------------------------------

    def _ns_path(self, task: str, model: str) -> str:
        return self._store.join(
            self._store.root,
            _encode_name(_check_name(task, "task")),
            _encode_name(_check_name(model, "model")),
        )

    def _parts(self, ns: str) -> list[tuple[str, int]]:
        """Part files of a namespace folder, oldest first; warns once about foreign parquet."""
        parts = []
        for name, size in self._store.list_files(ns):
            if _PART_RE.match(name):
                parts.append((name, size))
            elif name.endswith(".parquet") and not name.startswith((".", "_")):
                path = self._store.join(ns, name)
                if (path, size) not in self._bad:
                    self._bad[(path, size)] = "foreign"
                    warnings.warn(
                        f"Skipping {path}: not a deapi_ds cache file (its name is not "
                        "part-<time>-<id>.parquet). Move it out of the cache folder.",
                        CacheWarning,
                        stacklevel=4,
                    )
        parts.sort()
        return parts

    def _namespaces(self, task: str | None, model: str | None) -> list[tuple[str, str]]:
        root = self._store.root
        if task is not None:
            _check_name(task, "task")
        if model is not None:
            _check_name(model, "model")
        tasks = (
            [task]
            if task is not None
            else sorted(_decode_name(t) for t in self._store.list_dirs(root))
        )
        out = []
        for t in tasks:
            if model is not None:
                out.append((t, model))
                continue
            tdir = self._store.join(root, _encode_name(t))
            out.extend((t, _decode_name(m)) for m in sorted(self._store.list_dirs(tdir)))
        return out

    def _warn_bad(self, path: str, size: int, reason: str) -> None:
        if (path, size) in self._bad:
            return
        self._bad[(path, size)] = reason
        warnings.warn(
            f"Skipping cache file {path}: {reason}. Its rows will be recomputed; delete the file "
            "(or run deapi_ds.cache.clear()) to silence this warning.",
            CacheWarning,
            stacklevel=5,
        )

    def _load(self, path: str, size: int, with_keys: bool) -> tuple[_FileMeta, _Keys | None] | None:
        """Footer (and key column) of a part file in one open; None when corrupt/foreign.

        Raises FileNotFoundError when the file vanished (another process compacted it).
        """
        if (path, size) in self._bad:
            return None
        meta = self._metas.get((path, size))
        keys = None
        try:
            if meta is None:  # first look at this file: its footer before pyarrow parses it
                check_footer(self._store, path, path.replace(os.sep, "/").rsplit("/", 1)[-1], size)
            with self._store.open_parquet(path) as pf:
                if meta is None:
                    meta = _read_meta(pf, path)
                if with_keys:
                    column = pf.read(columns=["key"], use_threads=False).column("key")
                    keys = _to_keys(column, "key")
        except FileNotFoundError:
            raise
        except (_Foreign, FooterMismatch) as exc:
            self._warn_bad(path, size, str(exc))
            return None
        except InvalidParameterError as exc:
            self._warn_bad(path, size, f"its key column does not hold cache keys ({exc})")
            return None
        except Exception as exc:
            if not self._store.exists(path):
                raise FileNotFoundError(path) from exc
            self._warn_bad(path, size, _corrupt_reason(exc))
            return None
        self._metas[(path, size)] = meta
        return meta, keys

    def _meta(self, path: str, size: int) -> _FileMeta | None:
        meta = self._metas.get((path, size))
        if meta is not None:
            return meta
        loaded = self._load(path, size, with_keys=False)
        return None if loaded is None else loaded[0]

    def _entry(self, path: str, name: str, size: int) -> _FileEntry | None:
        entry = self._entries.get((path, size))
        if entry is not None:
            return entry
        loaded = self._load(path, size, with_keys=True)
        if loaded is None:
            return None
        meta, keys = loaded
        assert keys is not None
        entry = _FileEntry(name, path, size, meta, keys.hi, keys.lo)
        self._entries[(path, size)] = entry
        return entry

    def _index(self, task: str, model: str) -> _Index:
        """The key index of a namespace, rebuilt only when its file listing changed."""
        ns = self._ns_path(task, model)
        for _attempt in range(20):
            listing = tuple(self._parts(ns))
            with self._lock:
                cached = self._indexes.get((task, model))
                if cached is not None and cached.listing == listing:
                    return cached
                try:
                    files = []
                    for name, size in listing:
                        entry = self._entry(self._store.join(ns, name), name, size)
                        if entry is not None:
                            files.append(entry)
                except FileNotFoundError:
                    continue  # compacted away meanwhile: list again
                index = _Index.build(listing, files)
                self._indexes[(task, model)] = index
                live = {(self._store.join(ns, n), s) for n, s in listing}
                prefix = ns + ("/" if self._store.remote else os.sep)
                for cache in (self._entries, self._metas):
                    for k in [k for k in cache if k[0].startswith(prefix) and k not in live]:
                        del cache[k]
                return index
        raise CacheError(f"The cache folder {ns} kept changing while it was being read; try again.")

    def _forget(self, task: str, model: str) -> None:
        with self._lock:
            self._indexes.pop((task, model), None)

    # -- reading ---------------------------------------------------------------------------

    def contains(self, task: str, model: str, keys: Sequence[str]) -> np.ndarray:
        """Boolean mask, aligned with ``keys``: which keys have a cached result.

        >>> import tempfile
        >>> from deapi_ds.cache import ResultCache, make_key
        >>> ResultCache(tempfile.mkdtemp()).contains("embeddings", "m", [make_key("embeddings", "m", {}, "x")])
        array([False])
        """
        k = _to_keys(keys)
        return self._index(task, model).locate(k) >= 0

    def lookup(
        self,
        task: str,
        model: str,
        keys: Sequence[str],
        columns: Sequence[str] | None = None,
    ) -> pa.Table:
        """Cached rows for ``keys``: one row per requested key that is cached, in ``keys`` order.

        The result always has a ``key`` column; ``columns=None`` returns every stored column.
        Only the key columns are read in full (and kept in an in-process index); values are read
        row group by row group, and only for the matching rows. Combine with :meth:`contains`
        (``table`` rows line up with ``keys[mask]``).
        """
        k = _to_keys(keys)
        if columns is not None:
            if isinstance(columns, str):
                columns = [columns]
            columns = [c for c in dict.fromkeys(columns) if c != "key"]
        for _attempt in range(5):
            index = self._index(task, model)
            pos = index.locate(k)
            try:
                return self._gather(index, k, pos, columns)
            except _Retry:
                self._forget(task, model)
        raise CacheError(
            f"The cache namespace {task}/{model} kept changing while it was being read; try again."
        )

    def _gather(
        self, index: _Index, keys: _Keys, pos: np.ndarray, columns: list[str] | None
    ) -> pa.Table:
        hits = np.flatnonzero(pos >= 0)
        schema = index.schema()
        if not len(hits):
            return _empty_result(keys.array.type, columns, schema)
        key_col = keys.array
        if len(hits) != len(keys):
            key_col = key_col.take(pa.array(hits))
        if columns is not None and not columns:
            return pa.table({"key": key_col})
        files = index.file_of[pos[hits]]
        rows = index.row_of[pos[hits]]
        order = np.lexsort((rows, files))
        files_sorted, rows_sorted = files[order], rows[order]
        keys_sorted = key_col.take(pa.array(order))
        pieces: list[pa.Table] = []
        bounds = np.flatnonzero(np.diff(files_sorted)) + 1
        for start, stop in zip(
            np.concatenate([[0], bounds]), np.concatenate([bounds, [len(order)]]), strict=True
        ):
            entry = index.files[int(files_sorted[start])]
            pieces.extend(
                self._read_rows(entry, rows_sorted[start:stop], columns, keys_sorted[start:stop])
            )
        if columns is not None and schema is not None:
            # Give columns that some files lack a proper type (nulls) so the pieces concatenate.
            want = pa.schema(
                [schema.field(c) if c in schema.names else pa.field(c, pa.null()) for c in columns]
            )
            pieces = [_conform(p, want) for p in pieces]
        try:
            values = pa.concat_tables(pieces, promote_options="permissive")
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            values = (
                pa.concat_tables([_conform(p, schema) for p in pieces]) if schema else pieces[0]
            )
        inverse = np.empty(len(order), np.int64)
        inverse[order] = np.arange(len(order))
        if not np.array_equal(inverse, np.arange(len(order))):
            values = values.take(pa.array(inverse))
        values = values.drop_columns([c for c in ("key", _ROWS) if c in values.column_names])
        return values.add_column(0, "key", key_col)

    def _read_rows(
        self, entry: _FileEntry, rows: np.ndarray, columns: list[str] | None, expected: pa.Array
    ) -> list[pa.Table]:
        """The given rows (ascending) of one file, read row group by row group.

        The key column is read along with the values and must equal ``expected`` (the keys
        asked for) row by row: together with the page checksums, a value is only ever served
        for the key it was stored with.
        """
        names = [c for c in entry.meta.schema.names if c != "key"]
        if columns is not None:
            names = [c for c in columns if c in entry.meta.schema.names]
        groups = np.searchsorted(entry.meta.row_offsets, rows, side="right") - 1
        bounds = np.flatnonzero(np.diff(groups)) + 1
        out = []
        try:
            with self._store.open_parquet(entry.path) as pf:
                for start, stop in zip(
                    np.concatenate([[0], bounds]),
                    np.concatenate([bounds, [len(rows)]]),
                    strict=True,
                ):
                    g = int(groups[start])
                    local = rows[start:stop] - entry.meta.row_offsets[g]
                    part = pf.read_row_group(g, columns=["key", *names])
                    first = int(local[0])
                    if int(local[-1]) - first + 1 == len(local) and (
                        len(local) < 2 or bool((np.diff(local) == 1).all())
                    ):
                        part = part.slice(first, len(local))
                    else:
                        part = part.take(pa.array(local))
                    want = expected[int(start) : int(stop)]
                    if (
                        part.num_rows != len(want)
                        or not pc.all(pc.equal(part.column("key"), want)).as_py()
                    ):
                        raise _Mismatch(f"row group {g} does not hold the keys its index lists")
                    part = part.drop_columns(["key"])
                    if not names:  # the file has none of the requested columns
                        part = pa.table({_ROWS: pa.nulls(len(local))})
                    out.append(part)
        except Exception as exc:
            if isinstance(exc, FileNotFoundError) or not self._store.exists(entry.path):
                raise _Retry() from exc
            self._warn_bad(entry.path, entry.size, _corrupt_reason(exc))
            with self._lock:
                self._entries.pop((entry.path, entry.size), None)
            raise _Retry() from exc
        return out

    # -- writing ---------------------------------------------------------------------------

    def write(self, task: str, model: str, table: pa.Table | pd.DataFrame) -> None:
        """Store one batch of results as one new parquet file (atomically).

        ``table`` needs a ``key`` column (from :func:`make_key`); ``model`` and ``created``
        (``timestamp[us, UTC]``) are added when absent. Duplicate keys keep their last row.
        Values that look like an API key (``dpn-sk-``) or an Authorization header (``Bearer ``)
        are refused with a ValueError.
        """
        ns = self._ns_path(task, model)
        prepared = _prepare(table, model)
        if prepared.num_rows == 0:
            return
        self._write_file(ns, prepared)
        try:
            if len(self._small(self._parts(ns))) > self.compact_threshold:
                self._compact_namespace(task, model)
        except Exception as exc:  # the batch is stored; a failed tidy-up must not hide that
            warnings.warn(
                f"Automatic compaction of {ns} failed ({type(exc).__name__}: {exc}); the results "
                "are stored. Run deapi_ds.cache.compact() later.",
                CacheWarning,
                stacklevel=2,
            )

    def _write_file(self, ns: str, table: pa.Table, stamp: str | None = None) -> None:
        try:
            with self._store.atomic_write(ns, stamp) as tmp:
                write_parquet(table, tmp)
        except OSError as exc:
            raise CacheError(f"Could not write a cache file in {ns}: {exc}") from exc

    # -- claims ----------------------------------------------------------------------------

    def claim(self, task: str, model: str, keys: Sequence[str]) -> Claim:
        """Hold ``keys`` for this process while it computes them (a cross-process claim).

        ``claim.mine`` marks the keys this process now holds (no live claim of another process
        had them); ``claim.others`` the keys another live process is computing: wait for those
        with :meth:`wait_released` and read them from the cache instead of sending them again.
        Release the claim (``claim.release()`` or ``with claim:``) once the results are written;
        a claim is void as soon as its process dies (``kill -9`` included). fsspec locations
        (``s3://``) have no claims: every key is returned as mine.

        >>> import tempfile
        >>> from deapi_ds.cache import ResultCache, make_keys
        >>> cache = ResultCache(tempfile.mkdtemp())
        >>> keys = make_keys("embeddings", "m", {}, ["a", "b"])
        >>> with cache.claim("embeddings", "m", keys) as c:
        ...     c.mine.tolist()
        [True, True]
        """
        if self._claims is None:
            return unclaimed(len(_to_keys(keys)))
        return self._claims.claim(_ns_dir(task), _ns_dir(model, "model"), keys)

    def wait_released(
        self, task: str, model: str, keys: Sequence[str], *, timeout: float | None
    ) -> np.ndarray:
        """Block until no live claim of another process covers any of ``keys``, or ``timeout``.

        Returns the bool mask (aligned with ``keys``) of the keys still held by another process
        at the end (all False unless the timeout passed). Polls the claim folder with a short
        sleep; call it from a worker thread in async code.
        """
        if self._claims is None:
            return np.zeros(len(_to_keys(keys)), dtype=bool)
        return self._claims.wait_released(_ns_dir(task), _ns_dir(model, "model"), keys, timeout)

    # -- compaction ------------------------------------------------------------------------

    def compact(self, task: str | None = None, model: str | None = None) -> None:
        """Merge the small files of each namespace (or of one task / model) into bigger ones.

        The merged file is written first and only the merged sources are deleted afterwards,
        so lookups never miss an entry, even with other processes writing or compacting.
        """
        for t, m in self._namespaces(task, model):
            self._compact_namespace(t, m)

    def _compact_namespace(self, task: str, model: str) -> int:
        """Returns the number of files removed (0 when another process is compacting it)."""
        ns = self._ns_path(task, model)
        with compaction_lock(self._store, _encode_name(task), _encode_name(model)) as acquired:
            if not acquired:
                return 0
            return self._compact_locked(task, model, ns)

    def _small(self, parts: Sequence[tuple[str, int]]) -> list[tuple[str, int]]:
        """The files compaction may merge (and counts against ``compact_threshold``)."""
        limit = min(self.compact_max_bytes, _BIG_FILE_BYTES)
        return [(name, size) for name, size in parts if size < limit]

    def _compact_locked(self, task: str, model: str, ns: str) -> int:
        self._store.remove_dead_temps(ns, _STALE_TMP_SECONDS)
        if not self._store.remote:
            sweep_owners(self._store.root)
        index = self._index(task, model)
        limit = min(self.compact_max_bytes, _BIG_FILE_BYTES)
        small = [i for i, f in enumerate(index.files) if f.size < limit]
        groups: list[list[int]] = []
        current: list[int] = []
        current_bytes = 0
        current_schema: pa.Schema | None = None
        for i in small:
            entry = index.files[i]
            try:
                merged_schema = (
                    entry.meta.schema
                    if current_schema is None
                    else pa.unify_schemas(
                        [current_schema, entry.meta.schema], promote_options="permissive"
                    )
                )
            except (pa.ArrowInvalid, pa.ArrowTypeError):
                merged_schema = None
            if current and (
                merged_schema is None or current_bytes + entry.size > self.compact_max_bytes
            ):
                groups.append(current)
                current, current_bytes, current_schema = [], 0, None
                merged_schema = entry.meta.schema
            current.append(i)
            current_bytes += entry.size
            current_schema = merged_schema
        if current:
            groups.append(current)
        removed = 0
        for group in groups:
            if len(group) < 2:
                continue
            removed += self._merge_group(index, ns, group)
        if removed:
            self._forget(task, model)
        return removed

    def _merge_group(self, index: _Index, ns: str, group: list[int]) -> int:
        entries = [index.files[i] for i in group]
        schema = pa.unify_schemas([e.meta.schema for e in entries], promote_options="permissive")
        schema = schema.with_metadata(format_metadata())
        newest_stamp = _PART_RE.match(entries[-1].name).group(1)  # type: ignore[union-attr]
        merged: list[_FileEntry] = []  # sources whose surviving rows are in the merged file
        try:
            with self._store.atomic_write(ns, newest_stamp) as tmp:
                writer = None
                try:
                    for i, entry in zip(group, entries, strict=True):
                        keep = self._survivors(index, i, entry)
                        table = self._read_whole(entry.path, entry.size) if keep.any() else None
                        if keep.any() and table is None:
                            continue  # corrupt: skipped (warned), kept out of the merge
                        merged.append(entry)
                        if table is None:
                            continue  # every row superseded by newer files
                        if not keep.all():
                            table = table.filter(pa.array(keep))
                        table = _conform(
                            table.replace_schema_metadata(None), schema.remove_metadata()
                        )
                        table = table.replace_schema_metadata(schema.metadata)
                        if writer is None:
                            writer = pq.ParquetWriter(tmp, schema, **write_options(schema))
                        writer.write_table(table, row_group_size=_row_group_size(table))
                finally:
                    if writer is not None:
                        writer.close()
                if writer is None:
                    raise _NothingToWrite()
        except _NothingToWrite:
            pass  # nothing survives: just delete the superseded files
        except Exception as exc:
            if any(not self._store.exists(e.path) for e in entries):
                return 0  # another process compacted these files meanwhile
            warnings.warn(
                f"Could not compact {len(entries)} cache files in {ns}: {type(exc).__name__}: {exc}",
                CacheWarning,
                stacklevel=4,
            )
            return 0
        return sum(self._store.delete(entry.path) for entry in merged)

    def _read_whole(self, path: str, size: int) -> pa.Table | None:
        """Every row of a part file, page checksums verified; None (warned) when it is corrupt."""
        try:
            with self._store.open_parquet(path) as pf:
                return pf.read(use_threads=False)
        except Exception as exc:
            if isinstance(exc, FileNotFoundError) or not self._store.exists(path):
                raise FileNotFoundError(path) from exc
            self._warn_bad(path, size, _corrupt_reason(exc))
            return None

    @staticmethod
    def _survivors(index: _Index, file_id: int, entry: _FileEntry) -> np.ndarray:
        """Rows of a file that are the newest copy of their key (or share only its first 64 bits)."""
        pos = index.engine.get_indexer(entry.hi)
        own = (index.file_of[pos] == file_id) & (index.row_of[pos] == np.arange(len(pos)))
        other_key = index.lo_of[pos] != entry.lo
        return own | other_key

    # -- management ------------------------------------------------------------------------

    def info(self) -> pd.DataFrame:
        """One row per task and model: rows, files, bytes, oldest and newest ``created`` time.

        Reads only file listings and parquet footers. ``rows`` counts stored rows (after
        compaction, one per key).
        """
        records = []
        for task, model in self._namespaces(None, None):
            ns = self._ns_path(task, model)
            parts = self._parts(ns)
            if not parts:
                continue
            rows, oldest, newest = 0, None, None
            for name, size in parts:
                try:
                    meta = self._meta(self._store.join(ns, name), size)
                except FileNotFoundError:
                    continue
                if meta is None:
                    continue
                rows += meta.num_rows
                lo, hi = _created_bounds(meta)
                if lo is not None:
                    oldest = lo if oldest is None else min(oldest, lo)
                    newest = hi if newest is None else max(newest, hi)
            records.append(
                {
                    "task": task,
                    "model": model,
                    "rows": rows,
                    "files": len(parts),
                    "bytes": sum(s for _, s in parts),
                    "oldest": oldest,
                    "newest": newest,
                }
            )
        if not records:
            return _empty_info()
        df = pd.DataFrame.from_records(records, columns=_INFO_COLUMNS)
        df = df.astype(
            {"task": "str", "model": "str", "rows": "int64", "files": "int64", "bytes": "int64"}
        )
        for col in ("oldest", "newest"):
            df[col] = pd.to_datetime(df[col], utc=True).astype("datetime64[us, UTC]")
        return df

    def clear(
        self,
        task: str | None = None,
        model: str | None = None,
        older_than: _dt.timedelta | str | None = None,
    ) -> int:
        """Delete cached rows (all, or of one task / model, or created before ``older_than``).

        ``older_than`` is a timedelta or a string such as ``"7d"``, ``"12h"``, ``"30min"``.
        Returns the number of stored rows removed.
        """
        age = _parse_age(older_than)
        cutoff = None if age is None else pd.Timestamp(_dt.datetime.now(_dt.UTC) - age)
        removed = 0
        for t, m in self._namespaces(task, model):
            ns = self._ns_path(t, m)
            parts = self._parts(ns)
            for name, size in parts:
                try:
                    removed += self._clear_file(ns, name, size, cutoff)
                except FileNotFoundError:
                    continue
            temps = 0
            if cutoff is None:  # never a live writer's file: only those whose owner is dead
                temps = self._store.remove_dead_temps(ns, _CLEAR_LEGACY_TMP_SECONDS)
            self._forget(t, m)
            if parts or temps:  # never prune folders that held no cache files (cache="~" ...)
                self._store.remove_empty_dirs(ns)
                self._store.remove_empty_dirs(self._store.join(self._store.root, _encode_name(t)))
        return removed

    def _clear_file(self, ns: str, name: str, size: int, cutoff: pd.Timestamp | None) -> int:
        path = self._store.join(ns, name)
        meta = self._meta(path, size)
        if cutoff is None:
            self._store.delete(path)
            self._bad.pop((path, size), None)
            return meta.num_rows if meta is not None else 0
        if meta is None:
            return 0
        if meta.created_max is not None and meta.created_max < cutoff:
            self._store.delete(path)
            return meta.num_rows
        if meta.created_min is not None and meta.created_min >= cutoff:
            return 0
        table = self._read_whole(path, size)
        if table is None:
            return 0  # corrupt: it serves nothing; clear() without older_than deletes it
        created = table.column("created").cast(_CREATED_TYPE)
        keep = pc.fill_null(
            pc.greater_equal(created, pa.scalar(cutoff.to_pydatetime(), _CREATED_TYPE)), True
        )
        n_keep = pc.sum(keep.cast(pa.int64())).as_py() or 0
        if n_keep == table.num_rows:
            return 0
        if n_keep:
            stamp = _PART_RE.match(name).group(1)  # type: ignore[union-attr]
            kept = table.filter(keep).replace_schema_metadata(format_metadata())
            self._write_file(ns, kept, stamp)
        self._store.delete(path)
        return table.num_rows - n_keep

    # -- display ---------------------------------------------------------------------------

    def _summary(self) -> tuple[int, int, int]:
        tasks, rows, size = set(), 0, 0
        for task, model in self._namespaces(None, None):
            ns = self._ns_path(task, model)
            for name, fsize in self._parts(ns):
                tasks.add(task)
                size += fsize
                with contextlib.suppress(FileNotFoundError):
                    meta = self._meta(self._store.join(ns, name), fsize)
                    if meta is not None:
                        rows += meta.num_rows
        return len(tasks), rows, size

    def __repr__(self) -> str:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", CacheWarning)
                tasks, rows, size = self._summary()
        except Exception as exc:  # a repr must not raise (unreachable remote storage, ...)
            return f"ResultCache({self.location!r}, unavailable: {type(exc).__name__})"
        plural = "task" if tasks == 1 else "tasks"
        return f"ResultCache({self.location!r}, {tasks} {plural}, {rows:,} rows, {_format_bytes(size)})"


def _rebuild_cache(
    location: str, storage_options: dict[str, Any], compact_threshold: int, compact_max_bytes: int
) -> ResultCache:
    return ResultCache(
        location,
        storage_options=storage_options,
        compact_threshold=compact_threshold,
        compact_max_bytes=compact_max_bytes,
    )


def _ns_dir(name: str, what: str = "task") -> str:
    return _encode_name(_check_name(name, what))


def _corrupt_reason(exc: BaseException) -> str:
    return f"it is corrupt or truncated ({type(exc).__name__}: {exc})"


class _Mismatch(Exception):
    """A file's rows do not line up with its key column (a corrupt footer)."""


class _Retry(Exception):
    """A file vanished or failed while reading values: list again and retry."""


class _NothingToWrite(Exception):
    pass


class NullCache:
    """The cache that stores nothing (``cache=None``): same API as :class:`ResultCache`.

    >>> from deapi_ds.cache import NullCache
    >>> NullCache().lookup("embeddings", "m", ["0" * 32]).num_rows
    0
    """

    __module__ = "deapi_ds"
    location = None

    def lookup(
        self, task: str, model: str, keys: Sequence[str], columns: Sequence[str] | None = None
    ) -> pa.Table:
        _to_keys(keys)
        return _empty_result(pa.string(), None if columns is None else list(columns), None)

    def contains(self, task: str, model: str, keys: Sequence[str]) -> np.ndarray:
        return np.zeros(len(_to_keys(keys)), dtype=bool)

    def write(self, task: str, model: str, table: pa.Table | pd.DataFrame) -> None:
        _check_name(task, "task")
        _prepare(table, _check_name(model, "model"))  # same validation, nothing stored

    def compact(self, task: str | None = None, model: str | None = None) -> None:
        return None

    def claim(self, task: str, model: str, keys: Sequence[str]) -> Claim:
        """Every key is mine: nothing is shared without a cache."""
        _check_name(task, "task")
        _check_name(model, "model")
        return unclaimed(len(_to_keys(keys)))

    def wait_released(
        self, task: str, model: str, keys: Sequence[str], *, timeout: float | None
    ) -> np.ndarray:
        """Nothing is ever held: returns an all-False mask at once."""
        return np.zeros(len(_to_keys(keys)), dtype=bool)

    def info(self) -> pd.DataFrame:
        return _empty_info()

    def clear(
        self,
        task: str | None = None,
        model: str | None = None,
        older_than: _dt.timedelta | str | None = None,
    ) -> int:
        _parse_age(older_than)
        return 0

    def __repr__(self) -> str:
        return "NullCache()"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, NullCache)

    def __hash__(self) -> int:
        return hash(NullCache)
