"""Width sweeps: models, μP coordinate check, memory-aware batching, gradient accumulation.

References: closed-form parameter counts; one full-batch optimizer step of the shared trainer
(for accumulation); the measured step memory itself (for the batch choice); mup's own
coord-check machinery and the known scaling of SP (activations grow with width under Adam).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stages.scaling.data import corpus
from harness.trainer import TrainSettings, train_lm
from stages.scaling.batching import measure_step_bytes, plan_for_model, plan_micro_batch
from stages.scaling.coord import coord_data, slopes, verdict
from stages.scaling.lmconfigs import CoordConfig
from stages.scaling.models import LSTMSpec, TransformerSpec, build_model, optimizer_factory, parameter_counts
from stages.scaling.sweep import optimal_lr


@pytest.fixture(scope="module")
def ids() -> np.ndarray:
    return np.frombuffer(corpus(400, seed=1).encode(), dtype=np.uint8).copy()


@pytest.mark.parametrize("activation,tie", [("gelu", False), ("swiglu", False), ("relu", True)])
def test_transformer_parameter_counts_match_closed_form(activation, tie):
    spec = TransformerSpec(depth=2, activation=activation, tie=tie, mlp_ratio=4.0, vocab_size=256, max_seq_len=64)
    w = 32
    model = build_model(spec, w, "sp")
    hidden = round(4.0 * w * (2 / 3 if activation == "swiglu" else 1))
    mlp = w * hidden * (3 if activation == "swiglu" else 2)
    block = 4 * w * w + mlp + 2 * 2 * w  # q, k, v, o; MLP; two LayerNorms (gain, bias)
    non_embedding = 2 * block + 2 * w  # + final LayerNorm
    embedding = 256 * w + 64 * w + (0 if tie else 256 * w)
    counts = parameter_counts(model)
    assert counts == {"N": non_embedding + embedding, "N_no_emb": non_embedding}
    assert counts["N"] == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("spec,parametrization", [
    (TransformerSpec(depth=1, max_seq_len=32), "mup"),
    (LSTMSpec(), "sp"),
])
def test_k_micro_batches_give_the_full_batch_update(ids, spec, parametrization):
    """One optimizer step with 4 accumulated micro-batches of 2 == one step on the batch of 8."""
    states = []
    for micro in (8, 2):
        model = build_model(spec, 32, parametrization, seed=3)
        cfg = TrainSettings(steps=1, batch_size=8, micro_batch_size=micro, seq_len=16, lr=1e-2, seed=5,
                              weight_decay=0.1, device="cpu", precision="fp32")
        train_lm(model, ids, None, cfg, optimizer_factory=optimizer_factory(parametrization), log=lambda _: None)
        states.append({k: v.detach().clone() for k, v in model.state_dict().items()})
    full, accumulated = states
    moved = 0
    for key in full:
        torch.testing.assert_close(accumulated[key], full[key], rtol=1e-5, atol=1e-6)
        moved += int(not torch.equal(full[key], build_model(spec, 32, parametrization, seed=3).state_dict()[key]))
    assert moved > 0, "the step must actually change the parameters"


def test_micro_batch_is_the_largest_divisor_within_the_measured_budget():
    spec = TransformerSpec(depth=1, max_seq_len=32)

    def build():
        return build_model(spec, 64, "sp")

    def make_opt(m):
        return torch.optim.AdamW(m.parameters(), lr=1e-3)

    measured = {mb: measure_step_bytes((m := build()), make_opt(m), mb, 32, 256) for mb in (1, 2, 4, 8)}
    assert measured[1] < measured[2] < measured[4] < measured[8]
    # activation bytes are linear in the micro-batch: from 2 to 4 adds twice what 1 to 2 adds
    assert measured[4] - measured[2] == pytest.approx(2 * (measured[2] - measured[1]), rel=0.05)
    budget_mb = (measured[4] + measured[8]) / 2 / 2**20
    plan = plan_for_model(build, make_opt, target_batch=16, seq_len=32, vocab=256, budget_mb=budget_mb)
    assert (plan.micro_batch, plan.grad_accum) == (4, 4)
    assert plan.record(32)["tokens_per_step"] == 16 * 32
    with pytest.raises(MemoryError, match="micro-batch of 1"):
        plan_micro_batch(lambda mb: 10_000 * mb, target_batch=8, budget_bytes=5_000)


@pytest.mark.parametrize("spec", [TransformerSpec(depth=2), LSTMSpec()], ids=["transformer", "lstm"])
def test_coord_check_flat_under_mup_growing_under_sp(ids, spec, tmp_path):
    """Tolerance: under μP no activation's log2 size grows faster than 0.3 per doubling of width."""
    cfg = CoordConfig(name="t", model=spec, widths=[64, 128, 256], steps=4, corpus_dir=str(tmp_path),
                      out_dir=str(tmp_path / "o"), metrics=str(tmp_path / "m.json"))
    gen = np.random.default_rng(0)
    starts = gen.integers(0, len(ids) - 40, size=8)
    x = torch.from_numpy(np.stack([ids[s : s + 32] for s in starts]).astype(np.int64))
    y = torch.from_numpy(np.stack([ids[s + 1 : s + 33] for s in starts]).astype(np.int64)).reshape(-1)
    mup = verdict(slopes(coord_data(cfg, "mup", (x, y))), cfg.flat_tolerance)
    sp = verdict(slopes(coord_data(cfg, "sp", (x, y))), cfg.flat_tolerance)
    assert mup["no_growth"], mup
    assert sp["max_slope"] > 1.0, sp  # Adam under SP: outputs grow ~linearly in width


def test_optimal_lr_refines_a_parabola_vertex():
    lrs = [2.0**k for k in range(-10, -3)]
    losses = [3.0 + 0.1 * (np.log2(lr) + 6.6) ** 2 for lr in lrs]
    opt = optimal_lr(lrs, losses)
    assert opt["lr"] == 2.0**-7 and np.log2(opt["lr_refined"]) == pytest.approx(-6.6, abs=1e-9)
    edge = optimal_lr(lrs, [float(k) for k in range(len(lrs))])
    assert edge["lr_refined"] == edge["lr"] == lrs[0]
    assert np.isnan(optimal_lr(lrs[:2], [np.inf, np.inf])["lr"])


def test_optimal_lr_does_not_jump_when_near_equal_losses_swap_the_grid_argmin():
    """Two LRs within 1e-9 of each other: a last-bit change on another CPU flips the grid pick, and
    the reported optimum (the fitted vertex) must move by about as little as the losses did."""
    lrs = [0.03, 0.06, 0.12, 0.25, 0.5]
    base = [2.9, 2.5, 2.3400000, 2.3400000, 2.8]
    left = optimal_lr(lrs, [v + (1e-9 if k == 3 else 0.0) for k, v in enumerate(base)])
    right = optimal_lr(lrs, [v + (1e-9 if k == 2 else 0.0) for k, v in enumerate(base)])
    assert (left["lr"], right["lr"]) == pytest.approx((0.12, 0.25))  # the discrete pick flips ...
    assert not left["on_edge"] and not right["on_edge"]
    assert right["lr_refined"] == pytest.approx(left["lr_refined"], rel=1e-6)  # ... the vertex does not
    assert 0.12 < left["lr_refined"] < 0.25


@pytest.mark.parametrize("spec", [
    TransformerSpec(depth=2, base_width=32, max_seq_len=32),
    TransformerSpec(depth=1, base_width=32, max_seq_len=32, tie=True, activation="swiglu"),
    LSTMSpec(base_width=32),
    # the reference sweep's model: four heads of size 2 at its base width 8, N(0, 1) embeddings
    TransformerSpec(depth=2, heads=4, base_width=8, embed_std=1.0, max_seq_len=32),
], ids=["transformer", "transformer-tied-swiglu", "lstm", "transformer-reference"])
def test_mup_is_sp_at_the_base_width(ids, spec):
    """At ``base_width`` μP and SP are one model: same parameters, same logits, same training losses.

    Independent reference: the SP model is plain torch (nn.Linear readout, 1/√d_head, AdamW);
    μP goes through mup (MuReadout, set_base_shapes, MuAdamW). Above the base width they differ.
    """
    from stages.scaling.models import attention_scale

    w = spec.base_width
    sp, mup = build_model(spec, w, "sp", seed=7), build_model(spec, w, "mup", seed=7)
    sp_state, mup_state = sp.state_dict(), mup.state_dict()
    assert sp_state.keys() == mup_state.keys()
    for key in sp_state:
        torch.testing.assert_close(mup_state[key], sp_state[key], rtol=0, atol=0)
    x = torch.from_numpy(ids[:64].astype(np.int64)).view(2, 32)
    torch.testing.assert_close(mup(x), sp(x), rtol=1e-6, atol=1e-6)
    cfg = TrainSettings(steps=8, batch_size=4, seq_len=16, lr=3e-3, seed=1, weight_decay=0.0,
                        eval_every=0, device="cpu", precision="fp32")
    losses = {}
    for name, model in (("sp", sp), ("mup", mup)):
        result = train_lm(model, ids, None, cfg, optimizer_factory=optimizer_factory(name), log=lambda _: None)
        losses[name] = [h["train_loss"] for h in result.history]
    np.testing.assert_allclose(losses["mup"], losses["sp"], rtol=1e-5)
    assert losses["sp"][-1] < losses["sp"][0]
    if spec.kind == "transformer":
        # above the base width μP's attention is 1/d_head times √d_base: 2x the width halves √d_head's share
        assert attention_scale(spec, w, True) == attention_scale(spec, w, False)
        assert attention_scale(spec, 4 * w, True) == pytest.approx(attention_scale(spec, 4 * w, False) / 2)
    wide_sp, wide_mup = build_model(spec, 2 * w, "sp", seed=7), build_model(spec, 2 * w, "mup", seed=7)
    assert not torch.allclose(wide_mup(x), wide_sp(x)), "above the base width μP must differ from SP"


def test_depth_grows_with_sqrt_width():
    spec = TransformerSpec(depth=2, base_width=32, depth_scaling="sqrt_width", max_seq_len=32)
    assert [spec.depth_at(w) for w in (32, 64, 128, 512)] == [2, 3, 4, 8]
    for parametrization in ("sp", "mup"):
        assert len(build_model(spec, 128, parametrization).blocks) == 4
    assert TransformerSpec(depth=2).depth_at(512) == 2
