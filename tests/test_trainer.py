"""The shared trainer: kill -9 then resume equals an uninterrupted run; accumulation; schedule."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from harness.trainer import TrainSettings, cosine_lambda, make_batch, batch_starts, lm_loss

WORKER = Path(__file__).with_name("_resume_worker.py")


def _run_worker(ckpt: Path, out: Path, slow: bool) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(WORKER), str(ckpt), str(out), "1" if slow else "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_kill9_then_resume_equals_uninterrupted(tmp_path: Path):
    ref_out = tmp_path / "ref.json"
    ref = _run_worker(tmp_path / "ck_ref", ref_out, slow=False)
    assert ref.wait(timeout=300) == 0, ref.stdout.read()

    ckpt, out = tmp_path / "ck", tmp_path / "resumed.json"
    victim = _run_worker(ckpt, out, slow=True)
    deadline = time.time() + 120
    while not (ckpt / "last.pt").exists():
        assert time.time() < deadline and victim.poll() is None, "worker never wrote a checkpoint"
        time.sleep(0.05)
    time.sleep(0.3)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    assert not out.exists(), "the killed run must not have finished"

    resumed = _run_worker(ckpt, out, slow=False)
    assert resumed.wait(timeout=300) == 0, resumed.stdout.read()
    got, want = json.loads(out.read_text()), json.loads(ref_out.read_text())
    assert got.pop("resumed_from_step") > 0, "the rerun did not resume from the checkpoint"
    want.pop("resumed_from_step")
    assert got == want  # bit-identical metrics on CPU


def test_gradient_accumulation_matches_full_batch():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Embedding(50, 8), torch.nn.Linear(8, 50))
    ids = np.random.default_rng(0).integers(0, 50, 500).astype(np.uint16)
    x, y = make_batch(ids, batch_starts(0, 0, len(ids), 8, 10), 10)
    model.zero_grad()
    lm_loss(model, x, y).backward()
    full = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    for i in range(0, 8, 2):
        (lm_loss(model, x[i:i + 2], y[i:i + 2]) / 4).backward()
    for a, b in zip(full, (p.grad for p in model.parameters())):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def test_cosine_schedule_shape():
    cfg = TrainSettings(steps=100, batch_size=1, seq_len=4, lr=1.0, warmup_steps=10, min_lr_ratio=0.1)
    f = cosine_lambda(cfg)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(55) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert f(100) == pytest.approx(0.1)


def test_micro_batch_must_divide_batch():
    with pytest.raises(ValueError, match="multiple"):
        TrainSettings(steps=1, batch_size=6, micro_batch_size=4, seq_len=4, lr=1.0)


def test_resume_after_final_checkpoint_keeps_the_loss(tmp_path: Path):
    """A run that died after its last checkpoint (its final write failed) resumes with 0 steps
    left: the rerun must report the checkpointed loss, not NaN (issue 16)."""
    from harness.trainer import train_lm

    def fresh():
        torch.manual_seed(0)
        return torch.nn.Sequential(torch.nn.Embedding(50, 8), torch.nn.Linear(8, 50))

    ids = np.random.default_rng(0).integers(0, 50, 800).astype(np.uint16)
    cfg = TrainSettings(steps=6, batch_size=2, seq_len=8, lr=1e-2, warmup_steps=1, seed=0, eval_every=3,
                        checkpoint_every=3, device="cpu")
    first = train_lm(fresh(), ids[:600], ids[600:], cfg, ckpt_dir=tmp_path, log=lambda _m: None)
    again = train_lm(fresh(), ids[:600], ids[600:], cfg, ckpt_dir=tmp_path, log=lambda _m: None)
    assert again.resumed_from_step == cfg.steps
    assert math.isfinite(again.train_loss) and again.metrics() == first.metrics()
