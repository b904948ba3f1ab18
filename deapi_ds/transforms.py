"""Image transforms on deAPI's native API: :func:`remove_background` and :func:`upscale`.

``POST /api/v2/images/background-removals`` (model ``Ben2``: a PNG with a transparent
background) and ``POST /api/v2/images/upscales`` (``RealESRGAN_x4``: 4x larger), each one
small task on the shared image-job layer (:mod:`deapi_ds._image_jobs`): the same inputs as
:func:`deapi_ds.ocr` (folders, paths, bytes, PIL images, arrays, URLs, columns), the same
checks before spending, one job per distinct image with its id cached at once.

Both return an :class:`~deapi_ds.ImageResult` (grids, ``.plot()``, ``.save()``, row
selections) with one row per input that keeps the input's identity: ``input`` (its name) and
``input_image`` (the input itself), so :func:`before_after` shows each input beside its result.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping
from typing import Any

import pandas as pd
import pyarrow as pa

from ._cache import USE_DEFAULT, resolve_cache
from ._estimate import Estimate
from ._exceptions import InvalidParameterError, ResponseValidationError
from ._image_jobs import (
    ImageInput,
    ImageJobTask,
    check_max_side,
    image_values,
    prepare_images,
    resolve_native,
)
from ._jobs import JobOutcome
from ._native import NativeRequest, background_removal_request, upscale_request
from ._pipeline import Progress, check_outcome, quota_fields, run_task
from ._profiles import get_profile
from ._result import STATUS_DTYPE
from ._tasks import syncify
from .images import ImageResult

__all__ = [
    "aestimate_remove_background",
    "aestimate_upscale",
    "aremove_background",
    "aupscale",
    "before_after",
    "estimate_remove_background",
    "estimate_upscale",
    "remove_background",
    "upscale",
]

_COLUMNS = ["row", "prompt", "input", "model", "size", "seed", "n_index", "image", "width",
            "height", "status", "error_type", "error", "cached", "input_image", "input_width",
            "input_height", "job_id"]  # fmt: skip


class _TransformTask(ImageJobTask):
    """One transform job per distinct image; the result is the PNG the job produced."""

    value_schema = pa.schema(
        [("image", pa.binary()), ("width", pa.int64()), ("height", pa.int64())]
    )

    def __init__(self, items: list[ImageInput], *, kind: str, **kwargs: Any) -> None:
        self.name = self.endpoint = f"v2.images.{kind}"
        self.func = _FUNCS[kind]
        self.kind = kind
        super().__init__(items, **kwargs)

    def request(self, data: bytes, filename: str) -> NativeRequest:
        build = (
            background_removal_request if self.kind == "background-removals" else upscale_request
        )
        return build(data, filename=filename, model=self.model)

    def read(self, outcome: JobOutcome, item: ImageInput) -> dict[str, Any]:
        from PIL import Image, UnidentifiedImageError  # lazy

        data = outcome.content
        if not data:
            raise ResponseValidationError(
                f"The {self.func} job {outcome.job_id} finished without an image file."
            )
        try:
            with Image.open(io.BytesIO(data)) as im:
                width, height = im.size
        except (UnidentifiedImageError, OSError) as exc:
            raise ResponseValidationError(
                f"The {self.func} job {outcome.job_id} returned {len(data):,} bytes that are not "
                f"an image ({data[:8]!r}): {exc}"
            ) from None
        return {"image": data, "width": width, "height": height}


_FUNCS = {"background-removals": "remove_background", "upscales": "upscale"}
_MODELS = {"background-removals": "Ben2", "upscales": "RealESRGAN_x4"}


async def _items(
    data: Any, column: Any, *, func: str, max_side: Any, client: Any, walk: Mapping[str, Any]
) -> tuple[list[ImageInput], pd.Index, dict[str, Any], Any, int | None]:
    side = check_max_side(max_side, func)
    native = resolve_native(client)
    values, index, meta = image_values(data, column, func=func, **walk)
    items = await prepare_images(values, index, max_side=side, download=native.download)
    return items, index, meta, native, side


async def _transform(
    kind: str,
    data: Any,
    column: Any,
    *,
    model: str,
    max_side: Any,
    cache: Any,
    progress: bool | None,
    client: Any,
    walk: Mapping[str, Any],
) -> ImageResult:
    func = _FUNCS[kind]
    if not isinstance(model, str) or not model:
        raise InvalidParameterError(f"The 'model' parameter of {func}() must be a model slug.")
    items, index, meta, native, side = await _items(
        data, column, func=func, max_side=max_side, client=client, walk=walk
    )
    task = _TransformTask(items, kind=kind, client=native, model=model, params={})
    store = resolve_cache(cache, settings=native.settings)
    show = native.settings.progress if progress is None else bool(progress)
    bar = Progress(len(task.groups), desc=f"{func} {model}", unit="image", show=show,
                   engine=native.engine)  # fmt: skip
    try:
        outcome = await run_task(task, store=store, aclient=native, progress=bar)
    finally:
        bar.close(complete=False)
    meta = {**meta, "model": model, "max_side": side, "requests": outcome.requests, **task.stats}
    return check_outcome(_assemble(items, index, task, outcome, model, meta), func=func)


def _input_name(item: ImageInput, folder: bool) -> str | None:
    """What names an input: its path in the folder walked, a file's name, or its label."""
    if item.path is not None and not folder:
        return os.path.basename(item.path)
    return item.source


def _assemble(
    items: list[ImageInput], index: pd.Index, task: _TransformTask, outcome: Any, model: str,
    meta: dict[str, Any],
) -> ImageResult:  # fmt: skip
    folder = meta.get("source") == "folder"
    records = []
    for item, row in task.rows(items, outcome):
        value = row.value or {}
        width, height = value.get("width"), value.get("height")
        rec: dict[str, Any] = {
            "row": item.label, "prompt": None, "input": _input_name(item, folder), "model": model,
            "size": f"{width}x{height}" if row.value else None, "seed": None, "n_index": 0,
            "image": value.get("image"), "width": width, "height": height, "status": row.status,
            "error_type": row.error_type, "error": row.error, "cached": row.status == "cached",
            "input_image": item.image, "input_width": item.width, "input_height": item.height,
            "job_id": row.job_id,
        }  # fmt: skip
        records.append(rec)
    frame = pd.DataFrame.from_records(records, columns=_COLUMNS)
    frame.index = index
    frame = frame.astype(
        {"prompt": STATUS_DTYPE, "input": STATUS_DTYPE, "model": STATUS_DTYPE,
         "size": STATUS_DTYPE, "seed": "Int64", "n_index": "Int64", "width": "Int64",
         "height": "Int64", "status": STATUS_DTYPE, "error_type": STATUS_DTYPE,
         "error": STATUS_DTYPE, "cached": "bool", "input_width": "Int64",
         "input_height": "Int64", "job_id": STATUS_DTYPE}
    )  # fmt: skip
    frame["image"] = frame["image"].astype(object)
    frame["input_image"] = frame["input_image"].astype(object)
    return ImageResult(frame, meta=meta)


_WALK_DOC = """``data`` takes what :func:`deapi_ds.ocr` takes: a folder (walked with ``pattern``,
    ``recursive``, ``extensions``, ``include_hidden``), paths, URLs, bytes, PIL images, arrays,
    a list, a Series, or a DataFrame with ``column``."""


async def aremove_background(
    data: Any,
    column: Any = None,
    *,
    model: str = "Ben2",
    max_side: int | None = None,
    pattern: str = "*",
    recursive: bool = True,
    extensions: Any = None,
    include_hidden: bool = False,
    cache: Any = USE_DEFAULT,
    progress: bool | None = None,
    client: Any = None,
) -> ImageResult:
    """Remove the background of each image: an :class:`~deapi_ds.ImageResult`, one row per
    input, whose ``image`` is a PNG with a transparent background.

    {walk} Inputs are checked before anything is paid for (10 MB, 64-5000 px per side, formats
    deAPI takes; others converted to PNG); ``max_side`` downsizes larger images first (never
    enlarges; None: as they are). ``input`` names each input and ``input_image`` holds it, so
    :func:`before_after` shows them side by side. Cached by image content and model; job ids
    are cached at once, so a rerun after a crash pays for nothing twice. A failed image is a
    row with ``status="error"``.

    >>> cut = await deapi_ds.aremove_background("products/")     # doctest: +SKIP
    >>> deapi_ds.before_after(cut)                               # doctest: +SKIP
    """
    walk = {"pattern": pattern, "recursive": recursive, "extensions": extensions,
            "include_hidden": include_hidden}  # fmt: skip
    return await _transform(
        "background-removals", data, column, model=model, max_side=max_side, cache=cache,
        progress=progress, client=client, walk=walk,
    )  # fmt: skip


async def aupscale(
    data: Any,
    column: Any = None,
    *,
    model: str = "RealESRGAN_x4",
    max_side: int | None = None,
    pattern: str = "*",
    recursive: bool = True,
    extensions: Any = None,
    include_hidden: bool = False,
    cache: Any = USE_DEFAULT,
    progress: bool | None = None,
    client: Any = None,
) -> ImageResult:
    """Enlarge each image (4x with ``RealESRGAN_x4``): an :class:`~deapi_ds.ImageResult`, one
    row per input.

    {walk} Checks, ``max_side``, ``input``/``input_image``, caching and error rows as in
    :func:`remove_background`.

    >>> big = await deapi_ds.aupscale(["logo.png", "icon.png"])   # doctest: +SKIP
    >>> big[["input", "input_width", "width"]]                     # doctest: +SKIP
    """
    walk = {"pattern": pattern, "recursive": recursive, "extensions": extensions,
            "include_hidden": include_hidden}  # fmt: skip
    return await _transform(
        "upscales", data, column, model=model, max_side=max_side, cache=cache,
        progress=progress, client=client, walk=walk,
    )  # fmt: skip


for _fn in (aremove_background, aupscale):
    _fn.__doc__ = (_fn.__doc__ or "").replace("{walk}", _WALK_DOC)

remove_background = syncify(aremove_background)
upscale = syncify(aupscale)


def before_after(result: ImageResult, *, thumb: int = 200) -> Any:
    """Each input beside its result: a two-column :class:`~deapi_ds.images.ImageGrid`
    (``before`` | ``after``, captioned with the input's name), for results of
    :func:`remove_background` and :func:`upscale` (or any ImageResult with ``input_image``).

    For a matplotlib figure use ``deapi_ds.image_grid`` on the long form:
    ``before_after(res).frame`` has one row per image with a ``stage`` column, so
    ``deapi_ds.image_grid(before_after(res).frame, row="input", col="stage")`` draws it.
    """
    frame = getattr(result, "frame", result)
    if "input_image" not in frame.columns:
        raise InvalidParameterError(
            "before_after() needs a result with an 'input_image' column (remove_background(), "
            f"upscale()). Available columns: {list(frame.columns)}."
        )
    rows = []
    for rec in frame.to_dict("records"):
        before = rec.get("input_image")
        if isinstance(before, str):
            try:
                with open(before, "rb") as fh:
                    before = fh.read()
            except OSError:
                before = None
        name = rec.get("input")
        for stage, image in (("before", before), ("after", rec.get("image"))):
            rows.append({**rec, "image": image, "stage": stage, "prompt": f"{name} · {stage}",
                         "status": rec["status"] if stage == "after" else "ok"})  # fmt: skip
    long = pd.DataFrame.from_records(rows, columns=[*frame.columns, "stage"])
    long = long.astype({"prompt": STATUS_DTYPE, "status": STATUS_DTYPE, "stage": STATUS_DTYPE})
    long["image"] = long["image"].astype(object)
    pairs = ImageResult(long, meta=getattr(result, "meta", {}))
    return _Pairs(pairs, thumb)


class _Pairs:
    """What :func:`before_after` returns: shows as a two-column grid; ``.frame`` the long
    form, ``.plot()`` a matplotlib Figure (rows = inputs, columns = before/after)."""

    def __init__(self, pairs: ImageResult, thumb: int) -> None:
        self.result = pairs
        self.frame = pairs.frame
        self.thumb = thumb

    def __repr__(self) -> str:
        return f"<before/after of {len(self.frame) // 2} images>"

    def grid(self) -> Any:
        return self.result.grid(col_wrap=2, thumb=self.thumb, label="{input} · {stage}")

    def plot(self, **kwargs: Any) -> Any:
        return self.result.plot(row="input", col="stage", **kwargs)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        return {"text/plain": repr(self), "text/html": self.grid().html}


# --------------------------------------------------------------------------------------------
# estimates


async def _estimate(kind: str, data: Any, column: Any, *, model: str, max_side: Any,
                    cache: Any, client: Any, walk: Mapping[str, Any]) -> Estimate:  # fmt: skip
    func = _FUNCS[kind]
    items, index, _, native, side = await _items(
        data, column, func=f"estimate_{func}", max_side=max_side, client=client, walk=walk
    )
    task = _TransformTask(items, kind=kind, client=native, model=model, params={})
    keys = task.keys()
    store = resolve_cache(cache, settings=native.settings)
    done = task.done_keys(store)
    todo = [k for k in keys if k not in done]
    pixels = sum(g[0].pixels or 0 for g in task.groups if g[0].key not in done)
    details = pd.DataFrame(
        {"source": pd.array([it.source for it in items], dtype=STATUS_DTYPE),
         "upload_width": pd.array([it.upload_width for it in items], dtype="Int64"),
         "upload_height": pd.array([it.upload_height for it in items], dtype="Int64"),
         "status": pd.array(["cached" if it.key in done else it.status for it in items],
                            dtype=STATUS_DTYPE),
         "error": pd.array([it.error for it in items], dtype=STATUS_DTYPE)},
        index=index,
    )  # fmt: skip
    settings = native.settings
    profile = get_profile(settings)
    endpoint = task.endpoint
    return Estimate(
        func=func, model=model, rows=len(items), unique=len(keys), cached=len(keys) - len(todo),
        empty=sum(it.status == "empty" for it in items),
        errors=sum(it.status == "error" for it in items), requests=len(todo),
        quantity=len(todo), unit="images", cost_usd=None,
        price_note="deAPI publishes no rate for this task: ask its /price endpoint for a quote",
        rpm=settings.rpm_for(endpoint) or profile.rpm_for(endpoint, native.tier),
        concurrency=settings.max_concurrency, details=details,
        extra={"pixels": pixels, "max_side": side}, **quota_fields(settings, endpoint),
    )  # fmt: skip


async def aestimate_remove_background(
    data: Any, column: Any = None, *, model: str = "Ben2", max_side: int | None = None,
    pattern: str = "*", recursive: bool = True, extensions: Any = None,
    include_hidden: bool = False, cache: Any = USE_DEFAULT, client: Any = None,
) -> Estimate:  # fmt: skip
    """What :func:`remove_background` with the same arguments would send; nothing is sent.
    deAPI publishes no rate for background removal, so the cost is unknown (None)."""
    walk = {"pattern": pattern, "recursive": recursive, "extensions": extensions,
            "include_hidden": include_hidden}  # fmt: skip
    return await _estimate("background-removals", data, column, model=model,
                           max_side=max_side, cache=cache, client=client, walk=walk)  # fmt: skip


async def aestimate_upscale(
    data: Any, column: Any = None, *, model: str = "RealESRGAN_x4", max_side: int | None = None,
    pattern: str = "*", recursive: bool = True, extensions: Any = None,
    include_hidden: bool = False, cache: Any = USE_DEFAULT, client: Any = None,
) -> Estimate:  # fmt: skip
    """What :func:`upscale` with the same arguments would send; nothing is sent. deAPI
    publishes no rate for upscaling, so the cost is unknown (None)."""
    walk = {"pattern": pattern, "recursive": recursive, "extensions": extensions,
            "include_hidden": include_hidden}  # fmt: skip
    return await _estimate("upscales", data, column, model=model, max_side=max_side,
                           cache=cache, client=client, walk=walk)  # fmt: skip


estimate_remove_background = syncify(aestimate_remove_background)
estimate_upscale = syncify(aestimate_upscale)
