"""ICL stage: per-position cross-entropy of the Llama against the fair Bayes-optimal predictor.

For every held-out sampled sequence and every position t (t - 1 tokens of context before it):

* ``model``: -log p_Llama(x_t | SEP, x_<t), the Llama's distribution restricted to the K
  emission ids and renormalised (the separator never occurs inside a sequence);
* ``fair``: the Bayes-optimal predictor that does not know the sequence's permutation: the
  mixture forward algorithm over the pool (``forward.mixture_forward``). It is the target: a
  learner that has inferred everything inferable from x_<t matches it in expectation. With no
  permutation (pool of 1) it is the plain HMM forward algorithm; with the unbounded case
  (a fresh random permutation per sequence) it is not computable and reported as missing;
* ``oracle``: the privileged predictor that knows the permutation (a lower bound no learner can
  reach at early positions: at position 1 it knows which ids are frequent);
* ``unigram_ic`` / ``bigram_ic``: predictors fitted on the prefix x_<t alone (what simple
  in-context counting achieves);
* ``kl_fair_model``: KL(p_fair || p_Llama); its mean equals the mean CE gap up to sampling error
  (held-out x is drawn from p_fair), a built-in check of the measurement.

Every per-position figure comes with a 95% confidence interval over sequences (normal
approximation of the mean, sequences are independent). The summary reports position 1 on its
own (no context: only the marginal is learnable) and the gaps averaged over an early and a late
window of positions, both excluding position 1, each with a CI over per-sequence window means.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from harness.io import write_csv, write_json
from harness.runtime import torch_threads
from stages.hmm_icl.baselines import in_context_token_logp, kl_rows
from stages.hmm_icl.configs import IclConfig
from stages.hmm_icl.forward import forward, mixture_forward
from stages.hmm_icl.hmm import HmmParams
from stages.hmm_icl.sample import unpermute
from stages.hmm_icl.shards import read_manifest, read_perms, read_pool, read_split

#: normal quantile of the two-sided 95% intervals
Z95 = 1.959963984540054
PREDICTORS = ("model", "fair", "oracle", "unigram_ic", "bigram_ic")


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
    """The privileged oracle log p*(x_t = k | x_<t), shape (N, L, K); knows each sequence's permutation."""
    y = unpermute(x, perms)
    pred_y = forward(params, y, full=True).pred_logp
    if perms is None:
        return pred_y
    inverse = np.argsort(perms, axis=1)  # shown id k was HMM emission inverse[k]
    return np.take_along_axis(pred_y, inverse[:, None, :].astype(np.int64), axis=2)


def mean_ci(values: np.ndarray, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Mean and half-width of its 95% interval over ``axis`` (sequences)."""
    n = values.shape[axis]
    se = values.std(axis=axis, ddof=1) / np.sqrt(n) if n > 1 else np.zeros_like(values.mean(axis=axis))
    return values.mean(axis=axis), Z95 * se


def token_ce(x: np.ndarray, log_pred: np.ndarray) -> np.ndarray:
    return -np.take_along_axis(log_pred, np.asarray(x, dtype=np.int64)[..., None], axis=2)[..., 0]


def per_position(ce: dict[str, np.ndarray], kl: np.ndarray | None, member_post: np.ndarray | None) -> pd.DataFrame:
    """Per position: mean CE of every predictor and the gaps, each with its 95% CI half-width."""
    length = next(iter(ce.values())).shape[1]
    frame = {"position": np.arange(1, length + 1), "context": np.arange(length)}
    for name, values in ce.items():
        frame[f"ce_{name}"], frame[f"ce_{name}_ci"] = mean_ci(values)
    target = "fair" if "fair" in ce else "oracle"
    for name in ("model", "bigram_ic", "unigram_ic"):
        frame[f"gap_{name}"], frame[f"gap_{name}_ci"] = mean_ci(ce[name] - ce[target])
    frame["gap_oracle"], frame["gap_oracle_ci"] = mean_ci(ce["model"] - ce["oracle"])
    if kl is not None:
        frame["kl_fair_model"], frame["kl_fair_model_ci"] = mean_ci(kl)
    if member_post is not None:
        frame["p_true_member"], frame["p_true_member_ci"] = mean_ci(member_post)
    return pd.DataFrame(frame)


def windows(length: int, window: float) -> dict[str, slice]:
    """Position 1 alone; early and late windows of ``window * (L - 1)`` positions, both past position 1."""
    w = max(1, int(round(window * (length - 1))))
    return {"pos1": slice(0, 1), "early": slice(1, 1 + w), "late": slice(length - w, length)}


def summarise(ce: dict[str, np.ndarray], window: float) -> dict[str, float]:
    """Per window: mean CE of every predictor, gaps of the Llama / in-context bigram to the target, CIs."""
    length = next(iter(ce.values())).shape[1]
    target = "fair" if "fair" in ce else "oracle"
    out: dict[str, float] = {"target": target, "window_positions": windows(length, window)["late"].stop
                             - windows(length, window)["late"].start}
    for wname, sl in windows(length, window).items():
        per_seq = {name: values[:, sl].mean(axis=1) for name, values in ce.items()}
        for name, v in per_seq.items():
            out[f"ce_{name}_{wname}"] = float(v.mean())
        for name in ("model", "bigram_ic", "unigram_ic"):
            mean, ci = mean_ci(per_seq[name] - per_seq[target])
            out[f"gap_{name}_{wname}"], out[f"gap_{name}_{wname}_ci"] = float(mean), float(ci)
        mean, ci = mean_ci(per_seq["model"] - per_seq["bigram_ic"])
        out[f"model_minus_bigram_{wname}"], out[f"model_minus_bigram_{wname}_ci"] = float(mean), float(ci)
        mean, ci = mean_ci(per_seq["model"] - per_seq["oracle"])
        out[f"gap_oracle_{wname}"], out[f"gap_oracle_{wname}_ci"] = float(mean), float(ci)
    for name, values in ce.items():
        out[f"ce_{name}_mean"] = float(values.mean())
    return out


def measure(x: np.ndarray, log_model: np.ndarray, params: HmmParams, pool: np.ndarray | None,
            perms: np.ndarray | None, members: np.ndarray | None, smoothing: float
            ) -> tuple[dict[str, np.ndarray], np.ndarray | None, np.ndarray | None]:
    """Per-sequence, per-position CE of every predictor; KL(fair || model); p(true member | x_<t)."""
    k = params.emissions
    ce = {"model": token_ce(x, log_model)}
    kl = post_true = None
    if pool is not None:
        mix = mixture_forward(params, pool, x)
        ce["fair"] = token_ce(x, mix.pred_logp)
        kl = kl_rows(mix.pred_logp, log_model)
        if members is not None:
            post_true = np.exp(np.take_along_axis(mix.member_logpost, members[:, None, None], axis=2)[..., 0])
    ce["oracle"] = token_ce(x, optimal_log_predictive(params, x, perms))
    ce["unigram_ic"] = -in_context_token_logp(x, k, smoothing, order=1)
    ce["bigram_ic"] = -in_context_token_logp(x, k, smoothing, order=2)
    return ce, kl, post_true


def pool_members(pool: np.ndarray, perms: np.ndarray | None, n: int) -> np.ndarray:
    """Index in ``pool`` of every sequence's permutation (all 0 for an unpermuted corpus)."""
    if perms is None:
        return np.zeros(n, dtype=np.int64)
    lookup = {tuple(p): i for i, p in enumerate(np.asarray(pool, dtype=np.int64))}
    return np.array([lookup[tuple(p)] for p in np.asarray(perms, dtype=np.int64)], dtype=np.int64)


def run(cfg: IclConfig) -> None:
    with torch_threads(cfg.icl.torch_threads):
        _run(cfg)


def _run(cfg: IclConfig) -> None:
    from harness.runtime import device as pick_device
    from stages.hmm_icl.lm import load_llama

    manifest = read_manifest(cfg.shards_dir)
    params = HmmParams.load(Path(cfg.hmm_dir) / "hmm.npz").with_start(manifest.get("start", "pi"))
    x = read_split(cfg.shards_dir, "eval", cfg.icl.max_sequences).astype(np.int64)
    perms = read_perms(cfg.shards_dir, "eval")
    perms = None if perms is None else perms[: len(x)].astype(np.int64)
    pool = read_pool(cfg.shards_dir)
    members = None if pool is None else pool_members(pool, perms, len(x))
    device = pick_device(cfg.icl.device)
    model = load_llama(cfg.lm_dir, device)
    log_model = model_log_predictive(model, x, params.emissions, device, cfg.icl.batch_size)
    ce, kl, post_true = measure(x, log_model, params, pool, perms, members, cfg.icl.smoothing)
    curve = per_position(ce, kl, post_true)
    summary = summarise(ce, cfg.icl.window)
    print(f"{cfg.tag}: CE model {summary['ce_model_mean']:.4f} vs {summary['target']} "
          f"{summary['ce_' + summary['target'] + '_mean']:.4f}; gap early {summary['gap_model_early']:.4f}"
          f" -> late {summary['gap_model_late']:.4f}", flush=True)
    write_csv(cfg.curve, curve)
    write_json(cfg.metrics, {"emissions": params.emissions, "hidden": params.hidden, "seq_len": x.shape[1],
                             "sequences": len(x), "pool": None if pool is None else len(pool),
                             "permuted": perms is not None, "fair_reference": pool is not None, **summary})
