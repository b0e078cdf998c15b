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


# -- retry by cause (harness.slurm.retry) and array grouping (harness.slurm.arrays): no cluster ---

def test_retry_policy_by_cause_with_caps():
    from harness.slurm.retry import decide
    from harness.study import RetryPolicy

    res = Resources(mem_gb=1, time_min=10, retry=RetryPolicy(max_mem_gb=3, max_time_min=20))
    oom = decide("OUT_OF_MEMORY", res, {}, 0, 0, [], "n1")
    assert oom.retry and oom.mem_mb == 2048 and oom.time_min == 10
    capped = decide("OUT_OF_MEMORY", res, {"OUT_OF_MEMORY": 1}, 2048, 10, [], "n1")
    assert capped.retry and capped.mem_mb == 3072  # x2 would be 4096: the cap wins
    assert not decide("OUT_OF_MEMORY", res, {"OUT_OF_MEMORY": 1}, 3072, 10, [], "n1").retry  # cap reached
    assert "retries spent (2 of 2)" in decide("OUT_OF_MEMORY", res, {"OUT_OF_MEMORY": 2}, 1024, 10, [], "").why
    t = decide("TIMEOUT", res, {}, 1024, 10, [], "n1")
    assert t.retry and t.time_min == 15 and "resume from checkpoint" in t.why
    assert decide("TIMEOUT", res, {"TIMEOUT": 1}, 1024, 15, [], "n1").time_min == 20
    node = decide("NODE_FAIL", res, {}, 1024, 10, ["n0"], "n1")
    assert node.retry and node.exclude == ["n0", "n1"]
    pre = decide("PREEMPTED", res, {}, 1024, 10, [], "n1")
    assert pre.retry and (pre.mem_mb, pre.time_min, pre.exclude) == (1024, 10, [])
    failed = decide("FAILED", res, {}, 1024, 10, [], "n1")
    assert not failed.retry and "resources.retry.failed = 0" in failed.why
    assert decide("FAILED", Resources(retry=RetryPolicy(failed=1)), {}, 0, 0, [], "").retry
    assert not decide("CANCELLED", res, {}, 0, 0, [], "").retry
    assert not decide("DEADLINE", res, {}, 0, 0, [], "").retry


def test_retry_policy_is_declared_in_the_spec_resources_and_strict():
    from pydantic import ValidationError

    res = Resources.model_validate({"mem_gb": 4, "retry": {"out_of_memory": 1, "max_mem_gb": 16}})
    assert res.retry.out_of_memory == 1 and res.retry.max_mem_gb == 16 and res.retry.timeout == 2
    with pytest.raises(ValidationError, match="out_of_memroy"):
        Resources.model_validate({"retry": {"out_of_memroy": 1}})


def test_arrays_group_fan_out_and_chains_and_keep_singles():
    from harness.dag.manifest import RunManifest, StageRun
    from harness.slurm.arrays import plan_groups

    res = Resources().model_dump(mode="json")
    big = Resources(mem_gb=8).model_dump(mode="json")
    stages = [StageRun(name="src", kind="prep", resources=res)]
    stages += [StageRun(name=f"b{i}", kind="branch", after=["src"], resources=res) for i in range(3)]
    stages += [StageRun(name="b-big", kind="branch", after=["src"], resources=big)]  # other resources: alone
    stages += [StageRun(name="join", kind="join", after=[f"b{i}" for i in range(3)], resources=res)]
    for c in range(2):
        stages += [StageRun(name=f"c{c}-0", kind="link", after=["src"], resources=res),
                   StageRun(name=f"c{c}-1", kind="link", after=[f"c{c}-0", "src"], resources=res)]
    order = ["src", "b0", "b1", "b2", "b-big", "join", "c0-0", "c1-0", "c0-1", "c1-1"]
    m = RunManifest(run_id="r", root="/", created=0, order=order, stages={s.name: s for s in stages})
    plan_groups(m)
    groups = {tuple(g.members): g for g in m.groups.values()}
    assert groups[("b0", "b1", "b2")].mode == "afterok"
    assert groups[("c0-0", "c1-0")].mode == "afterok"
    corr = groups[("c0-1", "c1-1")]
    assert corr.mode == "aftercorr" and m.groups[corr.upstream].members == ["c0-0", "c1-0"]
    assert [m.stages[n].task for n in ("c0-1", "c1-1")] == [m.stages["c0-0"].task, m.stages["c1-0"].task]
    assert not m.stages["b-big"].group and not m.stages["join"].group and not m.stages["src"].group


def test_state_reader_injection_only_relabels_ended_jobs(tmp_path, monkeypatch):
    table = tmp_path / "inject.json"
    table.write_text(json.dumps({"st": {"1": {"state": "OUT_OF_MEMORY"}}}))
    monkeypatch.setenv(jobs.INJECT_ENV, str(table))
    done = jobs.Polled("5", "COMPLETED", "None", 0, 0, "vm", None, None, "r:st:1")
    assert jobs.inject(done, "st", 1).state == "OUT_OF_MEMORY" and jobs.inject(done, "st", 1).injected
    assert jobs.inject(done, "st", 2).state == "COMPLETED"  # the second attempt is real
    running = jobs.Polled("5", "RUNNING", "None", 0, 0, "vm", None, None, "r:st:1")
    assert jobs.inject(running, "st", 1).state == "RUNNING"
    assert jobs.Polled("5", "FAILED", "", 3 << 8, 0, "vm", None, None, "").exit_code == 3
    assert jobs.Polled("5", "FAILED", "", 9, 0, "vm", None, None, "").signal == 9
