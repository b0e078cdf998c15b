"""Stage ``scaling-fit-<approach>-<table>``: one approach on one gated table, with bootstrap CIs.

Compute accounting: C = 6 N D, with N the total parameter count or the non-embedding count
(``parameters``), and D the tokens of the checkpoint (for this project's own runs: the tokens
the trainer actually consumed). Bootstrap: runs are resampled with replacement (a run's whole
curve moves together), ``samples`` times from the spec's seed; every fitted quantity gets a
percentile interval and a standard error. The metrics also compare the fit with published
values when the spec (or the source itself) gives them.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from harness.io import write_json
from stages.scaling.configs import FitConfig
from stages.scaling.powerlaw import bootstrap_weights, summarize


class NotDetermined(ValueError):
    """The data cannot determine this fit: too few runs or budgets for its parameters, an
    optimum on a bound of the search, or a bootstrap that fails too often. The stage records
    ``status: not determined`` with the reason, and no fitted numbers."""


#: the old name, kept for callers that catch it
InsufficientData = NotDetermined

#: the quantities whose bootstrap must succeed for a fit to count (per approach kind)
PRIMARY = {"envelope": ("a", "b"), "isoflop": ("a", "b"), "parametric": ("E", "A", "B", "alpha", "beta")}


def load_fit_frame(path: str | Path, parameters: str) -> pd.DataFrame:
    """The gated table with ``N`` set to the chosen parameter count and C = 6 N D."""
    frame = pd.read_parquet(path)
    if parameters == "non_embedding":
        if not np.isfinite(frame["N_no_emb"]).all():
            raise ValueError(f"{path}: parameters=non_embedding, but the table has no non-embedding counts")
        frame = frame.assign(N=frame["N_no_emb"])
    return frame.assign(C=6.0 * frame["N"] * frame["D"]).sort_values(["run", "D"], kind="stable").reset_index(drop=True)


def fit_profiles(frame: pd.DataFrame, cfg: FitConfig, weights: np.ndarray) -> tuple[dict, list[dict], dict]:
    """Approaches 1 and 2: point estimate, bootstrap replicates and the per-budget optima."""
    from stages.scaling.isoflop import envelope_minima, exponents, isoflop_minima
    from stages.scaling.profiles import build_profiles

    b = cfg.budgets
    prof = build_profiles(frame, b.mode, b.values, b.tolerance_dex, b.n, b.min_runs)
    if cfg.approach.kind == "envelope":
        def minima(w=None):
            return envelope_minima(prof, w, cfg.approach.min_runs)
    else:
        def minima(w=None):
            return isoflop_minima(prof, w, cfg.approach.min_points, cfg.approach.fit_points)
    best = minima()
    need = cfg.approach.min_budgets
    what = "an interior envelope minimum" if cfg.approach.kind == "envelope" else "a parabola with an interior vertex"
    if len(best["C"]) < need:
        raise NotDetermined(f"only {len(best['C'])} of {len(prof.budgets)} budgets (mode {prof.mode}) give {what}; "
                            f"the power law needs {need}")
    sizes = len(np.unique(best["N"]))
    if sizes < need:
        raise NotDetermined(f"the optima of {len(best['C'])} budgets are only {sizes} distinct model size(s); "
                            f"a power law N_opt(C) needs {need}")

    def replicate(w) -> dict:
        found = minima(w)
        if len(found["C"]) < need or len(np.unique(found["N"])) < need:  # this resample determines nothing
            return {k: float("nan") for k in ("a", "b", "k_N", "k_D")}
        return exponents(found)

    point = exponents(best)
    replicates = [replicate(w) for w in weights]
    details = {"mode": prof.mode, "budgets": prof.budgets.tolist(),
               "optima": {k: np.asarray(v).tolist() for k, v in best.items()},
               "profiles": _profile_points(prof)}
    return point, replicates, details


def _profile_points(prof) -> list[dict]:
    """The (budget, N, loss) points of each budget, for the IsoFLOP plot."""
    rows = []
    for j, budget in enumerate(prof.budgets):
        ok = np.isfinite(prof.loss[:, j])
        rows += [{"budget": float(budget), "N": float(n), "loss": float(v)} for n, v in zip(prof.n[ok], prof.loss[ok, j])]
    return rows


def fit_parametric_stage(frame: pd.DataFrame, cfg: FitConfig, weights: np.ndarray, run_index: np.ndarray):
    from stages.scaling.parametric import InitGrid, bootstrap_parametric, fit_parametric, on_bound, theta_to_values

    spec = cfg.approach
    runs, sizes = frame["run"].nunique(), frame["N"].nunique()
    if runs < spec.min_runs or sizes < spec.min_sizes:
        raise NotDetermined(f"{runs} runs of {sizes} distinct sizes; the five parameters of L = E + A/N^α + B/D^β "
                            f"need at least {spec.min_runs} runs and {spec.min_sizes} sizes")
    g = spec.init_grid
    grid = InitGrid(alpha=tuple(g.alpha), beta=tuple(g.beta), e=tuple(g.e), a=tuple(g.a), b=tuple(g.b))
    box = spec.bounds.box()
    n, d, loss = (frame[c].to_numpy(float) for c in ("N", "D", "loss"))
    fit = fit_parametric(n, d, loss, delta=spec.huber_delta, grid=grid, newton_iters=spec.newton_iters,
                         polish_top=spec.polish_top, bounds=box, screen_iters=spec.screen_iters,
                         screen_keep=spec.screen_keep)
    hits = on_bound(fit.theta, box)
    if hits:
        raise NotDetermined("the best fit sits on the search box: " + "; ".join(hits))
    point = fit.values
    replicates = []
    if len(weights):
        thetas = bootstrap_parametric(n, d, loss, weights[:, run_index], fit.theta, delta=spec.huber_delta, bounds=box)
        replicates = [theta_to_values(t) for t in thetas]
    details = {"objective": fit.objective, "n_starts": fit.n_starts, "n_polished": fit.n_polished,
               "converged": fit.converged, "theta": fit.theta.tolist()}
    return point, replicates, details


def compare(summary: dict, reference: dict[str, dict]) -> dict[str, dict]:
    """How far each fitted value is from a published one, in published standard errors."""
    out = {}
    for key, ref in reference.items():
        if key not in summary:
            continue
        value = summary[key]["value"]
        entry = {"published": ref["value"], "fitted": value}
        se = ref.get("se")
        if se:
            entry["diff_in_se"] = (value - ref["value"]) / se
            entry["within_se"] = bool(abs(value - ref["value"]) <= se)
        if ref.get("ci_low") is not None and ref.get("ci_high") is not None:
            entry["within_published_ci"] = bool(ref["ci_low"] <= value <= ref["ci_high"])
        lo, hi = summary[key].get("ci_low"), summary[key].get("ci_high")
        if lo is not None and hi is not None and math.isfinite(lo):
            entry["published_within_our_ci"] = bool(lo <= ref["value"] <= hi)
        out[key] = entry
    return out


def references(cfg: FitConfig) -> dict:
    refs = {}
    if cfg.reference is not None:
        refs["spec"] = {"source": cfg.reference.source,
                        "values": {k: v.model_dump(exclude_none=True) for k, v in cfg.reference.values.items()}}
    if cfg.source_reference and Path(cfg.source_reference).exists():
        found = json.loads(Path(cfg.source_reference).read_text())
        values = {k: v for k, v in found.items() if isinstance(v, dict) and "value" in v}
        if values:
            refs["source"] = {"source": "published with the data", "config": found.get("config"), "values": values}
    return refs


def check_bootstrap(summary: dict, cfg: FitConfig) -> None:
    """Refuse a fit whose bootstrap failed in more than ``max_failed_share`` of the resamples."""
    samples = cfg.bootstrap.samples
    if not samples:
        return
    failed = max(summary[k]["n_failed"] for k in PRIMARY[cfg.approach.kind] if k in summary)
    if failed > cfg.bootstrap.max_failed_share * samples:
        raise NotDetermined(f"{failed} of {samples} bootstrap resamples of runs give no fit "
                            f"(more than {cfg.bootstrap.max_failed_share:.0%}): the CI would describe the survivors only")
    for key in PRIMARY[cfg.approach.kind]:
        value = summary.get(key, {}).get("value")
        if value is None or not math.isfinite(value):
            raise NotDetermined(f"{key} is not finite ({value})")


def run(cfg: FitConfig) -> None:
    frame = load_fit_frame(cfg.table, cfg.parameters)
    runs, run_index = np.unique(frame["run"].to_numpy(), return_inverse=True)
    weights = bootstrap_weights(len(runs), cfg.bootstrap.samples, cfg.bootstrap.seed)
    print(f"fit {cfg.approach_name} on {cfg.table_name}: {len(frame)} points, {len(runs)} runs, "
          f"{cfg.bootstrap.samples} bootstrap samples", flush=True)
    head = {"table": cfg.table_name, "approach": cfg.approach_name, "kind": cfg.approach.kind,
            "parameters": cfg.parameters, "points": int(len(frame)), "runs": int(len(runs)),
            "bootstrap": cfg.bootstrap.samples, "level": cfg.bootstrap.level}
    refs = references(cfg)
    try:
        if cfg.approach.kind == "parametric":
            point, replicates, details = fit_parametric_stage(frame, cfg, weights, run_index)
        else:
            point, replicates, details = fit_profiles(frame, cfg, weights)
        summary = summarize(point, replicates, cfg.bootstrap.level)
        check_bootstrap(summary, cfg)
    except NotDetermined as exc:
        # a table that cannot determine this fit is a finding, not a crash, and never a number
        print(f"fit {cfg.approach_name} on {cfg.table_name}: not determined: {exc}", flush=True)
        metrics = {**head, "status": "not determined", "reason": str(exc), "fit": {}, "agreement": {}}
        write_json(cfg.details, {"metrics": metrics, "references": refs})
        write_json(cfg.metrics, metrics)
        return
    metrics = {**head, "status": "ok", "fit": summary,
               "agreement": {name: compare(summary, ref["values"]) for name, ref in refs.items()}}
    write_json(cfg.details, {"metrics": metrics, "references": refs, **details})
    write_json(cfg.metrics, metrics)
    shown = ", ".join(f"{k}={v['value']:.4g} [{v['ci_low']:.4g}, {v['ci_high']:.4g}]" for k, v in summary.items()
                      if k in ("E", "A", "B", "alpha", "beta", "a", "b"))
    print(f"fit {cfg.approach_name} on {cfg.table_name}: {shown}", flush=True)
