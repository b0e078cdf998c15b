"""Phase-1 ranking: order the grid by best dev perplexity, keep the top k for phase 2."""

from __future__ import annotations

import json
from pathlib import Path

from harness.io import write_json
from stages.param_alloc.configs import RankConfig


def run(cfg: RankConfig) -> None:
    rows = [json.loads(Path(p).read_text()) for p in cfg.phase1_metrics]
    # ties broken by the grid values so the order never depends on file order
    ranked = sorted(rows, key=lambda r: (r["best_dev_ppl"], r["embed_share"], r["glu"]))
    top = [{"rank": i + 1, "embed_share": r["embed_share"], "glu": r["glu"], "best_dev_ppl": r["best_dev_ppl"],
            "stopped_early": r["stopped_early"]} for i, r in enumerate(ranked[: cfg.top_k])]
    write_json(cfg.out, {"top": top, "all": [{k: r[k] for k in ("embed_share", "glu", "best_dev_ppl",
                                                                   "stopped_early", "tokens_seen")} for r in ranked]})
    write_json(cfg.metrics, {f"top{t['rank']}": f"e{t['embed_share']}_g{t['glu']}" for t in top}
               | {"best_dev_ppl": top[0]["best_dev_ppl"], "early_stopped": sum(r["stopped_early"] for r in rows)})
    for t in top:
        print(f"#{t['rank']}: embed_share={t['embed_share']} glu={t['glu']} dev ppl {t['best_dev_ppl']:.3f}")
