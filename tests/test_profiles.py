"""One pipeline per profile: own dvc.yaml, lock and outputs; committed results checked for staleness.

Through the real dvc CLI on the selftest study with a `reference` overlay: the reference pipeline
runs on its own, `dvc metrics show` lists both profiles, a fresh clone (no DVC cache) finds the
committed reference results up to date, and a spec value or code change is reported as stale
without rerunning anything.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from slurm_support.project import Project, make_project

REFERENCE = {"profiles": {"reference": {"message": "reference run"}}}


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Project:
    proj = make_project(tmp_path_factory.mktemp("profiles") / "proj", spec=REFERENCE)
    proj.run(["dvc", "repro"])
    proj.run(["dvc", "repro", "profiles/reference/dvc.yaml"])
    proj.run(["git", "add", "-A"])
    proj.run(["git", "commit", "-qm", "smoke and reference results"])
    return proj


def test_each_profile_has_its_own_pipeline_lock_and_outputs(project):
    root = project.root
    assert (root / "profiles/reference/dvc.yaml").exists() and (root / "profiles/reference/dvc.lock").exists()
    assert not (root / "profiles/full").exists()  # no spec declares `full`
    smoke = json.loads((root / "work/slurm_selftest/source.json").read_text())
    reference = json.loads((root / "work/reference/slurm_selftest/source.json").read_text())
    assert smoke["message"] == "hello" and reference["message"] == "reference run"
    shown = project.run(["dvc", "metrics", "show", "--json"]).stdout
    assert "metrics/slurm_selftest/join.json" in shown and "metrics/reference/slurm_selftest/join.json" in shown
    # plain `dvc repro` is the default profile only: nothing to do, the reference is not touched
    out = project.run(["dvc", "repro"]).stdout
    assert "Running stage" not in out


def test_profile_is_not_a_knob(project):
    params = project.root / "params.yaml"
    original = params.read_text()
    params.write_text(original + "profile: full\n")
    try:
        proc = project.run(["harness", "compile", "--check"], check=False)
        assert proc.returncode == 2 and "`profile` is no longer a knob" in proc.stderr, proc.stderr
    finally:
        params.write_text(original)


@pytest.fixture(scope="module")
def clone(project, tmp_path_factory) -> Project:
    """What CI sees: a git clone, with the committed results and no DVC cache."""
    dest = tmp_path_factory.mktemp("clone") / "proj"
    subprocess.run(["git", "clone", "-q", str(project.root), str(dest)], check=True)
    shutil.copytree(project.root / "studies", dest / "studies", dirs_exist_ok=True)
    proj = Project(dest)
    proj.env["HARNESS_STUDY_PATH"] = str(dest / "studies")
    return proj


def test_fresh_clone_finds_committed_reference_results_current(clone):
    out = clone.run(["harness", "status", "--profile", "reference", "--committed"]).stdout
    assert out.strip() == "every stage is up to date", out


def test_a_spec_value_change_makes_committed_results_stale(clone):
    spec = clone.root / "specs/slurm_selftest.yaml"
    original = spec.read_text()
    spec.write_text(original.replace("reference run", "another run"))
    try:
        out = clone.run(["harness", "status", "--profile", "reference", "--committed", "--json"]).stdout
        reasons = {s["stage"]: s["reasons"] for s in json.loads(out)}
        assert "spec value message reference run -> another run" in reasons["slurm_selftest-source"], reasons
        # the smoke profile does not read that value: its results stay current
        smoke = clone.run(["harness", "status", "--committed", "--direct"]).stdout
        assert "slurm_selftest-source" not in smoke, smoke
    finally:
        spec.write_text(original)


def test_a_code_change_makes_committed_results_stale(clone):
    helper = clone.root / "studies/slurm_selftest/joiner.py"
    original = helper.read_text()
    helper.write_text(original.replace('"n": len(parts)', '"n": len(parts) + 0'))
    try:
        out = clone.run(["harness", "status", "--profile", "reference", "--committed"]).stdout
        assert "slurm_selftest-join: studies/slurm_selftest/joiner.py changed (summarize)" in out, out
        assert "slurm_selftest-source" not in out
    finally:
        helper.write_text(original)
