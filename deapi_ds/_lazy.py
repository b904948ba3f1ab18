"""``lazy_module``: a module imported on first use, so that ``import deapi_ds`` stays cheap.

``av = lazy_module("av")`` at the top of a module reads like ``import av``; PyAV is imported
the first time an attribute such as ``av.open`` is looked up (a missing library raises its
ImportError there). ``sys.modules`` is left alone until then.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

__all__ = ["lazy_module"]


class lazy_module:  # noqa: N801 - used like the module it stands for
    """Stands for the module ``name`` and imports it when an attribute is first read."""

    def __init__(self, name: str) -> None:
        self.__name = name
        self.__module: ModuleType | None = None

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("_lazy_module__"):
            raise AttributeError(attr)
        if self.__module is None:
            self.__module = importlib.import_module(self.__name)
        return getattr(self.__module, attr)

    def __repr__(self) -> str:
        state = "imported" if self.__module is not None else "not imported yet"
        return f"<lazy module {self.__name!r} ({state})>"
