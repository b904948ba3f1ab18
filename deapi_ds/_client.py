"""``Client`` and ``AsyncClient``: one method per endpoint of deAPI's OpenAI-compatible API.

Payload building and response parsing live in plain functions (no I/O) shared by both clients;
``AsyncClient`` awaits them through the engine (rate limit, concurrency, retries) and the
transport; ``Client`` runs the same coroutines on deapi_ds's private event-loop thread, so it works
in a Jupyter cell. ::

    >>> import deapi_ds
    >>> client = deapi_ds.Client()                      # key from DEAPI_API_KEY
    >>> out = client.embeddings(["hello", "world"], model="Bge_M3_FP16")
    >>> out.matrix.shape, out.matrix.dtype
    ((2, 1024), dtype('float32'))
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import mimetypes
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

import numpy as np

from ._config import Secret, Settings, check_overrides, get_config
from ._engine import Engine, RetryPolicy, run_sync
from ._exceptions import InvalidParameterError, ResponseValidationError
from ._profiles import ProviderProfile, get_profile
from ._quota import QuotaGuard
from ._transport import HTTPResult, Transport

__all__ = [
    "AsyncClient",
    "Client",
    "EmbeddingsResult",
    "GeneratedImage",
    "ImagesResult",
    "ModelInfo",
    "SpeechResult",
    "Transcription",
    "Video",
]

T = TypeVar("T")

_KiB = 1024
_MiB = 1024 * 1024

#: The largest answer (decoded) each endpoint can legitimately send, for its request size.
#: A larger one (a gzip bomb, a broken server) fails fast instead of filling memory.
MAX_RESPONSE_BYTES: dict[str, int] = {
    "models": 16 * _MiB,
    "transcription": 64 * _MiB,  # verbose_json with word timestamps of hours of audio
    "video.job": 4 * _MiB,
    "video.content": 1024 * _MiB,
    "download": 256 * _MiB,
}


def embeddings_budget(n_inputs: int) -> int:
    """Bytes an embeddings answer for ``n_inputs`` may hold: 256 KiB per vector (8192 float
    dimensions as JSON text) plus 1 MiB."""
    return _MiB + max(1, n_inputs) * 256 * _KiB


def images_budget(n: int) -> int:
    """Bytes an images answer of ``n`` images may hold: 64 MiB per base64 image plus 1 MiB."""
    return _MiB + max(1, n) * 64 * _MiB


def speech_budget(characters: int) -> int:
    """Bytes a speech answer may hold: 32 MiB plus 64 KiB per character (48 kHz float stereo
    WAV at a fast reading pace), at most 1 GiB."""
    return min(1024 * _MiB, 32 * _MiB + max(0, characters) * 64 * _KiB)


# --- typed results ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    id: str
    created: int | None = None
    owned_by: str | None = None


@dataclasses.dataclass(frozen=True, repr=False)
class EmbeddingsResult:
    """Vectors as a C-contiguous float32 matrix, row i for input i."""

    matrix: np.ndarray
    model: str
    prompt_tokens: int | None
    total_tokens: int | None
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)
    #: rows holding a valid vector (all True for a complete answer)
    present: np.ndarray | None = None
    #: rows whose vector held NaN, inf or null values
    invalid: np.ndarray | None = None
    problems: list[str] = dataclasses.field(default_factory=list)

    def __repr__(self) -> str:
        return (
            f"EmbeddingsResult(model={self.model!r}, shape={self.matrix.shape}, "
            f"total_tokens={self.total_tokens})"
        )


@dataclasses.dataclass(frozen=True, repr=False)
class GeneratedImage:
    data: bytes | None
    url: str | None = None
    revised_prompt: str | None = None

    def __repr__(self) -> str:
        size = f"{len(self.data)} bytes" if self.data is not None else f"url={self.url!r}"
        return f"GeneratedImage({size})"


@dataclasses.dataclass(frozen=True)
class ImagesResult:
    created: int | None
    images: list[GeneratedImage]
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict, repr=False)


@dataclasses.dataclass(frozen=True, repr=False)
class SpeechResult:
    audio: bytes
    content_type: str
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def __repr__(self) -> str:
        return f"SpeechResult({len(self.audio)} bytes, {self.content_type!r})"


@dataclasses.dataclass(frozen=True)
class Transcription:
    text: str
    language: str | None = None
    duration: float | None = None
    segments: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    words: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    raw: Any = dataclasses.field(default=None, repr=False)
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict, repr=False)


@dataclasses.dataclass(frozen=True)
class Video:
    id: str
    status: str
    progress: int | None = None
    model: str | None = None
    size: str | None = None
    seconds: str | None = None
    created_at: int | None = None
    completed_at: int | None = None
    expires_at: int | None = None
    error: dict[str, Any] | None = None
    raw: Mapping[str, Any] = dataclasses.field(default_factory=dict, repr=False)
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict, repr=False)

    @property
    def done(self) -> bool:
        return self.status in ("completed", "failed", "cancelled", "expired")


# --- payloads and parsing (no I/O) -----------------------------------------------------------


def decode_embeddings(
    payload: Mapping[str, Any],
    n_inputs: int,
    *,
    endpoint: str = "POST /v1/embeddings",
    strict: bool = True,
    dimension: int | None = None,
) -> tuple[np.ndarray, str, int | None, int | None]:
    """Assemble ``data[*].embedding`` by ``index`` into an (n, dim) float32 matrix.

    Accepts float lists and base64 (little-endian float32). With ``strict=True`` any count,
    index or dimension mismatch raises :class:`ResponseValidationError`. With ``strict=False``
    the valid items are kept (see :func:`decode_embeddings_partial`). A response is never shifted
    onto other rows.
    """
    matrix, present, invalid, problems, model, prompt, total = decode_embeddings_partial(
        payload, n_inputs, endpoint=endpoint, dimension=dimension
    )
    if strict and (problems or not present.all()):
        raise ResponseValidationError(
            problems[0] if problems else "The embeddings response is incomplete.",
            endpoint=endpoint,
        )
    return matrix, model, prompt, total


def _vector(raw: Any) -> np.ndarray | None:
    """One item's vector (None when it is not a vector at all)."""
    if isinstance(raw, str):
        try:  # non-strict decoding is faster; a damaged string fails the length check instead
            return np.frombuffer(binascii.a2b_base64(raw), dtype="<f4")
        except (binascii.Error, ValueError):
            return None
    if isinstance(raw, list):
        try:
            return np.asarray([np.nan if v is None else v for v in raw], dtype=np.float32)
        except (TypeError, ValueError):
            return None
    return None


def decode_embeddings_partial(
    payload: Mapping[str, Any],
    n_inputs: int,
    *,
    endpoint: str = "POST /v1/embeddings",
    dimension: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str], str, int | None, int | None]:
    """Keep every valid item of an embeddings answer, matched by ``index`` only.

    Returns ``(matrix, present, invalid, problems, model, prompt_tokens, total_tokens)``:
    ``present[i]`` is True when exactly one item carries index ``i`` with a finite vector of the
    common dimension (``dimension`` when given, else the first valid item's); ``invalid[i]`` when
    its vector holds NaN, inf or null values (an error for that input, never cached). Missing,
    duplicated, out-of-range and wrong-dimension items are neither, and ``problems`` says what
    was wrong.
    """
    data = payload.get("data") if isinstance(payload, Mapping) else None
    if not isinstance(data, list):
        raise ResponseValidationError(
            "The embeddings response has no 'data' list.", endpoint=endpoint
        )
    problems: list[str] = []
    if len(data) != n_inputs:
        problems.append(f"The embeddings response has {len(data)} items for {n_inputs} inputs.")
    seen = np.zeros(n_inputs, dtype=np.int64)
    vectors: dict[int, np.ndarray | None] = {}
    for item in data:
        index = item.get("index") if isinstance(item, Mapping) else None
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < n_inputs:
            problems.append(
                f"The embeddings response has an item with index {index!r}; expected "
                f"0..{n_inputs - 1}."
            )
            continue
        seen[index] += 1
        vectors[index] = _vector(item.get("embedding") if isinstance(item, Mapping) else None)
    for index in np.flatnonzero(seen > 1).tolist():
        problems.append(f"The embeddings response has index {index} twice.")
        vectors.pop(index, None)
    dim = dimension
    if dim is None:
        for vector in vectors.values():
            if vector is not None and vector.ndim == 1 and vector.size:
                dim = vector.size
                break
    present = np.zeros(n_inputs, dtype=bool)
    invalid = np.zeros(n_inputs, dtype=bool)
    matrix = np.empty((n_inputs, dim or 0), dtype=np.float32)
    for index, vector in vectors.items():
        if vector is None:
            problems.append(f"Embedding {index} is neither a list of floats nor base64.")
            invalid[index] = True
            continue
        if vector.shape != (dim,):
            problems.append(
                f"Embedding {index} has {vector.size} dimensions; expected {dim} dimensions."
            )
            continue
        matrix[index] = vector
        present[index] = True
    # NaN, inf or null values: an error for that input (one vectorised pass over the batch)
    broken = present & ~np.isfinite(matrix).all(axis=1) if dim else np.zeros(n_inputs, bool)
    present &= ~broken
    invalid |= broken
    matrix[~present] = np.nan
    usage = payload.get("usage") or {}
    return (
        matrix,
        present,
        invalid,
        problems,
        str(payload.get("model") or ""),
        usage.get("prompt_tokens"),
        usage.get("total_tokens"),
    )


def parse_images(payload: Mapping[str, Any]) -> tuple[int | None, list[GeneratedImage]]:
    data = payload.get("data")
    if not isinstance(data, list):
        raise ResponseValidationError("The images response has no 'data' list.")
    out = []
    for i, item in enumerate(data):
        b64 = item.get("b64_json")
        if b64:
            try:
                image = GeneratedImage(base64.b64decode(b64), None, item.get("revised_prompt"))
            except (binascii.Error, ValueError) as exc:
                raise ResponseValidationError(f"Image {i} is not valid base64.") from exc
        elif item.get("url"):
            image = GeneratedImage(None, item["url"], item.get("revised_prompt"))
        else:
            raise ResponseValidationError(f"Image {i} has neither 'b64_json' nor 'url'.")
        out.append(image)
    return payload.get("created"), out


def parse_transcription(result: HTTPResult, response_format: str) -> Transcription:
    if response_format in ("text", "srt", "vtt"):
        text = result.content.decode("utf-8", "replace")
        return Transcription(text=text, raw=text, headers=result.headers)
    payload = result.json()
    if isinstance(payload, str):
        return Transcription(text=payload, raw=payload, headers=result.headers)
    segments = list(payload.get("segments") or [])
    words = list(payload.get("words") or [])
    if not words:
        for seg in segments:
            words.extend(seg.get("words") or [])
    duration = payload.get("duration")
    return Transcription(
        text=str(payload.get("text") or ""),
        language=payload.get("language"),
        duration=float(duration) if duration is not None else None,
        segments=segments,
        words=words,
        raw=payload,
        headers=result.headers,
    )


def parse_video(payload: Mapping[str, Any], headers: Mapping[str, str] | None = None) -> Video:
    if not isinstance(payload, Mapping) or "id" not in payload:
        raise ResponseValidationError("The video response has no 'id'.")
    return Video(
        id=str(payload["id"]),
        status=str(payload.get("status") or "queued"),
        progress=payload.get("progress"),
        model=payload.get("model"),
        size=payload.get("size"),
        seconds=None if payload.get("seconds") is None else str(payload.get("seconds")),
        created_at=payload.get("created_at"),
        completed_at=payload.get("completed_at"),
        expires_at=payload.get("expires_at"),
        error=payload.get("error"),
        raw=dict(payload),
        headers=headers or {},
    )


def _image_part(item: Any, i: int) -> tuple[str, bytes, str]:
    if isinstance(item, tuple) and len(item) == 2:
        name, data = item
    elif isinstance(item, bytes | bytearray | memoryview):
        name, data = f"image_{i}.png", bytes(item)
    else:
        raise InvalidParameterError(
            f"Image {i} must be bytes or a (filename, bytes) pair; got {type(item).__name__}. "
            "deapi_ds.edit_images() also takes paths and PIL images."
        )
    mime = mimetypes.guess_type(name)[0] or "image/png"
    return name, bytes(data), mime


def _form(values: Mapping[str, Any]) -> dict[str, str]:
    out = {}
    for key, value in values.items():
        if value is None:
            continue
        if isinstance(value, bool):
            value = "true" if value else "false"
        out[key] = str(value)
    return out


# --- the clients -----------------------------------------------------------------------------


class _AsyncClientBase:
    """What every async client shares: settings with the key wrapped at once, a transport, an
    engine (rate limits, concurrency, retries, daily quota) and one call path."""

    #: the setting that ``base_url=`` overrides
    _base_url_option = "base_url"

    def __init__(
        self,
        api_key: str | Secret | None = None,
        *,
        base_url: str | None = None,
        settings: Settings | None = None,
        engine: Engine | None = None,
        **options: Any,
    ) -> None:
        api_key = Secret.wrap(api_key)  # no frame below holds the key as plain text
        overrides = dict(options)
        if api_key is not None:
            overrides["api_key"] = api_key
        if base_url is not None:
            overrides[self._base_url_option] = base_url
        if settings is None:
            settings = get_config(**overrides)
        elif overrides:
            settings = dataclasses.replace(settings, **check_overrides(overrides))
        self.settings = settings
        self.profile: ProviderProfile = get_profile(settings)
        self._transport = self._make_transport(settings)
        scope = self._quota_scope(settings)
        tier = self.tier = scope.effective_tier
        self.engine = engine or Engine(
            max_concurrency=settings.max_concurrency,
            rpm=lambda ep: settings.rpm_for(ep) or self.profile.rpm_for(ep, tier),
            retry=RetryPolicy(settings.max_retries, max_retry_wait=settings.max_retry_wait),
            quota=QuotaGuard(scope, self.profile),
        )

    def _make_transport(self, settings: Settings) -> Transport:
        return Transport(settings)

    def _quota_scope(self, settings: Settings) -> Settings:
        """The settings whose host picks the tier and the daily-quota ledger."""
        return settings

    def __repr__(self) -> str:
        transport = getattr(self, "_transport", None)  # a debugger may show a half-made client
        base_url = transport.base_url if transport is not None else None
        return f"deapi_ds.{type(self).__name__}(base_url={base_url!r})"

    @property
    def base_url(self) -> str:
        """The API's base URL."""
        return self._transport.base_url

    async def aclose(self) -> None:
        """Close the connections (also done on leaving ``async with ... as client:``)."""
        await self._transport.aclose()

    async def __aenter__(self) -> Any:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    async def _call(self, endpoint: str, method: str, path: str, **kwargs: Any) -> HTTPResult:
        async def attempt() -> HTTPResult:
            return await self._transport.request(method, path, endpoint=endpoint, **kwargs)

        return await self.engine.call(endpoint, attempt)


class AsyncClient(_AsyncClientBase):
    """Async client for deAPI's OpenAI-compatible API (or any OpenAI-compatible server).

    Every argument defaults to the configuration (:func:`deapi_ds.get_config`).
    """

    @property
    def base_url(self) -> str:
        """The API's base URL, e.g. ``https://api.deapi.ai/v1``."""
        return self.settings.base_url

    # endpoints

    async def models(self) -> list[ModelInfo]:
        """``GET /v1/models``."""
        payload = (
            await self._call("models", "GET", "/models", max_bytes=MAX_RESPONSE_BYTES["models"])
        ).json()
        return [
            ModelInfo(str(m.get("id")), m.get("created"), m.get("owned_by"))
            for m in payload.get("data", [])
        ]

    async def embeddings(
        self,
        input: str | Sequence[str],
        *,
        model: str = "Bge_M3_FP16",
        encoding_format: str = "base64",
        dimensions: int | None = None,
        extra: Mapping[str, Any] | None = None,
        strict: bool = True,
        expected_dimension: int | None = None,
    ) -> EmbeddingsResult:
        """``POST /v1/embeddings``; returns a float32 matrix with row i for input i.

        ``strict=False`` keeps the valid items of an incomplete answer: ``present`` and
        ``invalid`` on the result say which rows hold a vector and which held NaN/inf/null.
        """
        if encoding_format not in ("float", "base64"):
            raise InvalidParameterError(
                f"encoding_format must be 'float' or 'base64'. Got {encoding_format!r}."
            )
        inputs = [input] if isinstance(input, str) else list(input)
        body: dict[str, Any] = {
            "model": model,
            "input": input if isinstance(input, str) else inputs,
        }
        body["encoding_format"] = encoding_format
        if dimensions is not None:
            body["dimensions"] = dimensions
        body.update(extra or {})
        result = await self._call(
            "embeddings",
            "POST",
            "/embeddings",
            json_body=body,
            max_bytes=embeddings_budget(len(inputs)),
        )
        matrix, present, invalid, problems, model_out, prompt_tokens, total_tokens = (
            decode_embeddings_partial(
                result.json(), len(inputs), endpoint=result.endpoint, dimension=expected_dimension
            )
        )
        if strict and (problems or not present.all()):
            raise ResponseValidationError(
                problems[0] if problems else "The embeddings response has non-finite values.",
                endpoint=result.endpoint,
            )
        return EmbeddingsResult(
            matrix,
            model_out or model,
            prompt_tokens,
            total_tokens,
            result.headers,
            present=present,
            invalid=invalid,
            problems=problems,
        )

    async def images_generate(
        self,
        prompt: str,
        *,
        model: str = "Flux1schnell",
        size: str | None = None,
        n: int = 1,
        response_format: str = "b64_json",
        style: str | None = None,
        seed: int | None = None,
        steps: int | None = None,
        negative_prompt: str | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> ImagesResult:
        """``POST /v1/images/generations``."""
        body: dict[str, Any] = {"model": model, "prompt": prompt, "n": n}
        for key, value in (
            ("size", size),
            ("response_format", response_format),
            ("style", style),
            ("seed", seed),
            ("steps", steps),
            ("negative_prompt", negative_prompt),
        ):
            if value is not None:
                body[key] = value
        body.update(extra or {})
        result = await self._call(
            "images.generations",
            "POST",
            "/images/generations",
            json_body=body,
            max_bytes=images_budget(n),
        )
        created, images = parse_images(result.json())
        return ImagesResult(created, images, result.headers)

    async def images_edit(
        self,
        images: Sequence[bytes | tuple[str, bytes]] | bytes,
        prompt: str,
        *,
        model: str = "Flux_2_Klein_4B_BF16",
        size: str | None = None,
        n: int = 1,
        response_format: str = "b64_json",
        mask: Any = None,
        seed: int | None = None,
        steps: int | None = None,
        negative_prompt: str | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> ImagesResult:
        """``POST /v1/images/edits`` (multipart). deAPI refuses masks, so a mask is refused here."""
        if mask is not None and not self.profile.supports_mask:
            raise InvalidParameterError(
                "deAPI does not do inpainting: /v1/images/edits refuses a 'mask' (HTTP 400). "
                "Describe the change in the prompt instead, and pass no mask."
            )
        if isinstance(images, bytes | bytearray | tuple):
            images = [images]  # type: ignore[list-item]
        parts = [_image_part(item, i) for i, item in enumerate(images)]
        field = "image" if len(parts) == 1 else "image[]"
        files = [(field, part) for part in parts]
        if mask is not None:
            files.append(("mask", _image_part(mask, 0)))
        form = _form(
            {
                "model": model,
                "prompt": prompt,
                "size": size,
                "n": n,
                "response_format": response_format,
                "seed": seed,
                "steps": steps,
                "negative_prompt": negative_prompt,
                **(extra or {}),
            }
        )
        result = await self._call(
            "images.edits",
            "POST",
            "/images/edits",
            data=form,
            files=files,
            max_bytes=images_budget(n),
        )
        created, out = parse_images(result.json())
        return ImagesResult(created, out, result.headers)

    async def speech(
        self,
        input: str,
        *,
        model: str = "Kokoro",
        voice: str = "alloy",
        response_format: str = "mp3",
        speed: float | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> SpeechResult:
        """``POST /v1/audio/speech``; returns the audio bytes."""
        body: dict[str, Any] = {"model": model, "input": input, "voice": voice}
        body["response_format"] = response_format
        if speed is not None:
            body["speed"] = speed
        body.update(extra or {})
        result = await self._call(
            "audio.speech",
            "POST",
            "/audio/speech",
            json_body=body,
            accept="*/*",
            max_bytes=speech_budget(len(input)),
        )
        return SpeechResult(result.content, result.headers.get("content-type", ""), result.headers)

    async def transcribe(
        self,
        file: bytes,
        *,
        filename: str = "audio.mp3",
        model: str = "WhisperLargeV3",
        response_format: str = "verbose_json",
        language: str | None = None,
        prompt: str | None = None,
        temperature: float | None = None,
        timestamp_granularities: Sequence[str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> Transcription:
        """``POST /v1/audio/transcriptions`` (multipart); json, text and verbose_json."""
        if response_format not in ("json", "text", "verbose_json", "srt", "vtt"):
            raise InvalidParameterError(
                "response_format must be one of 'json', 'text', 'verbose_json', 'srt', 'vtt'. "
                f"Got {response_format!r}."
            )
        mime = mimetypes.guess_type(filename)[0] or "application/octet-stream"
        form: list[tuple[str, str]] = list(
            _form(
                {
                    "model": model,
                    "response_format": response_format,
                    "language": language,
                    "prompt": prompt,
                    "temperature": temperature,
                    **(extra or {}),
                }
            ).items()
        )
        for gran in timestamp_granularities or ():
            form.append(("timestamp_granularities[]", gran))
        result = await self._call(
            "audio.transcriptions",
            "POST",
            "/audio/transcriptions",
            data=_multi(form),
            files=[("file", (filename, file, mime))],
            max_bytes=MAX_RESPONSE_BYTES["transcription"],
        )
        return parse_transcription(result, response_format)

    async def videos_create(
        self,
        prompt: str,
        *,
        model: str = "Ltx2_3_22B_Dist_INT8",
        size: str | None = None,
        seconds: str | int | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> Video:
        """``POST /v1/videos``: starts a job; poll with :meth:`videos_retrieve`."""
        body: dict[str, Any] = {"model": model, "prompt": prompt}
        if size is not None:
            body["size"] = size
        if seconds is not None:
            body["seconds"] = str(seconds)
        body.update(extra or {})
        result = await self._call(
            "videos", "POST", "/videos", json_body=body, max_bytes=MAX_RESPONSE_BYTES["video.job"]
        )
        return parse_video(result.json(), result.headers)

    async def videos_retrieve(self, video_id: str) -> Video:
        """``GET /v1/videos/{id}``."""
        result = await self._call(
            "videos.retrieve",
            "GET",
            f"/videos/{video_id}",
            max_bytes=MAX_RESPONSE_BYTES["video.job"],
        )
        return parse_video(result.json(), result.headers)

    async def videos_content(self, video_id: str) -> bytes:
        """``GET /v1/videos/{id}/content``: the MP4 bytes."""
        result = await self._call(
            "videos.content",
            "GET",
            f"/videos/{video_id}/content",
            accept="*/*",
            max_bytes=MAX_RESPONSE_BYTES["video.content"],
        )
        return result.content

    async def download(self, url: str) -> bytes:
        """Fetch a result URL (the key is only sent when the URL is on the API host)."""
        result = await self._call(
            "download", "GET", url, accept="*/*", max_bytes=MAX_RESPONSE_BYTES["download"]
        )
        return result.content


def _multi(pairs: list[tuple[str, str]]) -> Any:
    """httpx takes repeated form fields as a dict of lists."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            if not isinstance(out[key], list):
                out[key] = [out[key]]
            out[key].append(value)
        else:
            out[key] = [value] if key.endswith("[]") else value
    return out


class _SyncClientBase:
    """What every sync client shares: it drives its async twin (``self._async``) on deapi_ds's
    private event-loop thread, so it works inside Jupyter's running loop."""

    _async: Any

    def _run(self, fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        async def go() -> T:
            return await fn(*args, **kwargs)

        return run_sync(go)

    def close(self) -> None:
        """Close the connections (also done on leaving ``with ... as client:``)."""
        run_sync(self._async.aclose)

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class Client(_SyncClientBase):
    """Synchronous client: the same methods as :class:`AsyncClient`, usable in a notebook cell.

    It drives an :class:`AsyncClient` on deapi_ds's private event-loop thread, so it works even
    where an event loop is already running (Jupyter) and needs no nest_asyncio.
    """

    def __init__(
        self, api_key: str | Secret | None = None, *, base_url: str | None = None, **options: Any
    ):
        api_key = Secret.wrap(api_key)
        self._async = AsyncClient(api_key, base_url=base_url, **options)

    def __repr__(self) -> str:
        inner = getattr(self, "_async", None)  # a debugger may show a half-made client
        base_url = inner.settings.base_url if inner is not None else None
        return f"deapi_ds.Client(base_url={base_url!r})"

    @property
    def settings(self) -> Settings:
        """The configuration this client was built with (a :class:`Settings`)."""
        return self._async.settings

    @property
    def engine(self) -> Engine:
        """The engine that rate-limits, retries and bounds concurrency for this client."""
        return self._async.engine

    @property
    def aclient(self) -> AsyncClient:
        """The underlying :class:`AsyncClient` (runs on deapi_ds's loop thread)."""
        return self._async

    def models(self) -> list[ModelInfo]:
        """``GET /v1/models``: the models this key can use."""
        return self._run(self._async.models)

    def embeddings(self, input: str | Sequence[str], **kwargs: Any) -> EmbeddingsResult:
        """``POST /v1/embeddings`` for one batch of texts (see :func:`deapi_ds.embed` for columns)."""
        return self._run(self._async.embeddings, input, **kwargs)

    def images_generate(self, prompt: str, **kwargs: Any) -> ImagesResult:
        """``POST /v1/images/generations`` (see :func:`deapi_ds.generate_images` for many prompts)."""
        return self._run(self._async.images_generate, prompt, **kwargs)

    def images_edit(self, images: Any, prompt: str, **kwargs: Any) -> ImagesResult:
        """``POST /v1/images/edits`` (see :func:`deapi_ds.edit_images` for many images)."""
        return self._run(self._async.images_edit, images, prompt, **kwargs)

    def speech(self, input: str, **kwargs: Any) -> SpeechResult:
        """``POST /v1/audio/speech``: one text to audio bytes (see :func:`deapi_ds.speak`)."""
        return self._run(self._async.speech, input, **kwargs)

    def transcribe(self, file: bytes, **kwargs: Any) -> Transcription:
        """``POST /v1/audio/transcriptions`` for one file (see :func:`deapi_ds.transcribe`)."""
        return self._run(self._async.transcribe, file, **kwargs)

    def videos_create(self, prompt: str, **kwargs: Any) -> Video:
        """``POST /v1/videos``: start one video job (see :func:`deapi_ds.generate_video`)."""
        return self._run(self._async.videos_create, prompt, **kwargs)

    def videos_retrieve(self, video_id: str) -> Video:
        """``GET /v1/videos/{id}``: the job's status."""
        return self._run(self._async.videos_retrieve, video_id)

    def videos_content(self, video_id: str) -> bytes:
        """``GET /v1/videos/{id}/content``: the MP4 bytes."""
        return self._run(self._async.videos_content, video_id)

    def download(self, url: str) -> bytes:
        """Fetch a result URL (the key is only sent when the URL is on the API host)."""
        return self._run(self._async.download, url)
