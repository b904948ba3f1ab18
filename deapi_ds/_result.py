"""``ResultFrame``: what task functions return — a DataFrame plus notebook display and helpers.

A ResultFrame behaves like its DataFrame for reading (``len``, ``[]``, ``.loc``, column
attributes, iteration, ``to_parquet`` ...) and renders in a notebook as a static HTML table with
inline media (thumbnails, ``<audio>``, ``<video>``) that survives export. ``.frame`` (or
``.to_pandas()``) is the plain DataFrame.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

__all__ = ["ResultFrame", "STATUS_DTYPE", "error_columns"]

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
        return self.frame[key]

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name in ("frame", "meta"):
            raise AttributeError(name)
        return getattr(self.frame, name)

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


def error_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """Make sure ``status``, ``error_type``, ``error`` exist with string dtype."""
    for name in ("status", "error_type", "error"):
        if name not in frame.columns:
            frame[name] = pd.Series(pd.NA, index=frame.index, dtype=STATUS_DTYPE)
        else:
            frame[name] = frame[name].astype(STATUS_DTYPE)
    return frame
