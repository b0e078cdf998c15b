"""The LR-transfer analysis: optimal LR per width with a CI over seeds, the shift, the verdict.

Reference: loss curves built from known parabolas in log2 LR (vertex per width known), with
seed noise; the analysis must recover the vertices and the shift, cover them with its CIs, and
refuse an optimum on the edge of a grid.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from stages.scaling.configs import TransferConfig, TransferSpec
from stages.scaling.transfer import analyse, loss_table, parabola_optimum, verdict

WIDTHS = [32, 64, 128, 256]
GRID = np.arange(-11.0, -3.9, 0.5)  # log2 LR, spaced 1/2


def _results(tmp_path, name: str, vertices: list[float], best_loss: list[float], seeds: int = 3,
             noise: float = 0.003) -> list[str]:
    rng = np.random.default_rng(len(name))
    paths = []
    for s in range(seeds):
        rows = []
        for w, v, l0 in zip(WIDTHS, vertices, best_loss):
            for x in GRID:
                loss = l0 + 0.08 * (x - v) ** 2 + rng.normal(0, noise)
                rows.append({"run": f"{name}-w{w}-{x}", "width": w, "lr": 2.0**x, "dev_loss": loss})
        path = tmp_path / f"{name}-seed{s}.csv"
        pd.DataFrame(rows).to_csv(path, index=False)
        paths.append(str(path))
    return paths


def _cfg(results: dict) -> TransferConfig:
    return TransferConfig(sweep="t", results=results, widths=WIDTHS, spec=TransferSpec(samples=400), seed=0,
                          out_dir="o", metrics="m.json")


def test_recovers_the_optima_the_shift_and_wider_is_better(tmp_path):
    mup_v, sp_v = [-6.0, -6.1, -6.2, -6.3], [-6.0, -7.1, -8.2, -9.3]
    losses = [1.2, 1.0, 0.85, 0.75]
    results = {"mup": _results(tmp_path, "mup", mup_v, losses), "sp": _results(tmp_path, "sp", sp_v, losses)}
    cfg = _cfg(results)
    by_param = {}
    for p, paths in results.items():
        x, widths, cube = loss_table(paths)
        by_param[p] = analyse(x, widths, cube, cfg)
    for p, truth in (("mup", mup_v), ("sp", sp_v)):
        for w, v in zip(WIDTHS, truth):
            e = by_param[p]["widths"][str(w)]
            assert e["determined"] and e["log2_lr"] == pytest.approx(v, abs=0.1)
            assert e["log2_lr_ci"][0] - 0.05 <= v <= e["log2_lr_ci"][1] + 0.05
    assert by_param["mup"]["shift"]["log2"] == pytest.approx(-0.3, abs=0.1)
    assert by_param["sp"]["shift"]["log2"] == pytest.approx(-3.3, abs=0.15)
    assert by_param["mup"]["wider_better"]["strictly"]
    v = verdict(by_param, cfg)
    assert v["answered"] and v["goal_met"] and v["cis_separated"]


def test_an_optimum_on_the_grid_edge_is_not_determined(tmp_path):
    x = GRID
    y = 1.0 + 0.1 * (x - GRID[0] + 0.5) ** 2  # minimum below the grid: the lowest LR is best
    vertex, loss, why = parabola_optimum(x, y, 1.0)
    assert np.isnan(vertex) and "lowest of the grid" in why
    results = {"mup": _results(tmp_path, "mup", [-6.0, -6.0, -6.0, -12.0], [1.2, 1.0, 0.9, 0.8]),
               "sp": _results(tmp_path, "sp", [-6.0, -7.0, -8.0, -9.0], [1.2, 1.0, 0.9, 0.8])}
    cfg = _cfg(results)
    by_param = {p: analyse(*loss_table(paths), cfg) for p, paths in results.items()}
    edge = by_param["mup"]["widths"]["256"]
    assert not edge["determined"] and "lowest of the grid" in edge["reason"] and "log2_lr" not in edge
    assert not by_param["mup"]["shift"]["determined"]
    assert not verdict(by_param, cfg)["answered"]


def test_one_seed_gives_no_ci_and_no_answer(tmp_path):
    results = {p: _results(tmp_path, p, [-6.0] * 4, [1.2, 1.0, 0.9, 0.8], seeds=1) for p in ("mup", "sp")}
    cfg = _cfg(results)
    by_param = {p: analyse(*loss_table(paths), cfg) for p, paths in results.items()}
    assert all(not e["determined"] and "one seed" in e["reason"] for e in by_param["mup"]["widths"].values())
    assert not verdict(by_param, cfg)["answered"]
