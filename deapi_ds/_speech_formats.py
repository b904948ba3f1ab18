"""Speech in every format on every server: ask for what the server returns, convert the rest.

deAPI's gateway returns speech as mp3 only today (the seed document listed mp3, wav, flac and
opus). The provider profile says which formats a server returns itself
(``ProviderProfile.speech_native_formats``, overridden by the ``speech_formats`` setting);
:func:`fetch_speech` asks for the wanted format when it is native and for mp3 otherwise, and
converts locally with PyAV (:func:`deapi_ds._media.convert_audio`), keeping the duration.

If a server refuses a format the profile thought native (a 400/422 naming the format), the
request is repeated once as mp3 + conversion, the refusal is remembered for the rest of the
session for that base URL (so no further request is wasted), and one warning says so.
"""

from __future__ import annotations

import re
import threading
import warnings
from typing import Any

import anyio
import anyio.to_thread

from . import _media
from ._engine import PerLoop
from ._exceptions import BadRequestError, ResponseValidationError, UnprocessableEntityError

__all__ = ["fetch_speech", "forget_refusals", "wire_format"]

FALLBACK = "mp3"
_refused: dict[str, set[str]] = {}  # base URL -> formats it refused this session
_confirmed: dict[str, set[str]] = {}  # base URL -> formats it answered this session
_first_locks: dict[tuple[str, str], PerLoop[anyio.Lock]] = {}
_lock = threading.Lock()


def _confirmed_native(base_url: str, fmt: str) -> bool:
    with _lock:
        return fmt in _confirmed.get(base_url, ())


def _first_request_lock(base_url: str, fmt: str) -> PerLoop[anyio.Lock]:
    with _lock:
        lock = _first_locks.get((base_url, fmt))
        if lock is None:
            lock = _first_locks[(base_url, fmt)] = PerLoop(anyio.Lock)
        return lock


def wire_format(aclient: Any, fmt: str) -> str:
    """The format to request from ``aclient``'s server for a clip wanted in ``fmt``."""
    with _lock:
        if fmt in _refused.get(aclient.settings.base_url, ()):
            return FALLBACK
    return aclient.profile.speech_wire_format(fmt)


def forget_refusals() -> None:
    """Forget the formats servers refused this session (tests; a server that changed)."""
    with _lock:
        _refused.clear()
        _confirmed.clear()


def _refuses_format(exc: Exception, fmt: str) -> bool:
    """Does this 400/422 say the response format is not supported?"""
    param = str(getattr(exc, "param", "") or "")
    errors = getattr(exc, "errors", None) or {}
    message = str(getattr(exc, "message", "") or "")
    if "model" in param or ("model" in errors and "response_format" not in errors):
        return False
    return (
        param == "response_format"
        or "response_format" in errors
        or re.search(r"\bformat\b", message, re.IGNORECASE) is not None
        or re.search(rf"\b{re.escape(fmt)}\b", message, re.IGNORECASE) is not None
    )


def _remember(base_url: str, fmt: str, exc: Exception) -> None:
    with _lock:
        seen = _refused.setdefault(base_url, set())
        first = fmt not in seen
        seen.add(fmt)
    if first:
        warnings.warn(
            f"{base_url} refused response_format={fmt!r} ({getattr(exc, 'message', exc)}). "
            f"deapi_ds now asks it for {FALLBACK} and converts to {fmt} locally, for the rest "
            "of this session. set_config(speech_formats='mp3') (or limits='today') skips the "
            "refused request from the start.",
            UserWarning,
            stacklevel=3,
        )


async def fetch_speech(
    aclient: Any,
    text: str,
    *,
    model: str,
    voice: str,
    fmt: str,
    speed: float | None = None,
) -> bytes:
    """One speech request for ``text``; returns audio bytes in ``fmt`` whatever the server returns.

    ``aclient`` is an :class:`~deapi_ds.AsyncClient`. Raises what the request raises, except
    that a refusal of a format the profile thought native is retried once as mp3 (see the
    module docstring). An empty body raises :class:`~deapi_ds.ResponseValidationError`.
    """
    base_url = aclient.settings.base_url
    wire = wire_format(aclient, fmt)
    if wire != FALLBACK and not _confirmed_native(base_url, wire):
        # the first request in a format the server has not answered yet goes alone: if the
        # server refuses it, the requests waiting here go straight to mp3
        async with _first_request_lock(base_url, wire).get():
            wire = wire_format(aclient, fmt)
            if wire != FALLBACK and not _confirmed_native(base_url, wire):
                return await _ask(aclient, text, model, voice, fmt, wire, speed)
    return await _ask(aclient, text, model, voice, fmt, wire, speed)


async def _ask(
    aclient: Any, text: str, model: str, voice: str, fmt: str, wire: str, speed: float | None
) -> bytes:
    base_url = aclient.settings.base_url
    try:
        result = await aclient.speech(
            text, model=model, voice=voice, response_format=wire, speed=speed
        )
    except (BadRequestError, UnprocessableEntityError) as exc:
        if wire == FALLBACK or not _refuses_format(exc, wire):
            raise
        _remember(base_url, wire, exc)
        wire = FALLBACK
        result = await aclient.speech(
            text, model=model, voice=voice, response_format=wire, speed=speed
        )
    else:
        with _lock:
            _confirmed.setdefault(base_url, set()).add(wire)
    if not result.audio:
        raise ResponseValidationError(
            "The speech response had an empty body.", endpoint="POST /v1/audio/speech"
        )
    if wire == fmt:
        return result.audio
    return await anyio.to_thread.run_sync(_media.convert_audio, result.audio, wire, fmt)
