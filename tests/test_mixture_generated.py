"""The harness-generated table: domain corpora, LM runs on mixtures, resume, and its own gate."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness import runtime
from stages.mixture_sim import data as mixture_domains
from harness.trainer import TrainSettings
from stages.mixture_sim.configs import (
    ChoiceAccuracy, EvalLoss, LMShape, MixtureSampling, RunStageConfig, TableStageConfig, TrainLoss,
)
from stages.mixture_sim.lm import build_model, mixed_stream, read_tasks
from stages.mixture_sim.measure import choice_accuracy, choice_logprobs
from stages.mixture_sim.mixtures import sample_mixtures
from stages.mixture_sim.synthetic import seed_schema
from stages.mixture_sim.table import run as table_stage
from stages.mixture_sim.tableio import read_parquet
from stages.mixture_sim.train import run as train_stage

DOMAINS = dict(zip(seed_schema().domains, mixture_domains.TRAIN_DOMAINS))
EVAL = dict(zip(["CommonCrawl", "C4", "Wikipedia", "StackExchange", "Github", "ArXiv", "Book"],
                ["commoncrawl", "c4", "wikipedia", "stackexchange", "github", "arxiv", "book"]))


@pytest.fixture(scope="module")
def corpora(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("mixture_domains")
    mixture_domains.generate(root)
    return root


def _digest(root: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(root.rglob("*")):
        if f.is_file():
            h.update(str(f.relative_to(root)).encode() + f.read_bytes())
    return h.hexdigest()


def test_datagen_is_deterministic_and_domains_are_distinct(corpora, tmp_path):
    mixture_domains.generate(tmp_path)
    assert _digest(tmp_path) == _digest(corpora)
    hists = {}
    for d in mixture_domains.TRAIN_DOMAINS:
        data = np.frombuffer((corpora / d / "train.txt").read_bytes(), dtype=np.uint8)
        hists[d] = np.bincount(data, minlength=256) / len(data)
    for a in hists:  # total-variation distance between byte distributions
        for b in hists:
            if a < b:
                assert 0.5 * np.abs(hists[a] - hists[b]).sum() > 0.1, (a, b)
    for task in mixture_domains.TASKS:
        items = read_tasks(corpora / "tasks" / f"{task}.jsonl", 1000)
        assert len(items) == mixture_domains.N_TASK_ITEMS
        assert all(0 <= it["label"] < len(it["choices"]) for it in items)


def test_mixed_stream_follows_proportions(corpora):
    props = {"wikipedia": 0.5, "github": 0.3, "book": 0.2}
    ids = mixed_stream({d: str(corpora / d / "train.txt") for d in props}, props, 10_000)
    assert len(ids) == 10_000
    wiki = (corpora / "wikipedia" / "train.txt").read_bytes()[:5000]
    assert bytes(ids[:5000].astype(np.uint8)) == wiki


def test_sampled_mixtures_sum_to_one_and_depend_on_seed():
    names = list(DOMAINS)
    a = sample_mixtures(names, MixtureSampling(count=20, alpha=0.5, include_pure=True), seed=0)
    assert len(a) == 25
    for mix in a:
        assert list(mix) == names and abs(sum(mix.values()) - 1.0) < 1e-9 and min(mix.values()) >= 0
    assert a[-1] == {n: (1.0 if i == 4 else 0.0) for i, n in enumerate(names)}
    assert a == sample_mixtures(names, MixtureSampling(count=20, alpha=0.5, include_pure=True), seed=0)
    assert a[0] != sample_mixtures(names, MixtureSampling(count=20, alpha=0.5), seed=1)[0]


def test_batched_choice_scores_equal_one_sequence_at_a_time(corpora):
    """Right padding must not change a choice's log-likelihood: compare with unpadded forwards."""
    import torch

    model = build_model(LMShape(name="t", d_model=16, n_layers=1, n_heads=2, ffn=32), seed=0).eval()
    items = read_tasks(corpora / "tasks" / "hellaswag_style.jsonl", 3)
    batched = choice_logprobs(model, items)
    for item, row in zip(items, batched):
        for choice, (lp, n) in zip(item["choices"], row):
            ctx, tail = item["context"].encode(), choice.encode()
            ids = torch.tensor([list(ctx + tail)])
            with torch.no_grad():
                logp = torch.log_softmax(model(ids).logits.float(), -1)[0]
            ref = sum(float(logp[len(ctx) + i - 1, b]) for i, b in enumerate(tail))
            assert n == len(tail) and lp == pytest.approx(ref, abs=1e-4)
    assert 0.0 <= choice_accuracy(model, items, len_norm=True) <= 1.0


def _run_config(corpora: Path, tmp: Path, run_id: str, props: list[float], shape: LMShape) -> RunStageConfig:
    schema = seed_schema()
    measures = {"train/CrossEntropyLoss": TrainLoss()}
    measures.update({f"eval/RedPajama{k}/CrossEntropyLoss": EvalLoss(corpus=str(corpora / v / "eval.txt"))
                     for k, v in EVAL.items()})
    tasks = corpora / "tasks"
    measures["eval/downstream/hellaswag_len_norm"] = ChoiceAccuracy(tasks=str(tasks / "hellaswag_style.jsonl"),
                                                                     len_norm=True)
    measures["eval/downstream/piqa_len_norm"] = ChoiceAccuracy(tasks=str(tasks / "piqa_style.jsonl"), len_norm=True)
    measures["eval/downstream/arc_easy_acc"] = ChoiceAccuracy(tasks=str(tasks / "arc_easy_style.jsonl"))
    return RunStageConfig(
        run_id=run_id, proportions=dict(zip(schema.domains, props)),
        train_texts={d: str(corpora / v / "train.txt") for d, v in DOMAINS.items()}, model=shape,
        train=TrainSettings(steps=24, batch_size=8, seq_len=32, lr=1e-2, warmup_steps=4, checkpoint_every=5,
                            device="cpu", threads=1),
        train_tokens=20_000, eval_steps=[8, 16, 24], eval_tokens=512, task_items=8, measures=measures,
        table=schema, out=str(tmp / f"{run_id}.parquet"))


TINY = LMShape(name="tiny", d_model=16, n_layers=1, n_heads=2, ffn=32)
SMALL = LMShape(name="small", d_model=24, n_layers=1, n_heads=2, ffn=48)


def test_generated_runs_make_a_table_that_passes_its_own_gate(corpora, tmp_path, monkeypatch):
    monkeypatch.setenv(runtime.CHECKPOINT_ROOT_ENV, str(tmp_path / "ckpt"))
    runs = [("m0-tiny", [0.6, 0.1, 0.1, 0.1, 0.1], TINY), ("m1-tiny", [0.05, 0.05, 0.8, 0.05, 0.05], TINY),
            ("m0-small", [0.6, 0.1, 0.1, 0.1, 0.1], SMALL)]
    files = []
    for run_id, props, shape in runs:
        cfg = _run_config(corpora, tmp_path, run_id, props, shape)
        train_stage(cfg)
        files.append(cfg.out)
    rerun = _run_config(corpora, tmp_path / "again", "m0-tiny", runs[0][1], TINY)
    train_stage(rerun)  # a fresh second run gives bit-identical rows (seeds come from the config only)
    assert Path(rerun.out).read_bytes() == Path(files[0]).read_bytes()
    rows = read_parquet(files[0])
    assert list(rows["step"]) == [8, 16, 24] and (rows["model_size"] == rows["model_size"].iloc[0]).all()
    assert rows["train/CrossEntropyLoss"].iloc[-1] < rows["train/CrossEntropyLoss"].iloc[0] < np.log(256)
    # the code-heavy mixture is better on code than the prose-heavy one, and worse on Wikipedia
    m0, m1 = read_parquet(files[0]).iloc[-1], read_parquet(files[1]).iloc[-1]
    assert m1["eval/RedPajamaGithub/CrossEntropyLoss"] < m0["eval/RedPajamaGithub/CrossEntropyLoss"]
    assert m1["eval/RedPajamaWikipedia/CrossEntropyLoss"] > m0["eval/RedPajamaWikipedia/CrossEntropyLoss"]
    schema = seed_schema()
    cfg = TableStageConfig(table=schema, run_files=files, out=str(tmp_path / "table.parquet"),
                           gate_report=str(tmp_path / "gate.json"), metrics=str(tmp_path / "table.json"))
    table_stage(cfg)
    table = read_parquet(cfg.out)
    assert len(table) == 9 and list(table.columns) == schema.columns
    assert json.loads((tmp_path / "gate.json").read_text())["success"] is True
    assert not list((tmp_path / "ckpt").glob("*/*"))  # checkpoints are dropped after success


@pytest.mark.parametrize("how", ["signal", "crash"])
def test_interrupted_run_resumes_to_identical_rows(how, corpora, tmp_path, monkeypatch):
    """``signal``: SLURM-style stop (the trainer checkpoints at step 13, then raises).
    ``crash``: the process dies at step 13 without saving: the trainer resumes from its step-10
    checkpoint while rows up to step 8 are kept, so steps 11-13 are recomputed identically."""
    monkeypatch.setenv(runtime.CHECKPOINT_ROOT_ENV, str(tmp_path / "ckpt"))
    cfg = _run_config(corpora, tmp_path, "m0-tiny", [0.2] * 5, TINY)
    train_stage(cfg)
    reference = read_parquet(cfg.out)
    Path(cfg.out).unlink()

    calls = {"n": 0}

    def interrupt_at_step_13() -> bool:
        calls["n"] += 1
        if calls["n"] == 13 and how == "crash":
            raise KeyboardInterrupt("simulated kill")
        return calls["n"] == 13

    monkeypatch.setattr(runtime, "stop_requested", interrupt_at_step_13)
    with pytest.raises(InterruptedError if how == "signal" else KeyboardInterrupt):
        train_stage(cfg)
    assert not Path(cfg.out).exists()
    ckpt = next((tmp_path / "ckpt").iterdir())
    from stages.mixture_sim.train import trainer_step

    assert trainer_step(ckpt) == (13 if how == "signal" else 10)
    assert list(json.loads((ckpt / "rows.json").read_text())) == ["8"]
    monkeypatch.setattr(runtime, "stop_requested", lambda: False)
    train_stage(cfg)
    pd.testing.assert_frame_equal(read_parquet(cfg.out), reference)
