"""The emulator's HTTP primitives (requests, results, API errors), shared by the OpenAI-compatible
endpoints (``_app``) and the native v2 ones (``_native``)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from ._faults import Decision
from ._multipart import MultipartError, Part, parse_multipart

__all__ = [
    "EmulatorResponse",
    "HandlesRequests",
    "_ApiError",
    "_Request",
    "_Result",
    "_bad",
    "_error_type",
    "_json_result",
]


@dataclass
class EmulatorResponse:
    """One answer of the emulator.

    ``headers`` never contain Content-Length (the adapters add it). ``latency`` is the delay
    (seconds) the adapter sleeps before answering; ``action`` is None, ``"drop"`` (close the
    connection without answering), ``"truncate"`` (send half of ``body`` with the full
    Content-Length, then close) or ``"trickle"`` (send the headers, then ``body`` one byte
    every ``interval`` seconds).
    """

    status: int
    headers: dict[str, str]
    body: bytes
    endpoint: str | None = None
    latency: float = 0.0
    action: str | None = None
    interval: float = 0.0

    def json(self) -> Any:
        """Decode the body as JSON."""
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


class _ApiError(Exception):
    """An error answer: status, OpenAI-envelope fields and extra headers."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        type: str | None = None,  # noqa: A002 - the envelope's field name
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.type = type or _error_type(status)
        self.headers = dict(headers or {})


def _error_type(status: int) -> str:
    if status == 429:
        return "requests"
    if status >= 500:
        return "server_error"
    return "invalid_request_error"


def _bad(message: str, param: str | None = None, code: str | None = None) -> _ApiError:
    return _ApiError(400, message, param=param, code=code)


@dataclass
class _Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    scheme: str
    params: dict[str, str] = field(default_factory=dict)
    decision: Decision = field(default_factory=Decision)
    _form: list[Part] | None = None

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://{self.headers.get('host', 'localhost')}"

    def json(self) -> dict[str, Any]:
        if not self.body.strip():
            raise _bad(
                "The request body is empty: send a JSON object (Content-Type: application/json)."
            )
        try:
            data = json.loads(self.body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise _bad(
                "We could not parse the JSON body of your request. (HINT: This likely means you "
                "aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, "
                f"but what was sent was not valid JSON: {exc})"
            ) from None
        if not isinstance(data, dict):
            raise _bad(f"The JSON body must be an object, got {type(data).__name__}.")
        return data

    def form(self) -> list[Part]:
        if self._form is None:
            try:
                self._form = parse_multipart(self.body, self.content_type)
            except MultipartError as exc:
                raise _bad(str(exc)) from None
        return self._form

    def is_multipart(self) -> bool:
        return self.content_type.lower().startswith("multipart/")

    def fields(self) -> dict[str, Any]:
        """Text fields of a multipart form (last value wins; ``[]`` names become lists)."""
        out: dict[str, Any] = {}
        for part in self.form():
            if part.filename is not None:
                continue
            if part.name.endswith("[]"):
                out.setdefault(part.name[:-2], []).append(part.text)
            else:
                out[part.name] = part.text
        return out

    def files(self, *names: str) -> list[Part]:
        return [p for p in self.form() if p.name in names]


@dataclass
class _Result:
    status: int
    body: bytes
    content_type: str
    headers: dict[str, str] = field(default_factory=dict)
    billing: dict[str, float] = field(default_factory=dict)


def _json_result(obj: Any, status: int = 200, **billing: float) -> _Result:
    body = json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return _Result(status, body, "application/json", billing=dict(billing))


class HandlesRequests(Protocol):
    """What the transport and server adapters need of an ``Emulator``: one call per request
    (so they depend on this module, not on ``_app``, which builds them)."""

    def handle(
        self,
        method: str,
        path: str,
        headers: Mapping[str, str],
        body: bytes = b"",
        *,
        scheme: str = "http",
    ) -> EmulatorResponse: ...
