"""The mixture_sim study: a regression simulator of LM training outcomes from the data mixture.

One spec, several outcome tables (``tables:``: name -> table study), each with its own columns,
source, splits, regressors, simulator and mixture search. DAG per table ``<t>`` (generated source)::

    run-m<i>-<size> x (mixtures x sizes) -> <t>-table (GE gate) -> <t>-splits (GE-checked)
        -> <t>-sweep-<regressor>-<point> x grid points -> <t>-evaluate -> <t>-simulator
        -> <t>-search -> <t>-report

With an external source, ``table`` reads the files instead of the runs. Column names, domains
and targets come from the table's ``table:``; stage code never names a column.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from harness.spec import StudySpec
from harness.study import PlanContext, StageDef, Study
from harness.schema import StrictModel
from harness.settings import TrainSettings
from stages.mixture_sim.configs import (
    NAME_RE, EvaluateStageConfig, ExternalSource, FeatureSpec, GeneratedSource, ReferenceScores, Regressor,
    ReportStageConfig, RunStageConfig, SearchSpec, SearchStageConfig, SimulatorSpec, SimulatorStageConfig, Source,
    Split, SplitsStageConfig, SweepStageConfig, TableSchema, TableStageConfig, point_id,
)
from stages.mixture_sim.mixtures import sample_mixtures

STUDY_NAME = "mixture_sim"
#: split kinds that need a column the schema may not have
_NEEDS = {"size_at_least": "size", "larger_than": "size", "step_above": "step", "subset": "subset"}


class TableStudy(StrictModel):
    """Everything about one outcome table: its columns, where it comes from, how it is tested."""

    title: str = ""
    table: TableSchema
    source: Source
    splits: list[Split] = Field(..., min_length=1)
    features: FeatureSpec = FeatureSpec()
    regressors: list[Regressor] = Field(..., min_length=1)
    #: folds on each split's training side, grouped the way the split holds out, to pick grid points
    cv_folds: int = Field(3, ge=2)
    simulator: SimulatorSpec = SimulatorSpec()
    search: SearchSpec
    reference: ReferenceScores | None = None

    @model_validator(mode="after")
    def _consistent(self) -> "TableStudy":
        problems = []
        unknown = sorted(set(self.features.log) - set(self.table.feature_columns))
        if unknown:
            problems.append(f"features.log names unknown feature columns {unknown}; "
                            f"features are {self.table.feature_columns}")
        for what, names in (("split", [s.name for s in self.splits]), ("regressor", [r.label for r in self.regressors])):
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                problems.append(f"{what} names must be unique: {dupes}")
        for split in self.splits:
            need = _NEEDS.get(split.kind)
            if need and getattr(self.table, need) is None:
                problems.append(f"split `{split.name}` ({split.kind}) needs the table's `{need}` column; "
                                f"table.{need} is null")
        split_names = [s.name for s in self.splits]
        if self.simulator.split is not None and self.simulator.split not in split_names:
            problems.append(f"simulator.split `{self.simulator.split}` is not a split; splits are {split_names}")
        if self.search.target not in self.table.target_names:
            problems.append(f"search.target `{self.search.target}` is not a target; targets are "
                            f"{self.table.target_names}")
        if set(self.search.at) != set(self.table.context_columns):
            problems.append(f"search.at must give exactly the non-mixture features {self.table.context_columns}, "
                            f"got {sorted(self.search.at)}")
        if self.reference is not None:
            if self.reference.split not in split_names:
                problems.append(f"reference.split `{self.reference.split}` is not a split; splits are {split_names}")
            extra = sorted(set(self.reference.spearman_percent) - set(self.table.target_names))
            if extra:
                problems.append(f"reference.spearman_percent names unknown targets {extra}")
        if isinstance(self.source, ExternalSource) and self.source.parts and self.table.subset is None:
            problems.append("an external source with `parts` needs table.subset: the column naming each row's part")
        if isinstance(self.source, GeneratedSource):
            src = self.source
            if set(src.corpora) != set(self.table.domains):
                problems.append(f"source.corpora keys {sorted(src.corpora)} must be the table's domains "
                                f"{sorted(self.table.domains)}")
            if set(src.measures) != set(self.table.target_names):
                missing = sorted(set(self.table.target_names) - set(src.measures))
                extra = sorted(set(src.measures) - set(self.table.target_names))
                problems.append(f"source.measures must measure exactly the table's targets; missing {missing}, "
                                f"not targets {extra}")
            if self.table.size is None or self.table.step is None or self.table.subset is not None:
                problems.append("a generated table has size and step columns and no subset column")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def simulator_split(self) -> str:
        return self.simulator.split or self.splits[0].name


class MixtureSimSpec(StudySpec):
    seed: int = 0
    #: table name (in stage names, folders and ``harness simulate --table``) -> its study
    tables: dict[str, TableStudy] = Field(..., min_length=1)

    @model_validator(mode="after")
    def _names(self) -> "MixtureSimSpec":
        import re

        bad = sorted(n for n in self.tables if not re.match(NAME_RE, n))
        if bad:
            raise ValueError(f"table names must match {NAME_RE}: {bad}")
        return self


def _train_settings(spec: MixtureSimSpec, src: GeneratedSource) -> TrainSettings:
    """The spec's trainer settings, seeded by the study's seed; warmup never longer than the run.

    ``eval_every`` stays 0: the runs have no dev set, rows are measured at ``eval_steps``.
    """
    t = src.train
    return t.model_copy(update={"seed": spec.seed, "eval_every": 0, "warmup_steps": min(t.warmup_steps, t.steps)})


def _run_stages(spec: MixtureSimSpec, name: str, ts: TableStudy, src: GeneratedSource, work: str,
                res) -> tuple[list[StageDef], list[str]]:
    stages, files = [], []
    train = _train_settings(spec, src)
    train_texts = {domain: f"{folder}/train.txt" for domain, folder in src.corpora.items()}
    for i, mixture in enumerate(sample_mixtures(ts.table.domains, src.mixtures, spec.seed)):
        for shape in src.models:
            run_id = f"m{i:02d}-{shape.name}"
            out = f"{work}/runs/{run_id}.parquet"
            files.append(out)
            stages.append(StageDef(
                name=f"{STUDY_NAME}-{name}-run-{run_id}", kind="train", func="stages.mixture_sim.train:run",
                config=RunStageConfig(
                    run_id=run_id, proportions=mixture, train_texts=train_texts, model=shape, train=train,
                    train_tokens=src.train_tokens, eval_steps=src.eval_steps, eval_tokens=src.eval_tokens,
                    task_items=src.task_items, measures=src.measures, table=ts.table, out=out),
                reads=["seed", f"tables.{name}.table", f"tables.{name}.source"], resources=res("train")))
    return stages, files


def plan(spec: MixtureSimSpec, ctx: PlanContext) -> list[StageDef]:
    stages: list[StageDef] = []
    for name, ts in spec.tables.items():
        stages += plan_table(spec, name, ts, ctx)
    return stages


def plan_table(spec: MixtureSimSpec, name: str, ts: TableStudy, ctx: PlanContext) -> list[StageDef]:
    res = spec.resources_for
    W, M, P = f"{ctx.work}/{name}", f"{ctx.metrics}/{name}", f"{ctx.plots}/{name}"
    R = f"{ctx.reports}/{name}"
    at = f"tables.{name}"
    prefix = f"{STUDY_NAME}-{name}"
    table_file, gate_report, table_metrics = f"{W}/table/table.parquet", f"{W}/table/gate.json", f"{M}/table.json"
    stages: list[StageDef] = []
    if isinstance(ts.source, ExternalSource):
        table_cfg = TableStageConfig(table=ts.table, source=ts.source, out=table_file, gate_report=gate_report,
                                     metrics=table_metrics)
        table_reads = [f"{at}.table", f"{at}.source"]
    else:
        stages, run_files = _run_stages(spec, name, ts, ts.source, W, res)
        table_cfg = TableStageConfig(table=ts.table, run_files=run_files, out=table_file, gate_report=gate_report,
                                     metrics=table_metrics)
        table_reads = [f"{at}.table"]
    stages.append(StageDef(name=f"{prefix}-table", kind="table", func="stages.mixture_sim.table:run",
                           config=table_cfg, reads=table_reads, resources=res("table")))

    split_dirs = {s.name: f"{W}/splits/{s.name}" for s in ts.splits}
    splits_metrics = f"{M}/splits.json"
    stages.append(StageDef(
        name=f"{prefix}-splits", kind="split", func="stages.mixture_sim.splits:run",
        config=SplitsStageConfig(table=ts.table, table_file=table_file, splits=ts.splits, seed=spec.seed,
                                 out_dirs=split_dirs, metrics=splits_metrics),
        reads=[f"{at}.table", f"{at}.splits", "seed"], resources=res("split")))

    sweeps: dict[str, list[str]] = {}
    for reg in ts.regressors:
        sweeps[reg.label] = []
        for params in reg.grid.points():
            pid = point_id(params)
            out_dir = f"{W}/sweep/{reg.label}-{pid}"
            sweeps[reg.label].append(out_dir)
            stages.append(StageDef(
                name=f"{prefix}-sweep-{reg.label}-{pid}", kind="fit", func="stages.mixture_sim.sweep:run",
                config=SweepStageConfig(regressor=reg.label, kind=reg.kind, params=params, table=ts.table,
                                        features=ts.features, split_dirs=split_dirs, cv_folds=ts.cv_folds,
                                        seed=spec.seed, out_dir=out_dir),
                reads=[f"{at}.table", f"{at}.features", f"{at}.regressors", f"{at}.cv_folds", "seed"],
                resources=res("fit")))

    evaluate_dir, evaluate_metrics = f"{W}/evaluate", f"{M}/evaluate.json"
    stages.append(StageDef(
        name=f"{prefix}-evaluate", kind="evaluate", func="stages.mixture_sim.evaluate:run",
        config=EvaluateStageConfig(table=ts.table, split_dirs=split_dirs, sweeps=sweeps, out_dir=evaluate_dir,
                                   metrics=evaluate_metrics, pred_plot=f"{P}/pred_vs_true.csv",
                                   score_plot=f"{P}/r2.csv"),
        reads=[f"{at}.table", f"{at}.splits", f"{at}.regressors"], resources=res("evaluate")))

    sim_split = ts.simulator_split
    simulator_dir, simulator_metrics = f"{W}/simulator", f"{M}/simulator.json"
    stages.append(StageDef(
        name=f"{prefix}-simulator", kind="fit", func="stages.mixture_sim.simulator:run",
        config=SimulatorStageConfig(study=STUDY_NAME, table_name=name, table=ts.table, features=ts.features,
                                    split=sim_split, split_dir=split_dirs[sim_split], evaluate_dir=evaluate_dir,
                                    members=ts.simulator.members, seed=spec.seed, out_dir=simulator_dir,
                                    metrics=simulator_metrics),
        reads=[f"{at}.table", f"{at}.features", f"{at}.simulator", "seed"], resources=res("fit")))

    search_dir, search_metrics = f"{W}/search", f"{M}/search.json"
    stages.append(StageDef(
        name=f"{prefix}-search", kind="search", func="stages.mixture_sim.search:run",
        config=SearchStageConfig(table=ts.table, search=ts.search, table_file=table_file,
                                 simulator_dir=simulator_dir, seed=spec.seed, out_dir=search_dir,
                                 metrics=search_metrics),
        reads=[f"{at}.table", f"{at}.search", "seed"], resources=res("search")))

    stages.append(StageDef(
        name=f"{prefix}-report", kind="report", func="stages.mixture_sim.report:run",
        config=ReportStageConfig(table_name=name, title=ts.title or name, table=ts.table, table_file=table_file,
                                 table_metrics=table_metrics, splits_metrics=splits_metrics,
                                 evaluate_dir=evaluate_dir, evaluate_metrics=evaluate_metrics,
                                 simulator_metrics=simulator_metrics, search_dir=search_dir,
                                 reference=ts.reference, not_reproducible=dict(spec.not_reproducible), out_dir=R),
        reads=[f"{at}.table", f"{at}.title", f"{at}.reference"], resources=res("report")))
    return stages


STUDY = Study(name=STUDY_NAME, spec_model=MixtureSimSpec, plan=plan,
              commands={"simulate": "stages.mixture_sim.simulate:main"})
