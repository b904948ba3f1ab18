"""What deapi_ds knows about a provider: models, limits, voices, rate limits per tier, prices.

The ``deapi`` profile follows the seed document (``deapi-openai-compatibility``) where later deAPI
docs disagree (80 MB uploads, mp3/wav/flac/opus speech); each such limit is overridable through the
configuration (``max_upload_mb``) or by building a profile with :func:`dataclasses.replace`.
The ``openai-compatible`` profile is permissive: it knows no models and lets the server decide.

Endpoint keys used everywhere (engine, emulator, rate limits): ``models``, ``embeddings``,
``images.generations``, ``images.edits``, ``audio.speech``, ``audio.transcriptions``, ``videos``,
``videos.retrieve``, ``videos.content``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from ._exceptions import InvalidParameterError

__all__ = [
    "DEAPI",
    "ENDPOINTS",
    "GENERIC",
    "KOKORO_VOICES",
    "OPENAI_VOICE_ALIASES",
    "ModelProfile",
    "ProviderProfile",
    "get_profile",
]

ENDPOINTS: dict[str, tuple[str, str]] = {
    "models": ("GET", "/models"),
    "embeddings": ("POST", "/embeddings"),
    "images.generations": ("POST", "/images/generations"),
    "images.edits": ("POST", "/images/edits"),
    "audio.speech": ("POST", "/audio/speech"),
    "audio.transcriptions": ("POST", "/audio/transcriptions"),
    "videos": ("POST", "/videos"),
    "videos.retrieve": ("GET", "/videos/{id}"),
    "videos.content": ("GET", "/videos/{id}/content"),
    "download": ("GET", "<url>"),
}

OPENAI_VOICE_ALIASES = ("alloy", "echo", "fable", "onyx", "nova", "shimmer")

#: Kokoro voices on deAPI by language (deapi-reference.md §3).
KOKORO_VOICES: dict[str, tuple[str, ...]] = {
    "en-us": (
        "af_alloy", "af_aoede", "af_bella", "af_heart", "af_jessica", "af_kore", "af_nicole",
        "af_nova", "af_river", "af_sarah", "af_sky", "am_adam", "am_echo", "am_eric", "am_fenrir",
        "am_liam", "am_michael", "am_onyx", "am_puck", "am_santa",
    ),
    "en-gb": (
        "bf_alice", "bf_emma", "bf_isabella", "bf_lily", "bm_daniel", "bm_fable", "bm_george",
        "bm_lewis",
    ),
    "es": ("ef_dora", "em_alex", "em_santa"),
    "fr-fr": ("ff_siwis",),
    "hi": ("hf_alpha", "hf_beta", "hm_omega", "hm_psi"),
    "it": ("if_sara", "im_nicola"),
    "pt-br": ("pf_dora", "pm_alex", "pm_santa"),
}  # fmt: skip


@dataclasses.dataclass(frozen=True)
class ModelProfile:
    """Limits of one model. ``None`` means unknown: the server decides."""

    id: str
    tasks: tuple[str, ...]
    description: str = ""
    # images
    min_size: int | None = None
    max_size: int | None = None
    size_step: int | None = None
    max_n: int | None = None
    max_input_images: int | None = None
    min_steps: int | None = None
    max_steps: int | None = None
    # embeddings
    dimension: int | None = None
    max_inputs: int | None = None
    max_input_tokens: int | None = None
    max_total_tokens: int | None = None
    price_per_1k_tokens: float | None = None
    # speech
    voices: tuple[str, ...] = ()
    formats: tuple[str, ...] = ()
    max_chars: int | None = None
    min_speed: float | None = None
    max_speed: float | None = None
    price_per_1m_chars: float | None = None
    # transcription
    word_timestamps: bool = False
    verbose_json: bool = True
    price_per_hour: float | None = None
    # images / video price reference
    price_per_image: float | None = None
    video_sizes: tuple[str, ...] = ()
    video_seconds: tuple[int, ...] = ()

    def as_row(self) -> dict[str, Any]:
        """One row of ``deapi_ds.models()``: limits that do not apply to the model are None."""
        row = dataclasses.asdict(self)
        if not {"audio2text", "video2text"} & set(self.tasks):
            row["word_timestamps"] = row["verbose_json"] = None
        row["tasks"] = ", ".join(self.tasks)
        row["voices"] = len(self.voices) or None
        row["formats"] = ", ".join(self.formats) or None
        row["video_sizes"] = ", ".join(self.video_sizes) or None
        row["video_seconds"] = ", ".join(map(str, self.video_seconds)) or None
        return row

    def check_size(
        self, size: str, *, param: str = "size", func: str = "generate_images"
    ) -> tuple[int, int]:
        """Parse ``"WxH"`` and check it against this model's limits."""
        try:
            w_text, h_text = str(size).lower().split("x")
            width, height = int(w_text), int(h_text)
        except ValueError:
            raise InvalidParameterError(
                f"The {param!r} parameter of {func}() must look like '512x512'. Got {size!r}."
            ) from None
        if self.min_size is None or self.max_size is None:
            return width, height
        step = self.size_step or 1
        bad = [
            v
            for v in (width, height)
            if v < self.min_size or v > self.max_size or (v - self.min_size) % step
        ]
        if bad:
            examples = ", ".join(
                f"{s}x{s}"
                for s in (512, 768, 1024)
                if self.min_size <= s <= self.max_size and (s - self.min_size) % step == 0
            )
            raise InvalidParameterError(
                f"The {param!r} parameter of {func}() is not valid for {self.id}: {size!r}. "
                f"Width and height must be between {self.min_size} and {self.max_size} px in steps "
                f"of {step} (e.g. {examples})."
            )
        return width, height


_IMAGE_GEN = ("txt2img",)
_DEAPI_MODELS = [
    ModelProfile("Flux1schnell", _IMAGE_GEN, "FLUX.1 schnell, fast text-to-image",
                 min_size=256, max_size=2048, size_step=128, max_n=4, min_steps=1, max_steps=10,
                 price_per_image=0.00136),
    ModelProfile("ZImageTurbo_INT8", _IMAGE_GEN, "Z-Image Turbo, photoreal text-to-image",
                 min_size=256, max_size=2048, size_step=16, max_n=4, min_steps=1, max_steps=50,
                 price_per_image=0.0034),
    ModelProfile("Flux_2_Klein_4B_BF16", ("txt2img", "img2img"), "FLUX.2 Klein 4B, generation and edits",
                 min_size=256, max_size=1536, size_step=16, max_n=4, max_input_images=3,
                 min_steps=4, max_steps=4, price_per_image=0.00186),
    ModelProfile("QwenImageEdit_Plus_NF4", ("img2img",), "Qwen image edit",
                 min_size=64, max_size=5000, size_step=1, max_n=4, max_input_images=1,
                 min_steps=1, max_steps=50, price_per_image=0.0179),
    ModelProfile("Kokoro", ("txt2audio",), "Kokoro-82M text-to-speech",
                 voices=OPENAI_VOICE_ALIASES + tuple(v for vs in KOKORO_VOICES.values() for v in vs),
                 formats=("mp3", "wav", "flac", "opus"), max_chars=10000, min_speed=0.5, max_speed=2.0,
                 price_per_1m_chars=0.77),
    ModelProfile("WhisperLargeV3", ("audio2text", "video2text"), "Whisper large-v3",
                 word_timestamps=False, price_per_hour=0.05),
    ModelProfile("WhisperLargeV3Ct2", ("audio2text", "video2text"), "Whisper large-v3 (CTranslate2), word timestamps",
                 word_timestamps=True, price_per_hour=0.05),
    ModelProfile("Bge_M3_FP16", ("txt2embedding",), "BGE-M3 embeddings, 1024 dimensions",
                 dimension=1024, max_inputs=2048, max_input_tokens=8192, max_total_tokens=300_000,
                 price_per_1k_tokens=0.000084),
    ModelProfile("Ltx2_3_22B_Dist_INT8", ("txt2video",), "LTX-2 text-to-video",
                 video_sizes=("512x512", "768x512", "512x768"), video_seconds=(4, 8, 12)),
    ModelProfile("Ltxv_13B_0_9_8_Distilled_FP8", ("txt2video",), "LTX-Video 13B distilled",
                 video_sizes=("512x512", "768x512", "512x768"), video_seconds=(4,)),
]  # fmt: skip

_BASIC_RPM = {
    "embeddings": 10,
    "images.generations": 3,
    "images.edits": 1,
    "audio.speech": 5,
    "audio.transcriptions": 1,
    "videos": 1,
    "videos.retrieve": 50,
    # native v2 API (deapi-reference.md §4.2)
    "v2.audio.transcriptions": 1,
    "v2.images.ocr": 5,
    "v2.images.background-removals": 5,
    "v2.images.upscales": 5,
    "v2.price": 50,
    "v2.jobs": 50,
}

#: Requests per UTC day on the Basic tier (Premium: unlimited); counters reset at 00:00 UTC.
_BASIC_RPD = {
    "v2.audio.transcriptions": 10,
    "v2.images.ocr": 50,
    "v2.images.background-removals": 100,
    "v2.images.upscales": 100,
    "v2.price": 200,
    "v2.jobs": 200,
}


@dataclasses.dataclass(frozen=True)
class ProviderProfile:
    """Everything known about a provider, used before any request is sent."""

    name: str
    models: Mapping[str, ModelProfile]
    rpm: Mapping[str, Mapping[str, float]]
    max_upload_bytes: int | None = None
    max_image_bytes: int | None = None
    min_image_side: int | None = None
    max_image_side: int | None = None
    max_images_n: int | None = None
    supports_mask: bool = True
    default_models: Mapping[str, str] = dataclasses.field(default_factory=dict)
    rpd: Mapping[str, Mapping[str, float]] = dataclasses.field(default_factory=dict)

    def rpd_for(self, endpoint: str, tier: str) -> float | None:
        """Requests per UTC day for an endpoint on a tier (None: no daily limit)."""
        return self.rpd.get(tier, {}).get(endpoint)

    def model(self, model_id: str) -> ModelProfile | None:
        return self.models.get(model_id)

    def rpm_for(self, endpoint: str, tier: str) -> float | None:
        return self.rpm.get(tier, {}).get(endpoint)

    def models_for(self, task: str) -> list[str]:
        return [m.id for m in self.models.values() if task in m.tasks]

    def require_task(self, model_id: str, task: str, *, func: str) -> ModelProfile | None:
        """Check that a known model can do ``task``; unknown models pass (the server decides)."""
        profile = self.models.get(model_id)
        if profile is not None and task not in profile.tasks:
            able = ", ".join(self.models_for(task)) or "none known"
            raise InvalidParameterError(
                f"Model {model_id!r} cannot do {task} (it does {', '.join(profile.tasks)}). "
                f"Models for {func}(): {able}."
            )
        return profile


DEAPI = ProviderProfile(
    name="deapi",
    models={m.id: m for m in _DEAPI_MODELS},
    rpm={
        "basic": _BASIC_RPM,
        "premium": {k: 300 for k in _BASIC_RPM},
        "unlimited": {},
    },
    rpd={"basic": _BASIC_RPD},
    max_upload_bytes=80 * 1024 * 1024,
    max_image_bytes=10 * 1024 * 1024,
    min_image_side=64,
    max_image_side=5000,
    max_images_n=4,
    supports_mask=False,
    default_models={
        "embeddings": "Bge_M3_FP16",
        "images.generations": "Flux1schnell",
        "images.edits": "Flux_2_Klein_4B_BF16",
        "audio.speech": "Kokoro",
        "audio.transcriptions": "WhisperLargeV3",
        "videos": "Ltx2_3_22B_Dist_INT8",
    },
)

GENERIC = ProviderProfile(
    name="openai-compatible",
    models={},
    rpm={"basic": {}, "premium": {}, "unlimited": {}},
    max_upload_bytes=25 * 1024 * 1024,
)

_PROFILES = {"deapi": DEAPI, "openai-compatible": GENERIC, "generic": GENERIC}


def get_profile(settings: Any = None) -> ProviderProfile:
    """The provider profile for a Settings object (or a profile name), with config overrides applied."""
    name = "auto"
    max_upload_mb = None
    speech_formats = None
    if isinstance(settings, str):
        name = settings
    elif settings is not None:
        name = settings.profile
        max_upload_mb = settings.max_upload_mb
        speech_formats = getattr(settings, "speech_formats", None)
    if name == "auto":
        name = "deapi"
    try:
        profile = _PROFILES[name]
    except KeyError:
        raise InvalidParameterError(
            f"Unknown provider profile {name!r}. Valid profiles: {sorted(_PROFILES)}."
        ) from None
    if max_upload_mb:
        profile = dataclasses.replace(profile, max_upload_bytes=int(max_upload_mb * 1024 * 1024))
    if speech_formats:
        models = {
            mid: dataclasses.replace(m, formats=tuple(speech_formats)) if m.formats else m
            for mid, m in profile.models.items()
        }
        profile = dataclasses.replace(profile, models=models)
    return profile
