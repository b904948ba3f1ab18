"""Text from images: :func:`ocr` reads scans, screenshots and photos of documents.

deAPI's native ``POST /api/v2/images/ocr`` (model ``Nanonets_Ocr_S_F16``, output ``text`` or
``json``, priced by input pixels: deapi-reference.md §2.4, §5) on the task pipeline: a unit is
one distinct image (its content, the pixels sent and the options), sent once as a job whose id
is cached the moment it is accepted; a rerun pays for nothing already read, and a rerun after a
crash resumes the jobs in flight instead of paying for them again (:mod:`deapi_ds._image_jobs`).

Input checks, ``max_side`` downsizing and folder walks are shared with the image transforms;
the result is an :class:`OCRResult` with one row per input, always.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from ._cache import USE_DEFAULT, resolve_cache
from ._estimate import Estimate
from ._exceptions import InvalidParameterError
from ._image_jobs import (
    ImageInput,
    ImageJobTask,
    check_max_side,
    image_values,
    json_text,
    prepare_images,
    resolve_native,
)
from ._jobs import JobOutcome
from ._native import NativeRequest, ocr_request, result_json
from ._pipeline import Progress, check_outcome, is_missing, quota_fields, run_task
from ._profiles import get_profile
from ._result import STATUS_DTYPE, ResultFrame, error_columns, frame_html, write_media
from ._tasks import syncify

__all__ = [
    "DEFAULT_MAX_SIDE",
    "OCRResult",
    "aestimate_ocr",
    "aocr",
    "estimate_ocr",
    "ocr",
    "ocr_price",
]

TASK = "v2.images.ocr"
MODEL = "Nanonets_Ocr_S_F16"
#: The longer side an image is downsized to before OCR (see the README: "Pay for pixels that
#: matter"): a 300 dpi A4 scan (2480x3508) goes out as 1448x2048, ~175 dpi, where 10-pt text
#: is still ~24 px tall, for a third of the price; screenshots and photos up to 2048 px are
#: sent as they are.
DEFAULT_MAX_SIDE = 2048
#: deAPI's OCR reference price: a base per image plus a rate per input pixel, fitted to the
#: published points (deapi-reference.md §5: 256² $0.00101, 512² $0.00266, 1024² $0.00928,
#: 1920x1080 $0.01791, 4096² $0.14168).
OCR_BASE_USD, OCR_PIXEL_USD = 0.000453, 8.418e-9

_COLUMNS = ["source", "image", "text", "language", "width", "height", "upload_width",
            "upload_height", "pixels", "status", "error_type", "error", "cached", "job_id"]  # fmt: skip


def ocr_price(pixels: float, images: int = 1) -> float:
    """Reference price in USD of OCR on ``images`` images with ``pixels`` pixels in all.

    >>> round(ocr_price(1024 * 1024), 5)
    0.00928
    """
    return images * OCR_BASE_USD + pixels * OCR_PIXEL_USD


# --------------------------------------------------------------------------------------------
# the result


class OCRResult(ResultFrame):
    """Text read from images: one row per input, always, in the input's order and index.

    Columns: ``source`` (the path relative to the folder, the file, the URL, or ``<bytes>``),
    ``image`` (the input: its path or its bytes; shown as a thumbnail in notebooks), ``text``,
    ``language`` (the server's, else the hint given), ``width``/``height`` (the input's),
    ``upload_width``/``upload_height`` and ``pixels`` (what was sent and billed, after
    ``max_side``), ``status`` (``ok``, ``cached``, ``empty``, ``error``, ``quota``),
    ``error_type``, ``error``, ``cached``, ``job_id``. With ``format="json"``, :attr:`blocks`
    holds the structured output (one row per block or line the server returned: ``row`` (the
    input's index label), ``block``, ``text``, ``x0``/``y0``/``x1``/``y1`` when it gave boxes).

    :meth:`hits` shows search results over these rows with the image beside the text.
    """

    media = {"image": "image"}

    def __init__(
        self,
        frame: pd.DataFrame,
        *,
        blocks: pd.DataFrame | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(frame, meta=meta)
        self.blocks = _empty_blocks() if blocks is None else blocks

    def _take(self, positions: Any) -> OCRResult:
        new = self._subset(positions)
        if len(self.blocks):  # the blocks of the rows kept
            new.blocks = self.blocks[self.blocks["row"].isin(new.frame.index)]
        return new

    def save(self, folder: str | os.PathLike[str], *, overwrite: bool = False) -> pd.Series:
        """Write each row's text to ``folder`` as a UTF-8 ``.txt`` file; return the paths.

        Names are ``<row number>_<source name>.txt`` (letters and digits only), so they sort
        in the frame's order and never collide; rows without text get NA. A file that already
        holds the same text is kept; one holding something else is replaced only with
        ``overwrite=True`` (else FileExistsError). Returns a string Series named ``path``,
        indexed like this result.

        >>> scans.save("texts").iloc[0]  # doctest: +SKIP
        'texts/000_invoice-2041-png.txt'
        """
        from .images import safe_filename  # lazy

        root = Path(os.fspath(folder)).expanduser()
        root.mkdir(parents=True, exist_ok=True)
        width = max(3, len(str(max(len(self.frame) - 1, 0))))
        paths: list[Any] = []
        for i, (source, text, status) in enumerate(
            zip(self.frame["source"], self.frame["text"], self.frame["status"], strict=True)
        ):
            if status not in ("ok", "cached") or is_missing(text):
                paths.append(pd.NA)
                continue
            path = root / f"{i:0{width}d}_{safe_filename(source, 60, default='image')}.txt"
            write_media(path, str(text).encode("utf-8"), overwrite=overwrite)
            paths.append(str(path))
        return pd.Series(paths, index=self.frame.index, name="path", dtype=STATUS_DTYPE)

    @property
    def texts(self) -> pd.Series:
        """The ``text`` column (NA where nothing was read)."""
        return self.frame["text"]

    def hits(self, found: pd.DataFrame, *, thumb: int = 160) -> ResultFrame:
        """Search results over these rows, shown with each matching image beside its text
        (``query``, ``rank``, ``score``, ``image``, ``text``, ``source``).

        ``found`` is what :meth:`deapi_ds.SearchIndex.search` returned for an index built
        over this result's frame (it carries the ``image`` column along).

        >>> scans = deapi_ds.ocr("scans/")                                      # doctest: +SKIP
        >>> index = deapi_ds.embed(scans.frame, "text").search_index(scans.frame)  # doctest: +SKIP
        >>> scans.hits(index.search("rent due date", k=3))                      # doctest: +SKIP
        """
        if "image" not in found.columns:
            raise InvalidParameterError(
                "hits() needs search results that carry the 'image' column: build the index "
                "over this result's frame, e.g. embed(res.frame, 'text').search_index(res.frame)."
            )
        shown = [c for c in ("query", "rank", "score", "image", "text", "source") if c in found]
        return _Hits(found[shown], thumb=thumb)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        html = frame_html(self.frame, media=dict(self.media), max_rows=30, max_chars=160)
        return {"text/plain": repr(self), "text/html": f"<p>{self.summary()}</p>{html}"}


class _Hits(ResultFrame):
    """Search hits with thumbnails (what :meth:`OCRResult.hits` returns)."""

    media = {"image": "image"}

    def __init__(self, frame: pd.DataFrame, *, thumb: int) -> None:
        super().__init__(frame)
        self.thumb = thumb

    def summary(self) -> str:
        return f"{len(self.frame)} hits"

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        html = frame_html(self.frame, media=dict(self.media), thumb=self.thumb, max_chars=400)
        return {"text/plain": repr(self), "text/html": html}


def _empty_blocks() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "row": pd.Series(dtype=object),
            "source": pd.Series(dtype=STATUS_DTYPE),
            "block": pd.Series(dtype="Int64"),
            "text": pd.Series(dtype=STATUS_DTYPE),
        }
    )


# --------------------------------------------------------------------------------------------
# the task


class _OCRTask(ImageJobTask):
    """OCR on the pipeline: one ``images/ocr`` job per distinct image."""

    name = TASK
    endpoint = TASK
    func = "ocr"
    value_schema = pa.schema(
        [("text", pa.string()), ("language", pa.string()), ("structured", pa.string())]
    )

    def request(self, data: bytes, filename: str) -> NativeRequest:
        return ocr_request(
            data,
            filename=filename,
            model=self.model,
            language=self.params["language"],
            format=self.params["format"],
        )

    def read(self, outcome: JobOutcome, item: ImageInput) -> dict[str, Any]:
        structured = None
        if self.params["format"] == "json" and outcome.final is not None:
            structured = result_json(outcome.final, outcome.content)
        text = outcome.result
        if isinstance(structured, Mapping):
            text = structured.get("text", text)
            if not isinstance(text, str):
                text = "\n".join(b["text"] for b in _blocks_of(structured) if b.get("text"))
        elif text is None and outcome.content is not None:
            text = outcome.content.decode("utf-8", "replace")
        language = structured.get("language") if isinstance(structured, Mapping) else None
        return {
            "text": "" if text is None else str(text),
            "language": None if language is None else str(language),
            "structured": json_text(structured),
        }


_BLOCK_KEYS = ("blocks", "lines", "paragraphs", "elements", "words", "regions")


def _blocks_of(structured: Any) -> list[dict[str, Any]]:
    """The list of blocks in a JSON OCR result (the first of ``blocks``, ``lines``, ...)."""
    if isinstance(structured, list):
        items = structured
    elif isinstance(structured, Mapping):
        items = next(
            (structured[k] for k in _BLOCK_KEYS if isinstance(structured.get(k), list)), []
        )
        if not items and isinstance(structured.get("pages"), list):
            items = [b for page in structured["pages"] for b in _blocks_of(page)]
    else:
        items = []
    return [b if isinstance(b, Mapping) else {"text": str(b)} for b in items]


def _block_rows(label: Any, source: str, structured: Any) -> list[dict[str, Any]]:
    rows = []
    for i, block in enumerate(_blocks_of(structured)):
        row: dict[str, Any] = {"row": label, "source": source, "block": i,
                               "text": block.get("text")}  # fmt: skip
        box = block.get("bbox", block.get("box"))
        if isinstance(box, list | tuple) and len(box) == 4:
            row.update(zip(("x0", "y0", "x1", "y1"), box, strict=True))
        for k, v in block.items():
            if k not in ("text", "bbox", "box") and isinstance(v, str | int | float | bool):
                row.setdefault(k, v)
        rows.append(row)
    return rows


# --------------------------------------------------------------------------------------------
# ocr()


def _check(format: Any, language: Any, model: Any, func: str) -> None:
    if format not in ("text", "json"):
        raise InvalidParameterError(
            f"The 'format' parameter of {func}() must be 'text' or 'json'. Got {format!r}."
        )
    if language is not None and (not isinstance(language, str) or not language.strip()):
        raise InvalidParameterError(
            f"The 'language' parameter of {func}() must be a language name or code such as "
            f"'en', or None (detect). Got {language!r}."
        )
    if not isinstance(model, str) or not model:
        raise InvalidParameterError(f"The 'model' parameter of {func}() must be a model slug.")


async def _prepare(
    data: Any, column: Any, *, func: str, max_side: int | None, native: Any, walk: Mapping[str, Any]
) -> tuple[list[ImageInput], pd.Index, dict[str, Any]]:
    values, index, meta = image_values(data, column, func=func, **walk)
    items = await prepare_images(values, index, max_side=max_side, download=native.download)
    return items, index, meta


async def aocr(
    data: Any,
    column: Any = None,
    *,
    model: str = MODEL,
    format: str = "text",
    language: str | None = None,
    max_side: int | None = DEFAULT_MAX_SIDE,
    pattern: str = "*",
    recursive: bool = True,
    extensions: Any = None,
    include_hidden: bool = False,
    cache: Any = USE_DEFAULT,
    progress: bool | None = None,
    client: Any = None,
) -> OCRResult:
    """Read the text in images: an :class:`OCRResult` with one row per input, always.

    ``data`` is a folder (its image files, sorted by path; ``pattern``, ``recursive``,
    ``extensions`` and ``include_hidden`` as in :func:`transcribe_folder`: hidden files are
    skipped, symbolic-link loops are safe), an image path, a URL, bytes, a PIL image, a numpy
    array, a list of these, a Series, or a DataFrame with ``column`` naming the image column.

    Every image is checked before anything is paid for (deAPI takes 10 MB, 64-5000 px per
    side, JPG/PNG/GIF/BMP/WebP; other formats are converted to PNG). OCR is priced by input
    pixels, so images whose longer side exceeds ``max_side`` (default 2048) are downsized
    before the upload (never enlarged; ``max_side=None`` sends them as they are).
    :func:`estimate_ocr` shows the pixels, the cost and what ``max_side`` saves.

    ``format="json"`` asks for the structured output too: :attr:`OCRResult.blocks`.
    ``language`` is a hint (None: detect). Results are cached by image content and options: a
    rerun pays for nothing already read, and the ids of jobs in flight are cached at once, so a
    rerun after a crash polls them instead of paying again. An unreadable, too small or failed
    image is a row with ``status="error"`` and its reason; it never stops the others.

    >>> scans = await deapi_ds.aocr("scans/")          # doctest: +SKIP
    >>> scans[["source", "text", "status"]]            # doctest: +SKIP
    """
    func = "ocr"
    _check(format, language, model, func)
    max_side = check_max_side(max_side, func)
    native = resolve_native(client)
    walk = {"pattern": pattern, "recursive": recursive, "extensions": extensions,
            "include_hidden": include_hidden}  # fmt: skip
    items, index, meta = await _prepare(
        data, column, func=func, max_side=max_side, native=native, walk=walk
    )
    params = {"format": format, "language": language}
    task = _OCRTask(items, client=native, model=model, params=params)
    store = resolve_cache(cache, settings=native.settings)
    show = native.settings.progress if progress is None else bool(progress)
    bar = Progress(
        len(task.groups), desc=f"ocr {model}", unit="image", show=show, engine=native.engine
    )
    try:
        outcome = await run_task(task, store=store, aclient=native, progress=bar)
    finally:
        bar.close(complete=False)
    result = _assemble(items, index, task, outcome, format=format, language=language,
                       meta={**meta, "model": model, "format": format, "max_side": max_side,
                             "requests": outcome.requests, **task.stats})  # fmt: skip
    return check_outcome(result, func=func)


def _assemble(
    items: list[ImageInput],
    index: pd.Index,
    task: _OCRTask,
    outcome: Any,
    *,
    format: str,
    language: str | None,
    meta: dict[str, Any],
) -> OCRResult:
    records, blocks = [], []
    for item, row in task.rows(items, outcome):
        value = row.value or {}
        rec: dict[str, Any] = {
            "source": item.source, "image": item.image, "text": value.get("text"),
            "language": value.get("language") or (language if row.value else None),
            "width": item.width, "height": item.height, "upload_width": item.upload_width,
            "upload_height": item.upload_height, "status": row.status,
            "pixels": item.pixels if row.value else None,  # failed jobs are refunded
            "error_type": row.error_type, "error": row.error, "cached": row.status == "cached",
            "job_id": row.job_id,
        }  # fmt: skip
        if format == "json" and value.get("structured"):
            blocks += _block_rows(item.label, item.source, json.loads(value["structured"]))
        records.append(rec)
    frame = pd.DataFrame.from_records(records, columns=_COLUMNS, index=index)
    frame["image"] = frame["image"].astype(object)
    frame = frame.astype(
        {"source": STATUS_DTYPE, "text": STATUS_DTYPE, "language": STATUS_DTYPE,
         "width": "Int64", "height": "Int64", "upload_width": "Int64", "upload_height": "Int64",
         "pixels": "Int64", "cached": "boolean", "job_id": STATUS_DTYPE}
    )  # fmt: skip
    frame = error_columns(frame)
    block_frame = None
    if blocks:
        block_frame = pd.DataFrame.from_records(blocks)
        block_frame = block_frame.astype(
            {"source": STATUS_DTYPE, "block": "Int64", "text": STATUS_DTYPE}
        )
    return OCRResult(frame, blocks=block_frame, meta=meta)


ocr = syncify(aocr)


# --------------------------------------------------------------------------------------------
# the estimate


async def aestimate_ocr(
    data: Any,
    column: Any = None,
    *,
    model: str = MODEL,
    format: str = "text",
    language: str | None = None,
    max_side: int | None = DEFAULT_MAX_SIDE,
    pattern: str = "*",
    recursive: bool = True,
    extensions: Any = None,
    include_hidden: bool = False,
    cache: Any = USE_DEFAULT,
    client: Any = None,
) -> Estimate:
    """What :func:`ocr` with the same arguments would send and cost; nothing is sent.

    The estimate counts the images to send (cached ones and duplicates excluded), the
    ``pixels`` billed after ``max_side`` and their reference price, and what ``max_side`` saves:
    ``.pixels_original``, ``.pixels_saved`` and ``.saving_usd`` (against sending every image at
    its full size). ``.details`` has one row per input.

    >>> deapi_ds.estimate_ocr("scans/")          # doctest: +SKIP
    """
    func = "estimate_ocr"
    _check(format, language, model, func)
    max_side = check_max_side(max_side, func)
    native = resolve_native(client)
    walk = {"pattern": pattern, "recursive": recursive, "extensions": extensions,
            "include_hidden": include_hidden}  # fmt: skip
    items, index, _ = await _prepare(
        data, column, func=func, max_side=max_side, native=native, walk=walk
    )
    task = _OCRTask(items, client=native, model=model, params={"format": format,
                                                                "language": language})  # fmt: skip
    store = resolve_cache(cache, settings=native.settings)
    keys = task.keys()
    done = task.done_keys(store)
    billed: set[str] = set()
    rows = []
    for item in items:
        status = item.status
        billable = 0
        if item.key is not None:
            if item.key in done:
                status = "cached"
            elif item.key not in billed:
                billed.add(item.key)
                billable = item.pixels or 0
        full = (item.width or 0) * (item.height or 0) if item.key else 0
        rows.append((item.source, item.width, item.height, item.upload_width,
                     item.upload_height, item.pixels, billable, full if billable else 0,
                     status, item.error))  # fmt: skip
    details = pd.DataFrame(
        rows,
        index=index,
        columns=["source", "width", "height", "upload_width", "upload_height", "pixels",
                 "billable_pixels", "original_pixels", "status", "error"],
    )  # fmt: skip
    details = details.astype(
        {"source": STATUS_DTYPE, "status": STATUS_DTYPE, "error": STATUS_DTYPE,
         **{c: "Int64" for c in ("width", "height", "upload_width", "upload_height", "pixels",
                                 "billable_pixels", "original_pixels")}}
    )  # fmt: skip
    requests = len(billed)
    pixels = int(details["billable_pixels"].sum())
    original = int(details["original_pixels"].sum())
    details["cost"] = pd.array(
        [ocr_price(p) if p else 0.0 for p in details["billable_pixels"].fillna(0)], "Float64"
    )
    settings = native.settings
    profile = get_profile(settings)
    cost = ocr_price(pixels, requests) if requests else 0.0
    full_cost = ocr_price(original, requests) if requests else 0.0
    date = profile.price_date.isoformat() if profile.price_date else "deapi-reference.md §5"
    return Estimate(
        func="ocr",
        model=model,
        rows=len(items),
        unique=len(keys),
        cached=sum(k in done for k in keys),
        empty=sum(it.status == "empty" for it in items),
        errors=sum(it.status == "error" for it in items),
        requests=requests,
        quantity=pixels,
        unit="pixels",
        cost_usd=cost,
        price_note=f"reference price of {date}, not a quote",
        rpm=settings.rpm_for(TASK) or profile.rpm_for(TASK, native.tier),
        concurrency=settings.max_concurrency,
        details=details,
        extra={
            "pixels": pixels,
            "pixels_original": original,
            "pixels_saved": original - pixels,
            "cost_original_usd": full_cost,
            "saving_usd": full_cost - cost,
            "max_side": max_side,
        },
        **quota_fields(settings, TASK),
    )


estimate_ocr = syncify(aestimate_ocr)
