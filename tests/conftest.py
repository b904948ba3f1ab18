"""Shared fixtures: every test starts from a clean configuration with no real key and a private cache."""

from __future__ import annotations

import os
import sys

import pytest

_ENV_PREFIXES = ("DEAPI_", "OPENAI_")
#: read before the autouse fixture hides the environment: live tests use it, nothing else does
LIVE_KEY = os.environ.get("DEAPI_API_KEY")
LIVE_BASE_URL = os.environ.get("DEAPI_BASE_URL")


@pytest.fixture(autouse=True)
def _clean_config(monkeypatch, tmp_path):
    for name in list(os.environ):
        if name.startswith(_ENV_PREFIXES):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DEAPI_DS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("DEAPI_DS_PROGRESS", "0")
    import deapi_ds
    from deapi_ds import _tasks

    deapi_ds.reset_config()
    _tasks.clear_shared_clients()
    yield
    deapi_ds.reset_config()
    _tasks.clear_shared_clients()
    if "matplotlib.pyplot" in sys.modules:  # figures are made through pyplot: close them
        sys.modules["matplotlib.pyplot"].close("all")


@pytest.fixture
def emulator():
    """An in-process emulator wired as the default client (no sockets)."""
    import deapi_ds

    return deapi_ds.use_emulator()
