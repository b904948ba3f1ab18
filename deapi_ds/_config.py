"""Configuration: the only module of deapi_ds that reads ``os.environ``.

Precedence, lowest first: built-in defaults, environment variables, ``set_config(...)``, then the
innermost ``config_context(...)``. ``get_config()`` returns a frozen :class:`Settings` snapshot;
task functions take that snapshot in the caller's thread and hand it down explicitly (the engine
runs on a private event-loop thread, where context variables of the caller are not visible).

Environment variables (the README has the same table)::

    DEAPI_API_KEY                your deAPI key (dpn-sk-<id>|<secret>; a bare <id>|<secret> gets the prefix)
    DEAPI_BASE_URL               https://oai.deapi.ai/v1
    DEAPI_NATIVE_BASE_URL        https://api.deapi.ai/api/v2 (native API: jobs, diarization, OCR)
    OPENAI_API_KEY               used when DEAPI_API_KEY is unset; never sent to a deAPI host
                                 unless it starts with dpn-sk-
    OPENAI_BASE_URL              used with OPENAI_API_KEY when DEAPI_BASE_URL is unset
    DEAPI_DS_CACHE_DIR           ~/.cache/deapi_ds (a folder or an fsspec URL such as s3://bucket/path)
    DEAPI_DS_CACHE               1 (0 turns the cache off)
    DEAPI_DS_CONCURRENCY         8 requests in flight per client
    DEAPI_DS_TIMEOUT             300 seconds to read a response (image and video generation are slow)
    DEAPI_DS_CONNECT_TIMEOUT     10 seconds
    DEAPI_DS_TIER                basic on deAPI hosts, unlimited elsewhere (basic | premium | unlimited)
    DEAPI_DS_RPM                 per-endpoint requests per minute: "60" or "embeddings=10,audio.speech=5"
    DEAPI_DS_MAX_RETRIES         5 retries after the first attempt
    DEAPI_DS_MAX_RETRY_WAIT      300 seconds: the longest Retry-After we honour
    DEAPI_DS_PROGRESS            1 (0 hides progress bars)
    DEAPI_DS_PROFILE             auto (deapi | openai-compatible)
    DEAPI_DS_LIMITS              today (deAPI's docs of 2026-08-19) | seed (the seed document)
    DEAPI_DS_MAX_UPLOAD_MB       from the limits: 20 audio / 50 video (today), 80 (seed)
    DEAPI_DS_SPEECH_FORMATS      from the limits: mp3 (today), mp3,wav,flac,opus (seed): the
                                 formats the server returns itself; others are converted locally
    DEAPI_DS_ALLOW_INSECURE_HTTP 0 (1 allows sending the key over plain http to a non-loopback host)
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import ipaddress
import os
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit

from ._exceptions import ConfigurationError, InvalidParameterError, MissingAPIKeyError

__all__ = [
    "ENV_VARIABLES",
    "Secret",
    "Settings",
    "config_context",
    "get_config",
    "is_deapi_host",
    "is_loopback",
    "normalize_key",
    "process_context",
    "reset_config",
    "set_config",
]

DEFAULT_BASE_URL = "https://oai.deapi.ai/v1"
DEFAULT_NATIVE_BASE_URL = "https://api.deapi.ai/api/v2"
KEY_PREFIX = "dpn-sk-"

#: name -> (default shown in the docs, description); the README table is generated from this.
ENV_VARIABLES: dict[str, tuple[str, str]] = {
    "DEAPI_API_KEY": (
        "unset",
        "Your deAPI key, `dpn-sk-<id>|<secret>`; a bare `<id>|<secret>` gets the `dpn-sk-` prefix.",
    ),
    "DEAPI_BASE_URL": (DEFAULT_BASE_URL, "The OpenAI-compatible endpoint."),
    "DEAPI_NATIVE_BASE_URL": (
        DEFAULT_NATIVE_BASE_URL,
        "deAPI's native API (jobs: diarization, links, OCR); it gets the key without `dpn-sk-`.",
    ),
    "OPENAI_API_KEY": (
        "unset",
        "Used when `DEAPI_API_KEY` is unset. Never sent to a deAPI host unless it starts with `dpn-sk-`.",
    ),
    "OPENAI_BASE_URL": (
        "unset",
        "Used together with `OPENAI_API_KEY` when `DEAPI_BASE_URL` is unset.",
    ),
    "DEAPI_DS_CACHE_DIR": (
        "~/.cache/deapi_ds",
        "Result cache: a folder or an fsspec URL (`s3://bucket/prefix`).",
    ),
    "DEAPI_DS_CACHE": ("1", "`0` turns the result cache off."),
    "DEAPI_DS_CONCURRENCY": ("8", "Requests in flight at once, per client."),
    "DEAPI_DS_TIMEOUT": (
        "300",
        "Seconds to wait for a response (image and video generation are slow).",
    ),
    "DEAPI_DS_CONNECT_TIMEOUT": ("10", "Seconds to wait for a connection."),
    "DEAPI_DS_TIER": (
        "basic on deAPI, unlimited elsewhere",
        "Which published rate limits to keep: `basic`, `premium` or `unlimited`.",
    ),
    "DEAPI_DS_RPM": (
        "from the tier",
        "Requests per minute: `60` for every endpoint, or `embeddings=10,audio.speech=5`.",
    ),
    "DEAPI_DS_MAX_RETRIES": (
        "5",
        "Retries after the first attempt (429, 5xx, timeouts, dropped connections).",
    ),
    "DEAPI_DS_MAX_RETRY_WAIT": (
        "300",
        "Longest `Retry-After` (seconds) honoured; a longer one raises `QuotaExceededError` "
        "(a `RateLimitError`).",
    ),
    "DEAPI_DS_PROGRESS": ("1", "`0` hides progress bars."),
    "DEAPI_DS_PROFILE": ("auto", "Provider profile: `deapi` or `openai-compatible` (auto: deapi)."),
    "DEAPI_DS_LIMITS": (
        "today",
        "Which deAPI to assume: `today` (its docs of 2026-08-19: 20 MB audio / 50 MB video "
        "uploads, 75 MB requests, mp3-only speech, Basic daily quotas) or `seed` (the seed "
        "page: 80 MB uploads, mp3/wav/flac/opus speech, no daily quotas).",
    ),
    "DEAPI_DS_MAX_UPLOAD_MB": (
        "from the limits",
        "Transcription upload limit per file in MB (today: 20 audio, 50 video; seed: 80). "
        "Larger files are reduced to audio or split at silences.",
    ),
    "DEAPI_DS_SPEECH_FORMATS": (
        "from the limits",
        "Speech formats the server returns itself, e.g. `mp3` (today) or `mp3,wav,flac,opus` "
        "(seed); other formats are requested as mp3 and converted locally.",
    ),
    "DEAPI_DS_ALLOW_INSECURE_HTTP": (
        "0",
        "`1` allows sending the key over plain http to a non-loopback host.",
    ),
}


class Secret:
    """A string that never shows itself in ``repr``/``str``. ``.get()`` returns the value."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> Any:  # pickling (dask workers) keeps the value, never prints it
        return (Secret, (self._value,))


def normalize_key(key: str) -> str:
    """Strip whitespace, an accidental ``Bearer `` and add ``dpn-sk-`` to a bare ``<id>|<secret>`` key."""
    key = key.strip()
    if key.lower().startswith("bearer "):
        key = key[7:].strip()
    if not key.startswith(KEY_PREFIX) and "|" in key:
        ident, _, _secret = key.partition("|")
        if ident.isdigit():
            key = KEY_PREFIX + key
    return key


def is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_deapi_host(url: str) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    return host == "deapi.ai" or host.endswith(".deapi.ai")


@dataclasses.dataclass(frozen=True)
class Settings:
    """A snapshot of the configuration. Build one with :func:`get_config`."""

    api_key: Secret | None = None
    key_source: str | None = None
    base_url: str = DEFAULT_BASE_URL
    native_base_url: str = DEFAULT_NATIVE_BASE_URL
    cache_dir: str = "~/.cache/deapi_ds"
    cache_enabled: bool = True
    cache_storage_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    cache_compact_threshold: int = 64
    max_concurrency: int = 8
    timeout: float = 300.0
    connect_timeout: float = 10.0
    tier: str | None = None
    rpm: Mapping[str, float] | float | None = None
    max_retries: int = 5
    max_retry_wait: float = 300.0
    progress: bool = True
    profile: str = "auto"
    max_upload_mb: float | None = None
    speech_formats: tuple[str, ...] | None = None
    limits: str = "today"
    allow_insecure_http: bool = False
    transport: Any = None
    user_agent_extra: str | None = None

    def __post_init__(self) -> None:
        if self.max_concurrency < 1:
            raise InvalidParameterError(
                f"max_concurrency must be an int >= 1. Got {self.max_concurrency!r}."
            )
        if self.timeout <= 0 or self.connect_timeout <= 0:
            raise InvalidParameterError(
                "timeout and connect_timeout must be positive numbers of seconds."
            )
        if self.max_retries < 0:
            raise InvalidParameterError(f"max_retries must be >= 0. Got {self.max_retries!r}.")
        if self.limits not in ("today", "seed"):
            raise InvalidParameterError(
                f"limits must be 'today' (deAPI as documented on 2026-08-19) or 'seed' (the "
                f"seed document's 80 MB uploads and wav/flac/opus speech). Got {self.limits!r}."
            )
        if self.tier is not None and self.tier not in ("basic", "premium", "unlimited"):
            raise InvalidParameterError(
                f"tier must be 'basic', 'premium' or 'unlimited'. Got {self.tier!r}."
            )

    @property
    def effective_tier(self) -> str:
        if self.tier:
            return self.tier
        return "basic" if is_deapi_host(self.base_url) else "unlimited"

    @property
    def cache_path(self) -> str:
        if "://" in self.cache_dir:
            return self.cache_dir
        return os.path.expanduser(self.cache_dir)

    def require_key(self) -> str:
        """The key to send, after the safety checks; raises a ConfigurationError explaining the fix."""
        if self.api_key is None:
            if self.transport is not None:
                return ""
            raise MissingAPIKeyError()
        key = self.api_key.get()
        if (
            self.key_source == "OPENAI_API_KEY"
            and not key.startswith(KEY_PREFIX)
            and is_deapi_host(self.base_url)
        ):
            raise ConfigurationError(
                "OPENAI_API_KEY is set but does not start with 'dpn-sk-': it looks like an OpenAI "
                "key, so deapi_ds will not send it to deAPI. Set DEAPI_API_KEY to your deAPI key "
                "(dpn-sk-<id>|<secret>, from app.deapi.ai/dashboard)."
            )
        scheme = urlsplit(self.base_url).scheme
        host = (urlsplit(self.base_url).hostname or "").lower()
        # ".invalid" names can never resolve (RFC 2606): only an in-process transport, such as
        # the emulator's, can answer them; any other host over http would see the key
        if (
            scheme == "http"
            and not host.endswith(".invalid")
            and not is_loopback(self.base_url)
            and not self.allow_insecure_http
        ):
            raise ConfigurationError(
                f"Refusing to send the API key over plain http to {urlsplit(self.base_url).hostname}. "
                "Use an https:// base URL, or set DEAPI_DS_ALLOW_INSECURE_HTTP=1 / "
                "set_config(allow_insecure_http=True) if you really mean it."
            )
        return key

    def rpm_for(self, endpoint: str) -> float | None:
        """Explicit requests-per-minute override for an endpoint, if any."""
        if self.rpm is None:
            return None
        if isinstance(self.rpm, int | float):
            return float(self.rpm)
        value = self.rpm.get(endpoint, self.rpm.get("*"))
        return None if value is None else float(value)

    def __repr__(self) -> str:
        fields = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "api_key":
                value = "**********" if value is not None else None
            fields.append(f"{f.name}={value!r}")
        return f"Settings({', '.join(fields)})"


_FIELDS = {f.name for f in dataclasses.fields(Settings)}
_global_overrides: dict[str, Any] = {}
_context_overrides: contextvars.ContextVar[tuple[dict[str, Any], ...]] = contextvars.ContextVar(
    "deapi_ds_config", default=()
)


def _bool(value: str, name: str) -> bool:
    v = value.strip().lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off", ""):
        return False
    raise ConfigurationError(f"{name} must be 0 or 1. Got {value!r}.")


def _number(value: str, name: str, kind: type = float) -> Any:
    try:
        return kind(value)
    except ValueError:
        raise ConfigurationError(f"{name} must be a number. Got {value!r}.") from None


def _formats(value: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    items = value.split(",") if isinstance(value, str) else list(value)
    out = tuple(v.strip().lower() for v in items if str(v).strip())
    if not out:
        raise ConfigurationError("speech_formats must name at least one format, e.g. 'mp3'.")
    return out


def parse_rpm(value: str) -> float | dict[str, float]:
    """Parse ``"60"`` or ``"embeddings=10,audio.speech=5"``."""
    value = value.strip()
    if "=" not in value:
        return _number(value, "DEAPI_DS_RPM")
    out: dict[str, float] = {}
    for part in value.split(","):
        if not part.strip():
            continue
        name, _, num = part.partition("=")
        out[name.strip()] = _number(num, f"DEAPI_DS_RPM[{name.strip()}]")
    return out


def _from_env(env: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    deapi_key = env.get("DEAPI_API_KEY", "").strip()
    openai_key = env.get("OPENAI_API_KEY", "").strip()
    if deapi_key:
        values["api_key"] = Secret(normalize_key(deapi_key))
        values["key_source"] = "DEAPI_API_KEY"
        if env.get("DEAPI_BASE_URL"):
            values["base_url"] = env["DEAPI_BASE_URL"]
    elif openai_key:
        values["api_key"] = Secret(normalize_key(openai_key))
        values["key_source"] = "OPENAI_API_KEY"
        base = env.get("DEAPI_BASE_URL") or env.get("OPENAI_BASE_URL")
        if base:
            values["base_url"] = base
    elif env.get("DEAPI_BASE_URL"):
        values["base_url"] = env["DEAPI_BASE_URL"]
    if env.get("DEAPI_NATIVE_BASE_URL"):
        values["native_base_url"] = env["DEAPI_NATIVE_BASE_URL"]
    if env.get("DEAPI_DS_CACHE_DIR"):
        values["cache_dir"] = env["DEAPI_DS_CACHE_DIR"]
    if env.get("DEAPI_DS_CACHE"):
        values["cache_enabled"] = _bool(env["DEAPI_DS_CACHE"], "DEAPI_DS_CACHE")
    numeric = {
        "DEAPI_DS_CONCURRENCY": ("max_concurrency", int),
        "DEAPI_DS_TIMEOUT": ("timeout", float),
        "DEAPI_DS_CONNECT_TIMEOUT": ("connect_timeout", float),
        "DEAPI_DS_MAX_RETRIES": ("max_retries", int),
        "DEAPI_DS_MAX_RETRY_WAIT": ("max_retry_wait", float),
        "DEAPI_DS_MAX_UPLOAD_MB": ("max_upload_mb", float),
    }
    for name, (field, kind) in numeric.items():
        if env.get(name):
            values[field] = _number(env[name], name, kind)
    if env.get("DEAPI_DS_TIER"):
        values["tier"] = env["DEAPI_DS_TIER"].strip().lower()
    if env.get("DEAPI_DS_RPM"):
        values["rpm"] = parse_rpm(env["DEAPI_DS_RPM"])
    if env.get("DEAPI_DS_PROGRESS"):
        values["progress"] = _bool(env["DEAPI_DS_PROGRESS"], "DEAPI_DS_PROGRESS")
    if env.get("DEAPI_DS_SPEECH_FORMATS"):
        values["speech_formats"] = _formats(env["DEAPI_DS_SPEECH_FORMATS"])
    if env.get("DEAPI_DS_LIMITS"):
        values["limits"] = env["DEAPI_DS_LIMITS"].strip().lower()
    if env.get("DEAPI_DS_PROFILE"):
        values["profile"] = env["DEAPI_DS_PROFILE"].strip()
    if env.get("DEAPI_DS_ALLOW_INSECURE_HTTP"):
        values["allow_insecure_http"] = _bool(
            env["DEAPI_DS_ALLOW_INSECURE_HTTP"], "DEAPI_DS_ALLOW_INSECURE_HTTP"
        )
    return values


def check_overrides(overrides: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in overrides.items():
        if name not in _FIELDS or name == "key_source":
            valid = sorted(_FIELDS - {"key_source"})
            raise InvalidParameterError(
                f"Unknown configuration option {name!r}. Valid options: {valid}."
            )
        if name == "api_key" and value is not None:
            if isinstance(value, Secret):
                value = Secret(normalize_key(value.get()))
            else:
                value = Secret(normalize_key(str(value)))
            out["key_source"] = "set_config"
        if name == "rpm" and isinstance(value, str):
            value = parse_rpm(value)
        if name == "speech_formats" and value is not None:
            value = _formats(value)
        if name in ("base_url", "native_base_url") and value is not None:
            value = str(value).rstrip("/")
        out[name] = value
    return out


def capture() -> tuple[dict[str, Any], ...]:
    """The caller's ``config_context`` layers, to re-apply on another thread with :func:`restore`."""
    return _context_overrides.get()


def restore(layers: tuple[dict[str, Any], ...]) -> None:
    """Apply captured ``config_context`` layers in the current context (see :func:`capture`)."""
    _context_overrides.set(layers)


def get_config(**overrides: Any) -> Settings:
    """The current configuration, with optional one-off ``overrides`` on top."""
    values = _from_env(os.environ)
    values.update(_global_overrides)
    for layer in _context_overrides.get():
        values.update(layer)
    if overrides:
        values.update(check_overrides(overrides))
    for name in ("base_url", "native_base_url"):
        if name in values:
            values[name] = str(values[name]).rstrip("/")
    return Settings(**values)


def set_config(**options: Any) -> None:
    """Change the configuration for this process, e.g. ``set_config(max_concurrency=16)``.

    Options are the fields of :class:`Settings`; ``None`` resets an option to its default.
    """
    checked = check_overrides(options)
    updated = dict(_global_overrides)
    for name, value in checked.items():
        if value is None:
            updated.pop(name, None)
            if name == "api_key":
                updated.pop("key_source", None)
        else:
            updated[name] = value
    values = _from_env(os.environ)
    values.update(updated)
    Settings(**values)  # validate before anything changes
    _global_overrides.clear()
    _global_overrides.update(updated)


def reset_config() -> None:
    """Forget every ``set_config`` change (environment variables still apply)."""
    _global_overrides.clear()


@contextlib.contextmanager
def process_context(**options: Any) -> Iterator[Settings]:
    """Like :func:`config_context`, but seen by every thread of the process until the block ends.

    ``config_context`` is per thread (and per task): a worker thread started inside it (a
    ``ThreadPoolExecutor``, Dask's threaded scheduler) does not see it. ``process_context``
    also applies the options as ``set_config`` would, and restores the previous process-wide
    options on exit (``set_config`` calls made inside the block are undone too). Used by
    :func:`deapi_ds.testing.emulated` so that no thread of a test can reach the real API.
    """
    checked = check_overrides(options)
    saved = dict(_global_overrides)
    set_config(**options)
    try:
        token = _context_overrides.set((*_context_overrides.get(), checked))
        try:
            yield get_config()
        finally:
            _context_overrides.reset(token)
    finally:
        _global_overrides.clear()
        _global_overrides.update(saved)


@contextlib.contextmanager
def config_context(**options: Any) -> Iterator[Settings]:
    """Temporarily change the configuration: ``with config_context(cache_enabled=False): ...``."""
    layer = check_overrides(options)
    token = _context_overrides.set((*_context_overrides.get(), layer))
    try:
        yield get_config()
    finally:
        _context_overrides.reset(token)
