"""evaluate(), cluster()/project()/maps, near_duplicates()/duplicate_groups()."""

from __future__ import annotations

import math
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from deapi_ds._exceptions import InvalidParameterError
from deapi_ds.emulator._models import embed_texts
from deapi_ds.search import (
    SearchIndex,
    chunk,
    cluster,
    duplicate_groups,
    evaluate,
    near_duplicates,
    plot_map,
    project,
    scatter_map,
)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def sample():
    corpus = pd.read_csv(ROOT / "data/corpus.csv", dtype={"topic": "string", "text": "string"})
    queries = pd.read_csv(ROOT / "data/queries.csv", dtype="string")
    vectors = embed_texts(corpus["text"].tolist())
    index = SearchIndex(corpus.set_index("id"), vectors, embed=embed_texts, text_column="text")
    labels = queries.assign(relevant=queries["relevant_ids"].str.split()).explode("relevant")
    return corpus, labels[["query", "relevant"]], index


# --------------------------------------------------------------------------- evaluate


def test_measures_by_hand():
    hits = pd.DataFrame(
        {"query": ["q"] * 4 + ["r"] * 2, "rank": [1, 2, 3, 4, 1, 2], "id": [9, 1, 1, 2, 5, 6]}
    )
    labels = pd.DataFrame(
        {"query": ["q", "q", "q", "r"], "relevant": ["1", "2", "3", 7], "grade": [2, 1, 1, 1]}
    )
    ev = evaluate(lambda qs, k: hits, labels, k=[2, 4], id_column="id")
    q = ev.per_query.set_index("query").loc["q"]
    assert q["recall@2"] == pytest.approx(1 / 3) and q["recall@4"] == pytest.approx(2 / 3)
    assert q["mrr@4"] == pytest.approx(0.5) and q["first_rank"] == 2
    # DCG@4: 2/log2(3) (rank 2), the repeated id 1 counts once, 1/log2(5) (rank 4)
    dcg = 2 / math.log2(3) + 1 / math.log2(5)
    idcg = 2 + 1 / math.log2(3) + 1 / math.log2(4)
    assert q["ndcg@4"] == pytest.approx(dcg / idcg)
    assert q["missed"] == ["3"] and q["found"] == 2 and q["n_relevant"] == 3
    r = ev.per_query.set_index("query").loc["r"]
    assert r["recall@4"] == 0 and r["mrr@4"] == 0 and pd.isna(r["first_rank"])
    assert ev.table.loc["search", "recall@4"] == pytest.approx((2 / 3 + 0) / 2)
    assert list(ev.table.columns) == [
        "recall@2",
        "recall@4",
        "mrr@4",
        "ndcg@2",
        "ndcg@4",
        "queries",
        "ms_per_query",
    ]
    assert ev.misses().iloc[0]["query"] == "r"


def test_configurations_side_by_side_on_the_sample(sample):
    corpus, labels, index = sample
    configs = {
        "dense": {"mode": "dense"},
        "lexical": {"mode": "lexical"},
        "hybrid": {"mode": "hybrid"},
        "hybrid weighted 0.3": {"mode": "hybrid", "fusion": "weighted", "weight": 0.3},
    }
    ev = evaluate(index, labels, k=[1, 10], configs=configs)
    assert list(ev.table.index) == list(configs)
    assert (ev.table["queries"] == 40).all()
    assert ev.table[ev.measures].to_numpy().min() >= 0
    assert ev.table[ev.measures].to_numpy().max() <= 1
    # the sample's queries are written from their subjects' words: every mode finds them
    assert (ev.table["recall@10"] > 0.5).all() and (ev.table["ndcg@10"] > 0.8).all()
    assert len(ev.per_query) == 4 * 40
    assert ev.misses("lexical", n=3)["config"].eq("lexical").all()
    with pytest.raises(InvalidParameterError, match="Unknown config"):
        ev.misses("nope")
    fig = ev.plot()
    assert type(fig).__name__ == "Figure" and len(fig.axes[0].patches) == 4 * 5
    import matplotlib.pyplot as plt

    assert plt.fignum_exists(fig.number)  # made through pyplot: plt.show() shows it
    plt.close(fig)
    with pytest.raises(InvalidParameterError, match="Unknown measures"):
        ev.plot(["recall@3"])
    assert "4 configurations" in repr(ev) and "<table" in ev._repr_html_()
    # several indexes (e.g. two models) by name
    two = evaluate({"a": index, "b": index}, labels, configs={"dense": {}})
    assert list(two.table.index) == ["a / dense", "b / dense"]


def test_evaluate_input_errors(sample):
    _, labels, index = sample
    with pytest.raises(InvalidParameterError, match="'query' and 'relevant'"):
        evaluate(index, labels.rename(columns={"relevant": "id"}))
    with pytest.raises(InvalidParameterError, match="no missing values"):
        evaluate(index, pd.DataFrame({"query": ["a", None], "relevant": [1, 2]}))
    with pytest.raises(InvalidParameterError, match="SearchIndex, a search function"):
        evaluate([index], labels)
    with pytest.raises(InvalidParameterError, match="need the columns"):
        evaluate(index, labels, id_column="nope")
    with pytest.raises(InvalidParameterError, match="'k' parameter"):
        evaluate(index, labels, k=0)


# --------------------------------------------------------------------------- clusters, maps


def blobs(n_per=30, dim=16, k=4, seed=0):
    rng = np.random.default_rng(seed)
    centres = np.eye(dim, dtype=np.float32)[:k] * 3
    x = np.concatenate([c + 0.3 * rng.standard_normal((n_per, dim)) for c in centres])
    words = ["apple pie", "car race", "sea wave", "rocket orbit"]
    texts = [f"{words[i // n_per]} number {i}" for i in range(k * n_per)]
    return x.astype(np.float32), texts


@pytest.mark.parametrize("engine", ["numpy", "sklearn"])
def test_kmeans_recovers_blobs_and_labels_them(engine):
    if engine == "sklearn":
        pytest.importorskip("sklearn")
    x, texts = blobs()
    x[5] = np.nan  # a row without a vector
    df = pd.DataFrame({"text": texts, "embedding": list(x)}, index=[f"r{i}" for i in range(len(x))])
    cl = cluster(df, text="text", n_clusters=4, engine=engine)
    assert cl.labels.index.equals(df.index) and cl.labels.dtype == "Int64"
    assert pd.isna(cl.labels.iloc[5])
    truth = np.repeat(np.arange(4), 30)
    got = cl.labels.to_numpy(dtype=float, na_value=np.nan)
    ok = ~np.isnan(got)
    pairs = pd.crosstab(truth[ok], got[ok])
    assert (pairs.gt(0).sum(axis=1) == 1).all()  # each blob in one cluster
    assert {frozenset(w[:2]) for w in cl.topics["words"]} == {
        frozenset(p.split()) for p in ("apple pie", "car race", "sea wave", "rocket orbit")
    }  # "number" is in every cluster: not distinctive
    assert cl.topics["size"].sum() == len(x) - 1
    assert cl.topics["size"].is_monotonic_decreasing
    assert cl.cluster_label().iloc[0] == cl.topics["label"].iloc[int(cl.labels.iloc[0])]


def test_hdbscan_noise_and_errors():
    pytest.importorskip("sklearn.cluster", reason="HDBSCAN needs scikit-learn")
    from sklearn import cluster as skc

    if not hasattr(skc, "HDBSCAN"):
        pytest.skip("scikit-learn < 1.3")
    x, texts = blobs()
    outlier = np.full((1, x.shape[1]), -5, dtype=np.float32)
    cl = cluster(
        np.vstack([x, outlier]), text=[*texts, "odd one"], method="hdbscan", min_cluster_size=10
    )
    assert len(cl.topics) == 4 and cl.labels.iloc[-1] == -1
    assert cl.cluster_label().iloc[-1] == "noise"
    with pytest.raises(InvalidParameterError, match="n_clusters=500"):
        cluster(x, n_clusters=500)
    with pytest.raises(InvalidParameterError, match="'method'"):
        cluster(x, method="dbscan")
    with pytest.raises(InvalidParameterError, match="text has 3 values"):
        cluster(x, text=["a", "b", "c"])


def test_numpy_kmeans_is_used_without_sklearn(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "sklearn.cluster", None)  # import fails
    x, texts = blobs()
    cl = cluster(x, text=texts, n_clusters=4)
    assert len(cl.topics) == 4
    with pytest.raises(InvalidParameterError, match=r"pip install 'deapi-ds\[sklearn\]'"):
        cluster(x, engine="sklearn")
    with pytest.raises(InvalidParameterError, match="scikit-learn >= 1.3"):
        cluster(x, method="hdbscan")


def test_pca_map_plot_and_scatter(tmp_path):
    x, texts = blobs()
    xy = project(x)
    assert list(xy.columns) == ["x", "y"] and len(xy) == len(x)
    # deterministic and the main axes: the variance of x is the largest
    pd.testing.assert_frame_equal(xy, project(x.copy()))
    assert xy["x"].var() >= xy["y"].var()
    with pytest.raises(InvalidParameterError, match="umap-learn|'method'"):
        project(x, method="tsne")
    cl = cluster(x, text=texts, n_clusters=4, engine="numpy")
    fig = cl.plot()
    texts_drawn = [t.get_text() for t in fig.axes[0].texts]
    assert sorted(texts_drawn) == sorted(cl.topics["label"].tolist())
    import matplotlib.pyplot as plt

    plt.close(fig)
    sc = cl.scatter()
    bundle = sc._repr_mimebundle_()
    assert bundle["text/html"].count("<circle") == len(x)
    assert "<title>[apple · pie · number] apple pie number 0</title>" in bundle["text/html"] or (
        "apple pie number 0</title>" in bundle["text/html"]
    )
    assert "<script" not in bundle["text/html"]
    assert bundle["image/png"]  # the static image for exports
    sampled = scatter_map(xy, text=texts, max_points=10)
    assert sampled.svg.count("<circle") == 10
    assert sc.save(tmp_path / "map.html").read_text().startswith("<!doctype html>")
    with pytest.raises(InvalidParameterError, match=".svg or .html"):
        sc.save(tmp_path / "map.png")
    fig2 = plot_map(xy, hue=cl.labels)
    plt.close(fig2)


# --------------------------------------------------------------------------- near-duplicates


def planted(n=3000, d=32, dups=40, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)).astype(np.float32)
    src = rng.choice(n // 2, dups, replace=False)
    dst = n // 2 + rng.choice(n // 2, dups, replace=False)
    x[dst] = x[src] + 0.05 * rng.standard_normal((dups, d)).astype(np.float32)
    return x


def brute_pairs(x, threshold):
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    s = unit @ unit.T
    a, b = np.nonzero(np.triu(s >= threshold, k=1))
    return set(zip(a.tolist(), b.tolist(), strict=True))


@pytest.mark.parametrize("method", ["exact", "lsh"])
def test_near_duplicates_match_brute_force(method):
    x = planted()
    x[7] = np.nan
    x[8] = 0
    x[9] = x[10]  # an exact copy
    got = near_duplicates(x, threshold=0.95, method=method, chunk_rows=256)
    assert list(got.columns) == ["a", "b", "score"] and got["score"].dtype == np.float32
    pairs = set(zip(got["a"].tolist(), got["b"].tolist(), strict=True))
    clean = np.nan_to_num(x)
    clean[[7, 8]] = 1.0  # rows without a usable vector: never paired
    truth = {p for p in brute_pairs(clean, 0.95) if 7 not in p and 8 not in p}
    assert (9, 10) in truth and len(truth) >= 40
    assert pairs == truth
    assert (got["a"] < got["b"]).all() and got["score"].is_monotonic_decreasing
    assert (got["score"] >= 0.95).all()


def test_near_duplicates_inputs_groups_and_memory():
    x = planted(n=4000, d=64)
    df = pd.DataFrame({"embedding": list(x)}, index=[f"r{i}" for i in range(len(x))])
    by_frame = near_duplicates(df, threshold=0.9)
    assert by_frame["a"].str.startswith("r").all()
    tracemalloc.start()
    try:
        near_duplicates(x, threshold=0.9, method="exact", chunk_rows=256)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8_000_000  # blocks of 256 x 1024 scores, not 4000 x 4000 (64 MB)
    triangle = pd.DataFrame({"a": ["x", "y", "p", "z"], "b": ["y", "z", "q", "x"], "score": 1.0})
    groups = duplicate_groups(triangle)
    assert groups.groupby("group")["row"].apply(set).tolist() == [{"x", "y", "z"}, {"p", "q"}]
    assert groups.set_index("row")["size"].to_dict() == {"x": 3, "y": 3, "z": 3, "p": 2, "q": 2}
    assert duplicate_groups(triangle.iloc[:0]).empty
    with pytest.raises(InvalidParameterError, match="columns 'a' and 'b'"):
        duplicate_groups(pd.DataFrame({"x": [1]}))
    with pytest.raises(InvalidParameterError, match="'threshold'"):
        near_duplicates(x, threshold=1.5)
    with pytest.raises(InvalidParameterError, match="'method'"):
        near_duplicates(x, method="faiss")
    with pytest.raises(InvalidParameterError, match="Column 'embedding' not found"):
        near_duplicates(pd.DataFrame({"v": [1]}))


def test_sample_corpus_duplicates(sample):
    corpus, _, index = sample
    pairs = near_duplicates(index, threshold=0.999)
    texts = corpus.set_index("id")["text"]
    assert len(pairs) == 12  # data/README.md: 12 exact duplicates
    assert (texts.loc[pairs["a"]].to_numpy() == texts.loc[pairs["b"]].to_numpy()).all()


def test_evaluate_passages_by_document():
    docs = pd.DataFrame(
        {
            "text": [
                "The rocket launch was loud. " * 6 + "Cake recipes are sweet.",
                "Chocolate cake with butter. " * 6,
                "Markets fell today. " * 6 + "A rocket toy sold out.",
            ]
        },
        index=["a", "b", "c"],
    )
    passages = chunk(docs, "text", max_tokens=20)
    index = SearchIndex(
        passages, embed_texts(passages["text"].tolist()), embed=embed_texts, text_column="text"
    )
    labels = pd.DataFrame(
        {"query": ["rocket launch", "rocket launch", "cake"], "relevant": ["a", "c", "b"]}
    )
    ev = evaluate(
        index,
        labels,
        k=2,
        id_column="doc",
        configs={
            "passages": {"mode": "lexical"},
            "documents": {"mode": "lexical", "group_by": "doc"},
        },
    )
    # passages of "a" fill the top 2 without grouping; one per document finds "c" too
    assert ev.table.loc["passages", "recall@2"] < ev.table.loc["documents", "recall@2"] == 1.0
