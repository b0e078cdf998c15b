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

from pydantic import Field, PositiveInt, field_validator, model_validator

from harness.spec import StudySpec
from harness.study import PlanContext, StageDef, Study, StrictModel
from stages.hmm_icl.configs import (
    CorpusConfig, CorpusSource, EmExperimentConfig, EmExperimentsSpec, EmSpec, EvalConfig, EvalSpec, FitConfig,
    GridPoint, IclConfig, IclSpec, LlamaSpec, LmTrainConfig, LmTrainSpec, ReportConfig, SampleConfig, SynthSpec,
)
from stages.hmm_icl.pool import Permutations

STUDY_NAME = "hmm_icl"


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
    #: ``train.steps`` for the pool sizes named here (every other pool: ``train.steps``). A pool of
    #: M permutations is M relabelled HMMs for the Llama to learn, so a larger pool may need more
    #: steps to approach the optimum than the budget of the smaller ones allows them all.
    steps_by_pool: dict[PositiveInt, PositiveInt] = Field(default_factory=dict)

    def train_for(self, perms: Permutations) -> LmTrainSpec:
        """The training settings of the Llama for one permutation pool."""
        steps = self.steps_by_pool.get(perms.pool)
        return self.train if steps is None else self.train.model_copy(update={"steps": steps})


class HmmIclSpec(StudySpec):
    seed: int = 0
    corpus: CorpusSource
    grid: Grid
    fit: EmSpec
    evaluate: EvalSpec = EvalSpec()
    synthetic: SynthSpec
    lm: LmSpec
    icl: IclSpec = IclSpec()
    #: the seed's EM experiments (update_freq scan, duplicated sequences) on one grid point's corpus
    em_experiments: EmExperimentsSpec | None = None

    @model_validator(mode="after")
    def _consistent(self) -> "HmmIclSpec":
        tags = {p.tag for p in self.grid.points()}
        for i, point in enumerate(self.synthetic.points or []):
            if point.tag not in tags:
                raise ValueError(f"synthetic.points[{i}] ({point.tag}) is not a point of the grid")
        pools = {p.pool for p in self.synthetic.permutations}
        unknown = sorted(set(self.lm.steps_by_pool) - pools)
        if unknown:
            raise ValueError(f"lm.steps_by_pool names pool sizes {unknown} that synthetic.permutations does not"
                             f" have (it has {sorted(p for p in pools if p is not None)})")
        if self.em_experiments is not None and self.em_experiments.point.tag not in tags:
            raise ValueError(f"em_experiments.point ({self.em_experiments.point.tag}) is not a point of the grid")
        return self

    def synthetic_points(self) -> list[GridPoint]:
        return self.synthetic.points if self.synthetic.points is not None else self.grid.points()


def plan(spec: HmmIclSpec, ctx: PlanContext) -> list[StageDef]:
    """Paths come from ``ctx`` (one folder per profile); deps/outs from the configs' path fields."""
    res = spec.resources_for
    work, metrics, plots = ctx.work, ctx.metrics, ctx.plots
    stages: list[StageDef] = []

    corpus_dirs: dict[str, str] = {}
    for point in spec.grid.points():
        if point.corpus_tag in corpus_dirs:
            continue
        out = f"{work}/corpus/{point.corpus_tag}"
        corpus_dirs[point.corpus_tag] = out
        stages.append(StageDef(
            name=f"{STUDY_NAME}-corpus-{point.corpus_tag}", kind="data", func="stages.hmm_icl.corpus:run",
            config=CorpusConfig(source=spec.corpus, emissions=point.emissions, seq_len=point.seq_len, out_dir=out,
                                metrics=f"{metrics}/corpus/{point.corpus_tag}.json"),
            reads=["corpus", "grid"], resources=res("data")))

    fit_metrics, fit_histories, eval_metrics = [], [], []
    for point in spec.grid.points():
        tag, corpus = point.tag, corpus_dirs[point.corpus_tag]
        hmm_dir = f"{work}/hmm/{tag}"
        fit_metrics.append(f"{metrics}/fit/{tag}.json")
        fit_histories.append(f"{plots}/fit/{tag}.csv")
        stages.append(StageDef(
            name=f"{STUDY_NAME}-fit-{tag}", kind="fit", func="stages.hmm_icl.fit:run",
            config=FitConfig(point=point, em=spec.fit, seed=spec.seed, corpus_dir=corpus, out_dir=hmm_dir,
                             metrics=fit_metrics[-1], history=fit_histories[-1]),
            reads=["grid", "fit", "seed"], resources=res("fit")))
        eval_metrics.append(f"{metrics}/eval/{tag}.json")
        stages.append(StageDef(
            name=f"{STUDY_NAME}-eval-{tag}", kind="eval", func="stages.hmm_icl.evaluate:run",
            config=EvalConfig(point=point, eval=spec.evaluate, corpus_dir=corpus, hmm_dir=hmm_dir,
                              metrics=eval_metrics[-1]),
            reads=["grid", "evaluate"], resources=res("eval")))

    sample_dirs, lm_metrics, icl_metrics, icl_curves, icl_points, icl_perms = [], [], [], [], [], []
    for point in spec.synthetic_points():
        hmm_dir = f"{work}/hmm/{point.tag}"
        for perms in spec.synthetic.permutations:
            tag = f"{point.tag}-{perms.tag}"
            shards, lm_dir = f"{work}/synthetic/{tag}", f"{work}/lm/{tag}"
            icl_points.append(point)
            icl_perms.append(perms)
            sample_dirs.append(shards)
            stages.append(StageDef(
                name=f"{STUDY_NAME}-sample-{tag}", kind="sample", func="stages.hmm_icl.sample:run",
                config=SampleConfig(point=point, synth=spec.synthetic, permutations=perms, seed=spec.seed,
                                    hmm_dir=hmm_dir, out_dir=shards, metrics=f"{metrics}/sample/{tag}.json"),
                reads=["grid", "synthetic", "seed"], resources=res("sample")))
            lm_metrics.append(f"{metrics}/lm/{tag}.json")
            stages.append(StageDef(
                name=f"{STUDY_NAME}-train-{tag}", kind="train", func="stages.hmm_icl.train:run",
                config=LmTrainConfig(point=point, model=spec.lm.model,
                                     train=spec.lm.train_for(perms).for_point(seq_len=point.seq_len + 1,
                                                                              seed=spec.seed),
                                     shards_dir=shards, out_dir=lm_dir, metrics=lm_metrics[-1],
                                     curve=f"{plots}/lm/{tag}.csv"),
                reads=["grid", "lm", "seed"], resources=res("train")))
            icl_metrics.append(f"{metrics}/icl/{tag}.json")
            icl_curves.append(f"{plots}/icl/{tag}.csv")
            stages.append(StageDef(
                name=f"{STUDY_NAME}-icl-{tag}", kind="icl", func="stages.hmm_icl.icl:run",
                config=IclConfig(point=point, permutations=perms, icl=spec.icl, hmm_dir=hmm_dir, shards_dir=shards,
                                 lm_dir=lm_dir, metrics=icl_metrics[-1], curve=icl_curves[-1]),
                reads=["grid", "icl"], resources=res("icl")))

    em_tables: list[str] = []
    if spec.em_experiments is not None:
        ex = spec.em_experiments
        for kind in ("update_freq", "duplicates"):
            em_tables.append(f"{plots}/em/{kind}.csv")
            stages.append(StageDef(
                name=f"{STUDY_NAME}-em-{kind.replace('_', '-')}", kind="fit", func="stages.hmm_icl.emexp:run",
                config=EmExperimentConfig(kind=kind, point=ex.point, experiments=ex, seed=spec.seed,
                                          corpus_dir=corpus_dirs[ex.point.corpus_tag],
                                          metrics=f"{metrics}/em/{kind}.json", table=em_tables[-1]),
                reads=["em_experiments", "seed"], resources=res("fit")))

    stages.append(StageDef(
        name=f"{STUDY_NAME}-report", kind="report", func="stages.hmm_icl.report:run",
        config=ReportConfig(points=spec.grid.points(), fit_metrics=fit_metrics, fit_histories=fit_histories,
                            eval_metrics=eval_metrics, icl_points=icl_points, icl_permutations=icl_perms,
                            sample_dirs=sample_dirs, em_tables=em_tables,
                            lm_metrics=lm_metrics, icl_metrics=icl_metrics, icl_curves=icl_curves,
                            out_dir=ctx.reports),
        reads=["grid", "synthetic.points", "synthetic.permutations"], resources=res("report")))
    return stages


STUDY = Study(name=STUDY_NAME, spec_model=HmmIclSpec, plan=plan)
