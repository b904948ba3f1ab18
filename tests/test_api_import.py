"""``import deapi_ds`` is cheap: heavy libraries and the task modules load on first use."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import deapi_ds

ROOT = Path(__file__).resolve().parents[1]
HEAVY = (
    "av",
    "soundfile",
    "matplotlib",
    "matplotlib.pyplot",
    "ipywidgets",
    "IPython",
    "pyarrow.parquet",
    "pytest",
    "httpx",
    "anyio",
    "tenacity",
)


def _fresh(code: str) -> str:
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_import_does_not_load_heavy_libraries():
    code = f"import sys, deapi_ds; print(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    assert _fresh(code) == ""


def test_first_use_loads_what_it_needs():
    code = (
        "import sys, deapi_ds\n"
        "deapi_ds.use_emulator()\n"
        "out = deapi_ds.embed(['a'], cache=None, progress=False)\n"
        "print(out.matrix.shape, 'httpx' in sys.modules, 'matplotlib.pyplot' in sys.modules)"
    )
    assert _fresh(code) == "(1, 1024) True False"


def test_media_library_loads_when_media_is_probed():
    code = (
        "import sys\n"
        "from deapi_ds import _media\n"
        "assert 'av' not in sys.modules\n"
        "try:\n"
        "    _media.probe(b'not media', name='x.mp3')\n"
        "except Exception:\n"
        "    pass\n"
        "print('av' in sys.modules)"
    )
    assert _fresh(code) == "True"


def _type_checking_imports() -> dict[str, str]:
    tree = ast.parse((ROOT / "deapi_ds" / "__init__.py").read_text())
    names: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            for imp in node.body:
                assert isinstance(imp, ast.ImportFrom) and imp.level == 1
                for alias in imp.names:
                    names[alias.name] = imp.module.lstrip(".")
    return names


def test_lazy_names_match_the_imports_shown_to_type_checkers():
    assert _type_checking_imports() == deapi_ds._LAZY
    assert set(deapi_ds._LAZY) <= set(deapi_ds.__all__)


def test_every_public_name_resolves_to_its_module_object():
    import importlib

    for name, module in deapi_ds._LAZY.items():
        value = getattr(deapi_ds, name)
        assert value is getattr(importlib.import_module(f"deapi_ds.{module}"), name), name
    assert callable(deapi_ds.search) and deapi_ds.search.__module__ == "deapi_ds.search"
    assert set(deapi_ds.__all__) <= set(dir(deapi_ds))


def test_lazy_module_proxy():
    from deapi_ds._lazy import lazy_module

    json = lazy_module("json")
    assert "not imported yet" in repr(json)
    assert json.dumps([1]) == "[1]"
    assert "(imported)" in repr(json)
    missing = lazy_module("deapi_ds_no_such_module")
    with pytest.raises(ModuleNotFoundError, match="deapi_ds_no_such_module"):
        _ = missing.anything
