"""Helpers shared by the benchmarks: an emulator server in its own process, RSS, timing."""

from __future__ import annotations

import contextlib
import os
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def emulator_process(configure: str = "") -> Iterator[str]:
    """Start the emulator on loopback in a separate process; yields its base URL.

    ``configure`` is Python run on the Emulator object ``emu`` before serving, e.g.
    ``emu.configure('embeddings', latency=0.05, rpm=60)``.
    """
    port = free_port()
    code = (
        "from deapi_ds.emulator import Emulator\n"
        "emu = Emulator()\n"
        f"{configure}\n"
        f"server = emu.serve(port={port})\n"
        "import time\n"
        "while True: time.sleep(3600)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.time() + 20
        while True:
            try:
                httpx.get(
                    base + "/models", headers={"Authorization": "Bearer dpn-sk-0|bench"}, timeout=1
                )
                break
            except httpx.TransportError:
                if time.time() > deadline:
                    raise
                time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    with open(f"/proc/{os.getpid()}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class Timer:
    def __enter__(self) -> Timer:
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start
