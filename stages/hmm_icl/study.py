"""The hmm_icl study: HMMs fitted to TinyStories, synthetic corpora, a Llama, ICL vs the optimum.

DAG, per grid point K x H x L (one stage each, so DVC caches every HMM separately)::

    corpus-k{K}-l{L} -> fit-{tag} -> eval-{tag}
                              \\-> sample-{tag} -> train-{tag} -> icl-{tag}   (synthetic points only)
    all metrics / curves -> report

Corpus stages are shared by the grid points with the same (K, L). The synthetic corpus, the
Llama and the ICL measurement run only for ``synthetic.points`` (default: every grid point),
because in ``full`` each of them costs GPU-hours.
"""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from harness.spec import StudySpec
from harness.study import PlanContext, StageDef, Study, StrictModel
from stages.hmm_icl.configs import (
    CorpusConfig, CorpusSource, EmSpec, EvalConfig, EvalSpec, FitConfig, GridPoint, IclConfig, IclSpec, LlamaSpec,
    LmTrainConfig, LmTrainSpec, ReportConfig, SampleConfig, SynthSpec,
)

STUDY_NAME = "hmm_icl"
W = f"work/{STUDY_NAME}"
M = f"metrics/{STUDY_NAME}"
P = f"plots/{STUDY_NAME}"
CODE = "stages/hmm_icl"


class Grid(StrictModel):
    """Emissions K x hidden states H x sequence length L; every combination is one HMM."""

    emissions: list[int] = Field(..., min_length=1)
    hidden: list[int] = Field(..., min_length=1)
    seq_len: list[int] = Field(..., min_length=1)

    @field_validator("emissions", "hidden", "seq_len")
    @classmethod
    def _unique(cls, values: list[int]) -> list[int]:
        if len(set(values)) != len(values):
            raise ValueError(f"values must be distinct, got {values}")
        return values

    def points(self) -> list[GridPoint]:
        return [GridPoint(emissions=k, hidden=h, seq_len=length)
                for k in self.emissions for h in self.hidden for length in self.seq_len]


class LmSpec(StrictModel):
    model: LlamaSpec
    train: LmTrainSpec


class HmmIclSpec(StudySpec):
    seed: int = 0
    corpus: CorpusSource
    grid: Grid
    fit: EmSpec
    evaluate: EvalSpec = EvalSpec()
    synthetic: SynthSpec
    lm: LmSpec
    icl: IclSpec = IclSpec()

    @model_validator(mode="after")
    def _consistent(self) -> "HmmIclSpec":
        tags = {p.tag for p in self.grid.points()}
        for i, point in enumerate(self.synthetic.points or []):
            if point.tag not in tags:
                raise ValueError(f"synthetic.points[{i}] ({point.tag}) is not a point of the grid")
        return self

    def synthetic_points(self) -> list[GridPoint]:
        return self.synthetic.points if self.synthetic.points is not None else self.grid.points()


def _corpus_deps(path: str) -> list[str]:
    """The embedded data is tracked as a directory (data.dvc); other corpora by their own path."""
    parts = path.split("/")
    if len(parts) > 2 and parts[0] == "data":
        return ["/".join(parts[:2])]
    return [path]


def _train_config(spec: HmmIclSpec, point: GridPoint):
    from harness.trainer import TrainConfig

    t = spec.lm.train
    return TrainConfig(
        steps=t.steps, batch_size=t.batch_size, micro_batch_size=t.micro_batch_size, seq_len=point.seq_len + 1,
        lr=t.lr, min_lr_ratio=t.min_lr_ratio, warmup_steps=min(t.warmup_steps, t.steps), weight_decay=t.weight_decay,
        grad_clip=t.grad_clip, seed=spec.seed, eval_every=t.eval_every, eval_batches=t.eval_batches,
        checkpoint_every=t.checkpoint_every, precision=t.precision, device=t.device,
    )


def plan(spec: HmmIclSpec, ctx: PlanContext) -> list[StageDef]:
    res = spec.resources_for
    stages: list[StageDef] = []
    hmm_code = [f"{CODE}/configs.py", f"{CODE}/hmm.py", f"{CODE}/forward.py"]

    corpus_dirs: dict[str, str] = {}
    for point in spec.grid.points():
        if point.corpus_tag in corpus_dirs:
            continue
        out = f"{W}/corpus/{point.corpus_tag}"
        corpus_dirs[point.corpus_tag] = out
        stages.append(StageDef(
            name=f"{STUDY_NAME}-corpus-{point.corpus_tag}", kind="data", func="stages.hmm_icl.corpus:run",
            config=CorpusConfig(source=spec.corpus, emissions=point.emissions, seq_len=point.seq_len, out_dir=out,
                                metrics=f"{M}/corpus/{point.corpus_tag}.json"),
            reads=["corpus", "grid"], deps=_corpus_deps(spec.corpus.path), outs=[out],
            metrics=[f"{M}/corpus/{point.corpus_tag}.json"],
            code_deps=[f"{CODE}/configs.py", f"{CODE}/text.py", f"{CODE}/gates.py", "harness/validation.py"],
            resources=res("data")))

    fit_metrics, fit_histories, eval_metrics = [], [], []
    for point in spec.grid.points():
        tag, corpus = point.tag, corpus_dirs[point.corpus_tag]
        hmm_dir = f"{W}/hmm/{tag}"
        fit_metrics.append(f"{M}/fit/{tag}.json")
        fit_histories.append(f"{P}/fit/{tag}.csv")
        stages.append(StageDef(
            name=f"{STUDY_NAME}-fit-{tag}", kind="fit", func="stages.hmm_icl.fit:run",
            config=FitConfig(point=point, em=spec.fit, seed=spec.seed, corpus_dir=corpus, out_dir=hmm_dir,
                             metrics=fit_metrics[-1], history=fit_histories[-1]),
            reads=["grid", "fit", "seed"], deps=[corpus], outs=[hmm_dir], metrics=[fit_metrics[-1]],
            plots=[{fit_histories[-1]: {"x": "epoch", "y": "val_loglik_per_token"}}],
            code_deps=hmm_code + [f"{CODE}/em.py", f"{CODE}/torchctx.py"], resources=res("fit")))
        eval_metrics.append(f"{M}/eval/{tag}.json")
        stages.append(StageDef(
            name=f"{STUDY_NAME}-eval-{tag}", kind="eval", func="stages.hmm_icl.evaluate:run",
            config=EvalConfig(point=point, eval=spec.evaluate, corpus_dir=corpus, hmm_dir=hmm_dir,
                              metrics=eval_metrics[-1]),
            reads=["grid", "evaluate"], deps=[corpus, hmm_dir], metrics=[eval_metrics[-1]],
            code_deps=hmm_code + [f"{CODE}/baselines.py"], resources=res("eval")))

    sample_dirs, lm_metrics, icl_metrics, icl_curves = [], [], [], []
    shard_code = [f"{CODE}/shards.py", f"{CODE}/gates.py", f"{CODE}/sampler.py"]
    for point in spec.synthetic_points():
        tag = point.tag
        hmm_dir, shards, lm_dir = f"{W}/hmm/{tag}", f"{W}/synthetic/{tag}", f"{W}/lm/{tag}"
        sample_dirs.append(shards)
        stages.append(StageDef(
            name=f"{STUDY_NAME}-sample-{tag}", kind="sample", func="stages.hmm_icl.sample:run",
            config=SampleConfig(point=point, synth=spec.synthetic, seed=spec.seed, hmm_dir=hmm_dir, out_dir=shards,
                                metrics=f"{M}/sample/{tag}.json"),
            reads=["grid", "synthetic", "seed"], deps=[hmm_dir], outs=[shards], metrics=[f"{M}/sample/{tag}.json"],
            code_deps=hmm_code + shard_code + ["harness/validation.py"], resources=res("sample")))
        lm_metrics.append(f"{M}/lm/{tag}.json")
        stages.append(StageDef(
            name=f"{STUDY_NAME}-train-{tag}", kind="train", func="stages.hmm_icl.train:run",
            config=LmTrainConfig(point=point, model=spec.lm.model, train=_train_config(spec, point),
                                 torch_threads=spec.lm.train.torch_threads, shards_dir=shards, out_dir=lm_dir,
                                 metrics=lm_metrics[-1], curve=f"{P}/lm/{tag}.csv"),
            reads=["grid", "lm", "seed"], deps=[shards], outs=[lm_dir], metrics=[lm_metrics[-1]],
            plots=[{f"{P}/lm/{tag}.csv": {"x": "step", "y": "train_loss"}}],
            code_deps=[f"{CODE}/configs.py", f"{CODE}/lm.py", f"{CODE}/torchctx.py", "harness/trainer.py"]
            + shard_code + ["harness/validation.py"], resources=res("train")))
        icl_metrics.append(f"{M}/icl/{tag}.json")
        icl_curves.append(f"{P}/icl/{tag}.csv")
        stages.append(StageDef(
            name=f"{STUDY_NAME}-icl-{tag}", kind="icl", func="stages.hmm_icl.icl:run",
            config=IclConfig(point=point, icl=spec.icl, hmm_dir=hmm_dir, shards_dir=shards, lm_dir=lm_dir,
                             metrics=icl_metrics[-1], curve=icl_curves[-1]),
            reads=["grid", "icl"], deps=[hmm_dir, shards, lm_dir], metrics=[icl_metrics[-1]],
            plots=[{icl_curves[-1]: {"x": "position", "y": "gap"}}],
            code_deps=hmm_code + [f"{CODE}/baselines.py", f"{CODE}/lm.py", f"{CODE}/shards.py", f"{CODE}/sample.py",
                                  f"{CODE}/torchctx.py"], resources=res("icl")))

    report_dir = f"reports/{STUDY_NAME}"
    stages.append(StageDef(
        name=f"{STUDY_NAME}-report", kind="report", func="stages.hmm_icl.report:run",
        config=ReportConfig(points=spec.grid.points(), fit_metrics=fit_metrics, fit_histories=fit_histories,
                            eval_metrics=eval_metrics, icl_points=spec.synthetic_points(), sample_dirs=sample_dirs,
                            lm_metrics=lm_metrics, icl_metrics=icl_metrics, icl_curves=icl_curves, out_dir=report_dir),
        reads=["grid", "synthetic.points"],
        deps=fit_metrics + fit_histories + eval_metrics + sample_dirs + lm_metrics + icl_metrics + icl_curves,
        outs_no_cache=[report_dir], code_deps=[f"{CODE}/configs.py"], resources=res("report")))
    return stages


STUDY = Study(name=STUDY_NAME, spec_model=HmmIclSpec, plan=plan)
