"""Figures of the mixture_sim report: R² heatmaps (split x target) and predicted-vs-true grids."""

from __future__ import annotations

import math
from pathlib import Path

from harness.io import save_figure


def _short(target: str) -> str:
    """Compact target labels: 'eval/RedPajamaGithub/CrossEntropyLoss' -> 'eval/Github/CE'."""
    return target.replace("RedPajama", "").replace("CrossEntropyLoss", "CE").replace("downstream/", "")


def r2_heatmaps(scores, regressors: list[str], targets: list[str], target: Path) -> Path:
    """One panel per regressor: rows = splits, columns = targets, colour = test R² (clipped at -1)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    fig, axes = plt.subplots(len(regressors), 1, figsize=(1.0 * len(targets) + 3, 1.6 * len(regressors) + 1.5),
                             squeeze=False)
    for ax, reg in zip(axes[:, 0], regressors):
        part = scores[scores.regressor == reg].pivot(index="split", columns="target", values="r2")
        part = part.reindex(columns=targets).rename(columns=_short)
        sns.heatmap(part.clip(lower=-1.0), ax=ax, vmin=-1.0, vmax=1.0, cmap="RdBu", annot=True, fmt=".2f",
                    cbar=False, annot_kws={"fontsize": 7})
        ax.set_title(f"{reg}: test R²", fontsize=9)
        ax.set_xlabel("")
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    save_figure(target, fig)
    plt.close(fig)
    return target


def pred_vs_true(preds, split: str, regressor: str, targets: list[str], target: Path) -> Path:
    """Scatter of predicted against true test values, one panel per target, identity line dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = 4
    rows = math.ceil(len(targets) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.0 * cols, 2.7 * rows), squeeze=False)
    part = preds[(preds.split == split) & (preds.regressor == regressor)]
    for ax, name in zip(axes.flat, targets):
        sub = part[part.target == name]
        ax.scatter(sub["true"], sub["pred"], s=12, alpha=0.7)
        lo = float(min(sub["true"].min(), sub["pred"].min()))
        hi = float(max(sub["true"].max(), sub["pred"].max()))
        ax.plot([lo, hi], [lo, hi], "k--", linewidth=0.8)
        ax.set_title(_short(name), fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(targets):]:
        ax.axis("off")
    fig.suptitle(f"split {split}: {regressor} (selected by CV), predicted vs true", fontsize=10)
    fig.supxlabel("true", fontsize=8)
    fig.supylabel("predicted", fontsize=8)
    fig.tight_layout()
    save_figure(target, fig)
    plt.close(fig)
    return target
