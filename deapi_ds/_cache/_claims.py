"""Cross-process claims: rows another live process has in flight are waited for, not sent again.

A claim is a small file ``<root>/.deapi_ds/ns/<task>/<model>/claims/<owner>-<uuid>.claim``
holding the 128-bit keys (two little-endian uint64 per key) that its process is computing. It
counts only while its owner lives (see :func:`._storage.owner_alive`: the owner's OS lock is
dropped when the process dies, ``kill -9`` included); a dead owner's claim files are removed by
the next process that looks. Claims are taken under a short per-namespace file lock, so two
processes never both get the same key. Only the claim folder is listed, never the namespace.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
import warnings
import weakref
from collections.abc import Sequence

import filelock
import numpy as np
import pandas as pd

from .._exceptions import CacheWarning
from ._keys import _Keys, _to_keys
from ._storage import meta_dir, owner_alive, owner_of

_SUFFIX = ".claim"
_LOCK_TIMEOUT = 60.0


def _unlink(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


class Claim:
    """Keys this process holds while it computes them; release it when their results are stored.

    ``mine`` (bool mask over the keys) marks the keys this process now holds; ``others`` the
    keys a live claim of another process holds (wait for them with
    :meth:`ResultCache.wait_released`, then look them up). Use it as a context manager or call
    :meth:`release`; a claim is also void as soon as its process dies.

    >>> from deapi_ds.cache import NullCache
    >>> with NullCache().claim("embeddings", "m", ["0" * 32]) as c:
    ...     c.mine.tolist(), c.others.tolist()
    ([True], [False])
    """

    __module__ = "deapi_ds.cache"

    def __init__(self, mine: np.ndarray, path: str | None = None) -> None:
        self.mine: np.ndarray = mine
        self.others: np.ndarray = ~mine
        self._path = path
        self._finalizer = weakref.finalize(self, _unlink, path) if path else None

    def release(self) -> None:
        """Give the keys up (idempotent): other processes stop waiting for them."""
        if self._finalizer is not None:
            self._finalizer()

    def __enter__(self) -> Claim:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"Claim(mine={int(self.mine.sum())}, others={int(self.others.sum())})"


def unclaimed(n: int) -> Claim:
    """A claim that holds every key without any file (no cache, or a remote cache)."""
    return Claim(np.ones(n, dtype=bool))


class ClaimBoard:
    """The claims of one local cache folder, as seen from this process."""

    def __init__(self, root: str) -> None:
        self.root = root
        self._files: dict[str, np.ndarray] = {}  # claim file path -> first 64 bits of its keys
        self._held_index: tuple[tuple[str, frozenset[str]], pd.Index] | None = None

    def _folder(self, task_dir: str, model_dir: str) -> str:
        return os.path.join(meta_dir(self.root, task_dir, model_dir), "claims")

    def _held(self, folder: str, keys: _Keys, me: str) -> np.ndarray:
        """Mask of ``keys`` that a live claim of another process holds (dead claims are removed)."""
        try:
            names = [n for n in os.listdir(folder) if n.endswith(_SUFFIX)]
        except FileNotFoundError:
            names = []
        alive: dict[str, bool] = {}
        live: list[str] = []
        for name in names:
            owner = name.split("-", 1)[0]
            if owner == me:
                continue
            if owner not in alive:
                alive[owner] = owner_alive(self.root, owner)
            path = os.path.join(folder, name)
            if not alive[owner]:
                _unlink(path)
            elif path in self._files or self._read(path):
                live.append(path)
        listed = {os.path.join(folder, n) for n in names}
        for gone in [p for p in list(self._files) if os.path.dirname(p) == folder]:
            if gone not in listed or gone not in live:
                self._files.pop(gone, None)
        if not live:
            return np.zeros(len(keys), dtype=bool)
        ident = (folder, frozenset(live))
        held = self._held_index
        if held is None or held[0] != ident:
            # Matching the first 64 bits: a clash (~1e-19 per pair) only makes a row wait.
            index = pd.Index(np.unique(np.concatenate([self._files[p] for p in live])))
            held = self._held_index = (ident, index)
        return held[1].get_indexer(keys.hi) >= 0

    def _read(self, path: str) -> bool:
        try:
            raw = np.fromfile(path, dtype="<u8")
        except FileNotFoundError:
            return False  # released meanwhile
        self._files[path] = raw[: len(raw) // 2]
        return True

    def claim(self, task_dir: str, model_dir: str, keys: Sequence[str]) -> Claim:
        k = _to_keys(keys)
        owner = owner_of(self.root)
        if owner is None or not len(k):
            return unclaimed(len(k))
        folder = self._folder(task_dir, model_dir)
        try:
            os.makedirs(folder, exist_ok=True)
            lock = filelock.FileLock(
                os.path.join(os.path.dirname(folder), "claims.lock"),
                timeout=_LOCK_TIMEOUT,
                thread_local=False,
            )
            with lock:
                mine = ~self._held(folder, k, owner.id)
                if not mine.any():
                    return Claim(mine)
                name = f"{owner.id}-{uuid.uuid4().hex}{_SUFFIX}"
                path = os.path.join(folder, name)
                tmp = os.path.join(folder, f".{name}.tmp")
                with open(tmp, "wb") as f:
                    f.write(np.concatenate([k.hi[mine], k.lo[mine]]).astype("<u8").tobytes())
                os.replace(tmp, path)  # readers without the lock see all of it or nothing
        except (OSError, filelock.Timeout) as exc:
            # Claims only save money; a folder where they cannot be kept must not stop the run.
            warnings.warn(
                f"Could not claim rows in {folder} ({type(exc).__name__}: {exc}); another "
                "process working on the same rows may send them too.",
                CacheWarning,
                stacklevel=3,
            )
            return unclaimed(len(k))
        return Claim(mine, path)

    def wait_released(
        self, task_dir: str, model_dir: str, keys: Sequence[str], timeout: float | None
    ) -> np.ndarray:
        k = _to_keys(keys)
        owner = owner_of(self.root)
        if owner is None or not len(k):
            return np.zeros(len(k), dtype=bool)
        folder = self._folder(task_dir, model_dir)
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = 0.01
        while True:
            try:
                held = self._held(folder, k, owner.id)
            except OSError:
                return np.zeros(len(k), dtype=bool)  # unreadable claims: nothing to wait for
            if not held.any():
                return held
            if deadline is not None and time.monotonic() >= deadline:
                return held
            wait = pause if deadline is None else min(pause, max(0.0, deadline - time.monotonic()))
            time.sleep(wait)
            pause = min(0.1, pause * 2)
