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
    #: keep only runs with fewer than this many (total) parameters (Li et al. fit models below 1B)
    n_max: Positive | None = None
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


#: the fewest budgets with an optimum that determine a power law's exponent *and* its spread:
#: two points always fit a line exactly, so a third is the first that can disagree
MIN_BUDGETS = 3
#: Approach 3 has five parameters; fewer than two runs per parameter cannot pin them down
MIN_PARAMETRIC_RUNS = 10
#: ... nor fewer than three distinct model sizes (α is a curvature in log N)
MIN_PARAMETRIC_SIZES = 3


class EnvelopeSpec(StrictModel):
    """Approach 1: minimum-loss envelope over runs at each budget.

    A budget counts only when its lowest-loss run is neither the smallest nor the largest size
    trained at that budget: an envelope minimum on the edge of the sizes is a bound on the
    optimum, not a measurement of it. And the optima must be at least ``min_budgets`` distinct
    sizes: one model that wins every budget gives N_opt ∝ C^0, an artefact of the grid of sizes.
    """

    kind: Literal["envelope"] = "envelope"
    min_runs: int = Field(2, ge=2)
    #: budgets with an interior optimum the power law needs (never fewer than MIN_BUDGETS)
    min_budgets: int = Field(MIN_BUDGETS, ge=MIN_BUDGETS)


class IsoflopSpec(StrictModel):
    """Approach 2: a parabola in log N per budget; its vertex is N_opt."""

    kind: Literal["isoflop"] = "isoflop"
    #: sizes a budget's parabola needs: three determine it exactly, a fourth is the first that can
    #: disagree with it (never fewer than 4)
    min_points: int = Field(4, ge=4)
    #: fit each parabola to this many sizes nearest the lowest-loss one (None: all sizes)
    fit_points: int | None = Field(None, ge=3)
    #: budgets whose parabola has an interior vertex the power law needs (never fewer than MIN_BUDGETS)
    min_budgets: int = Field(MIN_BUDGETS, ge=MIN_BUDGETS)


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
    #: Newton iterations every start gets before only the ``screen_keep`` best continue
    screen_iters: int = Field(10, ge=1)
    #: starts that continue after the screen (None: all of them)
    screen_keep: int | None = Field(500, ge=1)
    #: runs and distinct sizes the five parameters need (never fewer than 10 and 3)
    min_runs: int = Field(MIN_PARAMETRIC_RUNS, ge=MIN_PARAMETRIC_RUNS)
    min_sizes: int = Field(MIN_PARAMETRIC_SIZES, ge=MIN_PARAMETRIC_SIZES)
    #: the search box of L-BFGS-B: an optimum on its boundary is not determined by the data
    bounds: "ParametricBounds" = Field(default_factory=lambda: ParametricBounds())


class ParametricBounds(StrictModel):
    """Box for (log E, log A, log B, α, β); wide enough that any sensible fit is interior.

    α = 0 or β = 0 (no dependence on N or D) and α, β = 3 (a loss that vanishes within a factor
    of a few in N) are both signs the data do not constrain the term, as is A = e^60.
    """

    e: tuple[float, float] = (-5.0, 5.0)
    a: tuple[float, float] = (-10.0, 60.0)
    b: tuple[float, float] = (-10.0, 60.0)
    alpha: tuple[float, float] = (0.0, 3.0)
    beta: tuple[float, float] = (0.0, 3.0)

    @model_validator(mode="after")
    def _ordered(self) -> "ParametricBounds":
        for name in ("e", "a", "b", "alpha", "beta"):
            lo, hi = getattr(self, name)
            if not lo < hi:
                raise ValueError(f"bounds.{name}: need low < high, got ({lo}, {hi})")
        return self

    def box(self) -> list[tuple[float, float]]:
        return [self.e, self.a, self.b, self.alpha, self.beta]


ApproachSpec = Annotated[Union[EnvelopeSpec, IsoflopSpec, ParametricSpec], Field(discriminator="kind")]


class BootstrapSpec(StrictModel):
    samples: int = Field(..., ge=0)
    seed: int = 0
    level: float = Field(0.95, gt=0, lt=1)
    #: a fit whose bootstrap fails (no optimum, too few budgets, optimum on a bound) in more than
    #: this share of resamples is not determined: its CI would describe the survivors only
    max_failed_share: float = Field(0.1, ge=0, le=0.5)


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


# -- LR transfer across widths (the μP question) ---------------------------------------------


class TransferSpec(StrictModel):
    """How the optimal LR per width is estimated across seeds (``stages.scaling.transfer``)."""

    #: the parabola in log2(lr) is fitted to the grid points within this distance of the best one
    window_log2: float = Field(1.0, gt=0)
    samples: int = Field(2000, ge=100)
    level: float = Field(0.95, gt=0, lt=1)
    #: the study's question, as thresholds on the optimum's shift across the width range (log2)
    mup_max_shift: float = Field(0.5, gt=0)
    sp_min_shift: float = Field(1.5, gt=0)


class TransferConfig(StrictModel):
    sweep: str
    #: parametrization -> results.csv of each seed replicate
    results: Annotated[dict[str, list[str]], Dep]
    widths: list[int]
    spec: TransferSpec
    seed: int = 0
    out_dir: Annotated[str, Out]
    metrics: Annotated[str, Metric]


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
    transfers: list[StageOutput] = Field(default_factory=list)
    #: the spec's ``not_reproducible`` declarations: such values are printed as not reproducible
    not_reproducible: dict[str, str] = Field(default_factory=dict)
    #: the report folder (``ctx.reports``), kept in git
    out_dir: Annotated[str, Committed]
