"""`harness drift` fails when it must: bad revs, subdirectories, real drift, per-metric tolerances.

Each test builds a throwaway git repository under tmp_path holding real committed metrics
(copied from this checkout), edits a reproduced file the way a colleague did with ``sed``, and
runs the real CLI in a subprocess.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PHASE1 = "metrics/param_alloc/phase1/e25_g2_0.json"
EVALUATE = "metrics/mixture_sim/generated/evaluate.json"
R2_KEY = ("random", "gradient_boosting", "median_r2")
MAE_KEY = ("random", "gradient_boosting", "median_mae")


def git(root: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=root, check=True, capture_output=True)


def drift(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HARNESS_CPU_ISA": "native"}  # nothing numeric runs; keep the env as is
    return subprocess.run([sys.executable, "-m", "harness.cli", "drift", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def _without_blocks(text: str, keys: tuple[str, ...]) -> str:
    """``text`` without the top-level YAML blocks that start with one of ``keys``."""
    out, skipping = [], False
    for line in text.splitlines(keepends=True):
        if line[:1] not in (" ", "#", "\n") and line.strip():
            skipping = line.startswith(keys)
        if not skipping:
            out.append(line)
    return "".join(out)


def make_project(root: Path, tolerance: dict[str, float] | None = None, metrics: bool = True) -> Path:
    """A committed project: dvc.yaml, params.yaml, optionally the mixture_sim spec, two metric files."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "dvc.yaml").write_text("stages: {}\n")
    (root / "work" / "deep").mkdir(parents=True)
    (root / "work" / "deep" / ".keep").write_text("")
    if tolerance is not None:
        shutil.copy2(REPO / "params.yaml", root / "params.yaml")
        (root / "specs").mkdir()
        # the spec's own declarations off: these tests declare their own
        text = _without_blocks((REPO / "specs" / "mixture_sim.yaml").read_text(),
                               ("drift_tolerance:", "not_reproducible:")).rstrip("\n")
        text += "\ndrift_tolerance:\n" + "".join(f"  {json.dumps(k)}: {v!r}\n" for k, v in tolerance.items())
        (root / "specs" / "mixture_sim.yaml").write_text(text)
    if metrics:
        for rel in (PHASE1, EVALUATE):
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, root / rel)
    git(root, "init", "-q")
    git(root, "config", "user.email", "ci@example.com")
    git(root, "config", "user.name", "ci")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "metrics")
    return root


def edit_json(path: Path, keys: tuple[str, ...], factor: float) -> tuple[float, float]:
    doc = json.loads(path.read_text())
    node = doc
    for k in keys[:-1]:
        node = node[k]
    old = node[keys[-1]]
    node[keys[-1]] = old * factor
    path.write_text(json.dumps(doc, indent=2))
    return old, node[keys[-1]]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return make_project(tmp_path / "proj")


def test_unchanged_metrics_pass(project: Path):
    proc = drift(project)
    assert proc.returncode == 0, proc.stderr
    assert "no metric drift against HEAD" in proc.stdout and "in 2 files" in proc.stdout


def test_sed_edit_is_drift_exit_1(project: Path):
    path = project / PHASE1
    path.write_text(path.read_text().replace('"dev_ppl": 139', '"dev_ppl": 150'))
    proc = drift(project)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"{PHASE1}: dev_ppl committed 139.4558182598, reproduced 150.4558182598" in proc.stderr


def test_change_within_default_rtol_passes_beyond_fails(project: Path):
    edit_json(project / PHASE1, ("best_dev_ppl",), 1 + 2e-5)  # below 1e-4: last-bit CPU differences
    assert drift(project).returncode == 0
    edit_json(project / PHASE1, ("best_dev_ppl",), 1 + 1e-3)
    proc = drift(project)
    assert proc.returncode == 1 and "best_dev_ppl" in proc.stderr


@pytest.mark.parametrize("rev", ["HAED", "HEAD~100", "no-such-branch", "--all"])
def test_unknown_rev_is_an_error_exit_2(project: Path, rev: str):
    path = project / PHASE1
    path.write_text(path.read_text().replace('"dev_ppl": 139', '"dev_ppl": 150'))
    proc = drift(project, f"--rev={rev}")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "unknown revision" in proc.stderr and "no metric drift" not in proc.stdout


def test_from_a_subdirectory_still_detects_drift(project: Path):
    path = project / PHASE1
    path.write_text(path.read_text().replace('"dev_ppl": 139', '"dev_ppl": 150'))
    for sub in ("work", "work/deep", "metrics/param_alloc"):
        proc = drift(project / sub)
        assert proc.returncode == 1, (sub, proc.stdout, proc.stderr)
        assert "dev_ppl" in proc.stderr


def test_no_committed_metrics_is_an_error(tmp_path: Path):
    root = make_project(tmp_path / "empty", metrics=False)
    proc = drift(root)
    assert proc.returncode == 2 and "no metric files" in proc.stderr


def test_outside_any_project_is_an_error(tmp_path: Path):
    (tmp_path / "elsewhere").mkdir()
    proc = drift(tmp_path / "elsewhere")
    assert proc.returncode == 2 and "not inside a harness project" in proc.stderr


def test_missing_and_uncommitted_files_are_drift(project: Path):
    (project / PHASE1).unlink()
    (project / "metrics" / "param_alloc" / "phase1" / "new_run.json").write_text('{"dev_ppl": 1.0}')
    proc = drift(project)
    assert proc.returncode == 1
    assert f"{PHASE1}: committed but not reproduced" in proc.stderr
    assert "new_run.json: reproduced but not committed" in proc.stderr


def test_per_metric_tolerance_admits_only_that_metric(tmp_path: Path):
    pattern = f"{EVALUATE}:*.median_r2"
    root = make_project(tmp_path / "tol", tolerance={pattern: 1e-2})
    edit_json(root / EVALUATE, R2_KEY, 1 + 3e-3)  # within the declared 1e-2, far beyond 1e-4
    proc = drift(root)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"tolerance 0.01 for {pattern} (specs/mixture_sim.yaml)" in proc.stdout
    assert "per-metric tolerances above" in proc.stdout

    edit_json(root / EVALUATE, MAE_KEY, 1 + 3e-3)  # the same change elsewhere is still drift
    proc = drift(root)
    assert proc.returncode == 1
    assert "median_mae" in proc.stderr and "median_r2" not in proc.stderr

    edit_json(root / EVALUATE, MAE_KEY, 1 / (1 + 3e-3))
    edit_json(root / EVALUATE, R2_KEY, 1 + 5e-2)  # beyond the loosened tolerance: drift
    proc = drift(root)
    assert proc.returncode == 1 and "median_r2" in proc.stderr and "(rtol 0.01 from specs/mixture_sim.yaml)" in proc.stderr


@pytest.mark.parametrize("tolerance, message", [
    ({f"{EVALUATE}:*.median_r2": 1.5}, "rtol must be > 0 and < 1"),
    ({f"{EVALUATE}:*.median_r2": 0.0}, "rtol must be > 0 and < 1"),
    ({f"{EVALUATE}:*": 1e-2}, "bare wildcard"),
    ({f"{PHASE1}:dev_ppl": 1e-2}, "this study's metrics"),
    ({"metrics/mixture_sim/generated/evaluate.json": 1e-2}, "expected '<metrics file glob>:<flattened key glob>'"),
])
def test_invalid_tolerances_are_spec_errors(tmp_path: Path, tolerance, message):
    root = make_project(tmp_path / "bad", tolerance=tolerance)
    proc = drift(root)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "specs/mixture_sim.yaml:" in proc.stderr and "drift_tolerance" in proc.stderr
    assert message in proc.stderr


def test_find_drift_api(project: Path):
    from harness.drift import DriftError, Tolerance, find_drift, project_root

    assert project_root(project / "work" / "deep") == project.resolve()
    edit_json(project / PHASE1, ("best_dev_ppl",), 1 + 1e-3)
    report = find_drift(project, tolerances=[])
    assert len(report) == 1 and "best_dev_ppl" in report.problems[0] and report.files == 2
    loose = find_drift(project, tolerances=[Tolerance(f"{PHASE1}:best_dev_ppl", 1e-2, "test")])
    assert not loose and loose.loosened == {f"{PHASE1}:best_dev_ppl": (1e-2, "test", 1)}
    with pytest.raises(DriftError):
        find_drift(project, rev="HEAD~1")
