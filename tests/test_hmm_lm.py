"""hmm_icl step 5: the Llama on synthetic shards (shared trainer) and the ICL measurement.

The key independent check: held-out sequences are drawn from the oracle p*, so for ANY model
E[CE_model - CE_optimal] = E[KL(p* || p_model)]. The left side uses only the observed tokens'
log-probabilities, the right side full distributions and the permutation bookkeeping; a wrong
input shift, a wrong permutation direction or a wrong oracle breaks the identity.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from harness.trainer import TrainSettings
from harness.validation import GateFailure
from stages.hmm_icl.baselines import kl_rows
from stages.hmm_icl.configs import GridPoint, IclConfig, IclSpec, LlamaSpec, LmTrainConfig, SampleConfig, SynthSpec
from stages.hmm_icl.icl import model_log_predictive, optimal_log_predictive, per_position, summarise, token_ce
from stages.hmm_icl.icl import run as run_icl
from stages.hmm_icl.lm import load_llama
from stages.hmm_icl.pool import Permutations
from stages.hmm_icl.sample import run as run_sample
from stages.hmm_icl.shards import read_perms, read_split
from stages.hmm_icl.train import run as run_train

K, H, L = 6, 3, 16
POINT = GridPoint(emissions=K, hidden=H, seq_len=L)
POOL = 4


def _hmm():
    from test_hmm_sampler import structured_hmm

    return structured_hmm(H, K)


def _train_config(root: Path, shards: Path, steps: int = 80) -> LmTrainConfig:
    return LmTrainConfig(
        point=POINT, model=LlamaSpec(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64),
        train=TrainSettings(steps=steps, batch_size=16, seq_len=L + 1, lr=5e-3, warmup_steps=5, eval_every=0,
                            eval_batches=2, checkpoint_every=40, device="cpu", seed=1, threads=1),
        shards_dir=str(shards), out_dir=str(root / "lm"), metrics=str(root / "lm.json"), curve=str(root / "lm.csv"))


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("icl")
    _hmm().save(root / "hmm.npz")
    run_sample(SampleConfig(point=POINT, synth=SynthSpec(train_sequences=1024, val_sequences=64, eval_sequences=200,
                                                         batch_sequences=256, shard_sequences=512),
                            permutations=Permutations(pool=POOL), seed=4, hmm_dir=str(root), out_dir=str(root / "shards"), metrics=str(root / "s.json")))
    cfg = _train_config(root, root / "shards")
    run_train(cfg)
    return {"root": root, "shards": root / "shards", "lm": root / "lm", "cfg": cfg}


def test_train_stage_learns_and_saves_a_loadable_llama(trained):
    metrics = json.loads((trained["root"] / "lm.json").read_text())
    assert metrics["steps"] == 80 and metrics["parameters"] > 1000
    assert metrics["dev_loss"] < np.log(K)  # better than uniform over the K ids
    model = load_llama(str(trained["lm"]))
    assert model.config.vocab_size == K + 1 and model.config.max_position_embeddings == L + 1


def test_model_predictions_are_causal_and_shifted_by_the_separator(trained):
    model = load_llama(str(trained["lm"]))
    x = read_split(trained["shards"], "eval", 4).astype(np.int64)
    base = model_log_predictive(model, x, K, "cpu", batch_size=4)
    assert base.shape == (4, L, K)
    np.testing.assert_allclose(np.exp(base).sum(-1), 1.0, atol=1e-9)
    changed = x.copy()
    changed[:, 7] = (changed[:, 7] + 1) % K
    other = model_log_predictive(model, changed, K, "cpu", batch_size=4)
    np.testing.assert_allclose(other[:, :8], base[:, :8], atol=1e-6)  # x_7 is not visible at positions <= 7
    assert np.abs(other[:, 8] - base[:, 8]).max() > 1e-4  # ... but is at position 8


def test_ce_gap_equals_kl_from_the_oracle_in_expectation(trained):
    from test_hmm_sampler import structured_hmm

    params = structured_hmm(H, K)
    model = load_llama(str(trained["lm"]))
    x = read_split(trained["shards"], "eval").astype(np.int64)
    perms = read_perms(trained["shards"], "eval").astype(np.int64)
    log_model = model_log_predictive(model, x, K, "cpu", batch_size=64)
    log_opt = optimal_log_predictive(params, x, perms)
    xi = x[..., None]
    gap = (np.take_along_axis(log_opt, xi, 2) - np.take_along_axis(log_model, xi, 2))[..., 0]
    kl = kl_rows(log_opt, log_model)
    diff = (gap - kl).ravel()
    se = diff.std(ddof=1) / np.sqrt(diff.size)
    assert abs(diff.mean()) < 4 * se, (gap.mean(), kl.mean(), se)
    assert gap.mean() > 0  # an 80-step Llama is worse than the oracle
    # with the wrong permutation direction the identity fails by far more
    wrong = np.take_along_axis(forward_pred(params, x, perms), perms[:, None, :], axis=2)
    wrong_gap = (np.take_along_axis(wrong, xi, 2) - np.take_along_axis(log_model, xi, 2))[..., 0]
    assert abs((wrong_gap - kl_rows(wrong, log_model)).mean()) > 10 * se


def forward_pred(params, x, perms):
    from stages.hmm_icl.forward import forward
    from stages.hmm_icl.sample import unpermute

    return forward(params, unpermute(x, perms), full=True).pred_logp


def test_per_position_of_the_oracle_against_itself_is_zero(trained):
    from test_hmm_sampler import structured_hmm

    x = read_split(trained["shards"], "eval", 20).astype(np.int64)
    log_opt = optimal_log_predictive(structured_hmm(H, K), x, read_perms(trained["shards"], "eval")[:20])
    zeros = np.zeros(x.shape)
    ce = {"model": token_ce(x, log_opt), "oracle": token_ce(x, log_opt), "unigram_ic": zeros, "bigram_ic": zeros}
    curve = per_position(ce, kl_rows(log_opt, log_opt), None)
    assert np.allclose(curve["gap_model"], 0) and np.allclose(curve["kl_fair_model"], 0, atol=1e-12)
    summary = summarise(ce, 0.25)
    assert summary["target"] == "oracle" and summary["gap_model_late"] == 0 and summary["gap_model_pos1"] == 0


def test_icl_stage_writes_curves_and_metrics(trained):
    root = trained["root"]
    cfg = IclConfig(point=POINT, permutations=Permutations(pool=POOL), icl=IclSpec(device="cpu", window=0.25, torch_threads=1), hmm_dir=str(root),
                    shards_dir=str(trained["shards"]), lm_dir=str(trained["lm"]), metrics=str(root / "icl.json"),
                    curve=str(root / "icl.csv"))
    run_icl(cfg)
    import pandas as pd

    curve = pd.read_csv(root / "icl.csv")
    metrics = json.loads((root / "icl.json").read_text())
    assert list(curve["position"]) == list(range(1, L + 1))
    assert metrics["sequences"] == 200 and metrics["permuted"] is True and metrics["pool"] == POOL
    assert metrics["target"] == "fair" and metrics["window_positions"] == round(0.25 * (L - 1))
    # the fair optimum's loss falls as the context pins down the pool member: in-context inference
    assert metrics["ce_fair_late"] < metrics["ce_fair_early"] < metrics["ce_fair_pos1"]
    assert curve["p_true_member"].iloc[-1] > curve["p_true_member"].iloc[0] == pytest.approx(1 / POOL)
    # nobody beats the fair optimum in expectation; the oracle beats it at position 1
    assert (curve["ce_model"] >= curve["ce_fair"] - curve["ce_model_ci"] - curve["ce_fair_ci"]).all()
    assert metrics["ce_oracle_pos1"] < metrics["ce_fair_pos1"]


def _corrupt(src: Path, dst: Path, how: str) -> Path:
    import shutil

    shutil.copytree(src, dst)
    shard = dst / "train-00001.bin"
    if how == "id":
        mm = np.memmap(shard, dtype=np.uint16, mode="r+")
        mm[5] = K
        mm.flush()
        del mm
    else:
        shard.write_bytes(shard.read_bytes() + b"\x00\x00")
    return dst


@pytest.mark.parametrize("how", ["id", "count"])
def test_corrupted_shard_is_rejected_before_training(trained, tmp_path, how):
    bad = _corrupt(trained["shards"], tmp_path / "bad", how)
    cfg = _train_config(tmp_path, bad, steps=1)
    with pytest.raises(GateFailure, match="max_id" if how == "id" else "actual_count"):
        run_train(cfg)
    assert not Path(cfg.out_dir).exists() and not Path(cfg.metrics).exists()
