"""Stage `evaluate`: choose each regressor's grid point by CV, score it per split x target.

Selection uses only the cross-validation scores from the sweep (training side); the test side
is touched once, for the scores reported here. Each regressor's grid point is the one with the
best mean fold R²; regressors are then compared by out-of-fold R² (every training row predicted
by the fold model that did not see it), and so is ``ensemble``, the equal-weight average of the
2 or 3 best regressors, whose out-of-fold predictions are the average of theirs, and
``per_target``, which picks for every target on its own the regressor or average with the best
out-of-fold R² on that target. A mean predictor (sklearn ``DummyRegressor``) is
scored alongside as the floor every simulator must clear. The regressor with the best CV score
on a split is that split's *selected simulator* (plots and headline numbers use it).

Aggregates over targets are the median of each score and a pooled R² over targets standardised
by the training side; a target constant or saturated on a split's test side is flagged with its
reason (``scoring.degenerate_reason``) and left out of every aggregate. The mixture pick counts
only test mixtures absent from training.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from harness.io import atomic_path, read_json, write_csv, write_json
from stages.mixture_sim.configs import EvaluateStageConfig, TableSchema
from stages.mixture_sim.scoring import degenerate_reason, fit_scores, mixture_ranking, pooled_r2
from stages.mixture_sim.splits import arrays, mixture_keys
from stages.mixture_sim.tableio import read_parquet, write_parquet

BASELINE = "mean"
ENSEMBLE = "ensemble"
PER_TARGET = "per_target"
#: candidate ensembles: the equal-weight average of the k regressors best by out-of-fold R²
ENSEMBLE_SIZES = (2, 3)


def oof_r2(y: np.ndarray, oof: np.ndarray) -> float:
    """R² (uniform over targets) of out-of-fold predictions on the training rows."""
    from sklearn.metrics import r2_score

    return float(r2_score(y, oof))


def oof_predictions(folder: str, split: str, schema: TableSchema):
    path = Path(folder) / f"{split}.oof.parquet"
    if not path.exists():
        return None
    return read_parquet(path)[[f"pred:{t}" for t in schema.target_names]].to_numpy(dtype=np.float64)


def training_oof(folders: dict[str, str], split: str, split_dir: str,
                 schema: TableSchema) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The split's training targets and each regressor's out-of-fold predictions of them (the
    regressors without CV folds left out): what ``ensemble`` and ``per_target`` are chosen on."""
    _, y = arrays(read_parquet(Path(split_dir) / "train.parquet"), schema)
    oof = {label: oof_predictions(folder, split, schema) for label, folder in folders.items()}
    return y, {k: v for k, v in oof.items() if v is not None}


def add_ensemble(chosen: dict[str, Any], frames: dict[str, Any], y: np.ndarray, oof: dict[str, np.ndarray],
                 schema: TableSchema) -> None:
    """Score every regressor by out-of-fold R² and add the best average of the top 2 or 3 as
    ``ensemble``; all on training rows. The test predictions of an average are the average of
    the members' test predictions (each member fitted on the whole training side)."""
    for label, pred in oof.items():
        chosen[label]["oof_r2"] = oof_r2(y, pred)
    ranked = sorted(oof, key=lambda k: chosen[k]["oof_r2"], reverse=True)  # stable: spec order breaks ties
    best = None
    for k in ENSEMBLE_SIZES:
        if k > len(ranked):
            break
        score = oof_r2(y, np.mean([oof[m] for m in ranked[:k]], axis=0))
        if best is None or score > best[0]:
            best = (score, ranked[:k])
    if best is None:
        return
    members = best[1]
    chosen[ENSEMBLE] = {"kind": "ensemble", "params": {"members": [
        {"regressor": m, "kind": chosen[m]["kind"], "params": chosen[m]["params"]} for m in members]},
        "cv_r2": None, "oof_r2": best[0], "point": "+".join(chosen[m]["point"] for m in members)}
    frame = frames[members[0]].copy()
    for target in schema.target_names:
        frame[f"pred:{target}"] = np.mean([frames[m][f"pred:{target}"].to_numpy() for m in members], axis=0)
    frames[ENSEMBLE] = frame


def add_per_target(chosen: dict[str, Any], frames: dict[str, Any], y: np.ndarray, oof: dict[str, np.ndarray],
                   schema: TableSchema) -> None:
    """Add ``per_target``: for each target on its own, the regressor or equal-weight average of 2-3
    regressors with the best out-of-fold R² on that target (RegMix fits one model per target;
    targets differ in which model family ranks them best: dm_mathematics and ubuntu_irc favour
    boosted trees alone). Chosen on training rows only; its test predictions are, target by
    target, those of the chosen combination."""
    import itertools

    from sklearn.metrics import r2_score

    if len(oof) < 2:
        return
    combos = [c for k in (1, *ENSEMBLE_SIZES) for c in itertools.combinations(list(oof), k)]
    per_target, composite = {}, np.empty_like(y)
    for j, target in enumerate(schema.target_names):
        means = [np.mean([oof[m][:, j] for m in combo], axis=0) for combo in combos]
        scores = [float(r2_score(y[:, j], mean)) for mean in means]
        best = int(np.argmax(scores))  # first (fewest members, spec order) wins ties
        per_target[target] = {"members": list(combos[best]), "oof_r2": scores[best]}
        composite[:, j] = means[best]
    used = [label for label in oof if any(label in v["members"] for v in per_target.values())]
    chosen[PER_TARGET] = {"kind": "per_target", "params": {
        "members": [{"regressor": m, "kind": chosen[m]["kind"], "params": chosen[m]["params"]} for m in used],
        "targets": {t: v["members"] for t, v in per_target.items()}},
        "cv_r2": None, "oof_r2": oof_r2(y, composite), "point": "+".join(chosen[m]["point"] for m in used),
        "per_target_oof_r2": {t: v["oof_r2"] for t, v in per_target.items()}}
    frame = frames[used[0]].copy()
    for target, info in per_target.items():
        frame[f"pred:{target}"] = np.mean([frames[m][f"pred:{target}"].to_numpy() for m in info["members"]], axis=0)
    frames[PER_TARGET] = frame


def selection_score(info: dict[str, Any]) -> float:
    """Out-of-fold R² where the split has CV folds, else the mean fold R²; -inf without CV."""
    score = info.get("oof_r2", info["cv_r2"])
    return -math.inf if score is None else score


def pick_point(sweep_dirs: list[str], split: str) -> tuple[str, dict[str, Any]]:
    """The sweep folder with the highest CV R² on ``split`` (first wins ties; no CV ranks last)."""
    best_dir, best_info, best_score = sweep_dirs[0], None, -math.inf
    for folder in sweep_dirs:
        info = read_json(Path(folder) / "cv.json")
        score = info["splits"][split]["cv_r2"]
        score = -math.inf if score is None else score
        if best_info is None or score > best_score:
            best_dir, best_info, best_score = folder, info, score
    return best_dir, best_info


def baseline_predictions(split_dir: str, schema: TableSchema):
    """Test rows predicted by the training-side mean of every target."""
    from sklearn.dummy import DummyRegressor

    from stages.mixture_sim.sweep import predictions_frame

    train, test = read_parquet(Path(split_dir) / "train.parquet"), read_parquet(Path(split_dir) / "test.parquet")
    model = DummyRegressor(strategy="mean").fit(*arrays(train, schema))
    return predictions_frame(test, schema, model.predict(arrays(test, schema)[0]).reshape(len(test), -1))


def heldout_mask(split_dir: str, frame, schema: TableSchema) -> np.ndarray:
    """Test rows whose mixture appears nowhere in the split's training side."""
    train = read_parquet(Path(split_dir) / "train.parquet")
    seen = set(mixture_keys(train, schema))
    return np.array([k not in seen for k in mixture_keys(frame, schema)], dtype=bool)


def score_predictions(frame, schema: TableSchema, heldout: np.ndarray | None = None) -> list[dict[str, Any]]:
    rows = []
    for target in schema.targets:
        true, pred = frame[target.name].to_numpy(), frame[f"pred:{target.name}"].to_numpy()
        ranking = mixture_ranking(frame, schema, true, pred, target.better, heldout)
        rows.append({"target": target.name, **fit_scores(true, pred), "flag": degenerate_reason(true),
                     **{f"rank_{k}": v for k, v in ranking.items()}})
    return rows


def training_stats(split_dir: str, schema: TableSchema) -> tuple[np.ndarray, np.ndarray]:
    """Per-target mean and standard deviation of the training side (for the pooled R²)."""
    _, y = arrays(read_parquet(Path(split_dir) / "train.parquet"), schema)
    return y.mean(axis=0), y.std(axis=0)


def pooled(frame, schema: TableSchema, targets: list[str], stats) -> float:
    if not targets or frame.empty:
        return math.nan
    idx = [schema.target_names.index(t) for t in targets]
    mean, scale = stats
    true = frame[targets].to_numpy(dtype=np.float64)
    pred = frame[[f"pred:{t}" for t in targets]].to_numpy(dtype=np.float64)
    return pooled_r2(true, pred, mean[idx], scale[idx])


def _clean(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _median(values) -> float:
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    return float(np.median(values)) if len(values) else math.nan


def summarise(scores, split: str, regressor: str, pooled_r2_value: float) -> dict[str, Any]:
    """Aggregates over the scored targets (flagged ones excluded), plus every target's scores."""
    every = scores[(scores.split == split) & (scores.regressor == regressor)]
    part = every[every.flag.isna()]
    groups = int(part.rank_groups.sum())  # comparisons: comparable groups x targets
    return {
        "scored_targets": len(part),
        "flagged_targets": {r.target: r.flag for r in every.itertuples() if isinstance(r.flag, str)},
        "median_r2": _median(part.r2),
        "pooled_r2": pooled_r2_value,
        "median_spearman": _median(part.spearman),
        "mean_spearman": float(np.nanmean(part.spearman)) if part.spearman.notna().any() else math.nan,
        "median_mae": _median(part.mae),
        "rank_hit_rate": float(part.rank_hits.sum() / groups) if groups else math.nan,
        "rank_chance": (float(np.average(part.rank_chance[part.rank_groups > 0],
                                         weights=part.rank_groups[part.rank_groups > 0])) if groups else math.nan),
        "rank_comparisons": groups,
        "targets": {r.target: {"r2": r.r2, "mae": r.mae, "spearman": r.spearman, "rank_hit_rate": r.rank_hit_rate}
                    for r in every.itertuples()},
    }


def run(cfg: EvaluateStageConfig) -> None:
    import pandas as pd

    schema = cfg.table
    score_rows, long_preds, selection, pooled_values = [], [], {}, {}
    for split, split_dir in ((s.name, s.path) for s in cfg.split_dirs):
        chosen: dict[str, Any] = {}
        frames = {BASELINE: baseline_predictions(split_dir, schema)}
        folders = {}
        for label, dirs in ((g.regressor, g.points) for g in cfg.sweeps):
            folder, info = pick_point(dirs, split)
            frames[label] = read_parquet(Path(folder) / f"{split}.parquet")
            folders[label] = folder
            chosen[label] = {"kind": info["kind"], "params": info["params"], "cv_r2": info["splits"][split]["cv_r2"],
                             "point": Path(folder).name}
        y, oof = training_oof(folders, split, split_dir, schema)
        add_ensemble(chosen, frames, y, oof, schema)
        add_per_target(chosen, frames, y, oof, schema)
        stats = training_stats(split_dir, schema)
        heldout = heldout_mask(split_dir, frames[BASELINE], schema)
        ranked = sorted(chosen, key=lambda k: selection_score(chosen[k]), reverse=True)
        selection[split] = {"selected": ranked[0], "regressors": chosen}
        for label, frame in frames.items():
            rows = score_predictions(frame, schema, heldout)
            score_rows += [{"split": split, "regressor": label, **row} for row in rows]
            pooled_values[(split, label)] = pooled(frame, schema, [r["target"] for r in rows if r["flag"] is None],
                                                   stats)
            for target in schema.target_names:
                long_preds.append(pd.DataFrame({
                    "split": split, "regressor": label, "run": frame[schema.run].to_numpy(),
                    "target": target, "true": frame[target].to_numpy(), "pred": frame[f"pred:{target}"].to_numpy()}))
        print(f"evaluate {split}: selected {ranked[0]} (CV score {selection_score(chosen[ranked[0]])})", flush=True)

    scores = pd.DataFrame(score_rows)
    preds = pd.concat(long_preds, ignore_index=True)
    metrics = {}
    for split in (s.name for s in cfg.split_dirs):
        metrics[split] = {"selected": selection[split]["selected"]}
        labels = [*(g.regressor for g in cfg.sweeps),
                  *(c for c in (ENSEMBLE, PER_TARGET) if c in selection[split]["regressors"]), BASELINE]
        for label in labels:
            metrics[split][label] = summarise(scores, split, label, pooled_values[(split, label)])
    with atomic_path(cfg.out_dir) as tmp:
        tmp.mkdir()
        write_csv(tmp / "scores.csv", scores)
        write_parquet(tmp / "predictions.parquet", preds)
        write_json(tmp / "selection.json", selection)
    write_json(cfg.metrics, _clean(metrics))
    selected = preds[preds.regressor == preds.split.map(lambda s: selection[s]["selected"])]
    write_csv(cfg.pred_plot, selected[["split", "target", "true", "pred"]])
    write_csv(cfg.score_plot, scores[scores.regressor != BASELINE][["split", "regressor", "target", "r2"]])
