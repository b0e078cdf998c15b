"""hmm_icl step 3: baselines and the per-HMM evaluation, against closed forms and scipy."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from scipy.stats import entropy

from stages.hmm_icl.baselines import bigram, in_context_token_logp, unigram
from stages.hmm_icl.evaluate import evaluate_hmm
from stages.hmm_icl.forward import forward
from stages.hmm_icl.hmm import HmmParams, random_params


def test_unigram_and_bigram_match_plain_counting():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 5, size=(7, 9))
    uni, bi = unigram(x, 5, 0.5), bigram(x, 5, 0.5)
    c = Counter(x.ravel().tolist())
    assert uni == pytest.approx([(c[v] + 0.5) / (x.size + 2.5) for v in range(5)])
    pairs = Counter((a, b) for row in x.tolist() for a, b in zip(row, row[1:]))
    for a in range(5):
        tot = sum(pairs[(a, b)] for b in range(5))
        assert bi[a] == pytest.approx([(pairs[(a, b)] + 0.5) / (tot + 2.5) for b in range(5)])


def test_in_context_predictors_match_direct_counting():
    rng = np.random.default_rng(1)
    x = rng.integers(0, 4, size=(3, 12))
    uni = in_context_token_logp(x, 4, 0.5, order=1, chunk=2)
    bi = in_context_token_logp(x, 4, 0.5, order=2, chunk=2)
    for i, row in enumerate(x.tolist()):
        for t, v in enumerate(row):
            prefix = row[:t]
            assert np.exp(uni[i, t]) == pytest.approx((prefix.count(v) + 0.5) / (t + 2.0))
            if t:
                prev = row[t - 1]
                pairs = list(zip(prefix, prefix[1:]))
                num = pairs.count((prev, v)) + 0.5
                den = sum(1 for a, _ in pairs if a == prev) + 2.0
                assert np.exp(bi[i, t]) == pytest.approx(num / den)


def test_kl_from_uniform_is_log_k_minus_predictive_entropy():
    params = random_params(4, 6, np.random.default_rng(2), concentration=0.5)
    val = np.random.default_rng(3).integers(0, 6, size=(10, 15))
    train = np.random.default_rng(4).integers(0, 6, size=(50, 15))
    metrics = evaluate_hmm(params, train, val, smoothing=1.0, chunk=3)
    pred = np.exp(forward(params, val, full=True).pred_logp)
    expected = np.log(6) - entropy(pred, axis=-1).mean()
    assert metrics["kl_from_uniform"] == pytest.approx(expected, rel=1e-10)
    assert metrics["uniform_ce"] == pytest.approx(np.log(6))
    assert metrics["hmm_ce"] == pytest.approx(-metrics["val_loglik_per_token"])


def test_iid_hmm_against_its_own_unigram():
    """A 1-state HMM predicts B[0] everywhere, so KL(HMM || unigram) = KL(B[0] || unigram)."""
    b = np.array([[0.5, 0.25, 0.15, 0.1]])
    params = HmmParams(pi=np.ones(1), A=np.ones((1, 1)), B=b)
    train = np.random.default_rng(5).choice(4, p=b[0], size=(2000, 20))
    val = np.random.default_rng(6).choice(4, p=b[0], size=(20, 20))
    metrics = evaluate_hmm(params, train, val, smoothing=1.0)
    uni = unigram(train, 4, 1.0)
    assert metrics["kl_from_unigram"] == pytest.approx(entropy(b[0], uni), rel=1e-9)
    assert metrics["kl_from_unigram"] < 1e-3  # 40k samples: the fitted unigram is close to B[0]
    assert metrics["hmm_final_ce"] <= metrics["uniform_final_ce"]
