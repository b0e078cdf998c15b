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
from harness.trainer import TrainConfig
from stages.mixture_sim.configs import (
    EvalLoss, ChoiceAccuracy, EvaluateStageConfig, ExternalSource, FeatureSpec, GeneratedSource, Regressor,
    ReportStageConfig, RunStageConfig, Source, Split, SplitsStageConfig, SweepStageConfig, TableSchema,
    TableStageConfig, point_id,
)
from stages.mixture_sim.mixtures import sample_mixtures

STUDY_NAME = "mixture_sim"
W = f"work/{STUDY_NAME}"
M = f"metrics/{STUDY_NAME}"
P = f"plots/{STUDY_NAME}"
R = f"reports/{STUDY_NAME}"
DATA_ROOT = "data/mixture_domains"
CODE = "stages/mixture_sim"


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


def _train_config(spec: MixtureSimSpec, src: GeneratedSource) -> TrainConfig:
    t = src.train
    return TrainConfig(
        steps=t.steps, batch_size=t.batch_size, seq_len=t.seq_len, lr=t.lr, min_lr_ratio=t.min_lr_ratio,
        warmup_steps=min(t.warmup_steps, t.steps), weight_decay=t.weight_decay, grad_clip=t.grad_clip,
        seed=spec.seed, eval_every=0, checkpoint_every=t.checkpoint_every, precision=t.precision, device=t.device,
    )


def _data_deps(src: GeneratedSource) -> list[str]:
    """Input paths of the runs; anything inside the embedded data folder is that one folder."""
    paths = list(src.corpora.values())
    for m in src.measures.values():
        if isinstance(m, EvalLoss):
            paths.append(m.corpus)
        elif isinstance(m, ChoiceAccuracy):
            paths.append(m.tasks)
    deps = [DATA_ROOT if p == DATA_ROOT or p.startswith(DATA_ROOT + "/") else p for p in paths]
    return list(dict.fromkeys(deps))


def _run_stages(spec: MixtureSimSpec, src: GeneratedSource) -> tuple[list[StageDef], list[str]]:
    stages, files = [], []
    train = _train_config(spec, src)
    code = [f"{CODE}/lm.py", f"{CODE}/measure.py", f"{CODE}/configs.py", f"{CODE}/tableio.py",
            f"{CODE}/mixtures.py", "harness/trainer.py"]
    for i, mixture in enumerate(sample_mixtures(spec.table.domains, src.mixtures, spec.seed)):
        for shape in src.models:
            run_id = f"m{i:02d}-{shape.name}"
            out = f"{W}/runs/{run_id}.parquet"
            files.append(out)
            stages.append(StageDef(
                name=f"{STUDY_NAME}-run-{run_id}", kind="train", func="stages.mixture_sim.train:run",
                config=RunStageConfig(
                    run_id=run_id, proportions=mixture, corpora=src.corpora, model=shape, train=train,
                    threads=src.train.threads,
                    train_tokens=src.train_tokens, eval_steps=src.eval_steps, eval_tokens=src.eval_tokens,
                    task_items=src.task_items, measures=src.measures, table=spec.table, out=out),
                reads=["seed", "table", "source"], deps=_data_deps(src), outs=[out], code_deps=code,
                resources=spec.resources_for("train")))
    return stages, files


def plan(spec: MixtureSimSpec, ctx: PlanContext) -> list[StageDef]:
    res = spec.resources_for
    table_file, gate_report = f"{W}/table/table.parquet", f"{W}/table/gate.json"
    stages: list[StageDef] = []
    if isinstance(spec.source, ExternalSource):
        table_cfg = TableStageConfig(table=spec.table, source=spec.source, out=table_file, gate_report=gate_report,
                                     metrics=f"{M}/table.json")
        table_deps, table_reads = [spec.source.path], ["table", "source"]
    else:
        stages, run_files = _run_stages(spec, spec.source)
        table_cfg = TableStageConfig(table=spec.table, run_files=run_files, out=table_file, gate_report=gate_report,
                                     metrics=f"{M}/table.json")
        table_deps, table_reads = run_files, ["table"]
    stages.append(StageDef(
        name=f"{STUDY_NAME}-table", kind="table", func="stages.mixture_sim.table:run", config=table_cfg,
        reads=table_reads, deps=table_deps, outs=[table_file, gate_report], metrics=[f"{M}/table.json"],
        code_deps=[f"{CODE}/gate.py", f"{CODE}/tableio.py", f"{CODE}/configs.py", "harness/validation.py"],
        resources=res("table")))

    split_dirs = {s.name: f"{W}/splits/{s.name}" for s in spec.splits}
    stages.append(StageDef(
        name=f"{STUDY_NAME}-splits", kind="split", func="stages.mixture_sim.splits:run",
        config=SplitsStageConfig(table=spec.table, table_file=table_file, splits=spec.splits, seed=spec.seed,
                                 out_dirs=split_dirs, metrics=f"{M}/splits.json"),
        reads=["table", "splits", "seed"], deps=[table_file], outs=list(split_dirs.values()),
        metrics=[f"{M}/splits.json"],
        code_deps=[f"{CODE}/tableio.py", f"{CODE}/configs.py", "harness/validation.py"], resources=res("split")))

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
                reads=["table", "features", "regressors", "cv_folds", "seed"], deps=list(split_dirs.values()),
                outs=[out_dir], resources=res("fit"),
                code_deps=[f"{CODE}/regressors.py", f"{CODE}/mlp.py", f"{CODE}/splits.py", f"{CODE}/tableio.py",
                           f"{CODE}/configs.py"]))

    evaluate_dir = f"{W}/evaluate"
    pred_plot, score_plot = f"{P}/pred_vs_true.csv", f"{P}/r2.csv"
    stages.append(StageDef(
        name=f"{STUDY_NAME}-evaluate", kind="evaluate", func="stages.mixture_sim.evaluate:run",
        config=EvaluateStageConfig(table=spec.table, split_dirs=split_dirs, sweeps=sweeps, out_dir=evaluate_dir,
                                   metrics=f"{M}/evaluate.json", pred_plot=pred_plot, score_plot=score_plot),
        reads=["table", "splits", "regressors"],
        deps=list(split_dirs.values()) + [d for dirs in sweeps.values() for d in dirs],
        outs=[evaluate_dir], metrics=[f"{M}/evaluate.json"],
        plots=[{pred_plot: {"x": "true", "y": "pred", "template": "scatter"}},
               {score_plot: {"x": "r2", "y": "target", "template": "bar_horizontal"}}],
        code_deps=[f"{CODE}/scoring.py", f"{CODE}/splits.py", f"{CODE}/sweep.py", f"{CODE}/tableio.py",
                   f"{CODE}/configs.py"],
        resources=res("evaluate")))

    stages.append(StageDef(
        name=f"{STUDY_NAME}-report", kind="report", func="stages.mixture_sim.report:run",
        config=ReportStageConfig(table=spec.table, table_file=table_file, table_metrics=f"{M}/table.json",
                                 splits_metrics=f"{M}/splits.json", evaluate_dir=evaluate_dir,
                                 evaluate_metrics=f"{M}/evaluate.json", out_dir=R),
        reads=["table"], deps=[table_file, f"{M}/table.json", f"{M}/splits.json", evaluate_dir,
                               f"{M}/evaluate.json"],
        outs_no_cache=[R], code_deps=[f"{CODE}/figures.py", f"{CODE}/configs.py"], resources=res("report")))
    return stages


STUDY = Study(name=STUDY_NAME, spec_model=MixtureSimSpec, plan=plan)
