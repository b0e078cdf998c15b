"""Mistakes that used to compile and run wrongly are refused at compile time (or before a run),
each naming the file, the field and what was expected (issue 29, item 3):

- a path role nested inside a field's type (``dict[str, Annotated[str, Dep]]``): those paths were
  silently no deps, so a report ran before its inputs existed;
- a ``reads`` path that names nothing in the spec: the stage silently lost its ``params:``;
- a ``resources:`` key that is no stage kind of the study: silently the default resources;
- ``harness run <stage>`` after a spec edit: silently the old config file.

Each test builds a one-study project in a temporary folder (the study found through
``$HARNESS_STUDY_PATH``), so the real project's specs are never touched.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import run

STUDY = '''
from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

from pydantic import Field

from harness.spec import StudySpec
from harness.study import Dep, Metric, Out, PlanContext, StageDef, StrictModel, Study


class Train(StrictModel):
    lr: float = Field(gt=0)
    steps: int = Field(3, ge=1)


class MiniSpec(StudySpec):
    seed: int = 0
    train: Train


class TrainConfig(StrictModel):
    seed: int
    train: Train
    out: Annotated[str, Out]


class ReportConfig(StrictModel):
    RUNS_FIELD
    out: Annotated[str, Metric]


def run_train(cfg: TrainConfig) -> None:
    Path(cfg.out).parent.mkdir(parents=True, exist_ok=True)
    Path(cfg.out).write_text(json.dumps({"lr": cfg.train.lr, "seed": cfg.seed}))


def run_report(cfg: ReportConfig) -> None:
    runs = {k: json.loads(Path(v).read_text()) for k, v in cfg.runs.items()}
    Path(cfg.out).parent.mkdir(parents=True, exist_ok=True)
    Path(cfg.out).write_text(json.dumps(runs))


def plan(spec: MiniSpec, ctx: PlanContext) -> list[StageDef]:
    train_out = f"{ctx.work}/train.json"
    return [
        StageDef(name="mini-train", func="mini.study:run_train", kind="train",
                 config=TrainConfig(seed=spec.seed, train=spec.train, out=train_out),
                 reads=TRAIN_READS, resources=spec.resources_for("train")),
        StageDef(name="mini-report", func="mini.study:run_report", kind="report",
                 config=ReportConfig(runs={"a": train_out}, out=f"{ctx.metrics}/report.json"),
                 resources=spec.resources_for("report")),
    ]


STUDY = Study(name="mini", spec_model=MiniSpec, plan=plan)
'''

SPEC = """\
study: mini
seed: ${seed}
train:
  lr: ${lr}
  steps: 3
resources:
  default: {cpus: 1, mem_gb: 1, time_min: 5}
  train: {cpus: 1, mem_gb: 1, time_min: 10}
"""


def make(tmp_path: Path, runs_field: str = "runs: Annotated[dict[str, str], Dep]",
         reads: str = '["seed", "train"]', spec: str = SPEC) -> tuple[Path, dict[str, str]]:
    root = tmp_path / "proj"
    (root / "specs").mkdir(parents=True)
    (root / "studies" / "mini").mkdir(parents=True)
    (root / "studies" / "mini" / "__init__.py").write_text("")
    (root / "studies" / "mini" / "study.py").write_text(
        STUDY.replace("RUNS_FIELD", runs_field).replace("TRAIN_READS", reads))
    (root / "specs" / "mini.yaml").write_text(spec)
    (root / "params.yaml").write_text("seed: 0\nlr: 0.1\n")
    return root, {"HARNESS_STUDY_PATH": str(root / "studies")}


def compile_fails(root: Path, env: dict[str, str]) -> str:
    proc = run(["harness", "compile"], root, check=False, env=env)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert not (root / "dvc.yaml").exists(), "a refused compile writes nothing"
    return proc.stderr


def test_the_correct_study_compiles(tmp_path: Path):
    root, env = make(tmp_path)
    run(["harness", "compile"], root, env=env)
    text = (root / "dvc.yaml").read_text()
    assert "- work/mini/train.json" in text.split("mini-report:")[1]  # the report depends on the run


@pytest.mark.parametrize("field, expected", [
    ("runs: dict[str, Annotated[str, Dep]]", "Annotated[dict[str, str], Dep]"),
    ("runs: dict[str, Annotated[str, Dep]] | None", "Annotated[dict[str, str] | None, Dep]"),
])
def test_a_path_role_nested_inside_a_container_is_an_error(tmp_path: Path, field: str, expected: str):
    root, env = make(tmp_path, runs_field=field)
    err = compile_fails(root, env)
    line = next(i for i, text in enumerate((root / "studies/mini/study.py").read_text().splitlines(), 1)
                if text.strip().startswith("runs:"))
    assert f"study.py:{line}: ReportConfig.runs: the `Dep` marker inside" in err, err
    assert "is ignored" in err and f"expected `{expected}`" in err, err


def test_a_reads_path_that_names_nothing_in_the_spec_is_an_error(tmp_path: Path):
    root, env = make(tmp_path, reads='["seed", "trian"]')
    err = compile_fails(root, env)
    assert "studies/mini/study.py: stage `mini-train`: reads=['trian'] is not a path of the spec specs/mini.yaml" in err, err
    assert "did you mean `train`?" in err and "params:" in err, err


def test_a_reads_path_below_a_value_is_an_error(tmp_path: Path):
    root, env = make(tmp_path, reads='["seed", "train.lr.x", "train.stepz"]')
    err = compile_fails(root, env)
    assert "reads=['train.lr.x']" in err and "`train.lr` is a value (float), it has no `x`" in err, err
    assert "reads=['train.stepz']" in err and "did you mean `train.steps`?" in err, err


def test_a_reads_path_to_a_default_value_is_fine(tmp_path: Path):
    root, env = make(tmp_path, reads='["seed", "train.steps", "description"]')  # not in the file: defaults
    run(["harness", "compile"], root, env=env)


def test_a_resources_key_that_is_no_stage_kind_is_an_error(tmp_path: Path):
    root, env = make(tmp_path, spec=SPEC.replace("  train: {cpus", "  trian: {cpus"))
    err = compile_fails(root, env)
    assert "specs/mini.yaml:8:3: resources.trian: no stage of study `mini` has kind `trian`; did you mean `train`?" in err, err
    assert "report, train" in err, err


def test_a_resources_key_in_a_profile_overlay_is_checked_too(tmp_path: Path):
    spec = SPEC + "profiles:\n  full:\n    resources:\n      evall: {cpus: 4}\n"
    root, env = make(tmp_path, spec=spec)
    err = compile_fails(root, env)
    assert "specs/mini.yaml:12:7: resources.evall: no stage of study `mini` has kind `evall`" in err, err


def test_harness_run_refuses_a_config_older_than_the_spec(tmp_path: Path):
    root, env = make(tmp_path)
    run(["harness", "compile"], root, env=env)
    run(["harness", "check-params"], root, env=env)
    run(["harness", "run", "mini-train"], root, env=env)
    assert json.loads((root / "work/mini/train.json").read_text())["lr"] == 0.1

    spec = root / "specs/mini.yaml"
    spec.write_text(spec.read_text().replace("steps: 3", "steps: 4"))
    proc = run(["harness", "run", "mini-train"], root, check=False, env=env)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert ("work/_harness/configs/mini-train.json: older than the spec/params.yaml it comes from "
            "(train.steps 3 -> 4)") in proc.stderr, proc.stderr
    assert "Run `harness check-params`" in proc.stderr, proc.stderr

    # a knob edit is caught as well
    (root / "params.yaml").write_text("seed: 0\nlr: 0.2\n")
    proc = run(["harness", "run", "mini-train"], root, check=False, env=env)
    assert proc.returncode == 2 and "train.lr 0.1 -> 0.2" in proc.stderr, proc.stderr

    run(["harness", "check-params"], root, env=env)
    run(["harness", "run", "mini-train"], root, env=env)
    assert json.loads((root / "work/mini/train.json").read_text())["lr"] == 0.2


def test_harness_run_ignores_an_edit_that_leaves_its_config_alone(tmp_path: Path):
    root, env = make(tmp_path)
    run(["harness", "compile"], root, env=env)
    run(["harness", "check-params"], root, env=env)
    spec = root / "specs/mini.yaml"
    spec.write_text("# a comment\n" + spec.read_text())
    run(["harness", "run", "mini-train"], root, env=env)


def test_the_checks_pass_on_the_shipped_studies():
    """A new check firing on a shipped study is a real bug in it: compile every profile."""
    from conftest import REPO
    from harness.compiler import compile_all

    compile_all(REPO)

