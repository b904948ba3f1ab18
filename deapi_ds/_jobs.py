"""The job layer: submit → record the id → poll with backoff → fetch the result → resubmit.

Every asynchronous deAPI task (native transcriptions, OCR, image transforms; video later) has the
same life: a request is accepted with a job id, the job runs for a while, then it is done (a
result inline or at an expiring URL) or failed (``retryable`` or not). :class:`JobRunner` runs
that life for one job or many, over a :class:`JobBackend` (three calls: submit, status, fetch),
so the native API and the gateway's video jobs can share it:

- ``on_accepted(key, job_id)`` is called the moment a job is accepted, before any waiting, so
  the caller writes the id to its cache; after a kernel restart the caller passes the cached
  ids back (``JobItem(job_id=...)``) and polling resumes without paying again;
- polling starts after ``poll`` seconds and backs off by ``backoff`` up to ``max_poll``; every
  status read goes through the backend's own rate limits (deAPI Basic: 50/min, 200/day);
- a finished job's result is downloaded at once (result URLs expire); an expired URL (403, 404,
  410) is refreshed by reading the job again, once;
- a job that fails with ``retryable`` is resubmitted while the retry budget (``max_resubmits``)
  lasts; other failures become a :class:`JobOutcome` with ``error_code``, ``error_reason``,
  ``retryable`` and ``refunded``, never an exception that aborts the others;
- a job that is still running at ``timeout`` ends as status ``"running"`` with its id kept,
  so a later run resumes it.

No pandas here: callers turn outcomes into rows.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

import anyio

from ._exceptions import (
    AuthenticationError,
    ConfigurationError,
    InvalidParameterError,
    JobFailedError,
    ModelNotFoundError,
    NotFoundError,
    PermissionDeniedError,
    QuotaExceededError,
    RateLimitError,
)
from ._native import AsyncNativeClient, JobStatus, NativeRequest

__all__ = [
    "JobBackend",
    "JobItem",
    "JobOutcome",
    "JobRunner",
    "NativeBackend",
    "check_polling",
]

#: Errors after which no other job can succeed: the run stops (ids already accepted are recorded).
FATAL_ERRORS: tuple[type[BaseException], ...] = (
    ConfigurationError,
    AuthenticationError,
    ModelNotFoundError,
    InvalidParameterError,
)
#: A daily limit (or any wait this long) stops the run instead of failing every job.
_LONG_WAIT = 300.0
#: How a finished job's result can be lost before we read it (the URL expired or vanished).
_EXPIRED = (PermissionDeniedError, NotFoundError)


class JobBackend(Protocol):
    """What the runner needs from an API: submit a request, read a status, fetch a result."""

    async def submit(self, request: Any) -> str: ...

    async def status(self, job_id: str) -> JobStatus: ...

    async def fetch(self, status: JobStatus, request: Any) -> bytes | None: ...

    # optional: ``status_rate() -> float | None``, status reads allowed per minute (pacing)


class NativeBackend:
    """:class:`JobBackend` over deAPI's native API (:class:`AsyncNativeClient`)."""

    def __init__(self, client: AsyncNativeClient) -> None:
        self.client = client

    async def submit(self, request: NativeRequest) -> str:
        return await self.client.submit(request)

    async def status(self, job_id: str) -> JobStatus:
        return await self.client.job(job_id)

    def status_rate(self) -> float | None:
        """Status reads allowed per minute (the engine's limiter for ``v2.jobs``; None: no limit)."""
        return self.client.engine.limiter("v2.jobs").rpm

    async def fetch(self, status: JobStatus, request: NativeRequest | None) -> bytes | None:
        """Download ``result_url`` when the result lives there (or nothing came inline)."""
        wants_file = request.result_file if request is not None else status.result is None
        if status.result_url and (wants_file or status.result is None):
            return await self.client.download(status.result_url)
        return None


@dataclasses.dataclass
class JobItem:
    """One unit of work: a ``key`` (the caller's row or cache key), the ``request`` to send, and
    the ``job_id`` of a job accepted earlier (resume: no new submission while it lives)."""

    key: Any
    request: Any = None
    job_id: str | None = None
    #: how long the job is expected to run (e.g. from the audio's duration): no status read
    #: is spent before that
    expected_seconds: float | None = None


@dataclasses.dataclass
class JobOutcome:
    """What became of one :class:`JobItem`.

    ``status``: ``"done"``, ``"error"`` (the job failed, or a request about it did:
    ``error_type`` names the exception) or ``"running"`` (still running at the timeout; resume
    with ``job_id``). ``content`` holds the downloaded result file, ``result`` the inline one.
    ``submits`` counts the submissions this run paid for (0 for a resumed job that finished).
    """

    key: Any
    job_id: str | None
    status: str
    result: Any = None
    content: bytes | None = None
    metadata: Any = None
    error_code: str | None = None
    error_reason: str | None = None
    error_message: str | None = None
    retryable: bool | None = None
    refunded: bool | None = None
    error_type: str | None = None
    error: str | None = None
    submits: int = 0
    resumed: bool = False
    polls: int = 0
    job_ids: list[str] = dataclasses.field(default_factory=list)
    final: JobStatus | None = dataclasses.field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        return self.status == "done"

    def raise_for_failure(self, default: str = "The job failed.") -> None:
        """Raise :class:`~deapi_ds.JobFailedError` with deAPI's failure details unless done."""
        if not self.ok:
            raise JobFailedError(
                self.error or default,
                job_id=self.job_id,
                code=self.error_code,
                reason=self.error_reason,
                retryable=self.retryable,
                refunded=self.refunded,
            )


def check_polling(poll: Any, max_poll: Any, backoff: Any, timeout: Any, func: str) -> None:
    """Raise :class:`InvalidParameterError` for polling settings that cannot work."""
    for name, value, low in (("poll", poll, 0.0), ("max_poll", max_poll, 0.0), ("backoff", backoff, 1.0)):  # fmt: skip
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or value < low
        ):
            bound = ">= 1" if name == "backoff" else ">= 0"
            raise InvalidParameterError(
                f"The {name!r} parameter of {func}() must be a number {bound}. Got {value!r}."
            )
    if max_poll < poll:
        raise InvalidParameterError(
            f"The 'max_poll' parameter of {func}() ({max_poll}) must be >= poll ({poll})."
        )
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout < 0
    ):
        raise InvalidParameterError(
            f"The 'timeout' parameter of {func}() must be None or seconds >= 0. Got {timeout!r}."
        )


class JobRunner:
    """Runs jobs to their end over a :class:`JobBackend` (see the module docstring).

    ``poll``: seconds before the first status read of a new job (a resumed job is read at
    once); ``backoff``/``max_poll``: growth and cap of the wait between reads; ``timeout``:
    seconds per job before giving up waiting (None: no limit); ``max_resubmits``: how many
    times a job that failed with ``retryable`` is sent again. ``sleep``/``clock`` are seams
    for tests.
    """

    def __init__(
        self,
        backend: JobBackend,
        *,
        poll: float = 1.0,
        max_poll: float = 10.0,
        backoff: float = 1.5,
        timeout: float | None = None,
        max_resubmits: int = 2,
        sleep: Callable[[float], Awaitable[Any]] | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        check_polling(poll, max_poll, backoff, timeout, "JobRunner")
        if (
            isinstance(max_resubmits, bool)
            or not isinstance(max_resubmits, int)
            or max_resubmits < 0
        ):
            raise InvalidParameterError(
                f"max_resubmits must be an int >= 0. Got {max_resubmits!r}."
            )
        self.backend = backend
        self.poll = float(poll)
        self.max_poll = float(max_poll)
        self.backoff = float(backoff)
        self.timeout = timeout
        self.max_resubmits = max_resubmits
        self._sleep = sleep or anyio.sleep
        self._clock = clock or anyio.current_time
        self._waiting = 0  # jobs currently between status reads (they share the status limit)
        self._learned: float | None = None  # how long this run's jobs took (first read at done)
        self._probing = 0  # new jobs whose status reads find out how long jobs take

    async def run(
        self,
        item: JobItem,
        *,
        on_accepted: Callable[[Any, str], Any] | None = None,
        on_status: Callable[[Any, JobStatus], Any] | None = None,
    ) -> JobOutcome:
        """Run one item to its end; request errors become an ``"error"`` outcome.

        Errors that no other job could survive either (no key, bad configuration, a daily
        limit used up) are raised, after ``on_accepted`` has recorded any accepted id.
        """
        outcome = JobOutcome(item.key, item.job_id, "running", resumed=item.job_id is not None)
        job_id = item.job_id
        first_delay = 0.0
        accepted_at: float | None = None
        try:
            while True:
                probing = False
                if job_id is None:
                    job_id = await self._submit(item, outcome, on_accepted)
                    accepted_at = self._clock()
                    probing = await self._first_wait(item, accepted_at)
                    first_delay = self._first_delay(item, accepted_at)
                try:
                    if probing:
                        self._probing += 1
                    try:
                        status = await self._wait(job_id, outcome, first_delay, on_status)
                    finally:
                        if probing:
                            self._probing -= 1
                except NotFoundError:
                    # a recorded id the server no longer knows: send the request again
                    if not (outcome.resumed and item.request is not None):
                        raise
                    if not self._can_resubmit(outcome):
                        raise
                    job_id = None
                    continue
                if status is None:  # timed out: keep the id, resume later
                    return outcome
                if status.status == "done":
                    if accepted_at is not None:
                        self._learn(self._clock() - accepted_at)
                    await self._finish(outcome, status, item.request)
                    return outcome
                self._record_failure(outcome, status)
                if status.retryable and item.request is not None and self._can_resubmit(outcome):
                    job_id = None
                    continue
                return outcome
        except (*FATAL_ERRORS, QuotaExceededError):
            raise  # no other job can succeed, or the day's budget is spent: stop the run
        except RateLimitError as exc:
            if exc.retry_after is not None and exc.retry_after > _LONG_WAIT:
                raise  # a daily limit: every other job would hit it too
            return self._exception(outcome, exc)
        except Exception as exc:  # noqa: BLE001 - becomes this job's error; the others go on
            return self._exception(outcome, exc)

    def _can_resubmit(self, outcome: JobOutcome) -> bool:
        """Whether the retry budget allows one more submission for this item."""
        resubmits = outcome.submits if outcome.resumed else outcome.submits - 1
        return resubmits < self.max_resubmits

    async def _submit(
        self,
        item: JobItem,
        outcome: JobOutcome,
        on_accepted: Callable[[Any, str], Any] | None,
    ) -> str:
        if item.request is None:
            raise InvalidParameterError(
                f"Job item {item.key!r} has neither a request nor a job id."
            )
        job_id = await self.backend.submit(item.request)
        outcome.submits += 1
        outcome.job_id = job_id
        outcome.job_ids.append(job_id)
        outcome.status = "running"
        if on_accepted is not None:
            with anyio.CancelScope(shield=True):  # the id of a paid job is always recorded
                recorded = on_accepted(item.key, job_id)
                if hasattr(recorded, "__await__"):
                    await recorded
        return job_id

    async def _wait(
        self,
        job_id: str,
        outcome: JobOutcome,
        first_delay: float,
        on_status: Callable[[Any, JobStatus], Any] | None,
    ) -> JobStatus | None:
        """Poll until the job is final; None when ``timeout`` passes first.

        The first read comes after ``first_delay`` (see :meth:`_first_delay`). Later waits grow by ``backoff`` up to
        ``max_poll``, and never fall below the pace at which
        the status limit can serve every waiting job in turn (N waiting jobs under R reads
        per minute: one read per job every N * 60 / R s), so many jobs in flight do not
        spend the status budget (Basic: 200 per day) on jobs that are still running.
        """
        deadline = None if self.timeout is None else self._clock() + self.timeout
        interval, delay = self.poll, first_delay
        self._waiting += 1
        try:
            reads = 0
            while True:
                if reads:  # later reads share the status limit with every waiting job
                    delay = max(delay, self._pace())
                if delay > 0:
                    if deadline is not None:
                        delay = min(delay, deadline - self._clock())
                        if delay <= 0:
                            return None
                    await self._sleep(delay)
                status = await self.backend.status(job_id)
                outcome.polls += 1
                reads += 1
                if on_status is not None:
                    on_status(outcome.key, status)
                if status.done:
                    return status
                if deadline is not None and self._clock() >= deadline:
                    return None
                if delay > 0:
                    interval = min(interval * self.backoff, self.max_poll)
                delay = max(interval, 0.001)
        finally:
            self._waiting -= 1

    async def _first_wait(self, item: JobItem, accepted_at: float) -> bool:
        """Before a new job's first status read: while another job of this run is finding out
        how long jobs take (and nothing is known yet), wait for it, up to ``6 * max_poll`` s.
        Returns True when this job is the one finding out (the "probe")."""
        if item.expected_seconds is not None or self._learned is not None:
            return False
        if not self._probing:
            return True
        cap = 6 * self.max_poll
        while self._probing and self._learned is None and self._clock() - accepted_at < cap:
            await self._sleep(self.poll)
        return False

    def _first_delay(self, item: JobItem, accepted_at: float) -> float:
        """Seconds until a new job's first status read: ``expected_seconds``, or what this
        run's jobs took so far (0.9 x the shortest), or ``poll``."""
        age = self._clock() - accepted_at
        if item.expected_seconds is not None:
            return max(self.poll, item.expected_seconds - age)
        if self._learned is not None:
            return max(0.0, 0.9 * self._learned - age)
        return self.poll if age < self.poll else 0.0

    def _learn(self, seconds: float) -> None:
        """Remember how long a job ran: later jobs skip status reads they would waste."""
        self._learned = seconds if self._learned is None else min(self._learned, seconds)

    def _pace(self) -> float:
        rate_of = getattr(self.backend, "status_rate", None)
        rate = rate_of() if rate_of is not None else None
        if not rate:
            return 0.0
        return (self._waiting - 1) * 60.0 / rate

    async def _finish(self, outcome: JobOutcome, status: JobStatus, request: Any) -> None:
        try:
            content = await self.backend.fetch(status, request)
        except _EXPIRED:
            # the pre-signed URL expired before we read it: a fresh status has a fresh URL
            status = await self.backend.status(status.id)
            outcome.polls += 1
            content = await self.backend.fetch(status, request)
        outcome.status = "done"
        outcome.final = status
        outcome.result = status.result
        outcome.content = content
        outcome.metadata = status.metadata
        for name in ("error_code", "error_reason", "error_message", "retryable", "refunded"):
            setattr(outcome, name, None)
        outcome.error_type = outcome.error = None

    @staticmethod
    def _record_failure(outcome: JobOutcome, status: JobStatus) -> None:
        outcome.status = "error"
        outcome.final = status
        outcome.error_code = status.error_code
        outcome.error_reason = status.error_reason
        outcome.error_message = status.error_message
        outcome.retryable = status.retryable
        outcome.refunded = status.refunded
        outcome.error_type = "JobFailedError"
        outcome.error = status.error_text()

    @staticmethod
    def _exception(outcome: JobOutcome, exc: BaseException) -> JobOutcome:
        outcome.status = "error"
        outcome.error_type = type(exc).__name__
        where = f" (job {outcome.job_id})" if outcome.job_id else ""
        outcome.error = f"{type(exc).__name__}{where}: {exc}"
        return outcome

    async def run_many(
        self,
        items: Sequence[JobItem],
        *,
        on_accepted: Callable[[Any, str], Any] | None = None,
        on_done: Callable[[JobOutcome], Any] | None = None,
        on_status: Callable[[Any, JobStatus], Any] | None = None,
        limit: int = 64,
    ) -> list[JobOutcome]:
        """Run every item, at most ``limit`` at once; outcomes in the order of ``items``.

        ``on_done(outcome)`` is called as each job ends (where the caller caches the result).
        A fatal error (see :meth:`run`) cancels the rest and is raised after the jobs that
        ended were handed to ``on_done``.
        """
        outcomes: list[JobOutcome | None] = [None] * len(items)
        semaphore = anyio.Semaphore(max(1, limit))
        fatal: list[BaseException] = []

        async def one(i: int, item: JobItem, tg: anyio.abc.TaskGroup) -> None:
            async with semaphore:
                if fatal:
                    return
                try:
                    outcome = await self.run(item, on_accepted=on_accepted, on_status=on_status)
                except Exception as exc:  # noqa: BLE001 - fatal for the whole run
                    if not fatal:
                        fatal.append(exc)
                    tg.cancel_scope.cancel()
                    return
                outcomes[i] = outcome
                if on_done is not None:
                    with anyio.CancelScope(shield=True):
                        done = on_done(outcome)
                        if hasattr(done, "__await__"):
                            await done

        async with anyio.create_task_group() as tg:
            for i, item in enumerate(items):
                tg.start_soon(one, i, item, tg)
        if fatal:
            raise fatal[0]
        return [o for o in outcomes if o is not None]
