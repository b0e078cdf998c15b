"""Stage `search`: the mixture the simulator expects to minimise (or maximise) a chosen target.

RegMix's recipe: draw many candidate mixtures from a Dirichlet centred on the training mixtures
(``alpha = concentration * mean training mixture + floor``), predict the target for all of them
at once (one vectorised ``predict`` per chunk), keep the ``top`` best and report their mean as
the recommended mixture. The bootstrap members' spread at each reported mixture says how far
to trust it: candidates far from any training mixture get wide spreads.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from harness.io import atomic_path, write_csv, write_json
from stages.mixture_sim.configs import SearchSpec, SearchStageConfig, TableSchema
from stages.mixture_sim.simulator import Simulator, load_simulator
from stages.mixture_sim.tableio import read_parquet

#: candidates predicted per call: bounds memory (candidates x features floats) at any count
CHUNK = 50_000


def prior_alpha(train_mixtures: np.ndarray, search: SearchSpec) -> np.ndarray:
    """Dirichlet concentration centred on the mean training mixture."""
    centre = np.asarray(train_mixtures, dtype=np.float64).mean(axis=0)
    return search.concentration * centre + search.floor


def candidates(alpha: np.ndarray, n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).dirichlet(alpha, size=n)


def features_for(mixtures: np.ndarray, sim: Simulator, at: dict[str, float]) -> np.ndarray:
    """Feature rows: the mixtures plus the fixed non-mixture features, in the simulator's order."""
    extra = [c for c in sim.features if c not in sim.domains]
    return np.hstack([mixtures, np.tile([float(at[c]) for c in extra], (len(mixtures), 1))])


def search(sim: Simulator, schema: TableSchema, spec: SearchSpec, train_mixtures: np.ndarray,
           seed: int) -> dict[str, Any]:
    """Rank ``spec.candidates`` Dirichlet draws by the predicted target; the ``top`` best."""
    j = sim.targets.index(spec.target)
    sign = 1.0 if sim.schema["better"][spec.target] == "lower" else -1.0
    mix = candidates(prior_alpha(train_mixtures, spec), spec.candidates, seed)
    score = np.empty(len(mix))
    for start in range(0, len(mix), CHUNK):
        part = features_for(mix[start:start + CHUNK], sim, spec.at)
        with _single():
            score[start:start + CHUNK] = np.asarray(sim.model.predict(part)).reshape(len(part), -1)[:, j]
    order = np.argsort(sign * score, kind="stable")[: spec.top]
    best = mix[order]
    pred, spread = sim.predict(features_for(best, sim, spec.at))
    mean_mix = best.mean(axis=0)
    mean_pred, mean_spread = sim.predict(features_for(mean_mix[None, :], sim, spec.at))
    return {"mixtures": best, "pred": pred[:, j], "spread": spread[:, j], "mean_mixture": mean_mix,
            "mean_pred": float(mean_pred[0, j]), "mean_spread": float(mean_spread[0, j]),
            "all_scores": score}


def _single():
    from stages.mixture_sim.regressors import single_thread

    return single_thread()


def run(cfg: SearchStageConfig) -> None:
    import pandas as pd

    sim = load_simulator(cfg.simulator_dir)
    table = read_parquet(cfg.table_file)
    schema, spec = cfg.table, cfg.search
    train_mixtures = table[schema.domains].to_numpy(dtype=np.float64)
    found = search(sim, schema, spec, train_mixtures, cfg.seed)
    j = schema.target_names.index(spec.target)
    sign = 1.0 if schema.targets[j].better == "lower" else -1.0
    here = np.ones(len(table), dtype=bool)  # observed rows at the searched size/shape/step
    for column, value in spec.at.items():
        here &= np.isclose(table[column].to_numpy(dtype=np.float64), value)
    table = table[here].reset_index(drop=True)
    observed = table[spec.target].to_numpy(dtype=np.float64)
    if not len(table):
        raise ValueError(f"search.at {spec.at}: no table row has these values; search where runs exist, so the "
                         "best observed mixture can be set beside the predicted one")
    best_seen = int(np.argmin(sign * observed))
    rows = pd.DataFrame(found["mixtures"], columns=schema.domains)
    rows.insert(0, "rank", np.arange(1, len(rows) + 1))
    rows[f"pred:{spec.target}"] = found["pred"]
    rows[f"spread:{spec.target}"] = found["spread"]
    with atomic_path(cfg.out_dir) as tmp:
        tmp.mkdir()
        write_csv(tmp / "best_mixtures.csv", rows)
        write_json(tmp / "search.json", {
            "target": spec.target, "better": schema.targets[j].better, "candidates": spec.candidates,
            "at": spec.at, "alpha": prior_alpha(train_mixtures, spec).tolist(),
            "mean_mixture": dict(zip(schema.domains, found["mean_mixture"].tolist())),
            "mean_mixture_pred": found["mean_pred"], "mean_mixture_spread": found["mean_spread"],
            "candidate_pred_range": [float(found["all_scores"].min()), float(found["all_scores"].max())],
            "best_observed": {"run": str(table[schema.run].iloc[best_seen]), "value": float(observed[best_seen]),
                              "mixture": dict(zip(schema.domains, train_mixtures[best_seen].tolist()))},
        })
    write_json(cfg.metrics, {"target": spec.target, "candidates": spec.candidates,
                             "best_pred": float(found["pred"][0]), "best_spread": float(found["spread"][0]),
                             "mean_mixture_pred": found["mean_pred"], "mean_mixture_spread": found["mean_spread"],
                             "best_observed": float(observed[best_seen])})
    print(f"search {spec.target}: best predicted {found['pred'][0]:.4f} (spread {found['spread'][0]:.4f}) over "
          f"{spec.candidates} candidates; best observed {observed[best_seen]:.4f}", flush=True)
