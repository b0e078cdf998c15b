"""Stage `simulator`: the table's queryable simulator, saved as a versioned artifact.

The split's selected regressor (chosen by training-side CV in `evaluate`; possibly the
``ensemble``, an equal-weight average of the best regressors) is refitted on that split's
training side, so the split's test scores describe exactly this artifact, plus
``members`` bootstrap refits of the same configuration: their spread is how sure the simulator
is about a prediction (wide where the training mixtures were sparse).

Layout of the artifact folder::

    schema.json        format version, table, domains, other features (in order), targets, the
                       regressor and its parameters, rows trained on, library versions
    simulator.joblib   {"model": fitted pipeline, "members": [fitted pipelines]}

``load_simulator`` refuses an artifact of another format version and checks the schema it was
saved with against the pickled models, so a stale or mismatched file fails loudly.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness.io import atomic_path, read_json, write_json
from stages.mixture_sim.configs import SimulatorStageConfig, TableSchema
from stages.mixture_sim.regressors import build_any, single_thread
from stages.mixture_sim.splits import arrays
from stages.mixture_sim.tableio import read_parquet

FORMAT_VERSION = 1
MODEL_FILE, SCHEMA_FILE = "simulator.joblib", "schema.json"


@dataclass
class Simulator:
    """A fitted simulator: predict every target (ensemble mean of nothing: the main fit) and the spread."""

    schema: dict[str, Any]
    model: Any
    members: list[Any]

    @property
    def domains(self) -> list[str]:
        return self.schema["domains"]

    @property
    def features(self) -> list[str]:
        return self.schema["feature_columns"]

    @property
    def targets(self) -> list[str]:
        return self.schema["targets"]

    def predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(prediction of the main fit, std over the bootstrap members), each rows x targets."""
        x = np.asarray(x, dtype=np.float64)
        n = len(x)
        with single_thread():
            main = np.asarray(self.model.predict(x)).reshape(n, -1)
            members = np.stack([np.asarray(m.predict(x)).reshape(n, -1) for m in self.members])
        return main, members.std(axis=0, ddof=1)


def schema_payload(cfg: SimulatorStageConfig, kind: str, label: str, params: dict, rows: int) -> dict[str, Any]:
    import sklearn

    return {
        "format_version": FORMAT_VERSION, "study": cfg.study, "table": cfg.table_name,
        "domains": cfg.table.domains, "context_columns": cfg.table.context_columns,
        "feature_columns": cfg.table.feature_columns, "targets": cfg.table.target_names,
        "better": {t.name: t.better for t in cfg.table.targets}, "sum_tolerance": cfg.table.tolerance,
        "regressor": label, "kind": kind, "params": params, "trained_on": {"split": cfg.split, "rows": rows},
        "members": cfg.members, "seed": cfg.seed, "sklearn": sklearn.__version__,
    }


def fit_simulator(schema: TableSchema, features, kind: str, params: dict, x: np.ndarray, y: np.ndarray,
                  members: int, seed: int) -> tuple[Any, list[Any]]:
    """The main fit and ``members`` bootstrap refits (row resamples drawn from ``seed``)."""
    rng = np.random.default_rng(seed)
    with single_thread():
        model = build_any(kind, params, schema, features, seed).fit(x, y)
        fits = []
        for i in range(members):
            idx = rng.integers(0, len(x), len(x))
            fits.append(build_any(kind, params, schema, features, seed + 1 + i).fit(x[idx], y[idx]))
    return model, fits


def save_simulator(out_dir: str | Path, schema: dict[str, Any], model: Any, members: list[Any]) -> Path:
    import joblib

    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        joblib.dump({"model": model, "members": members}, tmp / MODEL_FILE, compress=3)
        write_json(tmp / SCHEMA_FILE, schema)
    return Path(out_dir)


def load_simulator(folder: str | Path) -> Simulator:
    import joblib

    folder = Path(folder)
    schema = read_json(folder / SCHEMA_FILE)
    if schema.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{folder / SCHEMA_FILE}: simulator format {schema.get('format_version')}, this code "
                         f"reads {FORMAT_VERSION}; rerun the simulator stage")
    blob = joblib.load(folder / MODEL_FILE)
    n_in = getattr(blob["model"], "n_features_in_", len(schema["feature_columns"]))
    if n_in != len(schema["feature_columns"]):
        raise ValueError(f"{folder}: the model takes {n_in} features, schema.json lists "
                         f"{len(schema['feature_columns'])}")
    return Simulator(schema=schema, model=blob["model"], members=blob["members"])


def run(cfg: SimulatorStageConfig) -> None:
    selection = read_json(Path(cfg.evaluate_dir) / "selection.json")[cfg.split]
    label = selection["selected"]
    chosen = selection["regressors"][label]
    train = read_parquet(Path(cfg.split_dir) / "train.parquet")
    x, y = arrays(train, cfg.table)
    model, members = fit_simulator(cfg.table, cfg.features, chosen["kind"], chosen["params"], x, y, cfg.members,
                                   cfg.seed)
    schema = schema_payload(cfg, chosen["kind"], label, chosen["params"], len(train))
    save_simulator(cfg.out_dir, schema, model, members)
    sim = load_simulator(cfg.out_dir)  # the round trip every user of the artifact relies on
    main, spread = sim.predict(x)
    write_json(cfg.metrics, {"split": cfg.split, "regressor": label, "params": chosen["params"],
                             "cv_r2": chosen.get("oof_r2", chosen["cv_r2"]),
                             "train_rows": len(train), "members": cfg.members,
                             "train_spread_median": float(np.median(spread)),
                             "train_max_abs_error": float(np.max(np.abs(main - y)))})
    print(f"simulator {cfg.table_name}: {label} {chosen['params']} on {len(train)} rows, {cfg.members} members",
          flush=True)
