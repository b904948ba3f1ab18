"""HTTP transport: the only module that imports httpx.

Builds pooled ``httpx.AsyncClient`` objects with the Authorization header (sent only to the
configured API origin), translates httpx exceptions and error responses (OpenAI envelope and
deAPI's native ``{"message", "errors"}`` shape) into deapi_ds exceptions, and logs requests
without headers. Hardening, each under test:

- the key is held as a :class:`~deapi_ds._config.Secret` (redacted in any traceback's locals);
- a plain-http loopback base URL is reached directly, never through a proxy from the
  environment (``HTTP_PROXY``/``ALL_PROXY`` would see the key in clear);
- one request attempt (connect, upload, wait, download) ends within ``Settings.timeout``
  seconds in all, however slowly a server trickles its answer;
- a host that does not resolve, or a remote host that refuses connections, fails at once with
  a non-retryable :class:`APIConnectionError`;
- bodies are read as a stream with a byte budget, decompressed in bounded steps, so a gzip
  bomb fails fast with a clear error instead of filling memory.
"""

from __future__ import annotations

import email.utils
import json
import logging
import math
import socket
import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import anyio
import httpx

from ._config import Secret, Settings, is_loopback
from ._exceptions import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    ModelNotFoundError,
    ResponseValidationError,
    redact,
    status_class,
)
from ._loops import PerLoop
from ._version import __version__

__all__ = [
    "DEFAULT_MAX_RESPONSE_BYTES",
    "HTTPResult",
    "Transport",
    "parse_error",
    "parse_retry_after",
    "read_bounded",
]

logger = logging.getLogger("deapi_ds")
#: the largest answer (after decompression) read when the caller names no budget
DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024 * 1024
#: error answers are read up to this size (only their first few hundred bytes are shown)
MAX_ERROR_BYTES = 1024 * 1024
#: decompressed bytes produced per step: a bomb never expands further than this at once
_INFLATE_STEP = 1024 * 1024
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

    def __init__(self, key: Secret | None, base_url: str) -> None:
        self._key = key
        self._origin = _origin(httpx.URL(base_url))

    def __repr__(self) -> str:
        return "_KeyAuth(**********)"

    def auth_flow(self, request: httpx.Request):  # type: ignore[override]
        if self._key and _origin(request.url) == self._origin:
            request.headers["Authorization"] = "Bearer " + self._key.get()
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
        seconds = float(value)
    except ValueError:
        pass
    else:  # "inf" means "not in this run"; "nan" and negatives mean nothing usable
        return None if math.isnan(seconds) else max(0.0, seconds)
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
    secret: Secret | str | None = None,
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


def _unreachable(exc: BaseException, url: str) -> str | None:
    """Why retrying cannot help soon (a name that does not resolve, a remote refusal), or None."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, socket.gaierror):
            return "the host name does not resolve"
        if isinstance(cause, ConnectionRefusedError) and not is_loopback(url):
            return "the host refused the connection"
        cause = cause.__cause__ or cause.__context__
    return None


class _Inflater:
    """gzip/deflate decoding in bounded steps (at most ``_INFLATE_STEP`` bytes out per call)."""

    def __init__(self, encoding: str) -> None:
        self.encoding = encoding
        self._gzip = encoding in ("gzip", "x-gzip")
        self._d = zlib.decompressobj(zlib.MAX_WBITS | 16 if self._gzip else zlib.MAX_WBITS)
        self._started = False

    def feed(self, data: bytes, out: bytearray, limit: int) -> None:
        while data:
            try:
                piece = self._d.decompress(data, _INFLATE_STEP)
            except zlib.error:
                if self._gzip or self._started:
                    raise
                self._d = zlib.decompressobj(-zlib.MAX_WBITS)  # raw deflate, as some servers send
                self._started = True
                continue
            self._started = True
            out += piece
            if len(out) > limit:
                return
            data = self._d.unconsumed_tail
            rest = self._d.unused_data
            if self._d.eof and self._gzip and rest[:2] == b"\x1f\x8b":  # a further gzip member
                data = rest
                self._d = zlib.decompressobj(zlib.MAX_WBITS | 16)
            elif self._d.eof:
                return  # trailing bytes after the stream (padding) are ignored, as httpx does


async def read_bounded(response: httpx.Response, limit: int) -> tuple[bytes, bool]:
    """The decoded body of a streamed ``response``, read until ``limit`` bytes at most.

    Returns ``(body, complete)``: ``complete`` is False when the body is larger than
    ``limit`` (reading stops there; ``body`` holds the first ``limit`` bytes). gzip and
    deflate are inflated here in bounded steps; other encodings go through httpx's decoders.
    """
    if response.is_stream_consumed:  # built with content=... (a test's MockTransport): in memory
        body = response.content
        return (body, True) if len(body) <= limit else (body[:limit], False)
    encoding = response.headers.get("content-encoding", "").strip().lower()
    out = bytearray()
    if encoding in ("", "identity", "gzip", "x-gzip", "deflate"):
        inflater = _Inflater(encoding) if encoding not in ("", "identity") else None
        async for chunk in response.aiter_raw():
            if inflater is None:
                out += chunk
            else:
                try:
                    inflater.feed(chunk, out, limit)
                except zlib.error as exc:
                    raise httpx.DecodingError(
                        f"the {encoding} body is corrupt: {exc}", request=response.request
                    ) from None
            if len(out) > limit:
                return bytes(out[:limit]), False
    else:  # br, zstd: httpx decodes one network chunk at a time
        async for chunk in response.aiter_bytes():
            out += chunk
            if len(out) > limit:
                return bytes(out[:limit]), False
    return bytes(out), True


def _size(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n} bytes"  # pragma: no cover


class Transport:
    """A pooled async HTTP client bound to one Settings snapshot."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._key = settings.require_secret()
        self.base_url = settings.base_url.rstrip("/")
        self._clients: PerLoop[httpx.AsyncClient] = PerLoop(self._make_client)

    def __repr__(self) -> str:
        return f"Transport(base_url={getattr(self, 'base_url', None)!r})"

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
            # gzip and deflate only: those read_bounded inflates in bounded steps
            "headers": {
                "User-Agent": ua,
                "Accept": "application/json",
                "Accept-Encoding": "gzip, deflate",
            },
            "auth": _KeyAuth(self._key, self.base_url),
            "follow_redirects": True,
        }
        if s.transport is not None:
            kwargs["transport"] = s.transport  # httpx then ignores proxies from the environment
        elif is_loopback(self.base_url):
            # the API on this machine is reached directly: a proxy from the environment
            # (HTTP_PROXY, ALL_PROXY) would otherwise see the key in clear over plain http
            url = httpx.URL(self.base_url)
            kwargs["mounts"] = {f"all://{url.netloc.decode('ascii')}": None}
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
        max_bytes: int | None = None,
    ) -> HTTPResult:
        """Send one request and read its answer, within ``Settings.timeout`` seconds in all.

        ``max_bytes`` bounds the decoded body (default :data:`DEFAULT_MAX_RESPONSE_BYTES`);
        a larger answer raises :class:`ResponseValidationError` as soon as it passes the bound.
        """
        url = self.url(path)
        label = (
            f"{method} {urlsplit(url).path}"
            if endpoint != "download"
            else f"GET {url.split('?')[0]}"
        )
        limit = DEFAULT_MAX_RESPONSE_BYTES if max_bytes is None else int(max_bytes)
        headers = {"Accept": accept} if accept else None
        total = self.settings.timeout
        started = time.perf_counter()
        try:
            with anyio.fail_after(total):
                request = self.client.build_request(
                    method, url, json=json_body, data=data, files=files, params=params,
                    headers=headers,
                )  # fmt: skip
                response = await self.client.send(request, stream=True)
                try:
                    budget = limit if response.status_code < 400 else MAX_ERROR_BYTES
                    content, complete = await read_bounded(response, budget)
                finally:
                    await response.aclose()
        except TimeoutError:
            raise APITimeoutError(
                f"{label} did not finish within {total:g} s (the whole request: connect, send, "
                "wait and read). Raise the limit with set_config(timeout=...) if the model is "
                "slow.",
                endpoint=label,
            ) from None
        except httpx.TimeoutException as exc:
            raise APITimeoutError(
                f"{label} timed out ({type(exc).__name__}). Raise the limit with "
                "set_config(timeout=...) if the model is slow.",
                endpoint=label,
            ) from None
        except httpx.DecodingError as exc:
            raise APIConnectionError(
                f"{label} failed: the answer's body could not be decoded: "
                f"{redact(str(exc), self._key)}",
                endpoint=label,
            ) from None
        except httpx.TransportError as exc:
            why = _unreachable(exc, url)
            if why is not None:
                host = urlsplit(url).hostname
                raise APIConnectionError(
                    f"{label} failed: {why} ({host}). Check the base URL "
                    f"({self.base_url}; DEAPI_BASE_URL or set_config(base_url=...)) and the "
                    "network. Not retried.",
                    endpoint=label,
                    retryable=False,
                ) from None
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
        if not complete:
            encoding = headers_lc.get("content-encoding")
            packed = f" ({encoding}-compressed)" if encoding else ""
            raise ResponseValidationError(
                f"{label} answered with more than {_size(limit)}{packed}, more than this "
                "endpoint can legitimately return for the request; reading stopped there and the "
                "answer was dropped (a decompression bomb or a broken server). Nothing was "
                "cached.",
                endpoint=label,
            )
        return HTTPResult(response.status_code, headers_lc, content, label, elapsed)
