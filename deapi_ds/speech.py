"""Text-to-speech for a column of texts: one audio clip per (text, voice), cached and playable inline.

:func:`speak` validates everything against the provider profile before spending (model, voices,
formats, speed), skips empty rows, splits texts longer than the model's ``max_chars`` at
sentence boundaries, sends each distinct part once (cached per part, voice, format, speed and
model), joins the parts of a long text back into ONE clip in the requested format and measures
each clip's duration locally. Several voices give a comparison table in one call.

>>> import deapi_ds
>>> from deapi_ds.speech import estimate_speech, speak
>>> emu = deapi_ds.use_emulator()
>>> out = speak(["Hello there.", "Bonjour."], voice=["af_bella", "bm_george"], cache=None)
>>> out[["text", "voice", "status"]].shape
(4, 3)
>>> estimate_speech(["Hello there."] * 3, cache=None).characters
36

:func:`voices` lists the voices a model takes, with their language and gender.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import unicodedata
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from . import _media
from ._cache import USE_DEFAULT, make_key, resolve_cache
from ._client import AsyncClient, Client
from ._common import is_missing
from ._estimate import Estimate
from ._exceptions import InvalidParameterError
from ._pipeline import (
    CACHED,
    Answer,
    Progress,
    Task,
    as_series,
    check_outcome,
    quota_fields,
    run_task,
    text_problem,
)
from ._profiles import KOKORO_VOICES, OPENAI_VOICE_ALIASES, ModelProfile, get_profile
from ._result import STATUS_DTYPE, ResultFrame, error_columns, write_media
from ._speech_formats import fetch_speech
from ._tasks import resolve_client, syncify

__all__ = [
    "SpeechEstimate",
    "SpeechResult",
    "aspeak",
    "estimate_speak",
    "estimate_speech",
    "join_audio",
    "speak",
    "split_sentences",
    "voices",
]

TASK = "audio.speech"
#: Formats OpenAI's /v1/audio/speech knows; used when the profile does not know the model.
OPENAI_FORMATS = ("mp3", "opus", "aac", "flac", "wav", "pcm")
#: Formats whose parts are joined by decoding to PCM and re-encoding (PyAV).
_REENCODE = {"mp3": "mp3", "wav": "wav", "flac": "flac", "opus": "opus"}
#: Raw formats whose parts are joined by concatenating bytes (ADTS frames, raw samples).
_CONCAT = ("aac", "pcm")
_EXTENSIONS = {"opus": "opus", "pcm": "pcm", "aac": "aac"}
#: OpenAI documents speed in [0.25, 4.0].
_SPEED_RANGE = (0.25, 4.0)
#: pcm is 24 kHz signed 16-bit little-endian mono (OpenAI's documented raw format).
_PCM_BYTES_PER_SECOND = 24_000 * 2
#: The longest text spoken as one clip. The parts of a text are joined in memory, decoded to
#: float PCM (about 100 KB per second of speech): 1 MB of text would be ~18 hours of audio and
#: ~10 GiB to join. Longer texts become error rows before anything is sent.
MAX_TEXT_CHARS = 20_000
#: At most this many bytes of audio are embedded in a result's notebook HTML.
INLINE_AUDIO_BUDGET = 8_000_000

_LANGUAGE_NAMES = {
    "en-us": "American English",
    "en-gb": "British English",
    "es": "Spanish",
    "fr-fr": "French",
    "hi": "Hindi",
    "it": "Italian",
    "pt-br": "Brazilian Portuguese",
    "ja": "Japanese",
    "zh": "Mandarin Chinese",
}
#: Kokoro id prefix (first letter) -> language code, for ids not listed in the profile.
_PREFIX_LANGUAGE = {
    "a": "en-us",
    "b": "en-gb",
    "e": "es",
    "f": "fr-fr",
    "h": "hi",
    "i": "it",
    "p": "pt-br",
    "j": "ja",
    "z": "zh",
}


# --------------------------------------------------------------------------- voices


def _voice_language(voice: str) -> str | None:
    for language, ids in KOKORO_VOICES.items():
        if voice in ids:
            return language
    if re.fullmatch(r"[a-z][fm]_\w+", voice):
        return _PREFIX_LANGUAGE.get(voice[0])
    return None


def voices(model: str = "Kokoro", *, client: Client | AsyncClient | None = None) -> pd.DataFrame:
    """The voices ``model`` takes: ``voice``, ``language``, ``language_name``, ``gender``, ``kind``.

    Kokoro voice ids carry their language and gender in the prefix (``af_`` = American English,
    female; ``bm_`` = British English, male; ``ef_``/``em_`` Spanish, ``ff_`` French,
    ``hf_``/``hm_`` Hindi, ``if_``/``im_`` Italian, ``pf_``/``pm_`` Brazilian Portuguese). The
    six OpenAI aliases (``alloy``, ``echo``, ...) are accepted too; deAPI does not document
    which Kokoro voice each maps to, so their language and gender are left empty. No request is
    sent: this reads the provider profile.

    >>> v = voices()
    >>> v.loc[v["voice"] == "bm_george", ["language", "gender"]].iloc[0].tolist()
    ['en-gb', 'male']
    >>> v.query("language == 'fr-fr'")["voice"].tolist()
    ['ff_siwis']
    """
    profile = _model_profile(_profile_of(client), model, func="voices")
    known = profile.voices if profile is not None else ()
    if not known:
        raise InvalidParameterError(
            f"The provider profile lists no voices for model {model!r}; the server decides. "
            "Pass a voice name to speak() directly."
        )
    rows = []
    for voice in known:
        if voice in OPENAI_VOICE_ALIASES:
            rows.append((voice, None, None, None, "openai alias"))
            continue
        language = _voice_language(voice)
        gender = {"f": "female", "m": "male"}.get(voice[1:2]) if "_" in voice else None
        rows.append((voice, language, _LANGUAGE_NAMES.get(language or ""), gender, "kokoro"))
    frame = pd.DataFrame(rows, columns=["voice", "language", "language_name", "gender", "kind"])
    return frame.astype(STATUS_DTYPE)


# --------------------------------------------------------------------------- splitting

#: A sentence ends after . ! ? ; … (Hindi ।, Arabic ؟) and any closing quotes or brackets, then
#: whitespace; after a full-width 。！？ no whitespace is needed (CJK has none between sentences).
_SENTENCE_END = re.compile(r"[.!?;…।؟]+[\"'”’»)\]]*\s+|[。！？]+[」』”’）〕\]]*\s*")
_CLAUSE_END = re.compile(r"[,:;—–]\s+|[，、；：]\s*")
_WORD_END = re.compile(r"\s+")


def _cut(text: str, boundary: re.Pattern[str]) -> list[str]:
    """``text`` cut after each ``boundary`` match; the slices join back into ``text`` exactly."""
    out: list[str] = []
    start = 0
    for match in boundary.finditer(text):
        if match.end() > start:
            out.append(text[start : match.end()])
            start = match.end()
    if start < len(text):
        out.append(text[start:])
    return out


def _hard_cut(word: str, max_chars: int) -> list[str]:
    """Cut a word longer than ``max_chars``, never between a letter and its combining marks."""
    out: list[str] = []
    while len(word.rstrip()) > max_chars:
        cut = max_chars
        while cut > 1 and unicodedata.combining(word[cut]):
            cut -= 1
        out.append(word[:cut])
        word = word[cut:]
    out.append(word)
    return out


def _units(text: str, max_chars: int) -> list[str]:
    """Sentences, or for an over-long sentence its clauses, words, or pieces of words."""
    units: list[str] = []
    for sentence in _cut(text, _SENTENCE_END):
        if len(sentence.strip()) <= max_chars:
            units.append(sentence)
            continue
        for clause in _cut(sentence, _CLAUSE_END):
            if len(clause.strip()) <= max_chars:
                units.append(clause)
                continue
            for word in _cut(clause, _WORD_END):
                units.extend(_hard_cut(word, max_chars))
    return units


def _pack(units: list[str], max_chars: int) -> list[str]:
    """Join consecutive units (with their original separators) while they fit in ``max_chars``."""
    parts: list[str] = []
    current = ""
    for unit in units:
        if current.strip() and len((current + unit).strip()) > max_chars:
            parts.append(current.strip())
            current = ""
        current += unit
    if current.strip():
        parts.append(current.strip())
    return parts


def split_sentences(text: str, max_chars: int) -> list[str]:
    """Split ``text`` into parts of at most ``max_chars`` characters at sentence boundaries.

    Consecutive sentences are packed together while they fit; a sentence longer than
    ``max_chars`` is cut at commas/colons/semicolons, then between words, and a single word
    longer than the limit is cut (never happens in real prose). Full-width CJK marks (。！？，、)
    end sentences and clauses without a following space. The parts keep the text's own
    characters and separators, so ``"".join`` of the parts is ``text`` minus the whitespace
    where it was cut. A text that fits is returned as one stripped part.

    >>> split_sentences("One. Two is here! Three?", 12)
    ['One.', 'Two is here!', 'Three?']
    >>> split_sentences("One. Two.", 100)
    ['One. Two.']
    >>> split_sentences("第一句。第二句。第三句。", 8)
    ['第一句。第二句。', '第三句。']
    """
    if not isinstance(max_chars, int) or isinstance(max_chars, bool) or max_chars < 1:
        raise InvalidParameterError(
            f"The 'max_chars' parameter must be an int >= 1. Got {max_chars!r}."
        )
    text = text.strip()
    if len(text) <= max_chars:
        return [text] if text else []
    return _pack(_units(text, max_chars), max_chars)


# --------------------------------------------------------------------------- validation


def _profile_of(client: Client | AsyncClient | None) -> Any:
    if client is None:
        return get_profile(_current_settings())
    return resolve_client(client).profile


def _current_settings() -> Any:
    from ._config import get_config

    return get_config()


def _model_profile(profile: Any, model: str, *, func: str) -> ModelProfile | None:
    if not isinstance(model, str) or not model:
        raise InvalidParameterError(
            f"The 'model' parameter of {func}() must be a model id such as 'Kokoro'. Got {model!r}."
        )
    return profile.require_task(model, "txt2audio", func=func)


def _check_voices(voice: Any, mp: ModelProfile | None, model: str, func: str) -> list[str]:
    names = [voice] if isinstance(voice, str) else voice
    if not isinstance(names, Sequence | pd.Series | np.ndarray) or isinstance(names, bytes):
        raise InvalidParameterError(
            f"The 'voice' parameter of {func}() must be a voice name or a list of them. "
            f"Got {type(voice).__name__}."
        )
    names = list(names)
    if not names:
        raise InvalidParameterError(f"The 'voice' parameter of {func}() is an empty list.")
    for name in names:
        if not isinstance(name, str) or not name:
            raise InvalidParameterError(
                f"The 'voice' parameter of {func}() must hold voice names (str). Got {name!r}."
            )
        valid = mp.voices if mp is not None else ()
        if valid and name not in valid:
            close = difflib.get_close_matches(name, valid, n=5, cutoff=0.6)
            hint = (
                f"Did you mean {', '.join(map(repr, close))}? "
                if close
                else f"Valid voices: {', '.join(valid)}. "
            )
            raise InvalidParameterError(
                f"Unknown voice {name!r} in the 'voice' parameter of {func}() for model {model}. "
                f"{hint}The prefix of a Kokoro id sets the language (af_/am_ US English, bf_/bm_ "
                "British, ef_/em_ Spanish, ff_ French, hf_/hm_ Hindi, if_/im_ Italian, pf_/pm_ "
                "Brazilian Portuguese); deapi_ds.voices() lists them all."
            )
    return list(dict.fromkeys(names))


def _check_format(fmt: Any, mp: ModelProfile | None, model: str, func: str) -> str:
    valid = (mp.formats if mp is not None and mp.formats else None) or OPENAI_FORMATS
    if not isinstance(fmt, str) or fmt.lower() not in valid:
        raise InvalidParameterError(
            f"The 'response_format' parameter of {func}() must be one of {list(valid)} for "
            f"model {model}. Got {fmt!r}."
        )
    return fmt.lower()


def _check_speed(speed: Any, func: str, mp: ModelProfile | None = None) -> float | None:
    if speed is None:
        return None
    lo, hi = _SPEED_RANGE
    if mp is not None and mp.min_speed is not None and mp.max_speed is not None:
        lo, hi = mp.min_speed, mp.max_speed  # the model's own range (Kokoro: 0.5-2.0)
    if (
        isinstance(speed, bool)
        or not isinstance(speed, int | float | np.number)
        or not math.isfinite(float(speed))
        or not lo <= float(speed) <= hi
    ):
        raise InvalidParameterError(
            f"The 'speed' parameter of {func}() must be a number in [{lo}, {hi}] (1.0 is normal "
            f"speed) or None. Got {speed!r}."
        )
    return float(speed)


def _texts(texts: Any, column: Any, func: str) -> pd.Series:
    """The input texts as a Series (keeping a Series' or DataFrame's index)."""
    series = as_series(texts, column, func=func, what="texts")
    for position, value in enumerate(series.tolist()):
        if not is_missing(value) and not isinstance(value, str):
            raise InvalidParameterError(
                f"Row {series.index[position]!r} of the texts given to {func}() is a "
                f"{type(value).__name__} ({value!r}), not a str. Convert the column with "
                ".astype('string') first."
            )
        if isinstance(value, str) and (problem := text_problem(value)) is not None:
            raise InvalidParameterError(
                f"Row {series.index[position]!r} of the texts given to {func}() {problem}."
            )
    return series


# --------------------------------------------------------------------------- planning


@dataclasses.dataclass
class _Row:
    label: Any
    text: str | None
    voice: str
    keys: list[str]
    error: str | None = None  # refused before sending (see MAX_TEXT_CHARS)


def _too_long(text: str) -> str:
    hours = len(text) / 15 / 3600  # about 15 characters per second of speech
    return (
        f"The text has {len(text):,} characters, more than the {MAX_TEXT_CHARS:,} that speak() "
        f"makes into one clip (this one would be about {hours:.1f} h of audio, joined in "
        "memory). Nothing was sent for it. Split it into several rows (chapters or paragraphs), "
        "e.g. with deapi_ds.speech.split_sentences(text, 5_000) and DataFrame.explode()."
    )


@dataclasses.dataclass
class _Plan:
    model: str
    fmt: str
    speed: float | None
    max_chars: int
    price: float | None
    rows: list[_Row]
    parts: dict[str, tuple[str, str]]  # key -> (part text, voice)
    index_name: Any = None


def _plan(
    texts: Any,
    column: Any,
    *,
    model: str,
    voice: Any,
    response_format: Any,
    speed: Any,
    max_chars: int | None,
    client: Any,
    func: str,
) -> _Plan:
    mp = _model_profile(_profile_of(client), model, func=func)
    names = _check_voices(voice, mp, model, func)
    fmt = _check_format(response_format, mp, model, func)
    speed_value = _check_speed(speed, func, mp)
    limit = max_chars if max_chars is not None else (mp.max_chars if mp is not None else None)
    if limit is None:
        limit = 4096  # OpenAI's documented limit, for models the profile does not know
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise InvalidParameterError(
            f"The 'max_chars' parameter of {func}() must be an int >= 1 (the longest text sent "
            f"in one request). Got {max_chars!r}."
        )
    if mp is not None and mp.max_chars is not None and limit > mp.max_chars:
        raise InvalidParameterError(
            f"The 'max_chars' parameter of {func}() is {limit}, but {model} takes at most "
            f"{mp.max_chars} characters per request. Pass max_chars={mp.max_chars} or less "
            "(longer texts are split at sentence boundaries anyway)."
        )
    series = _texts(texts, column, func)
    params = {"voice": None, "format": fmt, "speed": speed_value}
    rows: list[_Row] = []
    parts: dict[str, tuple[str, str]] = {}
    split_cache: dict[str, list[str]] = {}
    for label, value in zip(series.index, series.tolist(), strict=True):
        text = None if is_missing(value) else str(value)
        if text is not None and len(text) > MAX_TEXT_CHARS:
            rows.extend(_Row(label, text, name, [], _too_long(text)) for name in names)
            continue
        if text is not None and text not in split_cache:
            split_cache[text] = split_sentences(text, limit)
        for name in names:
            keys = []
            for part in split_cache.get(text, []) if text is not None else []:
                key = make_key(TASK, model, {**params, "voice": name}, part)
                parts.setdefault(key, (part, name))
                keys.append(key)
            rows.append(_Row(label, text, name, keys))
    return _Plan(
        model=model,
        fmt=fmt,
        speed=speed_value,
        max_chars=limit,
        price=mp.price_per_1m_chars if mp is not None else None,
        rows=rows,
        parts=parts,
        index_name=series.index.name,
    )


# --------------------------------------------------------------------------- estimate


#: the estimate of :func:`speak` is the one :class:`~deapi_ds.Estimate` type (kept as a name)
SpeechEstimate = Estimate


def _estimate(plan: _Plan, cached: set[str]) -> SpeechEstimate:
    rows = []
    billed: set[str] = set()  # each distinct part is paid for once, by the first row using it
    for row in plan.rows:
        chars = len(row.text) if row.text is not None and row.keys else 0
        hit = sum(k in cached for k in row.keys)
        billable = 0
        for key in row.keys:
            if key not in cached and key not in billed:
                billed.add(key)
                billable += len(plan.parts[key][0])
        status = "empty" if not row.keys else ("cached" if hit == len(row.keys) else "pending")
        status = "error" if row.error else status
        rows.append((row.text, row.voice, chars, len(row.keys), hit, billable, status))
    frame = pd.DataFrame(
        rows,
        columns=[
            "text",
            "voice",
            "characters",
            "parts",
            "cached_parts",
            "billable_characters",
            "status",
        ],
        index=pd.Index([r.label for r in plan.rows], name=plan.index_name),
    )
    price = plan.price
    frame["cost"] = (
        frame["billable_characters"] * (price / 1e6) if price is not None else float("nan")
    )
    todo = [k for k in plan.parts if k not in cached]
    billable = sum(len(plan.parts[k][0]) for k in todo)
    frame = _typed(frame, strings=("text", "voice", "status"))
    frame = frame.astype(
        {
            "characters": "Int64",
            "parts": "Int64",
            "cached_parts": "Int64",
            "billable_characters": "Int64",
            "cost": "Float64",
        }
    )
    settings = _current_settings()
    quote = get_profile(settings).price(TASK, plan.model, characters=billable, speed=plan.speed)
    return Estimate(
        func="speak",
        model=plan.model,
        rows=len(plan.rows),
        unique=len(plan.parts),
        cached=len(plan.parts) - len(todo),
        empty=int((frame["status"] == "empty").sum()),
        errors=int((frame["status"] == "error").sum()),  # texts over MAX_TEXT_CHARS
        requests=len(todo),
        quantity=billable,
        unit="characters",
        cost_usd=None if quote is None else quote.usd,
        price_note=None if quote is None else quote.note,
        rpm=settings.rpm_for(TASK) or get_profile(settings).rpm_for(TASK, settings.effective_tier),
        concurrency=settings.max_concurrency,
        details=frame,
        extra={
            "characters": int(frame["characters"].sum()),
            "billable_characters": billable,
        },
        **quota_fields(settings, TASK),
    )


def _typed(frame: pd.DataFrame, strings: Sequence[str]) -> pd.DataFrame:
    return frame.astype({c: STATUS_DTYPE for c in strings})


def estimate_speak(
    data: Any,
    column: Any = None,
    *,
    model: str = "Kokoro",
    voice: str | Sequence[str] = "alloy",
    response_format: str = "mp3",
    speed: float | None = None,
    max_chars: int | None = None,
    client: Client | AsyncClient | None = None,
    cache: Any = USE_DEFAULT,
) -> SpeechEstimate:
    """Characters, requests and cost of a :func:`speak` call, without sending anything: an
    :class:`~deapi_ds.Estimate` whose ``details`` (also ``.frame``) break it down per row.

    Parts already in the cache are not counted as billable. The price comes from the
    provider profile (USD per 1M characters; Kokoro on deAPI: $0.77).

    >>> est = estimate_speak(["Hi.", None, "Hi."], voice=["af_bella", "am_adam"], cache=None)
    >>> est.characters, est.requests, est.frame["status"].tolist()[2:4]
    (12, 2, ['empty', 'empty'])
    """
    plan = _plan(
        data,
        column,
        model=model,
        voice=voice,
        response_format=response_format,
        speed=speed,
        max_chars=max_chars,
        client=client,
        func="estimate_speak",
    )
    store = resolve_cache(cache)
    keys = list(plan.parts)
    hits = {k for k, hit in zip(keys, store.contains(TASK, model, keys), strict=True) if hit}
    return _estimate(plan, hits)


def estimate_speech(*args: Any, **kwargs: Any) -> Estimate:
    """Deprecated alias of :func:`estimate_speak`."""
    warnings.warn(
        "deapi_ds.estimate_speech() is now deapi_ds.estimate_speak()",
        DeprecationWarning,
        stacklevel=2,
    )
    return estimate_speak(*args, **kwargs)


# --------------------------------------------------------------------------- audio helpers


def _duration(audio: bytes, fmt: str) -> float | None:
    """Seconds of an encoded clip (None when it cannot be measured)."""
    if fmt == "pcm":
        return len(audio) / _PCM_BYTES_PER_SECOND
    try:
        return _media.probe(audio, name=f"speech.{fmt}").duration
    except (ValueError, OSError):
        return None


def join_audio(parts: Sequence[bytes], fmt: str) -> bytes:
    """Join encoded clips of one format into one clip of that format.

    mp3, wav, flac and opus are decoded to PCM (at the first part's sample rate), concatenated
    and re-encoded, so the result is a single valid file whose duration is the sum of the
    parts'. aac (ADTS) and pcm are concatenated as they are.
    """
    if len(parts) == 1:
        return parts[0]
    if fmt in _CONCAT:
        return b"".join(parts)
    if fmt not in _REENCODE:
        raise InvalidParameterError(f"Cannot join {fmt} clips; use one of {sorted(_REENCODE)}.")
    return _media.concat_audio(parts, _REENCODE[fmt])


def _safe_name(text: str, limit: int = 40) -> str:
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^A-Za-z0-9]+", "_", ascii_text).strip("_").lower()
    return slug[:limit].rstrip("_") or "clip"


# --------------------------------------------------------------------------- result


class SpeechResult(ResultFrame):
    """Audio clips, one row per (text, voice), rendered with an inline ``<audio>`` player per row.

    Columns: ``text``, ``voice``, ``format``, ``audio`` (bytes), ``duration`` (seconds, measured
    locally), ``characters``, ``parts`` (requests the text took), ``status`` (``"ok"``,
    ``"cached"``, ``"empty"``, ``"error"``), ``error_type``, ``error``, ``cached``.
    With one voice the index is the input's index; with several, each input label repeats
    once per voice (text-major order). :meth:`comparison` pivots voices into columns.
    """

    media = {"audio": "audio"}

    def _take(self, positions: np.ndarray) -> SpeechResult:
        return self._subset(positions)

    def save(self, folder: str | Path, *, overwrite: bool = False) -> pd.Series:
        """Write each clip to ``folder`` and return the paths (NA for rows without audio).

        Names are ``<row number>_<voice>_<first words of the text>.<format>``, ASCII only, so
        they are safe on every file system and sort in the frame's order. A file that already
        holds the same clip is kept; one holding something else is replaced only with
        ``overwrite=True`` (else FileExistsError). Returns a string Series named ``path``,
        indexed like this result.

        >>> paths = result.save("clips")  # doctest: +SKIP
        >>> paths.iloc[0]  # doctest: +SKIP
        'clips/000_af_bella_hello_there.mp3'
        """
        out_dir = Path(folder)
        out_dir.mkdir(parents=True, exist_ok=True)
        width = max(3, len(str(max(len(self.frame) - 1, 0))))
        paths: list[Any] = []
        for i, (text, voice, fmt, audio) in enumerate(
            zip(
                self.frame["text"].tolist(),
                self.frame["voice"].tolist(),
                self.frame["format"].tolist(),
                self.frame["audio"].tolist(),
                strict=True,
            )
        ):
            if audio is None or is_missing(audio):
                paths.append(pd.NA)
                continue
            ext = _EXTENSIONS.get(fmt, fmt)
            name = f"{i:0{width}d}_{_safe_name(voice, 20)}_{_safe_name(text or '')}.{ext}"
            path = out_dir / name
            write_media(path, audio, overwrite=overwrite)
            paths.append(str(path))
        return pd.Series(paths, index=self.frame.index, name="path", dtype=STATUS_DTYPE)

    def comparison(self) -> ResultFrame:
        """One row per text and one audio column per voice: listen to voices side by side.

        >>> out = deapi_ds.speak(["Hi.", "Bye."], voice=["af_bella", "bm_george"])  # doctest: +SKIP
        >>> out.comparison().columns.tolist()  # doctest: +SKIP
        ['text', 'af_bella', 'bm_george']
        """
        frame = self.frame
        voices_in_order = list(dict.fromkeys(frame["voice"].tolist()))
        n = len(voices_in_order)
        texts = frame["text"].iloc[::n] if n else frame["text"]
        wide = pd.DataFrame({"text": texts.to_numpy()}, index=frame.index[::n] if n else None)
        wide["text"] = wide["text"].astype(STATUS_DTYPE)
        for j, name in enumerate(voices_in_order):
            wide[name] = pd.Series(frame["audio"].iloc[j::n].to_numpy(), index=wide.index)
        wide["status"] = [
            _combined_status(frame["status"].iloc[i * n : (i + 1) * n].tolist())
            for i in range(len(wide))
        ]
        wide["status"] = wide["status"].astype(STATUS_DTYPE)

        class _Comparison(ResultFrame):
            media = {name: "audio" for name in voices_in_order}
            _repr_mimebundle_ = SpeechResult._repr_mimebundle_  # the same inline-audio budget

        _Comparison.__name__ = "SpeechComparison"
        return _Comparison(wide, meta=self.meta)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        from ._result import frame_html

        html = frame_html(self.frame, media=dict(self.media), max_media_bytes=INLINE_AUDIO_BUDGET)
        return {"text/plain": repr(self), "text/html": f"<p>{self.summary()}</p>{html}"}


def _combined_status(statuses: list[str]) -> str:
    """One status for a text spoken by several voices: the worst of them."""
    for status in ("error", "empty", "ok"):
        if status in statuses:
            return status
    return "cached"


def _frame(
    plan: _Plan,
    outcomes: Mapping[str, tuple[bytes | None, float | None, BaseException | None]],
    cached: set[str],
) -> pd.DataFrame:
    records = []
    for row in plan.rows:
        record: dict[str, Any] = {
            "text": row.text,
            "voice": row.voice,
            "format": plan.fmt,
            "audio": None,
            "duration": None,
            "characters": len(row.text) if row.text is not None else 0,
            "parts": len(row.keys),
            "status": "ok",
            "error_type": None,
            "error": None,
            "cached": False,
        }
        if row.error:
            record.update(status="error", error_type="InvalidInput", error=row.error)
            records.append(record)
            continue
        if not row.keys:
            record.update(status="empty", characters=0)
            records.append(record)
            continue
        failures = [outcomes[k][2] for k in row.keys if outcomes[k][2] is not None]
        if failures:
            exc = failures[0]
            record.update(status="error", error_type=type(exc).__name__, error=str(exc))
            records.append(record)
            continue
        pieces = [outcomes[k][0] for k in row.keys]
        try:
            audio = join_audio(pieces, plan.fmt)  # type: ignore[arg-type]
        except (ValueError, OSError, RuntimeError) as exc:
            record.update(
                status="error",
                error_type=type(exc).__name__,
                error=f"The {len(pieces)} parts of this text could not be joined: {exc}",
            )
            records.append(record)
            continue
        if len(pieces) == 1 and outcomes[row.keys[0]][1] is not None:
            duration = outcomes[row.keys[0]][1]
        else:
            duration = _duration(audio, plan.fmt)
        all_cached = all(k in cached for k in row.keys)
        record.update(
            audio=audio,
            duration=duration,
            cached=all_cached,
            status="cached" if all_cached else "ok",
        )
        records.append(record)
    frame = pd.DataFrame.from_records(
        records,
        columns=[
            "text",
            "voice",
            "format",
            "audio",
            "duration",
            "characters",
            "parts",
            "status",
            "error_type",
            "error",
            "cached",
        ],
        index=pd.Index([r.label for r in plan.rows], name=plan.index_name),
    )
    frame["audio"] = frame["audio"].astype(object)
    frame = _typed(frame, strings=("text", "voice", "format"))
    frame = frame.astype(
        {"duration": "Float64", "characters": "Int64", "parts": "Int64", "cached": "boolean"}
    )
    return error_columns(frame)


# --------------------------------------------------------------------------- speak


async def aspeak(
    data: Any,
    column: Any = None,
    *,
    model: str = "Kokoro",
    voice: str | Sequence[str] = "alloy",
    response_format: str = "mp3",
    speed: float | None = None,
    max_chars: int | None = None,
    client: Client | AsyncClient | None = None,
    cache: Any = USE_DEFAULT,
    progress: bool | None = None,
) -> SpeechResult:
    """Speak each text with each voice: a :class:`SpeechResult` with one audio clip per row.

    ``data`` is a str, a list, a Series, or a DataFrame with ``column=``. ``voice`` is a voice
    name or a list of them (texts x voices rows: a comparison table in one call; see
    :func:`voices`). ``response_format`` is one of the profile's formats (mp3, wav, flac, opus
    for Kokoro); a format the server does not return itself (deAPI today: anything but mp3) is
    requested as mp3 and converted locally, with the same duration. Texts longer than ``max_chars`` (default: the model's
    limit in the profile) are split at sentence boundaries, and the parts are joined back into
    one clip. Empty or missing texts give status ``"empty"`` without a request; a text longer
    than :data:`MAX_TEXT_CHARS` (20,000, about 20 minutes of speech) is an error row, refused
    before sending. Each distinct
    part is requested once and cached per (part, voice, format, speed, model); a rerun sends
    nothing for cached parts. :func:`estimate_speak` takes the same arguments and tells what
    would be sent and paid, sending nothing.

    Everything is checked before any request: an unknown voice or format raises
    :class:`~deapi_ds.InvalidParameterError` naming the valid ones. A failed request becomes
    its row's ``status="error"`` with ``error_type`` and ``error``.

    >>> import deapi_ds
    >>> emu = deapi_ds.use_emulator()
    >>> out = await deapi_ds.aspeak(["Good morning.", None], voice="af_bella")  # doctest: +SKIP
    >>> out["status"].tolist(), out["duration"].iloc[0] > 0  # doctest: +SKIP
    (['ok', 'empty'], True)
    """
    plan = _plan(
        data,
        column,
        model=model,
        voice=voice,
        response_format=response_format,
        speed=speed,
        max_chars=max_chars,
        client=client,
        func="speak",
    )
    store = resolve_cache(cache)
    keys = list(plan.parts)
    aclient = resolve_client(client)
    task = _SpeechTask(plan, aclient=aclient, model=model)
    bar = Progress(
        len(keys), desc=f"speak ({model})", unit="clip", show=progress, engine=aclient.engine
    )
    try:
        outcome = await run_task(task, store=store, aclient=aclient, progress=bar)
    finally:
        bar.close()
    cached = {keys[i] for i in np.flatnonzero(outcome.status == CACHED)}
    for uid, exc in outcome.errors.items():
        task.outcomes[keys[uid]] = (None, None, exc)
    frame = _frame(plan, task.outcomes, cached)
    result = SpeechResult(
        frame,
        meta={
            "model": model,
            "format": plan.fmt,
            "requests": outcome.requests,
            "cached": len(cached),
        },
    )
    return check_outcome(result, func="speak")


class _SpeechTask(Task):
    """Speech on the pipeline: a unit is one distinct (text part, voice); one request each."""

    name = TASK
    func = "speak"
    endpoint = TASK
    cache_columns = ("audio", "duration")
    unit_name = "clip"

    def __init__(self, plan: _Plan, *, aclient: AsyncClient, model: str) -> None:
        self.plan = plan
        self.aclient = aclient
        self.model = model
        self._keys = list(plan.parts)
        self.outcomes: dict[str, tuple[bytes | None, float | None, BaseException | None]] = {}

    def keys(self) -> list[str]:
        return self._keys

    async def call(self, ids: np.ndarray) -> Answer:
        key = self._keys[int(ids[0])]
        part, name = self.plan.parts[key]
        # formats the server does not return itself come as mp3, converted locally
        audio = await fetch_speech(
            self.aclient,
            part,
            model=self.model,
            voice=name,
            fmt=self.plan.fmt,
            speed=self.plan.speed,
        )
        return Answer(ids, [(audio, _duration(audio, self.plan.fmt))])

    def from_cache(self, ids: np.ndarray, table: pa.Table) -> np.ndarray:
        durations = (
            table["duration"].to_pylist()
            if "duration" in table.column_names
            else [None] * table.num_rows
        )
        accepted = []
        for uid, audio, seconds in zip(
            ids.tolist(), table["audio"].to_pylist(), durations, strict=True
        ):
            if audio:
                self.outcomes[self._keys[uid]] = (audio, seconds, None)
                accepted.append(uid)
        return np.asarray(accepted, dtype=np.int64)

    def accept(self, ids: np.ndarray, value: list[tuple[bytes, float | None]]) -> None:
        for uid, (audio, seconds) in zip(ids.tolist(), value, strict=True):
            self.outcomes[self._keys[uid]] = (audio, seconds, None)

    def to_cache(self, ids: np.ndarray, value: Any, keys: Sequence[str]) -> pa.Table:
        return pa.table(
            {
                "key": pa.array(keys, pa.string()),
                "audio": pa.array([a for a, _ in value], pa.binary()),
                "duration": pa.array([d for _, d in value], pa.float64()),
                "characters": pa.array([len(self.plan.parts[k][0]) for k in keys], pa.int64()),
            }
        )


speak = syncify(aspeak)
