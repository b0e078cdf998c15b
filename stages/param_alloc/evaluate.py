"""Evaluate a trained point: test perplexity and downstream tasks per seed (deterministic metrics,
mean and t interval over seeds) and latency/throughput/memory of its shape (machine-dependent,
written to perf.json)."""

from __future__ import annotations

import json
import math
from pathlib import Path

from harness.io import atomic_path, write_json
from harness.runtime import device as pick_device
from harness.runtime import set_threads
from harness.trainer import TrainSettings, evaluate
from stages.param_alloc.common import load_tokens
from stages.param_alloc.configs import PERF_FILE, EvalStageConfig
from stages.param_alloc.model import load_model, numel
from stages.param_alloc.perf import profile
from stages.param_alloc.stats import mean_ci
from stages.param_alloc.tasks import score_task
from stages.param_alloc.train import RUNS_FILE


def model_dirs(model_dir: str | Path) -> list[tuple[int, Path]]:
    """(seed, folder) of every model a training stage saved."""
    runs = json.loads((Path(model_dir) / RUNS_FILE).read_text())
    return [(s, Path(model_dir) / d) for s, d in zip(runs["seeds"], runs["dirs"], strict=True)]


def run(cfg: EvalStageConfig) -> None:
    from tokenizers import Tokenizer

    set_threads(cfg.threads)
    tokens, vocab = load_tokens(cfg.tokens_dir)
    tokenizer = Tokenizer.from_file(str(Path(cfg.tokens_dir) / "tokenizer.json"))
    eval_cfg = TrainSettings(steps=1, batch_size=cfg.batch_size, seq_len=cfg.seq_len, lr=1.0,
                             eval_batches=cfg.eval.eval_batches, device="cpu")
    per_seed: dict[str, list[float]] = {}
    for seed, folder in model_dirs(cfg.model_dir):
        model, shape = load_model(folder)
        test_loss = evaluate(model, tokens["test"], eval_cfg, "cpu")
        per_seed.setdefault("test_loss", []).append(test_loss)
        per_seed.setdefault("test_ppl", []).append(math.exp(min(test_loss, 50)))
        for task in cfg.eval.tasks:
            result = score_task(model, tokenizer, task, shape.max_seq_len)
            per_seed.setdefault(f"{task.name}_acc", []).append(result["accuracy"])
            per_seed[f"{task.name}_majority"] = [result["majority_baseline"]]
            per_seed[f"{task.name}_n"] = [result["n"]]
            print(f"seed {seed} {task.name}: acc {result['accuracy']:.3f} (majority "
                  f"{result['majority_baseline']:.3f}, n={result['n']})", flush=True)
    metrics: dict[str, object] = {"params": numel(model), "seeds": len(per_seed["test_ppl"])}
    for key, values in per_seed.items():
        stats = mean_ci(values)
        metrics[key] = stats["mean"]
        if not key.endswith(("_majority", "_n")):
            metrics[f"{key}_ci95"] = stats["ci_half"]
            metrics[f"{key}_per_seed"] = values
    device = pick_device("auto")
    perf = profile(model.to(device), vocab, cfg.eval.latency_seq_lens, cfg.eval.latency_repeats,
                   cfg.eval.throughput_batch, cfg.eval.throughput_seq_len, device,
                   memory_batch=cfg.batch_size, memory_seq_len=cfg.seq_len)
    with atomic_path(cfg.out_dir) as tmp:
        tmp.mkdir()
        write_json(tmp / PERF_FILE, {**perf, "shape": shape.model_dump()})
    write_json(cfg.metrics, metrics)
    print(f"test ppl {metrics['test_ppl']:.3f}; latency {perf}", flush=True)
