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
