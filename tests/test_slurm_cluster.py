"""The SLURM runners and scheduler against the real local cluster (scripts/slurm_cluster.sh).

Each test drives a throwaway git+DVC project of the ``slurm_selftest`` study through the real
``harness``, ``dvc``, ``sbatch`` and ``scontrol`` binaries. References are independent of the
scheduler: ``dvc repro``'s own lock file, DVC's cache layout, job records written by the jobs
themselves, and a closed-form full-batch gradient descent for DDP.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np
import pytest

from conftest_slurm import slurm_cluster  # noqa: F401  (session fixture)
from project import make_project

pytestmark = pytest.mark.slurm

EVIL = "a'; touch PWNED; $(touch PWNED2) `touch PWNED3` && echo \"${HOME}\" | cat # *"
DIAMOND = {"work_s": 1.5}
STAGES = ["check-params", "slurm_selftest-source", "slurm_selftest-branch-b", "slurm_selftest-branch-c",
          "slurm_selftest-join"]


def events(project, stage: str) -> list[dict]:
    files = sorted(glob.glob(str(project.root / ".harness" / "runs" / "*" / "records" / f"{stage}.jsonl")))
    return [json.loads(line) for f in files for line in Path(f).read_text().splitlines()]


def span(project, stage: str) -> tuple[float, float]:
    ev = events(project, stage)
    return [e["t"] for e in ev if e["event"] == "start"][0], [e["t"] for e in ev if e["event"] == "end"][-1]


def cached(project, path: str) -> bool:
    digest = hashlib.md5((project.root / path).read_bytes()).hexdigest()
    return (project.root / ".dvc" / "cache" / "files" / "md5" / digest[:2] / digest[2:]).exists()


def manifest(project) -> dict:
    (path,) = sorted((project.root / ".harness" / "runs").glob("*.json"))[-1:]
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def blocking(slurm_cluster, tmp_path_factory):  # noqa: F811
    """One blocking ``harness repro --runner slurm`` of the diamond, shared by the tests below."""
    project = make_project(tmp_path_factory.mktemp("blocking") / "p", DIAMOND)
    t0 = time.time()
    proc = project.run(["harness", "repro", "--runner", "slurm", "-j", "0"])
    return project, proc, time.time() - t0


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    """The same project reproduced by plain ``dvc repro`` with the local runner: the reference."""
    project = make_project(tmp_path_factory.mktemp("local") / "p", DIAMOND)
    project.run(["dvc", "repro"], env={"HARNESS_RUNNER": "local"})
    return project


def test_stage_runs_through_sbatch_and_outputs_land_in_dvc_cache(slurm_cluster, tmp_path):  # noqa: F811
    project = make_project(tmp_path / "p", params={"message": EVIL})
    proc = project.run(["dvc", "repro", "slurm_selftest-source"], env={"HARNESS_RUNNER": "slurm"})
    assert "submitted SLURM job" in proc.stdout
    start = [e for e in events(project, "slurm_selftest-source") if e["event"] == "start"]
    assert start and start[0]["job"].isdigit()  # it ran inside a SLURM job
    out = "work/slurm_selftest/source.json"
    assert cached(project, out)
    assert hashlib.md5(project.read(out).encode()).hexdigest() in project.lock()
    # the spec string crossed YAML -> params -> sbatch -> job -> stage byte for byte, and ran nothing
    assert json.loads(project.read(out))["message"] == EVIL
    assert not any((project.root / f).exists() for f in ("PWNED", "PWNED2", "PWNED3"))


def test_parallel_diamond_respects_dependencies_and_leaves_dvc_clean(blocking):
    project, proc, _ = blocking
    check, source = span(project, "check-params"), span(project, "slurm_selftest-source")
    b, c = span(project, "slurm_selftest-branch-b"), span(project, "slurm_selftest-branch-c")
    join = span(project, "slurm_selftest-join")
    assert source[0] >= check[1]
    assert b[0] >= source[1] and c[0] >= source[1]
    assert join[0] >= max(b[1], c[1])
    assert max(b[0], c[0]) < min(b[1], c[1]), "independent branches must run at the same time"
    assert "5 recorded, 0 failed, 0 cancelled" in proc.stdout
    assert "Data and pipelines are up to date" in project.run(["dvc", "status"]).stdout
    lock = project.lock()
    again = project.run(["dvc", "repro"]).stdout
    assert "Running stage" not in again and project.lock() == lock


def test_scheduler_lock_equals_dvc_repro_lock(blocking, local):
    assert blocking[0].lock() == local.lock()


def test_detached_submit_then_collect_gives_the_blocking_lock(blocking, tmp_path):
    project = make_project(tmp_path / "p", DIAMOND)
    t0 = time.time()
    submitted = project.run(["harness", "submit"])
    assert "harness collect" in submitted.stdout and time.time() - t0 < blocking[2]
    first = project.run(["harness", "collect"], check=False)
    assert first.returncode == 75 and "still running or queued" in first.stdout
    deadline = time.time() + 120
    while (proc := project.run(["harness", "collect"], check=False)).returncode == 75 and time.time() < deadline:
        time.sleep(1)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert project.lock() == blocking[0].lock()
    assert project.run(["harness", "collect"]).returncode == 0  # collecting again changes nothing
    assert project.lock() == blocking[0].lock()


def test_failing_job_reports_state_and_log_and_cancels_dependents(slurm_cluster, tmp_path):  # noqa: F811
    project = make_project(tmp_path / "p", params={"fail": "c"})
    proc = project.run(["harness", "repro", "--runner", "slurm"], check=False)
    assert proc.returncode == 1
    run = manifest(project)
    failed = run["stages"]["slurm_selftest-branch-c"]
    log = project.root / ".harness" / "runs" / run["run_id"] / "logs" / "slurm_selftest-branch-c.log"
    assert (f"FAILED slurm_selftest-branch-c: job {failed['job_id']} FAILED exit code 1" in proc.stdout
            and str(log) in proc.stdout)
    assert "fails on purpose" in log.read_text()
    join = run["stages"]["slurm_selftest-join"]
    assert join["state"] == "CANCELLED" and "dependency slurm_selftest-branch-c failed" in join["reason"]
    assert events(project, "slurm_selftest-join") == []  # never started
    # the failed stage wrote its output before failing: it must not be cached nor locked
    assert (project.root / "work/slurm_selftest/branch-c.json").exists()
    assert not cached(project, "work/slurm_selftest/branch-c.json")
    assert "slurm_selftest-branch-c:" not in project.lock() and "slurm_selftest-join:" not in project.lock()
    assert run["stages"]["slurm_selftest-branch-b"]["recorded"]


def test_switching_runner_invalidates_nothing(local):
    project = local
    lock = project.lock()
    proc = project.run(["dvc", "repro"], env={"HARNESS_RUNNER": "slurm"})
    assert "Running stage" not in proc.stdout and "submitted" not in proc.stdout
    (project.root / ".harness").mkdir(exist_ok=True)
    (project.root / ".harness" / "config.yaml").write_text("runner: slurm\nslurm: {partition: main}\n")
    assert "Data and pipelines are up to date" in project.run(["dvc", "status"]).stdout
    assert "nothing to do" in project.run(["harness", "repro"]).stdout
    assert project.lock() == lock and not list((project.root / ".harness").glob("runs/*.json"))


RESUME_SPEC = {
    "branches": ["b"],
    "train": {"variants": 1, "steps": 80, "delay_s": 0.03, "checkpoint_every": 5},
    "resources": {"train": {"cpus": 1, "mem_gb": 1, "time_min": 5, "signal_before_s": 30}},
}


def test_time_limit_signal_checkpoints_requeues_and_resumes_to_the_same_metrics(slurm_cluster, tmp_path):  # noqa: F811
    from harness.slurm import jobs

    stage, metrics = "slurm_selftest-train-0", "metrics/slurm_selftest/train-0.json"
    project = make_project(tmp_path / "p", RESUME_SPEC)
    runner = project.popen(["harness", "run", stage], env={"HARNESS_RUNNER": "slurm"})
    deadline = time.time() + 60
    while not list((project.root / ".harness" / "checkpoints").glob(f"{stage}-*/last.pt")):
        assert time.time() < deadline and runner.poll() is None, "no checkpoint appeared"
        time.sleep(0.2)
    job_id = events(project, stage)[0]["job"]
    jobs.signal_batch(job_id, "USR1")  # exactly what SLURM sends signal_before_s before the limit
    output, _ = runner.communicate(timeout=120)
    assert runner.returncode == 0, output
    resumed = [int(line.split()[-1].split("/")[0]) for line in output.splitlines()
               if line.startswith("resumed from checkpoint at step")]
    assert resumed and 0 < resumed[0] < 80, output
    kinds = [(e["event"], e["restarts"]) for e in events(project, stage)]
    assert ("requeue", 0) in kinds and ("start", 1) in kinds and kinds[-1] == ("end", 1)
    interrupted = project.read(metrics)

    (project.root / metrics).unlink()  # reference: one uninterrupted local run, same thread count
    project.run(["harness", "run", stage], env={"HARNESS_RUNNER": "local", "OMP_NUM_THREADS": "1"})
    assert project.read(metrics) == interrupted


def test_ddp_two_processes_on_cpu_gloo_through_torchrun(slurm_cluster, tmp_path):  # noqa: F811
    from harness.runners import wait_for_job
    from harness.slurm import jobs
    from harness.dag.manifest import RunPaths
    from harness.slurm.sbatch import JobSpec
    from harness.slurm.settings import SlurmSettings
    from harness.study import Resources

    spec = {"ddp": {"enabled": True, "n": 64, "steps": 25, "lr": 0.1}}
    project = make_project(tmp_path / "p", spec)
    stage = "slurm_selftest-ddp"
    paths = RunPaths(project.root, ".harness/runs", "ddp")
    job = JobSpec(name=stage, commands=[f"harness run {stage}"], resources=Resources(cpus=2, mem_gb=2),
                  workdir=project.root, log_path=paths.log(stage), record_path=paths.record(stage), nproc=2)
    old = dict(os.environ)
    os.environ.update({k: v for k, v in project.env.items() if k in ("PATH", "PYTHONPATH", "HARNESS_STUDY_PATH")})
    try:  # sbatch exports this process's environment to the job
        job_id = jobs.submit(job, SlurmSettings(), paths.script(stage))
        rc = wait_for_job(job_id, job.log_path, 0.5, lambda text: None)
    finally:
        os.environ.clear()
        os.environ.update(old)
    assert rc == 0, job.log_path.read_text()
    out = json.loads(project.read("metrics/slurm_selftest/ddp.json"))
    assert out["world"] == 2 and out["backend"] == "gloo"
    # closed form: DDP averages the two half-batch gradients == full-batch gradient descent
    import torch

    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 3, generator=g, dtype=torch.float64)
    y = x @ torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64) + 0.1 * torch.randn(64, generator=g, dtype=torch.float64)
    x, y, w = x.numpy(), y.numpy(), np.zeros(3)
    for _ in range(25):
        w -= 0.1 * 2 / 64 * x.T @ (x @ w - y)
    np.testing.assert_allclose(out["weight"], w, rtol=1e-10, atol=1e-12)


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("HARNESS_SLURM_SLOW") != "1",
                    reason="real 1-minute time limit takes ~1.5 min; set HARNESS_SLURM_SLOW=1 to run it")
def test_real_time_limit_requeues_until_done_with_the_same_metrics(slurm_cluster, tmp_path):  # noqa: F811
    """No injected signal: SLURM's own --time=1 / --signal=B:USR1@45 drives checkpoint + requeue."""
    stage, metrics = "slurm_selftest-train-0", "metrics/slurm_selftest/train-0.json"
    spec = {**RESUME_SPEC, "train": {**RESUME_SPEC["train"], "steps": 100, "delay_s": 0.4},
            "resources": {"train": {"cpus": 1, "mem_gb": 1, "time_min": 1, "signal_before_s": 45}}}
    project = make_project(tmp_path / "p", spec)
    proc = project.run(["harness", "run", stage], env={"HARNESS_RUNNER": "slurm"}, timeout=400)
    assert "requeueing job" in proc.stdout and "resumed from checkpoint at step" in proc.stdout
    assert any(e["event"] == "requeue" for e in events(project, stage))
    interrupted = project.read(metrics)
    (project.root / metrics).unlink()
    project.run(["harness", "run", stage], env={"HARNESS_RUNNER": "local", "OMP_NUM_THREADS": "1"})
    assert project.read(metrics) == interrupted
