"""Property tests: messy columns under the emulator's faults never misalign a row.

Row i of the result is either the emulator's vector for row i's text (or the length-weighted
mean of its pieces, for chunked rows) or NaN with a status that says why: whatever mix of
NaN/None/empty/duplicate/unicode/non-string values, batch sizes, cache state and shuffled,
short or wrong-dimension answers.
"""

from __future__ import annotations

import math
import tempfile

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import deapi_ds
from deapi_ds.embeddings import _combine, _split_pieces, estimate_tokens
from deapi_ds.emulator import embed_texts

MAX_TOKENS = 30  # small per-input limit so that long texts are chunked or truncated
POOL = ["the cat", "the cat", "ünïcödé ✓ 🎉", "中文文本", "e\u0301", "a  b\tc", "x" * 3]
LONG = ["alpha beta gamma delta epsilon " * 8, "日本語のテキスト " * 12]

values = st.one_of(
    st.none(),
    st.just(math.nan),
    st.sampled_from(["", "   ", "\n\t", "\u3000"]),
    st.sampled_from(POOL),  # duplicates across rows
    st.sampled_from(LONG),
    st.text(max_size=25),  # any unicode (hypothesis leaves out lone surrogates)
    st.integers(-5, 5),
    st.floats(allow_nan=False, width=32),
    st.booleans(),
)
# scripted answers, one per request in order; two faults in a row fail a batch (one re-ask)
faults = st.lists(st.sampled_from([None, "shuffle", "short", "short", "wrongdim"]), max_size=8)


def expected_text(value, convert):
    """The text the row should be embedded from, or None (no vector expected)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if not isinstance(value, str):
        if not convert:
            return None
        value = str(value)
    return value if value.strip() else None


def expected_vector(text, on_long):
    if estimate_tokens(text) <= MAX_TOKENS:
        return embed_texts([text])[0]
    assert on_long == "chunk"  # the tests below use chunk whenever texts may be long
    pieces = _split_pieces(text, MAX_TOKENS)
    return _combine(embed_texts(pieces), [len(p) for p in pieces])


def check(res, column, convert, on_long, faulty):
    assert res.matrix.shape == (len(column), 1024)
    assert res.matrix.dtype == np.float32 and res.matrix.flags.c_contiguous
    assert res.frame.index.equals(column.index)
    for i, value in enumerate(column.tolist()):
        status = res.status.iloc[i]
        text = expected_text(value, convert)
        row = res.matrix[i]
        if text is None:
            assert np.isnan(row).all(), (i, value, status)
            if value is None or (
                isinstance(value, (float, str)) and expected_text(value, True) is None
            ):
                assert status == "empty", (i, value, status)
            else:
                assert status == "error" and "convert=True" in res.frame["error"].iloc[i]
            continue
        if status == "error":
            assert faulty, (i, value, res.frame["error"].iloc[i])  # only a fault may fail a row
            assert np.isnan(row).all() and res.frame["error"].iloc[i]
            continue
        assert status in ("ok", "cached"), (i, value, status)
        np.testing.assert_allclose(row, expected_vector(text, on_long), rtol=1e-5, atol=1e-6)
    counts = res.status.value_counts()
    assert res.usage["error_rows"] == counts.get("error", 0)
    assert res.usage["empty_rows"] == counts.get("empty", 0)
    assert res.usage["cached_rows"] == counts.get("cached", 0)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    items=st.lists(values, min_size=1, max_size=30),
    script=faults,
    persistent_shuffle=st.booleans(),
    drop_items=st.sampled_from([0, 0, 0, 1]),  # 1: every answer is one vector short
    max_inputs=st.integers(1, 6),
    convert=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_messy_columns_never_misalign(
    emulator, items, script, persistent_shuffle, drop_items, max_inputs, convert, seed
):
    labels = np.random.default_rng(seed).permutation(len(items)) * 7 + 3  # shuffled labels
    column = pd.Series(items, index=labels, dtype=object)
    with tempfile.TemporaryDirectory() as cache_dir:
        cache = cache_dir  # a fresh cache folder for each example
        emulator.configure(
            "embeddings", script=script, shuffle_index=persistent_shuffle, drop_items=drop_items
        )
        # one re-ask of missing inputs (at once); a call whose every row failed raises
        # BatchError with the partial result, which must be aligned all the same
        try:
            with deapi_ds.config_context(max_retries=1):
                first = deapi_ds.embed(
                    column,
                    convert=convert,
                    on_long="chunk",
                    max_input_tokens=MAX_TOKENS,
                    max_inputs=max_inputs,
                    cache=cache,
                )
        except deapi_ds.BatchError as exc:
            first = exc.partial
        check(first, column, convert, "chunk", faulty=bool(script) or bool(drop_items))
        # a rerun over the same cache (no faults now): every row that had a vector is cached,
        # every row that failed is sent again and now succeeds; nothing moves
        emulator.configure("embeddings", script=[], shuffle_index=persistent_shuffle, drop_items=0)
        second = deapi_ds.embed(
            column,
            convert=convert,
            on_long="chunk",
            max_input_tokens=MAX_TOKENS,
            max_inputs=max_inputs,
            cache=cache,
        )
        check(second, column, convert, "chunk", faulty=False)
        was_ok = first.status.isin(["ok", "cached"]).to_numpy()
        assert second.status[was_ok].eq("cached").all()
        np.testing.assert_array_equal(second.matrix[was_ok], first.matrix[was_ok])
