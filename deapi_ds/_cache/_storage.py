"""Where cache files live: a local folder or an fsspec URL, and who owns what in a local folder.

Layout of a cache location::

    <root>/<task>/<model>/part-<UTC time>-<uuid>.parquet     finished files (never modified)
    <root>/<task>/<model>/.tmp-<owner>-<uuid>.parquet        a file being written (dot: ignored)
    <root>/.deapi_ds/owners/<owner>.lock                     held locked by its live process
    <root>/.deapi_ds/ns/<task>/<model>/compact.lock          compaction (filelock)
    <root>/.deapi_ds/ns/<task>/<model>/claims/...            in-flight claims (see _claims)

Ownership: each process that writes to a local folder holds an exclusive OS lock on its own
``owners/<owner>.lock`` for as long as it lives (``flock``; the OS drops it when the process dies,
``kill -9`` included). Temporary files carry the owner's id, so ``clear()`` and compaction remove
only temporary files whose owner is dead, never a live writer's half-written file.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import re
import sys
import tempfile
import threading
import uuid
import zlib
from collections.abc import Iterator, Mapping
from typing import IO, Any
from urllib.parse import quote, unquote

import filelock

from .._exceptions import CacheError
from .._lazy import lazy_module
from ._codec import READ_OPTIONS

pq = lazy_module("pyarrow.parquet")  # lazy: only reads and writes need it

_PART_RE = re.compile(r"^part-(\d{8}T\d{12}Z)-([0-9a-f]{32})\.parquet$")
_TMP_PREFIX = ".tmp-"
_TMP_RE = re.compile(r"^\.tmp-(?:(\d+x[0-9a-f]{12})-)?[0-9a-f]{32}\.parquet$")
_META_DIR = ".deapi_ds"
#: a temporary file without an owner (written by deapi_ds <= 0.x) is removed after this long
_STALE_TMP_SECONDS = 24 * 3600


def _encode_name(name: str) -> str:
    encoded = quote(name, safe="")
    if encoded.startswith("."):
        encoded = "%2E" + encoded[1:]
    return encoded


def _decode_name(name: str) -> str:
    return unquote(name)


def _now_stamp() -> str:
    return _dt.datetime.now(_dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")


# The 32 hex characters of a part name: files from deapi_ds <= 0.x have a random uuid4 (always
# "4" at position 12); newer ones have "c" there and end in the CRC32 of the file's parquet footer
# (the page checksums cover the data; this covers the metadata that locates it).
_CHECKED_MARK = "c"


def _part_name(stamp: str | None, footer_crc: int) -> str:
    rnd = uuid.uuid4().hex
    ident = f"{rnd[:12]}{_CHECKED_MARK}{rnd[13:24]}{footer_crc:08x}"
    return f"part-{stamp or _now_stamp()}-{ident}.parquet"


def expected_footer_crc(name: str) -> int | None:
    """The footer checksum a part file's name records (None for older, unchecked names)."""
    match = _PART_RE.match(name)
    if match is None or match.group(2)[12] != _CHECKED_MARK:
        return None
    return int(match.group(2)[24:], 16)


def footer_crc(f: IO[bytes], size: int) -> int | None:
    """CRC32 of a parquet file's footer (metadata, its length and the magic); None if absent."""
    if size < 12:
        return None
    f.seek(size - 8)
    end = f.read(8)
    length = int.from_bytes(end[:4], "little")
    if end[4:] != b"PAR1" or length + 12 > size:
        return None
    f.seek(size - 8 - length)
    return zlib.crc32(f.read(length + 8))


class FooterMismatch(Exception):
    """A part file's footer does not match the checksum in its name."""


def check_footer(store: Any, path: str, name: str, size: int) -> None:
    """Raise :class:`FooterMismatch` unless the footer matches its name (if the name has one).

    Done before pyarrow parses the footer: some damaged footers abort the process in pyarrow.
    """
    expected = expected_footer_crc(name)
    if expected is None:
        return
    with store.open_raw(path) as f:
        got = footer_crc(f, size)
    if got != expected:
        raise FooterMismatch("its parquet footer does not match the checksum in its name")


# --------------------------------------------------------------------------------------------
# process ownership: an OS lock held for the life of the process
# --------------------------------------------------------------------------------------------

if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _try_lock(fd: int) -> bool:
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True


class _Owner:
    """This process's liveness token in one cache folder (an exclusively locked file)."""

    def __init__(self, root: str) -> None:
        self.pid = os.getpid()
        self.id = f"{self.pid}x{uuid.uuid4().hex[:12]}"
        folder = os.path.join(root, _META_DIR, "owners")
        os.makedirs(folder, exist_ok=True)
        self.path = os.path.join(folder, f"{self.id}.lock")
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        if not _try_lock(self.fd):  # pragma: no cover - a fresh random name is never locked
            os.close(self.fd)
            raise OSError(f"could not lock {self.path}")


_owners: dict[str, _Owner | None] = {}
_owners_lock = threading.Lock()


def _after_fork_in_child() -> None:
    # The child must not pass for its parent: drop the inherited descriptors (closing them does
    # not release the parent's lock, which the parent's own descriptor keeps) and start afresh.
    for owner in _owners.values():
        if owner is not None:
            with contextlib.suppress(OSError):
                os.close(owner.fd)
    _owners.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def owner_of(root: str) -> _Owner | None:
    """This process's owner token in ``root`` (None where the folder cannot hold OS locks)."""
    owner = _owners.get(root)
    if owner is not None and owner.pid == os.getpid():
        return owner
    with _owners_lock:
        if root in _owners and (_owners[root] is None or _owners[root].pid == os.getpid()):
            return _owners[root]
        try:
            owner = _Owner(root)
        except OSError:
            owner = None  # read-only or lock-less file system: temp files fall back to age
        _owners[root] = owner
        return owner


def owner_alive(root: str, owner_id: str) -> bool:
    """Whether the process that took ``owner_id`` in ``root`` is still running."""
    mine = _owners.get(root)
    if mine is not None and mine.id == owner_id and mine.pid == os.getpid():
        return True
    path = os.path.join(root, _META_DIR, "owners", f"{owner_id}.lock")
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return False
    except OSError:
        return True  # cannot tell: assume alive (never delete what may be in use)
    try:
        alive = not _try_lock(fd)
    except OSError:
        alive = True
    finally:
        os.close(fd)
    if not alive:
        with contextlib.suppress(OSError):
            os.unlink(path)  # its process is gone for good; ids are never reused
    return alive


def sweep_owners(root: str) -> None:
    """Remove the lock files of owners that died (each process leaves one per cache folder)."""
    folder = os.path.join(root, _META_DIR, "owners")
    with contextlib.suppress(OSError):
        for name in os.listdir(folder):
            if name.endswith(".lock"):
                owner_alive(root, name[: -len(".lock")])


def meta_dir(root: str, task_dir: str, model_dir: str) -> str:
    """The folder of a namespace's lock and claim files."""
    return os.path.join(root, _META_DIR, "ns", task_dir, model_dir)


@contextlib.contextmanager
def compaction_lock(store: Any, task_dir: str, model_dir: str) -> Iterator[bool]:
    """Per-namespace lock so that two processes (or threads) never merge the same files.

    Two concurrent compactions would never lose entries (each writes its merged file before
    deleting sources), but both would keep a copy of the same rows. Local folders use an OS file
    lock (``filelock``), which the OS releases when its holder dies: a crashed compactor never
    blocks the next one, and two processes can never both hold it. Remote fsspec stores have no
    such lock: there compaction is best effort (yields True).
    """
    if store.remote:
        yield True
        return
    folder = meta_dir(store.root, task_dir, model_dir)
    try:
        os.makedirs(folder, exist_ok=True)
        lock = filelock.FileLock(
            os.path.join(folder, "compact.lock"), timeout=0, thread_local=False
        )
        lock.acquire()
    except (filelock.Timeout, OSError):
        yield False
        return
    try:
        yield True
    finally:
        lock.release()


# --------------------------------------------------------------------------------------------
# stores
# --------------------------------------------------------------------------------------------


class _LocalStore:
    """A folder on this machine: temp file (named after its owner) + fsync + atomic rename."""

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
        pf = pq.ParquetFile(path, **READ_OPTIONS)
        try:
            yield pf
        finally:
            pf.close()

    def _new_temp(self, folder: str) -> str:
        owner = owner_of(self.root)
        tag = f"{owner.id}-" if owner is not None else ""
        tmp = os.path.join(folder, f"{_TMP_PREFIX}{tag}{uuid.uuid4().hex}.parquet")
        for attempt in range(5):
            try:
                os.makedirs(folder, exist_ok=True)
                os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
                return tmp
            except FileNotFoundError:
                # clear() removed the (empty) folder between makedirs and open: make it again
                if attempt == 4:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def open_raw(self, path: str) -> IO[bytes]:
        return open(path, "rb")

    @contextlib.contextmanager
    def atomic_write(self, folder: str, stamp: str | None = None) -> Iterator[str]:
        """Yield a temporary path to write a part file to; it then appears atomically.

        Its name (``part-<stamp>-<id>.parquet``) records the footer checksum. Returns after the
        file is fsynced and renamed (and the folder fsynced).
        """
        tmp = self._new_temp(folder)
        try:
            yield tmp
            with open(tmp, "rb+") as f:  # read-write: Windows refuses fsync on read-only handles
                crc = footer_crc(f, os.fstat(f.fileno()).st_size)
                os.fsync(f.fileno())
            if crc is None:
                raise OSError(f"{tmp} is not a complete parquet file")
            os.replace(tmp, os.path.join(folder, _part_name(stamp, crc)))
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

    def remove_dead_temps(self, ns: str, legacy_age: float) -> int:
        """Delete temporary files whose writer is dead; returns how many were removed.

        A temporary file names its owner; it is removed only when that owner's lock can be
        taken (the process is gone). One without an owner (older deapi_ds, or a file system
        without locks) is removed once it is ``legacy_age`` seconds old.
        """
        removed = 0
        alive: dict[str, bool] = {}
        now = _dt.datetime.now().timestamp()
        for name, _size in self.list_files(ns):
            if not name.startswith(_TMP_PREFIX):
                continue
            match = _TMP_RE.match(name)
            owner = match.group(1) if match else None
            path = os.path.join(ns, name)
            if owner is not None:
                if owner not in alive:
                    alive[owner] = owner_alive(self.root, owner)
                if alive[owner]:
                    continue
            else:
                mtime = self.mtime(path)
                if mtime is None or now - mtime <= legacy_age:
                    continue
            removed += self.delete(path)
        return removed

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
            yield pq.ParquetFile(f, **READ_OPTIONS)

    def open_raw(self, path: str) -> IO[bytes]:
        return self.fs.open(path, "rb")

    @contextlib.contextmanager
    def atomic_write(self, folder: str, stamp: str | None = None) -> Iterator[str]:
        # The temporary file is on this machine: nothing of it is visible in the store.
        fd, tmp = tempfile.mkstemp(prefix="deapi_ds-", suffix=".parquet")
        os.close(fd)
        try:
            yield tmp
            with open(tmp, "rb") as f:
                crc = footer_crc(f, os.fstat(f.fileno()).st_size)
            if crc is None:
                raise OSError(f"{tmp} is not a complete parquet file")
            self.fs.put_file(tmp, self.join(folder, _part_name(stamp, crc)))
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        with contextlib.suppress(Exception):
            self.fs.invalidate_cache(folder)

    def remove_dead_temps(self, ns: str, legacy_age: float) -> int:
        """Nothing to do: temporary files never reach the store."""
        return 0

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
