"""``ResultFrame``: what task functions return — a DataFrame plus notebook display and helpers.

A ResultFrame behaves like its DataFrame for reading (``len``, ``[]``, ``.loc``, column
attributes, iteration, ``to_parquet`` ...) and renders in a notebook as a static HTML table with
inline media (thumbnails, ``<audio>``, ``<video>``) that survives export. ``.frame`` (or
``.to_pandas()``) is the plain DataFrame.

Kinds of result that can be rebuilt from a subset of their rows (``ImageResult``) implement
``_with_frame``; for them a row selection (``res[mask]``, ``res.loc[...]``, ``res.iloc[...]``,
``res.head()``, ``res.query(...)``, ``res.sort_values(...)`` ...) is again a result of the same
kind, with its helpers (``.save``, ``.grid``). Selecting columns gives a plain DataFrame.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import pandas as pd

# The result seam: task modules render their media only through what is re-exported here.
from .display import _esc as esc_html
from .display import _open_image as open_image
from .display import audio_html, format_label, frame_html, image_grid_html, video_html

__all__ = [
    "STATUS_DTYPE",
    "ResultFrame",
    "audio_html",
    "error_columns",
    "esc_html",
    "format_label",
    "frame_html",
    "image_grid",
    "image_grid_html",
    "open_image",
    "video_html",
]


def image_grid(*args: Any, **kwargs: Any) -> Any:
    """:func:`deapi_ds.image_grid` for result classes (matplotlib is imported when drawn)."""
    from .plotting import image_grid as draw  # lazy: matplotlib

    return draw(*args, **kwargs)


STATUS_DTYPE = pd.StringDtype()


class ResultFrame:
    """A task's result: ``.frame`` (a DataFrame) with rich display. Subclasses add helpers."""

    #: column name -> kind ("image", "audio", "video") rendered inline in notebooks
    media: Mapping[str, str] = {}

    def __init__(self, frame: pd.DataFrame, *, meta: Mapping[str, Any] | None = None) -> None:
        self.frame = frame
        self.meta = dict(meta or {})

    # DataFrame-like reading -----------------------------------------------------------------
    def to_pandas(self) -> pd.DataFrame:
        return self.frame

    def __len__(self) -> int:
        return len(self.frame)

    def __iter__(self):
        return iter(self.frame)

    def __getitem__(self, key: Any) -> Any:
        return self._wrap(self.frame[key])

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name in ("frame", "meta"):
            raise AttributeError(name)
        value = getattr(self.frame, name)
        if callable(value) and self._rebuildable():
            # Row-wise DataFrame methods (head, query, sort_values ...) keep the result's kind.
            @functools.wraps(value)
            def method(*args: Any, **kwargs: Any) -> Any:
                return self._wrap(value(*args, **kwargs))

            return method
        return value

    @property
    def loc(self) -> _Indexer:
        """``frame.loc``; a row selection is again a result of this kind (see the module doc)."""
        return _Indexer(self, self.frame.loc)

    @property
    def iloc(self) -> _Indexer:
        """``frame.iloc``; a row selection is again a result of this kind."""
        return _Indexer(self, self.frame.iloc)

    # row selections ---------------------------------------------------------------------------
    def _with_frame(self, frame: pd.DataFrame) -> ResultFrame | None:
        """A result of this kind over ``frame`` (some of this result's rows), or None when
        this kind cannot be rebuilt from its rows alone (then selections are DataFrames)."""
        return None

    @classmethod
    def _rebuildable(cls) -> bool:
        return cls._with_frame is not ResultFrame._with_frame

    def _wrap(self, value: Any) -> Any:
        if isinstance(value, pd.DataFrame) and value.columns.equals(self.frame.columns):
            out = self._with_frame(value)
            if out is not None:
                return out
        return value

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | set(dir(self.frame)))

    @property
    def ok(self) -> pd.Series:
        """Boolean mask of the rows that succeeded (fresh or cached)."""
        return self.frame["status"].isin(["ok", "cached", "truncated"]).to_numpy()

    @property
    def failed(self) -> pd.DataFrame:
        """The rows that failed, with their error type and message."""
        return self.frame[self.frame["status"].eq("error").to_numpy()]

    def summary(self) -> str:
        counts = self.frame["status"].value_counts()
        parts = [f"{n} {s}" for s, n in counts.items()]
        return f"{type(self).__name__}: {len(self.frame)} rows ({', '.join(parts) or 'none'})"

    # display --------------------------------------------------------------------------------
    def __repr__(self) -> str:
        shown = self.frame.drop(columns=[c for c in self.media if c in self.frame.columns])
        return f"{self.summary()}\n{shown!r}"

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        from .display import frame_html

        html = frame_html(self.frame, media=dict(self.media))
        return {"text/plain": repr(self), "text/html": f"<p>{self.summary()}</p>{html}"}


class _Indexer:
    """Wraps ``.loc`` / ``.iloc`` so that row selections keep the result's kind."""

    def __init__(self, owner: ResultFrame, indexer: Any) -> None:
        self._owner = owner
        self._indexer = indexer

    def __getitem__(self, key: Any) -> Any:
        return self._owner._wrap(self._indexer[key])

    def __setitem__(self, key: Any, value: Any) -> None:
        self._indexer[key] = value


def error_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """Make sure ``status``, ``error_type``, ``error`` exist with string dtype."""
    for name in ("status", "error_type", "error"):
        if name not in frame.columns:
            frame[name] = pd.Series(pd.NA, index=frame.index, dtype=STATUS_DTYPE)
        else:
            frame[name] = frame[name].astype(STATUS_DTYPE)
    return frame
