"""The mixture_sim study: a regression simulator of LM training outcomes from the data mixture.

DAG (generated source)::

    run-m<i>-<size> x (mixtures x sizes) -> table (GE gate) -> splits (GE-checked)
        -> sweep-<regressor>-<point> x grid points -> evaluate -> report

With an external source, ``table`` reads the file instead of the runs. Column names, domains
and targets come from ``table:`` in the spec; stage code never names a column.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from harness.spec import StudySpec
from harness.study import PlanContext, StageDef, Study
from harness.trainer import TrainSettings
from stages.mixture_sim.configs import (
    EvaluateStageConfig, ExternalSource, FeatureSpec, GeneratedSource, Regressor, ReportStageConfig, RunStageConfig,
    Source, Split, SplitsStageConfig, SweepStageConfig, TableSchema, TableStageConfig, point_id,
)
from stages.mixture_sim.mixtures import sample_mixtures

STUDY_NAME = "mixture_sim"


class MixtureSimSpec(StudySpec):
    seed: int = 0
    table: TableSchema
    source: Source
    splits: list[Split] = Field(..., min_length=1)
    features: FeatureSpec = FeatureSpec()
    regressors: list[Regressor] = Field(..., min_length=1)
    #: grouped (by run) folds on each split's training side, to pick grid points
    cv_folds: int = Field(3, ge=2)

    @model_validator(mode="after")
    def _consistent(self) -> "MixtureSimSpec":
        problems = []
        unknown = sorted(set(self.features.log) - set(self.table.feature_columns))
        if unknown:
            problems.append(f"features.log names unknown feature columns {unknown}; "
                            f"features are {self.table.feature_columns}")
        for what, names in (("split", [s.name for s in self.splits]), ("regressor", [r.label for r in self.regressors])):
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                problems.append(f"{what} names must be unique: {dupes}")
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
        if problems:
            raise ValueError("; ".join(problems))
        return self


def _train_settings(spec: MixtureSimSpec, src: GeneratedSource) -> TrainSettings:
    """The spec's trainer settings, seeded by the study's seed; warmup never longer than the run.

    ``eval_every`` stays 0: the runs have no dev set, rows are measured at ``eval_steps``.
    """
    t = src.train
    return t.model_copy(update={"seed": spec.seed, "eval_every": 0, "warmup_steps": min(t.warmup_steps, t.steps)})


def _run_stages(spec: MixtureSimSpec, src: GeneratedSource, ctx: PlanContext) -> tuple[list[StageDef], list[str]]:
    stages, files = [], []
    train = _train_settings(spec, src)
    train_texts = {domain: f"{folder}/train.txt" for domain, folder in src.corpora.items()}
    for i, mixture in enumerate(sample_mixtures(spec.table.domains, src.mixtures, spec.seed)):
        for shape in src.models:
            run_id = f"m{i:02d}-{shape.name}"
            out = f"{ctx.work}/runs/{run_id}.parquet"
            files.append(out)
            stages.append(StageDef(
                name=f"{STUDY_NAME}-run-{run_id}", kind="train", func="stages.mixture_sim.train:run",
                config=RunStageConfig(
                    run_id=run_id, proportions=mixture, train_texts=train_texts, model=shape, train=train,
                    train_tokens=src.train_tokens, eval_steps=src.eval_steps, eval_tokens=src.eval_tokens,
                    task_items=src.task_items, measures=src.measures, table=spec.table, out=out),
                reads=["seed", "table", "source"], resources=spec.resources_for("train")))
    return stages, files


def plan(spec: MixtureSimSpec, ctx: PlanContext) -> list[StageDef]:
    res = spec.resources_for
    W, M, P, R = ctx.work, ctx.metrics, ctx.plots, ctx.reports
    table_file, gate_report, table_metrics = f"{W}/table/table.parquet", f"{W}/table/gate.json", f"{M}/table.json"
    stages: list[StageDef] = []
    if isinstance(spec.source, ExternalSource):
        table_cfg = TableStageConfig(table=spec.table, source=spec.source, out=table_file, gate_report=gate_report,
                                     metrics=table_metrics)
        table_reads = ["table", "source"]
    else:
        stages, run_files = _run_stages(spec, spec.source, ctx)
        table_cfg = TableStageConfig(table=spec.table, run_files=run_files, out=table_file, gate_report=gate_report,
                                     metrics=table_metrics)
        table_reads = ["table"]
    stages.append(StageDef(name=f"{STUDY_NAME}-table", kind="table", func="stages.mixture_sim.table:run",
                           config=table_cfg, reads=table_reads, resources=res("table")))

    split_dirs = {s.name: f"{W}/splits/{s.name}" for s in spec.splits}
    splits_metrics = f"{M}/splits.json"
    stages.append(StageDef(
        name=f"{STUDY_NAME}-splits", kind="split", func="stages.mixture_sim.splits:run",
        config=SplitsStageConfig(table=spec.table, table_file=table_file, splits=spec.splits, seed=spec.seed,
                                 out_dirs=split_dirs, metrics=splits_metrics),
        reads=["table", "splits", "seed"], resources=res("split")))

    sweeps: dict[str, list[str]] = {}
    for reg in spec.regressors:
        sweeps[reg.label] = []
        for params in reg.grid.points():
            pid = point_id(params)
            out_dir = f"{W}/sweep/{reg.label}-{pid}"
            sweeps[reg.label].append(out_dir)
            stages.append(StageDef(
                name=f"{STUDY_NAME}-sweep-{reg.label}-{pid}", kind="fit", func="stages.mixture_sim.sweep:run",
                config=SweepStageConfig(regressor=reg.label, kind=reg.kind, params=params, table=spec.table,
                                        features=spec.features, split_dirs=split_dirs, cv_folds=spec.cv_folds,
                                        seed=spec.seed, out_dir=out_dir),
                reads=["table", "features", "regressors", "cv_folds", "seed"], resources=res("fit")))

    evaluate_dir, evaluate_metrics = f"{W}/evaluate", f"{M}/evaluate.json"
    stages.append(StageDef(
        name=f"{STUDY_NAME}-evaluate", kind="evaluate", func="stages.mixture_sim.evaluate:run",
        config=EvaluateStageConfig(table=spec.table, split_dirs=split_dirs, sweeps=sweeps, out_dir=evaluate_dir,
                                   metrics=evaluate_metrics, pred_plot=f"{P}/pred_vs_true.csv",
                                   score_plot=f"{P}/r2.csv"),
        reads=["table", "splits", "regressors"], resources=res("evaluate")))

    stages.append(StageDef(
        name=f"{STUDY_NAME}-report", kind="report", func="stages.mixture_sim.report:run",
        config=ReportStageConfig(table=spec.table, table_file=table_file, table_metrics=table_metrics,
                                 splits_metrics=splits_metrics, evaluate_dir=evaluate_dir,
                                 evaluate_metrics=evaluate_metrics, out_dir=R),
        reads=["table"], resources=res("report")))
    return stages


STUDY = Study(name=STUDY_NAME, spec_model=MixtureSimSpec, plan=plan)
