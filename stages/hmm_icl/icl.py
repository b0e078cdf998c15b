"""ICL stage: per-position cross-entropy of the Llama against the exact Bayes-optimal predictor.

For every held-out sampled sequence and every position t (t tokens of context before it):

* ``ce_model``: -log p_Llama(x_t | SEP, x_<t), the Llama's distribution restricted to the K
  emission ids and renormalised (the separator never occurs inside a sequence);
* ``ce_optimal``: -log p*(x_t | x_<t) from the HMM forward algorithm. With permuted emissions
  this is the oracle that knows the sequence's permutation, p*(k) = p_HMM(y = perm^-1(k)), a
  lower bound no learner can beat in expectation;
* ``ce_unigram_ic`` / ``ce_bigram_ic``: predictors fitted on the prefix x_<t alone (references
  for what simple in-context counting achieves);
* ``kl_model_optimal``: KL(p_Llama || p*) over the K ids (the issue's measure; it weighs the
  Llama's mass on words the HMM all but rules out, so it can be large while the CE gap is small);
* ``kl_optimal_model``: KL(p* || p_Llama). Because held-out x is drawn from p*, its mean equals
  the mean CE gap up to sampling error, a built-in consistency check of the whole measurement.

ICL shows as ``gap = ce_model - ce_optimal`` (and the KL) shrinking as the context grows; the
metrics report the mean gap over the first and the last ``window`` fraction of positions.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from harness.io import write_csv, write_json
from harness.runtime import torch_threads
from stages.hmm_icl.baselines import in_context_token_logp, kl_rows
from stages.hmm_icl.configs import IclConfig
from stages.hmm_icl.forward import forward
from stages.hmm_icl.hmm import HmmParams
from stages.hmm_icl.sample import unpermute
from stages.hmm_icl.shards import read_perms, read_split


def model_log_predictive(model, x: np.ndarray, separator: int, device: str, batch_size: int) -> np.ndarray:
    """log p_model(x_t = k | SEP, x_<t) for k < K at every position, shape (N, L, K), float64."""
    import torch

    k = separator
    out = np.empty(x.shape + (k,))
    with torch.no_grad():
        for s in range(0, len(x), batch_size):
            xb = torch.as_tensor(np.asarray(x[s : s + batch_size], dtype=np.int64))
            inputs = torch.cat([torch.full((len(xb), 1), separator, dtype=torch.long), xb[:, :-1]], dim=1)
            logits = model(inputs.to(device)).logits[..., :k].double()
            out[s : s + len(xb)] = torch.log_softmax(logits, dim=-1).cpu().numpy()
    return out


def optimal_log_predictive(params: HmmParams, x: np.ndarray, perms: np.ndarray | None) -> np.ndarray:
    """The Bayes-optimal log p*(x_t = k | x_<t), shape (N, L, K); knows each sequence's permutation."""
    y = unpermute(x, perms)
    pred_y = forward(params, y, full=True).pred_logp
    if perms is None:
        return pred_y
    inverse = np.argsort(perms, axis=1)  # shown id k was HMM emission inverse[k]
    return np.take_along_axis(pred_y, inverse[:, None, :].astype(np.int64), axis=2)


def per_position(x: np.ndarray, log_model: np.ndarray, log_opt: np.ndarray, ic_uni: np.ndarray,
                 ic_bi: np.ndarray) -> pd.DataFrame:
    xi = np.asarray(x, dtype=np.int64)[..., None]
    ce_model = -np.take_along_axis(log_model, xi, axis=2)[..., 0]
    ce_opt = -np.take_along_axis(log_opt, xi, axis=2)[..., 0]
    kl = kl_rows(log_model, log_opt)
    kl_rev = kl_rows(log_opt, log_model)
    gap = ce_model - ce_opt
    n = len(x)
    return pd.DataFrame({
        "position": np.arange(1, x.shape[1] + 1),
        "context": np.arange(x.shape[1]),
        "ce_model": ce_model.mean(0), "ce_optimal": ce_opt.mean(0),
        "ce_unigram_ic": -ic_uni.mean(0), "ce_bigram_ic": -ic_bi.mean(0),
        "kl_model_optimal": kl.mean(0), "kl_optimal_model": kl_rev.mean(0), "gap": gap.mean(0),
        "gap_se": gap.std(0, ddof=1) / np.sqrt(n) if n > 1 else np.zeros(x.shape[1]),
    })


def summarise(curve: pd.DataFrame, window: float) -> dict[str, float]:
    length = len(curve)
    w = max(1, int(round(window * length)))
    early, late = curve.iloc[:w], curve.iloc[-w:]
    out = {f"{c}_mean": float(curve[c].mean()) for c in
           ("ce_model", "ce_optimal", "ce_unigram_ic", "ce_bigram_ic", "kl_model_optimal",
                         "kl_optimal_model", "gap")}
    out.update({"window_positions": w, "gap_early": float(early["gap"].mean()), "gap_late": float(late["gap"].mean()),
                "kl_early": float(early["kl_model_optimal"].mean()), "kl_late": float(late["kl_model_optimal"].mean()),
                "ce_model_early": float(early["ce_model"].mean()), "ce_model_late": float(late["ce_model"].mean()),
                "ce_optimal_early": float(early["ce_optimal"].mean()),
                "ce_optimal_late": float(late["ce_optimal"].mean())})
    return out


def run(cfg: IclConfig) -> None:
    with torch_threads(cfg.icl.torch_threads):
        _run(cfg)


def _run(cfg: IclConfig) -> None:
    from harness.runtime import device as pick_device
    from stages.hmm_icl.lm import load_llama

    params = HmmParams.load(Path(cfg.hmm_dir) / "hmm.npz")
    x = read_split(cfg.shards_dir, "eval", cfg.icl.max_sequences).astype(np.int64)
    perms = read_perms(cfg.shards_dir, "eval")
    perms = None if perms is None else perms[: len(x)].astype(np.int64)
    device = pick_device(cfg.icl.device)
    model = load_llama(cfg.lm_dir, device)
    k = params.emissions
    log_model = model_log_predictive(model, x, k, device, cfg.icl.batch_size)
    log_opt = optimal_log_predictive(params, x, perms)
    ic_uni = in_context_token_logp(x, k, cfg.icl.smoothing, order=1)
    ic_bi = in_context_token_logp(x, k, cfg.icl.smoothing, order=2)
    curve = per_position(x, log_model, log_opt, ic_uni, ic_bi)
    summary = summarise(curve, cfg.icl.window)
    print(f"{cfg.point.tag}: CE model {summary['ce_model_mean']:.4f} vs optimal {summary['ce_optimal_mean']:.4f};"
          f" gap early {summary['gap_early']:.4f} -> late {summary['gap_late']:.4f}", flush=True)
    write_csv(cfg.curve, curve)
    write_json(cfg.metrics, {"emissions": k, "hidden": params.hidden, "seq_len": x.shape[1],
                             "sequences": len(x), "permuted": perms is not None, **summary})
