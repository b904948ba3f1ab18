"""Results keep their kind under row selections, and save() is one shape on every result."""

from __future__ import annotations

import inspect
import typing

import numpy as np
import pandas as pd
import pytest

import deapi_ds
from deapi_ds._result import ResultFrame
from deapi_ds.emulator._media import synthesize_speech

FAST_VIDEO = {"poll": 0.01, "max_poll": 0.02, "size": "256x256", "seconds": 2}


def _selections(res):
    """Every way of selecting rows 1 and 2 (in the original order) of a 3+ row result."""
    labels = res.frame.index[[1, 2]]
    mask = np.zeros(len(res), dtype=bool)
    mask[[1, 2]] = True
    return {
        "iloc": res.iloc[[1, 2]],
        "iloc slice": res.iloc[1:3],
        "iloc rows and all columns": res.iloc[1:3, :],
        "loc": res.loc[labels] if labels.is_unique else res.iloc[[1, 2]],
        "mask": res[mask],
        "series mask": res[pd.Series(mask, index=res.frame.index)],
        "tail": res.tail(len(res) - 1).head(2),
        "query": res.iloc[[1, 2]].query("index == index"),
    }


def _check_selection(res, kind, positions=(1, 2)):
    for how, sub in _selections(res).items():
        assert type(sub) is kind, how
        pd.testing.assert_frame_equal(sub.frame, res.frame.iloc[list(positions)], obj=how)
    head = res.head(2)
    assert type(head) is kind
    pd.testing.assert_frame_equal(head.frame, res.frame.iloc[:2])


@pytest.fixture
def embedded(emulator):
    return deapi_ds.embed(["a fox", None, "a bay", "a hill"], cache=None)


def test_embedding_selections_keep_vectors(embedded):
    _check_selection(embedded, deapi_ds.EmbeddingResult)
    sub = embedded[embedded.status == "ok"]
    assert isinstance(sub, deapi_ds.EmbeddingResult) and len(sub) == 3
    np.testing.assert_array_equal(sub.matrix, embedded.matrix[[0, 2, 3]])
    assert sub.matrix.flags.c_contiguous and sub.matrix.dtype == np.float32
    back = embedded.sort_values("status", ascending=False)  # reordering: vectors follow
    order = embedded.frame.reset_index(drop=True).sort_values("status", ascending=False).index
    np.testing.assert_array_equal(back.matrix, embedded.matrix[order.to_numpy()], strict=True)
    assert embedded.matrix.shape == (4, 1024)  # the original is untouched


def test_column_selections_are_plain(embedded):
    assert isinstance(embedded["status"], pd.Series)
    assert type(embedded[["status"]]) is pd.DataFrame
    assert type(embedded.loc[:, ["status"]]) is pd.DataFrame
    assert isinstance(embedded.iloc[0], pd.Series)
    assert "__deapi_ds_position__" not in embedded.iloc[0].index
    assert type(embedded.assign(x=1)) is pd.DataFrame
    assert type(embedded.fillna({"error": "?"})) is pd.DataFrame
    assert embedded.iloc[0, -1] == embedded.frame.iloc[0, -1] == 4  # no hidden column at the end


def test_speech_selection_keeps_players(emulator):
    clips = deapi_ds.speak(["One.", "Two.", "Three."], voice="af_bella", cache=None)
    _check_selection(clips, deapi_ds.SpeechResult)
    two = clips.head(2)
    html = two._repr_mimebundle_()["text/html"]
    assert html.count("<audio") == 2 and "SpeechResult: 2 rows" in html
    assert "b'" not in repr(two)  # no raw bytes


def test_image_selection_keeps_thumbnails(emulator):
    out = deapi_ds.generate_images(["a", "b", "c"], cache=None)
    _check_selection(out, deapi_ds.ImageResult)
    assert out.head(2)._repr_mimebundle_()["text/html"].count("<img") == 2


def test_transcription_selection_follows_files(emulator, tmp_path):
    paths = []
    for i, text in enumerate(["Hello there.", "Second file here.", "A third one."]):
        path = tmp_path / f"f{i}.mp3"
        path.write_bytes(synthesize_speech(text, voice="af_bella", fmt="mp3"))
        paths.append(str(path))
    res = deapi_ds.transcribe(paths, cache=None)
    assert res.ok.all() and res.segments["file"].nunique() == 3
    _check_selection(res, deapi_ds.TranscriptionResult)
    sub = res.iloc[[2]]
    fid = sub.frame["file"].iloc[0]
    assert set(sub.segments["file"]) == {fid} and set(sub.words["file"]) <= {fid}
    assert len(sub.segments) == int((res.segments["file"] == fid).sum())
    assert "Hello" not in sub.to_srt(fid)
    assert res.segments["file"].nunique() == 3  # the original is untouched


def test_video_selection_keeps_jobs(emulator):
    jobs = deapi_ds.generate_video(["one", "two", "three"], **FAST_VIDEO)
    _check_selection(jobs, deapi_ds.VideoJobs)
    sub = jobs.iloc[[0, 2]]
    assert [j.prompt for j in sub.jobs] == ["one", "three"]
    assert sub.jobs[0] is jobs.jobs[0]
    assert sub._repr_mimebundle_()["text/html"].count("<video") == 2


# --- save() ----------------------------------------------------------------------------------

SAVERS = [deapi_ds.ImageResult, deapi_ds.OCRResult, deapi_ds.SpeechResult, deapi_ds.VideoJobs]


def test_every_result_with_media_has_save():
    media_kinds = [
        cls
        for name in deapi_ds.__all__
        if isinstance(cls := getattr(deapi_ds, name), type)
        and issubclass(cls, ResultFrame)
        and cls._media_columns
    ]
    assert sorted(c.__name__ for c in media_kinds) == sorted(c.__name__ for c in SAVERS)


@pytest.mark.parametrize("cls", SAVERS)
def test_save_has_one_signature(cls):
    sig = inspect.signature(cls.save)
    params = list(sig.parameters.values())
    assert [p.name for p in params[:2]] == ["self", "folder"]
    assert params[1].kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
    assert sig.parameters["overwrite"].kind is inspect.Parameter.KEYWORD_ONLY
    assert sig.parameters["overwrite"].default is False
    hints = typing.get_type_hints(cls.save, vars(inspect.getmodule(cls)))
    assert hints["return"] is pd.Series


def test_save_returns_paths_aligned_and_never_replaces_other_content(emulator, tmp_path):
    clips = deapi_ds.speak(["One.", None], voice="af_bella", cache=None)
    paths = clips.save(tmp_path)
    assert paths.name == "path" and paths.index.equals(clips.frame.index)
    assert paths.isna().tolist() == [False, True]
    assert clips.save(tmp_path).equals(paths)  # same bytes: a rerun is fine
    other = deapi_ds.speak(["One."], voice="af_bella", speed=1.5, cache=None)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        other.save(tmp_path)
    other.save(tmp_path, overwrite=True)

    jobs = deapi_ds.generate_video(["one", "two"], **FAST_VIDEO)
    saved = jobs.save(tmp_path / "videos")
    assert saved.name == "path" and saved.notna().all()
    assert jobs.save(tmp_path / "videos").equals(saved)
    assert jobs.frame["path"].tolist() == saved.tolist()


# --- missing vectors -------------------------------------------------------------------------


def test_rows_without_a_vector_hold_nan_vectors_everywhere(emulator, tmp_path):
    res = deapi_ds.embed(["a fox", None, "  ", "a bay"], cache=None)
    assert res.status.tolist() == ["ok", "empty", "empty", "ok"]
    assert np.isnan(res.matrix[[1, 2]]).all() and not np.isnan(res.matrix[[0, 3]]).any()
    column = res.to_series()
    for cell, row in zip(column, res.matrix, strict=True):
        assert isinstance(cell, np.ndarray) and cell.dtype == np.float32 and cell.shape == (1024,)
        np.testing.assert_array_equal(cell, row)
    path = tmp_path / "e.parquet"
    pd.DataFrame({"embedding": column}).to_parquet(path)
    back = np.stack(pd.read_parquet(path)["embedding"])
    np.testing.assert_array_equal(back, res.matrix)  # NaN rows compare equal here
    arrow = res.to_series(arrow=True)
    np.testing.assert_array_equal(np.stack(arrow.to_numpy()).astype(np.float32), res.matrix)
