"""Loop-bound objects: which event loop is running, and one object per loop.

The lowest layer of the engine machinery, shared by ``_transport`` (one httpx pool per loop)
and ``_engine`` (locks and capacity limiters per loop). No httpx, no pandas.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Callable
from typing import Any, Generic, TypeVar

__all__ = ["PerLoop", "current_loop"]

T = TypeVar("T")


class _NoLoop:
    """Stands for "no event loop running" (objects made by synchronous code)."""


_NO_LOOP = _NoLoop()


def current_loop() -> Any:
    """The running event loop (asyncio) or trio token: what loop-bound objects belong to."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        pass
    try:
        import trio
    except ImportError:
        return _NO_LOOP
    try:
        return trio.lowlevel.current_trio_token()
    except RuntimeError:
        return _NO_LOOP


class PerLoop(Generic[T]):
    """One object per event loop, made on first use in that loop.

    Locks, capacity limiters and httpx connection pools are bound to the loop that first used
    them. A client is used from deapi_ds's own loop thread (the sync API), from Jupyter's loop
    (``await deapi_ds.aembed(...)``) and from successive ``asyncio.run(...)`` calls, so each
    loop gets its own; an entry goes away with its loop.
    """

    def __init__(self, factory: Callable[[], T]) -> None:
        self._factory = factory
        self._items: weakref.WeakKeyDictionary[Any, T] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def get(self) -> T:
        loop = current_loop()
        with self._lock:
            item = self._items.get(loop)
            if item is None:
                item = self._items[loop] = self._factory()
            return item

    def peek(self) -> T | None:
        """The current loop's object, if one was made (no creation)."""
        with self._lock:
            return self._items.get(current_loop())

    def discard(self) -> None:
        with self._lock:
            self._items.pop(current_loop(), None)
