"""The width-sweep stage: deterministic, resumable, and its runs table feeds the fits.

References: a second fresh run of the same config (identical metrics bytes); an uninterrupted
run (a stage killed after its first training run and rerun must end with the same outputs);
the table gate and Approach 1 fit as downstream consumers of ``runs.csv``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from stages.scaling.data import corpus
from stages.scaling import sweep
from stages.scaling.configs import (
    BootstrapSpec, BudgetSpec, CorpusConfig, EnvelopeSpec, FitConfig, Selection, SweepSource, TableConfig,
)
from stages.scaling.lmconfigs import BatchingSpec, SweepConfig, SweepTrain
from stages.scaling.corpus import run as corpus_stage
from stages.scaling.fit import run as fit_stage
from stages.scaling.models import TransformerSpec
from stages.scaling.table import run as table_stage


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("corpus")
    (root / "train.txt").write_text(corpus(1500, seed=1))
    (root / "dev.txt").write_text(corpus(300, seed=2))
    corpus_stage(CorpusConfig(train=str(root / "train.txt"), dev=str(root / "dev.txt"), out_dir=str(root / "ids")))
    return str(root / "ids")


def config(corpus_dir: str, out: Path, budget_mb: float = 64.0) -> SweepConfig:
    return SweepConfig(name="tiny", parametrization="mup", model=TransformerSpec(depth=1, max_seq_len=16, base_width=8),
                       widths=[8, 16], lrs=[0.01, 0.05],
                       train=SweepTrain(steps=6, batch_size=4, seq_len=16, weight_decay=0.0, eval_every=2,
                                        eval_batches=1, device="cpu", threads=1),
                       batching=BatchingSpec(memory_budget_mb=budget_mb), corpus_dir=corpus_dir,
                       out_dir=str(out / "sweep"), metrics=str(out / "metrics.json"))


def test_sweep_is_deterministic_and_resumes_after_a_kill(tmp_path, corpus_dir, monkeypatch):
    monkeypatch.setenv("HARNESS_CHECKPOINT_ROOT", str(tmp_path / "ckpt"))
    clean = config(corpus_dir, tmp_path / "clean")
    sweep.run(clean)
    again = config(corpus_dir, tmp_path / "again")
    sweep.run(again)
    assert Path(clean.metrics).read_bytes() == Path(again.metrics).read_bytes()

    killed = config(corpus_dir, tmp_path / "killed")
    real, calls = sweep._train_one, []

    def dies_after_one(*args, **kwargs):
        if calls:
            raise KeyboardInterrupt("simulated kill")
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(sweep, "_train_one", dies_after_one)
    with pytest.raises(KeyboardInterrupt):
        sweep.run(killed)
    monkeypatch.setattr(sweep, "_train_one", real)
    resumed = []
    monkeypatch.setattr(sweep, "_train_one", lambda *a, **k: resumed.append(1) or real(*a, **k))
    sweep.run(killed)
    assert len(resumed) == 3, "the finished run must not be trained again"
    assert Path(killed.metrics).read_bytes() == Path(clean.metrics).read_bytes()
    for name in ("runs.csv", "results.csv"):
        assert (Path(killed.out_dir) / name).read_bytes() == (Path(clean.out_dir) / name).read_bytes()


def test_sweep_records_micro_batching_and_feeds_the_fits(tmp_path, corpus_dir, monkeypatch):
    monkeypatch.setenv("HARNESS_CHECKPOINT_ROOT", str(tmp_path / "ckpt"))
    cfg = config(corpus_dir, tmp_path, budget_mb=0.35)  # measured: w8 fits 4 (0.30 MiB), w16 only 2 (0.31)
    sweep.run(cfg)
    metrics = json.loads(Path(cfg.metrics).read_text())
    w8, w16 = metrics["widths"]["8"], metrics["widths"]["16"]
    assert w16["micro_batch"] * w16["grad_accum"] == 4 and w16["grad_accum"] > 1
    assert w8["micro_batch"] >= w16["micro_batch"]
    assert w16["tokens_per_step"] == 4 * 16
    runs = pd.read_csv(Path(cfg.out_dir) / "runs.csv")
    # D is the tokens the trainer consumed: eval at steps 2, 4 and the end (6) of 4 x 16 tokens
    assert sorted(runs["D"].unique()) == [128, 256, 384]
    assert (runs["N_no_emb"] < runs["N"]).all()

    table = TableConfig(name="own", source=SweepSource(sweep="tiny"), input=str(Path(cfg.out_dir) / "runs.csv"),
                        select=Selection(best_over=["lr"]), out=str(tmp_path / "own.parquet"),
                        reference_out=str(tmp_path / "ref.json"), metrics=str(tmp_path / "table.json"))
    table_stage(table)
    gated = pd.read_parquet(table.out)
    assert gated.groupby("width")["lr"].nunique().eq(1).all(), "best_over lr keeps one LR per width"
    fit = FitConfig(table=table.out, table_name="own", approach_name="a1", approach=EnvelopeSpec(),
                    parameters="non_embedding", budgets=BudgetSpec(min_runs=2), bootstrap=BootstrapSpec(samples=5),
                    metrics=str(tmp_path / "fit.json"), details=str(tmp_path / "fit-details.json"))
    fit_stage(fit)
    result = json.loads(Path(fit.metrics).read_text())
    assert result["status"] in ("ok", "not determined") and result["parameters"] == "non_embedding"
    assert np.isfinite(result["points"])
