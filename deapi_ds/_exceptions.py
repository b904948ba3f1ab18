"""The whole deapi_ds error tree.

::

    DeapiError
    ├── ConfigurationError                 bad or missing configuration (no key, unsafe URL, ...)
    │   └── MissingAPIKeyError
    ├── InvalidParameterError (ValueError) a parameter or input we can reject before spending
    ├── APIConnectionError                 the request never got an HTTP answer
    │   └── APITimeoutError
    ├── APIStatusError                     the server answered with an HTTP error status
    │   ├── BadRequestError                400
    │   ├── AuthenticationError            401
    │   ├── PermissionDeniedError          403
    │   ├── NotFoundError                  404
    │   ├── PayloadTooLargeError           413
    │   ├── UnprocessableEntityError       422
    │   ├── ModelNotFoundError             404 or 422 about the model (subclass of both above)
    │   ├── RateLimitError                 429 (``retry_after`` in seconds, when the server said)
    │   │   └── QuotaExceededError         today's daily quota of an endpoint is spent (not retried)
    │   └── ServerError                    5xx
    ├── ResponseValidationError            a 2xx answer that breaks the contract (count, index, dimension)
    ├── JobFailedError                     an asynchronous job (video) ended in failure
    ├── CacheError                         the result cache cannot be used
    └── BatchError                         a whole batch run failed; ``.partial`` holds what finished

    CacheWarning (UserWarning)             a cache file was skipped (corrupt or foreign)

httpx exceptions are translated into these only in ``deapi_ds._transport``. No message ever
contains the API key: messages are built from the server's text, which we redact as well.
"""

from __future__ import annotations

import datetime as _dt
import re
from typing import Any

__all__ = [
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "BatchError",
    "CacheError",
    "CacheWarning",
    "ConfigurationError",
    "DeapiError",
    "InvalidParameterError",
    "JobFailedError",
    "MissingAPIKeyError",
    "ModelNotFoundError",
    "NotFoundError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "QuotaExceededError",
    "RateLimitError",
    "ResponseValidationError",
    "ServerError",
    "UnprocessableEntityError",
    "redact",
]

_KEY_PATTERNS = [
    re.compile(r"dpn-sk-[^\s\"',;]+"),
    re.compile(r"(?i)(bearer\s+)[^\s\"',;]+"),
    re.compile(r"\bsk-[A-Za-z0-9_\-]{8,}"),
    re.compile(r"\b\d{1,10}\|[A-Za-z0-9]{16,}"),
]


def redact(text: str, *secrets: Any) -> str:
    """Remove anything that looks like an API key (and the given secrets) from ``text``.

    For a deAPI key ``dpn-sk-<id>|<secret>`` the ``<secret>`` part alone is removed too (a
    server may echo only that).

    >>> redact("bad key dpn-sk-1|abc and abcdefgh12345678", "dpn-sk-1|abcdefgh12345678")
    'bad key [redacted] and [redacted]'
    """
    for secret in secrets:
        if secret is not None and hasattr(secret, "get"):  # a deapi_ds._config.Secret
            secret = secret.get()
        if secret:
            text = text.replace(secret, "[redacted]")
            tail = secret.partition("|")[2]
            if len(tail) >= 8:
                text = text.replace(tail, "[redacted]")
    for pattern in _KEY_PATTERNS:
        if pattern.groups:
            text = pattern.sub(lambda m: m.group(1) + "[redacted]", text)
        else:
            text = pattern.sub("[redacted]", text)
    return text


class DeapiError(Exception):
    """Base class of every error raised by deapi_ds."""

    __module__ = "deapi_ds"


class ConfigurationError(DeapiError):
    """The configuration cannot work (no key, a key that must not be sent, an unsafe URL)."""

    __module__ = "deapi_ds"


class MissingAPIKeyError(ConfigurationError):
    """No API key was found."""

    __module__ = "deapi_ds"

    def __init__(self, message: str | None = None) -> None:
        super().__init__(
            message
            or "No API key found. Set the DEAPI_API_KEY environment variable to your deAPI key "
            "(it starts with 'dpn-sk-'; get one at app.deapi.ai/dashboard), or call "
            "deapi_ds.set_config(api_key=...). To try deapi_ds without a key, call "
            "deapi_ds.use_emulator()."
        )


class InvalidParameterError(DeapiError, ValueError):
    """A parameter or input value is invalid; raised before anything is spent."""

    __module__ = "deapi_ds"


class APIConnectionError(DeapiError):
    """The request did not get an HTTP answer (connection refused, dropped, truncated).

    ``retryable`` is False when trying again cannot help soon: the host name does not resolve,
    or a remote host refuses connections (a wrong ``base_url``, no network).
    """

    __module__ = "deapi_ds"

    def __init__(
        self, message: str, *, endpoint: str | None = None, retryable: bool = True
    ) -> None:
        super().__init__(message)
        self.message = message
        self.endpoint = endpoint
        self.retryable = retryable


class APITimeoutError(APIConnectionError):
    """The request timed out."""

    __module__ = "deapi_ds"


class APIStatusError(DeapiError):
    """The server answered with an HTTP error status.

    Attributes: ``status_code``, ``message`` (the server's), ``endpoint`` (e.g.
    ``"POST /v1/embeddings"``), ``request_id``, ``param``, ``code``, ``type``, ``errors`` (deAPI's
    native per-field messages) and ``retry_after`` (seconds, when the server said).
    """

    __module__ = "deapi_ds"
    #: Whether sending the same request again may succeed (429, 5xx); deapi_ds retries those.
    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        endpoint: str | None = None,
        request_id: str | None = None,
        param: str | None = None,
        code: str | None = None,
        type: str | None = None,
        errors: dict[str, list[str]] | None = None,
        retry_after: float | None = None,
        hint: str | None = None,
    ) -> None:
        self.message = message
        self.status_code = status_code
        self.endpoint = endpoint
        self.request_id = request_id
        self.param = param
        self.code = code
        self.type = type
        self.errors = errors or {}
        self.retry_after = retry_after
        self.hint = hint
        super().__init__(self._format())

    def _format(self) -> str:
        head = f"{self.status_code} " if self.status_code else ""
        where = f" from {self.endpoint}" if self.endpoint else ""
        text = f"{head}{type(self).__name__}{where}: {self.message}"
        if self.param:
            text += f" (param: {self.param})"
        if self.errors:
            details = "; ".join(f"{k}: {' '.join(v)}" for k, v in self.errors.items())
            if details not in self.message:
                text += f" [{details}]"
        if self.request_id:
            text += f" [request id: {self.request_id}]"
        if self.hint:
            text += f"\n{self.hint}"
        return text


class BadRequestError(APIStatusError):
    """400: the server refused a parameter (its message names it)."""

    __module__ = "deapi_ds"


class AuthenticationError(APIStatusError):
    """401: the key is missing, malformed or revoked."""

    __module__ = "deapi_ds"


class PermissionDeniedError(APIStatusError):
    """403: the key may not use this model or endpoint (plan, balance, region)."""

    __module__ = "deapi_ds"


class NotFoundError(APIStatusError):
    """404: no such endpoint, model or job (a video job id that expired, for instance)."""

    __module__ = "deapi_ds"


class PayloadTooLargeError(APIStatusError):
    """413: the upload is over the server's limit (deAPI: 80 MB)."""

    __module__ = "deapi_ds"


class UnprocessableEntityError(APIStatusError):
    """422: the request is well formed but a value is refused (the message names it)."""

    __module__ = "deapi_ds"


class ModelNotFoundError(NotFoundError, UnprocessableEntityError):
    """The server does not know the model (deAPI answers 422, OpenAI-style servers 404)."""

    __module__ = "deapi_ds"


class RateLimitError(APIStatusError):
    """429: too many requests; ``retry_after`` says how long the server asked to wait."""

    __module__ = "deapi_ds"
    #: True: this error may go away on a retry (deapi_ds retries it, honouring Retry-After).
    retryable = True


def next_utc_midnight(now: _dt.datetime | None = None) -> _dt.datetime:
    """The next 00:00 UTC after ``now`` (deAPI resets its daily counters then)."""
    now = now or _dt.datetime.now(_dt.UTC)
    if now.tzinfo is None:
        now = now.replace(tzinfo=_dt.UTC)
    day = now.astimezone(_dt.UTC).date() + _dt.timedelta(days=1)
    return _dt.datetime.combine(day, _dt.time(0, 0), tzinfo=_dt.UTC)


class QuotaExceededError(RateLimitError):
    """Today's daily request quota of an endpoint is spent; retrying before ``resets_at`` is useless.

    Raised before a request is sent when the local ledger (shared by every process using the
    same cache folder) says the quota is spent, and when the server says so (a 429 whose wait
    is longer than ``max_retry_wait``, or a daily-limit answer). Attributes: ``endpoint`` (the
    quota endpoint, e.g. ``"embeddings"``), ``limit`` (requests per day, None when unknown),
    ``resets_at`` (an aware UTC datetime), ``tier``, and the HTTP fields of
    :class:`APIStatusError` when the server answered.
    """

    __module__ = "deapi_ds"
    #: False: the quota is spent until it resets (00:00 UTC); a retry today cannot succeed.
    retryable = False

    def __init__(
        self,
        endpoint: str,
        *,
        limit: int | None = None,
        resets_at: _dt.datetime | None = None,
        tier: str | None = None,
        used: int | None = None,
        message: str | None = None,
        **status: Any,
    ) -> None:
        self.limit = limit
        self.resets_at = resets_at or next_utc_midnight()
        self.tier = tier
        self.used = used
        self.quota_endpoint = endpoint
        status.setdefault("status_code", 429)
        super().__init__(message or "Too Many Attempts.", **status)
        self.endpoint = endpoint

    def _format(self) -> str:
        endpoint = getattr(self, "quota_endpoint", None) or self.endpoint
        limit = getattr(self, "limit", None)
        resets_at = getattr(self, "resets_at", None) or next_utc_midnight()
        tier = getattr(self, "tier", None)
        what = f"{limit:,} requests per day" if limit is not None else "its daily requests"
        who = f" on the {tier.capitalize()} tier" if tier else ""
        left = resets_at - _dt.datetime.now(_dt.UTC)
        hours, minutes = divmod(max(0, int(left.total_seconds())) // 60, 60)
        text = (
            f"The daily quota of {endpoint!r} ({what}{who}) is spent. It resets at "
            f"{resets_at.strftime('%Y-%m-%d %H:%M')} UTC (in {hours} h {minutes:02d} min). "
            "Finished results are cached: run the same call again after the reset to do the "
            "rest. Premium accounts (after any top-up) have no daily limit: "
            "set_config(tier='premium') if yours is one."
        )
        if self.status_code and self.message and self.message != "Too Many Attempts.":
            text += f" The server said: {self.message}"
        if self.request_id:
            text += f" [request id: {self.request_id}]"
        if self.hint:
            text += f"\n{self.hint}"
        return text

    def __reduce__(self) -> Any:
        state = dict(self.__dict__)
        return (_rebuild_quota_error, (state,))


def _rebuild_quota_error(state: dict[str, Any]) -> QuotaExceededError:
    exc = QuotaExceededError.__new__(QuotaExceededError)
    exc.__dict__.update(state)
    exc.args = (exc._format(),)
    return exc


class ServerError(APIStatusError):
    """5xx: the server failed; retried, then raised with the last answer."""

    __module__ = "deapi_ds"
    #: True: this error may go away on a retry (deapi_ds retries it, honouring Retry-After).
    retryable = True


class ResponseValidationError(DeapiError):
    """A successful answer broke the contract: wrong count, missing index, wrong dimension."""

    __module__ = "deapi_ds"

    def __init__(self, message: str, *, endpoint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.endpoint = endpoint


class JobFailedError(DeapiError):
    """An asynchronous job (video generation, a native deAPI job) ended in failure.

    Native jobs also carry deAPI's ``reason`` (``error_reason``, e.g. ``SOURCE_PRIVATE``),
    ``retryable`` and ``refunded``.
    """

    __module__ = "deapi_ds"

    def __init__(
        self,
        message: str,
        *,
        job_id: str | None = None,
        code: str | None = None,
        reason: str | None = None,
        retryable: bool | None = None,
        refunded: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.job_id = job_id
        self.code = code
        self.reason = reason
        self.retryable = retryable
        self.refunded = refunded


class CacheError(DeapiError):
    """The result cache cannot be used (unreachable location, refused write)."""

    __module__ = "deapi_ds"


class BatchError(DeapiError):
    """A batch run stopped; ``partial`` holds the results that did finish (and are cached)."""

    __module__ = "deapi_ds"

    def __init__(
        self, message: str, *, partial: Any = None, error: BaseException | None = None
    ) -> None:
        super().__init__(message)
        self.partial = partial
        self.error = error


class CacheWarning(UserWarning):
    """A cache file was skipped because it is corrupt, truncated or not ours."""

    __module__ = "deapi_ds"


STATUS_CLASSES: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    413: PayloadTooLargeError,
    422: UnprocessableEntityError,
    429: RateLimitError,
}


def status_class(status: int) -> type[APIStatusError]:
    """The exception class for an HTTP status code."""
    if status >= 500:
        return ServerError
    return STATUS_CLASSES.get(status, APIStatusError)
