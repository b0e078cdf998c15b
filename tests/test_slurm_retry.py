"""Retries by cause and job arrays, on the real local cluster (scripts/slurm_cluster.sh).

What is real and what is injected: FAILED (a stage raising), CANCELLED, SIGTERM/USR1 delivery,
``--mem``/``--time``/``--exclude``/``--array``/``aftercorr`` as SLURM applies them, are real. The
one-node cluster without cgroups cannot end a job OUT_OF_MEMORY, NODE_FAIL or PREEMPTED, nor
TIMEOUT in test time, so those end states are injected at the layer that reads job states
(``$HARNESS_SLURM_INJECT``, :func:`harness.slurm.jobs.inject`): the job really ends (completes,
or is really killed with SIGTERM, as SLURM does at a time limit), and the state reader reports
the injected state instead. Everything after that (the decision, the new sbatch, the re-pointed
dependents, the lock) is the real path.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest_slurm import slurm_cluster  # noqa: F401  (session fixture)
from project import make_project

pytestmark = pytest.mark.slurm

DIAMOND = {"branches": ["b", "c", "d"], "work_s": 0.5}


def manifest(project) -> dict:
    path = sorted((project.root / ".harness" / "runs").glob("*.json"))[-1]
    return json.loads(path.read_text())


def inject(project, table: dict) -> dict:
    path = project.root.parent / f"{project.root.name}-inject.json"
    path.write_text(json.dumps(table))
    return {"HARNESS_SLURM_INJECT": str(path)}


def scontrol(job_id: str) -> str:
    return subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True).stdout


def job_pids(job_id: str, needle: str = "harness run") -> list[int]:
    """Processes of one SLURM job (its environment names the job) running ``needle``."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            env = (proc / "environ").read_bytes().split(b"\0")
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "_" in job_id:  # an array task: its environment names the array and the task
            array, task = job_id.split("_", 1)
            mine = f"SLURM_ARRAY_JOB_ID={array}".encode() in env and f"SLURM_ARRAY_TASK_ID={task}".encode() in env
        else:
            mine = f"SLURM_JOB_ID={job_id}".encode() in env
        if mine and needle in cmd and "bash" not in cmd.split()[0]:
            pids.append(int(proc.name))
    return pids


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """Plain sequential ``dvc repro`` of the same project: the lock every run must reproduce."""
    project = make_project(tmp_path_factory.mktemp("ref") / "p", DIAMOND)
    project.run(["dvc", "repro"], env={"HARNESS_RUNNER": "local"})
    return project


def test_oom_doubles_memory_preempted_requeues_and_the_lock_is_exact(slurm_cluster, reference, tmp_path):  # noqa: F811
    project = make_project(tmp_path / "p", DIAMOND)
    env = inject(project, {"slurm_selftest-branch-b": {"1": {"state": "OUT_OF_MEMORY"}},
                           "slurm_selftest-branch-c": {"1": {"state": "PREEMPTED"}}})
    proc = project.run(["harness", "repro", "--runner", "slurm"], env=env, timeout=240)
    run = manifest(project)
    b, c = run["stages"]["slurm_selftest-branch-b"], run["stages"]["slurm_selftest-branch-c"]
    assert [a["state"] for a in b["attempts"]] == ["OUT_OF_MEMORY", "COMPLETED"], b
    assert b["attempts"][0]["injected"] and b["attempts"][0]["action"] == "resubmitted"
    assert b["attempts"][1]["mem_mb"] == 2 * b["attempts"][0]["mem_mb"] == 512
    assert "MinMemoryNode=512M" in scontrol(b["attempts"][1]["job_id"])  # SLURM got the doubled memory
    assert [a["state"] for a in c["attempts"]] == ["PREEMPTED", "COMPLETED"]
    assert c["attempts"][1]["mem_mb"] == c["attempts"][0]["mem_mb"]  # unchanged
    # the three branches went as one array; the join waited for the whole of it, then was re-pointed
    assert any(len(g["members"]) == 3 for g in run["groups"].values())
    assert "_" in b["attempts"][0]["job_id"] and "_" not in b["attempts"][1]["job_id"]
    join = run["stages"]["slurm_selftest-join"]
    assert join["recorded"] and join["attempts"][-1]["state"] == "COMPLETED"
    # the attempts table accounts for every job
    assert "OUT_OF_MEMORY (injected)" in proc.stdout and "PREEMPTED (injected)" in proc.stdout
    assert "memory 256 -> 512 MiB" in json.dumps(run) or "resubmitted" in proc.stdout
    assert project.lock() == reference.lock()
    assert "Data and pipelines are up to date" in project.run(["dvc", "status"]).stdout


def test_failed_is_final_unless_the_spec_asks_and_dependents_are_named(slurm_cluster, tmp_path):  # noqa: F811
    spec = {**DIAMOND, "resources": {"branch": {"cpus": 1, "mem_gb": 0.25, "time_min": 5, "signal_before_s": 0,
                                                "retry": {"failed": 1}}}}
    project = make_project(tmp_path / "p", spec, params={"fail": "c"})
    proc = project.run(["harness", "repro", "--runner", "slurm"], check=False, timeout=240)
    assert proc.returncode == 1
    run = manifest(project)
    c = run["stages"]["slurm_selftest-branch-c"]
    assert [(a["state"], a["action"]) for a in c["attempts"]] == [("FAILED", "resubmitted"), ("FAILED", "final")]
    assert "retries spent (1 of 1)" in c["reason"]
    log = project.root / ".harness" / "runs" / run["run_id"] / "logs" / "slurm_selftest-branch-c.log"
    assert f"FAILED slurm_selftest-branch-c: job {c['job_id']} FAILED exit code 1" in proc.stdout
    assert str(log) in proc.stdout and "2 attempt(s)" in proc.stdout
    join = run["stages"]["slurm_selftest-join"]
    assert join["state"] == "CANCELLED" and join["reason"] == "dependency slurm_selftest-branch-c failed"
    # the default policy: FAILED is never retried
    project2 = make_project(tmp_path / "q", DIAMOND, params={"fail": "b"})
    project2.run(["harness", "repro", "--runner", "slurm"], check=False, timeout=240)
    b = manifest(project2)["stages"]["slurm_selftest-branch-b"]
    assert len(b["attempts"]) == 1 and "no retry (spec resources.retry.failed = 0)" in b["reason"]


def test_node_fail_resubmits_excluding_the_node(slurm_cluster, tmp_path):  # noqa: F811
    project = make_project(tmp_path / "p", {"branches": ["b"]})
    node = subprocess.run(["sinfo", "-h", "-N", "-o", "%N"], capture_output=True, text=True).stdout.split()[0]
    env = inject(project, {"slurm_selftest-source": {"1": {"state": "NODE_FAIL", "nodes": node}}})
    project.run(["harness", "submit"], env=env)
    deadline = time.time() + 60
    while time.time() < deadline:
        project.run(["harness", "collect"], env=env, check=False)
        source = manifest(project)["stages"]["slurm_selftest-source"]
        if len(source["attempts"]) == 2:
            break
        time.sleep(0.5)
    assert [a["state"] for a in source["attempts"]][:1] == ["NODE_FAIL"] and source["exclude"] == [node]
    shown = scontrol(source["job_id"])
    assert f"ExcNodeList={node}" in shown  # SLURM got the exclusion
    # on this one-node cluster no other node is left: SLURM itself refuses it (a real cluster runs it elsewhere)
    deadline = time.time() + 30
    while (proc := project.run(["harness", "collect"], env=env, check=False)).returncode == 75:
        assert time.time() < deadline
        time.sleep(0.5)
    source = manifest(project)["stages"]["slurm_selftest-source"]
    assert proc.returncode == 1 and source["state"] == "FAILED" and "BadConstraints" in source["reason"]
    assert "dependency slurm_selftest-source failed" in json.dumps(manifest(project)["stages"])


RESUME_SPEC = {
    "branches": ["b"],
    "train": {"variants": 1, "steps": 60, "delay_s": 0.05, "checkpoint_every": 5},
    "resources": {"train": {"cpus": 1, "mem_gb": 1, "time_min": 4, "signal_before_s": 0}},
}


def test_timeout_resubmits_with_more_time_and_resumes_from_the_checkpoint(slurm_cluster, tmp_path):  # noqa: F811
    stage, metrics = "slurm_selftest-train-0", "metrics/slurm_selftest/train-0.json"
    project = make_project(tmp_path / "p", RESUME_SPEC)
    env = inject(project, {stage: {"1": {"state": "TIMEOUT"}}})
    runner = project.popen(["harness", "repro", "--runner", "slurm", stage], env=env)
    deadline = time.time() + 90
    while not list((project.root / ".harness" / "checkpoints").glob(f"{stage}-*/last.pt")):
        assert time.time() < deadline and runner.poll() is None, "no checkpoint appeared"
        time.sleep(0.2)
    job = manifest(project)["stages"][stage]["job_id"]
    pids = job_pids(job)
    assert pids
    for pid in pids:  # what SLURM does at the time limit: SIGTERM to the job's processes
        os.kill(pid, signal.SIGTERM)
    output, _ = runner.communicate(timeout=240)
    assert runner.returncode == 0, output
    run = manifest(project)["stages"][stage]
    assert [a["state"] for a in run["attempts"]] == ["TIMEOUT", "COMPLETED"]
    assert run["attempts"][1]["time_min"] == 6  # 4 min x 1.5
    assert "TimeLimit=00:06:00" in scontrol(run["attempts"][1]["job_id"])
    log = (project.root / ".harness" / "runs" / manifest(project)["run_id"] / "logs" / f"{stage}.log").read_text()
    resumed = [line for line in log.splitlines() if line.startswith("resumed from checkpoint at step")]
    assert resumed, log
    interrupted = project.read(metrics)
    (project.root / metrics).unlink()  # reference: one uninterrupted local run, same thread count
    project.run(["harness", "run", stage], env={"HARNESS_RUNNER": "local", "OMP_NUM_THREADS": "1"})
    assert project.read(metrics) == interrupted


def test_arrays_keep_the_dag_exact_fan_out_fan_in_and_chains(slurm_cluster, tmp_path):  # noqa: F811
    spec = {"branches": [f"x{i}" for i in range(6)], "chains": {"count": 4, "length": 3}}
    project = make_project(tmp_path / "p", spec)
    ref = make_project(tmp_path / "ref", spec)
    ref.run(["dvc", "repro"], env={"HARNESS_RUNNER": "local"}, timeout=600)
    proc = project.run(["harness", "repro", "--runner", "slurm", "-j", "2"], timeout=600)
    run = manifest(project)
    modes = sorted((g["mode"], len(g["members"])) for g in run["groups"].values())
    # branches (6) + first chain links (4) by upstream set; links 1 and 2 of the chains as aftercorr
    assert modes == [("aftercorr", 4), ("aftercorr", 4), ("afterok", 4), ("afterok", 6)], modes
    # every stage started after each of its upstream stages ended (the jobs' own records)
    spans = {}
    for name in run["order"]:
        short = name.replace(":", "_")
        ev = [json.loads(x) for x in (project.root / ".harness" / "runs" / run["run_id"] / "records"
                                      / f"{short}.jsonl").read_text().splitlines()]
        spans[name] = (ev[0]["t"], ev[-1]["t"])
    for name in run["order"]:
        for up in run["stages"][name]["after"]:
            assert spans[name][0] >= spans[up][1], (name, up)
    # -j 2 throttles each array (%2): SLURM kept the throttle on the array
    array_job = next(g["job_id"] for g in run["groups"].values() if len(g["members"]) == 6)
    assert "ArrayTaskThrottle=2" in scontrol(array_job)
    assert f"{len(run['order'])} recorded, 0 failed" in proc.stdout, proc.stdout[-2000:]
    assert array_job and project.lock() == ref.lock()


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("HARNESS_SLURM_SLOW") != "1",
                    reason="a real 1-minute time limit: ~2-3 min; set HARNESS_SLURM_SLOW=1 to run it")
def test_real_timeout_is_retried_with_more_time_and_resumes(slurm_cluster, tmp_path):  # noqa: F811
    """No injection: SLURM's own --time=1 ends the job TIMEOUT (SIGTERM, the stage checkpoints)."""
    stage, metrics = "slurm_selftest-train-0", "metrics/slurm_selftest/train-0.json"
    spec = {**RESUME_SPEC, "train": {**RESUME_SPEC["train"], "steps": 100, "delay_s": 0.9},
            "resources": {"train": {"cpus": 1, "mem_gb": 1, "time_min": 1, "signal_before_s": 0}}}
    project = make_project(tmp_path / "p", spec)
    project.run(["harness", "repro", "--runner", "slurm", stage], timeout=600)
    run = manifest(project)["stages"][stage]
    assert [a["state"] for a in run["attempts"]][0] == "TIMEOUT" and not run["attempts"][0]["injected"]
    assert run["attempts"][-1]["state"] == "COMPLETED" and run["attempts"][1]["time_min"] == 2
    log = (project.root / ".harness" / "runs" / manifest(project)["run_id"] / "logs" / f"{stage}.log").read_text()
    assert "resumed from checkpoint at step" in log
    interrupted = project.read(metrics)
    (project.root / metrics).unlink()
    project.run(["harness", "run", stage], env={"HARNESS_RUNNER": "local", "OMP_NUM_THREADS": "1"})
    assert project.read(metrics) == interrupted
