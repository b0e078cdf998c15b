"""Build the pre-norm SwiGLU decoder (RMSNorm, RoPE) with ``transformers``' Llama.

Why Llama rather than a hand-written block: LlamaForCausalLM *is* a pre-norm SwiGLU decoder with
RMSNorm and rotary embeddings, maintained and tested upstream; ``intermediate_size`` is the GLU
hidden width (glu x d_model).
"""

from __future__ import annotations

import json
from pathlib import Path

from stages.param_alloc.configs import Shape
from stages.param_alloc.solver import count_params


class ParamCountMismatch(RuntimeError):
    pass


def build_model(shape: Shape, seed: int):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=shape.vocab_size, hidden_size=shape.d_model, intermediate_size=shape.d_ff,
        num_hidden_layers=shape.n_layers, num_attention_heads=shape.n_heads,
        num_key_value_heads=shape.n_heads, max_position_embeddings=shape.max_seq_len, rms_norm_eps=1e-5,
        hidden_act="silu", tie_word_embeddings=shape.tie_embeddings, attention_bias=False, mlp_bias=False,
        attention_dropout=0.0, initializer_range=0.02, use_cache=False, bos_token_id=None, eos_token_id=None,
        pad_token_id=None,
    )
    config._attn_implementation = "sdpa"
    torch.manual_seed(seed)
    return LlamaForCausalLM(config)


def numel(model) -> int:
    """Unique parameters (a tied embedding counts once), as ``sum(p.numel())`` over ``parameters()``."""
    return sum(p.numel() for p in model.parameters())


def build_checked(shape: Shape, seed: int, target: int, tolerance: float):
    """Build the model and fail loudly if the built count differs from the solver's or misses the target."""
    model = build_model(shape, seed)
    solved = count_params(shape.vocab_size, shape.d_model, shape.n_layers, shape.d_ff, shape.tie_embeddings)
    actual = numel(model)
    if actual != solved:
        raise ParamCountMismatch(f"built model has {actual} parameters but the solver promised {solved}: {shape}")
    if abs(actual - target) / target > tolerance:
        raise ParamCountMismatch(f"{actual} parameters miss the target {target} by more than {tolerance:.1%}")
    return model, {"solved_params": solved, "actual_params": actual,
                   "param_error": (actual - target) / target}


def save_model(model, shape: Shape, out_dir: Path) -> None:
    import torch

    out_dir.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), out_dir / "model.pt")
    (out_dir / "shape.json").write_text(json.dumps(shape.model_dump(), indent=2, sort_keys=True) + "\n")


def load_model(model_dir: str | Path):
    import torch

    model_dir = Path(model_dir)
    shape = Shape.model_validate_json((model_dir / "shape.json").read_text())
    model = build_model(shape, seed=0)
    model.load_state_dict(torch.load(model_dir / "model.pt", map_location="cpu", weights_only=True))
    model.eval()
    return model, shape
