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
from harness.settings import EarlyStopConfig, TrainSettings
from stages.param_alloc.configs import (
    Allocation, CorpusFiles, LrSweep, EvalSpec, EvalStageConfig, GateConfig, LrFindConfig, ModelSpec,
    OverfitConfig, PrepareConfig, ProfileConfig, RankConfig, ReportConfig, ShapesConfig, TokenizeConfig,
    TokenizerConfig, TrainStageConfig,
)

STUDY_NAME = "param_alloc"


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
    #: phase-2 slots (winners)
    top_k: int = Field(2, ge=1)
    #: seeds per point: spec seed, seed + 1, ...; the ranking uses their mean and t interval
    seeds: int = Field(1, ge=1)
    #: a per-point LR sweep (None: every point trains at ``train.lr``)
    lr_sweep: LrSweep | None = None
    #: give the first phase-2 slot to the per-axis winner (best share x best GLU)
    axis_winner: bool = False


class Phase2Spec(StrictModel):
    tokens: int = Field(..., gt=0)
    seeds: int = Field(1, ge=1)
    #: phase 2 trains longer, so it may overfit: the same rule as phase 1 (None: no early stop)
    early_stop: EarlyStopConfig | None = None
    #: also train (and evaluate) the knob-set baseline allocation; off where it is a grid point
    #: anyway and the budget is better spent on the winners
    baseline: bool = True


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
        tags = [p.tag for p in self.grid.points()]
        if len(set(tags)) != len(tags):
            raise ValueError(f"grid: repeated points {sorted({t for t in tags if tags.count(t) > 1})}")
        if self.phase1.top_k > len(self.grid.points()):
            raise ValueError(f"phase1.top_k = {self.phase1.top_k} exceeds the {len(self.grid.points())} grid points")
        if self.train.seq_len > self.model.max_seq_len:
            raise ValueError(f"train.seq_len {self.train.seq_len} > model.max_seq_len {self.model.max_seq_len}")
        return self


def plan(spec: ParamAllocSpec, ctx: PlanContext) -> list[StageDef]:
    res = spec.resources_for
    W, M, P = ctx.work, ctx.metrics, ctx.plots
    corpus, tokens, gate = f"{W}/corpus", f"{W}/tokens", f"{W}/gate.json"
    shapes = f"{W}/shapes.json"
    stages: list[StageDef] = [
        StageDef(name=f"{STUDY_NAME}-prepare", kind="data", func="stages.param_alloc.corpus:run",
                 config=PrepareConfig(data=spec.data, out_dir=corpus), reads=["data"], resources=res("data")),
        StageDef(name=f"{STUDY_NAME}-tokenize", kind="data", func="stages.param_alloc.tokenize:run",
                 config=TokenizeConfig(corpus_dir=corpus, tokenizer=spec.tokenizer, out_dir=tokens),
                 reads=["tokenizer"], resources=res("data")),
        StageDef(name=f"{STUDY_NAME}-gate", kind="gate", func="stages.param_alloc.gate:run",
                 config=GateConfig(corpus_dir=corpus, tokens_dir=tokens, report=gate), resources=res("gate")),
        StageDef(name=f"{STUDY_NAME}-shapes", kind="solve", func="stages.param_alloc.shapes:run",
                 config=ShapesConfig(grid=spec.grid.points(), baseline=spec.baseline, model=spec.model,
                                     tokens_dir=tokens, gate_report=gate, out=shapes, metrics=f"{M}/shapes.json"),
                 reads=["grid", "baseline", "model"], resources=res("solve")),
    ]
    common = dict(model=spec.model, tokens_dir=tokens, gate_report=gate)

    def seeds(n: int) -> list[int]:
        return [spec.seed + i for i in range(n)]

    phase1_train = spec.train.settings(spec.phase1.tokens, spec.seed)
    stages.append(StageDef(
        name=f"{STUDY_NAME}-lr_find", kind="train", func="stages.param_alloc.lr_find:run",
        config=LrFindConfig(allocation=spec.baseline, train=phase1_train,
                            lr_min=spec.lr_find.lr_min, lr_max=spec.lr_find.lr_max, steps=spec.lr_find.steps,
                            metrics=f"{M}/lr_find.json", curve=f"{P}/lr_find.csv", **common),
        reads=["baseline", "model", "train", "seed", "lr_find", "phase1"], resources=res("train")))
    overfit_train = phase1_train.model_copy(
        update={"batch_size": spec.overfit.batch_size, "micro_batch_size": None, "lr": spec.overfit.lr})
    stages.append(StageDef(
        name=f"{STUDY_NAME}-overfit", kind="train", func="stages.param_alloc.overfit:run",
        config=OverfitConfig(allocation=spec.baseline, train=overfit_train, steps=spec.overfit.steps,
                             max_final_loss=spec.overfit.max_final_loss, metrics=f"{M}/overfit.json", **common),
        reads=["baseline", "model", "train", "seed", "overfit", "phase1"], resources=res("train")))

    phase1_metrics = []
    for point in spec.grid.points():
        metrics = f"{M}/phase1/{point.tag}.json"
        phase1_metrics.append(metrics)
        stages.append(StageDef(
            name=f"{STUDY_NAME}-phase1-{point.tag}", kind="train", func="stages.param_alloc.train:run",
            config=TrainStageConfig(allocation=point, train=phase1_train, early_stop=spec.phase1.early_stop,
                                    seeds=seeds(spec.phase1.seeds), lr_sweep=spec.phase1.lr_sweep,
                                    out_dir=f"{W}/phase1/{point.tag}", metrics=metrics,
                                    curve=f"{P}/phase1/{point.tag}.csv", **common),
            reads=["grid", "model", "train", "seed", "phase1"], resources=res("train")))

    ranking = f"{W}/ranking.json"
    stages.append(StageDef(
        name=f"{STUDY_NAME}-rank", kind="rank", func="stages.param_alloc.rank:run",
        config=RankConfig(phase1_metrics=phase1_metrics, top_k=spec.phase1.top_k, out=ranking,
                          axis_winner=spec.phase1.axis_winner, metrics=f"{M}/ranking.json"),
        reads=["phase1.top_k", "phase1.axis_winner"], resources=res("rank")))

    eval_metrics: list[str] = []
    eval_dirs: list[str] = []
    phase2_metrics: list[str] = []
    phase2_train = spec.train.settings(spec.phase2.tokens, spec.seed)
    runs = [(f"top{r}", None, r) for r in range(1, spec.phase1.top_k + 1)]
    runs += [("baseline", spec.baseline, None)] if spec.phase2.baseline else []
    for label, allocation, rank in runs:
        out_dir = f"{W}/phase2/{label}"
        reads = ["model", "train", "seed", "phase2"] + (["baseline"] if allocation else [])
        phase2_metrics.append(f"{M}/phase2/{label}.json")
        stages.append(StageDef(
            name=f"{STUDY_NAME}-phase2-{label}", kind="train", func="stages.param_alloc.train:run",
            config=TrainStageConfig(allocation=allocation, ranking_file=None if allocation else ranking,
                                    rank=rank, train=phase2_train, out_dir=out_dir,
                                    seeds=seeds(spec.phase2.seeds), early_stop=spec.phase2.early_stop,
                                    metrics=phase2_metrics[-1], curve=f"{P}/phase2/{label}.csv", **common),
            reads=reads, resources=res("train")))
        eval_metrics.append(f"{M}/eval/{label}.json")
        eval_dirs.append(f"{W}/eval/{label}")
        stages.append(StageDef(
            name=f"{STUDY_NAME}-eval-{label}", kind="eval", func="stages.param_alloc.evaluate:run",
            config=EvalStageConfig(model_dir=out_dir, tokens_dir=tokens, eval=spec.eval,
                                   seq_len=spec.train.seq_len, batch_size=spec.train.batch_size,
                                   threads=spec.train.threads, metrics=eval_metrics[-1], out_dir=eval_dirs[-1]),
            reads=["eval", "train.seq_len", "train.batch_size", "train.threads"], resources=res("eval")))

    profile_dir = f"{W}/profile"
    stages.append(StageDef(
        name=f"{STUDY_NAME}-profile", kind="eval", func="stages.param_alloc.profile:run",
        # the profile measures speed only: no task files (they would be deps it never reads)
        config=ProfileConfig(shapes=shapes, eval=spec.eval.model_copy(update={"tasks": []}),
                             threads=spec.train.threads, batch_size=spec.train.batch_size,
                             seq_len=spec.train.seq_len, out_dir=profile_dir),
        reads=["eval", "train.threads", "train.batch_size", "train.seq_len"], resources=res("eval")))

    stages.append(StageDef(
        name=f"{STUDY_NAME}-report", kind="report", func="stages.param_alloc.report:run",
        config=ReportConfig(phase1_metrics=phase1_metrics, profile_dir=profile_dir, ranking=ranking,
                            eval_metrics=eval_metrics, phase2_metrics=phase2_metrics, eval_dirs=eval_dirs, shapes=shapes, out_dir=ctx.reports),
        resources=res("report")))
    return stages


STUDY = Study(name=STUDY_NAME, spec_model=ParamAllocSpec, plan=plan)
