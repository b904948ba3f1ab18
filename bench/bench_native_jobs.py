"""Native job layer under deAPI's Basic job-status limit (50/min, 200/day), on virtual time.

100 link transcriptions (each job runs 30 s on the emulator), submissions not limited, status
reads limited to 50 per 61 s window (the client's window). The bound the limits set: every job
needs at least one status read after it is done, so 100 reads at 50 per window end one window
after the first 50, i.e. at 30 s + 61 s = 91 s. Then the same run is "killed" at 40 s and
resumed from the recorded ids: no job is submitted twice.

    PYTHONPATH=$PWD python bench/bench_native_jobs.py
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from test_native_jobs import World  # noqa: E402

import deapi_ds  # noqa: E402
from deapi_ds._jobs import JobItem, NativeBackend  # noqa: E402
from deapi_ds._native import transcription_request  # noqa: E402

N = 100
URL = "https://www.youtube.com/watch?v=emuLecture02"


def world() -> World:
    w = World(tier="basic", job_seconds=(2.0, 28.0), poll=1.0, max_poll=30.0)
    # only the status limit applies (submissions unlimited), on both sides
    w.emu.native.limits("none")
    w.emu.configure("v2.jobs", rpm=50)
    w.emu.native.set_daily_limit("v2.jobs", 200)
    profile = deapi_ds._profiles.DEAPI
    w.client.engine._rpm = lambda ep: profile.rpm_for(ep, "basic") if ep == "v2.jobs" else None
    return w


def main() -> None:
    items = [JobItem(i, transcription_request(source_url=URL)) for i in range(N)]
    w = world()
    outcomes = w.run(items)
    bound = 30.0 + 61.0
    polls = w.emu.stats("v2.jobs")["requests"]
    print(
        f"{N} jobs: all done={all(o.ok for o in outcomes)}, virtual time {w.now:.1f} s, "
        f"bound {bound:.0f} s ({w.now / bound - 1:+.1%}), status reads {polls}, "
        f"429s {w.emu.stats('v2.jobs')['rate_limited']}"
    )
    # the caller knows roughly how long a job runs (e.g. from the audio's duration)
    w = world()
    hinted = [JobItem(i, items[i].request, expected_seconds=30.0) for i in range(N)]
    outcomes = w.run(hinted)
    polls = w.emu.stats("v2.jobs")["requests"]
    print(
        f"{N} jobs, expected_seconds=30: all done={all(o.ok for o in outcomes)}, virtual time "
        f"{w.now:.1f} s ({w.now / bound - 1:+.1%}), status reads {polls}"
    )
    # the kernel dies at 60 s; a new one resumes from the ids recorded on acceptance
    w = world()
    w.run(items, kill_at=60.0)
    ids = dict(w.accepted)
    runner = w.make_runner(NativeBackend(w.make_client(w.client.settings)), max_poll=30.0)
    w.accepted.clear()
    resumed = w.run([JobItem(i, items[i].request, job_id=ids[i]) for i in range(N)], runner)
    print(
        f"killed at 60 s with {len(ids)} jobs accepted; resumed: all done="
        f"{all(o.ok for o in resumed)}, resubmitted {sum(o.submits for o in resumed)}, "
        f"jobs submitted in total {w.emu.native.submitted()}, finished at {w.now:.1f} s, "
        f"status reads {w.emu.stats('v2.jobs')['requests']}"
    )


if __name__ == "__main__":
    main()
