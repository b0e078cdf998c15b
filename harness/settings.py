"""How a language model is trained, declared: the settings models of :mod:`harness.trainer`.

Why apart from the trainer: every study's ``configs.py`` embeds these models, and whatever a
config module imports is a code dep of every stage built from it. Declared in the training loop's
module, they made gates, tables, fits and reports depend on ``harness/trainer.py``, so an edit
of ``train_lm`` reran stages that never train. This module imports only :mod:`harness.schema`
(and pydantic): keep it that way (tests/test_stage_deps_layering.py). :mod:`harness.trainer`
re-exports both names, so ``from harness.trainer import TrainSettings`` keeps working.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from harness.schema import StrictModel


class TrainSettings(StrictModel):
    """How a language model is trained: the one declaration every study uses (spec and stage).

    Studies embed it in their specs (or derive from it with `model_copy(update=...)`), never
    re-declare its fields, so defaults cannot disagree between studies.
    """

    steps: int = Field(..., ge=1)
    #: sequences per optimizer step (the effective batch)
    batch_size: int = Field(..., ge=1)
    #: sequences per forward pass; batch_size must be a multiple; None means batch_size
    micro_batch_size: int | None = Field(None, ge=1)
    seq_len: int = Field(..., ge=2)
    lr: float = Field(..., gt=0)
    min_lr_ratio: float = Field(0.1, ge=0, le=1)
    warmup_steps: int = Field(0, ge=0)
    weight_decay: float = Field(0.1, ge=0)
    beta1: float = Field(0.9, gt=0, lt=1)
    beta2: float = Field(0.95, gt=0, lt=1)
    grad_clip: float = Field(1.0, ge=0)
    seed: int = 0
    #: evaluate on dev every N steps (0: only at the end)
    eval_every: int = Field(0, ge=0)
    eval_batches: int = Field(4, ge=1)
    checkpoint_every: int = Field(50, ge=1)
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    #: torch intra-op threads on CPU (None: torch's default); part of the config for determinism
    threads: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _micro_divides(self) -> "TrainSettings":
        if self.micro_batch_size and self.batch_size % self.micro_batch_size:
            raise ValueError(f"batch_size {self.batch_size} is not a multiple of micro_batch_size {self.micro_batch_size}")
        return self

    @property
    def grad_accum(self) -> int:
        return self.batch_size // (self.micro_batch_size or self.batch_size)


class EarlyStopConfig(StrictModel):
    """Stop a run whose dev perplexity stays >= ``delta_ppl`` above its best for ``window_tokens``."""

    delta_ppl: float = Field(0.5, gt=0)
    window_tokens: int = Field(..., ge=1)
