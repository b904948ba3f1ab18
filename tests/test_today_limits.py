"""deAPI today vs the seed: the limits switch, upload limits, transcription on both, prices."""

from __future__ import annotations

import datetime as dt
import json

import pytest

import deapi_ds
from deapi_ds import _media
from deapi_ds._profiles import DEAPI, DEAPI_SEED, REFERENCE_DATE, get_profile
from deapi_ds.emulator import Emulator
from deapi_ds.emulator._media import make_video_with_audio, synthesize_speech
from deapi_ds.testing import emulated

MB = 1024 * 1024
TEXT = "Quotas reset at midnight in Coordinated Universal Time."


def test_today_is_the_default_and_seed_one_setting_away(monkeypatch):
    today = get_profile(deapi_ds.get_config())
    assert (today.limits, today.max_upload_bytes, today.max_video_upload_bytes) == (
        "today",
        20 * MB,
        50 * MB,
    )
    assert today.max_request_bytes == 75 * MB and today.speech_native_formats == ("mp3",)
    assert today.daily_quota("embeddings", "basic") == 500
    assert "2026-08-19" in today.limits_source
    seed = get_profile(deapi_ds.get_config(limits="seed"))
    assert seed is DEAPI_SEED and seed.max_upload_bytes == 80 * MB
    assert seed.daily_quota("embeddings", "basic") is None
    monkeypatch.setenv("DEAPI_DS_LIMITS", "seed")
    assert get_profile(deapi_ds.get_config()).max_upload_bytes == 80 * MB
    with deapi_ds.config_context(limits="today"):
        assert get_profile(deapi_ds.get_config()) is DEAPI
    overridden = get_profile(deapi_ds.get_config(max_upload_mb=10))
    assert overridden.max_upload_bytes == overridden.max_video_upload_bytes == 10 * MB


def test_a_bad_limits_value_names_the_valid_ones(monkeypatch):
    with pytest.raises(deapi_ds.InvalidParameterError, match="'today'.*'seed'"):
        deapi_ds.set_config(limits="tomorrow")
    monkeypatch.setenv("DEAPI_DS_LIMITS", "2025")
    with pytest.raises(deapi_ds.InvalidParameterError, match="limits must be"):
        deapi_ds.get_config()


def test_video_limit_applies_to_a_video_sent_whole():
    speech = synthesize_speech(TEXT * 3, voice="am_adam", fmt="mp3")
    video = make_video_with_audio(speech)
    kept = _media.prepare_upload(
        video,
        name="talk.mp4",
        max_bytes=len(video) // 2,
        max_video_bytes=len(video) * 2,
        prefer_audio_only=False,
    )
    assert len(kept) == 1 and kept[0].data == video
    split = _media.prepare_upload(
        video, name="talk.mp4", max_bytes=len(video) // 2, prefer_audio_only=False
    )
    assert all(chunk.data != video for chunk in split)  # over the audio limit: reduced


def _upload(emu: Emulator, name: str, size: int) -> int:
    boundary = "b0undary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="model"\r\n\r\nWhisperLargeV3\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + b"\0" * size
        + f"\r\n--{boundary}--\r\n".encode()
    )
    headers = {
        "Authorization": "Bearer dpn-sk-test",
        "Content-Type": f"multipart/form-data; boundary={boundary}",
    }
    return emu.handle("POST", "/v1/audio/transcriptions", headers, body).status


def test_emulator_upload_limits_today_and_seed():
    today, seed = Emulator(profile="today"), Emulator(profile="seed")
    assert _upload(today, "talk.mp3", 21 * MB) == 413
    assert _upload(today, "talk.mp4", 21 * MB) == 400  # under 50 MB: read, and not media
    assert _upload(today, "talk.mp4", 51 * MB) == 413
    assert _upload(seed, "talk.mp3", 21 * MB) == 400


@pytest.mark.parametrize("server", ["today", "seed"])
@pytest.mark.parametrize("limits", ["today", "seed"])
def test_transcription_on_both_servers(server, limits):
    emu = Emulator(profile=server)
    with emulated(emulator=emu, limits=limits):
        from deapi_ds.transcription import _resolve_options

        aclient = deapi_ds.Client().aclient
        opts = _resolve_options(
            aclient, None, model="WhisperLargeV3", language=None, response_format="json",
            word_timestamps=None, max_upload_mb=None, concurrency=None, func="transcribe",
        )  # fmt: skip
        expected = (20 * MB, 50 * MB) if limits == "today" else (80 * MB, 80 * MB)
        assert (opts["max_bytes"], opts["max_video_bytes"]) == expected
        audio = synthesize_speech(TEXT, voice="af_bella", fmt="wav")
        out = deapi_ds.transcribe([audio, make_video_with_audio(audio)], max_upload_mb=0.05)
    assert out.frame["status"].tolist() == ["ok", "ok"]
    assert out.frame["text"].tolist() == [TEXT, TEXT]


def test_today_emulator_quota_answer_has_the_documented_shape():
    now = [dt.datetime(2026, 12, 7, 22, 0, tzinfo=dt.UTC).timestamp()]
    emu = Emulator(profile="today", utc_clock=lambda: now[0])
    headers = {"Authorization": "Bearer dpn-sk-test"}
    body = json.dumps({"model": "WhisperLargeV3"}).encode()
    for _ in range(10):  # Basic: 10 transcriptions a day (these fail validation, and count)
        assert emu.handle("POST", "/v1/audio/transcriptions", headers, body).status == 400
    r = emu.handle("POST", "/v1/audio/transcriptions", headers, body)
    assert r.status == 429 and r.json() == {"message": "Too Many Attempts."}
    assert r.headers["X-RateLimit-Limit"] == "10" and r.headers["X-RateLimit-Remaining"] == "0"
    assert r.headers["Retry-After"] == "7200"
    assert int(r.headers["X-RateLimit-Reset"]) == now[0] + 7200
    assert emu.quota_used("audio.transcriptions") == 10
    assert Emulator(profile="today", tier="premium").daily_quotas == {}
    assert Emulator(profile="seed").daily_quotas == {}
    now[0] += 7200
    assert emu.handle("POST", "/v1/audio/transcriptions", headers, body).status == 400


# --------------------------------------------------------------------------- prices


def test_prices_for_every_task_with_their_date():
    cases = {
        ("embeddings", "Bge_M3_FP16", (("tokens", 2_000_000),)): 0.168,
        ("audio.speech", "Kokoro", (("characters", 1_000_000),)): 0.77,
        ("audio.speech", "Kokoro", (("characters", 1_000_000), ("speed", 0.5))): 1.54,
        ("audio.transcriptions", "WhisperLargeV3", (("hours", 1), ("word_timestamps", True))): 0.05,
        ("audio.transcriptions", "WhisperLargeV3Ct2", (("hours", 1),)): 0.05,
        (
            "audio.transcriptions",
            "WhisperLargeV3Ct2",
            (("seconds", 3600), ("diarize", True)),
        ): 0.075,
        ("images.generations", "Flux1schnell", ()): 0.00136,
        ("images.generations", "Flux1schnell", (("size", "1024x1024"), ("steps", 8))): 0.01088,
        ("images.edits", "QwenImageEdit_Plus_NF4", (("n", 2),)): 0.0358,
        ("videos", "Ltx2_3_22B_Dist_INT8", (("seconds", 4), ("size", "512x512"))): 0.013896,
    }
    for (task, model, quantities), usd in cases.items():
        info = DEAPI.price(task, model, **dict(quantities))
        assert info is not None and info.usd == pytest.approx(usd), (task, model, quantities)
        assert info.date == REFERENCE_DATE
        assert f"reference price of {REFERENCE_DATE.isoformat()}, not a quote" in str(info)
    assert "x1.5" in DEAPI.price("audio.transcriptions", "WhisperLargeV3Ct2", diarize=True).basis
    assert DEAPI.price("embeddings", "SomeOtherModel", tokens=5) is None
    assert get_profile("openai-compatible").price("embeddings", "Bge_M3_FP16", tokens=5) is None


def test_price_refuses_unknown_tasks_and_quantities():
    with pytest.raises(deapi_ds.InvalidParameterError, match="unknown task 'chat'"):
        DEAPI.price("chat", "Kokoro")
    with pytest.raises(deapi_ds.InvalidParameterError, match=r"does not take \['words'\]"):
        DEAPI.price("audio.speech", "Kokoro", words=10)
    with pytest.raises(deapi_ds.InvalidParameterError, match="tokens must be a number"):
        DEAPI.price("embeddings", "Bge_M3_FP16", tokens=-1)
