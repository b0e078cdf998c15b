"""param_alloc's fair-comparison machinery: early stopping that fires, grid collisions, per-point
LR selection over seeds, a training-step memory that measures activations, mixed precision on
CPU, the published WikiText-2 copies and the profiles that use them.

Each test runs on models of a few thousand parameters (seconds in all).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, SHARED_DATA
from harness.trainer import EarlyStopConfig, TrainSettings, train_lm
from stages.param_alloc.configs import Allocation, CorpusFiles, LrSweep, ModelSpec, Shape, TrainStageConfig
from stages.param_alloc.model import build_model
from stages.param_alloc.solver import ShapeCollision, check_distinct, describe, solve, solve_grid

TINY = Shape(vocab_size=64, d_model=16, n_layers=1, n_heads=1, d_ff=32, max_seq_len=64)


def _cfg(**over) -> TrainSettings:
    base = dict(steps=200, batch_size=8, seq_len=16, lr=1e-2, warmup_steps=0, eval_every=5, eval_batches=2,
                checkpoint_every=1000, device="cpu", threads=1, seed=0)
    return TrainSettings(**{**base, **over})


# ---- early stopping ---------------------------------------------------------------------------

def test_early_stopping_fires_when_dev_perplexity_rises_and_not_when_it_falls():
    """Memorising 300 random tokens makes the perplexity of *other* random tokens rise: the seed's
    rule (>= best + delta for a window) must stop the run well before its last step. On the
    training tokens themselves the perplexity keeps falling and the rule must stay silent."""
    rng = np.random.default_rng(0)
    train = rng.integers(0, 64, 300).astype(np.uint16)
    dev = rng.integers(0, 64, 2000).astype(np.uint16)
    rule = EarlyStopConfig(delta_ppl=0.5, window_tokens=5 * 8 * 16)
    overfit = train_lm(build_model(TINY, 0), train, dev, _cfg(), early_stop=rule, log=lambda _: None)
    assert overfit.stopped_early and overfit.steps < 200, overfit.stop_reason
    dev_ppl = [math.exp(h["dev_loss"]) for h in overfit.history if "dev_loss" in h]
    assert dev_ppl[-1] >= min(dev_ppl) + rule.delta_ppl  # it stopped because dev got worse
    assert "best" in overfit.stop_reason

    fits = train_lm(build_model(TINY, 0), train, train, _cfg(steps=60), early_stop=rule, log=lambda _: None)
    assert not fits.stopped_early and fits.steps == 60


# ---- solver -----------------------------------------------------------------------------------

def test_two_grid_points_with_one_shape_are_a_solver_error():
    """The old smoke grid: at 120k parameters, 35 % x GLU 2.66 and 35 % x GLU 3.0 build one model."""
    spec = ModelSpec(target_params=120_000, n_heads=1, d_ff_slack=0.1)
    grid = [Allocation(embed_share=0.35, glu=g) for g in (2.0, 2.66, 3.0)]
    with pytest.raises(ShapeCollision, match=r"e35_g2_66 and e35_g3_0 both solve to d_model=30, n_layers=7"):
        solve_grid(grid, spec, 1380)
    # distinct points pass, and the solved shares/GLU ratios are reported per point
    solved = solve_grid([grid[0], grid[2]], spec, 1380)
    for alloc, shape in solved:
        d = describe(shape)
        assert d["glu_actual"] == shape.d_ff / shape.d_model
        assert d["embed_share_actual"] == 1380 * shape.d_model / d["solved_params"]
    with pytest.raises(ShapeCollision, match="a and b"):
        check_distinct([("a", TINY), ("b", TINY)])


def test_share_tolerance_refuses_a_share_it_cannot_reach():
    spec = ModelSpec(target_params=120_000, n_heads=1, d_ff_slack=0.1, share_tolerance=0.01)
    with pytest.raises(ValueError, match=r"embedding share within ±0.01"):
        solve(Allocation(embed_share=0.35, glu=4.0), spec, 1380)  # without the bound: 0.39


def test_reference_grid_keeps_4_to_12_layers_and_distinct_shapes():
    """The reference budget/vocabulary/heads: every point 4-12 layers deep, its own shape, its
    embedding share within the spec's tolerance."""
    item = _spec("reference")
    spec = item.spec
    solved = solve_grid(spec.grid.points(), spec.model, spec.tokenizer.vocab_size)
    layers = [s.n_layers for _, s in solved]
    assert 4 <= min(layers) and max(layers) <= 12, layers
    for alloc, shape in solved:
        share = describe(shape)["embed_share_actual"]
        assert abs(share - alloc.embed_share) <= spec.model.share_tolerance


# ---- per-point LR sweep and seeds --------------------------------------------------------------

def _tokens_dir(tmp_path: Path) -> tuple[str, str]:
    """A learnable token stream (a repeated random phrase with noise) and a passed gate report."""
    rng = np.random.default_rng(1)
    phrase = rng.integers(0, 64, 24)
    def stream(n: int) -> np.ndarray:
        ids = np.tile(phrase, n // 24 + 1)[:n]
        noise = rng.random(n) < 0.1
        ids[noise] = rng.integers(0, 64, int(noise.sum()))
        return ids.astype(np.uint16)
    tokens = tmp_path / "tokens"
    tokens.mkdir()
    for split, n in (("train", 4000), ("dev", 1500), ("test", 1500)):
        np.save(tokens / f"{split}.npy", stream(n))
    (tokens / "counts.json").write_text(json.dumps({"vocab_size": 64}))
    gate = tmp_path / "gate.json"
    gate.write_text(json.dumps({"checks": [{"success": True}]}))
    return str(tokens), str(gate)


def test_each_point_trains_at_the_lr_its_own_sweep_picks_over_several_seeds(tmp_path, monkeypatch):
    from stages.param_alloc import train as train_stage

    monkeypatch.setenv("HARNESS_CHECKPOINT_ROOT", str(tmp_path / "ckpt"))
    tokens, gate = _tokens_dir(tmp_path)
    model = ModelSpec(target_params=6000, tolerance=0.05, n_heads=1, d_ff_slack=0.3, max_seq_len=64)
    cfg = TrainStageConfig(
        allocation=Allocation(embed_share=0.2, glu=2.0), model=model,
        train=_cfg(steps=40, lr=1.0, eval_every=10), early_stop=EarlyStopConfig(delta_ppl=0.5, window_tokens=10_000),
        seeds=[0, 1, 2], lr_sweep=LrSweep(lrs=[1e-2, 1e-5], tokens=20 * 8 * 16), tokens_dir=tokens, gate_report=gate,
        out_dir=str(tmp_path / "out"), metrics=str(tmp_path / "m.json"), curve=str(tmp_path / "c.csv"))
    train_stage.run(cfg)
    m = json.loads(Path(cfg.metrics).read_text())
    sweep = {float(k): v for k, v in m["lr_sweep"].items()}
    assert set(sweep) == {1e-2, 1e-5}
    assert m["lr"] == min(sweep, key=sweep.get) == 1e-2  # not the configured 1.0: the sweep's argmin
    assert m["lr_at_sweep_edge"] is True
    assert m["seeds"] == 3 and len(m["best_dev_ppl_per_seed"]) == 3
    assert len(set(m["best_dev_ppl_per_seed"])) == 3  # seeds differ (init and batches)
    assert m["best_dev_ppl"] == pytest.approx(np.mean(m["best_dev_ppl_per_seed"]))
    from scipy import stats
    half = stats.t.ppf(0.975, 2) * np.std(m["best_dev_ppl_per_seed"], ddof=1) / math.sqrt(3)
    assert m["best_dev_ppl_ci95"] == pytest.approx(half)
    runs = json.loads((Path(cfg.out_dir) / train_stage.RUNS_FILE).read_text())
    assert runs["dirs"] == ["seed0", "seed1", "seed2"]
    assert all((Path(cfg.out_dir) / d / "model.pt").exists() for d in runs["dirs"])


def test_select_lr_and_ranking_say_what_seeds_cannot_separate():
    from stages.param_alloc.rank import rank
    from stages.param_alloc.train import select_lr

    assert select_lr({1e-3: 2.0, 3e-3: 1.5, 1e-2: 1.5}) == 3e-3  # ties: the smaller rate
    rows = []
    for e, g, ppl in ((0.3, 2.0, [50.0, 50.5, 49.5]), (0.3, 4.0, [50.2, 50.9, 49.8]), (0.4, 2.0, [60.0, 60.3, 59.8]),
                      (0.4, 4.0, [58.0, 58.2, 57.9])):
        rows.append({"embed_share": e, "glu": g, "best_dev_ppl": float(np.mean(ppl)), "best_dev_ppl_per_seed": ppl,
                     "seeds": 3, "stopped_early": 0, "tokens_seen": 1, "lr": 0.01,
                     "d_model": int(e * 100), "n_layers": 4, "d_ff": int(g * e * 100)})
    out = rank(rows, top_k=2, axis_winner=True)
    order = [(t["embed_share"], t["glu"]) for t in out["all"]]
    assert order == [(0.3, 2.0), (0.3, 4.0), (0.4, 4.0), (0.4, 2.0)]
    assert not out["all"][1]["separable_from_top1"]  # 50.0 vs 50.3: within seed noise
    assert out["all"][2]["separable_from_top1"] and out["all"][3]["separable_from_top1"]
    # per axis: share 0.3 (50.15 vs 59.0) and GLU 4.0 (54.2 vs 55.0): not the joint #1
    assert out["axis"]["best_embed_share"] == 0.3 and out["axis"]["best_glu"] == 4.0
    assert [(t["why"], t["glu"]) for t in out["top"]] == [("per-axis winner (best share x best GLU)", 4.0),
                                                          ("joint #1", 2.0)]
    assert [t["why"] for t in rank(rows, top_k=2, axis_winner=False)["top"]] == ["joint #1", "joint #2"]
    rows[1].update(d_model=rows[0]["d_model"], d_ff=rows[0]["d_ff"])
    with pytest.raises(ShapeCollision):
        rank(rows, top_k=2, axis_winner=True)


# ---- memory -----------------------------------------------------------------------------------

def test_train_step_peak_memory_grows_with_batch_and_covers_the_logits():
    """Forward+backward peak from torch.profiler's allocation events: it must grow with the batch
    (activations), and exceed the parameters plus the float32 logits, an independent lower bound."""
    from stages.param_alloc.perf import train_step_peak_mb

    model = build_model(TINY.model_copy(update={"vocab_size": 512}), 0)
    params_mb = sum(p.numel() * 4 for p in model.parameters()) / 2**20
    peaks = {b: train_step_peak_mb(model, 512, b, 32, "cpu") for b in (1, 4, 16)}
    assert peaks[1] < peaks[4] < peaks[16], peaks
    for b, peak in peaks.items():
        assert peak - params_mb >= b * 32 * 512 * 4 / 2**20, (b, peak)
    # activations scale with the batch: 16x the batch is far more than 4x the extra memory
    assert peaks[16] - params_mb > 8 * (peaks[1] - params_mb)


# ---- mixed precision on CPU -------------------------------------------------------------------

def _linear_dtypes(model) -> list:
    import torch

    seen = []
    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            module.register_forward_hook(lambda _m, _i, out: seen.append(out.dtype))
    return seen


def test_bf16_autocast_path_trains_on_cpu(monkeypatch):
    """The GPU profile's bf16 path (autocast around forward and loss, fp32 loss and optimizer) on
    CPU: the trainer's device switch is pointed at CPU autocast, everything else is the real loop."""
    import torch

    import harness.trainer as trainer

    monkeypatch.setattr(trainer, "_autocast", lambda device, cfg: torch.autocast("cpu", dtype=torch.bfloat16))
    rng = np.random.default_rng(0)
    ids = np.tile(rng.integers(0, 64, 20), 50).astype(np.uint16)
    model = build_model(TINY, 0)
    seen = _linear_dtypes(model)
    result = train_lm(model, ids, ids, _cfg(steps=30, precision="bf16", eval_every=0), log=lambda _: None)
    assert torch.bfloat16 in seen  # the matmuls really ran in bf16
    assert all(p.dtype == torch.float32 for p in model.parameters())  # master weights stay fp32
    assert math.isfinite(result.train_loss) and result.dev_loss < math.log(64) - 0.5


class FakeScaler:
    """GradScaler's interface on CPU: scales the loss by 2**10, unscales the grads before clipping."""

    instances: list["FakeScaler"] = []

    def __init__(self, *_args, **_kwargs):
        self.factor, self.calls, self.unscaled = 2.0**10, [], False
        FakeScaler.instances.append(self)

    def scale(self, loss):
        self.calls.append("scale")
        return loss * self.factor

    def unscale_(self, optimizer):
        self.calls.append("unscale")
        for group in optimizer.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.grad.div_(self.factor)
        self.unscaled = True

    def step(self, optimizer):
        self.calls.append("step")
        if not self.unscaled:
            self.unscale_(optimizer)
        optimizer.step()

    def update(self):
        self.calls.append("update")
        self.unscaled = False


def test_fp16_grad_scaler_path_with_a_fake_scaler(monkeypatch):
    """The trainer must scale every micro-batch loss, unscale once before clipping, then step and
    update: with an exact power-of-two scale the fp32 run is bit-identical to the unscaled run,
    and under CPU fp16 autocast it still trains."""
    import torch

    import harness.trainer as trainer

    rng = np.random.default_rng(0)
    ids = np.tile(rng.integers(0, 64, 20), 50).astype(np.uint16)
    cfg = _cfg(steps=12, eval_every=0, batch_size=8, micro_batch_size=4, grad_clip=0.5)
    plain = train_lm(build_model(TINY, 0), ids, ids, cfg, log=lambda _: None)
    monkeypatch.setattr(torch.amp, "GradScaler", FakeScaler)
    FakeScaler.instances.clear()
    scaled = train_lm(build_model(TINY, 0), ids, ids, cfg, log=lambda _: None)
    calls = FakeScaler.instances[-1].calls
    assert calls[:5] == ["scale", "scale", "unscale", "step", "update"] and len(calls) == 5 * 12
    assert [h["train_loss"] for h in scaled.history] == [h["train_loss"] for h in plain.history]
    assert scaled.dev_loss == plain.dev_loss

    monkeypatch.setattr(trainer, "_autocast", lambda device, c: torch.autocast("cpu", dtype=torch.float16))
    model = build_model(TINY, 0)
    seen = _linear_dtypes(model)
    fp16 = train_lm(model, ids, ids, cfg.model_copy(update={"precision": "fp16", "steps": 30}), log=lambda _: None)
    assert torch.float16 in seen and math.isfinite(fp16.train_loss) and fp16.dev_loss < math.log(64) - 0.5


# ---- data and profiles ------------------------------------------------------------------------

def test_published_wikitext2_copies_match_the_shared_files_and_read_as_articles():
    from stages.param_alloc.corpus import read_wikitext_articles

    readme = (REPO / "published/wikitext-2/README.md").read_text()
    for name, n_articles in (("valid", 60), ("test", 62)):
        gz = REPO / f"published/wikitext-2/{name}.txt.gz"
        digest = hashlib.sha256(gzip.decompress(gz.read_bytes())).hexdigest()
        assert digest in readme and hashlib.sha256(gz.read_bytes()).hexdigest() in readme
        shared = SHARED_DATA / "wikitext-2" / f"{name}.txt"
        if shared.exists():
            assert hashlib.sha256(shared.read_bytes()).hexdigest() == digest
        assert len(read_wikitext_articles(gz)) == n_articles
    assert "CC BY-SA 3.0" in readme


def test_a_missing_training_file_is_named_not_replaced(tmp_path):
    from harness.validation import GateFailure
    from stages.param_alloc.corpus import split_articles

    files = CorpusFiles(files={"train": str(tmp_path / "wiki.train.tokens"), "dev": "published/wikitext-2/valid.txt.gz",
                               "test": "published/wikitext-2/test.txt.gz"})
    with pytest.raises(GateFailure, match=r"(?s)data.files.train: .*wiki.train.tokens does not exist.*user-supplied"):
        split_articles(files)


def _spec(profile: str):
    from harness.spec import load_params, load_spec
    from stages.param_alloc.study import STUDY

    return load_spec(REPO / "specs/param_alloc.yaml", load_params(REPO / "params.yaml"), {"param_alloc": STUDY},
                     profile=profile)


def test_profiles_train_on_the_right_text_with_seeds_and_sweeps():
    reference = {s.name: s.config for s in _spec("reference").plan()}
    prep = reference["param_alloc-prepare"].data
    assert prep.files["train"] == "published/wikitext-2/valid.txt.gz"
    assert prep.files["dev"] == prep.files["test"] == "published/wikitext-2/test.txt.gz"
    phase1 = [c for n, c in reference.items() if n.startswith("param_alloc-phase1-")]
    assert len(phase1) == 9 and all(c.seeds == [0, 1, 2] and c.lr_sweep and len(c.lr_sweep.lrs) == 3 for c in phase1)
    assert all(c.train.steps * c.train.batch_size * c.train.seq_len <= 4 * 360_000 for c in reference.values()
               if isinstance(c, TrainStageConfig))  # at most 4 epochs of the ~353k training tokens
    assert reference["param_alloc-rank"].axis_winner
    full = _spec("full").plan()[0].config.data
    assert "valid" not in full.files["train"] and "test" not in full.files["train"]
    assert full.files["train"].endswith("wiki.train.tokens")
