"""Cache keys: 32 hex characters (BLAKE2b-128) over the format version, task, model, params, input.

Also the vectorised form used inside the cache (:class:`_Keys`: the 128 bits as two uint64
arrays plus the arrow string column), built without a Python loop per key.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import struct
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from .._exceptions import InvalidParameterError

#: Bumped when the key derivation or the file layout changes; part of every key.
CACHE_FORMAT_VERSION: int = 1

_KEY_CHARS = 32
_HEX_LUT = np.full(256, 255, dtype=np.uint8)
for _i, _c in enumerate(b"0123456789abcdef"):
    _HEX_LUT[_c] = _i
_LEN = struct.Struct("<Q").pack


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
