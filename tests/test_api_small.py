"""Small things a newcomer notices: counts, progress rates, CLI help, docstrings."""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import io
import re
import time
from pathlib import Path

import pytest

import deapi_ds
from deapi_ds._result import plural
from deapi_ds.cli import build_parser
from deapi_ds.display import progress


def test_plural():
    assert plural(1, "request") == "1 request"
    assert plural(0, "request") == "0 requests"
    assert plural(12000, "row") == "12,000 rows"


def test_one_request_is_singular(emulator):
    res = deapi_ds.embed(["a", "b"], cache=None)
    assert res.summary().endswith(", 1 request")
    assert "-> 1 request," in str(deapi_ds.estimate_embed(["a", "b"], cache=None))
    assert "-> 1 request," in str(deapi_ds.estimate_speak(["Hello."], cache=None))


def _final_line(cached: int, fresh: int, pause: float = 0.0) -> str:
    out = io.StringIO()
    with progress(cached + fresh, desc="embed", disable=False, file=out) as bar:
        bar.set_cached(cached)
        time.sleep(pause)
        bar.update(fresh)
    return out.getvalue().split("\r")[-1]


def test_progress_hides_rates_of_cached_or_instant_runs():
    line = _final_line(999_990, 10)
    assert "999,990 cached" in line and "/s" not in line and "<" not in line
    assert "/s" not in _final_line(2, 8)  # over in well under a second


@pytest.mark.slow
def test_progress_keeps_the_rate_of_a_real_run():
    line = _final_line(2, 8, pause=1.05)
    assert "row/s" in line and "2 cached" in line


def _all_help_texts() -> dict[str, str]:
    parser = build_parser()
    texts = {"deapi-ds": parser.format_help()}
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    for name, p in sub.choices.items():
        texts[name] = p.format_help()
    return texts


def test_cli_help_is_plain_text():
    texts = _all_help_texts()
    assert set(texts) == {"deapi-ds", "demo", "emulator", "models", "embed", "transcribe", "cache"}
    for name, text in texts.items():
        assert not re.search(r"``|:func:|:class:|:meth:|^\s*::\s*$", text, re.M), (name, text)
        assert "(default: None)" not in text and "(default: False)" not in text, name
    for name, p in _all_help_texts().items():
        if name != "deapi-ds":
            assert p.split("\n\n")[1].strip()[0].isupper(), name  # a description sentence


# --- every public attribute has a docstring of its own ----------------------------------------


@functools.cache
def _class_sources() -> dict[str, tuple[ast.ClassDef, list[str]]]:
    """Every class of the package by name, with its module's lines (classes such as the
    exceptions say ``__module__ = "deapi_ds"``, so inspect cannot find their source)."""
    found = {}
    for path in Path(deapi_ds.__file__).parent.rglob("*.py"):
        lines = path.read_text().splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(node, ast.ClassDef):
                found.setdefault(node.name, (node, lines))
    return found


def _documented_by_comment(owner: type, name: str) -> bool:
    """A data attribute documented with a ``#:`` comment above it (Sphinx's convention)."""
    node, lines = _class_sources()[owner.__name__]
    for stmt in node.body:
        if isinstance(stmt, ast.AnnAssign):
            targets = [stmt.target]
        elif isinstance(stmt, ast.Assign):
            targets = stmt.targets
        else:
            continue
        if any(isinstance(t, ast.Name) and t.id == name for t in targets):
            above = lines[stmt.lineno - 2].strip()
            return above.startswith("#:") and len(above) > 4
    return False


def _public_classes() -> list[type]:
    return [
        obj
        for name in deapi_ds.__all__
        if isinstance(obj := getattr(deapi_ds, name), type)
        and obj.__module__.startswith("deapi_ds")
    ]


def test_every_public_attribute_has_its_own_docstring():
    missing = []
    for cls in _public_classes():
        if not (cls.__doc__ or "").strip():
            missing.append(cls.__name__)
        for name in dir(cls):
            if name.startswith("_"):
                continue
            owner = next((k for k in cls.__mro__ if name in vars(k)), None)
            if owner is None or not owner.__module__.startswith("deapi_ds"):
                continue  # inherited from Python or pandas, documented there
            raw = vars(owner)[name]
            if isinstance(raw, classmethod | staticmethod):
                raw = raw.__func__
            if isinstance(raw, property) or inspect.isfunction(raw):
                ok = bool((raw.__doc__ or "").strip())
            elif dataclasses.is_dataclass(owner) and f"``{name}``" in (owner.__doc__ or ""):
                ok = True  # a dataclass field described in the class docstring
            else:
                ok = _documented_by_comment(owner, name)
            if not ok:
                missing.append(f"{cls.__name__}.{name}")
    assert missing == []


def test_media_shows_its_own_doc_in_ipython(emulator):
    pytest.importorskip("IPython")
    from IPython.core.interactiveshell import InteractiveShell

    out = deapi_ds.generate_images(["a"], cache=None)
    found = InteractiveShell._getattr_property(out, "media")  # what ``out.media?`` shows
    assert isinstance(found, property) and "rendered inline" in found.__doc__
    assert out.media == {"image": "image"}
    assert deapi_ds.EmbeddingResult._media_columns == {}
