"""``ResultFrame``: what task functions return — a DataFrame plus notebook display and helpers.

A ResultFrame behaves like its DataFrame for reading (``len``, ``[]``, ``.loc``, column
attributes, iteration, ``to_parquet`` ...) and renders in a notebook as a static HTML table with
inline media (thumbnails, ``<audio>``, ``<video>``) that survives export. ``.frame`` (or
``.to_pandas()``) is the plain DataFrame.

Row selections keep the result's kind: ``res[mask]``, ``res.loc[...]``, ``res.iloc[...]``,
``res.head()``, ``res.tail()``, ``res.query(...)``, ``res.sort_values(...)``, ``res.sample()``
... give a result of the same class over those rows, with its media and helpers (``.save``,
``.matrix``, ``.segments`` ...). A kind takes part by overriding :meth:`ResultFrame._take`
(build the result for some row positions; usually :meth:`ResultFrame._subset` plus the kind's
own per-row data). Selecting columns, or any other DataFrame method, gives a plain DataFrame.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ._common import plural

# The result seam: task modules render their media only through what is re-exported here.
from .display import _esc as esc_html
from .display import _open_image as open_image
from .display import audio_html, format_label, frame_html, image_grid_html, video_html

__all__ = [
    "STATUS_DTYPE",
    "ResultFrame",
    "atomic_write",
    "audio_html",
    "error_columns",
    "esc_html",
    "format_label",
    "frame_html",
    "image_grid",
    "image_grid_html",
    "open_image",
    "plural",
    "video_html",
    "write_media",
]


def image_grid(*args: Any, **kwargs: Any) -> Any:
    """:func:`deapi_ds.image_grid` for result classes (matplotlib is imported when drawn)."""
    from .plotting import image_grid as draw  # lazy: matplotlib

    return draw(*args, **kwargs)


STATUS_DTYPE = pd.StringDtype()

#: DataFrame methods that select or reorder rows (and keep every column): on a result they give
#: a result of the same kind.
ROW_METHODS = frozenset(
    {
        "drop",
        "drop_duplicates",
        "dropna",
        "head",
        "nlargest",
        "nsmallest",
        "query",
        "sample",
        "sort_index",
        "sort_values",
        "tail",
        "take",
        "truncate",
    }
)

#: the column that carries each row's position through a selection (never shown)
_POSITION = "__deapi_ds_position__"


class ResultFrame:
    """A task's result: ``.frame`` (a DataFrame) with rich display. Subclasses add helpers."""

    # A kind declares ``media = {"image": "image"}`` in its class body; __init_subclass__ moves
    # it here so that the public ``media`` is a property with a docstring of its own.
    _media_columns: Mapping[str, str] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        declared = cls.__dict__.get("media")
        if isinstance(declared, Mapping):
            cls._media_columns = dict(declared)
            delattr(cls, "media")

    @property
    def media(self) -> Mapping[str, str]:
        """Columns rendered inline in notebooks, mapped to their kind ("image", "audio" or
        "video"), e.g. ``{"image": "image"}``; empty for results without media."""
        return self._media_columns

    def __init__(self, frame: pd.DataFrame, *, meta: Mapping[str, Any] | None = None) -> None:
        #: The plain DataFrame behind this result (also :meth:`to_pandas`).
        self.frame = frame
        #: What the call was made with (model, options) and totals; a plain dict.
        self.meta = dict(meta or {})

    # DataFrame-like reading -----------------------------------------------------------------
    def to_pandas(self) -> pd.DataFrame:
        """The plain DataFrame behind this result (the same object as :attr:`frame`)."""
        return self.frame

    def __len__(self) -> int:
        return len(self.frame)

    def __iter__(self):
        return iter(self.frame)

    def __getitem__(self, key: Any) -> Any:
        if self._keeps_kind() and not _is_column_key(key, self.frame):
            return self._select(lambda tagged: tagged[key])
        return self.frame[key]

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name in ("frame", "meta"):
            raise AttributeError(name)
        value = getattr(self.frame, name)
        if name in ROW_METHODS and callable(value) and self._keeps_kind():

            def method(*args: Any, **kwargs: Any) -> Any:
                return self._select(lambda tagged: getattr(tagged, name)(*args, **kwargs))

            method.__name__ = name
            method.__doc__ = value.__doc__
            return method
        return value

    @property
    def loc(self) -> _Indexer:
        """``frame.loc``; a row selection is again a result of this kind (see the module doc)."""
        return _Indexer(self, "loc")

    @property
    def iloc(self) -> _Indexer:
        """``frame.iloc``; a row selection is again a result of this kind."""
        return _Indexer(self, "iloc")

    # row selections ---------------------------------------------------------------------------
    def _take(self, positions: np.ndarray) -> ResultFrame | None:
        """This kind of result over the rows at ``positions`` (in that order), or None when
        the kind cannot be rebuilt from some of its rows (then selections are DataFrames).

        Override in a few lines: ``new = self._subset(positions)``, then select the kind's own
        per-row data (``new.matrix = self.matrix[positions]``) and return ``new``."""
        return None

    def _subset(self, positions: np.ndarray) -> Any:
        """A shallow copy of this result over the rows at ``positions``: the start of ``_take``."""
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        new.frame = self.frame.iloc[positions]
        new.meta = dict(self.meta)
        return new

    @classmethod
    def _keeps_kind(cls) -> bool:
        return cls._take is not ResultFrame._take

    def _select(self, select: Any) -> Any:
        """Apply ``select`` to the frame with a hidden position column; a row selection with
        every column becomes ``self._take(positions)``, anything else comes back without it."""
        tagged = self.frame.assign(**{_POSITION: np.arange(len(self.frame))})
        out = select(tagged)
        if isinstance(out, pd.DataFrame) and _POSITION in out.columns:
            positions = out[_POSITION].to_numpy(dtype=np.intp)
            rest = out.drop(columns=[_POSITION])
            if rest.columns.equals(self.frame.columns):
                kept = self._take(positions)
                if kept is not None:
                    return kept
            return rest
        if isinstance(out, pd.Series) and _POSITION in out.index:
            return out.drop(_POSITION)
        return out

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | set(dir(self.frame)))

    @property
    def ok(self) -> np.ndarray:
        """Boolean mask (a numpy array) of the rows that succeeded (fresh or cached)."""
        return self.frame["status"].isin(["ok", "cached", "truncated"]).to_numpy()

    @property
    def failed(self) -> pd.DataFrame:
        """The rows that failed, with their error type and message."""
        return self.frame[self.frame["status"].eq("error").to_numpy()]

    def summary(self) -> str:
        """One line: the kind of result, its rows and how many of each status."""
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


def _is_column_key(key: Any, frame: pd.DataFrame) -> bool:
    """Whether ``frame[key]`` selects columns (a label or a list of labels), not rows."""
    if isinstance(key, slice):
        return False
    if isinstance(key, list | tuple | pd.Index) and len(key) and not isinstance(key[0], bool):
        return True
    try:
        return key in frame.columns
    except TypeError:  # unhashable: a mask or an array
        return False


class _Indexer:
    """Wraps ``.loc`` / ``.iloc`` so that row selections keep the result's kind."""

    def __init__(self, owner: ResultFrame, kind: str) -> None:
        self._owner = owner
        self._kind = kind

    def __getitem__(self, key: Any) -> Any:
        owner = self._owner
        if isinstance(key, tuple) and len(key) == 2:
            if not (isinstance(key[1], slice) and key[1] == slice(None)):
                return getattr(owner.frame, self._kind)[key]  # columns chosen: a plain selection
            key = key[0]
        if not owner._keeps_kind():
            return getattr(owner.frame, self._kind)[key]
        return owner._select(lambda tagged: getattr(tagged, self._kind)[key])

    def __setitem__(self, key: Any, value: Any) -> None:
        getattr(self._owner.frame, self._kind)[key] = value


def write_media(path: Path, data: bytes, *, overwrite: bool) -> None:
    """Write ``data`` to ``path`` for the ``save()`` methods of results.

    A file already holding these bytes is left as it is (a rerun saves nothing twice); one
    holding other bytes is replaced only with ``overwrite=True``, else FileExistsError.
    """
    if path.exists():
        if path.is_file() and path.read_bytes() == data:
            return
        if not overwrite:
            raise FileExistsError(
                f"{path} exists with other content; pass overwrite=True to replace it, or save "
                "into another folder."
            )
    atomic_write(path, data)


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename: never half a file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def error_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """Make sure ``status``, ``error_type``, ``error`` exist with string dtype."""
    for name in ("status", "error_type", "error"):
        if name not in frame.columns:
            frame[name] = pd.Series(pd.NA, index=frame.index, dtype=STATUS_DTYPE)
        else:
            frame[name] = frame[name].astype(STATUS_DTYPE)
    return frame
