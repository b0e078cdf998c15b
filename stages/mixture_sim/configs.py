"""Typed configs of the mixture_sim stages, and the spec pieces they are built from.

Kept in one light module (pydantic only, no torch/sklearn/GE) so planning and compiling stay
fast. The table's column names, domains and targets live in :class:`TableSchema`, which the spec
declares and every stage receives: no stage code names a column.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from typing import Annotated, Any, Literal, Union

from pydantic import BeforeValidator, Field, field_validator, model_validator

from harness.schema import Committed, Dep, Metric, Out, Plot, StrictModel
from harness.settings import TrainSettings

NAME_RE = r"^[A-Za-z0-9_]+$"
#: what a shape column may measure in a harness-generated table
ShapeAttr = Literal["d_model", "n_heads", "n_layers", "ffn"]


# --------------------------------------------------------------------------- the table


class TargetSpec(StrictModel):
    """One target column; ``better`` says which way the mixture-ranking check looks."""

    name: str = Field(..., min_length=1)
    better: Literal["lower", "higher"] = "lower"


class TableSchema(StrictModel):
    """Names of every column of the simulator table: one row per (run, checkpoint).

    ``size`` and ``step`` are optional (``null``): a table of final losses only (RegMix's) has
    neither, and then a run is one row, keyed by ``run`` alone.
    """

    run: str = "run"
    step: str | None = "step"
    #: model size in parameters
    size: str | None = "model_size"
    #: further architecture columns -> what they measure (used when the harness builds the table)
    shape: dict[str, ShapeAttr] = Field(default_factory=lambda: {"d_model": "d_model", "n_heads": "n_heads"})
    #: domain proportion columns: each in [0, 1], summing to 1 per row
    domains: list[str] = Field(..., min_length=2)
    targets: list[TargetSpec] = Field(..., min_length=1)
    #: a column naming the subset the source put a row in (RegMix's own train/test), if any
    subset: str | None = None
    #: tolerance on the per-row sum of the proportions
    sum_tolerance: float = Field(1e-6, gt=0, lt=0.1)
    #: decimals the proportions were rounded to: the sum may then be off by up to
    #: ``len(domains) * 0.5 * 10**-decimals`` (RegMix: 3 decimals, 17 domains -> 0.0085)
    decimals: int | None = Field(None, ge=1, le=12)

    @field_validator("shape")
    @classmethod
    def _shape_in_name_order(cls, value: dict[str, str]) -> dict[str, str]:
        """Shape columns in name order: a stage's config file stores mappings key-sorted, and the
        feature order (hence the fitted models) must not depend on where the config came from."""
        return dict(sorted(value.items()))

    @model_validator(mode="after")
    def _unique(self) -> "TableSchema":
        names = [self.run, *self.optional_columns, *self.shape, *self.domains, *self.target_names]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"column names must be unique across run/step/size/subset/shape/domains/targets: {dupes}")
        return self

    @property
    def optional_columns(self) -> list[str]:
        return [c for c in (self.step, self.size, self.subset) if c is not None]

    @property
    def target_names(self) -> list[str]:
        return [t.name for t in self.targets]

    @property
    def tolerance(self) -> float:
        """How far a row's proportions may sum from 1: the declared tolerance, or the rounding's."""
        rounding = len(self.domains) * 0.5 * 10.0 ** -self.decimals if self.decimals is not None else 0.0
        return max(self.sum_tolerance, rounding)

    @property
    def context_columns(self) -> list[str]:
        """The non-mixture features (size, shape, step): rows equal in these are comparable."""
        return [c for c in (self.size, *self.shape, self.step) if c is not None]

    @property
    def feature_columns(self) -> list[str]:
        """The regressor inputs, in the seed's order: proportions, size, shape, step."""
        return [*self.domains, *self.context_columns]

    @property
    def key_columns(self) -> list[str]:
        """What identifies a row: the run, and the checkpoint where the table has steps."""
        return [self.run] + ([self.step] if self.step is not None else [])

    @property
    def columns(self) -> list[str]:
        return [self.run, *self.feature_columns, *self.target_names] + ([self.subset] if self.subset else [])


# --------------------------------------------------------------------------- table sources


class ExternalSource(StrictModel):
    """A table someone else produced (the seed's, RegMix's), read by path: CSV or Parquet.

    Either one file (``path``) or named ``parts``, each a list of files joined column-wise on
    ``join_on`` (RegMix ships mixtures and losses in separate CSVs, and its train and test
    mixtures in separate pairs). With parts, the schema's ``subset`` column records each row's
    part and run ids are ``<part>-<id>`` (RegMix numbers each part from 1).
    """

    kind: Literal["external"] = "external"
    path: Annotated[str | None, Dep] = None
    parts: Annotated[dict[str, list[str]], Dep] = Field(default_factory=dict)
    #: the column the files of one part share (required with ``parts``)
    join_on: str | None = None
    format: Literal["auto", "csv", "parquet"] = "auto"
    #: file column -> schema column, applied before anything else
    rename: dict[str, str] = Field(default_factory=dict)
    #: the size column is multiplied by this (the seed records sizes in millions: 1e6)
    size_multiplier: float = Field(1.0, gt=0)

    @model_validator(mode="after")
    def _one_layout(self) -> "ExternalSource":
        if (self.path is None) == (not self.parts):
            raise ValueError("give exactly one of `path` (one file) or `parts` (named lists of files to join)")
        if self.parts and not self.join_on:
            raise ValueError("`parts` needs `join_on`: the column their files share")
        empty = sorted(name for name, files in self.parts.items() if not files)
        if empty:
            raise ValueError(f"parts {empty} list no file")
        return self

    @property
    def files(self) -> list[str]:
        return [self.path] if self.path is not None else [f for files in self.parts.values() for f in files]


class TrainLoss(StrictModel):
    """Cross-entropy on fixed windows of the run's own (mixed) training stream."""

    kind: Literal["train_loss"] = "train_loss"


class EvalLoss(StrictModel):
    """Cross-entropy on a held-out text file (nats per byte)."""

    kind: Literal["eval_loss"] = "eval_loss"
    corpus: Annotated[str, Dep]


class ChoiceAccuracy(StrictModel):
    """Multiple-choice accuracy by LM likelihood of each choice given the context (lm-eval style)."""

    kind: Literal["choice_accuracy"] = "choice_accuracy"
    tasks: Annotated[str, Dep]
    #: divide each choice's log-likelihood by its length in bytes (``*_len_norm`` in the seed)
    len_norm: bool = False


Measure = Annotated[Union[TrainLoss, EvalLoss, ChoiceAccuracy], Field(discriminator="kind")]


class LMShape(StrictModel):
    """A small Llama (transformers) at one size of the grid."""

    name: str = Field(..., pattern=NAME_RE)
    d_model: int = Field(..., ge=8)
    n_layers: int = Field(..., ge=1)
    n_heads: int = Field(..., ge=1)
    ffn: int = Field(..., ge=8)

    @model_validator(mode="after")
    def _heads_divide(self) -> "LMShape":
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model {self.d_model} is not a multiple of n_heads {self.n_heads}")
        return self


class MixtureSampling(StrictModel):
    """Mixtures drawn from a symmetric Dirichlet; optionally plus the one-hot (pure-domain) mixtures."""

    count: int = Field(..., ge=1)
    alpha: float = Field(1.0, gt=0)
    include_pure: bool = False


class GeneratedSource(StrictModel):
    """The harness trains its own grid of small LMs on mixtures of domain corpora."""

    kind: Literal["generated"] = "generated"
    #: domain column -> folder holding train.txt (the domain's training text)
    corpora: dict[str, str]
    mixtures: MixtureSampling
    models: list[LMShape] = Field(..., min_length=1)
    #: the shared trainer's settings, as is; ``seed`` is the study's top-level ``seed`` and the runs
    #: have no dev set (rows are measured by the stage), so neither may be set here
    train: TrainSettings
    #: bytes in each run's mixed training stream (domains contribute in proportion)
    train_tokens: int = Field(..., ge=1024)
    #: training steps at which a row of the table is recorded
    eval_steps: list[int] = Field(..., min_length=1)
    #: bytes scored per eval corpus (and of the training stream for train_loss) at each eval step
    eval_tokens: int = Field(4096, ge=64)
    #: task items scored per choice_accuracy target (the first N of the file)
    task_items: int = Field(64, ge=1)
    #: target column -> how to measure it
    measures: dict[str, Measure]

    @model_validator(mode="after")
    def _steps(self) -> "GeneratedSource":
        if "seed" in self.train.model_fields_set:
            raise ValueError("source.train.seed is not used: the runs take the study's top-level `seed`")
        if self.train.eval_every:
            raise ValueError("source.train.eval_every must be 0: the runs have no dev set; rows are measured "
                             "at `eval_steps`")
        if sorted(set(self.eval_steps)) != self.eval_steps:
            raise ValueError(f"eval_steps must be strictly increasing, got {self.eval_steps}")
        if self.eval_steps[-1] > self.train.steps or self.eval_steps[0] < 1:
            raise ValueError(f"eval_steps {self.eval_steps} must lie in [1, train.steps={self.train.steps}]")
        names = [m.name for m in self.models]
        if len(set(names)) != len(names):
            raise ValueError(f"model names must be unique: {names}")
        return self


Source = Annotated[Union[ExternalSource, GeneratedSource], Field(discriminator="kind")]


# --------------------------------------------------------------------------- splits


class _SplitBase(StrictModel):
    name: str = Field(..., pattern=NAME_RE)


class RandomSplit(_SplitBase):
    """Random train/test by run (never by row: rows of one run are strongly correlated)."""

    kind: Literal["random"] = "random"
    test_fraction: float = Field(0.2, gt=0, lt=1)


class SizeAtLeastSplit(_SplitBase):
    """Test = rows of models with size >= threshold (1B in the seed)."""

    kind: Literal["size_at_least"] = "size_at_least"
    threshold: float = Field(..., gt=0)


class StepAboveSplit(_SplitBase):
    """Test = checkpoints with step > threshold (15000 in the seed)."""

    kind: Literal["step_above"] = "step_above"
    threshold: float = Field(..., ge=0)


class LargerThanSplit(_SplitBase):
    """Extrapolation: train on sizes <= threshold, test on strictly larger models."""

    kind: Literal["larger_than"] = "larger_than"
    threshold: float = Field(..., gt=0)


class HeldOutMixtureSplit(_SplitBase):
    """New mixtures: a fraction of the distinct mixtures is held out at every size and step."""

    kind: Literal["heldout_mixture"] = "heldout_mixture"
    test_fraction: float = Field(0.25, gt=0, lt=1)


class SubsetSplit(_SplitBase):
    """The source's own partition: rows whose ``table.subset`` column equals ``test`` are the test side."""

    kind: Literal["subset"] = "subset"
    test: str = "test"


Split = Annotated[Union[RandomSplit, SizeAtLeastSplit, StepAboveSplit, LargerThanSplit, HeldOutMixtureSplit,
                        SubsetSplit], Field(discriminator="kind")]

#: what each split kind holds out, hence how its model-selection CV groups the training rows
CV_GROUPING = {"random": "run", "size_at_least": "size", "larger_than": "size", "step_above": "step",
               "heldout_mixture": "mixture", "subset": "run"}


# --------------------------------------------------------------------------- regressors and their grids


class _Grid(StrictModel):
    def points(self) -> list[dict[str, Any]]:
        """Cartesian product of the listed values, in declaration order."""
        fields = list(type(self).model_fields)
        values = [getattr(self, f) for f in fields]
        return [dict(zip(fields, combo)) for combo in itertools.product(*values)]


class RidgeGrid(_Grid):
    alpha: list[Annotated[float, Field(gt=0)]] = Field(default_factory=lambda: [1.0], min_length=1)


class ForestGrid(_Grid):
    n_estimators: list[Annotated[int, Field(ge=1)]] = Field(default_factory=lambda: [200], min_length=1)
    max_depth: list[Annotated[int, Field(ge=1)] | None] = Field(default_factory=lambda: [None], min_length=1)
    min_samples_leaf: list[Annotated[int, Field(ge=1)]] = Field(default_factory=lambda: [1], min_length=1)


class BoostingGrid(_Grid):
    n_estimators: list[Annotated[int, Field(ge=1)]] = Field(default_factory=lambda: [200], min_length=1)
    learning_rate: list[Annotated[float, Field(gt=0, le=1)]] = Field(default_factory=lambda: [0.1], min_length=1)
    max_depth: list[Annotated[int, Field(ge=1)]] = Field(default_factory=lambda: [3], min_length=1)
    subsample: list[Annotated[float, Field(gt=0, le=1)]] = Field(default_factory=lambda: [1.0], min_length=1)


class HistBoostingGrid(_Grid):
    """scikit-learn ``HistGradientBoostingRegressor`` (LightGBM's algorithm), one model per target."""

    max_iter: list[Annotated[int, Field(ge=1)]] = Field(default_factory=lambda: [1000], min_length=1)
    learning_rate: list[Annotated[float, Field(gt=0, le=1)]] = Field(default_factory=lambda: [0.01], min_length=1)
    max_leaf_nodes: list[Annotated[int, Field(ge=2)]] = Field(default_factory=lambda: [31], min_length=1)
    min_samples_leaf: list[Annotated[int, Field(ge=1)]] = Field(default_factory=lambda: [20], min_length=1)
    l2_regularization: list[Annotated[float, Field(ge=0)]] = Field(default_factory=lambda: [0.0], min_length=1)


class MLPGrid(_Grid):
    hidden: list[list[Annotated[int, Field(ge=1)]]] = Field(default_factory=lambda: [[64, 64]], min_length=1)
    lr: list[Annotated[float, Field(gt=0)]] = Field(default_factory=lambda: [1e-2], min_length=1)
    epochs: list[Annotated[int, Field(ge=1)]] = Field(default_factory=lambda: [500], min_length=1)
    weight_decay: list[Annotated[float, Field(ge=0)]] = Field(default_factory=lambda: [1e-4], min_length=1)


class _RegressorBase(StrictModel):
    #: label in stage names and reports; defaults to the kind
    name: str | None = Field(None, pattern=NAME_RE)

    @property
    def label(self) -> str:
        return self.name or self.kind  # type: ignore[attr-defined]


class RidgeSpec(_RegressorBase):
    kind: Literal["ridge"] = "ridge"
    grid: RidgeGrid = RidgeGrid()


class ForestSpec(_RegressorBase):
    kind: Literal["random_forest"] = "random_forest"
    grid: ForestGrid = ForestGrid()


class BoostingSpec(_RegressorBase):
    kind: Literal["gradient_boosting"] = "gradient_boosting"
    grid: BoostingGrid = BoostingGrid()


class HistBoostingSpec(_RegressorBase):
    kind: Literal["hist_gradient_boosting"] = "hist_gradient_boosting"
    grid: HistBoostingGrid = HistBoostingGrid()


class MLPSpec(_RegressorBase):
    kind: Literal["mlp"] = "mlp"
    grid: MLPGrid = MLPGrid()


Regressor = Annotated[Union[RidgeSpec, ForestSpec, BoostingSpec, HistBoostingSpec, MLPSpec],
                      Field(discriminator="kind")]
RegressorKind = Literal["ridge", "random_forest", "gradient_boosting", "hist_gradient_boosting", "mlp"]


def point_id(params: dict[str, Any]) -> str:
    """Short, stable id of a grid point: adding a value to a grid never renames existing stages."""
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:8]


class FeatureSpec(StrictModel):
    """Feature preprocessing inside every pipeline (before scaling)."""

    #: columns log-transformed first (sizes and steps span orders of magnitude)
    log: list[str] = Field(default_factory=list)
    #: if set, every domain proportion p becomes log(p + offset): a loss moves with the log of a
    #: domain's share far more than with the share itself (0.001 -> 0.01 matters, 0.5 -> 0.509 not)
    domain_log_offset: float | None = Field(None, gt=0)


# --------------------------------------------------------------------------- stage configs


class RunStageConfig(StrictModel):
    """Train one LM on one mixture and measure every target at every eval step.

    Paths read: ``train_texts`` and the files named by ``measures`` (eval corpora, task files).
    """

    run_id: str = Field(..., pattern=r"^[A-Za-z0-9_-]+$")
    proportions: dict[str, float]
    #: domain column -> that domain's training text (``<corpus folder>/train.txt``)
    train_texts: Annotated[dict[str, str], Dep]
    model: LMShape
    #: ``train.threads`` also scopes the torch thread count of the measurements
    train: TrainSettings
    train_tokens: int
    eval_steps: list[int]
    eval_tokens: int
    task_items: int
    measures: dict[str, Measure]
    table: TableSchema
    out: Annotated[str, Out]

    @model_validator(mode="after")
    def _covers_the_table(self) -> "RunStageConfig":
        domains, targets = set(self.table.domains), set(self.table.target_names)
        if set(self.proportions) != domains or set(self.train_texts) != domains:
            raise ValueError(f"proportions and train_texts must name exactly the table's domains {sorted(domains)}")
        if set(self.measures) != targets:
            raise ValueError(f"measures must name exactly the table's targets {sorted(targets)}")
        return self


class TableStageConfig(StrictModel):
    """Assemble (generated) or read (external) the table, gate it, write Parquet."""

    table: TableSchema
    source: ExternalSource | None = None
    #: per-run row files of a generated source
    run_files: Annotated[list[str], Dep] = Field(default_factory=list)
    out: Annotated[str, Out]
    gate_report: Annotated[str, Out]
    metrics: Annotated[str, Metric]

    @model_validator(mode="after")
    def _one_source(self) -> "TableStageConfig":
        if (self.source is None) == (not self.run_files):
            raise ValueError("give exactly one of `source` (external) or `run_files` (generated)")
        return self


class SplitsStageConfig(StrictModel):
    table: TableSchema
    table_file: Annotated[str, Dep]
    splits: list[Split]
    seed: int
    #: split name -> output folder
    out_dirs: Annotated[dict[str, str], Out]
    metrics: Annotated[str, Metric]


class SweepStageConfig(StrictModel):
    """One grid point of one regressor, cross-validated and fitted on every split."""

    regressor: str
    kind: RegressorKind
    params: dict[str, Any]
    table: TableSchema
    features: FeatureSpec
    #: split name -> split folder
    split_dirs: Annotated[dict[str, str], Dep]
    cv_folds: int = Field(..., ge=2)
    seed: int
    out_dir: Annotated[str, Out]


def _pairs(key: str, value_key: str):
    """Accept ``{name: value}`` for a list of ``{key: name, value_key: value}``, in the mapping's order."""
    def convert(value: Any) -> Any:
        if isinstance(value, dict):
            return [{key: k, value_key: v} for k, v in value.items()]
        return value
    return BeforeValidator(convert)


class SplitDir(StrictModel):
    name: str
    path: Annotated[str, Dep]


class SweepDirs(StrictModel):
    regressor: str
    #: the sweep output folders of this regressor, one per grid point
    points: Annotated[list[str], Dep]


class EvaluateStageConfig(StrictModel):
    """Lists, not mappings, where order is output: a stage's config file stores mappings key-sorted,
    while splits and regressors appear in the spec's order in every table, plot and tie-break."""

    table: TableSchema
    #: split folders in the spec's order (a ``{split: folder}`` mapping is accepted)
    split_dirs: Annotated[list[SplitDir], _pairs("name", "path")]
    #: sweep folders per regressor, in the spec's order (a ``{label: [folders]}`` mapping is accepted)
    sweeps: Annotated[list[SweepDirs], _pairs("regressor", "points")]
    out_dir: Annotated[str, Out]
    metrics: Annotated[str, Metric]
    pred_plot: Annotated[str, Plot(x="true", y="pred", template="scatter")]
    score_plot: Annotated[str, Plot(x="r2", y="target", template="bar_horizontal")]


class SimulatorSpec(StrictModel):
    """Which fit becomes the table's queryable simulator, and its ensemble."""

    #: the split whose selected simulator (by training CV) is saved, fitted on that split's
    #: training side, so the split's test scores describe exactly the saved artifact; default: first
    split: str | None = None
    #: bootstrap refits of the same configuration whose spread says how sure a prediction is
    members: int = Field(4, ge=2, le=64)


class SearchSpec(StrictModel):
    """Mixture search: Dirichlet candidates centred on the training mixtures, ranked by the simulator.

    As RegMix does: ``alpha = concentration * mean training mixture`` (+ ``floor`` so no domain
    is impossible), ``candidates`` draws, the ``top`` best by predicted ``target`` reported with
    the ensemble's spread; their mean is the recommended mixture.
    """

    target: str
    candidates: int = Field(100_000, ge=10)
    concentration: float = Field(1.0, gt=0)
    floor: float = Field(1e-3, gt=0)
    top: int = Field(10, ge=1)
    #: values of the non-mixture features (size, shape, step) at which to search
    at: dict[str, float] = Field(default_factory=dict)


class ReferenceScores(StrictModel):
    """Published per-target scores to set beside ours (e.g. RegMix's LightGBM Spearman, in %)."""

    name: str
    #: which split's test side the published numbers are on
    split: str
    spearman_percent: dict[str, float]
    note: str = ""


class SimulatorStageConfig(StrictModel):
    """Refit the split's selected regressor on its training side (+ bootstrap members); save it."""

    study: str
    table_name: str
    table: TableSchema
    features: FeatureSpec
    split: str
    split_dir: Annotated[str, Dep]
    evaluate_dir: Annotated[str, Dep]
    members: int
    seed: int
    out_dir: Annotated[str, Out]
    metrics: Annotated[str, Metric]


class SearchStageConfig(StrictModel):
    table: TableSchema
    search: SearchSpec
    table_file: Annotated[str, Dep]
    simulator_dir: Annotated[str, Dep]
    seed: int
    out_dir: Annotated[str, Out]
    metrics: Annotated[str, Metric]


class ReportStageConfig(StrictModel):
    table_name: str
    title: str
    table: TableSchema
    table_file: Annotated[str, Dep]
    table_metrics: Annotated[str, Dep]
    splits_metrics: Annotated[str, Dep]
    evaluate_dir: Annotated[str, Dep]
    evaluate_metrics: Annotated[str, Dep]
    simulator_metrics: Annotated[str, Dep]
    search_dir: Annotated[str, Dep]
    reference: ReferenceScores | None = None
    #: the spec's ``not_reproducible`` declarations (the report names those of its own score files)
    not_reproducible: dict[str, str] = Field(default_factory=dict)
    #: the report folder, committed to git
    out_dir: Annotated[str, Committed]


def safe_name(text: str) -> str:
    """A string made safe for file and stage names ([A-Za-z0-9_-] only)."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", text).strip("_")
