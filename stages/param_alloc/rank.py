"""Phase-1 ranking: order the grid by mean best dev perplexity over seeds, pick the phase-2 winners.

Why mean with a t interval and Welch tests: with a few seeds per point, neighbours in the order
are often within seed noise; the ranking says which of them the seeds actually separate
(``separable_from_top1``, ``separable_from_next``) instead of presenting noise as an order.

Winners (``top``): with ``axis_winner``, the first slot is the per-axis choice the seed study
makes (the embedding share with the lowest mean over GLU ratios, crossed with the GLU ratio with
the lowest mean over shares), then the joint order fills the remaining slots, skipping a point
already taken; each winner carries its phase-1 LR, so phase 2 trains it at the rate it was
ranked with.
"""

from __future__ import annotations

import json
from pathlib import Path

from harness.io import write_json
from stages.param_alloc.configs import RankConfig, Shape
from stages.param_alloc.solver import check_distinct
from stages.param_alloc.stats import separable


def _per_seed(row: dict) -> list[float]:
    return list(row.get("best_dev_ppl_per_seed") or [row["best_dev_ppl"]])


def axis_means(rows: list[dict], axis: str) -> dict[float, float]:
    """Mean of the point means along one axis (every value averaged over the other axis)."""
    groups: dict[float, list[float]] = {}
    for r in rows:
        groups.setdefault(r[axis], []).append(r["best_dev_ppl"])
    return {k: sum(v) / len(v) for k, v in sorted(groups.items())}


def rank(rows: list[dict], top_k: int, axis_winner: bool) -> dict:
    check_distinct([(f"e{round(r['embed_share'] * 100)}_g{r['glu']}",
                     Shape(vocab_size=1, d_model=r["d_model"], n_layers=r["n_layers"], n_heads=1, d_ff=r["d_ff"],
                           max_seq_len=8)) for r in rows if "d_model" in r])
    # ties broken by the grid values so the order never depends on file order
    ranked = sorted(rows, key=lambda r: (r["best_dev_ppl"], r["embed_share"], r["glu"]))
    table = []
    for i, r in enumerate(ranked):
        vs_top, p_top = separable(_per_seed(ranked[0]), _per_seed(r)) if i else (False, None)
        vs_next, p_next = (separable(_per_seed(r), _per_seed(ranked[i + 1])) if i + 1 < len(ranked)
                           else (False, None))
        table.append({"rank": i + 1, "embed_share": r["embed_share"], "glu": r["glu"],
                      "best_dev_ppl": r["best_dev_ppl"], "best_dev_ppl_ci95": r.get("best_dev_ppl_ci95"),
                      "seeds": r.get("seeds", 1), "lr": r.get("lr"), "stopped_early": r["stopped_early"],
                      "tokens_seen": r["tokens_seen"], "separable_from_top1": vs_top, "p_vs_top1": p_top,
                      "separable_from_next": vs_next, "p_vs_next": p_next})
    by_share, by_glu = axis_means(rows, "embed_share"), axis_means(rows, "glu")
    best_share, best_glu = min(by_share, key=by_share.get), min(by_glu, key=by_glu.get)
    candidates = []
    if axis_winner:
        axis_row = [t for t in table if t["embed_share"] == best_share and t["glu"] == best_glu]
        if axis_row:
            candidates.append((axis_row[0], "per-axis winner (best share x best GLU)"))
    candidates += [(t, f"joint #{t['rank']}") for t in table]
    top, taken = [], set()
    for t, why in candidates:
        key = (t["embed_share"], t["glu"])
        if key in taken:
            continue
        taken.add(key)
        top.append({**t, "why": why})
        if len(top) == top_k:
            break
    return {"top": [{**t, "rank": i + 1} | {"phase1_rank": t["rank"]} for i, t in enumerate(top)],
            "all": table, "axis": {"embed_share": {f"{k:g}": v for k, v in by_share.items()},
                                   "glu": {f"{k:g}": v for k, v in by_glu.items()},
                                   "best_embed_share": best_share, "best_glu": best_glu}}


def run(cfg: RankConfig) -> None:
    rows = [json.loads(Path(p).read_text()) for p in cfg.phase1_metrics]
    result = rank(rows, cfg.top_k, cfg.axis_winner)
    top = result["top"]
    write_json(cfg.out, result)
    write_json(cfg.metrics, {f"top{t['rank']}": f"e{t['embed_share']}_g{t['glu']}" for t in top}
               | {"best_dev_ppl": top[0]["best_dev_ppl"], "early_stopped": sum(r["stopped_early"] for r in rows),
                  "best_embed_share": result["axis"]["best_embed_share"], "best_glu": result["axis"]["best_glu"],
                  "not_separable_from_top1": sum(not t["separable_from_top1"] for t in result["all"][1:])})
    for t in top:
        print(f"#{t['rank']} ({t['why']}): embed_share={t['embed_share']} glu={t['glu']} "
              f"dev ppl {t['best_dev_ppl']:.3f}", flush=True)
