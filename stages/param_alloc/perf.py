"""Latency, throughput and peak memory of a model: measured, not estimated.

These numbers depend on the machine, so they are written to a cached output (perf.json), never
to the git-tracked metrics that CI compares for drift.
"""

from __future__ import annotations

import statistics
import time


def _sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def latency_ms(model, vocab: int, seq_len: int, repeats: int, device: str) -> float:
    """Median wall time of one batch-1 forward pass of ``seq_len`` tokens, after a warm-up."""
    import torch

    x = torch.randint(0, vocab, (1, seq_len), generator=torch.Generator().manual_seed(0)).to(device)
    times = []
    with torch.no_grad():
        model(x)
        for _ in range(repeats):
            _sync(device)
            t0 = time.perf_counter()
            model(x)
            _sync(device)
            times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def throughput(model, vocab: int, batch: int, seq_len: int, device: str, repeats: int = 3) -> float:
    import torch

    x = torch.randint(0, vocab, (batch, seq_len), generator=torch.Generator().manual_seed(1)).to(device)
    with torch.no_grad():
        model(x)
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(repeats):
            model(x)
        _sync(device)
    return batch * seq_len * repeats / (time.perf_counter() - t0)


def train_step_peak_mb(model, vocab: int, batch: int, seq_len: int, device: str) -> float:
    """Peak memory of one training forward+backward at ``batch`` x ``seq_len``, in MiB.

    Parameters + the peak of what the step allocates on top of them (activations kept for the
    backward, logits, the loss, the gradients). On CUDA: the allocator's peak. On CPU: the
    allocation/free events that ``torch.profiler`` records with ``profile_memory=True``, summed in
    time order; their running maximum is the step's peak. Why not RSS or parameter bytes: RSS is
    blurred by the allocator's caching, and parameter bytes are the same for every shape of a
    fixed budget, which made the memory Pareto front degenerate.
    """
    import torch

    from harness.trainer import lm_loss

    gen = torch.Generator().manual_seed(2)
    x = torch.randint(0, vocab, (batch, seq_len), generator=gen).to(device)
    y = torch.randint(0, vocab, (batch, seq_len), generator=gen).to(device)
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    was_training = model.training
    model.train()
    model.zero_grad(set_to_none=True)
    try:
        if device == "cuda":
            torch.cuda.synchronize()
            base = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
            lm_loss(model, x, y).backward()
            torch.cuda.synchronize()
            return (params + torch.cuda.max_memory_allocated() - base) / 2**20
        from torch.profiler import ProfilerActivity, profile as torch_profile

        with torch_profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            lm_loss(model, x, y).backward()
        events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
                        if e.name() == "[memory]")
        live = peak = 0
        for _, nbytes in events:
            live += nbytes
            peak = max(peak, live)
        return (params + peak) / 2**20
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)


def profile(model, vocab: int, seq_lens: list[int], repeats: int, batch: int, tp_seq: int, device: str, *,
            memory_batch: int, memory_seq_len: int) -> dict:
    out: dict[str, float] = {}
    for s in seq_lens:
        out[f"latency_ms_seq{s}"] = latency_ms(model, vocab, s, repeats, device)
    out["throughput_tokens_per_s"] = throughput(model, vocab, batch, tp_seq, device)
    # the training step's peak (forward + backward at the training batch and sequence length)
    out["peak_memory_mb"] = train_step_peak_mb(model, vocab, memory_batch, memory_seq_len, device)
    out["memory_batch"], out["memory_seq_len"] = memory_batch, memory_seq_len
    out["device"] = device
    return out
