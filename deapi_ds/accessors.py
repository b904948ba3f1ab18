"""``df.deapi`` and ``s.deapi``: one-line delegation to the task functions.

>>> df.deapi.embed("text")                 # == deapi_ds.embed(df, "text")
>>> df["text"].deapi.embed()               # == deapi_ds.embed(df["text"])
>>> df["path"].deapi.transcribe()          # == deapi_ds.transcribe(df["path"])
>>> df["prompt"].deapi.generate_images()   # == deapi_ds.generate_images(df["prompt"])
>>> df["text"].deapi.speak(voice="bf_emma")
"""

from __future__ import annotations

import importlib
from typing import Any

import pandas as pd

__all__ = ["DataFrameAccessor", "SeriesAccessor"]


def _task(module: str, name: str) -> Any:
    return getattr(importlib.import_module(f"deapi_ds.{module}"), name)


@pd.api.extensions.register_series_accessor("deapi")
class SeriesAccessor:
    """deapi_ds tasks on a Series: ``s.deapi.embed()``, ``.transcribe()``, ``.speak()``, ..."""

    def __init__(self, series: pd.Series) -> None:
        self._s = series

    def embed(self, **kwargs: Any) -> Any:
        """:func:`deapi_ds.embed` on this Series."""
        return _task("embeddings", "embed")(self._s, **kwargs)

    def estimate_embed(self, **kwargs: Any) -> Any:
        """:func:`deapi_ds.estimate_embed` on this Series."""
        return _task("embeddings", "estimate_embed")(self._s, **kwargs)

    estimate = estimate_embed

    def transcribe(self, **kwargs: Any) -> Any:
        """:func:`deapi_ds.transcribe` on a Series of paths or bytes."""
        return _task("transcription", "transcribe")(self._s, **kwargs)

    def speak(self, **kwargs: Any) -> Any:
        """:func:`deapi_ds.speak` on a Series of texts."""
        return _task("speech", "speak")(self._s, **kwargs)

    def generate_images(self, **kwargs: Any) -> Any:
        """:func:`deapi_ds.generate_images` on a Series of prompts."""
        return _task("images", "generate_images")(self._s, **kwargs)

    def edit_images(self, prompt: str, **kwargs: Any) -> Any:
        """:func:`deapi_ds.edit_images` on a Series of images (paths, bytes or PIL images)."""
        return _task("images", "edit_images")(self._s, prompt, **kwargs)


@pd.api.extensions.register_dataframe_accessor("deapi")
class DataFrameAccessor:
    """deapi_ds tasks on a DataFrame column: ``df.deapi.embed("text")``, ..."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self._df = frame

    def embed(self, column: Any, **kwargs: Any) -> Any:
        """:func:`deapi_ds.embed` on ``df[column]``."""
        return _task("embeddings", "embed")(self._df, column, **kwargs)

    def estimate_embed(self, column: Any, **kwargs: Any) -> Any:
        """:func:`deapi_ds.estimate_embed` on ``df[column]``."""
        return _task("embeddings", "estimate_embed")(self._df, column, **kwargs)

    estimate = estimate_embed

    def search_index(self, vectors: str = "embedding", **kwargs: Any) -> Any:
        """A :class:`deapi_ds.SearchIndex` over a column of vectors of this frame."""
        return _task("search", "SearchIndex").from_frame(self._df, vector_column=vectors, **kwargs)

    def transcribe(self, column: Any, **kwargs: Any) -> Any:
        return _task("transcription", "transcribe")(self._df, column, **kwargs)

    def speak(self, column: Any, **kwargs: Any) -> Any:
        return _task("speech", "speak")(self._df, column, **kwargs)

    def generate_images(self, column: Any, **kwargs: Any) -> Any:
        return _task("images", "generate_images")(self._df, column, **kwargs)
