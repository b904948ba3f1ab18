"""deAPI's native v2 API (``https://api.deapi.ai/api/v2``) in the emulator.

What it serves (deapi-reference.md §2, §4, §5)
----------------------------------------------
* ``POST /api/v2/audio/transcriptions``: exactly one of ``source_url`` (the fake links of
  :data:`SOURCES`: YouTube, X/Twitter incl. Spaces, Twitch, Kick, TikTok) or ``source_file``
  (audio/video; the emulator's speech transcribes back exactly); ``model``, ``include_ts``
  (required), ``ts_level`` (segment | word), ``diarize`` (WhisperLargeV3Ct2 only), ``lang``,
  ``include_metadata`` (URL sources), ``return_result_in_response``. TikTok needs
  WhisperLargeV3Ct2 (422 otherwise, nothing charged).
* ``POST /api/v2/images/ocr`` (Nanonets_Ocr_S_F16; ``format`` text | json; reads Pillow's
  bitmap font exactly, see ``_ocr.py``), ``/images/background-removals`` (Ben2, RGBA PNG) and
  ``/images/upscales`` (RealESRGAN_x4, 4x PNG): ``image`` up to 10 MB, 64-5000 px per side,
  JPG/PNG/GIF/BMP/WebP.
* ``POST <each of the above>/price`` → ``{"data": {"price": <USD>}}``; the transcription quote
  also takes ``duration_seconds`` and ``platform``.
* ``GET /api/v2/jobs/{id}``: ``pending`` → ``processing`` → ``done`` | ``error`` by time on the
  emulator's clock (``job_seconds``); ``result`` (text) inline, ``result_url`` pre-signed and
  expiring after ``result_ttl`` seconds (each status read mints a fresh one); errors carry
  ``error_code``, ``error_message``, ``error_reason``, ``retryable``, ``refunded``.
* ``GET /api/v2/account/balance`` (the price of a job is held at submission and refunded when it
  fails) and ``GET /api/v2/models`` (``info.limits`` / ``info.features``, paginated).

Errors use the native shape ``{"message": ..., "errors": {field: [...]}}`` (422 for validation,
401 ``Unauthenticated.`` for a missing key or a key carrying the gateway's ``dpn-sk-`` prefix,
429 ``Too Many Attempts.`` with ``X-RateLimit-*`` headers). ``NativeAPI.limits("basic")`` turns
on deAPI's Basic per-minute and per-day limits for these endpoints (job status: 50/min,
200/day). Endpoint keys: :data:`NATIVE_ENDPOINTS`.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import math
import re
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from ._http import _ApiError, _json_result, _Request, _Result

__all__ = [
    "BASIC_LIMITS",
    "ERROR_REASONS",
    "NATIVE_ENDPOINTS",
    "NATIVE_MODELS",
    "SOURCES",
    "FakeSource",
    "NativeAPI",
    "synthesize_dialogue",
]

#: Endpoint keys of the native API (for ``Emulator.configure`` / ``stats``).
NATIVE_ENDPOINTS: tuple[str, ...] = (
    "v2.models",
    "v2.account.balance",
    "v2.jobs",
    "v2.price",
    "v2.audio.transcriptions",
    "v2.images.ocr",
    "v2.images.background-removals",
    "v2.images.upscales",
    "v2.results",
)

#: deAPI's Basic tier: endpoint key -> (requests per minute, requests per day).
BASIC_LIMITS: dict[str, tuple[int, int]] = {
    "v2.audio.transcriptions": (1, 10),
    "v2.images.ocr": (5, 50),
    "v2.images.background-removals": (5, 100),
    "v2.images.upscales": (5, 100),
    "v2.price": (50, 200),
    "v2.jobs": (50, 200),
}

#: error_reason -> (error_code, error_message, retryable).
ERROR_REASONS: dict[str, tuple[str, str, bool]] = {
    "SOURCE_PRIVATE": ("PROCESSING_ERROR", "private", False),
    "SOURCE_RESTRICTED": ("PROCESSING_ERROR", "age-restricted", False),
    "SOURCE_UNPROCESSABLE": ("PROCESSING_ERROR", "unprocessable", False),
    "SOURCE_DOWNLOAD_FAILED": ("PROCESSING_ERROR", "download-failed", False),
    "INPUT_TOO_LARGE": ("PROCESSING_ERROR", "input-too-large", False),
    "TIMEOUT": ("WORKER_TIMEOUT", "timeout", True),
    "CAPACITY_UNAVAILABLE": ("WORKER_ERROR", "capacity-unavailable", True),
    "PROCESSING_FAILED": ("WORKER_ERROR", "processing-failed", True),
}

_TRANSCRIBE_PER_HOUR = 0.05
_TS_FACTOR = 1.5  # word timestamps / diarization on WhisperLargeV3Ct2
_METADATA_FEE = 0.005
_TIKTOK_BANDS = ((60, 0.015), (120, 0.0225), (180, 0.030), (300, 0.045), (600, 0.0825))
_TIKTOK_MAX = 0.105
_MAX_URL_SECONDS = 600 * 60
_MAX_AUDIO_BYTES = 20 * 1024 * 1024
_MAX_VIDEO_BYTES = 50 * 1024 * 1024
_MAX_IMAGE_BYTES = 10 * 1024 * 1024
_IMAGE_FORMATS = {"JPEG", "PNG", "GIF", "BMP", "WEBP"}
_AUDIO_EXT = {"mp3", "wav", "flac", "ogg", "opus", "aac", "m4a", "webm", "mpeg", "mpga", "oga"}
_VIDEO_EXT = {"mp4", "mpeg", "mov", "avi", "wmv", "ogv", "mkv", "webm"}
_MIN_BALANCE = 0.49


# ---------------------------------------------------------------------------- models


def _model(slug, name, types, limits=None, features=None, defaults=None) -> dict[str, Any]:
    return {
        "name": name,
        "slug": slug,
        "inference_types": list(types),
        "tags": [],
        "status": "standard_model",
        "info": {
            "limits": dict(limits or {}),
            "features": dict(features or {}),
            "defaults": dict(defaults or {}),
        },
        "loras": [],
        "languages": [],
    }


_AUDIO_TYPES = ("audio2text", "video2text", "audio_file2text", "video_file2text")
#: The native catalogue (``GET /api/v2/models``), in deAPI's model-object shape.
NATIVE_MODELS: list[dict[str, Any]] = [
    _model(
        "WhisperLargeV3",
        "Whisper large-v3",
        _AUDIO_TYPES,
        {"timestamp_levels": ["segment"]},
        {"supports_diarization": False},
    ),
    _model(
        "WhisperLargeV3Ct2",
        "Whisper large-v3 (CTranslate2)",
        _AUDIO_TYPES,
        {"timestamp_levels": ["segment", "word"]},
        {"supports_diarization": True},
    ),
    _model(
        "Nanonets_Ocr_S_F16",
        "Nanonets OCR-S",
        ("img2txt",),
        {"output_formats": ["text", "json"], "min_width": 64, "max_width": 5000,
         "min_height": 64, "max_height": 5000},
    ),
    _model("Ben2", "BEN2 background removal", ("img-rmbg",),
           {"min_width": 64, "max_width": 5000, "min_height": 64, "max_height": 5000}),
    _model("RealESRGAN_x4", "Real-ESRGAN x4", ("img-upscale",),
           {"min_width": 64, "max_width": 5000, "min_height": 64, "max_height": 5000,
            "min_scale": 4, "max_scale": 4}),
    _model("Bge_M3_FP16", "BGE-M3", ("txt2embedding",),
           {"max_input_tokens": 8192, "max_total_tokens": 300000}),
    _model("Kokoro", "Kokoro 82M", ("txt2audio",), {"min_text": 3, "max_text": 10001},
           {"supports_voice_presets": True}),
    _model("Flux1schnell", "FLUX.1 schnell", ("txt2img",),
           {"min_width": 256, "max_width": 2048, "min_height": 256, "max_height": 2048,
            "resolution_step": 128, "min_steps": 1, "max_steps": 10},
           {"supports_guidance": False, "supports_negative_prompt": True, "supports_lora": True},
           {"steps": 4}),
]  # fmt: skip
_BY_SLUG = {m["slug"]: m for m in NATIVE_MODELS}
_TASK_MODELS = {
    "audio.transcriptions": ("WhisperLargeV3", "WhisperLargeV3Ct2"),
    "images.ocr": ("Nanonets_Ocr_S_F16",),
    "images.background-removals": ("Ben2",),
    "images.upscales": ("RealESRGAN_x4",),
}


# ---------------------------------------------------------------------------- URL sources


@dataclass(frozen=True)
class FakeSource:
    """One fake link: what the emulator "downloads" for it.

    ``turns`` are (voice, text) pairs: the audio is the emulator's speech of each turn in its
    voice, one after the other, so a diarized transcription labels them turn by turn.
    ``duration`` overrides the audio's length (the rest is silence); ``error`` names an
    ``error_reason`` the job ends with (``fail_first`` times only, then it works, when set).
    """

    url: str
    platform: str
    title: str
    channel: str
    turns: tuple[tuple[str, str], ...] = ()
    views: int = 0
    upload_date: str = "2026-01-15"
    duration: float | None = None
    error: str | None = None
    fail_first: int | None = None


_PODCAST = (
    ("am_adam", "Welcome back to the data show. Today we talk about embeddings."),
    ("af_bella", "Thanks for having me. Embeddings turn text into vectors."),
    ("am_adam", "And why should a data scientist care?"),
    ("af_bella", "Because search, clustering and deduplication all get easier."),
    ("am_adam", "Great. Let us end on that note."),
)
_SPACE = (
    ("bm_george", "Good evening everyone, this space is about open models."),
    ("af_sky", "I run open models on my laptop every day."),
    ("am_echo", "Latency matters more than size for me."),
    ("bm_george", "Thanks both. See you next week."),
)

#: The fake links the emulator knows (normalised URL -> source). Any other link on a supported
#: platform fails with ``SOURCE_DOWNLOAD_FAILED``.
SOURCES: dict[str, FakeSource] = {
    s.url: s
    for s in (
        FakeSource("https://www.youtube.com/watch?v=emuPodcast01", "youtube",
                   "The Data Show #12: embeddings", "Data Show", _PODCAST, views=48213),
        FakeSource("https://www.youtube.com/watch?v=emuLecture02", "youtube",
                   "Lecture 3: cosine similarity", "Open Course",
                   (("bf_emma", "Cosine similarity compares directions. Length does not matter."),),
                   views=1520),
        FakeSource("https://www.youtube.com/watch?v=emuMusic0003", "youtube",
                   "Lo-fi beats to embed to", "Beats", (), views=990000, duration=45.0),
        FakeSource("https://www.youtube.com/watch?v=emuPrivate04", "youtube", "(private)",
                   "Hidden", error="SOURCE_PRIVATE"),
        FakeSource("https://www.youtube.com/watch?v=emuAgeGate05", "youtube",
                   "Restricted upload", "Grown Ups", error="SOURCE_RESTRICTED"),
        FakeSource("https://www.youtube.com/watch?v=emuFlaky0006", "youtube",
                   "A busy worker", "Flaky", (("nova", "This one works on the second try."),),
                   error="CAPACITY_UNAVAILABLE", fail_first=1),
        FakeSource("https://x.com/deapi_emu/status/1800000000000000001", "twitter",
                   "Shipping the native API today", "deapi_emu",
                   (("onyx", "We ship the native API today. Try it with a link."),), views=3100),
        FakeSource("https://x.com/i/spaces/1emuSpaceAbc", "twitter",
                   "Open models night", "deapi_emu", _SPACE, views=740),
        FakeSource("https://www.twitch.tv/videos/2000000001", "twitch", "Coding stream",
                   "emu_streamer",
                   (("am_puck", "Chat, today we build a transcription pipeline."),),
                   views=12000),
        FakeSource("https://www.twitch.tv/videos/2000000099", "twitch", "24 hour marathon",
                   "emu_streamer", (), duration=11 * 3600.0, error="INPUT_TOO_LARGE"),
        FakeSource("https://kick.com/emu-streamer/videos/9f8e7d6c-0001", "kick",
                   "Late night chat", "emu-streamer",
                   (("am_michael", "Hello kick. Questions go in the chat."),), views=800),
        FakeSource("https://www.tiktok.com/@emu.creator/video/7300000000000000001", "tiktok",
                   "Three tips in thirty seconds", "emu.creator",
                   (("af_nova", "Tip one. Cache everything. Tip two. Batch requests."),),
                   views=250000),
    )
}  # fmt: skip


def parse_source_url(url: str) -> tuple[str, str] | None:
    """(platform, normalised URL) for a supported link, None for anything else."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return None
    host = (parts.hostname or "").lower().removeprefix("www.").removeprefix("m.")
    path = parts.path.rstrip("/")
    query = parse_qs(parts.query)
    if host in ("youtube.com", "music.youtube.com"):
        if path == "/watch" and query.get("v"):
            return "youtube", f"https://www.youtube.com/watch?v={query['v'][0]}"
        m = re.fullmatch(r"/(?:shorts|live|embed)/([\w-]+)", path)
        if m:
            return "youtube", f"https://www.youtube.com/watch?v={m.group(1)}"
    if host == "youtu.be" and re.fullmatch(r"/[\w-]+", path):
        return "youtube", f"https://www.youtube.com/watch?v={path[1:]}"
    if host in ("x.com", "twitter.com", "mobile.twitter.com"):
        m = re.fullmatch(r"/i/spaces/(\w+)", path)
        if m:
            return "twitter", f"https://x.com/i/spaces/{m.group(1)}"
        m = re.fullmatch(r"/(\w+)/status/(\d+)", path)
        if m:
            return "twitter", f"https://x.com/{m.group(1)}/status/{m.group(2)}"
    if host == "twitch.tv":
        m = re.fullmatch(r"/videos/(\d+)", path)
        if m:
            return "twitch", f"https://www.twitch.tv/videos/{m.group(1)}"
    if host == "kick.com":
        m = re.fullmatch(r"/([\w-]+)/videos/([\w-]+)", path)
        if m:
            return "kick", f"https://kick.com/{m.group(1)}/videos/{m.group(2)}"
    if host in ("tiktok.com", "vm.tiktok.com"):
        m = re.fullmatch(r"/@([\w.-]+)/video/(\d+)", path)
        if m:
            return "tiktok", f"https://www.tiktok.com/@{m.group(1)}/video/{m.group(2)}"
    return None


def synthesize_dialogue(turns: Sequence[tuple[str, str]], *, fmt: str = "mp3") -> bytes:
    """One clip of several voices: the emulator's speech of each ``(voice, text)`` turn in order.

    A diarizing transcription (native ``diarize=true``) labels every word with its turn's
    speaker (``SPEAKER_00`` for the first voice heard, ``SPEAKER_01`` for the next new one…).

    >>> from deapi_ds.emulator import synthesize_dialogue
    >>> clip = synthesize_dialogue([("am_adam", "Hi."), ("af_bella", "Hello.")], fmt="wav")
    """
    import numpy as np
    import soundfile as sf

    from ._media import _SR, _speech_signal

    if not turns:
        raise ValueError("synthesize_dialogue() needs at least one (voice, text) turn.")
    signal = np.concatenate([_speech_signal(text, voice, 1.0) for voice, text in turns])
    if fmt not in ("wav", "mp3", "flac"):
        raise ValueError(f"synthesize_dialogue() writes 'wav', 'mp3' or 'flac'; got {fmt!r}.")
    buf = io.BytesIO()
    if fmt == "mp3":
        sf.write(buf, signal, _SR, format="MP3")
    else:
        sf.write(buf, signal, _SR, format=fmt.upper(), subtype="PCM_16")
    return buf.getvalue()


@functools.lru_cache(maxsize=64)
def _source_audio(url: str) -> tuple[bytes, float]:
    """WAV bytes of a fake source and its duration (the declared one when longer)."""
    import numpy as np
    import soundfile as sf

    from ._media import _SR, _speech_signal

    source = SOURCES[url]
    parts = [_speech_signal(text, voice, 1.0) for voice, text in source.turns]
    signal = np.concatenate(parts) if parts else np.zeros(_SR, dtype=np.float32)
    duration = len(signal) / _SR
    if source.duration is not None and source.duration > duration and source.error is None:
        signal = np.concatenate([signal, np.zeros(round((source.duration - duration) * _SR))])
        duration = source.duration
    buf = io.BytesIO()
    sf.write(buf, signal.astype(np.float32), _SR, format="WAV", subtype="PCM_16")
    return buf.getvalue(), max(duration, source.duration or 0.0)


# ---------------------------------------------------------------------------- jobs


@dataclass
class NativeJob:
    """One accepted job and its deterministic future."""

    id: str
    endpoint: str
    created: float
    pending_s: float
    processing_s: float
    price: float
    billing: dict[str, float]
    result_text: str | None = None
    result_bytes: bytes | None = None
    result_type: str = "application/json"
    result_ext: str = "json"
    inline_json: bool = False
    metadata: dict[str, Any] | None = None
    error_reason: str | None = None
    settled: bool = False
    failed_at: str | None = None

    def state(self, now: float) -> tuple[str, float]:
        t = now - self.created
        if t < self.pending_s:
            return "pending", 0.0
        if t < self.pending_s + self.processing_s:
            done = (t - self.pending_s) / max(self.processing_s, 1e-9)
            return "processing", round(100.0 * done, 2)
        return ("error" if self.error_reason else "done"), 100.0


@dataclass
class _StoredResult:
    data: bytes
    content_type: str
    expires: float


def _unprocessable(field_name: str, message: str) -> _ApiError:
    error = _ApiError(422, message, param=field_name)
    error.native_errors = {field_name: [message]}  # type: ignore[attr-defined]
    return error


def _truthy(value: Any) -> bool | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(text)


def _bool_field(data: dict[str, Any], name: str) -> bool | None:
    try:
        return _truthy(data.get(name))
    except ValueError:
        raise _unprocessable(name, f"The {name} field must be true or false.") from None


class NativeAPI:
    """The native v2 endpoints of one :class:`~deapi_ds.emulator.Emulator` (``emu.native``).

    ``job_seconds`` = (pending, processing) seconds of every job on the emulator's clock;
    ``result_ttl`` = seconds a ``result_url`` stays valid; ``balance`` in USD.
    """

    def __init__(self, emulator: Any) -> None:
        self.emu = emulator
        self.job_seconds: tuple[float, float] = (0.05, 0.15)
        self.result_ttl = 600.0
        self.balance = 5.0
        self.jobs: dict[str, NativeJob] = {}
        self._results: dict[str, _StoredResult] = {}
        self._script: deque[str | None] = deque()
        self._attempts: dict[str, int] = {}
        self._rpd: dict[str, int] = {}
        self._daily: dict[tuple[str, int], int] = {}
        self._day_offset = time.time() - emulator.clock()
        self._counter = 0

    def __repr__(self) -> str:
        return f"<NativeAPI: {len(self.jobs)} jobs, balance ${self.balance:.4f}>"

    # -- configuration -----------------------------------------------------------------

    def limits(self, tier: str = "basic") -> NativeAPI:
        """Apply deAPI's published per-minute and per-day limits (``"basic"``), or none."""
        if tier not in ("basic", "none"):
            raise ValueError(f"tier must be 'basic' or 'none'. Got {tier!r}.")
        for endpoint, (rpm, rpd) in BASIC_LIMITS.items():
            self.emu.configure(endpoint, rpm=rpm if tier == "basic" else None)
            if tier == "basic":
                self._rpd[endpoint] = rpd
            else:
                self._rpd.pop(endpoint, None)
        return self

    def set_daily_limit(self, endpoint: str, rpd: int | None) -> NativeAPI:
        """Requests per (UTC) day for one endpoint key; None removes the limit."""
        if endpoint not in NATIVE_ENDPOINTS:
            raise ValueError(f"Unknown native endpoint key {endpoint!r}: {NATIVE_ENDPOINTS}.")
        if rpd is None:
            self._rpd.pop(endpoint, None)
        else:
            self._rpd[endpoint] = int(rpd)
        return self

    def fail_next(self, *reasons: str | None) -> NativeAPI:
        """The next submitted jobs end with these ``error_reason``s (None: normal), in order."""
        for reason in reasons:
            if reason is not None and reason not in ERROR_REASONS:
                raise ValueError(f"Unknown error_reason {reason!r}. Known: {list(ERROR_REASONS)}.")
        self._script.extend(reasons)
        return self

    def submitted(self) -> int:
        """How many jobs were accepted."""
        return len(self.jobs)

    # -- routing -----------------------------------------------------------------------

    def routes(self) -> list[tuple[str, re.Pattern[str], str, Callable[[_Request], _Result]]]:
        tasks = "audio/transcriptions|images/ocr|images/background-removals|images/upscales"
        return [
            ("GET", re.compile(r"/api/v2/models"), "v2.models", self._models),
            ("GET", re.compile(r"/api/v2/account/balance"), "v2.account.balance", self._balance),
            ("GET", re.compile(r"/api/v2/jobs/(?P<id>[^/]+)"), "v2.jobs", self._job_status),
            ("POST", re.compile(rf"/api/v2/(?P<task>{tasks})/price"), "v2.price", self._price),
            ("POST", re.compile(r"/api/v2/audio/transcriptions"), "v2.audio.transcriptions",
             self._transcription),
            ("POST", re.compile(r"/api/v2/images/ocr"), "v2.images.ocr", self._image_job),
            ("POST", re.compile(r"/api/v2/images/background-removals"),
             "v2.images.background-removals", self._image_job),
            ("POST", re.compile(r"/api/v2/images/upscales"), "v2.images.upscales",
             self._image_job),
            ("GET", re.compile(r"/api/v2/results/(?P<token>[A-Za-z0-9]+)\.(?P<ext>\w+)"),
             "v2.results", self._result_file),
        ]  # fmt: skip

    def check_auth(self, req: _Request) -> _ApiError | None:
        """Native keys are the raw ``<id>|<secret>``: no key or a ``dpn-sk-`` key → 401."""
        header = req.headers.get("authorization", "").strip()
        scheme, _, key = header.partition(" ")
        key = key.strip()
        unauthenticated = _ApiError(401, "Unauthenticated.")
        if scheme.lower() != "bearer" or not key or key.startswith("dpn-sk-"):
            return unauthenticated
        if self.emu.api_key is not None:
            expected = self.emu.api_key.removeprefix("dpn-sk-")
            return None if key == expected else unauthenticated
        ident, sep, secret = key.partition("|")
        return None if (sep and ident.isdigit() and secret) else unauthenticated

    def check_daily(self, endpoint: str) -> _ApiError | None:
        """Count one request against the endpoint's daily limit; a 429 once it is used up."""
        limit = self._rpd.get(endpoint)
        if limit is None:
            return None
        now = self.emu.clock() + self._day_offset
        day = int(now // 86400)
        used = self._daily.get((endpoint, day), 0)
        if used >= limit:
            wait = math.ceil((day + 1) * 86400 - now)
            return _ApiError(
                429,
                "Too Many Attempts.",
                headers={
                    "Retry-After": str(wait),
                    "X-RateLimit-Limit": str(limit),
                    "X-RateLimit-Remaining": "0",
                    "X-RateLimit-Source": "daily",
                },
            )
        self._daily[(endpoint, day)] = used + 1
        return None

    # -- helpers -----------------------------------------------------------------------

    def _new_id(self, seed: str) -> str:
        self._counter += 1
        digest = hashlib.sha256(f"{self._counter}|{seed}".encode()).hexdigest()
        return f"{digest[:8]}-{digest[8:12]}-4{digest[13:16]}-a{digest[17:20]}-{digest[20:32]}"

    def _fields(self, req: _Request) -> dict[str, Any]:
        if req.is_multipart():
            return req.fields()
        if req.content_type.lower().startswith("application/x-www-form-urlencoded"):
            pairs = parse_qs(req.body.decode("utf-8", "replace"), keep_blank_values=True)
            return {k.removesuffix("[]"): v[-1] for k, v in pairs.items()}
        if req.body.strip():
            return req.json()
        return {}

    def _model_for(self, data: dict[str, Any], task: str) -> str:
        model = data.get("model")
        allowed = _TASK_MODELS[task]
        if not model:
            raise _unprocessable("model", "The model field is required.")
        if model not in allowed:
            raise _unprocessable(
                "model",
                f"The selected model is invalid. Models for {task}: {', '.join(allowed)}.",
            )
        return str(model)

    def _settle(self, job: NativeJob) -> None:
        """Book a finished job once: bill a done job, refund a failed one."""
        status, _ = job.state(self.emu.clock())
        if job.settled or status not in ("done", "error"):
            return
        job.settled = True
        if status == "error":
            self.balance += job.price
            job.failed_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            return
        stats = self.emu._stats[job.endpoint]
        for key, value in job.billing.items():
            stats[key] += value

    def _accept(self, req: _Request, job: NativeJob) -> _Result:
        if self.balance < _MIN_BALANCE:
            raise _unprocessable(
                "balance",
                f"Insufficient balance: ${self.balance:.2f}; at least ${_MIN_BALANCE} is needed "
                "to submit a job.",
            )
        if self._script:
            reason = self._script.popleft()
            if reason is not None:
                job.error_reason = reason
        self.balance -= job.price
        self.jobs[job.id] = job
        return _json_result({"data": {"request_id": job.id}}, jobs=1)

    def _store(self, req: _Request, data: bytes, content_type: str, ext: str) -> str:
        token = hashlib.sha256(
            data[:4096] + str(self._counter).encode() + str(self.emu.clock()).encode()
        ).hexdigest()[:32]
        self._counter += 1
        expires = self.emu.clock() + self.result_ttl
        self._results[token] = _StoredResult(data, content_type, expires)
        unix = int(time.time() + self.result_ttl)
        signature = hashlib.sha256(f"{token}|{unix}".encode()).hexdigest()[:24]
        return (
            f"{req.base_url}/api/v2/results/{token}.{ext}"
            f"?X-Amz-Expires={int(self.result_ttl)}&expires={unix}&signature={signature}"
        )

    # -- account, models ------------------------------------------------------------------

    def _balance(self, req: _Request) -> _Result:
        for job in list(self.jobs.values()):
            self._settle(job)
        return _json_result({"data": {"balance": round(self.balance, 6)}})

    def _models(self, req: _Request) -> _Result:
        try:
            limit = int((req.query.get("limit") or ["25"])[0])
            page = int((req.query.get("page") or ["1"])[0])
        except ValueError:
            raise _unprocessable("limit", "The limit and page fields must be integers.") from None
        limit = min(max(limit, 1), 50)
        models = NATIVE_MODELS
        wanted = (req.query.get("filter[inference_types]") or [""])[0]
        if wanted:
            types = {t.strip() for t in wanted.split(",") if t.strip()}
            models = [m for m in models if types & set(m["inference_types"])]
        last = max(1, math.ceil(len(models) / limit))
        chunk = models[(page - 1) * limit : page * limit]
        base = f"{req.base_url}/api/v2/models?limit={limit}&page="
        return _json_result(
            {
                "data": chunk,
                "links": {
                    "first": base + "1",
                    "last": base + str(last),
                    "prev": base + str(page - 1) if page > 1 else None,
                    "next": base + str(page + 1) if page < last else None,
                },
                "meta": {
                    "current_page": page,
                    "last_page": last,
                    "per_page": limit,
                    "total": len(models),
                },
            }
        )

    # -- jobs ------------------------------------------------------------------------------

    def _job_status(self, req: _Request) -> _Result:
        job = self.jobs.get(req.params["id"])
        if job is None:
            raise _ApiError(404, "No query results for the requested resource.")
        self._settle(job)
        status, progress = job.state(self.emu.clock())
        data: dict[str, Any] = {
            "status": status,
            "progress": progress,
            "preview": None,
            "result_url": None,
            "results_alt_formats": None,
            "result": None,
            "metadata": None,
            "error_code": None,
            "error_message": None,
            "error_reason": None,
            "retryable": None,
            "refunded": None,
            "failed_at": None,
            "prompt_boosted": False,
            "prompt_boost": None,
        }
        if status == "done":
            if job.result_bytes is not None:
                data["result_url"] = self._store(
                    req, job.result_bytes, job.result_type, job.result_ext
                )
            if job.result_text is not None:
                data["result"] = job.result_text
            if job.inline_json and job.result_bytes is not None:
                data["result"] = job.result_bytes.decode("utf-8")
            data["metadata"] = job.metadata
        elif status == "error":
            code, message, retryable = ERROR_REASONS[job.error_reason or "PROCESSING_FAILED"]
            data.update(
                error_code=code,
                error_message=message,
                error_reason=job.error_reason,
                retryable=retryable,
                refunded=True,
                failed_at=job.failed_at,
            )
        return _json_result({"data": data})

    def _result_file(self, req: _Request) -> _Result:
        stored = self._results.get(req.params["token"])
        if stored is None or self.emu.clock() > stored.expires:
            body = (
                b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>'
                b"<Message>Request has expired</Message></Error>"
            )
            return _Result(403, body, "application/xml")
        return _Result(200, stored.data, stored.content_type)

    # -- transcription -----------------------------------------------------------------------

    def _transcription_params(self, req: _Request) -> dict[str, Any]:
        data = self._fields(req)
        files = [p for p in req.files("source_file")] if req.is_multipart() else []
        url = data.get("source_url") or None
        if bool(url) == bool(files):
            message = "Exactly one of source_url or source_file is required."
            raise _unprocessable("source_url" if not files else "source_file", message)
        model = self._model_for(data, "audio.transcriptions")
        include_ts = _bool_field(data, "include_ts")
        if include_ts is None and not req.path.endswith("/price"):
            raise _unprocessable("include_ts", "The include ts field is required.")
        ts_level = data.get("ts_level") or "segment"
        levels = _BY_SLUG[model]["info"]["limits"]["timestamp_levels"]
        if ts_level not in ("segment", "word"):
            raise _unprocessable("ts_level", "The selected ts level is invalid.")
        if ts_level not in levels:
            raise _unprocessable(
                "ts_level", f"The model {model} does not support '{ts_level}' timestamps."
            )
        diarize = bool(_bool_field(data, "diarize"))
        if diarize and not _BY_SLUG[model]["info"]["features"]["supports_diarization"]:
            raise _unprocessable(
                "diarize",
                f"The model {model} does not support diarization (use WhisperLargeV3Ct2).",
            )
        include_metadata = bool(_bool_field(data, "include_metadata"))
        if include_metadata and not url:
            raise _unprocessable(
                "include_metadata", "Metadata can only be included for source_url requests."
            )
        lang = data.get("lang") or None
        if lang is not None:
            lang = str(lang).split("-")[0].split("_")[0].lower()
            if lang == "auto":
                lang = None
            elif not re.fullmatch(r"[a-z]{2,3}", lang):
                raise _unprocessable("lang", "The lang field must be a language code.")
        params: dict[str, Any] = {
            "model": model,
            "include_ts": bool(include_ts) or diarize,
            "ts_level": ts_level,
            "diarize": diarize,
            "lang": lang,
            "include_metadata": include_metadata,
            "inline": bool(_bool_field(data, "return_result_in_response")),
            "source": None,
            "platform": None,
            "file": None,
        }
        if url:
            parsed = parse_source_url(str(url))
            if parsed is None:
                raise _unprocessable(
                    "source_url",
                    "The source url must be a YouTube, X/Twitter (posts or Spaces), Twitch, Kick "
                    "or TikTok link.",
                )
            params["platform"], params["source"] = parsed
            if params["platform"] == "tiktok" and model != "WhisperLargeV3Ct2":
                raise _unprocessable(
                    "model", "TikTok sources can only be transcribed with WhisperLargeV3Ct2."
                )
        else:
            part = files[0]
            name = part.filename or "source_file"
            ext = name.rsplit(".", 1)[-1].lower() if "." in name else ""
            if ext not in _AUDIO_EXT | _VIDEO_EXT:
                raise _unprocessable(
                    "source_file",
                    "The source file field must be a file of type: aac, mp3, ogg, webm, wav, "
                    "flac, mpeg, mp4, mov, avi, wmv.",
                )
            limit = _MAX_VIDEO_BYTES if ext in _VIDEO_EXT - _AUDIO_EXT else _MAX_AUDIO_BYTES
            if len(part.data) > limit:
                raise _unprocessable(
                    "source_file",
                    f"The source file field must not be greater than {limit // 1024} kilobytes.",
                )
            params["file"] = (name, part.data)
        params["duration_seconds"] = data.get("duration_seconds")
        params["platform_hint"] = data.get("platform")
        return params

    def _transcription_price(self, params: dict[str, Any], duration: float) -> float:
        if params["platform"] == "tiktok":
            for limit, price in _TIKTOK_BANDS:
                if duration <= limit:
                    return price + (_METADATA_FEE if params["include_metadata"] else 0.0)
            return _TIKTOK_MAX + (_METADATA_FEE if params["include_metadata"] else 0.0)
        price = duration / 3600.0 * _TRANSCRIBE_PER_HOUR
        if params["model"] == "WhisperLargeV3Ct2" and (
            params["diarize"] or (params["include_ts"] and params["ts_level"] == "word")
        ):
            price *= _TS_FACTOR
        if params["include_metadata"]:
            price += _METADATA_FEE
        return round(price, 8)

    def _transcribe_source(self, params: dict[str, Any]) -> tuple[dict[str, Any] | None, float]:
        """(transcription dict or None when the file cannot be decoded, duration)."""
        from ._media import MediaError, transcribe_audio

        if params["source"] is not None:
            source = SOURCES.get(params["source"])
            if source is None or source.error is not None and source.fail_first is None:
                return None, (source.duration or 0.0) if source else 0.0
            audio, duration = _source_audio(source.url)
            name = "source.wav"
        else:
            name, audio = params["file"]
            duration = 0.0
        try:
            out = transcribe_audio(
                audio,
                name,
                language=params["lang"],
                word_timestamps=params["ts_level"] == "word",
                diarize=params["diarize"],
            )
        except MediaError:
            return None, duration
        return out, max(duration, float(out["duration"]))

    def _transcription(self, req: _Request) -> _Result:
        params = self._transcription_params(req)
        result, duration = self._transcribe_source(params)
        source = SOURCES.get(params["source"]) if params["source"] else None
        error = None
        if params["source"] is not None:
            if source is None:
                error = "SOURCE_DOWNLOAD_FAILED"
            elif source.error is not None:
                attempts = self._attempts.get(source.url, 0)
                self._attempts[source.url] = attempts + 1
                if source.fail_first is None or attempts < source.fail_first:
                    error = source.error
        elif result is None:
            error = "SOURCE_UNPROCESSABLE"
        if duration > _MAX_URL_SECONDS and params["source"] is not None:
            error = "INPUT_TOO_LARGE"
        price = 0.0 if error else self._transcription_price(params, duration)
        job = NativeJob(
            id=self._new_id(params["source"] or "file"),
            endpoint="v2.audio.transcriptions",
            created=self.emu.clock(),
            pending_s=self.job_seconds[0],
            processing_s=self.job_seconds[1],
            price=price,
            billing={"audio_seconds": duration, "usd": price},
            error_reason=error,
        )
        if error is None and result is not None:
            job.result_text = result["text"]
            if params["include_ts"]:
                job.result_bytes = json.dumps(
                    _native_transcript(result, params), ensure_ascii=False
                ).encode("utf-8")
                job.inline_json = params["inline"]
            else:
                job.result_bytes = result["text"].encode("utf-8")
                job.result_type, job.result_ext = "text/plain; charset=utf-8", "txt"
            if params["include_metadata"] and source is not None:
                job.metadata = {
                    "title": source.title,
                    "channel": source.channel,
                    "uploader": source.channel,
                    "platform": source.platform,
                    "duration": round(duration, 3),
                    "view_count": source.views,
                    "upload_date": source.upload_date,
                    "url": source.url,
                }
        return self._accept(req, job)

    # -- images ------------------------------------------------------------------------------

    def _image(self, req: _Request) -> tuple[bytes, int, int]:
        from PIL import Image, UnidentifiedImageError

        parts = req.files("image") if req.is_multipart() else []
        if not parts:
            raise _unprocessable("image", "The image field is required.")
        data = parts[0].data
        if len(data) > _MAX_IMAGE_BYTES:
            raise _unprocessable(
                "image", "The image field must not be greater than 10240 kilobytes."
            )
        try:
            img = Image.open(io.BytesIO(data))
            fmt, (width, height) = img.format, img.size
        except (UnidentifiedImageError, OSError):
            fmt, width, height = None, 0, 0
        if fmt not in _IMAGE_FORMATS:
            raise _unprocessable(
                "image", "The image field must be a file of type: jpg, jpeg, png, gif, bmp, webp."
            )
        if not (64 <= width <= 5000 and 64 <= height <= 5000):
            raise _unprocessable(
                "image",
                f"The image has invalid dimensions ({width}x{height}): each side must be between "
                "64 and 5000 pixels.",
            )
        return data, width, height

    @staticmethod
    def _image_price(task: str, pixels: int) -> float:
        if task == "images.ocr":
            return round(0.000453 + 8.418e-9 * pixels, 8)  # fits the documented points
        if task == "images.background-removals":  # deAPI publishes no rate: the emulator's own
            return round(0.0003 + 0.000000002 * pixels, 8)
        return round(0.0005 + 0.000000004 * pixels, 8)  # upscales: the emulator's own rate

    def _image_job(self, req: _Request) -> _Result:
        task = req.path.removeprefix("/api/v2/").replace("/", ".")
        data = self._fields(req)
        model = self._model_for(data, task)
        image, width, height = self._image(req)
        fmt = data.get("format") or "text"
        if task == "images.ocr" and fmt not in ("text", "json"):
            raise _unprocessable("format", "The selected format is invalid (text or json).")
        price = self._image_price(task, width * height)
        job = NativeJob(
            id=self._new_id(f"{task}|{model}"),
            endpoint="v2." + task,
            created=self.emu.clock(),
            pending_s=self.job_seconds[0],
            processing_s=self.job_seconds[1],
            price=price,
            billing={"images": 1, "pixels": width * height, "usd": price},
        )
        from . import _ocr

        if task == "images.ocr":
            read = _ocr.read_text(image)
            job.result_text = read["text"]
            if fmt == "json":
                payload = {"text": read["text"], "lines": read["lines"], "width": width,
                           "height": height}  # fmt: skip
                job.result_bytes = json.dumps(payload).encode("utf-8")
            else:
                job.result_bytes = read["text"].encode("utf-8")
                job.result_type, job.result_ext = "text/plain; charset=utf-8", "txt"
            job.inline_json = bool(_bool_field(data, "return_result_in_response")) and fmt == "json"
        elif task == "images.background-removals":
            job.result_bytes = _ocr.remove_background(image)
            job.result_type, job.result_ext = "image/png", "png"
        else:
            job.result_bytes = _ocr.upscale_image(image, 4)
            job.result_type, job.result_ext = "image/png", "png"
        return self._accept(req, job)

    # -- price -----------------------------------------------------------------------------

    def _price(self, req: _Request) -> _Result:
        task = req.params["task"].replace("/", ".")
        if task == "audio.transcriptions":
            params = self._transcription_params(req)
            duration = params["duration_seconds"]
            if duration not in (None, ""):
                try:
                    seconds = float(duration)
                except (TypeError, ValueError):
                    raise _unprocessable(
                        "duration_seconds", "The duration seconds field must be a number."
                    ) from None
            elif params["file"] is not None:
                from ._media import MediaError, audio_duration

                try:
                    seconds = audio_duration(params["file"][1], params["file"][0])
                except MediaError:
                    raise _unprocessable(
                        "source_file", "The source file could not be read as audio or video."
                    ) from None
            else:
                source = SOURCES.get(params["source"])
                if source is None or source.error is not None and source.fail_first is None:
                    raise _unprocessable(
                        "duration_seconds",
                        "The source could not be inspected; pass duration_seconds to get a quote.",
                    )
                seconds = _source_audio(source.url)[1]
            return _json_result({"data": {"price": self._transcription_price(params, seconds)}})
        data = self._fields(req)
        self._model_for(data, task)
        _, width, height = self._image(req)
        return _json_result({"data": {"price": self._image_price(task, width * height)}})


def _native_transcript(result: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """The result file of a transcription job (the shape deAPI's tester app reads)."""
    segments = []
    for seg in result["segments"]:
        out: dict[str, Any] = {
            "start": seg["start"],
            "end": seg["end"],
            "text": seg["text"],
            "avg_logprob": seg["avg_logprob"],
            "no_speech_prob": seg["no_speech_prob"],
            "compression_ratio": seg["compression_ratio"],
        }
        if params["diarize"]:
            out["speaker"] = seg.get("speaker")
        if params["ts_level"] == "word":
            out["words"] = [
                {"word": w["word"], "start": w["start"], "end": w["end"], "score": 0.98}
                | ({"speaker": w["speaker"]} if params["diarize"] else {})
                for w in seg.get("words", [])
            ]
        segments.append(out)
    return {
        "text": result["text"],
        "language": result["language"],
        "language_probability": 0.99 if result["text"] else 0.0,
        "duration": result["duration"],
        "ts_level": params["ts_level"],
        "diarization_available": bool(params["diarize"]),
        "segments": segments,
    }
