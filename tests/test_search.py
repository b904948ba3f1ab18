"""Exact top-k search: agreement with brute force, NaN rows, masks, the index and the widget."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from deapi_ds._exceptions import InvalidParameterError
from deapi_ds.search import SearchIndex, as_matrix, search, top_k


def brute_force(queries, corpus, k, mask=None, normalized=False):
    q = np.asarray(queries, dtype=np.float64)
    c = np.asarray(corpus, dtype=np.float64)
    if not normalized:
        q = q / np.linalg.norm(q, axis=1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            c = c / np.linalg.norm(c, axis=1, keepdims=True)
    scores = q @ c.T
    bad = ~np.isfinite(scores) | (np.linalg.norm(np.nan_to_num(c), axis=1) == 0)[None, :]
    if mask is not None:
        bad |= ~mask[None, :]
    scores[bad] = -np.inf
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(scores, order, axis=1)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(42)
    corpus = rng.standard_normal((3000, 24)).astype(np.float32)
    queries = rng.standard_normal((17, 24)).astype(np.float32)
    return corpus, queries


@pytest.mark.parametrize("chunk_rows", [1, 7, 256, 1000, 3000, 10_000])
@pytest.mark.parametrize("k", [1, 10])
def test_top_k_equals_brute_force(data, chunk_rows, k):
    corpus, queries = data
    if chunk_rows == 1 and k == 10:
        corpus = corpus[:300]
    idx, scores = top_k(queries, corpus, k=k, chunk_rows=chunk_rows)
    ref_idx, ref_scores = brute_force(queries, corpus, k)
    assert idx.dtype == np.int64 and scores.dtype == np.float32
    assert idx.shape == scores.shape == (len(queries), k)
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_allclose(scores, ref_scores, atol=1e-5)
    assert (np.diff(scores, axis=1) <= 0).all()  # descending


def test_top_k_adversarial_order_uses_dense_merges():
    # Similarity grows with the row number, so every chunk replaces the whole running best.
    n, d = 2000, 8
    direction = np.ones(d, dtype=np.float32)
    noise = np.random.default_rng(1).standard_normal((n, d)).astype(np.float32)
    corpus = noise * np.linspace(5, 0.01, n, dtype=np.float32)[:, None] + direction
    idx, _ = top_k(direction, corpus, k=25, chunk_rows=100)
    np.testing.assert_array_equal(idx, brute_force(direction[None], corpus, 25)[0])


def test_top_k_never_returns_nan_or_zero_rows(data):
    corpus, queries = data
    corpus = corpus.copy()
    bad = [0, 5, 999, 1000, 2999]
    corpus[bad[:3]] = np.nan
    corpus[1000, 3] = np.inf
    corpus[2999] = 0.0
    # Make the bad rows the best matches had they been valid.
    idx, scores = top_k(queries, corpus, k=50, chunk_rows=128)
    assert not np.isin(idx, bad).any()
    assert np.isfinite(scores).all()
    np.testing.assert_array_equal(idx, brute_force(queries, corpus, 50)[0])


def test_top_k_mask_and_padding(data):
    corpus, queries = data
    mask = np.zeros(len(corpus), dtype=bool)
    mask[::3] = True
    idx, _ = top_k(queries, corpus, k=10, chunk_rows=500, mask=mask)
    assert (idx % 3 == 0).all()
    np.testing.assert_array_equal(idx, brute_force(queries, corpus, 10, mask=mask)[0])

    # Fewer qualifying rows than k: padded with -1 / NaN, real hits first.
    few = np.zeros(len(corpus), dtype=bool)
    few[[10, 20, 30]] = True
    idx, scores = top_k(queries, corpus, k=5, chunk_rows=100, mask=few)
    assert set(idx[:, :3].ravel()) == {10, 20, 30}
    assert (idx[:, 3:] == -1).all() and np.isnan(scores[:, 3:]).all()
    idx, scores = top_k(queries[:2], corpus[:4], k=6)
    assert (idx[:, 4:] == -1).all() and np.isfinite(scores[:, :4]).all()


def test_top_k_invalid_queries_get_only_padding(data):
    corpus, queries = data
    q = queries[:3].copy()
    q[1] = np.nan
    q[2] = 0
    idx, scores = top_k(q, corpus, k=4)
    assert (idx[1:] == -1).all() and np.isnan(scores[1:]).all()
    assert (idx[0] >= 0).all()


def test_top_k_normalized_is_inner_product_and_single_query(data):
    corpus, queries = data
    unit = corpus / np.linalg.norm(corpus, axis=1, keepdims=True)
    idx, scores = top_k(queries[0], unit, k=5, normalized=True, chunk_rows=333)
    assert idx.shape == (1, 5)
    raw = unit @ queries[0]
    np.testing.assert_array_equal(idx[0], np.argsort(-raw, kind="stable")[:5])
    np.testing.assert_allclose(scores[0], np.sort(raw)[::-1][:5], rtol=1e-5)
    same, _ = top_k(queries[0], corpus, k=5)
    np.testing.assert_array_equal(idx, same)


def test_top_k_accepts_float64_and_memmap_without_copying_the_corpus(tmp_path):
    rng = np.random.default_rng(3)
    corpus = rng.standard_normal((40_000, 64))  # float64, 20 MB
    queries = rng.standard_normal((4, 64)).astype(np.float32)
    tracemalloc.start()
    try:
        idx, _ = top_k(queries, corpus, k=10, chunk_rows=2000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4_000_000  # a chunk's float32 copy and scores, not the 20 MB corpus
    np.testing.assert_array_equal(idx, brute_force(queries, corpus, 10)[0])

    path = tmp_path / "vectors.f32"
    mm = np.memmap(path, dtype=np.float32, mode="w+", shape=corpus.shape)
    mm[:] = corpus
    mm.flush()
    ro = np.memmap(path, dtype=np.float32, mode="r", shape=corpus.shape)
    idx_mm, _ = top_k(queries, ro, k=10, chunk_rows=4096)
    np.testing.assert_array_equal(idx_mm, idx)


def test_top_k_ties_break_by_lower_row():
    corpus = np.tile(np.array([[1.0, 0.0]], dtype=np.float32), (50, 1))
    idx, _ = top_k(np.array([1.0, 0.0]), corpus, k=5, chunk_rows=7)
    assert idx[0].tolist() == [0, 1, 2, 3, 4]


def test_top_k_validation():
    corpus = np.ones((5, 3), dtype=np.float32)
    with pytest.raises(InvalidParameterError, match="3 dimensions but the corpus has|queries have"):
        top_k(np.ones(4), corpus)
    with pytest.raises(InvalidParameterError, match="'k' parameter"):
        top_k(np.ones(3), corpus, k=0)
    with pytest.raises(InvalidParameterError, match="chunk_rows"):
        top_k(np.ones(3), corpus, chunk_rows=0)
    with pytest.raises(InvalidParameterError, match="mask must be a bool array"):
        top_k(np.ones(3), corpus, mask=np.ones(4, dtype=bool))
    with pytest.raises(InvalidParameterError, match="mask must be a bool array"):
        top_k(np.ones(3), corpus, mask=np.ones(5))


# --------------------------------------------------------------------------- vector columns


def test_as_matrix_forms():
    vecs = np.arange(12, dtype=np.float32).reshape(4, 3)
    assert as_matrix(vecs) is vecs  # no copy when already float32 and contiguous
    col = pd.Series([vecs[0], None, vecs[2], np.nan], dtype=object)
    m = as_matrix(col)
    assert m.dtype == np.float32 and np.isnan(m[[1, 3]]).all()
    np.testing.assert_array_equal(m[[0, 2]], vecs[[0, 2]])

    fixed = pa.FixedSizeListArray.from_arrays(pa.array(vecs.ravel()), 3)
    arrow_col = pd.Series(pd.arrays.ArrowExtensionArray(fixed))
    np.testing.assert_array_equal(as_matrix(arrow_col), vecs)
    with_null = pa.array([[1.0, 2.0], None, [3.0, 4.0]], type=pa.list_(pa.float32(), 2))
    m = as_matrix(pd.Series(pd.arrays.ArrowExtensionArray(with_null)))
    assert np.isnan(m[1]).all() and m[2].tolist() == [3.0, 4.0]
    sliced = as_matrix(with_null.slice(1, 2))
    assert np.isnan(sliced[0]).all() and sliced[1].tolist() == [3.0, 4.0]
    var = pa.array([[1.0, 2.0], None, [3.0, 4.0]], type=pa.list_(pa.float64()))
    m = as_matrix(pd.Series(pd.arrays.ArrowExtensionArray(var)))
    assert m.dtype == np.float32 and np.isnan(m[1]).all()
    assert as_matrix([[1, 2], [3, 4]]).shape == (2, 2)
    assert as_matrix([np.ones(2), None]).shape == (2, 2)

    with pytest.raises(InvalidParameterError, match="row 1 has shape"):
        as_matrix(pd.Series([np.ones(3), np.ones(4)]))
    with pytest.raises(InvalidParameterError, match="column of scalars"):
        as_matrix(pd.Series([1.0, 2.0]))
    with pytest.raises(InvalidParameterError, match="no vectors"):
        as_matrix(pd.Series([None, None], dtype=object))
    ragged = pa.array([[1.0], [1.0, 2.0]], type=pa.list_(pa.float32()))
    with pytest.raises(InvalidParameterError, match="different lengths"):
        as_matrix(ragged)


# --------------------------------------------------------------------------- the index

WORDS = ["cat", "dog", "car", "boat", "tree", "rain"]


def fake_embed(texts):
    """Lexical bag-of-words vectors, like the emulator's, counting calls."""
    fake_embed.calls.append(list(texts))
    return np.array([[t.lower().split().count(w) for w in WORDS] for t in texts], dtype=float)


fake_embed.calls = []


@pytest.fixture
def docs():
    texts = [
        "cat cat dog",
        "car boat",
        "tree rain rain",
        "dog",
        "cat",
        "boat boat car",
        "failed row",
        "rain",
    ]
    frame = pd.DataFrame(
        {
            "text": texts,
            "lang": ["en", "de", "en", "en", "de", "en", "en", "de"],
            "year": [2020, 2021, 2022, 2023, 2020, 2021, 2022, 2023],
            "score": np.arange(8.0),  # clashes with the result's score column
        },
        index=pd.Index([f"d{i}" for i in [7, 3, 5, 1, 0, 2, 6, 4]], name="doc"),
    )
    vectors = fake_embed(texts).astype(np.float32)
    vectors[6] = np.nan  # a failed embedding
    fake_embed.calls.clear()
    return frame, vectors


def test_search_index_text_queries_ranks_and_columns(docs):
    frame, vectors = docs
    index = SearchIndex(frame, vectors, embed=fake_embed, text_column="text")
    result = index.search(["cat", "boat"], k=3)
    assert list(result.columns) == [
        "query",
        "rank",
        "score",
        "text",
        "lang",
        "year",
        "data_score",
        "row",
    ]
    assert result["query"].tolist() == ["cat"] * 3 + ["boat"] * 3
    assert result["rank"].tolist() == [1, 2, 3] * 2
    assert result["query"].dtype == "string"
    assert result["score"].dtype == np.float32
    cat = result[result["query"] == "cat"]
    assert cat["text"].tolist()[:2] == ["cat", "cat cat dog"]
    assert cat["row"].tolist()[:2] == ["d0", "d7"]  # the original index labels
    assert cat["score"].iloc[0] == pytest.approx(1.0)
    assert result[result["query"] == "boat"]["text"].tolist()[0] == "boat boat car"
    assert "failed row" not in result["text"].tolist()
    assert len(index) == 8
    assert repr(index) == (
        "deapi_ds.SearchIndex(8 rows × 6 dims, 1 without vectors, text_column='text', embed=fake_embed)"
    )


def test_search_index_returns_fewer_rows_than_k_and_caches_queries(docs):
    frame, vectors = docs
    index = SearchIndex(frame, vectors, embed=fake_embed)
    result = index.search("cat", k=100)
    assert len(result) == 7  # 8 rows, one without a vector
    index.search("cat", k=2)
    index.search(["cat", "dog", "cat"], k=1)
    assert fake_embed.calls == [["cat"], ["dog"]]


def test_search_where_filters(docs):
    frame, vectors = docs
    index = SearchIndex(frame, vectors, embed=fake_embed)
    year = 2021  # noqa: F841 - read by the where= expression as @year
    by_expr = index.search("cat dog rain", k=10, where="lang == 'en' and year > @year")
    assert set(by_expr["lang"]) == {"en"} and (by_expr["year"] > 2021).all()
    assert set(by_expr["row"]) == {"d5", "d1"}  # d6 (2022, en) has no vector
    by_series = index.search("cat", k=10, where=frame["lang"] == "de")
    assert set(by_series["lang"]) == {"de"}
    by_callable = index.search("cat", k=10, where=lambda df: df["year"] == 2020)
    assert set(by_callable["row"]) == {"d7", "d0"}
    partial = pd.Series([True], index=["d0"])  # rows it does not mention are excluded
    assert index.search("cat", k=10, where=partial)["row"].tolist() == ["d0"]
    assert search(index, "cat", k=10, where="year == @year")["row"].tolist() != []

    with pytest.raises(InvalidParameterError, match="could not be evaluated.*Available columns"):
        index.search("cat", where="nope > 1")
    with pytest.raises(InvalidParameterError, match="booleans"):
        index.search("cat", where=frame["year"])
    with pytest.raises(InvalidParameterError, match="length 8"):
        index.search("cat", where=np.ones(3, dtype=bool))


def test_search_vector_queries_and_errors(docs):
    frame, vectors = docs
    index = SearchIndex(frame, vectors)
    result = index.search(vectors[[1, 2]], k=1)
    assert result["query"].tolist() == [0, 1]
    assert result["row"].tolist() == ["d3", "d5"]
    # text queries go through deapi_ds.embed by default (here: no key configured)
    import deapi_ds

    with pytest.raises(deapi_ds.MissingAPIKeyError):
        index.search("cat")
    with pytest.raises(InvalidParameterError, match="3 dimensions but the index has 6"):
        index.search(np.ones(3))
    with pytest.raises(InvalidParameterError, match="no queries"):
        index.search([])
    wrong = SearchIndex(frame, vectors, embed=lambda texts: np.ones((len(texts), 5)))
    with pytest.raises(InvalidParameterError, match=r"returned shape \(1, 5\).*\(1, 6\)"):
        wrong.search("cat")
    with pytest.raises(InvalidParameterError, match="vectors has 7 rows but the frame has 8"):
        SearchIndex(frame, vectors[:7])
    with pytest.raises(InvalidParameterError, match="Column 'body' not found"):
        SearchIndex(frame, vectors, text_column="body")
    with pytest.warns(UserWarning, match="no usable vector"):
        nan_index = SearchIndex(frame, vectors, embed=lambda t: np.zeros((len(t), 6)))
        assert nan_index.search("cat").empty


def test_from_frame_object_and_parquet_round_trip(docs, tmp_path):
    frame, vectors = docs
    df = frame.copy()
    df["embedding"] = list(vectors)
    df.loc["d6", "embedding"] = None
    index = SearchIndex.from_frame(df, embed=fake_embed, text_column="text")
    assert "embedding" not in index.frame.columns
    expected = index.search("rain", k=3)
    assert expected["text"].tolist()[0] == "rain"

    arrow = frame.copy()
    flat = pa.array(np.nan_to_num(vectors).ravel(), type=pa.float32())
    arrow["embedding"] = pd.arrays.ArrowExtensionArray(
        pa.FixedSizeListArray.from_arrays(flat, 6, mask=pa.array(np.isnan(vectors[:, 0])))
    )
    path = tmp_path / "docs.parquet"
    arrow.to_parquet(path)
    plain = tmp_path / "plain.parquet"  # written without pandas metadata
    pq.write_table(
        pa.Table.from_pandas(arrow, preserve_index=True).replace_schema_metadata(), plain
    )
    # pandas 3.1 cannot rebuild an ArrowDtype fixed_size_list column from its own metadata
    # with the default backend (NotImplementedError), hence the pyarrow backend for `path`;
    # without the metadata the column comes back as an object column of numpy arrays.
    for file, kwargs in ((path, {"dtype_backend": "pyarrow"}), (plain, {})):
        back = pd.read_parquet(file, **kwargs)
        if file == plain:
            back = back.set_index("doc")
            assert isinstance(back["embedding"].iloc[0], np.ndarray)
        else:
            assert isinstance(back["embedding"].dtype, pd.ArrowDtype)
        got = SearchIndex.from_frame(back, embed=fake_embed).search("rain", k=3)
        assert got["row"].tolist() == expected["row"].tolist()
        np.testing.assert_allclose(got["score"], expected["score"], rtol=1e-6)
    with pytest.raises(InvalidParameterError, match="Column 'vec' not found"):
        SearchIndex.from_frame(df, "vec")


def test_search_function_forms(docs):
    frame, vectors = docs
    df = frame.copy()
    df["embedding"] = list(vectors)
    a = search(df, "dog", k=2, embed=fake_embed)
    b = search(frame, "dog", vectors=vectors, k=2, embed=fake_embed)
    c = search(SearchIndex(frame, vectors), "dog", k=2, embed=fake_embed)
    assert a["row"].tolist() == b["row"].tolist() == c["row"].tolist() == ["d1", "d7"]
    with pytest.warns(DeprecationWarning, match=r"search\(data, queries"):
        old = search("dog", df, k=2, embed=fake_embed)  # the order before 0.1.0
    assert old["row"].tolist() == ["d1", "d7"]
    with pytest.raises(InvalidParameterError, match="DataFrame or a SearchIndex"):
        search([1, 2, 3], "dog")


def test_widget_shows_static_results(docs):
    ipywidgets = pytest.importorskip("ipywidgets")
    frame, vectors = docs
    index = SearchIndex(frame, vectors, embed=fake_embed, text_column="text")
    box = index.widget(k=2)
    assert isinstance(box, ipywidgets.VBox)
    text, results = box.children
    assert text.continuous_update is False  # searches on submit, not per keystroke
    text.value = "boat"
    assert "boat boat car" in results.value and "<table" in results.value
    assert "<script" not in results.value
    assert results.value.count("<tr>") == 3  # header + k rows
    text.value = "   "
    assert results.value == ""
    bad = SearchIndex(frame, vectors, embed=lambda t: np.ones((len(t), 2)))
    text2, results2 = bad.widget().children
    text2.value = "cat"
    assert "InvalidParameterError" in results2.value
    assert SearchIndex(frame, vectors).widget() is not None  # default embedder: deapi_ds.embed
    with pytest.raises(InvalidParameterError, match="Columns \\['nope'\\] not found"):
        index.widget(columns=["nope"])
