"""Search prototyping over embedded frames: passages, dense/lexical/hybrid search, evaluation,
clusters and maps, near-duplicates.

* :func:`chunk` cuts documents into passages at sentence and paragraph boundaries.
* :class:`SearchIndex` searches a frame by its vectors (exact cosine top-k, memory bounded by
  a chunk), by BM25 over a text column, or both fused (``mode="dense" | "lexical" |
  "hybrid"``), with ``where=`` filters; it saves to and loads from a folder.
* :func:`search` is the one-call form: ``deapi_ds.search(df, "query")``. This module is itself
  callable as that function, so ``import deapi_ds.search`` gives the module and
  ``deapi_ds.search(df, "query")`` still searches.
* :func:`evaluate` measures recall@k, MRR and nDCG@k of several configurations on labelled
  queries.
* :func:`cluster` groups rows (k-means, HDBSCAN) and labels each group by its distinctive
  words; :func:`project` maps vectors to 2-D (PCA, UMAP) for :func:`plot_map` /
  :func:`scatter_map`.
* :func:`near_duplicates` finds pairs above a cosine threshold; :func:`duplicate_groups`
  joins them into groups.
* :func:`top_k` and :func:`as_matrix` are the numpy building blocks.
"""

from __future__ import annotations

import inspect
import sys
import types
from typing import Any

from ._clusters import Clusters, ScatterMap, cluster, plot_map, project, scatter_map
from ._dense import as_matrix, top_k
from ._duplicates import duplicate_groups, near_duplicates
from ._evaluate import Evaluation, evaluate
from ._index import SearchIndex, default_embedder, search
from ._lexical import BM25, tokenize
from ._passages import chunk

__all__ = [
    "BM25",
    "Clusters",
    "Evaluation",
    "ScatterMap",
    "SearchIndex",
    "as_matrix",
    "chunk",
    "cluster",
    "default_embedder",
    "duplicate_groups",
    "evaluate",
    "near_duplicates",
    "plot_map",
    "project",
    "scatter_map",
    "search",
    "tokenize",
    "top_k",
]


class _CallableModule(types.ModuleType):
    """``deapi_ds.search`` is this module, and calling it calls :func:`search`."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return search(*args, **kwargs)


__signature__ = inspect.signature(search)
sys.modules[__name__].__class__ = _CallableModule
