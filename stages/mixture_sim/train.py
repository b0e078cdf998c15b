"""Stage `train`: one small LM on one data mixture -> one row of the table per eval step.

The shared trainer runs the whole schedule once; the rows are recorded from inside it through
its per-step ``stop_requested`` hook, which sees the weights after every optimizer step (the
trainer has no on-step callback; see docs/mixture_sim.md). Rows measured so far live in the
checkpoint folder next to the trainer's checkpoint, so a killed run resumes and ends with the
same table as an uninterrupted one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from harness import runtime
from harness.io import write_text
from stages.mixture_sim.configs import ChoiceAccuracy, EvalLoss, RunStageConfig, TrainLoss
from stages.mixture_sim.lm import build_model, mixed_stream, n_params, read_tasks, text_ids
from stages.mixture_sim.measure import choice_accuracy, window_loss
from stages.mixture_sim.tableio import write_parquet

ROWS_FILE = "rows.json"


def trainer_step(ckpt_dir: Path) -> int:
    """The step the shared trainer will resume from (0 without a checkpoint)."""
    import torch

    from harness.trainer import CKPT_NAME

    path = ckpt_dir / CKPT_NAME
    if not path.exists():
        return 0
    return int(torch.load(path, map_location="cpu", weights_only=False)["step"])


class Recorder:
    """Measures every target at the configured steps; called by the trainer after each step."""

    def __init__(self, cfg: RunStageConfig, model, train_ids, ckpt_dir: Path, start_step: int):
        self.cfg, self.model, self.ckpt_dir, self.step = cfg, model, ckpt_dir, start_step
        self.wanted = set(cfg.eval_steps)
        self.train_ids = train_ids
        self.eval_ids = {name: text_ids(m.corpus) for name, m in cfg.measures.items() if isinstance(m, EvalLoss)}
        self.tasks = {name: read_tasks(m.tasks, cfg.task_items) for name, m in cfg.measures.items()
                      if isinstance(m, ChoiceAccuracy)}
        path = ckpt_dir / ROWS_FILE
        self.rows: dict[int, dict[str, float]] = (
            {int(k): v for k, v in json.loads(path.read_text()).items()} if path.exists() else {})

    def measure(self) -> dict[str, float]:
        seq_len, n = self.cfg.train.seq_len, self.cfg.eval_tokens
        out: dict[str, float] = {}
        for name in self.cfg.table.target_names:  # the table's order, not the config file's (key-sorted)
            m = self.cfg.measures[name]
            if isinstance(m, TrainLoss):
                out[name] = window_loss(self.model, self.train_ids, seq_len, n)
            elif isinstance(m, EvalLoss):
                out[name] = window_loss(self.model, self.eval_ids[name], seq_len, n)
            else:
                out[name] = choice_accuracy(self.model, self.tasks[name], m.len_norm)
        return out

    def record(self) -> None:
        """Measure the current weights as step ``self.step`` and persist all rows so far."""
        self.rows[self.step] = self.measure()
        write_text(self.ckpt_dir / ROWS_FILE, json.dumps(self.rows, sort_keys=True))
        first = next(iter(self.rows[self.step].items()))
        print(f"[{self.cfg.run_id}] step {self.step}: {first[0]} {first[1]:.4f}", flush=True)

    def __call__(self) -> bool:
        self.step += 1
        if self.step in self.wanted:
            self.record()
        return runtime.stop_requested()


def table_rows(cfg: RunStageConfig, size: int, rows: dict[int, dict[str, float]]) -> list[dict[str, Any]]:
    schema = cfg.table
    fixed: dict[str, Any] = {schema.run: cfg.run_id, schema.size: float(size)}
    fixed.update({d: float(cfg.proportions[d]) for d in schema.domains})
    fixed.update({col: int(getattr(cfg.model, attr)) for col, attr in schema.shape.items()})
    return [{**fixed, schema.step: int(step), **{t: float(rows[step][t]) for t in schema.target_names}}
            for step in cfg.eval_steps]


def run(cfg: RunStageConfig, log: Callable[[str], None] = print) -> None:
    with runtime.torch_threads(cfg.train.threads):
        _run(cfg, log)


def _run(cfg: RunStageConfig, log: Callable[[str], None]) -> None:
    import pandas as pd

    from harness.trainer import clear_checkpoint, train_lm

    # seeding: build_model seeds the init and the trainer seeds itself; batches are a pure function of
    # (seed, step). runtime.seed_everything is not called: its use_deterministic_algorithms() imports
    # torch._inductor (1.5 s per stage, x every run of the grid) and CPU kernels here are deterministic
    # anyway (tests/test_mixture_generated.py checks bitwise-identical reruns).
    # domains in the table's order: the stream's layout must not depend on the order of a mapping
    # (a stage's config file stores mappings key-sorted)
    proportions = {d: cfg.proportions[d] for d in cfg.table.domains}
    train_ids = mixed_stream(cfg.train_texts, proportions, cfg.train_tokens)
    model = build_model(cfg.model, cfg.train.seed)
    size = n_params(model)
    ckpt = runtime.checkpoint_dir(cfg)
    recorder = Recorder(cfg, model, train_ids, ckpt, trainer_step(ckpt))
    mix = ", ".join(f"{d}={p:.3f}" for d, p in proportions.items())
    log(f"[{cfg.run_id}] {cfg.model.name}: {size} parameters; mixture {mix}; {len(train_ids)} training bytes")
    # a finished checkpoint only loads its weights: then a row lost to a kill is measured below
    train_lm(model, train_ids, None, cfg.train, ckpt_dir=ckpt, log=log, stop_requested=recorder)
    if recorder.step in recorder.wanted and recorder.step not in recorder.rows:
        recorder.record()
    missing = [s for s in cfg.eval_steps if s not in recorder.rows]
    if missing:
        raise RuntimeError(f"no measurement at steps {missing}; the checkpoint in {ckpt} is inconsistent")
    frame = pd.DataFrame(table_rows(cfg, size, recorder.rows))
    write_parquet(cfg.out, frame[[c for c in cfg.table.columns]])
    clear_checkpoint(ckpt)
