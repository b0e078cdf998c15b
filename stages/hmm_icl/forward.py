"""The exact forward algorithm: sequence log-likelihoods and next-token predictive distributions.

Why our own and not pomegranate's ``forward``: the ICL oracle needs p(x_t | x_<t) over the
whole vocabulary at every position, which pomegranate does not expose (its ``forward`` returns
joint state log-probabilities; its ``predict_proba`` is a smoothed posterior that looks at the
future). The recursion is vectorised over sequences and kept in log space with the max-shift
matrix product pomegranate also uses, so nothing underflows at any length; tests check it
against brute-force enumeration and against pomegranate's ``log_probability``.

Recursion (filtering form), with prior_0 = pi:
    p(x_t = k | x_<t)   = sum_h prior_t(h) B[h, k]
    post_t(h)           = prior_t(h) B[h, x_t] / p(x_t | x_<t)
    prior_{t+1}(h')     = sum_h post_t(h) A[h, h']
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stages.hmm_icl.hmm import HmmParams


@dataclass
class ForwardResult:
    #: log p(x) per sequence, shape (N,)
    loglik: np.ndarray
    #: log p(x_t | x_<t) of the observed tokens, shape (N, L)
    token_logp: np.ndarray
    #: log p(x_t = k | x_<t) for every k, shape (N, L, K); None unless asked for
    pred_logp: np.ndarray | None


def _log_matmul(log_w: np.ndarray, mat: np.ndarray) -> np.ndarray:
    """log(exp(log_w) @ mat) without underflow: shift each row by its max first."""
    m = log_w.max(axis=1, keepdims=True)
    with np.errstate(divide="ignore"):
        return np.log(np.exp(log_w - m) @ mat) + m


def forward(params: HmmParams, x: np.ndarray, full: bool = False) -> ForwardResult:
    """Run the forward recursion on integer sequences ``x`` of shape (N, L)."""
    x = np.asarray(x, dtype=np.int64)
    if x.ndim != 2:
        raise ValueError(f"x must have shape (N, L), got {x.shape}")
    n, length = x.shape
    if x.size and (x.min() < 0 or x.max() >= params.emissions):
        raise ValueError(f"ids must lie in [0, {params.emissions}); got [{x.min()}, {x.max()}]")
    with np.errstate(divide="ignore"):
        log_b = np.log(params.B)
        log_prior = np.broadcast_to(np.log(params.pi), (n, params.hidden)).copy()
    token_logp = np.empty((n, length))
    pred = np.empty((n, length, params.emissions)) if full else None
    rows = np.arange(n)
    for t in range(length):
        if full:
            pred[:, t] = _log_matmul(log_prior, params.B)
            token_logp[:, t] = pred[rows, t, x[:, t]]
        else:
            m = log_prior.max(axis=1, keepdims=True)
            with np.errstate(divide="ignore"):
                token_logp[:, t] = np.log(np.sum(np.exp(log_prior - m) * params.B[:, x[:, t]].T, axis=1)) + m[:, 0]
        log_post = log_prior + log_b[:, x[:, t]].T - token_logp[:, t : t + 1]
        log_prior = _log_matmul(log_post, params.A)
    return ForwardResult(loglik=token_logp.sum(axis=1), token_logp=token_logp, pred_logp=pred)


def forward_chunked(params: HmmParams, x: np.ndarray, full: bool = False, chunk: int = 256):
    """Yield (start, ForwardResult) over blocks of sequences, bounding memory for the (N, L, K) output."""
    for start in range(0, len(x), chunk):
        yield start, forward(params, x[start : start + chunk], full=full)


def loglik_per_token(params: HmmParams, x: np.ndarray, chunk: int = 1024) -> float:
    total = sum(float(res.loglik.sum()) for _, res in forward_chunked(params, x, chunk=chunk))
    return total / max(1, np.asarray(x).size)


@dataclass
class MixtureResult:
    #: log p(x_t = k | x_<t) of the fair optimum for every shown id k, shape (N, L, K)
    pred_logp: np.ndarray
    #: log posterior over pool members *before* each position, log p(m | x_<t), shape (N, L, M)
    member_logpost: np.ndarray


def mixture_forward(params: HmmParams, pool: np.ndarray, x: np.ndarray, chunk_bytes: int = 1 << 28) -> MixtureResult:
    """The fair Bayes-optimal predictor of sequences relabelled by an unknown member of ``pool``.

    The data are a uniform mixture of M HMMs (member m shows HMM emission y as ``pool[m, y]``).
    For each member the forward algorithm runs on the sequence mapped back, y_m = pool[m]^-1(x),
    which gives p_m(x_t = k | x_<t) and the member's running likelihood; the posterior
    p(m | x_<t) is proportional to prod_{s<t} p_m(x_s | x_<s) (uniform prior), and

        p(x_t = k | x_<t) = sum_m p(m | x_<t) p_m(x_t = k | x_<t).

    This is exact (GINC's mixture-of-HMMs oracle) and vectorised: all M x N relabelled
    sequences go through one batched forward pass, in blocks of sequences that keep the
    (M, n, L, K) array under ``chunk_bytes``.
    """
    from scipy.special import logsumexp

    from stages.hmm_icl.pool import inverse

    x = np.asarray(x, dtype=np.int64)
    n, length = x.shape
    inv = inverse(pool)  # (M, K)
    m, k = inv.shape
    if k != params.emissions:
        raise ValueError(f"pool permutes {k} ids but the HMM has {params.emissions} emissions")
    pred = np.empty((n, length, k))
    post = np.empty((n, length, m))
    step = max(1, int(chunk_bytes // (m * length * k * 8 * 3)))
    for s in range(0, n, step):
        xs = x[s : s + step]
        b = len(xs)
        y = inv[:, xs].reshape(m * b, length)  # y[m*b + i] = inv[m][xs[i]]
        res = forward(params, y, full=True)
        # shown id k was HMM emission inv[m, k]
        pred_m = np.take_along_axis(res.pred_logp.reshape(m, b, length, k),
                                    np.broadcast_to(inv[:, None, None, :], (m, b, length, k)), axis=3)
        tok = res.token_logp.reshape(m, b, length)
        cum = np.concatenate([np.zeros((m, b, 1)), np.cumsum(tok[..., :-1], axis=2)], axis=2)  # log p_m(x_<t)
        logpost = cum - logsumexp(cum, axis=0, keepdims=True)  # (M, b, L)
        pred[s : s + b] = logsumexp(logpost[..., None] + pred_m, axis=0)
        post[s : s + b] = np.moveaxis(logpost, 0, -1)
    return MixtureResult(pred_logp=pred, member_logpost=post)
