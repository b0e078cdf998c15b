"""The param_alloc report: aggregate CSV, Pareto plots, RESULTS.md (reproduced by CI).

Machine-dependent columns (latency, throughput, memory) are labelled as such in RESULTS.md;
the perplexity and accuracy columns are deterministic on CPU and must not drift.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from harness.io import atomic_path
from harness.provenance import report_preamble
from stages.param_alloc.configs import PERF_FILE, PROFILE_FILE, ReportConfig


def pareto_mask(x: pd.Series, y: pd.Series) -> list[bool]:
    """Points not dominated by any other (lower x and lower y both better)."""
    keep = []
    for i in range(len(x)):
        dominated = ((x <= x.iloc[i]) & (y <= y.iloc[i]) & ((x < x.iloc[i]) | (y < y.iloc[i]))).any()
        keep.append(not dominated)
    return keep


def _pareto_plot(frame: pd.DataFrame, xcol: str, xlabel: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    mask = pareto_mask(frame[xcol], frame["best_dev_ppl"])
    for share, part in frame.groupby("embed_share"):
        ax.scatter(part[xcol], part["best_dev_ppl"], label=f"embed {share:.0%}")
        for _, r in part.iterrows():
            ax.annotate(f"glu {r['glu']}", (r[xcol], r["best_dev_ppl"]), fontsize=7, alpha=0.7)
    front = frame[mask].sort_values(xcol)
    ax.plot(front[xcol], front["best_dev_ppl"], "k--", lw=1, label="Pareto front")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("phase-1 dev perplexity")
    ax.legend(fontsize=8)
    ax.set_title(f"Perplexity vs {xlabel}")
    fig.savefig(path, dpi=110, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)


def run(cfg: ReportConfig) -> None:
    shapes = {r["tag"]: r for r in json.loads(Path(cfg.shapes).read_text())["shapes"]}
    profile = {r["tag"]: r for r in json.loads((Path(cfg.profile_dir) / PROFILE_FILE).read_text())["shapes"]}
    ranking = json.loads(Path(cfg.ranking).read_text())
    rows = []
    for path in cfg.phase1_metrics:
        m = json.loads(Path(path).read_text())
        tag = Path(path).stem
        s, p = shapes[tag], profile[tag]
        rows.append({"tag": tag, "embed_share": m["embed_share"], "glu": m["glu"], "d_model": s["d_model"],
                     "n_layers": s["n_layers"], "d_ff": s["d_ff"], "params": m["actual_params"],
                     "param_error_pct": 100 * m["param_error"], "embed_share_actual": m["embed_share_actual"],
                     "best_dev_ppl": m["best_dev_ppl"], "stopped_early": m["stopped_early"],
                     "tokens_seen": m["tokens_seen"],
                     **{k: v for k, v in p.items() if k.startswith(("latency_ms", "peak_memory", "throughput"))}})
    frame = pd.DataFrame(rows).sort_values(["embed_share", "glu"]).reset_index(drop=True)
    # the shortest measured sequence: batch-1 latency at seq 128 in the studies' setting
    lat_col = min((c for c in frame.columns if c.startswith("latency_ms_seq")),
                  key=lambda c: int(c.removeprefix("latency_ms_seq")))
    finals = []
    for mpath, eval_dir in zip(cfg.eval_metrics, cfg.eval_dirs, strict=True):
        m, p = json.loads(Path(mpath).read_text()), json.loads((Path(eval_dir) / PERF_FILE).read_text())
        finals.append({"run": Path(mpath).stem, "d_model": p["shape"]["d_model"], "n_layers": p["shape"]["n_layers"],
                       "d_ff": p["shape"]["d_ff"], **m,
                       **{k: v for k, v in p.items() if k not in ("shape", "device")}})
    final = pd.DataFrame(finals)
    with atomic_path(cfg.out_dir) as tmp:
        tmp.mkdir()
        frame.to_csv(tmp / "phase1.csv", index=False, float_format="%.6g", lineterminator="\n")
        final.to_csv(tmp / "final.csv", index=False, float_format="%.6g", lineterminator="\n")
        _pareto_plot(frame, lat_col, lat_col.replace("_", " "), tmp / "pareto_latency.png")
        _pareto_plot(frame, "peak_memory_mb", "peak memory (MB)", tmp / "pareto_memory.png")
        (tmp / "RESULTS.md").write_text(_markdown(frame, final, ranking, lat_col))
    print(f"report written to {cfg.out_dir}")


QUESTION = "How should a fixed parameter budget be split between the embeddings and the GLU MLP?"


def chance_tasks(final: pd.DataFrame) -> list[str]:
    """Downstream tasks on which no run beats its majority-class baseline: uninformative."""
    tasks = [c.removesuffix("_acc") for c in final.columns if c.endswith("_acc")]
    return [t for t in tasks if f"{t}_majority" in final
            and (final[f"{t}_acc"] <= final[f"{t}_majority"] + 1e-12).all()]


def unanswered_reasons(frame: pd.DataFrame, final: pd.DataFrame) -> list[str]:
    """Why this grid cannot rank allocations, from its own numbers (empty: it can).

    A ranking measures allocation only if the shapes are distinct, depth is not the dominant
    difference, training reached a plateau, and downstream scores are above chance.
    """
    reasons = []
    shape_cols = ["d_model", "n_layers", "d_ff"]
    dup = frame[frame.duplicated(shape_cols, keep=False)]
    if len(dup):
        reasons.append("grid points solve to the same shape: " + ", ".join(dup["tag"]))
    if frame["n_layers"].min() < 4 or frame["n_layers"].max() > 12:
        depth_rho = frame["n_layers"].corr(frame["best_dev_ppl"], method="spearman")
        reasons.append(f"depth ranges {frame['n_layers'].min()}-{frame['n_layers'].max()} layers "
                       f"(Spearman of depth vs perplexity {depth_rho:+.2f}): the budget trades depth, "
                       "so the ranking follows depth, not allocation")
    if not frame["stopped_early"].any():
        reasons.append("no run reached a plateau (early stopping never fired): the ranking measures "
                       "early training speed")
    if (frame["seeds"].min() if "seeds" in frame else 1) < 2:
        reasons.append("one seed per point: no confidence interval separates neighbours")
    at_chance = chance_tasks(final)
    if at_chance:
        reasons.append("downstream tasks at chance for every run (uninformative: their scores say nothing about allocation): "
                       + ", ".join(at_chance))
    return reasons


def _markdown(frame: pd.DataFrame, final: pd.DataFrame, ranking: dict, lat_col: str) -> str:
    det = ["tag", "embed_share", "glu", "d_model", "n_layers", "d_ff", "params", "param_error_pct",
           "embed_share_actual", "best_dev_ppl", "stopped_early", "tokens_seen"]
    top = ", ".join(f"#{t['rank']} embed {t['embed_share']:.0%} / glu {t['glu']} (ppl {t['best_dev_ppl']:.3f})"
                    for t in ranking["top"])
    deterministic = [c for c in final.columns if not c.startswith(("latency", "throughput", "peak_memory"))]
    machine = ["run"] + [c for c in final.columns if c.startswith(("latency", "throughput", "peak_memory"))]
    reasons = unanswered_reasons(frame, final)
    answer = (f"Best allocations: {top}." if not reasons else
              "This grid is a plumbing check, not a result: " + "; ".join(reasons) + ".")
    return "\n".join([
        report_preamble("param_alloc: embedding share x GLU expansion at a fixed parameter budget",
                        QUESTION, not reasons, answer).rstrip("\n"), "",
        "Generated by the `param_alloc-report` stage; do not edit. Deterministic columns are reproduced",
        "exactly by CI; latency/throughput/memory depend on the machine that ran the stages.", "",
        f"**Phase-1 ranking (top {len(ranking['top'])}):** {top}", "",
        "## Phase 1: every grid point (short runs, early stopping)", "",
        frame[det].to_markdown(index=False, floatfmt=".4g"), "",
        "## Phase 2 + baseline: evaluation", "",
        final[deterministic].to_markdown(index=False, floatfmt=".4g"), "",
        "## Speed and memory (machine-dependent)", "",
        final[machine].to_markdown(index=False, floatfmt=".4g"), "",
        f"![Perplexity vs latency](pareto_latency.png) ![Perplexity vs memory](pareto_memory.png)", "",
        f"Pareto plots use phase-1 dev perplexity against {lat_col} and peak memory of each grid shape.", "",
    ])
