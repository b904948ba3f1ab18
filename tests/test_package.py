"""The package's shape: public surface, layer rules, README commands and snippets."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import deapi_ds

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "deapi_ds"


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_all_is_sorted_and_importable():
    assert list(deapi_ds.__all__) == sorted(deapi_ds.__all__)
    for name in deapi_ds.__all__:
        assert hasattr(deapi_ds, name), name
    assert deapi_ds.Client.__module__ == "deapi_ds._client"
    assert "deapi_ds.Client" in repr(deapi_ds.Client("dpn-sk-1|x"))
    assert deapi_ds.DeapiError.__module__ == "deapi_ds"


def test_py_typed_and_version():
    assert (PKG / "py.typed").exists()
    assert re.match(r"\d+\.\d+\.\d+", deapi_ds.__version__)


@pytest.mark.parametrize(
    "library, allowed",
    [
        ("httpx", {"_transport.py", "emulator/_transport.py", "emulator/_app.py"}),
        ("tenacity", {"_engine.py"}),
    ],
)
def test_each_library_owned_by_one_module(library, allowed):
    owners = set()
    for path in PKG.rglob("*.py"):
        if any(name == library or name.startswith(library + ".") for name in _imports(path)):
            owners.add(str(path.relative_to(PKG)))
    assert owners <= allowed, owners


def test_only_config_reads_environment():
    offenders = []
    for path in PKG.rglob("*.py"):
        rel = str(path.relative_to(PKG))
        if rel in ("_config.py", "cli.py", "dask.py") or rel.startswith("emulator/"):
            continue
        text = path.read_text()
        if re.search(r"os\.environ|os\.getenv", text):
            offenders.append(rel)
    assert offenders == []


def test_engine_has_no_httpx_or_pandas():
    names = _imports(PKG / "_engine.py")
    assert not any(n.split(".")[0] in ("httpx", "pandas") for n in names)


def test_readme_starts_with_two_commands_and_ci_runs_the_second():
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"```(?:bash|sh)\n(.*?)```", readme, re.S)
    assert block and readme.index(block.group(0)) < 40
    commands = [line for line in block.group(1).strip().splitlines() if line.strip()]
    assert len(commands) == 2
    assert "deapi-ds demo" in commands[0]
    assert "pytest" in commands[1]
    ci = (ROOT / ".ci" / "run").read_text()
    assert commands[1] in ci.splitlines()


def test_readme_python_snippets_run(tmp_path, monkeypatch):
    """Docs are code: every ```python block of the README runs, in order, on the emulator."""
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
    assert blocks
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").symlink_to(ROOT / "data", target_is_directory=True) if (
        ROOT / "data"
    ).exists() else None
    namespace: dict = {}
    for i, code in enumerate(blocks):
        try:
            exec(compile(code, f"README.md python block {i + 1}", "exec"), namespace)
        except Exception as exc:  # pragma: no cover - the message says which block
            raise AssertionError(f"README python block {i + 1} failed: {exc!r}\n{code}") from exc


def test_native_layer_public_helpers_and_imports():
    for name in (
        "abalance",
        "aquote",
        "balance",
        "quote",
    ):
        assert name in deapi_ds.__all__
    assert deapi_ds.balance.__doc__ and deapi_ds.quote.__doc__
    # the native client and the job layer stay below pandas; only _transport imports httpx
    for module in ("_native.py", "_jobs.py"):
        names = _imports(PKG / module)
        assert not any(n.split(".")[0] in ("httpx", "pandas") for n in names), module
    # the emulator checks the wire contract on its own
    for module in ("emulator/_native.py", "emulator/_ocr.py"):
        text = (PKG / module).read_text()
        assert "from .." not in text and "import deapi_ds" not in text, module
