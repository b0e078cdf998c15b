"""Figures of the scaling report: frontier, IsoFLOP profiles, loss vs LR per width, LR optima.

Each function takes plain data (frames, dicts read from the stages' outputs) and returns a
matplotlib figure; the report stage saves them atomically. The Agg backend is forced so a
report renders identically on a headless CI machine.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"figure.dpi": 100, "font.size": 8})
    return plt


def _grid(plt, n: int, width: float = 4.2, height: float = 3.4):
    cols = min(3, max(1, n))
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    for ax in axes.ravel()[n:]:
        ax.set_visible(False)
    return fig, axes.ravel()


def frontier_figure(tables: dict[str, pd.DataFrame], fits: list[dict]):
    """Loss vs compute per table: every point, the Approach 1 optima, the Approach 3 frontier."""
    plt = _plt()
    names = sorted(tables)
    fig, axes = _grid(plt, len(names))
    for ax, name in zip(axes, names):
        frame = tables[name]
        c = 6 * frame["N"] * frame["D"]
        sc = ax.scatter(c, frame["loss"], c=np.log10(frame["N"]), s=6, cmap="viridis", alpha=0.6)
        fig.colorbar(sc, ax=ax, label="log10 N")
        for fit in fits:
            m = fit["metrics"]
            if m["table"] != name or m["parameters"] != "total" or m.get("status") != "ok":
                continue  # a fit that is not determined is not drawn
            if m["kind"] == "envelope" and "optima" in fit:
                ax.plot(fit["optima"]["C"], fit["optima"]["loss"], "r^", ms=5, label=f"{m['approach']} optima")
            if m["kind"] == "parametric":
                v = {k: m["fit"][k]["value"] for k in ("E", "A", "B", "alpha", "beta", "a", "b", "G")}
                grid = np.logspace(np.log10(c.min()), np.log10(c.max()), 100)
                n_opt = v["G"] * (grid / 6) ** v["a"]
                d_opt = grid / (6 * n_opt)
                ax.plot(grid, v["E"] + v["A"] / n_opt ** v["alpha"] + v["B"] / d_opt ** v["beta"], "k-",
                        lw=1.2, label=f"{m['approach']} compute-optimal L(C)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("C = 6ND (FLOPs)")
        ax.set_ylabel("loss")
        ax.set_title(name)
        ax.legend(fontsize=6, loc="upper right")
    fig.suptitle("Loss vs compute: runs, Approach 1 envelope optima, Approach 3 frontier")
    fig.tight_layout()
    return fig


def isoflop_figure(fits: list[dict]):
    """Approach 2: loss vs N at each budget, the fitted parabolas and their vertices."""
    plt = _plt()
    chosen = [f for f in fits if f["metrics"]["kind"] == "isoflop" and f["metrics"]["parameters"] == "total"
              and f["metrics"].get("status") == "ok"]
    fig, axes = _grid(plt, max(1, len(chosen)))
    for ax, fit in zip(axes, chosen):
        points = pd.DataFrame(fit.get("profiles", []))
        optima = fit.get("optima", {})
        budgets = sorted(points["budget"].unique()) if len(points) else []
        colors = plt.cm.plasma(np.linspace(0, 0.9, max(1, len(budgets))))
        for color, budget in zip(colors, budgets):
            sub = points[points["budget"] == budget]
            ax.plot(sub["N"], sub["loss"], "o", ms=3, color=color)
        keys = ("C", "p0", "p1", "p2", "N", "loss", "N_lo", "N_hi")
        for c, p0, p1, p2, n_opt, loss, lo, hi in zip(*(optima.get(k, []) for k in keys)):
            x = np.linspace(np.log(lo), np.log(hi), 60)  # only over the sizes the parabola was fitted to
            color = colors[budgets.index(min(budgets, key=lambda b: abs(math.log(b / c))))] if budgets else "k"
            ax.plot(np.exp(x), p0 + p1 * x + p2 * x**2, "-", lw=0.9, color=color)
            ax.plot([n_opt], [loss], "k*", ms=7)
        ax.set_xscale("log")
        ax.set_xlabel("N (parameters)")
        ax.set_ylabel("loss")
        ax.set_title(f"{fit['metrics']['table']}: IsoFLOP profiles ({len(optima.get('C', []))} minima)")
    fig.suptitle("Approach 2: one parabola in log N per compute budget (stars: minima)")
    fig.tight_layout()
    return fig


def lr_figure(sweep: str, results: dict[str, pd.DataFrame]):
    """Final dev loss vs LR, one line per width; one panel per parametrisation."""
    plt = _plt()
    params = sorted(results)
    fig, axes = plt.subplots(1, len(params), figsize=(4.6 * len(params), 3.6), squeeze=False, sharey=True)
    for ax, parametrization in zip(axes[0], params):
        frame = results[parametrization]
        widths = sorted(frame["width"].unique())
        colors = plt.cm.viridis(np.linspace(0, 0.9, len(widths)))
        for color, width in zip(colors, widths):
            sub = frame[frame["width"] == width].sort_values("lr")
            finite = np.isfinite(sub["dev_loss"])
            ax.plot(sub["lr"][finite], sub["dev_loss"][finite], "o-", ms=3, color=color, label=f"width {width}")
            if finite.any():
                best = sub[finite].loc[sub[finite]["dev_loss"].idxmin()]
                ax.plot([best["lr"]], [best["dev_loss"]], "*", ms=9, color=color)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("learning rate")
        ax.set_title(f"{sweep}: {'μP' if parametrization == 'mup' else 'SP'}")
        ax.legend(fontsize=6)
    axes[0][0].set_ylabel("final dev loss")
    fig.tight_layout()
    return fig


def transfer_figure(metrics: dict, curves: pd.DataFrame):
    """Left: seed-mean loss vs LR per width (SP, μP); right: the optimum per width with its CI."""
    plt = _plt()
    params = [p for p in ("sp", "mup") if p in curves["parametrization"].unique()]
    fig, axes = plt.subplots(1, len(params) + 1, figsize=(4.4 * (len(params) + 1), 3.6), squeeze=False)
    axes = axes[0]
    for ax, p in zip(axes, params):
        sub = curves[curves["parametrization"] == p]
        widths = sorted(sub["width"].unique())
        colors = plt.cm.viridis(np.linspace(0, 0.9, len(widths)))
        for color, width in zip(colors, widths):
            w = sub[(sub["width"] == width) & np.isfinite(sub["dev_loss"])]
            for _, seed in w.groupby("seed"):
                ax.plot(seed["lr"], seed["dev_loss"], "-", lw=0.5, alpha=0.35, color=color)
            mean = w.groupby("lr")["dev_loss"].mean()
            ax.plot(mean.index, mean.to_numpy(), "o-", ms=3, color=color, label=f"width {width}")
            entry = metrics[p]["widths"].get(str(width), {})
            if entry.get("determined"):
                ax.axvline(entry["lr"], color=color, lw=0.8, ls=":")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("learning rate")
        ax.set_ylabel("final dev loss (thin: seeds; dots: mean)")
        ax.set_title(f"{metrics['sweep']}: {'μP' if p == 'mup' else 'SP'}")
        ax.legend(fontsize=6)
    ax = axes[-1]
    for p, style in (("sp", "s--"), ("mup", "o-")):
        if p not in metrics:
            continue
        rows = sorted((int(w), e) for w, e in metrics[p]["widths"].items() if e.get("determined"))
        if not rows:
            continue
        w = np.array([r[0] for r in rows], float)
        y = np.array([r[1]["log2_lr"] for r in rows])
        lo = y - np.array([r[1]["log2_lr_ci"][0] for r in rows])
        hi = np.array([r[1]["log2_lr_ci"][1] for r in rows]) - y
        shift = metrics[p]["shift"]
        label = f"{'μP' if p == 'mup' else 'SP'}" + (f" (shift {shift['log2']:+.2f} log2)" if shift.get("determined") else "")
        ax.errorbar(w, y, yerr=[lo, hi], fmt=style, ms=4, capsize=3, label=label)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("width")
    ax.set_ylabel("log2 optimal LR (95 % CI over seeds)")
    ax.set_title("Optimal LR vs width")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
