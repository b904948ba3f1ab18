"""deAPI's native v2 API (``https://api.deapi.ai/api/v2``): the second client surface.

It sits beside the OpenAI-compatible :mod:`deapi_ds._client` on the same transport and engine:

- the same key, sent in its raw ``<id>|<secret>`` form (the gateway's ``dpn-sk-`` prefix is
  removed: the native API answers 401 to it), only to the native origin, and never over plain
  http to a non-loopback host (the configuration's own check, applied to the native URL);
- the native error shape ``{"message", "errors"}`` maps onto the same exception tree;
- per-endpoint limits from :mod:`deapi_ds._profiles` (Basic: job status 50/min and 200/day,
  price quotes 50/min and 200/day, transcriptions 1/min and 10/day, OCR 5/min and 50/day, …),
  per minute in the engine's limiter and per UTC day on the shared quota ledger
  (:mod:`deapi_ds._quota`; native endpoints count in the same buckets as the gateway's).

Requests are built without I/O (:func:`transcription_request`, :func:`ocr_request`,
:func:`background_removal_request`, :func:`upscale_request`) and sent with
:meth:`AsyncNativeClient.submit` (a job id) or :meth:`AsyncNativeClient.price` (a quote in USD).
:meth:`AsyncNativeClient.job` reads ``GET /jobs/{id}`` into a :class:`JobStatus`; the job layer
(:mod:`deapi_ds._jobs`) polls, downloads and resubmits. ::

    >>> client = NativeClient()                                        # doctest: +SKIP
    >>> req = transcription_request(source_url="https://youtu.be/...", diarize=True)  # doctest: +SKIP
    >>> client.price(req), client.balance()                            # doctest: +SKIP
    (0.0012, 4.98)
"""

from __future__ import annotations

import dataclasses
import json
import mimetypes
import threading
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import urlsplit

from ._client import _AsyncClientBase, _SyncClientBase
from ._config import KEY_PREFIX, Secret, Settings, get_config
from ._exceptions import InvalidParameterError, ResponseValidationError
from ._transport import HTTPResult, Transport

__all__ = [
    "JOB_STATES",
    "PLATFORMS",
    "AsyncNativeClient",
    "JobStatus",
    "NativeClient",
    "NativeModel",
    "NativeRequest",
    "background_removal_request",
    "clear_shared_clients",
    "ocr_request",
    "parse_job",
    "raw_key",
    "shared_native_client",
    "source_platform",
    "transcription_request",
    "upscale_request",
]

T = TypeVar("T")

#: Job statuses of ``GET /jobs/{id}``; the last two are final.
JOB_STATES = ("pending", "processing", "done", "error")
#: Link platforms the native transcription endpoint takes as ``source_url``.
PLATFORMS = ("youtube", "twitter", "twitch", "kick", "tiktok")
TIKTOK_MODEL = "WhisperLargeV3Ct2"
_DIARIZE_MODELS = ("WhisperLargeV3Ct2",)
_WORD_MODELS = ("WhisperLargeV3Ct2",)
_HOSTS = {
    "youtube.com": "youtube",
    "youtu.be": "youtube",
    "music.youtube.com": "youtube",
    "x.com": "twitter",
    "twitter.com": "twitter",
    "mobile.twitter.com": "twitter",
    "twitch.tv": "twitch",
    "kick.com": "kick",
    "tiktok.com": "tiktok",
    "vm.tiktok.com": "tiktok",
}


def raw_key(key: Any) -> Any:
    """The native form of a deAPI key: ``dpn-sk-<id>|<secret>`` → ``<id>|<secret>`` (a
    :class:`Secret` stays a Secret, so it never shows)."""
    if isinstance(key, Secret):
        return Secret(raw_key(key.get()))
    if key is None:
        return None
    return key[len(KEY_PREFIX) :] if key.startswith(KEY_PREFIX) else key


def source_platform(url: str) -> str | None:
    """The platform of a link (``youtube``, ``twitter``, ``twitch``, ``kick``, ``tiktok``) or None.

    >>> source_platform("https://youtu.be/abc"), source_platform("https://vimeo.com/1")
    ('youtube', None)
    """
    try:
        parts = urlsplit(str(url).strip())
    except ValueError:
        return None
    if parts.scheme not in ("http", "https"):
        return None
    host = (parts.hostname or "").lower()
    for prefix in ("www.", "m."):
        host = host.removeprefix(prefix)
    return _HOSTS.get(host)


# --------------------------------------------------------------------------- requests


@dataclasses.dataclass(frozen=True)
class NativeRequest:
    """One native job request, built without I/O: the task, its form fields and files.

    ``task`` is the path under ``/api/v2`` with dots (``"audio.transcriptions"``);
    ``result_file`` says whether the useful result is the file at ``result_url`` (JSON
    transcripts, images) rather than the inline text ``result``.
    """

    task: str
    fields: Mapping[str, str]
    files: tuple[tuple[str, tuple[str, bytes, str]], ...] = ()
    result_file: bool = True

    @property
    def path(self) -> str:
        return "/" + self.task.replace(".", "/")

    @property
    def endpoint(self) -> str:
        """The rate-limit key (``v2.<task>``)."""
        return "v2." + self.task

    def __repr__(self) -> str:
        files = ", ".join(f"{name}={part[0]!r} ({len(part[1])} bytes)" for name, part in self.files)
        return f"NativeRequest({self.task!r}, fields={dict(self.fields)!r}, files=[{files}])"


def _form(values: Mapping[str, Any]) -> dict[str, str]:
    out = {}
    for key, value in values.items():
        if value is None:
            continue
        if isinstance(value, bool):
            value = "true" if value else "false"
        out[key] = str(value)
    return out


def _file_part(name: str, data: bytes, default_mime: str) -> tuple[str, bytes, str]:
    mime = mimetypes.guess_type(name)[0] or default_mime
    return name, bytes(data), mime


def transcription_request(
    *,
    source_url: str | None = None,
    source_file: bytes | None = None,
    filename: str = "audio.mp3",
    model: str | None = None,
    timestamps: str | None = None,
    diarize: bool = False,
    language: str | None = None,
    include_metadata: bool = False,
    inline: bool = False,
) -> NativeRequest:
    """``POST /audio/transcriptions`` with a link (``source_url``) or bytes (``source_file``).

    ``timestamps`` is None (plain text), ``"segment"`` or ``"word"``; ``diarize=True`` labels
    speakers (implies timestamps). ``model`` defaults to WhisperLargeV3, or WhisperLargeV3Ct2
    when word timestamps, diarization or a TikTok link need it. Checks that cannot succeed on
    the server raise :class:`InvalidParameterError` here, before anything is paid.
    """
    func = "transcription_request"
    if (source_url is None) == (source_file is None):
        raise InvalidParameterError(
            f"{func}() takes exactly one of source_url= (a link) or source_file= (bytes)."
        )
    if timestamps not in (None, "segment", "word"):
        raise InvalidParameterError(
            f"The 'timestamps' parameter must be None, 'segment' or 'word'. Got {timestamps!r}."
        )
    platform = None
    if source_url is not None:
        platform = source_platform(source_url)
        if platform is None:
            raise InvalidParameterError(
                f"The link {source_url!r} is not one deAPI transcribes: use a YouTube, X/Twitter "
                "(posts or Spaces), Twitch, Kick or TikTok URL, or pass the file itself."
            )
    elif include_metadata:
        raise InvalidParameterError(
            "include_metadata=True works for links only (deAPI reads the metadata of the "
            "source page); drop it for files."
        )
    needs_ct2 = diarize or timestamps == "word" or platform == "tiktok"
    if model is None:
        model = TIKTOK_MODEL if needs_ct2 else "WhisperLargeV3"
    why = (
        "diarize=True"
        if diarize and model not in _DIARIZE_MODELS
        else "timestamps='word'"
        if timestamps == "word" and model not in _WORD_MODELS
        else "a TikTok link"
        if platform == "tiktok" and model != TIKTOK_MODEL
        else None
    )
    if why:
        raise InvalidParameterError(
            f"{why} needs model='{TIKTOK_MODEL}' on deAPI (model {model!r} would be refused with "
            f"422). Pass model='{TIKTOK_MODEL}' or leave model unset."
        )
    include_ts = diarize or timestamps is not None
    fields = _form(
        {
            "model": model,
            "include_ts": include_ts,
            "ts_level": (timestamps or "segment") if include_ts else None,
            "diarize": True if diarize else None,
            "lang": language,
            "include_metadata": True if include_metadata else None,
            "return_result_in_response": True if inline else None,
            "source_url": source_url,
        }
    )
    files: tuple[tuple[str, tuple[str, bytes, str]], ...] = ()
    if source_file is not None:
        files = (("source_file", _file_part(filename, source_file, "application/octet-stream")),)
    return NativeRequest("audio.transcriptions", fields, files, result_file=include_ts)


def _image_request(
    task: str, image: bytes, filename: str, fields: Mapping[str, Any], result_file: bool
) -> NativeRequest:
    if not isinstance(image, bytes | bytearray | memoryview):
        raise InvalidParameterError(
            f"The image for {task} must be bytes (the encoded file); got {type(image).__name__}."
        )
    part = _file_part(filename, bytes(image), "image/png")
    return NativeRequest(task, _form(fields), (("image", part),), result_file=result_file)


def ocr_request(
    image: bytes,
    *,
    filename: str = "image.png",
    model: str = "Nanonets_Ocr_S_F16",
    language: str | None = None,
    format: str = "text",
) -> NativeRequest:
    """``POST /images/ocr``: the text in an image (``format="json"``: also its layout)."""
    if format not in ("text", "json"):
        raise InvalidParameterError(f"format must be 'text' or 'json'. Got {format!r}.")
    fields = {"model": model, "language": language, "format": format}
    return _image_request("images.ocr", image, filename, fields, result_file=format == "json")


def background_removal_request(
    image: bytes, *, filename: str = "image.png", model: str = "Ben2"
) -> NativeRequest:
    """``POST /images/background-removals``: a PNG with a transparent background."""
    return _image_request(
        "images.background-removals", image, filename, {"model": model}, result_file=True
    )


def upscale_request(
    image: bytes, *, filename: str = "image.png", model: str = "RealESRGAN_x4"
) -> NativeRequest:
    """``POST /images/upscales``: the image enlarged (4x for RealESRGAN_x4)."""
    return _image_request("images.upscales", image, filename, {"model": model}, result_file=True)


# --------------------------------------------------------------------------- responses


@dataclasses.dataclass(frozen=True)
class JobStatus:
    """``GET /jobs/{id}``: status, result (inline text or ``result_url``), or why it failed."""

    id: str
    status: str
    progress: float | None = None
    result_url: str | None = None
    result: Any = None
    metadata: Mapping[str, Any] | None = None
    error_code: str | None = None
    error_message: str | None = None
    error_reason: str | None = None
    retryable: bool | None = None
    refunded: bool | None = None
    failed_at: str | None = None
    price: Any = None
    raw: Mapping[str, Any] = dataclasses.field(default_factory=dict, repr=False)

    @property
    def done(self) -> bool:
        """True once the job can no longer change (``done`` or ``error``)."""
        return self.status in ("done", "error")

    @property
    def failed(self) -> bool:
        return self.status == "error"

    def error_text(self) -> str:
        """One line saying why the job failed (empty when it did not)."""
        if not self.failed:
            return ""
        parts = [self.error_reason or self.error_code or "unknown error"]
        if self.error_message:
            parts.append(f"({self.error_message})")
        parts.append("retryable" if self.retryable else "not retryable")
        if self.refunded:
            parts.append("refunded")
        return f"job {self.id} failed: " + " ".join(parts)


def parse_job(payload: Any, job_id: str, *, endpoint: str = "GET /jobs/{id}") -> JobStatus:
    """Read a job status answer (``{"data": {...}}``; an unwrapped object is accepted too)."""
    data = payload.get("data", payload) if isinstance(payload, Mapping) else None
    if not isinstance(data, Mapping) or "status" not in data:
        raise ResponseValidationError(
            f"The status of job {job_id} has no 'status' field.", endpoint=endpoint
        )
    status = str(data["status"]).lower()
    if status == "in_progress":
        status = "processing"
    if status not in JOB_STATES:
        raise ResponseValidationError(
            f"Job {job_id} has an unknown status {data['status']!r}; expected one of {JOB_STATES}.",
            endpoint=endpoint,
        )
    progress = data.get("progress")
    try:
        progress = float(progress) if progress is not None else None
    except (TypeError, ValueError):
        progress = None

    def opt_bool(name: str) -> bool | None:
        value = data.get(name)
        return None if value is None else bool(value)

    return JobStatus(
        id=job_id,
        status=status,
        progress=progress,
        result_url=data.get("result_url") or None,
        result=data.get("result"),
        metadata=data.get("metadata") if isinstance(data.get("metadata"), Mapping) else None,
        error_code=data.get("error_code"),
        error_message=data.get("error_message"),
        error_reason=data.get("error_reason"),
        retryable=opt_bool("retryable"),
        refunded=opt_bool("refunded"),
        failed_at=data.get("failed_at"),
        price=data.get("price"),
        raw=dict(data),
    )


def _data(result: HTTPResult) -> Any:
    payload = result.json()
    return payload.get("data", payload) if isinstance(payload, Mapping) else payload


@dataclasses.dataclass(frozen=True)
class NativeModel:
    """One model of ``GET /models``: ``slug`` (what to send), ``info.limits`` / ``info.features``."""

    slug: str
    name: str | None = None
    inference_types: tuple[str, ...] = ()
    status: str | None = None
    tags: tuple[str, ...] = ()
    limits: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    features: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    defaults: Mapping[str, Any] = dataclasses.field(default_factory=dict)


def _parse_model(item: Mapping[str, Any]) -> NativeModel:
    types = item.get("inference_types") or ()
    if isinstance(types, Mapping):  # v2 may key the types by name
        types = list(types)
    info = item.get("info") if isinstance(item.get("info"), Mapping) else {}
    return NativeModel(
        slug=str(item.get("slug")),
        name=item.get("name"),
        inference_types=tuple(str(t) for t in types),
        status=item.get("status"),
        tags=tuple(str(t) for t in item.get("tags") or ()),
        limits=dict(info.get("limits") or {}),
        features=dict(info.get("features") or {}),
        defaults=dict(info.get("defaults") or {}),
    )


# --------------------------------------------------------------------------- limits, transport


class NativeTransport(Transport):
    """The gateway's transport, pointed at the native base URL with the key in raw form.

    The origin rule and the plain-http rule are the configuration's own
    (:meth:`Settings.require_key`), applied to the native URL.
    """

    def __init__(self, settings: Settings) -> None:
        super().__init__(dataclasses.replace(settings, base_url=settings.native_base_url))
        self._key = raw_key(self._key)

    def __repr__(self) -> str:
        return f"NativeTransport(base_url={self.base_url!r})"


# --------------------------------------------------------------------------- the clients


class AsyncNativeClient(_AsyncClientBase):
    """Async client for deAPI's native v2 API. Arguments default to the configuration.

    ``base_url`` overrides ``native_base_url``; ``engine`` may be shared with a gateway
    :class:`~deapi_ds.AsyncClient` (endpoint keys do not overlap).
    """

    _base_url_option = "native_base_url"

    def _make_transport(self, settings: Settings) -> Transport:
        return NativeTransport(settings)

    def _quota_scope(self, settings: Settings) -> Settings:
        # tier and daily-quota scope follow the native host (deAPI: the account's one ledger,
        # shared with the gateway's requests)
        return dataclasses.replace(settings, base_url=settings.native_base_url)

    async def _post(self, endpoint: str, request: NativeRequest, suffix: str = "") -> HTTPResult:
        files = list(request.files) or None
        return await self._call(
            endpoint, "POST", request.path + suffix, data=dict(request.fields), files=files
        )

    async def submit(self, request: NativeRequest) -> str:
        """Send a job; returns its ``request_id`` (the job id to poll)."""
        result = await self._post(request.endpoint, request)
        data = _data(result)
        job_id = data.get("request_id") if isinstance(data, Mapping) else None
        if job_id is None or str(job_id) == "":
            raise ResponseValidationError(
                f"The answer to {request.task} has no request_id: {result.content[:120]!r}.",
                endpoint=result.endpoint,
            )
        return str(job_id)

    async def price(
        self,
        request: NativeRequest,
        *,
        duration_seconds: float | None = None,
        platform: str | None = None,
    ) -> float:
        """The quote in USD for ``request`` (``POST <task>/price``; 50/min, 200/day on Basic).

        Transcriptions also take ``duration_seconds`` and ``platform`` (deAPI's price fields).
        """
        extra = _form({"duration_seconds": duration_seconds, "platform": platform})
        if extra:
            request = dataclasses.replace(request, fields={**request.fields, **extra})
        result = await self._post("v2.price", request, "/price")
        data = _data(result)
        price = data.get("price") if isinstance(data, Mapping) else None
        if isinstance(price, Mapping):  # partner models: {amount, is_estimated}
            price = price.get("amount")
        try:
            return float(price)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise ResponseValidationError(
                f"The price answer for {request.task} has no number: {result.content[:120]!r}.",
                endpoint=result.endpoint,
            ) from None

    async def job(self, job_id: str) -> JobStatus:
        """``GET /jobs/{id}`` (50/min, 200/day on Basic)."""
        _check_job_id(job_id)
        result = await self._call("v2.jobs", "GET", f"/jobs/{job_id}")
        return parse_job(result.json(), job_id, endpoint=result.endpoint)

    async def download(self, url: str) -> bytes:
        """Fetch a ``result_url`` now (pre-signed URLs expire; the key goes only to the API)."""
        result = await self._call("download", "GET", url, accept="*/*")
        return result.content

    async def balance(self) -> float:
        """``GET /account/balance``: the prepaid balance in USD."""
        data = _data(await self._call("v2.account.balance", "GET", "/account/balance"))
        value = data.get("balance") if isinstance(data, Mapping) else None
        try:
            return float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise ResponseValidationError(
                f"The balance answer has no number: {data!r}.", endpoint="GET /account/balance"
            ) from None

    async def models(self, inference_types: Sequence[str] | None = None) -> list[NativeModel]:
        """``GET /models``, every page (``limit=50``: deAPI's default of 25 hides models)."""
        out: list[NativeModel] = []
        page = 1
        while True:
            params: dict[str, Any] = {"limit": 50, "page": page}
            if inference_types:
                params["filter[inference_types]"] = ",".join(inference_types)
            result = await self._call("v2.models", "GET", "/models", params=params)
            payload = result.json()
            items = payload.get("data") if isinstance(payload, Mapping) else None
            if not isinstance(items, list):
                raise ResponseValidationError(
                    "The models answer has no 'data' list.", endpoint=result.endpoint
                )
            out.extend(_parse_model(m) for m in items if isinstance(m, Mapping))
            meta = payload.get("meta") or {}
            if not items or int(meta.get("last_page") or 1) <= page:
                return out
            page += 1


_shared: dict[Any, AsyncNativeClient] = {}
_shared_lock = threading.Lock()


def shared_native_client(settings: Settings | None = None) -> AsyncNativeClient:
    """One native client per configuration, so daily and per-minute limits hold across calls."""
    settings = settings or get_config()
    key = (
        settings.native_base_url,
        settings.api_key,
        id(settings.transport),
        settings.tier,
        repr(settings.rpm),
        settings.max_concurrency,
        settings.max_retries,
        settings.max_retry_wait,
        settings.profile,
    )
    with _shared_lock:
        client = _shared.get(key)
        if client is None:
            client = _shared[key] = AsyncNativeClient(settings=settings)
        return client


def clear_shared_clients() -> None:
    """Forget the shared native clients (a new configuration, tests)."""
    with _shared_lock:
        _shared.clear()


def _check_job_id(job_id: Any) -> None:
    text = str(job_id)
    if not text or any(ch in text for ch in "/?#\\ ") or len(text) > 128:
        raise InvalidParameterError(
            f"{job_id!r} is not a deAPI job id (a request_id such as "
            "'5c0d192f-e49d-470c-a7bc-05c7f49fea74')."
        )


class NativeClient(_SyncClientBase):
    """Synchronous twin of :class:`AsyncNativeClient` (works inside Jupyter's running loop)."""

    def __init__(self, api_key: str | None = None, *, base_url: str | None = None, **options: Any):
        api_key = Secret.wrap(api_key)
        self._async = AsyncNativeClient(api_key, base_url=base_url, **options)

    def __repr__(self) -> str:
        inner = getattr(self, "_async", None)  # a debugger may show a half-made client
        return f"deapi_ds.NativeClient(base_url={getattr(inner, 'base_url', None)!r})"

    @property
    def aclient(self) -> AsyncNativeClient:
        return self._async

    def submit(self, request: NativeRequest) -> str:
        return self._run(self._async.submit, request)

    def price(self, request: NativeRequest, **kwargs: Any) -> float:
        return self._run(self._async.price, request, **kwargs)

    def job(self, job_id: str) -> JobStatus:
        return self._run(self._async.job, job_id)

    def download(self, url: str) -> bytes:
        return self._run(self._async.download, url)

    def balance(self) -> float:
        return self._run(self._async.balance)

    def models(self, inference_types: Sequence[str] | None = None) -> list[NativeModel]:
        return self._run(self._async.models, inference_types)


def result_json(status: JobStatus, content: bytes | None) -> Any:
    """The JSON result of a finished job: the downloaded file, or an inline JSON ``result``."""
    for raw in (content, status.result):
        if raw is None:
            continue
        if isinstance(raw, Mapping | list):
            return raw
        try:
            return json.loads(raw)
        except (ValueError, TypeError, UnicodeDecodeError):
            continue
    return None
