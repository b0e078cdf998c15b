"""Evaluate stage: how good is each fitted HMM, and how far is it from trivial predictors?

Metrics on the validation split: log-likelihood per token, final-token cross-entropy (the
notes' headline number: the prediction of the last word of a length-L context), cross-entropy
of the uniform/unigram/bigram baselines (fitted on the training split), and the mean
KL(p_HMM || q_baseline) of the next-token distributions, over all positions and at the last one.
A KL near zero from the unigram means the HMM learnt little more than word frequencies, as the
notes observed for under-trained models.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from harness.io import write_json
from stages.hmm_icl.baselines import baseline_log_predictive, bigram, kl_rows, unigram
from stages.hmm_icl.configs import EvalConfig
from stages.hmm_icl.forward import forward_chunked
from stages.hmm_icl.hmm import HmmParams

BASELINES = ("uniform", "unigram", "bigram")


def evaluate_hmm(params: HmmParams, train: np.ndarray, val: np.ndarray, smoothing: float,
                 chunk: int = 128) -> dict[str, float]:
    k = params.emissions
    uni, bi = unigram(train, k, smoothing), bigram(train, k, smoothing)
    n, length = val.shape
    rows = np.arange(n)
    sums = {key: 0.0 for key in ["hmm_ll", "hmm_final"] + [f"{b}_{w}" for b in BASELINES
                                                            for w in ("ce", "final_ce", "kl", "final_kl")]}
    for start, res in forward_chunked(params, val, full=True, chunk=chunk):
        xs = val[start : start + len(res.loglik)].astype(np.int64)
        sums["hmm_ll"] += float(res.loglik.sum())
        sums["hmm_final"] += float(-res.token_logp[:, -1].sum())
        r = rows[: len(xs)]
        for b in BASELINES:
            log_q = baseline_log_predictive(xs, b, uni, bi)
            tok = np.take_along_axis(log_q, xs[..., None], axis=2)[..., 0]
            kl = kl_rows(res.pred_logp, log_q)
            sums[f"{b}_ce"] += float(-tok.sum())
            sums[f"{b}_final_ce"] += float(-tok[r, -1].sum())
            sums[f"{b}_kl"] += float(kl.sum())
            sums[f"{b}_final_kl"] += float(kl[:, -1].sum())
    out = {"val_sequences": n, "val_loglik_per_token": sums["hmm_ll"] / (n * length),
           "hmm_ce": -sums["hmm_ll"] / (n * length), "hmm_final_ce": sums["hmm_final"] / n}
    for b in BASELINES:
        out[f"{b}_ce"] = sums[f"{b}_ce"] / (n * length)
        out[f"{b}_final_ce"] = sums[f"{b}_final_ce"] / n
        out[f"kl_from_{b}"] = sums[f"{b}_kl"] / (n * length)
        out[f"kl_from_{b}_final"] = sums[f"{b}_final_kl"] / n
    return out


def run(cfg: EvalConfig) -> None:
    corpus = Path(cfg.corpus_dir)
    params = HmmParams.load(Path(cfg.hmm_dir) / "hmm.npz")
    train = np.load(corpus / "train.npy")
    val = np.load(corpus / "val.npy")
    if cfg.eval.max_sequences:
        val = val[: cfg.eval.max_sequences]
    metrics = evaluate_hmm(params, train, val, cfg.eval.smoothing)
    print(f"{cfg.point.tag}: val ll/token {metrics['val_loglik_per_token']:.4f}, final CE {metrics['hmm_final_ce']:.4f}"
          f" (unigram {metrics['unigram_final_ce']:.4f}, bigram {metrics['bigram_final_ce']:.4f})", flush=True)
    write_json(cfg.metrics, {"emissions": cfg.point.emissions, "hidden": cfg.point.hidden,
                             "seq_len": cfg.point.seq_len, **metrics})
