"""Regressor pipelines: log features -> scaling -> model, with target scaling around it.

Why a pipeline per fit: scaling statistics must come from the training fold only (fitting the
scaler on all rows leaks the test distribution), and sklearn's ``Pipeline`` guarantees that
inside ``cross_validate`` as well as in the final fit. Targets are standardised too
(``TransformedTargetRegressor``): losses (~2-5 nats) and accuracies (~0.3-0.8) then weigh alike
in multi-output models, and predictions come back in original units.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from stages.mixture_sim.configs import FeatureSpec, TableSchema


def base_model(kind: str, params: dict[str, Any], seed: int):
    """The bare estimator of one grid point (multi-output capable)."""
    if kind == "ridge":
        from sklearn.linear_model import Ridge

        return Ridge(**params)
    if kind == "random_forest":
        from sklearn.ensemble import RandomForestRegressor

        return RandomForestRegressor(**params, random_state=seed, n_jobs=1)
    if kind == "gradient_boosting":
        from sklearn.ensemble import GradientBoostingRegressor
        from sklearn.multioutput import MultiOutputRegressor

        return MultiOutputRegressor(GradientBoostingRegressor(**params, random_state=seed))
    if kind == "mlp":
        from stages.mixture_sim.mlp import TorchMLPRegressor

        return TorchMLPRegressor(**{**params, "hidden": tuple(params["hidden"])}, seed=seed)
    raise ValueError(f"unknown regressor kind {kind!r}")


def build(kind: str, params: dict[str, Any], schema: TableSchema, features: FeatureSpec, seed: int):
    """Estimator taking X in ``schema.feature_columns`` order and Y in ``schema.target_names`` order."""
    from sklearn.compose import ColumnTransformer, TransformedTargetRegressor
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    columns = schema.feature_columns
    log_idx = [columns.index(c) for c in features.log]
    steps = []
    if log_idx:
        steps.append(("log", ColumnTransformer([("log", FunctionTransformer(np.log), log_idx)],
                                               remainder="passthrough")))
    steps += [("scale", StandardScaler()), ("model", base_model(kind, params, seed))]
    return TransformedTargetRegressor(regressor=Pipeline(steps), transformer=StandardScaler())
