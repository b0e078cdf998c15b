"""Vectorised HMM sampler: whole batches of sequences per step, no per-token Python loop.

How: Walker's alias method, one table per row of pi, A and B. A row with C outcomes becomes
C equiprobable columns, column j holding outcome j with probability ``prob[j]`` and its
``alias[j]`` otherwise; a draw is one uniform u: column j = floor(u C), and the fractional part
f = u C - j decides between j and alias[j]. Every token then costs O(1) elementwise numpy work
(a multiply, a floor, two gathers, a compare, a select) instead of a binary search, and rows
with different distributions are served by the same vectorised call by offsetting the flat
table index by ``row * C``. Hidden states need one such step per position (the chain), the
emissions of a whole batch are drawn in one shot.

Exactness: the alias tables are built in float64 (Vose's algorithm) and are exact up to
rounding; f carries the ~53 - log2(C) low bits of u, so a probability is represented to
about 2^-37 at C = 65534, far below anything the study measures. Tests compare the empirical
frequencies and the transition law with the HMM and with a per-token ``rng.choice`` sampler.

Emission permutations (see ``pool.py``): token ids shown are ``perm[y]``, with ``perm`` either a
member of a finite pool drawn uniformly per sequence, or (the unbounded case) a fresh uniformly
random permutation of the K ids per sequence.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stages.hmm_icl.hmm import HmmParams


def alias_table(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vose's alias tables of every row of ``probs`` (R, C): (prob (R, C) float64, alias (R, C) int64)."""
    probs = np.asarray(probs, dtype=np.float64)
    rows, c = probs.shape
    prob = np.ones((rows, c))
    alias = np.tile(np.arange(c, dtype=np.int64), (rows, 1))
    for r in range(rows):
        scaled = probs[r] / probs[r].sum() * c
        small = [i for i in range(c) if scaled[i] < 1.0]
        large = [i for i in range(c) if scaled[i] >= 1.0]
        while small and large:
            s, g = small.pop(), large.pop()
            prob[r, s], alias[r, s] = scaled[s], g
            scaled[g] -= 1.0 - scaled[s]
            (small if scaled[g] < 1.0 else large).append(g)
        # leftovers are 1 up to rounding: they keep prob 1 (their own column)
    return prob, alias


#: elements per vectorised emission draw (keeps the temporaries in cache)
_CHUNK = 1 << 15


@dataclass
class _Table:
    """Flattened alias tables of R rows with C outcomes each."""

    prob: np.ndarray
    alias: np.ndarray
    c: int

    @classmethod
    def of(cls, probs: np.ndarray) -> "_Table":
        prob, alias = alias_table(probs)
        return cls(prob=prob.ravel(), alias=alias.ravel(), c=probs.shape[1])

    def draw(self, rows: np.ndarray | None, u: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Outcome per element of ``u`` for table row ``rows`` (None: row 0), written into ``out``."""
        q = u * self.c
        own = q.astype(np.int64)
        np.minimum(own, self.c - 1, out=own)  # u * C rounds up to C only at u ~ 1
        q -= own  # the fractional part: the second uniform
        flat = own if rows is None else own + rows * self.c
        np.copyto(out, np.where(q < self.prob[flat], own, self.alias[flat]))
        return out


class HmmSampler:
    """Samples (n, L) emission ids; one alias table per row of pi, A and B."""

    def __init__(self, params: HmmParams):
        self.params = params.check(atol=1e-6)
        self.h, self.k = params.hidden, params.emissions
        self._pi = _Table.of(params.pi[None, :])
        self._a = _Table.of(params.A)
        self._b = _Table.of(params.B)
        self._z: np.ndarray | None = None

    def sample(self, n: int, length: int, rng: np.random.Generator, out: np.ndarray | None = None,
               permute: bool = False, pool: np.ndarray | None = None,
               start: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """Draw ``n`` sequences of ``length`` ids into ``out`` (allocated if None).

        ``pool`` (M, K): each sequence's ids are relabelled by a pool member drawn uniformly;
        ``permute`` without a pool: by a fresh random permutation per sequence (unbounded case).
        ``start``: the initial-state distribution (default pi; e.g. the stationary distribution).
        Returns (ids, per-sequence permutations or None, per-sequence pool member or None).
        """
        # time-major (L, n): every step of the chain reads and writes contiguous rows
        z = np.empty((length, n), dtype=np.int64)
        u = rng.random((length, n))
        first = self._pi if start is None else _Table.of(np.asarray(start)[None, :])
        first.draw(None, u[0], z[0])
        for t in range(1, length):
            self._a.draw(z[t - 1], u[t], z[t])
        rng.random(out=u)
        y = np.empty((length, n), dtype=np.int64)
        step = max(1, _CHUNK // max(1, n))  # blocks of rows that stay in cache
        for t in range(0, length, step):
            self._b.draw(z[t : t + step], u[t : t + step], y[t : t + step])
        y, self._z = y.T, z.T
        out = np.empty((n, length), dtype=np.uint16) if out is None else out
        perms = members = None
        if pool is not None:
            pool = np.asarray(pool)
            members = rng.integers(0, len(pool), size=n)
            perms = pool[members]
        elif permute:
            perms = rng.permuted(np.broadcast_to(np.arange(self.k, dtype=np.uint16), (n, self.k)), axis=1)
        if perms is None:
            out[...] = y
        else:
            out[...] = np.take_along_axis(perms, y, axis=1)
        return out, perms, members

    def sample_states(self, n: int, length: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Like ``sample`` but also returns the hidden states (for tests of the transition law)."""
        ids, _, _ = self.sample(n, length, rng)
        return ids, self._z.copy()


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
