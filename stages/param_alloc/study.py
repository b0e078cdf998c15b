"""The param_alloc study: embedding share x GLU expansion at a fixed parameter budget.

DAG: prepare -> tokenize -> gate -> {shapes, lr_find, overfit, phase1 x grid, baseline}
phase1 x grid -> rank -> phase2 x top_k -> eval x top_k ; baseline -> eval ; all -> report.

Phase 2 stages are planned statically (``phase2-top1`` ... ``top<k>``) and read the ranking at
run time, so the DAG is fixed while the choice of configurations is data-driven.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from harness.spec import StudySpec
from harness.study import PlanContext, StageDef, Study, StrictModel
from harness.trainer import EarlyStopConfig
from stages.param_alloc.configs import (
    Allocation, CorpusFiles, EvalSpec, EvalStageConfig, GateConfig, LrFindConfig, ModelSpec,
    OverfitConfig, PrepareConfig, ProfileConfig, RankConfig, ReportConfig, ShapesConfig, TokenizeConfig,
    TokenizerConfig, TrainStageConfig,
)

STUDY_NAME = "param_alloc"
W = f"work/{STUDY_NAME}"
M = f"metrics/{STUDY_NAME}"
P = f"plots/{STUDY_NAME}"


#: an embedding share is a fraction of the budget: strictly between 0 and 1
Share = Annotated[float, Field(gt=0, lt=1)]
#: a GLU expansion factor: d_ff / d_model, strictly positive
Expansion = Annotated[float, Field(gt=0)]


class Grid(StrictModel):
    embed_share: list[Share] = Field(..., min_length=1)
    glu: list[Expansion] = Field(..., min_length=1)

    def points(self) -> list[Allocation]:
        return [Allocation(embed_share=e, glu=g) for e in self.embed_share for g in self.glu]


class TrainSpec(TrainSettings):
    """The spec's ``train:`` section: :class:`TrainSettings` minus ``steps`` and ``seed``.

    Why a subclass and not a second declaration: every trainer setting (and its default) comes
    from ``TrainSettings``, so it cannot drift from the trainer. Two fields are not the spec's to
    set here: ``steps`` follows from each phase's token budget (``phase1.tokens``,
    ``phase2.tokens``) and ``seed`` is the spec's top-level ``seed``; giving either is an error.
    """

    steps: None = None

    @model_validator(mode="after")
    def _not_here(self) -> "TrainSpec":
        given = sorted({"steps", "seed"} & self.model_fields_set)
        if given:
            raise ValueError(f"train: {', '.join(given)} may not be set here: steps follow from the phases' "
                             "`tokens`, the seed is the spec's top-level `seed`")
        return self

    def settings(self, tokens: int, seed: int) -> TrainSettings:
        """The trainer settings of a run of ``tokens`` training tokens."""
        steps = max(1, tokens // (self.batch_size * self.seq_len))
        return TrainSettings.model_validate(
            {**self.model_dump(), "steps": steps, "warmup_steps": min(self.warmup_steps, steps), "seed": seed})


class Phase1Spec(StrictModel):
    tokens: int = Field(..., gt=0)
    early_stop: EarlyStopConfig
    top_k: int = Field(2, ge=1)


class Phase2Spec(StrictModel):
    tokens: int = Field(..., gt=0)


class LrFindSpec(StrictModel):
    lr_min: float = Field(1e-5, gt=0)
    lr_max: float = Field(1.0, gt=0)
    steps: int = Field(60, ge=5)


class OverfitSpec(StrictModel):
    steps: int = Field(100, ge=1)
    #: memorising one batch wants a higher LR than generalising
    lr: float = Field(1e-2, gt=0)
    batch_size: int = Field(4, ge=1)
    max_final_loss: float = Field(0.5, gt=0)


class ParamAllocSpec(StudySpec):
    seed: int = 0
    data: CorpusFiles
    tokenizer: TokenizerConfig
    model: ModelSpec
    grid: Grid
    baseline: Allocation
    train: TrainSpec
    phase1: Phase1Spec
    phase2: Phase2Spec
    lr_find: LrFindSpec = LrFindSpec()
    overfit: OverfitSpec = OverfitSpec()
    eval: EvalSpec = EvalSpec()

    @model_validator(mode="after")
    def _consistent(self) -> "ParamAllocSpec":
        if self.phase1.top_k > len(self.grid.points()):
            raise ValueError(f"phase1.top_k = {self.phase1.top_k} exceeds the {len(self.grid.points())} grid points")
        if self.train.seq_len > self.model.max_seq_len:
            raise ValueError(f"train.seq_len {self.train.seq_len} > model.max_seq_len {self.model.max_seq_len}")
        return self


def _train_config(spec: ParamAllocSpec, tokens: int):
    from harness.trainer import TrainConfig

    t = spec.train
    steps = max(1, tokens // (t.batch_size * t.seq_len))
    return TrainConfig(
        steps=steps, batch_size=t.batch_size, micro_batch_size=t.micro_batch_size, seq_len=t.seq_len,
        lr=t.lr, warmup_steps=min(t.warmup_steps, steps), weight_decay=t.weight_decay, grad_clip=t.grad_clip,
        seed=spec.seed, eval_every=t.eval_every, eval_batches=t.eval_batches,
        checkpoint_every=t.checkpoint_every, precision=t.precision, device=t.device, threads=t.threads,
    )


def _data_deps(spec: ParamAllocSpec) -> list[str]:
    deps = sorted(set(spec.data.files.values()))
    return [f"data/{STUDY_NAME}" if d.startswith(f"data/{STUDY_NAME}/") else d for d in deps]


def plan(spec: ParamAllocSpec, ctx: PlanContext) -> list[StageDef]:
    res = spec.resources_for
    corpus, tokens, gate = f"{W}/corpus", f"{W}/tokens", f"{W}/gate.json"
    trainer_code = ["harness/trainer.py", "stages/param_alloc/common.py", "stages/param_alloc/model.py",
                    "stages/param_alloc/solver.py",
                    "stages/param_alloc/configs.py"]
    data_in = [tokens, gate]
    stages: list[StageDef] = [
        StageDef(name=f"{STUDY_NAME}-prepare", kind="data", func="stages.param_alloc.corpus:run",
                 config=PrepareConfig(data=spec.data, out_dir=corpus), reads=["data"],
                 deps=_data_deps(spec), outs=[corpus], resources=res("data")),
        StageDef(name=f"{STUDY_NAME}-tokenize", kind="data", func="stages.param_alloc.tokenize:run",
                 config=TokenizeConfig(corpus_dir=corpus, tokenizer=spec.tokenizer, out_dir=tokens),
                 reads=["tokenizer"], deps=[corpus], outs=[tokens], resources=res("data")),
        StageDef(name=f"{STUDY_NAME}-gate", kind="gate", func="stages.param_alloc.gate:run",
                 config=GateConfig(corpus_dir=corpus, tokens_dir=tokens, report=gate),
                 deps=[corpus, tokens], outs=[gate], code_deps=["harness/validation.py"], resources=res("gate")),
        StageDef(name=f"{STUDY_NAME}-shapes", kind="solve", func="stages.param_alloc.shapes:run",
                 config=ShapesConfig(grid=spec.grid.points(), baseline=spec.baseline, model=spec.model,
                                     tokens_dir=tokens, out=f"{W}/shapes.json", metrics=f"{M}/shapes.json"),
                 reads=["grid", "baseline", "model"], deps=data_in, outs=[f"{W}/shapes.json"],
                 metrics=[f"{M}/shapes.json"], code_deps=trainer_code, resources=res("solve")),
    ]
    common = dict(model=spec.model, tokens_dir=tokens, gate_report=gate)
    stages.append(StageDef(
        name=f"{STUDY_NAME}-lr_find", kind="train", func="stages.param_alloc.lr_find:run",
        config=LrFindConfig(allocation=spec.baseline, train=_train_config(spec, spec.phase1.tokens),
                            lr_min=spec.lr_find.lr_min, lr_max=spec.lr_find.lr_max, steps=spec.lr_find.steps,
                            metrics=f"{M}/lr_find.json", curve=f"{P}/lr_find.csv", **common),
        reads=["baseline", "model", "train", "seed", "lr_find", "phase1"], deps=data_in,
        metrics=[f"{M}/lr_find.json"], plots=[{f"{P}/lr_find.csv": {"x": "lr", "y": "loss"}}],
        code_deps=trainer_code, resources=res("train")))
    overfit_train = _train_config(spec, spec.phase1.tokens).model_copy(
        update={"batch_size": spec.overfit.batch_size, "micro_batch_size": None, "lr": spec.overfit.lr})
    stages.append(StageDef(
        name=f"{STUDY_NAME}-overfit", kind="train", func="stages.param_alloc.overfit:run",
        config=OverfitConfig(allocation=spec.baseline, train=overfit_train, steps=spec.overfit.steps,
                             max_final_loss=spec.overfit.max_final_loss, metrics=f"{M}/overfit.json", **common),
        reads=["baseline", "model", "train", "seed", "overfit", "phase1"], deps=data_in,
        metrics=[f"{M}/overfit.json"], code_deps=trainer_code, resources=res("train")))

    phase1_metrics = []
    for point in spec.grid.points():
        name = f"{STUDY_NAME}-phase1-{point.tag}"
        metrics = f"{M}/phase1/{point.tag}.json"
        phase1_metrics.append(metrics)
        stages.append(StageDef(
            name=name, kind="train", func="stages.param_alloc.train:run",
            config=TrainStageConfig(allocation=point, train=_train_config(spec, spec.phase1.tokens),
                                    early_stop=spec.phase1.early_stop, out_dir=f"{W}/phase1/{point.tag}",
                                    metrics=metrics, curve=f"{P}/phase1/{point.tag}.csv", **common),
            reads=["grid", "model", "train", "seed", "phase1"], deps=data_in, outs=[f"{W}/phase1/{point.tag}"],
            metrics=[metrics], plots=[{f"{P}/phase1/{point.tag}.csv": {"x": "tokens", "y": "dev_loss"}}],
            code_deps=trainer_code, resources=res("train")))

    ranking = f"{W}/ranking.json"
    stages.append(StageDef(
        name=f"{STUDY_NAME}-rank", kind="rank", func="stages.param_alloc.rank:run",
        config=RankConfig(phase1_metrics=phase1_metrics, top_k=spec.phase1.top_k, out=ranking,
                          metrics=f"{M}/ranking.json"),
        reads=["phase1.top_k"], deps=phase1_metrics, outs=[ranking], metrics=[f"{M}/ranking.json"],
        resources=res("rank")))

    evaluated: list[tuple[str, str]] = []
    phase2_train = _train_config(spec, spec.phase2.tokens)
    runs = [(f"top{r}", None, r) for r in range(1, spec.phase1.top_k + 1)] + [("baseline", spec.baseline, None)]
    for label, allocation, rank in runs:
        out_dir = f"{W}/phase2/{label}"
        metrics = f"{M}/phase2/{label}.json"
        reads = ["model", "train", "seed", "phase2"] + (["baseline"] if allocation else [])
        stages.append(StageDef(
            name=f"{STUDY_NAME}-phase2-{label}", kind="train", func="stages.param_alloc.train:run",
            config=TrainStageConfig(allocation=allocation, ranking_file=None if allocation else ranking,
                                    rank=rank, train=phase2_train, out_dir=out_dir, metrics=metrics,
                                    curve=f"{P}/phase2/{label}.csv", **common),
            reads=reads, deps=data_in + ([] if allocation else [ranking]), outs=[out_dir], metrics=[metrics],
            plots=[{f"{P}/phase2/{label}.csv": {"x": "tokens", "y": "dev_loss"}}],
            code_deps=trainer_code, resources=res("train")))
        eval_metrics, perf = f"{M}/eval/{label}.json", f"{W}/eval/{label}/perf.json"
        evaluated.append((eval_metrics, perf))
        stages.append(StageDef(
            name=f"{STUDY_NAME}-eval-{label}", kind="eval", func="stages.param_alloc.evaluate:run",
            config=EvalStageConfig(model_dir=out_dir, tokens_dir=tokens, eval=spec.eval,
                                   seq_len=spec.train.seq_len, batch_size=spec.train.batch_size,
                                   threads=spec.train.threads, metrics=eval_metrics, perf=perf),
            reads=["eval", "train.seq_len", "train.batch_size", "train.threads"],
            deps=[out_dir, tokens] + sorted({t.path for t in spec.eval.tasks}),
            outs=[f"{W}/eval/{label}"], metrics=[eval_metrics],
            code_deps=["stages/param_alloc/model.py", "stages/param_alloc/tasks.py", "stages/param_alloc/perf.py"],
            resources=res("eval")))

    profile_out = f"{W}/profile/profile.json"
    stages.append(StageDef(
        name=f"{STUDY_NAME}-profile", kind="eval", func="stages.param_alloc.profile:run",
        config=ProfileConfig(shapes=f"{W}/shapes.json", eval=spec.eval, threads=spec.train.threads,
                             out=profile_out),
        reads=["eval", "train.threads"], deps=[f"{W}/shapes.json"], outs=[f"{W}/profile"],
        code_deps=["stages/param_alloc/model.py", "stages/param_alloc/perf.py"], resources=res("eval")))

    report_dir = f"reports/{STUDY_NAME}"
    stages.append(StageDef(
        name=f"{STUDY_NAME}-report", kind="report", func="stages.param_alloc.report:run",
        config=ReportConfig(phase1_metrics=phase1_metrics, profile=profile_out, ranking=ranking,
                            eval_metrics=[m for m, _ in evaluated], eval_perf=[p for _, p in evaluated],
                            shapes=f"{W}/shapes.json", out_dir=report_dir),
        deps=phase1_metrics + [ranking, f"{W}/shapes.json", f"{W}/profile"] + [m for m, _ in evaluated]
        + [f"{W}/eval/{label}" for label, _, _ in runs],
        outs_no_cache=[report_dir], resources=res("report")))
    return stages


STUDY = Study(name=STUDY_NAME, spec_model=ParamAllocSpec, plan=plan)
