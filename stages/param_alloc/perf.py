"""Latency, throughput and peak memory of a model: measured, not estimated.

These numbers depend on the machine, so they are written to a cached output (perf.json), never
to the git-tracked metrics that CI compares for drift.
"""

from __future__ import annotations

import statistics
import threading
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


def peak_memory_mb(model, vocab: int, seq_len: int, device: str) -> float:
    """Peak memory of a batch-1 forward: CUDA allocator peak, or sampled RSS growth on CPU."""
    import torch

    x = torch.randint(0, vocab, (1, seq_len), generator=torch.Generator().manual_seed(2)).to(device)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        with torch.no_grad():
            model(x)
        return torch.cuda.max_memory_allocated() / 2**20
    import psutil

    proc = psutil.Process()
    base = proc.memory_info().rss
    peak = [base]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            time.sleep(0.0005)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    with torch.no_grad():
        model(x)
    stop.set()
    thread.join()
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    return (params + max(0, peak[0] - base)) / 2**20


def profile(model, vocab: int, seq_lens: list[int], repeats: int, batch: int, tp_seq: int, device: str) -> dict:
    out: dict[str, float] = {}
    for s in seq_lens:
        out[f"latency_ms_seq{s}"] = latency_ms(model, vocab, s, repeats, device)
    out["throughput_tokens_per_s"] = throughput(model, vocab, batch, tp_seq, device)
    out["peak_memory_mb"] = peak_memory_mb(model, vocab, max(seq_lens), device)
    out["device"] = device
    return out
