"""httpx transport adapter: answers requests from an :class:`Emulator`, with no sockets.

``EmulatorTransport`` is both an ``httpx.BaseTransport`` and an ``httpx.AsyncBaseTransport``,
so one object serves ``httpx.Client`` and ``httpx.AsyncClient``. It carries out what the
emulator decided: it sleeps the latency (``time.sleep`` / ``anyio.sleep``), raises
``httpx.RemoteProtocolError`` for a dropped connection, and for a truncated answer returns a
response whose body stream raises ``httpx.RemoteProtocolError`` after half of the bytes, as
httpx reports a peer that closes before Content-Length bytes arrived, and for a trickled
answer yields the body one byte per ``interval`` seconds.

>>> import httpx
>>> from deapi_ds.emulator import Emulator
>>> client = httpx.Client(transport=Emulator().transport(), base_url="https://oai.deapi.ai/v1",
...                       headers={"Authorization": "Bearer dpn-sk-test"})
>>> client.get("/models").status_code
200
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator

import httpx

from ._http import EmulatorResponse, HandlesRequests

__all__ = ["EmulatorTransport"]


class _TruncatedStream(httpx.SyncByteStream, httpx.AsyncByteStream):
    """Yields the first half of the body, then fails like a connection closed mid-body."""

    def __init__(self, body: bytes) -> None:
        self._part = body[: len(body) // 2]
        self._total = len(body)

    def _error(self) -> httpx.RemoteProtocolError:
        return httpx.RemoteProtocolError(
            f"peer closed connection without sending complete message body: received "
            f"{len(self._part)} bytes, expected {self._total} (emulated 'truncate' fault)"
        )

    def __iter__(self) -> Iterator[bytes]:
        if self._part:
            yield self._part
        raise self._error()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self._part:
            yield self._part
        raise self._error()


class _TrickleStream(httpx.SyncByteStream, httpx.AsyncByteStream):
    """Yields the body one byte every ``interval`` seconds (the ``"trickle"`` fault)."""

    def __init__(self, body: bytes, interval: float) -> None:
        self._body = body
        self._interval = interval

    def __iter__(self) -> Iterator[bytes]:
        for i in range(len(self._body)):
            if i:
                time.sleep(self._interval)
            yield self._body[i : i + 1]

    async def __aiter__(self) -> AsyncIterator[bytes]:
        import anyio

        for i in range(len(self._body)):
            if i:
                await anyio.sleep(self._interval)
            yield self._body[i : i + 1]


class EmulatorTransport(httpx.BaseTransport, httpx.AsyncBaseTransport):
    """An httpx transport backed by an emulator (see the module docstring)."""

    def __init__(self, emulator: HandlesRequests) -> None:
        self.emulator = emulator

    def __repr__(self) -> str:
        return f"<EmulatorTransport for {self.emulator!r}>"

    @staticmethod
    def _path(request: httpx.Request) -> str:
        return request.url.raw_path.decode("ascii")

    def _answer(self, request: httpx.Request, response: EmulatorResponse) -> httpx.Response:
        if response.action == "drop":
            raise httpx.RemoteProtocolError(
                "Server disconnected without sending a response (emulated 'drop' fault).",
                request=request,
            )
        headers = [(k, v) for k, v in response.headers.items()]
        headers.append(("Content-Length", str(len(response.body))))
        if response.action == "truncate":
            return httpx.Response(
                response.status,
                headers=headers,
                stream=_TruncatedStream(response.body),
                request=request,
            )
        if response.action == "trickle":
            return httpx.Response(
                response.status,
                headers=headers,
                stream=_TrickleStream(response.body, response.interval),
                request=request,
            )
        # a stream, not content=...: httpx would decode content=... at once (a gzip bomb
        # would expand here, in the emulator, instead of in the client under test)
        return httpx.Response(
            response.status,
            headers=headers,
            stream=httpx.ByteStream(response.body),
            request=request,
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        body = request.read()
        response = self.emulator.handle(
            request.method,
            self._path(request),
            request.headers,
            body,
            scheme=request.url.scheme,
        )
        if response.latency > 0:
            time.sleep(response.latency)
        return self._answer(request, response)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        import anyio
        import anyio.to_thread

        body = await request.aread()
        # Run the (CPU-bound) emulator in a worker thread so concurrent requests overlap,
        # as they would against a real server.
        response = await anyio.to_thread.run_sync(
            lambda: self.emulator.handle(
                request.method,
                self._path(request),
                request.headers,
                body,
                scheme=request.url.scheme,
            )
        )
        if response.latency > 0:
            await anyio.sleep(response.latency)
        return self._answer(request, response)

    def close(self) -> None:
        """Nothing to release (no sockets)."""

    async def aclose(self) -> None:
        """Nothing to release (no sockets)."""
