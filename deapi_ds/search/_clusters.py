"""Clusters and maps of an embedded frame: k-means or HDBSCAN, labels from distinctive words
(class-based TF-IDF, as BERTopic does), 2-D maps (PCA, or UMAP when installed) drawn as a
matplotlib Figure or as an SVG scatter whose points show their text on hover.

>>> import numpy as np, pandas as pd
>>> rng = np.random.default_rng(0)
>>> centers = np.eye(4, dtype=np.float32)[[0, 0, 1, 1, 2, 2]]
>>> vectors = centers + 0.05 * rng.standard_normal((6, 4)).astype(np.float32)
>>> texts = ["red apple pie", "apple tart", "fast car race", "car engine", "blue sea", "sea wave"]
>>> cl = cluster(vectors, text=texts, n_clusters=3, engine="numpy")
>>> cl.labels.tolist()
[0, 0, 1, 1, 2, 2]
>>> cl.topics["label"].tolist()
['apple · pie · red', 'car · engine · fast', 'sea · blue · wave']
"""

from __future__ import annotations

import base64
import math
from collections import Counter
from collections.abc import Sequence
from html import escape
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from deapi_ds._exceptions import InvalidParameterError

from ._dense import _check_int, _row_weights
from ._duplicates import _vectors_and_labels
from ._lexical import STOP_WORDS, tokenize

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["Clusters", "ScatterMap", "cluster", "plot_map", "project", "scatter_map"]

#: matplotlib's tab10 then tab20's light shades: cluster colours, -1 (noise) grey.
_PALETTE = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94",
    "#f7b6d2", "#c7c7c7", "#dbdb8d", "#9edae5",
]  # fmt: skip
_NOISE = "#b0b0b0"


def _color(label: Any) -> str:
    if label is None or label is pd.NA or (isinstance(label, float) and math.isnan(label)):
        return _NOISE
    try:
        i = int(label)
    except (TypeError, ValueError):
        i = abs(hash(str(label)))
    return _NOISE if i < 0 else _PALETTE[i % len(_PALETTE)]


def _unit_rows(x: np.ndarray, valid: np.ndarray, inv: np.ndarray) -> np.ndarray:
    out = np.asarray(x[valid], dtype=np.float32) * inv[valid, None]
    return np.ascontiguousarray(out)


# --------------------------------------------------------------------------- k-means


def _kmeans_numpy(x: np.ndarray, k: int, seed: int, iters: int = 100) -> np.ndarray:
    """Spherical k-means (cosine) with k-means++ seeding; rows of ``x`` have unit length."""
    rng = np.random.default_rng(seed)
    n = x.shape[0]
    centers = np.empty((k, x.shape[1]), dtype=np.float32)
    centers[0] = x[rng.integers(n)]
    dist = np.maximum(0.0, 2 - 2 * (x @ centers[0]))
    for c in range(1, k):
        total = dist.sum()
        pick = rng.choice(n, p=dist / total) if total > 0 else rng.integers(n)
        centers[c] = x[pick]
        dist = np.minimum(dist, np.maximum(0.0, 2 - 2 * (x @ centers[c])))
    labels = np.full(n, -1, dtype=np.int64)
    for _ in range(iters):
        new = np.empty(n, dtype=np.int64)
        for s in range(0, n, 65536):
            new[s : s + 65536] = np.argmax(x[s : s + 65536] @ centers.T, axis=1)
        if np.array_equal(new, labels):
            break
        labels = new
        for c in range(k):
            members = x[labels == c]
            if len(members):
                mean = members.sum(axis=0)
                norm = np.linalg.norm(mean)
                centers[c] = mean / norm if norm > 0 else centers[c]
    return labels


def _renumber_by_size(labels: np.ndarray) -> np.ndarray:
    """Clusters numbered 0, 1, ... by decreasing size (ties: first row), noise stays -1."""
    ids = np.unique(labels[labels >= 0])
    if ids.size == 0:
        return labels
    sizes = np.array([np.count_nonzero(labels == i) for i in ids])
    firsts = np.array([np.argmax(labels == i) for i in ids])
    order = ids[np.lexsort((firsts, -sizes))]
    mapping = np.full(int(ids.max()) + 1, -1, dtype=np.int64)
    mapping[order] = np.arange(order.size)
    out = labels.copy()
    out[labels >= 0] = mapping[labels[labels >= 0]]
    return out


def _fit_labels(
    x: np.ndarray, method: str, n_clusters: int, min_cluster_size: int, seed: int, engine: str
) -> np.ndarray:
    if method == "hdbscan":
        try:
            from sklearn.cluster import HDBSCAN
        except ImportError as exc:
            raise InvalidParameterError(
                "method='hdbscan' needs scikit-learn >= 1.3: pip install 'deapi-ds[sklearn]'."
            ) from exc
        model = HDBSCAN(min_cluster_size=min_cluster_size, metric="euclidean", copy=True)
        return model.fit_predict(x).astype(np.int64)
    if n_clusters > x.shape[0]:
        raise InvalidParameterError(
            f"n_clusters={n_clusters} is more than the {x.shape[0]} rows with a vector."
        )
    if engine in ("auto", "sklearn"):
        try:
            from sklearn.cluster import KMeans
        except ImportError as exc:
            if engine == "sklearn":
                raise InvalidParameterError(
                    "engine='sklearn' needs scikit-learn: pip install 'deapi-ds[sklearn]'."
                ) from exc
        else:
            model = KMeans(n_clusters=n_clusters, n_init=4, random_state=seed)
            return model.fit_predict(x).astype(np.int64)
    return _kmeans_numpy(x, n_clusters, seed)


# --------------------------------------------------------------------------- labels


def _ctfidf(texts: Sequence[Any], labels: np.ndarray, n_words: int) -> dict[int, list[str]]:
    """Each cluster's ``n_words`` most distinctive words (class-based TF-IDF)."""
    counts: dict[int, Counter[str]] = {}
    for text, label in zip(texts, labels.tolist(), strict=True):
        if label < 0:
            continue
        words = [
            w for w in tokenize(text) if w not in STOP_WORDS and len(w) > 1 and not w.isdigit()
        ]
        counts.setdefault(label, Counter()).update(words)
    if not counts:
        return {}
    total: Counter[str] = Counter()
    for c in counts.values():
        total.update(c)
    avg = sum(total.values()) / len(counts)
    out = {}
    for label, c in counts.items():
        size = sum(c.values()) or 1
        scored = [(-(n / size) * math.log(1 + avg / total[w]), w) for w, n in c.items()]
        out[label] = [w for _, w in sorted(scored)[:n_words]]
    return out


class Clusters:
    """What :func:`cluster` found.

    * ``labels``: the cluster of each row (a Series aligned with the data, Int64: -1 is
      HDBSCAN's noise, NA a row without a vector), clusters numbered by decreasing size;
    * ``topics``: one row per cluster: ``size``, ``words`` (most distinctive first),
      ``label`` (the first three joined) and ``example`` (the text nearest the centre);
    * :meth:`map`, :meth:`plot` and :meth:`scatter`: the rows in 2-D, coloured by cluster.
    """

    def __init__(
        self,
        labels: pd.Series,
        topics: pd.DataFrame,
        vectors: np.ndarray,
        texts: list[Any] | None,
    ) -> None:
        self.labels = labels
        self.topics = topics
        self._vectors = vectors
        self._texts = texts
        self._maps: dict[str, pd.DataFrame] = {}

    def __repr__(self) -> str:
        n = len(self.topics)
        noise = int((self.labels == -1).sum())
        extra = f", {noise} noise rows" if noise else ""
        body = self.topics[["size", "label"]].to_string()
        return (
            f"deapi_ds.search.Clusters({n} clusters over {len(self.labels):,} rows{extra})\n{body}"
        )

    def _repr_html_(self) -> str:
        return self.topics.drop(columns=["words"]).to_html()

    def cluster_label(self) -> pd.Series:
        """Each row's cluster label text (``topics.label``; "noise" / NA otherwise)."""
        names = self.topics["label"].to_dict()
        values = [
            pd.NA if v is pd.NA else ("noise" if v < 0 else names.get(int(v), pd.NA))
            for v in self.labels.tolist()
        ]
        return pd.Series(
            pd.array(values, dtype="string"), index=self.labels.index, name="cluster_label"
        )

    def map(self, method: Literal["pca", "umap"] = "pca", *, seed: int = 0) -> pd.DataFrame:
        """The rows in 2-D (columns ``x`` and ``y``, NaN for rows without a vector)."""
        if method not in self._maps:
            xy = project(self._vectors, method=method, seed=seed)
            xy.index = self.labels.index
            self._maps[method] = xy
        return self._maps[method]

    def plot(self, method: Literal["pca", "umap"] = "pca", *, title: str | None = None) -> Figure:
        """The 2-D map as a Figure, a colour per cluster and its label at its centre."""
        xy = self.map(method)
        names = self.topics["label"].to_dict()
        return plot_map(
            xy,
            hue=self.labels,
            names=names,
            title=title or f"{len(names)} clusters ({method.upper()})",
        )

    def scatter(self, method: Literal["pca", "umap"] = "pca", **kwargs: Any) -> ScatterMap:
        """The 2-D map as an interactive SVG scatter (hover a point to read its text)."""
        xy = self.map(method)
        texts = self._texts if self._texts is not None else [str(i) for i in self.labels.index]
        return scatter_map(
            xy, text=texts, hue=self.labels, names=self.topics["label"].to_dict(), **kwargs
        )


def cluster(
    data: Any,
    column: Any = None,
    *,
    text: Any = None,
    method: Literal["kmeans", "hdbscan"] = "kmeans",
    n_clusters: int = 8,
    min_cluster_size: int = 10,
    n_words: int = 5,
    engine: Literal["auto", "sklearn", "numpy"] = "auto",
    seed: int = 0,
) -> Clusters:
    """Group the rows of an embedded frame and label each group by its distinctive words.

    ``data`` is a DataFrame with a vector ``column`` (default ``"embedding"``), a
    :class:`~deapi_ds.search.SearchIndex`, an :class:`~deapi_ds.EmbeddingResult` or a matrix.
    ``text`` gives the texts for the labels: a column name of the frame, or a Series / list
    aligned with the rows (default: the index's ``text_column``). Vectors are compared by
    cosine (normalized first).

    ``method="kmeans"`` makes ``n_clusters`` clusters (scikit-learn's ``KMeans`` when
    installed, else a numpy spherical k-means; ``engine=`` chooses); ``"hdbscan"`` finds as
    many as the density shows, of at least ``min_cluster_size`` rows, and leaves the rest as
    noise (-1; needs scikit-learn >= 1.3). Each cluster's label is its ``n_words`` words of
    highest class-based TF-IDF (frequent in the cluster, rare in the others). ``seed`` makes
    the result repeatable.
    """
    where = "cluster()"
    if method not in ("kmeans", "hdbscan"):
        raise InvalidParameterError(
            f"The 'method' parameter of {where} must be 'kmeans' or 'hdbscan'. Got {method!r}."
        )
    if engine not in ("auto", "sklearn", "numpy"):
        raise InvalidParameterError(
            f"The 'engine' parameter of {where} must be 'auto', 'sklearn' or 'numpy'. Got {engine!r}."
        )
    n_clusters = _check_int(n_clusters, "n_clusters", 1, where)
    min_cluster_size = _check_int(min_cluster_size, "min_cluster_size", 2, where)
    n_words = _check_int(n_words, "n_words", 1, where)
    x, index = _vectors_and_labels(data, column, "cluster")
    texts = _texts(data, text, len(index))
    inv, valid = _row_weights(x, 65536)
    if not valid.any():
        raise InvalidParameterError("cluster(): no row has a vector.")
    unit = _unit_rows(x, valid, inv)
    found = _renumber_by_size(_fit_labels(unit, method, n_clusters, min_cluster_size, seed, engine))
    labels = np.full(len(index), -2, dtype=np.int64)
    labels[valid] = found
    series = pd.Series(
        pd.array(np.where(labels == -2, 0, labels), dtype="Int64"), index=index, name="cluster"
    )
    series[labels == -2] = pd.NA
    topics = _topics(
        found, unit, [texts[i] for i in np.flatnonzero(valid)] if texts else None, n_words
    )
    return Clusters(series, topics, x, texts)


def _texts(data: Any, text: Any, n: int) -> list[Any] | None:
    from ._index import SearchIndex

    if text is None and isinstance(data, SearchIndex) and data.text_column is not None:
        text = data.frame[data.text_column]
    if isinstance(text, str):
        frame = data.frame if isinstance(data, SearchIndex) else data
        if not isinstance(frame, pd.DataFrame) or text not in frame.columns:
            have = list(frame.columns) if isinstance(frame, pd.DataFrame) else []
            raise InvalidParameterError(
                f"text={text!r} is not a column of the data. Available columns: {have}."
            )
        text = frame[text]
    if text is None:
        return None
    values = list(text.to_numpy(dtype=object) if isinstance(text, pd.Series) else text)
    if len(values) != n:
        raise InvalidParameterError(
            f"text has {len(values):,} values but the data {n:,} rows; they must be aligned."
        )
    return values


def _topics(
    labels: np.ndarray, unit: np.ndarray, texts: list[Any] | None, n_words: int
) -> pd.DataFrame:
    ids = sorted(int(i) for i in np.unique(labels) if i >= 0)
    words = _ctfidf(texts, labels, n_words) if texts is not None else {}
    rows = []
    for c in ids:
        members = np.flatnonzero(labels == c)
        centre = unit[members].mean(axis=0)
        nearest = int(members[np.argmax(unit[members] @ centre)])
        w = words.get(c, [])
        rows.append(
            {
                "cluster": c,
                "size": members.size,
                "words": w,
                "label": " · ".join(w[:3]) if w else f"cluster {c}",
                "example": texts[nearest] if texts is not None else pd.NA,
            }
        )
    out = pd.DataFrame(rows, columns=["cluster", "size", "words", "label", "example"]).set_index(
        "cluster"
    )
    out["label"] = out["label"].astype("string")
    return out


# --------------------------------------------------------------------------- maps


def project(
    data: Any,
    column: Any = None,
    *,
    method: Literal["pca", "umap"] = "pca",
    seed: int = 0,
) -> pd.DataFrame:
    """The rows of an embedded frame in 2-D: a frame with ``x`` and ``y`` aligned with the rows.

    ``method="pca"`` (default, numpy, deterministic: component signs are fixed) projects the
    normalized vectors on their two main axes; ``"umap"`` uses ``umap-learn`` when installed
    (``pip install 'deapi-ds[umap]'``), which keeps neighbours together better. Rows without a vector
    get NaN.
    """
    if method not in ("pca", "umap"):
        raise InvalidParameterError(
            f"The 'method' parameter of project() must be 'pca' or 'umap'. Got {method!r}."
        )
    x, index = _vectors_and_labels(data, column, "project")
    inv, valid = _row_weights(x, 65536)
    unit = _unit_rows(x, valid, inv)
    out = np.full((len(index), 2), np.nan, dtype=np.float32)
    if unit.shape[0] >= 2:
        out[valid] = _umap(unit, seed) if method == "umap" else _pca(unit)
    return pd.DataFrame(out, index=index, columns=["x", "y"])


def _pca(unit: np.ndarray) -> np.ndarray:
    mean = unit.mean(axis=0, dtype=np.float64)
    cov = np.zeros((unit.shape[1], unit.shape[1]), dtype=np.float64)
    for s in range(0, unit.shape[0], 65536):
        block = unit[s : s + 65536] - mean.astype(np.float32)
        cov += block.T.astype(np.float64) @ block
    _, vecs = np.linalg.eigh(cov)
    axes = vecs[:, ::-1][:, :2]
    signs = np.sign(axes[np.argmax(np.abs(axes), axis=0), [0, 1]])
    axes = (axes * np.where(signs == 0, 1, signs)).astype(np.float32)
    return (unit - mean.astype(np.float32)) @ axes


def _umap(unit: np.ndarray, seed: int) -> np.ndarray:
    try:
        import umap
    except ImportError as exc:
        raise InvalidParameterError(
            "method='umap' needs umap-learn: pip install 'deapi-ds[umap]' (or use method='pca')."
        ) from exc
    reducer = umap.UMAP(n_components=2, metric="cosine", random_state=seed)
    return reducer.fit_transform(unit).astype(np.float32)


def _xy(xy: Any) -> pd.DataFrame:
    if isinstance(xy, pd.DataFrame) and {"x", "y"} <= set(xy.columns):
        return xy[["x", "y"]]
    arr = np.asarray(xy, dtype=np.float32)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise InvalidParameterError(
            "The map must be a frame with columns 'x' and 'y' (from project()) or an (n, 2) array."
        )
    return pd.DataFrame(arr, columns=["x", "y"])


def _aligned(values: Any, n: int, name: str) -> list[Any] | None:
    if values is None:
        return None
    out = list(values.to_numpy(dtype=object) if isinstance(values, pd.Series) else values)
    if len(out) != n:
        raise InvalidParameterError(f"{name} has {len(out):,} values but the map {n:,} points.")
    return out


def plot_map(
    xy: Any,
    *,
    hue: Any = None,
    names: dict[Any, str] | None = None,
    title: str | None = None,
    ax: Any = None,
) -> Figure:
    """A 2-D map (from :func:`project`) as a scatter plot, coloured by ``hue`` (e.g. cluster
    labels), with ``names[h]`` written at the centre of each colour. Made through pyplot
    (``plt.show()`` shows it); with ``ax=`` it draws there and returns that Axes' Figure."""
    import matplotlib.pyplot as plt

    frame = _xy(xy)
    hues = _aligned(hue, len(frame), "hue")
    if ax is None:
        fig, ax = plt.subplots(figsize=(7, 5.5), layout="constrained")
    else:
        fig = ax.figure
    ok = frame[["x", "y"]].notna().all(axis=1).to_numpy()
    x, y = frame["x"].to_numpy(float), frame["y"].to_numpy(float)
    colors = [_color(h) for h in hues] if hues is not None else ["#1f77b4"] * len(frame)
    size = max(2.0, min(30.0, 3000 / max(1, ok.sum())))
    ax.scatter(
        x[ok],
        y[ok],
        c=np.asarray(colors, dtype=object)[ok].tolist(),
        s=size,
        alpha=0.7,
        linewidths=0,
    )
    if hues is not None and names:
        groups = pd.Series(hues, dtype=object)[ok]
        for h, idx in groups.groupby(groups).groups.items():
            if h in names and not (isinstance(h, (int, np.integer)) and h < 0):
                pos = np.asarray(list(idx))
                ax.annotate(
                    str(names[h]), (np.median(x[pos]), np.median(y[pos])), ha="center",
                    fontsize=8, weight="bold", bbox={"boxstyle": "round,pad=0.2", "fc": "white", "alpha": 0.75, "lw": 0},
                )  # fmt: skip
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title)
    return fig


class ScatterMap:
    """An SVG scatter of a 2-D map whose points show their text on hover (SVG ``<title>``).

    In a notebook it displays as HTML (hover works in Jupyter and in exported HTML) with a
    PNG of the same map as the fallback for exports that show images only. ``svg`` is the
    markup; :meth:`save` writes a self-contained ``.html`` or ``.svg``.
    """

    def __init__(self, svg: str, png: Any) -> None:
        self.svg = svg
        self._png = png

    def __repr__(self) -> str:
        return f"deapi_ds.search.ScatterMap({self.svg.count('<circle')} points)"

    def _repr_html_(self) -> str:
        return self.svg

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        bundle: dict[str, Any] = {"text/plain": repr(self), "text/html": self.svg}
        png = self._png() if callable(self._png) else self._png
        if png:
            bundle["image/png"] = base64.b64encode(png).decode("ascii")
        return bundle

    def save(self, path: Any) -> Any:
        """Write the scatter as ``.svg`` or ``.html`` (by the suffix); returns the path."""
        from pathlib import Path

        path = Path(path)
        if path.suffix.lower() not in (".svg", ".html", ".htm"):
            raise InvalidParameterError(
                f"ScatterMap.save() writes .svg or .html files. Got {path.name!r}."
            )
        text = (
            self.svg
            if path.suffix.lower() == ".svg"
            else f"<!doctype html><meta charset='utf-8'>{self.svg}"
        )
        path.write_text(text, encoding="utf-8")
        return path


def scatter_map(
    xy: Any,
    *,
    text: Any = None,
    hue: Any = None,
    names: dict[Any, str] | None = None,
    width: int = 640,
    height: int = 480,
    max_points: int = 5000,
    seed: int = 0,
) -> ScatterMap:
    """An interactive scatter of a 2-D map (from :func:`project`): hover a point to read its
    ``text`` (and its ``hue``'s name). More than ``max_points`` points are sampled (with
    ``seed``) to keep the notebook light. Returns a :class:`ScatterMap`."""
    max_points = _check_int(max_points, "max_points", 1, "scatter_map()")
    frame = _xy(xy)
    texts = _aligned(text, len(frame), "text")
    hues = _aligned(hue, len(frame), "hue")
    ok = np.flatnonzero(frame[["x", "y"]].notna().all(axis=1).to_numpy())
    if ok.size > max_points:
        ok = np.sort(np.random.default_rng(seed).choice(ok, max_points, replace=False))
    x, y = frame["x"].to_numpy(float)[ok], frame["y"].to_numpy(float)[ok]
    pad = 12
    x0, y0 = (x.min(), y.min()) if ok.size else (0.0, 0.0)
    span_x = float(x.max() - x0) if ok.size else 0.0
    span_y = float(y.max() - y0) if ok.size else 0.0
    px = pad + (x - x0) / (span_x or 1.0) * (width - 2 * pad)
    py = height - pad - (y - y0) / (span_y or 1.0) * (height - 2 * pad)
    radius = max(2.0, min(6.0, 300 / math.sqrt(max(1, ok.size))))
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" style="background:#fff;border:1px solid #ddd">'
    ]
    for j, i in enumerate(ok.tolist()):
        h = hues[i] if hues is not None else None
        tip = "" if texts is None else str(texts[i])
        if h is not None and names and h in names:
            tip = f"[{names[h]}] {tip}"
        parts.append(
            f'<circle cx="{px[j]:.1f}" cy="{py[j]:.1f}" r="{radius:.1f}" fill="{_color(h)}" '
            f'fill-opacity="0.75"><title>{escape(tip[:300])}</title></circle>'
        )
    parts.append("</svg>")

    def png() -> bytes:
        import io

        import matplotlib.pyplot as plt

        fig = plot_map(frame, hue=hues, names=names)
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=80)
        plt.close(fig)
        return buffer.getvalue()

    return ScatterMap("".join(parts), png)
