"""Figures of the mixture_sim report: R² heatmaps (split x target) and predicted-vs-true grids."""

from __future__ import annotations

import math
from pathlib import Path

from harness.io import save_figure


def _short(target: str) -> str:
    """Compact target labels: 'eval/RedPajamaGithub/CrossEntropyLoss' -> 'eval/Github/CE'."""
    return target.replace("RedPajama", "").replace("CrossEntropyLoss", "CE").replace("downstream/", "")


def r2_heatmaps(scores, regressors: list[str], targets: list[str], target: Path) -> Path:
    """One panel per regressor: rows = targets, columns = splits, colour = test R² (clipped at -1)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    splits = list(dict.fromkeys(scores.split))
    fig, axes = plt.subplots(1, len(regressors), figsize=(0.75 * len(splits) * len(regressors) + 2.5,
                                                           0.32 * len(targets) + 1.4), squeeze=False, sharey=True)
    for i, (ax, reg) in enumerate(zip(axes[0], regressors)):
        part = scores[scores.regressor == reg].pivot(index="target", columns="split", values="r2")
        part = part.reindex(index=targets, columns=splits).rename(index=_short)
        sns.heatmap(part.clip(lower=-1.0), ax=ax, vmin=-1.0, vmax=1.0, cmap="RdBu", annot=part.to_numpy(), fmt=".2f",
                    cbar=False, annot_kws={"fontsize": 6})
        ax.set_title(reg, fontsize=8)
        ax.set_xlabel("split", fontsize=7)
        ax.set_ylabel("" if i else "target", fontsize=7)
        ax.tick_params(labelsize=6)
    fig.suptitle("test R² per split and target (colour clipped at -1, numbers not)", fontsize=9)
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
