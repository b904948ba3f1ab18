"""Your deAPI account from a notebook: :func:`balance` and price quotes (:func:`quote`).

Both use deAPI's native API (``GET /account/balance``, ``POST <task>/price``) with the same key
as everything else. Quotes cost nothing but are rate-limited (Basic: 50 per minute, 200 per
day, shared by every ``/price`` call), so quote a sample rather than a million rows. ::

    >>> deapi_ds.use_emulator()  # doctest: +SKIP
    >>> deapi_ds.balance()  # doctest: +SKIP
    5.0
    >>> deapi_ds.quote(["https://youtu.be/emuPodcast01"], diarize=True)  # doctest: +SKIP
                                input     price error
    0  https://youtu.be/emuPodcast01  0.000451  <NA>
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import pandas as pd

from ._exceptions import InvalidParameterError
from ._native import (
    AsyncNativeClient,
    NativeClient,
    NativeRequest,
    background_removal_request,
    ocr_request,
    shared_native_client,
    source_platform,
    transcription_request,
    upscale_request,
)
from ._pipeline import FATAL_ERRORS, as_series
from ._tasks import syncify

__all__ = ["QUOTE_TASKS", "abalance", "aquote", "balance", "quote"]

#: ``task=`` values of :func:`quote`.
QUOTE_TASKS = ("transcribe", "ocr", "remove_background", "upscale")


def _resolve(client: NativeClient | AsyncNativeClient | None) -> AsyncNativeClient:
    if client is None:
        return shared_native_client()
    if isinstance(client, NativeClient):
        return client.aclient
    if isinstance(client, AsyncNativeClient):
        return client
    raise InvalidParameterError(
        "client must be a deapi_ds NativeClient or AsyncNativeClient (deAPI's native API). "
        f"Got {type(client).__name__}."
    )


async def abalance(*, client: NativeClient | AsyncNativeClient | None = None) -> float:
    """Your prepaid deAPI balance in USD (``GET /api/v2/account/balance``; not rate-limited).

    deAPI refuses new jobs below $0.49.
    """
    return await _resolve(client).balance()


balance = syncify(abalance)


def _bytes_and_name(value: Any, i: Any, what: str) -> tuple[bytes, str]:
    """(bytes, file name) of a path, bytes or PIL image; errors name the row."""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value), "input"
    if isinstance(value, str | os.PathLike):
        path = Path(value)
        if not path.is_file():
            raise InvalidParameterError(
                f"Row {i!r}: {str(value)!r} is neither a file nor a supported link for {what}."
            )
        return path.read_bytes(), path.name
    if hasattr(value, "save") and hasattr(value, "size"):  # a PIL image
        buf = io.BytesIO()
        value.save(buf, "PNG")
        return buf.getvalue(), "image.png"
    raise InvalidParameterError(
        f"Row {i!r}: cannot quote a {type(value).__name__} for {what}; pass a path, bytes"
        + (", a PIL image" if what != "transcribe" else " or a link")
        + "."
    )


def _quote_request(value: Any, i: Any, task: str, options: dict[str, Any]) -> NativeRequest:
    if task == "transcribe":
        if isinstance(value, str) and source_platform(value) is not None:
            return transcription_request(source_url=value, **options)
        data, name = _bytes_and_name(value, i, task)
        return transcription_request(source_file=data, filename=name, **options)
    data, name = _bytes_and_name(value, i, task)
    build = {
        "ocr": ocr_request,
        "remove_background": background_removal_request,
        "upscale": upscale_request,
    }[task]
    return build(data, filename=name, **options)


async def aquote(
    data: Any,
    column: Any = None,
    *,
    task: str = "transcribe",
    model: str | None = None,
    timestamps: str | None = None,
    diarize: bool = False,
    language: str | None = None,
    include_metadata: bool = False,
    format: str = "text",
    duration_seconds: float | None = None,
    client: NativeClient | AsyncNativeClient | None = None,
) -> pd.DataFrame:
    """Ask deAPI what each input would cost (``POST …/price``): one row per input, in order.

    ``data``: links (YouTube, X/Twitter, Twitch, Kick, TikTok) or files for
    ``task="transcribe"``; files, bytes or PIL images for ``"ocr"``, ``"remove_background"``
    and ``"upscale"``; a list, a Series, or a DataFrame with ``column``. Options are the task's
    own (``timestamps``, ``diarize``, ``language``, ``include_metadata``, ``model`` for
    transcription; ``format``/``language`` for OCR). ``duration_seconds`` helps deAPI quote a
    link it cannot inspect. Columns: ``input``, ``price`` (USD, ``<NA>`` when the quote failed)
    and ``error``. Each row is one request of the shared ``/price`` limit (Basic: 50/min,
    200/day). Missing values are skipped (no price, no request).
    """
    if task not in QUOTE_TASKS:
        raise InvalidParameterError(
            f"The 'task' parameter of quote() must be one of {QUOTE_TASKS}. Got {task!r}."
        )
    series = as_series(data, column, func="quote", what="inputs")
    if task == "transcribe":
        options: dict[str, Any] = {
            "model": model,
            "timestamps": timestamps,
            "diarize": diarize,
            "language": language,
            "include_metadata": include_metadata,
        }
    elif task == "ocr":
        options = {"format": format, "language": language}
        if model:
            options["model"] = model
    else:
        options = {"model": model} if model else {}
    # options that no row can satisfy fail now; then every row's request is built before any
    # is sent, a bad row becoming that row's error
    probe = "https://www.youtube.com/watch?v=x" if task == "transcribe" else b"\x89PNG"
    _quote_request(probe, "options", task, options)
    requests: dict[int, NativeRequest | Exception] = {}
    for pos, (idx, value) in enumerate(series.items()):
        if value is None or (isinstance(value, float) and value != value):
            continue
        try:
            requests[pos] = _quote_request(value, idx, task, options)
        except InvalidParameterError as exc:
            requests[pos] = exc
    aclient = _resolve(client)
    prices: list[float | None] = [None] * len(series)
    errors: list[str | None] = [None] * len(series)
    for pos, request in requests.items():
        if isinstance(request, Exception):
            errors[pos] = str(request)
            continue
        try:
            prices[pos] = await aclient.price(request, duration_seconds=duration_seconds)
        except FATAL_ERRORS:
            raise
        except Exception as exc:  # noqa: BLE001 - this row's error; the others are quoted
            errors[pos] = f"{type(exc).__name__}: {exc}"
    return pd.DataFrame(
        {
            "input": pd.array([_label(v) for v in series], dtype="string"),
            "price": pd.array(prices, dtype="Float64"),
            "error": pd.array(errors, dtype="string"),
        },
        index=series.index,
    )


def _label(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes | bytearray | memoryview):
        return f"<{len(value)} bytes>"
    if isinstance(value, str | os.PathLike):
        return str(value)
    return f"<{type(value).__name__}>"


quote = syncify(aquote)
