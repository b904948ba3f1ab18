"""The deapi-ds command, run in-process against the emulator."""

from __future__ import annotations

import pandas as pd
import pytest

from deapi_ds.cli import build_parser, main


def test_models_on_the_emulator(capsys):
    assert main(["models", "--emulator"]) == 0
    out = capsys.readouterr().out
    assert "Bge_M3_FP16" in out and "Flux1schnell" in out


def test_embed_dry_run_then_real(tmp_path, capsys):
    src = tmp_path / "texts.csv"
    pd.DataFrame({"text": ["a cat", "a dog", None]}).to_csv(src, index=False)
    assert main(["embed", str(src), "--column", "text", "--emulator", "--dry-run"]) == 0
    assert "2 unique" in capsys.readouterr().out
    out_path = tmp_path / "out.parquet"
    assert main(["embed", str(src), "--column", "text", "--emulator", "--out", str(out_path)]) == 0
    frame = pd.read_parquet(out_path)
    assert list(frame["status"]) == ["ok", "ok", "empty"]
    assert frame["embedding"].iloc[0].dtype == "float32"


def test_embed_unknown_column(tmp_path, capsys):
    src = tmp_path / "t.csv"
    pd.DataFrame({"body": ["x"]}).to_csv(src, index=False)
    assert main(["embed", str(src), "--column", "text", "--emulator"]) == 2
    assert "column 'text' not found" in capsys.readouterr().err


def test_errors_are_one_line_without_a_key(tmp_path, capsys):
    src = tmp_path / "t.csv"
    pd.DataFrame({"text": ["x"]}).to_csv(src, index=False)
    assert main(["embed", str(src)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: No API key found") and "Traceback" not in err


def test_cache_info(capsys):
    assert main(["cache", "info"]) == 0
    assert "cache at" in capsys.readouterr().out


def test_help_lists_commands():
    text = build_parser().format_help()
    for command in ("demo", "emulator", "models", "embed", "transcribe", "cache"):
        assert command in text
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--version"])
