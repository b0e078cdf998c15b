"""Typed configs of the scaling stages that do not train models, and the spec fragments they use.

Kept free of heavy imports (no torch, scipy, pandas) so that planning and compiling stay fast:
``harness run`` re-plans every spec before it runs a single stage. Kept free of the model and
trainer code too: this module is a code dependency of every stage whose config it declares, so
the configs of the stages that build and train models (sweep, coord) live in
:mod:`stages.scaling.lmconfigs`, and editing the trainer does not rerun the fits.

Every path a stage reads or writes is a typed field (``Dep``, ``Out``, ``Metric``, ``Committed``):
the compiled ``dvc.yaml`` entry is derived from these, so the code and the DAG cannot disagree.
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import Field, model_validator

from harness.schema import Committed, Dep, Metric, Out, StrictModel

Positive = Annotated[float, Field(gt=0)]


# -- tables ----------------------------------------------------------------------------------


class EpochSource(StrictModel):
    """Besiroglu et al. (2024) extraction of Chinchilla: columns N, C, loss; D = C / 6N."""

    kind: Literal["epoch"] = "epoch"
    path: Annotated[str, Dep]


class MisfittingSource(StrictModel):
    """Li et al. (2025) (Mis)Fitting checkpoints CSV."""

    kind: Literal["misfitting"] = "misfitting"
    path: Annotated[str, Dep]


class PorianSource(StrictModel):
    """Porian et al. (2024) summary pickle; ``config`` selects exactly one of its rows."""

    kind: Literal["porian"] = "porian"
    path: Annotated[str, Dep]
    config: dict[str, str] = Field(..., min_length=1)


class CsvSource(StrictModel):
    """Any CSV already in the common layout (run, N, [N_no_emb], D, loss)."""

    kind: Literal["csv"] = "csv"
    path: Annotated[str, Dep]


class SyntheticSource(StrictModel):
    """The table the ``synthetic`` stage draws from the spec's known parameters."""

    kind: Literal["synthetic"] = "synthetic"


class SweepSource(StrictModel):
    """This project's own training runs: the eval history of one width sweep."""

    kind: Literal["sweep"] = "sweep"
    sweep: str
    parametrization: Literal["sp", "mup"] = "mup"


TableSource = Annotated[Union[EpochSource, MisfittingSource, PorianSource, CsvSource, SyntheticSource, SweepSource],
                        Field(discriminator="kind")]


class Selection(StrictModel):
    """Which rows of a source a fit sees. Applied before the validation gate."""

    #: keep only each run's last checkpoint
    final_only: bool = False
    #: among runs differing only in these run keys (e.g. peak_lr), keep the lowest final loss
    best_over: list[str] = Field(default_factory=list)
    #: drop the k runs with the highest final loss (Besiroglu et al. drop 5)
    drop_highest_loss: int = Field(0, ge=0)
    #: a checkpoint listed twice: `error` fails the gate; `drop` removes every copy and records it
    duplicates: Literal["error", "drop"] = "error"


class BudgetSpec(StrictModel):
    """How compute budgets are formed for Approaches 1 and 2 (see ``stages.scaling.profiles``)."""

    mode: Literal["auto", "column", "cluster", "interpolate"] = "auto"
    values: list[Positive] | None = None
    tolerance_dex: float = Field(0.05, gt=0)
    n: int = Field(12, ge=2)
    min_runs: int = Field(3, ge=2)


class TableConfig(StrictModel):
    name: str
    #: a published source's ``path`` is a dep of the stage
    source: TableSource
    #: the file a synthetic/sweep source reads (resolved by the plan)
    input: Annotated[str | None, Dep] = None
    select: Selection = Selection()
    out: Annotated[str, Out]
    reference_out: Annotated[str, Out]
    metrics: Annotated[str, Metric]


# -- fits ------------------------------------------------------------------------------------


class EnvelopeSpec(StrictModel):
    """Approach 1: minimum-loss envelope over runs at each budget."""

    kind: Literal["envelope"] = "envelope"
    min_runs: int = Field(2, ge=1)


class IsoflopSpec(StrictModel):
    """Approach 2: a parabola in log N per budget; its vertex is N_opt."""

    kind: Literal["isoflop"] = "isoflop"
    min_points: int = Field(3, ge=3)
    #: fit each parabola to this many sizes nearest the lowest-loss one (None: all sizes)
    fit_points: int | None = Field(None, ge=3)


class InitGridSpec(StrictModel):
    """Initialisation grid of Hoffmann et al. (2022); e, a, b are log E, log A, log B."""

    alpha: list[float] = Field(default_factory=lambda: [0.0, 0.5, 1.0, 1.5, 2.0], min_length=1)
    beta: list[float] = Field(default_factory=lambda: [0.0, 0.5, 1.0, 1.5, 2.0], min_length=1)
    e: list[float] = Field(default_factory=lambda: [-1.0, -0.5, 0.0, 0.5, 1.0], min_length=1)
    a: list[float] = Field(default_factory=lambda: [0.0, 5.0, 10.0, 15.0, 20.0, 25.0], min_length=1)
    b: list[float] = Field(default_factory=lambda: [0.0, 5.0, 10.0, 15.0, 20.0, 25.0], min_length=1)


class ParametricSpec(StrictModel):
    """Approach 3: L = E + A/N^α + B/D^β, Huber on log residuals, L-BFGS from a grid."""

    kind: Literal["parametric"] = "parametric"
    huber_delta: float = Field(1e-3, gt=0)
    init_grid: InitGridSpec = InitGridSpec()
    #: iterations of the batched Newton phase (all starts at once) before the best are polished
    newton_iters: int = Field(60, ge=1)
    #: how many of the best starts scipy's L-BFGS-B then finishes, one by one
    polish_top: int = Field(10, ge=1)


ApproachSpec = Annotated[Union[EnvelopeSpec, IsoflopSpec, ParametricSpec], Field(discriminator="kind")]


class BootstrapSpec(StrictModel):
    samples: int = Field(..., ge=0)
    seed: int = 0
    level: float = Field(0.95, gt=0, lt=1)


class ReferenceValue(StrictModel):
    value: float
    se: float | None = Field(None, ge=0)
    ci_low: float | None = None
    ci_high: float | None = None


class Reference(StrictModel):
    """Published values to compare a fit against (per fitted quantity)."""

    source: str
    values: dict[str, ReferenceValue]


class FitConfig(StrictModel):
    table: Annotated[str, Dep]
    table_name: str
    approach_name: str
    approach: ApproachSpec
    #: which parameter count enters N (and so C = 6 N D)
    parameters: Literal["total", "non_embedding"] = "total"
    budgets: BudgetSpec = BudgetSpec()
    bootstrap: BootstrapSpec
    reference: Reference | None = None
    #: published values found in the source itself (Porian), written by the table stage
    source_reference: Annotated[str | None, Dep] = None
    metrics: Annotated[str, Metric]
    details: Annotated[str, Out]


# -- synthetic data --------------------------------------------------------------------------


class Truth(StrictModel):
    E: Positive
    A: Positive
    B: Positive
    alpha: Positive
    beta: Positive


class SyntheticSpec(StrictModel):
    truth: Truth
    n_min: Positive = 1e7
    n_max: Positive = 1e10
    n_sizes: int = Field(24, ge=3)
    d_min: Positive = 1e8
    d_max: Positive = 1e12
    checkpoints: int = Field(16, ge=2)
    #: standard deviation of the multiplicative log-normal noise on the loss
    noise: float = Field(0.005, ge=0)
    seed: int = 0

    @model_validator(mode="after")
    def _ranges(self) -> "SyntheticSpec":
        if self.n_max <= self.n_min or self.d_max <= self.d_min:
            raise ValueError("need n_min < n_max and d_min < d_max")
        return self


class SyntheticConfig(StrictModel):
    spec: SyntheticSpec
    out: Annotated[str, Out]


# -- corpus of the width sweeps (their configs: stages.scaling.lmconfigs) -------------------


class CorpusConfig(StrictModel):
    train: Annotated[str, Dep]
    dev: Annotated[str, Dep]
    #: a split shorter than this cannot fill one training window
    min_tokens: int = Field(1024, ge=2)
    out_dir: Annotated[str, Out]


# -- report ----------------------------------------------------------------------------------


class StageOutput(StrictModel):
    """An upstream stage's output folder and metrics file, both read by the report."""

    label: str
    dir: Annotated[str, Dep]
    metrics: Annotated[str, Dep]


class ReportConfig(StrictModel):
    #: details JSON of every fit stage
    fits: Annotated[list[str], Dep]
    #: table name -> gated parquet (for the frontier scatter)
    tables: Annotated[dict[str, str], Dep]
    sweeps: list[StageOutput] = Field(default_factory=list)
    coords: list[StageOutput] = Field(default_factory=list)
    #: the report folder (``ctx.reports``), kept in git
    out_dir: Annotated[str, Committed]
