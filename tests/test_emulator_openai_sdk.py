"""The official ``openai`` SDK runs the seed document's examples against the loopback emulator.

Each example is copied from /work/shared/seed/deapi-openai-compatibility.txt; only base_url
and api_key differ (and ``max_retries=0`` so that a failure shows at once).
"""

from __future__ import annotations

import base64
import io
import warnings

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

openai = pytest.importorskip("openai")
from openai import OpenAI  # noqa: E402

from deapi_ds.emulator import Emulator, Fault, embed_texts  # noqa: E402

API_KEY = "dpn-sk-2206|ixoAULVrhtest"


@pytest.fixture(scope="module")
def emulator():
    emu = Emulator(video_polls_to_complete=2)
    with emu.serve() as server:
        emu.base_url = server.base_url  # type: ignore[attr-defined]
        yield emu


@pytest.fixture
def client(emulator: Emulator) -> OpenAI:
    return OpenAI(api_key=API_KEY, base_url=emulator.base_url, max_retries=0)  # type: ignore[attr-defined]


def test_quick_start_image_url(client: OpenAI) -> None:
    # Generate an image — same call as OpenAI
    response = client.images.generate(
        model="Flux1schnell",
        prompt="A futuristic city at sunset, cinematic lighting",
        size="1024x1024",
        n=1,
    )
    print(response.data[0].url)
    assert response.data[0].url.startswith("http://127.0.0.1:")
    import httpx

    png = httpx.get(response.data[0].url).content
    assert Image.open(io.BytesIO(png)).size == (1024, 1024)


def test_migration_image_generation(client: OpenAI) -> None:
    response = client.images.generate(
        model="Flux1schnell",  # ← deAPI model ID
        prompt="A cozy cabin in the woods",
        size="1024x1024",
        n=1,
    )
    assert len(response.data) == 1
    b64 = client.images.generate(
        model="ZImageTurbo_INT8", prompt="A cozy cabin", size="512x512", response_format="b64_json"
    )
    assert Image.open(io.BytesIO(base64.b64decode(b64.data[0].b64_json))).size == (512, 512)


def test_text_to_speech(client: OpenAI) -> None:
    audio = client.audio.speech.create(
        model="Kokoro",
        voice="alloy",  # OpenAI voice aliases supported: alloy, echo, fable, onyx, nova, shimmer
        input="Hello world",
    )
    data = audio.read()
    assert sf.info(io.BytesIO(data)).duration > 0.3
    assert audio.response.headers["content-type"] == "audio/mpeg"


def test_transcription_with_a_file(client: OpenAI, tmp_path) -> None:
    spoken = client.audio.speech.create(model="Kokoro", voice="bf_emma", input="Welcome to deAPI.")
    (tmp_path / "audio.mp3").write_bytes(spoken.read())

    with open(tmp_path / "audio.mp3", "rb") as f:
        transcript = client.audio.transcriptions.create(
            model="WhisperLargeV3",
            file=f,
        )
    print(transcript.text)
    assert transcript.text == "Welcome to deAPI."

    with open(tmp_path / "audio.mp3", "rb") as f:
        verbose = client.audio.transcriptions.create(
            model="WhisperLargeV3Ct2",
            file=f,
            response_format="verbose_json",
            timestamp_granularities=["word", "segment"],
        )
    assert verbose.duration > 0 and verbose.segments and verbose.words
    with open(tmp_path / "audio.mp3", "rb") as f:
        text = client.audio.transcriptions.create(
            model="WhisperLargeV3", file=f, response_format="text"
        )
    assert str(text).strip() == "Welcome to deAPI."


def test_embeddings(client: OpenAI) -> None:
    response = client.embeddings.create(
        model="Bge_M3_FP16",
        input="The quick brown fox",
    )

    # Vector dimension: 1024
    print(len(response.data[0].embedding))  # → 1024
    assert len(response.data[0].embedding) == 1024
    np.testing.assert_allclose(
        response.data[0].embedding, embed_texts(["The quick brown fox"])[0], atol=1e-6
    )
    floats = client.embeddings.create(
        model="Bge_M3_FP16", input=["a", "b c"], encoding_format="float"
    )
    raw = client.embeddings.create(
        model="Bge_M3_FP16", input=["a", "b c"], encoding_format="base64"
    )
    assert [d.index for d in floats.data] == [0, 1]
    decoded = np.frombuffer(base64.b64decode(raw.data[1].embedding), "<f4")
    np.testing.assert_allclose(decoded, floats.data[1].embedding, atol=1e-7)
    assert floats.usage.total_tokens == floats.usage.prompt_tokens > 0


def test_models_list(client: OpenAI) -> None:
    ids = [model.id for model in client.models.list()]
    assert "Flux1schnell" in ids and "Kokoro" in ids
    assert client.models.retrieve("Bge_M3_FP16").owned_by == "deapi"


def test_environment_variables(emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", emulator.base_url)  # type: ignore[attr-defined]
    client = OpenAI(max_retries=0)
    assert client.embeddings.create(model="Bge_M3_FP16", input="x").data[0].index == 0


def test_image_edit(client: OpenAI) -> None:
    source = io.BytesIO()
    Image.new("RGB", (256, 256), (10, 120, 200)).save(source, "PNG")
    result = client.images.edit(
        model="Flux_2_Klein_4B_BF16",
        image=[
            ("a.png", source.getvalue(), "image/png"),
            ("b.png", source.getvalue(), "image/png"),
        ],
        prompt="Add a red hat",
        response_format="b64_json",
    )
    assert Image.open(io.BytesIO(base64.b64decode(result.data[0].b64_json))).size == (256, 256)
    with pytest.raises(openai.BadRequestError, match="Inpainting"):
        client.images.edit(
            model="Flux_2_Klein_4B_BF16",
            image=("a.png", source.getvalue(), "image/png"),
            mask=("m.png", source.getvalue(), "image/png"),
            prompt="x",
        )


def test_videos(client: OpenAI) -> None:
    if not hasattr(client, "videos"):
        pytest.skip("this openai SDK has no videos resource")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        video = client.videos.create(
            model="Ltx2_3_22B_Dist_INT8",
            prompt="A calico cat playing a piano on stage",
            size="256x256",
            seconds="4",
        )
        assert video.id.startswith("video_") and video.status == "queued"
        video = client.videos.retrieve(video.id)
        assert video.status == "in_progress" and video.progress == 50
        video = client.videos.retrieve(video.id)
        assert video.status == "completed"
        content = client.videos.download_content(video_id=video.id)
        assert content.read()[4:8] == b"ftyp"
        polled = client.videos.create_and_poll(
            model="Ltx2_3_22B_Dist_INT8", prompt="this will fail", size="256x256", seconds="2"
        )
        assert polled.status == "failed" and polled.error is not None


def test_sdk_error_types(client: OpenAI, emulator: Emulator) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.images.generate(model="Flux1schnell", prompt="x", size="512x512", n=5)
    assert info.value.status_code == 400 and info.value.body["param"] == "n"
    with pytest.raises(openai.NotFoundError, match="LLM"):
        client.chat.completions.create(model="x", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="text-embedding-3-small", input="x")
    bad = OpenAI(api_key="sk-openai-key", base_url=emulator.base_url, max_retries=0)  # type: ignore[attr-defined]
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()
    emulator.configure("embeddings", script=[Fault(status=429, retry_after="2")])
    with pytest.raises(openai.RateLimitError) as limited:
        client.embeddings.create(model="Bge_M3_FP16", input="x")
    assert limited.value.response.headers["retry-after"] == "2"
    emulator.configure("embeddings", script=["drop"])
    with pytest.raises(openai.APIConnectionError):
        client.embeddings.create(model="Bge_M3_FP16", input="x")
