"""The emulator's native v2 API, checked on the wire (httpx only, no deapi_ds client code)."""

from __future__ import annotations

import io

import httpx
import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from deapi_ds.emulator import Emulator, synthesize_dialogue
from deapi_ds.emulator._native import SOURCES, parse_source_url
from deapi_ds.emulator._ocr import read_text, render_text_image

KEY = "17|fake-native-key"
PODCAST = "https://www.youtube.com/watch?v=emuPodcast01"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def emu(clock):
    return Emulator(clock=clock)


@pytest.fixture
def http(emu):
    return httpx.Client(
        transport=emu.transport(),
        base_url="https://api.deapi.ai/api/v2",
        headers={"Authorization": f"Bearer {KEY}", "Accept": "application/json"},
    )


def _png(img: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt)
    return buf.getvalue()


def _finish(http, clock, job_id):
    clock.now += 10
    data = http.get(f"/jobs/{job_id}").json()["data"]
    assert data["status"] in ("done", "error")
    return data


def _submit(http, path, data=None, files=None):
    r = http.post(path, data=data, files=files)
    assert r.status_code == 200, r.text
    return r.json()["data"]["request_id"]


def test_native_auth_wants_the_raw_key(emu):
    for header in ({}, {"Authorization": "Bearer dpn-sk-17|secretsecret"}):
        r = httpx.Client(transport=emu.transport()).get(
            "https://api.deapi.ai/api/v2/account/balance", headers=header
        )
        assert r.status_code == 401 and r.json() == {"message": "Unauthenticated."}
    fixed = Emulator(api_key="dpn-sk-5|fixedsecret")
    ok = httpx.Client(transport=fixed.transport()).get(
        "https://api.deapi.ai/api/v2/account/balance",
        headers={"Authorization": "Bearer 5|fixedsecret"},
    )
    assert ok.json() == {"data": {"balance": 5.0}}


def test_job_states_follow_the_clock_and_results_expire(http, emu, clock):
    emu.native.job_seconds = (2.0, 4.0)
    emu.native.result_ttl = 30.0
    job = _submit(
        http,
        "/audio/transcriptions",
        {"source_url": PODCAST, "model": "WhisperLargeV3", "include_ts": "true"},
    )
    assert http.get(f"/jobs/{job}").json()["data"]["status"] == "pending"
    clock.now += 3
    processing = http.get(f"/jobs/{job}").json()["data"]
    assert processing["status"] == "processing" and 0 < processing["progress"] < 100
    clock.now += 4
    done = http.get(f"/jobs/{job}").json()["data"]
    assert done["status"] == "done" and done["result"].startswith("Welcome back")
    assert http.get(done["result_url"]).status_code == 200
    clock.now += 31
    assert http.get(done["result_url"]).status_code == 403  # the pre-signed URL expired
    fresh = http.get(f"/jobs/{job}").json()["data"]["result_url"]
    assert fresh != done["result_url"] and http.get(fresh).json()["segments"]


def test_unknown_job_and_route_use_the_native_shape(http):
    r = http.get("/jobs/0000")
    assert r.status_code == 404
    assert r.json() == {"message": "No query results for the requested resource."}
    assert "could not be found" in http.get("/utilities/balance").json()["message"]


def test_validation_errors_are_422_keyed_by_field(http):
    r = http.post("/audio/transcriptions", data={"source_url": PODCAST, "model": "WhisperLargeV3"})
    assert r.status_code == 422 and "include_ts" in r.json()["errors"]
    r = http.post(
        "/audio/transcriptions",
        data={"source_url": "https://www.tiktok.com/@emu.creator/video/7300000000000000001",
              "model": "WhisperLargeV3", "include_ts": "false"},
    )  # fmt: skip
    assert r.status_code == 422 and list(r.json()["errors"]) == ["model"]
    r = http.post(
        "/audio/transcriptions",
        data={
            "source_url": PODCAST,
            "model": "WhisperLargeV3",
            "include_ts": "true",
            "diarize": "true",
        },
    )
    assert r.status_code == 422 and "diarize" in r.json()["errors"]
    r = http.post(
        "/audio/transcriptions",
        data={
            "source_url": "https://vimeo.com/1",
            "model": "WhisperLargeV3",
            "include_ts": "false",
        },
    )
    assert r.status_code == 422 and "source_url" in r.json()["errors"]


@pytest.mark.parametrize(
    "url, reason, message",
    [
        ("https://www.youtube.com/watch?v=emuPrivate04", "SOURCE_PRIVATE", "private"),
        ("https://youtu.be/emuAgeGate05", "SOURCE_RESTRICTED", "age-restricted"),
        ("https://www.youtube.com/watch?v=doesNotExist", "SOURCE_DOWNLOAD_FAILED", None),
        ("https://www.twitch.tv/videos/2000000099", "INPUT_TOO_LARGE", None),
    ],
)
def test_failing_links_end_with_documented_reasons(http, clock, emu, url, reason, message):
    before = http.get("/account/balance").json()["data"]["balance"]
    job = _submit(
        http,
        "/audio/transcriptions",
        {"source_url": url, "model": "WhisperLargeV3", "include_ts": "false"},
    )
    data = _finish(http, clock, job)
    assert data["status"] == "error" and data["error_reason"] == reason
    assert data["retryable"] is False and data["refunded"] is True
    if message:
        assert data["error_message"] == message
    assert http.get("/account/balance").json()["data"]["balance"] == before


def test_capacity_error_is_retryable_then_works(http, clock):
    url = "https://www.youtube.com/watch?v=emuFlaky0006"
    form = {"source_url": url, "model": "WhisperLargeV3", "include_ts": "false"}
    first = _finish(http, clock, _submit(http, "/audio/transcriptions", form))
    assert first["error_reason"] == "CAPACITY_UNAVAILABLE" and first["retryable"] is True
    second = _finish(http, clock, _submit(http, "/audio/transcriptions", form))
    assert second["status"] == "done" and "second try" in second["result"]


def test_link_sources_cover_every_platform_and_metadata(http, clock):
    platforms = {s.platform for s in SOURCES.values()}
    assert platforms == {"youtube", "twitter", "twitch", "kick", "tiktok"}
    assert parse_source_url("https://youtu.be/emuPodcast01") == ("youtube", PODCAST)
    assert parse_source_url("https://twitter.com/i/spaces/1emuSpaceAbc")[1] == (
        "https://x.com/i/spaces/1emuSpaceAbc"
    )
    job = _submit(
        http,
        "/audio/transcriptions",
        {"source_url": "https://x.com/i/spaces/1emuSpaceAbc", "model": "WhisperLargeV3Ct2",
         "include_ts": "true", "diarize": "true", "include_metadata": "true"},
    )  # fmt: skip
    data = _finish(http, clock, job)
    assert data["metadata"]["title"] == "Open models night"
    assert data["metadata"]["duration"] > 5
    result = http.get(data["result_url"]).json()
    speakers = [s["speaker"] for s in result["segments"]]
    assert speakers[0] == "SPEAKER_00" and set(speakers) == {
        "SPEAKER_00",
        "SPEAKER_01",
        "SPEAKER_02",
    }


def test_diarized_file_labels_every_word_with_its_speaker(http, clock):
    turns = [
        ("am_adam", "Hello and welcome. Today we test diarization."),
        ("af_bella", "Thanks Adam. I will speak second."),
        ("bm_george", "And I am the third voice here."),
        ("am_adam", "Back to me for the closing words."),
        ("af_bella", "Goodbye everyone."),
    ]
    clip = synthesize_dialogue(turns, fmt="mp3")
    job = _submit(
        http,
        "/audio/transcriptions",
        {"model": "WhisperLargeV3Ct2", "include_ts": "true", "ts_level": "word", "diarize": "true"},
        files={"source_file": ("talk.mp3", clip, "audio/mpeg")},
    )
    result = http.get(_finish(http, clock, job)["result_url"]).json()
    label = {"am_adam": "SPEAKER_00", "af_bella": "SPEAKER_01", "bm_george": "SPEAKER_02"}
    expected = [(w, label[v]) for v, text in turns for w in text.split()]
    got = [(w["word"], w["speaker"]) for s in result["segments"] for w in s["words"]]
    assert got == expected  # 100% of words, right text and right speaker
    assert all(s["speaker"] == s["words"][0]["speaker"] for s in result["segments"])


def test_price_follows_duration_factor_and_metadata(http):
    base = {"source_url": PODCAST, "model": "WhisperLargeV3"}
    plain = http.post("/audio/transcriptions/price", data=base).json()["data"]["price"]
    ct2 = {**base, "model": "WhisperLargeV3Ct2", "diarize": "true"}
    diarized = http.post("/audio/transcriptions/price", data=ct2).json()["data"]["price"]
    assert diarized == pytest.approx(plain * 1.5, rel=1e-4)
    meta = http.post("/audio/transcriptions/price", data={**base, "include_metadata": "true"})
    assert meta.json()["data"]["price"] == pytest.approx(plain + 0.005, rel=1e-4)
    hour = http.post("/audio/transcriptions/price", data={**base, "duration_seconds": "3600"})
    assert hour.json()["data"]["price"] == pytest.approx(0.05)
    tiktok = {"source_url": "https://www.tiktok.com/@emu.creator/video/1", "model": "WhisperLargeV3Ct2",
              "duration_seconds": "90"}  # fmt: skip
    assert http.post("/audio/transcriptions/price", data=tiktok).json()["data"]["price"] == 0.0225


def test_balance_holds_the_price_and_bills_done_jobs(http, clock, emu):
    job = _submit(
        http,
        "/audio/transcriptions",
        {"source_url": PODCAST, "model": "WhisperLargeV3", "include_ts": "false"},
    )
    _finish(http, clock, job)
    balance = http.get("/account/balance").json()["data"]["balance"]
    spent = emu.stats("v2.audio.transcriptions")["usd"]
    assert spent > 0 and balance == pytest.approx(5.0 - spent)
    assert emu.stats("v2.audio.transcriptions")["jobs"] == 1


def test_models_list_limits_and_features(http):
    page = http.get("/models", params={"limit": 3}).json()
    assert len(page["data"]) == 3 and page["meta"]["last_page"] > 1 and page["links"]["next"]
    models = {m["slug"]: m for m in http.get("/models", params={"limit": 50}).json()["data"]}
    ct2 = models["WhisperLargeV3Ct2"]["info"]
    assert ct2["limits"]["timestamp_levels"] == ["segment", "word"]
    assert ct2["features"]["supports_diarization"] is True
    assert models["WhisperLargeV3"]["info"]["features"]["supports_diarization"] is False
    ocr = http.get("/models", params={"limit": 50, "filter[inference_types]": "img2txt"}).json()
    assert [m["slug"] for m in ocr["data"]] == ["Nanonets_Ocr_S_F16"]


def test_job_status_basic_limits_answer_429_with_headers(http, emu, clock):
    emu.native.limits("basic")
    job = _submit(
        http,
        "/audio/transcriptions",
        {"source_url": PODCAST, "model": "WhisperLargeV3", "include_ts": "false"},
    )
    answers = [http.get(f"/jobs/{job}") for _ in range(51)]
    assert [r.status_code for r in answers[:50]] == [200] * 50
    limited = answers[50]
    assert limited.status_code == 429 and limited.json() == {"message": "Too Many Attempts."}
    assert limited.headers["X-RateLimit-Limit"] == "50"
    assert limited.headers["X-RateLimit-Remaining"] == "0"
    assert int(limited.headers["Retry-After"]) >= 1
    assert answers[0].headers["X-RateLimit-Remaining"] == "49"
    # per day: 200 status reads, then 429 until midnight UTC
    for _ in range(3):
        clock.now += 61
        for _ in range(50):
            assert http.get(f"/jobs/{job}").status_code == 200
    clock.now += 61
    daily = http.get(f"/jobs/{job}")
    assert daily.status_code == 429 and daily.headers["X-RateLimit-Source"] == "daily"
    assert int(daily.headers["Retry-After"]) > 60


def test_ocr_reads_pillow_drawn_text_exactly(http, clock):
    img = Image.new("RGB", (420, 90), "white")
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default_imagefont()
    draw.text((15, 12), "Receipt #4521 - Coffee 3.20", font=font, fill="black")
    draw.text((15, 30), "Total due: 3.20 (card)", font=font, fill="black")
    job = _submit(
        http, "/images/ocr", {"model": "Nanonets_Ocr_S_F16"},
        files={"image": ("scan.png", _png(img), "image/png")},
    )  # fmt: skip
    data = _finish(http, clock, job)
    assert data["result"] == "Receipt #4521 - Coffee 3.20\nTotal due: 3.20 (card)"


@pytest.mark.parametrize(
    "fmt, scale", [("PNG", 1), ("JPEG", 2), ("WEBP", 3), ("BMP", 2), ("GIF", 1)]
)
def test_ocr_reads_rendered_scans_in_every_format(fmt, scale):
    text = "Invoice 2026-117\nACME GmbH, Berlin\n  item: {widget} x3 @ $4.99"
    assert read_text(render_text_image(text, scale=scale, fmt=fmt))["text"] == text


def test_ocr_json_format_and_textless_images(http, clock):
    scan = render_text_image("Line one\nLine two", scale=2)
    job = _submit(http, "/images/ocr", {"model": "Nanonets_Ocr_S_F16", "format": "json"},
                  files={"image": ("scan.png", scan, "image/png")})  # fmt: skip
    payload = http.get(_finish(http, clock, job)["result_url"]).json()
    assert [line["text"] for line in payload["lines"]] == ["Line one", "Line two"]
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 255, (80, 80, 3), dtype=np.uint8))
    assert read_text(_png(noise))["text"] == ""


def test_image_limits_are_422(http):
    def post(image, name="a.png", path="/images/ocr", model="Nanonets_Ocr_S_F16"):
        return http.post(path, data={"model": model}, files={"image": (name, image, "image/png")})

    assert post(_png(Image.new("RGB", (40, 200), "white"))).status_code == 422  # < 64 px
    tiff = _png(Image.new("RGB", (100, 100), "white"), "TIFF")
    r = post(tiff, "a.tiff")
    assert r.status_code == 422 and "type" in r.json()["errors"]["image"][0]
    assert post(b"\0" * (10 * 1024 * 1024 + 1)).status_code == 422
    wrong = post(_png(Image.new("RGB", (100, 100))), path="/images/upscales", model="Ben2")
    assert wrong.status_code == 422 and "model" in wrong.json()["errors"]


def test_background_removal_and_upscale(http, clock):
    img = Image.new("RGB", (120, 80), (0, 200, 0))
    ImageDraw.Draw(img).ellipse((30, 15, 90, 65), fill=(200, 30, 30))
    png = _png(img)
    job = _submit(http, "/images/background-removals", {"model": "Ben2"},
                  files={"image": ("a.png", png, "image/png")})  # fmt: skip
    out = Image.open(io.BytesIO(http.get(_finish(http, clock, job)["result_url"]).content))
    assert out.mode == "RGBA" and out.size == (120, 80)
    assert out.getpixel((2, 2))[3] == 0 and out.getpixel((60, 40))[3] == 255
    job = _submit(http, "/images/upscales", {"model": "RealESRGAN_x4"},
                  files={"image": ("a.png", png, "image/png")})  # fmt: skip
    big = Image.open(io.BytesIO(http.get(_finish(http, clock, job)["result_url"]).content))
    assert big.format == "PNG" and big.size == (480, 320)
    price = http.post("/images/ocr/price", data={"model": "Nanonets_Ocr_S_F16"},
                      files={"image": ("a.png", _png(Image.new("RGB", (1024, 1024))), "image/png")})  # fmt: skip
    assert price.json()["data"]["price"] == pytest.approx(0.00928, abs=1e-5)


def test_scripted_job_failures(http, emu, clock):
    emu.native.fail_next("TIMEOUT", None)
    form = {"source_url": PODCAST, "model": "WhisperLargeV3", "include_ts": "false"}
    first = _finish(http, clock, _submit(http, "/audio/transcriptions", form))
    assert first["error_code"] == "WORKER_TIMEOUT" and first["retryable"] is True
    assert _finish(http, clock, _submit(http, "/audio/transcriptions", form))["status"] == "done"
    with pytest.raises(ValueError, match="Unknown error_reason"):
        emu.native.fail_next("NOPE")
