"""matplotlib plots: they return their Figure (or the given Axes) and handle failures."""

from __future__ import annotations

import base64
import io

import numpy as np
import pandas as pd
import pytest
from matplotlib.axes import Axes
from matplotlib.colors import to_hex
from matplotlib.figure import Figure
from PIL import Image

from deapi_ds._exceptions import InvalidParameterError
from deapi_ds.plotting import duration_plot, image_grid, projection_plot, timeline_plot


def png(w: int, h: int, color: str = "red") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), color).save(buf, "PNG")
    return buf.getvalue()


def texts(ax: Axes) -> str:
    return "\n".join(t.get_text() for t in ax.texts)


@pytest.fixture
def grid_frame():
    prompts = ["a red fox", "a blue whale"]
    seeds = [1, 2, 3]
    rows = [
        {"prompt": p, "seed": s, "model": "Flux1schnell", "image": png(96, 64), "error": None}
        for p in prompts
        for s in seeds
    ]
    rows[4]["image"] = None
    rows[4]["error"] = "429: rate limit exceeded <b>"
    return pd.DataFrame(rows)


def test_image_grid_row_col_facets(grid_frame):
    import matplotlib.pyplot as plt

    fig = image_grid(grid_frame, row="prompt", col="seed")
    assert isinstance(fig, Figure)
    assert plt.gcf() is fig  # made through pyplot: plt.show() shows it
    assert len(fig.axes) == 6
    titles = [ax.get_title() for ax in fig.axes]
    # margin titles (seaborn style): column values over the top row, row values on the left,
    # instead of "prompt = ... | seed = 1" repeated (and cut off) over every cell
    assert titles == ["seed = 1", "seed = 2", "seed = 3", "", "", ""]
    assert [ax.get_ylabel() for ax in fig.axes] == [
        "prompt = a red fox",
        "",
        "",
        "prompt = a blue whale",
        "",
        "",
    ]
    failed = fig.axes[4]
    assert not failed.images and "429: rate limit exceeded <b>" in " ".join(texts(failed).split())
    assert to_hex(failed.get_facecolor()) == "#dddddd"
    ok = fig.axes[0]
    assert ok.images[0].get_array().shape == (64, 96, 3)  # full resolution
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=50)
    assert out.getvalue().startswith(b"\x89PNG")


def test_image_grid_wraps_and_labels(grid_frame):
    fig = image_grid(grid_frame.iloc[:5], label="{prompt} s={seed}", col_wrap=2)
    assert len(fig.axes) == 5  # 2 + 2 + a partial row of 1; the empty slot is removed
    assert fig.axes[0].get_title() == "a red fox s=1"
    assert [ax.get_subplotspec().get_geometry()[:2] for ax in fig.axes][-1] == (3, 2)
    by_col = image_grid(grid_frame[grid_frame["prompt"] == "a red fox"], col="seed", col_wrap=2)
    assert len(by_col.axes) == 3
    assert by_col.axes[2].get_title() == "seed = 3"
    by_row = image_grid(grid_frame[grid_frame["seed"] == 1], row="prompt", label="model")
    assert len(by_row.axes) == 2 and by_row.axes[0].get_title() == "Flux1schnell"


def test_image_grid_missing_combination_and_decode_failure():
    df = pd.DataFrame(
        {
            "prompt": ["a", "a", "b"],
            "seed": [1, 2, 1],
            "image": [png(32, 32), b"garbage bytes", Image.new("RGBA", (40, 20))],
        }
    )
    fig = image_grid(df, row="prompt", col="seed")
    assert len(fig.axes) == 4
    assert not fig.axes[3].axison  # (b, 2) has no data
    assert "cannot decode image" in texts(fig.axes[1])
    assert fig.axes[2].images[0].get_array().shape == (20, 40, 4)


def test_image_grid_from_list_and_into_axes():
    from matplotlib.figure import Figure

    images = [png(64, 32), None, Image.new("L", (16, 64)), np.zeros((10, 10, 3), np.uint8)]
    fig = image_grid(images, col_wrap=3)
    assert len(fig.axes) == 4
    assert "failed: no image" in texts(fig.axes[1])

    ax = Figure().subplots()
    out = image_grid(images, col_wrap=2, ax=ax, label=lambda r: "x")
    assert out is ax
    assert len(ax.images) == 1  # one montage
    canvas = ax.images[0].get_array()
    assert canvas.ndim == 3 and canvas.shape[0] > 2 * 64 and canvas.shape[1] > 2 * 64
    assert "failed: no image" in texts(ax)


def test_image_grid_errors(grid_frame):
    with pytest.raises(InvalidParameterError, match="one image per cell"):
        image_grid(grid_frame, col="seed")
    with pytest.raises(InvalidParameterError, match="Column 'style' not found"):
        image_grid(grid_frame, row="style")
    with pytest.raises(InvalidParameterError, match="neither a column nor a format string"):
        image_grid(grid_frame, label="nope")
    with pytest.raises(InvalidParameterError, match="needs data"):
        image_grid()
    with pytest.raises(InvalidParameterError, match="col_wrap"):
        image_grid(grid_frame, col_wrap=0)
    with pytest.raises(InvalidParameterError, match="empty"):
        image_grid(grid_frame.iloc[:0])


def test_projection_plot_pca_and_labels():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(300, 32)) * 0.05
    base[:, 3] += np.repeat([-5.0, 0.0, 5.0], 100)  # the main direction of variance
    base[7] = np.nan
    labels = pd.Series(np.repeat(["sport", "tech", "food"], 100), name="topic")
    fig = projection_plot(base, labels)
    ax = fig.axes[0]
    assert ax.get_xlabel().startswith("PC1 (") and float(ax.get_xlabel()[5:9]) > 90
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert sorted(legend) == ["food (100)", "sport (99)", "tech (100)"]
    assert ax.get_legend().get_title().get_text() == "topic"
    assert "1 rows without vectors left out" in ax.get_title()
    xs = np.concatenate([c.get_offsets()[:, 0] for c in ax.collections])
    assert len(xs) == 299

    target = Figure().subplots()
    assert projection_plot(base, ax=target, title="mine") is target
    assert target.get_title() == "mine"
    column = pd.Series(list(base.astype(np.float32)), dtype=object)
    numeric = projection_plot(column, np.arange(300.0))
    assert len(numeric.axes) == 2  # plot + colour bar
    sampled = projection_plot(base, max_points=50).axes[0]
    assert len(sampled.collections[0].get_offsets()) == 50


def test_projection_plot_errors():
    with pytest.raises(InvalidParameterError, match="must be 'pca'"):
        projection_plot(np.ones((3, 3)), method="tsne")
    with pytest.raises(InvalidParameterError, match="one label per row"):
        projection_plot(np.ones((3, 3)), ["a"])
    with pytest.raises(InvalidParameterError, match="at least 2 rows"):
        projection_plot(np.full((3, 3), np.nan))


def test_timeline_plot():
    segs = pd.DataFrame(
        {
            "file": ["clips/a.wav", "clips/a.wav", "clips/b.mp3", "clips/b.mp3", "c.flac"],
            "start": [0.0, 2.5, 1.0, np.nan, 0.5],
            "end": [2.0, 4.0, 3.5, 5.0, 9.0],
            "language": ["en", "en", "de", "de", None],
        }
    )
    fig = timeline_plot(segs)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a.wav", "b.mp3", "c.flac"]
    bars = sum(len(c.get_paths()) for c in ax.collections)
    assert bars == 4  # the segment without a start is skipped
    assert "1 without times skipped" in ax.get_title()
    assert ax.get_xlim()[1] == pytest.approx(9.0 * 1.02)
    target = Figure().subplots()
    assert timeline_plot(segs, hue="language", ax=target) is target
    assert [t.get_text() for t in target.get_legend().get_texts()] == ["en", "de", "unknown"]
    empty = timeline_plot(segs.iloc[:0]).axes[0]
    assert "no segments" in texts(empty)
    with pytest.raises(InvalidParameterError, match="Column 'begin' not found"):
        timeline_plot(segs, start="begin")


def test_duration_plot():
    files = pd.DataFrame(
        {
            "file": ["/data/a.mp3", "/data/b.wav", "/data/c.ogg"],
            "duration": [62.0, np.nan, 100.0],
            "language": ["en", "de", "en"],
        }
    )
    fig = duration_plot(files)
    ax = fig.axes[0]
    assert len(ax.patches) == 3
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a.mp3", "b.wav", "c.ogg"]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["en (2)", "de (1)"]
    assert ax.patches[0].get_width() == 62.0
    assert ax.patches[0].get_facecolor() == ax.patches[2].get_facecolor()
    assert "n/a" in texts(ax)
    assert ax.get_title() == "3 files, 2.7 min in total"
    assert duration_plot(files.iloc[:1]).axes[0].get_title() == "1 file, 62 s in total"
    target = Figure().subplots()
    assert duration_plot(files.drop(columns="language"), ax=target) is target
    assert target.get_legend() is None
    with pytest.raises(InvalidParameterError, match="Column 'lang' not found"):
        duration_plot(files, language="lang")
    with pytest.raises(InvalidParameterError, match="Column 'seconds' not found"):
        duration_plot(files, duration="seconds")


class _Shell:
    """Enough of an IPython shell for the figure formatters."""

    def __init__(self):
        import matplotlib
        from IPython.core.formatters import DisplayFormatter

        matplotlib.get_backend()  # resolved outside the fake shell (no event hooks here)
        self.display_formatter = DisplayFormatter()


def _figure_formatter(shell, mime):
    try:
        return shell.display_formatter.formatters[mime].lookup_by_type(Figure)
    except KeyError:
        return None


def test_returned_figure_displays_in_a_fresh_kernel(monkeypatch):
    import IPython

    shell = _Shell()
    monkeypatch.setattr(IPython, "get_ipython", lambda: shell)
    assert _figure_formatter(shell, "image/png") is None  # a fresh kernel: <Figure size ...>
    fig = image_grid([png(32, 32)])
    data = shell.display_formatter.formatters["image/png"](fig)
    raw = base64.b64decode(data) if isinstance(data, str) else data  # IPython 8 sends base64
    assert raw[:8] == b"\x89PNG\r\n\x1a\n"


def test_figure_display_keeps_the_users_format(monkeypatch):
    import IPython
    from IPython.core.pylabtools import select_figure_formats

    shell = _Shell()
    select_figure_formats(shell, {"svg"})  # %config InlineBackend.figure_formats = ["svg"]
    monkeypatch.setattr(IPython, "get_ipython", lambda: shell)
    image_grid([png(32, 32)])
    assert _figure_formatter(shell, "image/svg+xml") is not None
    assert _figure_formatter(shell, "image/png") is None  # not switched to PNG behind its back


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # matplotlib_inline's traitlets API
def test_figure_display_follows_the_inline_backend_configuration(monkeypatch):
    import IPython

    inline = pytest.importorskip("matplotlib_inline.config")
    config = inline.InlineBackend.instance()
    monkeypatch.setattr(config, "figure_formats", {"svg"})  # %config InlineBackend.figure_...
    shell = _Shell()
    monkeypatch.setattr(IPython, "get_ipython", lambda: shell)
    image_grid([png(32, 32)])  # before any %matplotlib inline or pyplot figure
    assert _figure_formatter(shell, "image/svg+xml") is not None
    assert _figure_formatter(shell, "image/png") is None


def test_long_captions_keep_their_last_line():
    df = pd.DataFrame(
        {
            "image": [png(64, 64)],
            "caption": ["a very long prompt " * 10 + "\nseed 7 · Flux1schnell"],
        }
    )
    title = image_grid(df, label="caption", height=2.0).axes[0].get_title()
    assert title.count("\n") <= 2 and "…" in title
    assert title.endswith("seed 7 · Flux1schnell")  # the prompt is cut, not the seed line


def test_image_grid_fits_a_notebook_and_keeps_explicit_height():
    wide = pd.DataFrame({"image": [png(300, 100)] * 8})
    fig = image_grid(wide)  # 4 columns of 3:1 images: 24 inches wide at height=3
    assert fig.get_figwidth() <= 10.5
    assert image_grid(wide, height=2.0).get_figwidth() == pytest.approx(4 * 2.0 * 2.0)


def test_montage_texts_fit_their_tiles():
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure as Fig

    df = pd.DataFrame(
        {
            "image": [None] * 12,
            "error": ["500 ServerError from POST /v1/images/generations: injected " * 3] * 12,
        }
    )
    fig = Fig(figsize=(8, 2.5))  # wide and short: the height limits the tiles
    ax = fig.subplots()
    image_grid(df, ax=ax, col_wrap=4)
    fig.canvas.draw()
    tile_px = ax.get_window_extent().height / 3 * 0.9  # 3 rows of tiles (minus gaps)
    for text in ax.texts:
        assert text.get_window_extent().height <= tile_px
