"""The small Llama: ``transformers.LlamaForCausalLM`` sized by the spec.

Why Llama and not GPT-2: rotary position embeddings are relative, so a model trained on windows
that start anywhere in the stream treats "position 5 after the separator" the same wherever the
window began; the original notes switched from GPT-2 for this reason.

Vocabulary: the K emission ids plus one separator (id K) that starts every sequence.
"""

from __future__ import annotations

from stages.hmm_icl.configs import LlamaSpec


def build_llama(spec: LlamaSpec, emissions: int, max_len: int, seed: int):
    """A freshly initialised LlamaForCausalLM (seeded) for K emissions + the separator."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    separator = emissions
    config = LlamaConfig(
        vocab_size=emissions + 1, hidden_size=spec.hidden_size, intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_layers, num_attention_heads=spec.num_heads,
        num_key_value_heads=spec.num_kv_heads or spec.num_heads, max_position_embeddings=max_len,
        rope_parameters={"rope_type": "default", "rope_theta": spec.rope_theta},
        tie_word_embeddings=spec.tie_embeddings, bos_token_id=separator, eos_token_id=separator,
        pad_token_id=None, use_cache=False,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config)


def load_llama(path: str, device: str = "cpu"):
    from transformers import LlamaForCausalLM

    model = LlamaForCausalLM.from_pretrained(path)
    return model.to(device).eval()


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())
