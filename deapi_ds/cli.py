"""The ``deapi-ds`` command (its help is plain text: see ``build_parser``).

deapi-ds demo [--out DIR]               run the three workflows end to end (emulator without a key)
deapi-ds emulator [--port 8000]         serve the emulator on loopback
deapi-ds models                         list the models your key can use
deapi-ds embed FILE --column text       embed a CSV/parquet column into a parquet file
deapi-ds transcribe FOLDER              transcribe a folder into parquet tables and SRT files
deapi-ds cache info|clear|compact       manage the result cache
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from ._version import __version__

__all__ = ["main"]


def _read_table(path: str):
    import pandas as pd

    p = Path(path)
    if p.suffix.lower() in (".parquet", ".pq"):
        return pd.read_parquet(p)
    if p.suffix.lower() in (".jsonl", ".ndjson"):
        return pd.read_json(p, lines=True)
    return pd.read_csv(p)


def _cmd_demo(args: argparse.Namespace) -> int:
    from ._demo import run_demo

    return run_demo(out=args.out, quick=args.quick)


def _cmd_emulator(args: argparse.Namespace) -> int:
    from .emulator import main_serve

    main_serve(args.port, host=args.host, api_key=args.api_key)
    return 0


def _use_emulator_if_asked(args: argparse.Namespace) -> None:
    if getattr(args, "emulator", False):
        from ._catalog import use_emulator

        use_emulator()


def _cmd_models(args: argparse.Namespace) -> int:
    import pandas as pd

    from ._catalog import models

    _use_emulator_if_asked(args)
    frame = models()
    cols = [c for c in ("id", "tasks", "dimension", "max_n", "max_size", "formats") if c in frame]
    with pd.option_context("display.width", 160, "display.max_columns", 10):
        print(frame[cols].to_string(index=False))
    return 0


def _cmd_embed(args: argparse.Namespace) -> int:
    from .embeddings import embed, estimate_embed

    _use_emulator_if_asked(args)
    frame = _read_table(args.input)
    if args.column not in frame.columns:
        print(
            f"error: column {args.column!r} not found; columns: {list(frame.columns)}",
            file=sys.stderr,
        )
        return 2
    if args.dry_run:
        print(estimate_embed(frame, args.column, model=args.model))
        return 0
    result = embed(frame, args.column, model=args.model)
    out = Path(args.out or Path(args.input).with_suffix(".embeddings.parquet"))
    frame = frame.assign(
        status=result.frame["status"].to_numpy(),
        error=result.frame["error"].to_numpy(),
        embedding=result.to_series().to_numpy(),
    )
    frame.to_parquet(out)
    print(result.summary())
    print(f"wrote {out}")
    return 0


def _cmd_transcribe(args: argparse.Namespace) -> int:
    from .transcription import transcribe_folder

    _use_emulator_if_asked(args)
    result = transcribe_folder(args.folder, model=args.model, language=args.language)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result.files.to_parquet(out / "files.parquet")
    result.segments.to_parquet(out / "segments.parquet")
    result.words.to_parquet(out / "words.parquet")
    result.export_subtitles(out / "subtitles")
    print(result.summary())
    print(f"wrote {out}/files.parquet, segments.parquet, words.parquet and subtitles/")
    return 0


def _cmd_cache(args: argparse.Namespace) -> int:
    from . import cache

    if args.action == "info":
        print(f"cache at {cache.location()}")
        print(cache.info().to_string(index=False))
    elif args.action == "clear":
        removed = cache.clear(task=args.task, model=args.model, older_than=args.older_than)
        print(f"removed {removed:,} rows")
    else:
        cache.compact(task=args.task, model=args.model)
        print("compacted")
    return 0


DESCRIPTION = """\
Run deAPI's models (embeddings, transcription, images, speech, video) over files, with a result
cache, or try everything offline with the built-in emulator."""

EPILOG = """\
examples:
  deapi-ds demo                           run the workflows end to end (emulator without a key)
  deapi-ds embed notes.csv --column text  embed a column into notes.embeddings.parquet
  deapi-ds transcribe interviews/         transcripts as parquet tables and SRT files
  deapi-ds cache info                     what the result cache holds

Set DEAPI_API_KEY to use deAPI; without it, pass --emulator (or run the demo)."""


def _command(sub: Any, name: str, summary: str, details: str = "") -> argparse.ArgumentParser:
    """A sub-command whose help is plain text: ``summary`` in the list, both in its own help."""
    return sub.add_parser(
        name,
        help=summary,
        description=f"{summary[0].upper()}{summary[1:]}.{' ' + details if details else ''}",
    )


def build_parser() -> argparse.ArgumentParser:
    """The command line parser; every help text is plain text (no reStructuredText markup)."""
    parser = argparse.ArgumentParser(
        prog="deapi-ds",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"deapi-ds {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    emulator_help = "use the built-in emulator instead of deAPI (offline, free)"

    p = _command(
        sub,
        "demo",
        "run the workflows end to end and write a report",
        "Uses deAPI when DEAPI_API_KEY is set, the emulator otherwise.",
    )
    p.add_argument(
        "--out", default="deapi_ds_output", help="output folder (default: deapi_ds_output)"
    )
    p.add_argument("--quick", action="store_true", help="smaller inputs")
    p.set_defaults(func=_cmd_demo)

    p = _command(
        sub,
        "emulator",
        "serve the deAPI emulator on loopback",
        "Point an OpenAI-compatible client at http://HOST:PORT/v1 with any dpn-sk- key.",
    )
    p.add_argument("--port", type=int, default=8000, help="port to listen on (default: 8000)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    p.add_argument("--api-key", default=None, help="accept only this key (default: any)")
    p.set_defaults(func=_cmd_emulator)

    p = _command(sub, "models", "list the models your key can use")
    p.add_argument("--emulator", action="store_true", help=emulator_help)
    p.set_defaults(func=_cmd_models)

    p = _command(
        sub,
        "embed",
        "embed a column of a CSV/parquet/JSONL file",
        "Writes the file's rows with status, error and embedding columns to a parquet file.",
    )
    p.add_argument("input", help="a .csv, .parquet or .jsonl file")
    p.add_argument("--column", default="text", help="the column holding the texts (default: text)")
    p.add_argument("--model", default="Bge_M3_FP16", help="embedding model (default: Bge_M3_FP16)")
    p.add_argument("--out", default=None, help="output file (default: INPUT.embeddings.parquet)")
    p.add_argument("--dry-run", action="store_true", help="print the estimate, spend nothing")
    p.add_argument("--emulator", action="store_true", help=emulator_help)
    p.set_defaults(func=_cmd_embed)

    p = _command(
        sub,
        "transcribe",
        "transcribe a folder of audio/video files",
        "Writes files.parquet, segments.parquet, words.parquet and subtitles/ (SRT).",
    )
    p.add_argument("folder", help="the folder to transcribe (sub-folders included)")
    p.add_argument("--out", default="transcripts", help="output folder (default: transcripts)")
    p.add_argument(
        "--model", default="WhisperLargeV3", help="transcription model (default: WhisperLargeV3)"
    )
    p.add_argument("--language", default=None, help="ISO code such as 'en' (default: detected)")
    p.add_argument("--emulator", action="store_true", help=emulator_help)
    p.set_defaults(func=_cmd_transcribe)

    p = _command(sub, "cache", "inspect or clean the result cache")
    p.add_argument("action", choices=["info", "clear", "compact"], help="what to do")
    p.add_argument("--task", default=None, help="only this task (e.g. embeddings)")
    p.add_argument("--model", default=None, help="only this model")
    p.add_argument("--older-than", default=None, help="only entries older than this: 30d, 12h")
    p.set_defaults(func=_cmd_cache)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from ._exceptions import DeapiError

    try:
        return int(args.func(args) or 0)
    except DeapiError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; finished batches are cached, rerun to continue", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `deapi-ds cache info | head`
        sys.stderr.close()
        return 0


if __name__ == "__main__":  # pragma: no cover
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
