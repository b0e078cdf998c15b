"""Stage `sweep`: one hyperparameter point of one regressor, on every split.

Per split: a grouped K-fold cross-validation *on the training side only*, grouped the way the
split holds out (``_cv_group``: runs for the random split, sizes for the size splits, steps for
the step split, mixtures for the mixture split), gives the score used to pick the grid point;
then the pipeline is refitted on the whole training side and predicts the test side. The
out-of-fold predictions are kept (``<split>.oof.parquet``) so averages of regressors can be
scored by the same CV; fits run single-threaded (``regressors.single_thread``). Picking by
CV rather than by test score keeps the reported test numbers honest. One DVC stage per grid
point: adding a value to a grid fits only the new points.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from harness.io import atomic_path, write_json
from stages.mixture_sim.configs import SweepStageConfig
from stages.mixture_sim.regressors import build, single_thread
from stages.mixture_sim.splits import GROUP, arrays
from stages.mixture_sim.tableio import read_parquet, write_parquet


def cross_val_r2(estimator, x: np.ndarray, y: np.ndarray, groups: np.ndarray, folds: int, seed: int) -> list[float]:
    """R² (averaged over targets) on each of ``folds`` grouped folds; [] if fewer than 2 groups."""
    return cross_val(estimator, x, y, groups, folds, seed)[0]


def cross_val(estimator, x: np.ndarray, y: np.ndarray, groups: np.ndarray, folds: int,
              seed: int) -> tuple[list[float], np.ndarray | None]:
    """Per-fold R² (uniform over targets, as sklearn's ``"r2"`` scorer) and the out-of-fold
    predictions of every training row (``None`` with fewer than 2 groups).

    The out-of-fold predictions let ``evaluate`` score an average of regressors by the same
    grouped CV, on training rows only.
    """
    from sklearn.base import clone
    from sklearn.metrics import r2_score
    from sklearn.model_selection import GroupKFold

    n_groups = len(np.unique(groups))
    if n_groups < 2:
        return [], None
    cv = GroupKFold(n_splits=min(folds, n_groups), shuffle=True, random_state=seed)
    oof = np.full(y.shape, np.nan)
    scores = []
    for fit_idx, val_idx in cv.split(x, y, groups=groups):
        model = clone(estimator).fit(x[fit_idx], y[fit_idx])
        oof[val_idx] = np.asarray(model.predict(x[val_idx])).reshape(len(val_idx), -1)
        scores.append(float(r2_score(y[val_idx], oof[val_idx])))
    return scores, oof


def predictions_frame(test, schema, pred: np.ndarray):
    """Test rows' identifiers, features and targets plus a ``pred:<target>`` column per target."""
    out = test[[schema.run, *schema.feature_columns, *schema.target_names]].copy()
    out = out.loc[:, ~out.columns.duplicated()]
    for j, name in enumerate(schema.target_names):
        out[f"pred:{name}"] = pred[:, j]
    return out


def run(cfg: SweepStageConfig) -> None:
    summary: dict = {"regressor": cfg.regressor, "kind": cfg.kind, "params": cfg.params, "splits": {}}
    with atomic_path(cfg.out_dir) as tmp:
        tmp.mkdir()
        for split, folder in cfg.split_dirs.items():
            train = read_parquet(Path(folder) / "train.parquet")
            test = read_parquet(Path(folder) / "test.parquet")
            x, y = arrays(train, cfg.table)
            estimator = build(cfg.kind, cfg.params, cfg.table, cfg.features, cfg.seed)
            with single_thread():
                folds, oof = cross_val(estimator, x, y, train[GROUP].to_numpy(), cfg.cv_folds, cfg.seed)
                estimator.fit(x, y)
                pred = np.asarray(estimator.predict(arrays(test, cfg.table)[0])).reshape(len(test), -1)
            write_parquet(tmp / f"{split}.parquet", predictions_frame(test, cfg.table, pred))
            if oof is not None:
                write_parquet(tmp / f"{split}.oof.parquet", predictions_frame(train, cfg.table, oof))
            cv = float(np.mean(folds)) if folds else None
            summary["splits"][split] = {"cv_r2": cv, "cv_folds": folds, "train_rows": len(train),
                                        "test_rows": len(test)}
            print(f"sweep {cfg.regressor} {cfg.params}: split {split} cv R2 "
                  f"{'n/a' if cv is None else f'{cv:.3f}'}", flush=True)
        write_json(tmp / "cv.json", summary)
