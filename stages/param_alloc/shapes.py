"""Solve every grid point (and the baseline) up front: a table of shapes and a hard ±tolerance check."""

from __future__ import annotations

from harness.io import write_json
from stages.param_alloc.common import load_tokens, require_gate
from stages.param_alloc.configs import ShapesConfig
from stages.param_alloc.model import build_checked
from stages.param_alloc.solver import describe, solve


def run(cfg: ShapesConfig) -> None:
    require_gate(cfg.gate_report)
    _, vocab = load_tokens(cfg.tokens_dir)
    rows = []
    for alloc in [*cfg.grid, cfg.baseline]:
        shape = solve(alloc, cfg.model, vocab)
        _, counts = build_checked(shape, 0, cfg.model.target_params, cfg.model.tolerance)
        rows.append({"tag": alloc.tag, "embed_share": alloc.embed_share, "glu": alloc.glu,
                     **describe(shape), **counts})
        print(f"{alloc.tag}: {counts['actual_params']} params ({counts['param_error']:+.3%})", flush=True)
    worst = max(abs(r["param_error"]) for r in rows)
    write_json(cfg.out, {"vocab_size": vocab, "target_params": cfg.model.target_params, "shapes": rows})
    write_json(cfg.metrics, {"grid_points": len(rows), "worst_param_error": worst,
                             "worst_share_error": max(abs(r["embed_share_actual"] - r["embed_share"]) for r in rows)})
