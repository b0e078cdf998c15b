"""Train one configuration (phase 1 with early stopping, phase 2, or the knob-set baseline).

The shape is solved at run time from the tokenizer's actual vocabulary; the built model's
``sum(p.numel())`` must equal the solver's count and sit within tolerance of the target, or the
stage fails. Training resumes from ``.harness/checkpoints/<stage>-<config hash>/`` after a kill.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from harness.io import atomic_path, write_csv, write_json
from harness.runtime import checkpoint_dir
from harness.trainer import clear_checkpoint, train_lm
from stages.param_alloc.common import gated_model
from stages.param_alloc.configs import Allocation, TrainStageConfig
from stages.param_alloc.model import save_model


def chosen_allocation(cfg: TrainStageConfig) -> Allocation:
    if cfg.allocation is not None:
        return cfg.allocation
    ranking = json.loads(Path(cfg.ranking_file).read_text())
    entry = ranking["top"][cfg.rank - 1]
    return Allocation(embed_share=entry["embed_share"], glu=entry["glu"])


def run(cfg: TrainStageConfig) -> None:
    allocation = chosen_allocation(cfg)
    model, tokens, shape, solved, counts = gated_model(allocation, cfg.model, cfg.tokens_dir, cfg.gate_report,
                                                       cfg.train.seed, cfg.train.threads)
    print(f"{allocation.tag}: d_model={shape.d_model} layers={shape.n_layers} d_ff={shape.d_ff} "
          f"params={counts['actual_params']} (target {cfg.model.target_params})", flush=True)
    ckpt = checkpoint_dir(cfg)
    result = train_lm(model, tokens["train"], tokens["dev"], cfg.train, ckpt_dir=ckpt, early_stop=cfg.early_stop)
    with atomic_path(cfg.out_dir) as tmp:
        save_model(model, shape, tmp)
    metrics = {"embed_share": allocation.embed_share, "glu": allocation.glu, **counts,
               "embed_share_actual": solved["embed_share_actual"], "glu_actual": solved["glu_actual"],
               **result.metrics()}
    write_json(cfg.metrics, metrics)
    write_csv(cfg.curve, pd.DataFrame([h for h in result.history if "dev_loss" in h] or result.history[-1:]))
    print(f"done: dev ppl {result.dev_ppl:.3f} after {result.tokens_seen} tokens "
          f"({result.tokens_per_s:.0f} tokens/s){' [early stop]' if result.stopped_early else ''}", flush=True)
    clear_checkpoint(ckpt)
