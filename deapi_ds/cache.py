"""The result cache: every API result is kept as a parquet row, per input, per batch.

Rerunning a call sends requests only for the rows that have no cached result. The cache lives
in ``DEAPI_DS_CACHE_DIR`` (default ``~/.cache/deapi_ds``; an fsspec URL such as
``s3://bucket/prefix`` shares it between machines). Task functions take ``cache=``: leave it
unset for this configured cache, pass a folder/URL or a :class:`ResultCache` for another one, or
``None`` to turn caching off.

The functions below act on the configured location::

    import deapi_ds.cache

    deapi_ds.cache.info()                       # task, model, rows, files, bytes, oldest, newest
    deapi_ds.cache.clear(task="images")         # or model="Flux1schnell", older_than="30d"
    deapi_ds.cache.compact()                    # merge many small batch files
    with deapi_ds.cache.disabled():             # no reads, no writes inside the block
        ...

Results of servers other than deAPI (the emulator, another OpenAI-compatible server) are kept
in ``<cache>/.providers/<server>``, which the functions above use while that server is configured.

The files are plain parquet, one folder per task and model, so pandas reads them directly::

    pd.read_parquet(f"{deapi_ds.cache.location()}/embeddings/Bge_M3_FP16")
"""

from __future__ import annotations

import contextlib
import datetime as _dt
from collections.abc import Iterator

import pandas as pd

from ._cache import (
    CACHE_FORMAT_VERSION,
    USE_DEFAULT,
    CacheWarning,
    Claim,
    NullCache,
    ResultCache,
    default_cache,
    embedding_array,
    embedding_matrix,
    make_key,
    make_keys,
    params_json,
    resolve_cache,
)

__all__ = [
    "CACHE_FORMAT_VERSION",
    "USE_DEFAULT",
    "CacheWarning",
    "Claim",
    "NullCache",
    "ResultCache",
    "clear",
    "compact",
    "default_cache",
    "disabled",
    "embedding_array",
    "embedding_matrix",
    "info",
    "location",
    "make_key",
    "make_keys",
    "params_json",
    "resolve_cache",
]


def location() -> str:
    """The configured cache folder or URL (``DEAPI_DS_CACHE_DIR``, ``set_config(cache_dir=...)``).

    While deapi_ds talks to another server than deAPI (``use_emulator()``, a custom
    ``base_url``) it is that server's sub-folder ``<cache>/.providers/<server>``, so the
    emulator's results are never served as deAPI's.
    """
    return default_cache().location


def info() -> pd.DataFrame:
    """What the configured cache holds: one row per task and model.

    Columns: ``task``, ``model``, ``rows``, ``files``, ``bytes``, ``oldest``, ``newest``.
    """
    return default_cache().info()


def clear(
    task: str | None = None,
    model: str | None = None,
    older_than: _dt.timedelta | str | None = None,
) -> int:
    """Delete cached results of the configured cache; returns the number of rows removed.

    >>> clear(task="images", older_than="30d")  # doctest: +SKIP
    120
    """
    return default_cache().clear(task=task, model=model, older_than=older_than)


def compact(task: str | None = None, model: str | None = None) -> None:
    """Merge the small batch files of the configured cache (done automatically past a threshold)."""
    default_cache().compact(task=task, model=model)


@contextlib.contextmanager
def disabled() -> Iterator[None]:
    """Turn the default cache off inside the block (nothing read, nothing written).

    Explicit ``cache=`` arguments still apply. It works like
    ``deapi_ds.config_context(cache_enabled=False)``.

    >>> with disabled():
    ...     resolve_cache()
    NullCache()
    """
    from ._config import config_context

    with config_context(cache_enabled=False):
        yield
