"""Fit stage: one HMM per grid point (K x H x L) by batched EM with pomegranate.

Outputs: ``out_dir/hmm.npz`` (pi, A, B), ``history`` (per-epoch log-likelihoods, a DVC plot)
and ``metrics``. Checkpoints every ``em.checkpoint_every`` epochs in the stage's checkpoint
directory; a rerun after a kill resumes there and ends with the same parameters.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from harness.io import atomic_path, write_csv, write_json
from harness.runtime import checkpoint_dir, stop_requested
from stages.hmm_icl.configs import FitConfig
from stages.hmm_icl.em import fit_best_of


def _skip_unused_numba_compilation() -> None:
    """pomegranate imports apricot, whose module import eagerly JIT-compiles numba kernels for
    submodular initialisation (~7 s per process) that this study never calls: its HMMs start from
    explicit random parameters. Disabling the JIT before numba is first imported removes that
    cost from every fit stage; nothing in the fit runs numba code."""
    if "numba" not in sys.modules:
        os.environ.setdefault("NUMBA_DISABLE_JIT", "1")


def run(cfg: FitConfig) -> None:
    _skip_unused_numba_compilation()
    corpus = Path(cfg.corpus_dir)
    manifest = json.loads((corpus / "manifest.json").read_text())
    p = cfg.point
    if (manifest["emissions"], manifest["seq_len"]) != (p.emissions, p.seq_len):
        raise ValueError(f"{corpus} holds K={manifest['emissions']}, L={manifest['seq_len']}; expected {p.tag}")
    train = np.load(corpus / "train.npy")
    val = np.load(corpus / "val.npy")
    print(f"{p.tag}: fitting on {train.shape[0]} x {p.seq_len} tokens, batch {cfg.em.batch_size},"
          f" update every {cfg.em.update_freq or 'epoch'}", flush=True)
    ckpt = checkpoint_dir(cfg)
    result, finals = fit_best_of(train, val, p.hidden, p.emissions, cfg.em, cfg.seed, ckpt_dir=ckpt,
                                 log=lambda m: print(m, flush=True), stop_requested=stop_requested)
    last = result.history[-1]
    with atomic_path(cfg.out_dir) as tmp:
        tmp.mkdir()
        result.params.save(tmp / "hmm.npz")
    write_csv(cfg.history, pd.DataFrame(result.history))
    write_json(cfg.metrics, {
        "emissions": p.emissions, "hidden": p.hidden, "seq_len": p.seq_len, "epochs": last["epoch"],
        "updates": result.updates, "batch_size": result.batch_size, "restart_train_loglik_per_token": finals, "train_loglik_per_token": last["train_loglik_per_token"],
        "val_loglik_per_token": last.get("val_loglik_per_token"),
        "min_probability_log10": math.log10(min(result.params.A.min(), result.params.B.min(), result.params.pi.min())),
    })
    # a finished stage never resumes; done here, not by harness.trainer.clear_checkpoint, so an
    # edit of the LM trainer (this stage trains no LM) does not rerun every HMM fit
    shutil.rmtree(ckpt, ignore_errors=True)
