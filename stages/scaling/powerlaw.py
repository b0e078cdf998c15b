"""Power-law fits in log-log space and bootstrap summaries, shared by the three approaches."""

from __future__ import annotations

import numpy as np


def fit_power_law(c: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Least squares of log y = exponent · log c + log coef; returns (exponent, coef).

    Why ordinary least squares in log space: it is what Hoffmann et al. (2022) do for the
    N_opt(C) and D_opt(C) lines of Approaches 1 and 2; NaN when fewer than two points remain.
    """
    c, y = np.asarray(c, float), np.asarray(y, float)
    ok = np.isfinite(c) & np.isfinite(y) & (c > 0) & (y > 0)
    if ok.sum() < 2 or np.ptp(np.log(c[ok])) == 0:
        return float("nan"), float("nan")
    slope, intercept = np.polyfit(np.log(c[ok]), np.log(y[ok]), 1)
    return float(slope), float(np.exp(intercept))


def bootstrap_weights(n_units: int, samples: int, seed: int) -> np.ndarray:
    """(samples, n_units) multinomial counts: each row resamples the units (runs) with replacement."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(n_units, np.full(n_units, 1.0 / n_units), size=samples).astype(np.float64)


def summarize(point: dict[str, float], replicates: list[dict[str, float]], level: float) -> dict[str, dict]:
    """Value, percentile CI and bootstrap SE for every key of ``point``.

    Replicates where a quantity is undefined (NaN: e.g. too few IsoFLOP minima survived) are
    left out of that quantity's interval and counted in ``n_failed``.
    """
    lo_q, hi_q = 50 * (1 - level), 50 * (1 + level)
    out: dict[str, dict] = {}
    for key, value in point.items():
        boot = np.array([r.get(key, np.nan) for r in replicates], dtype=float)
        good = boot[np.isfinite(boot)]
        entry: dict = {"value": float(value), "n_boot": int(len(good)), "n_failed": int(len(boot) - len(good))}
        if len(good) >= 2:
            entry.update(ci_low=float(np.percentile(good, lo_q)), ci_high=float(np.percentile(good, hi_q)),
                         se=float(good.std(ddof=1)))
        else:
            entry.update(ci_low=float("nan"), ci_high=float("nan"), se=float("nan"))
        out[key] = entry
    return out
