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


def mixture_ranking(frame, schema: TableSchema, true: np.ndarray, pred: np.ndarray, better: str) -> dict[str, Any]:
    """Top-1 mixture choice within groups of comparable test rows.

    A group is the set of test rows sharing size, shape and step with at least two distinct
    mixtures. A hit: the row the simulator ranks best has the best true value. ``regret`` is the
    true value lost by following the simulator; ``chance`` the hit rate of a random pick.
    """
    keys = [schema.size, *schema.shape, schema.step]
    sign = 1.0 if better == "lower" else -1.0
    hits, regrets, chance = [], [], []
    work = frame[keys + schema.domains].reset_index(drop=True)
    for _, idx in work.groupby(keys, sort=True).indices.items():
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
