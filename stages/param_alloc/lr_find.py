"""LR range test on the baseline allocation: loss vs exponentially increasing LR (plot + suggestion).

The suggested LR is the one with the steepest loss descent, divided by 10 rather than the
minimum-loss LR, which sits at the edge of divergence.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from harness.io import write_csv, write_json
from harness.trainer import lr_range_test
from stages.param_alloc.common import gated_model
from stages.param_alloc.configs import LrFindConfig


def suggest_lr(curve: list[dict[str, float]]) -> float:
    lrs = np.array([c["lr"] for c in curve])
    losses = pd.Series([c["loss"] for c in curve]).ewm(alpha=0.3).mean().to_numpy()
    grads = np.gradient(losses, np.log(lrs))
    return float(lrs[int(np.argmin(grads))])


def run(cfg: LrFindConfig) -> None:
    model, tokens, *_ = gated_model(cfg.allocation, cfg.model, cfg.tokens_dir, cfg.gate_report, cfg.train.seed,
                                    cfg.train.threads)
    curve = lr_range_test(model, tokens["train"], cfg.train, cfg.lr_min, cfg.lr_max, cfg.steps)
    best = min(curve, key=lambda c: c["loss"])
    steepest = suggest_lr(curve)
    write_csv(cfg.curve, pd.DataFrame(curve))
    write_json(cfg.metrics, {"min_loss": best["loss"], "lr_at_min_loss": best["lr"],
                             "lr_steepest": steepest, "configured_lr": cfg.train.lr, "points": len(curve)})
    print(f"steepest descent at lr={steepest:.2e}; min loss {best['loss']:.3f} at lr={best['lr']:.2e}")
