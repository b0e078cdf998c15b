"""Regressors, scores and the sweep -> evaluate path, against tables with a known answer."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.dummy import DummyRegressor
from sklearn.metrics import r2_score

from stages.mixture_sim.configs import (
    EvaluateStageConfig, FeatureSpec, HeldOutMixtureSplit, RandomSplit, SizeAtLeastSplit, SplitsStageConfig, StepAboveSplit,
    SweepStageConfig, point_id,
)
from stages.mixture_sim.evaluate import run as evaluate_stage
from stages.mixture_sim.mlp import TorchMLPRegressor
from stages.mixture_sim.regressors import build
from stages.mixture_sim.scoring import fit_scores, mixture_ranking
from stages.mixture_sim.splits import arrays, make_split, run as splits_stage
from stages.mixture_sim.sweep import run as sweep_stage
from stages.mixture_sim.synthetic import seed_schema, smooth_table
from stages.mixture_sim.tableio import write_parquet

#: stated margin: on the smooth synthetic table, the simulator's mean test R² over the 11 targets
#: must exceed the mean predictor's by at least this much (measured: MLP 0.997, GBM 0.977, mean -0.01)
R2_MARGIN = 0.85
FEATURES = FeatureSpec(log=["model_size", "step"])
GBM = {"n_estimators": 100, "learning_rate": 0.1, "max_depth": 3, "subsample": 1.0}
MLP = {"hidden": [64, 64], "lr": 1e-2, "epochs": 500, "weight_decay": 1e-4}


@pytest.fixture(scope="module")
def schema():
    return seed_schema()


@pytest.fixture(scope="module")
def random_split(schema):
    table = smooth_table(schema, n_mixtures=12, seed=1)
    train, test, _ = make_split(table, schema, RandomSplit(name="random"), seed=0)
    return arrays(train, schema), arrays(test, schema)


@pytest.mark.parametrize("kind,params", [("mlp", MLP), ("gradient_boosting", GBM)], ids=["mlp", "gbm"])
def test_simulator_beats_mean_predictor_on_smooth_function(kind, params, schema, random_split):
    (x_tr, y_tr), (x_te, y_te) = random_split
    floor = r2_score(y_te, DummyRegressor().fit(x_tr, y_tr).predict(x_te))
    model = build(kind, params, schema, FEATURES, seed=0).fit(x_tr, y_tr)
    per_target = r2_score(y_te, model.predict(x_te), multioutput="raw_values")
    assert floor < 0.05
    assert per_target.mean() >= floor + R2_MARGIN, per_target
    assert per_target.min() >= 0.8, dict(zip(schema.target_names, per_target.round(3)))


def test_mlp_is_deterministic_and_leaves_global_rng_alone(random_split):
    import torch

    (x_tr, y_tr), (x_te, _) = random_split
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    a = TorchMLPRegressor(epochs=50, seed=3).fit(x_tr, y_tr).predict(x_te)
    assert torch.rand(1) == expected_next
    b = TorchMLPRegressor(epochs=50, seed=3).fit(x_tr, y_tr).predict(x_te)
    c = TorchMLPRegressor(epochs=50, seed=4).fit(x_tr, y_tr).predict(x_te)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_fit_scores_match_closed_forms():
    true = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    assert fit_scores(true, np.full(5, 3.0))["r2"] == pytest.approx(0.0)
    monotone = fit_scores(true, np.exp(true))
    assert monotone["spearman"] == pytest.approx(1.0) and monotone["r2"] < 0
    shifted = fit_scores(true, true + 0.5)
    assert shifted["mae"] == pytest.approx(0.5)
    assert shifted["r2"] == pytest.approx(1 - 5 * 0.25 / 10.0)  # 1 - SSE/SST
    assert np.isnan(fit_scores(true, np.full(5, 1.0))["spearman"])


def test_mixture_ranking_hits_misses_and_direction(schema):
    table = smooth_table(schema, n_mixtures=4, sizes=[(20e6, 256, 4), (60e6, 512, 8)], steps=[1000, 2000])
    true = table["train/CrossEntropyLoss"].to_numpy()
    perfect = mixture_ranking(table, schema, true, true, "lower")
    assert perfect == {"groups": 4, "hits": 4, "hit_rate": 1.0, "chance": 0.25, "regret": 0.0}
    reversed_ = mixture_ranking(table, schema, true, -true, "lower")
    assert reversed_["hits"] == 0 and reversed_["regret"] > 0
    # for an accuracy (higher is better) the same reversal is a perfect pick
    assert mixture_ranking(table, schema, true, -true, "higher")["hit_rate"] == 0.0
    assert mixture_ranking(table, schema, true, true, "higher")["hit_rate"] == 1.0


def test_sweep_then_evaluate_selects_by_cv_and_writes_metrics(tmp_path, schema):
    table = smooth_table(schema, n_mixtures=8, seed=2, sizes=[(20e6, 256, 4), (60e6, 512, 8), (1e9, 2048, 16)])
    write_parquet(tmp_path / "table.parquet", table)
    splits = [RandomSplit(name="random"), SizeAtLeastSplit(name="size", threshold=1e9),
              StepAboveSplit(name="step", threshold=15000), HeldOutMixtureSplit(name="mixture", test_fraction=0.25)]
    split_dirs = {s.name: str(tmp_path / "splits" / s.name) for s in splits}
    splits_stage(SplitsStageConfig(table=schema, table_file=str(tmp_path / "table.parquet"), splits=splits, seed=0,
                                   out_dirs=split_dirs, metrics=str(tmp_path / "splits.json")))
    sweeps = {}
    for label, kind, points in [("ridge", "ridge", [{"alpha": 1e-3}, {"alpha": 1e5}]),
                                ("mlp", "mlp", [{**MLP, "epochs": 300}])]:
        sweeps[label] = []
        for params in points:
            out = tmp_path / "sweep" / f"{label}-{point_id(params)}"
            sweep_stage(SweepStageConfig(regressor=label, kind=kind, params=params, table=schema, features=FEATURES,
                                         split_dirs=split_dirs, cv_folds=3, seed=0, out_dir=str(out)))
            sweeps[label].append(str(out))
    cv = {p: json.loads((tmp_path / "sweep" / f"ridge-{point_id({'alpha': p})}" / "cv.json").read_text())
          for p in (1e-3, 1e5)}
    assert cv[1e-3]["splits"]["random"]["cv_r2"] > cv[1e5]["splits"]["random"]["cv_r2"]
    assert len(cv[1e-3]["splits"]["random"]["cv_folds"]) == 3

    cfg = EvaluateStageConfig(table=schema, split_dirs=split_dirs, sweeps=sweeps, out_dir=str(tmp_path / "eval"),
                              metrics=str(tmp_path / "evaluate.json"), pred_plot=str(tmp_path / "pred.csv"),
                              score_plot=str(tmp_path / "scores_plot.csv"))
    evaluate_stage(cfg)
    selection = json.loads((tmp_path / "eval" / "selection.json").read_text())
    for split in split_dirs:
        assert selection[split]["regressors"]["ridge"]["params"] == {"alpha": 1e-3}
    metrics = json.loads((tmp_path / "evaluate.json").read_text())
    assert set(metrics) == set(split_dirs)
    for split in split_dirs:
        assert metrics[split]["selected"] in ("ridge", "mlp", "ensemble", "per_target")
        assert set(metrics[split]["mlp"]["targets"]) == set(schema.target_names)
    for split in ("random", "step", "mixture"):  # interpolation; "size" extrapolates 60M -> 1B and may fail
        assert metrics[split]["mlp"]["pooled_r2"] > metrics[split]["mean"]["pooled_r2"] + 0.5
        assert metrics[split]["mlp"]["median_r2"] > 0.5 and metrics[split]["mlp"]["scored_targets"] == 11
    # the step split holds out checkpoints, not mixtures: every test mixture was trained on, so no pick counts
    assert metrics["step"]["mlp"]["rank_comparisons"] == 0
    mixture = metrics["mixture"]["mlp"]  # 2 of 8 mixtures held out at every size and step
    assert mixture["rank_comparisons"] == 3 * 6 * 11  # 3 sizes x 6 steps x 11 targets
    assert mixture["rank_chance"] == pytest.approx(1 / 2) and mixture["rank_hit_rate"] > 1 / 2
    # the ensemble (mean of ridge and mlp, the only two) is scored by the same out-of-fold CV
    for split in split_dirs:
        ens = selection[split]["regressors"]["ensemble"]
        assert [m["regressor"] for m in ens["params"]["members"]] in (["ridge", "mlp"], ["mlp", "ridge"])
        regs = selection[split]["regressors"]  # the best out-of-fold R² (ties: the simpler, listed first)
        assert regs[selection[split]["selected"]]["oof_r2"] == max(r["oof_r2"] for r in regs.values())
    # per_target: each target's choice is the candidate (ridge, mlp, their mean) best by its own
    # out-of-fold R², recomputed here from the sweep's out-of-fold predictions
    from sklearn.metrics import r2_score

    for split, split_dir in split_dirs.items():
        per = selection[split]["regressors"]["per_target"]
        train_y = pd.read_parquet(Path(split_dir) / "train.parquet")
        oof = {label: pd.read_parquet(Path(folder) / f"{split}.oof.parquet")
               for label, folder in ((g, next(d for d in sweeps[g] if Path(d).name == selection[split]["regressors"][g]["point"]))
                                     for g in ("ridge", "mlp"))}
        for target, combo in per["params"]["targets"].items():
            cands = {c: r2_score(train_y[target], np.mean([oof[m][f"pred:{target}"] for m in c], axis=0))
                     for c in (("ridge",), ("mlp",), ("ridge", "mlp"))}
            assert tuple(combo) == max(cands, key=cands.get), (split, target, cands)
    scores = pd.read_csv(tmp_path / "eval" / "scores.csv")
    assert len(scores) == 4 * 5 * 11  # splits x (ridge, mlp, ensemble, per_target, mean) x targets
    pred = pd.read_csv(tmp_path / "pred.csv")
    assert set(pred.columns) == {"split", "target", "true", "pred"}
