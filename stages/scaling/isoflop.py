"""Chinchilla Approaches 1 (minimum-loss envelope) and 2 (IsoFLOP parabolas) on loss profiles.

Both read a :class:`~stages.scaling.profiles.Profiles` matrix (runs x compute budgets) and a
weight per run (1 for the point estimate, multinomial counts for a bootstrap replicate), and
end with the same two power laws N_opt = k_N C^a and D_opt = k_D C^b, fitted by least squares in
log space. D_opt is C / (6 N_opt), the 6ND accounting the table was built with.
"""

from __future__ import annotations

import numpy as np

from stages.scaling.powerlaw import fit_power_law
from stages.scaling.profiles import Profiles


def _weights(prof: Profiles, weights: np.ndarray | None) -> np.ndarray:
    return np.ones(len(prof.runs)) if weights is None else np.asarray(weights, float)


def envelope_minima(prof: Profiles, weights: np.ndarray | None = None, min_runs: int = 2) -> dict[str, np.ndarray]:
    """Approach 1: at each budget the run with the lowest loss is the compute-optimal one.

    A budget whose lowest-loss run is the smallest or the largest size present there is left
    out: the optimum may lie beyond the sizes trained, so that point only bounds it.
    """
    w = _weights(prof, weights)
    present = np.isfinite(prof.loss) & (w[:, None] > 0)
    enough = present.sum(0) >= min_runs
    masked = np.where(present, prof.loss, np.inf)
    best = masked.argmin(0)
    n_col = np.where(present, prof.n[:, None], np.nan)
    with np.errstate(invalid="ignore"):
        lo, hi = np.nanmin(np.where(enough, n_col, np.inf), 0), np.nanmax(np.where(enough, n_col, -np.inf), 0)
    interior = enough & (prof.n[best] > lo) & (prof.n[best] < hi)
    cols = np.flatnonzero(interior)
    rows = best[cols]
    c = prof.compute[rows, cols]
    n = prof.n[rows]
    return {"C": c, "N": n, "D": c / (6.0 * n), "loss": prof.loss[rows, cols], "run": prof.runs[rows]}


def isoflop_minima(prof: Profiles, weights: np.ndarray | None = None, min_points: int = 3,
                   fit_points: int | None = None) -> dict[str, np.ndarray]:
    """Approach 2: per budget, loss = p0 + p1 x + p2 x² in x = log N; the vertex is N_opt.

    A budget is used only if its parabola opens upwards and its vertex lies within the sizes
    that were trained at that budget: an extrapolated minimum is a guess, not a measurement.
    ``fit_points`` limits the parabola to that many sizes nearest (in log N) to the size with the
    lowest loss: a parabola is a local approximation, and over a decade or more of N the
    profile is visibly asymmetric, which drags the vertex. Replicate weights enter as
    least-squares weights (a run drawn twice counts twice).
    """
    w = _weights(prof, weights)
    out = {k: [] for k in ("C", "N", "D", "loss", "p0", "p1", "p2", "N_lo", "N_hi")}
    for j, budget in enumerate(prof.budgets):
        sel = np.flatnonzero(np.isfinite(prof.loss[:, j]) & (w > 0))
        if fit_points is not None and len(np.unique(prof.n[sel])) > fit_points:
            x_all = np.log(prof.n[sel])
            centre = x_all[np.argmin(prof.loss[sel, j])]
            sizes = np.unique(x_all)
            keep = sizes[np.argsort(np.abs(sizes - centre), kind="stable")[:fit_points]]
            sel = sel[np.isin(x_all, keep)]
        x = np.log(prof.n[sel])
        if len(np.unique(x)) < min_points:
            continue
        p2, p1, p0 = np.polyfit(x, prof.loss[sel, j], 2, w=np.sqrt(w[sel]))
        if p2 <= 0:
            continue
        vertex = -p1 / (2 * p2)
        if not x.min() <= vertex <= x.max():
            continue
        n_opt = float(np.exp(vertex))
        for key, value in (("C", budget), ("N", n_opt), ("D", budget / (6 * n_opt)),
                           ("loss", p0 + p1 * vertex + p2 * vertex**2), ("p0", p0), ("p1", p1), ("p2", p2),
                           ("N_lo", np.exp(x.min())), ("N_hi", np.exp(x.max()))):
            out[key].append(float(value))
    return {k: np.asarray(v) for k, v in out.items()}


def exponents(minima: dict[str, np.ndarray]) -> dict[str, float]:
    """a, b and coefficients of N_opt = k_N C^a, D_opt = k_D C^b from the per-budget optima."""
    a, k_n = fit_power_law(minima["C"], minima["N"])
    b, k_d = fit_power_law(minima["C"], minima["D"])
    return {"a": a, "b": b, "k_N": k_n, "k_D": k_d}
