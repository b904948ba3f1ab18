"""From a task function's ``cache=`` argument to a cache object; one ResultCache per location."""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .._exceptions import InvalidParameterError
from ._result_cache import NullCache, ResultCache

if TYPE_CHECKING:
    from .._config import Settings


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
    from .._config import DEFAULT_BASE_URL, is_deapi_host

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
        from .._config import get_config

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
            from .._config import get_config

            settings = get_config()
        if not getattr(settings, "cache_enabled", True):
            return NullCache()
        return default_cache(settings)
    if isinstance(cache, str | os.PathLike):
        location = os.fspath(cache)
        if settings is None:
            from .._config import get_config

            settings = get_config()
        threshold = int(getattr(settings, "cache_compact_threshold", 64))
        # A URL uses the configured storage options (credentials, endpoint) too.
        options = getattr(settings, "cache_storage_options", None) if "://" in location else None
        return _shared_cache(location, options, threshold)
    raise InvalidParameterError(
        "cache must be a folder path, an fsspec URL, a ResultCache, None (no caching) or left "
        f"unset (the configured cache). Got {type(cache).__name__}: {cache!r}."
    )
