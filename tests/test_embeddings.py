"""embed() end to end against the in-process emulator."""

from __future__ import annotations

import anyio
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

import deapi_ds
from deapi_ds.embeddings import estimate_tokens
from deapi_ds.emulator import embed_texts


def texts(n: int, words: int = 5, prefix: str = "doc") -> list[str]:
    return [
        f"{prefix} {i} " + " ".join(f"w{(i * 7 + j) % 97}" for j in range(words)) for i in range(n)
    ]


def test_aligned_with_index_and_matches_emulator(emulator):
    s = pd.Series(["the cat sat", "a dog barked", "the cat sat again"], index=[10, 20, 30])
    res = deapi_ds.embed(s)
    assert res.matrix.dtype == np.float32 and res.matrix.flags.c_contiguous
    assert res.matrix.shape == (3, 1024)
    assert list(res.frame.index) == [10, 20, 30]
    np.testing.assert_allclose(res.matrix, embed_texts(list(s)), rtol=1e-6)
    assert list(res.status) == ["ok", "ok", "ok"]


def test_shuffled_index_realigned(emulator):
    data = texts(50)
    emulator.configure("embeddings", shuffle_index=True)
    res = deapi_ds.embed(data, cache=None)
    np.testing.assert_allclose(res.matrix, embed_texts(data), rtol=1e-6)


def test_short_response_keeps_valid_items_and_reasks_only_the_missing(emulator):
    data = texts(10)
    emulator.configure("embeddings", script=["short"])
    res = deapi_ds.embed(data, cache=None)
    assert (res.status == "ok").all()
    stats = emulator.stats("embeddings")
    assert stats["requests"] == 2 and stats["inputs"] == 11  # only the missing one again
    np.testing.assert_allclose(res.matrix, embed_texts(data), rtol=1e-6)
    emulator.reset_stats()
    emulator.configure("embeddings", script=[], drop_items=1)  # every answer one short
    with deapi_ds.config_context(max_retries=2):
        res = deapi_ds.embed(data, cache=None)
    assert list(res.status) == ["ok"] * 9 + ["error"]
    assert res.frame["error_type"].iloc[-1] == "ResponseValidationError"
    assert np.isnan(res.matrix[-1]).all()
    np.testing.assert_allclose(res.matrix[:9], embed_texts(data[:9]), rtol=1e-6)
    assert emulator.stats("embeddings")["requests"] == 3  # the batch, then 2 re-asks of one


def test_wrong_dimension_is_an_error_not_a_shift(emulator):
    emulator.configure("embeddings", wrong_dimension=512)
    with pytest.raises(deapi_ds.BatchError) as info:  # every row failed the same way: loud
        deapi_ds.embed(texts(4), cache=None)
    res = info.value.partial
    assert isinstance(info.value.error, deapi_ds.ResponseValidationError)
    assert (res.status == "error").all()
    assert "dimensions" in res.frame["error"].iloc[0]


def test_packing_and_dedupe_exact_requests(emulator):
    data = texts(5000)
    res = deapi_ds.embed(data + data[:100])  # 100 duplicates sent once
    stats = emulator.stats("embeddings")
    assert stats["requests"] == 3  # ceil(5000 / 2048)
    assert stats["inputs"] == 5000
    np.testing.assert_array_equal(res.matrix[5000:], res.matrix[:100])
    emulator.reset_stats()
    deapi_ds.embed(texts(1000, prefix="other"), max_inputs=100, cache=None)
    assert emulator.stats("embeddings")["requests"] == 10


def test_token_packing():
    from deapi_ds.embeddings import _pack

    tokens = np.array([100] * 10)
    assert _pack(range(10), tokens, max_inputs=2048, max_tokens=350) == [
        [0, 1, 2],
        [3, 4, 5],
        [6, 7, 8],
        [9],
    ]
    assert _pack(range(10), tokens, max_inputs=4, max_tokens=10_000) == [
        [0, 1, 2, 3],
        [4, 5, 6, 7],
        [8, 9],
    ]


def test_estimate_is_conservative_vs_emulator():
    from deapi_ds.emulator import count_tokens

    for text in [
        "hello world",
        "ünïcödé ✓ 🎉",
        "中文文本測試",
        "x" * 1000,
        texts(1, 200)[0],
        "a,b,c",
        "1.2.3.4.5;!?",
        "(a)[b]{c}<d>",
    ]:
        assert estimate_tokens(text) >= count_tokens(text)


def test_server_rejects_too_large_then_split(emulator):
    long = [
        f"item {i} " + "lorem ipsum dolor " * 60 for i in range(700)
    ]  # > 300k tokens by the server's count
    from deapi_ds.emulator import count_tokens

    assert sum(count_tokens(t) for t in long) > 300_000
    res = deapi_ds.embed(long, max_total_tokens=10_000_000, cache=None)
    assert (res.status == "ok").all()
    stats = emulator.stats("embeddings")
    assert stats["errors"] >= 1 and stats["ok"] >= 2
    assert res.usage["split"] >= 1
    np.testing.assert_allclose(res.matrix, embed_texts(long), rtol=1e-6)


def test_messy_column(emulator):
    s = pd.Series(
        [
            "ok text",
            None,
            np.nan,
            "",
            "   \n",
            42,
            4.5,
            pd.NA,
            "🎉 emoji ünïcode 中文 עברית e\u0301",
        ]
    )
    res = deapi_ds.embed(s, cache=None)
    assert list(res.status) == [
        "ok",
        "empty",
        "empty",
        "empty",
        "empty",
        "error",
        "error",
        "empty",
        "ok",
    ]
    assert "convert=True" in res.frame["error"].iloc[5]
    assert np.isnan(res.matrix[1:8]).all() or np.isnan(res.matrix[[1, 2, 3, 4, 5, 6, 7]]).all()
    # unicode passes through unchanged: same vector as the emulator computes for the exact string
    np.testing.assert_allclose(res.matrix[8], embed_texts([s.iloc[8]])[0], rtol=1e-6)
    assert emulator.stats("embeddings")["inputs"] == 2
    converted = deapi_ds.embed(s, convert=True, cache=None)
    assert list(converted.status[[5, 6]]) == ["ok", "ok"]
    np.testing.assert_allclose(converted.matrix[5], embed_texts(["42"])[0], rtol=1e-6)
    with pytest.raises(deapi_ds.InvalidParameterError, match="rows are empty"):
        deapi_ds.embed(s, on_empty="raise")


def test_over_long_policies(emulator):
    long_text = "alpha beta gamma delta " * 40
    data = ["short one", long_text]
    res = deapi_ds.embed(data, max_input_tokens=50, cache=None)
    assert list(res.status) == ["ok", "truncated"]
    assert res.usage["truncated_rows"] == 1
    err = deapi_ds.embed(data, max_input_tokens=50, on_long="error", cache=None)
    assert list(err.status) == ["ok", "error"] and "on_long" in err.frame["error"].iloc[1]
    chunked = deapi_ds.embed(data, max_input_tokens=50, on_long="chunk", cache=None)
    assert list(chunked.status) == ["ok", "ok"]
    assert np.linalg.norm(chunked.matrix[1]) == pytest.approx(1.0, abs=1e-5)
    # the chunked vector is close to the whole text's direction
    whole = embed_texts([long_text])[0]
    assert float(chunked.matrix[1] @ whole) > 0.8


def test_cache_rerun_is_free_and_resume(emulator):
    deapi_ds.set_config(max_retries=0, max_concurrency=1)
    data = texts(500)
    emulator.configure("embeddings", script=[None, None, 500, 500, 500])
    first = deapi_ds.embed(data, max_inputs=100)
    assert list(first.status.value_counts().sort_index().items()) == [("error", 300), ("ok", 200)]
    assert emulator.stats("embeddings")["requests"] == 5
    emulator.reset_stats()
    second = deapi_ds.embed(data, max_inputs=100)
    assert emulator.stats("embeddings")["requests"] == 3
    assert (second.status.iloc[:200] == "cached").all() and (second.status.iloc[200:] == "ok").all()
    emulator.reset_stats()
    third = deapi_ds.embed(data, max_inputs=100)
    assert emulator.stats("embeddings")["requests"] == 0
    assert (third.status == "cached").all()
    np.testing.assert_array_equal(third.matrix, second.matrix)


def test_interrupted_run_keeps_finished_batches(emulator):
    deapi_ds.set_config(max_concurrency=1)
    emulator.configure("embeddings", latency=0.15)
    data = texts(1000)

    async def interrupted():
        with anyio.move_on_after(0.5):
            await deapi_ds.aembed(data, max_inputs=100, progress=False)

    anyio.run(interrupted)
    done = emulator.stats("embeddings")["ok"]
    assert 1 <= done < 10
    emulator.reset_stats()
    emulator.configure("embeddings", latency=0)
    res = deapi_ds.embed(data, max_inputs=100)
    cached_batches = int((res.status == "cached").sum()) // 100
    # every batch the client received is cached; one cancelled in flight may have been served too
    assert cached_batches >= 1 and done - 1 <= cached_batches <= done
    assert emulator.stats("embeddings")["requests"] == 10 - cached_batches


def test_fatal_errors_raise(emulator):
    with pytest.raises(deapi_ds.ModelNotFoundError, match="deapi_ds.models"):
        deapi_ds.embed(["x"], model="NoSuchModel", cache=None)
    with pytest.raises(deapi_ds.InvalidParameterError, match="cannot do txt2embedding"):
        deapi_ds.embed(["x"], model="Flux1schnell")


def test_bad_arguments_named(emulator):
    df = pd.DataFrame({"id": [1], "body": ["x"]})
    with pytest.raises(
        deapi_ds.InvalidParameterError,
        match=r"Column 'text' not found. Available columns: \['id', 'body'\]",
    ):
        deapi_ds.embed(df, "text")
    with pytest.raises(deapi_ds.InvalidParameterError, match="on_long"):
        deapi_ds.embed(["x"], on_long="skip")
    with pytest.raises(deapi_ds.InvalidParameterError, match="say which one"):
        deapi_ds.embed(df)


def test_accessor_and_function_identical(emulator):
    df = pd.DataFrame({"text": texts(20), "label": list("ab" * 10)})
    a = deapi_ds.embed(df, "text")
    b = df.deapi.embed("text")
    c = df["text"].deapi.embed()
    np.testing.assert_array_equal(a.matrix, b.matrix)
    np.testing.assert_array_equal(a.matrix, c.matrix)


def test_float_encoding_accepted(emulator):
    data = texts(5)
    res = deapi_ds.embed(data, encoding_format="float", cache=None)
    np.testing.assert_allclose(res.matrix, embed_texts(data), rtol=1e-6)


def test_column_roundtrips_parquet_as_float32(emulator, tmp_path):
    df = pd.DataFrame({"text": ["a cat", None, "a dog"]})
    res = deapi_ds.embed(df, "text")
    df["embedding"] = res.to_series()
    path = tmp_path / "x.parquet"
    df.to_parquet(path)
    schema = pq.read_schema(path)
    assert str(schema.field("embedding").type) == "list<element: float>"
    back = pd.read_parquet(path)
    first = back["embedding"].iloc[0]
    assert first.dtype == np.float32
    np.testing.assert_array_equal(first, res.matrix[0])
    missing = back["embedding"].iloc[1]  # a row without a vector: NaN, same shape and dtype
    assert missing.dtype == np.float32 and missing.shape == (1024,) and np.isnan(missing).all()
    assert np.stack(back["embedding"]).shape == (3, 1024)
    # the cells are views of the matrix, not copies or Python lists
    assert np.shares_memory(df["embedding"].iloc[0], res.matrix)
    # the Arrow variant keeps a fixed-size list type
    df["embedding"] = res.to_series(arrow=True)
    df.to_parquet(path)
    assert (
        str(pq.read_schema(path).field("embedding").type) == "fixed_size_list<element: float>[1024]"
    )
    back = pd.read_parquet(path, dtype_backend="pyarrow")
    np.testing.assert_array_equal(
        np.asarray(back["embedding"].iloc[2], dtype=np.float32), res.matrix[2]
    )


def test_estimate_spends_nothing(emulator):
    est = deapi_ds.estimate_embed(texts(5000))
    assert isinstance(est, deapi_ds.Estimate)
    assert est.requests == 3 and est.rows == 5000 and est.cost_usd > 0
    assert "3 requests" in str(est)
    assert emulator.stats("embeddings")["requests"] == 0
    deapi_ds.set_config(tier="basic")
    assert deapi_ds.estimate_embed(texts(5000)).minutes == pytest.approx(0.3)


def test_search_ranks_lexically(emulator):
    corpus = pd.DataFrame(
        {
            "text": [
                "The stock market fell sharply as investors sold shares",
                "A recipe for chocolate cake with butter and sugar",
                "The football team won the championship final",
                "Bake the bread in a hot oven for forty minutes",
            ]
        }
    )
    res = deapi_ds.embed(corpus, "text")
    index = res.search_index(corpus, text_column="text")
    hits = index.search(["chocolate cake recipe", "football championship"], k=2)
    top = hits[hits["rank"] == 1]["text"].tolist()
    assert top == [corpus.text[1], corpus.text[2]]
    # the one-call form on a frame with an embedding column embeds the query the same way
    framed = res.to_frame(corpus)
    again = deapi_ds.search(framed, "chocolate cake recipe", k=1)
    assert again["text"].tolist() == [corpus.text[1]]


def test_sklearn_pipeline(emulator):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    X = [
        "cheap flights to paris",
        "hotel deals in rome",
        "python list comprehension",
        "numpy array broadcasting",
    ] * 3
    y = ["travel", "travel", "code", "code"] * 3
    pipe = make_pipeline(deapi_ds.EmbeddingTransformer(), LogisticRegression())
    pipe.fit(X, y)
    assert list(pipe.predict(["flights and hotel in paris", "numpy list comprehension"])) == [
        "travel",
        "code",
    ]
    out = deapi_ds.EmbeddingTransformer().fit_transform(pd.DataFrame({"t": X}))
    assert out.shape == (12, 1024) and out.dtype == np.float32


def test_async_api(emulator):
    async def main():
        return await deapi_ds.aembed(["one", "two"])

    res = anyio.run(main)
    assert res.matrix.shape == (2, 1024)


def test_any_openai_compatible_server_dimension_from_response(emulator):
    # the generic profile knows no models: limits default to OpenAI's, the dimension comes
    # from the first response
    with deapi_ds.config_context(profile="openai-compatible"):
        res = deapi_ds.embed(texts(3), cache=None)
        assert res.matrix.shape == (3, 1024)
        assert (res.status == "ok").all()
        emulator.configure("embeddings", wrong_dimension=512)
        short = deapi_ds.embed(texts(2, prefix="new"), cache=None)
        assert short.matrix.shape == (2, 512) and (short.status == "ok").all()


@pytest.fixture
def text_bar(monkeypatch):
    """Every progress bar of the test is a text bar written to the returned buffer."""
    import io

    import deapi_ds.display as display

    buf = io.StringIO()
    real = display.progress
    monkeypatch.setattr(
        display,
        "progress",
        lambda total, **kw: real(total, **{**kw, "disable": False, "file": buf}),
    )
    return buf


def test_progress_counts_rows_cached_failed_and_rate_limit_waits(emulator, text_bar):
    from deapi_ds.emulator import Fault

    s = pd.Series(["a", None, "", 5, "a", "b"])
    deapi_ds.embed(s)
    out = text_bar.getvalue()
    # empty and refused rows are counted as done, not as "cached"; the non-string is a failure
    assert "cached" not in out and "1 failed" in out and "6/6" in out
    text_bar.truncate(0)
    text_bar.seek(0)
    deapi_ds.embed(s)
    out = text_bar.getvalue()
    assert "3 cached" in out and "6/6" in out  # "a" twice and "b", shown at once
    text_bar.truncate(0)
    text_bar.seek(0)
    emulator.configure("embeddings", script=[Fault(status=429, retry_after="0.3")])
    deapi_ds.embed(["c", "d"])
    assert "waiting on rate limit" in text_bar.getvalue()


def test_server_rejects_one_text_as_too_long_policy_applies(emulator):
    from deapi_ds.emulator import count_tokens

    long = "alpha beta gamma delta " * 3000
    assert count_tokens(long) > 8192  # the server refuses it; the client is told no limit
    data = ["short a", long, "short b"]
    res = deapi_ds.embed(data, on_long="chunk", max_input_tokens=10**9, cache=None)
    assert list(res.status) == ["ok", "ok", "ok"]  # split into pieces and averaged, not an error
    assert res.usage["chunked_rows"] == 1 and res.usage["split"] >= 2
    assert res.usage["prompt_tokens"] == emulator.stats("embeddings")["tokens"]
    assert float(res.matrix[1] @ embed_texts([long])[0]) > 0.9
    emulator.reset_stats()
    res = deapi_ds.embed(data, on_long="truncate", max_input_tokens=10**9, cache=None)
    assert list(res.status) == ["ok", "truncated", "ok"] and res.usage["truncated_rows"] == 1
    assert res.usage["prompt_tokens"] == emulator.stats("embeddings")["tokens"]
    assert res.usage["requests"] == emulator.stats("embeddings")["ok"]
    res = deapi_ds.embed(data, on_long="error", max_input_tokens=10**9, cache=None)
    assert list(res.status) == ["ok", "error", "ok"]
    assert "8192 tokens per input" in res.frame["error"].iloc[1]


def test_transformer_feature_names_use_the_real_dimension(emulator):
    t = deapi_ds.EmbeddingTransformer()
    with deapi_ds.config_context(profile="openai-compatible"):
        emulator.configure("embeddings", wrong_dimension=384)
        X = t.fit_transform(["a b", "c d"])
    assert X.shape == (2, 384)
    names = t.get_feature_names_out()
    assert len(names) == 384 and names[0] == "embedding0" and names[-1] == "embedding383"


def test_classification_estimates_each_distinct_text_once(monkeypatch):
    from deapi_ds import embeddings

    calls = []
    real = embeddings.estimate_tokens
    monkeypatch.setattr(embeddings, "estimate_tokens", lambda t: calls.append(t) or real(t))
    s = pd.Series([f"text {i % 50}" for i in range(20_000)] + [None, "  "], dtype="string")
    plan = embeddings._classify(
        s, on_empty="empty", convert=False, on_long="truncate", max_input_tokens=8192
    )
    assert len(plan.units) == 50 and len(calls) == 50
    assert plan.row_unit[:100].tolist() == [i % 50 for i in range(100)]
    assert plan.row_unit[-2:].tolist() == [-1, -1]


def test_assembly_of_duplicated_rows_needs_no_second_matrix():
    import tracemalloc

    from deapi_ds import embeddings

    n, unique, d = 50_000, 2_000, 256
    s = pd.Series([f"t{i % unique}" for i in range(n)], dtype="string")
    plan = embeddings._classify(
        s, on_empty="empty", convert=False, on_long="truncate", max_input_tokens=None
    )
    unit_vecs = np.random.default_rng(0).random((unique + 1, d), dtype=np.float32)
    unit_vecs[-1] = np.nan
    unit_status = np.full(unique, embeddings._U_OK, dtype=np.int8)
    tracemalloc.start()
    matrix, status = embeddings._assemble(plan, unit_vecs, unit_status, {})
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert matrix.flags.c_contiguous and matrix.dtype == np.float32
    np.testing.assert_array_equal(matrix[unique : unique + 5], unit_vecs[:5])
    # the matrix (51 MB) and per-row bookkeeping, not a fancy-indexing temporary of its size
    assert peak < matrix.nbytes * 1.25, peak / matrix.nbytes


def test_dedupe_cache_and_chunk_together(emulator):
    from deapi_ds.embeddings import _split_pieces

    long = "alpha beta gamma delta epsilon zeta " * 20
    pieces = _split_pieces(long, 50)
    assert len(pieces) > 2
    data = pd.Series([long, "x", long, pieces[1], "x", pieces[0]], index=list("abcdef"))
    res = deapi_ds.embed(data, on_long="chunk", max_input_tokens=50)
    # the two long rows share their pieces; the rows equal to a piece are not sent again
    assert emulator.stats("embeddings")["inputs"] == len(set(pieces)) + 1
    assert list(res.status) == ["ok"] * 6 and res.usage["chunked_rows"] == 2
    np.testing.assert_array_equal(res.matrix[0], res.matrix[2])
    np.testing.assert_allclose(res.matrix[3], embed_texts([pieces[1]])[0], rtol=1e-6)
    emulator.reset_stats()
    again = deapi_ds.embed(data, on_long="chunk", max_input_tokens=50)
    assert emulator.stats("embeddings")["requests"] == 0
    assert list(again.status) == ["cached"] * 6
    np.testing.assert_array_equal(again.matrix, res.matrix)
    # a new row sharing only some pieces sends only the missing ones
    emulator.reset_stats()
    more = deapi_ds.embed([long + " omega"], on_long="chunk", max_input_tokens=50)
    assert more.status.iloc[0] == "ok"
    assert emulator.stats("embeddings")["inputs"] < len(pieces)


def test_splitting_a_long_text_is_linear(monkeypatch):
    from deapi_ds import embeddings

    text = "lorem ipsum dolor sit amet, consectetur adipiscing elit " * 20_000  # 1.1 MB
    seen = []
    real = embeddings.estimate_tokens
    monkeypatch.setattr(embeddings, "estimate_tokens", lambda t: seen.append(len(t)) or real(t))
    pieces = embeddings._split_pieces(text, 8192)
    assert all(real(p) <= 8192 for p in pieces)
    assert " ".join(pieces).strip() == text.strip()  # whole words, nothing lost
    assert sum(seen) < 40 * len(text)  # was ~700x: every piece searched the whole rest
