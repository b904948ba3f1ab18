"""The parquet result store: one row per API result, written after every batch.

Layout (every file is plain parquet; nothing in the cache can run code when read)::

    <location>/<task>/<model>/part-<UTC timestamp>-<uuid>.parquet

``<task>`` and ``<model>`` are percent-encoded when they hold characters other than letters,
digits, ``.``, ``_``, ``-`` and ``~``, so ``pd.read_parquet("<location>/embeddings/Bge_M3_FP16")``
reads a namespace directly. Each file has a ``key`` column (32 hex characters from
:func:`make_key`), a ``model`` column, a ``created`` column (``timestamp[us, UTC]``) and whatever
value columns the task wrote (embeddings as float32 fixed-size lists, transcripts as structured
columns, images/audio as binary, params as JSON text, usage numbers).

Writes go to a temporary file (a dot-file, which parquet readers ignore) that is flushed, fsynced
and atomically renamed; on an fsspec location (``s3://bucket/prefix``) the finished file is put
under its final name in one request, which object stores publish atomically. Files are never
modified after they appear, so readers never see half a file. When a namespace holds more than
``compact_threshold`` files, the small ones are merged: the merged file is written *first* and the
merged sources are deleted afterwards, so no entry is ever missing, and concurrent writers or
compactions only ever delete files they merged themselves. Among duplicate keys the newest file
wins (file names sort by write time; a merged file takes the name time of its newest source).

Example::

    >>> import tempfile, numpy as np
    >>> cache = ResultCache(tempfile.mkdtemp())
    >>> keys = make_keys("embeddings", "Bge_M3_FP16", {}, ["hello", "world"])
    >>> cache.write("embeddings", "Bge_M3_FP16",
    ...             pa.table({"key": keys, "embedding": embedding_array(np.ones((2, 3), "float32"))}))
    >>> cache.contains("embeddings", "Bge_M3_FP16", keys).tolist()
    [True, True]
    >>> embedding_matrix(cache.lookup("embeddings", "Bge_M3_FP16", keys)["embedding"]).shape
    (2, 3)
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import hashlib
import json
import os
import re
import struct
import tempfile
import threading
import time
import uuid
import warnings
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote, urlsplit

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ._exceptions import CacheError, CacheWarning, InvalidParameterError
from ._lazy import lazy_module

pq = lazy_module("pyarrow.parquet")  # lazy: only cache reads and writes need it

if TYPE_CHECKING:
    from ._config import Settings

__all__ = [
    "CACHE_FORMAT_VERSION",
    "USE_DEFAULT",
    "CacheWarning",
    "NullCache",
    "ResultCache",
    "embedding_array",
    "embedding_matrix",
    "make_key",
    "make_keys",
    "params_json",
    "provider_scope",
    "resolve_cache",
]

#: Bumped when the key derivation or the file layout changes; part of every key.
CACHE_FORMAT_VERSION: int = 1

_FORMAT_META = b"deapi_ds.cache_format"
_SECRET_MARKERS = ("dpn-sk-", "Bearer ")
# what a key or an Authorization header looks like: ordinary text that merely says "Bearer token"
# (a transcript, a prompt) is fine, a bearer credential is not
_SECRET_PATTERNS = (r"dpn-sk-\S", r"(?i)bearer\s+[A-Za-z0-9._~+/|=-]{16,}")
_KEY_CHARS = 32
_PART_RE = re.compile(r"^part-(\d{8}T\d{12}Z)-([0-9a-f]{32})\.parquet$")
_TMP_PREFIX = ".tmp-"
_ROWS = "__deapi_ds_rows__"  # placeholder column while gathering rows
_UNSET = object()
_STALE_TMP_SECONDS = 24 * 3600
_ROW_GROUP_BYTES = 16 * 2**20
_CREATED_TYPE = pa.timestamp("us", tz="UTC")
_HEX_LUT = np.full(256, 255, dtype=np.uint8)
for _i, _c in enumerate(b"0123456789abcdef"):
    _HEX_LUT[_c] = _i
_LEN = struct.Struct("<Q").pack


# --------------------------------------------------------------------------------------------
# keys
# --------------------------------------------------------------------------------------------


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, set | frozenset):
        return sorted(value)
    raise TypeError(
        f"cache key parameters must be JSON values (str, int, float, bool, None, lists, dicts); "
        f"got {type(value).__name__}: {value!r}"
    )


def params_json(params: Mapping[str, Any] | None) -> str:
    """Canonical JSON of the output-changing parameters (sorted keys, no spaces).

    The same text goes into :func:`make_key` and may be stored in a ``params`` column.

    >>> params_json({"size": "512x512", "n": 1})
    '{"n":1,"size":"512x512"}'
    """
    if params is None:
        return "{}"
    if not isinstance(params, Mapping):
        raise InvalidParameterError(
            f"params must be a mapping of parameter name to value. Got {type(params).__name__}."
        )
    try:
        return json.dumps(
            dict(params),
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
            allow_nan=False,
            default=_json_default,
        )
    except (TypeError, ValueError) as exc:
        raise InvalidParameterError(f"params cannot be part of a cache key: {exc}") from None


def _check_name(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidParameterError(f"The cache {what} must be a non-empty str. Got {value!r}.")
    return value


def _base_hasher(task: str, model: str, params: Mapping[str, Any] | None) -> Any:
    _check_name(task, "task")
    _check_name(model, "model")
    h = hashlib.blake2b(digest_size=16, person=b"deapi_ds.cache")
    for part in (str(CACHE_FORMAT_VERSION), task, model, params_json(params)):
        data = part.encode("utf-8", "surrogatepass")
        h.update(_LEN(len(data)))
        h.update(data)
    return h


def _content_bytes(content: Any, index: int | None = None) -> bytes:
    if isinstance(content, str):
        return content.encode("utf-8", "surrogatepass")
    if isinstance(content, bytes | bytearray | memoryview):
        return bytes(content)
    where = "content" if index is None else f"contents[{index}]"
    raise InvalidParameterError(
        f"The cache {where} must be str or bytes (the text, or a file's bytes). "
        f"Got {type(content).__name__}."
    )


def make_key(task: str, model: str, params: Mapping[str, Any] | None, content: str | bytes) -> str:
    """The cache key of one input: 32 hex characters (BLAKE2b, 128 bits).

    It covers the cache format version, ``task``, ``model``, the canonical JSON of ``params``
    (pass only parameters that change the output) and ``content`` (a str as UTF-8, bytes as-is;
    for files pass the bytes, not the path). Every part is length-prefixed.

    >>> make_key("embeddings", "Bge_M3_FP16", {}, "hello") == make_key(
    ...     "embeddings", "Bge_M3_FP16", {}, b"hello")
    True
    >>> len(make_key("embeddings", "Bge_M3_FP16", {"dimensions": 256}, "hello"))
    32
    """
    h = _base_hasher(task, model, params)
    data = _content_bytes(content)
    h.update(_LEN(len(data)))
    h.update(data)
    return h.hexdigest()


def make_keys(
    task: str, model: str, params: Mapping[str, Any] | None, contents: Sequence[str | bytes]
) -> list[str]:
    """:func:`make_key` for many contents at once (the task, model and params are hashed once).

    >>> make_keys("embeddings", "m", {}, ["a", "b"])[1] == make_key("embeddings", "m", {}, "b")
    True
    """
    base = _base_hasher(task, model, params)
    copy, pack = base.copy, _LEN
    out: list[str] = []
    append = out.append
    for i, content in enumerate(contents):
        if isinstance(content, str):
            data = content.encode("utf-8", "surrogatepass")
        else:
            data = _content_bytes(content, i)
        h = copy()
        h.update(pack(len(data)))
        h.update(data)
        append(h.hexdigest())
    return out


@dataclasses.dataclass
class _Keys:
    """Keys as an arrow string column plus their 128 bits as two uint64 arrays."""

    array: pa.Array
    hi: np.ndarray
    lo: np.ndarray

    def __len__(self) -> int:
        return len(self.hi)


def _raw_to_keys(raw: np.ndarray, array: pa.Array, what: str) -> _Keys:
    nib = _HEX_LUT[raw]
    if len(nib) and nib.max() == 255:
        bad = int(np.flatnonzero((nib == 255).any(axis=1))[0])
        raise InvalidParameterError(
            f"{what}[{bad}] is not a cache key (32 lowercase hex characters from make_key()). "
            f"Got {bytes(raw[bad]).decode('ascii', 'replace')!r}."
        )
    packed = (nib[:, 0::2] << 4) | nib[:, 1::2]
    words = packed.view(">u8")
    return _Keys(array, words[:, 0].astype(np.uint64), words[:, 1].astype(np.uint64))


def _arrow_keys(arr: pa.Array | pa.ChunkedArray, what: str) -> _Keys:
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks() if arr.num_chunks != 1 else arr.chunk(0)
    if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        try:
            arr = arr.cast(pa.string())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            raise InvalidParameterError(
                f"{what} must hold str keys from make_key(). Got arrow type {arr.type}."
            ) from None
    n = len(arr)
    if arr.null_count:
        bad = int(np.flatnonzero(arr.is_null().to_numpy(zero_copy_only=False))[0])
        raise InvalidParameterError(f"{what}[{bad}] is missing (null); every row needs a key.")
    if n == 0:
        return _Keys(pa.array([], pa.string()), np.empty(0, np.uint64), np.empty(0, np.uint64))
    off_type = np.int64 if pa.types.is_large_string(arr.type) else np.int32
    offsets = np.frombuffer(arr.buffers()[1], dtype=off_type)[arr.offset : arr.offset + n + 1]
    lengths = np.diff(offsets)
    if (lengths != _KEY_CHARS).any():
        bad = int(np.flatnonzero(lengths != _KEY_CHARS)[0])
        raise InvalidParameterError(
            f"{what}[{bad}] is not a cache key (32 lowercase hex characters from make_key()). "
            f"Got {arr[bad].as_py()!r}."
        )
    data = np.frombuffer(arr.buffers()[2], dtype=np.uint8)[offsets[0] : offsets[-1]]
    if pa.types.is_large_string(arr.type):
        arr = arr.cast(pa.string())
    return _raw_to_keys(data.reshape(n, _KEY_CHARS), arr, what)


def _to_keys(keys: Any, what: str = "keys") -> _Keys:
    """Validate and convert keys given as a list, array, Series or arrow array."""
    if isinstance(keys, _Keys):
        return keys
    if isinstance(keys, pa.Array | pa.ChunkedArray):
        return _arrow_keys(keys, what)
    if isinstance(keys, pd.Series | pd.Index) and not pd.api.types.is_object_dtype(keys.dtype):
        try:
            return _arrow_keys(pa.array(keys), what)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            pass
    if isinstance(keys, str | bytes):
        raise InvalidParameterError(
            f"{what} must be a sequence of keys, not a single {type(keys).__name__}."
        )
    seq = keys.tolist() if isinstance(keys, np.ndarray | pd.Series | pd.Index) else list(keys)
    n = len(seq)
    try:
        joined = "".join(seq)
    except TypeError:
        bad = next(i for i, k in enumerate(seq) if not isinstance(k, str))
        raise InvalidParameterError(
            f"{what}[{bad}] must be a str key from make_key(). Got {type(seq[bad]).__name__}."
        ) from None
    if len(joined) != n * _KEY_CHARS or (n and set(map(len, seq)) != {_KEY_CHARS}):
        bad = next(i for i, k in enumerate(seq) if len(k) != _KEY_CHARS)
        raise InvalidParameterError(
            f"{what}[{bad}] is not a cache key (32 lowercase hex characters from make_key()). "
            f"Got {seq[bad]!r}."
        )
    try:
        data = joined.encode("ascii")
    except UnicodeEncodeError:
        bad = next(i for i, k in enumerate(seq) if not k.isascii())
        raise InvalidParameterError(
            f"{what}[{bad}] is not a cache key (32 lowercase hex characters from make_key()). "
            f"Got {seq[bad]!r}."
        ) from None
    if n * _KEY_CHARS < 2**31:
        offsets = np.arange(0, n * _KEY_CHARS + 1, _KEY_CHARS, dtype=np.int32)
        typ = pa.string()
    else:
        offsets = np.arange(0, n * _KEY_CHARS + 1, _KEY_CHARS, dtype=np.int64)
        typ = pa.large_string()
    array = pa.Array.from_buffers(typ, n, [None, pa.py_buffer(offsets), pa.py_buffer(data)])
    if typ != pa.string():
        array = array.cast(pa.string())
    raw = np.frombuffer(data, dtype=np.uint8).reshape(n, _KEY_CHARS)
    return _raw_to_keys(raw, array, what)


# --------------------------------------------------------------------------------------------
# embeddings <-> arrow
# --------------------------------------------------------------------------------------------


def embedding_array(matrix: np.ndarray) -> pa.FixedSizeListArray:
    """A ``fixed_size_list<float32>[dim]`` column from an ``(n, dim)`` matrix.

    Zero-copy for a C-contiguous float32 matrix; other float dtypes are converted first.

    >>> embedding_array(np.zeros((2, 4), dtype=np.float32)).type
    FixedSizeListType(fixed_size_list<item: float not null>[4])
    """
    matrix = np.asarray(matrix)
    if matrix.ndim != 2 or matrix.shape[1] < 1:
        raise InvalidParameterError(
            f"embedding_array() needs a 2-D (rows, dim) matrix with dim >= 1. Got shape {matrix.shape}."
        )
    if not (np.issubdtype(matrix.dtype, np.floating) or np.issubdtype(matrix.dtype, np.integer)):
        raise InvalidParameterError(
            f"embedding_array() needs a numeric matrix. Got dtype {matrix.dtype}."
        )
    matrix = np.ascontiguousarray(matrix, dtype=np.float32)
    n, dim = matrix.shape
    values = pa.Array.from_buffers(pa.float32(), n * dim, [None, pa.py_buffer(matrix)])
    return pa.FixedSizeListArray.from_arrays(values, type=_vector_type(dim))


def _vector_type(dim: int) -> pa.DataType:
    # Items are never null: parquet then stores no definition levels for them (faster reads).
    return pa.list_(pa.field("item", pa.float32(), nullable=False), dim)


def embedding_matrix(column: Any, *, copy: bool = False) -> np.ndarray:
    """An ``(n, dim)`` float32 C-contiguous matrix from an embedding column.

    ``column`` may be an arrow (chunked) fixed-size or variable list column, a pandas Series of
    vectors or a list of vectors. Without ``copy=True`` the result may be a read-only view of
    the arrow buffers (no copy for a single-chunk float32 fixed-size list).

    >>> m = np.arange(6, dtype=np.float32).reshape(3, 2)
    >>> np.array_equal(embedding_matrix(embedding_array(m)), m)
    True
    """
    if isinstance(column, pd.Series):
        try:
            column = pa.array(column)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            column = column.tolist()
    if isinstance(column, pa.ChunkedArray):
        if column.num_chunks == 0:
            column = pa.array([], column.type)
        else:
            column = column.combine_chunks() if column.num_chunks > 1 else column.chunk(0)
    if isinstance(column, pa.Array):
        if column.null_count:
            bad = np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))[:5].tolist()
            raise InvalidParameterError(
                f"The embedding column has {column.null_count} missing rows (first: {bad}); "
                "drop them first (see ResultCache.contains())."
            )
        n = len(column)
        if pa.types.is_fixed_size_list(column.type):
            dim = column.type.list_size
        elif pa.types.is_list(column.type) or pa.types.is_large_list(column.type):
            lengths = pc.list_value_length(column).to_numpy(zero_copy_only=False)
            if n and (lengths != lengths[0]).any():
                raise InvalidParameterError(
                    "The embedding column holds vectors of different lengths "
                    f"({sorted(set(lengths.tolist()))[:5]}); cannot build a matrix."
                )
            dim = int(lengths[0]) if n else 0
        else:
            raise InvalidParameterError(
                f"embedding_matrix() needs a list column of floats. Got arrow type {column.type}."
            )
        values = column.flatten()
        if values.null_count:
            raise InvalidParameterError("The embedding column holds missing (null) values.")
        if values.type != pa.float32():
            values = values.cast(pa.float32())
        out = values.to_numpy(zero_copy_only=False).reshape(n, dim)
        return out.copy() if copy else out
    rows = list(column)
    if not rows:
        return np.empty((0, 0), dtype=np.float32)
    return np.ascontiguousarray(np.stack([np.asarray(r, dtype=np.float32) for r in rows]))


# --------------------------------------------------------------------------------------------
# storage: local folder or fsspec URL
# --------------------------------------------------------------------------------------------


def _encode_name(name: str) -> str:
    encoded = quote(name, safe="")
    if encoded.startswith("."):
        encoded = "%2E" + encoded[1:]
    return encoded


def _decode_name(name: str) -> str:
    return unquote(name)


def _missing(exc: BaseException) -> bool:
    return isinstance(exc, FileNotFoundError)


class _LocalStore:
    """A folder on this machine: temp file + fsync + atomic rename."""

    remote = False

    def __init__(self, root: str) -> None:
        self.root = root

    def join(self, *parts: str) -> str:
        return os.path.join(*parts)

    def list_files(self, path: str) -> list[tuple[str, int]]:
        try:
            with os.scandir(path) as it:
                out = []
                for entry in it:
                    try:
                        if entry.is_file():
                            out.append((entry.name, entry.stat().st_size))
                    except FileNotFoundError:
                        continue
                return out
        except (FileNotFoundError, NotADirectoryError):
            return []

    def list_dirs(self, path: str) -> list[str]:
        try:
            with os.scandir(path) as it:
                return [e.name for e in it if e.is_dir() and not e.name.startswith(".")]
        except (FileNotFoundError, NotADirectoryError):
            return []

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    @contextlib.contextmanager
    def open_parquet(self, path: str) -> Iterator[pq.ParquetFile]:
        pf = pq.ParquetFile(path)
        try:
            yield pf
        finally:
            pf.close()

    @contextlib.contextmanager
    def atomic_path(self, final: str) -> Iterator[str]:
        """Yield a temporary local path; on success it becomes ``final`` atomically."""
        folder = os.path.dirname(final)
        os.makedirs(folder, exist_ok=True)
        tmp = os.path.join(folder, f"{_TMP_PREFIX}{uuid.uuid4().hex}.parquet")
        try:
            yield tmp
            fd = os.open(tmp, os.O_RDWR)  # RDWR: Windows refuses fsync on read-only handles
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, final)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        with contextlib.suppress(OSError):
            dfd = os.open(folder, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)

    def delete(self, path: str) -> bool:
        try:
            os.unlink(path)
            return True
        except FileNotFoundError:
            return False

    def remove_empty_dirs(self, *paths: str) -> None:
        for path in paths:
            with contextlib.suppress(OSError):
                os.rmdir(path)

    def mtime(self, path: str) -> float | None:
        try:
            return os.stat(path).st_mtime
        except OSError:
            return None


class _FsspecStore:
    """A remote location through fsspec: files are put under their final name in one go."""

    remote = True

    def __init__(self, fs: Any, root: str) -> None:
        self.fs = fs
        self.root = root.rstrip("/")

    def join(self, *parts: str) -> str:
        return "/".join(p.strip("/") if i else p.rstrip("/") for i, p in enumerate(parts))

    def _ls(self, path: str) -> list[dict[str, Any]]:
        with contextlib.suppress(Exception):
            self.fs.invalidate_cache(path)
        try:
            return self.fs.ls(path, detail=True)
        except (FileNotFoundError, NotADirectoryError):
            return []

    def list_files(self, path: str) -> list[tuple[str, int]]:
        return [
            (e["name"].rstrip("/").rsplit("/", 1)[-1], int(e.get("size") or 0))
            for e in self._ls(path)
            if e.get("type") == "file"
        ]

    def list_dirs(self, path: str) -> list[str]:
        names = []
        for e in self._ls(path):
            if e.get("type") == "directory":
                name = e["name"].rstrip("/").rsplit("/", 1)[-1]
                if name and not name.startswith("."):
                    names.append(name)
        return names

    def exists(self, path: str) -> bool:
        with contextlib.suppress(Exception):
            self.fs.invalidate_cache(path)
        return bool(self.fs.exists(path))

    @contextlib.contextmanager
    def open_parquet(self, path: str) -> Iterator[pq.ParquetFile]:
        with self.fs.open(path, "rb") as f:
            yield pq.ParquetFile(f)

    @contextlib.contextmanager
    def atomic_path(self, final: str) -> Iterator[str]:
        fd, tmp = tempfile.mkstemp(prefix="deapi_ds-", suffix=".parquet")
        os.close(fd)
        try:
            yield tmp
            self.fs.put_file(tmp, final)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        with contextlib.suppress(Exception):
            self.fs.invalidate_cache(final.rsplit("/", 1)[0])

    def delete(self, path: str) -> bool:
        try:
            self.fs.rm_file(path)
            return True
        except FileNotFoundError:
            return False

    def remove_empty_dirs(self, *paths: str) -> None:
        """Object stores have no real folders; nothing to remove."""

    def mtime(self, path: str) -> float | None:
        return None


def _make_store(
    location: str, storage_options: Mapping[str, Any] | None
) -> _LocalStore | _FsspecStore:
    if "://" not in location or location.startswith("file://"):
        path = location[len("file://") :] if location.startswith("file://") else location
        return _LocalStore(os.path.abspath(os.path.expanduser(path)))
    try:
        import fsspec
    except ImportError as exc:  # pragma: no cover - fsspec is a dependency
        raise CacheError(f"Cache location {location!r} needs fsspec: pip install fsspec") from exc
    try:
        fs, root = fsspec.core.url_to_fs(location, **dict(storage_options or {}))
    except ImportError as exc:
        raise CacheError(
            f"Cache location {location!r} needs an fsspec backend that is not installed: {exc}. "
            "For s3:// install s3fs (pip install 'deapi-ds[s3]')."
        ) from None
    return _FsspecStore(fs, root)


# --------------------------------------------------------------------------------------------
# per-file metadata and the in-process key index
# --------------------------------------------------------------------------------------------


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
    if version_int > CACHE_FORMAT_VERSION:
        raise _Foreign(
            f"it uses cache format {version_int}, newer than this deapi_ds ({CACHE_FORMAT_VERSION});"
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


# --------------------------------------------------------------------------------------------
# preparing a table for writing
# --------------------------------------------------------------------------------------------


def _is_stringish(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)


def _string_leaves(arr: pa.Array, path: str) -> Iterator[tuple[str, pa.Array]]:
    t = arr.type
    if _is_stringish(t):
        yield path, arr
    elif pa.types.is_dictionary(t):
        yield from _string_leaves(arr.dictionary, path)
    elif pa.types.is_struct(t):
        for i in range(t.num_fields):
            yield from _string_leaves(arr.field(i), f"{path}.{t.field(i).name}")
    elif pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        yield from _string_leaves(arr.flatten(), f"{path}[]")
    elif pa.types.is_map(t):
        yield from _string_leaves(arr.keys, f"{path}.keys")
        yield from _string_leaves(arr.items, f"{path}.values")


def _refuse_secrets(table: pa.Table) -> None:
    """Refuse anything that looks like an API key or an Authorization header."""
    for name in table.column_names:
        if any(m in name for m in _SECRET_MARKERS):
            raise InvalidParameterError(
                "Refusing to write a cache column whose name looks like an API key or an "
                "Authorization header. Never pass the key in params or results."
            )
    for name in table.column_names:
        col = table.column(name)
        for chunk in col.chunks:
            for path, leaf in _string_leaves(chunk, name):
                for marker, pattern in zip(_SECRET_MARKERS, _SECRET_PATTERNS, strict=True):
                    hit = pc.fill_null(pc.match_substring_regex(leaf, pattern), False)
                    if pc.any(hit).as_py():
                        row = int(np.flatnonzero(hit.to_numpy(zero_copy_only=False))[0])
                        where = f"row {row}" if path == name else f"element {row} of {path!r}"
                        raise InvalidParameterError(
                            f"Refusing to write to the cache: column {name!r} ({where}) contains "
                            f"{marker.strip()!r}, which looks like an API key or an Authorization "
                            "header. Keys must never be stored; pass only output-changing "
                            "parameters and results."
                        )


def _reject_extension_types(table: pa.Table) -> None:
    for field in table.schema:
        if isinstance(field.type, pa.ExtensionType):
            raise InvalidParameterError(
                f"Cache column {field.name!r} has the extension type {field.type}; write plain "
                "arrow types (numbers, strings, binary, lists, structs)."
            )


def _repeat(value: Any, typ: pa.DataType, n: int) -> pa.Array:
    return pa.array([value], typ).take(pa.array(np.zeros(n, np.int64)))


def _prepare(table: pa.Table | pd.DataFrame, model: str) -> pa.Table:
    if isinstance(table, pd.DataFrame):
        try:
            table = pa.Table.from_pandas(table, preserve_index=False)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise InvalidParameterError(
                f"The results cannot be stored as parquet columns: {exc}. Convert vectors with "
                "embedding_array() and use str/bytes/numbers/lists/dicts only."
            ) from None
    elif not isinstance(table, pa.Table):
        raise InvalidParameterError(
            f"ResultCache.write() needs a pyarrow Table or a pandas DataFrame. Got {type(table).__name__}."
        )
    if "key" not in table.column_names:
        raise InvalidParameterError(
            f"ResultCache.write() needs a 'key' column. Available columns: {table.column_names}."
        )
    if len(set(table.column_names)) != len(table.column_names):
        raise InvalidParameterError(f"Duplicate column names in {table.column_names}.")
    table = table.replace_schema_metadata(None)
    _reject_extension_types(table)
    keys = _to_keys(table.column("key"), "key")
    table = table.set_column(table.schema.get_field_index("key"), "key", keys.array)
    n = table.num_rows
    if n and len(pd.unique(keys.hi)) != n:
        dup = pd.DataFrame({"h": keys.hi, "l": keys.lo}).duplicated(keep="last").to_numpy()
        if dup.any():
            table = table.filter(pa.array(~dup))
            n = table.num_rows
    if "model" in table.column_names:
        col = table.column("model")
        if (
            not _is_stringish(col.type)
            or col.null_count
            or (n and not pc.all(pc.equal(col, model)).as_py())
        ):
            raise InvalidParameterError(
                f"The 'model' column must equal the model passed to write() ({model!r}) on every row."
            )
        table = table.set_column(
            table.schema.get_field_index("model"), "model", col.cast(pa.string())
        )
    else:
        table = table.append_column("model", _repeat(model, pa.string(), n))
    now = _dt.datetime.now(_dt.UTC)
    if "created" in table.column_names:
        col = table.column("created")
        if not pa.types.is_timestamp(col.type):
            raise InvalidParameterError(
                f"The 'created' column must hold timestamps. Got arrow type {col.type}."
            )
        col = col.cast(_CREATED_TYPE, safe=False)
        if col.null_count:
            col = pc.fill_null(col, pa.scalar(now, _CREATED_TYPE))
        table = table.set_column(table.schema.get_field_index("created"), "created", col)
    else:
        table = table.append_column("created", _repeat(now, _CREATED_TYPE, n))
    # Columns of type null carry nothing and would pin the column type of the folder to null.
    table = table.select([i for i, f in enumerate(table.schema) if not pa.types.is_null(f.type)])
    # float32 vectors without missing values are stored with non-null items (faster reads).
    for i, field in enumerate(table.schema):
        t = field.type
        if (
            pa.types.is_fixed_size_list(t)
            and t.value_type == pa.float32()
            and t.value_field.nullable
            and all(c.values.null_count == 0 for c in table.column(i).chunks)
        ):
            table = table.set_column(i, field.name, table.column(i).cast(_vector_type(t.list_size)))
    _refuse_secrets(table)
    return table.replace_schema_metadata({_FORMAT_META: str(CACHE_FORMAT_VERSION).encode()})


def _is_vector(t: pa.DataType) -> bool:
    return (
        pa.types.is_fixed_size_list(t) or pa.types.is_list(t) or pa.types.is_large_list(t)
    ) and pa.types.is_floating(t.value_type)


def _leaf_paths(schema: pa.Schema) -> list[str]:
    """Parquet leaf column paths of ``schema`` (e.g. ``embedding.list.element``)."""
    sink = pa.BufferOutputStream()
    pq.write_table(schema.empty_table(), sink)
    md = pq.read_metadata(pa.BufferReader(sink.getvalue()))
    return [md.schema.column(i).path for i in range(md.num_columns)]


def _write_options(schema: pa.Schema) -> dict[str, Any]:
    dictionary = [f.name for f in schema if f.name != "key" and _is_stringish(f.type)]
    # Float vectors barely compress, and reading them uncompressed is ~2x faster; zstd for the rest.
    vectors = [f.name for f in schema if _is_vector(f.type)]
    compression: str | dict[str, str] = "zstd"
    if vectors:
        compression = {
            path: "none" if any(path == v or path.startswith(v + ".") for v in vectors) else "zstd"
            for path in _leaf_paths(schema)
        }
    return {
        "compression": compression,
        "use_dictionary": dictionary or False,
        "write_statistics": ["created"],
    }


def _row_group_size(table: pa.Table) -> int:
    if not table.num_rows:
        return 1
    per_row = max(1, table.nbytes // table.num_rows)
    return int(max(256, min(1_048_576, _ROW_GROUP_BYTES // per_row)))


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """Reorder/cast ``table`` to ``schema``, adding null columns it lacks."""
    cols = []
    for field in schema:
        if field.name in table.column_names:
            col = table.column(field.name)
            cols.append(col if col.type == field.type else col.cast(field.type))
        else:
            cols.append(pa.nulls(table.num_rows, field.type))
    return pa.Table.from_arrays(cols, schema=schema)


def _now_stamp() -> str:
    return _dt.datetime.now(_dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")


def _part_name(stamp: str | None = None) -> str:
    return f"part-{stamp or _now_stamp()}-{uuid.uuid4().hex}.parquet"


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


def _empty_result(
    keys_type: pa.DataType, columns: Sequence[str] | None, schema: pa.Schema | None
) -> pa.Table:
    fields = [pa.field("key", keys_type)]
    if columns is not None:
        for name in columns:
            if name == "key":
                continue
            typ = (
                schema.field(name).type
                if schema is not None and name in schema.names
                else pa.null()
            )
            fields.append(pa.field(name, typ))
    elif schema is not None:
        fields.extend(f for f in schema if f.name != "key")
    return pa.schema(fields).empty_table()


# --------------------------------------------------------------------------------------------
# the caches
# --------------------------------------------------------------------------------------------


_LOCK_NAME = ".compact.lock"
_LOCK_STALE_SECONDS = 600


@contextlib.contextmanager
def _compaction_lock(store: Any, ns: str) -> Iterator[bool]:
    """Advisory per-namespace lock so that two processes do not merge the same files.

    Two concurrent compactions never lose entries (each writes its merged file before deleting
    sources), but both would keep a copy of the same rows until the next compaction. Local
    folders use an O_EXCL lock file (a stale one, older than 10 minutes, is taken over); remote
    fsspec stores have no atomic create here, so compaction there is best effort.
    """
    if not isinstance(store, _LocalStore):
        yield True
        return
    path = os.path.join(ns, _LOCK_NAME)
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                if time.time() - os.path.getmtime(path) > _LOCK_STALE_SECONDS:
                    os.unlink(path)  # left by a process that died while compacting
                    continue
            except FileNotFoundError:
                continue
            yield False
            return
        except FileNotFoundError:  # the namespace folder is gone: nothing to compact
            yield False
            return
        os.close(fd)
        try:
            yield True
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        return
    yield False


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

        >>> import tempfile
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
            with self._store.open_parquet(path) as pf:
                if meta is None:
                    meta = _read_meta(pf, path)
                if with_keys:
                    column = pf.read(columns=["key"], use_threads=False).column("key")
                    keys = _to_keys(column, "key")
        except FileNotFoundError:
            raise
        except _Foreign as exc:
            self._warn_bad(path, size, str(exc))
            return None
        except InvalidParameterError as exc:
            self._warn_bad(path, size, f"its key column does not hold cache keys ({exc})")
            return None
        except Exception as exc:
            if not self._store.exists(path):
                raise FileNotFoundError(path) from exc
            self._warn_bad(path, size, f"it is corrupt or truncated ({type(exc).__name__}: {exc})")
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
        pieces: list[pa.Table] = []
        bounds = np.flatnonzero(np.diff(files_sorted)) + 1
        for start, stop in zip(
            np.concatenate([[0], bounds]), np.concatenate([bounds, [len(order)]]), strict=True
        ):
            entry = index.files[int(files_sorted[start])]
            pieces.extend(self._read_rows(entry, rows_sorted[start:stop], columns))
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
        self, entry: _FileEntry, rows: np.ndarray, columns: list[str] | None
    ) -> list[pa.Table]:
        """The given rows (ascending) of one file, read row group by row group."""
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
                    if not names:  # the file has none of the requested columns
                        out.append(pa.table({_ROWS: pa.nulls(len(local))}))
                        continue
                    part = pf.read_row_group(g, columns=names)
                    first = int(local[0])
                    if int(local[-1]) - first + 1 == len(local) and (
                        len(local) < 2 or bool((np.diff(local) == 1).all())
                    ):
                        part = part.slice(first, len(local))
                    else:
                        part = part.take(pa.array(local))
                    out.append(part)
        except Exception as exc:
            if isinstance(exc, FileNotFoundError) or not self._store.exists(entry.path):
                raise _Retry() from exc
            self._warn_bad(
                entry.path, entry.size, f"it could not be read ({type(exc).__name__}: {exc})"
            )
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
        self._write_file(self._store.join(ns, _part_name()), prepared)
        try:
            if len(self._parts(ns)) > self.compact_threshold:
                self._compact_namespace(task, model)
        except Exception as exc:  # the batch is stored; a failed tidy-up must not hide that
            warnings.warn(
                f"Automatic compaction of {ns} failed ({type(exc).__name__}: {exc}); the results "
                "are stored. Run deapi_ds.cache.compact() later.",
                CacheWarning,
                stacklevel=2,
            )

    def _write_file(self, path: str, table: pa.Table) -> None:
        try:
            with self._store.atomic_path(path) as tmp:
                pq.write_table(
                    table,
                    tmp,
                    row_group_size=_row_group_size(table),
                    **_write_options(table.schema),
                )
        except OSError as exc:
            raise CacheError(f"Could not write the cache file {path}: {exc}") from exc

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
        with _compaction_lock(self._store, ns) as acquired:
            if not acquired:
                return 0
            return self._compact_locked(task, model, ns)

    def _compact_locked(self, task: str, model: str, ns: str) -> int:
        self._remove_stale_temp(ns)
        index = self._index(task, model)
        small = [i for i, f in enumerate(index.files) if f.size < self.compact_max_bytes]
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
        schema = schema.with_metadata({_FORMAT_META: str(CACHE_FORMAT_VERSION).encode()})
        newest_stamp = _PART_RE.match(entries[-1].name).group(1)  # type: ignore[union-attr]
        target = self._store.join(ns, _part_name(newest_stamp))
        written = 0
        try:
            with self._store.atomic_path(target) as tmp:
                writer = None
                try:
                    for i, entry in zip(group, entries, strict=True):
                        keep = self._survivors(index, i, entry)
                        if not keep.any():
                            continue
                        with self._store.open_parquet(entry.path) as pf:
                            table = pf.read(use_threads=False)
                        if not keep.all():
                            table = table.filter(pa.array(keep))
                        table = _conform(
                            table.replace_schema_metadata(None), schema.remove_metadata()
                        )
                        table = table.replace_schema_metadata(schema.metadata)
                        if writer is None:
                            writer = pq.ParquetWriter(tmp, schema, **_write_options(schema))
                        writer.write_table(table, row_group_size=_row_group_size(table))
                        written += table.num_rows
                finally:
                    if writer is not None:
                        writer.close()
                if writer is None:
                    raise _NothingToWrite()
        except _NothingToWrite:
            pass  # every row of the group is superseded by newer files: just delete the group
        except Exception as exc:
            if any(not self._store.exists(e.path) for e in entries):
                return 0  # another process compacted these files meanwhile
            warnings.warn(
                f"Could not compact {len(entries)} cache files in {ns}: {type(exc).__name__}: {exc}",
                CacheWarning,
                stacklevel=4,
            )
            return 0
        removed = 0
        for entry in entries:
            removed += self._store.delete(entry.path)
        return removed

    @staticmethod
    def _survivors(index: _Index, file_id: int, entry: _FileEntry) -> np.ndarray:
        """Rows of a file that are the newest copy of their key (or share only its first 64 bits)."""
        pos = index.engine.get_indexer(entry.hi)
        own = (index.file_of[pos] == file_id) & (index.row_of[pos] == np.arange(len(pos)))
        other_key = index.lo_of[pos] != entry.lo
        return own | other_key

    def _remove_stale_temp(self, ns: str) -> None:
        if self._store.remote:
            return
        now = _dt.datetime.now().timestamp()
        for name, _size in self._store.list_files(ns):
            if name.startswith(_TMP_PREFIX):
                path = self._store.join(ns, name)
                mtime = self._store.mtime(path)
                if mtime is not None and now - mtime > _STALE_TMP_SECONDS:
                    self._store.delete(path)

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
            temps = [n for n, _ in self._store.list_files(ns) if n.startswith(_TMP_PREFIX)]
            if cutoff is None:
                for name in temps:
                    self._store.delete(self._store.join(ns, name))
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
        with self._store.open_parquet(path) as pf:
            table = pf.read(use_threads=False)
        created = table.column("created").cast(_CREATED_TYPE)
        keep = pc.fill_null(
            pc.greater_equal(created, pa.scalar(cutoff.to_pydatetime(), _CREATED_TYPE)), True
        )
        n_keep = pc.sum(keep.cast(pa.int64())).as_py() or 0
        if n_keep == table.num_rows:
            return 0
        if n_keep:
            stamp = _PART_RE.match(name).group(1)  # type: ignore[union-attr]
            kept = table.filter(keep).replace_schema_metadata(
                {_FORMAT_META: str(CACHE_FORMAT_VERSION).encode()}
            )
            self._write_file(self._store.join(ns, _part_name(stamp)), kept)
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


class _Retry(Exception):
    """A file vanished or failed while reading values: list again and retry."""


class _NothingToWrite(Exception):
    pass


class NullCache:
    """The cache that stores nothing (``cache=None``): same API as :class:`ResultCache`.

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


class _Default:
    """Type of :data:`USE_DEFAULT`: "use the configured cache", as opposed to ``None`` (off)."""

    _instance: _Default | None = None

    def __new__(cls) -> _Default:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "USE_DEFAULT"

    def __reduce__(self) -> str:
        return "USE_DEFAULT"


#: Leave ``cache=`` unset to use the configured default cache (``None`` turns caching off).
USE_DEFAULT = _Default()

_instances: dict[tuple[str, str, int], ResultCache] = {}
_instances_lock = threading.Lock()


def _shared_cache(
    location: str, storage_options: Mapping[str, Any] | None, compact_threshold: int
) -> ResultCache:
    """One ResultCache per location in a process, so its key index is reused across calls."""
    if "://" not in location:
        location = os.path.abspath(os.path.expanduser(location))
    opts = dict(storage_options or {})
    try:
        opts_id = json.dumps(opts, sort_keys=True, default=repr)
    except (TypeError, ValueError):
        opts_id = repr(sorted(opts.items()))
    ident = (location, opts_id, compact_threshold)
    with _instances_lock:
        cache = _instances.get(ident)
        if cache is None:
            if len(_instances) >= 16:
                _instances.pop(next(iter(_instances)))
            cache = ResultCache(location, storage_options=opts, compact_threshold=compact_threshold)
            _instances[ident] = cache
        return cache


#: Sub-folder of the configured cache for results of servers other than deAPI.
PROVIDERS_FOLDER = ".providers"


def provider_scope(base_url: str | None) -> str | None:
    """The cache sub-folder name for results of ``base_url``; None for deAPI itself.

    The key holds the task, model, parameters and input, not the server: the emulator's fake
    vectors (``use_emulator()``) or another OpenAI-compatible server's answers for the same model
    name must never be served as deAPI results. So the *configured* cache keeps them apart, in
    ``<cache>/.providers/<host_port_path>`` (a dot-folder: ``info()``, ``clear()`` and
    ``pd.read_parquet`` of the deAPI cache do not see it).

    >>> provider_scope("https://oai.deapi.ai/v1") is None
    True
    >>> provider_scope("http://127.0.0.1:8000/v1")
    '127.0.0.1_8000_v1'
    """
    from ._config import DEFAULT_BASE_URL, is_deapi_host

    url = base_url or DEFAULT_BASE_URL
    if is_deapi_host(url):
        return None
    parts = urlsplit(url)
    ident = (parts.netloc.rsplit("@", 1)[-1] + parts.path).lower()
    return re.sub(r"[^a-z0-9.-]+", "_", ident).strip("_.") or "unknown"


def default_cache(settings: Settings | None = None) -> ResultCache:
    """The configured cache location as a :class:`ResultCache` (even when caching is off).

    For a server other than deAPI (the emulator, another OpenAI-compatible server) it is the
    sub-folder ``.providers/<server>`` of the configured location (see :func:`provider_scope`).
    """
    if settings is None:
        from ._config import get_config

        settings = get_config()
    location = getattr(settings, "cache_path", None) or os.path.expanduser(
        getattr(settings, "cache_dir", "~/.cache/deapi_ds")
    )
    scope = provider_scope(getattr(settings, "base_url", None))
    if scope is not None:
        if "://" in location:
            location = f"{location.rstrip('/')}/{PROVIDERS_FOLDER}/{scope}"
        else:
            location = os.path.join(location, PROVIDERS_FOLDER, scope)
    return _shared_cache(
        location,
        getattr(settings, "cache_storage_options", None),
        int(getattr(settings, "cache_compact_threshold", 64)),
    )


def resolve_cache(
    cache: ResultCache | NullCache | str | os.PathLike[str] | bool | None | _Default = USE_DEFAULT,
    *,
    settings: Settings | None = None,
) -> ResultCache | NullCache:
    """Turn a task function's ``cache=`` argument into a cache object.

    ``USE_DEFAULT`` (unset) -> the configured cache, or :class:`NullCache` when caching is off
    (``DEAPI_DS_CACHE=0``, ``set_config(cache_enabled=False)``, ``deapi_ds.cache.disabled()``);
    ``None`` or ``False`` -> :class:`NullCache`; a folder or URL -> a :class:`ResultCache` there.
    Call it in the caller's thread (configuration contexts are per thread/task).

    >>> resolve_cache(None)
    NullCache()
    """
    if isinstance(cache, ResultCache | NullCache):
        return cache
    if cache is None or cache is False:
        return NullCache()
    if cache is USE_DEFAULT or cache is True:
        if settings is None:
            from ._config import get_config

            settings = get_config()
        if not getattr(settings, "cache_enabled", True):
            return NullCache()
        return default_cache(settings)
    if isinstance(cache, str | os.PathLike):
        location = os.fspath(cache)
        if settings is None:
            from ._config import get_config

            settings = get_config()
        threshold = int(getattr(settings, "cache_compact_threshold", 64))
        # A URL uses the configured storage options (credentials, endpoint) too.
        options = getattr(settings, "cache_storage_options", None) if "://" in location else None
        return _shared_cache(location, options, threshold)
    raise InvalidParameterError(
        "cache must be a folder path, an fsspec URL, a ResultCache, None (no caching) or left "
        f"unset (the configured cache). Got {type(cache).__name__}: {cache!r}."
    )
