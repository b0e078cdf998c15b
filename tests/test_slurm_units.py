"""SLURM runner pieces that need no cluster: sbatch rendering, quoting, settings, DVC planning."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from pathlib import Path

import pytest

from harness.dag import dvcgraph
from harness.slurm import jobs
from harness.dag.manifest import RunManifest, StageRun
from harness.slurm.sbatch import JobSpec, render_script, sbatch_args
from harness.slurm.scheduler import recordable
from harness.slurm.settings import SlurmSettings, load_settings
from harness.study import Resources

EVIL = "x'; touch PWNED; echo $(touch PWNED2) `touch PWNED3` \" && rm -rf / # \\ ${HOME} *"


def job(tmp_path: Path, **kw) -> JobSpec:
    base = dict(name="st-train", commands=["true"], resources=Resources(gpus=2, cpus=8, mem_gb=7.5, time_min=90,
                                                                         signal_before_s=120),
                workdir=tmp_path, log_path=tmp_path / "s.log", record_path=tmp_path / "s.jsonl")
    return JobSpec(**{**base, **kw})


def test_sbatch_args_carry_resources_and_cluster_choices(tmp_path):
    args = sbatch_args(job(tmp_path, after_ok=["11", "12"]),
                       SlurmSettings(partition="gpu", account="proj", qos="high", extra_args=["--constraint=a100"]))
    for expected in ("--cpus-per-task=8", "--mem=7680M", "--time=90", "--requeue", "--signal=B:USR1@120",
                     "--gres=gpu:2", "--partition=gpu", "--account=proj", "--qos=high", "--constraint=a100",
                     "--dependency=afterok:11:12", "--kill-on-invalid-dep=yes", "--open-mode=append"):
        assert expected in args, expected
    gpus = sbatch_args(job(tmp_path), SlurmSettings(gpu_flag="gpus"))
    assert "--gpus=2" in gpus and not any(a.startswith("--gres") for a in gpus)
    cpu_only = sbatch_args(job(tmp_path, resources=Resources(signal_before_s=0)), SlurmSettings())
    assert not any(a.startswith(("--gres", "--gpus", "--signal", "--dependency", "--partition")) for a in cpu_only)


def test_lanes_throttle_with_singleton(tmp_path):
    args = sbatch_args(job(tmp_path, lane="run1.lane0", after_ok=["5"]), SlurmSettings())
    assert "--job-name=run1.lane0" in args and "--dependency=afterok:5,singleton" in args


def test_multi_gpu_stage_launches_through_torchrun(tmp_path):
    script = render_script(job(tmp_path, commands=["harness run st-train"]), SlurmSettings())
    launch = next(line for line in script.splitlines() if line.startswith("setsid"))
    inner = shlex.split(launch)[4]  # setsid -w bash -c <payload> &
    assert shlex.split(inner.split(";", 1)[1]) == [
        "torchrun", "--standalone", "--nnodes=1", "--nproc-per-node=2", "--no-python", "bash", "-c",
        "harness run st-train"]
    assert "OMP_NUM_THREADS=4" in script  # 8 cpus shared by 2 workers


def test_script_passes_metacharacters_literally(tmp_path):
    """Run the rendered script with plain bash: the argument arrives byte for byte, nothing executes."""
    probe = tmp_path / "argv.json"
    cmd = shlex.join(["python3", "-c", "import json,sys; json.dump(sys.argv[1:], open(sys.argv[1], 'w'))",
                      str(probe), EVIL])
    spec = job(tmp_path, name="st", commands=[cmd], resources=Resources(), remove_before=["gone.txt"])
    (tmp_path / "gone.txt").write_text("stale output")
    script = tmp_path / "job.sh"
    script.write_text(render_script(spec, SlurmSettings()))
    proc = subprocess.run(["bash", str(script)], cwd=tmp_path, capture_output=True, text=True,
                          env={**os.environ, "SLURM_JOB_ID": "0"})
    assert proc.returncode == 0, proc.stderr
    assert json.loads(probe.read_text()) == [str(probe), EVIL]
    assert not any((tmp_path / name).exists() for name in ("PWNED", "PWNED2", "PWNED3"))
    assert not (tmp_path / "gone.txt").exists()  # outputs are removed before running, as dvc repro does
    events = [json.loads(line) for line in spec.record_path.read_text().splitlines()]
    assert [e["event"] for e in events] == ["start", "end"] and events[1]["rc"] == 0


def test_script_exits_with_the_stage_status(tmp_path):
    spec = job(tmp_path, commands=["exit 7"], resources=Resources())
    script = tmp_path / "job.sh"
    script.write_text(render_script(spec, SlurmSettings()))
    assert subprocess.run(["bash", str(script)], cwd=tmp_path, capture_output=True).returncode == 7


def test_settings_precedence_file_env_flag(tmp_path, monkeypatch):
    for var in ("HARNESS_RUNNER", "HARNESS_CONFIG", "HARNESS_SLURM_PARTITION", "HARNESS_SLURM_ACCOUNT"):
        monkeypatch.delenv(var, raising=False)
    assert load_settings(tmp_path).runner == "local"
    (tmp_path / ".harness").mkdir()
    (tmp_path / ".harness" / "config.yaml").write_text(
        "runner: slurm\nslurm: {partition: cfg, account: acct, setup: ['module load cuda']}\n")
    s = load_settings(tmp_path)
    assert (s.runner, s.slurm.partition, s.slurm.account, s.slurm.setup) == ("slurm", "cfg", "acct", ["module load cuda"])
    monkeypatch.setenv("HARNESS_RUNNER", "local")
    monkeypatch.setenv("HARNESS_SLURM_PARTITION", "env")
    s = load_settings(tmp_path)
    assert (s.runner, s.slurm.partition) == ("local", "env")
    s = load_settings(tmp_path, runner="slurm", partition="flag")
    assert (s.runner, s.slurm.partition, s.slurm.account) == ("slurm", "flag", "acct")
    (tmp_path / ".harness" / "config.yaml").write_text("runner: slurm\nslurm: {partiton: typo}\n")
    with pytest.raises(ValueError, match="partiton"):
        load_settings(tmp_path)


def test_parse_scontrol_show_job():
    line = ("JobId=42 JobName=x UserId=root(0) JobState=FAILED Reason=NonZeroExitCode Dependency=(null) "
            "Requeue=1 Restarts=2 ExitCode=3:0 RunTime=01:02:03 StartTime=2026-01-02T03:04:05 "
            "EndTime=Unknown Command=/a b/c.sh WorkDir=/w StdOut=/w/x=1.log")
    info = jobs.to_info(jobs.parse_show_job(line))
    assert (info.job_id, info.state, info.exit_code, info.restarts, info.run_time_s) == ("42", "FAILED", 3, 2, 3723)
    assert info.failed and info.terminal and info.end is None and info.log_path == "/w/x=1.log"
    assert jobs.to_info(jobs.parse_show_job("JobId=1 JobState=RUNNING ExitCode=0:0")).exit_code is None


def test_record_order_follows_the_plan_not_finish_times():
    m = RunManifest(run_id="r", root="/", created=0, order=["a", "b", "c", "d"], stages={
        "a": StageRun(name="a", state="COMPLETED"),
        "b": StageRun(name="b", after=["a"], state="RUNNING"),
        "c": StageRun(name="c", after=["a"], state="COMPLETED"),
        "d": StageRun(name="d", after=["b", "c"], state="PENDING"),
    })
    assert recordable(m) == []  # a's reader b still runs; c must wait for b (plan order)
    m.stages["b"].state = "COMPLETED"
    assert recordable(m) == ["a"]  # d (reader of b and c) is pending: b, c still wait
    m.stages["d"].state = "COMPLETED"
    assert recordable(m) == ["a", "b", "c", "d"]
    m.stages["d"].state = "CANCELLED"
    m.stages["b"].state = "FAILED"
    assert recordable(m) == ["a", "c"]


def _dvc_project(root: Path) -> None:
    root.mkdir()
    (root / "dvc.yaml").write_text(
        "stages:\n"
        "  a: {cmd: echo a > a.txt, outs: [a.txt]}\n"
        "  b: {cmd: cat a.txt > b.txt, deps: [a.txt], outs: [b.txt]}\n"
        "  c: {cmd: cat a.txt > c.txt, deps: [a.txt], outs: [{c.txt: {persist: true}}]}\n"
        "  d: {cmd: cat b.txt c.txt > d.txt, deps: [b.txt, c.txt], outs: [d.txt]}\n"
        "  e: {cmd: echo e > e.txt, outs: [e.txt]}\n")
    for cmd in (["git", "init", "-q"], ["dvc", "init", "-q"], ["dvc", "repro", "-q"]):
        subprocess.run(cmd, cwd=root, check=True, capture_output=True)


def test_stale_stages_are_changed_plus_downstream_in_dvc_order(tmp_path):
    root = tmp_path / "p"
    _dvc_project(root)
    pipeline = dvcgraph.load_pipeline(root)
    assert pipeline["d"].upstream and set(pipeline["d"].upstream) == {"b", "c"}
    assert pipeline["c"].removable_outs == [] and pipeline["b"].removable_outs == ["b.txt"]
    assert dvcgraph.stale_stages(root, pipeline) == []
    (root / "a.txt").write_text("edited\n")  # a's output changed: a, and everything below it
    assert dvcgraph.stale_stages(root, pipeline) == [s for s in pipeline if s in {"a", "b", "c", "d"}]
    assert list(pipeline).index("a") < list(pipeline).index("b") < list(pipeline).index("d")
    assert list(dvcgraph.load_pipeline(root, ["b"])) == ["a", "b"]  # a target and its upstream only
