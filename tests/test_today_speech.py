"""Speech in every format against deAPI as it is today (mp3 only) and as the seed described it."""

from __future__ import annotations

import warnings

import pytest

import deapi_ds
from deapi_ds import _media, _speech_formats
from deapi_ds.emulator import Emulator, Fault
from deapi_ds.emulator._media import synthesize_speech
from deapi_ds.speech import speak, split_sentences
from deapi_ds.testing import emulated

LONG = (
    "The first sentence is here. A second one follows it closely. "
    "Then a third sentence arrives. And the fourth one ends the text."
)


@pytest.fixture(autouse=True)
def _fresh_refusals():
    _speech_formats.forget_refusals()
    yield
    _speech_formats.forget_refusals()


def _asked_formats(emu: Emulator) -> list[str]:
    """The response_format of every speech request the emulator saw (wrapping its handler)."""
    seen: list[str] = []
    original = emu._speech

    def spy(req):
        seen.append(req.json().get("response_format"))
        return original(req)

    emu._routes = [(m, p, ep, spy if ep == "audio.speech" else h) for m, p, ep, h in emu._routes]
    return seen


@pytest.mark.parametrize("server", ["today", "seed"])
@pytest.mark.parametrize("limits", ["today", "seed"])
@pytest.mark.parametrize("fmt", ["mp3", "wav", "flac", "opus"])
def test_every_format_on_every_server_with_exact_durations(server, limits, fmt):
    emu = Emulator(profile=server)
    asked = _asked_formats(emu)
    with emulated(emulator=emu, limits=limits), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = speak([LONG], voice="af_bella", response_format=fmt, max_chars=60)
        parts = speak(split_sentences(LONG, 60), voice="af_bella", response_format=fmt)
    assert out.status.tolist() == ["ok"]
    assert parts.status.eq("cached").all()  # the parts were cached in the wanted format
    audio = out.audio.iloc[0]
    info = _media.probe(audio, name=f"joined.{'ogg' if fmt == 'opus' else fmt}")
    assert info.container in (fmt, "ogg")
    assert info.duration == pytest.approx(out.duration.iloc[0], abs=1e-6)
    assert abs(out.duration.iloc[0] - parts.duration.sum()) < 0.05
    native = fmt if (limits == "seed" and fmt != "mp3") else "mp3"
    refused = limits == "seed" and server == "today" and fmt != "mp3"
    # one refused request at most, then mp3 + conversion; a warning says so, once
    n = len(split_sentences(LONG, 60))
    assert n > 1 and int(out.parts.iloc[0]) == n
    assert asked == ([native] if refused else []) + ["mp3" if refused else native] * n
    fallback_warnings = [w for w in caught if "refused response_format" in str(w.message)]
    assert len(fallback_warnings) == (1 if refused else 0)


def test_refusal_is_remembered_per_base_url_for_the_session():
    emu = Emulator(profile="today")
    asked = _asked_formats(emu)
    with emulated(emulator=emu, limits="seed", max_concurrency=1):
        with pytest.warns(UserWarning, match="refused response_format='wav'") as record:
            first = speak(["One here.", "Two here.", "Three here."], response_format="wav")
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no second warning, no second refused request
            second = speak(["Four here."], response_format="wav")
    assert len(record) == 1
    assert first.status.tolist() == ["ok"] * 3 and second.status.tolist() == ["ok"]
    assert asked == ["wav", "mp3", "mp3", "mp3", "mp3"]
    # a different server (base URL) starts with what its profile says
    other = deapi_ds.Client("dpn-sk-1|test-not-a-key", limits="seed").aclient
    assert _speech_formats.wire_format(other, "wav") == "wav"


def test_other_errors_are_not_mistaken_for_a_refused_format():
    emu = Emulator(profile="seed")
    emu.configure(
        "audio.speech",
        script=[Fault(status=400, message="The input contains unsupported characters.")],
    )
    asked = _asked_formats(emu)
    with emulated(emulator=emu, limits="seed"):
        with pytest.raises(deapi_ds.BatchError) as info:  # the only row failed: raised
            speak(["Hello there."], response_format="wav")
    out = info.value.partial
    assert out.status.tolist() == ["error"] and out.error_type.tolist() == ["BadRequestError"]
    assert emu.stats("audio.speech")["requests"] == 1 and asked == []  # scripted before handler


def test_today_emulator_refuses_non_mp3_the_way_deapi_does():
    emu = Emulator(profile="today")
    headers = {"Authorization": "Bearer dpn-sk-test"}
    body = b'{"model": "Kokoro", "input": "Hi there.", "voice": "nova", "response_format": "wav"}'
    r = emu.handle("POST", "/v1/audio/speech", headers, body)
    assert r.status == 400
    assert r.json()["error"]["param"] == "response_format" and "mp3" in r.json()["error"]["message"]
    ok = emu.handle("POST", "/v1/audio/speech", headers, body.replace(b"wav", b"mp3"))
    assert ok.status == 200 and ok.headers["Content-Type"] == "audio/mpeg"
    assert Emulator(profile="seed").handle("POST", "/v1/audio/speech", headers, body).status == 200


@pytest.mark.parametrize("dst", ["wav", "flac", "opus", "m4a", "pcm"])
def test_convert_audio_keeps_the_duration(dst):
    mp3 = synthesize_speech("Converting keeps every sample in place.", voice="am_adam", fmt="mp3")
    source = _media.probe(mp3, name="a.mp3").duration
    out = _media.convert_audio(mp3, "mp3", dst)
    if dst == "pcm":
        seconds = len(out) / 48_000  # 24 kHz, 16-bit mono
    else:
        seconds = _media.probe(out, name=f"x.{'ogg' if dst == 'opus' else dst}").duration
    assert seconds == pytest.approx(source, abs=1e-3)
    assert _media.convert_audio(mp3, "mp3", "mp3") == mp3


def test_speech_formats_setting_overrides_the_native_formats():
    from deapi_ds._profiles import get_profile

    assert get_profile(deapi_ds.get_config()).speech_native_formats == ("mp3",)
    assert get_profile(deapi_ds.get_config(limits="seed")).speech_native_formats == (
        "mp3",
        "wav",
        "flac",
        "opus",
    )
    profile = get_profile(deapi_ds.get_config(speech_formats="mp3,flac"))
    assert profile.speech_wire_format("flac") == "flac"
    assert profile.speech_wire_format("wav") == "mp3"
