"""Issue 26: every runner gives every stage of every profile the resources its spec declares.

Three paths place a stage: the local pool (``harness repro -j``), the SLURM scheduler
(``harness repro --runner slurm`` / ``harness submit``) and ``HARNESS_RUNNER=slurm dvc repro``
(``harness.runners``). All three read one compiled source, the profile's ``dvc.resources.json``
beside its ``dvc.yaml``, by the stage's own DVC address. Here each path is driven for every stage
of smoke, reference and full (the DVC-facing planning replaced by the compiled pipeline's stage
list, so no DVC state is read), and what it resolved is compared with the spec's plan.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.compiler import compile_all, pipeline_file
from harness.dag import resources as stage_resources
from harness.dag.manifest import RunManifest, RunPaths, StageRun
from harness.study import PROFILES, Resources

ROOT = Path(__file__).resolve().parents[1]
TARGET = "hmm_icl-fit-k100-h100-l100"


@pytest.fixture(scope="module")
def compiled():
    return compile_all(ROOT)


def address(profile: str, stage: str) -> str:
    pipe = pipeline_file(profile)
    return stage if pipe == "dvc.yaml" else f"{pipe}:{stage}"


def spec_plan(compiled, profile: str) -> dict[str, tuple[str, Resources]]:
    return {stage.name: (stage.kind, stage.resources) for stage, _ in compiled[profile].stages}


def test_sidecars_are_fresh(compiled):
    assert stage_resources.stale(ROOT, compiled) == [], "run `harness compile` and commit dvc.resources.json"


@pytest.mark.parametrize("profile", PROFILES)
def test_sidecar_equals_spec(compiled, profile):
    expected = spec_plan(compiled, profile)
    got = stage_resources.for_profile(ROOT, profile)
    assert set(got) == set(expected)
    for name, (kind, res) in expected.items():
        assert (got[name].kind, got[name].resources) == (kind, res), name


def test_full_profile_gpu_stage_declared(compiled):
    entry = stage_resources.for_address(ROOT, address("full", TARGET))
    assert (entry.study, entry.kind) == ("hmm_icl", "fit")
    assert entry.resources.model_dump(include={"gpus", "cpus", "mem_gb", "time_min"}) == \
        {"gpus": 1, "cpus": 8, "mem_gb": 64.0, "time_min": 1440}
    n_gpu = sum(1 for e in stage_resources.for_profile(ROOT, "full").values() if e.resources.gpus)
    assert n_gpu > 100  # the full profile is a GPU profile; a fallback to Resources() gives 0


def test_addresses():
    assert stage_resources.split_address("profiles/full/dvc.yaml:x") == ("profiles/full/dvc.yaml", "x")
    assert stage_resources.split_address("x") == ("dvc.yaml", "x")
    assert stage_resources.profile_of_pipeline("profiles/reference/dvc.yaml") == "reference"
    assert stage_resources.profile_of_pipeline("dvc.yaml") == "smoke"
    assert stage_resources.profile_of_pipeline("sub/dvc.yaml") is None
    assert stage_resources.for_address(ROOT, "sub/dvc.yaml:" + TARGET) == stage_resources.UNPLANNED
    assert stage_resources.for_address(ROOT, "check-params") == stage_resources.UNPLANNED


def _fake_plan(compiled, profile):
    """What DVC's planning would return for the whole pipeline, every stage stale (no DVC read)."""
    from harness.dag.dvcgraph import PipelineStage

    def plan_run(root, targets, jobs_limit, run_id, runner="slurm", status="repo"):
        manifest = RunManifest(run_id=run_id, root=str(root), created=0.0, runner=runner, jobs_limit=jobs_limit)
        pipeline = {}
        for stage, _ in compiled[profile].stages:
            name = address(profile, stage.name)
            manifest.stages[name] = StageRun(name=name, after=[], direct=True)
            manifest.order.append(name)
            pipeline[name] = PipelineStage(name=name, commands=[f"harness run --profile {profile} {stage.name}"])
        return manifest, pipeline

    return plan_run


@pytest.mark.parametrize("profile", PROFILES)
def test_slurm_scheduler_resolves_spec_resources(compiled, profile, monkeypatch):
    from harness.slurm import scheduler

    monkeypatch.setattr(scheduler, "plan_run", _fake_plan(compiled, profile))
    manifest, _ = scheduler.prepare_run(ROOT)
    expected = spec_plan(compiled, profile)
    assert len(manifest.order) == len(expected)
    for name in manifest.order:
        kind, res = expected[stage_resources.split_address(name)[1]]
        s = manifest.stages[name]
        assert (s.kind, Resources.model_validate(s.resources)) == (kind, res), name


@pytest.mark.parametrize("profile", PROFILES)
def test_local_pool_resolves_spec_cpus(compiled, profile, tmp_path):
    from harness.dag.local import LocalBackend

    expected = spec_plan(compiled, profile)
    manifest = RunManifest(run_id="t", root=str(ROOT), created=0.0, runner="local")
    for name in expected:
        a = address(profile, name)
        manifest.stages[a] = StageRun(name=a, after=[], direct=True)
        manifest.order.append(a)
    backend = LocalBackend(ROOT, manifest, RunPaths(tmp_path, "runs", "t"), {}, {}, budget=64)
    for a in manifest.order:
        assert backend.cpus[a] == expected[stage_resources.split_address(a)[1]][1].cpus, a


@pytest.mark.parametrize("profile", PROFILES)
def test_single_stage_runner_resolves_spec_resources(compiled, profile, monkeypatch, tmp_path):
    """``HARNESS_RUNNER=slurm dvc repro``: each stage one job, with its own profile's resources."""
    from harness import runners
    from harness.slurm import jobs
    from harness.slurm.settings import RunnerSettings

    seen = {}
    monkeypatch.setattr(jobs, "submit", lambda job, slurm, script: seen.setdefault("job", job) and "1")
    monkeypatch.setattr(runners, "wait_for_job", lambda *a, **k: 0)
    settings = RunnerSettings.model_validate({"runner": "slurm", "slurm": {"runs_dir": str(tmp_path)}})
    runner = runners.SlurmRunner(settings, out=lambda text: None)
    expected = spec_plan(compiled, profile)
    names = sorted(expected)
    for name in names if profile != "full" else [n for n in names if n.startswith(("hmm_icl-fit", "param_alloc"))]:
        seen.clear()
        assert runner.run_stage(ROOT, name, profile) == 0
        assert seen["job"].resources == expected[name][1], name


def test_dry_run_full_profile_sbatch(compiled, monkeypatch):
    """The dry run's sbatch argv carry the spec's GPUs, CPUs, memory and time; totals add up."""
    from harness.slurm import dryrun, scheduler
    from harness.slurm.settings import SlurmSettings

    monkeypatch.setattr(scheduler, "plan_run", _fake_plan(compiled, "full"))
    doc = dryrun.plan(ROOT, SlurmSettings())
    rows = {r["stage"]: r for r in doc["stages"]}
    row = rows[TARGET]
    assert (row["kind"], row["gpus"], row["cpus"], row["mem_gb"], row["time_min"]) == ("fit", 1, 8, 64.0, 1440)
    for flag in ("--gres=gpu:1", "--cpus-per-task=8", "--mem=65536M", "--time=1440"):
        assert flag in row["sbatch"]
    expected = spec_plan(compiled, "full")
    for name, r in rows.items():
        res = expected[name][1]
        assert (r["gpus"], r["cpus"], r["mem_gb"], r["time_min"]) == (res.gpus, res.cpus, res.mem_gb, res.time_min)
        assert f"--cpus-per-task={res.cpus}" in r["sbatch"] and f"--time={res.time_min}" in r["sbatch"]
        assert any(a == f"--gres=gpu:{res.gpus}" for a in r["sbatch"]) == (res.gpus > 0)
    total = doc["totals"]["overall"]
    assert total["stages"] == len(expected)
    assert total["gpu_hours"] == round(sum(r.gpus * r.time_min / 60 for _, r in expected.values()), 2)
    assert total["cpu_hours"] == round(sum(r.cpus * r.time_min / 60 for _, r in expected.values()), 2)
    assert total["jobs"] + total["array_tasks"] == total["stages"]
    assert sum(v["stages"] for v in doc["totals"]["by_study"].values()) == total["stages"]
    json.dumps(doc)  # --json prints this document
    text = dryrun.render_text(doc)
    assert "GPU-h" in text and TARGET in text
