"""``harness new-study NAME``: a working minimal study to start from.

It writes a learning-rate sweep (one data stage with its validation gate, one training stage
per learning rate and seed, one report) that compiles, runs and passes its own test, in the
layout the harness expects (docs/new-study.md walks through it):

    specs/NAME.yaml              the values (validated by NAMESpec)
    stages/NAME/study.py         the spec model and plan(spec, ctx) -> stages
    stages/NAME/configs.py       what each stage receives (imports only harness.schema)
    stages/NAME/data.py          NAME-data: make the data, gate it, write it
    stages/NAME/train.py         NAME-train-*: one run of the sweep
    stages/NAME/report.py        NAME-report: the table and the best learning rate
    tests/test_NAME.py           plans the spec and runs every stage in a temporary folder

Not imported by any stage or by the compiler (the CLI imports it on demand).
"""

from __future__ import annotations

import keyword
import re
from pathlib import Path

SPEC = '''\
# __NAME__: which learning rate trains a small MLP best? (written by `harness new-study`)
# Validated by __CLASS__Spec in stages/__NAME__/study.py: an unknown or mistyped key is an error
# with its line. After editing, run `harness compile`; `harness status` says what will rerun.
study: __NAME__
description: learning-rate sweep of a one-hidden-layer MLP on synthetic regression data
data: {rows: 512, features: 8, noise: 0.1, seed: 0}
train: {hidden: 16, steps: 150, batch_size: 32}
sweep: {lrs: [0.01, 0.03, 0.1], seeds: [0, 1]}
resources:                     # per stage kind (data, train, report) or `default`
  train: {cpus: 1, mem_gb: 1, time_min: 10}
'''

INIT = '"""__NAME__: a learning-rate sweep (from `harness new-study`)."""\n'

CONFIGS = '''\
"""What each stage of __NAME__ receives. Path fields carry their role (Dep: read, Out: written
and cached, Metric: git-tracked JSON, Committed: git-tracked file); the compiler turns them into
the stage's deps and outs. Imports only harness.schema, so editing the harness reruns nothing here."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from harness.schema import Committed, Dep, Metric, Out, StrictModel


class DataSpec(StrictModel):
    rows: int = Field(512, ge=16)
    features: int = Field(8, ge=1)
    noise: float = Field(0.1, ge=0)
    seed: int = 0


class TrainSpec(StrictModel):
    hidden: int = Field(16, ge=1)
    steps: int = Field(150, ge=1)
    batch_size: int = Field(32, ge=1)


class DataConfig(StrictModel):
    data: DataSpec
    out: Annotated[str, Out]
    gate: Annotated[str, Metric]


class TrainConfig(StrictModel):
    train: TrainSpec
    lr: float = Field(gt=0)
    seed: int
    data: Annotated[str, Dep]
    metrics: Annotated[str, Metric]


class ReportConfig(StrictModel):
    runs: Annotated[dict[str, str], Dep]  # the role goes on the field: every path in the dict is a dep
    metrics: Annotated[str, Metric]
    report: Annotated[str, Committed]
'''

STUDY = '''\
"""__NAME__: the spec model and the plan (which stages exist, what each one gets)."""

from __future__ import annotations

from pydantic import Field, PositiveFloat

from harness.spec import StudySpec
from harness.study import PlanContext, StageDef, StrictModel, Study

from .configs import DataConfig, DataSpec, ReportConfig, TrainConfig, TrainSpec

NAME = "__NAME__"
PACKAGE = __name__.rpartition(".")[0]  # stages.__NAME__ (or __NAME__ on $HARNESS_STUDY_PATH)


class SweepSpec(StrictModel):
    lrs: list[PositiveFloat] = Field(min_length=1)
    seeds: list[int] = Field(min_length=1)


class __CLASS__Spec(StudySpec):
    data: DataSpec = Field(default_factory=DataSpec)
    train: TrainSpec = Field(default_factory=TrainSpec)
    sweep: SweepSpec


def stage(step: str, config, reads: list[str], spec: __CLASS__Spec, kind: str | None = None,
          variant: str = "") -> StageDef:
    """``__NAME__-<step>[-<variant>]`` running ``<step>.py:run``; ``reads``: the spec paths its
    config comes from (their knobs become its params:)."""
    kind = kind or step
    return StageDef(name="-".join(filter(None, [NAME, step, variant])), func=f"{PACKAGE}.{step}:run",
                    config=config, reads=reads, kind=kind, resources=spec.resources_for(kind))


def plan(spec: __CLASS__Spec, ctx: PlanContext) -> list[StageDef]:
    data = f"{ctx.work}/data.npz"
    stages = [stage("data", DataConfig(data=spec.data, out=data, gate=f"{ctx.metrics}/gate.json"), ["data"], spec)]
    runs = {}
    for lr in spec.sweep.lrs:
        for seed in spec.sweep.seeds:
            tag = f"lr{lr:g}-s{seed}".replace(".", "p")  # stage names: letters, digits, - and _
            runs[tag] = f"{ctx.metrics}/runs/{tag}.json"
            config = TrainConfig(train=spec.train, lr=lr, seed=seed, data=data, metrics=runs[tag])
            stages.append(stage("train", config, ["train", "sweep"], spec, variant=tag))
    report = ReportConfig(runs=runs, metrics=f"{ctx.metrics}/report.json", report=f"{ctx.reports}/report.md")
    stages.append(stage("report", report, [], spec))
    return stages


STUDY = Study(name=NAME, spec_model=__CLASS__Spec, plan=plan)
'''

DATA = '''\
"""__NAME__-data: synthetic regression data (y = tanh(X w) + noise), gated before anything trains on it."""

from __future__ import annotations

import numpy as np
import pandas as pd

from harness.io import atomic_path, write_json
from harness.validation import expect, run_gate

from .configs import DataConfig


def run(cfg: DataConfig) -> None:
    d = cfg.data
    rng = np.random.default_rng(d.seed)
    x = rng.normal(size=(d.rows, d.features))
    y = np.tanh(x @ rng.normal(size=d.features) / np.sqrt(d.features)) + d.noise * rng.normal(size=d.rows)
    frame = pd.DataFrame(x, columns=[f"x{i}" for i in range(d.features)]).assign(y=y)
    gate = run_gate("__NAME__/data", frame, [  # raises GateFailure (exit 3): nothing downstream runs
        expect("ExpectTableRowCountToEqual", value=d.rows),
        expect("ExpectColumnValuesToNotBeNull", column="y"),
        expect("ExpectColumnValuesToBeBetween", column="y", min_value=-1 - 10 * d.noise, max_value=1 + 10 * d.noise),
    ])
    with atomic_path(cfg.out) as tmp:  # written whole or not at all
        with open(tmp, "wb") as fh:
            np.savez(fh, x=x, y=y)
    write_json(cfg.gate, gate)
'''

TRAIN = '''\
"""__NAME__-train-*: one run of the sweep, a one-hidden-layer MLP trained by minibatch SGD (numpy)."""

from __future__ import annotations

import numpy as np

from harness.io import write_json

from .configs import TrainConfig


def run(cfg: TrainConfig) -> None:
    with np.load(cfg.data) as data:
        x, y = data["x"], data["y"]
    n_val = len(x) // 4
    (xv, yv), (xt, yt) = (x[:n_val], y[:n_val]), (x[n_val:], y[n_val:])
    rng = np.random.default_rng(cfg.seed)  # every random choice comes from the config's seed
    t = cfg.train
    w1 = rng.normal(size=(x.shape[1], t.hidden)) / np.sqrt(x.shape[1])
    w2 = rng.normal(size=t.hidden) / np.sqrt(t.hidden)
    curve = []
    for step in range(t.steps):
        idx = rng.integers(0, len(xt), size=t.batch_size)
        h = np.tanh(xt[idx] @ w1)
        err = h @ w2 - yt[idx]
        grad_w2 = h.T @ err / len(idx)
        grad_w1 = xt[idx].T @ (np.outer(err, w2) * (1 - h**2)) / len(idx)
        w1, w2 = w1 - cfg.lr * 2 * grad_w1, w2 - cfg.lr * 2 * grad_w2
        if (step + 1) % max(1, t.steps // 10) == 0:
            curve.append(float(np.mean((np.tanh(xv @ w1) @ w2 - yv) ** 2)))
    write_json(cfg.metrics, {"lr": cfg.lr, "seed": cfg.seed, "val_mse": curve[-1], "curve": curve})
'''

REPORT = '''\
"""__NAME__-report: validation MSE per learning rate (mean over seeds) and the best one."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from harness.io import write_json, write_text

from .configs import ReportConfig


def run(cfg: ReportConfig) -> None:
    by_lr = defaultdict(list)
    for path in cfg.runs.values():
        result = json.loads(Path(path).read_text())
        by_lr[result["lr"]].append(result["val_mse"])
    mean = {lr: sum(v) / len(v) for lr, v in sorted(by_lr.items())}
    best = min(mean, key=mean.get)
    write_json(cfg.metrics, {"best_lr": best, "val_mse": {f"{lr:g}": m for lr, m in mean.items()}})
    rows = [f"| {lr:g} | {m:.4f} | {len(by_lr[lr])} |" for lr, m in mean.items()]
    write_text(cfg.report, "\\n".join(["# __NAME__", "", f"Best learning rate: **{best:g}**", "",
                                      "| lr | val MSE (mean) | seeds |", "| --- | --- | --- |", *rows, ""]))
'''

TEST = '''\
"""__NAME__: the spec validates, the plan compiles, and every stage runs in a temporary folder."""

from __future__ import annotations

import json
from pathlib import Path

from harness.compiler import plan_profile
from harness.study import resolve

ROOT = Path(__file__).resolve().parents[1]


def test___NAME___runs_end_to_end(tmp_path, monkeypatch):
    stages = [stage for stage, item in plan_profile(ROOT) if item.study.name == "__NAME__"]
    assert [s.kind for s in stages] == ["data"] + ["train"] * (len(stages) - 2) + ["report"]
    monkeypatch.chdir(tmp_path)  # stage paths are relative to the project: write them here
    for stage in stages:  # plan order is a valid run order
        resolve(stage.func)(stage.config)
    report = json.loads(Path(stages[-1].config.metrics).read_text())
    assert report["best_lr"] in [s.config.lr for s in stages if s.kind == "train"]
    assert all(v < 1.0 for v in report["val_mse"].values()), report
'''

FILES = {
    "specs/{name}.yaml": SPEC,
    "stages/{name}/__init__.py": INIT,
    "stages/{name}/configs.py": CONFIGS,
    "stages/{name}/study.py": STUDY,
    "stages/{name}/data.py": DATA,
    "stages/{name}/train.py": TRAIN,
    "stages/{name}/report.py": REPORT,
    "tests/test_{name}.py": TEST,
}


class ScaffoldError(ValueError):
    pass


def new_study(root: Path, name: str, package_dir: str = "stages") -> list[Path]:
    """Write the study's files under ``root``; refuse to overwrite anything. Returns what was written."""
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name) or keyword.iskeyword(name):
        raise ScaffoldError(f"study name {name!r}: expected lower-case letters, digits and _ (a Python "
                            "package name, and the prefix of every stage name), e.g. lr_sweep")
    klass = "".join(part.capitalize() for part in name.split("_"))
    planned = {root / rel.format(name=name).replace("stages/", f"{package_dir.rstrip('/')}/", 1): text
               for rel, text in FILES.items()}
    existing = [str(p.relative_to(root)) for p in planned if p.exists()]
    if existing:
        raise ScaffoldError(f"study `{name}`: {', '.join(existing)} already exist; nothing written")
    for path, text in planned.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text.replace("__NAME__", name).replace("__CLASS__", klass))
    return list(planned)
