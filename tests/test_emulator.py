"""Tests of deapi_ds.emulator: every endpoint's success and error paths, faults, rate limits,
stats, the httpx transport (sync + async), the loopback server and the import rule."""

from __future__ import annotations

import ast
import base64
import http.client
import io
import json
import pathlib
import random
import threading
import time

import anyio
import httpx
import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from deapi_ds.emulator import ENDPOINTS, Emulator, Fault, count_tokens, embed_texts

KEY = "dpn-sk-test|secret"
AUTH = {"Authorization": f"Bearer {KEY}"}
BASE = "https://oai.deapi.ai/v1"


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def emu(clock: FakeClock) -> Emulator:
    return Emulator(clock=clock)


@pytest.fixture
def client(emu: Emulator):
    with httpx.Client(transport=emu.transport(), base_url=BASE, headers=AUTH) as c:
        yield c


def embed(client: httpx.Client, inputs, **extra) -> httpx.Response:
    return client.post("/embeddings", json={"model": "Bge_M3_FP16", "input": inputs, **extra})


def error_of(response: httpx.Response) -> dict:
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]


def png_bytes(width: int, height: int, color=(200, 30, 30)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), color).save(out, "PNG")
    return out.getvalue()


def speech(client: httpx.Client, text: str, **extra) -> httpx.Response:
    payload = {"model": "Kokoro", "input": text, "voice": "alloy", **extra}
    return client.post("/audio/speech", json=payload)


# ----------------------------------------------------------------------------- models, auth


def test_models_list_and_get(client: httpx.Client) -> None:
    body = client.get("/models").json()
    ids = [m["id"] for m in body["data"]]
    assert body["object"] == "list"
    for slug in (
        "Flux1schnell",
        "ZImageTurbo_INT8",
        "Flux_2_Klein_4B_BF16",
        "QwenImageEdit_Plus_NF4",
        "Kokoro",
        "WhisperLargeV3",
        "WhisperLargeV3Ct2",
        "Bge_M3_FP16",
        "Ltx2_3_22B_Dist_INT8",
        "Ltxv_13B_0_9_8_Distilled_FP8",
    ):
        assert slug in ids
    assert all(m["object"] == "model" and m["owned_by"] == "deapi" for m in body["data"])
    assert client.get("/models/Kokoro").json()["id"] == "Kokoro"
    missing = client.get("/models/dall-e-3")
    assert missing.status_code == 404
    assert error_of(missing)["code"] == "model_not_found"


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer sk-openai"},
        {"Authorization": "dpn-sk-x"},
        {"Authorization": "Bearer dpn-sk-"},
    ],
)
def test_missing_or_malformed_key_is_401(emu: Emulator, headers: dict) -> None:
    with httpx.Client(transport=emu.transport(), base_url=BASE, headers=headers) as c:
        r = c.get("/models")
    assert r.status_code == 401
    err = error_of(r)
    assert "sk-openai" not in err["message"] or "***" in err["message"]
    assert emu.stats("models")["errors"] == 1 and emu.stats("models")["ok"] == 0


def test_fixed_api_key_needs_exact_match() -> None:
    emu = Emulator(api_key="dpn-sk-one")
    ok = emu.handle("GET", "/v1/models", {"Authorization": "Bearer dpn-sk-one"}, b"")
    bad = emu.handle("GET", "/v1/models", {"Authorization": "Bearer dpn-sk-two"}, b"")
    assert (ok.status, bad.status) == (200, 401)
    assert "dpn-sk-two" not in bad.text  # the key is redacted


def test_unknown_route_chat_and_files(client: httpx.Client) -> None:
    r = client.post("/chat/completions", json={"model": "x", "messages": []})
    assert r.status_code == 404
    assert "LLM" in error_of(r)["message"]
    assert client.get("/nothing/here").status_code == 404
    assert client.post("/files", files={"file": ("a.txt", b"x")}).status_code == 404
    assert client.get("/embeddings").status_code == 404  # wrong method


def test_native_error_style(clock: FakeClock) -> None:
    emu = Emulator(clock=clock, error_style="native")
    body = json.dumps({"model": "Bge_M3_FP16", "input": ""}).encode()
    r = emu.handle("POST", "/v1/embeddings", AUTH, body)
    assert r.status == 422
    assert r.json()["errors"]["input"] and "message" in r.json()
    assert emu.handle("GET", "/v1/models", {}, b"").json() == {"message": "Unauthenticated."}
    emu.configure("models", rpm=1)
    emu.handle("GET", "/v1/models", AUTH, b"")
    limited = emu.handle("GET", "/v1/models", AUTH, b"")
    assert limited.status == 429 and limited.json() == {"message": "Too Many Attempts."}


# ----------------------------------------------------------------------------- embeddings


def test_embeddings_float_and_base64_agree(client: httpx.Client) -> None:
    texts = ["The quick brown fox", "jumps over the lazy dog"]
    floats = embed(client, texts).json()
    b64 = embed(client, texts, encoding_format="base64").json()
    assert [d["index"] for d in floats["data"]] == [0, 1]
    a = np.array([d["embedding"] for d in floats["data"]])
    b = np.stack([np.frombuffer(base64.b64decode(d["embedding"]), "<f4") for d in b64["data"]])
    assert a.shape == b.shape == (2, 1024)
    np.testing.assert_allclose(a, b, atol=1e-8)
    np.testing.assert_allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-6)
    expected = sum(count_tokens(t) for t in texts)
    assert floats["usage"] == {"prompt_tokens": expected, "total_tokens": expected}
    assert floats["model"] == "Bge_M3_FP16" and floats["object"] == "list"


def test_embeddings_deterministic_and_lexical(client: httpx.Client) -> None:
    one = embed(client, "red apple pie recipe", encoding_format="base64").json()
    two = embed(client, "red apple pie recipe", encoding_format="base64").json()
    assert one["data"] == two["data"]
    m = embed_texts(["baking an apple pie", "apple pie with cinnamon", "stock market crash today"])
    assert m[0] @ m[1] > 0.3 > m[0] @ m[2]
    assert m.dtype == np.float32


def test_count_tokens_estimate() -> None:
    assert count_tokens("The quick brown fox") == 19 // 4 + 4
    assert count_tokens("") == 1
    assert count_tokens("héllo") == len("héllo".encode()) // 4 + 1


@pytest.mark.parametrize(
    ("inputs", "fragment"),
    [
        ("", "empty string"),
        (["ok", ""], "input[1]"),
        ([], "empty array"),
        ([[1, 2, 3]], "Token arrays"),
        ([1, 2, 3], "Token arrays"),
        (["x"] * 2049, "2048"),
        (["word " * 7000], "8192"),
        (["word " * 3000] * 60, "300000"),
        (None, "input"),
        ({"a": 1}, "string or an array"),
    ],
)
def test_embeddings_input_errors(client: httpx.Client, emu: Emulator, inputs, fragment) -> None:
    r = embed(client, inputs)
    assert r.status_code == 400
    err = error_of(r)
    assert err["param"] == "input" and fragment in err["message"]
    assert emu.stats("embeddings")["inputs"] == 0  # nothing billed for a rejected request


def test_embeddings_limits_accept_the_maximum(client: httpx.Client) -> None:
    assert embed(client, ["x"] * 2048, encoding_format="base64").status_code == 200


def test_embeddings_other_errors(client: httpx.Client) -> None:
    r = client.post("/embeddings", json={"model": "text-embedding-3-small", "input": "x"})
    assert r.status_code == 404 and error_of(r)["code"] == "model_not_found"
    r = client.post("/embeddings", json={"model": "Kokoro", "input": "x"})
    assert r.status_code == 400 and error_of(r)["param"] == "model"
    assert error_of(embed(client, "x", encoding_format="int8"))["param"] == "encoding_format"
    assert error_of(embed(client, "x", dimensions=256))["param"] == "dimensions"
    assert embed(client, "x", dimensions=1024).status_code == 200
    r = client.post(
        "/embeddings", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 400 and "JSON" in error_of(r)["message"]


# ----------------------------------------------------------------------------- images


def test_generate_b64_png_sizes_and_determinism(client: httpx.Client, emu: Emulator) -> None:
    payload = {
        "model": "Flux1schnell",
        "prompt": "a cozy cabin",
        "size": "384x256",
        "n": 2,
        "response_format": "b64_json",
        "style": "vivid",
    }
    body = client.post("/images/generations", json=payload).json()
    pngs = [base64.b64decode(d["b64_json"]) for d in body["data"]]
    assert isinstance(body["created"], int) and len(pngs) == 2
    for png in pngs:
        assert Image.open(io.BytesIO(png)).size == (384, 256)
    assert pngs[0] != pngs[1]
    again = client.post("/images/generations", json=payload).json()
    assert [d["b64_json"] for d in again["data"]] == [d["b64_json"] for d in body["data"]]
    seeded = client.post("/images/generations", json={**payload, "n": 1, "seed": 42}).json()
    assert seeded["data"][0]["b64_json"] != body["data"][0]["b64_json"]
    other = client.post("/images/generations", json={**payload, "n": 1, "prompt": "a red car"})
    assert other.json()["data"][0]["b64_json"] != body["data"][0]["b64_json"]
    assert emu.stats("images.generations")["images"] == 2 + 2 + 1 + 1


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"n": 5}, "n"),
        ({"n": 0}, "n"),
        ({"size": "500x500"}, "size"),  # not a multiple of 128 for Flux1schnell
        ({"size": "4096x4096"}, "size"),
        ({"size": "big"}, "size"),
        ({"steps": 11}, "steps"),
        ({"response_format": "png"}, "response_format"),
        ({"prompt": ""}, "prompt"),
        ({"model": "QwenImageEdit_Plus_NF4"}, "model"),
    ],
)
def test_generate_errors(client: httpx.Client, change: dict, param: str) -> None:
    payload = {"model": "Flux1schnell", "prompt": "x", "size": "256x256", **change}
    r = client.post("/images/generations", json=payload)
    assert r.status_code == 400
    assert error_of(r)["param"] == param


def test_generate_model_profiles(client: httpx.Client) -> None:
    def status(model: str, size: str, **extra) -> int:
        payload = {
            "model": model,
            "prompt": "x",
            "size": size,
            "response_format": "b64_json",
            **extra,
        }
        return client.post("/images/generations", json=payload).status_code

    assert status("ZImageTurbo_INT8", "272x256") == 200  # step 16
    assert status("Flux1schnell", "272x256") == 400  # step 128
    assert status("Flux_2_Klein_4B_BF16", "1552x256") == 400  # max 1536
    assert status("Flux_2_Klein_4B_BF16", "256x256", steps=4) == 200
    assert status("Flux_2_Klein_4B_BF16", "256x256", steps=8) == 400
    assert status("Flux1schnell", "256x256", steps=4, negative_prompt="blur", seed=-1) == 200


def test_image_urls_are_served_and_expire(
    emu: Emulator, client: httpx.Client, clock: FakeClock
) -> None:
    body = client.post(
        "/images/generations", json={"model": "Flux1schnell", "prompt": "x", "size": "256x256"}
    ).json()
    url = body["data"][0]["url"]
    assert url.startswith(BASE + "/files/images/") and url.endswith(".png")
    with httpx.Client(transport=emu.transport()) as anonymous:  # URLs need no key
        first = anonymous.get(url)
        assert first.status_code == 200 and first.headers["content-type"] == "image/png"
        assert Image.open(io.BytesIO(first.content)).size == (256, 256)
        clock.now += emu.url_ttl + 1
        assert anonymous.get(url).status_code == 410
        assert anonymous.get(BASE + "/files/images/img_unknown.png").status_code == 404


def test_edits_multi_image_and_output_size(client: httpx.Client, emu: Emulator) -> None:
    files = [("image[]", (f"in{i}.png", png_bytes(320, 272), "image/png")) for i in range(3)]
    data = {
        "model": "Flux_2_Klein_4B_BF16",
        "prompt": "make it blue",
        "response_format": "b64_json",
    }
    r = client.post("/images/edits", files=files, data=data)
    assert r.status_code == 200, r.text
    out = Image.open(io.BytesIO(base64.b64decode(r.json()["data"][0]["b64_json"])))
    assert out.size == (320, 272)
    snapped = [("image", ("odd.png", png_bytes(301, 200), "image/png"))]
    r = client.post("/images/edits", files=snapped, data=data)
    out = Image.open(io.BytesIO(base64.b64decode(r.json()["data"][0]["b64_json"])))
    assert out.size == (304, 256)  # the input size snapped to Klein's 16-px grid and 256 minimum
    one = [("image", ("in.png", png_bytes(300, 300), "image/png"))]
    r = client.post("/images/edits", files=one, data={**data, "model": "QwenImageEdit_Plus_NF4"})
    assert r.status_code == 200
    r = client.post("/images/edits", files=one, data={**data, "size": "512x256", "n": "2"})
    sizes = {Image.open(io.BytesIO(base64.b64decode(d["b64_json"]))).size for d in r.json()["data"]}
    assert sizes == {(512, 256)} and emu.stats("images.edits")["images"] == 5


@pytest.mark.parametrize(
    ("files", "data", "param", "fragment"),
    [
        (
            [
                ("image", ("a.png", png_bytes(64, 64), "image/png")),
                ("mask", ("m.png", png_bytes(64, 64), "image/png")),
            ],
            {},
            "mask",
            "Inpainting (mask) is not supported",
        ),
        (
            [("image", ("a.png", png_bytes(64, 64), "image/png"))],
            {"model": "Flux1schnell"},
            "model",
            "text-to-image",
        ),
        (
            [("image[]", (f"{i}.png", png_bytes(64, 64), "image/png")) for i in range(4)],
            {},
            "image",
            "at most 3",
        ),
        (
            [("image[]", (f"{i}.png", png_bytes(64, 64), "image/png")) for i in range(2)],
            {"model": "QwenImageEdit_Plus_NF4"},
            "image",
            "at most 1",
        ),
        ([("image", ("notes.png", b"not an image at all", "image/png"))], {}, "image", "notes.png"),
        ([("image", ("tiny.png", png_bytes(32, 32), "image/png"))], {}, "image", "tiny.png"),
        (
            [("image", ("a.png", png_bytes(64, 64), "image/png"))],
            {"size": "300x300"},
            "size",
            "multiples of 16",
        ),
        ([("other", ("a.png", png_bytes(64, 64), "image/png"))], {}, "image", "image"),
    ],
)
def test_edit_errors(client: httpx.Client, files, data, param, fragment) -> None:
    form = {"model": "Flux_2_Klein_4B_BF16", "prompt": "edit", **data}
    r = client.post("/images/edits", files=files, data=form)
    assert r.status_code == 400, r.text
    err = error_of(r)
    assert err["param"] == param and fragment in err["message"]


def test_edit_rejects_big_images_and_json(client: httpx.Client) -> None:
    huge = b"\x89PNG" + b"\0" * (10 * 1024 * 1024 + 10)
    r = client.post(
        "/images/edits",
        files={"image": ("big.png", huge)},
        data={"model": "Flux_2_Klein_4B_BF16", "prompt": "x"},
    )
    assert r.status_code == 400 and "big.png" in error_of(r)["message"]
    r = client.post("/images/edits", json={"model": "Flux_2_Klein_4B_BF16", "prompt": "x"})
    assert r.status_code == 400 and "multipart" in error_of(r)["message"]


# ----------------------------------------------------------------------------- speech


@pytest.mark.parametrize(
    ("fmt", "content_type"),
    [("mp3", "audio/mpeg"), ("wav", "audio/wav"), ("flac", "audio/flac"), ("opus", "audio/ogg")],
)
def test_speech_formats_decode(client: httpx.Client, fmt: str, content_type: str) -> None:
    r = speech(client, "Hello world.", response_format=fmt)
    assert r.status_code == 200 and r.headers["content-type"] == content_type
    info = sf.info(io.BytesIO(r.content))
    assert info.duration > 0.3


def test_speech_duration_grows_and_billing(client: httpx.Client, emu: Emulator) -> None:
    short = sf.info(io.BytesIO(speech(client, "Hi there.", response_format="wav").content)).duration
    text = "This sentence is quite a bit longer than the first one. " * 3
    long = sf.info(
        io.BytesIO(speech(client, text, response_format="wav", voice="bf_emma").content)
    ).duration
    assert long > 3 * short
    fast = speech(client, text, response_format="wav", voice="am_adam", speed=2.0).content
    assert sf.info(io.BytesIO(fast)).duration < long
    assert emu.stats("audio.speech")["characters"] == len("Hi there.") + 2 * len(text)
    assert speech(client, "Hello").content == speech(client, "Hello").content  # deterministic


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"voice": "ash"}, "voice"),
        ({"voice": "xx_nobody"}, "voice"),
        ({"response_format": "aac"}, "response_format"),
        ({"response_format": "ogg"}, "response_format"),
        ({"speed": 3.0}, "speed"),
        ({"speed": 0.25}, "speed"),
        ({"input": ""}, "input"),
        ({"input": "a" * 10001}, "input"),
        ({"model": "WhisperLargeV3"}, "model"),
    ],
)
def test_speech_errors(client: httpx.Client, change: dict, param: str) -> None:
    r = speech(client, "Hello", **change)
    assert r.status_code == 400
    assert error_of(r)["param"] == param


def test_speech_formats_are_configurable(clock: FakeClock) -> None:
    emu = Emulator(clock=clock, speech_formats=("mp3",))
    body = json.dumps({"model": "Kokoro", "input": "Hi", "voice": "nova", "response_format": "wav"})
    r = emu.handle("POST", "/v1/audio/speech", AUTH, body.encode())
    assert r.status == 400 and "mp3" in r.json()["error"]["message"]
    with pytest.raises(ValueError, match="speech_formats"):
        Emulator(speech_formats=("mp4",))


# ----------------------------------------------------------------------------- transcription


def transcribe(
    client: httpx.Client, audio: bytes, filename: str = "clip.mp3", **data
) -> httpx.Response:
    form = {"model": "WhisperLargeV3", **data}
    return client.post("/audio/transcriptions", files={"file": (filename, audio)}, data=form)


def test_transcription_round_trip_and_formats(client: httpx.Client, emu: Emulator) -> None:
    text = "Hello world. This is a test of the emulator."
    audio = speech(client, text).content
    r = transcribe(client, audio)
    assert r.status_code == 200 and r.json()["text"] == text
    assert r.json()["usage"]["type"] == "duration"
    plain = transcribe(client, audio, response_format="text")
    assert plain.text == text and plain.headers["content-type"].startswith("text/plain")
    verbose = transcribe(client, audio, response_format="verbose_json").json()
    assert verbose["task"] == "transcribe" and verbose["language"] == "en"
    assert [s["text"].strip() for s in verbose["segments"]] == [
        "Hello world.",
        "This is a test of the emulator.",
    ]
    assert "words" not in verbose  # segment granularity only unless words are requested
    assert (
        0 <= verbose["segments"][0]["start"] < verbose["segments"][0]["end"] <= verbose["duration"]
    )
    srt = transcribe(client, audio, response_format="srt").text
    assert srt.startswith("1\n00:00:") and " --> " in srt
    vtt = transcribe(client, audio, response_format="vtt").text
    assert vtt.startswith("WEBVTT") and "Hello world." in vtt
    stats = emu.stats("audio.transcriptions")
    assert stats["ok"] == 5 and stats["bytes"] == 5 * len(audio)
    assert stats["audio_seconds"] == pytest.approx(5 * verbose["duration"])


def test_transcription_words_need_ct2(client: httpx.Client) -> None:
    audio = speech(client, "Good morning everyone.").content
    r = transcribe(
        client,
        audio,
        model="WhisperLargeV3Ct2",
        response_format="verbose_json",
        **{"timestamp_granularities[]": ["word", "segment"]},
    )
    words = r.json()["words"]
    assert [w["word"].strip(" .") for w in words] == ["Good", "morning", "everyone"]
    assert all(w["start"] < w["end"] for w in words)
    r = transcribe(
        client, audio, response_format="verbose_json", **{"timestamp_granularities[]": ["word"]}
    )
    assert r.status_code == 400 and "WhisperLargeV3Ct2" in error_of(r)["message"]


def test_transcription_errors(clock: FakeClock) -> None:
    emu = Emulator(clock=clock, max_upload_bytes=1000)
    with httpx.Client(transport=emu.transport(), base_url=BASE, headers=AUTH) as c:
        r = transcribe(c, b"\0" * 2000, "long.wav")
        assert r.status_code == 413 and "long.wav" in error_of(r)["message"]
        r = transcribe(c, b"just some text", "notes.mp3")
        assert r.status_code == 400 and "notes.mp3" in error_of(r)["message"]
        assert error_of(r)["param"] == "file"
        assert (
            error_of(transcribe(c, b"x", response_format="diarized_json"))["param"]
            == "response_format"
        )
        assert error_of(transcribe(c, b"x", model="Kokoro"))["param"] == "model"
        assert error_of(transcribe(c, b"x", language="English!"))["param"] == "language"
        r = c.post(
            "/audio/transcriptions",
            data={"model": "WhisperLargeV3", "x": "y"},
            files={"other": ("a", b"1")},
        )
        assert error_of(r)["param"] == "file"
        assert emu.stats("audio.transcriptions")["audio_seconds"] == 0


# ----------------------------------------------------------------------------- videos


def test_video_job_flow(client: httpx.Client, emu: Emulator) -> None:
    created = client.post(
        "/videos",
        json={
            "model": "Ltx2_3_22B_Dist_INT8",
            "prompt": "a cat",
            "size": "256x256",
            "seconds": "4",
        },
    ).json()
    assert created["id"].startswith("video_") and created["object"] == "video"
    assert (created["status"], created["progress"], created["completed_at"]) == ("queued", 0, None)
    early = client.get(f"/videos/{created['id']}/content")
    assert early.status_code == 409 and error_of(early)["code"] == "video_not_ready"
    seen = []
    for _ in range(3):
        r = client.get(f"/videos/{created['id']}")
        seen.append((r.json()["status"], r.json()["progress"]))
    assert seen == [("in_progress", 33), ("in_progress", 66), ("completed", 100)]
    assert (
        r.json()["completed_at"] is not None and r.json()["expires_at"] > r.json()["completed_at"]
    )
    content = client.get(f"/videos/{created['id']}/content")
    assert content.status_code == 200 and content.headers["content-type"] == "video/mp4"
    assert content.content[4:8] == b"ftyp"
    thumb = client.get(f"/videos/{created['id']}/content", params={"variant": "thumbnail"})
    assert thumb.headers["content-type"] == "image/webp"
    assert Image.open(io.BytesIO(thumb.content)).size == (256, 256)
    assert (
        client.get(
            f"/videos/{created['id']}/content", params={"variant": "spritesheet"}
        ).status_code
        == 400
    )
    assert emu.stats("videos")["videos"] == 1 and emu.stats("videos")["video_seconds"] == 4


def test_video_failure_multipart_and_errors(client: httpx.Client, clock: FakeClock) -> None:
    form = {"prompt": "this job will FAIL now", "size": "256x256", "seconds": "2"}
    created = client.post(
        "/videos",
        files={"prompt": (None, form["prompt"]), "size": (None, "256x256"), "seconds": (None, "2")},
    ).json()
    assert created["model"] == "Ltx2_3_22B_Dist_INT8"  # the default video model
    for _ in range(3):
        final = client.get(f"/videos/{created['id']}").json()
    assert final["status"] == "failed" and final["error"]["code"] and final["error"]["message"]
    assert client.get(f"/videos/{created['id']}/content").status_code == 409
    assert client.get("/videos/video_missing").status_code == 404

    def create_status(**change) -> httpx.Response:
        return client.post("/videos", json={"prompt": "x", "size": "256x256", **change})

    assert error_of(create_status(seconds="12"))["param"] == "seconds"  # Ltx2 tops at 10 s
    assert error_of(create_status(seconds="abc"))["param"] == "seconds"
    assert error_of(create_status(size="250x250"))["param"] == "size"
    assert (
        error_of(create_status(model="Ltxv_13B_0_9_8_Distilled_FP8", seconds="8"))["param"]
        == "seconds"
    )
    assert create_status(model="sora-2").status_code == 404
    assert error_of(create_status(prompt=""))["param"] == "prompt"
    emu0 = Emulator(clock=clock, video_polls_to_complete=0)
    body = json.dumps({"prompt": "instant", "size": "256x256"}).encode()
    assert emu0.handle("POST", "/v1/videos", AUTH, body).json()["status"] == "completed"


# ----------------------------------------------------------------------------- faults


def test_script_is_consumed_in_order(emu: Emulator, client: httpx.Client) -> None:
    emu.configure("embeddings", script=[500, 503, None, Fault(status=429, retry_after="3")])
    statuses = [embed(client, "x") for _ in range(5)]
    assert [r.status_code for r in statuses] == [500, 503, 200, 429, 200]
    assert statuses[3].headers["retry-after"] == "3"
    assert "retry-after" not in statuses[0].headers
    assert error_of(statuses[0])["type"] == "server_error"
    stats = emu.stats("embeddings")
    assert (stats["requests"], stats["ok"], stats["errors"], stats["inputs"]) == (5, 2, 3, 2)
    assert client.get("/models").status_code == 200  # other endpoints are unaffected


def test_fault_custom_body_headers_and_validation(emu: Emulator, client: httpx.Client) -> None:
    emu.configure(
        "models",
        script=[Fault(status=502, body="<html>bad gateway</html>", headers={"X-Test": "1"})],
    )
    r = client.get("/models")
    assert (r.status_code, r.text, r.headers["x-test"]) == (502, "<html>bad gateway</html>", "1")
    with pytest.raises(ValueError, match="kind"):
        emu.configure("models", script=["explode"])
    with pytest.raises(ValueError, match="Unknown endpoint"):
        emu.configure("embedding", rpm=3)
    with pytest.raises(ValueError, match="error_rate"):
        emu.configure("models", error_rate=2)
    with pytest.raises(ValueError, match="rpm"):
        emu.configure("models", rpm=0)
    with pytest.raises(ValueError):
        Fault(status=200)


def test_drop_and_truncate_through_transport(emu: Emulator, client: httpx.Client) -> None:
    emu.configure("embeddings", script=["drop", "truncate", None])
    with pytest.raises(httpx.RemoteProtocolError):
        embed(client, ["a", "b"])
    with pytest.raises(httpx.RemoteProtocolError):
        embed(client, ["a", "b"])
    assert embed(client, ["a", "b"]).status_code == 200
    stats = emu.stats("embeddings")
    assert (stats["dropped"], stats["truncated"], stats["ok"], stats["errors"]) == (1, 1, 2, 1)
    assert stats["inputs"] == 4  # the truncated answer was produced, so it is billed


def test_truncated_stream_delivers_half(emu: Emulator, client: httpx.Client) -> None:
    emu.configure("models", script=["truncate"])
    received = b""
    with client.stream("GET", "/models") as r, pytest.raises(httpx.RemoteProtocolError):
        expected = int(r.headers["content-length"])
        for chunk in r.iter_raw():
            received += chunk
    assert 0 < len(received) < expected


def test_embedding_shape_faults(emu: Emulator, client: httpx.Client) -> None:
    texts = [f"text number {i}" for i in range(6)]
    emu.configure("embeddings", script=["shuffle", "short", "wrongdim"])
    shuffled = embed(client, texts).json()["data"]
    indexes = [d["index"] for d in shuffled]
    assert sorted(indexes) == list(range(6)) and indexes != list(range(6))
    reference = embed_texts(texts)
    for item in shuffled:  # each item keeps its true index
        np.testing.assert_allclose(item["embedding"], reference[item["index"]], atol=1e-7)
    assert [d["index"] for d in embed(client, texts).json()["data"]] == [0, 1, 2, 3, 4]
    assert {len(d["embedding"]) for d in embed(client, texts).json()["data"]} == {512}
    emu.configure("embeddings", drop_items=2, wrong_dimension=1000, shuffle_index=True)
    for _ in range(2):
        data = embed(client, texts).json()["data"]
        assert len(data) == 4 and {len(d["embedding"]) for d in data} == {1000}
    emu.reset_faults("embeddings")
    assert len(embed(client, texts).json()["data"]) == 6


def test_error_rate_is_seeded(clock: FakeClock) -> None:
    def run(seed: int) -> list[int]:
        emu = Emulator(clock=clock).configure("models", error_rate=0.3, error_status=503, seed=seed)
        return [emu.handle("GET", "/v1/models", AUTH).status for _ in range(200)]

    first, second = run(7), run(7)
    assert first == second
    assert set(first) == {200, 503}
    assert 30 <= first.count(503) <= 90
    assert run(8) != first


def test_latency_is_slept_by_the_transport(emu: Emulator, client: httpx.Client) -> None:
    emu.configure("models", latency=0.15)
    started = time.perf_counter()
    client.get("/models")
    assert time.perf_counter() - started >= 0.15
    emu.configure("models", latency=(0.0, 0.01))
    response = emu.handle("GET", "/v1/models", AUTH)
    assert 0.0 <= response.latency <= 0.01  # handle() itself never sleeps


def test_rate_limit_with_injected_clock(
    emu: Emulator, client: httpx.Client, clock: FakeClock
) -> None:
    emu.configure("embeddings", rpm=3)
    answers = []
    for _ in range(4):
        answers.append(embed(client, "x"))
        clock.now += 10
    assert [r.status_code for r in answers] == [200, 200, 200, 429]
    assert [r.headers["x-ratelimit-remaining"] for r in answers] == ["2", "1", "0", "0"]
    assert all(r.headers["x-ratelimit-limit"] == "3" for r in answers)
    assert answers[3].headers["retry-after"] == "30"  # first request at t=1000, now t=1030
    assert error_of(answers[3])["code"] == "rate_limit_exceeded"
    clock.now = 1000 + 60  # the first request leaves the window
    assert embed(client, "x").status_code == 200
    assert embed(client, "x").status_code == 429
    assert emu.stats("embeddings")["rate_limited"] == 2
    assert "x-ratelimit-limit" not in client.get("/models").headers  # unlimited endpoint


def test_configure_star_gives_each_endpoint_its_own_script(
    emu: Emulator, client: httpx.Client
) -> None:
    emu.configure(script=[503])
    assert client.get("/models").status_code == 503
    assert embed(client, "x").status_code == 503
    assert client.get("/models").status_code == 200


def test_stats_and_history(emu: Emulator, client: httpx.Client) -> None:
    embed(client, ["one two", "three"])
    embed(client, "")
    stats = emu.stats()
    assert set(stats) == set(ENDPOINTS)
    assert stats["embeddings"]["requests"] == 2 and stats["embeddings"]["inputs"] == 2
    assert stats["embeddings"]["tokens"] == count_tokens("one two") + count_tokens("three")
    assert stats["embeddings"]["bytes_in"] > 0
    assert [h["status"] for h in emu.history] == [200, 400]
    emu.reset_stats()
    assert emu.stats("embeddings")["requests"] == 0 and not emu.history


# ----------------------------------------------------------------------------- async + server


def test_async_transport_parity(emu: Emulator) -> None:
    async def main() -> tuple[list[int], type]:
        emu.configure("embeddings", script=[None, "drop"])
        async with httpx.AsyncClient(transport=emu.transport(), base_url=BASE, headers=AUTH) as c:
            r = await c.post("/embeddings", json={"model": "Bge_M3_FP16", "input": ["a", "b"]})
            try:
                await c.post("/embeddings", json={"model": "Bge_M3_FP16", "input": "a"})
            except httpx.RemoteProtocolError as exc:
                error = type(exc)
            results = []
            async with anyio.create_task_group() as tg:

                async def one() -> None:
                    results.append((await c.get("/models")).status_code)

                for _ in range(8):
                    tg.start_soon(one)
            emu.configure("models", latency=0.1)
            started = time.perf_counter()
            assert (await c.get("/models")).status_code == 200
            assert time.perf_counter() - started >= 0.1  # slept with anyio.sleep
            return [r.status_code, *results], error

    statuses, error = anyio.run(main)
    assert statuses == [200] * 9 and error is httpx.RemoteProtocolError
    assert emu.stats("models")["ok"] == 9


def test_loopback_server_keepalive_faults_and_threads(emu: Emulator) -> None:
    emu.configure("models", script=[None, "drop", "truncate", None])
    with emu.serve() as server, httpx.Client(base_url=server.base_url, headers=AUTH) as c:
        assert server.base_url == f"http://127.0.0.1:{server.port}/v1"
        assert c.get("/models").status_code == 200
        with pytest.raises(httpx.RemoteProtocolError):
            c.get("/models")
        with pytest.raises(httpx.RemoteProtocolError):
            c.get("/models")
        r = c.get("/models")
        assert r.status_code == 200 and int(r.headers["content-length"]) == len(r.content)
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        connection.request("GET", "/v1/models", headers=AUTH)
        connection.getresponse().read()
        first_socket = connection.sock
        for _ in range(3):  # keep-alive: the same socket serves every request
            connection.request("GET", "/v1/models/Kokoro", headers=AUTH)
            answer = connection.getresponse()
            assert answer.status == 200 and answer.read()
            assert connection.sock is first_socket
        connection.close()
        errors: list[BaseException] = []

        def worker() -> None:
            try:
                with httpx.Client(base_url=server.base_url, headers=AUTH) as own:
                    for _ in range(10):
                        assert embed(own, ["a b c"] * 5).status_code == 200
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=worker) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
    stats = emu.stats("embeddings")
    assert stats["requests"] == 40 and stats["inputs"] == 200


def test_server_without_context_manager(emu: Emulator) -> None:
    server = emu.serve()
    try:
        assert httpx.get(server.base_url + "/models", headers=AUTH).status_code == 200
    finally:
        server.close()
    server.close()  # idempotent
    with pytest.raises(httpx.ConnectError):
        httpx.get(server.base_url + "/models", headers=AUTH, timeout=2)


# ----------------------------------------------------------------------------- rules, perf


def test_emulator_imports_nothing_else_from_deapi_ds() -> None:
    package = pathlib.Path(__file__).parents[1] / "deapi_ds" / "emulator"
    files = sorted(package.glob("*.py"))
    assert len(files) >= 6
    for path in files:
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                if node.level == 1:
                    continue  # from . / from ._x: inside deapi_ds.emulator
                module = node.module or ""
                assert node.level == 0, f"{path.name}: relative import above the package"
                assert not module.startswith("deapi_ds") or module.startswith(
                    "deapi_ds.emulator"
                ), path.name
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    name = alias.name
                    assert not name.startswith("deapi_ds") or name.startswith(
                        "deapi_ds.emulator"
                    ), path.name


def test_embeddings_throughput(emu: Emulator, client: httpx.Client) -> None:
    rng = random.Random(0)
    vocab = [f"w{i}" for i in range(20000)]
    texts = [" ".join(rng.choices(vocab, k=30)) for _ in range(2048)]
    embed(client, texts[:10])
    for fmt in ("base64", "float"):
        started = time.perf_counter()
        r = embed(client, texts, encoding_format=fmt)
        elapsed = time.perf_counter() - started
        assert r.status_code == 200 and len(r.json()["data"]) == 2048
        rate = 2048 / elapsed
        print(f"embeddings via transport ({fmt}): {rate:,.0f} inputs/s")
        assert rate > 800, f"{fmt}: only {rate:.0f} inputs/s"


def test_clients_that_vanish_do_not_print_tracebacks(capfd) -> None:
    """A client that resets its connection (a dropped pool, Ctrl-C) is normal for a server."""
    import socket
    import struct
    import time

    with Emulator().serve() as server:
        for _ in range(3):
            sock = socket.create_connection((server.host, server.port))
            sock.sendall(b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
            time.sleep(0.05)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()  # RST while the server reads the body
        time.sleep(0.2)
        answer = httpx.get(
            server.base_url + "/models", headers={"Authorization": "Bearer dpn-sk-1"}
        )
        assert answer.status_code == 200
    err = capfd.readouterr().err
    assert "Traceback" not in err and "ConnectionResetError" not in err
