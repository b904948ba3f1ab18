"""What deapi_ds knows about a provider: models, limits, voices, rate limits and quotas, prices.

deAPI changed since the seed document (``deapi-openai-compatibility``, Feb-May 2026). The
``limits`` setting picks which deAPI the ``deapi`` profile describes:

* ``"today"`` (the default): deAPI's docs as of :data:`REFERENCE_DATE` (2026-08-19):
  20 MB per audio file and 50 MB per video file, 75 MB per request body, speech returned as
  mp3 only, daily request quotas per endpoint on the Basic tier (reset at 00:00 UTC).
* ``"seed"``: the seed document: 80 MB per file, speech in mp3, wav, flac and opus, no daily
  quotas known.

Speech formats a server does not return natively (``native_formats``) are requested as mp3 and
converted locally, so ``speak(..., response_format="wav")`` works against either. Each limit
stays overridable through the configuration (``max_upload_mb``, ``speech_formats``) or by
building a profile with :func:`dataclasses.replace`. Prices are reference points from deAPI's
pricing pages with their date (:meth:`ProviderProfile.price`): estimates, never quotes.
The ``openai-compatible`` profile is permissive: it knows no models and lets the server decide.

Endpoint keys used everywhere (engine, emulator, rate limits): ``models``, ``embeddings``,
``images.generations``, ``images.edits``, ``audio.speech``, ``audio.transcriptions``, ``videos``,
``videos.retrieve``, ``videos.content``.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
from collections.abc import Mapping
from typing import Any

from ._exceptions import InvalidParameterError

__all__ = [
    "DEAPI",
    "DEAPI_SEED",
    "ENDPOINTS",
    "GENERIC",
    "KOKORO_VOICES",
    "LIMITS",
    "OPENAI_VOICE_ALIASES",
    "QUOTA_ENDPOINTS",
    "REFERENCE_DATE",
    "ModelProfile",
    "PriceInfo",
    "ProviderProfile",
    "get_profile",
    "quota_endpoint",
]

#: Date of the deAPI documentation the ``today`` limits, quotas and prices come from
#: (deapi-reference.md: newest commit seen of deAPI's docs source).
REFERENCE_DATE = _dt.date(2026, 8, 19)
#: Values of the ``limits`` setting.
LIMITS = ("today", "seed")

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
    price_word_factor: float = 1.0  # word timestamps / diarization multiplier (Ct2: 1.5)
    # images / video price reference: price_per_image at price_ref_pixels and price_ref_steps
    price_per_image: float | None = None
    price_ref_pixels: int | None = None
    price_ref_steps: int | None = None
    video_sizes: tuple[str, ...] = ()
    video_seconds: tuple[int, ...] = ()
    price_per_video: float | None = None  # at price_ref_seconds and price_ref_pixels
    price_ref_seconds: float | None = None

    def as_row(self) -> dict[str, Any]:
        """One row of ``deapi_ds.models()``: limits that do not apply to the model are None."""
        row = {
            k: v
            for k, v in dataclasses.asdict(self).items()
            if k not in ("price_word_factor", "price_ref_pixels", "price_ref_steps")
            and k not in ("price_per_video", "price_ref_seconds")
        }
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
_REF = {"price_ref_pixels": 512 * 512}
_DEAPI_MODELS = [
    ModelProfile("Flux1schnell", _IMAGE_GEN, "FLUX.1 schnell, fast text-to-image",
                 min_size=256, max_size=2048, size_step=128, max_n=4, min_steps=1, max_steps=10,
                 price_per_image=0.00136, price_ref_steps=4, **_REF),
    ModelProfile("ZImageTurbo_INT8", _IMAGE_GEN, "Z-Image Turbo, photoreal text-to-image",
                 min_size=256, max_size=2048, size_step=16, max_n=4, min_steps=1, max_steps=50,
                 price_per_image=0.0034, price_ref_steps=4, **_REF),
    ModelProfile("Flux_2_Klein_4B_BF16", ("txt2img", "img2img"), "FLUX.2 Klein 4B, generation and edits",
                 min_size=256, max_size=1536, size_step=16, max_n=4, max_input_images=3,
                 min_steps=4, max_steps=4, price_per_image=0.00186, price_ref_steps=4, **_REF),
    ModelProfile("QwenImageEdit_Plus_NF4", ("img2img",), "Qwen image edit",
                 min_size=64, max_size=5000, size_step=1, max_n=4, max_input_images=1,
                 min_steps=1, max_steps=50, price_per_image=0.0179, price_ref_steps=20, **_REF),
    ModelProfile("Kokoro", ("txt2audio",), "Kokoro-82M text-to-speech",
                 voices=OPENAI_VOICE_ALIASES + tuple(v for vs in KOKORO_VOICES.values() for v in vs),
                 formats=("mp3", "wav", "flac", "opus"), max_chars=10000, min_speed=0.5, max_speed=2.0,
                 price_per_1m_chars=0.77),
    ModelProfile("WhisperLargeV3", ("audio2text", "video2text"), "Whisper large-v3",
                 word_timestamps=False, price_per_hour=0.05),
    ModelProfile("WhisperLargeV3Ct2", ("audio2text", "video2text"), "Whisper large-v3 (CTranslate2), word timestamps",
                 word_timestamps=True, price_per_hour=0.05, price_word_factor=1.5),
    ModelProfile("Bge_M3_FP16", ("txt2embedding",), "BGE-M3 embeddings, 1024 dimensions",
                 dimension=1024, max_inputs=2048, max_input_tokens=8192, max_total_tokens=300_000,
                 price_per_1k_tokens=0.000084),
    ModelProfile("Ltx2_3_22B_Dist_INT8", ("txt2video",), "LTX-2 text-to-video",
                 video_sizes=("512x512", "768x512", "512x768"), video_seconds=(4, 8, 12),
                 price_per_video=0.001737, price_ref_seconds=2.0, price_ref_pixels=256 * 256),
    ModelProfile("Ltxv_13B_0_9_8_Distilled_FP8", ("txt2video",), "LTX-Video 13B distilled",
                 video_sizes=("512x512", "768x512", "512x768"), video_seconds=(4,),
                 price_per_video=0.001737, price_ref_seconds=2.0, price_ref_pixels=256 * 256),
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

#: Requests per day on deAPI's Basic tier (deapi-reference.md §4.2, v2 limits); Premium has no
#: daily limit. Counters reset at 00:00 UTC. Keys are quota endpoints (see QUOTA_ENDPOINTS).
#: ``videos`` is 15 for every video model but MiniMaxH3_33B_Turbo_INT8 (3 per day): the
#: engine does not know the model, so the larger figure is kept and the server has the last word.
BASIC_DAILY_QUOTAS: dict[str, int] = {
    "embeddings": 500,
    "audio.transcriptions": 10,
    "images.generations": 100,
    "images.edits": 15,
    "audio.speech": 300,
    "videos": 15,
    "price": 200,
    "jobs": 200,
    "images.ocr": 50,
    "images.background-removals": 100,
    "images.upscales": 100,
}

#: The engine's endpoint names (what ``_client.py`` passes to ``engine.call``) -> the deAPI
#: quota bucket they count against. Endpoints absent here have no daily quota (models, balance,
#: downloads of result files). Polling a gateway video (``videos.retrieve``) is counted as a
#: job status request, the way the native API counts ``GET /api/v2/jobs/{id}`` (the gateway's
#: own counting is undocumented: counting it errs on the safe side).
QUOTA_ENDPOINTS: dict[str, str] = {
    "embeddings": "embeddings",
    "images.generations": "images.generations",
    "images.edits": "images.edits",
    "audio.speech": "audio.speech",
    "audio.transcriptions": "audio.transcriptions",
    "videos": "videos",
    "videos.retrieve": "jobs",
    "jobs": "jobs",
    "jobs.status": "jobs",
    "price": "price",
    # the native v2 API (``_native.py``): the same account, so the same buckets; a native
    # transcription counts with the gateway's (whether deAPI shares them is undocumented:
    # sharing errs on the safe side)
    "v2.audio.transcriptions": "audio.transcriptions",
    "v2.images.ocr": "images.ocr",
    "v2.images.background-removals": "images.background-removals",
    "v2.images.upscales": "images.upscales",
    "v2.price": "price",
    "v2.jobs": "jobs",
}


def quota_endpoint(endpoint: str) -> str | None:
    """The daily-quota bucket an engine endpoint counts against (None: no daily quota).

    >>> quota_endpoint("videos.retrieve"), quota_endpoint("models")
    ('jobs', None)
    """
    return QUOTA_ENDPOINTS.get(endpoint)


@dataclasses.dataclass(frozen=True)
class PriceInfo:
    """A price computed from deAPI's published reference rates: an estimate, not a quote.

    ``usd`` is the amount, ``basis`` how it was computed (rate x quantity), ``date`` the date
    of the pricing page the rate comes from. deAPI's own ``/price`` endpoints give quotes.

    >>> DEAPI.price("embeddings", "Bge_M3_FP16", tokens=1_000_000).note
    'reference price of 2026-08-19, not a quote'
    """

    usd: float
    basis: str
    date: _dt.date

    @property
    def note(self) -> str:
        """The words an estimate shows next to the figure."""
        return f"reference price of {self.date.isoformat()}, not a quote"

    def __str__(self) -> str:
        return f"${self.usd:.6g} ({self.note}: {self.basis})"


def _positive(value: Any, name: str, task: str) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not value >= 0
        or value != value
    ):
        raise InvalidParameterError(
            f"price({task!r}, ...): {name} must be a number >= 0. Got {value!r}."
        )
    return float(value)


def _pixels(size: Any, task: str) -> int:
    try:
        w_text, h_text = str(size).lower().split("x")
        return int(w_text) * int(h_text)
    except ValueError:
        raise InvalidParameterError(
            f"price({task!r}, ...): size must look like '512x512'. Got {size!r}."
        ) from None


@dataclasses.dataclass(frozen=True)
class ProviderProfile:
    """Everything known about a provider, used before any request is sent.

    ``max_upload_bytes`` is the audio upload limit per file (transcription),
    ``max_video_upload_bytes`` the video one, ``max_request_bytes`` the whole request body.
    ``speech_native_formats`` are the speech formats the server returns itself (None: any it
    is asked for); others are requested as mp3 and converted locally. ``daily_quotas`` maps a
    tier to requests per day per quota endpoint (missing: no daily limit). ``limits`` says
    which deAPI the figures describe (``"today"``, ``"seed"``) and ``limits_source`` where they
    come from.
    """

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
    max_video_upload_bytes: int | None = None
    max_request_bytes: int | None = None
    speech_native_formats: tuple[str, ...] | None = None
    daily_quotas: Mapping[str, Mapping[str, int]] = dataclasses.field(default_factory=dict)
    limits: str | None = None
    limits_source: str = ""
    price_date: _dt.date | None = None

    def model(self, model_id: str) -> ModelProfile | None:
        return self.models.get(model_id)

    def rpm_for(self, endpoint: str, tier: str) -> float | None:
        return self.rpm.get(tier, {}).get(endpoint)

    def daily_quota(self, endpoint: str, tier: str) -> int | None:
        """Requests per day allowed on ``endpoint`` (an engine or quota endpoint) for ``tier``.

        None means no daily limit is known (Premium, the seed limits, other providers).

        >>> DEAPI.daily_quota("embeddings", "basic"), DEAPI.daily_quota("embeddings", "premium")
        (500, None)
        """
        bucket = quota_endpoint(endpoint) or endpoint
        return self.daily_quotas.get(tier, {}).get(bucket)

    def speech_wire_format(self, fmt: str) -> str:
        """The format to ask the server for when the caller wants ``fmt``.

        ``fmt`` itself when the server returns it natively, otherwise ``"mp3"`` (converted
        locally afterwards).

        >>> DEAPI.speech_wire_format("wav"), DEAPI_SEED.speech_wire_format("wav")
        ('mp3', 'wav')
        """
        native = self.speech_native_formats
        if native is None or fmt in native:
            return fmt
        return "mp3"

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

    def price(self, task: str, model: str, **quantities: Any) -> PriceInfo | None:
        """What ``quantities`` of ``task`` on ``model`` cost at deAPI's reference rates.

        ``task`` is an endpoint name; the quantities each task takes:

        * ``"embeddings"``: ``tokens``.
        * ``"audio.speech"``: ``characters``, ``speed`` (default 1; 2x speed halves the
          price, 0.5x doubles it).
        * ``"audio.transcriptions"``: ``seconds`` (or ``hours``) of media,
          ``word_timestamps`` / ``diarize`` (x1.5 on models that charge for them, such as
          WhisperLargeV3Ct2; segment timestamps are free).
        * ``"images.generations"`` / ``"images.edits"``: ``n`` (default 1), ``size``
          (default ``"512x512"``), ``steps`` (default: the reference point's). The price is
          scaled linearly in pixels and steps from deAPI's one published point per model.
        * ``"videos"``: ``seconds`` (default 2), ``size`` (default ``"256x256"``), scaled
          linearly from the published point.

        Returns None when no reference rate is known (unknown model or provider). The
        result says it is a reference price of :attr:`price_date`, not a quote.

        >>> str(DEAPI.price("audio.speech", "Kokoro", characters=1_000_000, speed=2.0))
        '$0.385 (reference price of 2026-08-19, not a quote: $0.77 per 1M characters / speed 2)'
        >>> DEAPI.price("audio.transcriptions", "WhisperLargeV3Ct2", hours=2, word_timestamps=True).usd
        0.15000000000000002
        """
        mp = self.models.get(model)
        if mp is None or self.price_date is None:
            return None
        q = dict(quantities)

        def info(usd: float, basis: str) -> PriceInfo:
            return PriceInfo(usd, basis, self.price_date)  # type: ignore[arg-type]

        if task == "embeddings":
            if mp.price_per_1k_tokens is None:
                return None
            tokens = _positive(q.pop("tokens", 0), "tokens", task)
            self._no_more(q, task)
            rate = mp.price_per_1k_tokens
            return info(tokens / 1000 * rate, f"${rate:g} per 1,000 tokens x {tokens:,.0f} tokens")
        if task == "audio.speech":
            if mp.price_per_1m_chars is None:
                return None
            chars = _positive(q.pop("characters", 0), "characters", task)
            speed = _positive(q.pop("speed", None) or 1.0, "speed", task) or 1.0
            self._no_more(q, task)
            rate = mp.price_per_1m_chars
            basis = f"${rate:g} per 1M characters"
            if speed != 1.0:
                basis += f" / speed {speed:g}"
            return info(chars / 1e6 * rate / speed, basis)
        if task == "audio.transcriptions":
            if mp.price_per_hour is None:
                return None
            seconds = _positive(q.pop("seconds", 0), "seconds", task)
            seconds += 3600 * _positive(q.pop("hours", 0), "hours", task)
            extra = bool(q.pop("word_timestamps", False)) | bool(q.pop("diarize", False))
            self._no_more(q, task)
            factor = mp.price_word_factor if extra else 1.0
            basis = f"${mp.price_per_hour:g} per audio hour (deAPI: 'from')"
            if factor != 1.0:
                basis += f" x{factor:g} (word timestamps / diarization)"
            return info(seconds / 3600 * mp.price_per_hour * factor, basis)
        if task in ("images.generations", "images.edits"):
            if mp.price_per_image is None or not mp.price_ref_pixels or not mp.price_ref_steps:
                return None
            n = _positive(q.pop("n", 1), "n", task)
            pixels = _pixels(q.pop("size", "512x512"), task)
            steps = _positive(q.pop("steps", None) or mp.price_ref_steps, "steps", task)
            self._no_more(q, task)
            scale = pixels / mp.price_ref_pixels * steps / mp.price_ref_steps
            side = int(mp.price_ref_pixels**0.5)
            basis = (
                f"${mp.price_per_image:g} per image at {side}x{side}, {mp.price_ref_steps} steps"
                + (f", scaled x{scale:.3g} for size and steps" if scale != 1 else "")
            )
            return info(n * mp.price_per_image * scale, basis)
        if task == "videos":
            if mp.price_per_video is None or not mp.price_ref_seconds or not mp.price_ref_pixels:
                return None
            seconds = _positive(q.pop("seconds", mp.price_ref_seconds), "seconds", task)
            pixels = _pixels(q.pop("size", "256x256"), task)
            self._no_more(q, task)
            scale = seconds / mp.price_ref_seconds * pixels / mp.price_ref_pixels
            side = int(mp.price_ref_pixels**0.5)
            basis = f"${mp.price_per_video:g} per {mp.price_ref_seconds:g} s clip at {side}x{side}"
            if scale != 1:
                basis += f", scaled x{scale:.3g} for length and size"
            return info(mp.price_per_video * scale, basis)
        raise InvalidParameterError(
            f"price(): unknown task {task!r}. Tasks: 'embeddings', 'audio.speech', "
            "'audio.transcriptions', 'images.generations', 'images.edits', 'videos'."
        )

    @staticmethod
    def _no_more(quantities: Mapping[str, Any], task: str) -> None:
        if quantities:
            raise InvalidParameterError(
                f"price({task!r}, ...) does not take {sorted(quantities)}; see "
                "ProviderProfile.price for the quantities of each task."
            )


MB = 1024 * 1024
_DEAPI_COMMON: dict[str, Any] = {
    "models": {m.id: m for m in _DEAPI_MODELS},
    "rpm": {
        "basic": _BASIC_RPM,
        "premium": {k: 300 for k in _BASIC_RPM},
        "unlimited": {},
    },
    "max_image_bytes": 10 * MB,
    "min_image_side": 64,
    "max_image_side": 5000,
    "max_images_n": 4,
    "supports_mask": False,
    "default_models": {
        "embeddings": "Bge_M3_FP16",
        "images.generations": "Flux1schnell",
        "images.edits": "Flux_2_Klein_4B_BF16",
        "audio.speech": "Kokoro",
        "audio.transcriptions": "WhisperLargeV3",
        "videos": "Ltx2_3_22B_Dist_INT8",
    },
    "price_date": REFERENCE_DATE,
}

#: deAPI as its docs describe it today (deapi-reference.md §1.5, §4, §5 as of REFERENCE_DATE).
DEAPI = ProviderProfile(
    name="deapi",
    max_upload_bytes=20 * MB,
    max_video_upload_bytes=50 * MB,
    max_request_bytes=75 * MB,
    speech_native_formats=("mp3",),
    daily_quotas={"basic": BASIC_DAILY_QUOTAS, "premium": {}, "unlimited": {}},
    limits="today",
    limits_source=f"deAPI docs of {REFERENCE_DATE.isoformat()}",
    **_DEAPI_COMMON,
)

#: deAPI as the seed document (its OpenAI-compatibility page, Feb-May 2026) describes it.
DEAPI_SEED = dataclasses.replace(
    DEAPI,
    max_upload_bytes=80 * MB,
    max_video_upload_bytes=80 * MB,
    max_request_bytes=None,
    speech_native_formats=("mp3", "wav", "flac", "opus"),
    daily_quotas={},
    limits="seed",
    limits_source="the seed document (deAPI OpenAI-compatibility page, Feb-May 2026)",
)

GENERIC = ProviderProfile(
    name="openai-compatible",
    models={},
    rpm={"basic": {}, "premium": {}, "unlimited": {}},
    max_upload_bytes=25 * MB,
    limits_source="OpenAI's documented 25 MB upload limit",
)

_PROFILES = {"deapi": DEAPI, "openai-compatible": GENERIC, "generic": GENERIC}


def get_profile(settings: Any = None) -> ProviderProfile:
    """The provider profile for a Settings object (or a profile name), with config overrides applied.

    The ``limits`` setting (``"today"``, the default, or ``"seed"``) picks which deAPI the
    ``deapi`` profile describes; ``max_upload_mb`` overrides the audio and video upload limits;
    ``speech_formats`` overrides the formats the server returns natively (others are converted).
    """
    name = "auto"
    max_upload_mb = None
    speech_formats = None
    limits = "today"
    if isinstance(settings, str):
        name = settings
    elif settings is not None:
        name = settings.profile
        max_upload_mb = settings.max_upload_mb
        speech_formats = getattr(settings, "speech_formats", None)
        limits = getattr(settings, "limits", None) or "today"
    if name == "auto":
        name = "deapi"
    try:
        profile = _PROFILES[name]
    except KeyError:
        raise InvalidParameterError(
            f"Unknown provider profile {name!r}. Valid profiles: {sorted(_PROFILES)}."
        ) from None
    if profile is DEAPI and limits == "seed":
        profile = DEAPI_SEED
    elif profile is DEAPI and limits != "today":
        raise InvalidParameterError(f"limits must be one of {list(LIMITS)}. Got {limits!r}.")
    if max_upload_mb:
        size = int(max_upload_mb * MB)
        profile = dataclasses.replace(
            profile,
            max_upload_bytes=size,
            max_video_upload_bytes=size,
            limits_source="the max_upload_mb setting",
        )
    if speech_formats:
        profile = dataclasses.replace(profile, speech_native_formats=tuple(speech_formats))
    return profile
