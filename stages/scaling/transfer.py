"""Stage ``scaling-transfer-<sweep>``: the optimal LR per width with a CI over seeds, SP vs μP.

The μP question is whether the loss-minimising learning rate stays put as width grows (μP)
while it drifts under SP, and whether a wider model is better at its own optimum. Per
parametrization and width:

* the seeds' final dev losses are averaged per LR; the best grid point of that mean curve and
  the grid points within ``window_log2`` of it are fitted by a parabola in log2(lr); its vertex
  is the optimum and its minimum the loss at the optimum;
* the CI resamples seeds with replacement (the same resample for every width, since a seed
  fixes the data order and the initial draw of every width alike) and refits;
* an optimum is **not determined** when the best mean point is on the edge of the grid, the
  parabola is not convex, its vertex leaves the fitted window, or fewer than two seeds exist
  (no CI): then no number is reported for it, only the reason.

Across widths: the shift log2 lr*(widest) − log2 lr*(narrowest) with its CI from the same
resamples, and "wider is better": every step up in width lowers the loss at the optimum, with
the CI of each difference below zero. The verdict compares the shifts with the spec's
thresholds (``mup_max_shift``, ``sp_min_shift``) and asks that the two CIs do not overlap.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from harness.io import atomic_path, write_json
from stages.scaling.configs import TransferConfig


def parabola_optimum(x: np.ndarray, y: np.ndarray, window: float) -> tuple[float, float, str]:
    """(vertex, loss at vertex, "") from the mean curve y(x), or (nan, nan, why not determined).

    y is NaN where this width did not run that LR (a per-width grid) and +inf where it diverged.
    """
    ran = ~np.isnan(y)
    x, y = x[ran], y[ran]
    ok = np.isfinite(y)
    if ok.sum() < 3:
        return math.nan, math.nan, f"only {int(ok.sum())} LRs trained without diverging"
    i = int(np.nanargmin(np.where(ok, y, np.nan)))
    if i == 0 or i == len(x) - 1:
        side = "lowest" if i == 0 else "highest"
        return math.nan, math.nan, f"best LR {2 ** x[i]:.3g} is the {side} of the grid"
    near = ok & (np.abs(x - x[i]) <= window + 1e-9)
    if near.sum() < 3 or not (near & (x < x[i])).any() or not (near & (x > x[i])).any():
        return math.nan, math.nan, f"fewer than 3 trained LRs around the best one ({2 ** x[i]:.3g})"
    p2, p1, p0 = np.polyfit(x[near], y[near], 2)
    if p2 <= 0:
        return math.nan, math.nan, "loss vs log2 LR is not convex around the best LR"
    vertex = -p1 / (2 * p2)
    if not x[near].min() <= vertex <= x[near].max():
        return math.nan, math.nan, f"parabola vertex 2^{vertex:.2f} leaves the fitted LR window"
    return float(vertex), float(p0 - p1 * p1 / (4 * p2)), ""


def loss_table(paths: list[str]) -> tuple[np.ndarray, list[int], np.ndarray]:
    """(log2 lrs, widths, losses[seed, width, lr]); a diverged run is +inf, a run not in the grid NaN."""
    frames = [pd.read_csv(p) for p in paths]
    lrs = np.sort(frames[0]["lr"].unique())
    widths = sorted(int(w) for w in frames[0]["width"].unique())
    cube = np.full((len(frames), len(widths), len(lrs)), np.nan)
    for s, frame in enumerate(frames):
        for _, row in frame.iterrows():
            j, k = widths.index(int(row["width"])), int(np.searchsorted(lrs, row["lr"]))
            cube[s, j, k] = row["dev_loss"] if np.isfinite(row["dev_loss"]) else np.inf
    return np.log2(lrs), widths, cube


def optima(x: np.ndarray, cube: np.ndarray, window: float) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Vertex and loss at the vertex per width of the seed-mean curves (cube: seed × width × lr)."""
    with np.errstate(invalid="ignore"):
        mean = cube.mean(axis=0)  # a diverged seed makes that LR +inf: never the optimum; absent stays NaN
    found = [parabola_optimum(x, mean[j], window) for j in range(cube.shape[1])]
    return np.array([f[0] for f in found]), np.array([f[1] for f in found]), [f[2] for f in found]


def interval(samples: np.ndarray, level: float) -> tuple[float, float, int]:
    good = samples[np.isfinite(samples)]
    if len(good) < 2:
        return math.nan, math.nan, int(len(samples) - len(good))
    lo, hi = np.percentile(good, [50 * (1 - level), 50 * (1 + level)])
    return float(lo), float(hi), int(len(samples) - len(good))


def analyse(x: np.ndarray, widths: list[int], cube: np.ndarray, cfg: TransferConfig) -> dict:
    """Optima per width, their CIs over seeds, the shift, and wider-is-better, for one parametrization."""
    spec = cfg.spec
    vertex, best_loss, why = optima(x, cube, spec.window_log2)
    n_seeds = cube.shape[0]
    rng = np.random.default_rng(cfg.seed)
    draws = rng.integers(0, n_seeds, size=(spec.samples, n_seeds))
    boot_v = np.full((spec.samples, len(widths)), np.nan)
    boot_l = np.full((spec.samples, len(widths)), np.nan)
    if n_seeds >= 2:
        for b, pick in enumerate(draws):
            boot_v[b], boot_l[b], _ = optima(x, cube[pick], spec.window_log2)
    out: dict = {"seeds": n_seeds, "widths": {}}
    for j, w in enumerate(widths):
        entry: dict = {"determined": bool(np.isfinite(vertex[j]) and n_seeds >= 2)}
        if not np.isfinite(vertex[j]):
            entry["reason"] = why[j]
        elif n_seeds < 2:
            entry["reason"] = "one seed: no CI over seeds"
        if entry["determined"]:
            lo, hi, failed = interval(boot_v[:, j], spec.level)
            llo, lhi, _ = interval(boot_l[:, j], spec.level)
            entry.update(log2_lr=float(vertex[j]), lr=float(2 ** vertex[j]), log2_lr_ci=[lo, hi],
                         loss=float(best_loss[j]), loss_ci=[llo, lhi], failed_resamples=failed)
            if failed > 0.1 * spec.samples:
                entry.update(determined=False,
                             reason=f"{failed} of {spec.samples} seed resamples give no optimum (> 10 %)")
                for key in ("log2_lr", "lr", "log2_lr_ci", "loss", "loss_ci"):
                    entry.pop(key)
        out["widths"][str(w)] = entry
    ends = [widths[0], widths[-1]]
    determined = [out["widths"][str(w)]["determined"] for w in widths]
    if all(out["widths"][str(w)]["determined"] for w in ends):
        shift = vertex[-1] - vertex[0]
        lo, hi, _ = interval(boot_v[:, -1] - boot_v[:, 0], spec.level)
        slope = float(np.polyfit(np.log2(widths), vertex, 1)[0]) if all(determined) else math.nan
        out["shift"] = {"determined": True, "log2": float(shift), "ci": [lo, hi], "slope_per_doubling": slope,
                        "width_ratio": widths[-1] / widths[0]}
    else:
        why = "; ".join(f"width {w}: {out['widths'][str(w)]['reason']}" for w in dict.fromkeys(ends)
                        if not out["widths"][str(w)]["determined"])
        out["shift"] = {"determined": False, "reason": f"the optimum is not determined at {why}"}
    if all(determined):
        diffs = []
        for j in range(1, len(widths)):
            lo, hi, _ = interval(boot_l[:, j] - boot_l[:, j - 1], spec.level)
            diffs.append({"from": widths[j - 1], "to": widths[j], "delta_loss": float(best_loss[j] - best_loss[j - 1]),
                          "ci": [lo, hi]})
        out["wider_better"] = {"determined": True, "steps": diffs,
                               "strictly": bool(all(d["ci"][1] < 0 for d in diffs)),
                               "point_estimates_decrease": bool(all(d["delta_loss"] < 0 for d in diffs))}
    else:
        out["wider_better"] = {"determined": False, "reason": "an optimum per width is not determined"}
    return out


def verdict(by_param: dict[str, dict], cfg: TransferConfig) -> dict:
    """Does this sweep answer the μP question, and how: thresholds on both shifts, separated CIs."""
    spec = cfg.spec
    if not {"sp", "mup"} <= set(by_param):
        return {"answered": False, "reason": "the sweep does not run both SP and μP"}
    mup, sp = by_param["mup"]["shift"], by_param["sp"]["shift"]
    if not (mup["determined"] and sp["determined"]):
        why = "; ".join(f"{name}: {s['reason']}" for name, s in (("μP", mup), ("SP", sp)) if not s["determined"])
        return {"answered": False, "reason": f"the LR shift is not determined ({why})"}
    separated = mup["ci"][1] < sp["ci"][0] if sp["log2"] > mup["log2"] else sp["ci"][1] < mup["ci"][0]
    wider = by_param["mup"]["wider_better"]
    return {"answered": True,
            "mup_shift_within": bool(abs(mup["log2"]) <= spec.mup_max_shift),
            "sp_shift_beyond": bool(abs(sp["log2"]) >= spec.sp_min_shift),
            "cis_separated": bool(separated),
            "mup_wider_strictly_better": bool(wider.get("strictly", False)),
            "goal_met": bool(abs(mup["log2"]) <= spec.mup_max_shift and abs(sp["log2"]) >= spec.sp_min_shift
                             and separated and wider.get("strictly", False)),
            "thresholds": {"mup_max_shift": spec.mup_max_shift, "sp_min_shift": spec.sp_min_shift}}


def run(cfg: TransferConfig) -> None:
    by_param, curves = {}, []
    for parametrization, paths in cfg.results.items():
        x, widths, cube = loss_table(paths)
        by_param[parametrization] = analyse(x, widths, cube, cfg)
        for s in range(cube.shape[0]):
            for j, w in enumerate(widths):
                curves += [{"parametrization": parametrization, "seed": s, "width": w, "lr": float(2 ** xv),
                            "dev_loss": float(cube[s, j, k])} for k, xv in enumerate(x) if not np.isnan(cube[s, j, k])]
    metrics = {"sweep": cfg.sweep, "level": cfg.spec.level, "samples": cfg.spec.samples,
               "window_log2": cfg.spec.window_log2, **by_param, "verdict": verdict(by_param, cfg)}
    with atomic_path(cfg.out_dir) as tmp:
        tmp.mkdir()
        pd.DataFrame(curves).to_csv(tmp / "curves.csv", index=False, float_format="%.8g", lineterminator="\n")
    write_json(cfg.metrics, metrics)
    for p, m in by_param.items():
        shift = m["shift"]
        shown = f"{shift['log2']:+.2f} [{shift['ci'][0]:+.2f}, {shift['ci'][1]:+.2f}]" if shift["determined"] \
            else f"not determined: {shift['reason']}"
        print(f"transfer {cfg.sweep}/{p}: optimum shift {shown}", flush=True)
