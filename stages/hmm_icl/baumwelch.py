"""Batched scaled forward-backward in torch: the E-step of the project's EM (default backend).

Why not pomegranate's E-step: ``DenseHMM.summarize`` works in log space and materialises an
(n, L, H, H) tensor of transition posteriors; at H = E = 100 on 2,000 x 50 tokens one EM
iteration took 69 s in float64, slower than hmmlearn (46 s). The arithmetic is ~3 GFLOP.
Here the recursion runs in probability space with per-step scaling (Rabiner's c_t), over all
sequences of a batch at once: each time step is one (n, H) @ (H, H) matmul forward, and two
backward (one for beta, one accumulating the transition statistics straight into an (H, H)
matrix), so nothing of size n * L * H * H is ever held, and of size n * L * H only alpha.

Scaled recursion (alpha_hat rows sum to 1, c_t = p(x_t | x_<t)):
    a_0 = pi * B[:, x_0];          c_0 = sum a_0;     alpha_0 = a_0 / c_0
    a_t = (alpha_{t-1} A) * B[:, x_t]; c_t = sum a_t; alpha_t = a_t / c_t
    beta_{L-1} = 1;  beta_t = A (B[:, x_{t+1}] * beta_{t+1}) / c_{t+1}
    gamma_t = alpha_t * beta_t;    xi_t(i, j) = alpha_t(i) A(i, j) B(j, x_{t+1}) beta_{t+1}(j) / c_{t+1}
    log p(x) = sum_t log c_t
Underflow cannot happen: every c_t >= min(B) >= the EM floor (1e-14), far above float32's range.

The sufficient statistics and the M-step are those of pomegranate's DenseHMM with frozen ends
(see ``hmm.py``), so both backends give the same fit; tests check this, and check the E-step
against pomegranate's and the log-likelihood against hmmlearn's ``CategoricalHMM``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stages.hmm_icl.hmm import HmmParams, project


@dataclass
class Stats:
    """Expected counts accumulated over the batches of one M-step window."""

    start: "object"
    trans: "object"
    emit: "object"
    loglik: float = 0.0

    @classmethod
    def zeros(cls, hidden: int, emissions: int, dtype, device) -> "Stats":
        import torch

        return cls(start=torch.zeros(hidden, dtype=dtype, device=device),
                   trans=torch.zeros(hidden, hidden, dtype=dtype, device=device),
                   emit=torch.zeros(emissions, hidden, dtype=dtype, device=device))


class TorchHmm:
    """(pi, A, B) as torch tensors, with a batched E-step and the EM M-step."""

    def __init__(self, params: HmmParams, dtype, device: str = "cpu"):
        import torch

        self.dtype, self.device = dtype, device
        self.hidden, self.emissions = params.hidden, params.emissions
        self.load(params)
        self.stats = Stats.zeros(self.hidden, self.emissions, dtype, device)
        self._torch = torch

    def load(self, params: HmmParams) -> None:
        import torch

        self.params = params
        self.pi = torch.as_tensor(params.pi, dtype=self.dtype, device=self.device)
        self.A = torch.as_tensor(params.A, dtype=self.dtype, device=self.device)
        self.BT = torch.as_tensor(params.B.T.copy(), dtype=self.dtype, device=self.device)  # (K, H)

    def summarize(self, x) -> "object":
        """Accumulate the expected counts of the (n, L) id tensor ``x``; returns log p per sequence."""
        torch = self._torch
        x = torch.as_tensor(x, device=self.device).long()
        n, length = x.shape
        h, BT = self.hidden, self.BT
        xt = x.T.contiguous()  # time-major: every step reads one contiguous (n, H) block
        # Only alpha is kept for all positions (L, n, H); B[:, x_t], beta, the messages and gamma
        # live one step at a time in (n, H) buffers that stay in cache. Holding all four as
        # (L, n, H) tensors (80 MB each at the benchmark size) made the E-step memory-bound:
        # 0.38 s -> 0.24 s CPU per iteration at H = E = 100, 2,000 x 50 tokens, float64.
        alpha = torch.empty(length, n, h, dtype=self.dtype, device=self.device)
        c = torch.empty(length, n, dtype=self.dtype, device=self.device)
        torch.mul(self.pi, BT[xt[0]], out=alpha[0])
        for t in range(length):
            if t:
                torch.mm(alpha[t - 1], self.A, out=alpha[t])
                alpha[t] *= BT[xt[t]]
            torch.sum(alpha[t], 1, out=c[t])
            alpha[t] /= c[t, :, None]
        # backward: beta_t, the scaled message m_t = B[:, x_t] * beta_t / c_t (t >= 1), and the
        # statistics of step t accumulated as soon as beta_t is known
        stats = self.stats
        beta = torch.ones(n, h, dtype=self.dtype, device=self.device)
        msg, gamma = torch.empty_like(beta), torch.empty_like(beta)
        trans = torch.zeros(h, h, dtype=self.dtype, device=self.device)
        for t in range(length - 1, -1, -1):
            torch.mul(alpha[t], beta, out=gamma)
            stats.emit.index_add_(0, xt[t], gamma)
            if t == 0:
                stats.start += gamma.sum(0)
                break
            torch.mul(BT[xt[t]], beta, out=msg)
            msg /= c[t, :, None]
            trans.addmm_(alpha[t - 1].T, msg)  # sum over sequences of alpha_{t-1}^T m_t
            torch.mm(msg, self.A.T, out=beta)
        stats.trans += trans * self.A
        logp = torch.log(c).double().sum(0)  # float64 sum: a float32 fit still reports exact totals
        stats.loglik += float(logp.sum())
        return logp

    def m_step(self, floor: float) -> HmmParams:
        """New (pi, A, B) from the window's counts; rows of states with no weight keep their old values.

        Same rule as ``em.m_step`` for pomegranate: zero expected count is an absence of
        evidence, not a 0/0 to propagate; then the floor (``hmm.project``) keeps every log finite.
        """
        s = self.stats
        start, trans, emit = (v.double().cpu().numpy() for v in (s.start, s.trans, s.emit.T))
        for name, arr in (("start", start), ("transition", trans), ("emission", emit)):
            if not np.all(np.isfinite(arr)):  # e.g. an id with probability 0 in every state
                raise FloatingPointError(f"EM produced non-finite {name} counts")
        old = self.params
        with np.errstate(invalid="ignore", divide="ignore"):
            pi = start / start.sum() if start.sum() > 0 else old.pi
            row = trans.sum(1, keepdims=True)
            A = np.where(row > 0, trans / np.where(row > 0, row, 1), old.A)
            erow = emit.sum(1, keepdims=True)
            B = np.where(erow > 0, emit / np.where(erow > 0, erow, 1), old.B)
        params = project(HmmParams(pi=pi, A=A, B=B), floor)
        self.load(params)
        self.stats = Stats.zeros(self.hidden, self.emissions, self.dtype, self.device)
        return params
