"""Text-to-video jobs that survive a kernel restart: create, poll with backoff, download, resume.

deAPI's ``POST /v1/videos`` starts an asynchronous job; ``GET /v1/videos/{id}`` reports its
status and progress; ``GET /v1/videos/{id}/content`` returns the MP4 once it is ``completed``
(for a limited time: results expire, so they are downloaded as soon as they are done).

:func:`generate_video` records each job id in the result cache **as soon as the job is
created** (key: prompt + model + size + seconds, task ``"videos"``). Rerunning the same call
after a crash or a kernel restart resumes polling those ids instead of paying again, and a video
that was already downloaded is served from the cache. :meth:`VideoJob.from_id` resumes any job
by its id.

>>> import deapi_ds
>>> from deapi_ds.video import generate_video
>>> emu = deapi_ds.use_emulator()
>>> job = generate_video("a lighthouse at dusk", size="256x256", seconds=2, poll=0.01, cache=None)
>>> job.status, job.progress, job.video[4:8]
('completed', 100, b'ftyp')

Polling starts at ``poll`` seconds (default 1 s) and grows by ``backoff`` (x1.5) up to
``max_poll`` (10 s); every status request also goes through the engine's rate limiter for the
``videos.retrieve`` endpoint (50 requests per minute on deAPI's Basic tier), so many jobs polled
at once never exceed it. A job that fails is a row with ``status="error"`` and its error: it
never raises and never loses the other jobs (``.wait(raise_on_error=True)`` raises
:class:`~deapi_ds.JobFailedError` for one job when you want that).
"""

from __future__ import annotations

import math
import re
import time
import unicodedata
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import pandas as pd
import pyarrow as pa

from ._cache import USE_DEFAULT, NullCache, make_key, resolve_cache
from ._client import AsyncClient, Client, Video
from ._common import is_missing
from ._estimate import Estimate
from ._exceptions import (
    InvalidParameterError,
    JobFailedError,
    NotFoundError,
    ResponseValidationError,
)
from ._pipeline import (
    FATAL_ERRORS,
    Answer,
    CacheWriter,
    Progress,
    Task,
    as_series,
    map_batches,
    quota_fields,
    run_task,
)
from ._profiles import get_profile
from ._result import STATUS_DTYPE, ResultFrame, error_columns, write_media
from ._tasks import resolve_client, syncify

__all__ = [
    "VideoJob",
    "VideoJobs",
    "aestimate_generate_video",
    "agenerate_video",
    "estimate_generate_video",
    "generate_video",
]

TASK = "videos"
DEFAULT_MODEL = "Ltx2_3_22B_Dist_INT8"
#: Server statuses after which a job never changes.
TERMINAL = ("completed", "failed", "cancelled", "expired")
#: Videos up to this size are embedded in notebook output; larger ones are linked to their file.
INLINE_VIDEO_BYTES = 5_000_000
#: Total bytes of video embedded in one table's HTML.
INLINE_TABLE_BUDGET = 10_000_000
_CACHE_COLUMNS = ["video_id", "state", "video"]
#: What a job id may hold: it goes into the URL path of the status and content requests.
_JOB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]*")


def _now() -> float:
    return anyio.current_time()


async def _sleep(seconds: float) -> None:
    """The wait between status polls (a seam for tests)."""
    await anyio.sleep(seconds)


def _safe_name(text: str, limit: int = 40) -> str:
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^A-Za-z0-9]+", "_", ascii_text).strip("_").lower()
    return slug[:limit].rstrip("_") or "video"


def _check_poll(poll: Any, max_poll: Any, backoff: Any, timeout: Any, func: str) -> None:
    for name, value, low in (
        ("poll", poll, 0.0),
        ("max_poll", max_poll, 0.0),
        ("backoff", backoff, 1.0),
    ):
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or value < low
            or (name != "backoff" and value == 0)
        ):
            bound = ">= 1" if name == "backoff" else "> 0"
            raise InvalidParameterError(
                f"The {name!r} parameter of {func}() must be a number {bound} (seconds for "
                f"poll/max_poll). Got {value!r}."
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


def _file_name(job: VideoJob) -> str:
    return f"{_safe_name(job.prompt or 'video')}_{_safe_name(job.id or 'job', 48)}.mp4"


def _poll_after(video: Video) -> float:
    """The server's ``openai-poll-after-ms`` hint in seconds (0 when absent)."""
    raw = video.headers.get("openai-poll-after-ms") if video.headers else None
    try:
        return max(0.0, float(raw) / 1000.0) if raw is not None else 0.0
    except ValueError:
        return 0.0


# --------------------------------------------------------------------------- the job


class VideoJob:
    """One video generation job: ``id``, ``status``, ``progress``, then ``video`` (MP4 bytes).

    ``status`` is the server's (``"queued"``, ``"in_progress"``, ``"completed"``) or
    ``"error"`` when the job failed (``"failed"``, ``"cancelled"``, ``"expired"`` on the server,
    kept in ``server_status``) or a request about it failed; ``error_type`` and ``error`` say
    why. ``"pending"`` means not created yet and ``"empty"`` an empty prompt. ``cached`` is true
    when the video came from the result cache, ``resumed`` when the job id did.

    Methods come in pairs: :meth:`refresh` / :meth:`arefresh`, :meth:`wait` /
    :meth:`await_done`, :meth:`download` / :meth:`adownload`.

    >>> job = deapi_ds.VideoJob.from_id("video_123")  # doctest: +SKIP
    >>> job.wait().download("clip.mp4")  # doctest: +SKIP
    PosixPath('clip.mp4')
    """

    __module__ = "deapi_ds"

    def __init__(
        self,
        id: str | None = None,
        *,
        prompt: str | None = None,
        model: str | None = None,
        size: str | None = None,
        seconds: str | None = None,
        client: Client | AsyncClient | None = None,
        key: str | None = None,
        cache: Any = None,
    ) -> None:
        self.id = id
        self.prompt = prompt
        self.model = model
        self.size = size
        self.seconds = seconds
        self.status = "pending" if id is None else "queued"
        self.server_status: str | None = None
        self.progress: int | None = None
        self.error_type: str | None = None
        self.error: str | None = None
        self.video: bytes | None = None
        self.path: Path | None = None
        self.cached = False
        self.resumed = False
        self.created_at: int | None = None
        self.completed_at: int | None = None
        self.expires_at: int | None = None
        self.polls = 0
        self._client = client
        self._key = key
        self._store = cache if cache is not None else NullCache()
        #: the run's cache writer (one failure policy); None outside a generate_video call
        self._writer: CacheWriter | None = None

    # -- state ---------------------------------------------------------------------------

    @property
    def done(self) -> bool:
        """True once the job can no longer change (completed, or an error)."""
        return self.status in ("completed", "error", "empty")

    @property
    def ok(self) -> bool:
        """True when the job completed."""
        return self.status == "completed"

    def _apply(self, video: Video) -> None:
        self.id = video.id
        self.server_status = video.status
        self.polls += 1
        if video.progress is not None:
            self.progress = int(video.progress)
        for name in ("model", "size", "seconds"):
            value = getattr(video, name)
            if value is not None:
                setattr(self, name, value)
        if self.prompt is None and isinstance(video.raw.get("prompt"), str):
            self.prompt = video.raw["prompt"]
        self.created_at = video.created_at or self.created_at
        self.completed_at = video.completed_at or self.completed_at
        self.expires_at = video.expires_at or self.expires_at
        if video.status == "completed":
            self.status, self.progress = "completed", 100
        elif video.status in TERMINAL:
            error = video.error or {}
            message = error.get("message") if isinstance(error, dict) else str(error)
            self._fail(
                "JobFailedError",
                f"Video job {video.id} ended with status {video.status!r}: "
                f"{message or 'no reason given'}",
            )
        else:
            self.status = video.status or "queued"

    def _fail(self, error_type: str, message: str) -> None:
        self.status = "error"
        self.error_type = error_type
        self.error = message

    def _record_exception(self, exc: BaseException, doing: str) -> None:
        where = f" (job {self.id})" if self.id else ""
        self._fail(type(exc).__name__, f"{doing}{where} failed: {exc}")

    def _aclient(self) -> AsyncClient:
        return resolve_client(self._client)

    # -- async API -----------------------------------------------------------------------

    async def arefresh(self) -> VideoJob:
        """Fetch the job's status once (``GET /v1/videos/{id}``)."""
        if self.id is None:
            raise InvalidParameterError("This job has no id yet: it was never created.")
        self._apply(await self._aclient().videos_retrieve(self.id))
        return self

    async def await_done(
        self,
        timeout: float | None = None,
        *,
        poll: float = 1.0,
        max_poll: float = 10.0,
        backoff: float = 1.5,
        download: bool = True,
        raise_on_error: bool = False,
        progress: bool | None = None,
    ) -> VideoJob:
        """Async :meth:`wait`."""
        _check_poll(poll, max_poll, backoff, timeout, "wait")
        aclient = self._aclient()
        desc = f"video {self.id or ''}".strip()
        bar = Progress(100, desc=desc, unit="%", show=progress, engine=aclient.engine)
        shown = [0]

        def report(job: VideoJob) -> None:
            now = 100 if job.done else int(job.progress or 0)
            if now > shown[0]:
                bar.advance(now - shown[0])
                shown[0] = now

        try:
            await self._run(
                poll=poll,
                max_poll=max_poll,
                backoff=backoff,
                timeout=timeout,
                download=download,
                on_progress=report,
                first_delay=0.0,
            )
        finally:
            bar.close(complete=False)
        if raise_on_error and self.status == "error":
            raise JobFailedError(self.error or "The video job failed.", job_id=self.id)
        return self

    async def _run(
        self,
        *,
        poll: float,
        max_poll: float,
        backoff: float,
        timeout: float | None,
        download: bool,
        on_progress: Callable[[VideoJob], None],
        first_delay: float,
    ) -> None:
        """Poll until done (or ``timeout``), then download; errors become the job's status."""
        if self.done:
            if self.ok and download and self.video is None:
                await self._download_recorded()
            on_progress(self)
            return
        aclient = self._aclient()
        deadline = None if timeout is None else _now() + timeout
        interval, delay = poll, first_delay
        while True:
            if delay > 0:
                if deadline is not None:
                    delay = min(delay, deadline - _now())
                    if delay <= 0:
                        return
                await _sleep(delay)
            try:
                video = await aclient.videos_retrieve(self.id)  # type: ignore[arg-type]
            except FATAL_ERRORS:
                raise
            except Exception as exc:  # noqa: BLE001 - kept on the job; the id stays cached
                self._record_exception(exc, "Checking the status")
                on_progress(self)
                return
            self._apply(video)
            on_progress(self)
            if self.done:
                break
            if delay > 0:  # the first wait is `poll`; each later one grows by `backoff`
                interval = min(interval * backoff, max_poll)
            delay = max(interval, _poll_after(video))
        if self.ok and download:
            await self._download_recorded()
            on_progress(self)

    async def _download_recorded(self) -> None:
        try:
            await self.adownload()
        except FATAL_ERRORS:
            raise
        except Exception as exc:  # noqa: BLE001
            self._record_exception(exc, "Downloading the video")

    async def adownload(self, path: str | Path | None = None) -> bytes | Path:
        """Async :meth:`download`."""
        if self.video is None:
            if self.status == "error":
                raise InvalidParameterError(
                    f"Video job {self.id} has no video to download: {self.error}"
                )
            if self.id is None or self.status != "completed":
                raise InvalidParameterError(
                    f"Video job {self.id} is {self.status!r}, not 'completed': nothing to "
                    "download yet. Call .wait() first."
                )
            data = await self._aclient().videos_content(self.id)
            if not data:
                raise ResponseValidationError(
                    f"The content of video job {self.id} is empty.",
                    endpoint=f"GET /v1/videos/{self.id}/content",
                )
            self.video = data
            if self._key is not None and self.model:
                writer = self._writer or CacheWriter(self._store, TASK, self.model, "download")
                await writer.write(
                    pa.table(
                        {
                            "key": [self._key],
                            "video_id": [self.id],
                            "state": ["completed"],
                            "video": pa.array([data], pa.binary()),
                        }
                    )
                )
        if path is None:
            return self.video
        target = Path(path)
        if target.is_dir() or str(path).endswith(("/", "\\")):
            target.mkdir(parents=True, exist_ok=True)
            target = target / _file_name(self)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(self.video)
        self.path = target
        return target

    # -- sync API ------------------------------------------------------------------------

    @classmethod
    async def afrom_id(cls, id: str, *, client: Client | AsyncClient | None = None) -> VideoJob:
        """Async :meth:`from_id`."""
        if not isinstance(id, str) or not _JOB_ID.fullmatch(id):
            raise InvalidParameterError(
                f"VideoJob.from_id() needs a job id such as 'video_123abc' (letters, digits, "
                f"'_', '-', '.', ':'). Got {id!r}."
            )
        job = cls(id, client=client)
        job.resumed = True
        try:
            await job.arefresh()
        except NotFoundError as exc:
            job._record_exception(exc, "Looking up the job")
        return job

    @classmethod
    def from_id(cls, id: str, *, client: Client | AsyncClient | None = None) -> VideoJob:
        """Resume any job by its id: fetches its status once; then ``.wait()``, ``.download()``.

        >>> job = deapi_ds.VideoJob.from_id("video_5f0c...")  # doctest: +SKIP
        >>> job.wait(); job.download("out/")  # doctest: +SKIP
        """
        return syncify(cls.afrom_id)(id, client=client)

    def refresh(self) -> VideoJob:
        """Fetch the job's status once; returns the job."""
        return syncify(self.arefresh)()

    def wait(
        self,
        timeout: float | None = None,
        *,
        poll: float = 1.0,
        max_poll: float = 10.0,
        backoff: float = 1.5,
        download: bool = True,
        raise_on_error: bool = False,
        progress: bool | None = None,
    ) -> VideoJob:
        """Poll until the job is done, with a progress bar, then download the video.

        Polls start ``poll`` seconds apart and grow by ``backoff`` up to ``max_poll`` (the
        server's ``openai-poll-after-ms`` hint is a lower bound), each through the rate limit of
        the ``videos.retrieve`` endpoint. ``download=True`` fetches the MP4 as soon as it is
        done (results expire). After ``timeout`` seconds the job is returned as it is (check
        ``job.done``). A failure is recorded in ``status``/``error``; with
        ``raise_on_error=True`` it raises :class:`~deapi_ds.JobFailedError`.
        """
        return syncify(self.await_done)(
            timeout,
            poll=poll,
            max_poll=max_poll,
            backoff=backoff,
            download=download,
            raise_on_error=raise_on_error,
            progress=progress,
        )

    def download(self, path: str | Path | None = None) -> bytes | Path:
        """The MP4: bytes with ``path=None``, else written to ``path`` (a file or a folder).

        A folder (existing, or ending in ``/``) gets ``<prompt words>_<job id>.mp4``. The bytes
        are fetched once and recorded in the cache, so a rerun serves them from there.
        """
        return syncify(self.adownload)(path)

    # -- display -------------------------------------------------------------------------

    def as_row(self) -> dict[str, Any]:
        """The job as one row of :class:`VideoJobs`."""
        status = self.status
        if status == "completed":
            status = "cached" if self.cached else "ok"
        return {
            "prompt": self.prompt,
            "id": self.id,
            "status": status,
            "server_status": self.server_status,
            "progress": self.progress,
            "video": self.video,
            "path": None if self.path is None else str(self.path),
            "model": self.model,
            "size": self.size,
            "seconds": self.seconds,
            "expires_at": self.expires_at,
            "error_type": self.error_type,
            "error": self.error,
            "cached": self.cached,
            "resumed": self.resumed,
        }

    def __repr__(self) -> str:
        parts = [f"id={self.id!r}", f"status={self.status!r}"]
        if self.progress is not None and self.status not in ("completed", "error"):
            parts.append(f"progress={self.progress}")
        if self.video is not None:
            parts.append(f"video={len(self.video):,} bytes")
        if self.path is not None:
            parts.append(f"path={str(self.path)!r}")
        if self.error:
            parts.append(f"error={self.error!r}")
        return f"deapi_ds.VideoJob({', '.join(parts)})"

    def _repr_html_(self) -> str:
        from ._result import esc_html as _esc
        from ._result import video_html

        head = (
            f"<div><b>VideoJob</b> <code>{_esc(self.id or '')}</code> · {_esc(self.status)}"
            + (f" · {self.progress}%" if self.progress is not None and not self.done else "")
            + "</div>"
        )
        if self.prompt:
            head += f'<div style="color:#555">{_esc(self.prompt[:300])}</div>'
        if self.error:
            head += f'<div style="color:#b00">{_esc(self.error)}</div>'
        if self.video is not None or self.path is not None:
            head += video_html(self.video, path=self.path, max_bytes=INLINE_VIDEO_BYTES)
        return head

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        return {"text/plain": repr(self), "text/html": self._repr_html_()}


# --------------------------------------------------------------------------- many jobs


def _jobs_frame(jobs: Sequence[VideoJob], index: pd.Index) -> pd.DataFrame:
    columns = list(VideoJob().as_row())
    frame = pd.DataFrame([job.as_row() for job in jobs], columns=columns, index=index)
    frame["video"] = frame["video"].astype(object)
    strings = ["prompt", "id", "server_status", "path", "model", "size", "seconds"]
    frame = frame.astype({c: STATUS_DTYPE for c in strings})
    frame = frame.astype(
        {"progress": "Int64", "expires_at": "Int64", "cached": "boolean", "resumed": "boolean"}
    )
    return error_columns(frame)


class VideoJobs(ResultFrame):
    """Many video jobs as a frame (one row per prompt, aligned with the input).

    Columns: ``prompt``, ``id``, ``status`` (``"ok"``, ``"cached"``, ``"error"``, ``"empty"``,
    or ``"queued"`` / ``"in_progress"`` when not waited for), ``server_status``, ``progress``,
    ``video`` (MP4 bytes), ``path``, ``model``, ``size``, ``seconds``, ``expires_at``,
    ``error_type``, ``error``, ``cached``, ``resumed``. ``.jobs`` holds the :class:`VideoJob`
    objects; :meth:`wait` and :meth:`download` act on all of them concurrently.
    """

    media = {"video": "video"}

    def __init__(
        self, jobs: Sequence[VideoJob], *, index: pd.Index | None = None, meta: Any = None
    ):
        self.jobs = list(jobs)
        self._index = index if index is not None else pd.RangeIndex(len(self.jobs))
        super().__init__(_jobs_frame(self.jobs, self._index), meta=meta)

    def _take(self, positions: np.ndarray) -> VideoJobs:
        new = self._subset(positions)  # the same job objects, for the selected rows
        new.jobs = [self.jobs[i] for i in positions]
        new._index = self._index[positions]
        return new

    def _sync(self) -> VideoJobs:
        self.frame = _jobs_frame(self.jobs, self._index)
        return self

    async def await_done(
        self,
        timeout: float | None = None,
        *,
        poll: float = 1.0,
        max_poll: float = 10.0,
        backoff: float = 1.5,
        download: bool = True,
        progress: bool | None = None,
    ) -> VideoJobs:
        """Async :meth:`wait`."""
        _check_poll(poll, max_poll, backoff, timeout, "wait")
        await _run_jobs(
            self.jobs,
            poll=poll,
            max_poll=max_poll,
            backoff=backoff,
            timeout=timeout,
            download=download,
            progress=progress,
            first_delay=0.0,
        )
        return self._sync()

    def wait(
        self,
        timeout: float | None = None,
        *,
        poll: float = 1.0,
        max_poll: float = 10.0,
        backoff: float = 1.5,
        download: bool = True,
        progress: bool | None = None,
    ) -> VideoJobs:
        """Poll every unfinished job concurrently until done (see :meth:`VideoJob.wait`)."""
        return syncify(self.await_done)(
            timeout,
            poll=poll,
            max_poll=max_poll,
            backoff=backoff,
            download=download,
            progress=progress,
        )

    def refresh(self) -> VideoJobs:
        """Fetch the status of every unfinished job once."""

        async def go() -> None:
            async with anyio.create_task_group() as tg:
                for job in self.jobs:
                    if job.id is not None and not job.done:
                        tg.start_soon(job.arefresh)

        syncify(go)()
        return self._sync()

    def download(self, folder: str | Path) -> pd.Series:
        """Write every finished video to ``folder``, replacing files; see :meth:`save`."""
        return self.save(folder, overwrite=True)

    def save(self, folder: str | Path, *, overwrite: bool = False) -> pd.Series:
        """Write every finished video to ``folder``; returns the paths (NA for the others).

        Videos not fetched yet are fetched concurrently. A video that cannot be fetched (e.g.
        its result expired) makes that job an error row; the other videos are still saved.
        Names are ``<prompt words>_<job id>.mp4``; a file already holding the same video is
        kept, one holding something else is replaced only with ``overwrite=True`` (else
        FileExistsError). Saved videos render in the notebook as links when too big to embed.
        """
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)

        async def go() -> None:
            async def one(job: VideoJob) -> None:
                try:
                    await job.adownload()  # fetch only; writing errors are the caller's
                except FATAL_ERRORS:
                    raise
                except Exception as exc:  # noqa: BLE001 - becomes this job's error
                    job._record_exception(exc, "Downloading the video")

            unique = {id(job): job for job in self.jobs if job.ok}
            async with anyio.create_task_group() as tg:
                for job in unique.values():
                    tg.start_soon(one, job)

        syncify(go)()
        for job in {id(job): job for job in self.jobs if job.ok}.values():
            path = folder / _file_name(job)
            write_media(path, job.video, overwrite=overwrite)
            job.path = path
        self._sync()
        paths = [str(job.path) if job.ok and job.path is not None else pd.NA for job in self.jobs]
        return pd.Series(paths, index=self._index, name="path", dtype=STATUS_DTYPE)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        from ._result import frame_html

        shown = self.frame.copy()
        # Saved files are shown from disk (embedded when small, linked when large).
        saved = shown["path"].notna().to_numpy()
        if saved.any():
            video = shown["video"].to_numpy(dtype=object, copy=True)
            video[saved] = shown["path"].to_numpy(dtype=object)[saved]
            shown["video"] = video
        shown = shown.drop(columns=["path", "server_status", "expires_at"])
        html = frame_html(shown, media=dict(self.media), max_media_bytes=INLINE_TABLE_BUDGET)
        return {"text/plain": repr(self), "text/html": f"<p>{self.summary()}</p>{html}"}


async def _run_jobs(
    jobs: Sequence[VideoJob],
    *,
    poll: float,
    max_poll: float,
    backoff: float,
    timeout: float | None,
    download: bool,
    progress: bool | None,
    first_delay: float,
    before: Callable[[VideoJob], Any] | None = None,
) -> None:
    """Run (create if needed, then poll/download) every job concurrently, one progress bar."""
    unique = {id(job): job for job in jobs}  # rows with the same prompt share one job
    active = [job for job in unique.values() if job.status != "empty"]
    clients = {id(job._aclient()): job._aclient() for job in active}
    engines = [c.engine for c in clients.values()]
    bar = Progress(
        100 * len(active),
        desc="videos",
        unit="%",
        show=progress,
        engine=engines[0] if engines else None,
    )
    stop_showing_waits = [e.add_wait_listener(bar.bar.waiting) for e in engines[1:]]
    shown: dict[int, int] = {}

    def report(job: VideoJob) -> None:
        now = 100 if job.done else int(job.progress or 0)
        before_value = shown.get(id(job), 0)
        if now > before_value:
            failed = 1 if job.status == "error" else 0
            bar.advance(now - before_value, failed=failed)
            shown[id(job)] = now

    async def one(job: VideoJob) -> None:
        if before is not None:
            # the job was just created or its recorded id just checked: wait before polling
            await before(job)
            report(job)
            if timeout == 0:
                return
            # a recorded job found done is not polled again, but still downloaded (below)
        await job._run(
            poll=poll,
            max_poll=max_poll,
            backoff=backoff,
            timeout=timeout,
            download=download,
            on_progress=report,
            first_delay=first_delay,
        )

    def on_done(job: VideoJob, result: Any, error: BaseException | None) -> None:
        if error is not None:
            job._record_exception(error, "The job")
            report(job)

    try:
        await map_batches(active, one, on_done=on_done, limit=max(len(active), 1))
    finally:
        for stop in stop_showing_waits:
            stop()
        bar.close(complete=False)


class _VideoTask(Task):
    """Video jobs on the pipeline: a unit is one distinct prompt's job. The cache lookup
    restores recorded job ids and videos; the call creates the job unless a usable one is
    recorded (its id written to the cache at once), then polls and downloads. Each job keeps
    its own outcome (VideoJob), so nothing is re-asked by the pipeline."""

    name = TASK
    func = "generate_video"
    endpoint = "videos"
    cache_columns = tuple(_CACHE_COLUMNS)
    unit_name = "%"

    def __init__(
        self,
        jobs: list[VideoJob],
        *,
        aclient: AsyncClient,
        model: str,
        size: str | None,
        seconds: str | None,
        wait: bool,
        options: dict[str, Any],
    ) -> None:
        self.jobs = jobs
        self.aclient = aclient
        self.model = model
        self.size = size
        self.seconds = seconds
        self.wait = wait
        self.options = options
        self.bar: Progress | None = None
        self._shown: dict[int, int] = {}

    def keys(self) -> list[str]:
        return [job._key for job in self.jobs]  # type: ignore[misc]

    async def ahead(self, ids: np.ndarray) -> None:
        for job in self.jobs:
            job._writer = self.writer  # downloads are persisted with the run's policy

    def weights(self) -> np.ndarray:
        return np.zeros(len(self.jobs))  # jobs report their own progress (report below)

    def from_cache(self, ids: np.ndarray, table: pa.Table) -> np.ndarray:
        for uid, record in zip(ids.tolist(), table.to_pylist(), strict=True):
            job = self.jobs[uid]
            job.id = record.get("video_id")
            job.resumed = job.id is not None
            if record.get("video"):
                job.video = record["video"]
                job.status, job.progress, job.cached = "completed", 100, True
            elif job.id is not None:
                job.status = "queued"
        return ids[:0]  # every job still goes through call(): resumed, or shown as done

    def report(self, job: VideoJob) -> None:
        now = 100 if job.done else int(job.progress or 0)
        before = self._shown.get(id(job), 0)
        if now > before and self.bar is not None:
            self.bar.advance(now - before, failed=(now - before) if job.status == "error" else 0)
            self._shown[id(job)] = now

    async def call(self, ids: np.ndarray) -> Answer:
        job = self.jobs[int(ids[0])]
        try:
            await self._before(job)
        except FATAL_ERRORS:
            raise
        except Exception as exc:  # noqa: BLE001 - becomes this job's error
            job._record_exception(exc, "Creating the video job")
        self.report(job)
        if self.options["timeout"] != 0 and job.status != "error":
            try:
                await job._run(
                    poll=self.options["poll"],
                    max_poll=self.options["max_poll"],
                    backoff=self.options["backoff"],
                    timeout=self.options["timeout"],
                    download=self.options["download"],
                    on_progress=self.report,
                    first_delay=self.options["first_delay"],
                )
            except FATAL_ERRORS:
                raise
            except Exception as exc:  # noqa: BLE001
                job._record_exception(exc, "The job")
        self.report(job)
        return Answer(ids, [job])

    async def _before(self, job: VideoJob) -> None:
        """Create the job unless a usable one is recorded."""
        if job.cached:
            return
        if job.id is not None:
            try:
                await job.arefresh()
            except NotFoundError:
                job.status = "expired"  # unknown to the server: make a new one
            except FATAL_ERRORS:
                raise
            except Exception as exc:  # noqa: BLE001 - keep the recorded id; a rerun resumes
                job._record_exception(exc, "Checking the recorded job")
                return
            if job.status == "completed" and job.expires_at and job.expires_at < time.time():
                job.status = "expired"  # done long ago and never downloaded: gone
            if job.status not in ("error", "expired"):
                return  # completed or still running: resume it
            job.id = None  # failed, expired or unknown: pay for a new one
        video = await self.aclient.videos_create(
            job.prompt or "", model=self.model, size=self.size, seconds=self.seconds
        )
        job.resumed = False
        job.status, job.server_status, job.progress = "queued", None, 0
        job.error_type = job.error = None
        job._apply(video)
        job.polls = 0
        # recorded before anything else happens: a crash from here on loses nothing
        await self.writer.write(
            pa.table({"key": [job._key], "video_id": [job.id], "state": [video.status]})
        )

    def accept(self, ids: np.ndarray, value: Any) -> None:
        pass  # the jobs hold their outcome

    def to_cache(self, ids: np.ndarray, value: Any, keys: Sequence[str]) -> None:
        return None  # ids are written at creation, videos when downloaded (VideoJob)


# --------------------------------------------------------------------------- generate_video


def _prompts(prompt: Any, column: Any) -> tuple[pd.Series, bool]:
    """The prompts as a Series and whether a single prompt (str) was given."""
    if isinstance(prompt, str):
        return pd.Series([prompt], dtype=object), True
    series = as_series(
        prompt, column, func="generate_video", what="prompts", default_column="prompt"
    )
    for label, value in zip(series.index, series.tolist(), strict=True):
        if not is_missing(value) and not isinstance(value, str):
            raise InvalidParameterError(
                f"Prompt {label!r} given to generate_video() is a {type(value).__name__} "
                f"({value!r}), not a str."
            )
    return series, False


def _check_video_params(
    aclient: AsyncClient, model: Any, size: Any, seconds: Any
) -> tuple[str | None, str | None]:
    if not isinstance(model, str) or not model:
        raise InvalidParameterError(
            f"The 'model' parameter of generate_video() must be a model id such as "
            f"{DEFAULT_MODEL!r}. Got {model!r}."
        )
    mp = aclient.profile.require_task(model, "txt2video", func="generate_video")
    size_text = None
    if size is not None:
        if mp is not None:
            width, height = mp.check_size(size, func="generate_video")
        else:
            from ._profiles import ModelProfile

            width, height = ModelProfile("?", ()).check_size(size, func="generate_video")
        if width <= 0 or height <= 0:
            raise InvalidParameterError(
                f"The 'size' parameter of generate_video() must be positive, like '768x512'. "
                f"Got {size!r}."
            )
        size_text = f"{width}x{height}"
    seconds_text = None
    if seconds is not None:
        try:
            value = float(seconds)
        except (TypeError, ValueError):
            value = float("nan")
        if isinstance(seconds, bool) or not math.isfinite(value) or value <= 0:
            raise InvalidParameterError(
                f"The 'seconds' parameter of generate_video() must be a positive number of "
                f"seconds, e.g. 4. Got {seconds!r}."
            )
        seconds_text = f"{value:g}"
    return size_text, seconds_text


async def agenerate_video(
    data: Any,
    column: Any = None,
    *,
    model: str = DEFAULT_MODEL,
    size: str | None = None,
    seconds: float | str | None = None,
    wait: bool = True,
    download: bool = True,
    folder: str | Path | None = None,
    timeout: float | None = None,
    poll: float = 1.0,
    max_poll: float = 10.0,
    backoff: float = 1.5,
    client: Client | AsyncClient | None = None,
    cache: Any = USE_DEFAULT,
    progress: bool | None = None,
) -> VideoJobs:
    """Generate videos from text prompts; jobs survive a kernel restart.

    ``data`` is a prompt (str), a list / Series, or a DataFrame with ``column=``; the result is
    always a :class:`VideoJobs` frame aligned with the input (``.jobs[i]`` is row i's
    :class:`VideoJob`); the jobs run concurrently. ``size`` is ``"WxH"`` and ``seconds`` the length; both are sent only when
    given (the server's defaults apply otherwise).

    Each job id is written to the cache the moment the job is created, keyed by prompt, model,
    size and seconds: rerunning the same call resumes polling those jobs (no new job is paid
    for) and serves videos already downloaded straight from the cache. A recorded job that
    turns out failed, expired or unknown to the server is created again. Identical prompts in
    one call share one job.

    ``wait=False`` returns right after the jobs are created (call ``.wait()`` later);
    otherwise the call polls (``poll`` s, x``backoff``, up to ``max_poll`` s; within the
    ``videos.retrieve`` rate limit) until every job is done or ``timeout`` seconds pass, and
    ``download=True`` fetches each MP4 as soon as it is done (results expire). ``folder=``
    also saves them there (large videos then render as links instead of being embedded).
    Failed jobs are rows/jobs with ``status="error"`` and their error; nothing is raised for
    them.

    >>> import deapi_ds
    >>> emu = deapi_ds.use_emulator()
    >>> jobs = await deapi_ds.agenerate_video(["a red kite", "it will fail"])  # doctest: +SKIP
    >>> jobs["status"].tolist()  # doctest: +SKIP
    ['ok', 'error']
    """
    _check_poll(poll, max_poll, backoff, timeout, "generate_video")
    series, _ = _prompts(data, column)
    aclient = resolve_client(client)
    size_text, seconds_text = _check_video_params(aclient, model, size, seconds)
    store = resolve_cache(cache)
    params = {"size": size_text, "seconds": seconds_text}

    # one job per distinct prompt; rows with the same prompt share it
    by_key: dict[str, VideoJob] = {}
    jobs: list[VideoJob] = []
    for value in series.tolist():
        if is_missing(value) or not str(value).strip():
            empty = VideoJob(prompt=None if is_missing(value) else value, model=model)
            empty.status = "empty"
            jobs.append(empty)
            continue
        key = make_key(TASK, model, params, value)
        if key not in by_key:
            by_key[key] = VideoJob(
                prompt=value,
                model=model,
                size=size_text,
                seconds=seconds_text,
                client=aclient,
                key=key,
                cache=store,
            )
        jobs.append(by_key[key])

    distinct = list(by_key.values())
    task = _VideoTask(
        distinct,
        aclient=aclient,
        model=model,
        size=size_text,
        seconds=seconds_text,
        wait=wait,
        options={
            "poll": poll,
            "max_poll": max_poll,
            "backoff": backoff,
            "timeout": timeout if wait else 0,
            "download": download and wait,
            "first_delay": poll,
        },
    )
    active = [job for job in distinct if job.status != "empty"]
    bar = Progress(100 * len(active), desc="videos", unit="%", show=progress, engine=aclient.engine)
    task.bar = bar
    try:
        await run_task(task, store=store, aclient=aclient, progress=bar)
    finally:
        bar.close(complete=False)
    if folder is not None:
        Path(folder).mkdir(parents=True, exist_ok=True)
        for job in distinct:
            if job.ok and job.video is not None:
                await job.adownload(folder)
    return VideoJobs(
        jobs,
        index=series.index,
        meta={"model": model, "size": size_text, "seconds": seconds_text},
    )


generate_video = syncify(agenerate_video)


async def aestimate_generate_video(
    data: Any,
    column: Any = None,
    *,
    model: str = DEFAULT_MODEL,
    size: str | None = None,
    seconds: float | str | None = None,
    client: Client | AsyncClient | None = None,
    cache: Any = USE_DEFAULT,
) -> Estimate:
    """What :func:`generate_video` would send (async twin of :func:`estimate_generate_video`)."""
    series, _ = _prompts(data, column)
    aclient = resolve_client(client)
    size_text, seconds_text = _check_video_params(aclient, model, size, seconds)
    store = resolve_cache(cache)
    params = {"size": size_text, "seconds": seconds_text}
    values = series.tolist()
    empty = sum(1 for v in values if is_missing(v) or not str(v).strip())
    keys = list(
        dict.fromkeys(
            make_key(TASK, model, params, v)
            for v in values
            if not (is_missing(v) or not str(v).strip())
        )
    )
    found = store.lookup(TASK, model, keys, columns=["video"]) if keys else None
    done = (
        sum(1 for v in found.column("video").to_pylist() if v)
        if found is not None and found.num_rows
        else 0
    )
    todo = len(keys) - done
    settings = aclient.settings
    profile = get_profile(settings)
    quote = profile.price(
        TASK,
        model,
        seconds=float(seconds_text) if seconds_text else 2,
        size=size_text or "256x256",
    )
    return Estimate(
        func="generate_video",
        model=model,
        rows=len(values),
        unique=len(keys),
        cached=done,
        empty=empty,
        errors=0,
        requests=todo,
        quantity=todo,
        unit="videos",
        cost_usd=None if quote is None else quote.usd * todo,
        price_note=None if quote is None else quote.note,
        rpm=settings.rpm_for(TASK) or profile.rpm_for(TASK, settings.effective_tier),
        concurrency=settings.max_concurrency,
        **quota_fields(settings, TASK),
    )


estimate_generate_video = syncify(aestimate_generate_video)
estimate_generate_video.__doc__ = """What :func:`generate_video` would send: an
:class:`~deapi_ds.Estimate` (video jobs to create, cost at the reference price, days of daily
quota). Recorded jobs and cached videos are not counted. Same arguments as
:func:`generate_video`; nothing is sent."""
