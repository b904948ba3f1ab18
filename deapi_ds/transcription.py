"""Transcription: a folder (or a list) of audio and video files into tidy DataFrames.

>>> import deapi_ds
>>> emu = deapi_ds.use_emulator()
>>> res = deapi_ds.transcribe_folder("interviews/")          # doctest: +SKIP
>>> res.files[["file", "duration", "language", "status"]]    # doctest: +SKIP
>>> res.segments.head()      # file, segment, start, end, text, ...    # doctest: +SKIP
>>> res.words.head()         # file, segment, word, start, end         # doctest: +SKIP
>>> res.to_srt("ann.mp3", path="ann.srt")                   # doctest: +SKIP

How a call works:

1. Every input becomes a row of ``files``: paths are read and hashed, bytes are hashed; empty,
   unreadable and missing inputs become ``error``/``skipped`` rows at once.
2. Each file's cache key is (model, language, response_format, word_timestamps, the file's
   bytes): a renamed or moved file is a cache hit, and identical files in one run are sent once.
3. Missing files are probed locally (duration, audio stream; non-audio and corrupt files become
   error rows), then reduced to what must be uploaded by :func:`deapi_ds._media.prepare_upload`:
   a video becomes its audio track when that is smaller, and anything still over the upload
   limit (the provider profile's: on deAPI 20 MB audio / 50 MB video today, 80 MB with
   ``limits="seed"``; ``max_upload_mb=`` or the ``max_upload_mb`` setting override it) is
   split into chunks. Chunks are sent concurrently (the engine keeps the rate limit), each cached as it returns, and stitched back with timestamps offset to the
   original file and the overlap de-duplicated.
4. The progress bar counts audio seconds (with an ETA); cached files count at once.

Files whose extension is not an accepted audio/video extension are not listed by
:func:`transcribe_folder` (their count is ``result.meta["ignored"]``); hidden files and folders
are skipped; symbolic links are followed, but each real folder is walked once, so link loops
cannot hang the walk. A folder that cannot be listed (no permission) is named in a warning and
in ``result.meta["unlisted"]``.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import re
import warnings
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from html import escape
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import pandas as pd
import pyarrow as pa

from . import _files, _media
from . import _native_transcription as _nt
from ._cache import USE_DEFAULT, make_key, resolve_cache
from ._client import AsyncClient, Client, Transcription
from ._common import is_missing
from ._config import get_config
from ._engine import RetryPolicy
from ._estimate import Estimate
from ._exceptions import (
    CacheError,
    InvalidParameterError,
    ResponseValidationError,
)
from ._files import walk_folder as _walk
from ._pipeline import (
    FATAL_ERRORS,
    Answer,
    Progress,
    Task,
    as_series,
    check_outcome,
    quota_fields,
    run_task,
)
from ._profiles import get_profile
from ._result import STATUS_DTYPE, ResultFrame
from ._tasks import resolve_client, syncify

__all__ = [
    "TranscriptionResult",
    "aestimate_transcribe",
    "aestimate_transcribe_folder",
    "atranscribe",
    "atranscribe_folder",
    "estimate_transcribe",
    "estimate_transcribe_folder",
    "transcribe",
    "transcribe_folder",
]

TASK = "audio.transcriptions"
_FORMATS = ("verbose_json", "json", "text")

FILE_COLUMNS = (
    "file", "path", "name", "size", "duration", "language", "text", "n_segments", "status",
    "error_type", "error", "retryable", "model", "cached", "chunks",
)  # fmt: skip
#: ``keep_audio=True`` keeps files up to this size in memory; bigger ones are re-read to play.
KEEP_AUDIO_MAX_BYTES = 25 * 1024 * 1024
SEGMENT_QUALITY = ("avg_logprob", "no_speech_prob", "compression_ratio", "temperature")

# --- what the cache stores (structured columns, readable with pd.read_parquet) ---------------
_SEGMENT_TYPE = pa.struct(
    [
        ("id", pa.int64()),
        ("start", pa.float64()),
        ("end", pa.float64()),
        ("text", pa.string()),
        ("avg_logprob", pa.float64()),
        ("no_speech_prob", pa.float64()),
        ("compression_ratio", pa.float64()),
        ("temperature", pa.float64()),
        ("speaker", pa.string()),
    ]
)
_WORD_TYPE = pa.struct(
    [
        ("segment", pa.int64()),
        ("word", pa.string()),
        ("start", pa.float64()),
        ("end", pa.float64()),
        ("probability", pa.float64()),
    ]
)
_CACHE_SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("unit", pa.string()),  # "file" or "chunk"
        ("text", pa.string()),
        ("language", pa.string()),
        ("duration", pa.float64()),  # measured locally (file) or the chunk's length
        ("api_duration", pa.float64()),
        ("response_format", pa.string()),
        ("chunks", pa.int64()),
        ("segments", pa.list_(_SEGMENT_TYPE)),
        ("words", pa.list_(_WORD_TYPE)),
        ("params", pa.string()),
    ]
)

# Whisper's language names (as OpenAI's verbose_json reports them) -> ISO 639-1 codes.
_LANGUAGE_CODES = {
    "english": "en", "chinese": "zh", "german": "de", "spanish": "es", "russian": "ru",
    "korean": "ko", "french": "fr", "japanese": "ja", "portuguese": "pt", "turkish": "tr",
    "polish": "pl", "catalan": "ca", "dutch": "nl", "arabic": "ar", "swedish": "sv",
    "italian": "it", "indonesian": "id", "hindi": "hi", "finnish": "fi", "vietnamese": "vi",
    "hebrew": "he", "ukrainian": "uk", "greek": "el", "malay": "ms", "czech": "cs",
    "romanian": "ro", "danish": "da", "hungarian": "hu", "tamil": "ta", "norwegian": "no",
    "thai": "th", "urdu": "ur", "croatian": "hr", "bulgarian": "bg", "lithuanian": "lt",
    "latin": "la", "maori": "mi", "malayalam": "ml", "welsh": "cy", "slovak": "sk",
    "telugu": "te", "persian": "fa", "latvian": "lv", "bengali": "bn", "serbian": "sr",
    "azerbaijani": "az", "slovenian": "sl", "kannada": "kn", "estonian": "et",
    "macedonian": "mk", "breton": "br", "basque": "eu", "icelandic": "is", "armenian": "hy",
    "nepali": "ne", "mongolian": "mn", "bosnian": "bs", "kazakh": "kk", "albanian": "sq",
    "swahili": "sw", "galician": "gl", "marathi": "mr", "punjabi": "pa", "sinhala": "si",
    "khmer": "km", "shona": "sn", "yoruba": "yo", "somali": "so", "afrikaans": "af",
    "occitan": "oc", "georgian": "ka", "belarusian": "be", "tajik": "tg", "sindhi": "sd",
    "gujarati": "gu", "amharic": "am", "yiddish": "yi", "lao": "lo", "uzbek": "uz",
    "faroese": "fo", "haitian creole": "ht", "pashto": "ps", "turkmen": "tk", "nynorsk": "nn",
    "maltese": "mt", "sanskrit": "sa", "luxembourgish": "lb", "myanmar": "my", "tibetan": "bo",
    "tagalog": "tl", "malagasy": "mg", "assamese": "as", "tatar": "tt", "hawaiian": "haw",
    "lingala": "ln", "hausa": "ha", "bashkir": "ba", "javanese": "jw", "sundanese": "su",
    "cantonese": "yue", "burmese": "my", "valencian": "ca", "flemish": "nl", "haitian": "ht",
    "letzeburgesch": "lb", "pushto": "ps", "panjabi": "pa", "moldavian": "ro", "moldovan": "ro",
    "sinhalese": "si", "castilian": "es", "mandarin": "zh", "filipino": "tl",
}  # fmt: skip
_ISO_CODES = frozenset(_LANGUAGE_CODES.values())
_LANGUAGE_RE = re.compile(r"^[A-Za-z]{2,3}$")
# container names reported by probe() -> an extension the upload may carry
_CONTAINER_EXT = {"matroska": "mkv", "mov": "mov", "adts": "aac", "mpeg": "mpeg"}


def normalize_language(value: Any) -> str | None:
    """An ISO 639-1 code for what the API reported (``"english"`` -> ``"en"``), else as given.

    >>> normalize_language("English"), normalize_language("de"), normalize_language(None)
    ('en', 'de', None)
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = str(value).strip()
    if not text:
        return None
    low = text.lower().replace("_", "-")
    if low in _ISO_CODES:
        return low
    if low in _LANGUAGE_CODES:
        return _LANGUAGE_CODES[low]
    base = low.split("-")[0]
    if len(base) in (2, 3) and base.isalpha() and "-" in low:
        return base  # "en-US" -> "en"
    return text


# --------------------------------------------------------------------------------------------
# inputs


@dataclasses.dataclass
class _Item:
    """One row of ``files``."""

    pos: int
    file: str
    path: str | None = None
    data: bytes | None = None
    name: str | None = None
    size: int | None = None
    key: str | None = None
    duration: float | None = None
    status: str = "pending"
    error_type: str | None = None
    error: str | None = None
    retryable: bool | None = None
    record: dict[str, Any] | None = None
    chunks: int | None = None
    info: _media.MediaInfo | None = None  # the probe's result, reused by prepare_upload
    url: str | None = None  # a link (YouTube, X, Twitch, Kick, TikTok): native API
    error_code: str | None = None  # native job failures: deAPI's error_code, error_reason
    error_reason: str | None = None
    refunded: bool | None = None

    def fail(
        self, exc: BaseException | str, *, error_type: str | None = None, retryable: bool = False
    ) -> None:
        self.status = "error"
        if isinstance(exc, BaseException):
            self.error_type = error_type or type(exc).__name__
            self.error = _message(exc)
            self.retryable = _retryable(exc)
        else:
            self.error_type = error_type or "Error"
            self.error = exc
            self.retryable = retryable

    def fail_read(self, exc: OSError) -> None:
        """The file cannot be read (missing, deleted since listed, no permission, a folder)."""
        self.fail(exc, error_type=type(exc).__name__)
        self.error = f"{self.file}: cannot read the file ({exc.strerror or exc})."
        self.retryable = False


def _message(exc: BaseException) -> str:
    text = str(exc).strip()
    return text or type(exc).__name__


def _retryable(exc: BaseException) -> bool:
    """Could running the same call again help? (server-side and network trouble: yes)."""
    if isinstance(exc, ResponseValidationError):
        return True
    return RetryPolicy.is_retryable(exc)


def _as_series(data: Any, column: Any, func: str) -> pd.Series:
    """The one ``as_series``, after refusing a folder (that is transcribe_folder's job)."""
    if isinstance(data, str | os.PathLike) and column is None and os.path.isdir(data):
        raise InvalidParameterError(
            f"{func}() got the folder {os.fspath(data)!r}; use "
            f"transcribe_folder({os.fspath(data)!r}) to transcribe the files in it."
        )
    return as_series(data, column, func=func, what="paths or bytes")


def _items_from_series(series: pd.Series) -> list[_Item]:
    items: list[_Item] = []
    seen: Counter[str] = Counter()
    for pos, (label, value) in enumerate(zip(series.index, series.tolist(), strict=True)):
        if _nt.is_link(value):
            url = value.strip()
            item = _Item(pos, url, name=url, url=url)
        elif isinstance(value, str | os.PathLike) and not is_missing(value):
            path = os.fspath(value)
            path = path if isinstance(path, str) else os.fsdecode(path)
            file = _files.display_name(path)  # a name that is not UTF-8 stays storable
            item = _Item(pos, file, path=path, name=os.path.basename(file) or file)
        elif isinstance(value, bytes | bytearray | memoryview):
            file = f"bytes[{label}]"
            item = _Item(pos, file, data=bytes(value), name=file, size=len(value))
        else:
            item = _Item(pos, f"row[{label}]")
            if is_missing(value):
                item.status = "skipped"
                item.error_type = "MissingValue"
                item.error = f"Row {label!r} has no file (the value is missing)."
            else:
                item.fail(
                    f"Row {label!r} is a {type(value).__name__}, not a path or bytes: {value!r:.80}.",
                    error_type="InvalidInput",
                )
        seen[item.file] += 1
        if seen[item.file] > 1:  # keep `file` unique: it is what segments and words join on
            item.file = f"{item.file} #{seen[item.file]}"
        items.append(item)
    return items


# --------------------------------------------------------------------------------------------
# turning API answers into records (no I/O)


def _num(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def _int(value: Any) -> int | None:
    number = _num(value)
    return None if number is None else int(number)


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


def _segment_of(
    start: float | None, end: float | None, segments: Sequence[Mapping[str, Any]]
) -> int | None:
    if start is None and end is None:
        return None
    t = start if end is None else end if start is None else (start + end) / 2
    for seg in segments:
        s, e = seg.get("start"), seg.get("end")
        if s is not None and e is not None and s - 1e-6 <= t <= e + 1e-6:
            return int(seg["id"])
    return None


def _record_from_response(tr: Transcription, response_format: str) -> dict[str, Any]:
    """A normalized record: segments numbered 0..n-1 and words (each with its segment or None).

    Missing timestamps stay None. Words nested in segments keep their segment; top-level words
    are assigned by time, and a word without times gets its neighbours' segment when both
    neighbours agree (else None).
    """
    raw_segments = tr.segments if isinstance(tr.segments, list) else []
    segments: list[dict[str, Any]] = []
    words: list[dict[str, Any]] = []
    nested = False
    for i, seg in enumerate(raw_segments):
        if not isinstance(seg, Mapping):
            raise ResponseValidationError(f"Segment {i} of the transcription is not an object.")
        out = {
            "id": i,
            "start": _num(seg.get("start")),
            "end": _num(seg.get("end")),
            "text": str(seg.get("text") or "").strip(),
            "speaker": _str(seg.get("speaker")),
        }
        for name in SEGMENT_QUALITY:
            out[name] = _num(seg.get(name))
        segments.append(out)
        if isinstance(seg.get("words"), list):
            nested = True
            for w in seg["words"]:
                if isinstance(w, Mapping):
                    words.append(_word(w, i))
    if not nested:
        top = [w for w in (tr.words or []) if isinstance(w, Mapping)]
        assigned = [
            _word(w, _segment_of(_num(w.get("start")), _num(w.get("end")), segments)) for w in top
        ]
        for j, w in enumerate(assigned):
            if w["segment"] is None and w["start"] is None and w["end"] is None:
                before = next(
                    (x["segment"] for x in reversed(assigned[:j]) if x["segment"] is not None), None
                )
                after = next(
                    (x["segment"] for x in assigned[j + 1 :] if x["segment"] is not None), None
                )
                if before is not None and (after is None or after == before):
                    w["segment"] = before
        words = assigned
    text = tr.text if isinstance(tr.text, str) else str(tr.text or "")
    if response_format == "text":
        text = text.strip()
    return {
        "text": text.strip(),
        "language": normalize_language(tr.language),
        "api_duration": _num(tr.duration),
        "response_format": response_format,
        "segments": segments,
        "words": words,
    }


def _word(w: Mapping[str, Any], segment: int | None) -> dict[str, Any]:
    return {
        "segment": segment,
        "word": str(w.get("word") if w.get("word") is not None else w.get("text") or "").strip(),
        "start": _num(w.get("start")),
        "end": _num(w.get("end")),
        "probability": _num(w.get("probability")),
    }


def _cache_table(
    rows: Sequence[tuple[str, str, dict[str, Any], float | None, int]], params: str
) -> pa.Table:
    def seg(s: Mapping[str, Any]) -> dict[str, Any]:
        return {name: s.get(name) for name in _SEGMENT_TYPE.names}

    def word(w: Mapping[str, Any]) -> dict[str, Any]:
        return {name: w.get(name) for name in _WORD_TYPE.names}

    return pa.Table.from_pylist(
        [
            {
                "key": key,
                "unit": unit,
                "text": rec["text"],
                "language": rec["language"],
                "duration": duration,
                "api_duration": rec["api_duration"],
                "response_format": rec["response_format"],
                "chunks": chunks,
                "segments": [seg(s) for s in rec["segments"]],
                "words": [word(w) for w in rec["words"]],
                "params": params,
            }
            for key, unit, rec, duration, chunks in rows
        ],
        schema=_CACHE_SCHEMA,
    )


def _records_from_cache(table: pa.Table) -> dict[str, dict[str, Any]]:
    out = {}
    for row in table.to_pylist():
        out[row["key"]] = {
            "text": row.get("text") or "",
            "language": row.get("language"),
            "api_duration": row.get("api_duration"),
            "response_format": row.get("response_format"),
            "segments": [dict(s) for s in row.get("segments") or []],
            "words": [dict(w) for w in row.get("words") or []],
            "duration": row.get("duration"),
            "chunks": row.get("chunks"),
        }
    return out


# --------------------------------------------------------------------------------------------
# the task


def _resolve_options(
    aclient: AsyncClient,
    client: Any,
    *,
    model: Any,
    language: Any,
    response_format: Any,
    word_timestamps: Any,
    max_upload_mb: Any,
    concurrency: Any,
    func: str,
) -> dict[str, Any]:
    if not isinstance(model, str) or not model:
        raise InvalidParameterError(
            f"The 'model' parameter of {func}() must be a model id such as 'WhisperLargeV3'. Got {model!r}."
        )
    settings = aclient.settings if client is not None else get_config()
    profile = get_profile(settings)
    mp = profile.model(model)
    if mp is not None:
        profile.require_task(model, "audio2text", func=func)
    if response_format not in _FORMATS:
        hint = (
            " For subtitles, transcribe with 'verbose_json' and call .to_srt() / .to_vtt()."
            if response_format in ("srt", "vtt")
            else ""
        )
        raise InvalidParameterError(
            f"The 'response_format' parameter of {func}() must be one of {list(_FORMATS)}. "
            f"Got {response_format!r}.{hint}"
        )
    requested_format = response_format
    if response_format == "verbose_json" and mp is not None and not mp.verbose_json:
        response_format = "json"
    if language is not None:
        if not isinstance(language, str) or not _LANGUAGE_RE.match(language.strip()):
            raise InvalidParameterError(
                f"The 'language' parameter of {func}() must be an ISO-639-1 code such as 'en' or "
                f"'de' (or None to detect it). Got {language!r}."
            )
        language = language.strip().lower()
    if word_timestamps is None:
        word_timestamps = bool(
            mp is not None and mp.word_timestamps and response_format == "verbose_json"
        )
    elif not isinstance(word_timestamps, bool):
        raise InvalidParameterError(
            f"The 'word_timestamps' parameter of {func}() must be True, False or None. Got {word_timestamps!r}."
        )
    elif word_timestamps:
        if response_format != "verbose_json":
            raise InvalidParameterError(
                f"word_timestamps=True needs response_format='verbose_json' (got {response_format!r})."
            )
        if mp is not None and not mp.word_timestamps:
            able = [m.id for m in profile.models.values() if m.word_timestamps]
            raise InvalidParameterError(
                f"Model {model!r} gives segment timestamps only; word_timestamps=True needs one of "
                f"{able}, e.g. {func}(..., model={able[0]!r})."
                if able
                else f"Model {model!r} gives segment timestamps only; pass word_timestamps=False."
            )
    if max_upload_mb is not None:
        if (
            isinstance(max_upload_mb, bool)
            or not isinstance(max_upload_mb, int | float)
            or not max_upload_mb > 0
        ):
            raise InvalidParameterError(
                f"The 'max_upload_mb' parameter of {func}() must be a positive number of megabytes. Got {max_upload_mb!r}."
            )
        max_bytes = max_video_bytes = int(max_upload_mb * 1024 * 1024)
    else:  # the limits in force (today: 20 MB audio / 50 MB video; seed: 80 MB)
        max_bytes = profile.max_upload_bytes or 2**62
        max_video_bytes = profile.max_video_upload_bytes or max_bytes
    limit = aclient.engine.max_concurrency
    if concurrency is not None:
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise InvalidParameterError(
                f"The 'concurrency' parameter of {func}() must be an int >= 1. Got {concurrency!r}."
            )
        limit = concurrency
    return {
        "model": model,
        "language": language,
        "response_format": response_format,
        "requested_format": requested_format,
        "word_timestamps": word_timestamps,
        "max_bytes": max_bytes,
        "max_video_bytes": max_video_bytes,
        "concurrency": limit,
        "settings": settings,
        "model_verbose": mp is None or mp.verbose_json,
    }


class _TranscribeTask(Task):
    """Transcription on the pipeline: a unit is one distinct file content (rows with the same
    bytes share it); a batch is one file, probed ahead of the uploads, reduced or split at
    silences under the upload limit, its chunks sent concurrently (each chunk cached as it
    returns) and stitched back."""

    name = TASK
    endpoint = "audio.transcriptions"
    cache_columns = None  # the whole record (file rows and chunk rows share the namespace)
    unit_name = "s"

    def __init__(
        self,
        groups: list[list[_Item]],
        *,
        func: str,
        aclient: AsyncClient,
        store: Any,
        opts: dict[str, Any],
        params: dict[str, Any],
    ) -> None:
        self.groups = groups
        self.func = func
        self.aclient = aclient
        self.store = store
        self.opts = opts
        self.model = opts["model"]
        self.fmt = opts["response_format"]
        self.params = params
        self.params_text = json.dumps(params, sort_keys=True)
        self.chunk_params = {**params, "unit": "chunk"}
        self.io_limit = anyio.CapacityLimiter(8)
        self.cpu_limit = anyio.CapacityLimiter(max(1, min(4, os.cpu_count() or 1)))
        self.probe_limit = anyio.CapacityLimiter(2)  # probing runs ahead of the uploads
        self.sem = anyio.Semaphore(opts["concurrency"])
        self.concurrency = max(2, 2 * opts["concurrency"])  # files in flight (probed, split)
        self.probed = [anyio.Event() for _ in groups]
        self.stats = {"requests": 0, "chunks_cached": 0}
        words_on = opts["word_timestamps"]
        self.granularities = (
            (["word", "segment"] if words_on else None) if self.fmt == "verbose_json" else None
        )
        self.bar: _AudioBar | None = None

    def keys(self) -> list[str]:
        return [g[0].key for g in self.groups]  # type: ignore[misc]

    def weights(self) -> np.ndarray:
        return np.zeros(len(self.groups))  # audio seconds, reported by _AudioBar as they pass

    # cache --------------------------------------------------------------------------------
    def from_cache(self, ids: np.ndarray, table: pa.Table) -> np.ndarray:
        if "unit" not in table.column_names:
            return ids[:0]
        records = _records_from_cache(table)
        accepted = []
        for uid in ids.tolist():
            rec = records.get(self.groups[uid][0].key)  # type: ignore[arg-type]
            if rec is None:
                continue
            for item in self.groups[uid]:
                item.status, item.record = "cached", rec
                item.duration, item.chunks = rec["duration"], rec["chunks"]
            accepted.append(uid)
        return np.asarray(accepted, dtype=np.int64)

    def accept(self, ids: np.ndarray, value: list[dict[str, Any]]) -> None:
        for uid, rec in zip(ids.tolist(), value, strict=True):
            rec["duration"] = self.groups[uid][0].duration
            for item in self.groups[uid]:
                item.status, item.record = "ok", rec
            if self.bar is not None:
                self.bar.advance(uid, self.bar.remaining(uid))

    def to_cache(self, ids: np.ndarray, value: Any, keys: Sequence[str]) -> pa.Table:
        rows = [
            (key, "file", rec, self.groups[uid][0].duration, int(rec.get("chunks") or 1))
            for uid, key, rec in zip(ids.tolist(), keys, value, strict=True)
        ]
        return _cache_table(rows, self.params_text)

    # probing ------------------------------------------------------------------------------
    def _probe_one(self, group: list[_Item]) -> None:
        lead = group[0]
        try:
            data = _read(lead)
            info = _media.probe(data, name=lead.name or lead.file)
        except OSError as exc:
            for it in group:
                it.fail_read(exc)
            return
        except (_media.MediaError, ValueError) as exc:
            for it in group:
                it.fail(exc, error_type="MediaError")
            return
        for it in group:
            it.duration, it.info = info.duration, info
            if it.data is not None and it.path is None:  # bytes: give the upload an extension
                ext = _CONTAINER_EXT.get(info.container, info.container)
                if f".{ext}" in (_media.AUDIO_EXTENSIONS | _media.VIDEO_EXTENSIONS):
                    it.name = f"{it.file}.{ext}"

    async def ahead(self, ids: np.ndarray) -> None:
        """After the cache lookup: count what was cached, then probe the files to send, two
        at a time, ahead of the uploads."""
        if self.bar is not None:
            cached = (
                it.duration or 0.0 for g in self.groups for it in g[:1] if it.status == "cached"
            )
            self.bar.cached(sum(cached))

        async def one(uid: int) -> None:
            group = self.groups[uid]
            try:
                await anyio.to_thread.run_sync(self._probe_one, group, limiter=self.probe_limit)
            finally:
                if group[0].duration and self.bar is not None:
                    self.bar.grow(uid, group[0].duration)
                self.probed[uid].set()

        async with anyio.create_task_group() as tg:
            for uid in ids.tolist():
                tg.start_soon(one, uid)

    # the call -----------------------------------------------------------------------------
    async def _send(self, chunk: _media.Chunk, stem: str, chunk_fmt: str) -> dict[str, Any]:
        async with self.sem:
            self.stats["requests"] += 1
            tr = await self.aclient.transcribe(
                chunk.data,
                filename=chunk.filename(stem),
                model=self.model,
                response_format=chunk_fmt,
                language=self.opts["language"],
                timestamp_granularities=self.granularities if chunk_fmt == "verbose_json" else None,
            )
        return _record_from_response(tr, chunk_fmt)

    async def _chunks(self, lead: _Item) -> list[_media.Chunk] | None:
        """The file as uploads under the limit (None when it failed: recorded on the items)."""
        try:
            data = await anyio.to_thread.run_sync(_read, lead, limiter=self.io_limit)
        except OSError as exc:  # deleted or made unreadable since it was probed
            for it in self._group_of(lead):
                it.fail_read(exc)
            return None
        name = lead.name or lead.file
        try:
            return await anyio.to_thread.run_sync(
                functools.partial(
                    _media.prepare_upload,
                    data,
                    name=name,
                    max_bytes=self.opts["max_bytes"],
                    max_video_bytes=self.opts["max_video_bytes"],
                    info=lead.info,
                ),
                limiter=self.cpu_limit,
            )
        except _media.MediaError:
            raise
        except ValueError as exc:
            raise _media.MediaError(
                name,
                f"cannot be split under the upload limit of "
                f"{self.opts['max_bytes'] / 2**20:.3g} MB ({exc}); raise max_upload_mb",
            ) from exc

    def _group_of(self, lead: _Item) -> list[_Item]:
        return next(g for g in self.groups if g[0] is lead)

    async def ready(self, ids: np.ndarray) -> None:
        await self.probed[int(ids[0])].wait()  # probed ahead, two files at a time

    async def call(self, ids: np.ndarray) -> Answer:
        uid = int(ids[0])
        group = self.groups[uid]
        lead = group[0]
        await self.probed[uid].wait()
        if lead.status == "error":  # not audio, corrupt, unreadable: recorded by the probe
            return Answer(ids[:0], [], {uid: _AlreadyFailed()})
        chunks = await self._chunks(lead)
        if chunks is None:
            return Answer(ids[:0], [], {uid: _AlreadyFailed()})
        name = lead.name or lead.file
        stem = os.path.splitext(os.path.basename(name))[0] or "audio"
        for it in group:
            it.chunks = len(chunks)
        if len(chunks) == 1:
            rec = await self._send(chunks[0], stem, self.fmt)
            rec["chunks"] = 1
            return Answer(ids, [rec])
        return Answer(ids, [await self._several(uid, chunks, stem)])

    async def _several(self, uid: int, chunks: list[_media.Chunk], stem: str) -> dict[str, Any]:
        """A file split at silences: chunks from the cache or sent concurrently, each cached as
        it returns, then stitched."""
        # ask for segments (needed to stitch) whenever the model has them
        chunk_fmt = "verbose_json" if self.opts["model_verbose"] else self.fmt
        ckeys = [make_key(TASK, self.model, self.chunk_params, c.data) for c in chunks]
        results: dict[int, dict[str, Any]] = {}
        try:
            got = self.store.lookup(TASK, self.model, ckeys)
            cached = _records_from_cache(got) if got.num_rows and "unit" in got.column_names else {}
        except (CacheError, OSError):
            cached = {}
        for c, ck in zip(chunks, ckeys, strict=True):
            if ck in cached:
                results[c.index] = cached[ck]
                self.stats["chunks_cached"] += 1
                if self.bar is not None:
                    self.bar.advance(uid, c.duration)
        errors: list[tuple[_media.Chunk, BaseException]] = []

        async def one(c: _media.Chunk, ck: str) -> None:
            try:
                rec = await self._send(c, stem, chunk_fmt)
            except Exception as exc:  # noqa: BLE001 - recorded; fatal ones re-raised below
                errors.append((c, exc))
                return
            results[c.index] = rec
            with anyio.CancelScope(shield=True):
                await self.writer.write(
                    _cache_table([(ck, "chunk", rec, c.duration, 1)], self.params_text)
                )
            if self.bar is not None:
                self.bar.advance(uid, c.duration)

        async with anyio.create_task_group() as tg:
            for c, ck in zip(chunks, ckeys, strict=True):
                if c.index not in results:
                    tg.start_soon(one, c, ck)
        if errors:
            errors.sort(key=lambda pair: pair[0].index)
            for _, exc in errors:
                if isinstance(exc, FATAL_ERRORS):
                    raise exc
            c, exc = errors[0]
            exc.args = (
                f"chunk {c.index + 1} of {len(chunks)} ({c.start:.1f}-{c.end:.1f} s; "
                f"{len(errors)} chunk(s) failed, the others are cached): {_message(exc)}",
            )
            raise exc
        rec = _media.stitch_records([(c, results[c.index]) for c in chunks])
        if self.fmt != "verbose_json":
            # The chunks were asked for segments only to stitch them; give the format that was
            # asked for, so a split file looks like the files sent whole (text, no segments).
            rec.update(segments=[], words=[], response_format=self.fmt)
        rec["chunks"] = len(chunks)
        return rec


class _AlreadyFailed(Exception):
    """A unit whose items already hold their error (probe or read)."""


def _read(item: _Item) -> bytes:
    if item.data is not None:
        return item.data
    assert item.path is not None
    # regular files only (a FIFO or /dev/zero is never opened), of a bounded size
    return _files.read_file(item.path, max_bytes=_files.MAX_SPLIT_FILE_BYTES, open_file=open)


async def _hash_all(
    items: list[_Item], *, model: str, params: dict[str, Any], keep_audio: bool
) -> dict[str, bytes]:
    """Read and key every pending item (8 files at a time); returns the audio kept for display."""
    kept: dict[str, bytes] = {}
    limit = anyio.CapacityLimiter(8)

    def one(item: _Item) -> None:
        try:
            data = _read(item)
        except OSError as exc:
            item.fail_read(exc)
            return
        item.size = len(data)
        if not data:
            item.fail(f"{item.file}: the file is empty (0 bytes).", error_type="MediaError")
            return
        item.key = make_key(TASK, model, params, data)
        if keep_audio and item.path is not None and len(data) <= KEEP_AUDIO_MAX_BYTES:
            kept[item.file] = data

    async with anyio.create_task_group() as tg:
        for item in items:
            if item.status == "pending":
                tg.start_soon(functools.partial(anyio.to_thread.run_sync, one, item, limiter=limit))
    return kept


async def _run(
    items: list[_Item],
    index: pd.Index,
    *,
    func: str,
    model: str,
    language: str | None,
    response_format: str,
    word_timestamps: bool | None,
    max_upload_mb: float | None,
    client: Client | AsyncClient | None,
    cache: Any,
    progress: bool | None,
    concurrency: int | None,
    keep_audio: bool,
    meta: dict[str, Any],
    diarize: bool = False,
    include_metadata: bool = False,
    api: str = "auto",
    estimate: bool = False,
    quote: bool = False,
) -> TranscriptionResult | Estimate:
    aclient = resolve_client(client)
    opts = _resolve_options(
        aclient, client, model=model, language=language, response_format=response_format,
        word_timestamps=word_timestamps, max_upload_mb=max_upload_mb, concurrency=concurrency,
        func=func,
    )  # fmt: skip
    model, fmt, words_on = opts["model"], opts["response_format"], opts["word_timestamps"]
    store = resolve_cache(cache, settings=opts["settings"])
    native = _nt.route(
        items, api=api, diarize=diarize, include_metadata=include_metadata, func=func,
        model=model, language=opts["language"], word_timestamps=word_timestamps,
        response_format=response_format,
    )  # fmt: skip
    if native is not None and estimate:
        native_estimate = await _nt.estimate_native(
            native["items"], opts=native["opts"], settings=opts["settings"], quote=quote
        )
        for it in native["items"]:
            it.status = "native"  # the gateway's estimate below leaves these rows out
    elif native is not None:
        show = opts["settings"].progress if progress is None else bool(progress)
        meta["native"] = await _nt.run_native(
            native["items"], func=func, opts=native["opts"], store=store,
            settings=opts["settings"], show_progress=show,
        )  # fmt: skip
    params = {"language": opts["language"], "response_format": fmt, "word_timestamps": words_on}
    kept = await _hash_all(items, model=model, params=params, keep_audio=keep_audio)
    groups: dict[str, list[_Item]] = {}
    for item in items:
        if item.status == "pending" and item.key:
            groups.setdefault(item.key, []).append(item)
    task = _TranscribeTask(
        list(groups.values()), func=func, aclient=aclient, store=store, opts=opts, params=params
    )
    if estimate:
        gateway = await _estimate(task, items, store)
        return gateway if native is None else _nt.merge_estimate(gateway, native_estimate)
    show = opts["settings"].progress if progress is None else bool(progress)
    bar = Progress(0, desc=f"transcribe {model}", unit="s", show=show, engine=aclient.engine)
    task.bar = _AudioBar(bar)
    try:
        outcome = await run_task(task, store=store, aclient=aclient, progress=bar)
    finally:
        bar.close(complete=False)
    sent_failed: set[int] = set()
    for uid, exc in outcome.errors.items():
        if isinstance(exc, _AlreadyFailed):
            continue
        sent_failed.update(it.pos for it in task.groups[uid])
        for it in task.groups[uid]:
            it.fail(exc, error_type="MediaError" if isinstance(exc, _media.MediaError) else None)
        if task.bar is not None:
            task.bar.advance(uid, task.bar.remaining(uid), failed=len(task.groups[uid]))
    meta.update(
        model=model,
        response_format=fmt,
        word_timestamps=words_on,
        language=opts["language"],
        max_upload_bytes=opts["max_bytes"],
        requests=task.stats["requests"],
        chunks_cached=task.stats["chunks_cached"],
        cache=getattr(store, "location", None),
    )
    result = _assemble(items, index, model=model, meta=meta, kept=kept)
    _nt.finish(result, items)
    sent_failed.update(it.pos for it in items if it.status == "error" and it.error_code)
    local = np.array([it.status == "error" and it.pos not in sent_failed for it in items], bool)
    return check_outcome(result, func=func, frame=result.files, input_failed=local)


async def _estimate(task: _TranscribeTask, items: list[_Item], store: Any) -> Estimate:
    """Audio seconds, requests and cost of the files not in the cache (probed locally: the
    durations are exact; nothing is sent)."""
    keys = task.keys()
    have = store.contains(TASK, task.model, keys) if keys else np.zeros(0, bool)
    todo = [g for g, hit in zip(task.groups, have, strict=True) if not hit]
    limit = anyio.CapacityLimiter(2)
    async with anyio.create_task_group() as tg:
        for group in todo:
            tg.start_soon(
                functools.partial(anyio.to_thread.run_sync, task._probe_one, group, limiter=limit)
            )
    sendable = [g for g in todo if g[0].status != "error"]
    seconds = float(sum(g[0].duration or 0.0 for g in sendable))
    max_bytes = task.opts["max_bytes"]
    requests = sum(max(1, -(-(g[0].size or 0) // max_bytes)) for g in sendable)
    settings = task.opts["settings"]
    profile = get_profile(settings)
    quote = profile.price(
        TASK, task.model, seconds=seconds, word_timestamps=bool(task.opts["word_timestamps"])
    )
    return Estimate(
        func=task.func,
        model=task.model,
        rows=len(items),
        unique=len(task.groups),
        cached=int(np.count_nonzero(have)),
        empty=sum(1 for it in items if it.status == "skipped"),
        errors=sum(1 for it in items if it.status == "error"),
        requests=requests,
        quantity=round(seconds, 1),
        unit="audio seconds",
        cost_usd=None if quote is None else quote.usd,
        price_note=None if quote is None else quote.note,
        rpm=settings.rpm_for(TASK) or profile.rpm_for(TASK, settings.effective_tier),
        concurrency=task.opts["concurrency"],
        **quota_fields(settings, TASK),
        extra={"hours": seconds / 3600},
    )


class _AudioBar:
    """Audio seconds on the pipeline's progress bar: each file counts at most its duration.

    Chunks overlap, so their durations add up to more than the file's; rounding adds up too.
    Both would push the bar past its total, so the seconds shown are capped per file.
    """

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.limit: dict[int, float] = {}
        self.counted: dict[int, float] = {}

    def cached(self, seconds: float) -> None:
        seconds = round(seconds, 1)
        if seconds:
            self.progress.grow(seconds)
            self.progress.cached(seconds)

    def grow(self, uid: int, seconds: float) -> None:
        self.limit[uid] = seconds
        self.progress.grow(seconds)

    def remaining(self, uid: int) -> float:
        return max(0.0, self.limit.get(uid, 0.0) - self.counted.get(uid, 0.0))

    def advance(self, uid: int, seconds: float, failed: int = 0) -> None:
        seconds = min(max(seconds, 0.0), self.remaining(uid))
        self.counted[uid] = self.counted.get(uid, 0.0) + seconds
        self.progress.advance(seconds, failed=failed)


def _assemble(
    items: list[_Item], index: pd.Index, *, model: str, meta: dict[str, Any], kept: dict[str, bytes]
) -> TranscriptionResult:
    seg_rows: list[dict[str, Any]] = []
    word_rows: list[dict[str, Any]] = []
    speakers = False
    cols: dict[str, list[Any]] = {c: [] for c in FILE_COLUMNS}
    sources: dict[str, Any] = {}
    for it in items:
        rec = it.record if it.status in ("ok", "cached") else None
        if it.path is not None:
            sources[it.file] = it.path
        if it.data is not None:
            sources[it.file] = it.data
        if it.file in kept:
            sources[it.file] = kept[it.file]
        segments = rec["segments"] if rec else []
        fmt = rec.get("response_format") if rec else None
        cols["file"].append(it.file)
        # shown and stored names are valid UTF-8; the real path stays in sources, to re-read
        cols["path"].append(None if it.path is None else _files.display_name(it.path))
        cols["name"].append(None if it.name is None else _files.display_name(it.name))
        cols["size"].append(it.size)
        cols["duration"].append(
            it.duration if it.duration is not None else (rec or {}).get("api_duration")
        )
        cols["language"].append(rec["language"] if rec else None)
        cols["text"].append(rec["text"] if rec else None)
        cols["n_segments"].append(
            len(segments) if rec and (segments or fmt == "verbose_json") else None
        )
        cols["status"].append(it.status)
        cols["error_type"].append(it.error_type)
        cols["error"].append(it.error)
        cols["retryable"].append(it.retryable if it.status == "error" else None)
        cols["model"].append(model)
        cols["cached"].append(it.status == "cached")
        cols["chunks"].append(it.chunks if it.chunks is not None else (rec or {}).get("chunks"))
        if not rec:
            continue
        for s in segments:
            row = {
                "file": it.file,
                "segment": s.get("id"),
                "start": s.get("start"),
                "end": s.get("end"),
                "text": s.get("text"),
            }
            for q in SEGMENT_QUALITY:
                row[q] = s.get(q)
            row["speaker"] = s.get("speaker")
            speakers = speakers or row["speaker"] is not None
            seg_rows.append(row)
        for w in rec["words"]:
            word_rows.append(
                {
                    "file": it.file,
                    "segment": w.get("segment"),
                    "word": w.get("word"),
                    "start": w.get("start"),
                    "end": w.get("end"),
                    "probability": w.get("probability"),
                    "speaker": w.get("speaker"),
                }
            )
    files = pd.DataFrame(
        {
            "file": pd.array(cols["file"], dtype="string"),
            "path": pd.array(cols["path"], dtype="string"),
            "name": pd.array(cols["name"], dtype="string"),
            "size": pd.array(cols["size"], dtype="Int64"),
            "duration": pd.array(cols["duration"], dtype="Float64"),
            "language": pd.array(cols["language"], dtype="string"),
            "text": pd.array(cols["text"], dtype="string"),
            "n_segments": pd.array(cols["n_segments"], dtype="Int64"),
            "status": pd.array(cols["status"], dtype=STATUS_DTYPE),
            "error_type": pd.array(cols["error_type"], dtype=STATUS_DTYPE),
            "error": pd.array(cols["error"], dtype=STATUS_DTYPE),
            "retryable": pd.array(cols["retryable"], dtype="boolean"),
            "model": pd.array(cols["model"], dtype="string"),
            "cached": pd.array(cols["cached"], dtype="boolean"),
            "chunks": pd.array(cols["chunks"], dtype="Int64"),
        },
        index=index,
    )
    seg_cols = ["file", "segment", "start", "end", "text", *SEGMENT_QUALITY] + (
        ["speaker"] if speakers else []
    )
    segments_df = _frame(
        seg_rows,
        {"file": "string", "segment": "Int64", "start": "Float64", "end": "Float64", "text": "string",
         **{q: "Float64" for q in SEGMENT_QUALITY}, "speaker": "string"},
        seg_cols,
    )  # fmt: skip
    segments_df["flag"] = _nt.quality_flags(segments_df)
    has_prob = any(r["probability"] is not None for r in word_rows)
    word_cols = ["file", "segment", "word", "start", "end"] + (["probability"] if has_prob else [])
    if any(r["speaker"] is not None for r in word_rows):
        word_cols.append("speaker")
    words_df = _frame(
        word_rows,
        {
            "file": "string",
            "segment": "Int64",
            "word": "string",
            "start": "Float64",
            "end": "Float64",
            "probability": "Float64",
            "speaker": "string",
        },
        word_cols,
    )
    meta["ignored"] = meta.get("ignored", 0)
    return TranscriptionResult(
        files, segments=segments_df, words=words_df, meta=meta, sources=sources
    )


def _frame(
    rows: list[dict[str, Any]], dtypes: Mapping[str, str], columns: Sequence[str]
) -> pd.DataFrame:
    return pd.DataFrame(
        {c: pd.array([r.get(c) for r in rows], dtype=dtypes[c]) for c in columns},
        index=pd.RangeIndex(len(rows)),
    )


async def atranscribe(
    data: Any,
    column: Any = None,
    *,
    model: str = "WhisperLargeV3",
    language: str | None = None,
    response_format: str = "verbose_json",
    word_timestamps: bool | None = None,
    max_upload_mb: float | None = None,
    client: Client | AsyncClient | None = None,
    cache: Any = USE_DEFAULT,
    progress: bool | None = None,
    concurrency: int | None = None,
    keep_audio: bool = False,
    diarize: bool = False,
    include_metadata: bool = False,
    api: str = "auto",
) -> TranscriptionResult:
    """Transcribe audio or video files given as paths or bytes, or links (a list, a Series, or
    a column).

    Returns a :class:`TranscriptionResult`: ``.files`` (one row per input, in input order and
    with the input's index), ``.segments`` and ``.words``. Options:

    - ``model``: ``"WhisperLargeV3"`` (segment timestamps) or ``"WhisperLargeV3Ct2"`` (also word
      timestamps, which deAPI bills at 1.5x).
    - ``language``: an ISO-639-1 hint such as ``"en"``; None detects it.
    - ``response_format``: ``"verbose_json"`` (segments; used when the model supports it),
      ``"json"`` or ``"text"`` (text only).
    - ``word_timestamps``: None = when the model offers them; True asks for them (an error
      before any request for a model without them); False never.
    - ``max_upload_mb``: the upload limit (default: the provider profile's, on deAPI 20 MB
      per audio file and 50 MB per video today, 80 MB with ``limits="seed"``, or the
      ``max_upload_mb`` setting). Larger files are split and stitched.
    - ``cache``: unset = the configured cache; None = off; a folder. Keys use the file's bytes.
    - ``concurrency``: uploads in flight at once for this call (default: the client's).
    - ``keep_audio``: keep the bytes of files up to 25 MB in memory for
      :meth:`TranscriptionResult.play` (otherwise they are re-read from their paths).
    - Links (YouTube, X/Twitter incl. Spaces, Twitch, Kick, TikTok) go to deAPI's native API as
      jobs (job ids cached at once: a rerun resumes instead of paying again); TikTok needs
      ``model="WhisperLargeV3Ct2"``.
    - ``diarize=True``: who spoke when (``speaker`` in ``segments`` and ``words``, the
      :attr:`TranscriptionResult.speakers` table); runs on the native API with
      WhisperLargeV3Ct2 (billed 1.5x), files included.
    - ``include_metadata=True``: the links' title, channel, duration, views… as ``files``
      columns (+$0.005 per link).
    - ``api``: ``"auto"`` (links and native-only options on the native API, other files on
      the OpenAI-compatible gateway), ``"gateway"`` or ``"native"`` (every row).

    >>> res = await deapi_ds.atranscribe(["a.mp3", "b.wav"])          # doctest: +SKIP
    >>> res.files[["file", "duration", "status"]]                      # doctest: +SKIP
    """
    series = _as_series(data, column, "transcribe")
    items = _items_from_series(series)
    return await _run(
        items, series.index, func="transcribe", model=model, language=language,
        response_format=response_format, word_timestamps=word_timestamps,
        max_upload_mb=max_upload_mb, client=client, cache=cache, progress=progress,
        concurrency=concurrency, keep_audio=keep_audio, meta={"source": "list"},
        diarize=diarize, include_metadata=include_metadata, api=api,
    )  # fmt: skip


async def _folder_items(
    data: Any, *, pattern: str, recursive: bool, extensions: Any, include_hidden: bool
) -> tuple[list[_Item], dict[str, Any]]:
    """The files of a folder as items (sorted by relative path) and the walk's facts."""
    root = os.fspath(data)
    if not os.path.exists(root):
        raise InvalidParameterError(f"transcribe_folder(): the folder {root!r} does not exist.")
    if not os.path.isdir(root):
        raise InvalidParameterError(
            f"transcribe_folder() needs a folder; {root!r} is a file. Use transcribe([{root!r}])."
        )
    if not isinstance(pattern, str) or not pattern:
        raise InvalidParameterError(f"pattern must be a glob such as '*.mp3'. Got {pattern!r}.")
    exts = _files.check_extensions(
        extensions, default=_media.AUDIO_EXTENSIONS | _media.VIDEO_EXTENSIONS
    )
    unlisted: list[OSError] = []
    found, ignored = await anyio.to_thread.run_sync(
        lambda: _walk(
            root,
            pattern=pattern,
            recursive=recursive,
            extensions=exts,
            include_hidden=include_hidden,
            unlisted=unlisted,
        )
    )
    if unlisted:
        shown = "; ".join(f"{e.filename} ({e.strerror or e})" for e in unlisted[:5])
        more = f" and {len(unlisted) - 5} more" if len(unlisted) > 5 else ""
        warnings.warn(
            f"deapi_ds: transcribe_folder() could not list {len(unlisted)} folder(s), so their "
            f"files are not in the result: {shown}{more}. Check the folders' permissions.",
            stacklevel=3,
        )
    items = [
        _Item(pos, rel, path=full, name=os.path.basename(rel))
        for pos, (rel, full) in enumerate(found)
    ]
    meta = {
        "source": "folder",
        "root": root,
        "ignored": ignored,
        "unlisted": [str(e.filename) for e in unlisted],
    }
    return items, meta


async def atranscribe_folder(
    data: str | os.PathLike[str],
    *,
    pattern: str = "*",
    recursive: bool = True,
    extensions: Iterable[str] | None = None,
    include_hidden: bool = False,
    model: str = "WhisperLargeV3",
    language: str | None = None,
    response_format: str = "verbose_json",
    word_timestamps: bool | None = None,
    max_upload_mb: float | None = None,
    client: Client | AsyncClient | None = None,
    cache: Any = USE_DEFAULT,
    progress: bool | None = None,
    concurrency: int | None = None,
    keep_audio: bool = False,
    diarize: bool = False,
    api: str = "auto",
) -> TranscriptionResult:
    """Transcribe every audio and video file in a folder: one ``files`` row per file, always.

    Files are listed in sorted order of their path relative to ``path`` (that relative path is
    the ``file`` column, which ``segments`` and ``words`` join on). ``pattern`` is matched
    against the file name (or against the relative path when it contains ``/``);
    ``extensions`` defaults to the audio and video containers the API takes (``.mp3``,
    ``.wav``, ``.flac``, ``.m4a``, ``.ogg``, ``.opus``, ``.webm``, ``.mp4``, ``.mov``, ...);
    files with other extensions are not listed (``result.meta["ignored"]`` counts them).
    Hidden files and folders are skipped unless ``include_hidden=True``; symbolic links are
    followed and every real folder is walked once. Other options as in :func:`transcribe`.

    >>> res = await deapi_ds.atranscribe_folder("interviews", pattern="*.mp3")  # doctest: +SKIP
    """
    items, meta = await _folder_items(
        data,
        pattern=pattern,
        recursive=recursive,
        extensions=extensions,
        include_hidden=include_hidden,
    )
    return await _run(
        items, pd.RangeIndex(len(items)), func="transcribe_folder", model=model,
        language=language, response_format=response_format, word_timestamps=word_timestamps,
        max_upload_mb=max_upload_mb, client=client, cache=cache, progress=progress,
        concurrency=concurrency, keep_audio=keep_audio, meta=meta, diarize=diarize, api=api,
    )  # fmt: skip


transcribe = syncify(atranscribe)
transcribe_folder = syncify(atranscribe_folder)


async def aestimate_transcribe(
    data: Any,
    column: Any = None,
    *,
    model: str = "WhisperLargeV3",
    language: str | None = None,
    response_format: str = "verbose_json",
    word_timestamps: bool | None = None,
    max_upload_mb: float | None = None,
    client: Client | AsyncClient | None = None,
    cache: Any = USE_DEFAULT,
    diarize: bool = False,
    include_metadata: bool = False,
    api: str = "auto",
    quote: bool = False,
) -> Estimate:
    """What :func:`transcribe` would send (async twin of :func:`estimate_transcribe`)."""
    series = _as_series(data, column, "estimate_transcribe")
    items = _items_from_series(series)
    return await _run(
        items, series.index, func="transcribe", model=model, language=language,
        response_format=response_format, word_timestamps=word_timestamps,
        max_upload_mb=max_upload_mb, client=client, cache=cache, progress=False,
        concurrency=None, keep_audio=False, meta={}, estimate=True,
        diarize=diarize, include_metadata=include_metadata, api=api, quote=quote,
    )  # fmt: skip


async def aestimate_transcribe_folder(
    data: str | os.PathLike[str],
    *,
    pattern: str = "*",
    recursive: bool = True,
    extensions: Iterable[str] | None = None,
    include_hidden: bool = False,
    model: str = "WhisperLargeV3",
    language: str | None = None,
    response_format: str = "verbose_json",
    word_timestamps: bool | None = None,
    max_upload_mb: float | None = None,
    client: Client | AsyncClient | None = None,
    cache: Any = USE_DEFAULT,
) -> Estimate:
    """What :func:`transcribe_folder` would send (async twin of
    :func:`estimate_transcribe_folder`)."""
    items, _ = await _folder_items(
        data,
        pattern=pattern,
        recursive=recursive,
        extensions=extensions,
        include_hidden=include_hidden,
    )
    return await _run(
        items, pd.RangeIndex(len(items)), func="transcribe_folder", model=model,
        language=language, response_format=response_format, word_timestamps=word_timestamps,
        max_upload_mb=max_upload_mb, client=client, cache=cache, progress=False,
        concurrency=None, keep_audio=False, meta={}, estimate=True,
    )  # fmt: skip


estimate_transcribe = syncify(aestimate_transcribe)
estimate_transcribe.__doc__ = """What :func:`transcribe` would send: an :class:`~deapi_ds.Estimate` of
audio seconds (files are read and probed locally, so durations are exact), requests, cost at
the reference price per audio hour (x1.5 for word timestamps on models that charge for them),
time and days of daily quota. Same arguments as :func:`transcribe`; nothing is sent.

Rows for deAPI's native API (links; files with ``diarize=True``) count with their own factor
(x1.5 for diarization / word timestamps on WhisperLargeV3Ct2, +$0.005 per link with
``include_metadata``); a link's duration is unknown before it is fetched, so it is left out of
the cost and counted in ``extra["unknown_duration"]`` rather than guessed. ``quote=True`` also
asks deAPI's price endpoint for each native row (``extra["quote_usd"]``; 50/min and 200/day on
Basic)."""
estimate_transcribe_folder = syncify(aestimate_transcribe_folder)
estimate_transcribe_folder.__doc__ = """What :func:`transcribe_folder` would send (see
:func:`estimate_transcribe`). Same arguments as :func:`transcribe_folder`; nothing is sent."""


# --------------------------------------------------------------------------------------------
# the result


class _HTML:
    """Minimal HTML holder with a notebook representation (IPython's HTML when available)."""

    def __init__(self, html: str) -> None:
        self.data = html

    def _repr_html_(self) -> str:
        return self.data

    def __repr__(self) -> str:
        return f"<HTML {len(self.data):,} characters>"


def _html(html: str) -> Any:
    try:
        from IPython.display import HTML  # lazy
    except ImportError:
        return _HTML(html)
    return HTML(html)


def _human_duration(seconds: float) -> str:
    """``41 s``, ``12.5 min``, ``3.25 h``: the unit that keeps the figure readable."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


class TranscriptionResult(ResultFrame):
    """What :func:`transcribe` returns: ``files`` (this frame) plus ``segments`` and ``words``.

    - ``files``: one row per input file: file (the id that ``segments`` and ``words`` join on),
      path, name, size, duration (measured locally), language (ISO code), text, n_segments,
      status (ok, cached, error, skipped), error_type, error, retryable, model, cached, chunks.
    - ``segments``: file, segment, start and end (seconds from the start of the original
      file), text, and the quality fields the API returns (avg_logprob, no_speech_prob,
      compression_ratio, temperature; speaker when diarized).
    - ``words``: file, segment, word, start, end (a missing timestamp stays <NA>).

    Helpers: :meth:`to_srt`, :meth:`to_vtt`, :meth:`export_subtitles`, :meth:`speaking_stats`,
    :meth:`search_text`, :meth:`semantic_search`, :meth:`play`, :meth:`view_segments`; with
    ``diarize=True``: :attr:`speakers`, :meth:`turn_taking`, :meth:`talk_time_chart`,
    :meth:`speaker_timeline`; quality: the segments' ``flag`` column and :meth:`flagged`.
    """

    def __init__(
        self,
        files: pd.DataFrame,
        *,
        segments: pd.DataFrame,
        words: pd.DataFrame,
        meta: Mapping[str, Any] | None = None,
        sources: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(files, meta=meta)
        self.segments = segments
        self.words = words
        self._sources = dict(sources or {})
        self._index_cache: dict[str, Any] = {}

    def _take(self, positions: np.ndarray) -> TranscriptionResult:
        new = self._subset(positions)  # segments and words follow the selected files
        fids = new.frame["file"]
        new.segments = self.segments[self.segments["file"].isin(fids).to_numpy()]
        new.words = self.words[self.words["file"].isin(fids).to_numpy()]
        new._index_cache = {}
        return new

    @property
    def files(self) -> pd.DataFrame:
        """One row per input file (the same frame as ``.frame``)."""
        return self.frame

    def summary(self) -> str:
        """One line: files per status, segments and hours of audio."""
        base = super().summary()
        seconds = float(self.frame["duration"].fillna(0).sum())
        extra = f", {len(self.segments):,} segments, {_human_duration(seconds)} of audio"
        if self.meta.get("ignored"):
            extra += f", {self.meta['ignored']} files ignored (other extensions)"
        return base + extra

    # --- lookups ----------------------------------------------------------------------------
    def _file_id(self, file: Any) -> str:
        ids = self.frame["file"]
        if isinstance(file, pd.Series) and "file" in file.index:
            file = file["file"]
        if isinstance(file, os.PathLike):
            file = os.fspath(file)
        if isinstance(file, str):
            for column in ("file", "path", "name"):
                hits = ids[self.frame[column].eq(file).fillna(False).to_numpy()]
                if len(hits) == 1:
                    return str(hits.iloc[0])
                if len(hits) > 1 and column == "name":
                    raise InvalidParameterError(
                        f"Several files are named {file!r}: {hits.tolist()[:5]}. Pass the file id."
                    )
        elif isinstance(file, int | np.integer) and not isinstance(file, bool):
            if file in self.frame.index:
                return str(ids.loc[file])
            if 0 <= int(file) < len(ids):
                return str(ids.iloc[int(file)])
        shown = ids.tolist()[:5]
        raise InvalidParameterError(
            f"File {file!r} is not in this result. Pass a value of the 'file' column (e.g. "
            f"{shown}), a path, a unique name, or a row label."
        )

    def segments_of(self, file: Any) -> pd.DataFrame:
        """The segments of one file (a file id, path, unique name or row label)."""
        fid = self._file_id(file)
        return self.segments[self.segments["file"].eq(fid).to_numpy()]

    # --- subtitles --------------------------------------------------------------------------
    def _subtitles(self, file: Any, kind: str) -> str:
        fid = self._file_id(file)
        row = self.frame[self.frame["file"].eq(fid).to_numpy()].iloc[0]
        if row["status"] not in ("ok", "cached"):
            raise InvalidParameterError(
                f"File {fid!r} has no transcript (status {row['status']!r}: {row['error']})."
            )
        segs = self.segments_of(fid)
        if segs.empty and not pd.isna(row["text"]) and row["text"]:
            raise InvalidParameterError(
                f"File {fid!r} has no segments (response_format={self.meta.get('response_format')!r}); "
                "subtitles need timestamps: transcribe with response_format='verbose_json'."
            )
        records = [
            {k: (None if pd.isna(v) else v) for k, v in rec.items()}
            for rec in segs.to_dict("records")
        ]
        return _media.format_srt(records) if kind == "srt" else _media.format_vtt(records)

    def to_srt(self, file: Any, path: str | os.PathLike[str] | None = None) -> str:
        """The SubRip subtitles of one file (from ``segments``); also written to ``path`` if given.

        >>> print(res.to_srt("talk.mp3"))                     # doctest: +SKIP
        """
        text = self._subtitles(file, "srt")
        if path is not None:
            Path(path).write_text(text, encoding="utf-8")
        return text

    def to_vtt(self, file: Any, path: str | os.PathLike[str] | None = None) -> str:
        """The WebVTT subtitles of one file (speakers as ``<v>`` tags); written to ``path`` if given."""
        text = self._subtitles(file, "vtt")
        if path is not None:
            Path(path).write_text(text, encoding="utf-8")
        return text

    def export_subtitles(self, folder: str | os.PathLike[str], fmt: str = "srt") -> pd.DataFrame:
        """Write one subtitle file per transcribed file into ``folder``; returns what was written.

        ``talk.mp4`` becomes ``talk.srt`` (sub-folders of a transcribed folder are kept); when two
        files would get the same name, the original extension is kept (``talk.mp4.srt``). Files
        without a transcript or segments are left out. Columns: file, subtitle, cues.
        """
        if fmt not in ("srt", "vtt"):
            raise InvalidParameterError(f"fmt must be 'srt' or 'vtt'. Got {fmt!r}.")
        out_dir = Path(folder)
        done = self.frame[self.frame["status"].isin(["ok", "cached"]).to_numpy()]
        with_segments = set(self.segments["file"].dropna().tolist())
        fids = [f for f in done["file"].tolist() if f in with_segments]

        def target(fid: str, keep_ext: bool) -> str:
            rel = fid.replace("\\", "/").lstrip("/")
            if os.path.isabs(fid) or ".." in rel.split("/") or rel.startswith("bytes["):
                rel = (
                    os.path.basename(rel)
                    if not rel.startswith("bytes[")
                    else re.sub(r"[^\w.-]+", "_", rel)
                )
            return f"{rel}.{fmt}" if keep_ext else f"{os.path.splitext(rel)[0]}.{fmt}"

        plain = Counter(target(f, False) for f in fids)
        rows = []
        for fid in fids:
            rel = target(fid, plain[target(fid, False)] > 1)
            dest = out_dir / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            text = self.to_srt(fid, dest) if fmt == "srt" else self.to_vtt(fid, dest)
            rows.append({"file": fid, "subtitle": str(dest), "cues": text.count(" --> ")})
        return pd.DataFrame(
            {
                "file": pd.array([r["file"] for r in rows], dtype="string"),
                "subtitle": pd.array([r["subtitle"] for r in rows], dtype="string"),
                "cues": pd.array([r["cues"] for r in rows], dtype="Int64"),
            }
        )

    # --- analysis ---------------------------------------------------------------------------
    def speaking_stats(self) -> pd.DataFrame:
        """Per file: words, speaking_time (seconds covered by segments, overlaps merged),
        words_per_minute (over the speaking time), duration and speech_ratio.

        Words are counted from ``words`` when the file has them, else from the segment texts.
        """
        rows = []
        for fid, status, duration in zip(
            self.frame["file"], self.frame["status"], self.frame["duration"], strict=True
        ):
            segs = self.segments[self.segments["file"].eq(fid).to_numpy()]
            words = self.words[self.words["file"].eq(fid).to_numpy()]
            ok = status in ("ok", "cached")
            if not ok:
                n_words: Any = pd.NA
            elif len(words):
                n_words = int(words["word"].fillna("").str.strip().ne("").sum())
            else:
                n_words = int(sum(len(str(t).split()) for t in segs["text"].dropna()))
            spans = sorted(
                (float(s), float(e))
                for s, e in zip(segs["start"], segs["end"], strict=True)
                if not pd.isna(s) and not pd.isna(e) and e > s
            )
            total, cur_s, cur_e = 0.0, None, None
            for s, e in spans:
                if cur_e is None or s > cur_e:
                    if cur_e is not None:
                        total += cur_e - cur_s
                    cur_s, cur_e = s, e
                else:
                    cur_e = max(cur_e, e)
            if cur_e is not None:
                total += cur_e - cur_s
            speaking = total if ok and spans else pd.NA
            wpm = (n_words / total * 60) if ok and spans and total > 0 else pd.NA
            ratio = (
                (total / float(duration))
                if ok and spans and not pd.isna(duration) and duration
                else pd.NA
            )
            rows.append((fid, n_words, speaking, wpm, duration, ratio))
        return pd.DataFrame(
            {
                "file": pd.array([r[0] for r in rows], dtype="string"),
                "words": pd.array([r[1] for r in rows], dtype="Int64"),
                "speaking_time": pd.array([r[2] for r in rows], dtype="Float64"),
                "words_per_minute": pd.array([r[3] for r in rows], dtype="Float64"),
                "duration": pd.array([r[4] for r in rows], dtype="Float64"),
                "speech_ratio": pd.array([r[5] for r in rows], dtype="Float64"),
            },
            index=self.frame.index,
        )

    # --- speakers (transcribe(..., diarize=True)) and quality ------------------------------
    @property
    def speakers(self) -> pd.DataFrame:
        """Per file and speaker: talk_time, share, turns, words, words_per_minute and
        longest_monologue (empty without diarization)."""
        return _nt.speakers_table(self.segments, self.words)

    def turn_taking(self, *, overlap_tolerance: float = 0.0) -> pd.DataFrame:
        """Who follows whom: handovers, median gap and interruptions per speaker pair."""
        return _nt.turn_taking(self.segments, overlap_tolerance=overlap_tolerance)

    def talk_time_chart(self, *, ax: Any = None) -> Any:
        """A bar chart of talk time per speaker (a matplotlib Figure, or ``ax``)."""
        return _nt.talk_time_figure(self.speakers, ax=ax)

    def speaker_timeline(self, file: Any, *, ax: Any = None) -> Any:
        """Who speaks when in one file (a matplotlib Figure, or ``ax``)."""
        return _nt.timeline_figure(self.segments, self._file_id(file), ax=ax)

    def flagged(self) -> pd.DataFrame:
        """Segments with a quality ``flag`` (silence, repetition, low_confidence) and files that
        came back without speech (flag ``no_speech``), to check by ear or drop."""
        segs = (
            self.segments[self.segments["flag"].notna().to_numpy()]
            if "flag" in self.segments
            else self.segments.iloc[:0]
        )
        silent = self.frame[self.frame["status"].eq("no_speech").fillna(False).to_numpy()]
        rows = pd.DataFrame(
            {"file": silent["file"], "segment": pd.array([pd.NA] * len(silent), dtype="Int64"),
             "flag": pd.array(["no_speech"] * len(silent), dtype="string")}
        )  # fmt: skip
        return pd.concat([segs, rows], ignore_index=True) if len(rows) else segs

    def search_text(
        self,
        pattern: str,
        *,
        regex: bool = False,
        case: bool = False,
        speaker: str | Sequence[str] | None = None,
    ) -> pd.DataFrame:
        """Segments whose text contains ``pattern`` (a keyword, or a regular expression),
        optionally only those of ``speaker`` (a label or a list of labels).

        >>> res.search_text("budget")[["file", "start", "end", "text"]]   # doctest: +SKIP
        """
        if not isinstance(pattern, str) or not pattern:
            raise InvalidParameterError(
                f"search_text() needs a non-empty str pattern. Got {pattern!r}."
            )
        if regex:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise InvalidParameterError(
                    f"search_text(): {pattern!r} is not a valid regular expression ({exc})."
                ) from None
        hit = self.segments["text"].str.contains(pattern, case=case, regex=regex).fillna(False)
        return self._of_speaker(self.segments[hit.to_numpy(dtype=bool)], speaker)

    def _of_speaker(self, frame: pd.DataFrame, speaker: Any) -> pd.DataFrame:
        if speaker is None:
            return frame
        if "speaker" not in frame.columns:
            raise InvalidParameterError(
                "These segments have no speakers: transcribe with diarize=True to filter by speaker."
            )
        wanted = [speaker] if isinstance(speaker, str) else list(speaker)
        return frame[frame["speaker"].isin(wanted).fillna(False).to_numpy()]

    def semantic_search(
        self,
        query: str | Sequence[str],
        k: int = 5,
        *,
        model: str | None = None,
        mode: str = "dense",
        where: Any = None,
        speaker: str | Sequence[str] | None = None,
    ) -> pd.DataFrame:
        """The ``k`` segments closest in meaning to ``query``, through the embeddings feature.

        Segment texts are embedded once per result (and cached like every embedding); returns
        query, rank, score and the segment columns, best first. ``mode`` ("dense",
        "lexical" or "hybrid") and ``where`` (a bool mask or a callable on the segments) are
        those of :meth:`deapi_ds.SearchIndex.search`.

        >>> res.semantic_search("pricing questions", k=3)   # doctest: +SKIP
        """
        from . import embeddings as _embeddings  # lazy
        from .search import SearchIndex  # lazy

        emb_model = model or get_profile(get_config()).default_models.get(
            "embeddings", "Bge_M3_FP16"
        )
        index = self._index_cache.get(emb_model)
        if index is None:
            frame = self.segments.reset_index(drop=True)
            texts = frame["text"].fillna("").astype(str).tolist()
            if not texts:
                raise InvalidParameterError(
                    "semantic_search(): this result has no segments to search."
                )
            res = _embeddings.embed(texts, model=emb_model, progress=False)
            matrix = res.matrix

            def embed_queries(qs: list[str]) -> np.ndarray:
                return _embeddings.embed(list(qs), model=emb_model, progress=False).matrix

            index = SearchIndex(frame, matrix, embed=embed_queries, text_column="text")
            self._index_cache[emb_model] = index
        if speaker is None:
            return index.search(query, k=k, mode=mode, where=where)
        hits = self._of_speaker(
            index.search(query, k=len(self.segments), mode=mode, where=where), speaker
        )
        return hits.groupby("query", sort=False).head(k) if "query" in hits else hits.head(k)

    # --- listening --------------------------------------------------------------------------
    def audio(self, file: Any) -> bytes:
        """The bytes of one file: kept in memory (bytes inputs, ``keep_audio=True``) or re-read."""
        fid = self._file_id(file)
        source = self._sources.get(fid)
        if isinstance(source, bytes):
            return source
        if source is None:
            raise InvalidParameterError(f"No audio is known for {fid!r}.")
        try:
            with open(source, "rb") as fh:
                return fh.read()
        except OSError as exc:
            raise InvalidParameterError(
                f"Cannot re-read {source!r} to play it ({exc.strerror or exc}); transcribe with "
                "keep_audio=True to keep the audio in memory."
            ) from None

    def _segment_row(self, segment_row: Any) -> Mapping[str, Any]:
        if isinstance(segment_row, pd.Series):
            return segment_row
        if isinstance(segment_row, tuple) and len(segment_row) == 2:
            fid = self._file_id(segment_row[0])
            segs = self.segments
            hit = segs[
                (segs["file"].eq(fid) & segs["segment"].eq(segment_row[1])).fillna(False).to_numpy()
            ]
            if hit.empty:
                raise InvalidParameterError(f"File {fid!r} has no segment {segment_row[1]!r}.")
            return hit.iloc[0]
        if isinstance(segment_row, int | np.integer) and not isinstance(segment_row, bool):
            if segment_row in self.segments.index:
                return self.segments.loc[segment_row]
        raise InvalidParameterError(
            "play() takes a row of .segments (e.g. res.segments.iloc[3]), its index label, or a "
            f"(file, segment) pair. Got {segment_row!r}."
        )

    def _player(self, row: Mapping[str, Any], max_bytes: int) -> str:
        from ._result import audio_html  # lazy

        start = None if pd.isna(row["start"]) else float(row["start"])
        end = None if pd.isna(row["end"]) else float(row["end"])
        data = self.audio(row["file"])
        if len(data) <= max_bytes:
            return audio_html(data, start=start, end=end, max_bytes=max_bytes)
        # big file: embed just the segment, re-encoded
        clip = _media.extract_audio(data, fmt="mp3", start=start, end=end, name=str(row["file"]))
        return audio_html(clip, max_bytes=max_bytes)

    def play(self, segment_row: Any, *, max_bytes: int = 2_000_000) -> Any:
        """An inline ``<audio>`` player for one segment (clipped with a ``#t=start,end`` fragment).

        >>> res.play(res.segments.iloc[0])        # doctest: +SKIP
        """
        row = self._segment_row(segment_row)
        return _html(self._player(row, max_bytes))

    def view_segments(
        self, file: Any = None, *, max_rows: int = 50, max_bytes: int = 2_000_000
    ) -> Any:
        """An HTML table of segments (of one file, or all) where each row plays its audio.

        Each row embeds only its own segment (a small mono mp3 clip; each file is decoded once),
        so a page of segments of a long file stays small.
        """

        from ._result import audio_html  # lazy

        segs = self.segments if file is None else self.segments_of(file)
        segs = segs.iloc[:max_rows]
        players: dict[Any, str] = {}
        for fid, group in segs.groupby("file", sort=False):
            timed = group[group["start"].notna() & group["end"].gt(group["start"]).fillna(False)]
            try:
                clips = _media.clip_audio(
                    self.audio(fid),
                    list(
                        zip(timed["start"].astype(float), timed["end"].astype(float), strict=True)
                    ),
                    name=str(fid),
                )
            except (InvalidParameterError, ValueError, OSError) as exc:
                note = f'<span style="color:#777;font-style:italic">{escape(str(exc))}</span>'
                players.update(dict.fromkeys(group.index, note))
                continue
            for label, clip in zip(timed.index, clips, strict=True):
                players[label] = audio_html(clip or None, max_bytes=max_bytes)
        style = "padding:3px 8px;border-bottom:1px solid #e3e3e3;vertical-align:top;text-align:left"
        head = "".join(
            f'<th style="{style}">{h}</th>'
            for h in ("file", "segment", "start", "end", "text", "audio")
        )
        body = []
        for label, row in segs.iterrows():
            player = players.get(label)
            if player is None:  # no timestamps: the whole file, when it is small enough
                try:
                    player = self._player(row, max_bytes)
                except (InvalidParameterError, ValueError, OSError) as exc:
                    player = f'<span style="color:#777;font-style:italic">{escape(str(exc))}</span>'
            cells = [escape(str(row["file"])), escape(str(row["segment"])),
                     f"{row['start']:.2f}" if not pd.isna(row["start"]) else "",
                     f"{row['end']:.2f}" if not pd.isna(row["end"]) else "",
                     escape(str(row["text"]))]  # fmt: skip
            body.append(
                "<tr>"
                + "".join(f'<td style="{style}">{c}</td>' for c in cells)
                + f'<td style="{style}">{player}</td></tr>'
            )
        table = f'<table style="border-collapse:collapse"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'
        return _html(table)
