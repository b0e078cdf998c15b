"""Approach 3 with the full initialisation grid on the Epoch table: vectorised vs naive, same run.

Fits L(N, D) = E + A/N^α + B/D^β (Huber δ = 1e-3 on log residuals) to the 240 Epoch runs from
all 4500 grid starts, three ways, and prints wall time, best objective and the ratio to the
naive loop:

1. ``fit_parametric``: every start at once by batched Newton, then scipy L-BFGS-B polishes the
   10 best (what the ``scaling-fit-a3-*`` stages run);
2. scipy L-BFGS-B on the stacked (4500·5)-vector, 60 iterations, then the same polish
   (the "stacked objective" alternative, for the record);
3. the naive reference: a Python loop of one scipy L-BFGS-B call per start.

The naive loop takes minutes, so by default it runs on a random subset of ``--naive-starts``
starts and its full-grid time is the subset time scaled by 4500 / subset (its best objective is
then the subset's); ``--naive-starts 4500`` runs all of it.

    python benchmarks/bench_scaling_a3.py [--table ../shared/data/scaling/chinchilla_epoch_extracted.csv]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stages.scaling import parametric as P  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", default=str(ROOT.parent / "shared/data/scaling/chinchilla_epoch_extracted.csv"))
    parser.add_argument("--naive-starts", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    raw = pd.read_csv(args.table)
    raw = raw.assign(D=raw["C"] / (6 * raw["N"])).sort_values("loss").iloc[:-5]
    n, d, loss = raw["N"].to_numpy(), raw["D"].to_numpy(), raw["loss"].to_numpy()
    data = P._arrays(n, d, loss)
    starts = P.InitGrid().points()
    print(f"Epoch table: {len(raw)} runs; init grid: {len(starts)} starts")

    t0 = time.perf_counter()
    fit = P.fit_parametric(n, d, loss)
    t_vec = time.perf_counter() - t0

    t0 = time.perf_counter()
    theta, obj, _ = P.stacked_lbfgs(starts, data, None, 1e-3, maxiter=60)
    best_stacked = min(P.minimize_one(theta[i], *data, None, 1e-3)[1] for i in np.argsort(obj)[:10])
    t_stacked = time.perf_counter() - t0

    rng = np.random.default_rng(args.seed)
    subset = starts if args.naive_starts >= len(starts) else starts[rng.choice(len(starts), args.naive_starts, replace=False)]
    t0 = time.perf_counter()
    best_naive = min(P.minimize_one(s, *data, None, 1e-3)[1] for s in subset)
    t_naive = (time.perf_counter() - t0) * len(starts) / len(subset)
    note = "" if len(subset) == len(starts) else f" (projected from {len(subset)} starts)"

    print(f"vectorised (batched Newton + 10 L-BFGS-B polishes): {t_vec:7.2f}s  best objective {fit.objective:.10g}")
    print(f"stacked scipy L-BFGS-B (60 its) + 10 polishes:       {t_stacked:7.2f}s  best objective {best_stacked:.10g}")
    print(f"naive loop, one scipy L-BFGS-B per start:            {t_naive:7.2f}s  best objective {best_naive:.10g}{note}")
    print(f"speed-up vectorised vs naive: {t_naive / t_vec:.1f}x; stacked vs naive: {t_naive / t_stacked:.1f}x")
    print("fit: " + ", ".join(f"{k}={v:.4g}" for k, v in fit.values.items()))


if __name__ == "__main__":
    main()
