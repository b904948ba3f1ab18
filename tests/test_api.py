"""The public API as a newcomer meets it: sync twins that are themselves, short tracebacks."""

from __future__ import annotations

import asyncio
import inspect
import pydoc
import traceback

import pytest

import deapi_ds
from deapi_ds import _tasks

#: every sync/async pair of the public surface
PAIRS = sorted(
    (name, "a" + name)
    for name in deapi_ds.__all__
    if "a" + name in deapi_ds.__all__
    and callable(getattr(deapi_ds, name))
    and not (getattr(deapi_ds, name).__doc__ or "").startswith("Deprecated alias")
)


def test_pairs_are_all_found():
    assert [p[0] for p in PAIRS] == [
        "balance",
        "edit_images",
        "embed",
        "estimate_edit_images",
        "estimate_embed",
        "estimate_generate_images",
        "estimate_generate_video",
        "estimate_ocr",
        "estimate_remove_background",
        "estimate_transcribe",
        "estimate_transcribe_folder",
        "estimate_upscale",
        "generate_images",
        "generate_video",
        "models",
        "ocr",
        "quote",
        "remove_background",
        "speak",
        "transcribe",
        "transcribe_folder",
        "upscale",
    ]


@pytest.mark.parametrize("sync_name, async_name", PAIRS)
def test_sync_function_is_itself(sync_name, async_name):
    fn = getattr(deapi_ds, sync_name)
    afn = getattr(deapi_ds, async_name)
    assert fn.__name__ == sync_name
    assert fn.__qualname__ == sync_name
    assert fn.__module__ == afn.__module__
    assert fn.__wrapped__ is afn
    assert f"<function {sync_name} at" in repr(fn)
    assert not inspect.iscoroutinefunction(fn)
    assert inspect.signature(fn) == inspect.signature(afn)
    assert fn.__doc__ and "await deapi_ds.a" not in fn.__doc__
    assert "async twin" not in fn.__doc__
    text = pydoc.render_doc(fn, renderer=pydoc.plaintext)
    assert f"{sync_name}(" in text and f"{async_name}(" not in text.split("\n", 3)[2]


def test_module_help_lists_sync_functions_under_their_names():
    text = pydoc.render_doc(deapi_ds, renderer=pydoc.plaintext)
    for sync_name, async_name in PAIRS:
        assert f"\n    {sync_name}(" in text, sync_name
        assert f"{sync_name} = {async_name}" not in text


def test_syncify_names_and_docs():
    async def afetch_things(x: int, *, y: str = "a") -> int:
        """Fetch things: ``await deapi_ds.afetch_things(1)``."""
        return x

    fetch_things = _tasks.syncify(afetch_things)
    assert fetch_things.__name__ == "fetch_things"
    assert fetch_things.__qualname__.endswith("<locals>.fetch_things")
    assert fetch_things.__doc__ == "Fetch things: ``deapi_ds.fetch_things(1)``."
    assert fetch_things(3) == 3
    assert _tasks.syncify(afetch_things, name="other").__name__ == "other"


def test_awaiting_a_sync_function_fails_before_any_work(emulator):
    async def main():
        with pytest.raises(TypeError, match=r"await deapi_ds\.aembed\(") as info:
            await deapi_ds.embed(["a", "b"], cache=None)
        return info.value

    exc = asyncio.run(main())
    assert emulator.stats("embeddings")["requests"] == 0
    # the error shows the user's line only
    shown = "".join(traceback.format_exception(exc))
    assert "_tasks.py" not in shown and "await deapi_ds.embed" in shown


def test_sync_function_works_inside_a_running_loop(emulator):
    """Jupyter runs cells inside a running event loop in the main thread."""

    async def cell():
        await asyncio.sleep(0)
        out = deapi_ds.embed(["a", "b"], cache=None)  # no await: the blocking form
        return out.matrix.shape

    assert asyncio.run(cell()) == (2, 1024)
    assert emulator.stats("embeddings")["requests"] == 1


def test_result_of_sync_call_can_be_stored_then_used_in_async_code(emulator):
    async def main():
        results = [deapi_ds.embed(t, cache=None) for t in ("a", "b")]  # not awaited
        return [r.matrix.shape for r in results]

    assert asyncio.run(main()) == [(1, 1024), (1, 1024)]


# --- short tracebacks --------------------------------------------------------------------------


def _format(exc: BaseException) -> list[str]:
    return "".join(traceback.format_exception(exc)).splitlines()


def _raise_through(fn, *args, **kwargs):
    try:
        fn(*args, **kwargs)
    except deapi_ds.DeapiError as exc:
        return exc
    raise AssertionError("no error")


def _user_call_missing_key():
    return deapi_ds.embed(["a"], cache=None)


@pytest.mark.parametrize(
    "make, kind",
    [
        (_user_call_missing_key, deapi_ds.MissingAPIKeyError),
        (
            lambda: (deapi_ds.use_emulator(), deapi_ds.embed(["a"], model="nope", cache=None)),
            deapi_ds.ModelNotFoundError,
        ),
        (
            lambda: (deapi_ds.use_emulator(), deapi_ds.embed(["a"], on_long="sideways")),
            deapi_ds.InvalidParameterError,
        ),
    ],
)
def test_errors_through_sync_wrappers_have_short_tracebacks(make, kind):
    exc = _raise_through(make)
    assert type(exc) is kind
    lines = _format(exc)
    assert len(lines) <= 20, "\n".join(lines)
    text = "\n".join(lines)
    assert "test_api.py" in text  # the user's frames stay
    assert "deapi_ds/" not in text.replace("\\", "/")  # no internal frames
    # the full traceback is still on the exception
    full = "".join(traceback.format_tb(exc.full_traceback))
    assert "_engine.py" in full and "deapi_ds/" in full.replace("\\", "/")


def test_missing_key_traceback_keeps_the_users_nested_frames():
    exc = _raise_through(_user_call_missing_key)
    names = [f.name for f in traceback.extract_tb(exc.__traceback__)]
    assert names == ["_raise_through", "_user_call_missing_key"]


def test_ipython_shows_a_short_traceback(emulator):
    pytest.importorskip("IPython")
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output

    shell = InteractiveShell.instance()
    try:
        shell.run_cell("import deapi_ds", store_history=False)
        for code, name in [
            ("deapi_ds.embed(['a'], model='nope', cache=None)", "ModelNotFoundError"),
            ("await deapi_ds.embed(['a'], cache=None)", "TypeError"),
        ]:
            with capture_output() as cap:
                res = shell.run_cell(code, store_history=False)
            assert type(res.error_in_exec).__name__ == name
            shown = cap.stdout + cap.stderr
            assert len(shown.splitlines()) <= 20, shown
            assert "_tasks.py" not in shown and "_engine.py" not in shown
        with capture_output():
            res = shell.run_cell(
                "import asyncio\nawait asyncio.sleep(0)\n"
                "r = deapi_ds.embed(['a'], cache=None)\nr.matrix.shape",
                store_history=False,
            )
        assert res.error_in_exec is None and res.result == (1, 1024)
    finally:
        InteractiveShell.clear_instance()


def test_non_deapi_errors_keep_their_full_traceback(monkeypatch):
    async def aboom():
        raise RuntimeError("a bug")

    boom = _tasks.syncify(aboom, name="boom")
    with pytest.raises(RuntimeError) as info:
        boom()
    assert not hasattr(info.value, "full_traceback")
    assert any(f.name == "aboom" for f in traceback.extract_tb(info.value.__traceback__))
