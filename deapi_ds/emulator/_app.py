"""The sans-IO core of the emulator: :class:`Emulator` and :meth:`Emulator.handle`.

``handle(method, path, headers, body)`` takes one HTTP request as plain values and returns an
:class:`EmulatorResponse`; it never sleeps or touches a socket. The httpx transport
(``_transport.py``) and the loopback server (``_server.py``) are thin adapters around it that
also carry out the response's ``latency`` and ``action`` ("drop" / "truncate").
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import json
import math
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np

from . import _models as M
from ._faults import (
    GZIP_BOMB_SIZE,
    TRICKLE_INTERVAL,
    EndpointConfig,
    Fault,
    gzip_bomb,
    validate_script,
)
from ._http import (
    EmulatorResponse,
    _ApiError,
    _bad,
    _json_result,
    _Request,
    _Result,
)

__all__ = ["ENDPOINTS", "Emulator", "EmulatorResponse"]

#: Endpoint keys accepted by :meth:`Emulator.configure` and :meth:`Emulator.stats`.
ENDPOINTS: tuple[str, ...] = (
    "models",
    "embeddings",
    "images.generations",
    "images.edits",
    "audio.speech",
    "audio.transcriptions",
    "videos",
    "videos.retrieve",
    "videos.content",
    "chat.completions",
    "files",
    # deAPI's native v2 API (``_native.py``)
    "v2.models",
    "v2.account.balance",
    "v2.jobs",
    "v2.price",
    "v2.audio.transcriptions",
    "v2.images.ocr",
    "v2.images.background-removals",
    "v2.images.upscales",
    "v2.results",
)

_COUNTERS: tuple[str, ...] = (
    "requests",
    "ok",
    "errors",
    "rate_limited",
    "dropped",
    "truncated",
    "bytes_in",
    "inputs",
    "tokens",
    "images",
    "pixels",
    "characters",
    "audio_seconds",
    "bytes",
    "videos",
    "video_seconds",
    "jobs",
    "usd",
)

_KEY_PREFIX = "dpn-sk-"
_UNSET: Any = object()
_FAIL_WORD = re.compile(r"\bfail\b", re.IGNORECASE)
_SIZE_RE = re.compile(r"^\s*(\d+)\s*[xX]\s*(\d+)\s*$")
_LANGUAGE_RE = re.compile(r"^[a-z]{2,3}(-[A-Za-z]{2,4})?$")
_VIDEO_POLL_AFTER_MS = "20"
_VIDEO_ASSET_TTL = 24 * 3600


@dataclass
class _VideoJob:
    id: str
    model: str
    prompt: str
    width: int
    height: int
    seconds: str
    seed: int
    created_at: int
    will_fail: bool
    polls: int = 0
    completed_at: int | None = None
    content: bytes | None = None
    billed: bool = False


@dataclass
class _StoredImage:
    data: bytes
    expires: float


class Emulator:
    """An in-memory, deterministic fake of deAPI's OpenAI-compatible API.

    Parameters
    ----------
    api_key
        When given, only this exact key is accepted; otherwise any key starting with
        ``dpn-sk-`` is.
    clock
        Seconds on a monotonic clock; drives rate-limit windows and URL expiry. Inject a
        fake clock in tests.
    video_polls_to_complete
        Number of ``GET /v1/videos/{id}`` calls after which a video job is ``completed`` (or
        ``failed`` when its prompt contains the word "fail"). 0 completes jobs at creation.
    url_ttl
        Seconds an image URL (``response_format="url"``) stays downloadable.
    profile
        Which deAPI to play: ``"seed"`` (default: the seed document: mp3/wav/flac/opus speech,
        80 MB uploads, no daily quotas) or ``"today"`` (deAPI's docs of 2026-08-19: mp3-only
        speech, 20 MB audio / 50 MB video uploads, 75 MB request bodies, daily quotas per
        endpoint on the Basic tier).
    tier
        ``"basic"`` (default) or ``"premium"``: which daily quotas of the profile apply
        (Premium has none; the seed profile has none either).
    daily_quotas
        Requests per UTC day per endpoint key, replacing the profile's (e.g.
        ``{"embeddings": 500}``). Once spent: 429 ``{"message": "Too Many Attempts."}`` with
        ``Retry-After`` (seconds to 00:00 UTC), ``X-RateLimit-Limit``,
        ``X-RateLimit-Remaining: 0`` and ``X-RateLimit-Reset`` (Unix time of the reset), as
        deAPI's Laravel throttle sends it. Every request past the authentication counts.
    utc_clock
        Unix time in seconds (default ``time.time``): the UTC day of the quota counters.
        Inject a fake one to simulate the reset at 00:00 UTC.
    max_upload_bytes
        Largest transcription upload, audio and video alike (default: the profile's); larger
        files get 413.
    speech_formats
        Output formats ``/v1/audio/speech`` accepts (default: the profile's; deAPI's seed
        document lists mp3, wav, flac and opus, today's docs mp3 only).
    error_style
        ``"openai"`` (default): ``{"error": {message, type, param, code}}``. ``"native"``:
        deAPI's native shape ``{"message": ..., "errors": {field: [...]}}`` with 422 for
        validation errors.

    >>> emu = Emulator()
    >>> r = emu.handle("GET", "/v1/models", {"Authorization": "Bearer dpn-sk-test"}, b"")
    >>> r.status, r.json()["data"][0]["id"]
    (200, 'Flux1schnell')
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        video_polls_to_complete: int = 3,
        url_ttl: float = 600.0,
        max_upload_bytes: int | None = None,
        speech_formats: Iterable[str] | None = None,
        error_style: str = "openai",
        profile: str = "seed",
        tier: str = "basic",
        daily_quotas: Mapping[str, int] | None = None,
        utc_clock: Callable[[], float] = time.time,
    ) -> None:
        if error_style not in ("openai", "native"):
            raise ValueError(f"error_style must be 'openai' or 'native'. Got {error_style!r}.")
        if profile not in M.LIMITS:
            raise ValueError(f"profile must be one of {sorted(M.LIMITS)}. Got {profile!r}.")
        if tier not in ("basic", "premium"):
            raise ValueError(f"tier must be 'basic' or 'premium'. Got {tier!r}.")
        limits = M.LIMITS[profile]
        if speech_formats is None:
            speech_formats = limits.speech_formats
        quotas = dict(limits.daily_quotas.get(tier, {}) if daily_quotas is None else daily_quotas)
        for name, value in quotas.items():
            self._targets(name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"daily_quotas[{name!r}] must be an int >= 0. Got {value!r}.")
        if video_polls_to_complete < 0:
            raise ValueError(
                f"video_polls_to_complete must be >= 0. Got {video_polls_to_complete!r}."
            )
        formats = tuple(speech_formats)
        unknown = set(formats) - set(M.SPEECH_CONTENT_TYPES)
        if unknown or not formats:
            raise ValueError(
                f"speech_formats must be a non-empty subset of {sorted(M.SPEECH_CONTENT_TYPES)}. "
                f"Got {formats!r}."
            )
        self.api_key = api_key
        self.clock = clock
        self.video_polls_to_complete = int(video_polls_to_complete)
        self.url_ttl = float(url_ttl)
        self.profile = profile
        self.tier = tier
        self.limits = limits
        self.max_upload_bytes = int(max_upload_bytes or limits.max_audio_bytes)
        self.max_video_upload_bytes = int(max_upload_bytes or limits.max_video_bytes)
        self.max_request_bytes = None if max_upload_bytes else limits.max_request_bytes
        self.speech_formats = formats
        #: requests per UTC day per endpoint key (see ``daily_quotas``); change freely
        self.daily_quotas: dict[str, int] = quotas
        self.utc_clock = utc_clock
        self._quota_day: int | None = None
        self._quota_used: dict[str, int] = {}
        self.error_style = error_style
        self._lock = threading.RLock()
        self._configs: dict[str, EndpointConfig] = {ep: EndpointConfig() for ep in ENDPOINTS}
        self._stats: dict[str, dict[str, float]] = {}
        self.reset_stats()
        self._videos: dict[str, _VideoJob] = {}
        self._images: dict[str, _StoredImage] = {}
        self._counter = 0
        #: The last 10,000 requests: dicts with endpoint, method, path, status and billing.
        self.history: deque[dict[str, Any]] = deque(maxlen=10_000)
        self._on_close: list[Callable[[], Any]] = []
        self._routes: list[tuple[str, re.Pattern[str], str, Callable[[_Request], _Result]]] = [
            ("GET", re.compile(r"/v1/models"), "models", self._list_models),
            ("GET", re.compile(r"/v1/models/(?P<model>[^/]+)"), "models", self._get_model),
            ("POST", re.compile(r"/v1/embeddings"), "embeddings", self._embeddings),
            ("POST", re.compile(r"/v1/images/generations"), "images.generations", self._generate),
            ("POST", re.compile(r"/v1/images/edits"), "images.edits", self._edit),
            ("POST", re.compile(r"/v1/audio/speech"), "audio.speech", self._speech),
            (
                "POST",
                re.compile(r"/v1/audio/transcriptions"),
                "audio.transcriptions",
                self._transcribe,
            ),
            ("POST", re.compile(r"/v1/videos"), "videos", self._create_video),
            ("GET", re.compile(r"/v1/videos/(?P<id>[^/]+)"), "videos.retrieve", self._get_video),
            (
                "GET",
                re.compile(r"/v1/videos/(?P<id>[^/]+)/content"),
                "videos.content",
                self._video_content,
            ),
            ("POST", re.compile(r"/v1/chat/completions"), "chat.completions", self._chat),
            (
                "GET",
                re.compile(r"/v1/files/images/(?P<token>[A-Za-z0-9_]+)\.png"),
                "files",
                self._download_image,
            ),
            ("*", re.compile(r"/v1/files(/.*)?"), "files", self._files_unsupported),
        ]
        from ._native import NativeAPI

        #: deAPI's native v2 API (``/api/v2/...``): jobs, prices, balance, models.
        self.native = NativeAPI(self)
        self._routes.extend(self.native.routes())

    def quota_used(self, endpoint: str) -> int:
        """Requests counted today against ``endpoint``'s daily quota."""
        with self._lock:
            self._roll_day()
            return self._quota_used.get(endpoint, 0)

    def reset_quotas(self) -> None:
        """Zero today's daily-quota counters (as if 00:00 UTC had just passed)."""
        with self._lock:
            self._quota_used.clear()

    def _roll_day(self) -> float:
        now = float(self.utc_clock())
        day = int(now // 86400)
        if day != self._quota_day:
            self._quota_day = day
            self._quota_used.clear()
        return now

    def _daily_quota(self, endpoint: str) -> _ApiError | None:
        """Count one request against the endpoint's daily quota; the 429 once it is spent."""
        limit = self.daily_quotas.get(endpoint)
        if limit is None:
            return None
        with self._lock:
            now = self._roll_day()
            used = self._quota_used.get(endpoint, 0)
            if used < limit:
                self._quota_used[endpoint] = used + 1
                return None
        reset = (int(now // 86400) + 1) * 86400
        return _ApiError(
            429,
            "Too Many Attempts.",
            headers={
                "Retry-After": str(max(1, math.ceil(reset - now))),
                "X-RateLimit-Limit": str(limit),
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": str(reset),
                "X-RateLimit-Source": "daily",
            },
        )

    def __repr__(self) -> str:
        key = "any dpn-sk- key" if self.api_key is None else "a fixed key"
        return (
            f"<Emulator ({key}), {int(sum(s['requests'] for s in self._stats.values()))} requests>"
        )

    # ------------------------------------------------------------------ lifetime

    def on_close(self, callback: Callable[[], Any]) -> None:
        """Run ``callback()`` when :meth:`close` is called (last registered, first run).

        Whoever wires the emulator in (``deapi_ds.use_emulator()``) registers its undo here,
        so that ``emu.close()`` and ``with ... as emu:`` put everything back.
        """
        with self._lock:
            self._on_close.append(callback)

    def close(self) -> None:
        """Run the :meth:`on_close` callbacks once (idempotent); the emulator itself stays usable."""
        with self._lock:
            callbacks, self._on_close = self._on_close[::-1], []
        for callback in callbacks:
            callback()

    def __enter__(self) -> Emulator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ configuration

    def configure(
        self,
        endpoint: str = "*",
        *,
        rpm: int | None = _UNSET,
        latency: float | tuple[float, float] | None = _UNSET,
        error_rate: float = _UNSET,
        error_status: int = _UNSET,
        script: Sequence[Fault | int | str | None] = _UNSET,
        shuffle_index: bool = _UNSET,
        drop_items: int = _UNSET,
        wrong_dimension: int | None = _UNSET,
        nan_vectors: bool = _UNSET,
        seed: int = _UNSET,
    ) -> Emulator:
        """Set rate limits and faults for one endpoint key (or ``"*"`` = every endpoint).

        Only the arguments you pass change; the others keep their values (initially: no rate
        limit, no latency, ``error_rate=0``, ``error_status=500``, empty script, no embeddings
        faults, ``seed=0``). With ``"*"`` every endpoint gets the settings, each with its own
        rate window and its own copy of the script. Returns the emulator, so calls chain.

        >>> emu = Emulator().configure("embeddings", rpm=10, script=[503, "drop", None])
        >>> emu.configure("images.generations", latency=(0.1, 0.3), error_rate=0.2, seed=1)
        <Emulator (any dpn-sk- key), 0 requests>
        """
        targets = self._targets(endpoint)
        changes: dict[str, Any] = {}
        if rpm is not _UNSET:
            if rpm is not None and (isinstance(rpm, bool) or not isinstance(rpm, int) or rpm < 1):
                raise ValueError(f"rpm must be a positive int or None (no limit). Got {rpm!r}.")
            changes["rpm"] = rpm
        if latency is not _UNSET:
            changes["latency"] = _check_latency(latency)
        if error_rate is not _UNSET:
            if not 0.0 <= float(error_rate) <= 1.0:
                raise ValueError(f"error_rate must be between 0 and 1. Got {error_rate!r}.")
            changes["error_rate"] = float(error_rate)
        if error_status is not _UNSET:
            if not 400 <= int(error_status) <= 599:
                raise ValueError(f"error_status must be in 400..599. Got {error_status!r}.")
            changes["error_status"] = int(error_status)
        if script is not _UNSET:
            changes["script"] = validate_script(script)
        if shuffle_index is not _UNSET:
            changes["shuffle_index"] = bool(shuffle_index)
        if drop_items is not _UNSET:
            if int(drop_items) < 0:
                raise ValueError(f"drop_items must be >= 0. Got {drop_items!r}.")
            changes["drop_items"] = int(drop_items)
        if wrong_dimension is not _UNSET:
            if wrong_dimension is not None and int(wrong_dimension) < 1:
                raise ValueError(
                    f"wrong_dimension must be a positive int or None. Got {wrong_dimension!r}."
                )
            changes["wrong_dimension"] = wrong_dimension
        if nan_vectors is not _UNSET:
            changes["nan_vectors"] = bool(nan_vectors)
        if seed is not _UNSET:
            changes["seed"] = int(seed)
        with self._lock:
            for target in targets:
                self._configs[target].update(**changes)
        return self

    def reset_faults(self, endpoint: str = "*") -> Emulator:
        """Remove every rate limit and fault of ``endpoint`` (or all endpoints)."""
        with self._lock:
            for target in self._targets(endpoint):
                self._configs[target] = EndpointConfig()
        return self

    @staticmethod
    def _targets(endpoint: str) -> tuple[str, ...]:
        if endpoint == "*":
            return ENDPOINTS
        if endpoint not in ENDPOINTS:
            raise ValueError(
                f"Unknown endpoint key {endpoint!r}. Use '*' or one of: {', '.join(ENDPOINTS)}."
            )
        return (endpoint,)

    # ------------------------------------------------------------------ stats

    def stats(self, endpoint: str | None = None) -> dict[str, Any]:
        """Counters per endpoint key (or for one key when ``endpoint`` is given).

        ``requests``, ``ok`` (2xx), ``errors``, ``rate_limited``, ``dropped``, ``truncated``,
        ``bytes_in`` (request bodies), and what would be billed, counted on successful
        answers only: ``inputs`` and ``tokens`` (embeddings), ``images``, ``pixels`` (input
        pixels of native image jobs), ``characters`` (speech), ``audio_seconds`` and ``bytes`` (transcription uploads), ``videos`` and
        ``video_seconds`` (counted under "videos" when a job completes). A truncated answer
        is billed: the server did the work even though the client could not read it.

        >>> Emulator().stats("embeddings")["requests"]
        0
        """
        with self._lock:
            if endpoint is None:
                return {ep: dict(counters) for ep, counters in self._stats.items()}
            self._targets(endpoint)
            return dict(self._stats[endpoint])

    def reset_stats(self) -> None:
        """Zero every counter (the history too)."""
        with self._lock:
            self._stats = {ep: dict.fromkeys(_COUNTERS, 0) for ep in ENDPOINTS}
            if hasattr(self, "history"):
                self.history.clear()

    # ------------------------------------------------------------------ adapters

    def transport(self) -> Any:
        """An httpx transport (sync and async) that answers from this emulator, no sockets.

        >>> import httpx
        >>> client = httpx.Client(transport=Emulator().transport(), base_url="https://oai.deapi.ai/v1")
        """
        from ._transport import EmulatorTransport

        return EmulatorTransport(self)

    def serve(self, host: str = "127.0.0.1", port: int = 0) -> Any:
        """Start a loopback HTTP server for this emulator (a context manager; or call ``.close()``).

        >>> with Emulator().serve() as server:  # doctest: +SKIP
        ...     print(server.base_url)
        http://127.0.0.1:54321/v1
        """
        from ._server import EmulatorServer

        return EmulatorServer(self, host, port).start()

    # ------------------------------------------------------------------ the core

    def handle(
        self,
        method: str,
        path: str,
        headers: Mapping[str, str],
        body: bytes = b"",
        *,
        scheme: str = "http",
    ) -> EmulatorResponse:
        """Answer one HTTP request (sans-IO). ``path`` may include a query string."""
        method = method.upper()
        split = urlsplit(path)
        req = _Request(
            method=method,
            path=split.path.rstrip("/") or "/",
            query=parse_qs(split.query),
            headers={k.lower(): v for k, v in headers.items()},
            body=bytes(body),
            scheme=scheme,
        )
        route = self._match(req)
        if route is None and req.path.startswith("/api/"):
            error = self.native.check_auth(req) or _ApiError(
                404, f"The route {req.path.lstrip('/')} could not be found."
            )
            return self._error_response(error, "v2.models")
        if route is None:
            auth_error = self._check_auth(req)
            error = auth_error or _ApiError(
                404,
                f"Invalid URL ({method} {req.path}). deAPI's OpenAI-compatible API serves "
                "/v1/models, /v1/embeddings, /v1/images/generations, /v1/images/edits, "
                "/v1/audio/speech, /v1/audio/transcriptions and /v1/videos.",
            )
            return self._error_response(error, None)
        endpoint, handler = route
        with self._lock:
            self._counter += 1
            request_id = f"req_emu_{self._counter:08d}"
            counters = self._stats[endpoint]
            counters["requests"] += 1
            counters["bytes_in"] += len(req.body)
        if endpoint.startswith("v2."):
            auth_error = None if endpoint == "v2.results" else self.native.check_auth(req)
        else:
            auth_error = None if endpoint == "files" else self._check_auth(req)
        if auth_error is not None:
            return self._finish(
                req, endpoint, request_id, self._error_response(auth_error, endpoint)
            )
        quota_error = self._daily_quota(endpoint)
        if quota_error is not None:  # deAPI's throttle answers in its own shape on every host
            body = json.dumps({"message": quota_error.message}).encode("utf-8")
            response = EmulatorResponse(
                429, {"Content-Type": "application/json", **quota_error.headers}, body, endpoint
            )
            with self._lock:
                self._stats[endpoint]["rate_limited"] += 1
            return self._finish(req, endpoint, request_id, response)
        with self._lock:
            decision = self._configs[endpoint].decide(self.clock())
        req.decision = decision
        if decision.rate_limited:
            error = _ApiError(
                429,
                f"Rate limit reached for {endpoint}: {self._configs[endpoint].rpm} requests per "
                f"minute. Please try again in {decision.retry_after}s.",
                code="rate_limit_exceeded",
                headers={"Retry-After": str(decision.retry_after)},
            )
            response = self._error_response(error, endpoint)
            with self._lock:
                self._stats[endpoint]["rate_limited"] += 1
            return self._finish(req, endpoint, request_id, response)
        daily = self.native.check_daily(endpoint) if endpoint.startswith("v2.") else None
        if daily is not None:
            with self._lock:
                self._stats[endpoint]["rate_limited"] += 1
            return self._finish(req, endpoint, request_id, self._error_response(daily, endpoint))
        fault = decision.fault
        if fault is not None and fault.status is not None:
            return self._finish(req, endpoint, request_id, self._fault_response(fault, endpoint))
        if fault is not None and fault.kind == "drop":
            response = EmulatorResponse(0, {}, b"", endpoint=endpoint, action="drop")
            return self._finish(req, endpoint, request_id, response)
        try:
            result = handler(req)
        except _ApiError as exc:
            response = self._error_response(exc, endpoint)
        except Exception as exc:  # an emulator bug: answer 500 and say what broke
            response = self._error_response(
                _ApiError(500, f"The emulator failed: {type(exc).__name__}: {exc}"), endpoint
            )
        else:
            response = EmulatorResponse(
                result.status,
                {"Content-Type": result.content_type, **result.headers},
                result.body,
                endpoint=endpoint,
            )
            if 200 <= result.status < 300:
                with self._lock:
                    for key, value in result.billing.items():
                        self._stats[endpoint][key] += value
        if fault is not None and fault.kind == "truncate":
            response.action = "truncate"
        elif fault is not None and fault.kind == "trickle":
            response.action = "trickle"
            response.interval = float(fault.interval or TRICKLE_INTERVAL)
        elif fault is not None and fault.kind == "gzip_bomb" and 200 <= response.status < 300:
            response.body = gzip_bomb(int(fault.size or GZIP_BOMB_SIZE))
            response.headers["Content-Encoding"] = "gzip"
        return self._finish(req, endpoint, request_id, response)

    def _finish(
        self, req: _Request, endpoint: str, request_id: str, response: EmulatorResponse
    ) -> EmulatorResponse:
        decision = req.decision
        response.endpoint = endpoint
        response.latency = decision.latency
        for name, value in decision.rate_headers.items():
            response.headers.setdefault(name, value)
        if endpoint.startswith("v2.") and decision.rate_headers:
            response.headers.setdefault("X-RateLimit-Source", endpoint)
        response.headers.setdefault("x-request-id", request_id)
        with self._lock:
            counters = self._stats[endpoint]
            if response.action == "drop":
                counters["dropped"] += 1
                counters["errors"] += 1
            elif 200 <= response.status < 300:
                counters["ok"] += 1
                if response.action == "truncate":
                    counters["truncated"] += 1
            else:
                counters["errors"] += 1
                if response.action == "truncate":
                    counters["truncated"] += 1
            self.history.append(
                {
                    "endpoint": endpoint,
                    "method": req.method,
                    "path": req.path,
                    "status": response.status,
                    "action": response.action,
                    "request_id": request_id,
                }
            )
        return response

    def _match(self, req: _Request) -> tuple[str, Callable[[_Request], _Result]] | None:
        for method, pattern, endpoint, handler in self._routes:
            match = pattern.fullmatch(req.path)
            if match and (method == "*" or method == req.method):
                req.params = match.groupdict()
                return endpoint, handler
        return None

    def _check_auth(self, req: _Request) -> _ApiError | None:
        header = req.headers.get("authorization", "").strip()
        if not header:
            return _ApiError(
                401,
                "You didn't provide an API key. Provide your deAPI key in an Authorization header "
                "using Bearer auth (i.e. Authorization: Bearer dpn-sk-...). Get a key at "
                "app.deapi.ai/dashboard.",
            )
        scheme, _, key = header.partition(" ")
        key = key.strip()
        redacted = (key[:9] + "***") if len(key) > 9 else "***"
        if scheme.lower() != "bearer" or not key:
            return _ApiError(
                401,
                "Malformed Authorization header: expected 'Bearer dpn-sk-...'.",
                code="invalid_api_key",
            )
        if self.api_key is not None:
            if key != self.api_key:
                return _ApiError(
                    401, f"Incorrect API key provided: {redacted}.", code="invalid_api_key"
                )
        elif not key.startswith(_KEY_PREFIX) or len(key) == len(_KEY_PREFIX):
            return _ApiError(
                401,
                f"Incorrect API key provided: {redacted}. deAPI keys for the OpenAI-compatible "
                "API start with 'dpn-sk-' (dpn-sk-<id>|<secret>).",
                code="invalid_api_key",
            )
        return None

    # ------------------------------------------------------------------ error bodies

    def _error_response(self, error: _ApiError, endpoint: str | None) -> EmulatorResponse:
        status = error.status
        if self.error_style == "native" or (endpoint or "").startswith("v2."):
            if status in (400, 422):
                status = 422
                errors = getattr(error, "native_errors", None) or {
                    error.param or "request": [error.message]
                }
                payload: dict[str, Any] = {"message": error.message, "errors": errors}
            elif status == 401:
                payload = {"message": "Unauthenticated."}
            elif status == 429:
                payload = {"message": "Too Many Attempts."}
            elif status >= 500:
                payload = {"message": "Server Error"}
            else:
                payload = {"message": error.message}
        else:
            payload = {
                "error": {
                    "message": error.message,
                    "type": error.type,
                    "param": error.param,
                    "code": error.code,
                }
            }
        body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        headers = {"Content-Type": "application/json", **error.headers}
        return EmulatorResponse(status, headers, body, endpoint=endpoint)

    def _fault_response(self, fault: Fault, endpoint: str) -> EmulatorResponse:
        assert fault.status is not None
        status = int(fault.status)
        headers: dict[str, str] = {}
        if fault.retry_after is not None:
            headers["Retry-After"] = str(fault.retry_after)
        if fault.body is None:
            message = fault.message or (
                "Too Many Attempts (emulated fault)."
                if status == 429
                else f"Emulated fault: HTTP {status} injected by Emulator.configure()."
            )
            code = "rate_limit_exceeded" if status == 429 else None
            response = self._error_response(
                _ApiError(status, message, code=code, headers=headers), endpoint
            )
        else:
            if isinstance(fault.body, bytes):
                body = fault.body
            elif isinstance(fault.body, str):
                body = fault.body.encode("utf-8")
            else:
                body = json.dumps(fault.body).encode("utf-8")
            content_type = "application/json" if body[:1] in (b"{", b"[") else "text/plain"
            response = EmulatorResponse(
                status, {"Content-Type": content_type, **headers}, body, endpoint=endpoint
            )
        response.headers.update(fault.headers or {})
        return response

    # ------------------------------------------------------------------ shared checks

    def _model(self, value: Any, task: str) -> M.ModelProfile:
        if value is None or value == "":
            raise _bad(
                f"You must provide a model parameter. deAPI models for {task}: "
                f"{', '.join(_models_for(task))}.",
                param="model",
                code="missing_required_parameter",
            )
        if not isinstance(value, str):
            raise _bad(f"'model' must be a string, got {type(value).__name__}.", param="model")
        profile = M.MODELS.get(value)
        if profile is None:
            raise _ApiError(
                404,
                f"The model '{value}' does not exist or you do not have access to it. deAPI uses "
                f"its own model slugs; for {task} use one of: {', '.join(_models_for(task))}.",
                param="model",
                code="model_not_found",
            )
        if task not in profile.tasks:
            hint = ""
            if task == "images.edits" and "images.generations" in profile.tasks:
                hint = " It is a text-to-image model and does not support image edits."
            raise _bad(
                f"The model '{value}' does not support {task}.{hint} Use one of: "
                f"{', '.join(_models_for(task))}.",
                param="model",
                code="model_not_supported",
            )
        return profile

    # ------------------------------------------------------------------ models

    def _list_models(self, req: _Request) -> _Result:
        return _json_result({"object": "list", "data": [_model_object(m) for m in M.MODELS]})

    def _get_model(self, req: _Request) -> _Result:
        model = req.params["model"]
        if model not in M.MODELS:
            raise _ApiError(
                404,
                f"The model '{model}' does not exist or you do not have access to it.",
                param="model",
                code="model_not_found",
            )
        return _json_result(_model_object(model))

    def _chat(self, req: _Request) -> _Result:
        raise _ApiError(
            404,
            "deAPI does not serve LLMs: /v1/chat/completions is out of scope of its "
            "OpenAI-compatible API (images, speech, transcription, embeddings and video only). "
            "Use an LLM provider for chat.",
            code="unsupported_endpoint",
        )

    def _files_unsupported(self, req: _Request) -> _Result:
        raise _ApiError(
            404,
            "/v1/files is not available on deAPI yet (coming soon): send files inline as "
            "multipart/form-data with the request that uses them.",
            code="unsupported_endpoint",
        )

    # ------------------------------------------------------------------ embeddings

    def _embeddings(self, req: _Request) -> _Result:
        data = req.json()
        model = self._model(data.get("model"), "embeddings")
        texts = _embedding_inputs(data.get("input", _UNSET))
        encoding = data.get("encoding_format", "float")
        if encoding not in ("float", "base64"):
            raise _bad(
                f"encoding_format must be 'float' or 'base64'. Got {encoding!r}.",
                param="encoding_format",
            )
        dimensions = data.get("dimensions")
        if dimensions is not None and dimensions != M.EMBEDDING_DIMENSIONS:
            raise _bad(
                f"Model '{model.id}' returns {M.EMBEDDING_DIMENSIONS}-dimensional vectors only; "
                f"omit 'dimensions' or pass {M.EMBEDDING_DIMENSIONS}. Got {dimensions!r}.",
                param="dimensions",
            )
        tokens = [M.count_tokens(t) for t in texts]
        for i, count in enumerate(tokens):
            if count > M.MAX_TOKENS_PER_INPUT:
                raise _bad(
                    f"Input {i} has about {count} tokens; {model.id} accepts at most "
                    f"{M.MAX_TOKENS_PER_INPUT} tokens per input. Split the text into chunks.",
                    param="input",
                    code="context_length_exceeded",
                )
        total = sum(tokens)
        if total > M.MAX_REQUEST_TOKENS:
            raise _bad(
                f"This request has about {total} tokens in {len(texts)} inputs; at most "
                f"{M.MAX_REQUEST_TOKENS} tokens per request are allowed. Send fewer inputs per "
                "request.",
                param="input",
                code="max_tokens_per_request",
            )
        matrix = M.embed_texts(texts)
        decision = req.decision
        if decision.wrong_dimension is not None and decision.wrong_dimension != matrix.shape[1]:
            wrong = np.zeros((matrix.shape[0], decision.wrong_dimension), dtype=np.float32)
            width = min(matrix.shape[1], decision.wrong_dimension)
            wrong[:, :width] = matrix[:, :width]
            matrix = wrong
        order = list(range(len(texts)))
        if decision.drop_items:
            order = order[: max(0, len(order) - decision.drop_items)]
        if decision.shuffle and len(order) > 1:
            rng = np.random.default_rng(decision.shuffle_seed)
            permuted = [order[i] for i in rng.permutation(len(order))]
            if permuted == order:
                permuted = order[1:] + order[:1]
            order = permuted
        nulls: set[int] = set()
        if decision.nan_vectors:  # index 0: NaN, 1: +inf, 2: null (see _faults)
            matrix = matrix.copy()
            for i, bad in enumerate((np.nan, np.inf)[: len(texts)]):
                matrix[i, 0] = bad
            nulls = {2} if len(texts) > 2 else set()
        if encoding == "base64":
            little = matrix.astype("<f4", copy=False)
            items = [
                {"object": "embedding", "index": i, "embedding": _b64(little[i])} for i in order
            ]
        else:
            with np.errstate(invalid="ignore"):
                rounded = np.round(matrix.astype(np.float64), 9)
            items = [
                {"object": "embedding", "index": i, "embedding": rounded[i].tolist()} for i in order
            ]
        for item in items:
            if item["index"] in nulls:
                item["embedding"] = None
        payload = {
            "object": "list",
            "data": items,
            "model": model.id,
            "usage": {"prompt_tokens": total, "total_tokens": total},
        }
        return _json_result(payload, inputs=len(texts), tokens=total)

    # ------------------------------------------------------------------ images

    def _image_options(
        self, data: Mapping[str, Any], profile: M.ModelProfile
    ) -> tuple[int, str, int | None]:
        n = _int_field(data, "n", 1)
        if not 1 <= n <= M.MAX_IMAGES_PER_REQUEST:
            raise _bad(
                f"The 'n' parameter must be an integer between 1 and {M.MAX_IMAGES_PER_REQUEST} "
                f"on deAPI (OpenAI allows 10). Got {n}. Send several requests for more images.",
                param="n",
                code="integer_above_max_value" if n > M.MAX_IMAGES_PER_REQUEST else None,
            )
        response_format = data.get("response_format") or "url"
        if response_format not in ("url", "b64_json"):
            raise _bad(
                f"response_format must be 'url' or 'b64_json'. Got {response_format!r}.",
                param="response_format",
            )
        seed = data.get("seed")
        if seed is not None:
            seed = _int_field(data, "seed", 0)
            if seed == -1:
                seed = None
            elif seed < 0:
                raise _bad(f"'seed' must be >= 0 (or -1 for random). Got {seed}.", param="seed")
        if data.get("steps") is not None:
            steps = _int_field(data, "steps", 0)
            low, high = profile.min_steps, profile.max_steps
            if low is not None and high is not None and not low <= steps <= high:
                allowed = f"exactly {low}" if low == high else f"between {low} and {high}"
                raise _bad(
                    f"'steps' must be {allowed} for model '{profile.id}'. Got {steps}.",
                    param="steps",
                )
        negative = data.get("negative_prompt")
        if negative is not None and not isinstance(negative, str):
            raise _bad("'negative_prompt' must be a string.", param="negative_prompt")
        return n, response_format, seed

    def _image_payload(
        self, req: _Request, images: list[bytes], response_format: str
    ) -> dict[str, Any]:
        items: list[dict[str, str]] = []
        for png in images:
            if response_format == "b64_json":
                items.append({"b64_json": base64.b64encode(png).decode("ascii")})
            else:
                with self._lock:
                    self._counter += 1
                    token = (
                        "img_" + hashlib.sha256(png + str(self._counter).encode()).hexdigest()[:32]
                    )
                    now = self.clock()
                    self._images = {k: v for k, v in self._images.items() if v.expires > now - 3600}
                    self._images[token] = _StoredImage(png, now + self.url_ttl)
                items.append({"url": f"{req.base_url}/v1/files/images/{token}.png"})
        return {"created": int(time.time()), "data": items, "output_format": "png"}

    def _generate(self, req: _Request) -> _Result:
        data = req.json()
        profile = self._model(data.get("model"), "images.generations")
        prompt = _prompt(data.get("prompt"))
        n, response_format, seed = self._image_options(data, profile)
        width, height = _size(data.get("size"), (1024, 1024))
        problem = profile.check_size(width, height)
        if problem:
            raise _bad(problem, param="size")
        from ._media import render_png

        images = [
            render_png(prompt, width, height, (seed or 0) + i if seed is not None else i)
            for i in range(n)
        ]
        return _json_result(self._image_payload(req, images, response_format), images=n)

    def _edit(self, req: _Request) -> _Result:
        if not req.is_multipart():
            raise _bad(
                "/v1/images/edits expects multipart/form-data with 'image' (or 'image[]') file "
                "parts, 'prompt' and 'model'.",
            )
        fields = req.fields()
        if req.files("mask", "mask[]") or "mask" in fields:
            raise _bad(
                "Inpainting (mask) is not supported by deAPI: remove the 'mask' part and describe "
                "the change in the prompt instead.",
                param="mask",
                code="unsupported_parameter",
            )
        profile = self._model(fields.get("model"), "images.edits")
        prompt = _prompt(fields.get("prompt"))
        n, response_format, seed = self._image_options(fields, profile)
        uploads = req.files("image", "image[]", "images[]")
        if not uploads:
            raise _bad(
                "Provide the image to edit as a multipart file part named 'image' (or 'image[]').",
                param="image",
                code="missing_required_parameter",
            )
        if len(uploads) > profile.max_input_images:
            raise _bad(
                f"Model '{profile.id}' accepts at most {profile.max_input_images} input "
                f"image(s); got {len(uploads)}.",
                param="image",
            )
        from ._media import MediaError, image_size, render_png

        sizes: list[tuple[int, int]] = []
        for part in uploads:
            name = part.filename or part.name
            if len(part.data) > M.MAX_IMAGE_UPLOAD_BYTES:
                raise _bad(
                    f"Image '{name}' is {len(part.data) / 1e6:.1f} MB; deAPI accepts images up to "
                    f"{M.MAX_IMAGE_UPLOAD_BYTES // (1024 * 1024)} MB. Resize or recompress it.",
                    param="image",
                )
            try:
                w, h = image_size(part.data)
            except MediaError as exc:
                raise _bad(
                    f"Image '{name}' could not be read as an image: {exc}", param="image"
                ) from None
            if not (
                M.MIN_IMAGE_SIDE <= w <= M.MAX_IMAGE_SIDE
                and M.MIN_IMAGE_SIDE <= h <= M.MAX_IMAGE_SIDE
            ):
                raise _bad(
                    f"Image '{name}' is {w}x{h}; each side must be between {M.MIN_IMAGE_SIDE} and "
                    f"{M.MAX_IMAGE_SIDE} pixels.",
                    param="image",
                )
            sizes.append((w, h))
        if fields.get("size") not in (None, "", "auto"):
            width, height = _size(fields.get("size"), sizes[0])
            problem = profile.check_size(width, height)
            if problem:
                raise _bad(problem, param="size")
        else:  # the first input's size, snapped to the model's grid
            width, height = (_snap(v, profile) for v in sizes[0])
        source = uploads[0].data
        images = [
            render_png(
                prompt, width, height, (seed or 0) + i if seed is not None else i, source=source
            )
            for i in range(n)
        ]
        return _json_result(self._image_payload(req, images, response_format), images=n)

    def _download_image(self, req: _Request) -> _Result:
        token = req.params["token"]
        with self._lock:
            stored = self._images.get(token)
            now = self.clock()
        if stored is None:
            raise _ApiError(404, f"No image {token}.png here (unknown or long expired).")
        if now >= stored.expires:
            raise _ApiError(
                410,
                f"The URL of image {token}.png expired; image URLs are valid for "
                f"{self.url_ttl:g} s. Request response_format='b64_json' or download promptly.",
                code="url_expired",
            )
        return _Result(200, stored.data, "image/png")

    # ------------------------------------------------------------------ speech

    def _speech(self, req: _Request) -> _Result:
        data = req.json()
        profile = self._model(data.get("model"), "audio.speech")
        text = data.get("input")
        if not isinstance(text, str) or not text:
            raise _bad("'input' must be a non-empty string (the text to speak).", param="input")
        if len(text) > M.SPEECH_MAX_CHARS:
            raise _bad(
                f"'input' has {len(text)} characters; {profile.id} accepts at most "
                f"{M.SPEECH_MAX_CHARS}. Split the text.",
                param="input",
                code="string_above_max_length",
            )
        voice = data.get("voice")
        if isinstance(voice, dict):
            raise _bad("Custom voices are not supported; pass a voice name.", param="voice")
        if not isinstance(voice, str) or voice not in M.ALL_VOICES:
            raise _bad(
                f"Unknown voice {voice!r} for {profile.id}. Use an OpenAI alias "
                f"({', '.join(M.OPENAI_VOICE_ALIASES)}) or a Kokoro voice id such as af_bella, "
                "am_adam, bf_emma, bm_george, ef_dora, ff_siwis, if_sara, pf_dora.",
                param="voice",
            )
        fmt = data.get("response_format") or "mp3"
        if fmt not in self.speech_formats:
            raise _bad(
                f"response_format {fmt!r} is not supported; use one of: "
                f"{', '.join(self.speech_formats)}.",
                param="response_format",
            )
        speed = data.get("speed", 1.0)
        if isinstance(speed, bool) or not isinstance(speed, (int, float)):
            raise _bad(f"'speed' must be a number. Got {speed!r}.", param="speed")
        if not M.SPEECH_MIN_SPEED <= speed <= M.SPEECH_MAX_SPEED:
            raise _bad(
                f"'speed' must be between {M.SPEECH_MIN_SPEED} and {M.SPEECH_MAX_SPEED} for "
                f"{profile.id}. Got {speed}.",
                param="speed",
            )
        if data.get("stream_format") not in (None, "audio"):
            raise _bad("Only stream_format='audio' is supported.", param="stream_format")
        from ._media import synthesize_speech

        audio = synthesize_speech(text, voice=voice, fmt=fmt, speed=float(speed))
        return _Result(200, audio, M.SPEECH_CONTENT_TYPES[fmt], billing={"characters": len(text)})

    # ------------------------------------------------------------------ transcription

    def _transcribe(self, req: _Request) -> _Result:
        body_limit = self.max_request_bytes or (
            max(self.max_upload_bytes, self.max_video_upload_bytes) + 1024 * 1024
        )
        if len(req.body) > body_limit:
            raise _ApiError(
                413,
                f"Request body of {len(req.body) / 1e6:.1f} MB is too large; the limit is "
                f"{body_limit / 2**20:.0f} MB per request (audio files "
                f"{self.max_upload_bytes / 2**20:.0f} MB). Split the audio first.",
                param="file",
                code="file_too_large",
            )
        if not req.is_multipart():
            raise _bad(
                "/v1/audio/transcriptions expects multipart/form-data with a 'file' part and "
                "'model'."
            )
        fields = req.fields()
        profile = self._model(fields.get("model"), "audio.transcriptions")
        files = [p for p in req.files("file") if p.filename is not None] or req.files("file")
        if not files:
            raise _bad(
                "Provide the audio or video as a multipart file part named 'file'.",
                param="file",
                code="missing_required_parameter",
            )
        upload = files[0]
        filename = upload.filename or "file"
        is_video = ("." + filename.rsplit(".", 1)[-1].lower()) in M.VIDEO_EXTENSIONS
        file_limit = self.max_video_upload_bytes if is_video else self.max_upload_bytes
        if len(upload.data) > file_limit:
            kind = "video" if is_video else "audio"
            raise _ApiError(
                413,
                f"File '{filename}' is {len(upload.data) / 1e6:.1f} MB; the {kind} file limit is "
                f"{file_limit / 2**20:.0f} MB. Split the audio first.",
                param="file",
                code="file_too_large",
            )
        fmt = fields.get("response_format") or "json"
        if fmt not in ("json", "text", "verbose_json", "srt", "vtt"):
            raise _bad(
                f"response_format {fmt!r} is not supported; use json, text, verbose_json, srt or "
                "vtt.",
                param="response_format",
            )
        language = fields.get("language") or None
        if language is not None and not _LANGUAGE_RE.match(language):
            raise _bad(
                f"'language' must be an ISO-639-1 code such as 'en' or 'de'. Got {language!r}.",
                param="language",
            )
        granularities = fields.get("timestamp_granularities", [])
        if isinstance(granularities, str):
            granularities = [granularities]
        for value in granularities:
            if value not in ("word", "segment"):
                raise _bad(
                    f"timestamp_granularities values must be 'word' or 'segment'. Got {value!r}.",
                    param="timestamp_granularities",
                )
        want_words = "word" in granularities
        if want_words and "word" not in profile.timestamp_levels:
            raise _bad(
                f"Model '{profile.id}' supports only segment timestamps; use WhisperLargeV3Ct2 "
                "for word timestamps.",
                param="timestamp_granularities",
            )
        from ._media import MediaError, transcribe_audio

        try:
            result = transcribe_audio(
                upload.data, filename, language=language, word_timestamps=want_words
            )
        except MediaError as exc:
            message = str(exc)
            if filename not in message:
                message = f"Could not decode '{filename}' as audio or video: {message}"
            raise _bad(
                message,
                param="file",
                code="invalid_file",
            ) from None
        duration = float(result["duration"])
        billing = {"audio_seconds": duration, "bytes": len(upload.data)}
        text = result["text"]
        if fmt == "text":
            return _Result(200, text.encode("utf-8"), "text/plain; charset=utf-8", billing=billing)
        segments = [
            {k: v for k, v in segment.items() if k != "words"} for segment in result["segments"]
        ]
        if fmt in ("srt", "vtt"):
            body = _subtitles(segments, fmt)
            content_type = (
                "text/plain; charset=utf-8" if fmt == "srt" else "text/vtt; charset=utf-8"
            )
            return _Result(200, body.encode("utf-8"), content_type, billing=billing)
        usage = {"type": "duration", "seconds": math.ceil(duration)}
        if fmt == "json":
            return _json_result({"text": text, "usage": usage}, **billing)
        payload: dict[str, Any] = {
            "task": "transcribe",
            "language": result["language"],
            "duration": duration,
            "text": text,
            "segments": segments,
        }
        if want_words:
            payload["words"] = result.get("words", [])
        payload["usage"] = usage
        return _json_result(payload, **billing)

    # ------------------------------------------------------------------ videos

    def _create_video(self, req: _Request) -> _Result:
        if req.is_multipart():
            data: dict[str, Any] = req.fields()
            references = req.files("input_reference")
        else:
            data = req.json()
            references = []
        model_name = data.get("model") or M.DEFAULT_VIDEO_MODEL
        profile = self._model(model_name, "videos")
        prompt = _prompt(data.get("prompt"))
        if len(prompt) > 32000:
            raise _bad("'prompt' must be at most 32000 characters.", param="prompt")
        width, height = _size(data.get("size"), (720, 1280))
        problem = profile.check_size(width, height)
        if problem:
            raise _bad(problem, param="size")
        seconds_raw = data.get("seconds", "4")
        try:
            seconds = float(seconds_raw)
        except (TypeError, ValueError):
            raise _bad(
                f"'seconds' must be a number of seconds as a string, e.g. '4'. Got {seconds_raw!r}.",
                param="seconds",
            ) from None
        if not (math.isfinite(seconds) and profile.min_seconds <= seconds <= profile.max_seconds):
            raise _bad(
                f"'seconds' must be between {profile.min_seconds:g} and {profile.max_seconds:g} "
                f"for model '{profile.id}'. Got {seconds_raw!r}.",
                param="seconds",
            )
        if references:
            from ._media import MediaError, image_size

            try:
                image_size(references[0].data)
            except MediaError as exc:
                raise _bad(
                    f"input_reference '{references[0].filename}' is not a readable image: {exc}",
                    param="input_reference",
                ) from None
        seed = data.get("seed")
        seed_value = (
            int(seed) if isinstance(seed, (int, str)) and str(seed).lstrip("-").isdigit() else 0
        )
        with self._lock:
            self._counter += 1
            digest = hashlib.sha256(f"{self._counter}|{prompt}".encode()).hexdigest()
            job = _VideoJob(
                id="video_" + digest[:32],
                model=profile.id,
                prompt=prompt,
                width=width,
                height=height,
                seconds=f"{seconds:g}",
                seed=max(seed_value, 0),
                created_at=int(time.time()),
                will_fail=bool(_FAIL_WORD.search(prompt)),
            )
            self._videos[job.id] = job
            self._advance(job, 0)
            body = self._video_object(job)
        return _json_result(body)

    def _advance(self, job: _VideoJob, polls: int) -> None:
        job.polls += polls
        if job.polls >= self.video_polls_to_complete and job.completed_at is None:
            job.completed_at = int(time.time())
            if not job.will_fail and not job.billed:
                job.billed = True
                self._stats["videos"]["videos"] += 1
                self._stats["videos"]["video_seconds"] += float(job.seconds)

    def _video_object(self, job: _VideoJob) -> dict[str, Any]:
        total = max(1, self.video_polls_to_complete)
        error = None
        if job.completed_at is not None:
            status = "failed" if job.will_fail else "completed"
            progress = 100
            if job.will_fail:
                error = {
                    "code": "processing_error",
                    "message": "The video generation job failed (the emulator fails every job "
                    "whose prompt contains the word 'fail').",
                }
        elif job.polls == 0:
            status, progress = "queued", 0
        else:
            status, progress = "in_progress", int(100 * job.polls / total)
        return {
            "id": job.id,
            "object": "video",
            "model": job.model,
            "status": status,
            "progress": progress,
            "created_at": job.created_at,
            "completed_at": job.completed_at,
            "expires_at": (
                job.completed_at + _VIDEO_ASSET_TTL
                if job.completed_at is not None and not job.will_fail
                else None
            ),
            "prompt": job.prompt,
            "size": f"{job.width}x{job.height}",
            "seconds": job.seconds,
            "remixed_from_video_id": None,
            "error": error,
        }

    def _job(self, req: _Request) -> _VideoJob:
        job = self._videos.get(req.params["id"])
        if job is None:
            raise _ApiError(
                404,
                f"No video job with id '{req.params['id']}'.",
                param="video_id",
                code="video_not_found",
            )
        return job

    def _get_video(self, req: _Request) -> _Result:
        with self._lock:
            job = self._job(req)
            self._advance(job, 1)
            body = self._video_object(job)
        result = _json_result(body)
        if body["status"] in ("queued", "in_progress"):
            result.headers["openai-poll-after-ms"] = _VIDEO_POLL_AFTER_MS
        return result

    def _video_content(self, req: _Request) -> _Result:
        with self._lock:
            job = self._job(req)
            status = self._video_object(job)["status"]
        if status == "failed":
            raise _ApiError(
                409,
                f"Video '{job.id}' failed; it has no content. Create a new job.",
                code="video_failed",
            )
        if status != "completed":
            raise _ApiError(
                409,
                f"Video '{job.id}' is not ready yet (status '{status}'). Poll GET "
                f"/v1/videos/{job.id} until its status is 'completed'.",
                code="video_not_ready",
            )
        variant = (req.query.get("variant") or ["video"])[0]
        if variant == "thumbnail":
            from PIL import Image

            from ._media import render_png

            png = render_png(job.prompt, job.width, job.height, job.seed)
            out = io.BytesIO()
            Image.open(io.BytesIO(png)).convert("RGB").save(out, "WEBP", quality=80)
            return _Result(200, out.getvalue(), "image/webp")
        if variant != "video":
            raise _bad(f"variant must be 'video' or 'thumbnail'. Got {variant!r}.", param="variant")
        if job.content is None:
            from ._media import render_mp4

            content = render_mp4(
                job.prompt, job.width, job.height, float(job.seconds), seed=job.seed
            )
            with self._lock:
                job.content = content
        return _Result(200, job.content, "video/mp4")


# ---------------------------------------------------------------------- helpers


def _models_for(task: str) -> list[str]:
    return [m.id for m in M.MODELS.values() if task in m.tasks]


def _model_object(model: str) -> dict[str, Any]:
    return {"id": model, "object": "model", "created": M.MODEL_CREATED, "owned_by": "deapi"}


def _check_latency(latency: Any) -> float | tuple[float, float] | None:
    if latency is None:
        return None
    if isinstance(latency, (tuple, list)):
        if len(latency) != 2 or not 0 <= float(latency[0]) <= float(latency[1]):
            raise ValueError(
                f"latency must be seconds or a (low, high) pair with 0 <= low <= high. Got {latency!r}."
            )
        return (float(latency[0]), float(latency[1]))
    if float(latency) < 0:
        raise ValueError(f"latency must be >= 0 seconds. Got {latency!r}.")
    return float(latency)


def _b64(row: np.ndarray) -> str:
    return binascii.b2a_base64(row.tobytes(), newline=False).decode("ascii")


def _embedding_inputs(value: Any) -> list[str]:
    if value is _UNSET or value is None:
        raise _bad(
            "You must provide 'input': a string or an array of strings.",
            param="input",
            code="missing_required_parameter",
        )
    if isinstance(value, str):
        if value == "":
            raise _bad(
                "'$.input' is invalid: the input must not be an empty string.", param="input"
            )
        return [value]
    if not isinstance(value, list):
        raise _bad(
            f"'input' must be a string or an array of strings. Got {type(value).__name__}.",
            param="input",
        )
    if not value:
        raise _bad("'input' must not be an empty array.", param="input")
    if len(value) > M.MAX_EMBEDDING_INPUTS:
        raise _bad(
            f"'input' has {len(value)} items; at most {M.MAX_EMBEDDING_INPUTS} inputs are allowed "
            "per request. Send several requests.",
            param="input",
            code="array_above_max_length",
        )
    for i, item in enumerate(value):
        if isinstance(item, (int, list)) and not isinstance(item, bool):
            raise _bad(
                "Token arrays are not supported by deAPI's embeddings: send the texts as strings "
                f"(input[{i}] is {type(item).__name__}).",
                param="input",
            )
        if not isinstance(item, str):
            raise _bad(f"input[{i}] must be a string. Got {type(item).__name__}.", param="input")
        if item == "":
            raise _bad(
                f"'$.input' is invalid: input[{i}] is an empty string. Remove empty texts before "
                "embedding.",
                param="input",
            )
    return value


def _prompt(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _bad(
            "'prompt' must be a non-empty string.",
            param="prompt",
            code="missing_required_parameter",
        )
    return value


def _int_field(data: Mapping[str, Any], name: str, default: int) -> int:
    value = data.get(name, default)
    if value is None:
        return default
    if isinstance(value, bool):
        raise _bad(f"'{name}' must be an integer. Got {value!r}.", param=name)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    raise _bad(f"'{name}' must be an integer. Got {value!r}.", param=name)


def _size(value: Any, default: tuple[int, int]) -> tuple[int, int]:
    if value is None or value == "" or value == "auto":
        return default
    match = _SIZE_RE.match(value) if isinstance(value, str) else None
    if match is None:
        raise _bad(
            f"'size' must look like 'WIDTHxHEIGHT', e.g. '1024x1024'. Got {value!r}.",
            param="size",
        )
    return int(match.group(1)), int(match.group(2))


def _snap(value: int, profile: M.ModelProfile) -> int:
    step = max(1, profile.size_step)
    snapped = int(round(value / step)) * step
    return min(max(snapped, profile.min_size), profile.max_size)


def _timestamp(seconds: float, sep: str) -> str:
    millis = int(round(seconds * 1000))
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{sep}{millis:03d}"


def _subtitles(segments: Sequence[Mapping[str, Any]], fmt: str) -> str:
    lines: list[str] = ["WEBVTT", ""] if fmt == "vtt" else []
    for i, segment in enumerate(segments, start=1):
        sep = "." if fmt == "vtt" else ","
        if fmt == "srt":
            lines.append(str(i))
        start, end = _timestamp(segment["start"], sep), _timestamp(segment["end"], sep)
        lines += [f"{start} --> {end}", str(segment["text"]).strip(), ""]
    return "\n".join(lines)
