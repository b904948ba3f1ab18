"""Evaluation on labelled queries: recall@k, MRR and nDCG@k per configuration, side by side.

The measures are those of BEIR / MTEB (trec_eval's definitions): for each query, with R its
relevant ids (grades default to 1) and the ranked ids returned,

* ``recall@k`` = relevant ids among the first k / ``len(R)``;
* ``mrr@K`` = 1 / rank of the first relevant id within the first K (0 if none), K the
  largest ``k``;
* ``ndcg@k`` = DCG / ideal DCG with linear gains, DCG = sum of grade / log2(rank + 1);

then averaged over the queries. A returned id that repeats an earlier one (passages of the
same document, when searching without ``group_by``) counts once, at its first rank.

>>> import numpy as np, pandas as pd
>>> frame = pd.DataFrame({"id": [1, 2, 3], "text": ["red apple", "green pear", "blue car"]})
>>> fake = lambda texts: np.array([[t.count("apple"), t.count("pear"), t.count("car")]
...                                for t in texts], dtype=float)
>>> index = SearchIndex(frame, np.eye(3, dtype=np.float32), embed=fake, text_column="text")
>>> labels = pd.DataFrame({"query": ["apple", "car"], "relevant": [1, 3]})
>>> ev = evaluate(index, labels, k=[1, 3], id_column="id",
...               configs={"dense": {"mode": "dense"}, "lexical": {"mode": "lexical"}})
>>> ev.table[["recall@1", "mrr@3", "ndcg@3"]]
         recall@1  mrr@3  ndcg@3
config
dense         1.0    1.0     1.0
lexical       1.0    1.0     1.0
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from deapi_ds._exceptions import InvalidParameterError

from ._dense import _check_int
from ._index import SearchIndex

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["Evaluation", "evaluate"]

SearchFn = Callable[[list[str], int], pd.DataFrame]


class Evaluation:
    """What :func:`evaluate` measured.

    * ``table``: one row per configuration (index ``config``), the mean of each measure over
      the queries, the number of ``queries`` and the search time (``ms_per_query``);
    * ``per_query``: one row per configuration and query, with each measure, ``relevant``
      (how many ids are relevant), ``found`` (how many of them are in the first K),
      ``first_rank`` (rank of the first relevant id, NA if none) and ``missed`` (the relevant
      ids not in the first K);
    * :meth:`misses`: the queries a configuration did worst on; :meth:`plot`: a bar chart.
    """

    def __init__(self, table: pd.DataFrame, per_query: pd.DataFrame, ks: list[int]) -> None:
        self.table = table
        self.per_query = per_query
        self.ks = ks

    @property
    def measures(self) -> list[str]:
        """The measure columns, in table order."""
        return [c for c in self.table.columns if "@" in c]

    def __repr__(self) -> str:
        shown = self.table[self.measures].round(3).to_string()
        return f"deapi_ds.search.Evaluation({len(self.table)} configurations)\n{shown}"

    def _repr_html_(self) -> str:
        return self.table.round(3).to_html()

    def misses(self, config: str | None = None, n: int = 10) -> pd.DataFrame:
        """The ``n`` queries with the lowest nDCG@K for ``config`` (default: the first), with
        their rank of the first relevant id and the relevant ids that were not found."""
        names = list(self.table.index)
        config = names[0] if config is None else config
        if config not in names:
            raise InvalidParameterError(f"Unknown config {config!r}; the configs are {names}.")
        k = max(self.ks)
        rows = self.per_query[self.per_query["config"] == config]
        return rows.sort_values([f"ndcg@{k}", "query"], kind="stable").head(n)

    def plot(self, measures: Sequence[str] | None = None) -> Figure:
        """A grouped bar chart: one group per measure, one bar per configuration (a Figure
        made through pyplot, so ``plt.show()`` shows it; in a notebook end the line with
        ``;`` or assign it, to show it once)."""
        import matplotlib.pyplot as plt

        measures = list(measures or self.measures)
        unknown = [m for m in measures if m not in self.table.columns]
        if unknown:
            raise InvalidParameterError(
                f"Unknown measures {unknown}; the table has {self.measures}."
            )
        n_conf = len(self.table)
        fig, ax = plt.subplots(
            figsize=(max(5.0, 1.1 * len(measures) * max(1, n_conf) / 2), 3.6), layout="constrained"
        )
        width = 0.8 / max(1, n_conf)
        x = np.arange(len(measures))
        for i, (name, row) in enumerate(self.table[measures].iterrows()):
            bars = ax.bar(
                x + (i - (n_conf - 1) / 2) * width, row.to_numpy(float), width, label=str(name)
            )
            ax.bar_label(bars, fmt="%.2f", fontsize=7, padding=1)
        ax.set_xticks(x, measures)
        ax.set_ylim(0, 1.08)
        ax.set_ylabel("mean over queries")
        ax.legend(title="config", fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        ax.set_title(f"{int(self.table['queries'].iloc[0])} labelled queries")
        return fig


def _labels(labels: Any) -> pd.DataFrame:
    if not isinstance(labels, pd.DataFrame) or not {"query", "relevant"} <= set(labels.columns):
        got = list(labels.columns) if isinstance(labels, pd.DataFrame) else type(labels).__name__
        raise InvalidParameterError(
            "evaluate() needs labels as a DataFrame with the columns 'query' and 'relevant' "
            "(one row per query and relevant id; optional 'grade', default 1). Got "
            f"{got}. From a column of id lists: df.explode('relevant')."
        )
    out = labels[["query", "relevant"]].copy()
    out["grade"] = labels["grade"].astype(float) if "grade" in labels.columns else 1.0
    bad = out["query"].isna() | out["relevant"].isna() | ~out["query"].map(type).eq(str)
    if bad.any():
        first = out.index[np.flatnonzero(bad.to_numpy())[0]]
        raise InvalidParameterError(
            f"labels row {first!r}: 'query' must be a text and 'relevant' an id (no missing "
            "values)."
        )
    out["relevant"] = out["relevant"].map(str)
    return out[out["grade"] > 0]


def _systems(data: Any, configs: Mapping[str, Mapping[str, Any]] | None) -> dict[str, Any]:
    """Name → callable(queries, k) returning hits, for every index x config pair."""
    if isinstance(data, (SearchIndex,)) or callable(data):
        indexes: dict[str, Any] = {"": data}
    elif isinstance(data, Mapping) and data:
        indexes = dict(data)
    else:
        raise InvalidParameterError(
            "evaluate() needs a SearchIndex, a search function (queries, k) -> hits, or a "
            f"dict of them by name. Got {type(data).__name__}."
        )
    configs = dict(configs) if configs else {"": {}}
    systems = {}
    for iname, index in indexes.items():
        for cname, options in configs.items():
            name = " / ".join(n for n in (str(iname), str(cname)) if n) or "search"
            if isinstance(index, SearchIndex):
                systems[name] = lambda qs, k, index=index, options=dict(options): index.search(
                    qs, k, **options
                )
            elif callable(index):
                if options:
                    raise InvalidParameterError(
                        f"configs= apply to SearchIndex objects; {iname!r} is a function."
                    )
                systems[name] = index
            else:
                raise InvalidParameterError(
                    f"evaluate(): {iname!r} is a {type(index).__name__}, not a SearchIndex or "
                    "a function."
                )
    return systems


def _score_query(ranked: list[str], grades: dict[str, float], ks: list[int]) -> dict[str, Any]:
    seen: set[str] = set()
    gains = []
    for rid in ranked:
        gains.append(grades.get(rid, 0.0) if rid not in seen else 0.0)
        seen.add(rid)
    gains_arr = np.asarray(gains, dtype=float)
    hit = gains_arr > 0
    discount = 1.0 / np.log2(np.arange(2, len(gains_arr) + 2))
    ideal = np.sort(np.fromiter(grades.values(), float))[::-1]
    ideal_discount = 1.0 / np.log2(np.arange(2, len(ideal) + 2))
    row: dict[str, Any] = {}
    for k in ks:
        row[f"recall@{k}"] = float(hit[:k].sum()) / len(grades)
    kmax = max(ks)
    first = int(np.argmax(hit[:kmax])) + 1 if hit[:kmax].any() else None
    row[f"mrr@{kmax}"] = 1.0 / first if first else 0.0
    for k in ks:
        dcg = float((gains_arr[:k] * discount[:k]).sum())
        idcg = float((ideal[:k] * ideal_discount[:k]).sum())
        row[f"ndcg@{k}"] = dcg / idcg if idcg > 0 else 0.0
    found = set(np.asarray(ranked[:kmax], dtype=object)[hit[:kmax]].tolist()) if ranked else set()
    row["n_relevant"] = len(grades)
    row["found"] = len(found)
    row["first_rank"] = first
    row["missed"] = sorted(set(grades) - found, key=lambda s: (len(s), s))
    return row


def evaluate(
    data: SearchIndex | SearchFn | Mapping[str, SearchIndex | SearchFn],
    labels: pd.DataFrame,
    *,
    k: int | Sequence[int] = 10,
    configs: Mapping[str, Mapping[str, Any]] | None = None,
    id_column: str = "row",
) -> Evaluation:
    """Measure search configurations on labelled queries: recall@k, MRR and nDCG@k.

    ``data`` is a :class:`SearchIndex`, a function ``(queries, k) -> hits frame`` (with
    ``query``, ``rank`` and ``id_column``), or a dict of them by name (one index per model or
    chunk size). ``configs`` maps a name to :meth:`SearchIndex.search` options (``mode``,
    ``fusion``, ``weight``, ``candidates``, ``group_by``, ``where``) and is applied to each
    index: every index x config pair is one row of the result. ``labels`` has one row per
    (``query``, ``relevant`` id) pair and an optional ``grade`` (default 1; 0 or less: not
    relevant). Hits are matched to relevant ids through ``id_column`` (default ``row``, the
    frame's index label; ``"doc"`` for passages), compared as text so 7 and "7" match.
    ``k`` is one cut-off or several (recall and nDCG are given at each; MRR at the largest).

    Returns an :class:`Evaluation`: ``.table`` (configurations side by side), ``.per_query``
    (with the relevant ids each configuration missed), ``.misses(config)`` and ``.plot()``.
    """
    ks = [k] if isinstance(k, (int, np.integer)) and not isinstance(k, bool) else list(k)
    ks = sorted({_check_int(v, "k", 1, "evaluate()") for v in ks})
    if not ks:
        raise InvalidParameterError("The 'k' parameter of evaluate() needs at least one value.")
    gold = _labels(labels)
    grades = {
        q: dict(zip(g["relevant"], g["grade"], strict=True))
        for q, g in gold.groupby("query", sort=False)
    }
    queries = list(grades)
    if not queries:
        raise InvalidParameterError("evaluate(): the labels have no relevant ids.")
    rows, table = [], []
    for name, run in _systems(data, configs).items():
        started = time.perf_counter()
        hits = run(queries, max(ks))
        elapsed = time.perf_counter() - started
        if not isinstance(hits, pd.DataFrame) or not {"query", "rank", id_column} <= set(
            hits.columns
        ):
            have = list(hits.columns) if isinstance(hits, pd.DataFrame) else type(hits).__name__
            raise InvalidParameterError(
                f"evaluate(): the hits of {name!r} need the columns 'query', 'rank' and "
                f"{id_column!r} (id_column=...). Got {have}."
            )
        hits = hits.sort_values(["rank"], kind="stable")
        ranked = {q: g[id_column].map(str).tolist() for q, g in hits.groupby("query", sort=False)}
        per = []
        for q in queries:
            row = _score_query(ranked.get(q, []), grades[q], ks)
            per.append({"config": name, "query": q, **row})
        rows.extend(per)
        frame = pd.DataFrame(per)
        summary = {c: frame[c].mean() for c in frame.columns if "@" in c}
        summary.update(
            config=name, queries=len(queries), ms_per_query=1000 * elapsed / len(queries)
        )
        table.append(summary)
    table_frame = pd.DataFrame(table).set_index("config")
    measures = [f"recall@{v}" for v in ks] + [f"mrr@{max(ks)}"] + [f"ndcg@{v}" for v in ks]
    table_frame = table_frame[[*measures, "queries", "ms_per_query"]]
    per_query = pd.DataFrame(rows)
    per_query["first_rank"] = per_query["first_rank"].astype("Int64")
    per_query["query"] = per_query["query"].astype("string")
    return Evaluation(table_frame, per_query, ks)
