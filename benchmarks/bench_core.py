"""Core benchmarks, each a ratio against a baseline measured in the same run.

1. `harness compile` wall time (and vs. the bare interpreter start it cannot avoid);
2. no-op `dvc repro` wall time on the current project (vs. `dvc status`, DVC's own floor);
3. the shared trainer's tokens/s vs a plain PyTorch loop training the same Llama on the same
   batches (target >= 1.0: the harness's checkpointing, scheduling and logging must be free).

Run from the repo root with the venv active:  python benchmarks/bench_core.py
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def wall(cmd: list[str], repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_cli() -> None:
    python = wall([sys.executable, "-c", "pass"])
    compile_s = wall(["harness", "compile", "--check"])
    print(f"harness compile --check: {compile_s:.2f}s (bare python start {python:.2f}s, ratio {compile_s / python:.1f}x)")
    status = wall(["dvc", "status", "-q"], repeats=2)
    noop = wall(["dvc", "repro"], repeats=2)
    print(f"no-op dvc repro: {noop:.2f}s vs dvc status {status:.2f}s (ratio {noop / status:.2f})")


def plain_loop(model, ids, cfg) -> float:
    """The baseline: the textbook loop, same model, optimiser, batches; no harness features."""
    import torch
    import torch.nn.functional as F

    from harness.trainer import batch_starts, make_batch

    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr)
    model.train()
    t0 = time.perf_counter()
    for step in range(cfg.steps):
        x, y = make_batch(ids, batch_starts(cfg.seed, step, len(ids), cfg.batch_size, cfg.seq_len), cfg.seq_len)
        logits = model(x).logits
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    return cfg.steps * cfg.batch_size * cfg.seq_len / (time.perf_counter() - t0)


def bench_trainer(tmp: Path) -> None:
    import torch

    from harness.trainer import TrainSettings, train_lm
    from stages.param_alloc.configs import Shape
    from stages.param_alloc.model import build_model

    torch.set_num_threads(max(1, torch.get_num_threads()))
    ids = np.random.default_rng(0).integers(0, 1500, 200_000).astype(np.uint16)
    shape = Shape(vocab_size=1500, d_model=64, n_layers=4, n_heads=2, d_ff=171, max_seq_len=128)
    cfg = TrainSettings(steps=60, batch_size=16, seq_len=64, lr=3e-3, seed=0, checkpoint_every=20, device="cpu")
    rates_plain, rates_harness = [], []
    for rep in range(2):  # interleave to cancel drift in machine load
        rates_plain.append(plain_loop(build_model(shape, 0), ids, cfg))
        result = train_lm(build_model(shape, 0), ids, None, cfg, ckpt_dir=tmp / f"ck{rep}", log=lambda m: None)
        rates_harness.append(result.tokens_per_s)
    plain, harness = max(rates_plain), max(rates_harness)
    print(f"trainer: {harness:,.0f} tokens/s vs plain PyTorch loop {plain:,.0f} tokens/s "
          f"(ratio {harness / plain:.2f}, target >= 1.0; includes checkpoints every {cfg.checkpoint_every} steps)")


if __name__ == "__main__":
    import tempfile

    bench_cli()
    with tempfile.TemporaryDirectory() as tmp:
        bench_trainer(Path(tmp))
