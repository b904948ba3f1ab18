"""chunk(): passages at sentence and paragraph ends, offsets, overlap, budgets."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deapi_ds._exceptions import InvalidParameterError
from deapi_ds.embeddings import estimate_tokens
from deapi_ds.search import chunk


def check(docs, passages, max_tokens):
    """Every passage is its document's slice, within budget unless it is one long word."""
    for row in passages.itertuples():
        source = docs[row.doc]
        assert source[row.start : row.end] == row.text
        assert row.text == row.text.strip() and row.text
        assert row.tokens == estimate_tokens(row.text) or not row.text.isascii()
        assert row.tokens <= max_tokens or " " not in row.text


def test_cuts_at_sentence_ends_and_prefers_paragraphs():
    text = (
        "First sentence is here. Second sentence follows it!\n\n"
        "A new paragraph starts (with a quote.) Then another sentence? Yes.\n"
        "Same paragraph after one newline."
    )
    out = chunk([text], max_tokens=30)
    assert list(out.columns) == ["doc", "passage", "start", "end", "text", "tokens"]
    assert out["passage"].tolist() == list(range(len(out)))
    # the first passage stops at the paragraph end although more of the next would fit
    assert out["text"].iloc[0] == "First sentence is here. Second sentence follows it!"
    assert all(t[-1] in ".!?)" for t in out["text"])
    check([text], out, 30)
    whole = chunk([text], max_tokens=1000)
    assert len(whole) == 1 and whole["text"].iloc[0] == text


def test_long_sentence_and_long_word_and_overlap():
    long_sentence = " ".join(["word"] * 200) + "."
    out = chunk([long_sentence], max_tokens=50)
    assert len(out) > 4 and (out["tokens"] <= 50).all()
    check([long_sentence], out, 50)
    url = "x" * 500
    out = chunk([f"See {url} now."], max_tokens=20)
    assert url in out["text"].tolist()  # a passage of its own, over the budget
    sentences = " ".join(f"Sentence {i} is short." for i in range(40))
    plain = chunk([sentences], max_tokens=40)
    overlapping = chunk([sentences], max_tokens=40, overlap=12)
    assert len(overlapping) > len(plain)
    check([sentences], overlapping, 40)
    starts, ends = overlapping["start"].to_numpy(), overlapping["end"].to_numpy()
    assert (starts[1:] < ends[:-1]).all()  # each passage repeats the end of the previous
    assert (starts[1:] > starts[:-1]).all() and (ends[1:] > ends[:-1]).all()
    # the repeated part is whole sentences
    assert all(t.startswith("Sentence") for t in overlapping["text"])


def test_inputs_labels_missing_rows_and_keep():
    df = pd.DataFrame(
        {"body": ["One. Two.", None, "   ", 7, "Three."], "topic": list("abcde")},
        index=[10, 20, 30, 40, 50],
    )
    out = chunk(df, "body", max_tokens=5, keep=["topic"])
    assert out["doc"].tolist() == [10, 10, 50]
    assert out["topic"].tolist() == ["a", "a", "e"]
    assert out["text"].dtype == "string"
    assert chunk(pd.Series(["A b."], index=["x"]))["doc"].tolist() == ["x"]
    empty = chunk([None, ""])
    assert empty.empty and list(empty.columns) == [
        "doc",
        "passage",
        "start",
        "end",
        "text",
        "tokens",
    ]
    with pytest.raises(InvalidParameterError, match="overlap"):
        chunk(["a"], max_tokens=10, overlap=10)
    with pytest.raises(InvalidParameterError, match="max_tokens"):
        chunk(["a"], max_tokens=0)
    with pytest.raises(InvalidParameterError, match="Column 'nope' not found"):
        chunk(df, "nope")
    with pytest.raises(InvalidParameterError, match=r"Columns \['x'\] not found"):
        chunk(df, "body", keep=["x"])


def test_unicode_offsets_are_characters():
    text = "Ünïcödé wörds — “quoted.” 日本語の文です。次の文！ Emoji 🚀 rocket. " * 5
    out = chunk([text], max_tokens=25)
    check([text], out, 25)
    assert len(out) > 1


def test_many_documents_span_batches(monkeypatch):
    from deapi_ds.search import _passages

    monkeypatch.setattr(_passages, "_BATCH_CHARS", 200)
    docs = [f"Document {i} says hello. It has two sentences." for i in range(100)]
    out = chunk(docs, max_tokens=16)
    assert out["doc"].nunique() == 100 and out.groupby("doc").size().eq(2).all()
    check(docs, out, 16)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.text(alphabet=st.sampled_from(list("ab .!?\n\"')é日")), min_size=0, max_size=300),
        max_size=5,
    ),
    st.integers(1, 40),
    st.integers(0, 39),
)
def test_passages_cover_the_text_in_order(docs, max_tokens, overlap):
    overlap = min(overlap, max_tokens - 1)
    out = chunk(docs, max_tokens=max_tokens, overlap=overlap)
    check(docs, out, max_tokens)
    for doc, group in out.groupby("doc"):
        text = docs[doc]
        starts, ends = group["start"].to_numpy(), group["end"].to_numpy()
        assert (np.diff(starts) > 0).all() and (np.diff(ends) > 0).all()
        # no word of the document is left out: the gaps between passages are whitespace
        covered = np.zeros(len(text), dtype=bool)
        for s, e in zip(starts, ends, strict=True):
            covered[s:e] = True
        assert all(c.isspace() for c, cov in zip(text, covered, strict=True) if not cov)
    assert set(out["doc"]) == {i for i, t in enumerate(docs) if t.strip()}
