"""Typed configs of the param_alloc stages: the only thing stage code receives.

Kept in one light module (no torch import) so planning and compiling stay fast.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from harness.schema import StrictModel
from harness.trainer import EarlyStopConfig, TrainConfig


class CorpusFiles(StrictModel):
    """Where the text comes from. A file listed for several splits is divided among them by article."""

    kind: Literal["files"] = "files"
    files: dict[Literal["train", "dev", "test"], str]
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
    out_dir: str


class TokenizerConfig(StrictModel):
    vocab_size: int = Field(..., ge=260, le=65535)  # ids are stored as uint16
    min_frequency: int = Field(2, ge=1)


class TokenizeConfig(StrictModel):
    corpus_dir: str
    tokenizer: TokenizerConfig
    out_dir: str


class GateConfig(StrictModel):
    corpus_dir: str
    tokens_dir: str
    report: str


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


class Allocation(StrictModel):
    embed_share: float = Field(..., gt=0, lt=1)
    glu: float = Field(..., gt=0)

    @property
    def tag(self) -> str:
        return f"e{round(self.embed_share * 100)}_g{str(self.glu).replace('.', '_')}"


class TrainStageConfig(StrictModel):
    """One training run: allocation fixed, or chosen at run time from a ranking file."""

    allocation: Allocation | None = None
    ranking_file: str | None = None
    rank: int | None = None
    model: ModelSpec
    train: TrainConfig
    early_stop: EarlyStopConfig | None = None
    tokens_dir: str
    gate_report: str
    out_dir: str
    metrics: str
    curve: str


class LrFindConfig(StrictModel):
    allocation: Allocation
    model: ModelSpec
    train: TrainConfig
    lr_min: float = Field(..., gt=0)
    lr_max: float = Field(..., gt=0)
    steps: int = Field(..., ge=5)
    tokens_dir: str
    gate_report: str
    metrics: str
    curve: str


class OverfitConfig(StrictModel):
    allocation: Allocation
    model: ModelSpec
    train: TrainConfig
    steps: int = Field(..., ge=1)
    max_final_loss: float = Field(..., gt=0)
    tokens_dir: str
    gate_report: str
    metrics: str


class RankConfig(StrictModel):
    phase1_metrics: list[str]
    top_k: int = Field(..., ge=1)
    out: str
    metrics: str


class TaskSpec(StrictModel):
    name: str
    format: Literal["sst2", "rte", "mrpc", "boolq"]
    path: str
    max_examples: int | None = Field(None, ge=1)


class EvalSpec(StrictModel):
    tasks: list[TaskSpec] = Field(default_factory=list)
    latency_seq_lens: list[int] = Field(default_factory=lambda: [128, 512])
    latency_repeats: int = Field(5, ge=1)
    throughput_batch: int = Field(8, ge=1)
    throughput_seq_len: int = Field(128, ge=8)
    eval_batches: int = Field(8, ge=1)


class EvalStageConfig(StrictModel):
    model_dir: str
    tokens_dir: str
    eval: EvalSpec
    seq_len: int
    batch_size: int
    threads: int | None = None
    metrics: str
    perf: str


class ReportConfig(StrictModel):
    phase1_metrics: list[str]
    profile: str
    ranking: str
    eval_metrics: list[str]
    eval_perf: list[str]
    shapes: str
    out_dir: str


class ShapesConfig(StrictModel):
    grid: list[Allocation]
    baseline: Allocation
    model: ModelSpec
    tokens_dir: str
    out: str
    metrics: str


class ProfileConfig(StrictModel):
    """Latency/memory of every grid shape (random weights suffice: speed depends on shape only)."""

    shapes: str
    eval: EvalSpec
    threads: int | None = None
    out: str
