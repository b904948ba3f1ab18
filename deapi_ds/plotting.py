"""Plots people would rather look at than read: image grids, embedding projections,
transcription timelines and per-file durations.

Every function returns what it drew on (seaborn's habit): a new ``matplotlib.figure.Figure``,
or the ``Axes`` when one is passed with ``ax=``. New figures are made through pyplot
(``plt.figure``), so ``plt.show()`` shows them in scripts, ``plt.savefig``/``plt.gcf()`` see
them, and in a notebook they appear at the end of the cell like any pyplot figure. Nothing here
calls ``plt.show()``. A returned figure shows once in a notebook: when it is the cell's value
(or passed to ``display()``) it is shown there and handed back from pyplot's inline backend,
which would otherwise show it a second time at the end of the cell. Scripts that make many
figures close them as with any pyplot figure (``plt.close(fig)``). matplotlib is imported on
first use.

>>> import pandas as pd
>>> from PIL import Image
>>> df = pd.DataFrame({"prompt": ["a", "a", "b", "b"], "seed": [1, 2, 1, 2],
...                    "image": [Image.new("RGB", (64, 64), c) for c in ("red", "green", "blue", "white")]})
>>> fig = image_grid(df, row="prompt", col="seed")
>>> len(fig.axes)
4
"""

from __future__ import annotations

import contextlib
import functools
import math
import textwrap
from collections.abc import Callable, Mapping, Sequence
from pathlib import PurePath
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from deapi_ds._common import plural
from deapi_ds._exceptions import InvalidParameterError
from deapi_ds._vectors import as_matrix
from deapi_ds.display import _is_missing, _normalize_mode, _open_image, format_label

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["duration_plot", "image_grid", "projection_plot", "timeline_plot"]

_PLACEHOLDER = "#dddddd"
_ERROR_COLOR = "#a93226"
_MISSING_LABEL = "unknown"

Label = str | Callable[[Mapping[str, Any]], str] | None


# --------------------------------------------------------------------------- helpers


def _enable_notebook_display() -> None:
    """Let IPython render a returned Figure even before ``%matplotlib inline`` ran.

    Figures made without pyplot have no display formatter in a fresh kernel (they show as
    ``<Figure size ...>``); this registers the formatters ``%matplotlib inline`` would, in the
    formats the user configured (``%config InlineBackend.figure_formats``, PNG by default).
    Formatters that are already registered are left alone.
    """
    try:
        from IPython import get_ipython
        from IPython.core.pylabtools import select_figure_formats
    except ImportError:
        return
    shell = get_ipython()
    if shell is None or getattr(shell, "_deapi_ds_figure_formats", False):
        return
    try:
        from matplotlib.figure import Figure

        formatters = shell.display_formatter.formatters
        for mime in ("image/png", "image/svg+xml", "image/jpeg", "application/pdf"):
            with contextlib.suppress(KeyError):
                formatters[mime].lookup_by_type(Figure)
                shell._deapi_ds_figure_formats = True  # already set up: keep the user's choice
                return
        formats: Any = {"png"}
        options: dict[str, Any] = {"bbox_inches": "tight"}
        with contextlib.suppress(Exception):  # no matplotlib_inline, or not a real shell
            from matplotlib_inline.config import InlineBackend

            config = InlineBackend.instance(parent=shell)
            formats, options = config.figure_formats, dict(config.print_figure_kwargs)
        select_figure_formats(shell, formats, **options)
        shell._deapi_ds_figure_formats = True
    except Exception:  # noqa: BLE001 - display is a nicety, never a failure
        pass


def _new_figure(width: float, height: float) -> Figure:
    import matplotlib.pyplot as plt

    _enable_notebook_display()
    size = (max(width, 1.0), max(height, 1.0))
    return plt.figure(figsize=size, layout="constrained", FigureClass=_figure_class())


@functools.cache
def _figure_class() -> type:
    """``DeapiFigure``: a matplotlib Figure that shows once in a notebook (made on first use,
    so that importing deapi_ds does not import matplotlib)."""
    from matplotlib.figure import Figure

    class DeapiFigure(Figure):
        """A matplotlib Figure made by deapi_ds; it shows once when it is a notebook cell's value."""

        def _ipython_display_(self) -> None:
            _display_once(self)

    DeapiFigure.__module__ = __name__
    DeapiFigure.__qualname__ = "DeapiFigure"
    return DeapiFigure


def __getattr__(name: str) -> Any:
    if name == "DeapiFigure":  # pickled figures find their class here
        return _figure_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _display_once(fig: Any) -> None:
    """Show ``fig`` now with IPython's figure formatters; if pyplot's inline backend was going
    to show it again at the end of the cell, close it there (the backend would close it then)."""
    from IPython import get_ipython
    from IPython.display import publish_display_data

    shell = get_ipython()
    if shell is None:
        return
    data: dict[str, Any] = {}
    metadata: dict[str, Any] = {}
    for mime, formatter in shell.display_formatter.formatters.items():
        out = formatter(fig) if formatter.enabled else None
        if isinstance(out, tuple) and len(out) == 2:
            out, metadata[mime] = out
        if out is not None:
            data[mime] = out
    publish_display_data(data, metadata)
    if _inline_backend_will_show(fig):
        import matplotlib.pyplot as plt

        plt.close(fig)


def _inline_backend_will_show(fig: Any) -> bool:
    """Whether the inline backend (the notebook default) shows and closes ``fig`` at the end of
    the cell: it is open in pyplot and the backend closes figures after showing them."""
    import matplotlib
    from matplotlib._pylab_helpers import Gcf

    if "inline" not in str(matplotlib.get_backend()):
        return False
    try:
        from matplotlib_inline.backend_inline import InlineBackend

        if not InlineBackend.instance().close_figures:
            return False
    except Exception:  # noqa: BLE001 - an older or missing matplotlib_inline: its default
        pass
    return any(m.canvas.figure is fig for m in Gcf.get_all_fig_managers())


def _require_columns(data: pd.DataFrame, where: str, **columns: Any) -> None:
    for param, column in columns.items():
        if column is not None and not callable(column) and column not in data.columns:
            raise InvalidParameterError(
                f"Column {column!r} not found ({param}=... of {where}). "
                f"Available columns: {list(data.columns)}."
            )


def _category_colors(values: Sequence[Any]) -> dict[Any, Any]:
    """A colour per category, in order of first appearance (tab10, then tab20)."""
    from matplotlib import colormaps

    cats = list(dict.fromkeys(values))
    cmap = colormaps["tab10" if len(cats) <= 10 else "tab20"]
    return {c: cmap(i % cmap.N) for i, c in enumerate(cats)}


def _short_name(value: Any, width: int = 32) -> str:
    text = PurePath(str(value)).name if isinstance(value, str) and "/" in value else str(value)
    return text if len(text) <= width else "…" + text[-(width - 1) :]


def _wrap(text: str, width: int, max_lines: int = 3) -> str:
    """Wrap to ``width`` characters and at most ``max_lines`` lines. When the text is too
    long, the first paragraph (e.g. a long prompt) is cut with "…" so that the last ones
    (e.g. "seed 2 · model") still show."""
    parts = [textwrap.wrap(p, width=max(8, width)) or [""] for p in str(text).split("\n")]
    if sum(map(len, parts)) > max_lines:
        head, tail = parts[0], [line for part in parts[1:] for line in part]
        tail = tail[: max(0, max_lines - 1)]
        head = head[: max_lines - len(tail)]
        head[-1] = head[-1][: max(1, width - 1)] + "…"
        lines = head + tail
    else:
        lines = [line for part in parts for line in part]
    return "\n".join(lines)


def _as_frame(data: Any, image: str) -> pd.DataFrame:
    if data is None:
        raise InvalidParameterError(
            "image_grid() needs data: a DataFrame with an image column, or a list of images."
        )
    if isinstance(data, pd.DataFrame):
        return data
    frame = getattr(data, "frame", None)
    if isinstance(frame, pd.DataFrame):  # result objects that wrap a frame
        return frame
    if isinstance(data, pd.Series):
        return data.to_frame(name=image)
    if isinstance(data, (list, tuple)):
        images = np.empty(len(data), dtype=object)
        for i, item in enumerate(data):
            images[i] = item
        return pd.DataFrame({image: images})
    raise InvalidParameterError(
        "image_grid() takes a DataFrame, a Series or a list of images as data. "
        f"Got {type(data).__name__}."
    )


def _decode(value: Any) -> np.ndarray:
    """An image (bytes, PIL, array, path) → an array imshow can draw at full resolution."""
    from PIL import ImageOps

    im = _open_image(value)
    try:
        im = ImageOps.exif_transpose(im) or im
    except (OSError, ValueError, SyntaxError):
        pass
    return np.asarray(_normalize_mode(im))


def _cell_state(record: Mapping[str, Any] | None, image: str, error: str | None) -> Any:
    """A decoded image array, an error string, or None for an empty cell."""
    if record is None:
        return None
    err = record.get(error) if error is not None else None
    if not _is_missing(err) and str(err) != "":
        return f"failed: {err}"
    value = record.get(image)
    if _is_missing(value):
        return "failed: no image"
    try:
        return _decode(value)
    except (InvalidParameterError, OSError, ValueError) as exc:
        return f"failed: cannot decode image ({exc})"


def _facets(data: pd.DataFrame, column: str) -> tuple[np.ndarray, list[Any]]:
    """Each row's facet number and the facet values, in order of first appearance."""
    c, uniques = pd.factorize(data[column], use_na_sentinel=False)
    return c, list(uniques)


def _layout(
    data: pd.DataFrame, row: str | None, col: str | None, col_wrap: int
) -> tuple[int, int, list[tuple[int, int, int | None]]]:
    """Cells as (grid row, grid col, data position or None) plus facet values for titles."""
    n = len(data)
    if row is None and col is None:
        ncols = max(1, min(col_wrap, n))
        cells = [(i // ncols, i % ncols, i) for i in range(n)]
        return max(1, math.ceil(n / ncols)), ncols, cells

    def codes(column: str) -> tuple[np.ndarray, list[Any]]:
        return _facets(data, column)

    rc, rvals = codes(row) if row is not None else (np.zeros(n, dtype=np.intp), [None])
    cc, cvals = codes(col) if col is not None else (np.zeros(n, dtype=np.intp), [None])
    positions: dict[tuple[int, int], int] = {}
    for pos, key in enumerate(zip(rc.tolist(), cc.tolist(), strict=True)):
        if key in positions:
            what = " and ".join(
                f"{name}={vals[code]!r}"
                for name, vals, code in ((row, rvals, key[0]), (col, cvals, key[1]))
                if name is not None
            )
            raise InvalidParameterError(
                f"Rows {positions[key]} and {pos} both have {what}; image_grid() draws one "
                "image per cell. Filter the frame, or facet by another column (row=/col=)."
            )
        positions[key] = pos
    if row is not None and col is not None:
        cells = [
            (i, j, positions.get((i, j))) for i in range(len(rvals)) for j in range(len(cvals))
        ]
        return len(rvals), len(cvals), cells
    if col is not None:  # one facet per column value, wrapped
        ncols = max(1, min(col_wrap, len(cvals)))
        cells = [(j // ncols, j % ncols, positions[(0, j)]) for j in range(len(cvals))]
        return math.ceil(len(cvals) / ncols), ncols, cells
    cells = [(i, 0, positions[(i, 0)]) for i in range(len(rvals))]
    return len(rvals), 1, cells


def _facet_value(name: str, value: Any) -> str:
    """``"seed = 2"``; a missing value shows as NA and a blank string as ``''``."""
    if _is_missing(value):
        return f"{name} = NA"
    if isinstance(value, str) and not value.strip():
        return f"{name} = {value!r}"
    return f"{name} = {value}"


def _facet_title(
    record: Mapping[str, Any] | None, row: str | None, col: str | None, label: Label
) -> str:
    if record is None:
        return ""
    if label is not None:
        return format_label(record, label)
    if row is not None and col is not None:
        return ""  # the grid's margins carry the facet values
    parts = [_facet_value(name, record[name]) for name in (row, col) if name is not None]
    return " | ".join(parts)


# --------------------------------------------------------------------------- image grid


def image_grid(
    data: Any = None,
    *,
    image: str = "image",
    row: str | None = None,
    col: str | None = None,
    label: Label = None,
    col_wrap: int = 4,
    ax: Axes | None = None,
    height: float | None = None,
    error: str | None = "error",
) -> Figure | Axes:
    """Draw images in a grid, optionally faceted by columns (seaborn style).

    ``data`` is a DataFrame with an ``image`` column (bytes, PIL images, arrays or paths; a
    result object with a ``.frame`` works too) or a list of images. ``row`` and ``col`` name
    columns to facet by (``row="prompt", col="seed"`` gives a prompt × seed grid, one image
    per cell); without them each row of ``data`` is a cell, ``col_wrap`` per line, and
    ``col`` alone wraps too. ``label`` captions each cell: a column name, a format string
    like ``"{prompt} s={seed}"`` or a callable taking the row as a dict. By default faceted
    cells are titled with their facet values; with both ``row`` and ``col`` the column values
    head the top row and the row values label the left column (seaborn's margin titles).
    Rows whose ``error`` column is set, or whose image is missing or unreadable, are drawn as
    grey placeholders with the error text.

    Images are drawn at full resolution, each cell ``height`` inches tall (by default 3, or
    less so that the figure stays about 10 inches wide and readable in a notebook): save with
    ``fig.savefig("grid.png", dpi=200)``. With ``ax=`` the images are composed into a single
    montage drawn in that Axes, which is returned.
    """
    if not isinstance(col_wrap, int) or isinstance(col_wrap, bool) or col_wrap < 1:
        raise InvalidParameterError(
            f"The 'col_wrap' parameter of image_grid() must be an int >= 1. Got {col_wrap!r}."
        )
    if height is not None and not (
        isinstance(height, (int, float)) and not isinstance(height, bool) and height > 0
    ):
        raise InvalidParameterError(
            f"The 'height' parameter of image_grid() must be a number of inches > 0. "
            f"Got {height!r}."
        )
    frame = _as_frame(data, image)
    where = "image_grid()"
    _require_columns(frame, where, image=image, row=row, col=col)
    if isinstance(label, str) and label not in frame.columns and "{" not in label:
        raise InvalidParameterError(
            f"label={label!r} is neither a column nor a format string like '{{prompt}} "
            f"s={{seed}}'. Available columns: {list(frame.columns)}."
        )
    if len(frame) == 0:
        raise InvalidParameterError("image_grid() got no images (the frame is empty).")
    err_col = error if error is not None and error in frame.columns else None
    nrows, ncols, cells = _layout(frame, row, col, col_wrap)
    records = frame.to_dict("records")
    states = {
        pos: _cell_state(records[pos], image, err_col) for _, _, pos in cells if pos is not None
    }
    titles = {
        pos: _facet_title(records[pos], row, col, label) for _, _, pos in cells if pos is not None
    }
    if ax is not None:
        return _montage(ax, nrows, ncols, cells, states, titles)

    arrays = [s for s in states.values() if isinstance(s, np.ndarray)]
    aspects = [a.shape[1] / a.shape[0] for a in arrays if a.shape[0]]
    aspect = float(np.clip(np.median(aspects), 0.5, 2.0)) if aspects else 1.0
    margins = row is not None and col is not None
    row_labels = col_labels = None
    if margins:
        row_labels = [_facet_value(row, v) for v in _facets(frame, row)[1]]
        col_labels = [_facet_value(col, v) for v in _facets(frame, col)[1]]
    if height is None:
        # Fit about 10 inches (~1000 px), the width of a notebook's output area.
        margin_width = 1.6 if margins else 0.0
        height = float(np.clip((10.0 - margin_width) / (ncols * aspect), 1.0, 3.0))
    title_rows = nrows if any(titles.values()) else (1 if margins else 0)
    fig = _new_figure(
        ncols * height * aspect + (1.6 if margins else 0.0), nrows * height + 0.35 * title_rows
    )
    axes = fig.subplots(nrows, ncols, squeeze=False)
    used = set()
    wrap_width = int(height * aspect * 12)
    for i, j, pos in cells:
        cell_ax = axes[i, j]
        used.add((i, j))
        cell_ax.set_xticks([])
        cell_ax.set_yticks([])
        cell_ax.set_anchor("N")  # images of mixed sizes hang from the same line, under titles
        if margins:
            if i == 0:
                cell_ax.set_title(_wrap(col_labels[j], wrap_width, 2), fontsize=9)
            if j == 0:
                cell_ax.set_ylabel(
                    _wrap(row_labels[i], 22, 4),
                    fontsize=9,
                    rotation=0,
                    ha="right",
                    va="center",
                    labelpad=6,
                )
        if pos is None:  # row x col combination with no data
            if margins and (i == 0 or j == 0):
                cell_ax.set_facecolor("none")  # blank, but keeps its margin title
                for spine in cell_ax.spines.values():
                    spine.set_visible(False)
            else:
                cell_ax.set_axis_off()
            continue
        state = states[pos]
        if isinstance(state, np.ndarray):
            cell_ax.imshow(state, cmap="gray" if state.ndim == 2 else None)
        else:
            cell_ax.set_facecolor(_PLACEHOLDER)
            cell_ax.set_xlim(0, 1)
            cell_ax.set_ylim(0, 1)
            cell_ax.set_box_aspect(1 / aspect)
            cell_ax.text(
                0.5,
                0.5,
                _wrap(str(state), wrap_width, max_lines=6),
                ha="center",
                va="center",
                fontsize=8,
                color=_ERROR_COLOR,
                transform=cell_ax.transAxes,
            )
        for spine in cell_ax.spines.values():
            spine.set_visible(False)
        if titles[pos]:
            title = _wrap(titles[pos], wrap_width)
            if margins and i == 0:
                title = f"{cell_ax.get_title()}\n{title}"
            cell_ax.set_title(title, fontsize=9)
    for i in range(nrows):
        for j in range(ncols):
            if (i, j) not in used:
                fig.delaxes(axes[i, j])
    return fig


def _montage(
    ax: Axes,
    nrows: int,
    ncols: int,
    cells: list[tuple[int, int, int | None]],
    states: dict[int, Any],
    titles: dict[int, str],
) -> Axes:
    """Compose the cells into one RGB canvas and draw it (with labels) into ``ax``."""
    from PIL import Image

    arrays = [s for s in states.values() if isinstance(s, np.ndarray)]
    tile = min(1024, max((max(a.shape[:2]) for a in arrays), default=256))
    gap = max(4, tile // 16)
    band = int(tile * 0.22) if any(titles.values()) else 0
    step_y, step_x = tile + gap + band, tile + gap
    canvas = np.full((nrows * step_y + gap, ncols * step_x + gap, 3), 255, dtype=np.uint8)
    # How big a canvas pixel is on the figure (in points), so that the 7 pt texts fit their
    # tile: characters per line and lines per tile (or title band).
    box = ax.get_position()
    width_pt = box.width * ax.figure.get_figwidth() * 72
    height_pt = box.height * ax.figure.get_figheight() * 72
    pt = min(width_pt / canvas.shape[1], height_pt / canvas.shape[0])
    chars = max(8, int(tile * pt / (7 * 0.6) * 0.9))
    tile_lines = max(1, int(tile * pt / (7 * 1.25)) - 1)
    band_lines = max(1, int(band * pt / (7 * 1.25)))
    grey = np.array([0xDD, 0xDD, 0xDD], dtype=np.uint8)
    texts = []
    for i, j, pos in cells:
        if pos is None:
            continue
        y0, x0 = gap + i * step_y + band, gap + j * step_x
        state = states[pos]
        if isinstance(state, np.ndarray):
            im = Image.fromarray(state)
            im = im.convert("RGBA") if im.mode == "LA" else im
            if im.mode == "RGBA":
                background = Image.new("RGBA", im.size, "white")
                im = Image.alpha_composite(background, im)
            im = im.convert("RGB")
            scale = tile / max(im.size)
            size = (max(1, round(im.width * scale)), max(1, round(im.height * scale)))
            arr = np.asarray(im.resize(size, Image.Resampling.LANCZOS))
            oy, ox = (tile - arr.shape[0]) // 2, (tile - arr.shape[1]) // 2
            canvas[y0 + oy : y0 + oy + arr.shape[0], x0 + ox : x0 + ox + arr.shape[1]] = arr
        else:
            canvas[y0 : y0 + tile, x0 : x0 + tile] = grey
            texts.append(
                (
                    x0 + tile / 2,
                    y0 + tile / 2,
                    _wrap(str(state), max(8, chars - 2), min(6, tile_lines)),
                    _ERROR_COLOR,
                )
            )
        if titles[pos]:
            title = _wrap(titles[pos], chars, min(2, band_lines))
            texts.append((x0 + tile / 2, y0 - band / 2, title, "black"))
    ax.imshow(canvas)
    for x, y, text, color in texts:
        ax.text(x, y, text, ha="center", va="center", fontsize=7, color=color)
    ax.set_axis_off()
    return ax


# --------------------------------------------------------------------------- projection


def _pca_2d(x: np.ndarray, chunk: int = 65536) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, the top two principal axes (d, 2) and their explained-variance ratios.

    Uses the d × d covariance accumulated in float64 chunk by chunk, so memory does not grow
    with n; signs are fixed (largest loading positive) so plots are reproducible.
    """
    n, d = x.shape
    mean = np.zeros(d)
    for s in range(0, n, chunk):
        mean += x[s : s + chunk].sum(axis=0, dtype=np.float64)
    mean /= n
    cov = np.zeros((d, d))
    for s in range(0, n, chunk):
        c = x[s : s + chunk].astype(np.float64) - mean
        cov += c.T @ c
    cov /= max(n - 1, 1)
    values, vecs = np.linalg.eigh(cov)
    order = np.argsort(values)[::-1][:2]
    axes = vecs[:, order]
    signs = np.sign(axes[np.abs(axes).argmax(axis=0), np.arange(2)])
    axes *= np.where(signs == 0, 1, signs)
    total = values.clip(min=0).sum()
    ratio = values[order].clip(min=0) / total if total > 0 else np.zeros(2)
    return mean, axes, ratio


def projection_plot(
    vectors: Any,
    labels: Any = None,
    *,
    method: str = "pca",
    ax: Axes | None = None,
    title: str | None = None,
    max_points: int = 20_000,
    seed: int = 0,
) -> Figure | Axes:
    """A 2-D PCA scatter of embedding vectors, coloured by ``labels``.

    ``vectors`` is a (n, d) matrix or a column of vectors (rows without a vector, i.e. NaN,
    are left out and counted in the title). ``labels`` (one per row) colour the points:
    categories get a legend; numbers with many distinct values get a colour bar. PCA is
    computed with numpy (no scikit-learn); above ``max_points`` a random sample (``seed``)
    is drawn, while the axes are fitted on all rows.

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> fig = projection_plot(rng.normal(size=(100, 16)), ["a", "b"] * 50)
    >>> fig.axes[0].get_xlabel().startswith("PC1")
    True
    """
    if method != "pca":
        raise InvalidParameterError(
            f"The 'method' parameter of projection_plot() must be 'pca'. Got {method!r}. For "
            "t-SNE or UMAP, project with scikit-learn or umap-learn and scatter the result."
        )
    x = as_matrix(vectors, name="vectors")
    n, d = x.shape
    if labels is not None:
        labels_arr = np.empty(len(labels), dtype=object)
        labels_arr[:] = list(labels)
        if len(labels_arr) != n:
            raise InvalidParameterError(
                f"labels has {len(labels_arr):,} values but vectors has {n:,} rows; pass one "
                "label per row."
            )
    if d < 2:
        raise InvalidParameterError(
            f"projection_plot() needs vectors with >= 2 dimensions. Got {d}."
        )
    valid = np.isfinite(x).all(axis=1)
    n_valid = int(valid.sum())
    if n_valid < 2:
        raise InvalidParameterError(
            f"projection_plot() needs at least 2 rows with finite vectors; got {n_valid} of {n:,}."
        )
    rows = np.flatnonzero(valid)
    xv = x[rows] if n_valid < n else x
    mean, axes_, ratio = _pca_2d(xv)
    shown = rows
    if n_valid > max_points:
        shown = np.sort(np.random.default_rng(seed).choice(rows, size=max_points, replace=False))
    points = (x[shown].astype(np.float64) - mean) @ axes_

    if ax is None:
        fig = _new_figure(7.0, 5.5)
        target = fig.subplots()
    else:
        fig, target = None, ax
    size = float(np.clip(3000 / math.sqrt(len(points)), 3, 40))
    alpha = 0.85 if len(points) < 2000 else 0.5
    if labels is None:
        target.scatter(points[:, 0], points[:, 1], s=size, alpha=alpha, linewidths=0)
    else:
        lab = labels_arr[shown]
        as_series = pd.Series(lab, dtype=object).infer_objects()
        numeric = pd.api.types.is_numeric_dtype(as_series) and as_series.dtype != bool
        if numeric and as_series.nunique() > 12:
            sc = target.scatter(
                points[:, 0],
                points[:, 1],
                c=lab.astype(float),
                s=size,
                alpha=alpha,
                cmap="viridis",
                linewidths=0,
            )
            cbar = target.figure.colorbar(sc, ax=target)
            cbar.set_label(str(getattr(labels, "name", None) or "label"))
        else:
            names = np.array(
                [_MISSING_LABEL if _is_missing(v) else str(v) for v in lab], dtype=object
            )
            counts = pd.Series(names).value_counts()
            if len(counts) > 20:  # keep the legend readable: 19 most frequent + "other"
                keep = set(counts.index[:19])
                names = np.array([v if v in keep else "other" for v in names], dtype=object)
            colors = _category_colors(sorted(set(names), key=lambda v: (v == "other", v)))
            for name, color in colors.items():
                sel = names == name
                target.scatter(
                    points[sel, 0],
                    points[sel, 1],
                    s=size,
                    alpha=alpha,
                    color=color,
                    label=f"{name} ({int(sel.sum()):,})",
                    linewidths=0,
                )
            target.legend(
                title=str(getattr(labels, "name", None) or "") or None,
                fontsize=8,
                markerscale=max(1.0, 30 / size) ** 0.5,
                loc="best",
                frameon=False,
            )
    target.set_xlabel(f"PC1 ({ratio[0]:.1%} of variance)")
    target.set_ylabel(f"PC2 ({ratio[1]:.1%} of variance)")
    if title is None:
        title = f"PCA of {n_valid:,} vectors ({d} dimensions)"
        notes = []
        if n_valid < n:
            notes.append(f"{n - n_valid:,} rows without vectors left out")
        if len(points) < n_valid:
            notes.append(f"random {len(points):,} shown")
        if notes:
            title += "\n" + "; ".join(notes)
    target.set_title(title, fontsize=10)
    return target if fig is None else fig


# --------------------------------------------------------------------------- audio plots


def timeline_plot(
    segments: pd.DataFrame,
    *,
    file: str = "file",
    start: str = "start",
    end: str = "end",
    hue: str | None = None,
    ax: Axes | None = None,
    title: str | None = None,
) -> Figure | Axes:
    """When speech happens in each file: one lane of horizontal bars per file.

    ``segments`` has one row per spoken segment with ``file``, ``start`` and ``end``
    (seconds), like the segments table of a transcription. Lanes follow the files' first
    appearance; ``hue`` names a column (e.g. ``"language"`` or ``"speaker"``) to colour by,
    otherwise each file has its own colour. Rows with a missing or negative-length time are
    skipped.

    >>> segs = pd.DataFrame({"file": ["a.wav", "a.wav", "b.wav"], "start": [0, 2.5, 1.0],
    ...                      "end": [2.0, 4.0, 3.5]})
    >>> fig = timeline_plot(segs)
    >>> [t.get_text() for t in fig.axes[0].get_yticklabels()]
    ['a.wav', 'b.wav']
    """
    if not isinstance(segments, pd.DataFrame):
        raise InvalidParameterError(
            f"timeline_plot() needs a DataFrame of segments. Got {type(segments).__name__}."
        )
    _require_columns(segments, "timeline_plot()", file=file, start=start, end=end, hue=hue)
    t0 = pd.to_numeric(segments[start], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    t1 = pd.to_numeric(segments[end], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    ok = np.isfinite(t0) & np.isfinite(t1) & (t1 >= t0)
    files = [_short_name(f) if not _is_missing(f) else _MISSING_LABEL for f in segments[file]]
    lanes = list(dict.fromkeys(files))
    if hue is not None:
        keys = [_MISSING_LABEL if _is_missing(v) else str(v) for v in segments[hue]]
    else:
        keys = files
    colors = _category_colors(keys)

    if ax is None:
        fig = _new_figure(9.0, min(1.2 + 0.45 * max(len(lanes), 1), 30.0))
        target = fig.subplots()
    else:
        fig, target = None, ax
    lane_of = {name: i for i, name in enumerate(lanes)}
    by_lane: dict[tuple[int, str], list[tuple[float, float]]] = {}
    for i in np.flatnonzero(ok):
        by_lane.setdefault((lane_of[files[i]], keys[i]), []).append((t0[i], t1[i] - t0[i]))
    for (lane, key), bars in by_lane.items():
        target.broken_barh(bars, (lane - 0.35, 0.7), facecolors=colors[key])
    target.set_yticks(range(len(lanes)), labels=lanes)
    target.set_ylim(max(len(lanes), 1) - 0.5, -0.5)
    target.set_xlabel("time (s)")
    if ok.any():
        target.set_xlim(0, float(t1[ok].max()) * 1.02 or 1.0)
    else:
        target.text(0.5, 0.5, "no segments", ha="center", va="center", transform=target.transAxes)
    if hue is not None and by_lane:
        from matplotlib.patches import Patch

        used = list(dict.fromkeys(k for (_, k) in by_lane))
        target.legend(
            handles=[Patch(color=colors[k], label=k) for k in used],
            title=hue,
            fontsize=8,
            frameon=False,
            loc="upper left",
            bbox_to_anchor=(1.0, 1.0),
        )
    skipped = int((~ok).sum())
    target.set_title(
        title
        if title is not None
        else f"{plural(int(ok.sum()), 'segment')} in {plural(len(lanes), 'file')}"
        + (f" ({skipped:,} without times skipped)" if skipped else ""),
        fontsize=10,
    )
    target.grid(axis="x", alpha=0.3)
    return target if fig is None else fig


def duration_plot(
    files: pd.DataFrame,
    *,
    duration: str = "duration",
    language: str | None = "language",
    file: str | None = "file",
    ax: Axes | None = None,
    title: str | None = None,
) -> Figure | Axes:
    """Per-file duration bars coloured by language, like the files table of a transcription.

    Bars are labelled by the ``file`` column (or the index when there is none) and coloured by
    ``language`` (a legend counts files per language; set ``language=None`` for one colour).
    Files without a duration (failed) are marked "n/a" at zero.

    >>> files = pd.DataFrame({"file": ["a.mp3", "b.wav"], "duration": [12.5, 3.0],
    ...                       "language": ["en", "de"]})
    >>> fig = duration_plot(files)
    >>> len(fig.axes[0].patches)
    2
    """
    if not isinstance(files, pd.DataFrame):
        raise InvalidParameterError(
            f"duration_plot() needs a DataFrame of files. Got {type(files).__name__}."
        )
    if file is not None and file not in files.columns:
        file = None  # fall back to the index
    if language is not None and language not in files.columns:
        if language != "language":  # a column the caller named must exist
            _require_columns(files, "duration_plot()", language=language)
        language = None  # the default column is optional
    lang = language
    _require_columns(files, "duration_plot()", duration=duration)
    secs = pd.to_numeric(files[duration], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    names = [_short_name(v) for v in (files[file] if file is not None else files.index.to_list())]
    if lang is not None:
        langs = [_MISSING_LABEL if _is_missing(v) else str(v) for v in files[lang]]
    else:
        langs = ["all"] * len(files)
    colors = _category_colors(langs)
    if ax is None:
        fig = _new_figure(8.0, min(1.2 + 0.35 * max(len(files), 1), 30.0))
        target = fig.subplots()
    else:
        fig, target = None, ax
    ypos = np.arange(len(files))
    target.barh(
        ypos,
        np.nan_to_num(secs, nan=0.0),
        color=[colors[v] for v in langs],
        height=0.7,
    )
    for y in ypos[~np.isfinite(secs)]:
        target.text(0, y, " n/a", va="center", fontsize=8, color=_ERROR_COLOR)
    target.set_yticks(ypos, labels=names)
    target.set_ylim(max(len(files), 1) - 0.5, -0.5)
    target.set_xlabel("duration (s)")
    if lang is not None:
        from matplotlib.patches import Patch

        counts = pd.Series(langs).value_counts()
        target.legend(
            handles=[Patch(color=c, label=f"{k} ({counts[k]})") for k, c in colors.items()],
            title=lang,
            fontsize=8,
            frameon=False,
            loc="upper left",
            bbox_to_anchor=(1.0, 1.0),
        )
    total = float(np.nansum(secs))
    if title is None:
        if total < 120:
            amount = f"{total:.0f} s"
        elif total < 7200:
            amount = f"{total / 60:.1f} min"
        else:
            amount = f"{total / 3600:.1f} h"
        title = f"{plural(len(files), 'file')}, {amount} in total"
    target.set_title(title, fontsize=10)
    target.grid(axis="x", alpha=0.3)
    return target if fig is None else fig
