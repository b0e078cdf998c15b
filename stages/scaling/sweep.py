"""Stage ``scaling-sweep-<name>-<sp|mup>``: an LR sweep at every width, one parametrisation.

Each (width, lr) run trains the same architecture with the shared trainer from the same seed
(same initial draw per width, same batches), with the micro-batch chosen per width by
:mod:`stages.scaling.batching` and gradients accumulated to the target batch. A run whose loss
blows up is recorded as diverged (its loss is +inf), not dropped: "this LR diverges at this
width" is part of the result.

Outputs (``out_dir``): ``runs.csv``, every evaluated checkpoint of every run in the common
(run, N, N_no_emb, D, loss) layout (D = tokens the trainer actually consumed), ready for the
scaling-law fits, with the scheduled LR at that step (``lr_now``) and the cumulative compute
``flops`` = 6 N D; ``steps.csv``, every optimizer step of every run (tokens, 6ND FLOPs, LR,
training loss: seed 002's per-step log); ``results.csv``, one row per run (final dev loss);
``batching.json``. The metrics give the optimal LR per width and its shift across widths
(log2 units); an optimum on the edge of the LR grid is flagged (``on_edge``), since the true
optimum may lie beyond it.

Resume: finished runs are kept in the stage's checkpoint folder, and the run in progress
resumes from the trainer's own checkpoint, so a killed stage continues where it stopped.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from harness.io import atomic_path, write_json
from harness.runtime import checkpoint_dir, seed_everything, torch_threads
from stages.scaling.lmconfigs import SweepConfig


POINT_COLUMNS = ("run", "width", "lr", "N", "N_no_emb", "step", "D", "loss", "lr_now", "flops")
STEP_COLUMNS = ("run", "step", "tokens", "flops", "lr_now", "train_loss")


def run_id(cfg: SweepConfig, width: int, lr: float) -> str:
    return f"{cfg.name}-{cfg.parametrization}-w{width}-lr{lr:.3g}"


def optimal_lr(lrs: list[float], losses: list[float]) -> dict[str, float]:
    """The loss-minimising LR as the vertex of a weighted parabola in log2(lr); grid argmin beside it.

    Why a weighted fit over every trained LR and not a parabola through the grid argmin and its
    two neighbours: the argmin is a discrete choice, and when two LRs give near-equal losses a
    last-bit difference between two CPUs picks the other one (the smoke sweeps' picks moved on a
    second machine). Every trained point enters with weight ``exp(-(loss - min) / tau)``, ``tau``
    the median loss excess over the minimum, so the points near the minimum dominate and the
    vertex moves continuously with the losses. ``lr_refined`` is that vertex; ``lr`` the grid
    argmin (for tables; a discrete pick, not a drift-stable number). ``on_edge``: the vertex
    is not strictly inside the trained LR range (or the fit is not convex), so the optimum may lie
    beyond the grid and is not determined by this sweep; ``lr_refined`` is then the grid argmin.
    """
    order = np.argsort(lrs)
    x = np.log2(np.asarray(lrs, float)[order])
    y = np.asarray(losses, float)[order]
    ok = np.isfinite(y)
    if not ok.any():
        return {"lr": float("nan"), "lr_refined": float("nan"), "loss": float("nan"), "on_edge": True}
    i = int(np.nanargmin(np.where(ok, y, np.nan)))
    grid = {"lr": float(2 ** x[i]), "lr_refined": float(2 ** x[i]), "loss": float(y[i]), "on_edge": True}
    if ok.sum() < 3:
        return grid
    xs, ys = x[ok], y[ok]
    excess = ys - ys.min()
    tau = max(float(np.median(excess)), 1e-12)
    weights = np.exp(-excess / tau)
    p2, p1, _ = np.polyfit(xs, ys, 2, w=np.sqrt(weights))
    if not p2 > 0:
        return grid
    vertex = -p1 / (2 * p2)
    if not xs.min() < vertex < xs.max():
        return grid
    return {**grid, "lr_refined": float(2**vertex), "on_edge": False}


def lr_shift(widths: list[int], best: list[dict]) -> dict[str, float]:
    """How the optimal LR moves with width: log2 ratio end-to-end and the log-log slope."""
    w = np.log2(np.asarray(widths, float))
    lr = np.log2([b["lr_refined"] for b in best])
    ok = np.isfinite(lr)
    out = {"shift_log2": float("nan"), "slope_log2_per_doubling": float("nan")}
    if ok.sum() >= 2:
        out["shift_log2"] = float(lr[ok][-1] - lr[ok][0])
        out["slope_log2_per_doubling"] = float(np.polyfit(w[ok], lr[ok], 1)[0])
    return out


def _train_one(cfg: SweepConfig, width: int, lr: float, micro: int, train_ids, dev_ids, ckpt: Path) -> tuple[dict, list]:
    from harness.trainer import clear_checkpoint, train_lm
    from stages.scaling.models import build_model, optimizer_factory, parameter_counts

    t = cfg.train
    tcfg = t.for_run(lr, micro)
    model = build_model(cfg.model, width, cfg.parametrization, seed=t.seed)
    counts = parameter_counts(model)
    name = run_id(cfg, width, lr)
    row = {"run": name, "width": width, "lr": lr, **counts, "micro_batch": micro,
           "grad_accum": tcfg.grad_accum, "tokens_per_step": t.batch_size * t.seq_len}
    run_ckpt = ckpt / name
    try:
        result = train_lm(model, train_ids, dev_ids, tcfg, ckpt_dir=run_ckpt,
                          optimizer_factory=optimizer_factory(cfg.parametrization),
                          log=lambda msg: print(f"[{name}] {msg}", flush=True))
    except FloatingPointError as exc:
        print(f"[{name}] diverged: {exc}", flush=True)
        clear_checkpoint(run_ckpt)
        return row | {"dev_loss": math.inf, "train_loss": math.inf, "tokens": 0, "diverged": True}, [], []
    clear_checkpoint(run_ckpt)
    lr_at = {h["step"]: h["lr"] for h in result.history}
    curve = [(h["step"], h["tokens"], h["dev_loss"]) for h in result.history if "dev_loss" in h]
    curve.append((result.steps, result.tokens_seen, result.dev_loss))
    points = [{"run": name, "width": width, "lr": lr, "N": counts["N"], "N_no_emb": counts["N_no_emb"],
               "step": s, "D": tok, "loss": loss, "lr_now": lr_at.get(s, math.nan), "flops": 6.0 * counts["N"] * tok}
              for s, tok, loss in curve if math.isfinite(loss)]
    steps = [{"run": name, "step": h["step"], "tokens": h["tokens"], "flops": 6.0 * counts["N"] * h["tokens"],
              "lr_now": h["lr"], "train_loss": h["train_loss"]} for h in result.history]
    diverged = not math.isfinite(result.dev_loss)
    return row | {"dev_loss": result.dev_loss if not diverged else math.inf, "train_loss": result.train_loss,
                  "tokens": result.tokens_seen, "diverged": diverged}, points, steps


def batch_plans(cfg: SweepConfig) -> dict[int, dict]:
    import torch

    from harness.runtime import device as pick_device
    from stages.scaling.batching import plan_for_model
    from stages.scaling.models import build_model

    device = pick_device(cfg.train.device)
    plans = {}
    for width in cfg.widths:
        plan = plan_for_model(lambda: build_model(cfg.model, width, cfg.parametrization, seed=cfg.train.seed),
                              lambda m: torch.optim.AdamW(m.parameters(), lr=1e-3), cfg.train.batch_size,
                              cfg.train.seq_len, cfg.model.vocab_size, cfg.batching.memory_budget_mb, device)
        plans[width] = plan.record(cfg.train.seq_len)
        print(f"width {width}: micro-batch {plan.micro_batch} x {plan.grad_accum} accumulation steps "
              f"(budget {cfg.batching.memory_budget_mb} MiB)", flush=True)
    return plans


def run(cfg: SweepConfig) -> None:
    seed_everything(cfg.train.seed)
    with torch_threads(cfg.train.threads):  # the batch probes too, not only the runs
        _run(cfg)


def _run(cfg: SweepConfig) -> None:
    from stages.scaling.corpus import load_split

    train_ids, dev_ids = load_split(cfg.corpus_dir, "train"), load_split(cfg.corpus_dir, "dev")
    ckpt = checkpoint_dir(cfg)
    state_file = ckpt / "done.json"
    state = (json.loads(state_file.read_text()) if state_file.exists()
             else {"rows": [], "points": [], "steps": [], "plans": None})
    if state["plans"] is None:
        state["plans"] = {str(w): p for w, p in batch_plans(cfg).items()}
    done = {r["run"] for r in state["rows"]}
    for width in cfg.widths:
        micro = state["plans"][str(width)]["micro_batch"]
        for lr in cfg.lrs_at(width):
            if run_id(cfg, width, lr) in done:
                continue
            row, points, steps = _train_one(cfg, width, lr, micro, train_ids, dev_ids, ckpt)
            state["rows"].append(row)
            state["points"].extend(points)
            state["steps"].extend(steps)
            tmp = state_file.with_suffix(".tmp")
            tmp.write_text(json.dumps(state))
            tmp.replace(state_file)
            print(f"width {width} lr {lr:.3g}: dev loss {row['dev_loss']:.4f}", flush=True)
    write_outputs(cfg, state)
    import shutil

    shutil.rmtree(ckpt, ignore_errors=True)


def summarize_sweep(cfg: SweepConfig, results: pd.DataFrame, plans: dict) -> dict:
    per_width, best = {}, []
    for width in cfg.widths:
        sub = results[results["width"] == width].sort_values("lr")
        opt = optimal_lr(sub["lr"].tolist(), sub["dev_loss"].tolist())
        best.append(opt)
        first = sub.iloc[0]
        # the grid argmin stays in results.csv: between near-equal LRs it is a pick another CPU may flip
        stable = {k: v for k, v in opt.items() if k != "lr"}
        per_width[str(width)] = {**stable, "N": int(first["N"]), "N_no_emb": int(first["N_no_emb"]),
                                 "diverged": int(sub["diverged"].sum()),
                                 **{k: plans[str(width)][k] for k in ("micro_batch", "grad_accum", "tokens_per_step")}}
    return {"sweep": cfg.name, "parametrization": cfg.parametrization, "widths": per_width,
            "tokens_per_run": int(cfg.train.steps * cfg.train.batch_size * cfg.train.seq_len),
            **lr_shift(cfg.widths, best)}


def write_outputs(cfg: SweepConfig, state: dict) -> None:
    # only the runs of this config's grid (a resumed state may hold runs of a wider grid)
    wanted = {run_id(cfg, w, lr) for w in cfg.widths for lr in cfg.lrs_at(w)}
    state = {**state, "rows": [r for r in state["rows"] if r["run"] in wanted],
             "points": [p for p in state["points"] if p["run"] in wanted],
             "steps": [s for s in state["steps"] if s["run"] in wanted]}
    results = pd.DataFrame(state["rows"]).sort_values(["width", "lr"]).reset_index(drop=True)
    points = pd.DataFrame(state["points"], columns=[*POINT_COLUMNS])
    points = points.sort_values(["width", "lr", "step"]).reset_index(drop=True)
    steps = pd.DataFrame(state["steps"], columns=[*STEP_COLUMNS])
    order = results[["run", "width", "lr"]]
    steps = steps.merge(order, on="run").sort_values(["width", "lr", "step"])[[*STEP_COLUMNS]].reset_index(drop=True)
    with atomic_path(cfg.out_dir) as tmp:
        tmp.mkdir()
        results.to_csv(tmp / "results.csv", index=False, float_format="%.10g", lineterminator="\n")
        points.to_csv(tmp / "runs.csv", index=False, float_format="%.10g", lineterminator="\n")
        steps.to_csv(tmp / "steps.csv", index=False, float_format="%.8g", lineterminator="\n")
        (tmp / "batching.json").write_text(json.dumps(state["plans"], indent=2, sort_keys=True) + "\n")
    metrics = summarize_sweep(cfg, results, state["plans"])
    write_json(cfg.metrics, metrics)
    print(f"sweep {cfg.name}/{cfg.parametrization}: optimal lr per width "
          + ", ".join(f"{w}: {v['lr_refined']:.3g}" for w, v in metrics["widths"].items())
          + f"; shift {metrics['shift_log2']:+.2f} log2", flush=True)
