"""Daily request quotas: a ledger of the day's requests per endpoint, shared by every process.

deAPI's Basic tier allows a fixed number of requests per endpoint and UTC day (embeddings 500,
transcriptions 10, image generations 100, edits 15, speech 300, video 15, price 200, job status
200; Premium has no daily limit; counters reset at 00:00 UTC; see ``_profiles``). deapi_ds counts
the requests it sends in the cache folder, so several notebooks and processes on one machine
share one count, and stops *before* sending a request the quota no longer covers.

Layout: ``<cache>/.quota/<scope>/<YYYY-MM-DD>.log``, one line per recorded batch of attempts
(``"<endpoint> <n>"``) or per server verdict (``"<endpoint> !"``: the server said the quota is
spent). ``<scope>`` is ``deapi`` for deAPI and the cache's provider scope for other servers
(the emulator, your own server), so their counts never mix. Lines are appended under a file
lock (``filelock``), so check-and-record is atomic across processes; each process reads only
the bytes appended since its last look. A remote cache (``s3://...``) keeps its ledger in the
local default folder (``~/.cache/deapi_ds``): the lock needs a local file system.

The public surface:

* :func:`quota_status` -> :class:`QuotaStatus` (limit, used, remaining, resets_at);
* :func:`record_requests` adds requests sent by other means;
* :func:`quota_plan` -> :class:`QuotaPlan`: how many UTC days ``n`` requests take;
* :class:`QuotaGuard`: what the engine calls around each attempt (``check``, ``record``,
  ``server_spent``); it raises :class:`~deapi_ds.QuotaExceededError`.

>>> import deapi_ds
>>> plan = quota_plan("embeddings", 977, settings=deapi_ds.get_config(tier="basic", base_url="https://oai.deapi.ai/v1"))
>>> plan.days, plan.limit
(2, 500)
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import math
import os
import threading
from collections.abc import Mapping
from typing import Any

import filelock

from ._exceptions import InvalidParameterError, QuotaExceededError, next_utc_midnight
from ._profiles import ProviderProfile, get_profile, quota_endpoint

__all__ = [
    "QuotaGuard",
    "QuotaLedger",
    "QuotaPlan",
    "QuotaStatus",
    "ledger_for",
    "quota_plan",
    "quota_status",
    "record_requests",
    "utc_now",
]

QUOTA_FOLDER = ".quota"
_KEEP_DAYS = 3


def utc_now() -> _dt.datetime:
    """The current time in UTC (tests replace this function to simulate the daily reset)."""
    return _dt.datetime.now(_dt.UTC)


def _now() -> _dt.datetime:
    return globals()["utc_now"]()  # looked up at call time, so monkeypatching takes effect


# --------------------------------------------------------------------------- results


@dataclasses.dataclass(frozen=True)
class QuotaStatus:
    """Today's count for one quota endpoint.

    ``limit`` and ``remaining`` are None when no daily limit applies (Premium, other
    providers, the seed limits); ``resets_at`` is the next 00:00 UTC. ``spent`` is true when
    the server said today's quota is used up, whatever the local count; ``tier`` is the tier
    the limit belongs to.
    """

    endpoint: str
    limit: int | None
    used: int
    remaining: int | None
    resets_at: _dt.datetime
    tier: str = ""
    spent: bool = False

    def __str__(self) -> str:
        if self.limit is None:
            return f"{self.endpoint}: {self.used:,} requests today, no daily limit"
        return (
            f"{self.endpoint}: {self.used:,} of {self.limit:,} requests used today "
            f"({self.remaining:,} left; resets {self.resets_at:%Y-%m-%d %H:%M} UTC)"
        )


@dataclasses.dataclass(frozen=True)
class QuotaPlan:
    """How ``requests`` fit the daily quota of ``endpoint`` on the configured tier.

    ``days`` is the number of UTC days with requests (today counts when it has quota left);
    ``fits_today`` says whether everything goes out today. ``limit`` None: no daily limit,
    ``days`` is 1 (0 for no requests).
    """

    endpoint: str
    requests: int
    limit: int | None
    remaining_today: int | None
    days: int
    tier: str = ""

    @property
    def fits_today(self) -> bool:
        return self.remaining_today is None or self.requests <= self.remaining_today

    def __str__(self) -> str:
        if self.limit is None:
            return f"{self.requests:,} {self.endpoint} requests (no daily limit)"
        tier = f" on the {self.tier} tier" if self.tier else ""
        text = (
            f"{self.requests:,} {self.endpoint} requests vs a quota of {self.limit:,}/day{tier} "
            f"({self.remaining_today:,} left today): {self.days} day{'s' if self.days != 1 else ''}"
        )
        return text


# --------------------------------------------------------------------------- the ledger


class QuotaLedger:
    """The day's requests per endpoint in one folder (one provider scope), across processes."""

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self._lock = threading.Lock()
        # per day file: (bytes read so far, counts, endpoints the server said are spent)
        self._seen: dict[str, tuple[int, dict[str, int], set[str]]] = {}

    def __repr__(self) -> str:
        return f"QuotaLedger({self.folder!r})"

    def _path(self, day: _dt.date) -> str:
        return os.path.join(self.folder, f"{day.isoformat()}.log")

    def _file_lock(self, path: str) -> filelock.BaseFileLock:
        return filelock.FileLock(path + ".lock", timeout=30)

    def _refresh(self, path: str) -> tuple[dict[str, int], set[str]]:
        """Read what other processes appended since our last look (call under the file lock)."""
        offset, counts, spent = self._seen.get(path, (0, {}, set()))
        try:
            with open(path, "rb") as fh:
                fh.seek(offset)
                data = fh.read()
        except FileNotFoundError:
            data = b""
        complete = data.rfind(b"\n") + 1
        for line in data[:complete].decode("utf-8", "replace").splitlines():
            name, _, value = line.strip().rpartition(" ")
            if not name:
                continue
            if value == "!":
                spent.add(name)
            elif value.isdigit():
                counts[name] = counts.get(name, 0) + int(value)
        self._seen[path] = (offset + complete, counts, spent)
        return counts, spent

    def _append(self, path: str, line: str) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode("utf-8"))
        finally:
            os.close(fd)

    def _prepare(self, day: _dt.date) -> str:
        os.makedirs(self.folder, exist_ok=True)
        path = self._path(day)
        if path not in self._seen:
            self._cleanup(day)
        return path

    def _cleanup(self, today: _dt.date) -> None:
        """Delete day files older than a few days (best effort)."""
        oldest = (today - _dt.timedelta(days=_KEEP_DAYS)).isoformat()
        try:
            names = os.listdir(self.folder)
        except OSError:
            return
        for name in names:
            if name[:10] < oldest and name.endswith((".log", ".log.lock")):
                try:
                    os.remove(os.path.join(self.folder, name))
                except OSError:
                    pass
        for path in [p for p in self._seen if os.path.basename(p)[:10] < oldest]:
            del self._seen[path]

    def usage(self, endpoint: str, day: _dt.date | None = None) -> tuple[int, bool]:
        """(requests recorded, whether the server said it is spent) for ``endpoint`` on ``day``."""
        day = day or _now().date()
        path = self._path(day)
        if not os.path.exists(path):
            return 0, False
        with self._lock, self._file_lock(path):
            counts, spent = self._refresh(path)
            return counts.get(endpoint, 0), endpoint in spent

    def reserve(self, endpoint: str, n: int = 1, *, limit: int | None = None) -> int:
        """Record ``n`` requests for today, unless that would exceed ``limit``.

        Returns the count after recording. When the quota cannot cover ``n`` more (or the
        server said it is spent), nothing is recorded and :class:`QuotaFull` is raised.
        """
        day = _now().date()
        with self._lock:
            path = self._prepare(day)
            with self._file_lock(path):
                counts, spent = self._refresh(path)
                used = counts.get(endpoint, 0)
                if limit is not None and (endpoint in spent or used + n > limit):
                    raise QuotaFull(used, endpoint in spent)
                if n:
                    self._append(path, f"{endpoint} {int(n)}\n")
                    self._refresh(path)
                return used + n

    def mark_spent(self, endpoint: str) -> None:
        """Note that the server said today's quota of ``endpoint`` is spent."""
        day = _now().date()
        with self._lock:
            path = self._prepare(day)
            with self._file_lock(path):
                self._append(path, f"{endpoint} !\n")
                self._refresh(path)


class QuotaFull(Exception):
    """Internal: the ledger refused a reservation (``used`` so far, ``spent`` by the server)."""

    def __init__(self, used: int, spent: bool) -> None:
        super().__init__(used, spent)
        self.used = used
        self.spent = spent


_ledgers: dict[str, QuotaLedger] = {}
_ledgers_lock = threading.Lock()


def _ledger_folder(settings: Any) -> str:
    from ._cache import provider_scope  # the same scope as the result cache

    location = str(getattr(settings, "cache_path", "") or "")
    if not location or "://" in location:
        if location.startswith("file://"):
            location = location[len("file://") :]
        else:
            location = os.path.expanduser("~/.cache/deapi_ds")
    scope = provider_scope(getattr(settings, "base_url", None)) or "deapi"
    return os.path.join(location, QUOTA_FOLDER, scope)


def ledger_for(settings: Any = None) -> QuotaLedger:
    """The ledger of the configured cache folder and provider (one object per folder)."""
    if settings is None:
        from ._config import get_config

        settings = get_config()
    folder = _ledger_folder(settings)
    with _ledgers_lock:
        ledger = _ledgers.get(folder)
        if ledger is None:
            ledger = _ledgers[folder] = QuotaLedger(folder)
        return ledger


# --------------------------------------------------------------------------- functions


def _resolve(endpoint: str, settings: Any) -> tuple[str, Any, ProviderProfile, str]:
    if settings is None:
        from ._config import get_config

        settings = get_config()
    if not isinstance(endpoint, str) or not endpoint:
        raise InvalidParameterError(
            f"endpoint must be an endpoint name such as 'embeddings'. Got {endpoint!r}."
        )
    bucket = quota_endpoint(endpoint) or endpoint
    return bucket, settings, get_profile(settings), settings.effective_tier


def quota_status(endpoint: str, settings: Any = None) -> QuotaStatus:
    """Today's daily-quota count of ``endpoint`` (``"embeddings"``, ``"audio.speech"``, ...).

    ``settings`` defaults to the current configuration (its base URL picks the provider scope,
    its tier and ``limits`` the quota). Reads the ledger shared by every process using the same
    cache folder; sends nothing.

    >>> import deapi_ds
    >>> st = quota_status("embeddings", settings=deapi_ds.get_config(tier="premium"))
    >>> st.limit is None and st.remaining is None
    True
    """
    bucket, settings, profile, tier = _resolve(endpoint, settings)
    limit = profile.daily_quota(bucket, tier)
    used, spent = ledger_for(settings).usage(bucket)
    remaining = None if limit is None else (0 if spent else max(0, limit - used))
    return QuotaStatus(
        endpoint=bucket,
        limit=limit,
        used=used,
        remaining=remaining,
        resets_at=next_utc_midnight(_now()),
        tier=tier,
        spent=spent,
    )


def record_requests(endpoint: str, n: int = 1, settings: Any = None) -> int:
    """Count ``n`` requests to ``endpoint`` as sent today; returns today's count.

    The engine records every attempt itself; call this for requests sent by other means
    (another tool using the same account) so that the count stays right.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise InvalidParameterError(f"n must be an int >= 0. Got {n!r}.")
    bucket, settings, _profile, _tier = _resolve(endpoint, settings)
    return ledger_for(settings).reserve(bucket, n)


def days_needed(requests: int, limit: int | None, remaining_today: int | None) -> int:
    """UTC days ``requests`` take at ``limit`` per day with ``remaining_today`` left today.

    >>> days_needed(977, 500, 500), days_needed(977, 500, 0), days_needed(10, None, None)
    (2, 2, 1)
    """
    if requests <= 0:
        return 0
    if limit is None:
        return 1
    if limit <= 0:
        raise InvalidParameterError(f"A daily limit must be > 0. Got {limit!r}.")
    today = max(0, remaining_today if remaining_today is not None else limit)
    if requests <= today:
        return 1
    return (1 if today else 0) + math.ceil((requests - today) / limit)


def quota_plan(endpoint: str, requests: int, settings: Any = None) -> QuotaPlan:
    """How ``requests`` to ``endpoint`` fit today's quota and the following days'.

    >>> import deapi_ds
    >>> str(quota_plan("embeddings", 977, settings=deapi_ds.get_config(tier="basic", base_url="https://oai.deapi.ai/v1")))
    '977 embeddings requests vs a quota of 500/day on the basic tier (500 left today): 2 days'
    """
    status = quota_status(endpoint, settings)
    return QuotaPlan(
        endpoint=status.endpoint,
        requests=int(requests),
        limit=status.limit,
        remaining_today=status.remaining,
        days=days_needed(int(requests), status.limit, status.remaining),
        tier=status.tier,
    )


# --------------------------------------------------------------------------- the engine's guard


class QuotaGuard:
    """The engine's view of the daily quotas of one client (settings + provider profile).

    ``check(endpoint)`` before waiting for a slot, ``record(endpoint)`` right before each
    attempt is sent (atomic check-and-count), ``server_spent(endpoint, exc)`` when the server
    says the day's quota is gone. Engine endpoints without a daily quota cost nothing here.
    """

    def __init__(self, settings: Any, profile: ProviderProfile | None = None) -> None:
        self.settings = settings
        self.profile = profile or get_profile(settings)
        self.tier = settings.effective_tier
        self._ledger: QuotaLedger | None = None
        self._spent_until: dict[str, _dt.datetime] = {}

    def __repr__(self) -> str:
        return f"QuotaGuard(tier={self.tier!r}, limits={self.profile.limits!r})"

    @property
    def ledger(self) -> QuotaLedger:
        if self._ledger is None:
            self._ledger = ledger_for(self.settings)
        return self._ledger

    def limit(self, endpoint: str) -> tuple[str | None, int | None]:
        """(quota endpoint, requests per day) for an engine endpoint."""
        bucket = quota_endpoint(endpoint)
        if bucket is None:
            return None, None
        return bucket, self.profile.daily_quota(bucket, self.tier)

    def _error(self, bucket: str, limit: int | None, used: int | None) -> QuotaExceededError:
        return QuotaExceededError(
            bucket,
            limit=limit,
            resets_at=self._spent_until.get(bucket) or next_utc_midnight(_now()),
            tier=self.tier,
            used=used,
            message=f"Daily quota of {bucket} spent (counted locally).",
            status_code=None,
        )

    def _known_spent(self, bucket: str) -> bool:
        until = self._spent_until.get(bucket)
        if until is None:
            return False
        if _now() >= until:
            del self._spent_until[bucket]
            return False
        return True

    def check(self, endpoint: str) -> None:
        """Raise QuotaExceededError if today's quota of ``endpoint`` is known to be spent."""
        bucket, limit = self.limit(endpoint)
        if bucket is None:
            return
        if self._known_spent(bucket):
            raise self._error(bucket, limit, None)
        if limit is None:
            return
        used, spent = self.ledger.usage(bucket)
        if spent or used >= limit:
            raise self._error(bucket, limit, used)

    def record(self, endpoint: str) -> None:
        """Count one attempt of ``endpoint``; raise QuotaExceededError (nothing counted) if spent."""
        bucket, limit = self.limit(endpoint)
        if bucket is None:
            return
        if self._known_spent(bucket):
            raise self._error(bucket, limit, None)
        if limit is None:
            return
        try:
            self.ledger.reserve(bucket, 1, limit=limit)
        except QuotaFull as full:
            raise self._error(bucket, limit, full.used) from None

    def server_spent(
        self, endpoint: str, cause: Any, wait: float | None = None
    ) -> QuotaExceededError:
        """The error for a server that said the quota is spent (for ``wait`` seconds, or until
        the next 00:00 UTC); later attempts of this client fail at once until then, and the
        ledger tells the other processes."""
        bucket, limit = self.limit(endpoint)
        bucket = bucket or endpoint
        now = _now()
        resets_at = now + _dt.timedelta(seconds=wait) if wait else next_utc_midnight(now)
        self._spent_until[bucket] = resets_at
        if limit is not None:
            try:
                self.ledger.mark_spent(bucket)
            except OSError:
                pass
        return quota_error_from(bucket, cause, limit=limit, resets_at=resets_at, tier=self.tier)


def quota_error_from(
    endpoint: str,
    cause: Any,
    *,
    limit: int | None = None,
    resets_at: _dt.datetime | None = None,
    tier: str | None = None,
) -> QuotaExceededError:
    """A QuotaExceededError carrying the HTTP details of the server's answer ``cause``."""
    exc = QuotaExceededError(
        endpoint,
        limit=limit,
        resets_at=resets_at,
        tier=tier,
        message=getattr(cause, "message", None) or "Too Many Attempts.",
        status_code=getattr(cause, "status_code", 429),
        request_id=getattr(cause, "request_id", None),
        retry_after=getattr(cause, "retry_after", None),
    )
    headers: Mapping[str, str] | None = getattr(cause, "headers", None)
    exc.headers = dict(headers or {})  # type: ignore[attr-defined]
    return exc
