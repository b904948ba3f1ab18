"""HTTP transport: the only module that imports httpx.

Builds pooled ``httpx.AsyncClient`` objects with the Authorization header (sent only to the
configured API host), translates httpx exceptions and error responses (OpenAI envelope and deAPI's
native ``{"message", "errors"}`` shape) into deapi_ds exceptions, and logs requests without
headers.
"""

from __future__ import annotations

import email.utils
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

from ._config import Settings
from ._engine import PerLoop
from ._exceptions import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    ModelNotFoundError,
    ResponseValidationError,
    redact,
    status_class,
)
from ._version import __version__

__all__ = ["HTTPResult", "Transport", "parse_error", "parse_retry_after"]

logger = logging.getLogger("deapi_ds")
USER_AGENT = f"deapi-ds/{__version__} (+https://github.com/deapi-ds) httpx/{httpx.__version__}"


@dataclass
class HTTPResult:
    """A successful response: status, headers (lower-case keys) and the raw body."""

    status: int
    headers: Mapping[str, str]
    content: bytes
    endpoint: str
    elapsed: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def json(self) -> Any:
        try:
            return json.loads(self.content)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ResponseValidationError(
                f"{self.endpoint} answered {self.status} with a body that is not JSON "
                f"({len(self.content)} bytes: {self.content[:80]!r}...).",
                endpoint=self.endpoint,
            ) from exc

    @property
    def request_id(self) -> str | None:
        return _request_id(self.headers)


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    default = {"http": 80, "https": 443}.get(url.scheme)
    return (url.scheme, url.host, url.port or default)


class _KeyAuth(httpx.Auth):
    """Adds the bearer key only to requests for the API's origin (scheme, host and port).

    A result URL on another host, on another port, or on plain http at the API's host name
    (``http://oai.deapi.ai/...`` while the API is ``https://``) is fetched without the key.
    """

    def __init__(self, key: str, base_url: str) -> None:
        self._key = key
        self._origin = _origin(httpx.URL(base_url))

    def __repr__(self) -> str:
        return "_KeyAuth(**********)"

    def auth_flow(self, request: httpx.Request):  # type: ignore[override]
        if self._key and _origin(request.url) == self._origin:
            request.headers["Authorization"] = f"Bearer {self._key}"
        yield request


def _request_id(headers: Mapping[str, str]) -> str | None:
    for name in ("x-request-id", "request-id", "openai-request-id", "x-amzn-requestid", "cf-ray"):
        if headers.get(name):
            return headers[name]
    return None


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """``Retry-After`` in seconds: a number of seconds or an HTTP date."""
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


def parse_error(
    status: int,
    headers: Mapping[str, str],
    content: bytes,
    *,
    endpoint: str,
    secret: str | None = None,
) -> APIStatusError:
    """Build the exception for an error response (both error shapes)."""
    message, param, code, type_, errors = "", None, None, None, {}
    body: Any = None
    try:
        body = json.loads(content) if content else None
    except (ValueError, UnicodeDecodeError):
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):  # OpenAI envelope
        err = body["error"]
        message = str(err.get("message") or "")
        param = err.get("param")
        code = err.get("code")
        type_ = err.get("type")
    elif isinstance(body, dict) and ("message" in body or "errors" in body):  # deAPI native
        message = str(body.get("message") or "")
        raw = body.get("errors") or {}
        if isinstance(raw, dict):
            errors = {
                str(k): [str(m) for m in (v if isinstance(v, list) else [v])]
                for k, v in raw.items()
            }
        elif isinstance(raw, list):  # older docs: [{"field": ..., "messages": [...]}]
            for item in raw:
                if isinstance(item, dict):
                    name = str(item.get("field", "?"))
                    msgs = item.get("messages") or item.get("message") or []
                    errors[name] = [str(m) for m in (msgs if isinstance(msgs, list) else [msgs])]
        if errors and not param:
            param = next(iter(errors))
    elif isinstance(body, dict) and isinstance(body.get("error"), str):
        message = body["error"]
    else:
        text = content[:300].decode("utf-8", "replace").strip()
        message = text or httpx.codes.get_reason_phrase(status) or f"HTTP {status}"
    message = redact(message, secret)
    errors = {k: [redact(m, secret) for m in v] for k, v in errors.items()}
    retry_after = parse_retry_after(headers.get("retry-after"))
    cls = status_class(status)
    hint = None
    model_words = f"{message} {code or ''} {param or ''} {' '.join(errors)}".lower()
    if status == 401:
        hint = (
            "Check your key: set DEAPI_API_KEY=dpn-sk-<id>|<secret> (from app.deapi.ai/dashboard) "
            "or call deapi_ds.set_config(api_key=...)."
        )
    elif status in (404, 422) and ("model" in model_words) and "route" not in model_words:
        cls = ModelNotFoundError
        hint = "See the models available to your account with deapi_ds.models()."
    elif status == 429 and retry_after is None:
        hint = "Rate limited; deapi_ds backs off and retries automatically."
    exc = cls(
        message or f"HTTP {status}",
        status_code=status,
        endpoint=endpoint,
        request_id=_request_id(headers),
        param=param,
        code=code,
        type=type_,
        errors=errors,
        retry_after=retry_after,
        hint=hint,
    )
    exc.headers = dict(headers)  # type: ignore[attr-defined]
    return exc


class Transport:
    """A pooled async HTTP client bound to one Settings snapshot."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._key = settings.require_key()
        self.base_url = settings.base_url.rstrip("/")
        self._clients: PerLoop[httpx.AsyncClient] = PerLoop(self._make_client)

    def __repr__(self) -> str:
        return f"Transport(base_url={self.base_url!r})"

    def _make_client(self) -> httpx.AsyncClient:
        s = self.settings
        timeout = httpx.Timeout(s.timeout, connect=s.connect_timeout)
        limits = httpx.Limits(
            max_connections=max(16, s.max_concurrency * 2),
            max_keepalive_connections=max(8, s.max_concurrency),
        )
        ua = USER_AGENT + (f" {s.user_agent_extra}" if s.user_agent_extra else "")
        kwargs: dict[str, Any] = {
            "timeout": timeout,
            "limits": limits,
            "headers": {"User-Agent": ua, "Accept": "application/json"},
            "auth": _KeyAuth(self._key, self.base_url),
            "follow_redirects": True,
        }
        if s.transport is not None:
            kwargs["transport"] = s.transport
        return httpx.AsyncClient(**kwargs)

    @property
    def client(self) -> httpx.AsyncClient:
        """The pooled httpx client of the current event loop (one per loop, made on first use)."""
        client = self._clients.get()
        if client.is_closed:
            self._clients.discard()
            client = self._clients.get()
        return client

    async def aclose(self) -> None:
        """Close the current event loop's connections (others close with their loops)."""
        client = self._clients.peek()
        if client is not None:
            self._clients.discard()
            await client.aclose()

    def url(self, path: str) -> str:
        if path.startswith(("http://", "https://")):
            return path
        return self.base_url + "/" + path.lstrip("/")

    async def request(
        self,
        method: str,
        path: str,
        *,
        endpoint: str,
        json_body: Any = None,
        data: Mapping[str, Any] | None = None,
        files: Any = None,
        params: Mapping[str, Any] | None = None,
        accept: str | None = None,
    ) -> HTTPResult:
        url = self.url(path)
        label = (
            f"{method} {urlsplit(url).path}"
            if endpoint != "download"
            else f"GET {url.split('?')[0]}"
        )
        headers = {"Accept": accept} if accept else None
        started = time.perf_counter()
        try:
            response = await self.client.request(
                method, url, json=json_body, data=data, files=files, params=params, headers=headers
            )
            content = response.content
        except httpx.TimeoutException as exc:
            raise APITimeoutError(
                f"{label} timed out ({type(exc).__name__}). Raise the limit with "
                "set_config(timeout=...) if the model is slow.",
                endpoint=label,
            ) from None
        except httpx.TransportError as exc:
            raise APIConnectionError(
                f"{label} failed: {type(exc).__name__}: {redact(str(exc), self._key)}",
                endpoint=label,
            ) from None
        elapsed = time.perf_counter() - started
        headers_lc = {k.lower(): v for k, v in response.headers.items()}
        logger.debug(
            "%s -> %d (%d bytes, %.3f s)", label, response.status_code, len(content), elapsed
        )
        if response.status_code >= 400:
            raise parse_error(
                response.status_code, headers_lc, content, endpoint=label, secret=self._key
            )
        return HTTPResult(response.status_code, headers_lc, content, label, elapsed)
