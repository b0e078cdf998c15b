"""Emission permutations drawn from a finite pool of M permutations fixed by the seed.

Why a finite pool: with a fresh uniformly random permutation per sequence (the seed's
unbounded case) the Bayes-optimal predictor that does *not* know the permutation is a sum
over K! maps, which nobody can compute; the only exact reference is the privileged oracle
that knows the map, and at position 1 no learner can beat uniform while that oracle can
(~1 nat of the old "gap" was privileged information). With a pool of M permutations the data
are a uniform mixture of M HMMs (one per member, emissions relabelled), so the fair optimum is
the mixture forward algorithm (``forward.mixture_forward``), exactly as in GINC's mixture of
HMMs. ``pool: 1`` is the identity (no permutation); ``pool: null`` keeps the unbounded case,
which has no fair reference.

Member 0 is always the identity, so growing M only adds members; members are distinct.
"""

from __future__ import annotations

import numpy as np

from harness.schema import StrictModel
from pydantic import Field

#: random stream of the pool draw: independent of the sampler's streams (0, 1, 2)
POOL_STREAM = 7


class Permutations(StrictModel):
    """The spec's ``permutations``: ``{pool: M}``; M = 1 no permutation; null = a fresh one per sequence."""

    pool: int | None = Field(..., ge=1)

    @property
    def tag(self) -> str:
        return "punb" if self.pool is None else f"p{self.pool}"

    @property
    def has_fair_reference(self) -> bool:
        return self.pool is not None


def make_pool(emissions: int, size: int, seed: int) -> np.ndarray:
    """(M, K) uint16: row 0 the identity, rows 1.. distinct seeded random permutations of range(K)."""
    if size < 1:
        raise ValueError(f"pool size must be >= 1, got {size}")
    rng = np.random.default_rng([seed, POOL_STREAM, emissions, size])
    rows, seen = [np.arange(emissions)], {tuple(range(emissions))}
    attempts = 0
    while len(rows) < size:
        perm = rng.permutation(emissions)
        attempts += 1
        if tuple(perm) not in seen:
            seen.add(tuple(perm))
            rows.append(perm)
        elif attempts > 100 * size:
            raise ValueError(f"cannot draw {size} distinct permutations of {emissions} ids")
    return np.stack(rows).astype(np.uint16)


def inverse(perms: np.ndarray) -> np.ndarray:
    """inverse[m, k] = the HMM emission shown as id k under member m (perm[inverse[k]] = k)."""
    return np.argsort(np.asarray(perms), axis=-1).astype(np.int64)
