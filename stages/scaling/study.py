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
    ApproachSpec, BootstrapSpec, BudgetSpec, CorpusConfig, FitConfig, Reference, ReportConfig, Selection, StageOutput,
    SyntheticConfig, SyntheticSpec, TableConfig, TableSource, TransferConfig, TransferSpec,
)
from stages.scaling.lmconfigs import BatchingSpec, CoordConfig, SweepConfig, SweepTrain
from stages.scaling.models import ModelSpec

STUDY_NAME = "scaling"
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
    #: the LR grid of every width; or one grid per parametrization (``{sp: [...], mup: [...]}``),
    #: since SP's optimum moves with width and μP's should not, a grid wide enough for both
    #: around each one's optimum costs less than one grid spanning both; a parametrization's grid
    #: may also be per width (``{sp: {32: [...], 256: [...]}}``). The transfer analysis refuses an
    #: optimum on the edge of its width's grid, so a grid placed too narrowly shows, never hides.
    lrs: list[float] | dict[str, list[float] | dict[int, list[float]]]
    #: independent replicates (seed, seed+1, ...): each its own stage, so they run side by side;
    #: the optimal LR's CI is over these
    seeds: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _values(self) -> "SweepSpec":
        bad = sorted(set(self.parametrizations) - {"sp", "mup"})
        if bad:
            raise ValueError(f"parametrizations: unknown {bad}; expected `sp` and/or `mup`")
        if isinstance(self.lrs, dict):
            if set(self.lrs) != set(self.parametrizations):
                raise ValueError(f"lrs: one grid per parametrization {self.parametrizations}, got {sorted(self.lrs)}")
            for p, grid in self.lrs.items():
                if isinstance(grid, dict) and set(grid) != set(self.widths):
                    raise ValueError(f"lrs.{p}: one grid per width {self.widths}, got {sorted(grid)}")
        grids = []
        for grid in (self.lrs.values() if isinstance(self.lrs, dict) else [self.lrs]):
            grids += list(grid.values()) if isinstance(grid, dict) else [grid]
        if any(not g for g in grids):
            raise ValueError("lrs: an LR grid needs at least one value")
        if any(w < 1 for w in self.widths) or any(lr <= 0 for g in grids for lr in g):
            raise ValueError("widths must be >= 1 and lrs > 0")
        heads = getattr(self.model, "heads", None)
        if heads and [w for w in self.widths if w % heads]:  # found at compile, not when the stage runs
            raise ValueError(f"widths: {[w for w in self.widths if w % heads]} are not multiples of model.heads={heads}")
        return self

    def lrs_for(self, parametrization: str) -> list[float] | dict[int, list[float]]:
        return self.lrs[parametrization] if isinstance(self.lrs, dict) else self.lrs


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
    #: the trainer's settings for every sweep run (lr from the sweep, seed from ``seed``)
    train: SweepTrain
    batching: BatchingSpec
    sweeps: dict[str, SweepSpec] = Field(default_factory=dict)
    coord: dict[str, CoordSpec] = Field(default_factory=dict)
    transfer: TransferSpec = TransferSpec()

    @model_validator(mode="before")
    @classmethod
    def _drop_nulls(cls, data):
        """A profile removes a table, sweep or coord check of the base spec by setting it to null."""
        if isinstance(data, dict):
            data = dict(data)
            for group in ("tables", "sweeps", "coord"):
                if isinstance(data.get(group), dict):
                    data[group] = {k: v for k, v in data[group].items() if v is not None}
        return data

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
            heads = getattr(self.sweeps[coord.sweep].model, "heads", None)
            if heads and [w for w in coord.widths if w % heads]:
                raise ValueError(f"coord.{name}.widths: {[w for w in coord.widths if w % heads]} are not multiples "
                                 f"of sweeps.{coord.sweep}.model.heads={heads}")
        if "seed" in self.train.model_fields_set:
            raise ValueError("train.seed: sweep runs are seeded by the spec's top-level `seed`; leave it out here")
        return self


def _table_input(table: TableSpec, work: str) -> str | None:
    """The file the table stage reads for a synthetic or sweep source (a published one: its ``path``)."""
    src = table.source
    if src.kind == "synthetic":
        return f"{work}/synthetic.csv"
    if src.kind == "sweep":
        return f"{work}/sweeps/{src.sweep}-{src.parametrization}/runs.csv"
    return None


def plan(spec: ScalingSpec, ctx: PlanContext) -> list[StageDef]:
    res = spec.resources_for
    W, M = ctx.work, ctx.metrics
    stages: list[StageDef] = []
    corpus_dir = f"{W}/corpus"
    stages.append(StageDef(
        name=f"{STUDY_NAME}-synthetic", kind="data", func="stages.scaling.synthetic:run",
        config=SyntheticConfig(spec=spec.synthetic, out=f"{W}/synthetic.csv"), reads=["synthetic"],
        resources=res("data")))
    stages.append(StageDef(
        name=f"{STUDY_NAME}-corpus", kind="data", func="stages.scaling.corpus:run",
        config=CorpusConfig(train=spec.corpus.train, dev=spec.corpus.dev, min_tokens=spec.corpus.min_tokens,
                            out_dir=corpus_dir),
        reads=["corpus"], resources=res("data")))

    sweep_outputs: list[StageOutput] = []
    transfer_outputs: list[StageOutput] = []
    for name, sweep in spec.sweeps.items():
        replicates: dict[str, list[str]] = {}
        for parametrization in sweep.parametrizations:
            for k in range(sweep.seeds):
                # replicate 0 keeps the plain name: a one-seed sweep is named as it always was
                label = f"{name}-{parametrization}" + (f"-seed{k}" if k else "")
                train = spec.train.model_copy(update={"seed": spec.seed + k})
                out = StageOutput(label=label, dir=f"{W}/sweeps/{label}", metrics=f"{M}/sweep-{label}.json")
                replicates.setdefault(parametrization, []).append(f"{out.dir}/results.csv")
                if k == 0:
                    sweep_outputs.append(out)
                stages.append(StageDef(
                    name=f"{STUDY_NAME}-sweep-{label}", kind="train", func="stages.scaling.sweep:run",
                    config=SweepConfig(name=name, parametrization=parametrization, model=sweep.model,
                                       widths=sweep.widths, lrs=sweep.lrs_for(parametrization), train=train, batching=spec.batching,
                                       corpus_dir=corpus_dir, out_dir=out.dir, metrics=out.metrics),
                    reads=[f"sweeps.{name}", "train", "batching", "seed"], resources=res("train")))
        if not {"sp", "mup"} <= set(sweep.parametrizations):
            continue  # the transfer question compares SP with μP
        out = StageOutput(label=name, dir=f"{W}/transfer/{name}", metrics=f"{M}/transfer-{name}.json")
        transfer_outputs.append(out)
        stages.append(StageDef(
            name=f"{STUDY_NAME}-transfer-{name}", kind="fit", func="stages.scaling.transfer:run",
            config=TransferConfig(sweep=name, results=replicates, widths=sweep.widths, spec=spec.transfer,
                                  seed=spec.seed, out_dir=out.dir, metrics=out.metrics),
            reads=["transfer", "seed"], resources=res("fit")))

    coord_outputs: list[StageOutput] = []
    for name, coord in spec.coord.items():
        out = StageOutput(label=name, dir=f"{W}/coord/{name}", metrics=f"{M}/coord-{name}.json")
        coord_outputs.append(out)
        stages.append(StageDef(
            name=f"{STUDY_NAME}-coord-{name}", kind="probe", func="stages.scaling.coord:run",
            config=CoordConfig(name=name, corpus_dir=corpus_dir, out_dir=out.dir, metrics=out.metrics,
                               model=spec.sweeps[coord.sweep].model, **coord.model_dump(exclude={"sweep"})),
            reads=[f"coord.{name}", f"sweeps.{coord.sweep}.model"], resources=res("probe")))

    fit_outputs: list[str] = []
    table_files: dict[str, str] = {}
    for tname, table in spec.tables.items():
        parquet, reference = f"{W}/tables/{tname}.parquet", f"{W}/tables/{tname}.reference.json"
        table_files[tname] = parquet
        stages.append(StageDef(
            name=f"{STUDY_NAME}-table-{tname}", kind="data", func="stages.scaling.table:run",
            config=TableConfig(name=tname, source=table.source, input=_table_input(table, W), select=table.select,
                               out=parquet, reference_out=reference, metrics=f"{M}/table-{tname}.json"),
            reads=[f"tables.{tname}.source", f"tables.{tname}.select"], resources=res("data")))
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
                    reads=[f"tables.{tname}", f"approaches.{approach}", "bootstrap"], resources=res("fit")))

    stages.append(StageDef(
        name=f"{STUDY_NAME}-report", kind="report", func="stages.scaling.report:run",
        config=ReportConfig(fits=fit_outputs, tables=table_files, sweeps=sweep_outputs, coords=coord_outputs,
                            transfers=transfer_outputs, not_reproducible=dict(spec.not_reproducible),
                            out_dir=ctx.reports),
        resources=res("report")))
    return stages


STUDY = Study(name=STUDY_NAME, spec_model=ScalingSpec, plan=plan)
