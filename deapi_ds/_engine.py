"""The request engine: rate limits, bounded concurrency, retries, batch runs and the sync seam.

No httpx and no pandas here: the engine runs awaitables that the client builds.

- :class:`RateLimiter` keeps at most ``rpm`` request starts in any 60 s window (a sliding window,
  the way deAPI counts), adapts to ``X-RateLimit-Limit`` / ``X-RateLimit-Remaining`` and calls
  ``on_wait`` (progress bars) and logs once when it waits more than a few seconds.
- :class:`Engine` owns one limiter per endpoint, one concurrency limiter and the retry policy
  (tenacity): 429, 5xx, timeouts and dropped connections are retried with exponential backoff and
  jitter, honouring ``Retry-After`` up to ``max_retry_wait``; other errors never are.
- :func:`run_sync` runs a coroutine on a private, long-lived event-loop thread (an anyio blocking
  portal), so the sync API works inside Jupyter's running loop without nest_asyncio, and Ctrl-C
  cancels the in-flight work.
"""

from __future__ import annotations

import collections
import concurrent.futures
import datetime as _dt
import logging
import math
import queue
import random
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import anyio
import anyio.from_thread
import tenacity

from ._exceptions import (
    APIConnectionError,
    APIStatusError,
    QuotaExceededError,
    RateLimitError,
)
from ._loops import PerLoop, current_loop

__all__ = ["Engine", "PerLoop", "RateLimiter", "RetryPolicy", "current_loop", "run_sync"]

logger = logging.getLogger("deapi_ds")
T = TypeVar("T")
WAIT_NOTICE_SECONDS = 5.0
#: a server's wait longer than this (or not finite) is not a reset time: assume the next 00:00 UTC
_LONGEST_RESET = 7 * 86400.0


class RateLimiter:
    """At most ``rpm`` acquisitions in any ``window`` seconds (sliding window).

    The window is 61 s rather than 60: the server counts arrivals, which come a little after our
    starts, and one early request costs a 429 plus a retry that uses up another slot.

    ``clock`` and ``sleep`` are injectable so tests run without real waiting.
    """

    def __init__(
        self,
        rpm: float | None,
        *,
        name: str = "",
        window: float = 61.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] | None = None,
        on_wait: Callable[[float | None], None] | None = None,
    ) -> None:
        self.rpm = rpm
        self.name = name
        self.window = window
        self._clock = clock
        self._sleep = sleep or anyio.sleep
        self._starts: collections.deque[float] = collections.deque()
        self._blocked_until = 0.0
        self._locks: PerLoop[anyio.Lock] = PerLoop(anyio.Lock)
        self._state_lock = threading.Lock()  # the window is shared by every loop and thread
        self._noticed = False
        self.on_wait = on_wait
        self.total_wait = 0.0

    def __repr__(self) -> str:
        return f"RateLimiter({self.name!r}, rpm={self.rpm})"

    def _limit(self) -> int | None:
        if self.rpm is None or self.rpm <= 0:
            return None
        return max(1, int(self.rpm))

    def delay(self) -> float:
        """Seconds until the next acquisition may start (0 when it may start now)."""
        now = self._clock()
        limit = self._limit()
        wait = max(0.0, self._blocked_until - now)
        if limit is not None:
            while self._starts and self._starts[0] <= now - self.window:
                self._starts.popleft()
            if len(self._starts) >= limit:
                wait = max(wait, self._starts[len(self._starts) - limit] + self.window - now)
        return wait

    async def acquire(self) -> float:
        """Wait for a slot; returns the seconds waited."""
        waited = 0.0
        async with self._locks.get():
            while True:
                with self._state_lock:
                    wait = self.delay()
                    if wait <= 0:
                        self._starts.append(self._clock())
                        break
                self._notice(wait)
                await self._sleep(wait)
                waited += wait
        if waited and self.on_wait:
            self.on_wait(None)
        self.total_wait += waited
        return waited

    def _notice(self, wait: float, *, server: bool = False) -> None:
        """Tell the progress bar, and the log once, that we wait ``wait`` seconds.

        ``server=True``: the wait is the server's (a 429 and its ``Retry-After``).
        """
        if self.on_wait:
            self.on_wait(wait)
        if wait >= WAIT_NOTICE_SECONDS and not self._noticed:
            self._noticed = True
            limit = self._limit()
            if server:
                why = "the server answered 429 Too Many Requests"
            else:
                why = f"{limit} requests per minute" if limit else "the server's rate limit"
            logger.warning(
                "deapi_ds: waiting about %.0f s for %s (%s); "
                "raise the limit with set_config(tier='premium') or set_config(rpm=...) if your "
                "account allows more.",
                wait,
                self.name or "the API",
                why,
            )

    def update_from_headers(self, headers: Mapping[str, str]) -> None:
        """Adapt to ``X-RateLimit-Limit`` / ``X-RateLimit-Remaining`` sent by the server."""
        limit = _int_header(headers, "x-ratelimit-limit")
        remaining = _int_header(headers, "x-ratelimit-remaining")
        if limit is not None and limit > 0 and (self.rpm is None or limit < self.rpm):
            self.rpm = float(limit)
        if remaining is not None and remaining <= 0:
            per = self.window / (limit or self.rpm or 60)
            self._blocked_until = max(self._blocked_until, self._clock() + per)

    def block_for(self, seconds: float, *, cap: float | None = None) -> None:
        """Hold every acquisition for ``seconds`` (after a 429 with Retry-After).

        A wait longer than ``cap`` (or not finite) is ignored: the call that got it fails with
        a :class:`RateLimitError`, and later calls are not held for hours by one answer.
        """
        if not math.isfinite(seconds) or seconds <= 0 or (cap is not None and seconds > cap):
            return
        self._blocked_until = max(self._blocked_until, self._clock() + seconds)


def _int_header(headers: Mapping[str, str], name: str) -> int | None:
    value = headers.get(name) or headers.get(name.title())
    if value is None:
        return None
    try:
        return int(float(value))
    except ValueError:
        return None


class RetryPolicy:
    """Which errors are retried, how long to wait, and how many attempts."""

    def __init__(
        self,
        max_retries: int = 5,
        *,
        base: float = 1.0,
        cap: float = 60.0,
        max_retry_wait: float = 300.0,
        rng: random.Random | None = None,
    ) -> None:
        self.max_retries = max_retries
        self.base = base
        self.cap = cap
        self.max_retry_wait = max_retry_wait
        self.rng = rng or random.Random()

    @staticmethod
    def is_retryable(exc: BaseException) -> bool:
        if isinstance(exc, APIConnectionError):
            return getattr(exc, "retryable", True)
        if isinstance(exc, APIStatusError):
            return exc.retryable
        return False

    def wait_for(self, attempt: int, exc: BaseException | None) -> float:
        """Seconds to wait before attempt ``attempt + 1`` (attempt counts from 1)."""
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            return max(0.0, float(retry_after)) + self.rng.uniform(0, 0.25)
        backoff = min(self.cap, self.base * 2 ** (attempt - 1))
        return self.rng.uniform(backoff / 2, backoff)  # "equal jitter"


class Engine:
    """Rate limits per endpoint, bounded concurrency and retries around request coroutines."""

    def __init__(
        self,
        *,
        max_concurrency: int = 8,
        rpm: Callable[[str], float | None] | Mapping[str, float] | None = None,
        retry: RetryPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] | None = None,
        quota: Any = None,
    ) -> None:
        self.max_concurrency = max_concurrency
        #: daily quotas (a ``_quota.QuotaGuard``: ``check``, ``record``, ``server_spent``) or None
        self.quota = quota
        self._rpm = rpm
        self.retry = retry or RetryPolicy()
        self._clock = clock
        self._sleep = sleep or anyio.sleep
        self._limiters: dict[str, RateLimiter] = {}
        self._limiters_lock = threading.Lock()
        self._concurrency: PerLoop[anyio.CapacityLimiter] = PerLoop(
            lambda: anyio.CapacityLimiter(self.max_concurrency)
        )
        self._wait_listeners: list[Callable[[float | None], None]] = []
        self.attempts: collections.Counter[str] = collections.Counter()

    def limiter(self, endpoint: str) -> RateLimiter:
        with self._limiters_lock:
            return self._limiter(endpoint)

    def _limiter(self, endpoint: str) -> RateLimiter:
        if endpoint not in self._limiters:
            if callable(self._rpm):
                rpm = self._rpm(endpoint)
            elif self._rpm is not None:
                rpm = self._rpm.get(endpoint)
            else:
                rpm = None
            self._limiters[endpoint] = RateLimiter(
                rpm, name=endpoint, clock=self._clock, sleep=self._sleep, on_wait=self._relay_wait
            )
        return self._limiters[endpoint]

    def add_wait_listener(self, callback: Callable[[float | None], None]) -> Callable[[], None]:
        """Call ``callback(seconds)`` when a rate limit makes a request wait (``None``: done).

        Returns the function that removes it. Each running task adds its progress bar, so
        two calls sharing a client each see the waits.
        """
        self._wait_listeners.append(callback)

        def remove() -> None:
            if callback in self._wait_listeners:
                self._wait_listeners.remove(callback)

        return remove

    def _relay_wait(self, seconds: float | None) -> None:
        for callback in list(self._wait_listeners):
            callback(seconds)

    def _capacity(self) -> anyio.CapacityLimiter:
        """The concurrency bound of the current event loop (``max_concurrency`` per loop)."""
        return self._concurrency.get()

    async def call(self, endpoint: str, fn: Callable[[], Awaitable[T]]) -> T:
        """Run ``fn`` under the endpoint's rate limit and the concurrency bound, with retries.

        ``fn`` must raise deapi_ds exceptions; a ``headers`` attribute on its result (or on a
        raised error) feeds the adaptive rate limiter.
        """
        limiter = self.limiter(endpoint)
        policy = self.retry

        def wait(state: tenacity.RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            return policy.wait_for(state.attempt_number, exc)

        def should_retry(exc: BaseException) -> bool:
            if not policy.is_retryable(exc):
                return False
            retry_after = getattr(exc, "retry_after", None)
            if retry_after is not None and retry_after > policy.max_retry_wait:
                return False
            return True

        log_retry = self._log_retry(endpoint)
        told_bar = False

        def before_sleep(state: tenacity.RetryCallState) -> None:
            nonlocal told_bar
            log_retry(state)
            exc = state.outcome.exception() if state.outcome else None
            if isinstance(exc, RateLimitError) and state.next_action is not None:
                limiter._notice(state.next_action.sleep, server=True)
                told_bar = True

        async def sleep(seconds: float) -> None:
            nonlocal told_bar
            await self._sleep(seconds)
            if told_bar:
                told_bar = False
                if limiter.on_wait is not None:
                    limiter.on_wait(None)

        retrying = tenacity.AsyncRetrying(
            stop=tenacity.stop_after_attempt(policy.max_retries + 1),
            wait=wait,
            retry=tenacity.retry_if_exception(should_retry),
            sleep=sleep,
            reraise=True,
            before_sleep=before_sleep,
        )
        async for attempt in retrying:
            with attempt:
                if self.quota is not None:
                    self.quota.check(endpoint)  # spent today: fail before waiting for a slot
                async with self._capacity():
                    await limiter.acquire()
                    if self.quota is not None:
                        self.quota.record(endpoint)  # counts the attempt, or raises if spent
                    self.attempts[endpoint] += 1
                    try:
                        result = await fn()
                    except APIStatusError as exc:
                        quota_error = self._daily_quota_error(endpoint, exc)
                        if quota_error is not None:  # no waiting, no retry: the day is over
                            raise quota_error from exc
                        if isinstance(exc, RateLimitError) and exc.retry_after:
                            limiter.block_for(exc.retry_after, cap=policy.max_retry_wait)
                        headers = getattr(exc, "headers", None)
                        if headers:
                            limiter.update_from_headers(headers)
                        if (
                            isinstance(exc, RateLimitError)
                            and exc.retry_after is not None
                            and exc.retry_after > policy.max_retry_wait
                        ):
                            asked = (
                                f"{exc.retry_after:.0f} s"
                                if math.isfinite(exc.retry_after)
                                else "without limit"
                            )
                            exc.hint = (
                                f"The server asked to wait {asked}, more than "
                                f"max_retry_wait={policy.max_retry_wait:.0f} s (a daily limit?). "
                                "Raise it with set_config(max_retry_wait=...) to wait."
                            )
                            exc.args = (exc._format(),)
                        raise
                    headers = getattr(result, "headers", None)
                    if headers:
                        limiter.update_from_headers(headers)
        return result

    def _daily_quota_error(self, endpoint: str, exc: APIStatusError) -> QuotaExceededError | None:
        """A QuotaExceededError when a 429 means the day's quota is spent, else None.

        That is: a 429 asking to wait longer than ``max_retry_wait``, or one saying no request
        is left (``X-RateLimit-Remaining: 0``) with a reset (``X-RateLimit-Reset``, epoch or
        seconds) beyond ``max_retry_wait``, or naming a daily bucket
        (``X-RateLimit-Type``/``-Source``, or the message).
        """
        if not isinstance(exc, RateLimitError) or isinstance(exc, QuotaExceededError):
            return None
        cap = self.retry.max_retry_wait
        headers = {k.lower(): v for k, v in (getattr(exc, "headers", None) or {}).items()}
        wait: float | None = None
        if exc.retry_after is not None and exc.retry_after > cap:
            wait = exc.retry_after
        remaining = _int_header(headers, "x-ratelimit-remaining")
        reset = _int_header(headers, "x-ratelimit-reset")
        if wait is None and remaining == 0 and reset is not None:
            now = time.time()
            seconds = reset - now if reset > 1_000_000_000 else float(reset)
            if seconds > cap:
                wait = seconds
        bucket = f"{headers.get('x-ratelimit-type', '')} {headers.get('x-ratelimit-source', '')}"
        daily = any(w in f"{bucket} {exc.message}".lower() for w in ("daily", "per day", "rpd"))
        if wait is None and not daily:
            return None
        if wait is not None and not (math.isfinite(wait) and wait <= _LONGEST_RESET):
            wait = None  # "inf", "1e300": no usable reset time; the day's end is the guess
        if self.quota is not None:
            error = self.quota.server_spent(endpoint, exc, wait)
        else:
            error = QuotaExceededError(
                endpoint,
                resets_at=(
                    _dt.datetime.now(_dt.UTC) + _dt.timedelta(seconds=wait)
                    if wait is not None
                    else None
                ),
                message=exc.message,
                status_code=exc.status_code,
                request_id=exc.request_id,
                retry_after=exc.retry_after,
            )
        if exc.retry_after is not None and exc.retry_after > cap:
            error.hint = (
                f"The server asked to wait {exc.retry_after:.0f} s, more than "
                f"max_retry_wait={cap:.0f} s, so deapi_ds stops here instead of waiting "
                "(set_config(max_retry_wait=...) to wait that long)."
            )
            error.args = (error._format(),)
        return error

    @staticmethod
    def _log_retry(endpoint: str) -> Callable[[tenacity.RetryCallState], None]:
        def log(state: tenacity.RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            wait = state.next_action.sleep if state.next_action else 0.0
            logger.info(
                "deapi_ds: %s attempt %d failed (%s); retrying in %.1f s",
                endpoint,
                state.attempt_number,
                type(exc).__name__,
                wait,
            )

        return log


# --- the sync seam ---------------------------------------------------------------------------

_portal_lock = threading.Lock()
_portal: anyio.from_thread.BlockingPortal | None = None
_portal_thread: threading.Thread | None = None


def _loop_main(ready: queue.Queue) -> None:
    async def main() -> None:
        async with anyio.from_thread.BlockingPortal() as p:
            ready.put(p)
            await p.sleep_until_stopped()

    try:
        anyio.run(main)
    except BaseException as exc:  # noqa: BLE001 - report start-up failures to the caller
        ready.put(exc)


def portal() -> anyio.from_thread.BlockingPortal:
    """The process-wide event-loop thread used by the sync API (started on first use).

    It is a daemon thread, so it never keeps the interpreter from exiting.
    """
    global _portal, _portal_thread
    with _portal_lock:
        if _portal is None or _portal_thread is None or not _portal_thread.is_alive():
            ready: queue.Queue = queue.Queue()
            _portal_thread = threading.Thread(
                target=_loop_main, args=(ready,), name="deapi_ds-loop", daemon=True
            )
            _portal_thread.start()
            got = ready.get()
            if isinstance(got, BaseException):
                raise got
            _portal = got
        return _portal


def run_sync(fn: Callable[..., Awaitable[T]], *args: Any) -> T:
    """Run ``await fn(*args)`` from synchronous code, also inside a running event loop.

    The coroutine runs on deapi_ds's private loop thread; Ctrl-C cancels it (its ``finally``
    blocks run, so finished batches stay cached) and re-raises ``KeyboardInterrupt`` here.
    """
    p = portal()
    future = p.start_task_soon(fn, *args)
    try:
        while True:  # short waits keep the main thread responsive to Ctrl-C
            try:
                return future.result(timeout=0.1)
            except concurrent.futures.TimeoutError:
                continue
    except KeyboardInterrupt:
        future.cancel()
        try:
            future.exception(timeout=5)
        except BaseException:  # noqa: BLE001 - cancellation or the task's own error
            pass
        raise


def shutdown_portal() -> None:
    """Stop the private loop thread (tests; it restarts on next use)."""
    global _portal, _portal_thread
    with _portal_lock:
        if _portal is not None:
            try:
                _portal.call(_portal.stop)
            except RuntimeError:
                pass
            if _portal_thread is not None:
                _portal_thread.join(timeout=5)
        _portal = None
        _portal_thread = None
