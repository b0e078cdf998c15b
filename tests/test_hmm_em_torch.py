"""hmm_icl: the torch Baum-Welch backend against pomegranate (the reference implementation) and hmmlearn.

References: pomegranate's ``DenseHMM.summarize`` / ``from_summaries`` (same sufficient statistics
and M-step, ends frozen), hmmlearn's ``CategoricalHMM`` (an independent scaled forward-backward:
same log-likelihood and the same EM update from the same start), and the generating HMM (EM on
its samples recovers its log-likelihood).
"""

from __future__ import annotations

import numpy as np
import pytest

from stages.hmm_icl.baumwelch import TorchHmm
from stages.hmm_icl.configs import EmSpec
from stages.hmm_icl.em import fit_em
from stages.hmm_icl.forward import forward, loglik_per_token
from stages.hmm_icl.hmm import project, random_params, to_pomegranate
from stages.hmm_icl.sampler import HmmSampler
from stages.hmm_icl.torchctx import default_dtype


def _data(h=4, k=7, n=60, length=15, seed=0):
    truth = random_params(h, k, np.random.default_rng(seed), concentration=0.4)
    x = HmmSampler(truth).sample(n, length, np.random.default_rng(seed + 1))[0].astype(np.int64)
    start = project(random_params(h, k, np.random.default_rng(seed + 2)), 1e-14)
    return truth, x, start


def test_estep_statistics_equal_pomegranate():
    import torch

    _, x, start = _data()
    with default_dtype(torch.float64):
        ours = TorchHmm(start, torch.float64)
        logp = ours.summarize(torch.as_tensor(x)).numpy()
        pg = to_pomegranate(start)
        pg_logp = pg.summarize(torch.as_tensor(x).unsqueeze(-1)).numpy()
    np.testing.assert_allclose(logp, pg_logp, rtol=1e-10)
    np.testing.assert_allclose(logp, forward(start, x).loglik, rtol=1e-10)
    np.testing.assert_allclose(ours.stats.trans.numpy(), pg._xw_sum.numpy(), rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(ours.stats.start.numpy(), pg._xw_starts_sum.numpy(), rtol=1e-8, atol=1e-12)
    emit = torch.stack([d._xw_sum[0] for d in pg.distributions]).numpy()
    np.testing.assert_allclose(ours.stats.emit.numpy().T, emit, rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("update_freq", [None, 2])
def test_torch_and_pomegranate_backends_fit_the_same_hmm(update_freq):
    _, x, _ = _data(n=80)
    em = EmSpec(epochs=3, batch_size=20, update_freq=update_freq, torch_threads=1)
    a = fit_em(x, x[:10], 4, 7, em, seed=3, log=lambda m: None)
    b = fit_em(x, x[:10], 4, 7, em.model_copy(update={"backend": "pomegranate"}), seed=3, log=lambda m: None)
    assert a.updates == b.updates
    for name in ("pi", "A", "B"):
        np.testing.assert_allclose(getattr(a.params, name), getattr(b.params, name), rtol=1e-7, atol=1e-12)
    for ha, hb in zip(a.history, b.history):
        assert ha["train_loglik_per_token"] == pytest.approx(hb["train_loglik_per_token"], rel=1e-10)


def hmmlearn_one_iteration(start, x: np.ndarray):
    """hmmlearn's CategoricalHMM from ``start``, one EM iteration; returns (E-step log-likelihood, model)."""
    from hmmlearn.hmm import CategoricalHMM

    model = CategoricalHMM(n_components=start.hidden, n_features=start.emissions, n_iter=1, tol=-np.inf,
                           init_params="", params="ste", implementation="scaling", random_state=0)
    model.startprob_, model.transmat_, model.emissionprob_ = start.pi.copy(), start.A.copy(), start.B.copy()
    model.fit(x.reshape(-1, 1), lengths=[x.shape[1]] * len(x))
    return float(model.monitor_.history[0]), model


def test_one_em_iteration_equals_hmmlearn():
    _, x, _ = _data(h=5, k=9, n=100, length=20, seed=4)
    em = EmSpec(epochs=1, batch_size=len(x), update_freq=None, torch_threads=1, floor=1e-14)
    # fit_em starts from this same seeded initialisation
    res = fit_em(x, None, 5, 9, em, seed=0, log=lambda m: None)
    init = project(random_params(5, 9, np.random.default_rng([0, 0, 0]), em.init_concentration), em.floor)
    ll_ref, ref = hmmlearn_one_iteration(init, x)
    assert res.history[0]["train_loglik_per_token"] * x.size == pytest.approx(ll_ref, rel=1e-9)
    np.testing.assert_allclose(res.params.pi, ref.startprob_, rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(res.params.A, ref.transmat_, rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(res.params.B, ref.emissionprob_, rtol=1e-6, atol=1e-12)


def test_em_on_samples_of_a_known_hmm_recovers_its_log_likelihood():
    truth = random_params(3, 6, np.random.default_rng(1), concentration=0.3)
    sampler = HmmSampler(truth)
    train = sampler.sample(3000, 30, np.random.default_rng(2))[0]
    held = sampler.sample(500, 30, np.random.default_rng(3))[0]
    em = EmSpec(epochs=20, batch_size=100, update_freq=2, restarts=4, torch_threads=1)
    from stages.hmm_icl.em import fit_best_of

    best, _ = fit_best_of(train, None, 3, 6, em, seed=0, log=lambda m: None)
    assert loglik_per_token(best.params, held) == pytest.approx(loglik_per_token(truth, held), abs=0.01)
