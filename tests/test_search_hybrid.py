"""Lexical and hybrid search, passages search, save/load, float16, the module's shape."""

from __future__ import annotations

import ast
import doctest
import importlib
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import deapi_ds
from deapi_ds._exceptions import InvalidParameterError
from deapi_ds.emulator._models import embed_texts
from deapi_ds.search import BM25, SearchIndex, chunk, tokenize

ROOT = Path(__file__).resolve().parents[1]


def emulator_embed(texts):
    """The emulator's deterministic vectors, computed in-process (no client, no cache)."""
    return embed_texts(list(texts))


@pytest.fixture(scope="module")
def sample():
    corpus = pd.read_csv(ROOT / "data/corpus.csv", dtype={"topic": "string", "text": "string"})
    corpus = corpus.set_index("id")
    queries = pd.read_csv(ROOT / "data/queries.csv", dtype="string")
    vectors = emulator_embed(corpus["text"].tolist())
    return corpus, queries, vectors


@pytest.fixture
def docs():
    frame = pd.DataFrame(
        {
            "text": [
                "The rocket launch was delayed by rain",
                "A chocolate cake recipe with butter",
                "Stock markets fell as investors sold",
                "rocket rocket rocket",
                "Bake the bread at home",
                "",
                None,
            ],
            "lang": ["en", "en", "de", "en", "de", "en", "en"],
        },
        index=pd.Index([f"d{i}" for i in range(7)], name="doc"),
    )
    vectors = emulator_embed(frame["text"].fillna("").tolist()).copy()
    vectors[5:] = np.nan  # rows without a vector
    return frame, vectors


# --------------------------------------------------------------------------- module shape


def test_import_gives_the_module_and_it_is_callable(docs):
    mod = importlib.import_module("deapi_ds.search")
    import deapi_ds.search as alias

    assert alias is mod is deapi_ds.search
    assert type(mod).__name__ == "_CallableModule" and mod.__name__ == "deapi_ds.search"
    frame, vectors = docs
    hits = deapi_ds.search(frame, vectors[0], vectors=vectors, k=1)
    assert hits["row"].tolist() == ["d0"]
    assert "data" in str(mod.__signature__).split(",")[0]
    lang = "de"  # noqa: F841 - read by where= as @lang, through the module's __call__
    found = deapi_ds.search(frame, vectors[2], vectors=vectors, k=5, where="lang == @lang")
    assert set(found["lang"]) == {"de"}
    with pytest.warns(DeprecationWarning) as record:
        deapi_ds.search(vectors[2], frame, vectors=vectors, k=1)
    assert record[0].filename == __file__  # the warning points at the caller
    assert mod.__all__ == sorted(mod.__all__)


def test_embeddings_never_imports_search():
    """search builds on embeddings; the reverse (even inside a function) would be a cycle."""
    tree = ast.parse((ROOT / "deapi_ds/embeddings.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            names = [node.module or ""] + [a.name for a in node.names]
            assert not any("search" in n for n in names), ast.dump(node)
        elif isinstance(node, ast.Import):
            assert not any("search" in a.name for a in node.names)
    # the convenience method looks the search layer up when called (works with lazy imports)
    res = deapi_ds.EmbeddingResult(
        pd.DataFrame({"status": ["ok"]}), np.ones((1, 3), np.float32), usage={}, model="m"
    )
    assert type(res.search_index(embed=lambda q: np.ones((len(q), 3), np.float32))).__name__ == (
        "SearchIndex"
    )


def test_doctests_of_the_search_modules():
    for name in (
        "_dense",
        "_lexical",
        "_index",
        "_passages",
        "_evaluate",
        "_duplicates",
        "_clusters",
    ):
        module = importlib.import_module(f"deapi_ds.search.{name}")
        failures, tried = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
        assert failures == 0 and tried > 0, name


# --------------------------------------------------------------------------- lexical


def test_bm25_scores_match_the_formula():
    texts = ["cat sat", "cat cat dog", "dog", None, "the cat and the dog and the bird"]
    bm = BM25(texts, k1=1.2, b=0.75)
    avg = np.mean([len(tokenize(t)) for t in texts])  # the missing text has no words

    def expected(doc_words, word):
        n, df = 5, sum(word in tokenize(t) for t in texts)
        tf = doc_words.count(word)
        idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
        return idf * tf * 2.2 / (tf + 1.2 * (1 - 0.75 + 0.75 * len(doc_words) / avg))

    idx, scores = bm.top_k(["cat dog"], k=5)
    got = dict(zip(idx[0].tolist(), scores[0].tolist(), strict=True))
    assert -1 in got and 3 not in got  # the empty text is never found; padding is -1
    for i in (0, 1, 2, 4):
        words = tokenize(texts[i])
        assert got[i] == pytest.approx(expected(words, "cat") + expected(words, "dog"), rel=1e-5)
    assert idx[0, 0] == 1  # "cat cat dog": both words, short
    empty_idx, empty_scores = bm.top_k(["unknown words"], k=3)
    assert (empty_idx == -1).all() and np.isnan(empty_scores).all()
    mask = np.array([True, False, True, True, True])
    assert 1 not in bm.top_k(["cat dog"], k=5, mask=mask)[0]
    assert repr(bm) == "BM25(5 documents, 6 words, k1=1.2, b=0.75)"
    with pytest.raises(InvalidParameterError, match="0 <= b <= 1"):
        BM25(texts, b=2)


def test_bm25_many_postings_path_equals_few_postings_path():
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(30)]
    texts = [" ".join(rng.choice(words, 12)) for _ in range(2000)]
    bm = BM25(texts, batch=333)  # several build batches
    for query in ("w1 w2", "w1 w2 w3 w4 w5 w6 w7 w8", "w29"):
        docs, scores = bm.scores(query)
        # reference: the same weights summed with a dict
        ref: dict[int, float] = {}
        for word in tokenize(query):
            t = bm.vocab[word]
            for d, w in zip(
                bm.docs[bm.indptr[t] : bm.indptr[t + 1]].tolist(),
                bm.weights[bm.indptr[t] : bm.indptr[t + 1]].tolist(),
                strict=True,
            ):
                ref[d] = ref.get(d, 0.0) + w
        assert sorted(docs.tolist()) == sorted(ref)
        got = dict(zip(docs.tolist(), scores.tolist(), strict=True))
        assert all(got[d] == pytest.approx(v, rel=1e-5) for d, v in ref.items())


def test_lexical_and_hybrid_modes_with_where(docs):
    frame, vectors = docs
    index = SearchIndex(frame, vectors, embed=emulator_embed, text_column="text")
    lexical = index.search("rocket launch", k=5, mode="lexical")
    assert lexical["row"].tolist() == ["d0", "d3"]  # only rows sharing a word
    assert list(lexical.columns) == ["query", "rank", "score", "text", "lang", "row"]
    hybrid = index.search(["rocket launch", "bread"], k=3, mode="hybrid")
    assert list(hybrid.columns)[:6] == [
        "query",
        "rank",
        "score",
        "found_by",
        "dense_rank",
        "lexical_rank",
    ]
    first = hybrid[hybrid["query"] == "rocket launch"]
    assert first["row"].iloc[0] == "d0" and first["found_by"].iloc[0] == "both"
    assert set(hybrid["found_by"]) <= {"dense", "lexical", "both"}
    only_dense = hybrid[hybrid["found_by"] == "dense"]
    assert only_dense["lexical_rank"].isna().all() and only_dense["dense_rank"].notna().all()
    assert not hybrid["row"].isin(["d5", "d6"]).any()  # no vector, no text
    # RRF: 2 * (0.5 / (60 + rank_d) + 0.5 / (60 + rank_l)) for rows both sides found
    both = hybrid[hybrid["found_by"] == "both"].iloc[0]
    assert both["score"] == pytest.approx(
        1 / (60 + both["dense_rank"]) + 1 / (60 + both["lexical_rank"]), rel=1e-6
    )
    for mode in ("dense", "lexical", "hybrid"):
        found = index.search("rocket bread markets", k=5, mode=mode, where="lang == 'de'")
        assert set(found["lang"]) <= {"de"} and len(found) >= 1, mode
    weighted = index.search("rocket launch", k=3, mode="hybrid", fusion="weighted", weight=1.0)
    dense = index.search("rocket launch", k=3)
    assert weighted["row"].tolist() == dense["row"].tolist()  # all weight on the dense side
    lexical_only = index.search("rocket launch", k=2, mode="hybrid", fusion="weighted", weight=0)
    assert lexical_only["row"].tolist() == ["d0", "d3"]


def test_mode_errors(docs):
    frame, vectors = docs
    no_text = SearchIndex(frame, vectors, embed=emulator_embed)
    with pytest.raises(InvalidParameterError, match="text_column="):
        no_text.search("rocket", mode="lexical")
    index = SearchIndex(frame, vectors, embed=emulator_embed, text_column="text")
    with pytest.raises(InvalidParameterError, match="'mode' parameter.*'dense', 'lexical'"):
        index.search("rocket", mode="sparse")
    with pytest.raises(InvalidParameterError, match="needs text queries"):
        index.search(vectors[0], mode="hybrid")
    with pytest.raises(InvalidParameterError, match="query 1 is <NA>, not a text"):
        index.search(pd.Series(["rocket", None], dtype="string"), mode="lexical")
    with pytest.raises(InvalidParameterError, match="'fusion'"):
        index.search("rocket", mode="hybrid", fusion="max")
    with pytest.raises(InvalidParameterError, match="'weight'"):
        index.search("rocket", mode="hybrid", weight=2)
    with pytest.raises(InvalidParameterError, match="Column 'nope' not found"):
        index.search("rocket", group_by="nope")
    with pytest.raises(InvalidParameterError, match="mode"):
        index.widget(mode="fuzzy")


def test_module_search_function_modes_and_embedding_column_not_repeated(docs):
    frame, vectors = docs
    df = frame.assign(embedding=list(vectors))
    hits = deapi_ds.search(
        df, "rocket", k=2, mode="hybrid", text_column="text", embed=emulator_embed
    )
    assert "embedding" not in hits.columns and hits["row"].iloc[0] in ("d0", "d3")
    # a frame passed with its own vector column and vectors=: the column is not repeated
    again = deapi_ds.search(df, "rocket", vectors=vectors, k=2, embed=emulator_embed)
    assert "embedding" not in again.columns
    index = SearchIndex(df, vectors, embed=emulator_embed)
    assert "embedding" not in index.frame.columns


def test_embedding_result_search_index_hybrid(emulator):
    corpus = pd.DataFrame(
        {"text": ["The rocket launched", "A cake recipe", "Markets fell", "Bread at home"]}
    )
    res = deapi_ds.embed(corpus, "text")
    index = res.search_index(corpus, text_column="text")
    hits = index.search("cake", k=2, mode="hybrid")
    assert hits["text"].iloc[0] == "A cake recipe" and hits["found_by"].iloc[0] == "both"
    framed = res.to_frame(corpus)
    assert "embedding" not in res.search_index(framed).search("cake", k=1).columns


def test_group_by_returns_documents_with_their_best_passage(docs):
    long_docs = pd.DataFrame(
        {
            "text": [
                "The rocket is loud. " * 3
                + "The rocket launch at dawn. "
                + "Cakes are sweet. " * 3,
                "A rocket toy. " + "Gardening tips for spring. " * 5,
                "Chocolate cake. " * 6,
            ]
        },
        index=["a", "b", "c"],
    )
    passages = chunk(long_docs, "text", max_tokens=12)
    assert passages["doc"].value_counts()["a"] > 2
    vectors = emulator_embed(passages["text"].tolist())
    index = SearchIndex(passages, vectors, embed=emulator_embed, text_column="text")
    plain = index.search("rocket launch", k=3, mode="lexical")
    assert plain["doc"].duplicated().any()  # several passages of one document
    for mode in ("dense", "lexical", "hybrid"):
        by_doc = index.search("rocket launch", k=3, mode=mode, group_by="doc")
        assert not by_doc["doc"].duplicated().any(), mode
        assert by_doc["rank"].tolist() == list(range(1, len(by_doc) + 1))
    best = index.search("rocket launch", k=2, mode="lexical", group_by="doc")
    assert best["doc"].tolist() == ["a", "b"]
    row = best.iloc[0]
    assert long_docs.loc["a", "text"][row["start"] : row["end"]] == row["text"]
    assert "launch" in row["text"]
    # k larger than the number of documents: every document once
    assert len(index.search("rocket", k=10, mode="dense", group_by="doc")) == 3


# --------------------------------------------------------------------------- files, float16


def test_save_and_load_round_trip(docs, tmp_path):
    frame, vectors = docs
    index = SearchIndex(frame, vectors, embed=emulator_embed, text_column="text")
    expected = {
        m: index.search("rocket bread", k=4, mode=m) for m in ("dense", "lexical", "hybrid")
    }
    path = index.save(tmp_path / "idx")
    assert sorted(p.name for p in path.iterdir()) == [
        "bm25",
        "frame.parquet",
        "index.json",
        "vectors.npy",
    ]
    for mmap in (False, True):
        back = SearchIndex.load(path, embed=emulator_embed, mmap=mmap)
        assert back.text_column == "text" and len(back) == len(index)
        for mode, want in expected.items():
            pd.testing.assert_frame_equal(back.search("rocket bread", k=4, mode=mode), want)
    with pytest.raises(InvalidParameterError, match="exists; pass overwrite=True"):
        index.save(path)
    assert index.save(path, overwrite=True) == path
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "keep.txt").write_text("mine")
    with pytest.raises(InvalidParameterError, match="not a saved index"):
        index.save(tmp_path / "other", overwrite=True)
    with pytest.raises(InvalidParameterError, match="not a saved SearchIndex"):
        SearchIndex.load(tmp_path / "other")
    # the default embedder's model is recorded and used again
    res_like = SearchIndex(frame, vectors, embed=deapi_ds.search.default_embedder("Model_X"))
    res_like.save(tmp_path / "m")
    assert SearchIndex.load(tmp_path / "m")._embed.model == "Model_X"
    assert not (tmp_path / "m" / "bm25").exists()  # no text column, no lexical index


def test_float16_store_halves_memory_and_keeps_recall(sample, tmp_path):
    corpus, queries, vectors = sample
    full = SearchIndex(corpus, vectors, embed=emulator_embed, text_column="text")
    half = SearchIndex(corpus, vectors, embed=emulator_embed, text_column="text", dtype="float16")
    assert half.vectors.dtype == np.float16 and half.vectors.nbytes * 2 == full.vectors.nbytes
    assert "float16" in repr(half)
    texts = queries["query"].tolist() + corpus["text"].tolist()  # > 256: beyond the query cache
    a = full.search(texts, k=10)
    b = half.search(texts, k=10)
    overlap = [
        len(set(a.loc[a["query"] == q, "row"]) & set(b.loc[b["query"] == q, "row"])) / 10
        for q in dict.fromkeys(texts)
    ]
    assert np.mean(overlap) >= 0.999
    back = SearchIndex.load(half.save(tmp_path / "half"), embed=emulator_embed)
    assert back.vectors.dtype == np.float16


def test_transcription_semantic_search_modes(emulator, tmp_path):
    from deapi_ds.emulator._media import synthesize_speech

    folder = tmp_path / "clips"
    folder.mkdir()
    for name, text in (
        ("a.wav", "The rocket launch is tomorrow morning."),
        ("b.wav", "We discussed the budget file and the costs."),
    ):
        (folder / name).write_bytes(synthesize_speech(text, voice="af_bella", fmt="wav"))
    res = deapi_ds.transcribe_folder(folder)
    lexical = res.semantic_search("budget", k=1, mode="lexical")
    assert "budget" in lexical["text"].iloc[0]
    hybrid = res.semantic_search("rocket launch", k=2, mode="hybrid")
    assert hybrid["found_by"].iloc[0] == "both"
