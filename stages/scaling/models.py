"""Width-scalable language models (Transformer, LSTM) in standard parametrisation or μP.

Why own small torch modules rather than a transformers Llama: μP changes three things a stock
model hard-codes — the readout (``mup.MuReadout``: output ÷ width multiplier), the attention
scale (1/d_head instead of 1/√d_head) and the zero initialisation of queries and readout — and
the activation must be switchable (GELU/ReLU MLPs and the gated SwiGLU). Everything μP-specific
comes from the ``mup`` package: ``set_base_shapes`` records which dimensions grow with width,
``MuReadout``/``MuSharedReadout`` and ``MuAdamW`` (per-tensor LR scaling) do the rest.

SP vs μP here differ only in those mup pieces; the initialisation of hidden matrices is
N(0, 1/fan_in) in both (already μP-correct for matrices whose fan-in grows), embeddings are
N(0, ``embed_std``²) in both (μP input weights: constant in width), and the optional zero
initialisations (queries, readout) are initialisation choices applied to both alike.

Why μP equals SP at ``base_width``: every μP multiplier is a ratio to the base shapes. The
attention scale is ``sqrt(d_base)/d_head`` (the mup README's ``8/d``, with 8 = √64 the base head
size), i.e. 1/√d_head at the base width and 1/d_head scaling above it; ``MuReadout`` divides by
``width_mult`` = 1 at the base width and mup's readout rescale multiplies by √1; ``MuAdamW``
divides hidden-matrix learning rates by ``width_mult`` = 1. So at the base width the μP model
is the SP model, parameter for parameter and loss for loss (tested), and the two differ only
in how they extrapolate with width.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal, Union

from pydantic import Field

from harness.schema import StrictModel

Parametrization = Literal["sp", "mup"]


class TransformerSpec(StrictModel):
    """Pre-norm decoder-only Transformer; heads fixed, so d_head grows with width (μP's case)."""

    kind: Literal["transformer"] = "transformer"
    #: blocks at ``base_width`` (and at every width when ``depth_scaling`` is ``fixed``)
    depth: int = Field(2, ge=1)
    #: ``sqrt_width``: depth = round(depth · √(width / base_width)), as in seed 002's sweeps
    #: (depth growing with width^0.5); μP's base shapes are then taken at the target's depth
    depth_scaling: Literal["fixed", "sqrt_width"] = "fixed"
    heads: int = Field(2, ge=1)
    activation: Literal["gelu", "relu", "swiglu"] = "gelu"
    #: MLP hidden size / width (for SwiGLU the hidden size is 2/3 of this, as in Llama)
    mlp_ratio: float = Field(4.0, gt=0)
    tie: bool = False
    vocab_size: int = Field(256, ge=2)
    max_seq_len: int = Field(256, ge=2)
    embed_std: float = Field(0.1, gt=0)
    #: μP base width: the width at which μP and SP coincide
    base_width: int = Field(16, ge=1)
    #: start the (untied) readout at zero (mup README), SP and μP alike; slow to get going in short runs
    readout_zero_init: bool = False
    #: start the query projections at zero, so attention starts uniform (mup README), SP and μP alike
    query_zero_init: bool = True

    def depth_at(self, width: int) -> int:
        """Blocks at ``width``: fixed, or growing with √(width / base_width)."""
        if self.depth_scaling == "fixed":
            return self.depth
        return max(1, round(self.depth * math.sqrt(width / self.base_width)))


class LSTMSpec(StrictModel):
    """Embedding -> stacked LSTM -> readout."""

    kind: Literal["lstm"] = "lstm"
    layers: int = Field(1, ge=1)
    tie: bool = False
    vocab_size: int = Field(256, ge=2)
    embed_std: float = Field(0.1, gt=0)
    base_width: int = Field(16, ge=1)
    readout_zero_init: bool = False


ModelSpec = Annotated[Union[TransformerSpec, LSTMSpec], Field(discriminator="kind")]


def _torch():
    import torch
    from torch import nn

    return torch, nn


def attention_scale(spec: TransformerSpec, width: int, mup: bool) -> float:
    """Softmax temperature of q·k: 1/√d_head (SP); √d_base / d_head (μP, mup's ``8/d``).

    Under μP q and k become correlated after training, so q·k grows like d_head, not √d_head;
    1/d_head keeps the logits O(1). The √d_base factor makes it 1/√d_head at the base width,
    where μP must be SP.
    """
    head_dim = width // spec.heads
    base_head = spec.base_width // spec.heads
    if not mup or head_dim == base_head:  # exactly SP's value: √d/d can differ from 1/√d in the last bit
        return 1.0 / math.sqrt(head_dim)
    return math.sqrt(base_head) / head_dim


def _build_transformer(spec: TransformerSpec, width: int, mup: bool, depth: int | None = None):
    torch, nn = _torch()
    import torch.nn.functional as F
    from mup import MuReadout, MuSharedReadout

    if width % spec.heads:
        raise ValueError(f"width {width} is not a multiple of heads={spec.heads}")
    hidden = round(spec.mlp_ratio * width * (2 / 3 if spec.activation == "swiglu" else 1))
    depth = spec.depth_at(width) if depth is None else depth

    class Attention(nn.Module):
        def __init__(self):
            super().__init__()
            self.q = nn.Linear(width, width, bias=False)
            self.k = nn.Linear(width, width, bias=False)
            self.v = nn.Linear(width, width, bias=False)
            self.o = nn.Linear(width, width, bias=False)
            self.scale = attention_scale(spec, width, mup)

        def forward(self, x):
            b, t, _ = x.shape
            q, k, v = (proj(x).view(b, t, spec.heads, -1).transpose(1, 2) for proj in (self.q, self.k, self.v))
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=self.scale)
            return self.o(y.transpose(1, 2).reshape(b, t, width))

    class MLP(nn.Module):
        def __init__(self):
            super().__init__()
            gated = spec.activation == "swiglu"
            self.up = nn.Linear(width, hidden * (2 if gated else 1), bias=False)
            self.down = nn.Linear(hidden, width, bias=False)

        def forward(self, x):
            h = self.up(x)
            if spec.activation == "swiglu":
                a, g = h.chunk(2, dim=-1)
                h = F.silu(a) * g
            else:
                h = F.gelu(h) if spec.activation == "gelu" else F.relu(h)
            return self.down(h)

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln1, self.attn = nn.LayerNorm(width), Attention()
            self.ln2, self.mlp = nn.LayerNorm(width), MLP()

        def forward(self, x):
            x = x + self.attn(self.ln1(x))
            return x + self.mlp(self.ln2(x))

    class TransformerLM(nn.Module):
        def __init__(self):
            super().__init__()
            self.tok = nn.Embedding(spec.vocab_size, width)
            self.pos = nn.Embedding(spec.max_seq_len, width)
            self.blocks = nn.ModuleList(Block() for _ in range(depth))
            self.ln_f = nn.LayerNorm(width)
            self.readout = _readout(nn, MuReadout, MuSharedReadout, self.tok, width, spec, mup)

        def forward(self, input_ids):
            pos = torch.arange(input_ids.shape[1], device=input_ids.device)
            x = self.tok(input_ids) + self.pos(pos)[None]
            for block in self.blocks:
                x = block(x)
            return self.readout(self.ln_f(x))

    return TransformerLM()


def _readout(nn, MuReadout, MuSharedReadout, embedding, width: int, spec, mup: bool):
    if mup:
        if spec.tie:
            return MuSharedReadout(embedding.weight, bias=False)
        return MuReadout(width, spec.vocab_size, bias=False, readout_zero_init=spec.readout_zero_init)
    readout = nn.Linear(width, spec.vocab_size, bias=False)
    if spec.tie:
        readout.weight = embedding.weight
    return readout


def _build_lstm(spec: LSTMSpec, width: int, mup: bool):
    torch, nn = _torch()
    from mup import MuReadout, MuSharedReadout

    class LSTMLM(nn.Module):
        def __init__(self):
            super().__init__()
            self.tok = nn.Embedding(spec.vocab_size, width)
            self.lstm = nn.LSTM(width, width, num_layers=spec.layers, batch_first=True)
            self.readout = _readout(nn, MuReadout, MuSharedReadout, self.tok, width, spec, mup)

        def forward(self, input_ids):
            out, _ = self.lstm(self.tok(input_ids))
            return self.readout(out)

    return LSTMLM()


def _raw(spec, width: int, mup: bool, depth: int | None = None):
    if spec.kind == "transformer":
        return _build_transformer(spec, width, mup, depth)
    return _build_lstm(spec, width, mup)


def init_weights(model, spec, mup: bool) -> None:
    """Explicit initialisation, identical in SP and μP except the μP readout and zero inits.

    Matrices N(0, 1/fan_in); embeddings N(0, embed_std²) (a tied readout keeps them); LSTM
    biases 0; LayerNorm (1, 0). μP: an untied ``MuReadout`` is rescaled by mup itself
    (``_rescale_parameters``: ×√width_mult, then ÷width_mult in forward, i.e. the 1/width
    output init of μP; both factors are 1 at the base width). Zero inits (``readout_zero_init``,
    ``query_zero_init``) apply to SP and μP alike, so the two coincide at the base width.
    """
    torch, nn = _torch()
    from mup import MuReadout, MuSharedReadout

    done: set[int] = set()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Embedding):
                module.weight.normal_(0.0, spec.embed_std)
                done.add(id(module.weight))
        for module in model.modules():
            if isinstance(module, nn.LayerNorm):
                module.reset_parameters()
            elif isinstance(module, nn.Linear) and id(module.weight) not in done:
                module.weight.normal_(0.0, module.weight.shape[1] ** -0.5)
                if module.bias is not None:
                    module.bias.zero_()
            elif isinstance(module, nn.LSTM):
                for name, p in module.named_parameters():
                    if name.startswith("weight"):
                        p.normal_(0.0, p.shape[1] ** -0.5)
                    else:
                        p.zero_()
        if mup:
            for module in model.modules():
                if isinstance(module, MuSharedReadout):
                    continue  # tied: the embedding's N(0, embed_std²) is already width-independent
                if isinstance(module, MuReadout) and not module.readout_zero_init:
                    module._rescale_parameters()
        if spec.readout_zero_init and not spec.tie:
            model.readout.weight.zero_()
        if spec.kind == "transformer" and spec.query_zero_init:
            for block in model.blocks:
                block.attn.q.weight.zero_()


def build_model(spec, width: int, parametrization: Parametrization, seed: int = 0):
    """A model at ``width``; under μP with base shapes set against ``spec.base_width``."""
    torch, _ = _torch()
    mup = parametrization == "mup"
    torch.manual_seed(seed)
    model = _raw(spec, width, mup)
    if mup:
        from mup import set_base_shapes

        depth = spec.depth_at(width) if spec.kind == "transformer" else None
        base = _raw(spec, spec.base_width, True, depth)
        delta = _raw(spec, spec.base_width * 2, True, depth)
        # rescale_params=False: init_weights below sets every tensor explicitly
        set_base_shapes(model, base, delta=delta, rescale_params=False)
    torch.manual_seed(seed)
    init_weights(model, spec, mup)
    return model


def optimizer_factory(parametrization: Parametrization):
    """AdamW for SP (the trainer's default groups); mup's MuAdamW for μP, same groups."""
    if parametrization == "sp":
        return None

    def make(model, cfg):
        from mup import MuAdamW

        decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
        no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
        groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        return MuAdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))

    return make


def parameter_counts(model) -> dict[str, int]:
    """Total parameters (a tied matrix once) and non-embedding ones (Kaplan et al. 2020:
    without the token and position embeddings and the vocabulary readout)."""
    total = sum(p.numel() for p in model.parameters())
    seen, embedding = set(), 0
    for name, module in model.named_modules():
        if name in ("tok", "pos", "readout"):
            for p in module.parameters(recurse=False):
                if id(p) not in seen:
                    seen.add(id(p))
                    embedding += p.numel()
    return {"N": total, "N_no_emb": total - embedding}
