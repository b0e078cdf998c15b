"""hmm_icl step 4: vectorised sampler, shards + manifest, the shard gate, refit, Bayes-optimality.

Tolerances are stated statistically: empirical frequencies must lie within 5 binomial standard
errors of the true probabilities (seeded, so the test is deterministic, and a wrong sampler is
off by far more than that).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from harness.validation import GateFailure
from stages.hmm_icl.baselines import bigram, unigram
from stages.hmm_icl.configs import EmSpec, GridPoint, SampleConfig, SynthSpec
from stages.hmm_icl.em import fit_best_of
from stages.hmm_icl.forward import forward, loglik_per_token
from stages.hmm_icl.gates import check_shards
from stages.hmm_icl.hmm import HmmParams, random_params
from stages.hmm_icl.sample import run as run_sample
from stages.hmm_icl.pool import Permutations, make_pool
from stages.hmm_icl.sample import unpermute
from stages.hmm_icl.sampler import HmmSampler, reference_sample
from stages.hmm_icl.shards import lm_stream, read_perms, read_split


def structured_hmm(h: int = 3, k: int = 5) -> HmmParams:
    """Sticky transitions and distinct emission profiles: long-range structure a bigram misses."""
    A = np.full((h, h), 0.1 / (h - 1))
    np.fill_diagonal(A, 0.9)
    B = np.full((h, k), 0.02)
    for s in range(h):
        B[s, s % k] = 0.5
        B[s, (s + 1) % k] = 0.3
    B /= B.sum(axis=1, keepdims=True)
    return HmmParams(pi=np.full(h, 1 / h), A=A, B=B).check()


def within_sampling_error(counts: np.ndarray, totals: np.ndarray, probs: np.ndarray, sigmas: float = 5.0) -> bool:
    est = counts / totals[:, None]
    se = np.sqrt(probs * (1 - probs) / totals[:, None])
    return bool(np.all(np.abs(est - probs) <= sigmas * se + 1e-12))


def test_empirical_frequencies_match_the_hmm():
    params = random_params(4, 6, np.random.default_rng(0), concentration=0.7)
    ids, states = HmmSampler(params).sample_states(3000, 40, np.random.default_rng(1))
    h, k = params.hidden, params.emissions
    start = np.bincount(states[:, 0], minlength=h)
    assert within_sampling_error(start[None, :], np.array([start.sum()]), params.pi[None, :])
    trans = np.bincount((states[:, :-1] * h + states[:, 1:]).ravel(), minlength=h * h).reshape(h, h)
    assert within_sampling_error(trans, trans.sum(1), params.A)
    emit = np.bincount((states * k + ids).ravel(), minlength=h * k).reshape(h, k)
    assert within_sampling_error(emit, emit.sum(1), params.B)
    # and a wrong law is rejected by the same criterion (the test has power)
    assert not within_sampling_error(trans, trans.sum(1), params.A[::-1])


def test_vectorised_and_per_token_samplers_agree_in_distribution():
    params = structured_hmm()
    fast = HmmSampler(params).sample(4000, 8, np.random.default_rng(2))[0]
    slow = reference_sample(params, 400, 8, np.random.default_rng(3))
    from scipy.stats import chi2_contingency

    for t in (0, 7):  # marginal law of the first and the last token
        table = np.stack([np.bincount(fast[:, t], minlength=5), np.bincount(slow[:, t], minlength=5)])
        assert chi2_contingency(table).pvalue > 1e-3


def test_pool_members_are_drawn_uniformly_and_relabel_the_same_draws():
    params = structured_hmm()
    pool = make_pool(5, 3, seed=0)
    x, perms, members = HmmSampler(params).sample(3000, 10, np.random.default_rng(4), pool=pool)
    np.testing.assert_array_equal(perms, pool[members])
    counts = np.bincount(members, minlength=3)
    assert within_sampling_error(counts, np.full(3, 3000), np.full(3, 1 / 3))
    plain, _, _ = HmmSampler(params).sample(3000, 10, np.random.default_rng(4))
    np.testing.assert_array_equal(unpermute(x, perms), plain)


def test_stationary_start_draws_the_first_state_from_the_stationary_law():
    params = structured_hmm()
    stat = params.stationary()
    np.testing.assert_allclose(stat @ params.A, stat, atol=1e-12)
    _, z = HmmSampler(params.with_start("stationary")).sample_states(20000, 2, np.random.default_rng(0))
    assert within_sampling_error(np.bincount(z[:, 0], minlength=3), np.full(3, 20000), stat)


def test_permuted_emissions_are_per_sequence_permutations():
    params = structured_hmm()
    x, perms, members = HmmSampler(params).sample(500, 30, np.random.default_rng(4), permute=True)
    assert members is None
    assert np.all(np.sort(perms, axis=1) == np.arange(5))
    assert len({tuple(p) for p in perms}) > 50  # many different maps, not one shared permutation
    y = unpermute(x, perms)
    plain, _, _ = HmmSampler(params).sample(500, 30, np.random.default_rng(4))
    np.testing.assert_array_equal(y, plain)  # same draws, only relabelled


def test_bayes_optimal_beats_every_baseline_on_its_own_samples():
    params = structured_hmm()
    sampler = HmmSampler(params)
    train = sampler.sample(3000, 30, np.random.default_rng(5))[0].astype(np.int64)
    test = sampler.sample(500, 30, np.random.default_rng(6))[0].astype(np.int64)
    ce_opt = -loglik_per_token(params, test)
    uni, bi = unigram(train, 5, 1.0), bigram(train, 5, 1.0)
    ce_uniform = np.log(5)
    ce_unigram = -np.log(uni[test]).mean()
    ce_bigram = -np.r_[np.log(uni[test[:, 0]]), np.log(bi[test[:, :-1], test[:, 1:]]).ravel()].sum() / test.size
    assert ce_opt < ce_bigram < ce_unigram < ce_uniform
    assert ce_bigram - ce_opt > 0.05  # sticky states: a clear margin, not noise


def test_refit_on_a_large_sample_recovers_the_log_likelihood():
    """Stepwise EM, best of 4 random restarts, on 60k tokens: within 0.005 nats/token of the
    true model's held-out log-likelihood (a single run can stall in a local optimum ~0.07 below)."""
    truth = structured_hmm()
    sampler = HmmSampler(truth)
    train = sampler.sample(2000, 30, np.random.default_rng(7))[0]
    held = sampler.sample(500, 30, np.random.default_rng(8))[0]
    em = EmSpec(epochs=40, batch_size=250, update_freq=2, restarts=4, torch_threads=1)
    fit, finals = fit_best_of(train, None, hidden=3, emissions=5, em=em, seed=3, log=lambda _: None)
    assert len(finals) == 4 and fit.history[-1]["train_loglik_per_token"] == max(finals)
    ll_true, ll_fit = loglik_per_token(truth, held), loglik_per_token(fit.params, held)
    assert abs(ll_fit - ll_true) < 0.005, (ll_fit, ll_true)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> SampleConfig:
    root = tmp_path_factory.mktemp("synthetic")
    structured_hmm(3, 6).save(root / "hmm.npz")
    cfg = SampleConfig(point=GridPoint(emissions=6, hidden=3, seq_len=12),
                       synth=SynthSpec(train_sequences=250, val_sequences=20, eval_sequences=30, batch_sequences=64,
                                       shard_sequences=100),
                       permutations=Permutations(pool=None), seed=9, hmm_dir=str(root), out_dir=str(root / "corpus"), metrics=str(root / "metrics.json"))
    run_sample(cfg)
    return cfg


def test_sample_stage_writes_shards_and_a_manifest(synthetic):
    out = Path(synthetic.out_dir)
    manifest = json.loads((out / "manifest.json").read_text())
    train = manifest["splits"]["train"]
    assert [s["rows"] for s in train["shards"]] == [100, 100, 50]
    assert train["tokens"] == 250 * 12 and manifest["seed"] == 9
    for shard in train["shards"]:
        assert (out / shard["file"]).stat().st_size == shard["count"] * 2  # uint16
    x = read_split(out, "train")
    assert x.shape == (250, 12) and x.dtype == np.uint16 and x.max() < 6
    perms = read_perms(out, "eval")
    assert perms.shape == (30, 6)
    stream = lm_stream(out, "val", separator=6)
    assert stream.shape == (20 * 13,) and np.all(stream[::13] == 6)
    np.testing.assert_array_equal(stream.reshape(20, 13)[:, 1:], read_split(out, "val"))
    assert json.loads((out / "perf.json").read_text())["tokens_per_s"] > 0


def test_sample_stage_is_deterministic(synthetic, tmp_path):
    again = synthetic.model_copy(update={"out_dir": str(tmp_path / "again"), "metrics": str(tmp_path / "m.json")})
    run_sample(again)
    first = json.loads((Path(synthetic.out_dir) / "manifest.json").read_text())
    second = json.loads((tmp_path / "again" / "manifest.json").read_text())
    assert first == second  # includes every shard's sha256
    assert Path(synthetic.metrics).read_text() == (tmp_path / "m.json").read_text()


def _corrupt_copy(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_gate_rejects_an_id_out_of_range(synthetic, tmp_path):
    bad = _corrupt_copy(Path(synthetic.out_dir), tmp_path / "bad")
    shard = bad / "train-00001.bin"
    mm = np.memmap(shard, dtype=np.uint16, mode="r+")
    mm[17] = 6  # == K
    mm.flush()
    del mm
    with pytest.raises(GateFailure, match="max_id"):
        check_shards(bad, "test")


def test_gate_rejects_a_wrong_token_count(synthetic, tmp_path):
    bad = _corrupt_copy(Path(synthetic.out_dir), tmp_path / "short")
    shard = bad / "train-00002.bin"
    shard.write_bytes(shard.read_bytes()[:-24])  # 12 ids short: one sequence missing
    with pytest.raises(GateFailure, match="actual_count"):
        check_shards(bad, "test")


def test_forward_oracle_of_permuted_sequences_equals_the_unpermuted_likelihood(synthetic):
    out = Path(synthetic.out_dir)
    params = HmmParams.load(Path(synthetic.hmm_dir) / "hmm.npz")
    x, perms = read_split(out, "eval"), read_perms(out, "eval")
    # the oracle that knows perm: emission matrix with columns relabelled, B'[:, perm[j]] = B[:, j]
    lls = []
    for row, perm in zip(x, perms):
        bp = np.empty_like(params.B)
        bp[:, perm] = params.B
        lls.append(forward(HmmParams(params.pi, params.A, bp), row[None, :]).loglik[0])
    np.testing.assert_allclose(lls, forward(params, unpermute(x, perms)).loglik, rtol=1e-12)
