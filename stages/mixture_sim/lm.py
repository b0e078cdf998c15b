"""Byte-level data and a tiny transformers Llama for the harness-generated simulator table.

Why bytes: every domain (prose, code, LaTeX) is covered by the same 256-symbol vocabulary with no
tokenizer to train, so a loss in nats per byte is comparable across domains and mixtures.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from stages.mixture_sim.configs import LMShape

VOCAB = 256
#: positions the model supports; task items (context + choice) are truncated from the left to fit
MAX_POSITIONS = 256


def text_ids(path: str | Path, limit: int | None = None) -> np.ndarray:
    data = Path(path).read_bytes()
    return np.frombuffer(data[:limit] if limit else data, dtype=np.uint8).astype(np.int64)


def mixed_stream(texts: dict[str, str], proportions: dict[str, float], n_tokens: int) -> np.ndarray:
    """Training stream: each domain contributes ``round(p * n_tokens)`` bytes of its text file.

    ``texts`` maps each domain to its training text (``<corpus folder>/train.txt``).

    Domains are concatenated (repeating a domain's text if the mixture asks for more than it has),
    so uniformly drawn training windows come from domain d with probability ~p_d.
    """
    from harness.datagate import check_text_files

    # an empty domain file would be np.resize-d into zeros and the row still labelled with its share
    check_text_files("mixture_sim/domain corpora", [texts[d] for d, p in proportions.items() if round(p * n_tokens)],
                     encoding=None)
    parts = []
    for domain, share in proportions.items():
        n = int(round(share * n_tokens))
        if n:
            parts.append(np.resize(text_ids(texts[domain]), n))
    return np.concatenate(parts)


def build_model(shape: LMShape, seed: int):
    """A Llama with tied byte embeddings; initialised from ``seed`` alone."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=VOCAB, hidden_size=shape.d_model, intermediate_size=shape.ffn,
        num_hidden_layers=shape.n_layers, num_attention_heads=shape.n_heads, num_key_value_heads=shape.n_heads,
        max_position_embeddings=MAX_POSITIONS, tie_word_embeddings=True, attention_dropout=0.0,
        bos_token_id=None, eos_token_id=None, pad_token_id=None,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config)


def n_params(model) -> int:
    """Parameters counted once (tied embedding/unembedding are one tensor)."""
    return int(sum(p.numel() for p in model.parameters()))


def read_tasks(path: str | Path, limit: int) -> list[dict]:
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()][:limit]
