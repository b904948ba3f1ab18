"""Small notions every layer shares, each defined once: what a missing value is."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

__all__ = ["is_missing", "plural"]


def is_missing(value: Any) -> bool:
    """The one definition of a missing value: None, pandas NA/NaT, a float NaN or a NaT.

    Strings (even empty ones), bytes, arrays and other objects are not missing.

    >>> [is_missing(v) for v in (None, float("nan"), pd.NA, "", b"", [None])]
    [True, True, True, False, False, False]
    """
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    if isinstance(value, float | np.floating):
        return bool(np.isnan(value))
    if isinstance(value, np.datetime64 | np.timedelta64):
        return bool(np.isnat(value))
    return False


def plural(n: int, noun: str) -> str:
    """A count and its noun: ``"1 request"``, ``"2 requests"``, ``"12,000 rows"``.

    >>> plural(1, "request"), plural(12000, "row")
    ('1 request', '12,000 rows')
    """
    return f"{n:,} {noun}{'' if n == 1 else 's'}"
