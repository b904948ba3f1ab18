"""The arrow side of the cache: vectors <-> arrow, preparing a batch for parquet, write options.

Every file carries parquet page checksums (CRC32 of each data page, written with
``write_page_checksum``); readers open files with :data:`READ_OPTIONS`, which verifies them, so a
flipped bit or a zeroed block fails the read instead of serving wrong values.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from .._exceptions import InvalidParameterError
from .._lazy import lazy_module
from ._keys import CACHE_FORMAT_VERSION, _to_keys

pq = lazy_module("pyarrow.parquet")  # lazy: only reads and writes need it

_FORMAT_META = b"deapi_ds.cache_format"
_SECRET_MARKERS = ("dpn-sk-", "Bearer ")
# what a key or an Authorization header looks like: ordinary text that merely says "Bearer token"
# (a transcript, a prompt) is fine, a bearer credential is not
_SECRET_PATTERNS = (r"dpn-sk-\S", r"(?i)bearer\s+[A-Za-z0-9._~+/|=-]{16,}")
_ROWS = "__deapi_ds_rows__"  # placeholder column while gathering rows
_ROW_GROUP_BYTES = 16 * 2**20
_CREATED_TYPE = pa.timestamp("us", tz="UTC")
# Values handed to the page encoder at a time: the default (1,024) makes a 1,024-dim vector
# column pay the per-batch overhead once per row; bigger batches write ~20% faster.
_WRITE_BATCH_SIZE = 64 * 1024

#: Options of every ``pq.ParquetFile`` the cache opens: page checksums are verified.
READ_OPTIONS: dict[str, Any] = {"page_checksum_verification": True}


def format_metadata() -> dict[bytes, bytes]:
    """The schema metadata that marks a parquet file as a cache part of this format."""
    return {_FORMAT_META: str(CACHE_FORMAT_VERSION).encode()}


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
        if name == "key":
            continue  # validated as 32 hex characters already
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
    return table.replace_schema_metadata(format_metadata())


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


_OPTIONS_CACHE: dict[pa.Schema, dict[str, Any]] = {}


def write_options(schema: pa.Schema) -> dict[str, Any]:
    """``pq.write_table`` / ``pq.ParquetWriter`` options for a cache file of ``schema``.

    Float vectors are stored uncompressed (they barely compress, and reading them uncompressed
    is ~2x faster), everything else zstd; dictionaries only for non-key strings; statistics only
    for ``created`` (``info()`` and ``clear(older_than=)`` use them); page checksums always.
    """
    options = _OPTIONS_CACHE.get(schema)
    if options is not None:
        return options
    dictionary = [f.name for f in schema if f.name != "key" and _is_stringish(f.type)]
    vectors = [f.name for f in schema if _is_vector(f.type)]
    compression: str | dict[str, str] = "zstd"
    if vectors:
        compression = {
            path: "none" if any(path == v or path.startswith(v + ".") for v in vectors) else "zstd"
            for path in _leaf_paths(schema)
        }
    options = {
        "compression": compression,
        "use_dictionary": dictionary or False,
        "write_statistics": ["created"] if "created" in schema.names else False,
        "write_page_checksum": True,
        "write_batch_size": _WRITE_BATCH_SIZE,
    }
    if len(_OPTIONS_CACHE) > 64:
        _OPTIONS_CACHE.clear()
    _OPTIONS_CACHE[schema] = options
    return options


def write_parquet(table: pa.Table, where: Any) -> None:
    """Write one cache file (one call: ``where`` is a path or a writable binary file)."""
    pq.write_table(
        table, where, row_group_size=_row_group_size(table), **write_options(table.schema)
    )


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
