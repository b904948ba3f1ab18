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

import dis
import functools
import inspect
import sys
import threading
import types
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from . import _config, _native
from ._client import AsyncClient, Client
from ._config import Settings, get_config
from ._engine import run_sync
from ._exceptions import (
    DeapiError,
    InvalidParameterError,
)

__all__ = ["resolve_client", "syncify"]

T = TypeVar("T")
B = TypeVar("B")
R = TypeVar("R")

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


def syncify(afn: Callable[..., Awaitable[T]], name: str | None = None) -> Callable[..., T]:
    """The sync twin of an async task function: ``embed = syncify(aembed)``.

    The twin is a function of its own: ``__name__`` / ``__qualname__`` are ``name`` (by default
    the async name without its leading ``a``), ``__module__`` and the signature are the async
    function's (``__wrapped__`` points at it), and its docstring is the async one with
    ``await deapi_ds.aembed(`` written ``deapi_ds.embed(``. It runs the coroutine on deapi_ds's
    private loop thread with the caller's configuration, so it also works inside a running
    event loop (Jupyter).

    ``await embed(...)`` raises a TypeError naming ``aembed`` before any work is done (the
    caller's bytecode shows whether the call's value is awaited). A :class:`DeapiError` comes
    out with deapi_ds's internal frames removed from its traceback (the user's frames stay);
    the traceback as raised is kept in the exception's ``full_traceback`` attribute.
    """
    async_name = afn.__name__
    sync_name = name or (async_name[1:] if async_name.startswith("a") else async_name)

    @functools.wraps(afn)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        __tracebackhide__ = True  # noqa: F841 - IPython and pytest hide this frame
        awaited = _result_is_awaited(sys._getframe(1))
        layers = _config.capture()

        async def go() -> T:
            _config.restore(layers)
            return await afn(*args, **kwargs)

        try:
            if awaited:
                raise TypeError(
                    f"{sync_name}() is the blocking form and cannot be awaited. In async code "
                    f"use `await deapi_ds.{async_name}(...)`; elsewhere call {sync_name}(...) "
                    "without await."
                )
            return run_sync(go)
        except Exception as exc:
            if awaited or isinstance(exc, DeapiError):
                _hide_internal_frames(exc)
            raise

    wrapper.__name__ = sync_name
    qualname = getattr(afn, "__qualname__", async_name)
    wrapper.__qualname__ = qualname[: len(qualname) - len(async_name)] + sync_name
    doc = (afn.__doc__ or "").replace(f"await deapi_ds.{async_name}(", f"deapi_ds.{sync_name}(")
    wrapper.__doc__ = doc.replace("await deapi_ds.a", "deapi_ds.")
    return wrapper


def _hide_internal_frames(exc: BaseException) -> None:
    """Show the user's call and the error, not the loop thread's 100+ internal frames.

    Each exception of the chain keeps its traceback as raised in ``full_traceback``
    (``traceback.print_tb(exc.full_traceback)``); the frames of the user's code above the sync
    call are added back as the error propagates.
    """
    seen: set[int] = set()
    node: BaseException | None = exc
    while node is not None and id(node) not in seen:
        seen.add(id(node))
        if node.__traceback__ is not None and getattr(node, "full_traceback", None) is None:
            node.full_traceback = node.__traceback__  # type: ignore[attr-defined]
            node.__traceback__ = None
        node = node.__cause__ or (None if node.__suppress_context__ else node.__context__)


_AWAIT_FLAGS = inspect.CO_COROUTINE | inspect.CO_ITERABLE_COROUTINE | inspect.CO_ASYNC_GENERATOR


def _result_is_awaited(frame: types.FrameType | None) -> bool:
    """Whether the call being made from ``frame`` has its value awaited (``await f(...)``).

    Only coroutine code (an ``async def`` or IPython's top-level-await cells) can await; there
    the instruction after the call is ``GET_AWAITABLE``. The answer is cached per call site.
    """
    if frame is None or not frame.f_code.co_flags & _AWAIT_FLAGS:
        return False
    return _awaits_after(frame.f_code, frame.f_lasti)


@functools.lru_cache(maxsize=256)
def _awaits_after(code: types.CodeType, lasti: int) -> bool:
    for ins in dis.get_instructions(code):
        if ins.offset > lasti and ins.opname not in ("CACHE", "EXTENDED_ARG"):
            return ins.opname == "GET_AWAITABLE"
    return False
