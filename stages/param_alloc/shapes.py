"""Solve every grid point (and the baseline) up front: a table of shapes and a hard ±tolerance check.

Two grid points that solve to the same shape fail the stage (``ShapeCollision``): the table
then states, for every point, its actual embedding share and GLU ratio next to the requested ones.
"""

from __future__ import annotations

from harness.io import write_json
from stages.param_alloc.common import load_tokens, require_gate
from stages.param_alloc.configs import ShapesConfig
from stages.param_alloc.model import build_checked
from stages.param_alloc.solver import describe, solve, solve_grid


def run(cfg: ShapesConfig) -> None:
    require_gate(cfg.gate_report)
    _, vocab = load_tokens(cfg.tokens_dir)
    # the baseline may coincide with a grid point on purpose: only grid points must be distinct
    solved = solve_grid(cfg.grid, cfg.model, vocab) + [(cfg.baseline, solve(cfg.baseline, cfg.model, vocab))]
    rows = []
    for alloc, shape in solved:
        _, counts = build_checked(shape, 0, cfg.model.target_params, cfg.model.tolerance)
        row = {"tag": alloc.tag, "embed_share": alloc.embed_share, "glu": alloc.glu, **describe(shape), **counts}
        rows.append(row)
        print(f"{alloc.tag}: d_model={shape.d_model} layers={shape.n_layers} d_ff={shape.d_ff}; "
              f"{counts['actual_params']} params ({counts['param_error']:+.3%}); embedding share "
              f"{row['embed_share_actual']:.3f} (asked {alloc.embed_share}), GLU {row['glu_actual']:.2f} "
              f"(asked {alloc.glu})", flush=True)
    worst = max(abs(r["param_error"]) for r in rows)
    write_json(cfg.out, {"vocab_size": vocab, "target_params": cfg.model.target_params, "shapes": rows})
    write_json(cfg.metrics, {"grid_points": len(rows), "worst_param_error": worst,
                             "worst_share_error": max(abs(r["embed_share_actual"] - r["embed_share"]) for r in rows),
                             "worst_glu_error": max(abs(r["glu_actual"] - r["glu"]) / r["glu"] for r in rows),
                             "layers_min": min(r["n_layers"] for r in rows[:-1]),
                             "layers_max": max(r["n_layers"] for r in rows[:-1])})
