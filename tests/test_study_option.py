"""`--study S` keeps `harness repro`, `harness status` and `harness stages` inside one study
(issue 29, item 6): two studies in a throwaway project, only one of them touched."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from conftest import init_git, run
from test_plan_checks import SPEC, STUDY, make


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    root, env = make(tmp_path_factory.mktemp("study_option"))
    other = root / "studies" / "other"
    other.mkdir()
    (other / "__init__.py").write_text("")
    code = (STUDY.replace("RUNS_FIELD", "runs: Annotated[dict[str, str], Dep]").replace("TRAIN_READS", '["seed"]')
            .replace('"mini', '"other').replace("mini.study", "other.study"))
    (other / "study.py").write_text(code)
    (root / "specs" / "other.yaml").write_text(SPEC.replace("study: mini", "study: other"))
    run(["harness", "compile"], root, env=env)
    init_git(root)
    return root, env


def test_stages_of_one_study(project):
    root, env = project
    out = run(["harness", "stages", "--study", "other"], root, env=env).stdout
    assert [line.split()[0] for line in out.splitlines()] == ["other-train", "other-report"]
    proc = run(["harness", "stages", "--study", "mimi"], root, check=False, env=env)
    assert proc.returncode == 2 and "did you mean `mini`?" in proc.stderr, proc.stderr


def test_status_of_one_study(project):
    root, env = project
    out = run(["harness", "status", "--study", "mini", "--json"], root, env=env).stdout
    stages = {s["stage"] for s in json.loads(out)}
    assert stages == {"check-params", "mini-train", "mini-report"}, stages
    proc = run(["harness", "status", "--study", "nope"], root, check=False, env=env)
    assert proc.returncode == 2 and "--study nope: no such study" in proc.stderr, proc.stderr


def test_repro_of_one_study_runs_only_its_stages(project):
    root, env = project
    run(["harness", "repro", "--study", "mini"], root, env=env)
    lock = yaml.safe_load((root / "dvc.lock").read_text())["stages"]
    assert set(lock) == {"check-params", "mini-train", "mini-report"}, set(lock)
    assert json.loads((root / "metrics/mini/report.json").read_text())["a"]["lr"] == 0.1
    assert not (root / "work/other").exists()
