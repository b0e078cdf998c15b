"""Memory-aware batching: the largest micro-batch that fits a memory budget, measured, not guessed.

For a target (effective) batch B, the candidates are the divisors of B; each is *measured* by
running one real forward, backward and optimizer step of the actual model on a micro-batch of
that size, and the largest whose peak stays within the budget is chosen; the trainer then
accumulates B / micro gradients per optimizer step (``TrainSettings.micro_batch_size``), so the
update is the full-batch one (tested) and tokens/step stay B · seq_len.

How a step's memory is measured:
* CUDA: ``torch.cuda.max_memory_allocated`` around the step (the allocator's true peak).
* CPU: PyTorch keeps no allocator statistics on CPU, so the bytes are summed from the tensors
  that exist at the peak of a training step: parameters, their gradients, the optimizer state
  after a real step, and every tensor autograd saved for the backward pass (caught with
  ``torch.autograd.graph.saved_tensors_hooks``, each storage counted once) plus the logits and
  their gradient. These are the live tensors of the step, read off the step itself; the same
  model and budget give the same choice on every machine, which keeps the stage deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass
class Probe:
    micro_batch: int
    peak_bytes: int
    fits: bool


@dataclass
class BatchPlan:
    target_batch: int
    micro_batch: int
    grad_accum: int
    budget_bytes: int
    probes: list[Probe]

    def record(self, seq_len: int) -> dict:
        return {"target_batch": self.target_batch, "micro_batch": self.micro_batch, "grad_accum": self.grad_accum,
                "tokens_per_step": self.target_batch * seq_len, "budget_mb": self.budget_bytes / 2**20,
                "probes": [{"micro_batch": p.micro_batch, "peak_mb": round(p.peak_bytes / 2**20, 3), "fits": p.fits}
                           for p in self.probes]}


def _nbytes(tensors) -> int:
    seen, total = set(), 0
    for t in tensors:
        storage = t.untyped_storage()
        key = storage.data_ptr()
        if key not in seen:
            seen.add(key)
            total += storage.nbytes()
    return total


def measure_step_bytes(model, optimizer, micro_batch: int, seq_len: int, vocab: int, device: str = "cpu") -> int:
    """Peak bytes of one training step of ``model`` on a (micro_batch, seq_len) batch."""
    import torch
    import torch.nn.functional as F

    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, vocab, (micro_batch, seq_len), generator=gen).to(device)
    y = torch.randint(0, vocab, (micro_batch, seq_len), generator=gen).to(device)
    params = [p for p in model.parameters()]
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        start = torch.cuda.memory_allocated()
    saved: list = []
    param_ptrs = {p.untyped_storage().data_ptr() for p in params}

    def pack(t):
        if t.untyped_storage().data_ptr() not in param_ptrs:
            saved.append(t)
        return t

    optimizer.zero_grad(set_to_none=True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        logits = model(x)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), y.reshape(-1))
    activations = _nbytes(saved) + 2 * logits.numel() * logits.element_size()
    loss.backward()
    optimizer.step()
    if device == "cuda":
        torch.cuda.synchronize()
        return int(torch.cuda.max_memory_allocated() - start + _nbytes(params))
    state = [v for s in optimizer.state.values() for v in s.values() if torch.is_tensor(v) and v.dim() > 0]
    grads = [p.grad for p in params if p.grad is not None]
    return int(_nbytes(params) + _nbytes(grads) + _nbytes(state) + activations)


def divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def plan_micro_batch(measure: Callable[[int], int], target_batch: int, budget_bytes: int) -> BatchPlan:
    """Largest divisor of ``target_batch`` whose measured step fits ``budget_bytes``.

    Memory grows with the micro-batch, so candidates are probed from small to large and the
    search stops at the first that does not fit (or a CUDA out-of-memory error).
    """
    probes: list[Probe] = []
    best = None
    for micro in divisors(target_batch):
        try:
            peak = int(measure(micro))
        except RuntimeError as exc:  # torch.cuda.OutOfMemoryError is a RuntimeError
            if "out of memory" not in str(exc).lower():
                raise
            probes.append(Probe(micro, -1, False))
            break
        fits = peak <= budget_bytes
        probes.append(Probe(micro, peak, fits))
        if not fits:
            break
        best = micro
    if best is None:
        need = probes[0].peak_bytes / 2**20 if probes else float("nan")
        raise MemoryError(f"even a micro-batch of 1 needs {need:.1f} MiB, over the budget of "
                          f"{budget_bytes / 2**20:.1f} MiB; raise batching.memory_budget_mb or shrink the model")
    return BatchPlan(target_batch=target_batch, micro_batch=best, grad_accum=target_batch // best,
                     budget_bytes=budget_bytes, probes=probes)


def plan_for_model(build: Callable[[], object], make_optimizer: Callable[[object], object], target_batch: int,
                   seq_len: int, vocab: int, budget_mb: float, device: str = "cpu") -> BatchPlan:
    """Probe fresh copies of the model (a probe's optimizer step must not touch the real one)."""

    def measure(micro: int) -> int:
        model = build().to(device)
        return measure_step_bytes(model, make_optimizer(model), micro, seq_len, vocab, device)

    return plan_micro_batch(measure, target_batch, int(budget_mb * 2**20))
