"""``deapi-ds demo`` end to end on the emulator: outputs, cache reuse, failure isolation, data."""

from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from deapi_ds import _demo
from deapi_ds._demo import CLIPS, make_corpus, make_queries, recall_at_k, run_demo

DATA = Path(__file__).resolve().parents[1] / "data"
SRT_CUE = re.compile(
    r"(\d+)\n(\d\d:\d\d:\d\d,\d\d\d) --> (\d\d:\d\d:\d\d,\d\d\d)\n(.+?)(?:\n\n|\n?$)", re.S
)


def _run(out: Path, **kwargs) -> tuple[int, str, dict]:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = run_demo(out=str(out), **kwargs)
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    return code, buf.getvalue(), summary


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The quick demo run twice into the same folder, without a key."""
    out = tmp_path_factory.mktemp("demo") / "out"
    with pytest.MonkeyPatch.context() as mp:
        for name in ("DEAPI_API_KEY", "DEAPI_BASE_URL", "OPENAI_API_KEY", "OPENAI_BASE_URL"):
            mp.delenv(name, raising=False)
        mp.setenv("DEAPI_DS_PROGRESS", "0")
        first = _run(out, quick=True)
        second = _run(out, quick=True)
    return out, first, second


def _srt_cues(text: str) -> list[tuple[str, str, str]]:
    cues = [(m.group(2), m.group(3), m.group(4).strip()) for m in SRT_CUE.finditer(text)]
    assert cues, f"no SRT cues in {text!r}"
    return cues


def test_first_run_succeeds_on_the_emulator_and_says_so(runs):
    out, (code, stdout, summary), _ = runs
    assert code == 0, stdout
    first_line = stdout.splitlines()[0]
    assert "emulator" in first_line and "DEAPI_API_KEY" in first_line
    assert summary["backend"] == "emulator" and summary["first_run"] is True
    assert [s["status"] for s in summary["steps"]] == ["ok"] * 4
    assert summary["requests"] > 0 and summary["cached_rows"] == 0
    assert str(out / "report.html") in stdout


def test_parquet_tables_are_readable_and_aligned(runs):
    out, _, _ = runs
    corpus = pd.read_parquet(out / "corpus_embeddings.parquet")
    assert len(corpus) == 250 and {"id", "topic", "text", "embedding", "status"} <= set(corpus)
    assert corpus["status"].eq("cached").all()  # written by the second run
    assert {len(v) for v in corpus["embedding"]} == {1024}

    results = pd.read_parquet(out / "search_results.parquet")
    assert {"query", "rank", "score", "id", "topic", "text"} <= set(results)
    assert results.groupby("query")["rank"].max().eq(10).all()
    assert results.groupby("query")["score"].apply(lambda s: s.is_monotonic_decreasing).all()

    files = pd.read_parquet(out / "transcript_files.parquet")
    segments = pd.read_parquet(out / "transcript_segments.parquet")
    words = pd.read_parquet(out / "transcript_words.parquet")
    expected = {name: (language, text) for name, _voice, language, text in CLIPS}
    assert sorted(files["file"]) == sorted(expected)
    for row in files.itertuples():
        assert row.status == "cached"
        assert (row.language, row.text) == expected[row.file]
    assert set(segments["file"]) == set(expected)
    assert set(words["file"]) == set(expected)
    n_words = sum(len(text.split()) for *_, text in CLIPS)
    assert len(words) == n_words


def test_png_srt_and_report(runs):
    out, _, _ = runs
    with Image.open(out / "image_grid.png") as im:
        assert im.format == "PNG" and min(im.size) > 200
    assert len(list((out / "images").glob("*.png"))) == 4  # 2 prompts x 2 seeds
    for path in ("embedding_projection.png", "transcription_timeline.png"):
        with Image.open(out / path) as im:
            assert im.format == "PNG"

    srts = sorted((out / "subtitles").glob("*.srt"))
    assert [p.stem for p in srts] == sorted(Path(name).stem for name, *_ in CLIPS)
    for name, _voice, _language, text in CLIPS:
        cues = _srt_cues((out / "subtitles" / f"{Path(name).stem}.srt").read_text("utf-8"))
        assert " ".join(c[2] for c in cues) == text
        assert all(start < end for start, end, _ in cues)

    report = (out / "report.html").read_text(encoding="utf-8")
    assert "<script" not in report.lower()
    assert report.count("<audio") >= len(CLIPS)
    assert "data:image/" in report  # the grid thumbnails and plots are embedded
    for title in ("Embed a column", "Semantic search", "Transcription analysis", "Image grid"):
        assert title in report
    assert "recall" in report


def test_second_run_is_served_from_the_cache(runs):
    _, (_, _, first), (code, stdout, summary) = runs
    assert code == 0
    assert summary["first_run"] is False
    assert summary["requests"] == 0
    assert summary["cached_rows"] == summary["result_rows"] == first["result_rows"]
    steps = {s["name"]: s for s in summary["steps"]}
    assert steps["embeddings"]["cached_rows"] == 250
    assert steps["transcription"]["cached_rows"] == len(CLIPS)
    assert steps["images"]["cached_rows"] == 4
    assert steps["search"]["cached_rows"] == steps["search"]["rows"]
    assert "served from the cache" in stdout and "0 requests" in stdout


def test_one_failing_workflow_does_not_stop_the_others(tmp_path, monkeypatch):
    """No data/ folder (an installed wheel) and a broken embedding step: exit code 1, the
    search is skipped, transcription (of regenerated clips) and images still run."""
    monkeypatch.setattr(_demo, "find_data_dir", lambda: None)

    def broken(self, step):
        raise ConnectionError("embedding service unreachable")

    monkeypatch.setattr(_demo._Demo, "embed", broken)
    code, stdout, summary = _run(tmp_path / "out", quick=True)
    assert code == 1
    status = {s["name"]: s["status"] for s in summary["steps"]}
    assert status == {
        "embeddings": "failed",
        "search": "skipped",
        "transcription": "ok",
        "images": "ok",
    }
    errors = {s["name"]: s["error"] for s in summary["steps"]}
    assert "ConnectionError: embedding service unreachable" in errors["embeddings"]
    assert sorted(p.name for p in (tmp_path / "out" / "clips").iterdir()) == sorted(
        name for name, *_ in CLIPS
    )
    report = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    assert "embedding service unreachable" in report
    assert "Finished with failures" in stdout


def test_committed_data_matches_the_generators():
    corpus = pd.read_csv(DATA / "corpus.csv", dtype={"topic": "string", "text": "string"})
    queries = pd.read_csv(DATA / "queries.csv", dtype="string")
    pd.testing.assert_frame_equal(corpus, make_corpus(), check_dtype=False)
    pd.testing.assert_frame_equal(queries, make_queries(), check_dtype=False)
    assert len(corpus) == 1000 and corpus["topic"].value_counts().eq(125).all()
    assert corpus["id"].is_unique
    ids = set(corpus["id"])
    for rel, topic in zip(queries["relevant_ids"], queries["topic"], strict=True):
        hits = {int(x) for x in rel.split()}
        assert hits and hits <= ids
        assert set(corpus.loc[corpus["id"].isin(hits), "topic"]) == {topic}
    assert sorted(p.name for p in (DATA / "clips").iterdir()) == sorted(n for n, *_ in CLIPS)
    assert sorted(p.name for p in (DATA / "images").iterdir()) == ["fruit_bowl.png", "house.png"]
    total = sum(p.stat().st_size for p in DATA.rglob("*") if p.is_file())
    assert total < 5_000_000


def test_recall_at_k_counts_relevant_hits():
    queries = pd.DataFrame({"query": ["a", "b"], "relevant_ids": ["1 2", "9"]})
    results = pd.DataFrame(
        {"query": ["a", "a", "b", "b"], "rank": [1, 2, 1, 2], "id": [2, 5, 3, 9]}
    )
    scores = recall_at_k(results, queries, ks=(1, 2)).set_index("k")
    assert scores.loc[1, "recall"] == pytest.approx(0.5)  # a: 1/1, b: 0/1
    assert scores.loc[2, "recall"] == pytest.approx(0.75)  # a: 1/2, b: 1/1
    assert scores.loc[2, "hit_rate"] == pytest.approx(1.0)


def test_with_a_key_it_talks_to_the_configured_server(tmp_path, monkeypatch):
    """DEAPI_API_KEY set: no emulator is plugged in; requests go to DEAPI_BASE_URL (here an
    emulator served on loopback standing in for deAPI), and the rerun is served from the cache."""
    from deapi_ds.emulator import Emulator

    emu = Emulator()
    with emu.serve() as server:
        monkeypatch.setenv("DEAPI_API_KEY", "dpn-sk-demo-test")
        monkeypatch.setenv("DEAPI_BASE_URL", server.base_url)
        monkeypatch.setenv("DEAPI_DS_TIER", "unlimited")
        monkeypatch.setenv("DEAPI_DS_ALLOW_INSECURE_HTTP", "1")
        code, stdout, summary = _run(tmp_path / "out", quick=True)
        sent = sum(c["requests"] for c in emu.stats().values())
        code2, stdout2, summary2 = _run(tmp_path / "out", quick=True)
        sent_again = sum(c["requests"] for c in emu.stats().values()) - sent
    assert code == code2 == 0, stdout
    assert stdout.splitlines()[0].startswith(
        f"deapi_ds demo: running on the server at {server.base_url}"
    )
    assert "dpn-sk-demo-test" not in stdout + stdout2
    assert summary["backend"] == "deapi" and summary["requests"] is None
    assert sent > 0 and sent_again == 0
    assert summary2["cached_rows"] == summary2["result_rows"] > 0
