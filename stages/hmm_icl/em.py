"""Batched Baum-Welch: summarize mini-batches, M-step every ``update_freq``.

Two E-step backends behind one loop: ``torch`` (default; ``baumwelch.TorchHmm``, a batched
scaled forward-backward, ~100x faster at H = 100) and ``pomegranate`` (``DenseHMM``; the
reference implementation the tests compare against).

Why batched: the E-step's transition statistics are an (n, L, H, H) tensor, so a whole corpus
does not fit in memory at H = 500 (the original notes ran out of GPU memory at 8k sequences).
pomegranate separates ``summarize`` (accumulate sufficient statistics) from ``from_summaries``
(M-step); calling the M-step every ``update_freq`` mini-batches interpolates between classic EM
(once per epoch, ``update_freq: null``) and stepwise EM, which the notes found to converge
faster per token but sometimes to a worse optimum.

Why the state at an epoch boundary is complete: the last, partial window of an epoch is always
flushed by an M-step, and the shuffling order is a pure function of (seed, epoch). A checkpoint
holding (pi, A, B, epoch, history) therefore resumes to bit-identical parameters.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from harness.runtime import torch_threads
from stages.hmm_icl.baumwelch import TorchHmm
from stages.hmm_icl.configs import EmSpec
from stages.hmm_icl.forward import loglik_per_token
from stages.hmm_icl.hmm import HmmParams, from_pomegranate, load_into, project, random_params, to_pomegranate
from stages.hmm_icl.torchctx import default_dtype

CKPT_NAME = "em.npz"


@dataclass
class EmResult:
    params: HmmParams
    history: list[dict[str, float]] = field(default_factory=list)
    resumed_from_epoch: int = 0
    updates: int = 0
    batch_size: int = 0


def m_step(model, floor: float) -> HmmParams:
    """pomegranate's M-step, then the floor; states that got no weight keep their old rows.

    A state with zero expected count in a window would get 0/0 rows from the M-step; that is an
    absence of evidence, not a NaN to propagate, so its previous parameters are kept. Any other
    non-finite value (the NaN cascade the floor exists to prevent) raises FloatingPointError.
    """
    import torch

    old = from_pomegranate(model)
    with torch.no_grad():
        dead_emit = np.array([float(d._w_sum.sum()) == 0.0 for d in model.distributions])
        dead_trans = (model._xw_sum.sum(dim=1) == 0).cpu().numpy()
        dead_start = float(model._xw_starts_sum.sum()) == 0.0
    model.from_summaries()
    new = from_pomegranate(model)
    new.B[dead_emit] = old.B[dead_emit]
    new.A[dead_trans] = old.A[dead_trans]
    if dead_start:
        new.pi = old.pi
    params = project(new, floor)  # raises FloatingPointError on NaN
    load_into(model, params)
    return params


def effective_batch_size(em: EmSpec, hidden: int, seq_len: int, itemsize: int) -> int:
    """``em.batch_size``, shrunk so the E-step's tensors fit ``em.estep_memory_gb``.

    pomegranate holds (batch, L, H, H) transition tensors (factor 3: the tensor plus its
    exponentiated and reduced copies); the torch backend only (batch, L, H) ones (emission
    probabilities, alpha, gamma: factor 3).
    """
    if not em.estep_memory_gb:
        return em.batch_size
    per_sequence = 3 * seq_len * hidden * (hidden if em.backend == "pomegranate" else 1) * itemsize
    return max(1, min(em.batch_size, int(em.estep_memory_gb * 2**30 // per_sequence)))


def update_windows(n: int, batch_size: int, update_freq: int | None) -> list[list[tuple[int, int]]]:
    """Group the mini-batches of one epoch into M-step windows of ``update_freq`` batches.

    The remainder batches join the last window instead of forming a small one of their own:
    with ``inertia = 0`` an M-step replaces the parameters by the window's estimate, so a window
    of a handful of sequences at the end of every epoch would throw the fit away each epoch.
    """
    batches = [(s, min(s + batch_size, n)) for s in range(0, n, batch_size)]
    if not update_freq:
        return [batches]
    n_windows = max(1, len(batches) // update_freq)
    windows = [batches[w * update_freq : (w + 1) * update_freq] for w in range(n_windows)]
    windows[-1].extend(batches[n_windows * update_freq :])
    return windows


def _save_checkpoint(path: Path, params: HmmParams, epoch: int, updates: int, history: list) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        np.savez(fh, pi=params.pi, A=params.A, B=params.B, epoch=epoch, updates=updates,
                 history=json.dumps(history))
    os.replace(tmp, path)  # atomic: a kill mid-save leaves the previous checkpoint


def _load_checkpoint(path: Path) -> tuple[HmmParams, int, int, list]:
    with np.load(path) as data:
        params = HmmParams(pi=data["pi"], A=data["A"], B=data["B"])
        return params, int(data["epoch"]), int(data["updates"]), json.loads(str(data["history"]))


def fit_em(train: np.ndarray, val: np.ndarray | None, hidden: int, emissions: int, em: EmSpec, seed: int, *,
           restart: int = 0, ckpt_dir: Path | None = None, log: Callable[[str], None] = print,
           stop_requested: Callable[[], bool] | None = None) -> EmResult:
    """Fit an H-state HMM with K categorical emissions to ``train`` (N, L) by batched EM.

    ``restart`` selects an independent random initialisation and shuffling stream for the same
    ``seed`` (see :func:`fit_best_of`).
    """
    import torch

    from harness.runtime import device as pick_device

    dtype = torch.float64 if em.dtype == "float64" else torch.float32
    device = pick_device(em.device)
    train = np.asarray(train)
    if em.max_train_sequences:
        train = train[: em.max_train_sequences]
    n = len(train)
    params = project(random_params(hidden, emissions, np.random.default_rng([seed, 0, restart]),
                                    em.init_concentration),
                     em.floor)
    start_epoch, updates, history = 0, 0, []
    ckpt = Path(ckpt_dir) / CKPT_NAME if ckpt_dir else None
    if ckpt:
        ckpt.parent.mkdir(parents=True, exist_ok=True)
    if ckpt and ckpt.exists():
        params, start_epoch, updates, history = _load_checkpoint(ckpt)
        log(f"resumed EM from checkpoint after epoch {start_epoch}/{em.epochs}")
    val_eval = None if val is None else np.asarray(val)[: em.history_val_sequences]
    tokens_per_epoch = int(train.size)
    batch_size = effective_batch_size(em, hidden, train.shape[1], 8 if em.dtype == "float64" else 4)
    if batch_size < em.batch_size:
        log(f"E-step memory cap {em.estep_memory_gb} GB: batch {em.batch_size} -> {batch_size} sequences")
    with default_dtype(dtype), torch_threads(em.torch_threads):
        if em.backend == "pomegranate":
            model = to_pomegranate(params, dtype, device)
            x_all = torch.as_tensor(train.astype(np.int64)).unsqueeze(-1)  # pomegranate: (n, L, 1)
            summarize, update = model.summarize, lambda: m_step(model, em.floor)
        else:
            model = TorchHmm(params, dtype, device)
            x_all = torch.as_tensor(train.astype(np.int64))
            summarize, update = model.summarize, lambda: model.m_step(em.floor)
        for epoch in range(start_epoch, em.epochs):
            order = np.random.default_rng([seed, 1, restart, epoch]).permutation(n)
            logp_sum = 0.0
            for window in update_windows(n, batch_size, em.update_freq):
                for start, stop in window:
                    batch = x_all[torch.as_tensor(order[start:stop])].to(device)
                    logp_sum += float(summarize(batch).sum())
                params, updates = update(), updates + 1
            record = {"epoch": epoch + 1, "updates": updates, "tokens": (epoch + 1) * tokens_per_epoch,
                      "train_loglik_per_token": logp_sum / tokens_per_epoch}
            if val_eval is not None and len(val_eval):
                record["val_loglik_per_token"] = loglik_per_token(params, val_eval)
            if not math.isfinite(record["train_loglik_per_token"]):
                raise FloatingPointError(f"EM log-likelihood became {logp_sum} in epoch {epoch + 1}")
            history.append(record)
            log(f"epoch {epoch + 1}/{em.epochs}: train ll/token {record['train_loglik_per_token']:.4f}"
                + (f", val {record['val_loglik_per_token']:.4f}" if "val_loglik_per_token" in record else ""))
            done = epoch + 1
            if ckpt and (done % em.checkpoint_every == 0 or done == em.epochs):
                _save_checkpoint(ckpt, params, done, updates, history)
            if stop_requested is not None and stop_requested() and done < em.epochs:
                if ckpt:
                    _save_checkpoint(ckpt, params, done, updates, history)
                raise InterruptedError(f"stop requested after epoch {done}; checkpoint saved for resume")
    return EmResult(params=params.check(atol=1e-6), history=history, resumed_from_epoch=start_epoch,
                    updates=updates, batch_size=batch_size)


def fit_best_of(train: np.ndarray, val: np.ndarray | None, hidden: int, emissions: int, em: EmSpec, seed: int, *,
                ckpt_dir: Path | None = None, log: Callable[[str], None] = print,
                stop_requested: Callable[[], bool] | None = None) -> tuple[EmResult, list[float]]:
    """Run ``em.restarts`` independent fits and keep the one with the best *training* likelihood.

    Why restarts: Baum-Welch has many local optima and long saddle plateaus (two states sharing
    one emission profile is a common trap); the best of a few random starts reaches the global
    optimum far more often than one long run. Selection uses the training likelihood only, so
    the validation numbers reported downstream stay honest.
    """
    best, finals = None, []
    for r in range(em.restarts):
        sub = Path(ckpt_dir) / f"restart{r}" if ckpt_dir else None
        if em.restarts > 1:
            log(f"restart {r + 1}/{em.restarts}")
        res = fit_em(train, val, hidden, emissions, em, seed, restart=r, ckpt_dir=sub, log=log,
                     stop_requested=stop_requested)
        finals.append(res.history[-1]["train_loglik_per_token"])
        if best is None or finals[-1] > best[1]:
            best = (res, finals[-1])
    return best[0], finals
