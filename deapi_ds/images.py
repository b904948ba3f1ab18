"""Generate and edit images at DataFrame scale, look at them as grids, keep them as PNGs.

>>> import deapi_ds
>>> from deapi_ds.images import generate_images
>>> emu = deapi_ds.use_emulator()
>>> out = generate_images(["a red fox", "a blue whale"], seeds=[1, 2], cache=None, progress=False)
>>> out[["prompt", "seed", "status"]].values.tolist()
[['a red fox', 1, 'ok'], ['a red fox', 2, 'ok'], ['a blue whale', 1, 'ok'], ['a blue whale', 2, 'ok']]
>>> out.images[0].size
(512, 512)

What happens in one call:

* **Expansion.** Every prompt is combined with every model, size and seed (in that order, the
  prompt varying slowest), and every combination gives ``n`` images: one output row per image,
  with ``n_index`` 0..n-1. A prompt x seed grid is one call.
* **Validation before spending.** Models are checked for the task (``txt2img`` / ``img2img``),
  sizes against each model's limits (Flux1schnell: 256 to 2048 px in steps of 128), ``steps``
  against the model's range, ``n`` and ``seeds``; edit inputs against deAPI's upload limits
  (10 MB, 64 to 5000 px per side, the model's number of input images). A mask is refused
  (deAPI does no inpainting).
* **Requests.** ``n`` above the model's maximum per request (4 on deAPI) is split into several
  requests that run concurrently. With a seed, the request for images ``n_index`` k.. is sent
  with ``seed + k``, so a split never repeats an image. ``b64_json`` is asked for; when the
  server answers with URLs (``response_format="url"``), they are downloaded at once, because
  they expire. PNG bytes are stored in the ``image`` column.
* **Cache.** Each image is cached as soon as its request finishes, under a key made of the
  prompt, model, size, seed, ``n_index``, ``steps``, ``negative_prompt``, ``extra`` and, for
  edits, the bytes of the input images. A rerun of the same call is therefore free and gives
  the same images. This holds when ``seeds`` is None too: the first image generated for
  (prompt, no seed, ``n_index``) is the one you get back on rerun (and identical rows within a
  call are generated once). Pass ``cache=None`` for fresh images.
* **Failures** never abort the batch: the row gets ``status="error"``, ``error_type`` and
  ``error`` and shows as a placeholder tile in the grid.

The result (:class:`ImageResult`) renders in a notebook as a grid of small inline thumbnails
(static HTML, survives export); ``.plot()`` draws the same grid with matplotlib and returns the
Figure; ``.save(folder)`` writes PNGs with prompt, model, size and seed in their metadata.
"""

from __future__ import annotations

import dataclasses
import hashlib
import html as _html
import io
import os
import re
import unicodedata
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import numpy as np
import pandas as pd
import pyarrow as pa

from ._cache import USE_DEFAULT, make_key, resolve_cache
from ._client import AsyncClient, Client, GeneratedImage
from ._common import is_missing
from ._config import get_config
from ._estimate import Estimate
from ._exceptions import (
    DeapiError,
    InvalidParameterError,
    ResponseValidationError,
)
from ._pipeline import (
    CACHED,
    ERROR,
    OK,
    QUOTA,
    Answer,
    Progress,
    Task,
    as_series,
    check_outcome,
    quota_fields,
    run_task,
    text_problem,
)
from ._profiles import ModelProfile, ProviderProfile, get_profile
from ._result import STATUS_DTYPE, ResultFrame, atomic_write
from ._tasks import resolve_client, syncify

if TYPE_CHECKING:
    from PIL import Image as PILImage

__all__ = [
    "ImageGrid",
    "ImageResult",
    "aedit_images",
    "aestimate_edit_images",
    "aestimate_generate_images",
    "agenerate_images",
    "edit_images",
    "estimate_edit_images",
    "estimate_generate_images",
    "generate_images",
    "safe_filename",
]

GENERATE_TASK = "images.generations"
EDIT_TASK = "images.edits"

#: Fields the task functions set themselves; ``extra=`` may not override them.
_RESERVED = {
    "model": "model=",
    "prompt": "the prompts",
    "n": "n=",
    "size": "size=",
    "response_format": "response_format=",
    "seed": "seeds=",
    "steps": "steps=",
    "negative_prompt": "negative_prompt=",
    "image": "the images argument",
    "mask": "mask=",
}

#: Formats deAPI takes for edit uploads; others are converted to PNG first.
_UPLOAD_FORMATS = {"PNG": "png", "JPEG": "jpg", "GIF": "gif", "BMP": "bmp", "WEBP": "webp"}

_COLUMNS = [
    "row",
    "prompt",
    "model",
    "size",
    "seed",
    "n_index",
    "image",
    "width",
    "height",
    "status",
    "error_type",
    "error",
    "cached",
]


# --------------------------------------------------------------------------------------------
# the result


class ImageGrid:
    """A static HTML grid of thumbnails (what :meth:`ImageResult.grid` returns).

    Displays itself in a notebook; ``.html`` is the markup (no JavaScript, images embedded as
    small ``data:`` URIs), so it survives export to HTML, GitHub and VS Code.
    """

    def __init__(self, html: str, count: int) -> None:
        self.html = html
        self.count = count

    def __repr__(self) -> str:
        return f"<ImageGrid of {self.count} images>"

    def __str__(self) -> str:
        return self.html

    def _repr_html_(self) -> str:
        return self.html

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        return {"text/plain": repr(self), "text/html": self.html}


def default_caption(record: Mapping[str, Any]) -> str:
    """``prompt`` on the first line, then ``seed · model`` (and size, image number)."""
    prompt = record.get("prompt")
    if is_missing(prompt):  # transforms (remove_background, upscale): the input's name
        prompt = record.get("input")
    prompt = "" if is_missing(prompt) else str(prompt)
    if len(prompt) > 120:
        prompt = prompt[:119] + "…"
    seed = record.get("seed")
    parts = [
        f"seed {seed}" if not is_missing(seed) else "seed random",
        str(record.get("model", "")),
    ]
    size = record.get("size")
    if not is_missing(size):
        parts.append(str(size))
    n_index = record.get("n_index")
    if not is_missing(n_index) and int(n_index) > 0:
        parts.append(f"#{int(n_index)}")
    return f"{prompt}\n{' · '.join(parts)}"


class ImageResult(ResultFrame):
    """Generated or edited images: one row per image.

    Columns: ``row`` (the input's index label), ``prompt``, ``model``, ``size``, ``seed``,
    ``n_index``, ``image`` (PNG bytes, None when it failed), ``width``, ``height``, ``status``
    ("ok", "cached", "error", "empty"), ``error_type``, ``error``, ``cached``; edits add
    ``input`` (the input image(s)). ``.images`` gives PIL images, ``.grid()`` a thumbnail grid,
    ``.plot()`` a matplotlib Figure, ``.save(folder)`` PNG files. Selecting rows keeps an
    ImageResult: ``out[out.seed == 2].save("keep")``, ``out.loc[[0, 3]]``, ``out.head(4)``,
    ``out.query("status == 'ok'")``; selecting columns gives a DataFrame.

    >>> out = deapi_ds.generate_images("a lighthouse", seeds=[1, 2], cache=None)  # doctest: +SKIP
    >>> out.save("pictures").tolist()                                              # doctest: +SKIP
    ['pictures/a-lighthouse_flux1schnell_s1.png', 'pictures/a-lighthouse_flux1schnell_s2.png']
    """

    media = {"image": "image"}

    def _take(self, positions: np.ndarray) -> ImageResult:
        # Row selections (out[out.seed == 2], out.loc[...], out.head(3), out.query(...)) stay
        # ImageResults, so they can be shown as a grid and saved.
        return self._subset(positions)

    # access ------------------------------------------------------------------------------------
    @property
    def images(self) -> list[PILImage.Image | None]:
        """The images as PIL images (None for rows without an image), in row order."""
        from PIL import Image  # lazy

        out: list[Any] = []
        for data in self.frame["image"]:
            if is_missing(data) or not data:
                out.append(None)
                continue
            im = Image.open(io.BytesIO(data))
            im.load()
            out.append(im)
        return out

    # display -----------------------------------------------------------------------------------
    def _items(self, label: str | Callable[[Mapping[str, Any]], str] | None) -> list[dict]:
        from ._result import format_label  # lazy

        items = []
        for rec in self.frame.to_dict("records"):
            caption = default_caption(rec) if label is None else format_label(rec, label)
            error = None
            if rec.get("status") in ("error", "empty") or is_missing(rec.get("image")):
                kind = rec.get("error_type")
                message = rec.get("error")
                message = "no image" if is_missing(message) else str(message)
                error = message if is_missing(kind) else f"{kind}: {message}"
            items.append({"image": rec.get("image"), "caption": caption, "error": error})
        return items

    def grid(
        self,
        col_wrap: int = 4,
        *,
        thumb: int = 160,
        label: str | Callable[[Mapping[str, Any]], str] | None = None,
        max_items: int | None = 200,
    ) -> ImageGrid:
        """A static HTML grid of thumbnails, ``col_wrap`` per row, captioned by ``label``.

        ``label`` is a column name, a format string such as ``"{prompt} s={seed}"`` or a
        callable taking the row as a dict; by default prompt, seed and model. Failed images
        are grey placeholder tiles with their error.

        >>> out.grid(col_wrap=3, label="{model} s={seed}")   # doctest: +SKIP
        """
        from ._result import image_grid_html  # lazy

        if len(self.frame) == 0:
            return ImageGrid('<p style="color:#666">No images.</p>', 0)
        html = image_grid_html(
            self._items(label), col_wrap=col_wrap, thumb=thumb, max_items=max_items
        )
        return ImageGrid(html, len(self.frame))

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        bundle = {"text/plain": repr(self)}
        summary = _html.escape(self.summary())
        bundle["text/html"] = (
            f'<p style="font-family:sans-serif;font-size:13px">{summary}</p>' + self.grid().html
        )
        if include is not None:
            bundle = {k: v for k, v in bundle.items() if k in include}
        if exclude is not None:
            bundle = {k: v for k, v in bundle.items() if k not in exclude}
        return bundle

    def _repr_html_(self) -> str:
        return self._repr_mimebundle_()["text/html"]

    def plot(
        self,
        *,
        row: str | None = None,
        col: str | None = None,
        label: str | Callable[[Mapping[str, Any]], str] | None = None,
        col_wrap: int = 4,
        ax: Any = None,
        **kwargs: Any,
    ) -> Any:
        """Draw the images with matplotlib (full resolution) and return the Figure.

        ``row=`` / ``col=`` lay the images out by column values (e.g. ``row="prompt",
        col="seed"``); otherwise ``col_wrap`` images per row. Save with
        ``fig.savefig("grid.png", dpi=200)``. See :func:`deapi_ds.image_grid`.

        >>> fig = out.plot(row="prompt", col="seed")   # doctest: +SKIP
        """
        from ._result import image_grid  # lazy

        if label is None and row is None and col is None:
            label = default_caption
        return image_grid(
            self.frame,
            image="image",
            row=row,
            col=col,
            label=label,
            col_wrap=col_wrap,
            ax=ax,
            **kwargs,
        )

    # files -------------------------------------------------------------------------------------
    def save(
        self,
        folder: str | os.PathLike[str],
        *,
        overwrite: bool = False,
        max_name_length: int = 60,
    ) -> pd.Series:
        """Write every image as a PNG in ``folder`` (created if needed); return the paths.

        File names come from the prompt, made safe (letters and digits only, no path parts,
        at most ``max_name_length`` characters) plus model and seed, e.g.
        ``a-red-fox_flux1schnell_s7.png``. Two different images never share a name (a ``-2``,
        ``-3``... is added); an existing file with the same bytes is reused, an existing file
        with other bytes is kept unless ``overwrite=True``. Prompt, model, size, seed and
        n_index (and steps / negative prompt / input when set) are stored as PNG text metadata:
        ``PIL.Image.open(path).text["prompt"]``.

        Returns the paths as a string Series named ``path``, indexed like this result (NA for
        rows without an image): ``out.frame.assign(path=out.save("renders"))``.

        >>> paths = out.save("renders")        # doctest: +SKIP
        """
        if not isinstance(max_name_length, int) or not 8 <= max_name_length <= 150:
            raise InvalidParameterError(
                "The 'max_name_length' parameter of ImageResult.save() must be an int in "
                f"[8, 150]. Got {max_name_length!r}."
            )
        root = Path(os.fspath(folder)).expanduser()
        if root.exists() and not root.is_dir():
            raise InvalidParameterError(f"save(): {str(root)!r} exists and is not a folder.")
        root.mkdir(parents=True, exist_ok=True)
        frame = self.frame
        multi_size = frame["size"].nunique(dropna=True) > 1
        used: set[str] = set()
        paths: list[Any] = []
        for rec in frame.to_dict("records"):
            data = rec.get("image")
            if is_missing(data) or not data:
                paths.append(pd.NA)
                continue
            png = _png_with_metadata(data, self._metadata(rec))
            stem = _file_stem(rec, max_name_length, multi_size)
            path = _free_path(root, stem, png, used, overwrite)
            if not (path.exists() and path.read_bytes() == png):
                atomic_write(path, png)
            paths.append(str(path))
        return pd.Series(paths, index=frame.index, name="path", dtype=STATUS_DTYPE)

    def _metadata(self, rec: Mapping[str, Any]) -> dict[str, str]:
        from ._version import __version__  # lazy

        meta = {}
        for name in ("prompt", "model", "size", "seed", "n_index", "input"):
            value = rec.get(name)
            if name in rec and not is_missing(value):
                meta[name] = str(value)
        if "seed" not in meta:
            meta["seed"] = "random"
        for name in ("steps", "negative_prompt"):
            value = self.meta.get(name)
            if value is not None:
                meta[name] = str(value)
        meta["Software"] = f"deapi_ds {__version__}"
        return meta


# --------------------------------------------------------------------------------------------
# file names and PNG files


def safe_filename(text: Any, max_length: int = 60, *, default: str = "image") -> str:
    """A file-name-safe slug of ``text``: letters and digits (any script) joined by ``-``.

    Path separators, dots, control characters, emoji and other symbols are dropped, so the
    result can never leave the folder it is joined to; the result is lower case and at most
    ``max_length`` characters (and 120 UTF-8 bytes). Empty results become ``default``.

    >>> safe_filename("../../etc/passwd")
    'etc-passwd'
    >>> safe_filename("A cat 🐱 on Mars!")
    'a-cat-on-mars'
    >>> safe_filename("🐱🐶")
    'image'
    """
    text = unicodedata.normalize("NFKC", "" if is_missing(text) else str(text))
    chars = [ch.lower() if ch.isalnum() else "-" for ch in text]
    slug = re.sub(r"-+", "-", "".join(chars)).strip("-")
    slug = slug[:max_length].rstrip("-")
    while len(slug.encode("utf-8")) > 120:
        slug = slug[:-1].rstrip("-")
    return slug or default


def _file_stem(rec: Mapping[str, Any], max_length: int, multi_size: bool) -> str:
    name = rec.get("prompt")
    if is_missing(name):  # transforms: named after their input
        name = rec.get("input")
    parts = [safe_filename(name, max_length)]
    parts.append(safe_filename(rec.get("model"), 40, default="model"))
    seed = rec.get("seed")
    parts.append(f"s{int(seed)}" if not is_missing(seed) else "rnd")
    if multi_size and not is_missing(rec.get("size")):
        parts.append(safe_filename(rec.get("size"), 12))
    n_index = rec.get("n_index")
    if not is_missing(n_index) and int(n_index) > 0:
        parts.append(str(int(n_index)))
    return "_".join(parts)


def _free_path(root: Path, stem: str, png: bytes, used: set[str], overwrite: bool) -> Path:
    for k in range(1, 100_000):
        name = f"{stem}.png" if k == 1 else f"{stem}-{k}.png"
        if name.lower() in used:
            continue
        path = root / name
        if overwrite or not path.exists() or path.read_bytes() == png:
            used.add(name.lower())
            return path
    raise InvalidParameterError(f"save(): no free file name for {stem!r} in {str(root)!r}.")


def _png_with_metadata(data: bytes, meta: Mapping[str, str]) -> bytes:
    from PIL import Image  # lazy
    from PIL.PngImagePlugin import PngInfo  # lazy

    info = PngInfo()
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        # The server's own text chunks are kept (ours win on a clash); Pillow keeps the
        # colour profile (im.info["icc_profile"]) by itself.
        for key, value in getattr(im, "text", {}).items():
            if key not in meta and isinstance(value, str):
                info.add_text(key, value)
        for key, value in meta.items():
            info.add_text(key, value)  # iTXt (UTF-8) when the text is not Latin-1
        buf = io.BytesIO()
        im.save(buf, "PNG", pnginfo=info)
    return buf.getvalue()


def _decode_png(data: bytes, what: str) -> tuple[bytes, int, int]:
    """Check that ``data`` is an image; return PNG bytes and the size (converting if needed)."""
    from PIL import Image, UnidentifiedImageError  # lazy

    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            width, height = im.size
            if im.format == "PNG":
                return data, width, height
            buf = io.BytesIO()
            im.save(buf, "PNG")
            return buf.getvalue(), width, height
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise ResponseValidationError(
            f"{what} is not a readable image ({len(data):,} bytes starting with {data[:8]!r}): {exc}"
        ) from None


# --------------------------------------------------------------------------------------------
# validation (no I/O)


def _as_list(value: Any, name: str, func: str) -> list[Any]:
    if (
        isinstance(value, str)
        or value is None
        or not isinstance(value, Sequence | pd.Series | pd.Index | np.ndarray)
    ):
        return [value]
    items = list(value)
    if not items:
        raise InvalidParameterError(f"The {name!r} parameter of {func}() is an empty list.")
    return items


def _check_models(
    model: Any, task: str, profile: ProviderProfile, func: str
) -> list[tuple[str, ModelProfile | None]]:
    out = []
    for m in dict.fromkeys(_as_list(model, "model", func)):
        if not isinstance(m, str) or not m:
            raise InvalidParameterError(
                f"The 'model' parameter of {func}() must be a model id or a list of ids. Got {m!r}. "
                f"Models for {func}(): {', '.join(profile.models_for(task)) or 'see deapi_ds.models()'}."
            )
        out.append((m, profile.require_task(m, task, func=func)))
    return out


def _check_sizes(
    size: Any, models: list[tuple[str, ModelProfile | None]], func: str
) -> list[str | None]:
    sizes: list[str | None] = []
    for s in dict.fromkeys(_as_list(size, "size", func)):
        if s is None or s == "auto":
            sizes.append(None)  # the server's default (edits: the first input's size)
            continue
        if not isinstance(s, str):
            raise InvalidParameterError(
                f"The 'size' parameter of {func}() must be a string like '512x512' (or a list "
                f"of them). Got {s!r}."
            )
        for _, mp in models:
            if mp is not None:
                mp.check_size(s, func=func)
            else:
                ModelProfile("unknown", ()).check_size(s, func=func)  # format only
        w, h = (int(v) for v in s.lower().split("x"))
        sizes.append(f"{w}x{h}")
    return list(dict.fromkeys(sizes))


def _check_seeds(seeds: Any, func: str) -> list[int | None]:
    out: list[int | None] = []
    for s in _as_list(seeds, "seeds", func):
        if is_missing(s):
            out.append(None)
            continue
        if isinstance(s, bool) or not isinstance(s, int | np.integer) or not 0 <= int(s) < 2**32:
            raise InvalidParameterError(
                f"The 'seeds' parameter of {func}() takes ints in [0, 2**32) (or None for a random "
                f"seed), or a list of them. Got {s!r}."
            )
        out.append(int(s))
    return list(dict.fromkeys(out))


def _check_n(n: Any, func: str) -> int:
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or not 1 <= int(n) <= 1000:
        raise InvalidParameterError(
            f"The 'n' parameter of {func}() must be an int in [1, 1000] (images per prompt; "
            f"more than 4 are split into several requests). Got {n!r}."
        )
    return int(n)


def _check_steps(
    steps: Any, models: list[tuple[str, ModelProfile | None]], func: str
) -> int | None:
    if steps is None:
        return None
    if isinstance(steps, bool) or not isinstance(steps, int | np.integer) or steps < 1:
        raise InvalidParameterError(
            f"The 'steps' parameter of {func}() must be a positive int or None. Got {steps!r}."
        )
    for m, mp in models:
        if mp is not None and mp.min_steps is not None and mp.max_steps is not None:
            if not mp.min_steps <= steps <= mp.max_steps:
                allowed = (
                    f"exactly {mp.min_steps}"
                    if mp.min_steps == mp.max_steps
                    else f"between {mp.min_steps} and {mp.max_steps}"
                )
                raise InvalidParameterError(
                    f"The 'steps' parameter of {func}() must be {allowed} for {m}. Got {steps}. "
                    "Leave steps=None for the model's default."
                )
    return int(steps)


def _check_common(
    response_format: Any, negative_prompt: Any, extra: Any, func: str
) -> dict[str, Any]:
    if response_format not in ("b64_json", "url"):
        raise InvalidParameterError(
            f"The 'response_format' parameter of {func}() must be 'b64_json' (recommended) or "
            f"'url' (downloaded at once). Got {response_format!r}."
        )
    if negative_prompt is not None and not isinstance(negative_prompt, str):
        raise InvalidParameterError(
            f"The 'negative_prompt' parameter of {func}() must be a string or None. "
            f"Got {type(negative_prompt).__name__}."
        )
    if extra is None:
        return {}
    if not isinstance(extra, Mapping):
        raise InvalidParameterError(
            f"The 'extra' parameter of {func}() must be a dict of native parameters. "
            f"Got {type(extra).__name__}."
        )
    for key in extra:
        if key in _RESERVED:
            raise InvalidParameterError(
                f"extra={{{key!r}: ...}} of {func}(): set it with {_RESERVED[key]} instead."
            )
    return dict(extra)


def _max_per_request(mp: ModelProfile | None, profile: ProviderProfile) -> int | None:
    if mp is not None and mp.max_n:
        return mp.max_n
    return profile.max_images_n


# --------------------------------------------------------------------------------------------
# planning


@dataclasses.dataclass
class _Unit:
    """One image to obtain (several output rows may share it)."""

    key: str
    model: str
    prompt: str
    size: str | None
    seed: int | None
    n_index: int
    group: tuple[Any, ...]  # identical requests except n_index
    inputs: tuple[tuple[str, bytes], ...] = ()
    # outcome
    image: bytes | None = None
    width: int | None = None
    height: int | None = None
    status: str | None = None
    error_type: str | None = None
    error: str | None = None


@dataclasses.dataclass
class _Request:
    units: list[_Unit]
    seed: int | None  # the seed to send (seed + first n_index)


@dataclasses.dataclass
class _Row:
    row: Any
    prompt: Any
    model: str
    size: str | None
    seed: int | None
    n_index: int
    unit: _Unit | None = None
    input: str | None = None
    status: str | None = None  # for rows without a unit
    error_type: str | None = None
    error: str | None = None


def _plan_requests(units: Sequence[_Unit], max_n: Callable[[str], int | None]) -> list[_Request]:
    """Group units by identical request, split into runs of consecutive n_index <= max_n."""
    groups: dict[tuple[Any, ...], list[_Unit]] = {}
    for unit in units:
        groups.setdefault(unit.group, []).append(unit)
    requests = []
    for members in groups.values():
        members.sort(key=lambda u: u.n_index)
        limit = max_n(members[0].model) or len(members)
        run: list[_Unit] = []
        for unit in members:
            if run and (unit.n_index != run[-1].n_index + 1 or len(run) >= limit):
                requests.append(run)
                run = []
            run.append(unit)
        if run:
            requests.append(run)
    return [
        _Request(run, None if run[0].seed is None else run[0].seed + run[0].n_index)
        for run in requests
    ]


def _texts(prompts: Any, column: Any, func: str) -> tuple[list[Any], list[Any]]:
    """Prompts and their row labels from a str, list, Series or DataFrame + column."""
    series = as_series(
        None
        if isinstance(column, pd.Series) and not isinstance(prompts, pd.DataFrame)
        else prompts,
        column,
        func=func,
        what="prompts",
        default_column="prompt",
    )
    return series.tolist(), series.index.tolist()


def _prompt_problem(prompt: Any) -> tuple[str, str, str] | None:
    if is_missing(prompt) or (isinstance(prompt, str) and not prompt.strip()):
        return ("empty", "EmptyInput", "The prompt is empty; nothing was generated.")
    if not isinstance(prompt, str):
        return (
            "error",
            "InvalidParameterError",
            f"The prompt must be a string. Got {type(prompt).__name__}: {prompt!r}.",
        )
    if (problem := text_problem(prompt)) is not None:
        return ("error", "InvalidText", f"The prompt {problem}.")
    return None


# --------------------------------------------------------------------------------------------
# running


def _check_progress(progress: Any, func: str) -> bool | None:
    if progress is None or isinstance(progress, bool):
        return progress
    raise InvalidParameterError(
        f"The 'progress' parameter of {func}() must be True, False or None (the configured "
        f"default). Got {progress!r}."
    )


async def _fetch(aclient: AsyncClient, images: list[GeneratedImage]) -> list[bytes | BaseException]:
    """The bytes of each returned image; URLs are downloaded concurrently, right away."""
    out: list[bytes | BaseException] = [b""] * len(images)

    async def one(i: int, item: GeneratedImage) -> None:
        try:
            data = item.data if item.data is not None else await aclient.download(str(item.url))
            out[i] = data
        except (DeapiError, OSError) as exc:
            out[i] = exc

    async with anyio.create_task_group() as tg:
        for i, item in enumerate(images):
            tg.start_soon(one, i, item)
    return out


def _runs(units: Sequence[_Unit], ids: np.ndarray) -> list[np.ndarray]:
    """Split ``ids`` (units of one request group) into runs of consecutive ``n_index``."""
    out: list[list[int]] = []
    for uid in ids.tolist():
        if out and units[uid].n_index == units[out[-1][-1]].n_index + 1:
            out[-1].append(uid)
        else:
            out.append([uid])
    return [np.asarray(r, dtype=np.int64) for r in out]


class _ImageTask(Task):
    """Generated or edited images of one model on the pipeline: a unit is one image; a batch is
    one request for up to ``n`` consecutive images of the same prompt/size/seed."""

    cache_columns = ("image", "width", "height")
    unit_name = "image"

    def __init__(
        self,
        *,
        task: str,
        func: str,
        model: str,
        units: list[_Unit],
        aclient: AsyncClient,
        max_n: int | None,
        call: Callable[[_Request], Any],
    ) -> None:
        self.name, self.func, self.model = task, func, model
        self.endpoint = task
        self.units = units
        self.aclient = aclient
        self.max_n = max_n
        self._call = call

    def keys(self) -> list[str]:
        return [u.key for u in self.units]

    def pack(self, ids: np.ndarray) -> list[np.ndarray]:
        position = {id(self.units[i]): int(i) for i in ids}
        requests = _plan_requests([self.units[i] for i in ids], lambda _: self.max_n)
        return [np.asarray([position[id(u)] for u in r.units], np.int64) for r in requests]

    async def call(self, ids: np.ndarray) -> Answer:
        runs = _runs(self.units, ids)
        if len(runs) > 1:  # a re-ask of images missing here and there: one request per run
            answers = [await self.call(run) for run in runs]
            return Answer(
                np.concatenate([a.ids for a in answers]),
                [v for a in answers for v in a.value],
                {k: v for a in answers for k, v in a.errors.items()},
            )
        units = [self.units[i] for i in ids]
        first = units[0]
        seed = None if first.seed is None else first.seed + first.n_index
        result = await self._call(_Request(units, seed))
        # fewer images than asked: keep them (in order); the pipeline asks again for the rest
        got = await _fetch(self.aclient, result.images[: len(units)])
        ok_ids, values, errors = [], [], {}
        for uid, unit, outcome in zip(ids.tolist(), units, got, strict=False):
            if not isinstance(outcome, BaseException):
                try:
                    values.append(
                        _decode_png(outcome, f"Image {unit.n_index} for {unit.prompt[:40]!r}")
                    )
                    ok_ids.append(uid)
                    continue
                except ResponseValidationError as exc:
                    outcome = exc
            errors[uid] = outcome
        return Answer(np.asarray(ok_ids, dtype=np.int64), values, errors)

    def from_cache(self, ids: np.ndarray, table: pa.Table) -> np.ndarray:
        accepted = []
        for uid, rec in zip(ids.tolist(), table.to_pylist(), strict=True):
            if rec.get("image"):
                unit = self.units[uid]
                unit.image, unit.width, unit.height = (
                    rec["image"],
                    rec.get("width"),
                    rec.get("height"),
                )
                accepted.append(uid)
        return np.asarray(accepted, dtype=np.int64)

    def accept(self, ids: np.ndarray, value: list[tuple[bytes, int, int]]) -> None:
        for uid, (png, w, h) in zip(ids.tolist(), value, strict=True):
            unit = self.units[uid]
            unit.image, unit.width, unit.height = png, w, h

    def to_cache(self, ids: np.ndarray, value: Any, keys: Sequence[str]) -> pa.Table:
        return pa.table(
            {
                "key": pa.array(keys, pa.string()),
                "image": pa.array([png for png, _, _ in value], pa.binary()),
                "width": pa.array([w for _, w, _ in value], pa.int64()),
                "height": pa.array([h for _, _, h in value], pa.int64()),
            }
        )


_UNIT_STATUS = {OK: "ok", CACHED: "cached", ERROR: "error", QUOTA: "quota"}


async def _run(
    *,
    task: str,
    func: str,
    units: list[_Unit],
    aclient: AsyncClient,
    profile: ProviderProfile,
    cache: Any,
    progress: Any,
    call: Callable[[_Request], Any],
) -> int:
    """Every model's images through the pipeline (models run concurrently, one progress bar);
    fills each unit's outcome. Returns the number of requests."""
    by_model: dict[str, list[_Unit]] = {}
    for unit in units:
        by_model.setdefault(unit.model, []).append(unit)
    bar = Progress(len(units), desc=func, unit="image", show=progress, engine=aclient.engine)
    requests = 0

    async def one(model: str, members: list[_Unit]) -> None:
        nonlocal requests
        job = _ImageTask(
            task=task,
            func=func,
            model=model,
            units=members,
            aclient=aclient,
            max_n=_max_per_request(profile.model(model), profile),
            call=call,
        )
        outcome = await run_task(job, store=cache, aclient=aclient, progress=bar)
        requests += outcome.requests
        for uid, unit in enumerate(members):
            code = int(outcome.status[uid])
            unit.status = _UNIT_STATUS.get(code, "error")
            if uid in outcome.errors:
                unit.error_type, unit.error = outcome.error_of(uid)
            elif code not in (OK, CACHED):
                unit.error_type, unit.error = "Cancelled", "not generated: the run stopped"

    try:
        async with anyio.create_task_group() as tg:
            for model, members in by_model.items():
                tg.start_soon(one, model, members)
    finally:
        bar.close()
    return requests


def _shown(prompt: Any) -> str | None:
    """The prompt as the result shows it (lone surrogates escaped: a string column needs UTF-8)."""
    if is_missing(prompt):
        return None
    text = prompt if isinstance(prompt, str) else str(prompt)
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _assemble(rows: list[_Row], *, with_input: bool, meta: Mapping[str, Any]) -> ImageResult:
    records = []
    for r in rows:
        u = r.unit
        if u is None:
            image, width, height = None, None, None
            status, error_type, error, cached = r.status, r.error_type, r.error, False
        else:
            image, width, height = u.image, u.width, u.height
            status, error_type, error = u.status, u.error_type, u.error
            cached = u.status == "cached"
        size = r.size
        if size is None and width is not None and height is not None:
            size = f"{width}x{height}"
        rec = {
            "row": r.row,
            "prompt": _shown(r.prompt),
            "model": r.model,
            "size": size,
            "seed": r.seed,
            "n_index": r.n_index,
            "image": image,
            "width": width,
            "height": height,
            "status": status,
            "error_type": error_type,
            "error": error,
            "cached": cached,
        }
        if with_input:
            rec["input"] = r.input
        records.append(rec)
    columns = list(_COLUMNS)
    if with_input:
        columns.insert(2, "input")
    frame = pd.DataFrame.from_records(records, columns=columns)
    frame = frame.astype(
        {
            "prompt": STATUS_DTYPE,
            "model": STATUS_DTYPE,
            "size": STATUS_DTYPE,
            "seed": "Int64",
            "n_index": "Int64",
            "width": "Int64",
            "height": "Int64",
            "status": STATUS_DTYPE,
            "error_type": STATUS_DTYPE,
            "error": STATUS_DTYPE,
            "cached": "bool",
            **({"input": STATUS_DTYPE} if with_input else {}),
        }
    )
    frame["image"] = frame["image"].astype(object)
    return ImageResult(frame, meta=meta)


# --------------------------------------------------------------------------------------------
# generate


def _generation_units(
    data: Any,
    column: Any,
    *,
    model: Any,
    size: Any,
    n: Any,
    seeds: Any,
    response_format: str,
    steps: Any,
    negative_prompt: Any,
    extra: Any,
    progress: Any,
    cache: Any,
    client: Any,
) -> dict[str, Any]:
    """Checks and units of a generate_images call (shared with its estimate)."""
    func = "generate_images"
    settings = get_config()
    profile = get_profile(settings)
    texts, labels = _texts(data, column, func)
    models = _check_models(model, "txt2img", profile, func)
    sizes = _check_sizes(size, models, func)
    seed_list = _check_seeds(seeds, func)
    count = _check_n(n, func)
    step_count = _check_steps(steps, models, func)
    extra_params = _check_common(response_format, negative_prompt, extra, func)
    _check_progress(progress, func)
    store = resolve_cache(cache, settings=settings)
    aclient = resolve_client(client)

    units: dict[str, _Unit] = {}
    rows: list[_Row] = []
    for label, prompt in zip(labels, texts, strict=True):
        problem = _prompt_problem(prompt)
        for m, _mp in models:
            for s in sizes:
                for seed in seed_list:
                    for i in range(count):
                        row = _Row(label, prompt, m, s, seed, i)
                        rows.append(row)
                        if problem is not None:
                            row.status, row.error_type, row.error = problem
                            continue
                        params = {
                            "size": s,
                            "seed": seed,
                            "n_index": i,
                            "steps": step_count,
                            "negative_prompt": negative_prompt,
                            "extra": extra_params,
                        }
                        key = make_key(GENERATE_TASK, m, params, prompt)
                        if key not in units:
                            units[key] = _Unit(key, m, prompt, s, seed, i, (m, s, seed, prompt))
                        row.unit = units[key]

    return {
        "func": func,
        "profile": profile,
        "store": store,
        "aclient": aclient,
        "units": units,
        "rows": rows,
        "step_count": step_count,
        "extra_params": extra_params,
        "settings": settings,
    }


async def agenerate_images(
    data: str | Sequence[str] | pd.Series | pd.DataFrame,
    column: str | pd.Series | None = None,
    *,
    model: str | Sequence[str] = "Flux1schnell",
    size: str | Sequence[str] | None = "512x512",
    n: int = 1,
    seeds: int | Sequence[int | None] | None = None,
    response_format: str = "b64_json",
    steps: int | None = None,
    negative_prompt: str | None = None,
    extra: Mapping[str, Any] | None = None,
    client: Client | AsyncClient | None = None,
    cache: Any = USE_DEFAULT,
    progress: bool | None = None,
) -> ImageResult:
    """Generate images for prompts; one row per image (prompt x model x size x seed x n).

    ``data`` holds the prompts: a str, a list, a Series, or a DataFrame with ``column=``
    (default "prompt").
    ``model``, ``size`` and ``seeds`` take one value or a list, and lists expand into a product,
    so a prompt x seed grid is one call. ``n`` images per combination (split into requests of
    at most 4 on deAPI, run concurrently). Sizes, steps and the model are checked before
    anything is spent. ``steps``, ``negative_prompt`` and ``extra`` (other native parameters)
    are sent as they are. Results are cached per image (``cache=None``: fresh images); failed
    images become rows with ``status="error"``. ``progress=False`` hides the progress bar.

    >>> out = await deapi_ds.agenerate_images(["a fox", "a bay"], seeds=[1, 2, 3])  # doctest: +SKIP
    >>> len(out), out.ok.all()                                                    # doctest: +SKIP
    (6, True)
    >>> out               # a grid of thumbnails in a notebook                   # doctest: +SKIP
    """
    g = _generation_units(
        data,
        column,
        model=model,
        size=size,
        n=n,
        seeds=seeds,
        response_format=response_format,
        steps=steps,
        negative_prompt=negative_prompt,
        extra=extra,
        progress=progress,
        cache=cache,
        client=client,
    )
    func, profile, store, aclient = g["func"], g["profile"], g["store"], g["aclient"]
    units, rows, step_count, extra_params = (
        g["units"],
        g["rows"],
        g["step_count"],
        g["extra_params"],
    )

    async def call(request: _Request) -> Any:
        first = request.units[0]
        return await aclient.images_generate(
            first.prompt,
            model=first.model,
            size=first.size,
            n=len(request.units),
            response_format=response_format,
            seed=request.seed,
            steps=step_count,
            negative_prompt=negative_prompt,
            extra=extra_params or None,
        )

    n_requests = await _run(
        task=GENERATE_TASK,
        func=func,
        units=list(units.values()),
        aclient=aclient,
        profile=profile,
        cache=store,
        progress=progress,
        call=call,
    )
    meta = {
        "task": GENERATE_TASK,
        "requests": n_requests,
        "steps": step_count,
        "negative_prompt": negative_prompt,
    }
    result = _assemble(rows, with_input=False, meta=meta)
    local = np.array([r.unit is None and r.status == "error" for r in rows], bool)
    return check_outcome(result, func=func, input_failed=local)


generate_images = syncify(agenerate_images)


# --------------------------------------------------------------------------------------------
# edit


@dataclasses.dataclass
class _Input:
    """One row's input image(s), ready to upload, or the reason it cannot be."""

    parts: tuple[tuple[str, bytes], ...] = ()
    label: str | None = None
    status: str | None = None
    error_type: str | None = None
    error: str | None = None


def _is_image_like(value: Any) -> bool:
    from PIL import Image  # lazy

    return isinstance(
        value, str | os.PathLike | bytes | bytearray | memoryview | Image.Image | np.ndarray
    )


def _load_one(value: Any, where: str, j: int) -> tuple[str, bytes]:
    """Read one input image (path, bytes, PIL image, array) as (upload name, bytes)."""
    from PIL import Image  # lazy

    if isinstance(value, str | os.PathLike):
        path = Path(os.fspath(value)).expanduser()
        if not path.is_file():
            raise InvalidParameterError(f"{where}: image file not found: {str(path)!r}.")
        return path.name, path.read_bytes()
    if isinstance(value, bytes | bytearray | memoryview):
        return f"image_{j}", bytes(value)
    if isinstance(value, np.ndarray):
        from ._result import open_image as _open_image  # lazy

        value = _open_image(value)
    if isinstance(value, Image.Image):
        im = value if value.mode in ("RGB", "RGBA", "L", "LA") else value.convert("RGBA")
        buf = io.BytesIO()
        im.save(buf, "PNG")
        return f"image_{j}.png", buf.getvalue()
    raise InvalidParameterError(
        f"{where}: an input image must be a file path, bytes, a PIL image or a numpy array. "
        f"Got {type(value).__name__}."
    )


def _check_upload(
    name: str, data: bytes, where: str, profile: ProviderProfile
) -> tuple[str, bytes]:
    """deAPI's upload limits: readable image, 10 MB, 64..5000 px per side, a format it takes."""
    from PIL import Image, UnidentifiedImageError  # lazy

    mb = len(data) / (1024 * 1024)
    limit = profile.max_image_bytes
    if limit is not None and len(data) > limit:
        raise InvalidParameterError(
            f"{where}: {name!r} is {mb:.1f} MB; deAPI accepts images up to "
            f"{limit // (1024 * 1024)} MB. Resize it or save it as JPEG first."
        )
    try:
        with Image.open(io.BytesIO(data)) as im:
            width, height = im.size
            fmt = im.format or ""
            converted = None
            if fmt not in _UPLOAD_FORMATS:
                im.load()
                buf = io.BytesIO()
                (im if im.mode in ("RGB", "RGBA", "L", "LA") else im.convert("RGBA")).save(
                    buf, "PNG"
                )
                converted = buf.getvalue()
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise InvalidParameterError(f"{where}: {name!r} is not a readable image: {exc}") from None
    lo, hi = profile.min_image_side, profile.max_image_side
    if lo is not None and hi is not None and not (lo <= width <= hi and lo <= height <= hi):
        raise InvalidParameterError(
            f"{where}: {name!r} is {width}x{height} px; deAPI needs each side between {lo} and "
            f"{hi} px. Resize it first, e.g. PIL.Image.open(path).thumbnail(({hi}, {hi}))."
        )
    stem = Path(name).stem or "image"
    if converted is not None:
        return _check_upload(f"{stem}.png", converted, where, profile)
    return f"{stem}.{_UPLOAD_FORMATS[fmt]}", data


def _input_label(value: Any, name: str) -> str:
    if isinstance(value, str | os.PathLike):
        return Path(os.fspath(value)).name
    from PIL import Image  # lazy

    if isinstance(value, Image.Image):
        return f"<PIL {value.width}x{value.height}>"
    if isinstance(value, np.ndarray):
        return f"<array {'x'.join(map(str, value.shape))}>"
    return f"<{name}>"


def _load_inputs(
    value: Any, where: str, profile: ProviderProfile, max_inputs: int | None
) -> _Input:
    if not _is_image_like(value) and not isinstance(value, list | tuple) and is_missing(value):
        return _Input(status="empty", error_type="EmptyInput", error=f"{where}: no input image.")
    values = list(value) if isinstance(value, list | tuple) else [value]
    if not values:
        return _Input(status="empty", error_type="EmptyInput", error=f"{where}: no input image.")
    try:
        if max_inputs is not None and len(values) > max_inputs:
            raise InvalidParameterError(
                f"{where}: {len(values)} input images, but the model takes at most {max_inputs}."
            )
        parts = []
        labels = []
        for j, item in enumerate(values):
            name, data = _load_one(item, where, j)
            parts.append(_check_upload(name, data, where, profile))
            labels.append(_input_label(item, parts[-1][0]))
    except (InvalidParameterError, OSError) as exc:
        return _Input(status="error", error_type=type(exc).__name__, error=str(exc))
    return _Input(tuple(parts), " + ".join(labels))


def _edit_rows(images: Any, column: Any = None) -> tuple[list[Any], list[Any]]:
    if isinstance(images, pd.DataFrame):
        if column is None and images.shape[1] != 1:
            raise InvalidParameterError(
                "edit_images() got a DataFrame; say which column holds the images: "
                f"edit_images(df, 'image', prompt=...). Available columns: {list(images.columns)}."
            )
        images = as_series(images, column, func="edit_images", what="images")
    if isinstance(images, pd.Series):
        return images.tolist(), images.index.tolist()
    if isinstance(images, list | tuple | pd.Index | np.ndarray) and not (
        isinstance(images, np.ndarray) and images.ndim in (2, 3) and images.dtype != object
    ):
        items = list(images)
        if not items:
            raise InvalidParameterError("edit_images() got an empty list of images.")
        return items, list(range(len(items)))
    return [images], [0]


def _edit_units(
    data: Any,
    column: Any,
    *,
    prompt: Any,
    model: Any,
    size: Any,
    n: Any,
    seeds: Any,
    mask: Any,
    response_format: str,
    steps: Any,
    negative_prompt: Any,
    extra: Any,
    progress: Any,
    cache: Any,
    client: Any,
) -> dict[str, Any]:
    """Checks, loaded inputs and units of an edit_images call (shared with its estimate)."""
    func = "edit_images"
    if prompt is None and column is not None and not isinstance(data, pd.DataFrame):
        warnings.warn(
            "edit_images(images, prompt) is now edit_images(data, prompt=...): pass the prompt "
            "by keyword (the second positional argument is the image column of a DataFrame).",
            DeprecationWarning,
            stacklevel=5,
        )
        prompt, column = column, None
    if prompt is None:
        raise InvalidParameterError(
            "edit_images() needs prompt=...: one prompt for every image, a list or Series with "
            "one per image, or the name of the DataFrame's prompt column."
        )
    if isinstance(data, pd.DataFrame) and isinstance(prompt, str) and prompt in data.columns:
        prompt = data[prompt]
    settings = get_config()
    profile = get_profile(settings)
    if mask is not None and not profile.supports_mask:
        raise InvalidParameterError(
            "The 'mask' parameter of edit_images() is not supported: deAPI does not do "
            "inpainting (/v1/images/edits answers 400 to a mask). Describe the change in the "
            "prompt instead and pass no mask."
        )
    models = _check_models(model, "img2img", profile, func)
    sizes = _check_sizes(size, models, func)
    seed_list = _check_seeds(seeds, func)
    count = _check_n(n, func)
    step_count = _check_steps(steps, models, func)
    extra_params = _check_common(response_format, negative_prompt, extra, func)
    _check_progress(progress, func)

    values, labels = _edit_rows(data, column)
    if isinstance(prompt, str) or is_missing(prompt):
        prompt_list = [prompt] * len(values)
    elif isinstance(prompt, pd.Series | Sequence | np.ndarray):
        prompt_list = list(prompt)
        if len(values) == 1 and len(prompt_list) > 1:  # one image, several prompts
            values = values * len(prompt_list)
            labels = (
                prompt.index.tolist()
                if isinstance(prompt, pd.Series)
                else list(range(len(prompt_list)))
            )
        elif len(prompt_list) != len(values):
            raise InvalidParameterError(
                f"edit_images() got {len(values)} images and {len(prompt_list)} prompts; pass one "
                "prompt for all, or one prompt per image."
            )
    else:
        raise InvalidParameterError(
            f"The 'prompt' parameter of edit_images() must be a str or a list/Series of str. "
            f"Got {type(prompt).__name__}."
        )
    caps = [mp.max_input_images for _, mp in models if mp is not None and mp.max_input_images]
    max_inputs = min(caps) if caps else None
    mask_part = None
    if mask is not None:
        mask_part = _check_upload(*_load_one(mask, "mask", 0), "mask", profile)

    loaded: dict[int, _Input] = {}
    inputs: list[_Input] = []
    for position, value in enumerate(values):
        ident = id(value)  # a broadcast image is read and checked once
        if ident not in loaded:
            loaded[ident] = _load_inputs(
                value, f"Image row {labels[position]!r}", profile, max_inputs
            )
        inputs.append(loaded[ident])
    usable = [x for x in inputs if x.status is None]
    bad = [x for x in inputs if x.status == "error"]
    if bad and not usable:
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise InvalidParameterError(f"No input image can be sent: {bad[0].error}{more}")
    store = resolve_cache(cache, settings=settings)
    aclient = resolve_client(client)

    units: dict[str, _Unit] = {}
    rows: list[_Row] = []
    for label, text, source in zip(labels, prompt_list, inputs, strict=True):
        problem = _prompt_problem(text)
        if source.status is not None:
            problem = (source.status, source.error_type, source.error)
        digests = [hashlib.sha256(data).hexdigest() for _, data in source.parts]
        for m, _mp in models:
            for s in sizes:
                for seed in seed_list:
                    for i in range(count):
                        row = _Row(label, text, m, s, seed, i, input=source.label)
                        rows.append(row)
                        if problem is not None:
                            row.status, row.error_type, row.error = problem
                            continue
                        params = {
                            "size": s,
                            "seed": seed,
                            "n_index": i,
                            "steps": step_count,
                            "negative_prompt": negative_prompt,
                            "extra": extra_params,
                            "inputs": digests,
                        }
                        key = make_key(EDIT_TASK, m, params, text)
                        if key not in units:
                            group = (m, s, seed, text, tuple(digests))
                            units[key] = _Unit(key, m, text, s, seed, i, group, source.parts)
                        row.unit = units[key]

    return {
        "func": func,
        "profile": profile,
        "store": store,
        "aclient": aclient,
        "units": units,
        "rows": rows,
        "step_count": step_count,
        "extra_params": extra_params,
        "mask_part": mask_part,
        "settings": settings,
    }


async def aedit_images(
    data: Any,
    column: Any = None,
    *,
    prompt: str | Sequence[str] | pd.Series | None = None,
    model: str | Sequence[str] = "Flux_2_Klein_4B_BF16",
    size: str | Sequence[str] | None = None,
    n: int = 1,
    seeds: int | Sequence[int | None] | None = None,
    mask: Any = None,
    response_format: str = "b64_json",
    steps: int | None = None,
    negative_prompt: str | None = None,
    extra: Mapping[str, Any] | None = None,
    client: Client | AsyncClient | None = None,
    cache: Any = USE_DEFAULT,
    progress: bool | None = None,
) -> ImageResult:
    """Edit images with a prompt (img2img); one row per output image.

    ``data`` is a path, bytes, a PIL image, a list / Series of them, or a DataFrame with
    ``column`` naming the image column; an element that is itself a list or tuple sends several
    input images together (Flux_2_Klein_4B_BF16 combines up to 3). ``prompt`` (keyword) is one
    prompt for every image, one per image (a list or Series), or, with a DataFrame, the name of
    its prompt column (a single image with a list of prompts gives one row per prompt). ``size=None`` lets the server follow the first
    input's size. deAPI's limits are checked before anything is sent: 10 MB and 64 to 5000 px
    per side per image, the model's number of input images, models that can edit, no ``mask``
    (deAPI does no inpainting). An input that breaks a limit fails its own rows only. Seeds,
    ``n``, caching (the key includes the input bytes) and the result are as in
    :func:`generate_images`.

    >>> out = await deapi_ds.aedit_images(["cat.png", "dog.jpg"], "a watercolor")  # doctest: +SKIP
    >>> out[["input", "status"]]                                                   # doctest: +SKIP
    """
    g = _edit_units(
        data,
        column,
        prompt=prompt,
        model=model,
        size=size,
        n=n,
        seeds=seeds,
        mask=mask,
        response_format=response_format,
        steps=steps,
        negative_prompt=negative_prompt,
        extra=extra,
        progress=progress,
        cache=cache,
        client=client,
    )
    func, profile, store, aclient = g["func"], g["profile"], g["store"], g["aclient"]
    units, rows, step_count, extra_params = (
        g["units"],
        g["rows"],
        g["step_count"],
        g["extra_params"],
    )
    mask_part = g["mask_part"]

    async def call(request: _Request) -> Any:
        first = request.units[0]
        return await aclient.images_edit(
            list(first.inputs),
            first.prompt,
            model=first.model,
            size=first.size,
            n=len(request.units),
            response_format=response_format,
            mask=mask_part,
            seed=request.seed,
            steps=step_count,
            negative_prompt=negative_prompt,
            extra=extra_params or None,
        )

    n_requests = await _run(
        task=EDIT_TASK,
        func=func,
        units=list(units.values()),
        aclient=aclient,
        profile=profile,
        cache=store,
        progress=progress,
        call=call,
    )
    meta = {
        "task": EDIT_TASK,
        "requests": n_requests,
        "steps": step_count,
        "negative_prompt": negative_prompt,
    }
    result = _assemble(rows, with_input=True, meta=meta)
    local = np.array([r.unit is None and r.status == "error" for r in rows], bool)
    return check_outcome(result, func=func, input_failed=local)


edit_images = syncify(aedit_images)


# --------------------------------------------------------------------------------------------
# estimates


def _images_estimate(g: dict[str, Any]) -> Estimate:
    """Requests, images and cost of a generate/edit call (the cache as it is now)."""
    profile, store, settings = g["profile"], g["store"], g["settings"]
    task = GENERATE_TASK if g["func"] == "generate_images" else EDIT_TASK
    units: list[_Unit] = list(g["units"].values())
    by_model: dict[str, list[_Unit]] = {}
    for unit in units:
        by_model.setdefault(unit.model, []).append(unit)
    requests, missing_count, cost, priced, note = 0, 0, 0.0, True, None
    for model, members in by_model.items():
        have = store.contains(task, model, [u.key for u in members])
        missing = [u for u, hit in zip(members, have, strict=True) if not hit]
        missing_count += len(missing)
        requests += len(
            _plan_requests(missing, lambda m: _max_per_request(profile.model(m), profile))
        )
        for unit in missing:
            quote = profile.price(
                task, model, n=1, size=unit.size or "512x512", steps=g["step_count"]
            )
            if quote is None:
                priced = False
            else:
                cost += quote.usd
                note = quote.note
    rows = g["rows"]
    models = list(by_model) or ["?"]
    return Estimate(
        func=g["func"],
        model=models[0] if len(models) == 1 else ", ".join(models),
        rows=len(rows),
        unique=len(units),
        cached=len(units) - missing_count,
        empty=sum(1 for r in rows if r.unit is None and r.status == "empty"),
        errors=sum(1 for r in rows if r.unit is None and r.status == "error"),
        requests=requests,
        quantity=missing_count,
        unit="images",
        cost_usd=cost if priced else None,
        price_note=note if priced else None,
        rpm=settings.rpm_for(task) or profile.rpm_for(task, settings.effective_tier),
        concurrency=settings.max_concurrency,
        **quota_fields(settings, task),
    )


async def aestimate_generate_images(
    data: Any,
    column: Any = None,
    *,
    model: str | Sequence[str] = "Flux1schnell",
    size: str | Sequence[str] | None = "512x512",
    n: int = 1,
    seeds: int | Sequence[int | None] | None = None,
    response_format: str = "b64_json",
    steps: int | None = None,
    negative_prompt: str | None = None,
    extra: Mapping[str, Any] | None = None,
    client: Client | AsyncClient | None = None,
    cache: Any = USE_DEFAULT,
) -> Estimate:
    """What :func:`generate_images` would send and cost (async twin of
    :func:`estimate_generate_images`); spends nothing."""
    g = _generation_units(
        data,
        column,
        model=model,
        size=size,
        n=n,
        seeds=seeds,
        response_format=response_format,
        steps=steps,
        negative_prompt=negative_prompt,
        extra=extra,
        progress=None,
        cache=cache,
        client=client,
    )
    return _images_estimate(g)


estimate_generate_images = syncify(aestimate_generate_images)
estimate_generate_images.__doc__ = """What :func:`generate_images` would send: an
:class:`~deapi_ds.Estimate` with requests, images, cost (reference price per image), time and
days of daily quota. Same arguments as :func:`generate_images`; nothing is sent."""


async def aestimate_edit_images(
    data: Any,
    column: Any = None,
    *,
    prompt: str | Sequence[str] | pd.Series | None = None,
    model: str | Sequence[str] = "Flux_2_Klein_4B_BF16",
    size: str | Sequence[str] | None = None,
    n: int = 1,
    seeds: int | Sequence[int | None] | None = None,
    mask: Any = None,
    response_format: str = "b64_json",
    steps: int | None = None,
    negative_prompt: str | None = None,
    extra: Mapping[str, Any] | None = None,
    client: Client | AsyncClient | None = None,
    cache: Any = USE_DEFAULT,
) -> Estimate:
    """What :func:`edit_images` would send and cost (async twin of
    :func:`estimate_edit_images`); inputs are read and checked, nothing is sent."""
    g = _edit_units(
        data,
        column,
        prompt=prompt,
        model=model,
        size=size,
        n=n,
        seeds=seeds,
        mask=mask,
        response_format=response_format,
        steps=steps,
        negative_prompt=negative_prompt,
        extra=extra,
        progress=None,
        cache=cache,
        client=client,
    )
    return _images_estimate(g)


estimate_edit_images = syncify(aestimate_edit_images)
estimate_edit_images.__doc__ = """What :func:`edit_images` would send: an
:class:`~deapi_ds.Estimate` (requests, images, cost, time, days of quota). Same arguments as
:func:`edit_images`; the inputs are read and checked, nothing is sent."""
