"""Reference predictors: uniform, unigram and bigram (fitted on a training split), and their
in-context counterparts (fitted on the sequence's own prefix, for the ICL measurement).

Why smoothing: KL(p_HMM || q) is infinite wherever q = 0 < p, and the HMM's predictions are
positive everywhere (the 1e-14 floor), so every baseline gets additive (Laplace) smoothing.
"""

from __future__ import annotations

import numpy as np


def unigram(x: np.ndarray, k: int, alpha: float) -> np.ndarray:
    counts = np.bincount(np.asarray(x, dtype=np.int64).ravel(), minlength=k).astype(np.float64)
    return (counts + alpha) / (counts.sum() + alpha * k)


def bigram(x: np.ndarray, k: int, alpha: float) -> np.ndarray:
    """Row ``a`` is p(next | prev = a), from pairs inside each sequence (never across rows)."""
    x = np.asarray(x, dtype=np.int64)
    pairs = (x[:, :-1] * k + x[:, 1:]).ravel()
    counts = np.bincount(pairs, minlength=k * k).reshape(k, k).astype(np.float64)
    return (counts + alpha) / (counts.sum(axis=1, keepdims=True) + alpha * k)


def baseline_log_predictive(x: np.ndarray, kind: str, uni: np.ndarray, bi: np.ndarray) -> np.ndarray:
    """log q(x_t = . | x_<t) for every position, shape (N, L, K). Bigram at t = 0 falls back to unigram."""
    x = np.asarray(x, dtype=np.int64)
    n, length = x.shape
    k = len(uni)
    if kind == "uniform":
        return np.full((n, length, k), -np.log(k))
    if kind == "unigram":
        return np.broadcast_to(np.log(uni), (n, length, k)).copy()
    if kind == "bigram":
        out = np.empty((n, length, k))
        out[:, 0] = np.log(uni)
        out[:, 1:] = np.log(bi)[x[:, :-1]]
        return out
    raise ValueError(f"unknown baseline {kind!r}")


def in_context_token_logp(x: np.ndarray, k: int, alpha: float, order: int, chunk: int = 64) -> np.ndarray:
    """log q(x_t | x_<t) of the observed tokens under counts from the prefix x_<t only, (N, L).

    ``order`` 1: q(v) = (c(v) + a) / (t + a K). ``order`` 2: q(v | x_{t-1}) from the prefix's
    bigram counts, (c(x_{t-1}, v) + a) / (c(x_{t-1}, .) + a K); uniform at t = 0.
    Counts are kept per sequence and updated one position at a time (vectorised over N).
    """
    x = np.asarray(x, dtype=np.int64)
    n, length = x.shape
    out = np.empty((n, length))
    for s in range(0, n, chunk):
        xs = x[s : s + chunk]
        m = len(xs)
        rows = np.arange(m)
        if order == 1:
            counts = np.zeros((m, k))
            for t in range(length):
                out[s : s + m, t] = np.log((counts[rows, xs[:, t]] + alpha) / (t + alpha * k))
                counts[rows, xs[:, t]] += 1
        elif order == 2:
            pair = np.zeros((m, k * k))
            row_tot = np.zeros((m, k))
            out[s : s + m, 0] = -np.log(k)
            for t in range(1, length):
                prev, cur = xs[:, t - 1], xs[:, t]
                out[s : s + m, t] = np.log((pair[rows, prev * k + cur] + alpha) / (row_tot[rows, prev] + alpha * k))
                pair[rows, prev * k + cur] += 1
                row_tot[rows, prev] += 1
        else:
            raise ValueError(f"order must be 1 or 2, got {order}")
    return out


def kl_rows(log_p: np.ndarray, log_q: np.ndarray) -> np.ndarray:
    """KL(p || q) along the last axis (scipy's rel_entr: p log(p / q), 0 where p = 0)."""
    from scipy.special import rel_entr

    return rel_entr(np.exp(log_p), np.exp(log_q)).sum(axis=-1)
