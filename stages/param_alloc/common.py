"""Helpers shared by the param_alloc training stages: load validated tokens, solve and build a model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from stages.param_alloc.configs import Allocation, ModelSpec, Shape
from stages.param_alloc.solver import describe, solve


def require_gate(gate_report: str) -> None:
    """Refuse to train on data the gate has not passed (defence in depth beyond the DAG edge)."""
    path = Path(gate_report)
    if not path.exists() or not all(c.get("success") for c in json.loads(path.read_text())["checks"]):
        raise RuntimeError(f"{gate_report}: validation gate has not passed; run the gate stage first")


def load_tokens(tokens_dir: str) -> tuple[dict[str, np.ndarray], int]:
    tokens = Path(tokens_dir)
    vocab = int(json.loads((tokens / "counts.json").read_text())["vocab_size"])
    return {s: np.load(tokens / f"{s}.npy") for s in ("train", "dev", "test")}, vocab


def solve_shape(allocation: Allocation, model: ModelSpec, vocab: int) -> tuple[Shape, dict]:
    shape = solve(allocation, model, vocab)
    return shape, describe(shape)


def gated_model(allocation: Allocation, model: ModelSpec, tokens_dir: str, gate_report: str, seed: int,
                threads: int | None = None):
    """The opening of every training-type stage: gate passed, seeded, tokens loaded, shape solved,
    model built and its parameter count checked. Returns (model, tokens, shape, solved, counts)."""
    from harness.runtime import seed_everything, set_threads
    from stages.param_alloc.model import build_checked

    require_gate(gate_report)
    set_threads(threads)
    seed_everything(seed)
    tokens, vocab = load_tokens(tokens_dir)
    shape, solved = solve_shape(allocation, model, vocab)
    built, counts = build_checked(shape, seed, model.target_params, model.tolerance)
    return built, tokens, shape, solved, counts
