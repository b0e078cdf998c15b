"""The GPU check, ready for the first GPU (issue 26): a full-profile param_alloc training stage on CUDA.

    python benchmarks/bench_gpu.py [--steps 300] [--cpu-steps 5] [--stage NAME] [--allow-cpu]

What it runs: the model of the full profile's first param_alloc training stage (10M parameters,
its spec's batch size and sequence length), built and initialised exactly as the stage builds it,

1. through the harness's shared trainer (``harness.trainer.train_lm``, device cuda, bf16
   autocast), ``--steps`` steps;
2. the same model, same initial weights, same batches, in a plain PyTorch loop (AdamW, bf16
   autocast, no checkpoints, no bookkeeping), ``--steps`` steps;
3. the trainer again on the CPU in fp32 for the first ``--cpu-steps`` steps: the reference the
   GPU's first losses must match within bf16 tolerance (relative 2e-2).

It prints tokens/s of 1 and 2 and their ratio (the harness's overhead), peak GPU memory of
each, and the first losses side by side. Tokens are the stage's own tokenised corpus when the
full profile's data stages have run, else uniform random ids of the spec's vocabulary (same
shapes, same cost per step; losses then start near ln(vocab)).

Without CUDA it says so and exits 0 (``--allow-cpu`` runs the same code on the CPU with a
handful of steps, to check the script itself; its figures measure nothing).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
BF16_RTOL = 2e-2


def find_stage(name: str | None):
    from harness.compiler import plan_profile

    stages = [s for s, _ in plan_profile(ROOT, "full")
              if getattr(s.config, "model", None) is not None and getattr(s.config, "train", None) is not None]
    if name:
        stages = [s for s in stages if s.name == name]
    else:  # a phase-1 training run (a fixed allocation) before lr_find / overfit
        stages = sorted((s for s in stages if s.name.startswith("param_alloc-") and s.kind == "train"),
                        key=lambda s: "-phase1-" not in s.name)
    if stages:
        return stages[0]
    raise SystemExit(f"no full-profile param_alloc training stage{' named ' + name if name else ''}")


def tokens_and_vocab(cfg, n_tokens: int):
    import numpy as np

    tokens_dir = Path(ROOT / cfg.tokens_dir)
    if (tokens_dir / "counts.json").exists():
        from stages.param_alloc.common import load_tokens

        tokens, vocab = load_tokens(str(tokens_dir))
        return tokens["train"], vocab, f"the stage's corpus ({tokens_dir.relative_to(ROOT)})"
    vocab = 8192
    rng = np.random.default_rng(0)
    return rng.integers(0, vocab, size=n_tokens, dtype=np.int64), vocab, \
        f"uniform random ids, vocab {vocab} (the full profile's data stages have not run here)"


def build(cfg, vocab: int, seed: int):
    from stages.param_alloc.common import solve_shape
    from stages.param_alloc.configs import Allocation
    from stages.param_alloc.model import build_checked

    allocation = cfg.allocation or Allocation(embed_share=0.2, glu=2.66)
    shape, _ = solve_shape(allocation, cfg.model, vocab)
    model, counts = build_checked(shape, seed, cfg.model.target_params, cfg.model.tolerance)
    return model, counts, allocation


def plain_loop(model, ids, settings, device: str, steps: int):
    """The same model and batches in the shortest honest PyTorch loop (bf16 autocast on CUDA)."""
    import torch

    from harness.runtime import placement
    from harness.trainer import batch_starts, lm_loss, make_batch

    place = placement("cuda" if device == "cuda" else "cpu", "bf16")
    model.to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=settings.lr, betas=(settings.beta1, settings.beta2),
                            weight_decay=settings.weight_decay)
    losses = []
    if device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for step in range(steps):
        starts = batch_starts(settings.seed, step, len(ids), settings.batch_size, settings.seq_len)
        x, y = make_batch(ids, starts, settings.seq_len)
        opt.zero_grad(set_to_none=True)
        with place.autocast():
            loss = lm_loss(model, x.to(device), y.to(device))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
        opt.step()
        losses.append(float(loss.detach()))
    if device == "cuda":
        torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    return losses, steps * settings.batch_size * settings.seq_len / wall


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--cpu-steps", type=int, default=5)
    ap.add_argument("--stage", help="a full-profile training stage (default: the first param_alloc one)")
    ap.add_argument("--allow-cpu", action="store_true", help="no CUDA: run on the CPU anyway (checks the script)")
    args = ap.parse_args(argv)

    import torch

    if not torch.cuda.is_available() and not args.allow_cpu:
        print("bench_gpu: no CUDA device visible (torch.cuda.is_available() is False): nothing measured. "
              "Run it on a GPU node, e.g. `srun --gres=gpu:1 python benchmarks/bench_gpu.py`.")
        return 0
    device = "cuda" if torch.cuda.is_available() else "cpu"
    steps = args.steps if device == "cuda" else min(args.steps, 3)
    from harness.trainer import train_lm

    stage = find_stage(args.stage)
    cfg = stage.config
    settings = cfg.train.model_copy(update={"steps": steps, "eval_every": 0, "device": device,
                                            "precision": "bf16" if device == "cuda" else "fp32",
                                            "warmup_steps": min(cfg.train.warmup_steps, steps)})
    ids, vocab, source = tokens_and_vocab(cfg, max(1_000_000, 4 * settings.batch_size * settings.seq_len))
    name = torch.cuda.get_device_name(0) if device == "cuda" else "cpu"
    print(f"stage {stage.name} (full profile); device {name}; tokens: {source}")

    model, counts, allocation = build(cfg, vocab, settings.seed)
    init = {k: v.detach().clone() for k, v in model.state_dict().items()}
    print(f"model {allocation.tag}: {counts['actual_params']:,} parameters; batch {settings.batch_size} x "
          f"seq {settings.seq_len}; {steps} steps")

    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    harness = train_lm(model, ids, None, settings, log=lambda text: None)
    peak_h = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else float("nan")
    gpu_losses = [h["train_loss"] for h in harness.history]

    model.load_state_dict(init)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    plain_losses, plain_tps = plain_loop(model, ids, settings, device, steps)
    peak_p = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else float("nan")

    cpu_steps = min(args.cpu_steps, steps)
    model.load_state_dict(init)
    model.to("cpu")
    cpu = train_lm(model, ids, None, settings.model_copy(update={"steps": cpu_steps, "device": "cpu",
                                                                  "precision": "fp32"}), log=lambda text: None)
    cpu_losses = [h["train_loss"] for h in cpu.history]

    print(f"harness trainer: {harness.tokens_per_s:,.0f} tokens/s; peak GPU memory {peak_h:,.0f} MiB")
    print(f"plain loop:      {plain_tps:,.0f} tokens/s; peak GPU memory {peak_p:,.0f} MiB")
    print(f"ratio harness / plain: {harness.tokens_per_s / plain_tps:.3f}")
    ok = True
    print("step  cpu fp32   gpu bf16   rel diff")
    for i, (c, g) in enumerate(zip(cpu_losses, gpu_losses), 1):
        rel = abs(g - c) / max(abs(c), 1e-12)
        ok &= math.isfinite(g) and rel <= BF16_RTOL
        print(f"{i:4d}  {c:9.4f}  {g:9.4f}  {rel:9.2e}")
    print(f"first {len(cpu_losses)} losses {'equal' if ok else 'NOT equal'} within bf16 tolerance ({BF16_RTOL:g})"
          + ("" if device == "cuda" else " [--allow-cpu: both on the CPU, nothing measured]"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
