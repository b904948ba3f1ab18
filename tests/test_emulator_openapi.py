"""Emulator responses validated against OpenAI's OpenAPI schemas (/work/shared subset).

The subset file is looked up at /work/shared/openai-openapi-subset.yaml or through the
``DEAPI_OPENAPI_SUBSET`` environment variable; the tests skip when it is absent.
"""

from __future__ import annotations

import base64
import io
import os
import pathlib
from typing import Any

import httpx
import pytest
from PIL import Image

from deapi_ds.emulator import Emulator

yaml = pytest.importorskip("yaml")
openapi_schema_validator = pytest.importorskip("openapi_schema_validator")

SPEC_PATH = pathlib.Path(
    os.environ.get("DEAPI_OPENAPI_SUBSET", "/work/shared/openai-openapi-subset.yaml")
)
AUTH = {"Authorization": "Bearer dpn-sk-schema"}


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    if not SPEC_PATH.exists():
        pytest.skip(f"OpenAPI subset not found at {SPEC_PATH}")
    return yaml.safe_load(SPEC_PATH.read_text())


def validate(spec: dict[str, Any], component: str, instance: Any) -> None:
    """Validate against components/schemas/<component>, resolving $refs inside the spec."""
    schema = {"$ref": f"#/components/schemas/{component}", "components": spec["components"]}
    validator = openapi_schema_validator.OAS31Validator(schema)
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors[:5])


def response_ref(spec: dict[str, Any], path: str, method: str) -> str:
    content = spec["paths"][path][method]["responses"]["200"]["content"]["application/json"]
    return content["schema"]["$ref"].rsplit("/", 1)[-1]


@pytest.fixture
def client():
    emu = Emulator(video_polls_to_complete=1)
    with httpx.Client(transport=emu.transport(), base_url="http://emu/v1", headers=AUTH) as c:
        yield c


def test_validator_catches_a_wrong_shape(spec: dict[str, Any]) -> None:
    with pytest.raises(AssertionError):
        validate(spec, "ListModelsResponse", {"object": "list", "data": [{"id": 1}]})


def test_models(spec: dict[str, Any], client: httpx.Client) -> None:
    assert response_ref(spec, "/models", "get") == "ListModelsResponse"
    validate(spec, "ListModelsResponse", client.get("/models").json())
    validate(spec, "Model", client.get("/models/Kokoro").json())


def test_embeddings(spec: dict[str, Any], client: httpx.Client) -> None:
    assert response_ref(spec, "/embeddings", "post") == "CreateEmbeddingResponse"
    body = client.post("/embeddings", json={"model": "Bge_M3_FP16", "input": ["a", "b"]}).json()
    validate(spec, "CreateEmbeddingResponse", body)
    # The request the emulator accepted is itself valid for OpenAI's request schema.
    validate(spec, "CreateEmbeddingRequest", {"model": "Bge_M3_FP16", "input": ["a", "b"]})


@pytest.mark.parametrize("response_format", ["url", "b64_json"])
def test_images(spec: dict[str, Any], client: httpx.Client, response_format: str) -> None:
    assert response_ref(spec, "/images/generations", "post") == "ImagesResponse"
    payload = {
        "model": "Flux1schnell",
        "prompt": "x",
        "size": "256x256",
        "n": 2,
        "response_format": response_format,
    }
    validate(spec, "ImagesResponse", client.post("/images/generations", json=payload).json())
    source = io.BytesIO()
    Image.new("RGB", (128, 128)).save(source, "PNG")
    edit = client.post(
        "/images/edits",
        files={"image": ("a.png", source.getvalue(), "image/png")},
        data={"model": "QwenImageEdit_Plus_NF4", "prompt": "x", "response_format": response_format},
    ).json()
    validate(spec, "ImagesResponse", edit)


def test_transcriptions(spec: dict[str, Any], client: httpx.Client) -> None:
    audio = client.post(
        "/audio/speech", json={"model": "Kokoro", "input": "One. Two three.", "voice": "nova"}
    ).content
    form = {
        "model": "WhisperLargeV3Ct2",
        "response_format": "verbose_json",
        "timestamp_granularities[]": ["word", "segment"],
    }
    verbose = client.post(
        "/audio/transcriptions", files={"file": ("a.mp3", audio)}, data=form
    ).json()
    validate(spec, "CreateTranscriptionResponseVerboseJson", verbose)
    assert verbose["segments"] and verbose["words"]
    plain = client.post(
        "/audio/transcriptions", files={"file": ("a.mp3", audio)}, data={"model": "WhisperLargeV3"}
    ).json()
    validate(spec, "CreateTranscriptionResponseJson", plain)


def test_video_resource(spec: dict[str, Any], client: httpx.Client) -> None:
    assert response_ref(spec, "/videos", "post") == "VideoResource"
    assert response_ref(spec, "/videos/{video_id}", "get") == "VideoResource"
    created = client.post(
        "/videos",
        json={"model": "Ltx2_3_22B_Dist_INT8", "prompt": "x", "size": "1280x720", "seconds": "8"},
    ).json()
    validate(spec, "VideoResource", created)
    done = client.get(f"/videos/{created['id']}").json()
    assert done["status"] == "completed"
    validate(spec, "VideoResource", done)
    failed = client.post(
        "/videos", json={"prompt": "fail", "size": "720x1280", "seconds": "4"}
    ).json()
    failed = client.get(f"/videos/{failed['id']}").json()
    assert failed["status"] == "failed"
    validate(spec, "VideoResource", failed)


def test_errors(spec: dict[str, Any], client: httpx.Client) -> None:
    for response in (
        client.post("/embeddings", json={"model": "Bge_M3_FP16", "input": ""}),
        client.post("/chat/completions", json={}),
        client.get("/models", headers={"Authorization": ""}),
        client.get("/videos/video_nope"),
    ):
        assert response.status_code >= 400
        validate(spec, "ErrorResponse", response.json())


def test_base64_embedding_decodes_to_float32(client: httpx.Client) -> None:
    body = client.post(
        "/embeddings", json={"model": "Bge_M3_FP16", "input": "x", "encoding_format": "base64"}
    ).json()
    assert len(base64.b64decode(body["data"][0]["embedding"])) == 1024 * 4
