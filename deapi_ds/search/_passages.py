"""Passages: cut documents into pieces that fit a token budget, at sentence and paragraph ends.

The work is done in numpy on the texts' code points (many documents at once), so cutting runs
at tens of MB of text per second on one core. Token counts use the same conservative
estimate as :func:`deapi_ds.embeddings.estimate_tokens` (``ceil(utf8 bytes / 3)`` plus one per
word and per punctuation mark), so a passage of ``max_tokens`` fits an embeddings request
whose limit is ``max_tokens``.

>>> import pandas as pd
>>> docs = pd.DataFrame({"text": ["One. Two two. Three three three.", "Short."]}, index=["a", "b"])
>>> chunk(docs, "text", max_tokens=10)[["doc", "passage", "start", "end", "text", "tokens"]]
  doc  passage  start  end                text  tokens
0   a        0      0   13       One. Two two.      10
1   a        1     14   32  Three three three.      10
2   b        0      0    6              Short.       4
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from deapi_ds._exceptions import InvalidParameterError
from deapi_ds._pipeline import as_series

from ._dense import _check_int

__all__ = ["chunk"]

#: Characters per batch of documents (the batch's code points take 4 bytes each).
_BATCH_CHARS = 4_000_000
_SENTENCE_END = np.array([ord(c) for c in ".!?…。！？"], dtype=np.uint32)
_BLANK_LINE = re.compile(r"\n[^\S\n]*\n")
_CLOSERS = np.array([ord(c) for c in "\"')]}»”’"], dtype=np.uint32)
_SPACES = np.array(
    [0x85, 0xA0, 0x1680, *range(0x2000, 0x200B), 0x2028, 0x2029, 0x202F, 0x205F, 0x3000],
    dtype=np.uint32,
)


def _classes() -> np.ndarray:
    """Class of each ASCII code: 0 space, 1 word (``\\w``), 2 punctuation (its own piece)."""
    lut = np.full(128, 2, dtype=np.uint8)
    lut[[9, 10, 11, 12, 13, 28, 29, 30, 31, 32]] = 0
    for lo, hi in ((48, 57), (65, 90), (97, 122), (95, 95)):
        lut[lo : hi + 1] = 1
    return lut


_ASCII_CLASS = _classes()


def _char_classes(codes: np.ndarray) -> np.ndarray:
    """0 space, 1 word, 2 punctuation for every code point. Beyond ASCII: Unicode spaces,
    common punctuation blocks as punctuation, everything else (letters of any script, CJK)
    as word characters, as ``\\w`` would have it."""
    if codes.dtype == np.uint8:
        return _ASCII_CLASS[codes]
    out = np.ones(codes.size, dtype=np.uint8)
    low = codes < 128
    out[low] = _ASCII_CLASS[codes[low]]
    high = np.flatnonzero(~low)
    if high.size:
        c = codes[high]
        punct = (
            ((c >= 0xA1) & (c <= 0xBF))
            | (c == 0xD7)
            | (c == 0xF7)
            | ((c >= 0x2000) & (c <= 0x206F))
            | ((c >= 0x3000) & (c <= 0x303F))
            | ((c >= 0xFF01) & (c <= 0xFF0F))
            | ((c >= 0xFF1A) & (c <= 0xFF20))
        )
        out[high[punct]] = 2
        out[high[np.isin(c, _SPACES)]] = 0
    return out


class _Batch:
    """Token boundaries and cumulative costs of a batch of documents joined by newlines."""

    def __init__(self, texts: list[str]) -> None:
        lengths = np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts))
        self.doc_start = np.concatenate([[0], np.cumsum(lengths + 1)[:-1]])
        self.text = "\n".join(texts)
        try:  # ASCII (most text): one byte per character
            codes = np.frombuffer(self.text.encode("ascii"), dtype=np.uint8)
        except UnicodeEncodeError:
            raw = self.text.encode("utf-32-le", "surrogatepass")
            codes = np.frombuffer(raw, dtype=np.uint32)
        cls = _char_classes(codes)
        solid = cls != 0
        word = cls == 1
        piece = cls == 2
        piece[1:] |= word[1:] & ~word[:-1]
        if codes.size:
            piece[0] |= word[0]
        starts = np.flatnonzero(solid[1:] & ~solid[:-1]) + 1
        ends = np.flatnonzero(solid[:-1] & ~solid[1:]) + 1
        if codes.size and solid[0]:
            starts = np.concatenate([[0], starts])
        if codes.size and solid[-1]:
            ends = np.concatenate([ends, [codes.size]])
        self.starts, self.ends = starts, ends
        # cost units before a character (utf-8 bytes + 3 per piece); tokens = ceil(units / 3)
        pieces = np.zeros(codes.size + 1, dtype=np.int32)
        np.cumsum(piece, dtype=np.int32, out=pieces[1:])
        self.S = starts + 3 * pieces[starts].astype(np.int64)
        self.E = ends + 3 * pieces[ends].astype(np.int64)
        if codes.dtype != np.uint8:
            extra = (codes >= 0x80).astype(np.int32) + (codes >= 0x800) + (codes >= 0x10000)
            more = np.zeros(codes.size + 1, dtype=np.int64)
            np.cumsum(extra, out=more[1:])
            self.S += more[starts]
            self.E += more[ends]
        self.tok_doc = np.searchsorted(self.doc_start, self.starts, side="right") - 1
        last = codes[self.ends - 1].astype(np.uint32)
        before = codes[np.maximum(self.ends - 2, 0)].astype(np.uint32)
        sentence = np.isin(last, _SENTENCE_END) | (
            np.isin(last, _CLOSERS)
            & np.isin(before, _SENTENCE_END)
            & (self.ends - 2 >= self.starts)
        )
        paragraph = np.zeros(self.starts.size, dtype=bool)
        gaps = [m.end() for m in _BLANK_LINE.finditer(self.text)]
        if gaps:  # the token before each blank line ends a paragraph
            before = np.searchsorted(self.starts, np.asarray(gaps), side="left") - 1
            paragraph[before[before >= 0]] = True
        doc_end = np.ones(self.starts.size, dtype=bool)
        doc_end[:-1] = self.tok_doc[1:] != self.tok_doc[:-1]
        self.paragraph = paragraph | doc_end
        self.brk = sentence | self.paragraph


class _Plan:
    """Per-token lookups that make each greedy step a few array reads (numpy arrays read
    element by element: the greedy visits a few tokens per passage, far fewer than a
    ``tolist()`` of every token would convert).

    ``reach[i]``: the last token a passage starting at token i can end with (budget);
    ``last_break[i]`` / ``last_para[i]``: the last sentence / paragraph end at or before i
    (-1 if none); ``next_start[i]``: the first sentence start at or after i; ``back[c]``: the
    first token whose start is within the overlap of a passage ending before token c.
    """

    def __init__(self, b: _Batch, budget: int, overlap: int) -> None:
        n = b.starts.size
        tokens = np.arange(n)
        self.reach = np.searchsorted(b.E, b.S + budget, side="right") - 1
        self.last_break = np.maximum.accumulate(np.where(b.brk, tokens, -1))
        self.last_para = np.maximum.accumulate(np.where(b.paragraph, tokens, -1))
        self.E, self.S = b.E, b.S
        if overlap:
            is_start = np.ones(n + 1, dtype=bool)
            is_start[1:n] = b.brk[:-1]
            marks = np.where(is_start, np.arange(n + 1), n + 1)
            self.next_start = np.minimum.accumulate(marks[::-1])[::-1]
            back = np.zeros(n + 1, dtype=np.int64)
            back[1:] = np.searchsorted(b.S, b.E - overlap, side="left")
            self.back = back


def _cuts(p: _Plan, first: int, stop: int, budget: int, overlap: int) -> list[tuple[int, int]]:
    """Token ranges [a, c) of one long document (tokens first..stop-1), greedy by budget."""
    E, S, reach, last_break, last_para = p.E, p.S, p.reach, p.last_break, p.last_para
    half = budget // 2
    out: list[tuple[int, int]] = []
    a = prev_cut = first
    while a < stop:
        j = min(int(reach[a]), stop - 1)
        if j < a:
            j = a  # one "word" over the budget (a URL, a hash): a passage of its own
        sentence_cut = True
        if j == stop - 1:
            cut = stop
        else:
            brk = int(last_break[j])
            if brk >= a:
                cut = brk + 1
                para = int(last_para[j])
                if para >= a and E[para] - S[a] >= half:
                    cut = para + 1  # a paragraph end keeping at least half the budget
            else:
                cut, sentence_cut = j + 1, False  # no sentence end fits: cut between words
        if cut <= prev_cut:  # the overlap would repeat a passage without adding to it
            a = prev_cut
            continue
        out.append((a, cut))
        prev_cut = cut
        if cut >= stop or not overlap:
            a = cut
            continue
        back = max(int(p.back[cut]), a + 1)
        nxt = int(p.next_start[back]) if sentence_cut else back
        a = nxt if nxt < cut else cut
    return out


def chunk(
    data: Any,
    column: Any = None,
    *,
    max_tokens: int = 256,
    overlap: int = 0,
    keep: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Cut each document of ``data[column]`` into passages of at most ``max_tokens`` tokens.

    ``data`` is a DataFrame with ``column`` (default ``"text"``), a Series or a list of
    texts. Passages end at sentence ends (``. ! ? …``, also before a closing quote or
    bracket) and prefer paragraph ends (a blank line) when one keeps at least half the budget;
    a sentence longer than the budget is cut between words, and a single longer "word"
    becomes a passage of its own. ``overlap`` (tokens) repeats the last whole sentences of a
    passage that fit in it at the start of the next. Missing, non-string and blank texts have
    no passages. Tokens are the conservative estimate of
    :func:`deapi_ds.embeddings.estimate_tokens`.

    Returns one row per passage: ``doc`` (the input row's index label), ``passage`` (0, 1,
    ... within the document), ``start`` and ``end`` (character offsets into the document:
    ``text == document[start:end]``, for highlighting), ``text``, ``tokens``, then the
    ``keep`` columns of a DataFrame ``data``. Index it with
    ``deapi_ds.embed(passages, "text").search_index(passages, text_column="text")`` and search
    with ``group_by="doc"`` for the best passage of each document.
    """
    where = "chunk()"
    max_tokens = _check_int(max_tokens, "max_tokens", 1, where)
    overlap = _check_int(overlap, "overlap", 0, where)
    if overlap >= max_tokens:
        raise InvalidParameterError(
            f"The 'overlap' parameter of chunk() must be smaller than max_tokens "
            f"({max_tokens}). Got {overlap}."
        )
    series = as_series(data, column, func="chunk", what="texts", default_column="text")
    keep = list(keep or [])
    if keep:
        if not isinstance(data, pd.DataFrame):
            raise InvalidParameterError("chunk(keep=...) needs a DataFrame as data.")
        missing = [c for c in keep if c not in data.columns]
        if missing:
            raise InvalidParameterError(
                f"Columns {missing} not found (keep=...). Available columns: {list(data.columns)}."
            )
    values = series.to_numpy(dtype=object)
    is_text = np.fromiter((isinstance(v, str) for v in values), dtype=bool, count=len(values))
    positions = np.flatnonzero(is_text)
    budget, overlap_units = 3 * max_tokens, 3 * overlap
    pos_out: list[np.ndarray] = []
    num_out: list[np.ndarray] = []
    start_out: list[np.ndarray] = []
    end_out: list[np.ndarray] = []
    tok_out: list[np.ndarray] = []
    text_out: list[str] = []
    sizes = np.cumsum([len(values[p]) + 1 for p in positions.tolist()], dtype=np.int64)
    lo = 0
    while lo < positions.size:
        done = int(sizes[lo - 1]) if lo else 0
        hi = max(lo + 1, int(np.searchsorted(sizes, done + _BATCH_CHARS, side="right")))
        batch_pos = positions[lo:hi]
        texts = [values[p] for p in batch_pos.tolist()]
        _passages(
            texts,
            batch_pos,
            budget,
            overlap_units,
            (pos_out, num_out, start_out, end_out, tok_out, text_out),
        )
        lo = hi
    pos = np.concatenate(pos_out) if pos_out else np.zeros(0, np.int64)
    out = pd.DataFrame(
        {
            "doc": series.index[pos],
            "passage": np.concatenate(num_out) if num_out else np.zeros(0, np.int64),
            "start": np.concatenate(start_out) if start_out else np.zeros(0, np.int64),
            "end": np.concatenate(end_out) if end_out else np.zeros(0, np.int64),
            "text": pd.array(text_out, dtype="string"),
            "tokens": np.concatenate(tok_out) if tok_out else np.zeros(0, np.int64),
        }
    )
    for name in keep:
        out[name] = data[name].iloc[pos].to_numpy()
    return out


def _passages(
    texts: list[str], batch_pos: np.ndarray, budget: int, overlap: int, outputs: tuple
) -> None:
    """Cut one batch of documents; appends, in document order, to the output lists."""
    pos_out, num_out, start_out, end_out, tok_out, text_out = outputs
    b = _Batch(texts)
    if b.starts.size == 0:
        return
    docs, first = np.unique(b.tok_doc, return_index=True)
    stop = np.concatenate([first[1:], [b.starts.size]])
    whole = b.E[stop - 1] - b.S[first] <= budget
    ranges: list[tuple[int, int, int]] = []  # (doc, first token, stop token)
    plan = None if whole.all() else _Plan(b, budget, overlap)
    for d, f, s, w in zip(
        docs.tolist(), first.tolist(), stop.tolist(), whole.tolist(), strict=True
    ):
        if w:
            ranges.append((d, f, s))
        else:
            ranges.extend((d, a, c) for a, c in _cuts(plan, f, s, budget, overlap))
    arr = np.asarray(ranges, dtype=np.int64).reshape(-1, 3)
    d, a, c = arr[:, 0], arr[:, 1], arr[:, 2]
    char_a, char_c = b.starts[a], b.ends[c - 1]
    offset = b.doc_start[d]
    new_doc = np.concatenate([[True], d[1:] != d[:-1]])
    group_start = np.maximum.accumulate(np.where(new_doc, np.arange(d.size), 0))
    pos_out.append(batch_pos[d])
    num_out.append(np.arange(d.size) - group_start)
    start_out.append(char_a - offset)
    end_out.append(char_c - offset)
    tok_out.append(-(-(b.E[c - 1] - b.S[a]) // 3))
    text = b.text
    text_out.extend(text[x:y] for x, y in zip(char_a.tolist(), char_c.tolist(), strict=True))
