"""``harness repro -j N`` on the local runner: the stale DAG on a local process pool.

Throwaway git+DVC projects of the ``slurm_selftest`` study (a diamond source -> branch-b,
branch-c -> join, after check-params) driven through the real ``harness`` and ``dvc`` binaries.
References are independent of the scheduler: ``dvc repro``'s own lock file, ``dvc status``, and
the start/end records the pool writes per stage (wall-clock times of the stage processes).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "slurm_support"))

from project import make_project  # noqa: E402

from harness.dag import scheduler as core  # noqa: E402
from harness.dag.dvcgraph import PipelineStage  # noqa: E402
from harness.dag.local import LocalBackend, cpu_budget  # noqa: E402
from harness.dag.manifest import RunManifest, RunPaths, StageRun  # noqa: E402
from harness.study import Resources  # noqa: E402

DIAMOND = {"work_s": 1.0}
SOURCE, B, C, JOIN = (f"slurm_selftest-{s}" for s in ("source", "branch-b", "branch-c", "join"))


def project(base: Path, spec: dict | None = None, params: dict | None = None):
    return make_project(base, spec, params)


def records(proj) -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = {}
    for path in sorted((proj.root / ".harness" / "runs").glob("*/records/*.jsonl")):
        found.setdefault(path.stem, []).extend(json.loads(line) for line in path.read_text().splitlines())
    return found


def span(recs: dict, stage: str) -> tuple[float, float]:
    ev = recs[stage]
    return [e["t"] for e in ev if e["event"] == "start"][0], [e["t"] for e in ev if e["event"] == "end"][-1]


def locked_stages(proj) -> set[str]:
    import yaml

    path = proj.root / "dvc.lock"
    return set(yaml.safe_load(path.read_text())["stages"]) if path.exists() else set()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """Plain sequential ``dvc repro`` of the diamond: the lock every local run must reproduce."""
    proj = project(tmp_path_factory.mktemp("ref") / "p", DIAMOND)
    proj.run(["dvc", "repro"])
    return proj


@pytest.fixture(scope="module")
def parallel(tmp_path_factory):
    proj = project(tmp_path_factory.mktemp("par") / "p", DIAMOND)
    t0 = time.time()
    proc = proj.run(["harness", "repro", "-j", "2"])
    return proj, proc, time.time() - t0


def test_parallel_lock_is_byte_identical_to_dvc_repro(parallel, reference):
    proj, proc, _ = parallel
    assert "5 recorded, 0 failed, 0 cancelled" in proc.stdout
    assert proj.lock() == reference.lock()
    assert "Data and pipelines are up to date" in proj.run(["dvc", "status"]).stdout


def test_independent_branches_overlap_and_edges_hold(parallel):
    proj, proc, _ = parallel
    recs = records(proj)
    check, source, b, c, join = (span(recs, s) for s in ("check-params", SOURCE, B, C, JOIN))
    assert source[0] >= check[1]
    assert b[0] >= source[1] and c[0] >= source[1]
    assert join[0] >= max(b[1], c[1])
    assert max(b[0], c[0]) < min(b[1], c[1]) - 0.5, "independent branches must run at the same time"
    for stage in (B, C):  # one progress line per start and finish, with the run's elapsed time
        assert f"start  {stage}" in proc.stdout and f"done   {stage} in " in proc.stdout


def test_second_run_does_nothing(parallel):
    proj, _, _ = parallel
    lock = proj.lock()
    again = proj.run(["harness", "repro", "-j", "2"])
    assert "nothing to do" in again.stdout and proj.lock() == lock
    assert "Running stage" not in proj.run(["dvc", "repro"]).stdout


def test_no_j_runs_sequentially_through_the_pool_with_the_same_lock(tmp_path, reference):
    proj = project(tmp_path / "p", DIAMOND)
    proj.run(["harness", "repro"])
    recs = records(proj)
    b, c = span(recs, B), span(recs, C)
    assert min(b[1], c[1]) <= max(b[0], c[0]), "one cpu: branches must not overlap"
    assert proj.lock() == reference.lock()


def test_failing_stage_stops_dependents_and_is_never_recorded(tmp_path):
    proj = project(tmp_path / "p", {"work_s": 0.2}, {"fail": "c"})
    proc = proj.run(["harness", "repro", "-j", "2"], check=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    (line,) = [ln for ln in proc.stdout.splitlines() if ln.startswith(f"FAILED {C}:")]
    assert "exit code 1" in line
    log = Path(line.split("; log ")[1])
    assert log.is_file() and "fails on purpose" in log.read_text()
    assert f"skipped (dependency {C} failed): {JOIN}" in proc.stdout
    assert JOIN not in records(proj)  # never started
    assert locked_stages(proj) == {"check-params", SOURCE, B}
    assert C in proj.run(["dvc", "status"]).stdout


def test_sigterm_kills_running_stages_and_records_nothing_half_done(tmp_path):
    proj = project(tmp_path / "p", {"work_s": 20.0})
    popen = proj.popen(["harness", "repro", "-j", "2"])
    seen = ""
    for line in popen.stdout:  # wait until both branches run
        seen += line
        if f"start  {B}" in seen and f"start  {C}" in seen:
            break
    t0 = time.time()
    popen.send_signal(signal.SIGTERM)
    rest, _ = popen.communicate(timeout=30)
    assert popen.returncode == 130, seen + rest
    assert time.time() - t0 < 10
    assert "interrupted: killed" in rest and f"never started: {JOIN}" in rest
    recs = records(proj)
    for stage in (B, C):  # ended (killed), and their process groups are gone
        end = [e for e in recs[stage] if e["event"] == "end"]
        assert end and end[0]["rc"] != 0
        with pytest.raises(ProcessLookupError):
            os.killpg(int(end[0]["job"]), 0)
    assert locked_stages(proj) == {"check-params", SOURCE}  # completed stages are whole; recorded


def test_cpu_budget_and_a_stage_bigger_than_the_budget_runs_alone(tmp_path):
    """Pool only (no DVC): budget 2; two 1-cpu stages share it, a 4-cpu stage gets it all, alone."""
    assert cpu_budget(None) == 1 and cpu_budget(3) == 3 and cpu_budget(0) == (os.cpu_count() or 1)
    names = ["s1", "s2", "big", "s3"]
    manifest = RunManifest(run_id="r", root=str(tmp_path), created=0, order=names,
                           stages={n: StageRun(name=n) for n in names})
    cmd = 'sleep 0.4; echo "$OMP_NUM_THREADS" > "$HARNESS_STAGE.threads"'
    pipeline = {n: PipelineStage(name=n, commands=[cmd]) for n in names}
    paths = RunPaths(tmp_path, ".runs", "r")
    backend = LocalBackend(tmp_path, manifest, paths, pipeline, {"big": Resources(cpus=4)}, 2, out=lambda _: None)
    backend.start()
    deadline = time.time() + 20
    while not backend._finished.is_set() and time.time() < deadline:
        time.sleep(0.05)
    backend.refresh(manifest, paths)
    assert all(manifest.stages[n].state == core.OK for n in names)
    spans = {}
    for n in names:
        ev = [json.loads(line) for line in paths.record(n).read_text().splitlines()]
        spans[n] = (ev[0]["t"], ev[-1]["t"])
    assert max(spans["s1"][0], spans["s2"][0]) < min(spans["s1"][1], spans["s2"][1])  # shared the budget
    for other in ("s1", "s2", "s3"):  # nothing overlaps the big one
        assert spans[other][1] <= spans["big"][0] or spans[other][0] >= spans["big"][1]
    threads = {n: (tmp_path / f"{n}.threads").read_text().strip() for n in names}
    assert threads == {"s1": "1", "s2": "1", "big": "2", "s3": "1"}  # OMP_NUM_THREADS = granted cpus


def test_a_rerun_upstream_with_identical_outputs_reruns_nothing_below_it(tmp_path, reference):
    """A comment added to the spec changes check-params' input (the specs folder), not its
    outputs (the stage configs): as with ``dvc repro``, only check-params reruns; the four stages
    below it are asked about again once it has run, found unchanged, and not rerun."""
    proj = project(tmp_path / "p", DIAMOND)
    proj.run(["harness", "repro", "-j", "2"])
    lock_before = proj.lock()
    spec = proj.root / "specs" / "slurm_selftest.yaml"
    spec.write_text(spec.read_text() + "# a comment changes no stage\n")
    status = proj.run(["dvc", "status"]).stdout
    assert "check-params" in status and SOURCE not in status  # DVC itself sees only check-params
    proc = proj.run(["harness", "repro", "-j", "2"])
    assert "5 stale stage(s)" in proc.stdout  # planned: check-params and everything below it
    assert "start  check-params" in proc.stdout
    for stage in (SOURCE, B, C, JOIN):
        assert f"skip   {stage}: inputs unchanged" in proc.stdout, proc.stdout
        assert f"start  {stage}" not in proc.stdout
    assert "1 recorded, 4 not rerun (inputs unchanged), 0 failed" in proc.stdout, proc.stdout
    assert "Data and pipelines are up to date" in proj.run(["dvc", "status"]).stdout
    lock_after = proj.lock()
    assert lock_after != lock_before  # check-params' specs hash moved, nothing else did
    ref = project(tmp_path / "q", DIAMOND)  # the same edit through plain dvc repro: the same lock
    ref.run(["dvc", "repro"])
    (ref.root / "specs" / "slurm_selftest.yaml").write_text(spec.read_text())
    ref.run(["dvc", "repro"])
    assert ref.lock() == lock_after
