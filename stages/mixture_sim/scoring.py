"""Scores of a simulator on one split and one target: fit quality, ranking quality, mixture choice.

Why the ranking check: practitioners use a mixture simulator to *choose* a mixture, so the
question that matters is not R² but "among mixtures trained at the same size and step, does the
simulator's favourite turn out to be the truly best one?". Rows are comparable when every
non-mixture feature (size, shape, step) is equal.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from stages.mixture_sim.configs import TableSchema


def fit_scores(true: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """R², MAE (sklearn) and Spearman rank correlation (scipy); NaN where undefined."""
    from scipy.stats import spearmanr
    from sklearn.metrics import mean_absolute_error, r2_score

    r2 = float(r2_score(true, pred, force_finite=False)) if len(true) >= 2 else math.nan
    if len(true) >= 2 and np.ptp(true) > 0 and np.ptp(pred) > 0:
        rho = float(spearmanr(true, pred).statistic)
    else:
        rho = math.nan
    return {"r2": r2, "mae": float(mean_absolute_error(true, pred)), "spearman": rho}


#: a test target whose most common value covers at least this share of the test rows is saturated
SATURATED_SHARE = 0.5


def degenerate_reason(true: np.ndarray) -> str | None:
    """Why a target's test side cannot be scored, or None.

    Constant: R² and Spearman are undefined. Saturated (one value, e.g. accuracy 1.0, on at least
    half the rows): the scores measure ties, not the simulator, and one such target once dragged
    a split's mean R² from -0.14 to -3.35. Either way the target leaves the aggregates.
    """
    true = np.asarray(true, dtype=np.float64)
    if len(true) < 3:
        return f"only {len(true)} test rows"
    if np.ptp(true) == 0:
        return f"constant on the test side ({true[0]:g})"
    values, counts = np.unique(true, return_counts=True)
    top = int(np.argmax(counts))
    if counts[top] / len(true) >= SATURATED_SHARE:
        return f"saturated: {counts[top]} of {len(true)} test rows equal {values[top]:g}"
    return None


def pooled_r2(true: np.ndarray, pred: np.ndarray, mean: np.ndarray, scale: np.ndarray) -> float:
    """R² of all (row, target) pairs at once, each target standardised by the *training* side.

    Why training statistics: a test side whose targets barely vary (late checkpoints) would
    otherwise inflate every error; and one pooled number cannot be dominated by one target's
    tiny test variance the way a mean of per-target R² can.
    """
    from sklearn.metrics import r2_score

    scale = np.where(scale > 0, scale, 1.0)
    zt, zp = (np.asarray(true) - mean) / scale, (np.asarray(pred) - mean) / scale
    if zt.size < 2:
        return math.nan
    return float(r2_score(zt.ravel(), zp.ravel(), force_finite=False))


def mixture_ranking(frame, schema: TableSchema, true: np.ndarray, pred: np.ndarray, better: str,
                    heldout: np.ndarray | None = None) -> dict[str, Any]:
    """Top-1 mixture choice within groups of comparable test rows, among held-out mixtures only.

    A group is the set of test rows sharing size, shape and step (all rows, for a table of final
    losses) with at least two distinct mixtures, counting only rows whose mixture is absent from
    training (``heldout``): re-ranking mixtures the simulator was trained on says nothing about
    choosing a new one. A hit: the row the simulator ranks best has the best true value.
    ``regret`` is the true value lost by following the simulator; ``chance`` the hit rate of a
    random pick.
    """
    keys = schema.context_columns
    sign = 1.0 if better == "lower" else -1.0
    hits, regrets, chance = [], [], []
    work = frame[keys + schema.domains].reset_index(drop=True)
    keep = np.ones(len(work), dtype=bool) if heldout is None else np.asarray(heldout, dtype=bool)
    work, true, pred = work[keep].reset_index(drop=True), np.asarray(true)[keep], np.asarray(pred)[keep]
    groups = work.groupby(keys, sort=True).indices.items() if keys else [((), np.arange(len(work)))]
    for _, idx in groups:
        if len(work.loc[idx, schema.domains].drop_duplicates()) < 2:
            continue
        t, p = sign * true[idx], sign * pred[idx]
        picked = int(np.argmin(p))
        best = float(np.min(t))
        hits.append(bool(np.isclose(t[picked], best)))
        regrets.append(float(t[picked] - best))
        chance.append(float(np.isclose(t, best).sum() / len(t)))
    n = len(hits)
    return {
        "groups": n,
        "hits": int(sum(hits)),
        "hit_rate": float(np.mean(hits)) if n else math.nan,
        "chance": float(np.mean(chance)) if n else math.nan,
        "regret": float(np.mean(regrets)) if n else math.nan,
    }
