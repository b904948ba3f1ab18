"""Shared plumbing of the task functions (embed, transcribe, generate_images, speak, ...).

- :func:`syncify` turns an ``async def a<task>(...)`` into its sync twin that runs on deapi_ds's
  private loop thread with the caller's configuration (``config_context`` included).
- :func:`resolve_client` picks the client: the one passed, or one shared per configuration so
  that rate limits hold across calls of a notebook session.
- :func:`map_batches` runs one coroutine per batch concurrently, hands each outcome to
  ``on_done`` as soon as it is known (that is where results are cached), turns per-batch errors
  into outcomes and aborts only on errors that would make every batch fail.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import anyio
import numpy as np
import pandas as pd

from . import _config, _native
from ._client import AsyncClient, Client
from ._config import Settings, get_config
from ._engine import run_sync
from ._exceptions import (
    AuthenticationError,
    ConfigurationError,
    InvalidParameterError,
    ModelNotFoundError,
    PermissionDeniedError,
)

__all__ = ["FATAL_ERRORS", "as_series", "map_batches", "resolve_client", "syncify"]

T = TypeVar("T")
B = TypeVar("B")
R = TypeVar("R")

#: Errors after which no other batch can succeed: stop the run instead of failing every row.
FATAL_ERRORS: tuple[type[BaseException], ...] = (
    ConfigurationError,
    AuthenticationError,
    PermissionDeniedError,
    ModelNotFoundError,
    InvalidParameterError,
)


def as_series(
    data: Any,
    column: Any = None,
    *,
    func: str,
    what: str = "texts",
    default_column: str | None = None,
) -> pd.Series:
    """Normalise a task's input to a Series, keeping a Series' or DataFrame's index.

    ``data`` is a str, a sequence, a Series, or a DataFrame with ``column`` (a name or a Series;
    a one-column frame or ``default_column`` needs none). Errors name the function and list the
    available columns.
    """
    if isinstance(data, pd.DataFrame):
        if isinstance(column, pd.Series):
            return column
        if column is None:
            if default_column is not None and default_column in data.columns:
                column = default_column
            elif data.shape[1] == 1:
                return data.iloc[:, 0]
            else:
                raise InvalidParameterError(
                    f"{func}() got a DataFrame with {data.shape[1]} columns; say which one holds "
                    f"the {what}: {func}(df, 'column'). Available columns: {list(data.columns)}."
                )
        if column not in data.columns:
            raise InvalidParameterError(
                f"Column {column!r} not found. Available columns: {list(data.columns)}."
            )
        return data[column]
    if isinstance(column, pd.Series) and data is None:
        return column
    if column is not None:
        raise InvalidParameterError(
            f"{func}(data, column) takes a column only when data is a DataFrame; got "
            f"{type(data).__name__}."
        )
    if isinstance(data, pd.Series):
        return data
    if isinstance(data, str | bytes):
        return pd.Series([data], dtype=object)
    if isinstance(data, np.ndarray) and data.ndim != 1:
        raise InvalidParameterError(
            f"{func}() takes a 1-D array of {what}; got shape {data.shape}."
        )
    try:
        values = list(data)
    except TypeError:
        raise InvalidParameterError(
            f"{func}() takes a str, a list of {what}, a Series or a DataFrame and a column name; "
            f"got {type(data).__name__}."
        ) from None
    return pd.Series(values, dtype=object)


_shared: dict[Any, AsyncClient] = {}
_shared_lock = threading.Lock()


def _settings_key(settings: Settings) -> Any:
    return (
        settings.base_url,
        settings.api_key,
        id(settings.transport),
        settings.max_concurrency,
        settings.timeout,
        settings.connect_timeout,
        settings.effective_tier,
        repr(settings.rpm),
        settings.max_retries,
        settings.max_retry_wait,
        settings.profile,
        settings.limits,
        settings.cache_dir,
    )


def shared_client(settings: Settings | None = None) -> AsyncClient:
    """One AsyncClient per configuration, reused by the sync task functions."""
    settings = settings or get_config()
    key = _settings_key(settings)
    with _shared_lock:
        client = _shared.get(key)
        if client is None:
            client = AsyncClient(settings=settings)
            _shared[key] = client
        return client


def resolve_client(client: Client | AsyncClient | None) -> AsyncClient:
    if client is None:
        return shared_client()
    if isinstance(client, Client):
        return client.aclient
    if isinstance(client, AsyncClient):
        return client
    raise InvalidParameterError(
        f"client must be a deapi_ds.Client or deapi_ds.AsyncClient. Got {type(client).__name__}."
    )


def clear_shared_clients() -> None:
    with _shared_lock:
        _shared.clear()
    _native.clear_shared_clients()


def syncify(afn: Callable[..., Awaitable[T]]) -> Callable[..., T]:
    """The sync twin of an async task function (same signature, same docstring)."""

    @functools.wraps(afn)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        layers = _config.capture()

        async def go() -> T:
            _config.restore(layers)
            return await afn(*args, **kwargs)

        return run_sync(go)

    wrapper.__doc__ = (afn.__doc__ or "").replace("await deapi_ds.a", "deapi_ds.")
    return wrapper


async def map_batches(
    batches: Sequence[B],
    worker: Callable[[B], Awaitable[R]],
    *,
    on_done: Callable[[B, R | None, BaseException | None], Any],
    limit: int = 64,
) -> None:
    """Run ``worker(batch)`` for every batch, at most ``limit`` at once.

    ``on_done(batch, result, error)`` is called (in the loop thread) as each batch finishes; a
    batch's ordinary error is passed to it and the run goes on. An error from
    :data:`FATAL_ERRORS` cancels the remaining batches and is raised after the finished ones
    have been handed to ``on_done``. Cancellation (Ctrl-C) propagates the same way.
    """
    semaphore = anyio.Semaphore(max(1, limit))
    fatal: list[BaseException] = []

    async def one(batch: B, tg: anyio.abc.TaskGroup) -> None:
        async with semaphore:
            if fatal:
                return
            try:
                result = await worker(batch)
            except FATAL_ERRORS as exc:
                if not fatal:
                    fatal.append(exc)
                tg.cancel_scope.cancel()
                return
            except Exception as exc:  # noqa: BLE001 - becomes this batch's per-row error
                result, error = None, exc
            else:
                error = None
            # shielded: a batch that was paid for is recorded even if the run is being cancelled
            with anyio.CancelScope(shield=True):
                outcome = on_done(batch, result, error)
                if hasattr(outcome, "__await__"):
                    await outcome

    async with anyio.create_task_group() as tg:
        for batch in batches:
            tg.start_soon(one, batch, tg)
    if fatal:
        raise fatal[0]
