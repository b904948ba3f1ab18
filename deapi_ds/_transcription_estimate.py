"""``estimate_transcribe``: what :func:`deapi_ds.transcribe` would cost, before anything is spent.

Files are probed locally for their duration; links have no known duration (deAPI's price
endpoint takes ``duration_seconds`` as optional), so their cost is ``<NA>`` ("unknown") unless
``duration_seconds`` is given or ``quote=True`` asks deAPI (``POST /audio/transcriptions/price``,
50/min and 200/day on Basic, one request per row). Word timestamps and diarization on
WhisperLargeV3Ct2 cost 1.5x; ``include_metadata`` adds $0.005 per link; TikTok is priced per
video by length band.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import anyio
import pandas as pd

from . import _media
from . import _native_transcription as _nt
from ._config import get_config
from ._native import shared_native_client, source_platform, transcription_request
from ._pipeline import FATAL_ERRORS, as_series, is_missing
from ._profiles import get_profile
from ._tasks import syncify

__all__ = ["aestimate_transcribe", "estimate_transcribe"]


async def aestimate_transcribe(
    data: Any,
    column: Any = None,
    *,
    model: str = "WhisperLargeV3",
    word_timestamps: bool | None = None,
    diarize: bool = False,
    include_metadata: bool = False,
    duration_seconds: float | None = None,
    quote: bool = False,
) -> pd.DataFrame:
    """Per row: ``kind`` (file or link), ``platform``, ``seconds`` (probed; links: <NA>
    unless ``duration_seconds``), ``factor`` (1.5 for Ct2 word timestamps / diarization),
    ``estimate_usd`` (reference price, <NA> when the duration is unknown), ``quote_usd``
    (deAPI's own quote, with ``quote=True``) and ``error``. ``df.attrs`` holds the totals:
    ``hours``, ``estimate_usd`` (known rows) and ``unknown`` (rows without a price).

    >>> deapi_ds.estimate_transcribe(["talk.mp3", "https://youtu.be/x"], diarize=True)  # doctest: +SKIP
    """
    series = as_series(data, column, func="estimate_transcribe", what="files or links")
    native_model = "WhisperLargeV3Ct2" if (diarize and model == "WhisperLargeV3") else model
    words = word_timestamps if word_timestamps is not None else diarize
    factor = _nt.TS_FACTOR if native_model == "WhisperLargeV3Ct2" and (words or diarize) else 1.0
    profile = get_profile(get_config()).model(native_model)
    per_hour = profile.price_per_hour if profile is not None else None
    rows: list[dict[str, Any]] = []
    for label, value in series.items():
        row: dict[str, Any] = {"input": None, "kind": None, "platform": None, "seconds": None,
                               "error": None}  # fmt: skip
        rows.append(row)
        if is_missing(value):
            continue
        if _nt.is_link(value):
            row.update(input=value, kind="link", platform=source_platform(value))
            row["seconds"] = duration_seconds
            continue
        row["input"], row["kind"] = (
            str(value) if isinstance(value, str | os.PathLike) else f"bytes[{label}]",
            "file",
        )
        try:
            info = await anyio.to_thread.run_sync(
                lambda v=value: _media.probe(v if not isinstance(v, os.PathLike) else os.fspath(v))
            )
            row["seconds"] = float(info.duration)
        except (OSError, ValueError, TypeError) as exc:
            row["error"] = f"{type(exc).__name__}: {exc}"
    for row in rows:
        row["factor"] = factor if row["kind"] else None
        row["estimate_usd"] = (
            _nt.row_estimate(kind=row["kind"], platform=row["platform"], seconds=row["seconds"],
                             per_hour=per_hour, factor=factor, metadata=include_metadata)
            if row["kind"] and row["error"] is None else None
        )  # fmt: skip
    quotes: list[float | None] = [None] * len(rows)
    if quote:
        client = shared_native_client()
        for i, (row, value) in enumerate(zip(rows, series.tolist(), strict=True)):
            if not row["kind"] or row["error"]:
                continue
            try:
                if row["kind"] == "link":
                    request = transcription_request(
                        source_url=value, model=native_model, diarize=diarize,
                        timestamps="word" if words and native_model == "WhisperLargeV3Ct2" else None,
                        include_metadata=include_metadata,
                    )  # fmt: skip
                else:
                    raw = (
                        bytes(value)
                        if isinstance(value, bytes | bytearray)
                        else Path(value).read_bytes()
                    )
                    request = transcription_request(
                        source_file=raw, filename=os.path.basename(str(row["input"])),
                        model=native_model, diarize=diarize,
                        timestamps="word" if words and native_model == "WhisperLargeV3Ct2" else None,
                    )  # fmt: skip
                quotes[i] = await client.price(request, duration_seconds=row["seconds"])
            except FATAL_ERRORS:
                raise
            except Exception as exc:  # noqa: BLE001 - this row's quote failed
                row["error"] = f"{type(exc).__name__}: {exc}"
    frame = pd.DataFrame(
        {
            "input": pd.array([r["input"] for r in rows], dtype="string"),
            "kind": pd.array([r["kind"] for r in rows], dtype="string"),
            "platform": pd.array([r["platform"] for r in rows], dtype="string"),
            "seconds": pd.array([r["seconds"] for r in rows], dtype="Float64"),
            "factor": pd.array([r["factor"] for r in rows], dtype="Float64"),
            "estimate_usd": pd.array([r["estimate_usd"] for r in rows], dtype="Float64"),
            "quote_usd": pd.array(quotes, dtype="Float64"),
            "error": pd.array([r["error"] for r in rows], dtype="string"),
        },
        index=series.index,
    )
    known = frame["kind"].notna()
    frame.attrs.update(
        hours=float(frame["seconds"].fillna(0).sum()) / 3600.0,
        estimate_usd=float(frame["estimate_usd"].fillna(0).sum()),
        unknown=int((known & frame["estimate_usd"].isna()).sum()),
        model=native_model,
        note="reference prices (deapi-reference.md §5), not a quote; quote=True asks deAPI",
    )
    if quote:
        frame.attrs["quote_usd"] = float(frame["quote_usd"].fillna(0).sum())
    return frame


estimate_transcribe = syncify(aestimate_transcribe)
