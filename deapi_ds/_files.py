"""Files from the user's disk: folder walks, safe names and bounded, safe reads.

Shared by every task that takes a folder or paths (transcription, OCR, image transforms).
No pandas, no httpx.

- :func:`walk_folder` lists the matching files of a folder, sorted, walking every real folder
  once (symbolic-link loops cannot hang it). Names that are not valid UTF-8 (``b"caf\\xe9.wav"``
  on Linux) are listed with a printable, unique display name (``caf\\xe9.wav``, see
  :func:`display_name`) and their real path.
- :func:`read_file` reads one file only if it is a regular file (a FIFO, socket or device, or
  a link to one such as ``/dev/zero``, raises :class:`NotARegularFileError` without ever
  being opened for reading), and never more than ``max_bytes``.
- :func:`check_extensions` turns ``extensions=`` arguments into a set of ``.ext`` strings.

Errors are ``OSError`` subclasses whose ``strerror`` says what is wrong, so a task that turns
``OSError`` into an error row ("x.wav: cannot read the file (...)") reports them as it does a
missing file or a permission error.
"""

from __future__ import annotations

import builtins
import errno
import fnmatch
import os
import stat
from collections.abc import Callable, Iterable
from typing import Any

from ._exceptions import InvalidParameterError

__all__ = [
    "MAX_SPLIT_FILE_BYTES",
    "FileTooLargeError",
    "NotARegularFileError",
    "check_extensions",
    "display_name",
    "file_kind",
    "read_file",
    "walk_folder",
]

#: files that a task splits into several uploads (long audio) are read up to this size; a task
#: that sends a file whole reads it up to its upload limit
MAX_SPLIT_FILE_BYTES = 4 * 1024**3

_KINDS = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISDIR, "a folder"),
)


class NotARegularFileError(OSError):
    """The path is a FIFO, socket, device or folder (or a link to one): it is never read."""


class FileTooLargeError(OSError):
    """The file is larger than the reader's limit: it is not read."""


def display_name(name: str | bytes) -> str:
    """A printable, storable form of a file name or path (valid UTF-8, unique per name).

    Names that the file system gave as bytes that are not UTF-8 arrive in Python as lone
    surrogates (``"caf\\udce9.wav"``), which pyarrow, parquet and JSON refuse. Each such byte is
    written as ``\\xNN`` instead, so distinct names stay distinct.

    >>> display_name("caf\\udce9.wav")
    'caf\\\\xe9.wav'
    >>> display_name(b"caf\\xc3\\xa9.wav")
    'café.wav'
    """
    raw = name if isinstance(name, bytes) else os.fsencode(name)
    return raw.decode("utf-8", "backslashreplace")


def file_kind(mode: int) -> str | None:
    """What a ``st_mode`` is when it is not a regular file (``None`` for a regular file)."""
    if stat.S_ISREG(mode):
        return None
    for test, kind in _KINDS:
        if test(mode):
            return kind
    return "not a regular file"


def _refuse(path: str, kind: str) -> NotARegularFileError:
    cls = IsADirectoryError if kind == "a folder" else NotARegularFileError
    return cls(  # type: ignore[return-value]
        errno.EISDIR if kind == "a folder" else errno.EINVAL,
        f"it is {kind}, not a regular file, so it is not read",
        display_name(path),
    )


def _nonblocking(path: str, flags: int) -> int:
    """``open()``'s opener: a FIFO swapped in after the check cannot block the open."""
    return os.open(path, flags | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))


def read_file(
    path: str | os.PathLike[str],
    *,
    max_bytes: int,
    open_file: Callable[..., Any] = builtins.open,
) -> bytes:
    """The bytes of the regular file at ``path``, at most ``max_bytes`` of them.

    Raises :class:`NotARegularFileError` (FIFO, socket, device; symbolic links are followed,
    so a link to ``/dev/zero`` is one), ``IsADirectoryError``, :class:`FileTooLargeError`
    (larger than ``max_bytes``, or grown past it while being read) or the ``OSError`` of a
    missing or unreadable file. The file is checked before it is opened, and again on the
    open descriptor (opened non-blocking, so a FIFO put in its place cannot hang the read).
    ``open_file`` is the ``open`` to use (tests replace it).
    """
    path = os.fspath(path)
    kind = file_kind(os.stat(path).st_mode)
    if kind is not None:
        raise _refuse(path, kind)
    with open_file(path, "rb", opener=_nonblocking) as fh:
        info = os.fstat(fh.fileno())
        kind = file_kind(info.st_mode)
        if kind is not None:
            raise _refuse(path, kind)
        if info.st_size > max_bytes:
            raise _too_large(path, info.st_size, max_bytes)
        data = fh.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise _too_large(path, len(data), max_bytes)
    return data


def _too_large(path: str, size: int, limit: int) -> FileTooLargeError:
    return FileTooLargeError(
        errno.EFBIG,
        f"it is larger than the {limit / 2**20:.4g} MB this task reads "
        f"({size / 2**20:.4g} MB or more)",
        display_name(path),
    )


def check_extensions(
    extensions: Iterable[str] | str | None, *, default: Iterable[str]
) -> frozenset[str]:
    """``extensions=`` as a set of lower-case ``.ext`` strings (``default`` when None).

    >>> sorted(check_extensions(["MP3", ".wav"], default=[]))
    ['.mp3', '.wav']
    """
    if extensions is None:
        return frozenset(default)
    if isinstance(extensions, str):
        extensions = [extensions]
    out = set()
    for ext in extensions:
        if not isinstance(ext, str) or not ext.strip(". "):
            raise InvalidParameterError(
                f"extensions must be file extensions such as '.mp3' or 'wav'. Got {ext!r}."
            )
        ext = ext.strip().lower()
        out.add(ext if ext.startswith(".") else f".{ext}")
    return frozenset(out)


def walk_folder(
    root: str,
    *,
    pattern: str,
    recursive: bool,
    extensions: frozenset[str],
    include_hidden: bool,
    unlisted: list[OSError] | None = None,
) -> tuple[list[tuple[str, str]], int]:
    """Sorted (display path relative to ``root``, full path) of the matching files, and the
    count of files ignored for their extension.

    The display path uses ``/`` and :func:`display_name` (valid UTF-8 whatever the file
    system holds); the full path is the real one, to open. ``pattern`` is matched against the
    file name, or against the relative path when it contains ``/``. Symbolic links are
    followed, but every real folder is visited once, so a link loop (or a link back to a
    parent) cannot hang the walk. Entries that are not regular files (FIFOs, sockets,
    devices, links to them) are listed like files when their name matches, so that they
    become rows with an error: :func:`read_file` refuses them without opening them.
    Folders that cannot be listed (no permission) are appended to ``unlisted``.
    """
    found: list[tuple[str, str]] = []
    ignored = 0
    on_error = unlisted.append if unlisted is not None else None
    visited: set[tuple[int, int]] = set()
    try:
        st = os.stat(root)
        visited.add((st.st_dev, st.st_ino))
    except OSError:
        pass
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True, onerror=on_error):
        keep = []
        for d in sorted(dirnames):
            if not include_hidden and d.startswith("."):
                continue
            full = os.path.join(dirpath, d)
            try:
                st = os.stat(full)
            except OSError:
                continue  # broken link to a folder
            ident = (st.st_dev, st.st_ino)
            if ident in visited:
                continue  # a link loop or a second link to a folder already walked
            visited.add(ident)
            keep.append(d)
        dirnames[:] = keep if recursive else []
        for name in filenames:
            if not include_hidden and name.startswith("."):
                continue
            full = os.path.join(dirpath, name)
            rel = display_name(os.path.relpath(full, root).replace(os.sep, "/"))
            if os.path.splitext(name)[1].lower() not in extensions:
                ignored += 1
                continue
            target = rel if "/" in pattern else display_name(name)
            if not fnmatch.fnmatch(target, pattern):
                continue
            found.append((rel, full))
    found.sort(key=lambda pair: pair[0])
    return found, ignored
