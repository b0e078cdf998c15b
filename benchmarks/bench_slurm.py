"""SLURM scheduler benchmark: 8 independent smoke training stages, parallel vs sequential.

In one run, on the local one-node cluster (``scripts/slurm_cluster.sh start``):

* baseline: plain ``dvc repro`` of the 8 stages (sequential, DVC holds the repo lock; torch
  uses its default thread count, as a researcher's ``dvc repro`` would);
* conservative baseline: the same with ``OMP_NUM_THREADS=1``, the thread count each SLURM job
  gets (``--cpus-per-task=1``), so the ratio is not flattered by small models running faster
  single-threaded;
* ``harness repro -j 0 --runner slurm``: all 8 submitted at once, recorded into dvc.lock.

Prints the wall ratios (target <= 0.6 on 2 cores) and the per-job scheduling overhead:
core-seconds the cluster held but the stage did not run (submission, dispatch, polling,
recording), divided by the number of jobs; plus the dispatch latency (slot freed -> next job
started, from the jobs' own records) and the recording tail (last job end -> dvc.lock written).

Second part (issue 15): a synthetic 1,000-stage DAG (fan-out of 400 branches, their fan-in
join, 100 parallel chains of 6 links) submitted with ``harness submit``; prints the submission
time (sbatch calls: jobs + arrays, after DVC's planning, which is printed apart), then cancels
the jobs (running 1,000 stages is not the point). And from the 8-stage run: the idle-slot
overhead (a slot's idle time between one job's end and the next job's start, from the jobs' own
records) and how long after a job ended the collector noticed and recorded it.

Run from the repo root with the venv active:
``python benchmarks/bench_slurm.py [--submit-only | --no-baseline] [--no-big]``
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "slurm_support"))

from project import make_project  # noqa: E402

N = 8
SPEC = {
    "train": {"variants": N, "steps": 60, "d_model": 64, "vocab": 64, "seq_len": 32, "batch_size": 16},
    "resources": {"train": {"cpus": 1, "mem_gb": 1, "time_min": 10, "signal_before_s": 60}},
}
TARGETS = [f"slurm_selftest-train-{i}" for i in range(N)]


def timed(project, cmd: list[str], env: dict | None = None) -> float:
    t0 = time.perf_counter()
    project.run(cmd, env=env, timeout=1800)
    return time.perf_counter() - t0


def records(project) -> list[tuple[float, float]]:
    spans = []
    for stage in TARGETS:
        (path,) = (project.root / ".harness" / "runs").glob(f"*/records/{stage}.jsonl")
        ev = [json.loads(line) for line in path.read_text().splitlines()]
        spans.append((ev[0]["t"], ev[-1]["t"]))
    return spans


BIG = {"branches": [f"x{i}" for i in range(400)], "chains": {"count": 100, "length": 6},
       "resources": {"default": {"cpus": 1, "mem_gb": 0.25, "time_min": 5, "signal_before_s": 0}}}


def big_dag(tmp: Path) -> None:
    """Submit the 1,000-stage DAG, print the times, cancel it."""
    import re
    import subprocess

    project = make_project(tmp / "big", BIG)
    t0 = time.perf_counter()
    proc = project.run(["harness", "submit", "-j", "0"], timeout=1800)
    wall = time.perf_counter() - t0
    run = json.loads(sorted((project.root / ".harness" / "runs").glob("*.json"))[-1].read_text())
    ids = sorted({s["job_id"].split("_")[0] for s in run["stages"].values() if s["job_id"]})
    subprocess.run(["scancel", *ids], check=False)
    found = re.search(r"submitted (\d+) stage\(s\) as (\d+) job\(s\) \+ (\d+) array\(s\) in ([0-9.]+)s", proc.stdout)
    n, singles, n_arrays, submit_s = found.groups()
    print(f"1,000-stage DAG ({n} stages: fan-out 400, fan-in 1, 100 chains x 6): submitted as {singles} job(s) "
          f"+ {n_arrays} array(s) = {int(singles) + int(n_arrays)} sbatch calls in {float(submit_s):.2f}s "
          f"(target <= 10 s); whole `harness submit` incl. DVC planning {wall:.1f}s")


def completion(project) -> tuple[list[float], list[float]]:
    """Seconds from each job's end (its record) to the collector noticing / recording it."""
    run = json.loads(sorted((project.root / ".harness" / "runs").glob("*.json"))[-1].read_text())
    noticed, recorded = [], []
    for stage in TARGETS:
        (path,) = (project.root / ".harness" / "runs").glob(f"*/records/{stage}.jsonl")
        end = json.loads(path.read_text().splitlines()[-1])["t"]
        noticed.append(run["stages"][stage]["noticed_at"] - end)
        recorded.append(run["stages"][stage]["recorded_at"] - end)
    return noticed, recorded


def main() -> None:
    from harness.slurm import jobs

    if not jobs.available():
        sys.exit("no SLURM controller answers: run `scripts/slurm_cluster.sh start` first")
    if "--submit-only" in sys.argv:
        with tempfile.TemporaryDirectory() as tmp:
            big_dag(Path(tmp))
        return
    slots = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        projects = {name: make_project(Path(tmp) / name, SPEC) for name in ("seq", "seq1", "par")}
        for project in projects.values():  # the shared upstream gate is not part of the measurement
            project.run(["dvc", "repro", "check-params"])
        if "--no-baseline" in sys.argv:  # the SLURM-side numbers only (idle slots, completion, 1,000-stage submit)
            seq = seq1 = float("nan")
        else:
            print("timing sequential dvc repro ...", flush=True)
            seq = timed(projects["seq"], ["dvc", "repro", *TARGETS], env={"HARNESS_RUNNER": "local"})
            seq1 = timed(projects["seq1"], ["dvc", "repro", *TARGETS],
                         env={"HARNESS_RUNNER": "local", "OMP_NUM_THREADS": "1"})
        print(f"  {seq:.1f}s, {seq1:.1f}s; timing harness repro --runner slurm ...", flush=True)
        t_submit = time.time()
        par = timed(projects["par"], ["harness", "repro", "-j", "0", "--runner", "slurm", *TARGETS])
        t_done = time.time()
        spans = sorted(records(projects["par"]))
        noticed, recorded = completion(projects["par"])
        status = projects["par"].run(["dvc", "status", *TARGETS]).stdout
        assert "Data and pipelines are up to date" in status, status
        if "--no-big" not in sys.argv:
            big_dag(Path(tmp))

    busy = sum(end - start for start, end in spans)
    ends = sorted(end for _, end in spans)
    ready = [t_submit] * min(slots, N) + ends[: max(0, N - slots)]
    dispatch = [start - r for (start, _), r in zip(spans, ready)]
    overhead = (par * slots - busy) / N
    print(f"{N} independent smoke training stages, {slots} cores, one-node local SLURM")
    print(f"sequential dvc repro (default threads): {seq:6.1f}s")
    print(f"sequential dvc repro (1 thread/stage):  {seq1:6.1f}s")
    print(f"harness repro -j --runner slurm:        {par:6.1f}s   (mean job run {busy / N:.1f}s)")
    print(f"wall ratio vs dvc repro, same threads per stage: {par / seq1:.2f}  (target <= 0.6)")
    print(f"wall ratio vs plain dvc repro (default threads): {par / seq:.2f}  "
          "(flattered when small models run slower multi-threaded)")
    ends_sorted = sorted(end for _, end in spans)
    starts_sorted = sorted(start for start, _ in spans)
    idle = [st - en for st, en in zip(starts_sorted[slots:], ends_sorted)]
    if idle:
        print(f"idle-slot overhead (a slot's idle time from one job's end to the next job's start): "
              f"mean {sum(idle) / len(idle):.2f}s, max {max(idle):.2f}s over {len(idle)} hand-overs (target <= 0.3 s)")
    print(f"completion: noticed max {max(noticed):.2f}s, recorded max {max(recorded):.2f}s after the job ended "
          f"(target <= 2 s; recording also waits for DVC's plan order)")
    print(f"per-job scheduling overhead: {overhead:.2f}s of slot time "
          f"(dispatch latency mean {sum(dispatch) / N:.2f}s, max {max(dispatch):.2f}s; "
          f"recording tail {t_done - ends[-1]:.2f}s)")


if __name__ == "__main__":
    main()
