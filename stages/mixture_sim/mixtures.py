"""Dirichlet-sampled data mixtures, decided at plan time.

Why at plan time: each mixture becomes part of one training stage's config, so DVC caches every
(mixture, size) run separately and the compiled ``dvc.yaml`` shows what each run trains on.
Proportions are rounded to 6 decimals (stable config text) and the rounding residue is put on
the largest share, so every mixture sums to 1 within float precision.
"""

from __future__ import annotations

import numpy as np

from stages.mixture_sim.configs import MixtureSampling


def sample_mixtures(domains: list[str], sampling: MixtureSampling, seed: int) -> list[dict[str, float]]:
    rng = np.random.default_rng([seed, 1729])
    draws = list(rng.dirichlet(np.full(len(domains), sampling.alpha), size=sampling.count))
    if sampling.include_pure:
        draws += list(np.eye(len(domains)))
    out = []
    for p in draws:
        p = np.round(np.asarray(p, dtype=np.float64), 6)
        p[int(np.argmax(p))] += 1.0 - p.sum()
        out.append({d: float(round(v, 6)) for d, v in zip(domains, p)})
    return out
