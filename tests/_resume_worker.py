"""Subprocess body for the kill -9 resume test: train a tiny Llama with checkpoints, print metrics."""

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.trainer import TrainSettings, train_lm  # noqa: E402
from stages.param_alloc.configs import Shape  # noqa: E402
from stages.param_alloc.model import build_model  # noqa: E402


def main(ckpt_dir: str, out: str, slow: str) -> None:
    import time

    rng = np.random.default_rng(0)
    ids = rng.integers(0, 64, size=4000).astype(np.uint16)
    shape = Shape(vocab_size=64, d_model=16, n_layers=2, n_heads=2, d_ff=32, max_seq_len=64)
    model = build_model(shape, seed=0)
    cfg = TrainSettings(steps=40, batch_size=4, seq_len=16, lr=3e-3, warmup_steps=5, seed=3, eval_every=10,
                      checkpoint_every=5, device="cpu")

    def log(msg: str) -> None:
        print(msg, flush=True)
        if slow == "1":
            time.sleep(0.05)

    result = train_lm(model, ids[:3000], ids[3000:], cfg, ckpt_dir=Path(ckpt_dir), log=log,
                      stop_requested=lambda: (time.sleep(0.02) if slow == "1" else None) or False)
    Path(out).write_text(json.dumps({**result.metrics(), "resumed_from_step": result.resumed_from_step}))


if __name__ == "__main__":
    main(*sys.argv[1:])
