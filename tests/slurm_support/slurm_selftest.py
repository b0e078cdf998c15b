"""A tiny study for testing and benchmarking the SLURM runners; copied into throwaway projects.

It lives in tests/ and is registered only inside those projects (``studies/slurm_selftest/study.py`` there, found through ``$HARNESS_STUDY_PATH``),
so the real project never plans it. Shape, all driven by the spec:

    source ──► branch-<x> (one per ``branches`` entry) ──► join        a diamond
    train-<i> (``train.variants`` independent tiny LMs, shared trainer, checkpoint/resume)
    ddp (when ``ddp.enabled``): torchrun + gloo data-parallel linear regression
"""

from __future__ import annotations

import json
import time
from typing import Annotated
from pathlib import Path

from pydantic import Field

from harness.io import write_json
from harness.spec import StudySpec
from harness.study import Dep, Metric, Out, PlanContext, StageDef, StrictModel, Study

NAME = "slurm_selftest"


class TrainSection(StrictModel):
    variants: int = Field(0, ge=0, le=64)
    steps: int = Field(60, ge=1)
    d_model: int = Field(16, ge=1)
    vocab: int = Field(32, ge=4)
    seq_len: int = Field(16, ge=2)
    batch_size: int = Field(8, ge=1)
    #: seconds slept per forward pass, to make a run long enough to interrupt (tests only)
    delay_s: float = Field(0.0, ge=0)
    checkpoint_every: int = Field(5, ge=1)


class DdpSection(StrictModel):
    enabled: bool = False
    n: int = Field(64, ge=2)
    steps: int = Field(20, ge=1)
    lr: float = Field(0.1, gt=0)


class ChainsSection(StrictModel):
    """``count`` parallel chains of ``length`` links below the source (link k waits for link k-1)."""

    count: int = Field(0, ge=0, le=1000)
    length: int = Field(0, ge=0, le=100)
    work_s: float = Field(0.0, ge=0)


class SelftestSpec(StudySpec):
    seed: int = 0
    #: free text that must reach the stage byte for byte (shell metacharacters included)
    message: str = ""
    branches: list[str] = Field(default_factory=lambda: ["b", "c"], min_length=1)
    #: seconds each branch works (sleeps), so that parallel branches overlap measurably
    work_s: float = Field(0.0, ge=0)
    #: a branch that fails after writing its output ("none": nobody fails)
    fail: str = "none"
    train: TrainSection = Field(default_factory=TrainSection)
    ddp: DdpSection = Field(default_factory=DdpSection)
    chains: ChainsSection = Field(default_factory=ChainsSection)


class SourceConfig(StrictModel):
    message: str
    seed: int
    out: Annotated[str, Out]


class BranchConfig(StrictModel):
    branch: str
    source: Annotated[str, Dep]
    work_s: float
    fail: bool
    out: Annotated[str, Out]


class JoinConfig(StrictModel):
    inputs: Annotated[list[str], Dep]
    out: Annotated[str, Metric]


class LinkConfig(StrictModel):
    previous: Annotated[str, Dep]
    work_s: float
    out: Annotated[str, Out]


class TrainStageConfig(StrictModel):
    seed: int
    train: TrainSection
    out: Annotated[str, Metric]


class DdpConfig(StrictModel):
    seed: int
    ddp: DdpSection
    out: Annotated[str, Metric]


def plan(spec: SelftestSpec, ctx: PlanContext) -> list[StageDef]:
    WORK, METRICS = ctx.work, ctx.metrics  # noqa: N806 - profile-scoped output folders
    func = f"{NAME}.study"
    source = f"{WORK}/source.json"
    stages = [StageDef(name=f"{NAME}-source", func=f"{func}:run_source", kind="prep",
                       config=SourceConfig(message=spec.message, seed=spec.seed, out=source),
                       reads=["message", "seed"], resources=spec.resources_for("prep"))]
    outs = []
    for b in spec.branches:
        out = f"{WORK}/branch-{b}.json"
        outs.append(out)
        stages.append(StageDef(name=f"{NAME}-branch-{b}", func=f"{func}:run_branch", kind="branch",
                               config=BranchConfig(branch=b, source=source, work_s=spec.work_s, fail=spec.fail == b,
                                                   out=out),
                               reads=["work_s", "fail"],
                               resources=spec.resources_for("branch")))
    stages.append(StageDef(name=f"{NAME}-join", func=f"{NAME}.joiner:run_join", kind="join",
                           config=JoinConfig(inputs=outs, out=f"{METRICS}/join.json"), resources=spec.resources_for("join")))
    for c in range(spec.chains.count):
        previous = source
        for k in range(spec.chains.length):
            out = f"{WORK}/chain-{c}-{k}.json"
            stages.append(StageDef(name=f"{NAME}-chain-{c}-{k}", func=f"{func}:run_link", kind="link",
                                   config=LinkConfig(previous=previous, work_s=spec.chains.work_s, out=out),
                                   reads=["chains"], resources=spec.resources_for("link")))
            previous = out
    for i in range(spec.train.variants):
        out = f"{METRICS}/train-{i}.json"
        stages.append(StageDef(name=f"{NAME}-train-{i}", func=f"{func}:run_train", kind="train",
                               config=TrainStageConfig(seed=spec.seed + i, train=spec.train, out=out),
                               reads=["seed", "train"], resources=spec.resources_for("train")))
    if spec.ddp.enabled:
        out = f"{METRICS}/ddp.json"
        stages.append(StageDef(name=f"{NAME}-ddp", func=f"{func}:run_ddp", kind="ddp",
                               config=DdpConfig(seed=spec.seed, ddp=spec.ddp, out=out),
                               reads=["seed", "ddp"], resources=spec.resources_for("ddp")))
    return stages


def run_source(cfg: SourceConfig) -> None:
    write_json(cfg.out, {"message": cfg.message, "seed": cfg.seed})


def run_branch(cfg: BranchConfig) -> None:
    time.sleep(cfg.work_s)
    source = json.loads(Path(cfg.source).read_text())
    write_json(cfg.out, {"branch": cfg.branch, "message": source["message"]})
    if cfg.fail:  # after writing: the output exists but must never reach the DVC cache
        raise RuntimeError(f"branch {cfg.branch} fails on purpose")


def run_link(cfg: LinkConfig) -> None:
    time.sleep(cfg.work_s)
    previous = json.loads(Path(cfg.previous).read_text())
    write_json(cfg.out, {"depth": previous.get("depth", 0) + 1, "message": previous["message"]})


def _tokens(seed: int, vocab: int, n: int):
    """A seeded first-order Markov chain: learnable structure, no data files."""
    import numpy as np

    rng = np.random.default_rng(seed)
    table = rng.dirichlet(np.full(vocab, 0.2), size=vocab)
    ids = np.empty(n, dtype=np.int64)
    ids[0] = 0
    for i in range(1, n):
        ids[i] = rng.choice(vocab, p=table[ids[i - 1]])
    return ids


def run_train(cfg: TrainStageConfig) -> None:
    import torch

    from harness.runtime import checkpoint_dir, seed_everything
    from harness.trainer import TrainSettings, clear_checkpoint, train_lm

    t = cfg.train
    seed_everything(cfg.seed)

    class TinyLM(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = torch.nn.Embedding(t.vocab, t.d_model)
            self.mlp = torch.nn.Sequential(torch.nn.Linear(t.d_model, 4 * t.d_model), torch.nn.GELU(),
                                           torch.nn.Linear(4 * t.d_model, t.vocab))

        def forward(self, ids):
            if t.delay_s:
                time.sleep(t.delay_s)
            return self.mlp(self.emb(ids))

    ids = _tokens(cfg.seed, t.vocab, 4000)
    train_cfg = TrainSettings(steps=t.steps, batch_size=t.batch_size, seq_len=t.seq_len, lr=3e-3, warmup_steps=5,
                            seed=cfg.seed, eval_every=0, eval_batches=2, checkpoint_every=t.checkpoint_every,
                            device="cpu", precision="fp32")
    ckpt = checkpoint_dir(cfg)
    result = train_lm(TinyLM(), ids[:3500], ids[3500:], train_cfg, ckpt_dir=ckpt,
                      log=lambda m: print(m, flush=True))
    print(f"resumed_from_step={result.resumed_from_step}", flush=True)
    write_json(cfg.out, {"steps": result.steps, "train_loss": result.train_loss, "dev_loss": result.dev_loss})
    clear_checkpoint(ckpt)


def run_ddp(cfg: DdpConfig) -> None:
    """Data-parallel least squares: each rank holds half the rows, DDP averages the gradients."""
    import torch

    from harness.slurm.distributed import init_from_env, shutdown

    rank, world, backend = init_from_env()
    d = cfg.ddp
    g = torch.Generator().manual_seed(cfg.seed)
    x = torch.randn(d.n, 3, generator=g, dtype=torch.float64)
    y = x @ torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64) + 0.1 * torch.randn(d.n, generator=g, dtype=torch.float64)
    rows = slice(rank * d.n // world, (rank + 1) * d.n // world)
    model = torch.nn.Linear(3, 1, bias=False).double()
    torch.nn.init.zeros_(model.weight)
    net = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    opt = torch.optim.SGD(net.parameters(), lr=d.lr)
    for _ in range(d.steps):
        opt.zero_grad()
        loss = ((net(x[rows]).squeeze(-1) - y[rows]) ** 2).mean()
        loss.backward()
        opt.step()
    if rank == 0:
        write_json(cfg.out, {"world": world, "backend": backend, "weight": model.weight.detach()[0].tolist()})
    shutdown()


STUDY = Study(name=NAME, spec_model=SelftestSpec, plan=plan)
