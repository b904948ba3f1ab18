"""What ``import deapi_ds`` costs, as a ratio to ``import pandas`` (its own first dependency).

    python bench/bench_import.py [--repeat 7]

Each measurement is a fresh interpreter (``python -c "import X"``, byte code already compiled
into a private cache folder);
its CPU time (user + system, read by the parent) is what is compared, so other processes
competing for the cores hardly change it. The interpreter's own start-up (``python -c pass``)
is subtracted and the best of ``--repeat`` runs is kept, interleaving the three commands. Also lists the heavy libraries that ``import deapi_ds`` pulled in (they must
wait for first use). Goal (issue 14.15): ratio <= 1.3.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: libraries that only some calls need; importing deapi_ds must not import them
LAZY = (
    "av",
    "soundfile",
    "matplotlib",
    "matplotlib.pyplot",
    "ipywidgets",
    "IPython",
    "pyarrow.parquet",
    "pytest",
    "PIL.Image",
    "tqdm.notebook",
)


#: byte code is cached as users have it (PYTHONDONTWRITEBYTECODE would recompile deapi_ds on
#: every run), in a private folder rather than next to the sources
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
ENV["PYTHONPYCACHEPREFIX"] = os.path.join(tempfile.gettempdir(), "deapi_ds_bench_pycache")


def _run(code: str) -> float:
    """CPU seconds (user + system) of a fresh interpreter running ``code``: unlike wall time,
    hardly changed by other processes competing for the cores."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, env=ENV)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def measure(repeat: int) -> dict[str, float]:
    commands = {"python": "pass", "pandas": "import pandas", "deapi_ds": "import deapi_ds"}
    for code in commands.values():  # warm the byte-code and file caches
        _run(code)
    best = dict.fromkeys(commands, float("inf"))
    for _ in range(repeat):
        for name, code in commands.items():
            best[name] = min(best[name], _run(code))
    return best


def heavy_modules() -> list[str]:
    code = f"import sys, deapi_ds; print(' '.join(m for m in {LAZY!r} if m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, cwd=ROOT, env=ENV, capture_output=True, text=True
    )
    return out.stdout.split()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    best = measure(args.repeat)
    pandas = best["pandas"] - best["python"]
    ours = best["deapi_ds"] - best["python"]
    print(f"python start-up    {best['python'] * 1000:7.0f} ms (subtracted below)")
    print(f"import pandas      {pandas * 1000:7.0f} ms")
    print(f"import deapi_ds    {ours * 1000:7.0f} ms (pandas included)")
    print(f"ratio              {ours / pandas:7.2f}  (goal <= 1.3)")
    heavy = heavy_modules()
    print(f"heavy libraries imported by `import deapi_ds`: {', '.join(heavy) or 'none'}")


if __name__ == "__main__":
    main()
