"""HMM parameters as plain numpy arrays, and the bridge to pomegranate's ``DenseHMM``.

Why a plain-array form: fitting uses pomegranate, but evaluation, sampling and the ICL oracle
only need (pi, A, B). Storing those in one ``.npz`` keeps downstream stages free of
pomegranate (whose import alone compiles numba code for several seconds) and makes the file
format obvious.

Why ``ends`` are fixed at probability 1: our sequences all have length L, so "the sequence
ends here" carries no information. pomegranate's DenseHMM multiplies in an end probability and
normalises each transition row together with it (rows of ``exp(edges)`` then sum to < 1);
freezing ``ends`` at log 1 = 0 and renormalising the rows after each M-step makes pomegranate's
``log_probability`` exactly the fixed-length likelihood the forward algorithm here computes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class HmmParams:
    """Start distribution ``pi`` (H,), transitions ``A`` (H, H) and emissions ``B`` (H, K), rows stochastic."""

    pi: np.ndarray
    A: np.ndarray
    B: np.ndarray

    @property
    def hidden(self) -> int:
        return int(self.A.shape[0])

    @property
    def emissions(self) -> int:
        return int(self.B.shape[1])

    def check(self, atol: float = 1e-8) -> "HmmParams":
        h = self.hidden
        if self.pi.shape != (h,) or self.A.shape != (h, h) or self.B.shape[0] != h:
            raise ValueError(f"inconsistent shapes pi {self.pi.shape}, A {self.A.shape}, B {self.B.shape}")
        for name, arr in (("pi", self.pi), ("A", self.A), ("B", self.B)):
            if not np.all(np.isfinite(arr)) or arr.min() < 0:
                raise ValueError(f"{name} has negative or non-finite entries")
            if not np.allclose(arr.sum(axis=-1), 1.0, atol=atol):
                raise ValueError(f"rows of {name} do not sum to 1 (max error {np.abs(arr.sum(-1) - 1).max():.2e})")
        return self

    def save(self, path: str | Path) -> None:
        with open(path, "wb") as fh:
            np.savez(fh, pi=self.pi, A=self.A, B=self.B)

    @classmethod
    def load(cls, path: str | Path) -> "HmmParams":
        with np.load(path) as data:
            return cls(pi=data["pi"].astype(np.float64), A=data["A"].astype(np.float64),
                       B=data["B"].astype(np.float64)).check()

    def stationary(self) -> np.ndarray:
        """Stationary distribution of A (left eigenvector for eigenvalue 1)."""
        vals, vecs = np.linalg.eig(self.A.T)
        v = np.real(vecs[:, np.argmin(np.abs(vals - 1))])
        v = np.clip(v / v.sum(), 0.0, None)  # rounding can leave -1e-17 entries
        return v / v.sum()

    def with_start(self, start: str) -> "HmmParams":
        """The HMM whose sequences start in ``pi`` (``"pi"``) or in the stationary distribution.

        Sampling with ``synthetic.start: stationary`` draws the first state from the stationary
        distribution, so every exact predictor of those sequences must use it as its prior.
        """
        if start == "pi":
            return self
        if start == "stationary":
            return HmmParams(pi=self.stationary(), A=self.A, B=self.B)
        raise ValueError(f"start must be 'pi' or 'stationary', got {start!r}")


def random_params(hidden: int, emissions: int, rng: np.random.Generator, concentration: float = 1.0) -> HmmParams:
    """Seeded random initialisation: every row drawn from a symmetric Dirichlet.

    Why random and not uniform: EM started from a symmetric point stays symmetric (all states
    identical, no learning), which is what the original lab notes ran into.
    """
    return HmmParams(pi=rng.dirichlet(np.full(hidden, concentration)),
                     A=rng.dirichlet(np.full(hidden, concentration), size=hidden),
                     B=rng.dirichlet(np.full(emissions, concentration), size=hidden))


def floor_rows(arr: np.ndarray, floor: float) -> np.ndarray:
    """Clamp every probability to at least ``floor`` and renormalise each row."""
    out = np.maximum(arr, floor)
    return out / out.sum(axis=-1, keepdims=True)


def project(params: HmmParams, floor: float) -> HmmParams:
    """The 1e-14 floor: no probability is exactly zero after an M-step.

    Why: a word absent from the mini-batches of one M-step gets emission probability 0 in every
    state; the next batch containing it has log-emission -inf in every state, the forward
    recursion computes -inf - (-inf) = NaN, and the NaN spreads to every parameter. Flooring
    at 1e-14 (about 50 x float64 epsilon) keeps logs finite at no measurable cost to the fit.
    """
    for name, arr in (("pi", params.pi), ("A", params.A), ("B", params.B)):
        if not np.all(np.isfinite(arr)):
            raise FloatingPointError(f"EM produced non-finite values in {name}")
    return HmmParams(pi=floor_rows(params.pi, floor), A=floor_rows(params.A, floor), B=floor_rows(params.B, floor))


def to_pomegranate(params: HmmParams, dtype=None, device: str = "cpu"):
    """A ``DenseHMM`` with Categorical emissions holding ``params``; ends frozen at probability 1."""
    import torch
    from pomegranate.distributions import Categorical
    from pomegranate.hmm import DenseHMM

    dtype = dtype or torch.float64
    dists = [Categorical(torch.tensor(params.B[i : i + 1], dtype=dtype)) for i in range(params.hidden)]
    model = DenseHMM(dists, edges=torch.tensor(params.A, dtype=dtype), starts=torch.tensor(params.pi, dtype=dtype),
                     ends=torch.ones(params.hidden, dtype=dtype))
    model = model.to(dtype=dtype, device=device)
    model.ends.frozen = True  # pomegranate's _update_parameter skips frozen parameters
    model._reset_cache()
    return model


def from_pomegranate(model) -> HmmParams:
    """Read (pi, A, B) back; transition rows renormalised (the fixed-length conditional)."""
    import torch

    with torch.no_grad():
        pi = torch.exp(model.starts).double().cpu().numpy()
        A = torch.exp(model.edges).double().cpu().numpy()
        B = torch.cat([d.probs.detach() for d in model.distributions], dim=0).double().cpu().numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        A = A / A.sum(axis=1, keepdims=True)
        pi = pi / pi.sum()
    return HmmParams(pi=pi, A=A, B=B)


def load_into(model, params: HmmParams) -> None:
    """Overwrite a DenseHMM's parameters in place and rebuild its caches."""
    import torch

    with torch.no_grad(), np.errstate(divide="ignore"):
        dtype, device = model.edges.dtype, model.edges.device
        model.starts.data.copy_(torch.as_tensor(np.log(params.pi), dtype=dtype, device=device))
        model.edges.data.copy_(torch.as_tensor(np.log(params.A), dtype=dtype, device=device))
        for i, dist in enumerate(model.distributions):
            dist.probs.data.copy_(torch.as_tensor(params.B[i : i + 1], dtype=dtype, device=device))
    model._reset_cache()  # also resets every node: recomputes their cached log-probabilities
