"""The layer picture of ARCHITECTURE.md, checked by reading every module's imports.

Each module of deapi_ds has a rank; a module imports only modules of a lower rank (module-level
and function-level imports alike), so there is no cycle. Task modules reach the display layer
only through the pipeline's progress adapter and the result seam (``_result``). Function-level
imports of internal modules are allowed only where the rank allows them anyway; function-level
imports are kept for optional or heavy third-party libraries (import time).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "deapi_ds"

#: rank of each module (lower imports nothing higher); packages by their folder name
RANKS: dict[str, int] = {
    "_version": 0,
    "_config": 1,
    "_exceptions": 0,
    "_common": 0,
    "_lazy": 0,
    "_profiles": 2,
    "_loops": 2,  # which event loop is running; one object per loop (below _transport)
    "_transport": 3,
    "_engine": 4,
    "_cache": 5,
    "_media": 5,
    "_files": 5,
    "_estimate": 5,
    "_vectors": 1,
    "_quota": 6,
    "_client": 7,
    "_native": 8,
    "_jobs": 9,
    "_speech_formats": 9,
    "_tasks": 10,
    "display": 11,
    "plotting": 12,
    "_result": 13,
    "_pipeline": 14,
    "_catalog": 15,
    "account": 16,
    "_image_jobs": 16,  # images in, native jobs out: shared by ocr and transforms
    "_native_transcription": 19,
    # task modules
    "embeddings": 20,
    "images": 20,
    "speech": 20,
    "video": 20,
    "search": 21,  # embeds text queries
    "transcription": 22,  # its semantic search goes through search
    "_ocr": 22,  # ocr(): the module cannot share the function's name (lazy public imports)
    "transforms": 22,
    "speakers": 23,
    # on top
    "accessors": 30,
    "testing": 30,
    "dask": 30,
    "_demo": 31,
    "cli": 32,
    "__init__": 40,
    "cache": 6,  # the public cache module: a thin view of _cache
    "emulator": -1,  # standalone: checked separately
}
TASK_MODULES = {"embeddings", "images", "speech", "video", "transcription", "_ocr", "transforms"}
#: the display layer that task modules reach only through _pipeline (progress) and _result
DISPLAY = {"display", "plotting"}


def _top(module: Path) -> str:
    rel = module.relative_to(PKG)
    return rel.parts[0].removesuffix(".py")


def _runtime_nodes(tree: ast.AST):
    """Every node except those under ``if TYPE_CHECKING:`` (annotations only)."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip |= {id(n) for child in node.body for n in ast.walk(child)}
    return [n for n in ast.walk(tree) if id(n) not in skip]


def _internal_imports(path: Path) -> list[tuple[str, int]]:
    """(imported top-level deapi_ds module, line) for every import in ``path``."""
    tree = ast.parse(path.read_text())
    rel = path.relative_to(PKG)
    depth = len(rel.parts) - 1  # folders below deapi_ds
    out = []
    for node in _runtime_nodes(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                up = node.level - 1
                if up > depth:
                    continue
                base = list(rel.parts[: depth - up])
                parts = base + (node.module.split(".") if node.module else [])
                if not parts:  # from . import x, y
                    for alias in node.names:
                        out.append((alias.name, node.lineno))
                    continue
                if depth - up > 0 and up < depth:
                    continue  # inside a subpackage (emulator/_cache): internal to it
                out.append((parts[0], node.lineno))
            elif node.module and node.module.startswith("deapi_ds"):
                parts = node.module.split(".")
                if len(parts) == 1:
                    out += [(alias.name, node.lineno) for alias in node.names]
                else:
                    out.append((parts[1], node.lineno))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("deapi_ds."):
                    out.append((alias.name.split(".")[1], node.lineno))
    return out


def _modules() -> list[Path]:
    return sorted(p for p in PKG.rglob("*.py") if "__pycache__" not in p.parts)


def test_every_module_has_a_rank():
    missing = {_top(p) for p in _modules()} - set(RANKS)
    assert not missing, f"give these modules a rank in tests/test_layers.py: {sorted(missing)}"


def _violations() -> list[str]:
    found = []
    for path in _modules():
        me = _top(path)
        if me == "emulator":
            continue
        rank = RANKS[me]
        for other, line in _internal_imports(path):
            if other == me or other not in RANKS:
                continue
            where = f"{path.relative_to(PKG.parent)}:{line}"
            if other == "emulator":
                if me not in ("testing", "_catalog", "_demo", "cli", "__init__"):
                    found.append(f"{where}: {me} imports the emulator")
                continue
            if RANKS[other] >= rank:
                found.append(f"{where}: {me} (rank {rank}) imports {other} (rank {RANKS[other]})")
            if me in TASK_MODULES and other in DISPLAY:
                found.append(f"{where}: task module {me} imports {other} (use _result/_pipeline)")
    return found


def test_no_module_imports_upward_and_there_is_no_cycle():
    found = _violations()
    assert not found, "layer rule broken:\n" + "\n".join(found)


def test_the_emulator_never_imports_the_library():
    bad = []
    for path in (PKG / "emulator").rglob("*.py"):
        for other, line in _internal_imports(path):
            if other != "emulator" and other in RANKS:
                bad.append(f"{path.name}:{line} imports {other}")
    assert not bad, bad


@pytest.mark.parametrize("package", ["emulator"])
def test_no_cycles_inside_subpackages(package):
    root = PKG / package
    graph: dict[str, set[str]] = {}
    for path in root.glob("*.py"):
        name = path.stem
        deps = set()
        for node in _runtime_nodes(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module:
                deps.add(node.module.split(".")[0])
            elif isinstance(node, ast.ImportFrom) and node.level == 1:
                deps |= {a.name for a in node.names}
        graph[name] = {d for d in deps if (root / f"{d}.py").exists()} - {name}
    graph.pop("__init__", None)
    for deps in graph.values():
        deps.discard("__init__")
    seen: dict[str, int] = {}
    cycle: list[str] = []

    def visit(node: str, stack: list[str]) -> None:
        seen[node] = 1
        for dep in sorted(graph.get(node, ())):
            if seen.get(dep) == 1 and not cycle:
                cycle.extend(stack[stack.index(dep) :] + [dep])
            elif dep not in seen:
                visit(dep, stack + [dep])
        seen[node] = 2

    for node in sorted(graph):
        if node not in seen:
            visit(node, [node])
    assert not cycle, f"import cycle in deapi_ds/{package}: {' -> '.join(cycle)}"


def test_function_level_imports_say_why():
    """Imports inside functions are kept only for import time (``# lazy``) and optional
    dependencies (``# optional``), and each says which (the emulator is standalone and checked
    on its own)."""
    import re

    bare = []
    for path in _modules():
        if "emulator" in path.parts:
            continue
        src = path.read_text().split("\n")
        for fn in ast.walk(ast.parse("\n".join(src))):
            if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
                for node in ast.walk(fn):
                    if isinstance(node, ast.Import | ast.ImportFrom):
                        line = src[node.lineno - 1]
                        if not re.search(r"#\s*(lazy|optional)\b", line):
                            bare.append(
                                f"{path.relative_to(PKG.parent)}:{node.lineno}: {line.strip()}"
                            )
    assert not bare, "say why (# lazy / # optional) or import at module level:\n" + "\n".join(bare)
