"""The scaling study: Chinchilla Approaches 1-3 on (N, D, loss) tables; width sweeps in SP and μP.

DAG::

    synthetic ──────────────┐
    published tables (path) ┼─> table-<t> (read, GE gate, select) ─> fit-<approach>-<t>[-noemb] ─┐
    corpus ─> sweep-<s>-<sp|mup> (LR x width, measured micro-batch) ─> table-<own runs> ───────────┤
           └> coord-<c> (μP coordinate check, SP vs μP) ─────────────────────────────────────────┴> report

Every approach on every table is its own stage with its own metrics file, so ``dvc exp run -S``
of a knob one fit reads reruns that fit only. A table whose source is a sweep depends on that
sweep's output; published tables are read by path (outside the repository: DVC hashes them).
"""

from __future__ import annotations

import re

from pydantic import Field, model_validator

from harness.spec import StudySpec
from harness.study import PlanContext, StageDef, StrictModel, Study
from stages.scaling.configs import (
    ApproachSpec, BatchingSpec, BootstrapSpec, BudgetSpec, CoordConfig, CorpusConfig, FitConfig, Reference,
    ReportConfig, Selection, StageOutput, SweepConfig, SweepTrainSpec, SyntheticConfig, SyntheticSpec, TableConfig,
    TableSource,
)
from stages.scaling.models import ModelSpec

STUDY_NAME = "scaling"
W, M = f"work/{STUDY_NAME}", f"metrics/{STUDY_NAME}"
NAME_RE = re.compile(r"^[A-Za-z0-9_]+$")


class TableSpec(StrictModel):
    """One (N, D, loss) source and the approaches fitted to it."""

    source: TableSource
    select: Selection = Selection()
    budgets: BudgetSpec = BudgetSpec()
    #: names of entries of ``approaches``
    fits: list[str] = Field(..., min_length=1)
    #: parameter counts to fit with: `total` and/or `non_embedding` (C = 6 N D either way)
    parameters: list[str] = Field(default_factory=lambda: ["total"], min_length=1)
    #: published values per approach name
    reference: dict[str, Reference] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _parameters(self) -> "TableSpec":
        bad = sorted(set(self.parameters) - {"total", "non_embedding"})
        if bad:
            raise ValueError(f"parameters: unknown {bad}; expected `total` and/or `non_embedding`")
        unknown_refs = sorted(set(self.reference) - set(self.fits))
        if unknown_refs:
            raise ValueError(f"reference for {unknown_refs}, which this table does not fit ({self.fits})")
        return self


class CorpusSpec(StrictModel):
    train: str
    dev: str
    min_tokens: int = Field(1024, ge=2)


class SweepSpec(StrictModel):
    model: ModelSpec
    parametrizations: list[str] = Field(default_factory=lambda: ["sp", "mup"], min_length=1)
    widths: list[int] = Field(..., min_length=1)
    lrs: list[float] = Field(..., min_length=1)

    @model_validator(mode="after")
    def _values(self) -> "SweepSpec":
        bad = sorted(set(self.parametrizations) - {"sp", "mup"})
        if bad:
            raise ValueError(f"parametrizations: unknown {bad}; expected `sp` and/or `mup`")
        if any(w < 1 for w in self.widths) or any(lr <= 0 for lr in self.lrs):
            raise ValueError("widths must be >= 1 and lrs > 0")
        return self


class CoordSpec(StrictModel):
    """Coordinate check of the model of one sweep (so the check is of what the sweep trains)."""

    sweep: str
    widths: list[int] = Field(..., min_length=3)
    steps: int = Field(4, ge=1)
    lr: float = Field(1e-2, gt=0)
    batch_size: int = Field(8, ge=1)
    seq_len: int = Field(32, ge=2)
    seeds: int = Field(1, ge=1)
    flat_tolerance: float = Field(0.3, gt=0)
    cpu_threads: int = Field(1, ge=1)


class ScalingSpec(StudySpec):
    seed: int = 0
    synthetic: SyntheticSpec
    approaches: dict[str, ApproachSpec] = Field(..., min_length=1)
    bootstrap: BootstrapSpec
    tables: dict[str, TableSpec] = Field(..., min_length=1)
    corpus: CorpusSpec
    train: SweepTrainSpec
    batching: BatchingSpec
    sweeps: dict[str, SweepSpec] = Field(default_factory=dict)
    coord: dict[str, CoordSpec] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> "ScalingSpec":
        for group in ("approaches", "tables", "sweeps", "coord"):
            for name in getattr(self, group):
                if not NAME_RE.match(name):
                    raise ValueError(f"{group}: name {name!r} may only use letters, digits and _ (it names stages)")
        for name, table in self.tables.items():
            missing = [a for a in table.fits if a not in self.approaches]
            if missing:
                raise ValueError(f"tables.{name}.fits: {missing} not in approaches ({sorted(self.approaches)})")
            src = table.source
            if src.kind == "sweep":
                if src.sweep not in self.sweeps:
                    raise ValueError(f"tables.{name}: sweep {src.sweep!r} not in sweeps ({sorted(self.sweeps)})")
                if src.parametrization not in self.sweeps[src.sweep].parametrizations:
                    raise ValueError(f"tables.{name}: sweep {src.sweep} does not run {src.parametrization}")
        for name, coord in self.coord.items():
            if coord.sweep not in self.sweeps:
                raise ValueError(f"coord.{name}.sweep: {coord.sweep!r} not in sweeps ({sorted(self.sweeps)})")
        return self


def _table_input(spec: ScalingSpec, table: TableSpec) -> tuple[str | None, list[str]]:
    """(file the table stage reads, its DVC deps) for every kind of source."""
    src = table.source
    if src.kind == "synthetic":
        path = f"{W}/synthetic.csv"
        return path, [path]
    if src.kind == "sweep":
        out = f"{W}/sweeps/{src.sweep}-{src.parametrization}"
        return f"{out}/runs.csv", [out]
    return None, [src.path]


def plan(spec: ScalingSpec, ctx: PlanContext) -> list[StageDef]:
    res = spec.resources_for
    stages: list[StageDef] = []
    corpus_dir = f"{W}/corpus"
    stages.append(StageDef(
        name=f"{STUDY_NAME}-synthetic", kind="data", func="stages.scaling.synthetic:run",
        config=SyntheticConfig(spec=spec.synthetic, out=f"{W}/synthetic.csv"), reads=["synthetic"],
        outs=[f"{W}/synthetic.csv"], code_deps=["stages/scaling/configs.py"], resources=res("data")))
    data_deps = sorted({p if not p.startswith(f"data/{STUDY_NAME}/") else f"data/{STUDY_NAME}"
                        for p in (spec.corpus.train, spec.corpus.dev)})
    stages.append(StageDef(
        name=f"{STUDY_NAME}-corpus", kind="data", func="stages.scaling.corpus:run",
        config=CorpusConfig(train=spec.corpus.train, dev=spec.corpus.dev, min_tokens=spec.corpus.min_tokens,
                            out_dir=corpus_dir),
        reads=["corpus"], deps=data_deps, outs=[corpus_dir], code_deps=["harness/validation.py"],
        resources=res("data")))

    model_code = ["stages/scaling/models.py", "stages/scaling/configs.py", "harness/trainer.py"]
    sweep_outputs: list[tuple[str, str, str]] = []
    for name, sweep in spec.sweeps.items():
        for parametrization in sweep.parametrizations:
            label = f"{name}-{parametrization}"
            out, metrics = f"{W}/sweeps/{label}", f"{M}/sweep-{label}.json"
            sweep_outputs.append((label, out, metrics))
            stages.append(StageDef(
                name=f"{STUDY_NAME}-sweep-{label}", kind="train", func="stages.scaling.sweep:run",
                config=SweepConfig(name=name, parametrization=parametrization, model=sweep.model,
                                   widths=sweep.widths, lrs=sweep.lrs, train=spec.train,
                                   batching=spec.batching, seed=spec.seed, corpus_dir=corpus_dir, out_dir=out,
                                   metrics=metrics),
                reads=[f"sweeps.{name}", "train", "batching", "seed"], deps=[corpus_dir], outs=[out],
                metrics=[metrics], code_deps=model_code + ["stages/scaling/batching.py", "stages/scaling/corpus.py"],
                resources=res("train")))

    coord_outputs: list[tuple[str, str, str]] = []
    for name, coord in spec.coord.items():
        out, metrics = f"{W}/coord/{name}", f"{M}/coord-{name}.json"
        coord_outputs.append((name, out, metrics))
        stages.append(StageDef(
            name=f"{STUDY_NAME}-coord-{name}", kind="probe", func="stages.scaling.coord:run",
            config=CoordConfig(name=name, corpus_dir=corpus_dir, out_dir=out, metrics=metrics,
                               model=spec.sweeps[coord.sweep].model, **coord.model_dump(exclude={"sweep"})),
            reads=[f"coord.{name}", f"sweeps.{coord.sweep}.model"], deps=[corpus_dir], outs=[out], metrics=[metrics], code_deps=model_code,
            resources=res("probe")))

    fit_outputs: list[str] = []
    table_files: dict[str, str] = {}
    for tname, table in spec.tables.items():
        source_file, deps = _table_input(spec, table)
        parquet, reference = f"{W}/tables/{tname}.parquet", f"{W}/tables/{tname}.reference.json"
        table_files[tname] = parquet
        stages.append(StageDef(
            name=f"{STUDY_NAME}-table-{tname}", kind="data", func="stages.scaling.table:run",
            config=TableConfig(name=tname, source=table.source, input=source_file, select=table.select,
                               out=parquet, reference_out=reference, metrics=f"{M}/table-{tname}.json"),
            reads=[f"tables.{tname}.source", f"tables.{tname}.select"], deps=deps, outs=[parquet, reference],
            metrics=[f"{M}/table-{tname}.json"],
            code_deps=["stages/scaling/tables.py", "stages/scaling/gate.py", "harness/validation.py"],
            resources=res("data")))
        for approach in table.fits:
            for parameters in table.parameters:
                suffix = "" if parameters == "total" else "-noemb"
                label = f"{approach}-{tname}{suffix}"
                details = f"{W}/fits/{label}.json"
                fit_outputs.append(details)
                stages.append(StageDef(
                    name=f"{STUDY_NAME}-fit-{label}", kind="fit", func="stages.scaling.fit:run",
                    config=FitConfig(table=parquet, table_name=tname, approach_name=approach,
                                     approach=spec.approaches[approach], parameters=parameters,
                                     budgets=table.budgets, bootstrap=spec.bootstrap,
                                     reference=table.reference.get(approach), source_reference=reference,
                                     metrics=f"{M}/fit-{label}.json", details=details),
                    reads=[f"tables.{tname}", f"approaches.{approach}", "bootstrap"], deps=[parquet, reference],
                    outs=[details], metrics=[f"{M}/fit-{label}.json"],
                    code_deps=["stages/scaling/parametric.py", "stages/scaling/isoflop.py",
                               "stages/scaling/profiles.py", "stages/scaling/powerlaw.py"],
                    resources=res("fit")))

    report_dir = f"reports/{STUDY_NAME}"
    stages.append(StageDef(
        name=f"{STUDY_NAME}-report", kind="report", func="stages.scaling.report:run",
        config=ReportConfig(fits=fit_outputs, tables=table_files,
                            sweeps=[StageOutput(label=lb, dir=o, metrics=m) for lb, o, m in sweep_outputs],
                            coords=[StageOutput(label=lb, dir=o, metrics=m) for lb, o, m in coord_outputs],
                            out_dir=report_dir),
        deps=fit_outputs + list(table_files.values()) + [o for _, o, _ in sweep_outputs] + [m for _, _, m in sweep_outputs]
        + [o for _, o, _ in coord_outputs] + [m for _, _, m in coord_outputs],
        outs_no_cache=[report_dir], code_deps=["stages/scaling/plots.py"], resources=res("report")))
    return stages


STUDY = Study(name=STUDY_NAME, spec_model=ScalingSpec, plan=plan)
