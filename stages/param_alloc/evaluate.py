"""Evaluate a trained model: test perplexity, downstream tasks (deterministic metrics) and
latency/throughput/memory (machine-dependent, written to perf.json)."""

from __future__ import annotations

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
from stages.param_alloc.tasks import score_task


def run(cfg: EvalStageConfig) -> None:
    from tokenizers import Tokenizer

    set_threads(cfg.threads)
    model, shape = load_model(cfg.model_dir)
    tokens, vocab = load_tokens(cfg.tokens_dir)
    tokenizer = Tokenizer.from_file(str(Path(cfg.tokens_dir) / "tokenizer.json"))
    eval_cfg = TrainSettings(steps=1, batch_size=cfg.batch_size, seq_len=cfg.seq_len, lr=1.0,
                           eval_batches=cfg.eval.eval_batches, device="cpu")
    test_loss = evaluate(model, tokens["test"], eval_cfg, "cpu")
    metrics: dict[str, float] = {"test_loss": test_loss, "test_ppl": math.exp(min(test_loss, 50)),
                                 "params": numel(model)}
    for task in cfg.eval.tasks:
        result = score_task(model, tokenizer, task, shape.max_seq_len)
        metrics[f"{task.name}_acc"] = result["accuracy"]
        metrics[f"{task.name}_majority"] = result["majority_baseline"]
        print(f"{task.name}: acc {result['accuracy']:.3f} (majority {result['majority_baseline']:.3f}, "
              f"n={result['n']})", flush=True)
    device = pick_device("auto")
    perf = profile(model.to(device), vocab, cfg.eval.latency_seq_lens, cfg.eval.latency_repeats,
                   cfg.eval.throughput_batch, cfg.eval.throughput_seq_len, device)
    with atomic_path(cfg.out_dir) as tmp:
        tmp.mkdir()
        write_json(tmp / PERF_FILE, {**perf, "shape": shape.model_dump()})
    write_json(cfg.metrics, metrics)
    print(f"test ppl {metrics['test_ppl']:.3f}; latency {perf}", flush=True)
