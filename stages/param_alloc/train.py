"""Train one configuration (a phase-1 grid point, a phase-2 winner, or the knob-set baseline).

A stage is one *point*, not one run: it optionally picks the point's own learning rate with a
short sweep (``lr_sweep``: each candidate trained for ``lr_sweep.tokens`` on the first seed, the
lowest final dev loss wins), then trains every seed in ``seeds`` at that rate with early
stopping, and records the mean and the t interval over seeds. Why per-point LR: one LR for every
shape ranks shapes by how well that LR happens to suit them, not by their allocation.

The shape is solved at run time from the tokenizer's actual vocabulary; the built model's
``sum(p.numel())`` must equal the solver's count and sit within tolerance of the target, or the
stage fails. Each run resumes from its own checkpoint folder after a kill.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from harness.io import atomic_path, write_csv, write_json
from harness.runtime import checkpoint_dir
from harness.trainer import TrainSettings, clear_checkpoint, train_lm
from stages.param_alloc.common import gated_model
from stages.param_alloc.configs import Allocation, TrainStageConfig
from stages.param_alloc.model import save_model
from stages.param_alloc.stats import mean_ci

#: a run still improving by more than this (relative dev perplexity) over its last quarter has not
#: reached a plateau
PLATEAU_GAIN = 0.01
#: the file in a training stage's folder listing its per-seed model folders
RUNS_FILE = "runs.json"


def chosen(cfg: TrainStageConfig) -> tuple[Allocation, float, str]:
    """(allocation, lr, why): fixed by the config, or the ``rank``-th winner of the ranking file."""
    if cfg.allocation is not None:
        return cfg.allocation, cfg.train.lr, "configured"
    ranking = json.loads(Path(cfg.ranking_file).read_text())
    entry = ranking["top"][cfg.rank - 1]
    return (Allocation(embed_share=entry["embed_share"], glu=entry["glu"]), float(entry.get("lr", cfg.train.lr)),
            entry.get("why", f"rank {cfg.rank}"))


def chosen_allocation(cfg: TrainStageConfig) -> Allocation:
    return chosen(cfg)[0]


def late_gain(history: list[dict[str, float]]) -> float | None:
    """Relative dev-perplexity gain over the last quarter of a run's evaluations (None: < 4 evals).

    Small (< ``PLATEAU_GAIN``) means the run had flattened out: its ranking is not a race of
    early training speed.
    """
    ppl = [math.exp(min(h["dev_loss"], 50)) for h in history if "dev_loss" in h]
    if len(ppl) < 4:
        return None
    at = ppl[int(len(ppl) * 0.75) - 1]
    return (at - min(ppl)) / min(ppl)


def select_lr(sweep: dict[float, float]) -> float:
    """The candidate with the lowest dev loss; ties go to the smaller LR (the safer one)."""
    return min(sweep, key=lambda lr: (sweep[lr], lr))


def _one_run(cfg: TrainStageConfig, allocation: Allocation, settings: TrainSettings, early_stop, ckpt: Path):
    model, tokens, shape, solved, counts = gated_model(allocation, cfg.model, cfg.tokens_dir, cfg.gate_report,
                                                       settings.seed, settings.threads)
    result = train_lm(model, tokens["train"], tokens["dev"], settings, ckpt_dir=ckpt, early_stop=early_stop)
    return model, shape, solved, counts, result


def run(cfg: TrainStageConfig) -> None:
    allocation, lr, why = chosen(cfg)
    seeds = cfg.seeds or [cfg.train.seed]
    root_ckpt = checkpoint_dir(cfg)
    sweep: dict[float, float] = {}
    if cfg.lr_sweep:
        steps = max(1, cfg.lr_sweep.tokens // (cfg.train.batch_size * cfg.train.seq_len))
        for i, candidate in enumerate(cfg.lr_sweep.lrs):
            settings = cfg.train.model_copy(update={"lr": candidate, "seed": seeds[0], "steps": steps,
                                                    "warmup_steps": min(cfg.train.warmup_steps, steps)})
            try:
                *_, result = _one_run(cfg, allocation, settings, None, root_ckpt / f"sweep{i}")
                sweep[candidate] = result.dev_loss
            except FloatingPointError as exc:  # diverged: the worst possible outcome, not a crash
                print(f"lr {candidate:g} diverged: {exc}", flush=True)
                sweep[candidate] = math.inf
            print(f"sweep lr {candidate:g}: dev loss {sweep[candidate]:.4f}", flush=True)
        lr = select_lr(sweep)
        why += f"; lr {lr:g} from the sweep {', '.join(f'{k:g}' for k in cfg.lr_sweep.lrs)}"
    runs, curves = [], []
    with atomic_path(cfg.out_dir) as tmp:
        tmp.mkdir()
        for seed in seeds:
            settings = cfg.train.model_copy(update={"lr": lr, "seed": seed})
            model, shape, solved, counts, result = _one_run(cfg, allocation, settings, cfg.early_stop,
                                                            root_ckpt / f"seed{seed}")
            save_model(model, shape, tmp / f"seed{seed}")
            gain = late_gain(result.history)
            runs.append({"seed": seed, **result.metrics(), "late_gain": gain, "stop_reason": result.stop_reason})
            curves += [{"seed": seed, **h} for h in result.history if "dev_loss" in h] or \
                [{"seed": seed, **result.history[-1]}]
            print(f"{allocation.tag} seed {seed}: d_model={shape.d_model} layers={shape.n_layers} d_ff={shape.d_ff} "
                  f"params={counts['actual_params']}; lr {lr:g}; best dev ppl {result.best_dev_ppl:.3f} after "
                  f"{result.tokens_seen} tokens ({result.tokens_per_s:.0f} tokens/s)"
                  f"{' [early stop: ' + result.stop_reason + ']' if result.stopped_early else ''}", flush=True)
        (tmp / RUNS_FILE).write_text(json.dumps({"seeds": seeds, "dirs": [f"seed{s}" for s in seeds]}) + "\n")
    best = mean_ci([r["best_dev_ppl"] for r in runs])
    gains = [r["late_gain"] for r in runs if r["late_gain"] is not None]
    metrics = {
        "embed_share": allocation.embed_share, "glu": allocation.glu, "chosen_because": why, **counts,
        "d_model": shape.d_model, "n_layers": shape.n_layers, "d_ff": shape.d_ff,
        "embed_share_actual": solved["embed_share_actual"], "glu_actual": solved["glu_actual"],
        "lr": lr, "lr_sweep": {f"{k:g}": v for k, v in sweep.items()} if sweep else None,
        "lr_at_sweep_edge": bool(sweep) and lr in (min(sweep), max(sweep)),
        "seeds": len(runs),
        "best_dev_ppl": best["mean"], "best_dev_ppl_std": best["std"], "best_dev_ppl_ci95": best["ci_half"],
        "best_dev_ppl_per_seed": [r["best_dev_ppl"] for r in runs],
        "dev_ppl": mean_ci([r["dev_ppl"] for r in runs])["mean"],
        "stopped_early": sum(bool(r["stopped_early"]) for r in runs),
        "plateaued": sum(bool(r["stopped_early"]) or (r["late_gain"] is not None and r["late_gain"] < PLATEAU_GAIN)
                         for r in runs),
        "late_gain_max": max(gains) if gains else None,
        "tokens_seen": max(r["tokens_seen"] for r in runs),
        "runs": runs,
    }
    write_json(cfg.metrics, metrics)
    write_csv(cfg.curve, pd.DataFrame(curves))
    print(f"done: {allocation.tag} best dev ppl {best['mean']:.3f}"
          + (f" ± {best['ci_half']:.3f} (95% CI, {len(runs)} seeds)" if best["ci_half"] is not None else ""), flush=True)
    clear_checkpoint(root_ckpt)
