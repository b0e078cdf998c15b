"""Typed configs of the scaling stages that build and train language models: sweeps, coord check.

Apart from :mod:`stages.scaling.configs` because these import the model specs and the shared
trainer's settings (:mod:`harness.settings`), and a config's module is a code dependency of its
stages: kept here, an edit of ``models.py`` reruns the sweeps and coord checks, not the fits.
Pydantic only at import time (no torch), so planning stays fast.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from harness.schema import Dep, Metric, Out, StrictModel
from harness.settings import TrainSettings
from stages.scaling.models import ModelSpec  # pydantic only at import time: no torch

Positive = Annotated[float, Field(gt=0)]


class SweepTrain(TrainSettings):
    """The trainer settings of every run of a sweep: :class:`TrainSettings` less the learning rate.

    The spec's ``train:`` section and the sweep stage's config are this model, so every field and
    default is the trainer's own. What differs: ``lr`` stays open, because each run of a sweep
    takes one of ``sweeps.<s>.lrs``; ``micro_batch_size`` is measured per width against the
    ``batching`` budget (so it may not be set either); ``seed`` is the spec's top-level ``seed``,
    filled in by the plan. :meth:`for_run` gives the :class:`TrainSettings` of one run.
    """

    lr: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _left_open(self) -> "SweepTrain":
        if self.lr is not None:
            raise ValueError("train.lr: each sweep run takes its lr from sweeps.<name>.lrs; leave it out here")
        if self.micro_batch_size is not None:
            raise ValueError("train.micro_batch_size: the sweep measures it per width (batching.memory_budget_mb)")
        return self

    def for_run(self, lr: float, micro_batch_size: int) -> TrainSettings:
        """The settings of the run at ``lr`` (validated; warmup capped at the run's length)."""
        return TrainSettings.model_validate(self.model_dump() | {
            "lr": lr, "micro_batch_size": micro_batch_size, "warmup_steps": min(self.warmup_steps, self.steps)})


class BatchingSpec(StrictModel):
    """Memory budget a micro-batch must fit (on CPU: the measured bytes of a training step)."""

    memory_budget_mb: float = Field(..., gt=0)


class SweepConfig(StrictModel):
    name: str
    parametrization: Literal["sp", "mup"]
    model: ModelSpec
    widths: list[Annotated[int, Field(ge=1)]] = Field(..., min_length=1)
    #: one grid for every width, or a grid per width
    lrs: list[Positive] | dict[int, list[Positive]]
    #: ``train.seed`` seeds the initial draw of every width and the batches of every run
    train: SweepTrain
    batching: BatchingSpec
    corpus_dir: Annotated[str, Dep]
    out_dir: Annotated[str, Out]
    metrics: Annotated[str, Metric]


    def lrs_at(self, width: int) -> list[float]:
        return self.lrs[width] if isinstance(self.lrs, dict) else self.lrs


class CoordConfig(StrictModel):
    """μP coordinate check: activation sizes per module over the first steps, across widths."""

    name: str
    model: ModelSpec
    widths: list[Annotated[int, Field(ge=1)]] = Field(..., min_length=3)
    steps: int = Field(4, ge=1)
    lr: Positive = 1e-2
    batch_size: int = Field(8, ge=1)
    seq_len: int = Field(32, ge=2)
    seeds: int = Field(1, ge=1)
    #: μP passes when no module's log2 size grows faster than this per doubling of width
    flat_tolerance: float = Field(0.3, gt=0)
    #: torch intra-op threads (see TrainSettings.threads)
    cpu_threads: int = Field(1, ge=1)
    corpus_dir: Annotated[str, Dep]
    out_dir: Annotated[str, Out]
    metrics: Annotated[str, Metric]
