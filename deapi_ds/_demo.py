"""``deapi-ds demo``: the three workflows end to end, plus an image grid, written to one folder.

>>> from deapi_ds._demo import run_demo
>>> run_demo("deapi_ds_output", quick=True)     # doctest: +SKIP
0

Without ``DEAPI_API_KEY`` everything runs on the built-in emulator (offline, free); with it the
same calls go to deAPI. The demo

1. embeds the ``text`` column of ``data/corpus.csv`` (estimate first, then embed) and writes
   ``corpus_embeddings.parquet`` and a 2-D projection coloured by topic;
2. indexes the corpus, runs the labelled queries of ``data/queries.csv``, writes
   ``search_results.parquet`` and measures recall@k;
3. transcribes ``data/clips/`` into ``transcript_files/segments/words.parquet``, exports SRT
   files into ``subtitles/`` and draws a timeline;
4. generates a prompts x seeds image grid (``image_grid.png`` and ``images/``);

and writes ``report.html`` (static HTML: tables, thumbnails, audio players) and
``summary.json`` (what ran, rows served from the cache, requests, seconds, paths).

The result cache lives in ``<out>/cache``: the demo never touches your configured cache, a
second run with the same folder is served from it (and says so), and deleting the folder
starts afresh.

The sample data come from this module too: :func:`make_corpus`, :func:`make_queries`,
:func:`make_clips` and :func:`make_images` are what ``data/make_data.py`` writes into ``data/``,
and the demo regenerates them in memory when ``data/`` is absent (an installed wheel).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import html
import io
import json
import os
import random
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "CLIPS",
    "DATA_DIR",
    "TOPICS",
    "find_data_dir",
    "make_clip",
    "make_clips",
    "make_corpus",
    "make_images",
    "make_queries",
    "recall_at_k",
    "run_demo",
]

#: ``data/`` of a source checkout (absent from an installed wheel).
DATA_DIR = Path(__file__).resolve().parents[1] / "data"

# --------------------------------------------------------------------------------------------
# The sample corpus: template-generated short documents over eight topics
# --------------------------------------------------------------------------------------------

#: Per topic: subjects (what a document is about; the queries target them), nouns, adjectives
#: and verbs. Each topic's words are its own, so lexical embeddings cluster by topic.
TOPICS: dict[str, dict[str, list[str]]] = {
    "sports": {
        "subjects": ["marathon race", "penalty shootout", "tennis final", "cycling stage",
                     "swimming relay", "basketball playoff", "rugby scrum", "ski slalom",
                     "boxing bout", "cricket innings"],
        "nouns": ["coach", "team", "league", "stadium", "referee", "season", "fans", "goal",
                  "championship", "athlete", "training", "medal", "striker", "trophy"],
        "adjectives": ["thrilling", "tense", "record-breaking", "muddy", "decisive", "hard-fought"],
        "verbs": ["won", "lost", "defended", "trained for", "dominated", "scored in"],
    },
    "cooking": {
        "subjects": ["sourdough bread", "tomato risotto", "lemon tart", "chicken curry",
                     "mushroom soup", "beef stew", "apple pie", "pasta carbonara",
                     "vegetable stir fry", "chocolate cake"],
        "nouns": ["recipe", "oven", "kitchen", "chef", "flour", "butter", "garlic", "spices",
                  "dough", "sauce", "skillet", "onions", "herbs", "dinner"],
        "adjectives": ["crispy", "creamy", "homemade", "savory", "slow-cooked", "fragrant"],
        "verbs": ["baked", "simmered", "roasted", "seasoned", "whisked", "served"],
    },
    "finance": {
        "subjects": ["interest rates", "stock market rally", "pension fund", "mortgage payments",
                     "quarterly earnings", "bond yields", "inflation report", "household budget",
                     "index fund", "currency exchange"],
        "nouns": ["investors", "bank", "portfolio", "dividend", "shares", "savings", "economy",
                  "analysts", "loan", "profits", "revenue", "tax", "credit", "markets"],
        "adjectives": ["volatile", "bullish", "bearish", "fiscal", "long-term", "profitable"],
        "verbs": ["raised", "cut", "invested in", "hedged", "forecast", "audited"],
    },
    "space": {
        "subjects": ["mars rover", "lunar lander", "space telescope", "rocket launch",
                     "asteroid flyby", "solar eclipse", "orbiting satellite", "comet tail",
                     "black hole", "space station"],
        "nouns": ["astronauts", "orbit", "galaxy", "planets", "nasa", "mission", "gravity",
                  "spacecraft", "stars", "astronomers", "cosmos", "crater", "booster", "nebula"],
        "adjectives": ["interstellar", "distant", "orbital", "cosmic", "crewed", "robotic"],
        "verbs": ["photographed", "launched", "landed", "tracked", "observed", "docked with"],
    },
    "health": {
        "subjects": ["sleep habits", "blood pressure", "flu vaccine", "knee injury",
                     "vitamin supplements", "heart rate", "back pain", "allergy season",
                     "dental checkup", "mental health"],
        "nouns": ["doctor", "patients", "clinic", "nurse", "symptoms", "therapy", "hospital",
                  "diet", "exercise", "medicine", "treatment", "wellness", "diagnosis", "immune"],
        "adjectives": ["chronic", "healthy", "preventive", "clinical", "gentle", "daily"],
        "verbs": ["treated", "prescribed", "diagnosed", "monitored", "reduced", "improved"],
    },
    "travel": {
        "subjects": ["train journey", "beach resort", "mountain hike", "city break",
                     "road trip", "island ferry", "hostel stay", "desert safari",
                     "river cruise", "airport layover"],
        "nouns": ["passport", "luggage", "tourists", "hotel", "itinerary", "flight", "guide",
                  "backpack", "museum", "visa", "coastline", "souvenirs", "map", "booking"],
        "adjectives": ["scenic", "budget", "off-season", "crowded", "remote", "unforgettable"],
        "verbs": ["visited", "booked", "explored", "toured", "packed for", "photographed"],
    },
    "technology": {
        "subjects": ["smartphone battery", "cloud server", "open source software",
                     "machine learning model", "database migration", "password manager",
                     "laptop keyboard", "wifi router", "mobile app update", "cyber attack"],
        "nouns": ["developers", "code", "users", "software", "chips", "network", "data",
                  "engineers", "startup", "algorithm", "computer", "browser", "privacy",
                  "hardware"],
        "adjectives": ["encrypted", "wireless", "faster", "buggy", "scalable", "open"],
        "verbs": ["deployed", "patched", "upgraded", "debugged", "released", "benchmarked"],
    },
    "music": {
        "subjects": ["jazz concert", "piano sonata", "guitar solo", "rock album",
                     "symphony orchestra", "hip hop mixtape", "opera premiere", "vinyl record",
                     "drum kit", "folk festival"],
        "nouns": ["band", "melody", "singer", "lyrics", "chorus", "audience", "rhythm",
                  "composer", "studio", "tour", "playlist", "violin", "bass", "encore"],
        "adjectives": ["acoustic", "melodic", "loud", "soulful", "live", "experimental"],
        "verbs": ["recorded", "performed", "composed", "rehearsed", "remixed", "sang"],
    },
}  # fmt: skip

_PEOPLE = ["Ana", "Ben", "Chen", "Dara", "Eli", "Fatima", "Goran", "Hana", "Ivo", "Jules",
           "Kofi", "Lena", "Mateo", "Nora", "Omar", "Priya"]  # fmt: skip

#: Sentence frames every topic uses, and frames of each topic (whose fixed words are the topic's
#: own, so documents of a topic share words beyond their slots).
_TEMPLATES = [
    "{Adj} {subject}: {n1}, {n2} and {n3}.",
    "{person} on the {subject}, the {n1} and the {n2}.",
    "Why the {subject} matters for {n1} and {n2}.",
    "{person} {verb} the {adj} {subject}.",
]
_TOPIC_TEMPLATES: dict[str, list[str]] = {
    "sports": [
        "The team {verb} the {adj} {subject} in front of {n1} at the stadium.",
        "Coach {person} said the athletes {verb} the {subject} this season.",
        "Fans cheered as the {n1} {verb} the {subject} for a medal.",
        "The league reviewed the {subject} after the referee and the {n1} clashed.",
    ],
    "cooking": [
        "In the kitchen, {person} {verb} the {subject} with {n1} and {n2}.",
        "This recipe for {adj} {subject} needs {n1}, {n2} and a hot oven.",
        "The chef {verb} a {subject} with garlic, butter and {n1}.",
        "Dinner tip: season the {subject} with herbs and {n1} before serving.",
    ],
    "finance": [
        "Investors watched the {subject} as the bank {verb} its {n1} forecast.",
        "Analysts say the {adj} {subject} will move shares, savings and {n1}.",
        "{person} {verb} the portfolio after the {subject} hit the markets.",
        "The economy, the {subject} and {n1}: what the fiscal data show.",
    ],
    "space": [
        "NASA {verb} the {subject} on a {adj} mission beyond orbit.",
        "Astronomers {verb} the {subject} as the spacecraft crossed the {n1}.",
        "Astronauts aboard the station studied the {subject} and the {n1}.",
        "The {subject} sent images of planets, stars and a {adj} {n1}.",
    ],
    "health": [
        "The doctor checked the {subject} and advised exercise, diet and {n1}.",
        "Patients at the clinic asked the nurse about {subject} and {n1}.",
        "A {adj} treatment for {subject}: symptoms, therapy and {n1}.",
        "{person} {verb} the {subject} with medicine and daily wellness habits.",
    ],
    "travel": [
        "Tourists {verb} the {subject} with a passport, a map and {n1}.",
        "Our itinerary: a {adj} {subject}, a hotel booking and the {n1}.",
        "{person} packed luggage for the {subject} and a flight to the coast.",
        "The guide {verb} the {subject} and a museum near the {n1}.",
    ],
    "technology": [
        "Developers {verb} the {subject} after users reported {n1} problems.",
        "The startup {verb} a {adj} {subject} with new software and chips.",
        "Engineers say the {subject} needs better {n1}, code and privacy.",
        "{person} {verb} the {subject} on the network and the browser.",
    ],
    "music": [
        "The band {verb} the {subject} with a {adj} melody and {n1}.",
        "{person} {verb} the {subject} in the studio with the singer.",
        "The audience loved the {subject}, its rhythm, lyrics and {n1}.",
        "On tour, the composer {verb} the {adj} {subject} for the {n1}.",
    ],
}


def _corpus_with_subjects(n_per_topic: int = 125, seed: int = 7) -> pd.DataFrame:
    """The corpus plus the ``subject`` each document was written about (for the queries)."""
    rng = random.Random(seed)
    rows = []
    for topic, vocab in TOPICS.items():
        subjects = vocab["subjects"]
        for i in range(n_per_topic):
            subject = subjects[i % len(subjects)]
            n1, n2, n3 = rng.sample(vocab["nouns"], 3)
            frames = [rng.choice(_TOPIC_TEMPLATES[topic])]
            if rng.random() < 0.4:  # some documents have a second, generic sentence
                frames.insert(rng.randrange(2), rng.choice(_TEMPLATES))
            adj = rng.choice(vocab["adjectives"])
            slots = {
                "subject": subject, "n1": n1, "n2": n2, "n3": n3, "adj": adj,
                "Adj": adj.capitalize(), "verb": rng.choice(vocab["verbs"]),
                "person": rng.choice(_PEOPLE),
            }  # fmt: skip
            text = " ".join(f.format(**slots) for f in frames)
            rows.append((topic, subject, text[0].upper() + text[1:]))
    rng.shuffle(rows)
    frame = pd.DataFrame(rows, columns=["topic", "subject", "text"])
    frame.insert(0, "id", np.arange(1, len(frame) + 1, dtype=np.int64))
    return frame.astype({"topic": "string", "subject": "string", "text": "string"})


def make_corpus(n_per_topic: int = 125, seed: int = 7) -> pd.DataFrame:
    """``id``, ``topic``, ``text``: ``8 * n_per_topic`` short documents (deterministic).

    >>> corpus = make_corpus(10)
    >>> len(corpus), sorted(corpus["topic"].unique())[:3]
    (80, ['cooking', 'finance', 'health'])
    """
    return _corpus_with_subjects(n_per_topic, seed).drop(columns=["subject"])


_QUERY_TEMPLATES = [
    "latest news about the {subject}",
    "{subject} advice for a {noun}",
    "who {verb} the {subject}",
    "what happened at the {subject}",
    "{adj} {subject} and the {noun}",
]


def make_queries(n_per_topic: int = 125, seed: int = 7, per_topic: int = 5) -> pd.DataFrame:
    """Labelled queries for the corpus of the same arguments: ``query``, ``topic``, ``subject``,
    ``relevant_ids`` (space-separated ids of the documents written about that subject).

    >>> q = make_queries(10, per_topic=2)
    >>> len(q), q.columns.tolist()
    (16, ['query', 'topic', 'subject', 'relevant_ids'])
    """
    corpus = _corpus_with_subjects(n_per_topic, seed)
    rng = random.Random(seed + 1)
    rows = []
    for topic, vocab in TOPICS.items():
        for j, subject in enumerate(rng.sample(vocab["subjects"], per_topic)):
            query = _QUERY_TEMPLATES[j % len(_QUERY_TEMPLATES)].format(
                subject=subject,
                noun=rng.choice(vocab["nouns"]),
                verb=rng.choice(vocab["verbs"]),
                adj=rng.choice(vocab["adjectives"]),
            )
            hit = corpus["subject"].eq(subject) & corpus["topic"].eq(topic)
            ids = " ".join(str(i) for i in corpus.loc[hit.to_numpy(), "id"])
            rows.append((query, topic, subject, ids))
    return pd.DataFrame(rows, columns=["query", "topic", "subject", "relevant_ids"]).astype(
        "string"
    )


def recall_at_k(results: pd.DataFrame, queries: pd.DataFrame, ks: tuple[int, ...] = (1, 5, 10)):
    """Mean recall@k and hit rate@k of search ``results`` (query, rank, id) on labelled queries.

    recall@k = relevant documents among the top k / min(k, number of relevant documents), so
    1.0 means the top k are as relevant as they can be; hit@k = at least one relevant in the
    top k.
    """
    relevant = {
        q: {int(x) for x in str(ids).split()}
        for q, ids in zip(queries["query"], queries["relevant_ids"], strict=True)
    }
    rows = []
    for k in ks:
        top = results[results["rank"].le(k).to_numpy()]
        found = top.groupby("query", sort=False)["id"].agg(lambda s: {int(x) for x in s})
        recalls, hits = [], []
        for q, rel in relevant.items():
            got = found.get(q, set()) & rel
            recalls.append(len(got) / max(1, min(k, len(rel))))
            hits.append(bool(got))
        rows.append((k, float(np.mean(recalls)), float(np.mean(hits))))
    return pd.DataFrame(rows, columns=["k", "recall", "hit_rate"])


# --------------------------------------------------------------------------------------------
# Speech clips and images to edit
# --------------------------------------------------------------------------------------------

#: file name, voice, language, text. Synthesised with the emulator's speech synthesiser, whose
#: audio the emulator transcribes back to the exact text (deAPI's Whisper hears tones).
CLIPS: list[tuple[str, str, str, str]] = [
    ("interview_mission.mp4", "am_adam", "en",
     "Welcome back to the show. Today we talk about the mars rover and its new mission. "
     "The astronauts say the landing went well."),
    ("weather_london.mp3", "bm_george", "en",
     "Good morning from London. Expect light rain on the train journey north."),
    ("receta_sopa.ogg", "ef_dora", "es",
     "Hola a todos. Hoy cocinamos una sopa de tomate con ajo y pan."),
    ("podcast_jazz.flac", "ff_siwis", "fr",
     "Bonjour et bienvenue. Le concert de jazz est ce soir dans la salle."),
    ("memo_doctor.wav", "af_bella", "en",
     "Reminder: call the doctor about the knee injury. Ask about a gentle exercise plan."),
    ("match_report.m4a", "am_michael", "en",
     "What a final. The team won the penalty shootout and the fans went wild."),
]  # fmt: skip


def _m4a(audio: bytes) -> bytes:
    """Re-encode ``audio`` (any format soundfile reads) as AAC in an M4A container (PyAV)."""

    import av  # lazy
    import soundfile as sf  # lazy

    samples, sr = sf.read(io.BytesIO(audio), dtype="float32", always_2d=False)
    buf = io.BytesIO()
    with av.open(buf, "w", format="ipod", options={"fflags": "+bitexact"}) as out:
        stream = out.add_stream("aac", rate=sr)
        stream.layout = "mono"
        stream.bit_rate = 96_000
        size = stream.codec_context.frame_size or 1024
        for i in range(0, len(samples), size):
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(samples[i : i + size]).reshape(1, -1),
                format="flt",
                layout="mono",
            )
            frame.sample_rate = sr
            frame.pts = i
            frame.time_base = Fraction(1, sr)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


def make_clip(name: str, text: str, voice: str) -> bytes:
    """The bytes of one clip; the format follows the extension of ``name``.

    .mp3/.wav/.flac: the synthesiser's own; .ogg/.opus: Ogg/Opus; .m4a: AAC; .mp4: a small
    H.264 "video interview" with the speech as its AAC sound track.
    """
    from .emulator import _media  # lazy

    ext = Path(name).suffix.lower().lstrip(".")
    if ext in ("mp3", "wav", "flac"):
        return _media.synthesize_speech(text, voice=voice, fmt=ext)
    if ext in ("ogg", "opus"):
        return _media.synthesize_speech(text, voice=voice, fmt="opus")
    wav = _media.synthesize_speech(text, voice=voice, fmt="wav")
    if ext == "m4a":
        return _m4a(wav)
    if ext == "mp4":
        return _media.make_video_with_audio(wav, width=160, height=120, fps=5)
    raise ValueError(f"make_clip(): no format for {name!r}; use mp3, wav, flac, ogg, m4a or mp4.")


def make_clips(folder: str | os.PathLike[str], clips: list | None = None) -> list[Path]:
    """Write the sample clips (:data:`CLIPS`) into ``folder``; returns their paths."""
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, voice, _language, text in clips or CLIPS:
        path = root / name
        path.write_bytes(make_clip(name, text, voice))
        paths.append(path)
    return paths


def _draw_house() -> Any:
    from PIL import Image, ImageDraw  # lazy

    img = Image.new("RGB", (512, 512), (150, 200, 240))
    d = ImageDraw.Draw(img)
    d.rectangle((0, 380, 512, 512), fill=(90, 160, 80))
    d.ellipse((390, 40, 470, 120), fill=(250, 210, 60))
    d.rectangle((140, 240, 360, 420), fill=(200, 90, 70))
    d.polygon([(120, 250), (250, 140), (380, 250)], fill=(110, 60, 50))
    d.rectangle((225, 330, 275, 420), fill=(80, 50, 40))
    d.rectangle((165, 280, 210, 320), fill=(230, 240, 250))
    d.rectangle((290, 280, 335, 320), fill=(230, 240, 250))
    return img


def _draw_fruit_bowl() -> Any:
    from PIL import Image, ImageDraw  # lazy

    img = Image.new("RGB", (512, 512), (245, 235, 215))
    d = ImageDraw.Draw(img)
    d.rectangle((0, 360, 512, 512), fill=(160, 110, 70))
    for box, color in [
        ((150, 210, 250, 310), (220, 40, 40)),
        ((240, 190, 340, 290), (250, 160, 30)),
        ((200, 150, 290, 240), (120, 190, 60)),
        ((300, 240, 380, 320), (130, 60, 150)),
    ]:
        d.ellipse(box, fill=color)
    d.chord((110, 180, 410, 420), 0, 180, fill=(60, 90, 160))
    return img


def make_images(folder: str | os.PathLike[str]) -> list[Path]:
    """Write the two 512x512 PNGs to edit (``house.png``, ``fruit_bowl.png``); returns paths."""
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, draw in (("house.png", _draw_house), ("fruit_bowl.png", _draw_fruit_bowl)):
        path = root / name
        draw().save(path, optimize=True)
        paths.append(path)
    return paths


#: Short documents "scanned" as PNG (file name, text): data/scans/ for the OCR examples.
SCANS: list[tuple[str, str]] = [
    ("invoice_2041.png",
     "INVOICE 2041\nNorthwind Office Supply\n20 x printer paper A4   84.00\n"
     "2 x toner cartridge     34.40\nTotal due: 118.40 EUR\nPlease pay by 31 January."),
    ("rent_reminder.png",
     "Dear tenant,\nthis is a friendly reminder that the\nrent for February is due on the "
     "1st.\nLate payments incur a fee of 25 EUR.\nThe building management"),
    ("meeting_notes.png",
     "Meeting notes, 12 March\n- migrate the search index to the new\n  embedding model\n"
     "- budget for GPU hours approved\n- next review in two weeks"),
    ("recipe_card.png",
     "Tomato soup\n6 ripe tomatoes, 1 onion, 2 garlic cloves\nSimmer for 20 minutes,\n"
     "blend and season with basil."),
    ("train_ticket.png",
     "RAIL TICKET  Berlin -> Hamburg\nDeparture 08:14  Platform 7\nCoach 5  Seat 42\n"
     "Valid only with photo ID."),
    ("lab_report.png",
     "Lab report: blood test\nVitamin D  low (18 ng/ml)\nIron       normal\n"
     "Recommendation: more sunlight,\nsupplement for eight weeks."),
]  # fmt: skip


def make_scans(folder: str | os.PathLike[str]) -> list[Path]:
    """Write the :data:`SCANS` documents as PNG "scans" (Pillow's bitmap font, drawn by the
    emulator's :func:`~deapi_ds.emulator.render_text_image`, so its OCR reads them exactly)."""
    from .emulator import render_text_image  # lazy

    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in SCANS:
        path = root / name
        path.write_bytes(render_text_image(text, scale=2, margin=12))
        paths.append(path)
    return paths


def find_data_dir() -> Path | None:
    """``data/`` of the source checkout when it holds the corpus, else None."""
    return DATA_DIR if (DATA_DIR / "corpus.csv").is_file() else None


# --------------------------------------------------------------------------------------------
# The demo
# --------------------------------------------------------------------------------------------

_PROMPTS = ["a lighthouse on a cliff at dusk", "a bowl of ramen, studio photo"]


class _Step:
    """One workflow's outcome, for the summary and the report."""

    def __init__(self, name: str, title: str) -> None:
        self.name = name
        self.title = title
        self.ok = False
        self.skipped = False
        self.error: str | None = None
        self.rows = 0
        self.cached = 0
        self.requests: int | None = None
        self.seconds = 0.0
        self.paths: list[str] = []
        self.notes: list[str] = []
        self.html = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "status": "ok" if self.ok else ("skipped" if self.skipped else "failed"),
            "error": self.error,
            "rows": self.rows,
            "cached_rows": self.cached,
            "requests": self.requests,
            "seconds": round(self.seconds, 2),
            "paths": self.paths,
            "notes": self.notes,
        }


def _plural(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def _count_cached(status: pd.Series) -> int:
    return int(status.astype("string").eq("cached").fillna(False).sum())


def _requests(emulator: Any) -> int | None:
    if emulator is None:
        return None
    return int(sum(c.get("requests", 0) for c in emulator.stats().values()))


def _backend() -> tuple[str, bool]:
    from ._config import DEFAULT_BASE_URL, get_config  # lazy

    settings = get_config()
    if settings.key_source == "DEAPI_API_KEY":
        url = settings.base_url
        where = "deAPI" if url.rstrip("/") == DEFAULT_BASE_URL.rstrip("/") else "the server"
        return f"{where} at {url} (DEAPI_API_KEY is set; requests are billed)", False
    return "the built-in emulator (DEAPI_API_KEY is not set; nothing is spent)", True


@contextlib.contextmanager
def _environment(cache_dir: Path, emulate: bool) -> Iterator[Any]:
    """Route deapi_ds to the emulator (no key) or deAPI, with the demo's cache; restore after."""
    if emulate:
        from .testing import emulated  # lazy

        with emulated(cache_dir=str(cache_dir)) as env:
            yield env.emulator
    else:
        from ._config import config_context  # lazy
        from ._tasks import clear_shared_clients  # lazy

        with config_context(cache_dir=str(cache_dir), cache_enabled=True):
            try:
                yield None
            finally:
                clear_shared_clients()


def _rel(path: Path, out: Path) -> str:
    try:
        return str(path.relative_to(out))
    except ValueError:
        return str(path)


def _save_fig(fig: Any, path: Path) -> None:
    import matplotlib.pyplot as plt  # lazy

    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


def _png_uri(path: Path, max_side: int = 720) -> str:
    from .display import thumbnail_data_uri  # lazy

    return thumbnail_data_uri(path, max_side=max_side, fmt="PNG")


class _Demo:
    def __init__(self, out: Path, quick: bool, emulator: Any, data: Path | None) -> None:
        self.out = out
        self.quick = quick
        self.emulator = emulator
        self.data = data
        self.corpus: pd.DataFrame | None = None
        self.matrix: np.ndarray | None = None
        self.embedded: Any = None

    # inputs ---------------------------------------------------------------------------------
    def load_corpus(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        if self.data is not None:
            corpus = pd.read_csv(
                self.data / "corpus.csv", dtype={"topic": "string", "text": "string"}
            )
            queries = pd.read_csv(self.data / "queries.csv", dtype="string")
        else:
            corpus, queries = make_corpus(), make_queries()
        if self.quick:  # every 4th document; queries keep the relevant ids that remain
            corpus = corpus[corpus["id"].mod(4).eq(1).to_numpy()].reset_index(drop=True)
            keep = {str(i) for i in corpus["id"]}
            queries = queries.assign(
                relevant_ids=queries["relevant_ids"].map(
                    lambda s: " ".join(x for x in str(s).split() if x in keep)
                )
            ).astype({"relevant_ids": "string"})
            queries = queries[queries["relevant_ids"].str.len().gt(0).to_numpy()]
            queries = queries.iloc[::2].reset_index(drop=True)
        return corpus, queries

    def clips_folder(self) -> Path:
        if self.data is not None and (self.data / "clips").is_dir():
            return self.data / "clips"
        folder = self.out / "clips"
        if not folder.is_dir() or not any(folder.iterdir()):
            make_clips(folder)
        return folder

    # workflows ------------------------------------------------------------------------------
    def embed(self, step: _Step) -> None:
        import deapi_ds  # lazy

        from .plotting import projection_plot  # lazy

        corpus, self.queries = self.load_corpus()
        source = "data/corpus.csv" if self.data is not None else "a generated corpus"
        print(f"      {len(corpus):,} documents from {source}")
        estimate = deapi_ds.estimate_embed(corpus, "text")
        print(f"      estimate: {estimate}")
        res = deapi_ds.embed(corpus, "text")
        failed = int(res.status.eq("error").sum())
        if failed:
            raise RuntimeError(
                f"{failed} of {len(corpus)} rows failed: {res.failed['error'].iloc[0]}"
            )
        self.corpus, self.matrix, self.embedded = corpus, res.matrix, res
        step.rows, step.cached = len(corpus), _count_cached(res.status)
        table = res.to_frame(corpus).assign(status=res.status.to_numpy())
        path = self.out / "corpus_embeddings.parquet"
        table.to_parquet(path, index=False)
        fig = projection_plot(res.matrix, corpus["topic"], title="Corpus embeddings by topic")
        plot = self.out / "embedding_projection.png"
        _save_fig(fig, plot)
        step.paths += [_rel(path, self.out), _rel(plot, self.out)]
        step.notes.append(str(estimate))
        step.html = (
            f"<p>{len(corpus):,} documents, {res.dimension}-dimensional vectors "
            f"({step.cached:,} rows from the cache). Estimate before spending: "
            f"<code>{html.escape(str(estimate))}</code></p>"
            f'<img src="{_png_uri(plot)}" alt="projection" style="max-width:640px">'
            + _table(table.drop(columns=["embedding"]).head(8))
        )

    def search(self, step: _Step) -> None:
        if self.embedded is None or self.corpus is None:
            step.skipped = True
            raise RuntimeError("skipped: the embedding workflow did not produce vectors")
        import deapi_ds  # lazy

        index = self.embedded.search_index(self.corpus, text_column="text")
        queries = self.queries
        k = 10
        embedded = deapi_ds.embed(queries, "query", progress=False)
        step.cached = _count_cached(embedded.status)
        results = index.search(embedded.matrix, k=k)
        results["query"] = queries["query"].to_numpy()[results["query"].to_numpy()]
        results["query"] = results["query"].astype("string")
        path = self.out / "search_results.parquet"
        results.to_parquet(path, index=False)
        scores = recall_at_k(results, queries, ks=(1, 5, 10))
        topic_ok = results.merge(
            queries[["query", "topic"]].rename(columns={"topic": "query_topic"}), on="query"
        )
        topic_precision = float(topic_ok["topic"].eq(topic_ok["query_topic"]).mean())
        step.rows = len(queries)
        step.paths.append(_rel(path, self.out))
        r10 = scores.loc[scores["k"].eq(10), "recall"].iloc[0]
        step.notes.append(
            f"recall@10 {r10:.2f}, same-topic precision@{k} {topic_precision:.2f} over "
            f"{len(queries)} labelled queries"
        )
        print(f"      {step.notes[-1]}")
        self.search_scores = scores
        first = results[results["query"].eq(queries["query"].iloc[0]).to_numpy()].head(5)
        step.html = (
            f"<p>{len(queries)} labelled queries, top {k} each. Same-topic precision@{k}: "
            f"{topic_precision:.2f}.</p>"
            + _table(scores, title="recall@k and hit rate@k")
            + _table(first[["query", "rank", "score", "id", "topic", "text"]],
                     title="Top hits of the first query")
        )  # fmt: skip

    def transcribe(self, step: _Step) -> None:
        import deapi_ds.transcription as tr  # lazy

        from .display import audio_html  # lazy
        from .plotting import duration_plot, timeline_plot  # lazy

        folder = self.clips_folder()
        # WhisperLargeV3Ct2 also returns word timestamps (the words table)
        res = tr.transcribe_folder(folder, model="WhisperLargeV3Ct2")
        files = res.files
        step.rows, step.cached = len(files), _count_cached(files["status"])
        bad = files[files["status"].eq("error").to_numpy()]
        for name in ("files", "segments", "words"):
            path = self.out / f"transcript_{name}.parquet"
            getattr(res, name).to_parquet(path, index=False)
            step.paths.append(_rel(path, self.out))
        subs = res.export_subtitles(self.out / "subtitles")
        step.paths.append(_rel(self.out / "subtitles", self.out) + "/")
        timeline = self.out / "transcription_timeline.png"
        _save_fig(timeline_plot(res.segments, title="Who spoke when"), timeline)
        durations = self.out / "transcription_durations.png"
        _save_fig(duration_plot(files), durations)
        step.paths += [_rel(timeline, self.out), _rel(durations, self.out)]
        stats = res.speaking_stats()
        step.notes.append(
            f"{len(files)} files, {len(res.segments)} segments, {len(res.words)} words, "
            f"{len(subs)} SRT files"
        )
        print(f"      {step.notes[-1]}")
        players = "".join(
            f"<tr><td>{html.escape(str(row['file']))}</td><td>{html.escape(str(row['language']))}"
            f"</td><td>{html.escape(str(row['text']))}</td><td>"
            f"{audio_html((folder / str(row['file'])).read_bytes())}</td></tr>"
            for _, row in files.iterrows()
            if row["status"] in ("ok", "cached")
        )
        step.html = (
            f'<img src="{_png_uri(timeline)}" alt="timeline" style="max-width:640px">'
            f'<img src="{_png_uri(durations)}" alt="durations" style="max-width:480px">'
            "<h3>Clips</h3><table><thead><tr><th>file</th><th>language</th><th>text</th>"
            f"<th>listen</th></tr></thead><tbody>{players}</tbody></table>"
            + _table(stats, title="Speaking statistics")
            + _table(res.segments[["file", "segment", "start", "end", "text"]], title="Segments")
        )
        if len(bad):
            raise RuntimeError(
                f"{len(bad)} of {len(files)} files failed, first {bad['file'].iloc[0]}: "
                f"{bad['error'].iloc[0]}"
            )

    def images(self, step: _Step) -> None:
        import deapi_ds  # lazy

        from .display import image_grid_html  # lazy

        seeds = [1, 2] if self.quick else [1, 2, 3]
        res = deapi_ds.generate_images(_PROMPTS, seeds=seeds, size="512x512")
        frame = res.frame
        step.rows, step.cached = len(frame), _count_cached(frame["status"])
        grid = self.out / "image_grid.png"
        _save_fig(res.plot(row="prompt", col="seed"), grid)
        saved = res.save(self.out / "images", overwrite=True)
        step.paths += [_rel(grid, self.out), _rel(self.out / "images", self.out) + "/"]
        step.notes.append(f"{len(_PROMPTS)} prompts x {len(seeds)} seeds")
        items = [
            {"image": rec["image"], "caption": f"{rec['prompt']}\nseed {rec['seed']}",
             "error": None if rec["status"] in ("ok", "cached") else str(rec["error"])}
            for rec in frame.to_dict("records")
        ]  # fmt: skip
        step.html = image_grid_html(items, col_wrap=len(seeds), thumb=160)
        failed = int(frame["status"].eq("error").sum())
        if failed:
            raise RuntimeError(f"{failed} of {len(frame)} images failed")
        if saved.isna().any():
            raise RuntimeError("some images could not be saved")


def _table(frame: pd.DataFrame, *, title: str | None = None, max_rows: int = 12) -> str:
    from .display import frame_html  # lazy

    heading = f"<h3>{html.escape(title)}</h3>" if title else ""
    return heading + frame_html(frame, max_rows=max_rows, media={})


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:24px auto;max-width:1100px;
color:#222;padding:0 16px}
h1{font-size:22px}h2{font-size:18px;margin-top:32px;border-bottom:1px solid #ddd}h3{font-size:15px}
table{border-collapse:collapse;font-size:13px;margin:8px 0}
td,th{padding:3px 8px;border-bottom:1px solid #e3e3e3;text-align:left;vertical-align:top}
.ok{color:#1e7d32}.failed{color:#b00020}.skipped{color:#777}code{font-size:12px}
"""


def _report(out: Path, steps: list[_Step], header: dict[str, Any]) -> Path:
    rows = "".join(
        f"<tr><td>{html.escape(s.title)}</td>"
        f'<td class="{s.as_dict()["status"]}">{s.as_dict()["status"]}</td>'
        f"<td>{s.rows:,}</td><td>{s.cached:,}</td><td>{s.seconds:.1f} s</td>"
        f"<td>{html.escape(s.error or '; '.join(s.notes))}</td></tr>"
        for s in steps
    )
    sections = "".join(
        f"<h2>{html.escape(s.title)}</h2>"
        + (f'<p class="failed">{html.escape(s.error)}</p>' if s.error else "")
        + s.html
        + (
            "<p>Files: " + ", ".join(f"<code>{html.escape(p)}</code>" for p in s.paths) + "</p>"
            if s.paths
            else ""
        )
        for s in steps
    )
    body = (
        f"<h1>deapi_ds demo report</h1><p>Ran on {html.escape(header['backend'])}, "
        f"{html.escape(header['finished'])}, in {header['seconds']:.1f} s. "
        f"{html.escape(header['cache_note'])}</p>"
        "<table><thead><tr><th>workflow</th><th>status</th><th>rows</th><th>from cache</th>"
        f"<th>time</th><th>notes</th></tr></thead><tbody>{rows}</tbody></table>{sections}"
    )
    page = (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>deapi_ds demo report</title><style>{_CSS}</style></head>"
        f"<body>{body}</body></html>"
    )
    path = out / "report.html"
    path.write_text(page, encoding="utf-8")
    return path


def run_demo(out: str | os.PathLike[str] = "deapi_ds_output", quick: bool = False) -> int:
    """Run the three workflows and an image grid end to end; write everything into ``out``.

    Returns the exit code: 0 when every workflow succeeded, 1 when one failed (the others
    still run and the report says what failed). ``quick=True`` uses a quarter of the corpus,
    half the queries and fewer images. The cache is ``<out>/cache``, so a second run with the
    same ``out`` is served from it.

    >>> run_demo("deapi_ds_output")   # doctest: +SKIP
    0
    """
    started = time.perf_counter()
    backend, emulate = _backend()
    print(f"deapi_ds demo: running on {backend}.", flush=True)
    out_dir = Path(out).expanduser().resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    cache_dir = out_dir / "cache"
    first_run = not (cache_dir.is_dir() and any(cache_dir.iterdir()))
    data = find_data_dir()
    steps = [
        _Step("embeddings", "1. Embed a column"),
        _Step("search", "2. Semantic search"),
        _Step("transcription", "3. Transcription analysis"),
        _Step("images", "4. Image grid"),
    ]
    with _environment(cache_dir, emulate) as emulator:
        demo = _Demo(out_dir, quick, emulator, data)
        runners: dict[str, Callable[[_Step], None]] = {
            "embeddings": demo.embed,
            "search": demo.search,
            "transcription": demo.transcribe,
            "images": demo.images,
        }
        for i, step in enumerate(steps, 1):
            print(f"[{i}/{len(steps)}] {step.title[3:]} ...", flush=True)
            before = _requests(emulator)
            t0 = time.perf_counter()
            try:
                runners[step.name](step)
                step.ok = True
            except Exception as exc:  # one workflow's failure never stops the others
                step.error = str(exc) if step.skipped else f"{type(exc).__name__}: {exc}"
                if not step.skipped:
                    traceback.print_exc()
            step.seconds = time.perf_counter() - t0
            after = _requests(emulator)
            step.requests = None if before is None or after is None else after - before
            sent = "" if step.requests is None else f", {_plural(step.requests, 'request')}"
            if step.ok:
                print(
                    f"      done in {step.seconds:.1f} s: {step.rows:,} rows, "
                    f"{step.cached:,} from the cache{sent}",
                    flush=True,
                )
            else:
                word = "SKIPPED" if step.skipped else "FAILED"
                print(f"      {word}: {step.error}", file=sys.stderr, flush=True)
        total_requests = _requests(emulator)
    seconds = time.perf_counter() - started
    cached = sum(s.cached for s in steps)
    rows = sum(s.rows for s in steps)
    if first_run:
        cache_note = f"Results are cached in {_rel(cache_dir, out_dir)}/: a second run is free."
    else:
        cache_note = (
            f"Second run: {cached:,} of {rows:,} result rows were served from the cache "
            f"({_rel(cache_dir, out_dir)}/)"
            + ("." if total_requests is None else f", {_plural(total_requests, 'request')} sent.")
        )
    header = {
        "backend": backend,
        "finished": _dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "seconds": seconds,
        "cache_note": cache_note,
    }
    report = _report(out_dir, steps, header)
    summary = {
        "backend": "emulator" if emulate else "deapi",
        "quick": quick,
        "first_run": first_run,
        "seconds": round(seconds, 2),
        "cached_rows": cached,
        "result_rows": rows,
        "requests": total_requests,
        "cache_dir": str(cache_dir),
        "report": str(report),
        "steps": [s.as_dict() for s in steps],
    }
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    failed = [s for s in steps if not s.ok]
    print()
    print(f"{'Done' if not failed else 'Finished with failures'} in {seconds:.1f} s. {cache_note}")
    for s in steps:
        mark = "ok    " if s.ok else ("skip  " if s.skipped else "FAILED")
        print(f"  {mark} {s.title[3:]:<26} {', '.join(s.paths) if s.ok else s.error}")
    print(f"Report: {report}")
    print(f"Everything is in {out_dir}/ (summary.json lists it).")
    return 1 if failed else 0
