"""Typed configs of the hmm_icl stages: the only thing stage code receives.

Kept in one light module (pydantic only, no torch/pomegranate import) so planning and
compiling stay fast. Spec-level pieces (``GridPoint``, ``EmSpec``, ...) are reused verbatim in
the stage configs, so a spec value reaches stage code without being copied field by field.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from harness.schema import StrictModel
from harness.trainer import TrainConfig

#: shards store ids as uint16; the Llama vocabulary is K + 1 (the separator), so K < 65535
MAX_EMISSIONS = 65534


class GridPoint(StrictModel):
    """One HMM of the grid: K emissions (vocabulary incl. specials) x H hidden states x length L."""

    emissions: int = Field(..., ge=3, le=MAX_EMISSIONS)
    hidden: int = Field(..., ge=1, le=4096)
    seq_len: int = Field(..., ge=2, le=8192)

    @property
    def tag(self) -> str:
        return f"k{self.emissions}-h{self.hidden}-l{self.seq_len}"

    @property
    def corpus_tag(self) -> str:
        return f"k{self.emissions}-l{self.seq_len}"


class CorpusSource(StrictModel):
    """Where the text comes from and how it is cut into blocks ("stories")."""

    path: str
    #: ``blank_line``: blocks separated by blank lines (the TinyStories slice, the embedded data);
    #: ``marker``: blocks separated by a literal marker line (raw TinyStories uses <|endoftext|>)
    boundary: Literal["blank_line", "marker"] = "blank_line"
    marker: str = "<|endoftext|>"
    val_fraction: float = Field(0.1, gt=0, lt=1)
    #: cap on the number of blocks read (None: all), for quick runs on a large corpus
    max_blocks: int | None = Field(None, ge=2)


class CorpusConfig(StrictModel):
    source: CorpusSource
    emissions: int = Field(..., ge=3, le=MAX_EMISSIONS)
    seq_len: int = Field(..., ge=2)
    out_dir: str
    metrics: str


class EmSpec(StrictModel):
    """Batched Baum-Welch: summarize mini-batches, update every ``update_freq`` of them."""

    epochs: int = Field(..., ge=1)
    batch_size: int = Field(..., ge=1)
    #: cap on the E-step's memory: pomegranate's forward-backward materialises an
    #: (batch, L, H, H) tensor, so the batch is shrunk to fit (None: no cap). At H = L = 600 a
    #: batch of 256 would need ~220 GB; the notes ran out of GPU memory exactly this way.
    estep_memory_gb: float | None = Field(None, gt=0)
    #: mini-batches per M-step; None: one M-step per epoch (classic full-batch EM)
    update_freq: int | None = Field(None, ge=1)
    #: probabilities are clamped to at least this after every M-step (then renormalised)
    floor: float = Field(1e-14, ge=0, lt=1e-3)
    #: Dirichlet concentration of the seeded random initialisation (1: uniform on the simplex)
    init_concentration: float = Field(1.0, gt=0)
    checkpoint_every: int = Field(1, ge=1)
    #: independent random initialisations; the best training likelihood is kept
    restarts: int = Field(1, ge=1)
    #: cap on training sequences (None: all)
    max_train_sequences: int | None = Field(None, ge=1)
    #: validation sequences scored after every epoch for the convergence history
    history_val_sequences: int = Field(256, ge=1)
    device: Literal["auto", "cpu", "cuda"] = "cpu"
    dtype: Literal["float32", "float64"] = "float64"
    #: torch intra-op threads (None: torch's default). Small-H fits are dominated by tiny
    #: matmuls, for which one thread is several times faster than two on a busy 2-core box.
    torch_threads: int | None = Field(None, ge=1)


class FitConfig(StrictModel):
    point: GridPoint
    em: EmSpec
    seed: int
    corpus_dir: str
    out_dir: str
    metrics: str
    history: str


class EvalSpec(StrictModel):
    #: validation sequences scored (None: all)
    max_sequences: int | None = Field(None, ge=1)
    #: additive (Laplace) smoothing of the unigram/bigram baselines fitted on the training split
    smoothing: float = Field(1.0, gt=0)


class EvalConfig(StrictModel):
    point: GridPoint
    eval: EvalSpec
    corpus_dir: str
    hmm_dir: str
    metrics: str


class SynthSpec(StrictModel):
    """Synthetic corpora sampled from a fitted HMM."""

    train_sequences: int = Field(..., ge=1)
    val_sequences: int = Field(..., ge=1)
    #: held-out sequences for the ICL measurement (their permutations are stored)
    eval_sequences: int = Field(..., ge=1)
    #: sequences drawn per vectorised step of the sampler
    batch_sequences: int = Field(4096, ge=1)
    #: sequences per memory-mapped shard
    shard_sequences: int = Field(65536, ge=1)
    #: per-sequence random permutation of the emission ids (the map must be inferred in context)
    permute: bool = False
    #: grid points that get synthetic corpora, a Llama and an ICL measurement (None: all)
    points: list[GridPoint] | None = None


class SampleConfig(StrictModel):
    point: GridPoint
    synth: SynthSpec
    seed: int
    hmm_dir: str
    out_dir: str
    metrics: str


class LlamaSpec(StrictModel):
    """Shape of the ``transformers`` LlamaForCausalLM trained on the synthetic corpus."""

    hidden_size: int = Field(..., ge=8)
    num_layers: int = Field(..., ge=1)
    num_heads: int = Field(..., ge=1)
    num_kv_heads: int | None = Field(None, ge=1)
    intermediate_size: int = Field(..., ge=8)
    rope_theta: float = Field(10000.0, gt=0)
    tie_embeddings: bool = True

    @model_validator(mode="after")
    def _heads(self) -> "LlamaSpec":
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not a multiple of num_heads {self.num_heads}")
        kv = self.num_kv_heads or self.num_heads
        if self.num_heads % kv:
            raise ValueError(f"num_heads {self.num_heads} is not a multiple of num_kv_heads {kv}")
        return self


class LmTrainSpec(StrictModel):
    """Trainer settings; the window length is fixed by the study (L + 1: separator + sequence)."""

    steps: int = Field(..., ge=1)
    batch_size: int = Field(..., ge=1)
    micro_batch_size: int | None = Field(None, ge=1)
    lr: float = Field(..., gt=0)
    min_lr_ratio: float = Field(0.1, ge=0, le=1)
    warmup_steps: int = Field(0, ge=0)
    weight_decay: float = Field(0.1, ge=0)
    grad_clip: float = Field(1.0, ge=0)
    eval_every: int = Field(0, ge=0)
    eval_batches: int = Field(4, ge=1)
    checkpoint_every: int = Field(50, ge=1)
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    #: torch intra-op threads on CPU (None: torch's default); see EmSpec.torch_threads
    torch_threads: int | None = Field(None, ge=1)


class LmTrainConfig(StrictModel):
    point: GridPoint
    model: LlamaSpec
    train: TrainConfig
    torch_threads: int | None = Field(None, ge=1)
    shards_dir: str
    out_dir: str
    metrics: str
    curve: str


class IclSpec(StrictModel):
    #: additive smoothing of the in-context unigram/bigram predictors
    smoothing: float = Field(0.5, gt=0)
    #: held-out sequences scored (None: all that were sampled)
    max_sequences: int | None = Field(None, ge=1)
    batch_size: int = Field(64, ge=1)
    #: fraction of positions averaged for the "early" and "late" ICL gap figures
    window: float = Field(0.1, gt=0, le=0.5)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    torch_threads: int | None = Field(None, ge=1)


class IclConfig(StrictModel):
    point: GridPoint
    icl: IclSpec
    hmm_dir: str
    shards_dir: str
    lm_dir: str
    metrics: str
    curve: str


class ReportConfig(StrictModel):
    points: list[GridPoint]
    fit_metrics: list[str]
    fit_histories: list[str]
    eval_metrics: list[str]
    icl_points: list[GridPoint]
    sample_dirs: list[str]
    lm_metrics: list[str]
    icl_metrics: list[str]
    icl_curves: list[str]
    out_dir: str
