"""One-batch overfit sanity check: a correct model/loss/optimizer memorises a single batch.

Fails the stage (and so the DAG) when the final loss stays above ``max_final_loss``: cheaper to
learn that here than after a sweep of 12 runs.
"""

from __future__ import annotations

from harness.io import write_json
from harness.trainer import overfit_one_batch
from stages.param_alloc.common import gated_model
from stages.param_alloc.configs import OverfitConfig


class OverfitFailed(RuntimeError):
    pass


def run(cfg: OverfitConfig) -> None:
    model, tokens, *_ = gated_model(cfg.allocation, cfg.model, cfg.tokens_dir, cfg.gate_report, cfg.train.seed,
                                    cfg.train.threads)
    losses = overfit_one_batch(model, tokens["train"], cfg.train, cfg.steps)
    print(f"overfit: loss {losses[0]:.3f} -> {losses[-1]:.4f} in {cfg.steps} steps", flush=True)
    if losses[-1] > cfg.max_final_loss:
        raise OverfitFailed(f"one-batch overfit reached loss {losses[-1]:.4f} > {cfg.max_final_loss}: "
                            "the model cannot memorise one batch; check the lr, the loss and the data")
    write_json(cfg.metrics, {"initial_loss": losses[0], "final_loss": losses[-1], "steps": cfg.steps})
