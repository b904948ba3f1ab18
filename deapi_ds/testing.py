"""Test your own pipelines against deapi_ds's emulator: no network, no key, no credits.

As a context manager::

    from deapi_ds.testing import emulated

    def test_my_pipeline():
        with emulated() as env:
            env.emulator.configure("embeddings", script=[503, None])   # one transient failure
            result = my_pipeline(...)                                  # calls deapi_ds.embed(...)
            assert env.stats("embeddings")["requests"] == 2

As a pytest fixture (add one line to your ``conftest.py``)::

    from deapi_ds.testing import deapi_emulator  # noqa: F401

    def test_embed(deapi_emulator):
        deapi_ds.embed(["a", "b"])
        assert deapi_emulator.stats("embeddings")["inputs"] == 2

Inside the block every deapi_ds call (and ``deapi_ds.Client()``), from any thread, talks to the
emulator; caching goes to a private temporary folder unless ``cache_dir=`` is given. ``loopback=True`` serves the
emulator on 127.0.0.1 so that other tools (the ``openai`` SDK, subprocesses) can use
``env.base_url``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import tempfile
from collections.abc import Iterator
from typing import Any

from ._client import Client
from ._config import process_context
from ._tasks import clear_shared_clients

__all__ = ["EmulatedEnvironment", "deapi_emulator", "emulated"]

EMULATOR_KEY = "dpn-sk-0|emulator"


@dataclasses.dataclass
class EmulatedEnvironment:
    """What :func:`emulated` yields: the emulator, a client on it and its base URL."""

    emulator: Any
    client: Client
    base_url: str
    api_key: str = dataclasses.field(default=EMULATOR_KEY, repr=False)

    def stats(self, endpoint: str | None = None) -> dict:
        """Requests, errors and billable units the emulator counted (see Emulator.stats)."""
        return self.emulator.stats(endpoint)


@contextlib.contextmanager
def emulated(
    *,
    loopback: bool = False,
    cache_dir: str | None = None,
    api_key: str | None = None,
    emulator: Any = None,
    **settings: Any,
) -> Iterator[EmulatedEnvironment]:
    """Route deapi_ds to an emulator for the duration of the block.

    ``settings`` are extra configuration options (``max_retries=0``, ``rpm=...``) applied inside
    the block. ``emulator`` lets you pass a pre-configured :class:`deapi_ds.emulator.Emulator`.
    """
    from .emulator import Emulator

    emu = emulator if emulator is not None else Emulator(api_key=api_key)
    key = api_key or EMULATOR_KEY
    with contextlib.ExitStack() as stack:
        if cache_dir is None:
            cache_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="deapi_ds_cache_"))
        if loopback:
            server = stack.enter_context(emu.serve())
            base_url, transport = server.base_url, None
        else:
            base_url, transport = "http://emulator.deapi-ds.invalid/v1", emu.transport()
        options = {"tier": "unlimited", **settings}
        options.setdefault("native_base_url", base_url.removesuffix("/v1") + "/api/v2")
        stack.enter_context(
            process_context(
                base_url=base_url,
                api_key=key,
                transport=transport,
                cache_dir=cache_dir,
                cache_enabled=True,
                **options,
            )
        )
        stack.callback(clear_shared_clients)
        client = Client()
        yield EmulatedEnvironment(emu, client, base_url, key)


try:  # the fixture exists only where pytest does
    import pytest

    @pytest.fixture
    def deapi_emulator(tmp_path: Any) -> Iterator[Any]:
        """A pytest fixture: deapi_ds talks to a fresh in-process emulator; yields the Emulator."""
        with emulated(cache_dir=str(tmp_path / "deapi_ds_cache")) as env:
            yield env.emulator

except ImportError:  # pragma: no cover
    pass
