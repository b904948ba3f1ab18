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
    DEAPI_DS_TIMEOUT             300 seconds for one request in all (connect, send, wait, read)
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
import urllib.request
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
    "check_key_destination",
    "env_proxy",
    "key_refusal",
    "native_key",
    "normalize_host",
    "normalize_key",
    "process_context",
    "reset_config",
    "secret_key",
    "set_config",
    "url_host",
]

DEFAULT_BASE_URL = "https://oai.deapi.ai/v1"
DEFAULT_NATIVE_BASE_URL = "https://api.deapi.ai/api/v2"
KEY_PREFIX = "dpn-sk-"
#: prefixes of keys deAPI issues: the gateway form, and the ``sk-dp-`` form one deAPI docs page
#: shows (deapi-reference.md, "Auth"); such keys may go to deAPI from any source
DEAPI_KEY_PREFIXES = (KEY_PREFIX, "sk-dp-")

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
        "Seconds one request may take in all: connect, upload, wait and download (image and "
        "video generation are slow).",
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
    """A string that never shows itself: ``repr``, ``str`` and ``format`` give ``'**********'``.

    The API key is held in one of these wherever deapi_ds keeps, passes or refuses it, so
    verbose tracebacks (``%xmode Verbose``), debuggers and error trackers that print local
    variables see a redacted value. ``.get()`` returns the value (only the Authorization header
    needs it).

    >>> key = Secret("dpn-sk-1|abc")
    >>> key, f"{key}", key.startswith("dpn-sk-")
    (Secret('**********'), "Secret('**********')", True)
    """

    __slots__ = ("_value",)

    def __init__(self, value: str | Secret) -> None:
        self._value = value.get() if isinstance(value, Secret) else str(value)

    @classmethod
    def wrap(cls, value: str | Secret | None) -> Secret | None:
        """``value`` as a Secret (``None`` stays ``None``; a Secret is returned as it is)."""
        if value is None or isinstance(value, Secret):
            return value
        return cls(value)

    def get(self) -> str:
        """The value itself."""
        return self._value

    def startswith(self, prefix: str | tuple[str, ...]) -> bool:
        """Whether the value starts with ``prefix`` (without exposing the value)."""
        return self._value.startswith(prefix)

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> Any:  # pickling (dask workers) keeps the value, never prints it
        return (Secret, (self._value,))


def _hide_key(options: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` with an ``api_key`` entry wrapped in a :class:`Secret` (for frame locals)."""
    out = dict(options)
    if out.get("api_key") is not None:
        out["api_key"] = Secret.wrap(out["api_key"])
    return out


def normalize_key(key: str | Secret) -> str:
    """Strip whitespace, an accidental ``Bearer `` and add ``dpn-sk-`` to a bare ``<id>|<secret>`` key.

    Returns a plain str; deapi_ds itself keeps keys in :class:`Secret` objects
    (:func:`secret_key`).
    """
    return _normalized(key.get() if isinstance(key, Secret) else str(key))


def secret_key(key: str | Secret) -> Secret:
    """:func:`normalize_key`, wrapped in a :class:`Secret` (the form deapi_ds keeps keys in)."""
    return Secret(_normalized(key.get() if isinstance(key, Secret) else str(key)))


def _normalized(key: str) -> str:
    key = key.strip()
    if key.lower().startswith("bearer "):
        key = key[7:].strip()
    if not key.startswith(KEY_PREFIX) and "|" in key:
        ident, _, _secret = key.partition("|")
        if ident.isdigit():
            key = KEY_PREFIX + key
    return key


def native_key(key: str | Secret) -> Secret:
    """The key in deAPI's raw ``<id>|<secret>`` form, for the native API (no ``dpn-sk-``).

    >>> native_key("dpn-sk-12|abc").get()
    '12|abc'
    """
    value = secret_key(key)
    if value.startswith(KEY_PREFIX):
        return Secret(value.get()[len(KEY_PREFIX) :])
    return value


def normalize_host(host: str) -> str:
    """A host name as host rules must compare it: lower case, no trailing dot, IDNA (ASCII).

    ``OAI.deapi.ai.``, ``oai.deapi.ai`` and ``oai.deapi.\uff41\uff49`` (full-width letters)
    are the same host to a resolver, so they are the same host to every rule here.

    >>> normalize_host("OAI.DeAPI.ai.")
    'oai.deapi.ai'
    >>> normalize_host("[::1]")
    '::1'
    """
    host = host.strip().strip("[]").rstrip(".").lower()
    if not host:
        return ""
    try:
        host = host.encode("idna").decode("ascii")
    except UnicodeError:
        pass  # not a valid IDNA name: compare it as written (it will not resolve either)
    return host.rstrip(".").lower()


def url_host(url: str) -> str:
    """The normalised host of ``url`` (see :func:`normalize_host`); ``""`` when it has none."""
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return ""
    return normalize_host(host or "")


def is_loopback(url: str) -> bool:
    """Whether ``url`` names this machine (``localhost``, ``127.0.0.0/8``, ``::1``)."""
    host = url_host(url)
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return address.is_loopback or bool(mapped is not None and mapped.is_loopback)


def is_deapi_host(url: str) -> bool:
    """Whether ``url`` is on deAPI (``deapi.ai`` or a subdomain), after host normalisation."""
    host = url_host(url)
    return host == "deapi.ai" or host.endswith(".deapi.ai")


def env_proxy(url: str) -> str | None:
    """The proxy that ``HTTP_PROXY`` / ``HTTPS_PROXY`` / ``ALL_PROXY`` (minus ``NO_PROXY``)
    choose for ``url``, as httpx would route it when it trusts the environment; ``None``: direct.
    """
    proxies = urllib.request.getproxies_environment()
    host = url_host(url)
    if not proxies or not host:
        return None
    scheme = urlsplit(url).scheme.lower()
    proxy = proxies.get(scheme) or proxies.get("all")
    if not proxy:
        return None
    if urllib.request.proxy_bypass_environment(host, proxies):
        return None
    return proxy


def looks_like_openai_key(key: Secret) -> bool:
    """An OpenAI-style key (``sk-...``, ``sk-proj-...``; not deAPI's ``sk-dp-...``): never sent
    to a deAPI host."""
    return key.startswith("sk-") and not key.startswith(DEAPI_KEY_PREFIXES)


def key_refusal(
    key: Secret | None,
    url: str,
    *,
    source: str | None = None,
    allow_insecure_http: bool = False,
    in_process: bool = False,
) -> str | None:
    """May this key go to this URL? ``None`` if it may, else the reason and the fix.

    The rules, for any base URL (the OpenAI-compatible gateway, deAPI's native API, a proxy of
    your own), with the host normalised first (case, trailing dot, IDNA):

    1. A key that looks like an OpenAI key (``sk-...`` but not deAPI's ``sk-dp-...``), or
       that came from ``OPENAI_API_KEY`` without a deAPI prefix (``dpn-sk-``, ``sk-dp-``), is
       never sent to a deAPI host.
    2. Over plain http the key goes only to this machine (loopback, which deapi_ds reaches
       directly, never through a proxy) or to an in-process transport; any other host needs
       https or an explicit ``allow_insecure_http=True``.
    3. ``.invalid`` names (RFC 2606, the emulator's) never resolve, so only an in-process
       transport can answer them; one that a proxy from the environment would forward is refused.

    ``in_process``: requests go to a transport object, not to the network.

    >>> key_refusal(Secret("sk-abc123"), "https://oai.deapi.ai./v1") is not None
    True
    >>> key_refusal(Secret("dpn-sk-1|x"), "http://127.0.0.1:8000/v1") is None
    True
    """
    if key is None:
        return None
    host = url_host(url)
    if is_deapi_host(url) and (
        looks_like_openai_key(key)
        or (source == "OPENAI_API_KEY" and not key.startswith(DEAPI_KEY_PREFIXES))
    ):
        if source == "OPENAI_API_KEY":
            return (
                "OPENAI_API_KEY is set but does not start with 'dpn-sk-': it looks like an "
                "OpenAI key, so deapi_ds will not send it to deAPI. Set DEAPI_API_KEY to your "
                "deAPI key (dpn-sk-<id>|<secret>, from app.deapi.ai/dashboard)."
            )
        where = {
            "set_config": "The api_key given to set_config()/Client()",
            "DEAPI_API_KEY": "DEAPI_API_KEY",
        }.get(source or "", "The API key")
        return (
            f"{where} starts with 'sk-': it looks like an OpenAI key, so deapi_ds will not "
            f"send it to deAPI ({host}). Use your deAPI key (dpn-sk-<id>|<secret>, from "
            "app.deapi.ai/dashboard)."
        )
    scheme = urlsplit(url).scheme.lower()
    if scheme != "http" or in_process or is_loopback(url):
        return None
    proxy = env_proxy(url)
    if host.endswith(".invalid"):
        if proxy is None:
            return None  # nothing can answer it: the request fails before any key is sent
        return (
            f"Refusing to send the API key to {host} through the proxy {_proxy_host(proxy)} "
            "from the environment (HTTP_PROXY/ALL_PROXY): a .invalid host is only answered by "
            "an in-process transport such as the emulator's. Pass transport=... or unset the proxy."
        )
    if allow_insecure_http:
        return None
    return (
        f"Refusing to send the API key over plain http to {host}. Use an https:// base URL, "
        "or set DEAPI_DS_ALLOW_INSECURE_HTTP=1 / set_config(allow_insecure_http=True) if you "
        "really mean it."
    )


def _proxy_host(proxy: str) -> str:
    return url_host(proxy if "://" in proxy else f"http://{proxy}") or "?"


def check_key_destination(
    key: Secret | None,
    url: str,
    *,
    source: str | None = None,
    allow_insecure_http: bool = False,
    in_process: bool = False,
) -> None:
    """Raise :class:`ConfigurationError` when :func:`key_refusal` refuses this key for ``url``."""
    reason = key_refusal(
        key, url, source=source, allow_insecure_http=allow_insecure_http, in_process=in_process
    )
    if reason is not None:
        raise ConfigurationError(reason)


def check_key_form(key: Secret) -> None:
    """Refuse a key that cannot be a bearer token (empty, spaces or control characters inside)."""
    value_ok = bool(key) and not any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in key.get())
    if not value_ok:
        raise ConfigurationError(
            "The API key is empty or contains spaces or control characters, so it cannot be "
            "sent. Copy your deAPI key (dpn-sk-<id>|<secret>) from app.deapi.ai/dashboard again."
        )


@dataclasses.dataclass(frozen=True)
class Settings:
    """A snapshot of the configuration. Build one with :func:`get_config`."""

    #: The API key (a redacted-repr Secret); None until set or read from DEAPI_API_KEY.
    api_key: Secret | None = None
    #: Where the key came from (``set_config``, an environment variable ...), for messages.
    key_source: str | None = None
    #: The API's base URL (deAPI's OpenAI-compatible gateway by default).
    base_url: str = DEFAULT_BASE_URL
    #: deAPI's native v2 API (jobs: diarized transcription, OCR, image transforms).
    native_base_url: str = DEFAULT_NATIVE_BASE_URL
    #: Where results are cached (a folder, or an fsspec URL such as ``s3://bucket/x``).
    cache_dir: str = "~/.cache/deapi_ds"
    #: Whether task functions use the result cache by default.
    cache_enabled: bool = True
    #: fsspec options for a remote ``cache_dir`` (credentials, endpoint ...).
    cache_storage_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    #: Cache files per model after which the cache compacts them.
    cache_compact_threshold: int = 64
    #: Requests in flight at once per client.
    max_concurrency: int = 8
    #: Seconds to wait for a response (transcriptions and videos can be slow).
    timeout: float = 300.0
    #: Seconds to wait for a connection.
    connect_timeout: float = 10.0
    #: deAPI rate-limit tier (``basic``, ``premium``, ``unlimited``); None: from the profile.
    tier: str | None = None
    #: Requests per minute, one number or per endpoint; None: the tier's limits.
    rpm: Mapping[str, float] | float | None = None
    #: Retries of a request that may succeed again (429, 5xx, timeouts, resets).
    max_retries: int = 5
    #: Longest wait in seconds before a retry (a longer Retry-After is an error).
    max_retry_wait: float = 300.0
    #: Whether task functions show a progress bar by default.
    progress: bool = True
    #: Provider profile (limits, models, prices): ``auto`` picks it from ``base_url``.
    profile: str = "auto"
    #: Largest upload in MB before files are compressed or split; None: the profile's.
    max_upload_mb: float | None = None
    #: The speech formats the server makes natively (others are converted locally); None: the limits.
    speech_formats: tuple[str, ...] | None = None
    #: Request limits to follow: ``today`` (deAPI as it is now) or ``seed`` (as first documented).
    limits: str = "today"
    #: Allow sending the key over plain http to a non-loopback host.
    allow_insecure_http: bool = False
    #: An httpx transport to use instead of the network (the emulator plugs in here).
    transport: Any = None
    #: Text appended to the User-Agent header.
    user_agent_extra: str | None = None

    def __post_init__(self) -> None:
        if self.api_key is not None and not isinstance(self.api_key, Secret):
            object.__setattr__(self, "api_key", secret_key(self.api_key))
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
        """The rate-limit tier in force: ``tier``, else basic for deAPI hosts, unlimited elsewhere."""
        if self.tier:
            return self.tier
        return "basic" if is_deapi_host(self.base_url) else "unlimited"

    @property
    def cache_path(self) -> str:
        """``cache_dir`` with ``~`` expanded (URLs such as ``s3://...`` unchanged)."""
        if "://" in self.cache_dir:
            return self.cache_dir
        return os.path.expanduser(self.cache_dir)

    def require_key(self) -> str:
        """The key to send, as a plain str, after the safety checks (see :meth:`require_secret`)."""
        secret = self.require_secret()
        return "" if secret is None else secret.get()

    def require_secret(self, url: str | None = None) -> Secret | None:
        """The key to send to ``url`` (default: ``base_url``), after the safety checks.

        Raises :class:`ConfigurationError` explaining the fix (see :func:`key_refusal`);
        ``None`` only when there is no key but an in-process transport (the emulator).
        """
        if self.api_key is None:
            if self.transport is not None:
                return None
            raise MissingAPIKeyError()
        check_key_form(self.api_key)
        check_key_destination(
            self.api_key,
            url or self.base_url,
            source=self.key_source,
            allow_insecure_http=self.allow_insecure_http,
            in_process=self.transport is not None
            and url_host(url or self.base_url).endswith(".invalid"),
        )
        return self.api_key

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


def _environment() -> dict[str, str | Secret]:
    """The variables deapi_ds reads, with the two key variables already wrapped in Secrets.

    Only these are passed on (never ``os.environ`` itself), so no frame below holds a key as
    plain text and a traceback's locals show no other secret of the environment either.
    """
    names = (*ENV_VARIABLES, "DEAPI_DS_SPEECH_FORMATS")
    out: dict[str, str | Secret] = {}
    for name in names:
        if name in ("DEAPI_API_KEY", "OPENAI_API_KEY"):
            if os.environ.get(name, "").strip():
                out[name] = secret_key(os.environ[name])
        elif os.environ.get(name):
            out[name] = os.environ[name]
    return out


def _from_env(env: Mapping[str, Any]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    # the keys arrive as Secrets (see _environment); a plain mapping is wrapped here
    deapi_key = Secret.wrap(env.get("DEAPI_API_KEY") or None)
    openai_key = Secret.wrap(env.get("OPENAI_API_KEY") or None)
    deapi_key = secret_key(deapi_key) if deapi_key else None
    openai_key = secret_key(openai_key) if openai_key else None
    if deapi_key:
        values["api_key"] = deapi_key
        values["key_source"] = "DEAPI_API_KEY"
        if env.get("DEAPI_BASE_URL"):
            values["base_url"] = env["DEAPI_BASE_URL"]
    elif openai_key:
        values["api_key"] = openai_key
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
    """Validate option names and normalise values (the key becomes a :class:`Secret`)."""
    overrides = _hide_key(overrides)
    out: dict[str, Any] = {}
    for name, value in overrides.items():
        if name not in _FIELDS or name == "key_source":
            valid = sorted(_FIELDS - {"key_source"})
            raise InvalidParameterError(
                f"Unknown configuration option {name!r}. Valid options: {valid}."
            )
        if name == "api_key" and value is not None:
            value = secret_key(value)
            check_key_form(value)
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
    overrides = _hide_key(overrides)
    values = _from_env(_environment())
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
    A key given here is checked with the same rules as one from the environment: an
    OpenAI-style ``sk-...`` key is refused at once while the base URL is a deAPI host.
    """
    options = _hide_key(options)
    checked = check_overrides(options)
    updated = dict(_global_overrides)
    for name, value in checked.items():
        if value is None:
            updated.pop(name, None)
            if name == "api_key":
                updated.pop("key_source", None)
        else:
            updated[name] = value
    values = _from_env(_environment())
    values.update(updated)
    settings = Settings(**values)  # validate before anything changes
    if "api_key" in checked or "base_url" in checked:
        _check_key_for_deapi(settings)
    _global_overrides.clear()
    _global_overrides.update(updated)


def _check_key_for_deapi(settings: Settings) -> None:
    """The key-form rule of :func:`key_refusal` (rule 1) for a key set in code, checked early.

    The transport checks every rule again before any request; only rule 1 is checked here,
    because the plain-http rule may still be satisfied by a later ``set_config`` call.
    """
    if settings.api_key is None or not is_deapi_host(settings.base_url):
        return
    check_key_destination(settings.api_key, settings.base_url, source=settings.key_source)


def saved_options(names: tuple[str, ...]) -> dict[str, Any]:
    """The ``set_config`` values of ``names`` now (unset ones left out), for :func:`restore_options`."""
    return {name: _global_overrides[name] for name in names if name in _global_overrides}


def restore_options(names: tuple[str, ...], saved: Mapping[str, Any]) -> None:
    """Put the ``set_config`` values of ``names`` back as :func:`saved_options` found them."""
    for name in names:
        if name in saved:
            _global_overrides[name] = saved[name]
        else:
            _global_overrides.pop(name, None)


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
    options = _hide_key(options)
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
    options = _hide_key(options)
    layer = check_overrides(options)
    token = _context_overrides.set((*_context_overrides.get(), layer))
    try:
        yield get_config()
    finally:
        _context_overrides.reset(token)
