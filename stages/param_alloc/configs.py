"""Typed configs of the param_alloc stages: the only thing stage code receives.

Kept in one light module (no torch import) so planning and compiling stay fast.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator

from harness.schema import Committed, Dep, Metric, Out, Plot, StrictModel
from harness.settings import EarlyStopConfig, TrainSettings

#: the file an eval stage writes into its output folder (machine-dependent speed/memory numbers)
PERF_FILE = "perf.json"
#: the file the profile stage writes into its output folder
PROFILE_FILE = "profile.json"


class CorpusFiles(StrictModel):
    """Where the text comes from. A file listed for several splits is divided among them by article."""

    kind: Literal["files"] = "files"
    files: Annotated[dict[Literal["train", "dev", "test"], str], Dep]
    fractions: dict[Literal["train", "dev", "test"], float] = Field(
        default_factory=lambda: {"train": 0.8, "dev": 0.1, "test": 0.1})
    seed: int = 0

    @field_validator("fractions")
    @classmethod
    def _fractions(cls, fractions: dict[str, float]) -> dict[str, float]:
        bad = {k: v for k, v in fractions.items() if not 0 <= v <= 1}
        if bad:
            raise ValueError(f"fractions must each be in [0, 1], got {bad}")
        total = sum(fractions.values())
        if abs(total - 1) > 1e-6:
            raise ValueError(f"fractions must sum to 1 (within 1e-6), got {total:.6g}")
        return fractions


class PrepareConfig(StrictModel):
    data: CorpusFiles
    out_dir: Annotated[str, Out]


class TokenizerConfig(StrictModel):
    vocab_size: int = Field(..., ge=260, le=65535)  # ids are stored as uint16
    min_frequency: int = Field(2, ge=1)


class TokenizeConfig(StrictModel):
    corpus_dir: Annotated[str, Dep]
    tokenizer: TokenizerConfig
    out_dir: Annotated[str, Out]


class GateConfig(StrictModel):
    corpus_dir: Annotated[str, Dep]
    tokens_dir: Annotated[str, Dep]
    report: Annotated[str, Out]


class Shape(StrictModel):
    """A solved model shape: what the solver promises and the model builder honours."""

    vocab_size: int
    d_model: int
    n_layers: int
    n_heads: int
    d_ff: int
    max_seq_len: int
    tie_embeddings: bool = True


class ModelSpec(StrictModel):
    target_params: int = Field(..., gt=0)
    tolerance: float = Field(0.005, gt=0, lt=0.1)
    n_heads: int = Field(4, ge=1)
    max_seq_len: int = Field(512, ge=8)
    tie_embeddings: bool = True
    #: d_ff may move this far from glu x d_model to land the total within tolerance
    d_ff_slack: float = Field(0.05, ge=0, lt=0.5)
    #: the solved embedding share must lie within this of the requested one (absolute; None: the
    #: closest reachable share, however far); a grid point that cannot is a solver error
    share_tolerance: float | None = Field(None, gt=0, lt=0.5)


class Allocation(StrictModel):
    embed_share: float = Field(..., gt=0, lt=1)
    glu: float = Field(..., gt=0)

    @property
    def tag(self) -> str:
        return f"e{round(self.embed_share * 100)}_g{str(self.glu).replace('.', '_')}"


class LrSweep(StrictModel):
    """A per-point learning-rate sweep: each of ``lrs`` trained for ``tokens``, lowest dev loss wins."""

    lrs: list[float] = Field(..., min_length=2)
    tokens: int = Field(..., gt=0)

    @field_validator("lrs")
    @classmethod
    def _positive_sorted(cls, lrs: list[float]) -> list[float]:
        if any(lr <= 0 for lr in lrs) or len(set(lrs)) != len(lrs):
            raise ValueError(f"lrs must be distinct and positive, got {lrs}")
        return sorted(lrs)


class TrainStageConfig(StrictModel):
    """One point: allocation fixed, or chosen at run time from a ranking file; one run per seed."""

    allocation: Allocation | None = None
    rank: int | None = None
    model: ModelSpec
    train: TrainSettings
    early_stop: EarlyStopConfig | None = None
    #: seeds to train (None: ``train.seed`` only); the metrics give their mean and t interval
    seeds: list[int] | None = None
    #: pick this point's LR first (None: ``train.lr``, or the ranking entry's LR for a winner)
    lr_sweep: LrSweep | None = None
    tokens_dir: Annotated[str, Dep]
    gate_report: Annotated[str, Dep]
    #: the phase-1 ranking, read at run time when ``allocation`` is None
    ranking_file: Annotated[str | None, Dep] = None
    out_dir: Annotated[str, Out]
    metrics: Annotated[str, Metric]
    curve: Annotated[str, Plot(x="tokens", y="dev_loss")]


class LrFindConfig(StrictModel):
    allocation: Allocation
    model: ModelSpec
    train: TrainSettings
    lr_min: float = Field(..., gt=0)
    lr_max: float = Field(..., gt=0)
    steps: int = Field(..., ge=5)
    tokens_dir: Annotated[str, Dep]
    gate_report: Annotated[str, Dep]
    metrics: Annotated[str, Metric]
    curve: Annotated[str, Plot(x="lr", y="loss")]


class OverfitConfig(StrictModel):
    allocation: Allocation
    model: ModelSpec
    train: TrainSettings
    steps: int = Field(..., ge=1)
    max_final_loss: float = Field(..., gt=0)
    tokens_dir: Annotated[str, Dep]
    gate_report: Annotated[str, Dep]
    metrics: Annotated[str, Metric]


class RankConfig(StrictModel):
    phase1_metrics: Annotated[list[str], Dep]
    top_k: int = Field(..., ge=1)
    #: the first phase-2 slots go to the per-axis winner (best share x best GLU), the rest to the
    #: joint ranking, skipping duplicates; False: the joint top k only
    axis_winner: bool = False
    out: Annotated[str, Out]
    metrics: Annotated[str, Metric]


class TaskSpec(StrictModel):
    name: str
    format: Literal["sst2", "rte", "mrpc", "boolq"]
    path: Annotated[str, Dep]
    max_examples: int | None = Field(None, ge=1)


class EvalSpec(StrictModel):
    tasks: list[TaskSpec] = Field(default_factory=list)
    latency_seq_lens: list[int] = Field(default_factory=lambda: [128, 512])
    latency_repeats: int = Field(5, ge=1)
    throughput_batch: int = Field(8, ge=1)
    throughput_seq_len: int = Field(128, ge=8)
    eval_batches: int = Field(8, ge=1)


class EvalStageConfig(StrictModel):
    model_dir: Annotated[str, Dep]
    tokens_dir: Annotated[str, Dep]
    #: its task files (``tasks[].path``) are deps too
    eval: EvalSpec
    seq_len: int
    batch_size: int
    threads: int | None = None
    metrics: Annotated[str, Metric]
    #: the folder that receives ``PERF_FILE`` (cached: the numbers depend on the machine)
    out_dir: Annotated[str, Out]


class ReportConfig(StrictModel):
    phase1_metrics: Annotated[list[str], Dep]
    ranking: Annotated[str, Dep]
    shapes: Annotated[str, Dep]
    #: the profile stage's folder (holding ``PROFILE_FILE``)
    profile_dir: Annotated[str, Dep]
    eval_metrics: Annotated[list[str], Dep]
    #: the phase-2 training metrics, in the order of ``eval_metrics`` (LR, why chosen, early stops)
    phase2_metrics: Annotated[list[str], Dep] = Field(default_factory=list)
    #: the eval stages' folders (each holding ``PERF_FILE``), in the order of ``eval_metrics``
    eval_dirs: Annotated[list[str], Dep]
    out_dir: Annotated[str, Committed]


class ShapesConfig(StrictModel):
    grid: list[Allocation]
    baseline: Allocation
    model: ModelSpec
    tokens_dir: Annotated[str, Dep]
    gate_report: Annotated[str, Dep]
    out: Annotated[str, Out]
    metrics: Annotated[str, Metric]


class ProfileConfig(StrictModel):
    """Latency/memory of every grid shape (random weights suffice: speed depends on shape only)."""

    shapes: Annotated[str, Dep]
    #: only its speed settings are used; the plan passes it with no tasks, so that task files
    #: (path deps of ``EvalSpec``) are not deps of this stage
    eval: EvalSpec
    threads: int | None = None
    #: the training batch and sequence length, at which the forward+backward peak memory is measured
    batch_size: int = Field(16, ge=1)
    seq_len: int = Field(64, ge=2)
    #: the folder that receives ``PROFILE_FILE``
    out_dir: Annotated[str, Out]
