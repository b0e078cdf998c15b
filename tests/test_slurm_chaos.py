"""Chaos on the real local cluster: 100+ short stages while a driver breaks things at random.

Faults, all real: SIGKILL of a stage's process inside its job, ``scancel`` of a pending or running
job, an early USR1 (the time-limit warning) to a job's batch shell, a restart of ``slurmctld``,
and SIGKILL of the ``harness repro`` process itself, after which ``harness collect --wait``
takes over (and may be killed in turn and replaced). The spec lets FAILED and CANCELLED be
retried (a researcher's own cancel is final by default), so every fault must be absorbed.

At the end: the collector exits 0; every stage is in ``dvc.lock`` exactly once and the lock is
byte-identical to a sequential ``dvc repro``'s; ``dvc status`` is clean (no output differs from
its lock hash, so none is half written) and no temporary file is left in ``work/``; and every job
SLURM ran for the run appears as an attempt in the manifest (the table accounts for all of them).

About 75-80 s a round on 2 cores (plus ~40 s for the sequential reference, once). Round 1 runs
in every test run (CI included); ``HARNESS_SLURM_CHAOS=1`` adds rounds 2 and 3, so the three run
in a row; ``$HARNESS_CHAOS_REPORT`` (a folder) receives one JSON per round.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from conftest_slurm import SCRIPT, slurm_cluster  # noqa: F401  (session fixture)
from project import make_project
from test_slurm_retry import job_pids

pytestmark = [pytest.mark.slurm, pytest.mark.chaos]
ALL_ROUNDS = os.environ.get("HARNESS_SLURM_CHAOS") == "1"
LATER_ROUND = pytest.mark.skipif(not ALL_ROUNDS, reason="rounds 2-3 are opt-in: set HARNESS_SLURM_CHAOS=1")

SPEC = {
    "branches": [f"x{i}" for i in range(40)],
    "work_s": 0.3,
    "chains": {"count": 12, "length": 5, "work_s": 0.2},
    "resources": {"default": {"cpus": 1, "mem_gb": 0.25, "time_min": 5, "signal_before_s": 0,
                              "retry": {"failed": 4, "cancelled": 4}}},
}
#: each stage is hit at most this often (below the retry counts, so every fault is absorbed)
HITS_PER_STAGE = 2
FAULTS = ("sigkill_stage", "scancel", "usr1", "restart_slurmctld", "kill_harness")


class _Lock:
    def __init__(self, text: str):
        self.text = text

    def lock(self) -> str:
        return self.text


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """A sequential ``dvc repro`` of the same project (once for the three rounds). For reruns
    while debugging, ``$HARNESS_CHAOS_REFERENCE_LOCK`` may name the dvc.lock such a run wrote."""
    cached = os.environ.get("HARNESS_CHAOS_REFERENCE_LOCK")
    if cached and Path(cached).exists():
        return _Lock(Path(cached).read_text())
    project = make_project(tmp_path_factory.mktemp("chaos-ref") / "p", SPEC)
    project.run(["dvc", "repro"], env={"HARNESS_RUNNER": "local"}, timeout=1800)
    return project


def run_jobs(run_id: str) -> dict[str, tuple[str, str]]:
    """job id -> (state, comment) for every job of the run SLURM knows."""
    proc = subprocess.run(["squeue", "--me", "-h", "-r", "-t", "all", "-O", "JobArrayID:|,State:|,Comment:|"],
                          capture_output=True, text=True)
    out = {}
    for line in proc.stdout.splitlines():
        parts = [p.strip() for p in line.split("|")]
        if len(parts) >= 3 and parts[2].startswith(f"{run_id}:"):
            out[parts[0]] = (parts[1], parts[2])
    return out


def latest_manifest(project) -> dict | None:
    found = sorted((project.root / ".harness" / "runs").glob("*.json"))
    try:
        return json.loads(found[-1].read_text()) if found else None
    except (json.JSONDecodeError, OSError):
        return None


def restart_slurmctld() -> None:
    pid = Path("/run/slurmctld.pid")
    if pid.exists():
        try:
            os.kill(int(pid.read_text().strip()), signal.SIGTERM)
        except (ProcessLookupError, ValueError):
            pass
    time.sleep(1.0)
    for _ in range(50):
        if subprocess.run(["pgrep", "-x", "slurmctld"], capture_output=True).returncode != 0:
            break
        time.sleep(0.2)
    subprocess.run(["bash", str(SCRIPT), "start"], capture_output=True, timeout=120)


@pytest.mark.parametrize("round_no", [1, pytest.param(2, marks=LATER_ROUND), pytest.param(3, marks=LATER_ROUND)])
def test_chaos_loses_nothing(slurm_cluster, reference, tmp_path, round_no):  # noqa: F811
    rng = random.Random(1000 + round_no)
    project = make_project(tmp_path / "p", SPEC)
    n_stages = len(yaml.safe_load(project.read("dvc.yaml"))["stages"])
    assert n_stages >= 100
    logs = tmp_path / "drivers"
    logs.mkdir()

    def start(cmd: list[str], i: int) -> subprocess.Popen:
        return subprocess.Popen(cmd, cwd=project.root, env=project.env, text=True,
                                stdout=open(logs / f"{i}.out", "w"), stderr=subprocess.STDOUT)

    proc = start(["harness", "repro", "--runner", "slurm", "-j", "0"], 0)
    drivers = 1
    counts = {f: 0 for f in FAULTS}
    hits: dict[str, int] = {}
    t0 = time.time()
    deadline = t0 + 900
    while time.time() < deadline:
        time.sleep(rng.uniform(1.0, 2.5))
        if proc.poll() is not None:
            break  # the run (or the collector that took it over) ended by itself
        m = latest_manifest(project)
        if not m:
            continue
        if sum(s["recorded"] for s in m["stages"].values()) > 0.85 * len(m["order"]):
            continue  # let the run finish once most of it is done
        jobs = run_jobs(m["run_id"])
        by_job = {s["job_id"]: n for n, s in m["stages"].items() if s["job_id"]}
        running = [j for j, (st, _) in jobs.items() if st == "RUNNING" and j in by_job
                   and hits.get(by_job[j], 0) < HITS_PER_STAGE]
        pending = [j for j, (st, _) in jobs.items() if st == "PENDING" and j in by_job
                   and hits.get(by_job[j], 0) < HITS_PER_STAGE]
        fault = rng.choice(FAULTS)
        if fault == "sigkill_stage" and running:
            job = rng.choice(running)
            pids = job_pids(job)
            if not pids:
                continue
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        elif fault == "scancel" and (running or pending):
            job = rng.choice(running + pending)
            subprocess.run(["scancel", job], capture_output=True)
        elif fault == "usr1" and running:
            job = rng.choice(running)
            subprocess.run(["scancel", "--signal=USR1", "--batch", job], capture_output=True)
        elif fault == "restart_slurmctld":
            restart_slurmctld()
            by_job, job = {}, ""
        elif fault == "kill_harness":
            proc.kill()
            proc.wait()
            proc = start(["harness", "collect", "--wait"], drivers)
            drivers += 1
            by_job, job = {}, ""
        else:
            continue
        counts[fault] += 1
        if by_job and job in by_job:
            hits[by_job[job]] = hits.get(by_job[job], 0) + 1
    rc = proc.wait(timeout=max(60, deadline - time.time()))
    output = (logs / f"{drivers - 1}.out").read_text()
    assert rc == 0, output[-4000:]

    m = latest_manifest(project)
    lock_text = project.lock()
    lock = yaml.safe_load(lock_text)["stages"]
    assert sorted(lock) == sorted(m["order"]) == sorted(yaml.safe_load(project.read("dvc.yaml"))["stages"])
    for name in m["order"]:  # exactly once: one entry per stage in the lock text itself
        assert lock_text.count(f"\n  {name}:\n") == 1, name
    assert lock_text == reference.lock()
    assert "Data and pipelines are up to date" in project.run(["dvc", "status"]).stdout
    leftovers = [p for p in (project.root / "work").rglob("*") if p.name.startswith(".") or ".tmp" in p.name]
    assert not leftovers, leftovers
    # every job SLURM ran for this run is an attempt in the manifest
    attempts = {a["job_id"] for s in m["stages"].values() for a in s["attempts"]}
    arrays = {g["job_id"] for g in m["groups"].values()}  # squeue also lists each array's own record
    slurm_jobs = set(run_jobs(m["run_id"])) - arrays
    assert slurm_jobs <= attempts, sorted(slurm_jobs - attempts)[:10]
    assert all(s["recorded"] for s in m["stages"].values())
    retries = sum(len(s["attempts"]) - 1 for s in m["stages"].values())
    causes: dict[str, int] = {}
    for s in m["stages"].values():
        for a in s["attempts"][:-1]:
            causes[a["cause"]] = causes.get(a["cause"], 0) + 1
    report = {"round": round_no, "stages": len(m["order"]), "jobs": len(attempts), "faults": counts,
              "retries": retries, "retry_causes": causes, "collectors": drivers, "lock_identical": True,
              "wall_s": round(time.time() - t0, 1)}
    print(json.dumps(report))
    if os.environ.get("HARNESS_CHAOS_REPORT"):
        out = Path(os.environ["HARNESS_CHAOS_REPORT"])
        out.mkdir(parents=True, exist_ok=True)
        (out / f"round{round_no}.json").write_text(json.dumps(report, indent=2) + "\n")
    assert sum(counts.values()) >= 5, counts
