"""Write the example notebooks and execute them, so they are committed with their outputs.

    python notebooks/build_notebooks.py             # all of them
    python notebooks/build_notebooks.py 01 03       # some of them
    python notebooks/build_notebooks.py --no-run    # write without executing

Notebooks are executed without ``DEAPI_API_KEY`` (on the emulator, served on loopback), with
``notebooks/`` as the working directory. Cells starting with ``# NBVAL_CHECK_OUTPUT`` have
deterministic output that CI compares (``pytest --nbval-lax notebooks/``); the others are only
run. Needs nbformat, nbclient and ipykernel.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent
CHECK = "# NBVAL_CHECK_OUTPUT\n"


def setup_cell(tag: str) -> str:
    """The first code cell: deAPI with a key, else the emulator on loopback and a fresh cache."""
    return f"""%matplotlib inline
import os
import tempfile
from pathlib import Path

import deapi_ds

if os.environ.get("DEAPI_API_KEY"):
    emulator = None  # deAPI, with your configured cache
else:  # no key: deAPI's emulator on 127.0.0.1, and a fresh cache so that every run is the same
    emulator = deapi_ds.use_emulator(loopback=True)
    deapi_ds.set_config(cache_dir=tempfile.mkdtemp(prefix="deapi_ds_{tag}_"))

# the repository's data/ folder (this notebook runs from notebooks/ or the repository root)
DATA = next(p / "data" for p in [Path.cwd(), *Path.cwd().parents] if (p / "data/corpus.csv").exists())
print("running on", "the emulator" if emulator else "deAPI")"""


def md(text: str) -> tuple[str, str]:
    return ("md", text.strip("\n"))


def code(text: str, check: bool = False) -> tuple[str, str]:
    return ("code", (CHECK if check else "") + text.strip("\n"))


NOTEBOOKS: dict[str, list[tuple[str, str]]] = {}

NOTEBOOKS["01_embed_a_column.ipynb"] = [
    md("""
# Embed a DataFrame column

Turn the `text` column of a 1,000-row corpus into vectors: estimate the cost first, embed,
rerun for free from the cache, keep the vectors in the frame and look at them in 2-D.

Runs as is without a key, on deapi_ds's emulator of deAPI. Set `DEAPI_API_KEY` and restart
the kernel to run the same cells on deAPI.
"""),
    code(setup_cell("nb01")),
    md("## The data\n\n`data/corpus.csv`: short documents in eight labelled topics."),
    code(
        """
import pandas as pd

corpus = pd.read_csv(DATA / "corpus.csv", dtype={"topic": "string", "text": "string"})
print(corpus.shape)
print(corpus["topic"].value_counts().sort_index().to_string())
""",
        check=True,
    ),
    code("corpus.head()"),
    md("""
## Estimate before spending

`estimate` counts requests, tokens, the cost and the time the rate limit needs, and sends
nothing. Identical texts would be sent once, and rows already in the cache not at all.
"""),
    code('print(deapi_ds.estimate_embed(corpus, "text"))', check=True),
    md("""
## Embed

One call: texts are packed into as few requests as deAPI allows, each batch is written to the
cache as soon as it returns, and `res.matrix` is a float32 matrix aligned with the rows.
"""),
    code('res = deapi_ds.embed(corpus, "text", progress=False)  # progress=True: a progress bar'),
    code(
        """
print(res.summary())
print(res.matrix.shape, res.matrix.dtype)
print(res.status.value_counts().to_string())
""",
        check=True,
    ),
    md("""
## Rerun: free, from the cache

The same call again is served from the cache: no request is sent (the emulator counts what it
received, which is what deAPI would bill).
"""),
    code(
        """
again = deapi_ds.embed(corpus, "text", progress=False)
print("requests sent by this call:", again.usage["requests"])
print(again.status.value_counts().to_string())
if emulator is not None:
    print("requests the emulator received in total:", emulator.stats("embeddings")["requests"])
print("same vectors:", bool((again.matrix == res.matrix).all()))
""",
        check=True,
    ),
    md("""
## Keep the vectors in the frame

`to_series()` gives a column of float32 arrays (no Python lists); parquet stores it as a list
column and reads it back as arrays.
"""),
    code(
        """
corpus["embedding"] = res.to_series()
path = Path(tempfile.mkdtemp()) / "corpus_embeddings.parquet"
corpus.to_parquet(path)
back = pd.read_parquet(path)
print(back.shape, back["embedding"].iloc[0].dtype, back["embedding"].iloc[0].shape)
""",
        check=True,
    ),
    md("""
## Look at them

A 2-D PCA projection coloured by topic (a matplotlib Figure: `fig.savefig(...)` to keep it).
Documents of a topic share words, so they land near each other.
"""),
    code(
        """
from deapi_ds.plotting import projection_plot

projection_plot(res.matrix, corpus["topic"], title="1,000 documents, coloured by topic")
"""
    ),
    code(
        """
import numpy as np

topics = corpus["topic"].to_numpy()
sims = res.matrix @ res.matrix.T
same = topics[:, None] == topics[None, :]
print(f"mean cosine similarity: within a topic {sims[same].mean():.2f}, across {sims[~same].mean():.2f}")
""",
        check=True,
    ),
    md("""
## Use them as features

The vectors are ordinary numpy features, e.g. for a classifier (scikit-learn; `deapi_ds.EmbeddingTransformer`
also puts the embedding step inside a `Pipeline`).
"""),
    code(
        """
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score

scores = cross_val_score(LogisticRegression(max_iter=500), res.matrix, corpus["topic"], cv=3)
print(f"topic accuracy, 3-fold: {scores.mean():.2f}")
"""
    ),
]

NOTEBOOKS["02_transcription_analysis.ipynb"] = [
    md("""
# Transcription analysis

A folder of interviews and voice memos (mp3, wav, flac, ogg, m4a and an mp4 video) into
three tables, `files`, `segments` and `words`; then languages, durations, speaking rates, a
timeline, subtitles, and a search over what was said with the matching clips playable inline.

The clips in `data/clips` were synthesised by deapi_ds's emulator, which transcribes them back
to their exact text. Set `DEAPI_API_KEY` to send your own recordings to deAPI's Whisper.
"""),
    code(setup_cell("nb02")),
    code(
        """
for path in sorted((DATA / "clips").iterdir()):
    print(f"{path.name:<24} {path.stat().st_size / 1024:6.0f} KB")
""",
        check=True,
    ),
    md("""
## Transcribe the folder

One row per file, always (a file that fails is a row with its error). `WhisperLargeV3Ct2` also
returns word timestamps; `WhisperLargeV3` gives segments only.
"""),
    code(
        """
res = deapi_ds.transcribe_folder(DATA / "clips", model="WhisperLargeV3Ct2", progress=False)
print(res.summary())
""",
        check=True,
    ),
    code(
        'print(res.files[["file", "language", "n_segments", "status"]].to_string())',
        check=True,
    ),
    code('res.files[["file", "language", "duration", "text"]]'),
    code('res.segments[["file", "segment", "start", "end", "text"]].head(6)'),
    code("res.words.head(6)"),
    md("## Languages and durations"),
    code(
        """
res.files.groupby("language").agg(files=("file", "size"), seconds=("duration", "sum")).round(1)
"""
    ),
    code(
        """
from deapi_ds.plotting import duration_plot, timeline_plot

duration_plot(res.files)
"""
    ),
    md("## Words per minute"),
    code(
        """
stats = res.speaking_stats()
print(stats[["file", "words", "speaking_time", "words_per_minute"]].round(1).to_string())
""",
        check=True,
    ),
    md("## Who spoke when\n\nOne lane per file, one bar per segment, coloured by language."),
    code(
        'timeline_plot(res.segments.merge(res.files[["file", "language"]], on="file"), hue="language")'
    ),
    md('## Subtitles\n\nOne SRT file per transcribed file (`to_vtt` and `fmt="vtt"` for WebVTT).'),
    code(
        """
folder = Path(tempfile.mkdtemp(prefix="subtitles_"))
written = res.export_subtitles(folder)
print(written.assign(subtitle=written["subtitle"].map(lambda p: Path(p).name)).to_string())
print()
print(res.to_srt("memo_doctor.wav"))
""",
        check=True,
    ),
    md("""
## Search what was said

`search_text` finds keywords; `semantic_search` embeds every segment once (cached like any
embedding) and ranks them by similarity. Each hit plays just its segment.

(The emulator's embeddings are lexical: segments that share words with the query rank first.
deAPI's BGE-M3 matches meaning across wording and languages.)
"""),
    code(
        'print(res.search_text("doctor")[["file", "start", "end", "text"]].to_string())',
        check=True,
    ),
    code(
        """
hits = res.semantic_search("the mars rover mission", k=3)
print(hits[["rank", "score", "file", "start", "end", "text"]].round(2).to_string())
""",
        check=True,
    ),
    code(
        """
from IPython.display import display

for _, hit in hits.iterrows():
    print(f"{hit['rank']}. {hit['file']} {hit['start']:.1f}-{hit['end']:.1f} s: {hit['text']}")
    display(res.play(hit, max_bytes=150_000))
"""
    ),
    md("""
## Who said what: speakers

`diarize=True` sends files through deAPI's native API (jobs; each job id is cached the moment
it is accepted, so a rerun after a kernel restart resumes instead of paying again). Segments and
words get a `speaker`; `speakers` sums talk time, turns and speaking rate per speaker. Links
(YouTube, X, Twitch, Kick, TikTok) work the same way and bring the source's metadata.

The emulator's speech marks each voice, so its diarization is exact: every word gets its
speaker back.
"""),
    code(
        """
from deapi_ds.emulator import synthesize_dialogue

talk = Path(tempfile.mkdtemp(prefix="dialogue_")) / "interview.mp3"
talk.write_bytes(synthesize_dialogue([
    ("am_adam", "Welcome to the show. Today we talk about rivers."),
    ("af_bella", "Thanks for having me. Rivers shape every valley."),
    ("am_adam", "How fast do they move?"),
    ("af_bella", "It depends on the slope and the season."),
]))
talks = deapi_ds.transcribe([talk], diarize=True, progress=False)
print(talks.segments[["speaker", "start", "end", "text"]].round(1).to_string())
""",
        check=True,
    ),
    code(
        """
cols = ["speaker", "talk_time", "share", "turns", "words", "words_per_minute"]
print(talks.speakers[cols].round(2).to_string())
print(talks.turn_taking().drop(columns="file").to_string())
""",
        check=True,
    ),
    code("talks.talk_time_chart()"),
    code("talks.speaker_timeline(talk.name)"),
    code(
        """
hits = talks.search_text("river", speaker="SPEAKER_01")
print(hits[["speaker", "start", "text"]].round(1).to_string())
print(talks.to_vtt(talk.name)[:200])
""",
        check=True,
    ),
]

NOTEBOOKS["03_semantic_search.ipynb"] = [
    md("""
# Semantic search prototyping

Everything to decide how a search should work before building anything bigger: index a
corpus, compare dense (embedding), lexical (BM25) and hybrid search with filters, measure them
on labelled queries (recall@k, MRR, nDCG@k), search long documents by passages, and look at
the corpus as labelled clusters on a map, with its near-duplicates.

On the emulator, embeddings are deterministic hashes of words and character n-grams, so
"dense" search behaves like a fuzzy keyword search: the numbers below are honest for the
emulator, and the same cells measure deAPI's real models once `DEAPI_API_KEY` is set.
"""),
    code(setup_cell("nb03")),
    code(
        """
import numpy as np
import pandas as pd

corpus = pd.read_csv(DATA / "corpus.csv", dtype={"topic": "string", "text": "string"})
queries = pd.read_csv(DATA / "queries.csv", dtype="string")
print(corpus.shape, queries.shape)
""",
        check=True,
    ),
    code("queries.head()"),
    md("""
## Index the corpus

Embed once (cached), then an exact, in-memory index over the vectors. Queries are embedded
with the same model when they are searched; `text_column` adds a BM25 keyword index (built on
first use) for lexical and hybrid search.
"""),
    code(
        """
res = deapi_ds.embed(corpus, "text", progress=False)
index = res.search_index(corpus, text_column="text")
print(index)
""",
        check=True,
    ),
    md(
        "## Run queries\n\nOne row per hit: `query`, `rank`, `score` (cosine), then the corpus columns."
    ),
    code(
        """
hits = index.search(["rocket launch to the space station", "how to bake bread at home"], k=3)
print(hits[["query", "rank", "score", "topic", "text"]].round(3).to_string())
""",
        check=True,
    ),
    md("""
## Keywords, vectors, or both

`mode="lexical"` ranks by BM25 over the text column; `mode="hybrid"` takes the best
candidates of both sides and fuses them by reciprocal rank (`fusion="rrf"`, the default) or by
a weighted sum of cosine and normalised BM25 (`fusion="weighted"`, `weight=` the dense
share). Hybrid hits say which side found them and their rank on each side.
"""),
    code(
        """
query = "penalty shootout drama"
for mode in ["dense", "lexical", "hybrid"]:
    found = index.search(query, k=3, mode=mode)
    print(f"--- {mode}")
    print(found.drop(columns=["query", "row"]).round(4).to_string(index=False))
""",
        check=True,
    ),
    md(
        "`where=` filters rows first, the same way in every mode (a `df.query` expression, a mask, or a callable)."
    ),
    code(
        """
for mode in ["dense", "lexical", "hybrid"]:
    found = index.search("a live concert tonight", k=2, mode=mode, where="topic == 'music'")
    print(mode, found["id"].tolist(), found["topic"].unique().tolist())
""",
        check=True,
    ),
    md("""
## The search box

Type a query and press Enter (the results are a static table, so they survive export). Below,
a query is typed programmatically and the widget's table shown.
"""),
    code(
        """
box = index.widget(k=5, mode="hybrid")
box.children[0].value = "penalty shootout drama"
box
"""
    ),
    code(
        """
from IPython.display import HTML

HTML(box.children[1].value)
"""
    ),
    md("""
## Which setup is better? Evaluation on labelled queries

Each query in `data/queries.csv` lists the ids of the documents written about its subject.
`evaluate` runs every configuration on every query and reports, as BEIR and MTEB do,
recall@k (relevant ids in the top k / all relevant ids: 12-13 per query here, so recall@10 is
at most ~0.8), MRR (1 / rank of the first relevant hit) and nDCG@k (rank-discounted gain).
"""),
    code(
        """
labels = queries.assign(relevant=queries["relevant_ids"].str.split()).explode("relevant")
configs = {
    "dense": {"mode": "dense"},
    "lexical": {"mode": "lexical"},
    "hybrid rrf": {"mode": "hybrid"},
    "hybrid weighted 0.5": {"mode": "hybrid", "fusion": "weighted", "weight": 0.5},
}
ev = deapi_ds.evaluate(index, labels[["query", "relevant"]], k=[1, 5, 10], configs=configs, id_column="id")
print(ev.table[ev.measures].round(3).to_string())
""",
        check=True,
    ),
    code("ev.plot();"),
    md("The queries each configuration did worst on, and the relevant documents it missed:"),
    code(
        """
misses = ev.misses("dense", n=3)[["query", "recall@10", "ndcg@10", "first_rank", "missed"]]
print(misses.round(3).to_string(index=False))
""",
        check=True,
    ),
    md("""
## Long documents: passages

Long texts are cut into passages that fit the model (`max_tokens`, with the embeddings'
conservative token estimate), at sentence ends and preferably at paragraph ends; `start`/`end`
are character offsets into the document. Here, one "article" per topic is made from the
corpus, and searched by passage; `group_by="doc"` returns each document once, with its best
passage.
"""),
    code(
        """
articles = corpus.groupby("topic")["text"].agg(lambda texts: "\\n\\n".join(texts)).to_frame()
passages = deapi_ds.chunk(articles, "text", max_tokens=120)
print(len(articles), "articles ->", len(passages), "passages")
print(passages.groupby("doc")["tokens"].agg(["count", "max"]).to_string())
""",
        check=True,
    ),
    code(
        """
passage_index = deapi_ds.embed(passages, "text", progress=False).search_index(passages, text_column="text")
best = passage_index.search("rocket launch and the space station", k=3, mode="hybrid", group_by="doc")
for row in best.itertuples():
    document = articles.loc[row.doc, "text"]
    print(f"{row.rank}. {row.doc:<10} chars {row.start}-{row.end}: {document[row.start:row.end][:90]}...")
""",
        check=True,
    ),
    md("""
## The corpus as clusters on a map

`cluster` groups the rows (k-means; `method="hdbscan"` finds the number itself) and labels
each cluster by its most distinctive words (class-based TF-IDF, as BERTopic does). The map is a
PCA projection (`method="umap"` when umap-learn is installed).
"""),
    code(
        """
clusters = deapi_ds.cluster(index, n_clusters=8)
clusters.topics[["size", "label", "example"]]
"""
    ),
    code(
        """
pd.crosstab(clusters.cluster_label(), corpus["topic"].to_numpy())
"""
    ),
    code("clusters.plot();"),
    md("Hover a point to read its text (an SVG scatter; exported notebooks show a static image):"),
    code("clusters.scatter(max_points=400)  # a sample keeps the notebook light"),
    md("## Near-duplicates\n\nPairs above a cosine threshold, and the groups they form."),
    code(
        """
pairs = deapi_ds.near_duplicates(index, threshold=0.99)
groups = deapi_ds.search.duplicate_groups(pairs)
print(len(pairs), "pairs in", groups["group"].nunique(), "groups")
first = groups[groups["group"] == 0]["row"].tolist()
print(corpus.loc[first, ["id", "text"]].to_string())
""",
        check=True,
    ),
    md("""
## Keep the index

`save` writes the vectors (`.npy`, optionally float16 for half the memory), the frame
(parquet) and the BM25 index to a folder: nothing is pickled, so loading runs no code.
"""),
    code(
        """
import tempfile
from pathlib import Path

folder = index.save(Path(tempfile.mkdtemp()) / "corpus_index")
again = deapi_ds.SearchIndex.load(folder)
same = again.search("penalty shootout drama", k=5, mode="hybrid").equals(
    index.search("penalty shootout drama", k=5, mode="hybrid")
)
print(sorted(p.name for p in folder.iterdir()), same)
""",
        check=True,
    ),
    md("""
## Next

* `deapi_ds.SearchIndex.from_frame(df)` indexes a frame read back from parquet (vectors in an
  `embedding` column); `deapi_ds.search(df, "query")` is the one-call version.
* `evaluate({"model A": index_a, "model B": index_b}, labels, configs=...)` compares models or
  chunk sizes the same way.
* Everything above runs unchanged on deAPI: set `DEAPI_API_KEY`.
"""),
]

NOTEBOOKS["04_image_grids.ipynb"] = [
    md("""
# Image grids

Prompts x seeds in one call, an edit of existing images, and saving the ones you keep (with
their prompt and seed in the PNG metadata). Every image is cached: rerunning costs nothing.
"""),
    code(setup_cell("nb04")),
    md("## Prompts x seeds\n\nLists of prompts and seeds expand into a product: 3 x 3 = 9 images."),
    code(
        """
prompts = ["a lighthouse on a cliff at dusk", "a bowl of ramen, studio photo", "a fox in the snow"]
grid = deapi_ds.generate_images(prompts, seeds=[1, 2, 3], size="512x512", progress=False)
print(grid.summary())
print(grid[["prompt", "seed", "width", "height", "status"]].to_string())
""",
        check=True,
    ),
    code('grid.grid(col_wrap=3, thumb=128, label="{prompt}\\nseed {seed}")'),
    md("With matplotlib, laid out by prompt (rows) and seed (columns):"),
    code('grid.plot(row="prompt", col="seed", height=1.6)'),
    md("""
## Edit images

`edit_images` takes paths, bytes or PIL images; the output keeps the input's size unless
`size=` is given. (deAPI does no inpainting: describe the change in the prompt.)
"""),
    code(
        """
inputs = [DATA / "images" / "house.png", DATA / "images" / "fruit_bowl.png"]
prompt = "the same scene as a watercolor painting"
edited = deapi_ds.edit_images(inputs, prompt=prompt, seeds=[7], progress=False)
print(edited.summary())
print(edited[["input", "width", "height", "status"]].to_string())
""",
        check=True,
    ),
    code('edited.grid(col_wrap=2, thumb=160, label="{input}")'),
    md("""
## Save the chosen ones

Pick rows, then `save` writes PNGs named after the prompt, model and seed, with the prompt and
seed inside the file.
"""),
    code(
        """
from PIL import Image

chosen = grid[grid.seed == 2]  # row selections stay image results
saved = chosen.save(Path(tempfile.mkdtemp(prefix="chosen_")))
for path in saved:
    print(Path(path).name)
print(Image.open(saved.iloc[0]).text["prompt"])
""",
        check=True,
    ),
    md("## Rerun: free\n\nThe same call again comes from the cache."),
    code(
        """
again = deapi_ds.generate_images(prompts, seeds=[1, 2, 3], size="512x512", progress=False)
print(again["status"].value_counts().to_string())
if emulator is not None:
    print("image requests the emulator received:", emulator.stats("images.generations")["requests"])
""",
        check=True,
    ),
]

NOTEBOOKS["05_speech_and_video.ipynb"] = [
    md("""
# Speech and video

Compare voices on the same sentence (one call, one player per voice), then run one text-to-video
job: created, polled and downloaded, and resumable after a kernel restart.
"""),
    code(setup_cell("nb05")),
    md("## The voices\n\n`voices()` reads the provider profile (no request)."),
    code(
        """
v = deapi_ds.voices()
print(v.groupby(["language_name", "gender"]).size().unstack(fill_value=0).to_string())
""",
        check=True,
    ),
    md("## One sentence, four voices"),
    code(
        """
sentence = "The quick brown fox jumps over the lazy dog."
voices = ["af_bella", "am_adam", "bf_emma", "bm_george"]
spoken = deapi_ds.speak(sentence, voice=voices, progress=False)
print(spoken[["voice", "format", "duration", "characters", "status"]].round(2).to_string())
""",
        check=True,
    ),
    code("spoken.comparison()"),
    md(
        "Other languages take their own voices (Spanish `ef_dora` and `em_alex`, French `ff_siwis`, ...):"
    ),
    code(
        """
spanish = deapi_ds.speak(
    "Hola a todos, bienvenidos al programa.", voice=["ef_dora", "em_alex"], progress=False
)
spanish.comparison()
"""
    ),
    md("""
## One video job

`generate_video` creates the job, records its id in the cache at once (a rerun after a crash
resumes it instead of paying again), polls with backoff and downloads the MP4 when it is done.
"""),
    code(
        """
jobs = deapi_ds.generate_video(
    "a paper boat drifting down a rainy street",
    seconds=4,
    poll=0.1 if emulator else 2.0,  # seconds between status checks (growing x1.5)
    progress=False,
)
job = jobs.jobs[0]  # one row: its VideoJob
print(job.status, job.progress, job.video[4:8])
""",
        check=True,
    ),
    code("job"),
    code(
        """
path = job.download(Path(tempfile.mkdtemp(prefix="videos_")) / "paper_boat.mp4")
print(path.name, path.stat().st_size > 0)
""",
        check=True,
    ),
]


NOTEBOOKS["06_scans_to_search.ipynb"] = [
    md("""
# Scans to search

Document images (scans, screenshots, photos of paper) become searchable text in three lines:
`ocr` reads every image of a folder, `embed` turns the text into vectors, and a `SearchIndex`
answers questions with the matching scan shown beside its text. Then: the structured output,
paying only for the pixels that matter, and two image transforms (background removal and
upscaling) with a before/after grid.

Runs as is without a key, on deapi_ds's emulator of deAPI (its OCR reads text drawn in
Pillow's bitmap font exactly, which is how `data/scans/` was made). Set `DEAPI_API_KEY` and
restart the kernel to run the same cells on deAPI with your own scans.
"""),
    code(setup_cell("nb06")),
    md("""
## What would it cost?

OCR is priced by input pixels: `estimate_ocr` reads the image headers (nothing is sent) and
says how many requests, pixels and dollars the folder takes.
"""),
    code(
        """
folder = DATA / "scans"
print(sorted(p.name for p in folder.iterdir()))
est = deapi_ds.estimate_ocr(folder)
print(est.requests, "requests,", f"{est.pixels:,} pixels,", f"${est.cost_usd:.4f}")
""",
        check=True,
    ),
    md("""
## Scans to search in three lines

One row per image, always: `source`, the `text`, `status` (a failed or unreadable image is a
row with its error, never an exception), and the image itself, shown as a thumbnail.
"""),
    code(
        """
scans = deapi_ds.ocr(folder, progress=False)
index = deapi_ds.embed(scans.frame, "text", progress=False).search_index(scans.frame)
hits = scans.hits(index.search("when is the rent due?", k=3))
print(hits.frame[["rank", "source", "score"]].round(3).to_string(index=False))
""",
        check=True,
    ),
    md("The hits show each matching scan beside its text:"),
    code("hits"),
    code(
        """
print(scans.frame.loc[0, "text"])
print(scans[["source", "width", "height", "pixels", "status"]].to_string())
""",
        check=True,
    ),
    md("The whole result renders with a thumbnail per row:"),
    code("scans"),
    md("""
## The structured output

`format="json"` also returns the layout: `.blocks` has one row per block (here: per line) with
its box in pixels, joined to the images by `row`.
"""),
    code(
        """
layout = deapi_ds.ocr(folder, format="json", progress=False)
print(layout.blocks.head(7).to_string(index=False))
""",
        check=True,
    ),
    md("""
## Pay for the pixels that matter

A page scanned at 300 dpi is 2480 x 3508 px: 8.7 million pixels. `max_side` (default 2048)
downsizes larger images before the upload (never enlarges them): 1448 x 2048 is still about
175 dpi, where 10-pt text is some 24 px tall, and it costs a third.
"""),
    code(
        """
from PIL import Image

page = Image.new("RGB", (2480, 3508), "white")  # an A4 page at 300 dpi
default = deapi_ds.estimate_ocr([page])
full = deapi_ds.estimate_ocr([page], max_side=None)
print(f"max_side=2048: {default.pixels:,} px, ${default.cost_usd:.4f}")
print(f"max_side=None: {full.pixels:,} px, ${full.cost_usd:.4f}")
print(f"saved: {default.pixels_saved:,} px, ${default.saving_usd:.4f} per page")
""",
        check=True,
    ),
    md("""
## Image transforms: background removal and upscaling

Both return an `ImageResult` (grids, `.plot()`, `.save()`, row selections) that keeps each
input beside its result; `before_after` shows them side by side.
"""),
    code(
        """
cut = deapi_ds.remove_background(DATA / "images", progress=False)
print(cut[["input", "size", "status"]].to_string())
""",
        check=True,
    ),
    code("deapi_ds.before_after(cut)"),
    code(
        """
big = deapi_ds.upscale(folder / "train_ticket.png", progress=False)
print(big[["input", "input_width", "input_height", "width", "height", "status"]].to_string())
""",
        check=True,
    ),
    md("""
## Next

* `deapi_ds.ocr(df, "image_column")` reads a column of paths, URLs, bytes or arrays, keeping
  the frame's index.
* Reruns cost nothing (cached by image content); the ids of jobs in flight are cached the
  moment they are accepted, so a crash mid-run costs no image twice.
* Everything above runs unchanged on deAPI: set `DEAPI_API_KEY`.
"""),
]


def build(name: str, cells: list[tuple[str, str]]) -> nbformat.NotebookNode:
    nb = new_notebook()
    nb.cells = [
        new_markdown_cell(src) if kind == "md" else new_code_cell(src) for kind, src in cells
    ]
    nb.metadata = {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    }
    return nb


def execute(nb: nbformat.NotebookNode) -> None:
    from nbclient import NotebookClient

    env_key = os.environ.pop("DEAPI_API_KEY", None)
    try:
        NotebookClient(
            nb,
            timeout=300,
            kernel_name="python3",
            resources={"metadata": {"path": str(HERE)}},
            record_timing=False,
        ).execute()
    finally:
        if env_key is not None:
            os.environ["DEAPI_API_KEY"] = env_key


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("only", nargs="*", help="notebook name prefixes, e.g. 01 03")
    parser.add_argument("--no-run", action="store_true", help="write the notebooks unexecuted")
    args = parser.parse_args(argv)
    for name, cells in NOTEBOOKS.items():
        if args.only and not any(name.startswith(p) for p in args.only):
            continue
        nb = build(name, cells)
        started = time.perf_counter()
        if not args.no_run:
            execute(nb)
        path = HERE / name
        nbformat.write(nb, path)
        print(
            f"{name}: {time.perf_counter() - started:5.1f} s, {path.stat().st_size / 1024:6.0f} KB",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
