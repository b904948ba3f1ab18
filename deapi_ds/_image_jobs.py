"""Images in, native jobs out: what OCR, background removal and upscaling share.

Three pieces, each used by :mod:`deapi_ds._ocr` (``ocr``) and :mod:`deapi_ds.transforms`:

- **inputs** (:func:`image_values`, :func:`prepare_images`): a folder (walked with
  :func:`deapi_ds._files.walk_folder`: sorted, hidden files skipped, symbolic-link loops safe),
  paths, bytes, PIL images, numpy arrays, URLs, or a column of any of these → one
  :class:`ImageInput` per row. Every row is checked before anything is paid for, against
  deAPI's image limits (deapi-reference.md §4.5: 10 MB, 64-5000 px per side,
  JPG/PNG/GIF/BMP/WebP; other formats are converted to PNG with Pillow), and ``max_side``
  downsizes larger images (never upscales). A row that cannot be sent keeps its reason.
- **the upload** (:func:`upload_bytes`): the bytes sent for a row, made when it is sent (so a
  thousand images are never all held encoded at once).
- **the task** (:class:`ImageJobTask`): one native job per distinct image (content + options)
  on the task pipeline: submit → the job id written to the cache at once (a rerun after a
  crash resumes polling instead of paying again) → poll under the status limit → download.
  A subclass says how to build the request, how to read a finished job, and its cache columns.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import pandas as pd
import pyarrow as pa

from . import _files
from ._cache import make_key
from ._common import is_missing as _missing
from ._exceptions import InvalidParameterError
from ._jobs import JobItem, JobOutcome, JobRunner, NativeBackend
from ._native import AsyncNativeClient, NativeClient, NativeRequest, shared_native_client
from ._pipeline import CACHED, Answer, Task, as_series
from ._result import open_image
from ._tasks import resolve_client

__all__ = [
    "IMAGE_EXTENSIONS",
    "MAX_IMAGE_BYTES",
    "MAX_SIDE",
    "MIN_SIDE",
    "ImageInput",
    "ImageJobTask",
    "RowOutcome",
    "check_max_side",
    "image_values",
    "prepare_images",
    "resolve_native",
    "target_size",
    "upload_bytes",
]

#: deAPI's image limits (deapi-reference.md §4.5)
MAX_IMAGE_BYTES = 10 * 1024 * 1024
MIN_SIDE, MAX_SIDE = 64, 5000
#: formats deAPI takes as they are (Pillow's names) -> upload extension
UPLOAD_FORMATS = {"PNG": "png", "JPEG": "jpg", "GIF": "gif", "BMP": "bmp", "WEBP": "webp"}
#: extensions a folder walk lists (TIFF and others are converted to PNG before the upload)
IMAGE_EXTENSIONS = (
    ".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".tif", ".tiff", ".jfif", ".ppm",
    ".pgm", ".pbm", ".pcx", ".tga", ".ico",
)  # fmt: skip
#: a file larger than this is not read (max_side may shrink a large file under 10 MB)
MAX_READ_BYTES = 512 * 1024 * 1024
#: seconds before a new job's first status read (then x1.5 up to 10 s; image jobs are short)
POLL_SECONDS = 1.0


# --------------------------------------------------------------------------------------------
# inputs


@dataclasses.dataclass
class ImageInput:
    """One input row: where it came from, what it is, and what will be uploaded.

    ``source`` is what the row shows (a path relative to the folder, a file name, a URL,
    ``<bytes>``...); ``image`` is the input itself for display (the path, or the bytes).
    ``width``/``height`` are the input's, ``upload_width``/``upload_height`` what is sent after
    ``max_side``; ``status`` is ``"pending"`` (to send), ``"empty"`` or ``"error"``.
    """

    label: Any
    source: str | None
    image: Any = None
    path: str | None = None
    data: bytes | None = None
    url: str | None = None
    fmt: str | None = None
    width: int | None = None
    height: int | None = None
    upload_width: int | None = None
    upload_height: int | None = None
    convert: bool = False
    status: str = "pending"
    error_type: str | None = None
    error: str | None = None
    key: str | None = None
    digest: str | None = None

    @property
    def pixels(self) -> int | None:
        """Pixels sent (what OCR is priced by)."""
        if self.upload_width is None or self.upload_height is None:
            return None
        return self.upload_width * self.upload_height

    def fail(self, message: str, error_type: str = "InvalidImage") -> None:
        self.status, self.error_type, self.error = "error", error_type, message


def check_max_side(max_side: Any, func: str) -> int | None:
    """``max_side`` as an int in [64, 5000] or None (no downsizing)."""
    if max_side is None:
        return None
    if isinstance(max_side, bool) or not isinstance(max_side, int | np.integer):
        raise InvalidParameterError(
            f"The 'max_side' parameter of {func}() must be an int in [{MIN_SIDE}, {MAX_SIDE}] "
            f"or None (no downsizing). Got {max_side!r}."
        )
    if not MIN_SIDE <= int(max_side) <= MAX_SIDE:
        raise InvalidParameterError(
            f"The 'max_side' parameter of {func}() must be in [{MIN_SIDE}, {MAX_SIDE}] (deAPI's "
            f"limits per side). Got {max_side}."
        )
    return int(max_side)


def _is_url(value: Any) -> bool:
    return isinstance(value, str) and value.strip().lower().startswith(("http://", "https://"))


def _is_folder(value: Any) -> bool:
    return isinstance(value, str | os.PathLike) and not _is_url(value) and os.path.isdir(value)


def image_values(
    data: Any,
    column: Any = None,
    *,
    func: str,
    pattern: str = "*",
    recursive: bool = True,
    extensions: Any = None,
    include_hidden: bool = False,
) -> tuple[list[Any], pd.Index, dict[str, Any]]:
    """The rows of ``data`` (values, index, facts about a folder walk).

    A folder is walked (files sorted by their path relative to it, which is each row's
    ``source``); a single path, URL, bytes, PIL image or image array is one row; a list, a
    Series or a DataFrame column gives one row per element, keeping a Series' index.
    """
    from PIL import Image  # lazy

    if column is None and _is_folder(data):
        root = os.fspath(data)
        exts = _files.check_extensions(extensions, default=IMAGE_EXTENSIONS)
        unlisted: list[OSError] = []
        found, ignored = _files.walk_folder(
            root, pattern=pattern, recursive=recursive, extensions=exts,
            include_hidden=include_hidden, unlisted=unlisted,
        )  # fmt: skip
        meta = {"source": "folder", "root": root, "ignored": ignored,
                "unlisted": [str(e.filename) for e in unlisted]}  # fmt: skip
        values = [_FolderFile(rel, full) for rel, full in found]
        return values, pd.RangeIndex(len(values)), meta
    if isinstance(data, str | os.PathLike) and column is None and not _is_url(data):
        path = os.fspath(data)
        if not os.path.exists(path):
            raise InvalidParameterError(
                f"{func}(): {path!r} is neither a folder, an image file nor a URL. Pass a folder, "
                "a file path, bytes, a PIL image, an array, a URL, or a list/column of them."
            )
    single = (str, bytes, bytearray, memoryview, os.PathLike, Image.Image)
    if column is None and (
        isinstance(data, single) or (isinstance(data, np.ndarray) and data.ndim in (2, 3)
                                     and data.dtype != object)
    ):  # fmt: skip
        return [data], pd.RangeIndex(1), {"source": "values"}
    if isinstance(data, np.ndarray) and data.dtype != object and column is None:
        raise InvalidParameterError(
            f"{func}() takes an image array of shape (height, width) or (height, width, 1|3|4), "
            f"or a list of them; got an array of shape {data.shape}."
        )
    series = as_series(data, column, func=func, what="images", default_column="image")
    return series.tolist(), series.index, {"source": "values"}


@dataclasses.dataclass(frozen=True)
class _FolderFile:
    rel: str
    full: str


def _label(value: Any) -> str:
    if isinstance(value, _FolderFile):
        return value.rel
    if _is_url(value):
        return str(value).strip()
    if isinstance(value, str | os.PathLike):
        return os.fspath(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return f"<bytes {len(value):,}>"
    if isinstance(value, np.ndarray):
        return f"<array {'x'.join(map(str, value.shape))}>"
    size = getattr(value, "size", None)
    if isinstance(size, tuple) and len(size) == 2:
        return f"<PIL {size[0]}x{size[1]}>"
    return f"<{type(value).__name__}>"


def target_size(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    """The size sent for a ``width`` x ``height`` image: scaled down so that its longer side
    is at most ``max_side`` (aspect ratio kept, never below 64 px per side), never enlarged.

    >>> target_size(4000, 3000, 2048), target_size(800, 600, 2048), target_size(9000, 100, 2048)
    ((2048, 1536), (800, 600), (5000, 64))
    """
    longer, shorter = max(width, height), min(width, height)
    if max_side is None or longer <= max_side:
        return width, height
    scale = max(max_side / longer, MIN_SIDE / shorter if shorter >= MIN_SIDE else 1.0)
    new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    if max(new_w, new_h) > MAX_SIDE:  # a thin strip: keep 64 px across, cap the length
        new_w, new_h = (MAX_SIDE, MIN_SIDE) if width > height else (MIN_SIDE, MAX_SIDE)
    return new_w, new_h


def _read(value: Any) -> tuple[str | None, bytes]:
    """(path or None, the input's bytes); raises OSError / InvalidParameterError."""
    from PIL import Image  # lazy

    if isinstance(value, _FolderFile):
        return value.full, _files.read_file(value.full, max_bytes=MAX_READ_BYTES)
    if isinstance(value, str | os.PathLike):
        path = os.path.expanduser(os.fspath(value))
        return path, _files.read_file(path, max_bytes=MAX_READ_BYTES)
    if isinstance(value, bytes | bytearray | memoryview):
        return None, bytes(value)
    if isinstance(value, np.ndarray | Image.Image):
        im = open_image(value)
        im = im if im.mode in ("RGB", "RGBA", "L", "LA") else im.convert("RGBA")
        buf = io.BytesIO()
        im.save(buf, "PNG")
        return None, buf.getvalue()
    raise InvalidParameterError(
        f"an image must be a file path, a URL, bytes, a PIL image or a numpy array; got "
        f"{type(value).__name__}."
    )


def _inspect(item: ImageInput, value: Any, max_side: int | None) -> None:
    """Read, check and size one row (in a worker thread). Failures stay on the row."""
    from PIL import Image, UnidentifiedImageError  # lazy

    try:
        if item.data is None:
            item.path, item.data = _read(value)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        item.fail(f"{item.source}: cannot read the file ({reason}).", "FileError")
        return
    except InvalidParameterError as exc:
        item.fail(f"{item.source}: {exc}")
        return
    data = item.data
    if not data:
        item.fail(f"{item.source}: the image is empty (0 bytes).")
        return
    try:
        with Image.open(io.BytesIO(data)) as im:
            item.fmt, (item.width, item.height) = im.format, im.size
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:  # fmt: skip
        why = "" if isinstance(exc, UnidentifiedImageError) else f": {exc}"
        item.fail(
            f"{item.source}: not a readable image ({len(data):,} bytes starting with "
            f"{data[:8]!r}{why}). deAPI takes JPG, PNG, GIF, BMP or WebP (other formats Pillow "
            "reads are converted)."
        )
        return
    item.digest = hashlib.blake2b(data, digest_size=16).hexdigest()
    w, h = item.width, item.height
    if min(w, h) < MIN_SIDE:
        item.fail(
            f"{item.source}: the image is {w}x{h} px; deAPI needs {MIN_SIDE}-{MAX_SIDE} px per "
            f"side and deapi_ds never enlarges an image. Pad or enlarge it first."
        )
        return
    up_w, up_h = target_size(w, h, max_side)
    if max(up_w, up_h) > MAX_SIDE:
        item.fail(
            f"{item.source}: the image is {w}x{h} px; deAPI takes at most {MAX_SIDE} px per side. "
            f"Pass max_side={MAX_SIDE} (or less) to downsize it before the upload."
        )
        return
    item.upload_width, item.upload_height = up_w, up_h
    item.convert = item.fmt not in UPLOAD_FORMATS or (up_w, up_h) != (w, h)
    if not item.convert and len(data) > MAX_IMAGE_BYTES:
        item.fail(
            f"{item.source}: the file is {len(data) / 2**20:.1f} MB; deAPI takes images up to "
            f"10 MB. Pass a smaller max_side= (it is re-encoded when downsized) or save it as "
            "JPEG first."
        )
        return
    if item.path is not None:
        item.data = None  # read again when it is sent: a folder is never held in memory


async def prepare_images(
    values: Sequence[Any],
    index: pd.Index,
    *,
    max_side: int | None,
    download: Callable[[str], Any] | None,
) -> list[ImageInput]:
    """One checked :class:`ImageInput` per value (URLs downloaded with ``download``)."""
    items: list[ImageInput] = []
    for label, value in zip(index, values, strict=True):
        item = ImageInput(label=label, source=None if _missing(value) else _label(value))
        if isinstance(value, _FolderFile):
            item.image = value.full
        elif isinstance(value, str | os.PathLike) and not _is_url(value):
            item.image = os.fspath(value)
        elif isinstance(value, bytes | bytearray | memoryview):
            item.image = bytes(value)
        if _missing(value):
            item.status, item.error_type, item.error = "empty", None, "no image in this row"
        elif _is_url(value):
            item.url = str(value).strip()
        items.append(item)
    limiter = anyio.CapacityLimiter(8)

    async def one(item: ImageInput, value: Any) -> None:
        async with limiter:
            if item.url is not None:
                if download is None:
                    item.fail(f"{item.source}: URLs need a client to download them.")
                    return
                try:
                    item.data = await download(item.url)
                except Exception as exc:  # noqa: BLE001 - the row's error, the others go on
                    item.fail(f"{item.source}: the download failed ({exc}).", type(exc).__name__)
                    return
                item.image = item.data
            await anyio.to_thread.run_sync(_inspect, item, value, max_side)
            if item.image is None and item.data is not None and item.status == "pending":
                item.image = item.data

    async with anyio.create_task_group() as tg:
        for item, value in zip(items, values, strict=True):
            if item.status == "pending":
                tg.start_soon(one, item, value)
    return items


def upload_bytes(item: ImageInput) -> tuple[bytes, str]:
    """The bytes sent for ``item`` and their file name: the input as it is when deAPI takes
    it, else downsized (Lanczos) and/or converted (JPEG stays JPEG, the rest PNG)."""
    from PIL import Image  # lazy

    data = item.data
    if data is None:
        data = _files.read_file(item.path, max_bytes=MAX_READ_BYTES)  # type: ignore[arg-type]
    stem = Path(item.source).stem if item.path or item.url else "image"
    stem = "".join(ch for ch in stem if ch.isalnum() or ch in "-_")[:60] or "image"
    if not item.convert:
        return data, f"{stem}.{UPLOAD_FORMATS[item.fmt or 'PNG']}"
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        size = (item.upload_width, item.upload_height)
        jpeg = item.fmt == "JPEG" and im.mode in ("RGB", "L")
        if not jpeg and im.mode not in ("RGB", "RGBA", "L", "LA"):
            im = im.convert("RGBA" if "transparency" in im.info or im.mode == "P" else "RGB")
        if im.size != size:
            im = im.resize(size, Image.Resampling.LANCZOS)
        buf = io.BytesIO()
        if jpeg:
            im.save(buf, "JPEG", quality=92)
        else:
            im.save(buf, "PNG")
    out = buf.getvalue()
    if len(out) > MAX_IMAGE_BYTES:
        raise ValueError(
            f"{item.source}: downsized to {size[0]}x{size[1]} it is still "
            f"{len(out) / 2**20:.1f} MB; deAPI takes 10 MB. Pass a smaller max_side=."
        )
    return out, f"{stem}.{'jpg' if jpeg else 'png'}"


def resolve_native(client: Any) -> AsyncNativeClient:
    """The native client for ``client`` (None: the configuration's shared one; a gateway
    Client/AsyncClient: the shared native client of its settings)."""
    if client is None:
        return shared_native_client()
    if isinstance(client, AsyncNativeClient):
        return client
    if isinstance(client, NativeClient):
        return client.aclient
    return shared_native_client(resolve_client(client).settings)


# --------------------------------------------------------------------------------------------
# the task


@dataclasses.dataclass
class RowOutcome:
    """What became of one input row: ``status`` (ok, cached, empty, error, quota), the unit's
    ``value`` (the task's cache columns) or ``error_type``/``error``, and the ``job_id``."""

    status: str
    value: dict[str, Any] | None
    error_type: str | None
    error: str | None
    job_id: str | None = None


class ImageJobTask(Task):
    """One native image job per distinct image on the pipeline (see the module docstring).

    A unit is a group of rows with the same content and options (sent once). Subclasses set
    ``name``/``endpoint``/``func``, ``value_schema`` (the cache columns of a result) and
    implement :meth:`request` and :meth:`read` (a finished job → a dict of those columns).
    """

    cache_columns = None
    unit_name = "image"
    value_schema: pa.Schema = pa.schema([])

    def __init__(
        self,
        items: list[ImageInput],
        *,
        client: AsyncNativeClient,
        model: str,
        params: Mapping[str, Any],
        runner: JobRunner | None = None,
    ) -> None:
        self.client = client
        self.model = model
        self.params = dict(params)
        self.runner = runner or JobRunner(NativeBackend(client), poll=POLL_SECONDS)
        self.concurrency = 64  # jobs wait on the server; the engine keeps the rate limits
        groups: dict[str, list[ImageInput]] = {}
        for item in items:
            if item.status != "pending":
                continue
            size = f"{item.upload_width}x{item.upload_height}"
            item.key = make_key(self.name, model, {**self.params, "size": size}, item.digest or "")
            groups.setdefault(item.key, []).append(item)
        self.groups = list(groups.values())
        self.values: dict[int, dict[str, Any]] = {}
        self.job_ids: dict[int, str] = {}
        self.resume: dict[int, str] = {}
        self.stats = {"jobs": 0, "resumed": 0}
        self.schema = pa.schema(
            [("key", pa.string()), ("job_id", pa.string()), ("done", pa.bool_()),
             *self.value_schema]
        )  # fmt: skip

    def rows(self, items: list[ImageInput], outcome: Any) -> list[tuple[ImageInput, RowOutcome]]:
        """Each input row with its outcome after :func:`~deapi_ds._pipeline.run_task`: the
        result of its unit (shared by duplicates), or why it has none."""
        unit_of = {g[0].key: uid for uid, g in enumerate(self.groups)}
        out = []
        for item in items:
            uid = unit_of.get(item.key) if item.key else None
            if uid is None:  # never sent: empty, or refused before spending
                out.append((item, RowOutcome(item.status, None, item.error_type, item.error)))
                continue
            row = RowOutcome("error", None, "Cancelled", "not sent: the run stopped",
                             self.job_ids.get(uid))  # fmt: skip
            if uid in self.values:
                row.value = self.values[uid]
                row.status = "cached" if int(outcome.status[uid]) == CACHED else "ok"
                row.error_type = row.error = None
            elif uid in outcome.errors:
                row.error_type, row.error = outcome.error_of(uid)
                row.status = "quota" if row.error_type == "QuotaExceededError" else "error"
            out.append((item, row))
        return out

    # what a subclass supplies ------------------------------------------------------------------
    def request(self, data: bytes, filename: str) -> NativeRequest:
        raise NotImplementedError

    def read(self, outcome: JobOutcome, item: ImageInput) -> dict[str, Any]:
        raise NotImplementedError

    def done_keys(self, store: Any) -> set[str]:
        """The keys whose result is in ``store`` (a recorded job id alone does not count)."""
        keys = self.keys()
        if not keys:
            return set()
        table = store.lookup(self.name, self.model, keys, columns=["key", "done"])
        pairs = zip(table["key"].to_pylist(), table["done"].to_pylist(), strict=True)
        return {key for key, done in pairs if done}

    # the pipeline's hooks ----------------------------------------------------------------------
    def keys(self) -> list[str]:
        return [g[0].key for g in self.groups]  # type: ignore[misc]

    def from_cache(self, ids: np.ndarray, table: pa.Table) -> np.ndarray:
        accepted = []
        for uid, row in zip(ids.tolist(), table.to_pylist(), strict=True):
            if not row.get("done"):  # only the job id so far: poll it instead of paying again
                if row.get("job_id"):
                    self.resume[uid] = row["job_id"]
                continue
            self.values[uid] = {name: row.get(name) for name in self.value_schema.names}
            self.job_ids[uid] = row.get("job_id")
            accepted.append(uid)
        return np.asarray(accepted, dtype=np.int64)

    async def call(self, ids: np.ndarray) -> Answer:
        uid = int(ids[0])
        lead = self.groups[uid][0]
        data, filename = await anyio.to_thread.run_sync(upload_bytes, lead)
        key = lead.key

        async def record_id(_: Any, job_id: str) -> None:
            self.stats["jobs"] += 1
            self.job_ids[uid] = job_id
            await self.writer.write(self._table([(key, job_id, None)]))

        job_id = self.resume.get(uid)
        if job_id is not None:
            self.stats["resumed"] += 1
        outcome = await self.runner.run(
            JobItem(key, self.request(data, filename), job_id=job_id), on_accepted=record_id
        )
        if outcome.job_id:
            self.job_ids[uid] = outcome.job_id
        outcome.raise_for_failure(f"The {self.func} job failed.")
        return Answer(ids, [self.read(outcome, lead)])

    def accept(self, ids: np.ndarray, value: list[dict[str, Any]]) -> None:
        for uid, rec in zip(ids.tolist(), value, strict=True):
            self.values[uid] = rec

    def to_cache(self, ids: np.ndarray, value: Any, keys: Sequence[str]) -> pa.Table:
        return self._table(
            [(k, self.job_ids.get(uid), rec) for uid, k, rec in zip(ids.tolist(), keys, value,
                                                                     strict=True)]
        )  # fmt: skip

    def _table(self, rows: list[tuple[str, str | None, dict[str, Any] | None]]) -> pa.Table:
        out = []
        for key, job_id, rec in rows:
            row: dict[str, Any] = {"key": key, "job_id": job_id, "done": rec is not None}
            for name in self.value_schema.names:
                row[name] = None if rec is None else rec.get(name)
            out.append(row)
        return pa.Table.from_pylist(out, schema=self.schema)


def json_text(value: Any) -> str | None:
    """``value`` as compact JSON text (None stays None)."""
    return None if value is None else json.dumps(value, sort_keys=True, default=str)
