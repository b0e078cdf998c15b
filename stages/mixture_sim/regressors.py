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
    if kind == "hist_gradient_boosting":
        from sklearn.ensemble import HistGradientBoostingRegressor
        from sklearn.multioutput import MultiOutputRegressor

        # a fixed number of rounds: early stopping would carve its validation set out of the fold
        return MultiOutputRegressor(HistGradientBoostingRegressor(**params, early_stopping=False, random_state=seed))
    if kind == "mlp":
        from stages.mixture_sim.mlp import TorchMLPRegressor

        return TorchMLPRegressor(**{**params, "hidden": tuple(params["hidden"])}, seed=seed)
    raise ValueError(f"unknown regressor kind {kind!r}")


def _log_offset(x: np.ndarray, offset: float) -> np.ndarray:
    """log(p + offset): a module-level function so a fitted pipeline pickles."""
    return np.log(np.asarray(x, dtype=np.float64) + offset)


def single_thread():
    """Context: OpenMP/BLAS pools at one thread (HistGradientBoosting, numpy), as the stage resources say.

    Why: the smoke stages run side by side on two cores; oversubscribed OpenMP pools are many
    times slower there, and one thread keeps float sums in one order on every machine.
    """
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1)


def build(kind: str, params: dict[str, Any], schema: TableSchema, features: FeatureSpec, seed: int):
    """Estimator taking X in ``schema.feature_columns`` order and Y in ``schema.target_names`` order."""
    from sklearn.compose import ColumnTransformer, TransformedTargetRegressor
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    columns = schema.feature_columns
    log_idx = [columns.index(c) for c in features.log]
    steps = []
    transforms = []
    if log_idx:
        transforms.append(("log", FunctionTransformer(np.log), log_idx))
    if features.domain_log_offset is not None:
        offset = features.domain_log_offset
        transforms.append(("domain_log", FunctionTransformer(np.log1p, kw_args=None) if offset == 1.0 else
                           FunctionTransformer(_log_offset, kw_args={"offset": offset}),
                           [columns.index(c) for c in schema.domains]))
    if transforms:
        # ColumnTransformer puts transformed columns first: a fixed, schema-derived order
        steps.append(("log", ColumnTransformer(transforms, remainder="passthrough")))
    steps += [("scale", StandardScaler()), ("model", base_model(kind, params, seed))]
    return TransformedTargetRegressor(regressor=Pipeline(steps), transformer=StandardScaler())


class MeanOfRegressors:
    """The equal-weight average of fitted regressors' predictions (the `ensemble` simulator).

    A module-level class so a saved simulator pickles; members are full pipelines built by
    :func:`build`, each with its own preprocessing.
    """

    def __init__(self, members: list):
        self.members = members

    @property
    def n_features_in_(self) -> int:
        return self.members[0].n_features_in_

    def predict(self, x: np.ndarray) -> np.ndarray:
        n = len(x)
        return np.mean([np.asarray(m.predict(x)).reshape(n, -1) for m in self.members], axis=0)


class PerTargetRegressors:
    """Each target predicted by its own choice among fitted regressors (the `per_target`
    simulator): column j is the mean of ``columns[j]``'s members' column j. Every member is fitted
    once on all targets, as in the sweep whose out-of-fold scores chose them."""

    def __init__(self, members: dict[str, Any], columns: list[list[str]]):
        self.members, self.columns = members, columns

    @property
    def n_features_in_(self) -> int:
        return next(iter(self.members.values())).n_features_in_

    def predict(self, x: np.ndarray) -> np.ndarray:
        n = len(x)
        full = {label: np.asarray(m.predict(x)).reshape(n, -1) for label, m in self.members.items()}
        return np.stack([np.mean([full[m][:, j] for m in combo], axis=0) for j, combo in enumerate(self.columns)],
                        axis=1)


def build_any(kind: str, params: dict[str, Any], schema: TableSchema, features: FeatureSpec, seed: int):
    """An unfitted estimator for ``kind``; for ``"ensemble"`` (``params["members"]``: a list of
    ``{regressor, kind, params}``) a callable ``fit(x, y)`` -> :class:`MeanOfRegressors`; for
    ``"per_target"`` (the same plus ``params["targets"]``: target -> member labels) one ->
    :class:`PerTargetRegressors`."""
    if kind == "ensemble":
        return _EnsembleBuilder([build(m["kind"], m["params"], schema, features, seed) for m in params["members"]])
    if kind == "per_target":
        missing = [t for t in schema.target_names if t not in params["targets"]]
        if missing:
            raise ValueError(f"per_target simulator has no regressor for target(s) {missing}")
        return _PerTargetBuilder({m["regressor"]: build(m["kind"], m["params"], schema, features, seed)
                                  for m in params["members"]},
                                 [list(params["targets"][t]) for t in schema.target_names])
    return build(kind, params, schema, features, seed)


class _PerTargetBuilder:
    def __init__(self, estimators: dict[str, Any], columns: list[list[str]]):
        self.estimators, self.columns = estimators, columns

    def fit(self, x: np.ndarray, y: np.ndarray) -> PerTargetRegressors:
        return PerTargetRegressors({label: e.fit(x, y) for label, e in self.estimators.items()}, self.columns)


class _EnsembleBuilder:
    def __init__(self, estimators: list):
        self.estimators = estimators

    def fit(self, x: np.ndarray, y: np.ndarray) -> MeanOfRegressors:
        return MeanOfRegressors([e.fit(x, y) for e in self.estimators])
