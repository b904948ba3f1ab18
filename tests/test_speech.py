"""Tests for deapi_ds.speech: validation, splitting + joining, texts x voices, dry run, cache, save."""

from __future__ import annotations

import dataclasses
import re

import anyio
import numpy as np
import pandas as pd
import pytest

import deapi_ds
from deapi_ds import _media, speech
from deapi_ds.speech import (
    SpeechEstimate,
    SpeechResult,
    aspeak,
    estimate_speech,
    speak,
    split_sentences,
    voices,
)

LONG = (
    "The lighthouse keeper climbed the stairs at dusk. "
    "He lit the lamp and watched the ships come home! "
    "Was anyone still out on the water tonight? "
    "Nobody answered, so he sat down and waited."
)


def requests(emu) -> int:
    return emu.stats("audio.speech")["requests"]


# --------------------------------------------------------------------------- validation


def test_unknown_voice_suggests_close_matches_and_spends_nothing(emulator):
    with pytest.raises(deapi_ds.InvalidParameterError) as info:
        speak(["Hello."], voice="af_bela")
    message = str(info.value)
    assert "'voice' parameter of speak()" in message
    assert "Did you mean 'af_bella'" in message
    assert "deapi_ds.voices()" in message
    assert requests(emulator) == 0


def test_unknown_voice_without_close_match_lists_valid_voices(emulator):
    with pytest.raises(deapi_ds.InvalidParameterError, match="Valid voices: alloy, echo") as info:
        speak(["Hello.", "Bye."], voice=["af_bella", "zzzzzz"])
    assert "bm_george" in str(info.value) and "'zzzzzz'" in str(info.value)
    assert requests(emulator) == 0


def test_format_is_checked_against_the_profile(emulator):
    with pytest.raises(deapi_ds.InvalidParameterError) as info:
        speak(["Hello."], response_format="aac")
    assert "['mp3', 'wav', 'flac', 'opus']" in str(info.value)
    assert "'response_format'" in str(info.value)
    assert requests(emulator) == 0


def test_formats_are_configurable_through_the_profile(emulator):
    client = deapi_ds.Client()
    profile = client.aclient.profile
    kokoro = dataclasses.replace(profile.models["Kokoro"], formats=("mp3",))
    client.aclient.profile = dataclasses.replace(
        profile, models={**profile.models, "Kokoro": kokoro}
    )
    with pytest.raises(deapi_ds.InvalidParameterError, match=r"one of \['mp3'\]"):
        speak(["Hello."], response_format="wav", client=client)
    assert speak(["Hello."], response_format="mp3", client=client, cache=None).status[0] == "ok"
    assert requests(emulator) == 1


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"speed": 9}, r"'speed' parameter of speak\(\) must be a number in \[0.5, 2.0\]"),
        ({"speed": 0.3}, r"\[0.5, 2.0\]"),
        ({"speed": True}, r"'speed'"),
        ({"max_chars": 0}, r"'max_chars' parameter of speak\(\) must be an int >= 1"),
        ({"model": "Flux1schnell"}, r"cannot do txt2audio.*Kokoro"),
        ({"voice": []}, r"'voice' parameter of speak\(\) is an empty list"),
    ],
)
def test_bad_parameters_raise_before_spending(emulator, kwargs, pattern):
    with pytest.raises(deapi_ds.InvalidParameterError, match=pattern):
        speak(["Hello."], **kwargs)
    assert requests(emulator) == 0


def test_bad_inputs_name_the_row_or_column(emulator):
    with pytest.raises(deapi_ds.InvalidParameterError, match=r"Row 'b' .* is a int \(5\)"):
        speak(pd.Series(["Hi.", 5], index=["a", "b"]))
    df = pd.DataFrame({"body": ["Hi."], "id": [1]})
    with pytest.raises(deapi_ds.InvalidParameterError, match=r"say which one holds the texts"):
        speak(df)
    with pytest.raises(deapi_ds.InvalidParameterError, match=r"Column 'text' not found.*'body'"):
        speak(df, "text")
    assert requests(emulator) == 0


def test_voices_table():
    table = voices()
    assert list(table.columns) == ["voice", "language", "language_name", "gender", "kind"]
    assert len(table) == 47
    row = table.set_index("voice").loc["bm_george"]
    assert (row["language"], row["gender"], row["kind"]) == ("en-gb", "male", "kokoro")
    prefixes = {
        "af_bella": "en-us",
        "am_adam": "en-us",
        "ef_dora": "es",
        "ff_siwis": "fr-fr",
        "hm_omega": "hi",
        "if_sara": "it",
        "pm_alex": "pt-br",
    }
    lookup = table.set_index("voice")["language"]
    assert {v: lookup[v] for v in prefixes} == prefixes
    assert table.set_index("voice").loc["alloy", "kind"] == "openai alias"
    assert pd.isna(table.set_index("voice").loc["alloy", "language"])


# --------------------------------------------------------------------------- splitting


def test_split_sentences_packs_sentences_under_the_limit():
    parts = split_sentences(LONG, 60)
    assert all(len(p) <= 60 for p in parts)
    assert len(parts) == 4
    assert " ".join(parts) == LONG
    assert parts[2] == "Was anyone still out on the water tonight?"
    assert split_sentences(LONG, 100) == [
        "The lighthouse keeper climbed the stairs at dusk. He lit the lamp and watched the "
        "ships come home!",
        "Was anyone still out on the water tonight? Nobody answered, so he sat down and waited.",
    ]


def test_split_sentences_falls_back_to_clauses_words_and_characters():
    text = "alpha beta, gamma delta epsilon zeta eta theta iota kappa"
    parts = split_sentences(text, 12)
    assert all(len(p) <= 12 for p in parts)
    assert " ".join(parts).split() == text.split()
    assert parts[0] == "alpha beta,"
    assert split_sentences("x" * 25, 10) == ["x" * 10, "x" * 10, "x" * 5]
    assert split_sentences("   ", 10) == []
    assert split_sentences("  short.  ", 10) == ["short."]


@pytest.mark.parametrize("fmt", ["mp3", "wav", "flac", "opus"])
def test_long_text_is_split_and_joined_into_one_clip(emulator, fmt):
    out = speak([LONG], voice="af_bella", response_format=fmt, max_chars=60)
    assert out.status.tolist() == ["ok"]
    assert int(out.parts.iloc[0]) == 4
    assert requests(emulator) == 4
    assert emulator.stats("audio.speech")["characters"] == sum(
        len(p) for p in split_sentences(LONG, 60)
    )
    audio = out.audio.iloc[0]
    info = _media.probe(audio, name=f"joined.{fmt}")
    assert info.container in (fmt, "ogg")
    # the Ogg container's duration also counts Opus's 6.5 ms pre-skip; speak() counts samples
    assert info.duration == pytest.approx(
        out.duration.iloc[0], abs=0.007 if fmt == "opus" else 1e-6
    )
    # the same parts spoken one by one come from the cache: the joined clip lasts their sum
    parts = speak(split_sentences(LONG, 60), voice="af_bella", response_format=fmt, max_chars=60)
    assert requests(emulator) == 4
    assert parts.status.tolist() == ["cached"] * 4
    assert abs(out.duration.iloc[0] - parts.duration.sum()) < 0.05


def test_join_audio_concatenates_raw_formats():
    assert speech.join_audio([b"ab", b"cd"], "pcm") == b"abcd"
    assert speech.join_audio([b"only"], "mp3") == b"only"


# --------------------------------------------------------------------------- results


def test_texts_by_voices_make_a_comparison_table(emulator):
    texts = pd.Series(["Good morning.", "Good night."], index=["m", "n"], name="line")
    out = speak(texts, voice=["af_bella", "bm_george", "ff_siwis"])
    assert isinstance(out, SpeechResult)
    assert len(out) == 6 and requests(emulator) == 6
    assert out.index.tolist() == ["m", "m", "m", "n", "n", "n"]
    assert out.voice.tolist() == ["af_bella", "bm_george", "ff_siwis"] * 2
    assert out.text.tolist() == ["Good morning."] * 3 + ["Good night."] * 3
    assert (out.duration > 0).all()
    # different voices give different audio for the same text
    assert len({bytes(a) for a in out.audio}) == 6
    wide = out.comparison()
    assert list(wide.columns) == ["text", "af_bella", "bm_george", "ff_siwis", "status"]
    assert wide.index.tolist() == ["m", "n"]
    assert wide.loc["n", "bm_george"] == out.frame.iloc[4]["audio"]
    html = wide._repr_mimebundle_()["text/html"]
    assert html.count("<audio") == 6


def test_result_columns_and_dtypes(emulator):
    out = speak(["Hello there."], voice="alloy", response_format="wav")
    frame = out.frame
    assert list(frame.columns) == [
        "text",
        "voice",
        "format",
        "audio",
        "duration",
        "characters",
        "parts",
        "status",
        "error_type",
        "error",
        "cached",
    ]
    assert frame["text"].dtype == "string" and frame["status"].dtype == "string"
    assert frame["duration"].dtype == "Float64" and frame["cached"].dtype == "boolean"
    assert frame["audio"].iloc[0][:4] == b"RIFF"
    assert frame["characters"].iloc[0] == len("Hello there.")


def test_empty_rows_send_nothing_and_keep_alignment(emulator):
    texts = pd.Series(["One.", None, np.nan, "", "   ", "Two."], index=list("abcdef"))
    out = speak(texts)
    assert out.index.tolist() == list("abcdef")
    assert out.status.tolist() == ["ok", "empty", "empty", "empty", "empty", "ok"]
    assert requests(emulator) == 2
    assert out.audio.iloc[1] is None and out.characters.iloc[1] == 0
    assert out.text.iloc[5] == "Two."


def test_dry_run_and_estimate_spend_nothing(emulator):
    texts = ["Hello there.", None, "Hello there.", LONG]
    est = speak(texts, voice=["af_bella", "am_adam"], max_chars=60, dry_run=True)
    assert isinstance(est, SpeechEstimate)
    assert requests(emulator) == 0
    n_long = len(split_sentences(LONG, 60))
    assert est.requests == 2 * (1 + n_long)  # duplicates are sent once
    assert est.characters == 2 * (12 + 12 + len(LONG))
    billable = 2 * (12 + sum(len(p) for p in split_sentences(LONG, 60)))
    assert est.billable_characters == billable
    assert est.cost == pytest.approx(billable * 0.77 / 1e6)
    assert est.frame["status"].tolist()[2:4] == ["empty", "empty"]
    assert "about $" in est.summary()
    # after a real run, the estimate sees the cache
    speak(texts[:1], voice="af_bella")
    again = estimate_speech(texts, voice=["af_bella", "am_adam"], max_chars=60)
    assert again.requests == est.requests - 1
    assert again.frame["status"].tolist()[0] == "cached"
    assert requests(emulator) == 1


def test_rerun_is_served_from_the_cache(emulator):
    texts = ["Hello there.", "A second line, a bit longer."]
    first = speak(texts, voice=["af_bella", "alloy"], response_format="flac")
    assert requests(emulator) == 4
    second = speak(texts, voice=["af_bella", "alloy"], response_format="flac")
    assert requests(emulator) == 4
    assert second.status.tolist() == ["cached"] * 4
    assert second.cached.all()
    assert second.audio.tolist() == first.audio.tolist()
    assert second.duration.tolist() == pytest.approx(first.duration.tolist())
    # another format, speed or voice is another result
    speak(texts[:1], voice="af_bella", response_format="wav")
    speak(texts[:1], voice="af_bella", response_format="flac", speed=1.5)
    assert requests(emulator) == 6


def test_cache_none_turns_caching_off(emulator):
    speak(["Hello."], cache=None)
    speak(["Hello."], cache=None)
    assert requests(emulator) == 2


def test_a_failed_request_is_a_row_error_and_the_rerun_retries_only_it(emulator):
    emulator.configure("audio.speech", script=[400])
    out = speak(["First.", "Second.", "Third."], voice="af_bella")
    assert requests(emulator) == 3
    assert sorted(out.status.tolist()) == ["error", "ok", "ok"]
    failed = out.failed
    assert failed["error_type"].tolist() == ["BadRequestError"]
    assert "400" in failed["error"].iloc[0]
    again = speak(["First.", "Second.", "Third."], voice="af_bella")
    assert requests(emulator) == 4
    assert sorted(again.status.tolist()) == ["cached", "cached", "ok"]


def test_one_failed_part_fails_only_its_row(emulator):
    other = "A second long text follows here. It has two sentences in it."
    emulator.configure("audio.speech", script=[None, 422])  # one part of one text fails
    out = speak([LONG, other], voice="af_bella", max_chars=60)
    assert sorted(out.status.tolist()) == ["error", "ok"]
    bad = out.frame[out.status.eq("error").to_numpy()]
    assert bad["audio"].iloc[0] is None and bad["error_type"].iloc[0] == "UnprocessableEntityError"
    n = requests(emulator)
    assert n == len(split_sentences(LONG, 60)) + len(split_sentences(other, 60))
    again = speak([LONG, other], voice="af_bella", max_chars=60)
    assert requests(emulator) == n + 1  # only the failed part is sent again
    assert sorted(again.status.tolist()) == ["cached", "ok"]


def test_save_writes_files_with_safe_names(emulator, tmp_path):
    texts = ["Hello there.", "../../etc/passwd: é <b>?", None]
    out = speak(texts, voice=["af_bella", "bm_george"], response_format="opus")
    paths = out.save(tmp_path / "clips")
    assert paths.index.tolist() == out.index.tolist()
    assert paths.isna().tolist() == [False, False, False, False, True, True]
    names = [p.split("/")[-1] for p in paths.dropna()]
    assert names[0] == "000_af_bella_hello_there.opus"
    assert names[2] == "002_af_bella_etc_passwd_e_b.opus"
    for name in names:
        assert re.fullmatch(r"[a-z0-9_]+\.opus", name)
    stored = (tmp_path / "clips" / names[1]).read_bytes()
    assert stored == out.audio.iloc[1]
    assert len(list((tmp_path / "clips").iterdir())) == 4


def test_inline_html_has_one_player_per_row_and_a_size_bound(emulator, monkeypatch):
    out = speak([f"Sentence number {i}." for i in range(6)], response_format="wav")
    html = out._repr_mimebundle_()["text/html"]
    assert html.count("<audio") == 6
    total = sum(len(a) for a in out.audio)
    assert len(html) < total * 4 / 3 + 20_000
    monkeypatch.setattr(speech, "INLINE_AUDIO_BUDGET", 2 * len(out.audio.iloc[0]) + 10)
    bounded = out._repr_mimebundle_()["text/html"]
    assert bounded.count("<audio") == 2
    assert "not embedded" in bounded
    assert len(bounded) < 4 * len(out.audio.iloc[0]) + 20_000
    assert "SpeechResult: 6 rows" in out._repr_mimebundle_()["text/plain"]


def test_async_twin_gives_the_same_result(emulator):
    async def main():
        return await aspeak(["Hello there."], voice="am_adam", cache=None)

    out = anyio.run(main)
    assert out.status.tolist() == ["ok"]
    sync = speak(["Hello there."], voice="am_adam", cache=None)
    assert out.audio.iloc[0] == sync.audio.iloc[0]


def test_speech_formats_follow_configuration(emulator):
    """speech_formats names the formats the server returns itself; others are converted."""
    import warnings

    import deapi_ds

    emulator.speech_formats = ("mp3",)  # an mp3-only server: a wav request would get 400
    with deapi_ds.config_context(speech_formats="mp3", limits="seed"), warnings.catch_warnings():
        warnings.simplefilter("error")  # no refused request, no fallback warning
        out = deapi_ds.speak(["Hello there."], response_format="wav", cache=None)
    assert list(out.frame["status"]) == ["ok"]
    assert _media.probe(out.audio.iloc[0], name="x.wav").container == "wav"
    assert requests(emulator) == 1


# --------------------------------------------------------------------------- review additions


def test_split_keeps_closing_quotes_and_brackets():
    text = 'He said "Stop." Then he left the room quickly. (It was late.) Nobody followed.'
    parts = split_sentences(text, 30)
    assert all(len(p) <= 30 for p in parts)
    assert " ".join(parts) == text
    assert parts[:2] == ['He said "Stop."', "Then he left the room quickly."]
    assert parts[2].startswith("(It was late.)")


def test_split_cjk_at_full_width_marks_without_adding_spaces():
    text = "这是第一句。这是第二句！这是第三句？最后一句，有逗号、还有顿号。"
    parts = split_sentences(text, 12)
    assert parts == ["这是第一句。这是第二句！", "这是第三句？最后一句，", "有逗号、还有顿号。"]
    assert "".join(parts) == text
    # Japanese closing brackets stay with their sentence
    assert split_sentences("「はい。」と言った。次の文です。", 10) == [
        "「はい。」と言った。",
        "次の文です。",
    ]


def test_split_texts_without_punctuation_and_very_long_words():
    no_marks = "没有标点的很长的中文文本" * 5
    parts = split_sentences(no_marks, 10)
    assert all(len(p) <= 10 for p in parts) and "".join(parts) == no_marks
    url = "see https://example.com/" + "a" * 50 + " now"
    parts = split_sentences(url, 20)
    assert all(len(p) <= 20 for p in parts)
    assert "".join(parts).replace(" ", "") == url.replace(" ", "")
    # a cut never separates a letter from its combining accent (decomposed text)
    decomposed = "e\u0301" * 10
    parts = split_sentences(decomposed, 5)
    assert "".join(parts) == decomposed
    assert all(not p[0] == "\u0301" for p in parts) and all(len(p) <= 5 for p in parts)


def test_many_part_join_lasts_the_sum_of_its_parts_in_every_format(emulator):
    text = " ".join(f"Line {i} is here." for i in range(12))
    pieces = split_sentences(text, 20)
    assert len(pieces) == 12
    for fmt in ("mp3", "wav", "flac", "opus"):
        out = speak([text], voice="am_adam", response_format=fmt, max_chars=20)
        alone = speak(pieces, voice="am_adam", response_format=fmt, max_chars=20)
        assert alone.status.eq("cached").all()
        assert abs(out.duration.iloc[0] - alone.duration.sum()) < 0.05, fmt
        decoded, rate = _media._decode(out.audio.iloc[0], f"joined.{fmt}")
        assert decoded.shape[1] / rate == pytest.approx(out.duration.iloc[0], abs=0.001), fmt
    assert requests(emulator) == 4 * 12


def test_max_chars_above_the_model_limit_is_refused_before_spending(emulator):
    with pytest.raises(deapi_ds.InvalidParameterError, match=r"at most 10000 characters"):
        speak(["Hello."], max_chars=20_000)
    assert requests(emulator) == 0


def test_estimate_columns_add_up_to_the_totals(emulator):
    texts = ["Hello there.", "Hello there.", LONG, LONG + " And one more."]
    est = estimate_speech(texts, voice=["af_bella", "bm_george"], max_chars=60)
    assert int(est.frame["billable_characters"].sum()) == est.billable_characters
    assert float(est.frame["cost"].sum()) == pytest.approx(est.cost)
    # the repeated text is billed to its first row only
    assert est.frame["billable_characters"].tolist()[:4] == [12, 12, 0, 0]
    out = speak(texts, voice=["af_bella", "bm_george"], max_chars=60)
    assert requests(emulator) == est.requests
    assert emulator.stats("audio.speech")["characters"] == est.billable_characters
    assert out.status.eq("ok").all()


def test_comparison_html_keeps_the_inline_audio_budget(emulator, monkeypatch):
    out = speak(["One.", "Two.", "Three."], voice=["af_bella", "bm_george"], response_format="wav")
    clip = max(len(a) for a in out.audio)
    monkeypatch.setattr(speech, "INLINE_AUDIO_BUDGET", 2 * clip + 10)
    html = out.comparison()._repr_mimebundle_()["text/html"]
    assert html.count("<audio") == 2
    assert len(html) < 4 * clip + 20_000
