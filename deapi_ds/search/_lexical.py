"""Lexical search: a BM25 index in numpy (an inverted index of precomputed term weights).

Why numpy rather than ``bm25s`` or scikit-learn: no new dependency (scipy is not one of
deapi_ds's), the index is a few flat arrays saved as ``.npy`` files (no pickle), and the
``where=`` row mask of :class:`~deapi_ds.search.SearchIndex` is applied in the same numpy step
as the scores. The scoring is Lucene's BM25 (the default variant of ``bm25s``)::

    idf(t) = ln(1 + (N - df(t) + 0.5) / (df(t) + 0.5))
    w(t, d) = idf(t) * tf * (k1 + 1) / (tf + k1 * (1 - b + b * len(d) / avg_len))

and a query's score for a document is the sum of ``w(t, d)`` over the query's words. Words are
``\\w+`` runs, lower-cased (any script; no stemming, no stop words: idf already makes common
words cheap).

>>> bm25 = BM25(["the cat sat", "a dog barked", "cat and dog"])
>>> idx, scores = bm25.top_k(["cat"], k=5)
>>> idx.tolist()
[[0, 2, -1, -1, -1]]
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from deapi_ds._exceptions import InvalidParameterError

__all__ = ["BM25", "tokenize"]

_WORD = re.compile(r"\w+")
_FORMAT = 1

#: A few English function words, left out of cluster labels (not out of the BM25 index).
STOP_WORDS = frozenset(
    """a about after all also an and any are as at be been but by can could did do does for
    from had has have he her his how i if in into is it its just me more most my no not of on
    one only or other our out over said she so some such than that the their them then there
    these they this to up us was we were what when where which who will with would you your""".split()
)


def tokenize(text: Any) -> list[str]:
    """The words of ``text`` as the lexical index sees them (lower-cased ``\\w+`` runs).

    >>> tokenize("Rocket-launch at 9:30!")
    ['rocket', 'launch', 'at', '9', '30']
    """
    return _WORD.findall(text.lower()) if isinstance(text, str) else []


class BM25:
    """A BM25 index over ``texts`` (missing or non-string texts have no words).

    ``top_k(queries, k, mask=...)`` gives the ``k`` best documents per query; documents that
    share no word with a query are never returned. Built in batches of ``batch`` texts, so the
    transient memory is one batch's words; the index holds one int32 document id and one
    float32 weight per distinct (word, document) pair.
    """

    def __init__(
        self, texts: Sequence[Any], *, k1: float = 1.5, b: float = 0.75, batch: int = 50_000
    ) -> None:
        if not (k1 >= 0 and 0 <= b <= 1):
            raise InvalidParameterError(
                f"BM25 needs k1 >= 0 and 0 <= b <= 1. Got k1={k1!r}, b={b!r}."
            )
        self.k1, self.b = float(k1), float(b)
        n = len(texts)
        vocab: dict[str, int] = {}
        lengths = np.zeros(n, dtype=np.int32)
        terms, docs, tfs = [], [], []
        for s in range(0, n, batch):
            ids: list[int] = []
            lens = []
            for text in texts[s : s + batch]:
                words = _WORD.findall(text.lower()) if isinstance(text, str) else []
                ids.extend([vocab.setdefault(w, len(vocab)) for w in words])
                lens.append(len(words))
            m = len(lens)
            lens_arr = np.asarray(lens, dtype=np.int64)
            lengths[s : s + m] = lens_arr
            key = np.asarray(ids, dtype=np.int64) * m + np.repeat(np.arange(m), lens_arr)
            uniq, counts = np.unique(key, return_counts=True)  # sorted by word, then doc
            terms.append((uniq // m).astype(np.int32))
            docs.append((uniq % m + s).astype(np.int32))
            tfs.append(counts.astype(np.float32))
        term = np.concatenate(terms) if terms else np.zeros(0, np.int32)
        order = np.argsort(term, kind="stable")  # by word; docs stay ascending within a word
        self.vocab = vocab
        self.lengths = lengths
        self.docs = np.concatenate(docs)[order] if docs else np.zeros(0, np.int32)
        tf = np.concatenate(tfs)[order] if tfs else np.zeros(0, np.float32)
        df = np.bincount(term, minlength=len(vocab))
        self.indptr = np.concatenate([[0], np.cumsum(df)]).astype(np.int64)
        self.weights = self._weights(tf, df)

    def _weights(self, tf: np.ndarray, df: np.ndarray) -> np.ndarray:
        n = len(self.lengths)
        avg = float(self.lengths.mean()) if n and self.lengths.any() else 1.0
        idf = np.log1p((n - df + 0.5) / (df + 0.5)).astype(np.float32)
        norm = self.k1 * (1 - self.b + self.b * self.lengths[self.docs] / avg)
        return (np.repeat(idf, df) * tf * (self.k1 + 1) / (tf + norm)).astype(np.float32)

    def __len__(self) -> int:
        return len(self.lengths)

    def __repr__(self) -> str:
        return (
            f"BM25({len(self):,} documents, {len(self.vocab):,} words, "
            f"k1={self.k1:g}, b={self.b:g})"
        )

    def scores(self, query: str) -> tuple[np.ndarray, np.ndarray]:
        """(documents, scores) of every document sharing a word with ``query``, unsorted."""
        counts: dict[int, int] = {}
        for word in tokenize(query):
            t = self.vocab.get(word)
            if t is not None:
                counts[t] = counts.get(t, 0) + 1
        if not counts:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        spans = [(self.indptr[t], self.indptr[t + 1], q) for t, q in counts.items()]
        total = sum(int(e - s) for s, e, _ in spans)
        if len(spans) == 1:
            s, e, q = spans[0]
            return self.docs[s:e].astype(np.int64), self.weights[s:e] * np.float32(q)
        if total < len(self) // 8:  # few postings: sort them rather than touch every document
            d = np.concatenate([self.docs[s:e] for s, e, _ in spans])
            w = np.concatenate([self.weights[s:e] * np.float32(q) for s, e, q in spans])
            uniq, inverse = np.unique(d, return_inverse=True)
            return uniq.astype(np.int64), np.bincount(inverse, weights=w).astype(np.float32)
        acc = np.zeros(len(self), dtype=np.float32)
        for s, e, q in spans:
            acc[self.docs[s:e]] += self.weights[s:e] * np.float32(q)  # one word: no repeats
        found = np.flatnonzero(acc)
        return found, acc[found]

    def top_k(
        self, queries: Sequence[str], k: int = 10, *, mask: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(indices, scores)`` of shape (queries, k), padded with -1 / NaN like ``top_k``."""
        idx = np.full((len(queries), k), -1, dtype=np.int64)
        out = np.full((len(queries), k), np.nan, dtype=np.float32)
        for i, query in enumerate(queries):
            docs, scores = self.scores(query)
            if mask is not None and docs.size:
                keep = mask[docs]
                docs, scores = docs[keep], scores[keep]
            if docs.size > k:
                part = np.argpartition(scores, docs.size - k)[docs.size - k :]
                kth = scores[part].min()
                part = np.flatnonzero(scores >= kth)  # every tie of the k-th best
                docs, scores = docs[part], scores[part]
            order = np.lexsort((docs, -scores))[:k]
            idx[i, : order.size] = docs[order]
            out[i, : order.size] = scores[order]
        return idx, out

    # -- files

    def save(self, folder: str | Path) -> None:
        """Write the index to ``folder`` (``.npy`` arrays, a word list, a JSON header)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for name in ("lengths", "docs", "indptr", "weights"):
            np.save(folder / f"{name}.npy", getattr(self, name), allow_pickle=False)
        words = sorted(self.vocab, key=self.vocab.__getitem__)
        (folder / "vocab.txt").write_text("\n".join(words), encoding="utf-8")
        header = {"format": _FORMAT, "k1": self.k1, "b": self.b, "words": len(words)}
        (folder / "bm25.json").write_text(json.dumps(header))

    @classmethod
    def load(cls, folder: str | Path) -> BM25:
        """An index written by :meth:`save` (no code is run: arrays load without pickle)."""
        folder = Path(folder)
        header = json.loads((folder / "bm25.json").read_text())
        if header.get("format") != _FORMAT:
            raise InvalidParameterError(
                f"{folder}: lexical index format {header.get('format')!r} is not {_FORMAT}; "
                "rebuild the index with this version of deapi_ds."
            )
        self = cls.__new__(cls)
        self.k1, self.b = float(header["k1"]), float(header["b"])
        for name in ("lengths", "docs", "indptr", "weights"):
            setattr(self, name, np.load(folder / f"{name}.npy", allow_pickle=False))
        text = (folder / "vocab.txt").read_text(encoding="utf-8")
        words = text.split("\n") if text else []
        if len(words) != header["words"] or len(self.indptr) != len(words) + 1:
            raise InvalidParameterError(
                f"{folder}: the word list has {len(words)} words but the index expects "
                f"{header['words']}; the files are from different indexes or damaged."
            )
        self.vocab = {w: i for i, w in enumerate(words)}
        return self
