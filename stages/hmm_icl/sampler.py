"""Vectorised HMM sampler: whole batches of sequences per step, no per-token Python loop.

How: inverse-CDF sampling with one ``np.searchsorted`` call per time step for the hidden
states and one call for all emissions of a batch. The trick that makes one call serve rows
with different distributions: row r's cumulative probabilities are shifted by r and the rows
concatenated into one sorted array, so the query r + u (u ~ U[0, 1)) can only land in row r.
Each step then costs O(batch * log(H^2)) in C, instead of one ``rng.choice`` per token.

Exactness: the shifted CDFs and queries are float64; a draw can only go wrong when u lies
within ~1e-13 of a CDF boundary, i.e. with probability ~1e-13 per token (the 1e-14 floor puts
every probability well above that scale only when it matters: such draws then pick a
neighbouring id). Out-of-row results from rounding at u ~ 1 are clipped into the row.

Optional per-sequence emission permutation: token ids shown are ``perm[y]`` for a uniformly
random permutation ``perm`` of the K ids drawn independently for each sequence, so a learner
must infer the id map in context.
"""

from __future__ import annotations

import numpy as np

from stages.hmm_icl.hmm import HmmParams


def _shifted_cdf(probs: np.ndarray) -> np.ndarray:
    """Row r -> r + cumsum(row), last entry exactly r + 1, flattened (sorted, length R * C)."""
    cdf = np.cumsum(probs, axis=1)
    cdf /= cdf[:, -1:]
    cdf[:, -1] = 1.0
    return (cdf + np.arange(len(probs))[:, None]).ravel()


class HmmSampler:
    """Samples (n, L) emission ids, preallocating its work buffers for the largest batch seen."""

    def __init__(self, params: HmmParams):
        self.params = params.check(atol=1e-6)
        self.h, self.k = params.hidden, params.emissions
        self._pi_cdf = _shifted_cdf(params.pi[None, :])
        self._a_cdf = _shifted_cdf(params.A)
        self._b_cdf = _shifted_cdf(params.B)
        self._cap = 0

    def _buffers(self, n: int, length: int) -> None:
        if self._cap >= n and self._len == length:
            return
        self._cap, self._len = n, length
        self._u = np.empty((n, length))
        self._q = np.empty((n, length))
        self._z = np.empty((n, length), dtype=np.int64)
        self._idx = np.empty((n, length), dtype=np.int64)

    def sample(self, n: int, length: int, rng: np.random.Generator, out: np.ndarray | None = None,
               permute: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        """Draw ``n`` sequences of ``length`` ids into ``out`` (allocated if None).

        Returns (ids, permutations or None). With ``permute``, row i of the result is
        ``perm[i][y_i]`` where y_i is the HMM's own emission sequence.
        """
        self._buffers(n, length)
        u, q, z, idx = self._u[:n], self._q[:n], self._z[:n], self._idx[:n]
        h, k = self.h, self.k
        rng.random(out=u)
        # hidden states: one vectorised inverse-CDF step per position
        z[:, 0] = np.searchsorted(self._pi_cdf, u[:, 0], side="right")
        np.minimum(z[:, 0], h - 1, out=z[:, 0])
        for t in range(1, length):
            prev = z[:, t - 1]
            np.add(prev, u[:, t], out=q[:, t])
            cur = np.searchsorted(self._a_cdf, q[:, t], side="right")
            cur -= prev * h
            np.clip(cur, 0, h - 1, out=z[:, t])
        # emissions: all positions of all sequences in one call
        rng.random(out=u)
        np.add(z, u, out=q)
        idx[...] = np.searchsorted(self._b_cdf, q, side="right")
        idx -= z * k
        np.clip(idx, 0, k - 1, out=idx)
        out = np.empty((n, length), dtype=np.uint16) if out is None else out
        perms = None
        if permute:
            perms = rng.permuted(np.broadcast_to(np.arange(k, dtype=np.uint16), (n, k)), axis=1)
            out[...] = np.take_along_axis(perms, idx, axis=1)
        else:
            out[...] = idx
        return out, perms

    def sample_states(self, n: int, length: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Like ``sample`` but also returns the hidden states (for tests of the transition law)."""
        ids, _ = self.sample(n, length, rng)
        return ids, self._z[:n].copy()


def reference_sample(params: HmmParams, n: int, length: int, rng: np.random.Generator) -> np.ndarray:
    """The per-token baseline: one ``rng.choice`` per state and per emission (the benchmark's yardstick)."""
    out = np.empty((n, length), dtype=np.uint16)
    for i in range(n):
        z = rng.choice(params.hidden, p=params.pi)
        for t in range(length):
            if t:
                z = rng.choice(params.hidden, p=params.A[z])
            out[i, t] = rng.choice(params.emissions, p=params.B[z])
    return out
