"""Typed configs of the hmm_icl stages: the only thing stage code receives.

Kept in one light module (pydantic only, no torch/pomegranate import) so planning and
compiling stay fast. Spec-level pieces (``GridPoint``, ``EmSpec``, ...) are reused verbatim in
the stage configs, so a spec value reaches stage code without being copied field by field.

Every path a stage reads or writes is a field with its role (``Dep``, ``Out``, ``Metric``,
``Plot``, ``Committed``): the compiled ``dvc.yaml`` entry is derived from these declarations.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from harness.schema import Committed, Dep, Metric, Out, Plot, StrictModel
from harness.settings import TrainSettings
from stages.hmm_icl.pool import Permutations

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

    #: the text file (a dep of the corpus stages: the exact file, not the folder holding it)
    path: Annotated[str, Dep]
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
    out_dir: Annotated[str, Out]
    metrics: Annotated[str, Metric]


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
    #: E-step: ``torch`` (batched scaled forward-backward, ``baumwelch.py``) or ``pomegranate``
    #: (DenseHMM.summarize, the reference implementation; ~100x slower at H = 100)
    backend: Literal["torch", "pomegranate"] = "torch"
    #: torch intra-op threads (None: torch's default). Small-H fits are dominated by tiny
    #: matmuls, for which one thread is several times faster than two on a busy 2-core box.
    torch_threads: int | None = Field(None, ge=1)


class FitConfig(StrictModel):
    point: GridPoint
    em: EmSpec
    seed: int
    corpus_dir: Annotated[str, Dep]
    out_dir: Annotated[str, Out]
    metrics: Annotated[str, Metric]
    history: Annotated[str, Plot(x="epoch", y="val_loglik_per_token")]


class EvalSpec(StrictModel):
    #: validation sequences scored (None: all)
    max_sequences: int | None = Field(None, ge=1)
    #: additive (Laplace) smoothing of the unigram/bigram baselines fitted on the training split
    smoothing: float = Field(1.0, gt=0)


class EvalConfig(StrictModel):
    point: GridPoint
    eval: EvalSpec
    corpus_dir: Annotated[str, Dep]
    hmm_dir: Annotated[str, Dep]
    metrics: Annotated[str, Metric]


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
    #: emission permutations, one synthetic corpus + Llama + ICL measurement per entry:
    #: ``{pool: M}`` draws each sequence's id map from a seeded pool of M permutations (M = 1: none;
    #: the fair optimum is the mixture forward algorithm over the pool); ``{pool: null}``: a fresh
    #: random permutation per sequence (the seed's unbounded case; no fair reference exists)
    permutations: list[Permutations] = Field(default_factory=lambda: [Permutations(pool=1)], min_length=1)
    #: initial hidden state of every sampled sequence: the HMM's ``pi`` or its stationary distribution
    start: Literal["pi", "stationary"] = "pi"
    #: grid points that get synthetic corpora, a Llama and an ICL measurement (None: all)
    points: list[GridPoint] | None = None


class SampleConfig(StrictModel):
    point: GridPoint
    synth: SynthSpec
    permutations: Permutations
    seed: int
    hmm_dir: Annotated[str, Dep]
    out_dir: Annotated[str, Out]
    metrics: Annotated[str, Metric]


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


class LmTrainSpec(TrainSettings):
    """The spec's ``lm.train``: :class:`TrainSettings` less the two fields the study fixes.

    ``seq_len`` is L + 1 of each grid point (separator + sequence) and ``seed`` is the spec's
    top-level ``seed``, so the spec must leave both out; :meth:`for_point` adds them and returns
    the plain ``TrainSettings`` a train stage receives. Every other field, default included, is
    ``TrainSettings``' own (``threads``: torch intra-op threads on CPU, see EmSpec.torch_threads).
    """

    seq_len: int | None = Field(None, ge=2)

    @model_validator(mode="after")
    def _study_fixed(self) -> "LmTrainSpec":
        for name in ("seq_len", "seed"):
            if name in self.model_fields_set:
                raise ValueError(f"lm.train.{name} is fixed by the study (seq_len = L + 1, seed = the spec's seed);"
                                 " leave it out")
        return self

    def for_point(self, seq_len: int, seed: int) -> TrainSettings:
        """The trainer settings of one grid point; warmup is capped at ``steps``."""
        settings = TrainSettings.model_validate(self.model_dump(exclude={"seq_len"}) | {"seq_len": seq_len})
        return settings.model_copy(update={"seed": seed, "warmup_steps": min(self.warmup_steps, self.steps)})


class LmTrainConfig(StrictModel):
    point: GridPoint
    model: LlamaSpec
    #: ``train.threads`` scopes torch's intra-op threads for the whole stage
    train: TrainSettings
    shards_dir: Annotated[str, Dep]
    out_dir: Annotated[str, Out]
    metrics: Annotated[str, Metric]
    curve: Annotated[str, Plot(x="step", y="train_loss")]


class IclSpec(StrictModel):
    #: additive smoothing of the in-context unigram/bigram predictors
    smoothing: float = Field(0.5, gt=0)
    #: held-out sequences scored (None: all that were sampled)
    max_sequences: int | None = Field(None, ge=1)
    batch_size: int = Field(64, ge=1)
    #: fraction of positions 2..L averaged for the "early" and "late" ICL gap figures
    #: (position 1, which has no context, is reported on its own)
    window: float = Field(0.1, gt=0, le=0.5)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    torch_threads: int | None = Field(None, ge=1)


class IclConfig(StrictModel):
    point: GridPoint
    permutations: Permutations
    icl: IclSpec
    hmm_dir: Annotated[str, Dep]
    shards_dir: Annotated[str, Dep]
    lm_dir: Annotated[str, Dep]
    metrics: Annotated[str, Metric]
    curve: Annotated[str, Plot(x="position", y="gap_model")]

    @property
    def tag(self) -> str:
        return f"{self.point.tag}-{self.permutations.tag}"


class ReportConfig(StrictModel):
    points: list[GridPoint]
    fit_metrics: Annotated[list[str], Dep]
    fit_histories: Annotated[list[str], Dep]
    eval_metrics: Annotated[list[str], Dep]
    icl_points: list[GridPoint]
    #: the permutation setting of each ICL measurement (parallel to ``icl_points``)
    icl_permutations: list[Permutations]
    #: the synthetic corpora, for the sampler throughput recorded in their ``perf.json``
    sample_dirs: Annotated[list[str], Dep]
    lm_metrics: Annotated[list[str], Dep]
    icl_metrics: Annotated[list[str], Dep]
    icl_curves: Annotated[list[str], Dep]
    #: the EM experiments' tables (update_freq scan, duplicates); empty when the spec has none
    em_tables: Annotated[list[str], Dep] = Field(default_factory=list)
    #: the report folder (RESULTS.md, figures), kept in git
    out_dir: Annotated[str, Committed]


class EmExperimentsSpec(StrictModel):
    """The seed's EM experiments on one grid point's word-level corpus (lab notes 004).

    * ``update_freqs``: the same fit with an M-step every N mini-batches (null: once per epoch);
      final train / validation log-likelihood against the number of M-steps taken: do the
      frequent-update runs stop at a different (lower) optimum?
    * ``duplicates``: r = 1 (unique) vs r > 1 (the first 1/r of the training sequences, each
      repeated r times) at equal token count: is a repeated sequence worth as much as a new one?

    The hidden x length heatmap of final-token CE needs no stage of its own: it is the grid's
    ``eval`` metrics (``grid.hidden`` x ``grid.seq_len``), drawn by the report.
    """

    point: GridPoint
    update_freqs: list[int | None] = Field(default_factory=lambda: [1, 4, None], min_length=1)
    duplicates: list[int] = Field(default_factory=lambda: [1, 4], min_length=1)
    #: the fit settings (``update_freq`` is overridden by the scan; the duplicates runs keep it)
    fit: EmSpec

    @model_validator(mode="after")
    def _values(self) -> "EmExperimentsSpec":
        if any(r < 1 for r in self.duplicates) or 1 not in self.duplicates:
            raise ValueError(f"duplicates must be >= 1 and include 1 (the unique baseline), got {self.duplicates}")
        return self


class EmExperimentConfig(StrictModel):
    kind: Literal["update_freq", "duplicates"]
    point: GridPoint
    experiments: EmExperimentsSpec
    seed: int
    corpus_dir: Annotated[str, Dep]
    metrics: Annotated[str, Metric]
    table: Annotated[str, Plot(x="updates", y="val_loglik_per_token")]
