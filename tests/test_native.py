"""The native v2 client layer: key form, origin rules, errors, request builders, quotas, helpers."""

from __future__ import annotations

import io

import anyio
import pandas as pd
import pytest
from PIL import Image

import deapi_ds
from deapi_ds import _native
from deapi_ds._config import get_config
from deapi_ds._exceptions import QuotaExceededError
from deapi_ds._native import (
    AsyncNativeClient,
    NativeClient,
    NativeRequest,
    ocr_request,
    parse_job,
    raw_key,
    transcription_request,
)
from deapi_ds.emulator import Emulator, render_text_image
from deapi_ds.emulator._transport import EmulatorTransport

KEY = "dpn-sk-42|fake-key-for-tests"
NATIVE = "https://api.deapi.ai/api/v2"


class Recording(EmulatorTransport):
    """The emulator's transport, remembering (url, Authorization header) of every request."""

    def __init__(self, emulator):
        super().__init__(emulator)
        self.seen: list[tuple[str, str | None]] = []

    async def handle_async_request(self, request):
        self.seen.append((str(request.url), request.headers.get("authorization")))
        return await super().handle_async_request(request)


def _client(emu, **options):
    settings = get_config(
        api_key=KEY, transport=options.pop("transport", emu.transport()), **options
    )
    return AsyncNativeClient(settings=settings)


def _png(size=(100, 100)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, "white").save(buf, "PNG")
    return buf.getvalue()


def test_raw_key_sent_only_to_the_native_origin():
    emu = Emulator()
    recording = Recording(emu)
    client = _client(emu, transport=recording)
    assert raw_key(KEY) == "42|fake-key-for-tests" and raw_key("1|x") == "1|x"

    async def go():
        assert await client.balance() == 5.0  # the emulator answers 401 to a dpn-sk- key
        for url in (
            "https://results.deapi-cdn.invalid/r/1.json",  # another host
            "http://api.deapi.ai/api/v2/results/x.json",  # the API's host over plain http
            "https://api.deapi.ai:8443/api/v2/results/x.json",  # another port
        ):
            with pytest.raises(deapi_ds.DeapiError):
                await client.download(url)

    anyio.run(go)
    assert recording.seen[0] == (f"{NATIVE}/account/balance", "Bearer 42|fake-key-for-tests")
    assert [auth for _, auth in recording.seen[1:]] == [None, None, None]
    assert KEY not in repr(client) and "abcdefgh" not in repr(client._transport)


def test_native_url_is_configurable_and_plain_http_is_refused(monkeypatch):
    monkeypatch.setenv("DEAPI_NATIVE_BASE_URL", "https://native.example.test/api/v2/")
    assert get_config().native_base_url == "https://native.example.test/api/v2"
    with pytest.raises(deapi_ds.ConfigurationError, match="plain http"):
        AsyncNativeClient(api_key=KEY, base_url="http://native.example.test/api/v2")
    AsyncNativeClient(api_key=KEY, base_url="http://127.0.0.1:9/api/v2")  # loopback is fine
    AsyncNativeClient(
        api_key=KEY, base_url="http://native.example.test/api/v2", allow_insecure_http=True
    )
    monkeypatch.delenv("DEAPI_NATIVE_BASE_URL")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-proj-abcdefghijklmnop")
    with pytest.raises(deapi_ds.ConfigurationError, match="OPENAI_API_KEY"):
        AsyncNativeClient()  # an OpenAI key never goes to deAPI's native host either


def test_native_errors_map_onto_the_exception_tree():
    emu = Emulator(api_key="dpn-sk-9|rightrightright")
    client = _client(emu, max_retries=0)

    async def go():
        with pytest.raises(deapi_ds.AuthenticationError):
            await client.balance()

    anyio.run(go)
    emu = Emulator()
    client = _client(emu, max_retries=0)

    async def go2():
        with pytest.raises(deapi_ds.UnprocessableEntityError) as info:
            await client.submit(ocr_request(_png((30, 30))))
        assert info.value.status_code == 422 and "image" in info.value.errors
        with pytest.raises(deapi_ds.NotFoundError):
            await client.job("0000-unknown")
        with pytest.raises(deapi_ds.InvalidParameterError):
            await client.job("../account/balance")

    anyio.run(go2)


def test_transcription_request_checks_before_spending():
    r = transcription_request(source_url="https://youtu.be/abc")
    assert r.fields == {
        "model": "WhisperLargeV3",
        "include_ts": "false",
        "source_url": "https://youtu.be/abc",
    }
    assert not r.result_file
    r = transcription_request(source_url="https://youtu.be/abc", diarize=True)
    assert r.fields["model"] == "WhisperLargeV3Ct2" and r.fields["diarize"] == "true"
    assert r.fields["include_ts"] == "true" and r.result_file
    tiktok = "https://www.tiktok.com/@a/video/1"
    assert transcription_request(source_url=tiktok).fields["model"] == "WhisperLargeV3Ct2"
    with pytest.raises(deapi_ds.InvalidParameterError, match="TikTok"):
        transcription_request(source_url=tiktok, model="WhisperLargeV3")
    with pytest.raises(deapi_ds.InvalidParameterError, match="diarize"):
        transcription_request(source_url="https://youtu.be/a", diarize=True, model="WhisperLargeV3")
    with pytest.raises(deapi_ds.InvalidParameterError, match="vimeo"):
        transcription_request(source_url="https://vimeo.com/1")
    with pytest.raises(deapi_ds.InvalidParameterError, match="exactly one"):
        transcription_request(source_url="https://youtu.be/a", source_file=b"x")
    with pytest.raises(deapi_ds.InvalidParameterError, match="links only"):
        transcription_request(source_file=b"x", include_metadata=True)
    f = transcription_request(source_file=b"abc", filename="a.wav", timestamps="word")
    assert f.files[0][0] == "source_file" and f.files[0][1][0] == "a.wav"
    assert "3 bytes" in repr(f) and "abc" not in repr(f)


def test_daily_quotas_shared_with_the_gateway_stop_before_sending():
    from deapi_ds._profiles import quota_endpoint
    from deapi_ds._quota import record_requests

    assert quota_endpoint("v2.jobs") == "jobs" and quota_endpoint("v2.price") == "price"
    assert quota_endpoint("v2.audio.transcriptions") == "audio.transcriptions"
    assert quota_endpoint("v2.images.ocr") == "images.ocr"
    profile = deapi_ds._profiles.DEAPI
    assert profile.rpm_for("v2.jobs", "basic") == 50 and profile.daily_quota("jobs", "basic") == 200
    assert profile.daily_quota("images.ocr", "basic") == 50
    emu = Emulator()
    client = _client(emu, tier="basic", max_retries=0)
    assert client.tier == "basic" and client.engine.limiter("v2.jobs").rpm == 50
    native_settings = get_config(
        api_key=KEY, tier="basic", base_url=client.settings.native_base_url
    )
    record_requests("v2.jobs", 200, settings=native_settings)  # today's 200 reads are used

    async def go():
        with pytest.raises(QuotaExceededError):
            await client.job("5c0d192f-e49d-470c-a7bc-05c7f49fea74")

    anyio.run(go)
    assert emu.stats("v2.jobs")["requests"] == 0  # refused before anything was sent


def test_parse_job_shapes():
    s = parse_job({"data": {"status": "in_progress", "progress": "45.50"}}, "j1")
    assert s.status == "processing" and s.progress == 45.5 and not s.done
    e = parse_job(
        {"data": {"status": "error", "error_code": "WORKER_ERROR", "error_reason": "TIMEOUT",
                  "error_message": "timeout", "retryable": True, "refunded": True}},
        "j2",
    )  # fmt: skip
    assert e.failed and e.retryable and "TIMEOUT" in e.error_text() and "refunded" in e.error_text()
    with pytest.raises(deapi_ds.ResponseValidationError, match="unknown status"):
        parse_job({"data": {"status": "COMPLETED"}}, "j3")
    with pytest.raises(deapi_ds.ResponseValidationError):
        parse_job({"data": None}, "j4")


def test_models_and_sync_client(emulator):
    client = NativeClient()
    models = {m.slug: m for m in client.models()}
    assert models["WhisperLargeV3Ct2"].features["supports_diarization"] is True
    assert models["WhisperLargeV3Ct2"].limits["timestamp_levels"] == ["segment", "word"]
    assert "img2txt" in models["Nanonets_Ocr_S_F16"].inference_types
    req = ocr_request(render_text_image("Hello"))
    assert client.price(req) > 0
    assert isinstance(client.submit(req), str)


def test_public_balance_and_quote(emulator, tmp_path):
    assert deapi_ds.balance() == 5.0
    clip = tmp_path / "clip.wav"
    from deapi_ds.emulator import synthesize_dialogue

    clip.write_bytes(synthesize_dialogue([("am_adam", "Hello."), ("af_bella", "Hi.")], fmt="wav"))
    data = pd.Series(
        ["https://youtu.be/emuPodcast01", str(clip), None, "not a file or link"],
        index=["a", "b", "c", "d"],
    )
    q = deapi_ds.quote(data, diarize=True)
    assert list(q.index) == ["a", "b", "c", "d"]
    assert q.loc["a", "price"] > 0 and q.loc["b", "price"] > 0
    assert pd.isna(q.loc["c", "price"]) and pd.isna(q.loc["c", "error"])
    assert pd.isna(q.loc["d", "price"]) and "'d'" in q.loc["d", "error"]
    plain = deapi_ds.quote(["https://youtu.be/emuPodcast01"])
    assert q.loc["a", "price"] == pytest.approx(plain["price"].iloc[0] * 1.5, rel=1e-3)
    ocr = deapi_ds.quote([Image.new("RGB", (1024, 1024), "white")], task="ocr")
    assert ocr["price"].iloc[0] == pytest.approx(0.00928, abs=2e-5)
    assert emulator.stats("v2.price")["requests"] == 4  # the missing and bad rows cost nothing
    with pytest.raises(deapi_ds.InvalidParameterError, match="task"):
        deapi_ds.quote(["x"], task="translate")
    with pytest.raises(deapi_ds.InvalidParameterError, match="timestamps"):
        deapi_ds.quote(["https://youtu.be/a"], timestamps="char")


def test_shared_native_client_is_reused_per_configuration(emulator):
    a = _native.shared_native_client()
    assert _native.shared_native_client() is a
    with deapi_ds.config_context(max_retries=1):
        assert _native.shared_native_client() is not a
    request = NativeRequest("images.ocr", {"model": "Nanonets_Ocr_S_F16"})
    assert request.path == "/images/ocr" and request.endpoint == "v2.images.ocr"
