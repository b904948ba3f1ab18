"""The emulated model catalogue, voices and limits, and the token estimate.

Everything the emulator knows about deAPI's models lives here, in plain data, so that the
handlers in ``_app.py`` only look values up. The figures come from deAPI's documentation
(see /work/shared/deapi-reference.md when developing); where deAPI documents nothing the
emulator picks a plausible value and says so in the docstring of the field.

Embedding vectors
-----------------
``embed_texts`` stands in for BGE-M3: each text is lower-cased and split into words (``\\w+``);
its features are the word unigrams (weight 1.0), word bigrams (weight 0.7) and the character
3-grams of each word padded as ``<word>`` (total weight 0.5 per word). Every feature is hashed
with BLAKE2b into one of 1024 dimensions with a sign (signed feature hashing), the weights are
summed and the vector is L2-normalised. Texts sharing words therefore have clearly higher cosine
similarity than unrelated texts, and near-spellings ("colour"/"color") still overlap through the
3-grams. Vectors are float32, identical across runs, machines and processes.

Token estimate
--------------
deAPI bills embeddings per token of BGE-M3's tokenizer, which the emulator does not ship.
It uses a deterministic estimate of the same order instead::

    tokens(text) = max(1, len(text.encode("utf-8")) // 4 + number_of_words(text))

where words are maximal runs of ``\\w`` characters (Unicode aware). English prose comes out
at about 1.3-1.5 tokens per word, close to a sub-word tokenizer, and the figure grows with
both the length and the number of words, so limits (8192 tokens per input, 300,000 per
request) trip at roughly the same sizes as on deAPI.

>>> count_tokens("The quick brown fox")
8
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "EMBEDDING_DIMENSIONS",
    "MAX_EMBEDDING_INPUTS",
    "MAX_REQUEST_TOKENS",
    "MAX_TOKENS_PER_INPUT",
    "MODELS",
    "OPENAI_VOICE_ALIASES",
    "KOKORO_VOICES",
    "ModelProfile",
    "count_tokens",
    "embed_texts",
]

_WORD_RE = re.compile(r"\w+")

#: Unix time used as the ``created`` field of every model (deAPI's own examples use it).
MODEL_CREATED = 1700000000

MAX_EMBEDDING_INPUTS = 2048
MAX_TOKENS_PER_INPUT = 8192
MAX_REQUEST_TOKENS = 300_000
EMBEDDING_DIMENSIONS = 1024


def count_tokens(text: str) -> int:
    """Estimate the number of tokens deAPI bills for ``text`` (see the module docstring).

    >>> count_tokens("hello world")
    4
    >>> count_tokens("")
    1
    """
    return max(1, len(text.encode("utf-8")) // 4 + len(_WORD_RE.findall(text)))


@dataclass(frozen=True)
class ModelProfile:
    """What the emulator enforces for one model slug.

    ``tasks`` names the emulator endpoints the model serves (``"images.generations"``,
    ``"images.edits"``, ``"audio.speech"``, ``"audio.transcriptions"``, ``"embeddings"``,
    ``"videos"``). Size limits are in pixels; ``size_step`` means width and height must be
    multiples of it.
    """

    id: str
    tasks: tuple[str, ...]
    min_size: int = 0
    max_size: int = 0
    size_step: int = 1
    min_steps: int | None = None
    max_steps: int | None = None
    max_input_images: int = 0
    timestamp_levels: tuple[str, ...] = ()
    min_seconds: float = 0.0
    max_seconds: float = 0.0
    fps: int = 0
    extra: dict[str, object] = field(default_factory=dict)

    def check_size(self, width: int, height: int) -> str | None:
        """Return why ``width x height`` is not allowed for this model, or None if it is."""
        for name, value in (("width", width), ("height", height)):
            if not self.min_size <= value <= self.max_size:
                return (
                    f"The {name} {value} is out of range for model '{self.id}': width and height "
                    f"must be between {self.min_size} and {self.max_size} pixels."
                )
            if value % self.size_step:
                lower = value - value % self.size_step
                return (
                    f"The {name} {value} is not allowed for model '{self.id}': width and height "
                    f"must be multiples of {self.size_step} (for example {max(lower, self.min_size)} "
                    f"or {lower + self.size_step})."
                )
        return None


_PROFILES = [
    ModelProfile(
        "Flux1schnell",
        ("images.generations",),
        min_size=256,
        max_size=2048,
        size_step=128,
        min_steps=1,
        max_steps=10,
    ),
    ModelProfile(
        "ZImageTurbo_INT8",
        ("images.generations",),
        min_size=256,
        max_size=2048,
        size_step=16,
        min_steps=1,
        max_steps=50,
    ),
    ModelProfile(
        "Flux_2_Klein_4B_BF16",
        ("images.generations", "images.edits"),
        min_size=256,
        max_size=1536,
        size_step=16,
        min_steps=4,
        max_steps=4,
        max_input_images=3,
    ),
    ModelProfile(
        "QwenImageEdit_Plus_NF4",
        ("images.edits",),
        min_size=64,
        max_size=5000,
        size_step=1,
        min_steps=1,
        max_steps=50,
        max_input_images=1,
    ),
    ModelProfile("Kokoro", ("audio.speech",)),
    ModelProfile("WhisperLargeV3", ("audio.transcriptions",), timestamp_levels=("segment",)),
    ModelProfile(
        "WhisperLargeV3Ct2", ("audio.transcriptions",), timestamp_levels=("segment", "word")
    ),
    ModelProfile("Bge_M3_FP16", ("embeddings",)),
    # Video: frames 49-241 at 24 fps (about 2-10 s); the pixel range is not documented,
    # the emulator allows 256-1280 in steps of 16 (which includes 1280x720 and 720x1280).
    ModelProfile(
        "Ltx2_3_22B_Dist_INT8",
        ("videos",),
        min_size=256,
        max_size=1280,
        size_step=16,
        min_seconds=2.0,
        max_seconds=10.0,
        fps=24,
    ),
    # Frames 30-120 at 30 fps (1-4 s).
    ModelProfile(
        "Ltxv_13B_0_9_8_Distilled_FP8",
        ("videos",),
        min_size=256,
        max_size=1280,
        size_step=16,
        min_seconds=1.0,
        max_seconds=4.0,
        fps=30,
    ),
]

#: Model slug -> profile, in the order GET /v1/models lists them.
MODELS: dict[str, ModelProfile] = {p.id: p for p in _PROFILES}

#: Default video model when a request omits ``model`` (OpenAI's default, sora-2, is not on deAPI).
DEFAULT_VIDEO_MODEL = "Ltx2_3_22B_Dist_INT8"

OPENAI_VOICE_ALIASES: tuple[str, ...] = ("alloy", "echo", "fable", "onyx", "nova", "shimmer")

#: Kokoro voice ids deAPI lists (41 voices), grouped by language.
KOKORO_VOICES: dict[str, tuple[str, ...]] = {
    "en-us": (
        "af_alloy",
        "af_aoede",
        "af_bella",
        "af_heart",
        "af_jessica",
        "af_kore",
        "af_nicole",
        "af_nova",
        "af_river",
        "af_sarah",
        "af_sky",
        "am_adam",
        "am_echo",
        "am_eric",
        "am_fenrir",
        "am_liam",
        "am_michael",
        "am_onyx",
        "am_puck",
        "am_santa",
    ),
    "en-gb": (
        "bf_alice",
        "bf_emma",
        "bf_isabella",
        "bf_lily",
        "bm_daniel",
        "bm_fable",
        "bm_george",
        "bm_lewis",
    ),
    "es": ("ef_dora", "em_alex", "em_santa"),
    "fr-fr": ("ff_siwis",),
    "hi": ("hf_alpha", "hf_beta", "hm_omega", "hm_psi"),
    "it": ("if_sara", "im_nicola"),
    "pt-br": ("pf_dora", "pm_alex", "pm_santa"),
}

ALL_VOICES: frozenset[str] = frozenset(OPENAI_VOICE_ALIASES) | frozenset(
    v for voices in KOKORO_VOICES.values() for v in voices
)

#: Speech output formats deAPI's seed document lists (the emulator default allowed set).
SPEECH_FORMATS: tuple[str, ...] = ("mp3", "wav", "flac", "opus")

_MB = 1024 * 1024


@dataclass(frozen=True)
class DeapiLimits:
    """Which deAPI the emulator plays: the seed document's or today's (deAPI docs of 2026-08-19).

    ``speech_formats``: what ``/v1/audio/speech`` returns (others get 400).
    ``max_audio_bytes`` / ``max_video_bytes``: largest transcription upload per file (413 above);
    ``max_request_bytes``: the whole request body (413 above; None: no separate check).
    ``daily_quotas``: tier -> endpoint key -> requests per UTC day (429
    ``{"message": "Too Many Attempts."}`` once spent; counters reset at 00:00 UTC).
    """

    name: str
    speech_formats: tuple[str, ...]
    max_audio_bytes: int
    max_video_bytes: int
    max_request_bytes: int | None
    daily_quotas: dict[str, dict[str, int]] = field(default_factory=dict)


#: Basic tier requests per day (deAPI's v2 limits page); Premium has no daily limit.
BASIC_DAILY_QUOTAS: dict[str, int] = {
    "embeddings": 500,
    "audio.transcriptions": 10,
    "images.generations": 100,
    "images.edits": 15,
    "audio.speech": 300,
    "videos": 15,
    "videos.retrieve": 200,
}

LIMITS: dict[str, DeapiLimits] = {
    "seed": DeapiLimits("seed", SPEECH_FORMATS, 80 * _MB, 80 * _MB, None),
    "today": DeapiLimits(
        "today",
        ("mp3",),
        20 * _MB,
        50 * _MB,
        75 * _MB,
        {"basic": BASIC_DAILY_QUOTAS, "premium": {}},
    ),
}

#: Upload extensions treated as video (their limit is ``max_video_bytes``).
VIDEO_EXTENSIONS = frozenset({".mp4", ".mov", ".avi", ".wmv", ".mkv", ".m4v", ".mpeg", ".mpg"})

SPEECH_CONTENT_TYPES: dict[str, str] = {
    "mp3": "audio/mpeg",
    "wav": "audio/wav",
    "flac": "audio/flac",
    "opus": "audio/ogg",
    "aac": "audio/aac",
    "pcm": "audio/pcm",
}

SPEECH_MIN_SPEED = 0.5
SPEECH_MAX_SPEED = 2.0
SPEECH_MAX_CHARS = 10_000

MAX_IMAGES_PER_REQUEST = 4
MAX_IMAGE_UPLOAD_BYTES = 10 * 1024 * 1024
MIN_IMAGE_SIDE = 64
MAX_IMAGE_SIDE = 5000


# --------------------------------------------------------------------------- embeddings

_UNIGRAM_WEIGHT = 1.0
_BIGRAM_WEIGHT = 0.7
_CHARGRAM_TOTAL_WEIGHT = 0.5
_CACHE_LIMIT = 200_000
# feature string -> (dimension indices, signed weights) as plain tuples (fast to extend lists)
_word_cache: dict[str, tuple[tuple[int, ...], tuple[float, ...]]] = {}
_bigram_cache: dict[str, tuple[int, float]] = {}


def _hash_feature(feature: str, dim: int) -> tuple[int, float]:
    digest = hashlib.blake2b(feature.encode("utf-8"), digest_size=8).digest()
    value = int.from_bytes(digest, "little")
    return value % dim, (1.0 if (value >> 63) else -1.0)


def _word_features(word: str, dim: int) -> tuple[tuple[int, ...], tuple[float, ...]]:
    cached = _word_cache.get(word)
    if cached is not None:
        return cached
    index, sign = _hash_feature("w:" + word, dim)
    indices = [index]
    weights = [sign * _UNIGRAM_WEIGHT]
    padded = f"<{word}>"
    grams = [padded[i : i + 3] for i in range(len(padded) - 2)]
    gram_weight = _CHARGRAM_TOTAL_WEIGHT / max(1, len(grams)) ** 0.5
    for gram in grams:
        index, sign = _hash_feature("c:" + gram, dim)
        indices.append(index)
        weights.append(sign * gram_weight)
    result = (tuple(indices), tuple(weights))
    if len(_word_cache) >= _CACHE_LIMIT:
        _word_cache.clear()
    _word_cache[word] = result
    return result


def _bigram_feature(first: str, second: str, dim: int) -> tuple[int, float]:
    key = first + " " + second
    cached = _bigram_cache.get(key)
    if cached is None:
        index, sign = _hash_feature("b:" + key, dim)
        cached = (index, sign * _BIGRAM_WEIGHT)
        if len(_bigram_cache) >= _CACHE_LIMIT:
            _bigram_cache.clear()
        _bigram_cache[key] = cached
    return cached


def embed_texts(texts: list[str], dim: int = EMBEDDING_DIMENSIONS) -> np.ndarray:
    """Return the deterministic, L2-normalised float32 matrix ``(len(texts), dim)``.

    See the module docstring for the features. Whitespace-only or punctuation-only texts
    are hashed as one "word" made of the raw text, so every text has a non-zero vector.

    >>> m = embed_texts(["red apple pie", "apple pie recipe", "quantum chromodynamics"])
    >>> m.shape, m.dtype.name
    ((3, 1024), 'float32')
    >>> bool(m[0] @ m[1] > m[0] @ m[2])
    True
    """
    n = len(texts)
    rows: list[int] = []
    indices: list[int] = []
    weights: list[float] = []
    for row, text in enumerate(texts):
        words = _WORD_RE.findall(text.lower())
        if not words:
            words = [text.strip().lower() or text]
        start = len(indices)
        for word in words:
            word_indices, word_weights = _word_features(word, dim)
            indices.extend(word_indices)
            weights.extend(word_weights)
        for first, second in zip(words, words[1:], strict=False):
            index, weight = _bigram_feature(first, second, dim)
            indices.append(index)
            weights.append(weight)
        rows.extend([row] * (len(indices) - start))
    flat = np.asarray(rows, dtype=np.int64) * dim + np.asarray(indices, dtype=np.int64)
    matrix = np.bincount(flat, weights=np.asarray(weights), minlength=n * dim).reshape(n, dim)
    norms = np.linalg.norm(matrix, axis=1)
    for row in np.flatnonzero(norms == 0):  # cancelled features: a deterministic unit vector
        index, sign = _hash_feature("z:" + texts[row], dim)
        matrix[row, index] = sign
        norms[row] = 1.0
    return (matrix / norms[:, None]).astype(np.float32)
