"""Loopback HTTP/1.1 server for the emulator (stdlib ``http.server``, one thread per connection).

Use :meth:`Emulator.serve` in tests and notebooks, or ``deapi_ds.emulator.main_serve`` (what
``deapi-ds emulator --port N`` runs) for a blocking server.

>>> from deapi_ds.emulator import Emulator
>>> with Emulator().serve() as server:  # doctest: +SKIP
...     import openai
...     client = openai.OpenAI(base_url=server.base_url, api_key="dpn-sk-test")
...     [m.id for m in client.models.list()][:2]
['Flux1schnell', 'ZImageTurbo_INT8']
"""

from __future__ import annotations

import contextlib
import socket
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from ._http import HandlesRequests

__all__ = ["EmulatorServer", "serve"]

_MAX_BODY = 512 * 1024 * 1024


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in separate writes
    server_version = "deapi-emulator"
    sys_version = ""
    server: _HTTPServer

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        if self.server.verbose:
            super().log_message(format, *args)

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        if length > _MAX_BODY:
            raise ValueError(f"request body of {length} bytes is too large")
        return self.rfile.read(length) if length else b""

    def _dispatch(self) -> None:
        try:
            body = self._read_body()
        except ValueError:
            self.send_error(413, "Request body too large")
            self.close_connection = True
            return
        emulator = self.server.emulator
        response = emulator.handle(self.command, self.path, dict(self.headers.items()), body)
        if response.latency > 0:
            time.sleep(response.latency)
        if response.action == "drop":
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.send_response(response.status)
        for key, value in response.headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(response.body)))
        if response.action == "truncate":
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        payload = response.body
        if response.action == "truncate":
            payload = payload[: len(payload) // 2]
        if self.command != "HEAD" and response.action == "trickle":
            for i in range(len(payload)):  # the client hanging up ends the loop (BrokenPipe)
                if i:
                    time.sleep(response.interval)
                self.wfile.write(payload[i : i + 1])
                self.wfile.flush()
        elif self.command != "HEAD":
            self.wfile.write(payload)
        self.wfile.flush()
        if response.action == "truncate":
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _dispatch


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024  # many clients connect at once (benchmarks at 128+ concurrency)

    def __init__(self, address: tuple[str, int], emulator: HandlesRequests, verbose: bool) -> None:
        self.emulator = emulator
        self.verbose = verbose
        super().__init__(address, _Handler)

    def handle_error(self, request: object, client_address: object) -> None:
        """A client that went away (reset, broken pipe) is normal; print anything else."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)  # type: ignore[arg-type]


class EmulatorServer:
    """A running loopback server: ``base_url`` (ends in ``/v1``), ``host``, ``port``, ``close()``."""

    def __init__(
        self,
        emulator: HandlesRequests,
        host: str = "127.0.0.1",
        port: int = 0,
        verbose: bool = False,
    ) -> None:
        self.emulator = emulator
        self._httpd = _HTTPServer((host, port), emulator, verbose)
        self.host = host
        self.port: int = self._httpd.server_address[1]
        self.base_url = f"http://{host}:{self.port}/v1"
        self._thread: threading.Thread | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"<EmulatorServer {self.base_url}>"

    def start(self) -> EmulatorServer:
        """Serve in a daemon thread and return self."""
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"deapi-emulator-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in the calling thread until :meth:`close` or KeyboardInterrupt."""
        self._httpd.serve_forever(poll_interval=0.2)

    def close(self) -> None:
        """Stop serving and release the port (idempotent)."""
        if self._closed:
            return
        self._closed = True
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=5)
        self._httpd.server_close()

    def __enter__(self) -> EmulatorServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextlib.contextmanager
def serve(
    emulator: HandlesRequests, host: str = "127.0.0.1", port: int = 0
) -> Iterator[EmulatorServer]:
    """Run ``emulator`` on ``host:port`` (0 = a free port) for the duration of the block."""
    server = EmulatorServer(emulator, host, port).start()
    try:
        yield server
    finally:
        server.close()
