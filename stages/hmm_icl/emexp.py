"""The seed's EM experiments (lab notes 004) as stages: the update_freq scan and duplicated data.

``update_freq``: fit the same HMM (same seed, same data, same epochs) with an M-step every N
mini-batches, N in ``update_freqs`` (null = classic EM, one M-step per epoch). The notes saw
frequent updates converge faster per token but sometimes to a worse optimum; the table gives the
final train and validation log-likelihood per token against the number of M-steps taken.

``duplicates``: at equal token count, fit on all training sequences (r = 1) and on the first
1/r of them repeated r times (r > 1), shuffled together. The validation log-likelihood says how
much a repeated sequence is worth compared with a new one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from harness.io import write_csv, write_json
from stages.hmm_icl.configs import EmExperimentConfig
from stages.hmm_icl.em import fit_best_of
from stages.hmm_icl.fit import _skip_unused_numba_compilation


def duplicated(train: np.ndarray, repeats: int) -> np.ndarray:
    """The first ``len(train) // repeats`` sequences, each ``repeats`` times (same token count up to rounding)."""
    unique = train[: len(train) // repeats]
    return np.repeat(unique, repeats, axis=0)


def run(cfg: EmExperimentConfig) -> None:
    _skip_unused_numba_compilation()
    corpus = Path(cfg.corpus_dir)
    train, val = np.load(corpus / "train.npy"), np.load(corpus / "val.npy")
    p, ex = cfg.point, cfg.experiments
    rows = []
    settings = ([{"update_freq": f} for f in ex.update_freqs] if cfg.kind == "update_freq"
                else [{"repeats": r} for r in ex.duplicates])
    for setting in settings:
        em = ex.fit.model_copy(update={"update_freq": setting["update_freq"]}) if "update_freq" in setting else ex.fit
        data = duplicated(train, setting["repeats"]) if "repeats" in setting else train
        res, _ = fit_best_of(data, val, p.hidden, p.emissions, em, cfg.seed, log=lambda m: None)
        last = res.history[-1]
        row = {**{k: ("epoch" if v is None else v) for k, v in setting.items()},
               "unique_sequences": len(data) // setting.get("repeats", 1), "train_sequences": len(data),
               "tokens": int(data.size), "epochs": last["epoch"], "updates": res.updates,
               "train_loglik_per_token": last["train_loglik_per_token"],
               "val_loglik_per_token": last["val_loglik_per_token"]}
        rows.append(row)
        print(f"{cfg.kind} {setting}: {res.updates} updates, train {row['train_loglik_per_token']:.4f},"
              f" val {row['val_loglik_per_token']:.4f}", flush=True)
    table = pd.DataFrame(rows)
    write_csv(cfg.table, table)
    write_json(cfg.metrics, {"kind": cfg.kind, "emissions": p.emissions, "hidden": p.hidden, "seq_len": p.seq_len,
                             "runs": rows})
