"""Bounded speech memory (issue 15, item 6) and leaving the emulator safely (issue 14, item 11).

- ``speak`` joins a long text's parts in memory (~10 KB of decoded audio per character): a
  1 MB text tried to allocate ~9.6 GiB after paying for ~250 requests. A text longer than
  ``MAX_TEXT_CHARS`` is now an error row, refused before anything is sent; the other rows go on.
- ``use_emulator()`` is undone by ``emu.close()`` or its ``with`` form, which put back every
  option it changed (the rate-limit tier included) as it was before.
"""

from __future__ import annotations

import time

import pytest

import deapi_ds
from deapi_ds import speech
from deapi_ds._config import get_config


def test_a_megabyte_of_text_is_an_error_row_before_anything_is_sent(emulator):
    huge = "This is a sentence of moderate length. " * 26_000  # ~1 MB
    started = time.monotonic()
    out = deapi_ds.speak([huge, "Hello there."], cache=None)
    assert time.monotonic() - started < 10
    assert out["status"].tolist() == ["error", "ok"]
    error = out["error"].iloc[0]
    assert f"{len(huge):,} characters" in error and f"{speech.MAX_TEXT_CHARS:,}" in error
    assert "Split it into several rows" in error and "Nothing was sent" in error
    assert out["error_type"].iloc[0] == "InvalidInput"
    assert out["audio"].iloc[0] is None and out["audio"].iloc[1] is not None
    stats = emulator.stats("audio.speech")
    assert stats["requests"] == 1 and stats["characters"] == len("Hello there.")


def test_the_estimate_shows_the_refusal_and_bills_nothing_for_it(emulator):
    huge = "word " * (speech.MAX_TEXT_CHARS // 5 + 1)
    est = speech.estimate_speak([huge, "Short text."], cache=None)
    assert est.details["status"].tolist() == ["error", "pending"]
    assert est.errors == 1
    assert est.quantity == len("Short text.") and est.requests == 1


def test_a_text_at_the_limit_is_still_planned(emulator):
    text = ("Sentence number one is here. " * 2000)[: speech.MAX_TEXT_CHARS]
    est = speech.estimate_speak([text], cache=None)
    assert est.details["status"].tolist() == ["pending"] and est.details["parts"].iloc[0] > 1


# ----------------------------------------------------------------------- leaving the emulator


def test_closing_the_emulator_restores_every_option_it_changed():
    deapi_ds.set_config(tier="premium", api_key="dpn-sk-7|mine", base_url="https://oai.deapi.ai/v1")
    before = get_config()
    emu = deapi_ds.use_emulator()
    during = get_config()
    assert during.transport is not None and during.effective_tier == "unlimited"
    emu.close()
    after = get_config()
    for name in ("base_url", "api_key", "key_source", "transport", "tier"):
        assert getattr(after, name) == getattr(before, name), name
    assert after.effective_tier == "premium"
    emu.close()  # idempotent


def test_closing_restores_the_default_tier_when_none_was_set():
    assert get_config().effective_tier == "basic"
    with deapi_ds.use_emulator() as emu:
        assert deapi_ds.embed(["a", "b"], cache=None).matrix.shape == (2, 1024)
        assert emu.stats("embeddings")["inputs"] == 2
        assert get_config().effective_tier == "unlimited"
    settings = get_config()
    assert settings.transport is None and settings.api_key is None
    assert settings.base_url == "https://oai.deapi.ai/v1" and settings.effective_tier == "basic"
    with pytest.raises(deapi_ds.MissingAPIKeyError):
        deapi_ds.Client()  # back to the real API, which needs a key


def test_the_loopback_form_stops_its_server():
    import httpx

    with deapi_ds.use_emulator(loopback=True) as emu:
        base_url = get_config().base_url
        assert httpx.get(base_url + "/models", headers={"Authorization": "Bearer dpn-sk-1|x"})
    assert emu is not None
    with pytest.raises(httpx.ConnectError):
        httpx.get(base_url + "/models", timeout=2)
    assert get_config().base_url == "https://oai.deapi.ai/v1"


def test_a_rerun_cell_replaces_the_previous_emulator_and_keeps_the_original_undo():
    deapi_ds.set_config(tier="premium")
    first = deapi_ds.use_emulator()
    second = deapi_ds.use_emulator()  # the cell ran twice
    assert get_config().transport is not None
    second.close()
    assert get_config().tier == "premium" and get_config().transport is None
    first.close()  # already undone by the rerun: changes nothing
    assert get_config().tier == "premium"


def test_a_reset_since_is_not_undone_by_a_late_close():
    emu = deapi_ds.use_emulator()
    deapi_ds.reset_config()
    deapi_ds.set_config(tier="premium")
    emu.close()
    assert get_config().tier == "premium" and get_config().transport is None
