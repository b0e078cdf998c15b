"""Issue 26: GPU stages through a real ``slurmctld`` with GPUs declared (scripts/slurm_cluster.sh:
real GPUs, else two stand-ins that SLURM allocates and counts like real ones).

A selftest project declares a ``full`` profile whose training stages ask for one GPU each (the
smoke profile asks for none). Its full-profile plan is made by the harness's own SLURM path
(``prepare_run``: DVC's graph of ``profiles/full/dvc.yaml``, resources from that profile's
compiled sidecar), every stage command is replaced by a probe that records what the job sees,
and the plan is submitted with the harness's own submitter (arrays, ``afterok`` edges). Then,
through ``scontrol show job`` and the probes: each job's GPUs, CPUs, memory and time limit equal
the spec's; each GPU job sees ``CUDA_VISIBLE_DEVICES`` set by SLURM; two 1-GPU jobs run side by
side on distinct devices while the third waits.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from conftest_slurm import slurm_cluster  # noqa: F401  (session fixture)
from project import make_project

pytestmark = pytest.mark.slurm

TRAIN = {"gpus": 1, "cpus": 1, "mem_gb": 0.5, "time_min": 7, "signal_before_s": 0}
SPEC = {
    "branches": ["b"],
    "train": {"variants": 3, "steps": 5},
    "resources": {"default": {"cpus": 1, "mem_gb": 0.25, "time_min": 5, "signal_before_s": 0},
                  "train": {"cpus": 1, "mem_gb": 0.25, "time_min": 5, "signal_before_s": 0}},
    "profiles": {"full": {"resources": {"default": {"cpus": 1, "mem_gb": 0.25, "time_min": 5, "signal_before_s": 0},
                                        "train": TRAIN}}},
}
PROBE = r"""#!/bin/bash
# what a job sees: SLURM's view of its allocation, and when it ran
out=$1; hold=$2
start=$(date +%s.%N)
sleep "$hold"
end=$(date +%s.%N)
printf '{"job": "%s", "array_job": "%s", "task": "%s", "cvd": "%s", "cvd_set": %s, "job_gpus": "%s", "cpus": "%s", "mem": "%s", "omp": "%s", "start": %s, "end": %s}\n' \
  "${SLURM_JOB_ID:-}" "${SLURM_ARRAY_JOB_ID:-}" "${SLURM_ARRAY_TASK_ID:-}" "${CUDA_VISIBLE_DEVICES:-}" \
  "$([ -n "${CUDA_VISIBLE_DEVICES+x}" ] && echo true || echo false)" "${SLURM_JOB_GPUS:-}" \
  "${SLURM_CPUS_PER_TASK:-}" "${SLURM_MEM_PER_NODE:-}" "${OMP_NUM_THREADS:-}" "$start" "$end" > "$out.tmp"
mv "$out.tmp" "$out"
"""


def scontrol(job_id: str) -> dict[str, str]:
    text = subprocess.run(["scontrol", "-o", "show", "job", job_id], capture_output=True, text=True, check=True).stdout
    fields = {}
    for token in text.split():
        key, sep, value = token.partition("=")
        if sep:
            fields.setdefault(key, value)
    return fields


def mem_mb(value: str) -> float:
    """``scontrol``'s memory (``512M``, ``2G``) in MiB."""
    units = {"K": 1 / 1024, "M": 1, "G": 1024, "T": 1024 * 1024}
    return float(value[:-1]) * units[value[-1]]


def node_gpus() -> int:
    out = subprocess.run(["sinfo", "-h", "-N", "-o", "%G"], capture_output=True, text=True).stdout.strip()
    return int(out.split("gpu:")[1].split("(")[0].split(",")[0]) if "gpu:" in out else 0


def test_full_profile_gpu_plan_runs_with_the_specs_resources(slurm_cluster, tmp_path, monkeypatch):  # noqa: F811
    from harness.dag.manifest import RunPaths
    from harness.slurm import scheduler
    from harness.slurm.settings import SlurmSettings

    if node_gpus() < 2:
        pytest.skip("the local cluster declares fewer than 2 GPUs (scripts/slurm_cluster.sh start declares them)")
    project = make_project(tmp_path / "p", SPEC)
    monkeypatch.setenv("HARNESS_STUDY_PATH", str(project.root / "studies"))
    monkeypatch.setenv("PYTHONHASHSEED", "0")
    probe = tmp_path / "probe.sh"
    probe.write_text(PROBE)
    seen = tmp_path / "seen"
    seen.mkdir()
    trains = [f"profiles/full/dvc.yaml:slurm_selftest-train-{i}" for i in range(3)]
    manifest, _ = scheduler.prepare_run(project.root, trains, status="everything")
    assert set(trains) <= set(manifest.order)
    for name in manifest.order:  # the stage's own command replaced by the probe; resources untouched
        stage = manifest.stages[name]
        hold = 4 if name in trains else 0
        stage.commands, stage.remove_before = [f"bash {probe} {seen / scheduler._short(name)}.json {hold}"], []
    for name in trains:
        assert manifest.stages[name].kind == "train"
        assert {k: manifest.stages[name].resources[k] for k in TRAIN} == TRAIN
    settings = SlurmSettings(poll_s=0.5)
    paths = RunPaths(project.root, settings.runs_dir, manifest.run_id)
    scheduler.submit_manifest(project.root, settings, manifest, paths, out=lambda text: None)
    assert len({manifest.stages[n].job_id.split("_")[0] for n in trains}) == 1  # one array of 3

    deadline = time.time() + 180
    files = {name: seen / f"{scheduler._short(name)}.json" for name in manifest.order}
    while not all(f.exists() for f in files.values()):
        assert time.time() < deadline, f"probes missing: {[n for n, f in files.items() if not f.exists()]}"
        time.sleep(0.5)
    probes = {name: json.loads(f.read_text()) for name, f in files.items()}

    for name in manifest.order:
        stage, res = manifest.stages[name], manifest.stages[name].resources
        job = scontrol(stage.job_id)
        assert job["NumCPUs"] == str(res["cpus"]), (name, job)
        assert mem_mb(job["MinMemoryNode"]) == res["mem_gb"] * 1024, (name, job)
        assert job["TimeLimit"] == f"00:{res['time_min']:02d}:00", (name, job)
        p = probes[name]
        assert p["cpus"] == str(res["cpus"]) and p["omp"] == str(res["cpus"])
        if res["gpus"]:
            assert job.get("TresPerNode") == f"gres:gpu:{res['gpus']}", (name, job)
            assert p["cvd_set"] and p["cvd"] in {"0", "1"} and p["job_gpus"] == p["cvd"], p
        else:
            assert "gpu" not in job.get("TresPerNode", ""), (name, job)
            assert not p["cvd"], p  # a CPU job is given no device

    runs = sorted((probes[n] for n in trains), key=lambda p: p["start"])
    first, second, third = runs
    assert second["start"] < first["end"] - 1, "two 1-GPU jobs did not run side by side"
    assert {first["cvd"], second["cvd"]} == {"0", "1"}, "side-by-side jobs must get distinct GPUs"
    assert third["start"] >= min(first["end"], second["end"]) - 0.5, "the third GPU job did not wait"


def node() -> dict[str, str]:
    text = subprocess.run(["scontrol", "-o", "show", "node"], capture_output=True, text=True, check=True).stdout
    return dict(t.split("=", 1) for t in text.split() if "=" in t)


def test_gpus_are_allocated_not_just_cpus(slurm_cluster, tmp_path):  # noqa: F811
    """While one job holds both GPUs (and one CPU), a 1-GPU job stays pending for Resources
    although a CPU and memory are free: SLURM counts the GPUs themselves."""
    if node_gpus() < 2:
        pytest.skip("the local cluster declares fewer than 2 GPUs")
    mine: list[str] = []

    def sbatch(*args: str) -> str:  # each holds its allocation for up to 60 s; cancelled at the end
        job = subprocess.run(["sbatch", "--parsable", "--cpus-per-task=1", "--mem=64M", "--time=2",
                              f"--output={tmp_path}/%j.out", *args, "--wrap", "sleep 60"],
                             capture_output=True, text=True, check=True).stdout.strip().split(";")[0]
        mine.append(job)
        return job

    try:
        both = sbatch("--gres=gpu:2")
        deadline = time.time() + 60
        while scontrol(both)["JobState"] != "RUNNING":
            assert time.time() < deadline, scontrol(both)
            time.sleep(0.2)
        one = sbatch("--gres=gpu:1")
        time.sleep(3)  # a scheduling pass or two (sched_interval=2, bf_interval=2)
        waiting, info = scontrol(one), node()
        assert scontrol(both)["JobState"] == "RUNNING"
        assert waiting["JobState"] == "PENDING" and waiting["Reason"] == "Resources", waiting
        if "AllocTRES" in info and info.get("CPUAlloc") == "1":  # nobody else's jobs on the node
            assert int(info["CPUTot"]) > 1  # a CPU was free: only the GPUs kept it waiting
    finally:
        subprocess.run(["scancel", *mine], capture_output=True)
