"""hmm_icl: the permutation pool and the fair Bayes-optimal predictor (mixture forward algorithm).

References: brute-force enumeration over pool members and all hidden-state paths (the
definition of the mixture's predictive distribution), and the plain forward algorithm, which
the fair optimum must equal when the pool holds only the identity (M = 1).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from stages.hmm_icl.forward import forward, mixture_forward
from stages.hmm_icl.hmm import HmmParams, random_params
from stages.hmm_icl.icl import optimal_log_predictive
from stages.hmm_icl.pool import inverse, make_pool
from stages.hmm_icl.sampler import HmmSampler


def brute_force_joint(params: HmmParams, pool: np.ndarray, x: np.ndarray) -> float:
    """p(x) = (1/M) sum_m sum over all state paths of the member-m likelihood of x (shown ids)."""
    inv = inverse(pool)
    total = 0.0
    for m in range(len(pool)):
        y = inv[m][x]
        for path in itertools.product(range(params.hidden), repeat=len(x)):
            p = params.pi[path[0]] * params.B[path[0], y[0]]
            for t in range(1, len(x)):
                p *= params.A[path[t - 1], path[t]] * params.B[path[t], y[t]]
            total += p
    return total / len(pool)


def test_pool_is_seeded_distinct_and_starts_with_the_identity():
    pool = make_pool(6, 5, seed=3)
    assert pool.shape == (5, 6) and pool.dtype == np.uint16
    np.testing.assert_array_equal(pool[0], np.arange(6))
    assert len({tuple(p) for p in pool}) == 5
    assert all(sorted(p) == list(range(6)) for p in pool)
    np.testing.assert_array_equal(pool, make_pool(6, 5, seed=3))
    assert not np.array_equal(pool, make_pool(6, 5, seed=4))
    np.testing.assert_array_equal(make_pool(6, 1, seed=3), np.arange(6)[None])
    with pytest.raises(ValueError, match="distinct"):
        make_pool(3, 7, seed=0)  # only 3! = 6 permutations exist


def test_mixture_forward_equals_brute_force_enumeration():
    params = random_params(2, 3, np.random.default_rng(11), concentration=0.5)
    pool = make_pool(3, 4, seed=1)
    x = np.array([[2, 0, 1, 1], [0, 0, 2, 1], [1, 2, 2, 0]])
    res = mixture_forward(params, pool, x)
    pred = np.exp(res.pred_logp)
    np.testing.assert_allclose(pred.sum(axis=2), 1.0, atol=1e-12)
    for i, row in enumerate(x):
        for t in range(x.shape[1]):
            prefix = brute_force_joint(params, pool, row[:t]) if t else 1.0
            for k in range(3):
                joint = brute_force_joint(params, pool, np.r_[row[:t], k])
                assert pred[i, t, k] == pytest.approx(joint / prefix, abs=1e-12)
        # member posterior before position t+1 is prop. to the member's likelihood of the prefix
        inv = inverse(pool)
        for t in range(x.shape[1]):
            lik = np.array([np.exp(forward(params, inv[m][row[:t]][None]).loglik[0]) if t else 1.0
                            for m in range(len(pool))])
            np.testing.assert_allclose(np.exp(res.member_logpost[i, t]), lik / lik.sum(), atol=1e-12)


def test_mixture_forward_chunks_give_the_same_answer():
    params = random_params(3, 5, np.random.default_rng(2))
    pool = make_pool(5, 6, seed=0)
    x = np.random.default_rng(0).integers(0, 5, size=(9, 7))
    whole = mixture_forward(params, pool, x).pred_logp
    chunked = mixture_forward(params, pool, x, chunk_bytes=1).pred_logp  # one sequence per block
    np.testing.assert_allclose(chunked, whole, atol=1e-12)


def test_fair_optimum_equals_the_privileged_oracle_when_the_pool_is_the_identity():
    params = random_params(4, 6, np.random.default_rng(5))
    x, _, _ = HmmSampler(params).sample(20, 12, np.random.default_rng(1))
    fair = mixture_forward(params, make_pool(6, 1, seed=0), x).pred_logp
    oracle = optimal_log_predictive(params, x.astype(np.int64), None)
    np.testing.assert_allclose(fair, oracle, atol=1e-12)


def test_fair_optimum_lies_between_the_oracle_and_the_unknown_member_at_position_one():
    """Position 1: the oracle predicts pi B relabelled; the fair optimum the pool average of it."""
    params = random_params(3, 5, np.random.default_rng(8), concentration=0.3)
    pool = make_pool(5, 4, seed=2)
    x, perms, members = HmmSampler(params).sample(4000, 6, np.random.default_rng(3), pool=pool)
    np.testing.assert_array_equal(perms, pool[members])
    fair = mixture_forward(params, pool, x).pred_logp
    marginal = params.pi @ params.B
    expected = np.mean([marginal[inverse(pool)[m]] for m in range(len(pool))], axis=0)
    np.testing.assert_allclose(np.exp(fair[0, 0]), expected, atol=1e-12)
    xi = x.astype(np.int64)[..., None]
    ce_fair = -np.take_along_axis(fair, xi, axis=2)[..., 0].mean(0)
    ce_oracle = -np.take_along_axis(optimal_log_predictive(params, xi[..., 0], perms.astype(np.int64)), xi,
                                    axis=2)[..., 0].mean(0)
    assert ce_oracle[0] < ce_fair[0] - 0.05  # the privileged information is worth something at position 1
    assert np.all(ce_fair >= ce_oracle - 0.02)  # and never hurts (up to sampling error)
