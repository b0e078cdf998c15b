"""Losses of every run at a set of compute budgets: the common input of Approaches 1 and 2.

A table reaches the approaches in one of three shapes, and ``mode`` says which:

* ``column``: the source already states each run's budget (Porian's IsoFLOP design, ``budget``);
* ``cluster``: one final point per run, budgets are a known list (Chinchilla's IsoFLOP budgets)
  and a point belongs to the budget within ``tolerance_dex`` of its C = 6 N D;
* ``interpolate``: runs are training curves; each run's log-loss is interpolated linearly in
  log C at every budget its curve covers (no extrapolation). Budgets default to ``n`` log-spaced
  values over the range that at least ``min_runs`` curves cover.

``auto`` picks ``column`` when a ``budget`` column exists, ``cluster`` when every run has a
single point, else ``interpolate``. The result is a (runs x budgets) loss matrix with NaN where
a run has no value; Approach 1 takes column minima, Approach 2 fits a parabola per column.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass
class Profiles:
    mode: str
    budgets: np.ndarray  # (m,) nominal compute of each budget
    runs: np.ndarray  # (r,) run ids
    n: np.ndarray  # (r,) parameters of each run
    loss: np.ndarray  # (r, m) loss of run i at budget j (NaN: absent)
    compute: np.ndarray  # (r, m) the compute of that value (the point's own C in column/cluster modes)


def resolve_mode(frame: pd.DataFrame, mode: str) -> str:
    if mode != "auto":
        return mode
    if "budget" in frame.columns and frame["budget"].notna().all():
        return "column"
    if frame.groupby("run").size().max() == 1:
        return "cluster"
    return "interpolate"


def build_profiles(frame: pd.DataFrame, mode: str = "auto", values: list[float] | None = None,
                   tolerance_dex: float = 0.05, n: int = 12, min_runs: int = 3) -> Profiles:
    """``frame`` has run, N, D, loss and C (= 6 N D with the parameter count the fit uses)."""
    mode = resolve_mode(frame, mode)
    frame = frame.sort_values(["run", "C"], kind="stable")
    runs = np.array(sorted(frame["run"].unique()))
    n_of = frame.groupby("run", sort=True)["N"].first().reindex(runs).to_numpy(float)
    if mode == "interpolate":
        budgets = np.asarray(values, float) if values else _covered_grid(frame, n, min_runs)
        loss, compute = _interpolate(frame, runs, budgets)
    elif mode in ("column", "cluster"):
        if mode == "column":
            if "budget" not in frame.columns:
                raise ValueError("budget mode `column` needs a `budget` column in the table")
            budgets = np.array(sorted(frame["budget"].unique()), float)
            member = np.searchsorted(budgets, frame["budget"].to_numpy(float))
            dist = np.zeros(len(frame))
        else:
            if not values:
                raise ValueError("budget mode `cluster` needs the list of budgets (`budgets.values`)")
            budgets = np.sort(np.asarray(values, float))
            gap = np.abs(np.log10(frame["C"].to_numpy(float))[:, None] - np.log10(budgets)[None, :])
            member = gap.argmin(1)
            dist = gap.min(1)
            member = np.where(dist <= tolerance_dex, member, -1)
        loss, compute = _assign(frame, runs, budgets, member, dist)
    else:
        raise ValueError(f"unknown budget mode {mode!r}; expected auto, column, cluster or interpolate")
    return Profiles(mode=mode, budgets=budgets, runs=runs, n=n_of, loss=loss, compute=compute)


def _assign(frame, runs, budgets, member, dist):
    loss = np.full((len(runs), len(budgets)), np.nan)
    compute = np.full_like(loss, np.nan)
    best = np.full_like(loss, np.inf)
    row = np.searchsorted(runs, frame["run"].to_numpy())
    for i, j, d, value, c in zip(row, member, dist, frame["loss"].to_numpy(float), frame["C"].to_numpy(float)):
        if j >= 0 and d < best[i, j]:  # a run with several points in one budget: the nearest one
            best[i, j], loss[i, j], compute[i, j] = d, value, c
    return loss, compute


def _covered_grid(frame: pd.DataFrame, n: int, min_runs: int) -> np.ndarray:
    """``n`` log-spaced budgets over the span covered by at least ``min_runs`` curves."""
    span = frame.groupby("run")["C"].agg(["min", "max"])
    span = span[span["max"] > span["min"]]
    if span.empty:
        return np.array([])
    probe = np.logspace(np.log10(span["min"].min()), np.log10(span["max"].max()), 400)
    covered = ((span["min"].to_numpy()[:, None] <= probe[None, :]) &
               (span["max"].to_numpy()[:, None] >= probe[None, :])).sum(0)
    ok = probe[covered >= min_runs]
    if len(ok) < 2:
        return np.array([])
    return np.logspace(np.log10(ok.min()), np.log10(ok.max()), n)


def _interpolate(frame, runs, budgets):
    loss = np.full((len(runs), len(budgets)), np.nan)
    log_b = np.log(budgets) if len(budgets) else budgets
    for i, (_, curve) in enumerate(frame.groupby("run", sort=True)):
        log_c = np.log(curve["C"].to_numpy(float))
        log_l = np.log(curve["loss"].to_numpy(float))
        if len(curve) < 2:
            continue
        loss[i] = np.exp(np.interp(log_b, log_c, log_l, left=np.nan, right=np.nan))
    compute = np.where(np.isfinite(loss), np.broadcast_to(budgets, loss.shape), np.nan)
    return loss, compute
