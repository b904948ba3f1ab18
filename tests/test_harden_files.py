"""Folders and file names (issue 15, items 5 and 13 for file names).

- A FIFO, socket or device file (or a link to one, e.g. ``/dev/zero``) in a folder is a row with
  a clear error and is never opened for reading; reads are bounded.
- File names that are not valid UTF-8 (``b"caf\\xe9.wav"``) work end to end: paid once, cached,
  shown, rerun from the cache.
"""

from __future__ import annotations

import builtins
import os
import socket
import sys

import pytest

import deapi_ds
from deapi_ds import _files

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="FIFOs and byte names: POSIX")

EXTS = frozenset({".wav"})


@pytest.fixture
def clip(emulator):
    return deapi_ds.Client().speech("Hello from the cafe.", response_format="wav").audio


@pytest.fixture
def other_clip(emulator):
    return deapi_ds.Client().speech("Bonjour from the cafe.", response_format="wav").audio


@pytest.fixture
def odd_folder(tmp_path, clip, other_clip):
    """A folder with a good file, a non-UTF-8 name, a FIFO, a socket and a link to /dev/zero."""
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "good.wav").write_bytes(clip)
    with open(os.path.join(os.fsencode(folder), b"caf\xe9.wav"), "wb") as fh:
        fh.write(other_clip)  # other bytes: its own request, its own cache entry
    os.mkfifo(folder / "pipe.wav")
    os.symlink("/dev/zero", folder / "zero.wav")
    sock = socket.socket(socket.AF_UNIX)
    short = f"/tmp/deapi_ds_test_{os.getpid()}.sock"  # AF_UNIX paths are short: bind, then link
    if os.path.exists(short):
        os.unlink(short)
    sock.bind(short)
    os.symlink(short, folder / "sock.wav")
    yield folder
    sock.close()
    os.unlink(short)


def test_walk_lists_special_files_and_gives_printable_names(odd_folder):
    found, ignored = _files.walk_folder(
        str(odd_folder), pattern="*", recursive=True, extensions=EXTS, include_hidden=False
    )
    names = [rel for rel, _ in found]
    assert names == ["caf\\xe9.wav", "good.wav", "pipe.wav", "sock.wav", "zero.wav"]
    assert ignored == 0
    full = dict(found)["caf\\xe9.wav"]
    assert os.path.exists(full) and os.fsencode(full).endswith(b"caf\xe9.wav")
    for rel in names:
        rel.encode("utf-8")  # storable


@pytest.mark.timeout(10)
def test_read_file_never_opens_special_files(odd_folder):
    for name, kind in (("pipe.wav", "FIFO"), ("zero.wav", "character device")):
        with pytest.raises(_files.NotARegularFileError, match=kind) as info:
            _files.read_file(odd_folder / name, max_bytes=1 << 20)
        assert "not a regular file" in info.value.strerror
    with pytest.raises(OSError, match="socket"):
        _files.read_file(odd_folder / "sock.wav", max_bytes=1 << 20)
    with pytest.raises(IsADirectoryError):
        _files.read_file(odd_folder, max_bytes=1 << 20)


@pytest.mark.timeout(10)
def test_a_fifo_swapped_in_after_the_check_cannot_block(odd_folder):
    fifo = str(odd_folder / "pipe.wav")

    def swapped(path, mode, opener):  # the regular file became a FIFO between check and open
        return builtins.open(fifo, mode, opener=opener)

    with pytest.raises(_files.NotARegularFileError, match="FIFO"):
        _files.read_file(odd_folder / "good.wav", max_bytes=1 << 20, open_file=swapped)


def test_reads_are_bounded(tmp_path):
    path = tmp_path / "a.bin"
    path.write_bytes(b"x" * 1000)
    assert _files.read_file(path, max_bytes=1000) == b"x" * 1000
    with pytest.raises(_files.FileTooLargeError, match="larger than") as info:
        _files.read_file(path, max_bytes=999)
    assert isinstance(info.value, OSError)


def test_display_name_is_unique_and_storable():
    assert _files.display_name("caf\udce9.wav") == "caf\\xe9.wav"
    assert _files.display_name("caf\udce8.wav") != _files.display_name("caf\udce9.wav")
    assert _files.display_name("café.wav") == "café.wav"
    assert _files.display_name(b"caf\xe9.wav") == "caf\\xe9.wav"


def test_check_extensions():
    assert _files.check_extensions(None, default={".a"}) == {".a"}
    assert _files.check_extensions("WAV", default=()) == {".wav"}
    with pytest.raises(deapi_ds.InvalidParameterError, match="extensions"):
        _files.check_extensions([3], default=())


@pytest.mark.timeout(60)
def test_transcribe_folder_with_odd_files_end_to_end(emulator, odd_folder):
    emulator.reset_stats()
    res = deapi_ds.transcribe_folder(odd_folder)
    files = res.files.set_index("file")
    assert files.index.tolist() == ["caf\\xe9.wav", "good.wav", "pipe.wav", "sock.wav", "zero.wav"]
    assert files.loc["caf\\xe9.wav", "status"] == "ok" and files.loc["good.wav", "status"] == "ok"
    assert files.loc["caf\\xe9.wav", "text"] == "Bonjour from the cafe."
    for name, kind in (("pipe.wav", "FIFO"), ("sock.wav", "socket"), ("zero.wav", "device")):
        assert files.loc[name, "status"] == "error"
        assert kind in files.loc[name, "error"] and name in files.loc[name, "error"]
    assert emulator.stats("audio.transcriptions")["requests"] == 2
    assert set(res.segments["file"]) == {"caf\\xe9.wav", "good.wav"}
    assert len(res.audio("caf\\xe9.wav")) > 1000  # re-read from the real path
    repr(res), res._repr_html_() if hasattr(res, "_repr_html_") else None
    # the rerun is served from the cache: nothing paid twice, no crash on the cache
    again = deapi_ds.transcribe_folder(odd_folder)
    assert emulator.stats("audio.transcriptions")["requests"] == 2
    assert again.files.set_index("file").loc["caf\\xe9.wav", "status"] == "cached"


def test_transcribe_a_list_with_a_non_utf8_path(emulator, odd_folder):
    path = os.path.join(str(odd_folder), os.fsdecode(b"caf\xe9.wav"))
    res = deapi_ds.transcribe([path])
    row = res.files.iloc[0]
    assert row["status"] == "ok" and row["file"].endswith("caf\\xe9.wav")
    assert row["path"].endswith("caf\\xe9.wav")
