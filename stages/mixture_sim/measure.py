"""What one row of the generated table measures: losses on fixed windows, multiple-choice accuracy.

Every measurement is a pure function of the model weights (fixed windows, fixed items, no
sampling), so a run resumed from a checkpoint records exactly the numbers an uninterrupted run
would.
"""

from __future__ import annotations

import numpy as np

from stages.mixture_sim.lm import MAX_POSITIONS


def window_loss(model, ids: np.ndarray, seq_len: int, n_tokens: int, batch: int = 64) -> float:
    """Mean next-byte cross-entropy over ``n_tokens // seq_len`` windows spread evenly over ``ids``."""
    import torch

    from harness.trainer import lm_loss, make_batch

    n_windows = max(1, min(n_tokens // seq_len, (len(ids) - 1) // seq_len))
    starts = np.linspace(0, len(ids) - seq_len - 1, n_windows).astype(np.int64)
    device = next(model.parameters()).device
    total = 0.0
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for i in range(0, n_windows, batch):
            x, y = make_batch(ids, starts[i:i + batch], seq_len)
            total += float(lm_loss(model, x.to(device), y.to(device))) * len(x)
    model.train(was_training)
    return total / n_windows


def choice_logprobs(model, items: list[dict]) -> list[list[tuple[float, int]]]:
    """(sum of log p(choice bytes | context), choice length in bytes) for every choice of every item.

    All (context + choice) sequences of a task go through the model in one right-padded batch:
    with a causal model, padding after a sequence cannot change the logits inside it.
    """
    import torch

    seqs, spans = [], []
    for item in items:
        context = item["context"].encode("utf-8")
        for choice in item["choices"]:
            tail = choice.encode("utf-8")
            full = (context + tail)[-MAX_POSITIONS:]
            seqs.append(full)
            # the first byte has no left context to be predicted from
            spans.append((max(1, len(full) - len(tail)), len(full)))
    width = max(len(s) for s in seqs)
    ids = np.zeros((len(seqs), width), dtype=np.int64)
    for i, s in enumerate(seqs):
        ids[i, :len(s)] = np.frombuffer(s, dtype=np.uint8)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    with torch.no_grad():
        out = model(torch.from_numpy(ids).to(device))
        logp = torch.log_softmax((out.logits if hasattr(out, "logits") else out).float(), dim=-1).cpu().numpy()
    model.train(was_training)
    scores, k = [], 0
    for item in items:
        row = []
        for _ in item["choices"]:
            start, end = spans[k]
            targets = ids[k, start:end]
            # logits at position t predict byte t + 1
            row.append((float(logp[k, np.arange(start - 1, end - 1), targets].sum()), end - start))
            k += 1
        scores.append(row)
    return scores


def choice_accuracy(model, items: list[dict], len_norm: bool) -> float:
    """Fraction of items whose labelled choice has the highest (optionally per-byte) log-likelihood."""
    hits = 0
    for item, row in zip(items, choice_logprobs(model, items)):
        values = [lp / n if len_norm else lp for lp, n in row]
        hits += int(int(np.argmax(values)) == int(item["label"]))
    return hits / len(items)
