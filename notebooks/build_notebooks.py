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
]

NOTEBOOKS["03_semantic_search.ipynb"] = [
    md("""
# Semantic search prototyping

Index a corpus, run queries (with filters), try the search box, and measure recall@k on
labelled queries: everything to decide whether embedding search is good enough before
building anything bigger.
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
with the same model when they are searched.
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
    md("`where=` filters rows first (a `df.query` expression, a mask, or a callable)."),
    code(
        """
found = index.search("a live concert tonight", k=3, where="topic == 'music'")
print(found[["rank", "score", "text"]].round(3).to_string())
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
box = index.widget(k=5)
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
## How good is it? recall@k on labelled queries

Each query in `data/queries.csv` lists the ids of the documents written about its subject.
recall@k = relevant documents in the top k / min(k, number of relevant documents).
"""),
    code(
        """
results = index.search(queries["query"].tolist(), k=20)
relevant = {
    q: {int(i) for i in ids.split()} for q, ids in zip(queries["query"], queries["relevant_ids"])
}


def recall_at(k, frame=results):
    # mean over the queries of: relevant ids among the top k / min(k, number of relevant ids)
    top = frame[frame["rank"] <= k].groupby("query")["id"].agg(set)
    return np.mean([len(top[q] & relevant[q]) / min(k, len(relevant[q])) for q in top.index])


evaluation = pd.DataFrame({"k": [1, 5, 10, 20]})
evaluation["recall"] = evaluation["k"].map(recall_at)
print(evaluation.round(3).to_string(index=False))
""",
        check=True,
    ),
    md("Per topic, and the same-topic precision of the top 10 (are the hits at least on topic?):"),
    code(
        """
top10 = results[results["rank"] <= 10].merge(
    queries[["query", "topic"]].rename(columns={"topic": "query_topic"}), on="query"
)
top10["on_topic"] = top10["topic"] == top10["query_topic"]
per_topic = top10.groupby("query_topic").agg(on_topic=("on_topic", "mean"))
per_topic["recall@10"] = [
    recall_at(10, results[results["query"].isin(queries.loc[queries["topic"] == t, "query"])])
    for t in per_topic.index
]
print(per_topic.round(2).to_string())
""",
        check=True,
    ),
    md("""
## Next

* `deapi_ds.SearchIndex.from_frame(df)` indexes a frame read back from parquet (vectors in an
  `embedding` column).
* `deapi_ds.search(queries, df)` is the one-call version.
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
for path in saved["path"]:
    print(Path(path).name)
print(Image.open(saved["path"].iloc[0]).text["prompt"])
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
