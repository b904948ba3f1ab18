"""The one task path: one cache-write failure policy for every task, salvage of partial answers,
validation of vectors, the summary/raise rule, and the shared progress adapter."""

from __future__ import annotations

import base64
import io
import json
import warnings

import httpx
import numpy as np
import pandas as pd
import pytest

import deapi_ds
from deapi_ds import _pipeline
from deapi_ds._cache import ResultCache
from deapi_ds.emulator import embed_texts
from deapi_ds.emulator._media import synthesize_speech


class BrokenWrites(ResultCache):
    """A cache that reads fine and whose every write fails (a read-only folder, a full disk)."""

    writes = 0

    def write(self, task, model, table):
        type(self).writes += 1
        raise OSError(28, "No space left on device")


@pytest.fixture
def broken(tmp_path):
    BrokenWrites.writes = 0
    return BrokenWrites(tmp_path / "ro")


def _one_warning(record) -> str:
    cache_warnings = [w for w in record if issubclass(w.category, deapi_ds.CacheWarning)]
    assert len(cache_warnings) == 1, [str(w.message) for w in cache_warnings]
    return str(cache_warnings[0].message)


def test_embed_keeps_every_paid_vector_when_the_cache_cannot_be_written(emulator, broken):
    texts = [f"row {i}" for i in range(50)]
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        res = deapi_ds.embed(texts, cache=broken, max_inputs=10)
    assert (res.status == "ok").all()
    np.testing.assert_allclose(res.matrix, embed_texts(texts), rtol=1e-6)
    message = _one_warning(record)
    assert "No space left" in message and "rerun will pay" in message
    assert res.usage["uncached_rows"] == 50
    assert BrokenWrites.writes >= 1


def test_speak_images_video_transcribe_keep_results_when_writes_fail(emulator, broken, tmp_path):
    for call in (
        lambda: deapi_ds.speak(["Hello there.", "Good night."], cache=broken),
        lambda: deapi_ds.generate_images(["a fox", "a bay"], cache=broken),
        lambda: deapi_ds.generate_video(["a red kite"], cache=broken, poll=0.01),
    ):
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            out = call()
        assert out.frame["status"].isin(["ok"]).all(), out.frame
        assert "No space left" in _one_warning(record)
    audio = tmp_path / "a.wav"
    audio.write_bytes(synthesize_speech("Testing one two.", voice="af_bella", fmt="wav"))
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        tr = deapi_ds.transcribe([audio], cache=broken)
    assert tr.files["status"].tolist() == ["ok"]
    assert "testing one two" in tr.files["text"].iloc[0].lower()
    assert "No space left" in _one_warning(record)


def _answer(items, model="Bge_M3_FP16"):
    return httpx.Response(
        200,
        json={"object": "list", "data": items, "model": model, "usage": {"prompt_tokens": 1}},
    )


def _item(index, vector):
    return {
        "object": "embedding",
        "index": index,
        "embedding": base64.b64encode(np.asarray(vector, "<f4").tobytes()).decode(),
    }


@pytest.fixture
def scripted(monkeypatch):
    """A server whose answers the test scripts, one function per request."""
    script: list = []
    seen: list[list[str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        inputs = json.loads(request.content)["input"]
        seen.append(inputs)
        make = script.pop(0) if script else None
        vectors = embed_texts(inputs)
        if make is None:
            return _answer([_item(i, v) for i, v in enumerate(vectors)])
        return _answer(make(vectors))

    deapi_ds.set_config(
        base_url="https://scripted.invalid/v1",
        api_key="dpn-sk-0|scripted",
        transport=httpx.MockTransport(handler),
        tier="unlimited",
        max_retries=2,
    )
    return script, seen


def test_partial_answers_keep_valid_items_and_reask_only_the_missing(scripted):
    script, seen = scripted
    texts = [f"text {i}" for i in range(8)]
    # missing 1, index 2 twice, an out-of-range index: 0 and 3..7 are kept
    script.append(
        lambda v: (
            [_item(0, v[0]), _item(2, v[2]), _item(2, v[3]), _item(99, v[1])]
            + [_item(i, v[i]) for i in range(3, 8)]
        )
    )
    res = deapi_ds.embed(texts, cache=None)
    assert (res.status == "ok").all()
    np.testing.assert_allclose(res.matrix, embed_texts(texts), rtol=1e-6)
    assert seen[1] == ["text 1", "text 2"]  # only what was missing, never by position
    assert len(seen) == 2


def test_inputs_still_missing_after_the_retries_are_errors(scripted):
    script, seen = scripted
    texts = [f"t{i}" for i in range(4)]
    short = lambda v: [_item(i, v[i]) for i in range(len(v) - 1)]  # noqa: E731
    script.extend([short, short, short])
    res = deapi_ds.embed(texts, cache=None)
    assert list(res.status) == ["ok", "ok", "ok", "error"]
    assert "left this input out 3 times" in res.frame["error"].iloc[3]
    assert [len(s) for s in seen] == [4, 1, 1]  # the batch, then max_retries=2 re-asks of one


def test_nan_inf_and_null_vectors_are_errors_and_never_cached(scripted, tmp_path):
    script, seen = scripted

    def broken(v):
        items = [_item(i, v[i]) for i in range(len(v))]
        items[1]["embedding"] = base64.b64encode(
            np.full(len(v[1]), np.nan, "<f4").tobytes()
        ).decode()
        items[2] = {"object": "embedding", "index": 2, "embedding": [None] * len(v[2])}
        bad = np.array(v[3], "<f4")
        bad[5] = np.inf
        items[3] = _item(3, bad)
        return items

    script.append(broken)
    cache = str(tmp_path / "c")
    texts = ["a", "b", "c", "d"]
    res = deapi_ds.embed(texts, cache=cache)
    assert list(res.status) == ["ok", "error", "error", "error"]
    assert res.frame["error"].iloc[1].startswith("The server returned a vector with NaN")
    again = deapi_ds.embed(texts, cache=cache)  # the broken ones were not cached: sent again
    assert list(again.status) == ["cached", "ok", "ok", "ok"]
    assert seen[-1] == ["b", "c", "d"]
    np.testing.assert_allclose(again.matrix, embed_texts(texts), rtol=1e-6)


def test_images_fewer_than_n_are_salvaged(emulator, monkeypatch):
    from deapi_ds._client import AsyncClient

    real = AsyncClient.images_generate
    calls = []

    async def short(self, prompt, **kw):
        out = await real(self, prompt, **kw)
        calls.append(kw["n"])
        if len(calls) == 1:  # the first answer has one image fewer
            return type(out)(out.created, out.images[:-1], out.headers)
        return out

    monkeypatch.setattr(AsyncClient, "images_generate", short)
    res = deapi_ds.generate_images("a lighthouse", n=3, seeds=7, cache=None)
    assert res.frame["status"].tolist() == ["ok"] * 3
    assert calls == [3, 1]  # only the missing image asked again
    direct = deapi_ds.generate_images("a lighthouse", n=3, seeds=7, cache=None)
    monkeypatch.setattr(AsyncClient, "images_generate", real)
    direct = deapi_ds.generate_images("a lighthouse", n=3, seeds=7, cache=None)
    assert res.frame["image"].tolist() == direct.frame["image"].tolist()


def test_every_row_failing_the_same_way_raises_batch_error_with_the_partial(emulator):
    emulator.configure("embeddings", error_rate=1.0, error_status=500)
    with deapi_ds.config_context(max_retries=0):
        with pytest.raises(deapi_ds.BatchError) as info:
            deapi_ds.embed(["a", "b", None], cache=None)
    assert isinstance(info.value.error, deapi_ds.ServerError)
    partial = info.value.partial
    assert list(partial.status) == ["error", "error", "empty"]


def test_some_rows_failing_prints_one_summary_line(emulator, capsys):
    res = deapi_ds.embed(["fine", 3, "also fine"], cache=None)
    assert list(res.status) == ["ok", "error", "ok"]
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "1 of 3 rows failed" in err and "TypeError" in err and "result.failed" in err


def test_rows_refused_before_sending_do_not_raise(emulator):
    res = deapi_ds.embed([1, 2], cache=None)  # every row refused locally: rows, not a raise
    assert list(res.status) == ["error", "error"]


def test_dict_input_is_refused_with_a_hint(emulator):
    with pytest.raises(deapi_ds.InvalidParameterError, match=r"pd.Series\(d\)"):
        deapi_ds.embed({"a": "x", "b": "y"})


def test_is_missing_is_the_one_definition():
    from deapi_ds._common import is_missing

    assert all(is_missing(v) for v in (None, float("nan"), np.float32("nan"), pd.NA, pd.NaT))
    assert not any(is_missing(v) for v in ("", "nan", b"", 0, [None], np.array([np.nan])))


def test_progress_adapter_counts_weights_cached_and_failed():
    out = io.StringIO()
    from deapi_ds import display

    real = display.progress(10, desc="t", disable=False, file=out)
    p = _pipeline.Progress(10, desc="t", unit="row", show=False)
    p._bar = real  # a visible text bar in place of the hidden one
    p.cached(4)
    p.advance(2.5)
    p.advance(0.5, failed=1)
    assert real.n == 7 and real.cached == 4 and real.failed == 1
    p.close()
    assert real.n == 10


def test_one_estimate_type_for_every_task(emulator, tmp_path):
    from deapi_ds.emulator._media import synthesize_speech

    audio = tmp_path / "a.wav"
    audio.write_bytes(synthesize_speech("An estimate, not a run.", voice="af_bella", fmt="wav"))
    estimates = {
        "embed": deapi_ds.estimate_embed(["a", "b", "a", None]),
        "speak": deapi_ds.estimate_speak(["Hello there."], voice=["af_bella", "am_adam"]),
        "generate_images": deapi_ds.estimate_generate_images("a fox", seeds=[1, 2], n=2),
        "edit_images": deapi_ds.estimate_edit_images(audio_png(), prompt="blue"),
        "transcribe": deapi_ds.estimate_transcribe([audio]),
        "transcribe_folder": deapi_ds.estimate_transcribe_folder(tmp_path),
        "generate_video": deapi_ds.estimate_generate_video(["a kite", "a kite", None]),
    }
    paid = {ep: c for ep, c in emulator.stats().items() if ep != "models" and c.get("ok")}
    assert not paid, paid  # nothing was sent
    for func, est in estimates.items():
        assert type(est) is deapi_ds.Estimate and est.func == func
        assert est.requests >= 1 and est.cost_usd is not None and "not a quote" in str(est)
    assert estimates["embed"].unique == 2 and estimates["embed"].empty == 1
    assert estimates["generate_images"].quantity == 4
    tr = estimates["transcribe"]
    assert tr.unit == "audio seconds" and tr.quantity == pytest.approx(
        estimates["transcribe_folder"].quantity
    )
    assert estimates["generate_video"].requests == 1  # the repeated prompt is one job
    deapi_ds.transcribe([audio])
    assert deapi_ds.estimate_transcribe([audio]).requests == 0  # cached now


def test_functions_that_return_one_type(emulator):
    import inspect

    for name in ("embed", "speak", "generate_images", "edit_images", "generate_video"):
        params = inspect.signature(getattr(deapi_ds, f"a{name}")).parameters
        assert list(params)[:2] == ["data", "column"], name
        assert "dry_run" not in params
    jobs = deapi_ds.generate_video("a single prompt", poll=0.01)
    assert isinstance(jobs, deapi_ds.VideoJobs) and len(jobs) == 1
    with pytest.warns(DeprecationWarning, match="estimate_embed"):
        deapi_ds.estimate(["x"])


def audio_png():
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (96, 96), "red").save(buf, "PNG")
    return buf.getvalue()


def test_lone_surrogates_and_broken_str_are_rows_or_clear_errors(emulator):
    class Bad:
        def __str__(self):
            raise RuntimeError("no text for you")

    res = deapi_ds.embed(["fine", "bad \ud800 text", Bad()], convert=True, cache=None)
    assert list(res.status) == ["ok", "error", "error"]
    assert res.frame["error_type"].tolist()[1:] == ["InvalidText", "TypeError"]
    assert "lone surrogate" in res.frame["error"].iloc[1]
    assert "no text for you" in res.frame["error"].iloc[2]
    images = deapi_ds.generate_images(["a fox", "x\udfff"], cache=None)
    assert images.frame["status"].tolist() == ["ok", "error"]
    assert "lone surrogate" in images.frame["error"].iloc[1]
    with pytest.raises(deapi_ds.InvalidParameterError, match=r"Row 1 .*lone surrogate"):
        deapi_ds.speak(["Hello.", "bad \ud800"])
    assert emulator.stats("audio.speech")["requests"] == 0
