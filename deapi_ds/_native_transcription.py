"""Transcription through deAPI's native API: links, diarization, source metadata (issue 17).

:func:`deapi_ds.transcribe` sends a row here when it is a link (YouTube, X/Twitter incl.
Spaces, Twitch, Kick, TikTok) or when a native-only option is asked for (``diarize=True``,
``include_metadata=True``); other files stay on the OpenAI-compatible gateway.

On the task pipeline (:mod:`deapi_ds._pipeline`) a unit is one distinct source: a normalised
link, or a file's content, with the options that change the output. Its call is one native job
(:mod:`deapi_ds._jobs`): the job id is written to the cache the moment the job is accepted, so a
rerun after a kernel restart resumes polling instead of paying again; the result (inline text
or the JSON file at ``result_url``) is turned into the same record as a gateway transcription,
plus ``speaker`` on segments and words and the source's ``metadata``. Files over the native
upload limit (20 MB of audio) are split at silences and stitched, like on the gateway (speaker
labels then restart in every part: deAPI diarizes each upload on its own).

Also here (no I/O): quality flags of segments, the ``speakers`` table, turn taking, and the
talk-time / timeline figures used by :class:`~deapi_ds.TranscriptionResult`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import anyio
import numpy as np
import pandas as pd
import pyarrow as pa

from . import _media
from ._cache import make_key
from ._exceptions import InvalidParameterError, JobFailedError
from ._jobs import JobItem, JobRunner, NativeBackend
from ._native import (
    AsyncNativeClient,
    result_json,
    shared_native_client,
    source_platform,
    transcription_request,
)
from ._pipeline import Answer, Progress, Task, run_task
from .plotting import _new_figure

__all__ = [
    "FLAG_THRESHOLDS",
    "finish",
    "route",
    "NATIVE_MAX_UPLOAD_BYTES",
    "NATIVE_TASK",
    "is_link",
    "normalize_link",
    "quality_flags",
    "estimate_native",
    "merge_estimate",
    "run_native",
    "speakers_table",
    "turn_taking",
]

NATIVE_TASK = "v2.audio.transcriptions"
#: deAPI's native audio upload limit (deapi-reference.md §4.5).
NATIVE_MAX_UPLOAD_BYTES = 20 * 1024 * 1024
#: Whisper's own thresholds: a segment is "silence" above this no_speech_prob, "repetition"
#: above this compression ratio, "low_confidence" below this average log-probability.
FLAG_THRESHOLDS = {"no_speech_prob": 0.6, "compression_ratio": 2.4, "avg_logprob": -1.0}
_TRACKING = ("utm_", "si", "feature", "fbclid", "igshid", "pp", "ab_channel", "t")

_SEG = pa.struct(
    [("id", pa.int64()), ("start", pa.float64()), ("end", pa.float64()), ("text", pa.string()),
     ("avg_logprob", pa.float64()), ("no_speech_prob", pa.float64()),
     ("compression_ratio", pa.float64()), ("temperature", pa.float64()), ("speaker", pa.string())]
)  # fmt: skip
_WORD = pa.struct(
    [("segment", pa.int64()), ("word", pa.string()), ("start", pa.float64()),
     ("end", pa.float64()), ("probability", pa.float64()), ("speaker", pa.string())]
)  # fmt: skip
_SCHEMA = pa.schema(
    [("key", pa.string()), ("job_id", pa.string()), ("text", pa.string()),
     ("language", pa.string()), ("duration", pa.float64()), ("api_duration", pa.float64()),
     ("response_format", pa.string()), ("chunks", pa.int64()), ("segments", pa.list_(_SEG)),
     ("words", pa.list_(_WORD)), ("metadata", pa.string()), ("params", pa.string())]
)  # fmt: skip


# --- links -----------------------------------------------------------------------------------


def is_link(value: Any) -> bool:
    """True for a link the native endpoint transcribes (YouTube, X, Twitch, Kick, TikTok)."""
    return isinstance(value, str) and source_platform(value) is not None


def normalize_link(url: str) -> str:
    """The cache identity of a link: https, lower-case host without ``www.``/``m.``, no
    fragment, no tracking parameters (``utm_*``, ``si``, ``t``…), remaining parameters sorted.

    >>> normalize_link("http://WWW.YouTube.com/watch?v=abc&utm_source=x&t=30#frag")
    'https://youtube.com/watch?v=abc'
    """
    parts = urlsplit(url.strip())
    host = (parts.hostname or "").lower()
    for prefix in ("www.", "m."):
        host = host.removeprefix(prefix)
    query = sorted(
        (k, v)
        for k, v in parse_qsl(parts.query, keep_blank_values=False)
        if not k.lower().startswith(_TRACKING[0]) and k.lower() not in _TRACKING[1:]
    )
    path = parts.path.rstrip("/") or "/"
    return urlunsplit(("https", host, path, urlencode(query), ""))


# --- records -----------------------------------------------------------------------------------


def _num(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return None if out != out else out


def record_from_native(payload: Any, text: Any) -> dict[str, Any]:
    """A transcription record (the gateway's shape, plus speakers) from a native result.

    ``payload`` is the JSON result file (``segments`` with ``words``), or None when only the
    inline ``text`` came back (no timestamps asked).
    """
    segments: list[dict[str, Any]] = []
    words: list[dict[str, Any]] = []
    if isinstance(payload, Mapping):
        for i, seg in enumerate(payload.get("segments") or []):
            if not isinstance(seg, Mapping):
                continue
            speaker = seg.get("speaker")
            segments.append(
                {
                    "id": i,
                    "start": _num(seg.get("start")),
                    "end": _num(seg.get("end")),
                    "text": str(seg.get("text") or "").strip(),
                    "avg_logprob": _num(seg.get("avg_logprob")),
                    "no_speech_prob": _num(seg.get("no_speech_prob")),
                    "compression_ratio": _num(seg.get("compression_ratio")),
                    "temperature": _num(seg.get("temperature")),
                    "speaker": None if speaker is None else str(speaker),
                }
            )
            for w in seg.get("words") or []:
                if isinstance(w, Mapping):
                    wsp = w.get("speaker", speaker)
                    words.append(
                        {
                            "segment": i,
                            "word": str(w.get("word") or w.get("text") or "").strip(),
                            "start": _num(w.get("start")),
                            "end": _num(w.get("end")),
                            "probability": _num(w.get("score", w.get("probability"))),
                            "speaker": None if wsp is None else str(wsp),
                        }
                    )
        full = payload.get("text")
        if not isinstance(full, str):
            full = " ".join(s["text"] for s in segments if s["text"])
        language = payload.get("language")
        duration = _num(payload.get("duration"))
    else:
        full, language, duration = str(text or ""), None, None
    return {
        "text": full.strip(),
        "language": None if language is None else str(language).lower(),
        "api_duration": duration,
        "response_format": "verbose_json" if isinstance(payload, Mapping) else "text",
        "segments": segments,
        "words": words,
    }


def _table(rows: list[dict[str, Any]]) -> pa.Table:
    def seg(s: Mapping[str, Any]) -> dict[str, Any]:
        return {name: s.get(name) for name in _SEG.names}

    def word(w: Mapping[str, Any]) -> dict[str, Any]:
        return {name: w.get(name) for name in _WORD.names}

    out = []
    for r in rows:
        rec = r.get("record")
        out.append(
            {
                "key": r["key"],
                "job_id": r.get("job_id"),
                "text": None if rec is None else rec["text"],
                "language": None if rec is None else rec["language"],
                "duration": r.get("duration"),
                "api_duration": None if rec is None else rec["api_duration"],
                "response_format": None if rec is None else rec["response_format"],
                "chunks": r.get("chunks"),
                "segments": [] if rec is None else [seg(s) for s in rec["segments"]],
                "words": [] if rec is None else [word(w) for w in rec["words"]],
                "metadata": None
                if rec is None or rec.get("metadata") is None
                else json.dumps(rec["metadata"], sort_keys=True, default=str),
                "params": r.get("params"),
            }
        )
    return pa.Table.from_pylist(out, schema=_SCHEMA)


# --- the task ------------------------------------------------------------------------------------


class NativeTranscribeTask(Task):
    """Native transcription jobs on the pipeline (see the module docstring)."""

    name = NATIVE_TASK
    endpoint = "v2.audio.transcriptions"
    cache_columns = None
    unit_name = "file"

    def __init__(
        self,
        groups: list[list[Any]],
        *,
        func: str,
        client: AsyncNativeClient,
        runner: JobRunner,
        opts: dict[str, Any],
        params: dict[str, Any],
    ) -> None:
        self.groups = groups
        self.func = func
        self.client = client
        self.runner = runner
        self.opts = opts
        self.model = opts["native_model"]
        self.params = params
        self.params_text = json.dumps(params, sort_keys=True)
        self.resume: dict[int, str] = {}
        self.stats = {"jobs": 0, "resumed": 0, "resubmitted": 0}
        self.concurrency = 64  # jobs wait on the server; the engine keeps the rate limits

    def keys(self) -> list[str]:
        return [g[0].key for g in self.groups]

    def from_cache(self, ids: np.ndarray, table: pa.Table) -> np.ndarray:
        accepted = []
        for uid, row in zip(ids.tolist(), table.to_pylist(), strict=True):
            if row.get("text") is None:  # only the job id so far: resume polling it
                if row.get("job_id"):
                    self.resume[uid] = row["job_id"]
                continue
            rec = {
                "text": row["text"],
                "language": row.get("language"),
                "api_duration": row.get("api_duration"),
                "response_format": row.get("response_format"),
                "segments": [dict(s) for s in row.get("segments") or []],
                "words": [dict(w) for w in row.get("words") or []],
                "metadata": json.loads(row["metadata"]) if row.get("metadata") else None,
                "chunks": row.get("chunks"),
                "duration": row.get("duration"),
                "job_id": row.get("job_id"),
            }
            for item in self.groups[uid]:
                item.status, item.record = "cached", rec
                item.duration = item.duration or rec["duration"] or rec["api_duration"]
                item.chunks = rec["chunks"]
            accepted.append(uid)
        return np.asarray(accepted, dtype=np.int64)

    def _request(self, lead: Any, data: bytes | None, filename: str | None) -> Any:
        return _native_request(self.opts, lead, data, filename)

    async def _job(self, key: str, request: Any, job_id: str | None) -> Any:
        async def record_id(_: Any, new_id: str) -> None:
            self.stats["jobs"] += 1
            await self.writer.write(_table([{"key": key, "job_id": new_id}]))

        outcome = await self.runner.run(JobItem(key, request, job_id=job_id), on_accepted=record_id)
        if job_id is not None:
            self.stats["resumed"] += 1
        self.stats["resubmitted"] += max(0, outcome.submits - (0 if job_id else 1))
        if not outcome.ok:
            raise JobFailedError(
                outcome.error or "The transcription job failed.",
                job_id=outcome.job_id,
                code=outcome.error_code,
                reason=outcome.error_reason,
                retryable=outcome.retryable,
                refunded=outcome.refunded,
            )
        payload = result_json(outcome.final, outcome.content) if outcome.final else None
        rec = record_from_native(payload if isinstance(payload, Mapping) else None, outcome.result)
        rec["metadata"] = dict(outcome.metadata) if outcome.metadata else None
        rec["job_id"] = outcome.job_id
        return rec

    async def call(self, ids: np.ndarray) -> Answer:
        uid = int(ids[0])
        lead = self.groups[uid][0]
        if lead.url is not None:
            rec = await self._job(lead.key, self._request(lead, None, None), self.resume.get(uid))
            rec["chunks"] = 1
            return Answer(ids, [rec])
        data = await anyio.to_thread.run_sync(_read_item, lead)
        name = lead.name or lead.file
        chunks = await anyio.to_thread.run_sync(
            lambda: _media.prepare_upload(data, name=name, max_bytes=self.opts["native_max_bytes"])
        )
        for item in self.groups[uid]:
            item.chunks = len(chunks)
        stem = os.path.splitext(os.path.basename(name))[0] or "audio"
        if len(chunks) == 1:
            request = self._request(lead, chunks[0].data, chunks[0].filename(stem))
            rec = await self._job(lead.key, request, self.resume.get(uid))
            rec["chunks"] = 1
            return Answer(ids, [rec])
        parts: list[Any] = [None] * len(chunks)

        async def one(c: Any) -> None:
            ckey = make_key(NATIVE_TASK, self.model, {**self.params, "unit": "chunk"}, c.data)
            parts[c.index] = (
                c,
                await self._job(ckey, self._request(lead, c.data, c.filename(stem)), None),
            )

        async with anyio.create_task_group() as tg:
            for c in chunks:
                tg.start_soon(one, c)
        rec = _media.stitch_records(parts)
        rec["metadata"], rec["job_id"], rec["chunks"] = None, None, len(chunks)
        return Answer(ids, [rec])

    def accept(self, ids: np.ndarray, value: list[dict[str, Any]]) -> None:
        for uid, rec in zip(ids.tolist(), value, strict=True):
            for item in self.groups[uid]:
                item.status, item.record = "ok", rec
                if item.duration is None:
                    meta = rec.get("metadata") or {}
                    item.duration = _num(meta.get("duration")) or rec.get("api_duration")

    def to_cache(self, ids: np.ndarray, value: Any, keys: Sequence[str]) -> pa.Table:
        rows = []
        for uid, key, rec in zip(ids.tolist(), keys, value, strict=True):
            lead = self.groups[uid][0]
            rows.append(
                {
                    "key": key,
                    "job_id": rec.get("job_id"),
                    "record": rec,
                    "duration": lead.duration,
                    "chunks": rec.get("chunks"),
                    "params": self.params_text,
                }
            )
        return _table(rows)


def _native_request(o: dict[str, Any], lead: Any, data: bytes | None, filename: str | None) -> Any:
    """The job request for one row: its link, or ``data`` (the file or one chunk of it)."""
    common = {
        "model": o["native_model"],
        "timestamps": o["timestamps"],
        "diarize": o["diarize"],
        "language": o["language"],
    }
    if data is None:
        return transcription_request(
            source_url=lead.url, include_metadata=o["include_metadata"], **common
        )
    return transcription_request(source_file=data, filename=filename or "audio", **common)


def _read_item(item: Any) -> bytes:
    if item.data is not None:
        return item.data
    with open(item.path, "rb") as fh:
        return fh.read()


def native_options(
    *,
    model: str,
    language: str | None,
    word_timestamps: bool | None,
    diarize: bool,
    include_metadata: bool,
    response_format: str,
    func: str,
) -> dict[str, Any]:
    """The native job options for a transcribe() call; checked before anything is sent."""
    for name, value in (("diarize", diarize), ("include_metadata", include_metadata)):
        if not isinstance(value, bool):
            raise InvalidParameterError(
                f"The {name!r} parameter of {func}() must be True or False. Got {value!r}."
            )
    needs_ct2 = diarize or word_timestamps is True
    native_model = model
    if needs_ct2 and model == "WhisperLargeV3":
        native_model = (
            "WhisperLargeV3Ct2"  # the default model cannot diarize: pick the one that can
        )
    if response_format == "verbose_json" or diarize:
        timestamps = (
            "word" if (word_timestamps or (diarize and word_timestamps is None)) else "segment"
        )
    else:
        timestamps = None
    if timestamps == "word" and native_model != "WhisperLargeV3Ct2":
        raise InvalidParameterError(
            f"Word timestamps on deAPI's native API need model='WhisperLargeV3Ct2'; got "
            f"{model!r}. Pass model='WhisperLargeV3Ct2' or word_timestamps=False."
        )
    return {
        "native_model": native_model,
        "timestamps": timestamps,
        "diarize": diarize,
        "language": language,
        "include_metadata": include_metadata,
        "native_max_bytes": NATIVE_MAX_UPLOAD_BYTES,
    }


async def run_native(
    items: list[Any],
    *,
    func: str,
    opts: dict[str, Any],
    store: Any,
    settings: Any,
    show_progress: bool,
    client: AsyncNativeClient | None = None,
) -> dict[str, Any]:
    """Transcribe ``items`` (transcription rows) through native jobs; fills their status and
    record in place, and returns counts (jobs submitted, resumed, resubmitted)."""
    native = client or shared_native_client(settings)
    params = {
        "timestamps": opts["timestamps"],
        "diarize": opts["diarize"],
        "language": opts["language"],
        "include_metadata": opts["include_metadata"],
    }
    model = opts["native_model"]
    groups: dict[str, list[Any]] = {}
    for item in items:
        if item.status != "pending":
            continue
        if item.url is not None:
            item.key = make_key(NATIVE_TASK, model, params, normalize_link(item.url))
        elif item.key is None:
            try:
                data = await anyio.to_thread.run_sync(_read_item, item)
            except OSError as exc:
                item.fail_read(exc)
                continue
            item.size = len(data)
            item.key = make_key(NATIVE_TASK, model, params, data)
        groups.setdefault(item.key, []).append(item)
    runner = JobRunner(NativeBackend(native))
    task = NativeTranscribeTask(
        list(groups.values()), func=func, client=native, runner=runner, opts=opts, params=params
    )
    bar = Progress(
        len(groups), desc=f"transcribe {model} (native jobs)", unit="file", show=show_progress,
        engine=native.engine,
    )  # fmt: skip
    try:
        outcome = await run_task(task, store=store, aclient=native, progress=bar)
    finally:
        bar.close(complete=False)
    for uid, exc in outcome.errors.items():
        for item in task.groups[uid]:
            item.fail(exc)
            if isinstance(exc, JobFailedError):
                item.error_code, item.error_reason = exc.code, exc.reason
                item.retryable, item.refunded = exc.retryable, exc.refunded
    return {**task.stats, "native_model": model}


# --- analysis (no I/O) ----------------------------------------------------------------------------


def quality_flags(segments: pd.DataFrame) -> pd.Series:
    """One flag per segment from the quality fields the server sent: ``"silence"``
    (no_speech_prob > 0.6), ``"repetition"`` (compression_ratio > 2.4) or ``"low_confidence"``
    (avg_logprob < -1.0), in that order of precedence; <NA> when none applies or the fields
    are missing."""
    flag = pd.Series(pd.NA, index=segments.index, dtype="string")
    checks = [
        ("low_confidence", "avg_logprob", lambda s: s < FLAG_THRESHOLDS["avg_logprob"]),
        ("repetition", "compression_ratio", lambda s: s > FLAG_THRESHOLDS["compression_ratio"]),
        ("silence", "no_speech_prob", lambda s: s > FLAG_THRESHOLDS["no_speech_prob"]),
    ]
    for name, column, test in checks:  # later checks win: silence > repetition > low confidence
        if column in segments.columns:
            hit = test(segments[column].astype("Float64")).fillna(False).to_numpy(dtype=bool)
            flag[hit] = name
    return flag


def _turns(segments: pd.DataFrame) -> pd.DataFrame:
    """Consecutive segments of one speaker merged into turns (file, speaker, start, end, text)."""
    rows = []
    segs = segments.dropna(subset=["speaker", "start", "end"]).sort_values(["file", "start"])
    for fid, group in segs.groupby("file", sort=False):
        current: dict[str, Any] | None = None
        for seg in group.itertuples(index=False):
            if current is not None and current["speaker"] == seg.speaker:
                current["end"] = max(current["end"], float(seg.end))
                current["text"] += " " + str(seg.text)
                continue
            if current is not None:
                rows.append(current)
            current = {"file": fid, "speaker": seg.speaker, "start": float(seg.start),
                       "end": float(seg.end), "text": str(seg.text)}  # fmt: skip
        if current is not None:
            rows.append(current)
    return pd.DataFrame(rows, columns=["file", "speaker", "start", "end", "text"])


def speakers_table(segments: pd.DataFrame, words: pd.DataFrame) -> pd.DataFrame:
    """Per file and speaker: talk_time (s), share (of the file's talk time), turns, words,
    words_per_minute and longest_monologue (s, the longest uninterrupted turn)."""
    columns = ["file", "speaker", "talk_time", "share", "turns", "words", "words_per_minute",
               "longest_monologue"]  # fmt: skip
    if "speaker" not in segments.columns or segments["speaker"].isna().all():
        return pd.DataFrame({c: pd.Series(dtype="object") for c in columns})
    turns = _turns(segments)
    turns["length"] = turns["end"] - turns["start"]
    segs = segments.dropna(subset=["speaker"])
    talk = (
        (segs["end"] - segs["start"])
        .astype("Float64")
        .groupby([segs["file"], segs["speaker"]])
        .sum()
    )
    if "speaker" in words.columns and words["speaker"].notna().any():
        n_words = words.dropna(subset=["speaker"]).groupby(["file", "speaker"]).size()
    else:
        counts = segs["text"].fillna("").str.split().str.len()
        n_words = counts.groupby([segs["file"], segs["speaker"]]).sum()
    stats = turns.groupby(["file", "speaker"]).agg(
        turns=("length", "size"), longest=("length", "max")
    )
    out = pd.DataFrame({"talk_time": talk}).join(stats, how="left")
    out["words"] = n_words.reindex(out.index).fillna(0)
    out = out.reset_index()
    total = out.groupby("file")["talk_time"].transform("sum")
    out["share"] = out["talk_time"] / total
    out["words_per_minute"] = out["words"] / out["talk_time"] * 60
    out = out.rename(columns={"longest": "longest_monologue"})
    return pd.DataFrame(
        {
            "file": pd.array(out["file"], dtype="string"),
            "speaker": pd.array(out["speaker"], dtype="string"),
            "talk_time": pd.array(out["talk_time"], dtype="Float64"),
            "share": pd.array(out["share"], dtype="Float64"),
            "turns": pd.array(out["turns"], dtype="Int64"),
            "words": pd.array(out["words"], dtype="Int64"),
            "words_per_minute": pd.array(out["words_per_minute"], dtype="Float64"),
            "longest_monologue": pd.array(out["longest_monologue"], dtype="Float64"),
        }
    )


def turn_taking(segments: pd.DataFrame, *, overlap_tolerance: float = 0.0) -> pd.DataFrame:
    """Who follows whom: per file, ``speaker`` → ``next_speaker`` with the number of
    ``handovers``, the median ``gap`` (s, negative when the next speaker starts before the
    previous turn ends) and the ``interruptions`` (handovers with an overlap larger than
    ``overlap_tolerance``)."""
    turns = _turns(segments)
    rows = []
    for fid, group in turns.groupby("file", sort=False):
        group = group.reset_index(drop=True)
        for a, b in zip(group.iloc[:-1].itertuples(), group.iloc[1:].itertuples(), strict=True):
            rows.append((fid, a.speaker, b.speaker, b.start - a.end))
    frame = pd.DataFrame(rows, columns=["file", "speaker", "next_speaker", "gap"])
    if frame.empty:
        return pd.DataFrame(
            {c: pd.Series(dtype="object") for c in
             ["file", "speaker", "next_speaker", "handovers", "median_gap", "interruptions"]}
        )  # fmt: skip
    frame["interrupt"] = frame["gap"] < -overlap_tolerance
    out = (
        frame.groupby(["file", "speaker", "next_speaker"], sort=False)
        .agg(
            handovers=("gap", "size"),
            median_gap=("gap", "median"),
            interruptions=("interrupt", "sum"),
        )
        .reset_index()
    )
    return out.astype({"handovers": "Int64", "interruptions": "Int64", "median_gap": "Float64"})


def talk_time_figure(table: pd.DataFrame, *, ax: Any = None) -> Any:
    """A horizontal bar chart of talk time per speaker (one group per file); returns the Figure
    (or the Axes when ``ax`` is given)."""
    own = ax is None
    if own:  # through pyplot, shown once in a notebook (plotting's figure class)
        ax = _new_figure(7, 0.45 * max(2, len(table)) + 1).add_subplot()
    labels = [f"{f} · {s}" if table["file"].nunique() > 1 else str(s)
              for f, s in zip(table["file"], table["speaker"], strict=True)]  # fmt: skip
    ax.barh(labels, table["talk_time"].astype(float), color="#4c72b0")
    for y, (t, share) in enumerate(zip(table["talk_time"], table["share"], strict=True)):
        ax.text(float(t), y, f" {float(t):.0f} s ({float(share):.0%})", va="center", fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("talk time (s)")
    ax.set_title("Talk time per speaker")
    return ax.figure if own else ax


def timeline_figure(segments: pd.DataFrame, file: str, *, ax: Any = None) -> Any:
    """Who speaks when in one file: one row per speaker, a bar per segment; returns the
    Figure (or the Axes when ``ax`` is given)."""
    import matplotlib  # lazy: matplotlib

    segs = segments[segments["file"].eq(file).to_numpy()].dropna(subset=["speaker", "start", "end"])
    speakers = sorted(segs["speaker"].unique().tolist())
    own = ax is None
    if own:
        ax = _new_figure(9, 0.5 * max(2, len(speakers)) + 1).add_subplot()
    colours = matplotlib.colormaps["tab10"]
    for row, speaker in enumerate(speakers):
        mine = segs[segs["speaker"].eq(speaker).to_numpy()]
        spans = [
            (float(s), float(e) - float(s)) for s, e in zip(mine["start"], mine["end"], strict=True)
        ]
        ax.broken_barh(spans, (row - 0.35, 0.7), color=colours(row % 10))
    ax.set_yticks(range(len(speakers)), speakers)
    ax.set_xlabel("time (s)")
    ax.set_title(f"Speakers over time: {file}")
    return ax.figure if own else ax


# --- the hooks transcribe() calls -------------------------------------------------------------------

_APIS = ("auto", "gateway", "native")


def route(
    items: list[Any],
    *,
    api: str,
    diarize: bool,
    include_metadata: bool,
    func: str,
    model: str,
    language: str | None,
    word_timestamps: bool | None,
    response_format: str,
) -> dict[str, Any] | None:
    """Which rows go to the native API (None: none), with the checked job options.

    Links always do; files do when ``diarize=True`` or ``api="native"``. Rows that cannot
    succeed (a TikTok link with a model other than WhisperLargeV3Ct2) become error rows here,
    before anything is sent.
    """
    if api not in _APIS:
        raise InvalidParameterError(
            f"The 'api' parameter of {func}() must be one of {_APIS}. Got {api!r}."
        )
    links = [it for it in items if it.url is not None and it.status == "pending"]
    if api == "gateway":
        asked = [name for name, on in (("diarize=True", diarize),
                                        ("include_metadata=True", include_metadata)) if on]  # fmt: skip
        if links:
            asked.append(f"links such as {links[0].url!r}")
        if asked:
            raise InvalidParameterError(
                f"{func}(): {' and '.join(asked)} need deAPI's native API, but api='gateway' sends "
                "everything to the OpenAI-compatible endpoint, which has no diarization, "
                "metadata or link sources. Use api='auto' (the default: only those rows go "
                "native) or api='native'; the native URL is the native_base_url setting "
                "(DEAPI_NATIVE_BASE_URL)."
            )
        return None
    files = [it for it in items if it.url is None and it.status == "pending"]
    chosen = links + (files if (diarize or api == "native") else [])
    if not chosen:
        return None
    opts = native_options(
        model=model, language=language, word_timestamps=word_timestamps, diarize=diarize,
        include_metadata=include_metadata, response_format=response_format, func=func,
    )  # fmt: skip
    for it in chosen:
        if it.url is not None and source_platform(it.url) == "tiktok":
            if opts["native_model"] != "WhisperLargeV3Ct2":
                it.fail(
                    f"{it.url}: TikTok links can only be transcribed with WhisperLargeV3Ct2 "
                    f"(deAPI refuses {opts['native_model']}); pass model='WhisperLargeV3Ct2'.",
                    error_type="InvalidInput",
                )
    return {"items": [it for it in chosen if it.status == "pending"], "opts": opts}


def finish(result: Any, items: list[Any]) -> None:
    """After assembly: ``no_speech`` files and the native columns (platform, metadata, job
    failure details) of ``files``."""
    files = result.frame
    status = files["status"].astype(object).to_numpy()
    text = files["text"].astype(object).to_numpy()
    empty = np.array(
        [
            s in ("ok", "cached") and (t is None or t is pd.NA or not str(t).strip())
            for s, t in zip(status, text, strict=True)
        ]  # fmt: skip
    )
    if empty.any():
        files.loc[empty, "status"] = "no_speech"
    native = [it for it in items if it.url is not None or it.error_code or _native_record(it)]
    if not native:
        return
    files["platform"] = pd.array(
        [source_platform(it.url) if it.url else None for it in items], dtype="string"
    )
    metas = [
        (it.record or {}).get("metadata") if it.status in ("ok", "cached") else None for it in items
    ]
    keys: dict[str, None] = {}
    for meta in metas:
        for k in meta or {}:
            keys.setdefault(k, None)
    for k in keys:
        column = k if k not in files.columns else f"source_{k}"
        values = [(m or {}).get(k) for m in metas]
        files[column] = pd.Series(values, index=files.index, dtype=object).convert_dtypes()
    files["error_code"] = pd.array([it.error_code for it in items], dtype="string")
    files["error_reason"] = pd.array([it.error_reason for it in items], dtype="string")
    files["refunded"] = pd.array(
        [it.refunded if it.error_code else None for it in items], dtype="boolean"
    )


def _native_record(item: Any) -> bool:
    rec = item.record or {}
    return "job_id" in rec


# --- estimates and quotes -----------------------------------------------------------------------

#: USD per TikTok video by length band (seconds, price), deapi-reference.md §5.
TIKTOK_BANDS = ((60, 0.015), (120, 0.0225), (180, 0.030), (300, 0.045), (600, 0.0825))
TIKTOK_MAX = 0.105
METADATA_FEE = 0.005


def _row_cost(profile: Any, model: str, opts: dict[str, Any], item: Any) -> float | None:
    """Reference price of one native row in USD (None when its duration is unknown)."""
    link = item.url is not None
    fee = METADATA_FEE if (link and opts["include_metadata"]) else 0.0
    if item.duration is None:
        return None
    if link and source_platform(item.url) == "tiktok":
        band = next((p for limit, p in TIKTOK_BANDS if item.duration <= limit), TIKTOK_MAX)
        return band + fee
    price = profile.price(
        "audio.transcriptions", model, seconds=item.duration, diarize=opts["diarize"],
        word_timestamps=opts["timestamps"] == "word",
    )  # fmt: skip
    return None if price is None else price.usd + fee


async def estimate_native(
    items: list[Any], *, opts: dict[str, Any], settings: Any, quote: bool
) -> dict[str, Any]:
    """What the native rows would cost: files probed locally, links unknown (their duration
    is only known once fetched); ``quote=True`` asks deAPI's price endpoint for every row."""
    from ._profiles import get_profile

    profile = get_profile(settings)
    model = opts["native_model"]
    for item in items:
        if item.url is None and item.duration is None:
            try:
                data = await anyio.to_thread.run_sync(_read_item, item)
                info = await anyio.to_thread.run_sync(
                    lambda d=data, n=item.name or item.file: _media.probe(d, name=n)
                )
                item.duration, item.size = float(info.duration), len(data)
            except (OSError, ValueError) as exc:
                item.fail(exc)
    costs = [_row_cost(profile, model, opts, it) for it in items if it.status == "pending"]
    quotes: list[float] = []
    if quote:
        client = shared_native_client(settings)
        for item in items:
            if item.status != "pending":
                continue
            data = None if item.url is not None else _read_item(item)
            request = _native_request(opts, item, data, item.name or item.file)
            quotes.append(await client.price(request))
    known = [c for c in costs if c is not None]
    return {
        "rows": len(items),
        "requests": sum(1 for it in items if it.status == "pending"),
        "seconds": float(sum(it.duration or 0.0 for it in items if it.status == "pending")),
        "cost_usd": float(sum(known)),
        "unknown_duration": sum(1 for c in costs if c is None),
        "quote_usd": float(sum(quotes)) if quote else None,
        "model": model,
    }


def merge_estimate(gateway: Any, native: dict[str, Any]) -> Any:
    """The gateway rows' Estimate with the native rows added (requests, seconds, cost)."""
    import dataclasses

    cost = gateway.cost_usd
    if native["cost_usd"] or cost is None:
        cost = (cost or 0.0) + native["cost_usd"]
    note = gateway.price_note or "reference prices, not a quote"
    if native["unknown_duration"]:
        note += (
            f"; {native['unknown_duration']} link(s) of unknown duration are not in the cost "
            "(quote=True asks deAPI)"
        )
    seconds = gateway.quantity + native["seconds"]
    extra = {**gateway.extra, "hours": seconds / 3600, "native": native,
             "unknown_duration": native["unknown_duration"], "quote_usd": native["quote_usd"]}  # fmt: skip
    return dataclasses.replace(
        gateway,
        requests=gateway.requests + native["requests"],
        quantity=round(seconds, 1),
        cost_usd=cost,
        price_note=note,
        extra=extra,
    )
