"""1,000 images through ocr() under deAPI's Basic limits, scaled; then a kill mid-run and a rerun.

    PYTHONPATH=$PWD python bench/bench_ocr.py [--images 1000 --scale 60 --job 2.0]

Basic allows 5 OCR submissions and 50 job-status reads per minute (deapi-reference.md §4.2):
1,000 images take 200 minutes there. The bench raises both limits by ``--scale`` (60: 300 OCR
requests and 3,000 status reads per minute, the same ratio), on the emulator *and* in the
client (``set_config(rpm=...)``), and leaves the daily quota out (Basic's 50 a day would make it
20 days). The emulator runs in this process on loopback; each client run is a separate Python
process, so the kill is a real ``SIGKILL`` of a process with jobs in flight.

The bound the limits set: submissions go out in windows of ``rpm`` (the client's window is 61 s),
so the last of ``n`` images is submitted (ceil(n / rpm) - 1) windows after the first, and its
job then runs ``--job`` seconds. ``time / bound`` says how close ocr() comes (goal: within 10%).

The kill: a run is killed after ``--kill-after`` seconds, then rerun to the end on the same
cache. Every job id is cached the moment the job is accepted, so the rerun polls the jobs that
were in flight instead of submitting them again: images paid twice = submissions - images.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

KEY = "dpn-sk-0|bench"
WINDOW = 61.0  # the client's rate-limit window (one second of slack over deAPI's minute)

CLIENT = f"""
import json, sys, time
import deapi_ds
base, cache, folder, ocr_rpm, jobs_rpm = sys.argv[1:6]
deapi_ds.set_config(
    api_key={KEY!r}, base_url=base + "/v1", native_base_url=base + "/api/v2", cache_dir=cache,
    rpm={{"v2.images.ocr": float(ocr_rpm), "v2.jobs": float(jobs_rpm)}}, progress=False,
)
start = time.perf_counter()
res = deapi_ds.ocr(folder, progress=False)
seconds = time.perf_counter() - start
print(json.dumps({{"seconds": seconds, "status": res["status"].value_counts().to_dict(),
                   "exact": int((res["text"] == res["source"].str.replace(".png", "")
                                 .str.replace("_", " ")).sum()),
                   "jobs": res.meta["jobs"], "resumed": res.meta["resumed"]}}))
"""


def write_images(folder: Path, n: int) -> None:
    from deapi_ds.emulator import render_text_image

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        text = f"SCAN {i:04d} TOTAL {i * 7 % 1000:03d}"  # the file name says what it reads
        (folder / f"{text.replace(' ', '_')}.png").write_bytes(render_text_image(text, scale=1))


def run_client(base: str, cache: str, folder: Path, ocr_rpm: float, jobs_rpm: float,
               kill_after: float | None = None) -> dict | None:  # fmt: skip
    cmd = [sys.executable, "-c", CLIENT, base, cache, str(folder), str(ocr_rpm), str(jobs_rpm)]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    env.pop("DEAPI_API_KEY", None)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, env=env, text=True)
    if kill_after is not None:
        try:
            proc.wait(timeout=kill_after)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return None
    out, _ = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"client failed ({proc.returncode})")
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--scale", type=float, default=60.0, help="x Basic's 5/min and 50/min")
    ap.add_argument("--job", type=float, default=2.0, help="seconds each OCR job runs")
    ap.add_argument("--kill-after", type=float, default=None, help="default: 1.5 windows")
    args = ap.parse_args()
    from deapi_ds.emulator import Emulator

    n, ocr_rpm, jobs_rpm = args.images, round(5 * args.scale), round(50 * args.scale)
    emu = Emulator()
    emu.native.job_seconds = (args.job / 4, args.job * 3 / 4)
    emu.native.balance = 1e6
    emu.configure("v2.images.ocr", rpm=ocr_rpm)
    emu.configure("v2.jobs", rpm=jobs_rpm)
    with tempfile.TemporaryDirectory() as tmp, emu.serve() as server:
        base = server.base_url.removesuffix("/v1")
        folder = Path(tmp) / "scans"
        write_images(folder, n)
        bound = (math.ceil(n / ocr_rpm) - 1) * WINDOW + args.job
        print(f"# {n:,} images, OCR {ocr_rpm:g}/min and job status {jobs_rpm:g}/min "
              f"(Basic x{args.scale:g}), jobs of {args.job:g} s")  # fmt: skip
        out = run_client(base, str(Path(tmp) / "cache1"), folder, ocr_rpm, jobs_rpm)
        stats = emu.stats("v2.images.ocr")
        print(
            f"run: {out['seconds']:.1f} s for {n:,} images (bound set by the limits "
            f"{bound:.1f} s: {out['seconds'] / bound - 1:+.1%}); statuses {out['status']}, "
            f"exact text {out['exact']:,}/{n:,}; OCR requests {int(stats['requests']):,}, "
            f"429s {int(stats['rate_limited'])}, status reads "
            f"{int(emu.stats('v2.jobs')['requests']):,}"
        )
        emu.reset_stats()
        before = emu.native.submitted()
        kill_after = args.kill_after or 1.5 * WINDOW
        cache = str(Path(tmp) / "cache2")
        run_client(base, cache, folder, ocr_rpm, jobs_rpm, kill_after=kill_after)
        killed_at = emu.native.submitted() - before
        time.sleep(args.job)  # the jobs in flight finish on the server meanwhile
        out = run_client(base, cache, folder, ocr_rpm, jobs_rpm)
        total = emu.native.submitted() - before
        print(
            f"kill: SIGKILL after {kill_after:.0f} s with {killed_at:,} jobs submitted; rerun: "
            f"{out['jobs']:,} new jobs, {out['resumed']:,} resumed from cached ids, statuses "
            f"{out['status']}; submissions in total {total:,} for {n:,} images -> "
            f"{total - n:,} images paid twice"
        )


if __name__ == "__main__":
    main()
