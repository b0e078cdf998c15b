"""hmm_icl step 2: the exact forward algorithm and batched EM with pomegranate.

References: brute-force enumeration over all state paths (the definition of the likelihood),
pomegranate's own ``DenseHMM.log_probability``, and EM's monotonicity theorem.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from stages.hmm_icl.configs import EmSpec
from stages.hmm_icl.em import fit_em, update_windows
from stages.hmm_icl.forward import forward
from stages.hmm_icl.hmm import HmmParams, random_params


def brute_force_logprob(params: HmmParams, x: np.ndarray) -> float:
    """log p(x) = log sum over all H^L state paths of pi(z0) B(z0,x0) prod A(z,z') B(z',x')."""
    total = 0.0
    for path in itertools.product(range(params.hidden), repeat=len(x)):
        p = params.pi[path[0]] * params.B[path[0], x[0]]
        for t in range(1, len(x)):
            p *= params.A[path[t - 1], path[t]] * params.B[path[t], x[t]]
        total += p
    return float(np.log(total))


@pytest.fixture
def tiny() -> HmmParams:
    return random_params(3, 4, np.random.default_rng(7))


def test_forward_loglik_matches_brute_force(tiny):
    rng = np.random.default_rng(1)
    x = rng.integers(0, 4, size=(6, 5))
    res = forward(tiny, x, full=True)
    expected = [brute_force_logprob(tiny, row) for row in x]
    np.testing.assert_allclose(res.loglik, expected, rtol=0, atol=1e-12)


def test_forward_predictive_matches_brute_force_ratio(tiny):
    """p(x_t = k | x_<t) = p(x_<t, k) / p(x_<t), each by enumeration."""
    x = np.array([[2, 0, 3, 1, 1]])
    pred = np.exp(forward(tiny, x, full=True).pred_logp[0])
    np.testing.assert_allclose(pred.sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(pred[0], tiny.pi @ tiny.B, atol=1e-12)
    for t in range(1, 5):
        prefix = brute_force_logprob(tiny, x[0, :t])
        for k in range(4):
            joint = brute_force_logprob(tiny, np.r_[x[0, :t], k])
            assert pred[t, k] == pytest.approx(np.exp(joint - prefix), abs=1e-12)


def test_forward_matches_pomegranate_log_probability():
    import torch

    from stages.hmm_icl.hmm import to_pomegranate

    params = random_params(6, 9, np.random.default_rng(3), concentration=0.3)
    x = np.random.default_rng(4).integers(0, 9, size=(12, 40))
    model = to_pomegranate(params, torch.float64)
    theirs = model.log_probability(torch.as_tensor(x)[..., None]).numpy()
    np.testing.assert_allclose(forward(params, x).loglik, theirs, rtol=1e-10)


def test_forward_does_not_underflow_on_long_sequences(tiny):
    x = np.random.default_rng(5).integers(0, 4, size=(2, 3000))
    res = forward(tiny, x)
    assert np.all(np.isfinite(res.loglik)) and res.loglik.max() < -1000


def test_update_windows_fold_the_remainder_into_the_last_window():
    # batches of 3, 3, 3, 1 sequences
    assert update_windows(n=10, batch_size=3, update_freq=2) == [[(0, 3), (3, 6)], [(6, 9), (9, 10)]]
    assert update_windows(n=10, batch_size=3, update_freq=3) == [[(0, 3), (3, 6), (6, 9), (9, 10)]]
    assert update_windows(n=14, batch_size=3, update_freq=2) == [[(0, 3), (3, 6)], [(6, 9), (9, 12), (12, 14)]]
    assert update_windows(n=12, batch_size=3, update_freq=1) == [[(0, 3)], [(3, 6)], [(6, 9)], [(9, 12)]]
    assert update_windows(n=5, batch_size=2, update_freq=None) == [[(0, 2), (2, 4), (4, 5)]]


def test_estep_memory_cap_shrinks_the_batch():
    from stages.hmm_icl.em import effective_batch_size

    em = EmSpec(epochs=1, batch_size=1024, estep_memory_gb=40, backend="pomegranate")
    assert effective_batch_size(em, hidden=100, seq_len=100, itemsize=4) == 1024
    # H = L = 600 in float32: 3 * 600 * 600^2 * 4 bytes per sequence -> 16 sequences in 40 GiB
    assert effective_batch_size(em, hidden=600, seq_len=600, itemsize=4) == 16
    assert effective_batch_size(em.model_copy(update={"estep_memory_gb": None}), 600, 600, 4) == 1024
    # the torch backend holds (batch, L, H) tensors only: 3 * 600 * 600 * 4 bytes -> all 1024 fit in 40 GiB
    torch_em = em.model_copy(update={"backend": "torch", "estep_memory_gb": 0.1})
    assert effective_batch_size(torch_em, hidden=600, seq_len=600, itemsize=4) == int(0.1 * 2**30 // (3 * 600 * 600 * 4))


def _disjoint_vocab_data() -> np.ndarray:
    """Two sequences with disjoint words: each M-step window sees half the vocabulary only."""
    return np.array([[0, 1, 0, 1, 1, 0], [2, 3, 3, 2, 2, 3]])


@pytest.mark.parametrize("backend", ["torch", "pomegranate"])
def test_zero_floor_produces_nan_and_the_floor_prevents_it(backend):
    em = EmSpec(epochs=2, batch_size=1, update_freq=1, floor=0.0, torch_threads=1, backend=backend)
    with pytest.raises(FloatingPointError):
        fit_em(_disjoint_vocab_data(), None, hidden=2, emissions=4, em=em, seed=0)
    floored = fit_em(_disjoint_vocab_data(), None, hidden=2, emissions=4, em=em.model_copy(update={"floor": 1e-14}),
                     seed=0)
    for arr in (floored.params.pi, floored.params.A, floored.params.B):
        assert np.all(np.isfinite(arr)) and arr.min() >= 1e-14 * 0.99
    assert all(np.isfinite(h["train_loglik_per_token"]) for h in floored.history)


def _sample_corpus(params: HmmParams, n: int, length: int, seed: int) -> np.ndarray:
    from stages.hmm_icl.sampler import HmmSampler

    return HmmSampler(params).sample(n, length, np.random.default_rng(seed))[0]


def test_full_batch_em_never_decreases_the_likelihood():
    """EM's monotonicity theorem: with one M-step per epoch, the log-likelihood never drops."""
    truth = random_params(3, 5, np.random.default_rng(11), concentration=0.5)
    data = _sample_corpus(truth, 200, 20, seed=12)
    em = EmSpec(epochs=8, batch_size=50, update_freq=None, torch_threads=1)
    hist = [h["train_loglik_per_token"] for h in fit_em(data, None, 3, 5, em, seed=0).history]
    assert all(b >= a - 1e-9 for a, b in zip(hist, hist[1:])), hist
    assert hist[-1] > hist[0] + 0.05


def test_em_resumes_from_checkpoint_to_identical_parameters(tmp_path):
    truth = random_params(3, 5, np.random.default_rng(21))
    data = _sample_corpus(truth, 120, 16, seed=22)
    em = EmSpec(epochs=4, batch_size=20, update_freq=2, checkpoint_every=1, torch_threads=1)
    straight = fit_em(data, data[:10], 3, 5, em, seed=5, ckpt_dir=tmp_path / "a")
    calls = {"n": 0}

    def stop_once() -> bool:
        calls["n"] += 1
        return calls["n"] == 2  # "preempted" after epoch 2

    with pytest.raises(InterruptedError):
        fit_em(data, data[:10], 3, 5, em, seed=5, ckpt_dir=tmp_path / "b", stop_requested=stop_once)
    resumed = fit_em(data, data[:10], 3, 5, em, seed=5, ckpt_dir=tmp_path / "b")
    assert resumed.resumed_from_epoch == 2
    for name in ("pi", "A", "B"):
        np.testing.assert_array_equal(getattr(resumed.params, name), getattr(straight.params, name))
    assert resumed.history == straight.history
