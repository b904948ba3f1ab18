"""The parquet result store: one row per API result, written after every batch.

Layout (every file is plain parquet; nothing in the cache can run code when read)::

    <location>/<task>/<model>/part-<UTC timestamp>-<uuid>.parquet

``<task>`` and ``<model>`` are percent-encoded when they hold characters other than letters,
digits, ``.``, ``_``, ``-`` and ``~``, so ``pd.read_parquet("<location>/embeddings/Bge_M3_FP16")``
reads a namespace directly. Each file has a ``key`` column (32 hex characters from
:func:`make_key`), a ``model`` column, a ``created`` column (``timestamp[us, UTC]``) and whatever
value columns the task wrote (embeddings as float32 fixed-size lists, transcripts as structured
columns, images/audio as binary, params as JSON text, usage numbers). Data pages carry CRC32
checksums, verified on every read: a damaged file is skipped with a warning, never served.

Writes go to a temporary file (a dot-file named after its writer, which parquet readers ignore)
that is flushed, fsynced and atomically renamed; on an fsspec location (``s3://bucket/prefix``)
the finished file is put under its final name in one request, which object stores publish
atomically. Files are never modified after they appear, so readers never see half a file. When a
namespace holds more than ``compact_threshold`` small files, they are merged: the merged file is
written *first* and the merged sources are deleted afterwards, so no entry is ever missing, and
concurrent writers or compactions only ever delete files they merged themselves. Among duplicate
keys the newest file wins (file names sort by write time; a merged file takes the name time of
its newest source). Processes sharing a local folder coordinate through ``<location>/.deapi_ds``
(OS file locks that die with their process): compaction locks, temporary-file ownership and
claims of rows in flight (:meth:`ResultCache.claim`).

Modules: ``_keys`` (keys), ``_codec`` (arrow and parquet options), ``_storage`` (folders, fsspec,
ownership, locks), ``_index`` (key index), ``_claims`` (claims), ``_result_cache`` (the cache
objects), ``_resolve`` (``cache=`` arguments and the configured cache).

Example::

    >>> import tempfile, numpy as np, pyarrow as pa
    >>> cache = ResultCache(tempfile.mkdtemp())
    >>> keys = make_keys("embeddings", "Bge_M3_FP16", {}, ["hello", "world"])
    >>> cache.write("embeddings", "Bge_M3_FP16",
    ...             pa.table({"key": keys, "embedding": embedding_array(np.ones((2, 3), "float32"))}))
    >>> cache.contains("embeddings", "Bge_M3_FP16", keys).tolist()
    [True, True]
    >>> embedding_matrix(cache.lookup("embeddings", "Bge_M3_FP16", keys)["embedding"]).shape
    (2, 3)
"""

from .._exceptions import CacheWarning
from ._claims import Claim
from ._codec import embedding_array, embedding_matrix
from ._keys import CACHE_FORMAT_VERSION, make_key, make_keys, params_json
from ._resolve import (
    PROVIDERS_FOLDER,
    USE_DEFAULT,
    default_cache,
    provider_scope,
    resolve_cache,
)
from ._resolve import _instances as _instances  # the per-process registry (tests clear it)
from ._resolve import _shared_cache as _shared_cache  # used by deapi_ds.dask
from ._result_cache import NullCache, ResultCache

__all__ = [
    "CACHE_FORMAT_VERSION",
    "PROVIDERS_FOLDER",
    "USE_DEFAULT",
    "CacheWarning",
    "Claim",
    "NullCache",
    "ResultCache",
    "default_cache",
    "embedding_array",
    "embedding_matrix",
    "make_key",
    "make_keys",
    "params_json",
    "provider_scope",
    "resolve_cache",
]
