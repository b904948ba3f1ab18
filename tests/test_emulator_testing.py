"""deapi_ds.testing used the way a user would: in their own conftest, with threads, with faults."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor

import deapi_ds
from deapi_ds.testing import emulated

USER_CONFTEST = """
from deapi_ds.testing import deapi_emulator  # noqa: F401
"""

USER_TESTS = """
from concurrent.futures import ThreadPoolExecutor

import deapi_ds
from deapi_ds.emulator import Emulator
from deapi_ds.testing import emulated


def my_pipeline(texts):
    return deapi_ds.embed(texts).matrix


def test_with_the_fixture(deapi_emulator):
    assert my_pipeline(["a", "b"]).shape == (2, 1024)
    assert deapi_emulator.stats("embeddings")["inputs"] == 2


def test_with_faults():
    with emulated(max_retries=2) as env:
        env.emulator.configure("embeddings", script=[503, None])
        my_pipeline(["x"])
        assert env.stats("embeddings")["requests"] == 2
        assert env.client.embeddings(["y"]).matrix.shape == (1, 1024)


def test_threads_stay_on_the_emulator():
    with emulated() as env:
        with ThreadPoolExecutor(4) as pool:
            shapes = list(pool.map(lambda t: my_pipeline([t]).shape, ["p", "q", "r", "s"]))
        assert shapes == [(1, 1024)] * 4
        assert env.stats("embeddings")["inputs"] == 4


def test_loopback_for_other_tools():
    with emulated(loopback=True) as env:
        import httpx

        answer = httpx.post(
            env.base_url + "/embeddings",
            json={"model": "Bge_M3_FP16", "input": "hi"},
            headers={"Authorization": f"Bearer {env.api_key}"},
        )
        assert answer.json()["data"][0]["index"] == 0
        assert my_pipeline(["z"]).shape == (1, 1024)


def test_a_preconfigured_emulator():
    emu = Emulator(api_key="dpn-sk-7|mine").configure("models", script=[500])
    with emulated(emulator=emu, api_key="dpn-sk-7|mine", max_retries=0) as env:
        try:
            deapi_ds.models()
        except deapi_ds.ServerError:
            pass
        else:
            raise AssertionError("expected the scripted 500s")
        assert env.stats("models")["requests"] == 1
        assert len(deapi_ds.models()) >= 8
        assert "mine" not in repr(env)
"""


def test_user_project_runs_its_own_tests_on_the_emulator(tmp_path):
    """A user's conftest imports the fixture; a real-looking key and an unreachable "real" API
    are in the environment, so anything escaping the emulator would fail."""
    (tmp_path / "conftest.py").write_text(USER_CONFTEST)
    (tmp_path / "test_user.py").write_text(textwrap.dedent(USER_TESTS))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DEAPI_", "OPENAI_"))}
    env.update(
        DEAPI_API_KEY="dpn-sk-1|fake-real-key-of-the-developer",
        DEAPI_BASE_URL="https://real-deapi.invalid/v1",
        DEAPI_DS_MAX_RETRIES="0",
        DEAPI_DS_PROGRESS="0",
        DEAPI_DS_CACHE_DIR=str(tmp_path / "user_cache"),
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--durations=5",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "5 passed" in proc.stdout


def test_emulated_reaches_worker_threads_and_restores_everything(monkeypatch):
    monkeypatch.setenv("DEAPI_API_KEY", "dpn-sk-1|fake-real-key-of-the-developer")
    before = deapi_ds.get_config()
    with emulated() as env:
        with ThreadPoolExecutor(2) as pool:
            statuses = pool.submit(lambda: deapi_ds.embed(["in a worker"]).frame["status"]).result()
        assert statuses.tolist() == ["ok"]
        assert env.stats("embeddings")["inputs"] == 1
    after = deapi_ds.get_config()
    assert after == before and after.transport is None
    assert after.base_url == "https://oai.deapi.ai/v1"


def test_emulated_inside_an_outer_config_context():
    """The emulator wins over the caller's own config_context (a test must never escape)."""
    with deapi_ds.config_context(base_url="https://oai.deapi.ai/v1", api_key="dpn-sk-1|real"):
        with emulated() as env:
            assert deapi_ds.embed(["x"]).frame["status"].tolist() == ["ok"]
            assert env.stats("embeddings")["requests"] == 1
