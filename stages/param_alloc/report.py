"""The param_alloc report: aggregate CSVs, the study's plots, RESULTS.md (reproduced by CI).

Plots: perplexity vs GLU ratio per embedding share and vs embedding share per GLU ratio (means
with 95 % t intervals over seeds), phase-2 scores (test perplexity; downstream accuracy only for
tasks that beat chance), and the Pareto fronts of perplexity against latency and against the
forward+backward peak memory.

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

#: depth outside this range makes the grid a depth study: the budget trades layers for everything
DEPTH_RANGE = (4, 12)
#: a task beats chance when some run's accuracy exceeds its majority baseline at this one-sided
#: binomial significance
CHANCE_ALPHA = 0.05


def pareto_mask(x: pd.Series, y: pd.Series) -> list[bool]:
    """Points not dominated by any other (lower x and lower y both better)."""
    keep = []
    for i in range(len(x)):
        dominated = ((x <= x.iloc[i]) & (y <= y.iloc[i]) & ((x < x.iloc[i]) | (y < y.iloc[i]))).any()
        keep.append(not dominated)
    return keep


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    fig.savefig(path, dpi=110, bbox_inches="tight", metadata={"Software": None})
    _plt().close(fig)


def _err(frame: pd.DataFrame):
    return frame["best_dev_ppl_ci95"].fillna(0) if "best_dev_ppl_ci95" in frame else None


def _pareto_plot(frame: pd.DataFrame, xcol: str, xlabel: str, path: Path) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    mask = pareto_mask(frame[xcol], frame["best_dev_ppl"])
    for share, part in frame.groupby("embed_share"):
        ax.errorbar(part[xcol], part["best_dev_ppl"], yerr=_err(part), fmt="o", capsize=3, label=f"embed {share:.0%}")
        for _, r in part.iterrows():
            ax.annotate(f"glu {r['glu']}", (r[xcol], r["best_dev_ppl"]), fontsize=7, alpha=0.7)
    front = frame[mask].sort_values(xcol)
    ax.plot(front[xcol], front["best_dev_ppl"], "k--", lw=1, label="Pareto front")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("phase-1 dev perplexity (mean over seeds)")
    ax.legend(fontsize=8)
    ax.set_title(f"Perplexity vs {xlabel}")
    _save(fig, path)


def _axis_plot(frame: pd.DataFrame, x: str, per: str, xlabel: str, per_label: str, path: Path) -> None:
    """Perplexity against one axis, one line per value of the other (error bars: 95 % t interval)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    for value, part in frame.sort_values(x).groupby(per):
        ax.errorbar(part[x], part["best_dev_ppl"], yerr=_err(part), marker="o", capsize=3,
                    label=per_label.format(value))
    ax.set_xlabel(xlabel)
    ax.set_ylabel("phase-1 dev perplexity (mean over seeds)")
    ax.set_title(f"Perplexity vs {xlabel}")
    ax.legend(fontsize=8)
    _save(fig, path)


def _scores_plot(final: pd.DataFrame, tasks: list[str], path: Path) -> None:
    """Phase-2 test perplexity (and informative downstream accuracies) per run, with t intervals."""
    plt = _plt()
    panels = 1 + len(tasks)
    fig, axes = plt.subplots(1, panels, figsize=(4 * panels, 3.5), squeeze=False)
    labels = final["run"].tolist()
    ci = final["test_ppl_ci95"].fillna(0) if "test_ppl_ci95" in final else None
    axes[0][0].bar(labels, final["test_ppl"], yerr=ci, capsize=4)
    axes[0][0].set_ylabel("test perplexity (mean over seeds)")
    axes[0][0].set_title("Phase 2: test perplexity")
    for ax, task in zip(axes[0][1:], tasks):
        err = final[f"{task}_acc_ci95"].fillna(0) if f"{task}_acc_ci95" in final else None
        ax.bar(labels, final[f"{task}_acc"], yerr=err, capsize=4)
        ax.axhline(float(final[f"{task}_majority"].max()), color="k", ls="--", lw=1, label="majority")
        ax.set_title(f"{task} accuracy")
        ax.legend(fontsize=7)
    for ax in axes[0]:
        ax.tick_params(axis="x", labelrotation=30, labelsize=7)
    _save(fig, path)


def _phase1_rows(cfg: ReportConfig) -> pd.DataFrame:
    shapes = {r["tag"]: r for r in json.loads(Path(cfg.shapes).read_text())["shapes"]}
    profile = {r["tag"]: r for r in json.loads((Path(cfg.profile_dir) / PROFILE_FILE).read_text())["shapes"]}
    rows = []
    for path in cfg.phase1_metrics:
        m = json.loads(Path(path).read_text())
        tag = Path(path).stem
        s, p = shapes[tag], profile[tag]
        rows.append({"tag": tag, "embed_share": m["embed_share"], "glu": m["glu"], "d_model": s["d_model"],
                     "n_layers": s["n_layers"], "d_ff": s["d_ff"], "params": m["actual_params"],
                     "param_error_pct": 100 * m["param_error"], "embed_share_actual": m["embed_share_actual"],
                     "glu_actual": m.get("glu_actual", s["glu_actual"]), "lr": m.get("lr"),
                     "lr_at_sweep_edge": m.get("lr_at_sweep_edge", False), "seeds": m.get("seeds", 1),
                     "best_dev_ppl": m["best_dev_ppl"], "best_dev_ppl_ci95": m.get("best_dev_ppl_ci95"),
                     "stopped_early": int(m["stopped_early"]), "plateaued": m.get("plateaued"),
                     "late_gain_max": m.get("late_gain_max"), "tokens_seen": m["tokens_seen"],
                     **{k: v for k, v in p.items() if k.startswith(("latency_ms", "peak_memory", "throughput"))}})
    return pd.DataFrame(rows).sort_values(["embed_share", "glu"]).reset_index(drop=True)


def _final_rows(cfg: ReportConfig) -> pd.DataFrame:
    finals = []
    trained = cfg.phase2_metrics or [None] * len(cfg.eval_metrics)
    for mpath, eval_dir, tpath in zip(cfg.eval_metrics, cfg.eval_dirs, trained, strict=True):
        m, p = json.loads(Path(mpath).read_text()), json.loads((Path(eval_dir) / PERF_FILE).read_text())
        t = json.loads(Path(tpath).read_text()) if tpath else {}
        finals.append({"run": Path(mpath).stem, "embed_share": t.get("embed_share"), "glu": t.get("glu"),
                       "chosen_because": t.get("chosen_because", ""), "lr": t.get("lr"),
                       "d_model": p["shape"]["d_model"], "n_layers": p["shape"]["n_layers"],
                       "d_ff": p["shape"]["d_ff"], "phase2_best_dev_ppl": t.get("best_dev_ppl"),
                       "phase2_stopped_early": t.get("stopped_early"),
                       **{k: v for k, v in m.items() if not k.endswith("_per_seed")},
                       "test_ppl_seeds": m.get("test_ppl_per_seed") or [m["test_ppl"]],
                       **{k: v for k, v in p.items() if k not in ("shape", "device")}})
    return pd.DataFrame(finals)


def run(cfg: ReportConfig) -> None:
    frame = _phase1_rows(cfg)
    ranking = json.loads(Path(cfg.ranking).read_text())
    # the shortest measured sequence: batch-1 latency at seq 128 in the studies' setting
    lat_col = min((c for c in frame.columns if c.startswith("latency_ms_seq")),
                  key=lambda c: int(c.removeprefix("latency_ms_seq")))
    final = _final_rows(cfg)
    informative = [t for t in task_names(final) if t not in chance_tasks(final)]
    with atomic_path(cfg.out_dir) as tmp:
        tmp.mkdir()
        frame.to_csv(tmp / "phase1.csv", index=False, float_format="%.6g", lineterminator="\n")
        final.drop(columns=["test_ppl_seeds"]).to_csv(tmp / "final.csv", index=False, float_format="%.6g", lineterminator="\n")
        _axis_plot(frame, "glu", "embed_share", "GLU ratio", "embed {:.0%}", tmp / "ppl_vs_glu.png")
        _axis_plot(frame, "embed_share", "glu", "embedding share", "GLU {}", tmp / "ppl_vs_embed_share.png")
        _scores_plot(final, informative, tmp / "scores.png")
        _pareto_plot(frame, lat_col, lat_col.replace("_", " "), tmp / "pareto_latency.png")
        _pareto_plot(frame, "peak_memory_mb", "train-step peak memory (MiB)", tmp / "pareto_memory.png")
        (tmp / "RESULTS.md").write_text(_markdown(frame, final, ranking, lat_col))
    print(f"report written to {cfg.out_dir}")


QUESTION = "How should a fixed parameter budget be split between the embeddings and the GLU MLP?"


def task_names(final: pd.DataFrame) -> list[str]:
    return [c.removesuffix("_acc") for c in final.columns if c.endswith("_acc")]


def chance_tasks(final: pd.DataFrame) -> list[str]:
    """Downstream tasks on which no run beats its majority-class baseline: uninformative.

    With the task's size known (``<task>_n``), "beats" means a one-sided binomial test against
    the majority rate at ``CHANCE_ALPHA`` (scipy), so a lucky 52 % on 100 examples is still chance;
    without it, any accuracy above the majority rate counts.
    """
    from scipy.stats import binomtest

    out = []
    for t in task_names(final):
        if f"{t}_majority" not in final:
            continue
        if f"{t}_n" in final:
            beats = [binomtest(int(round(acc * n)), int(n), min(maj, 1 - 1e-9), alternative="greater").pvalue
                     < CHANCE_ALPHA for acc, n, maj in zip(final[f"{t}_acc"], final[f"{t}_n"], final[f"{t}_majority"])]
        else:
            beats = list(final[f"{t}_acc"] > final[f"{t}_majority"] + 1e-12)
        if not any(beats):
            out.append(t)
    return out


def unanswered_reasons(frame: pd.DataFrame, final: pd.DataFrame) -> list[str]:
    """Why this grid cannot rank allocations, from its own numbers (empty: it can).

    A ranking measures allocation only if the shapes are distinct, depth is not the dominant
    difference, training reached a plateau, there are seeds to tell noise from effect, and the
    downstream scores shown are above chance.
    """
    reasons = []
    shape_cols = ["d_model", "n_layers", "d_ff"]
    dup = frame[frame.duplicated(shape_cols, keep=False)]
    if len(dup):
        reasons.append("grid points solve to the same shape: " + ", ".join(dup["tag"]))
    lo, hi = DEPTH_RANGE
    if frame["n_layers"].min() < lo or frame["n_layers"].max() > hi:
        depth_rho = frame["n_layers"].corr(frame["best_dev_ppl"], method="spearman")
        reasons.append(f"depth ranges {frame['n_layers'].min()}-{frame['n_layers'].max()} layers "
                       f"(Spearman of depth vs perplexity {depth_rho:+.2f}): the budget trades depth, "
                       "so the ranking follows depth, not allocation")
    if "plateaued" in frame and frame["plateaued"].notna().all():
        runs, flat = int(frame["seeds"].sum()), int(frame["plateaued"].sum())
        if flat < runs:
            reasons.append(f"{runs - flat} of {runs} phase-1 runs had not reached a plateau (dev perplexity still "
                           f"improving by up to {100 * frame['late_gain_max'].max():.1f} % over the last quarter of their in-run dev evaluations, "
                           "early stopping fired in " f"{int(frame['stopped_early'].sum())}): the ranking measures "
                           "training speed at a fixed token budget")
    elif not frame["stopped_early"].any():
        reasons.append("no run reached a plateau (early stopping never fired): the ranking measures "
                       "early training speed")
    if (frame["seeds"].min() if "seeds" in frame else 1) < 2:
        reasons.append("one seed per point: no confidence interval separates neighbours")
    return reasons


def caveats(frame: pd.DataFrame, final: pd.DataFrame) -> list[str]:
    """What the report shows but does not count as evidence (not reasons the ranking fails)."""
    out = []
    at_chance = chance_tasks(final)
    if at_chance:
        out.append("downstream tasks at chance for every run, flagged uninformative and not plotted (their "
                   "scores say nothing about allocation): " + ", ".join(at_chance))
    if "lr_at_sweep_edge" in frame and frame["lr_at_sweep_edge"].any():
        out.append("the LR sweep's best rate is at its edge for " + ", ".join(frame.loc[frame["lr_at_sweep_edge"], "tag"])
                   + " (the sweep may not bracket their optimum)")
    return out


def _fmt_ci(mean, half) -> str:
    return f"{mean:.3f}" if half is None or pd.isna(half) else f"{mean:.3f} ± {half:.3f}"


def _tag(entry: dict) -> str:
    return f"e{round(entry['embed_share'] * 100)}_g{str(entry['glu']).replace('.', '_')}"


def separation_lines(ranking: dict) -> list[str]:
    """Which differences in the phase-1 order the seeds cannot separate (Welch, p >= 0.05)."""
    table = ranking["all"]
    if len(table) < 2 or table[0].get("p_vs_top1") is None and table[1].get("p_vs_top1") is None:
        return ["One seed per point: no difference in this order is separated from seed noise."]
    tied = [t for t in table[1:] if not t["separable_from_top1"]]
    lines = [f"- Not separable from #1 ({_tag(table[0])}): "
             + (", ".join(f"{_tag(t)} (p = {t['p_vs_top1']:.2f})" for t in tied) if tied else "none") + "."]
    adjacent = [f"#{t['rank']} {_tag(t)} vs #{t['rank'] + 1} {_tag(n)} (p = {t['p_vs_next']:.2f})"
                for t, n in zip(table, table[1:]) if not t["separable_from_next"]]
    lines.append("- Adjacent ranks the seeds cannot separate: " + ("; ".join(adjacent) if adjacent else "none") + ".")
    return lines


def phase_agreement(frame: pd.DataFrame, final: pd.DataFrame) -> list[str]:
    """Does the longer phase 2 keep the phase-1 order of the points it trained, and which of its
    test-perplexity differences do the seeds separate (Welch, p < 0.05)?"""
    from stages.param_alloc.stats import separable

    if "embed_share" not in final or final["embed_share"].isna().any() or len(final) < 2:
        return []
    p1 = {(r.embed_share, r.glu): r.best_dev_ppl for r in frame.itertuples()}
    runs = final.assign(phase1=[p1.get((r.embed_share, r.glu)) for r in final.itertuples()])
    runs = runs.dropna(subset=["phase1"]).drop_duplicates(subset=["embed_share", "glu"])
    if len(runs) < 2:
        return []
    tag = {i: f"{r.run} ({_tag({'embed_share': r.embed_share, 'glu': r.glu})})" for i, r in runs.iterrows()}
    by_p1 = list(runs.sort_values("phase1").index)
    by_p2 = list(runs.sort_values("test_ppl").index)
    lines = [f"- Phase-1 order of the phase-2 points: {' < '.join(tag[i] for i in by_p1)}; phase-2 test order: "
             f"{' < '.join(tag[i] for i in by_p2)} ({'the same' if by_p1 == by_p2 else 'different'})."]
    pairs = []
    for a, b in zip(by_p2, by_p2[1:]):
        sep, p = separable(list(runs.at[a, "test_ppl_seeds"]), list(runs.at[b, "test_ppl_seeds"]))
        pairs.append(f"{tag[a]} vs {tag[b]}: " + ("one seed each, not tested" if p is None else
                                                   f"p = {p:.2f}, {'separated' if sep else 'not separated'}"))
    lines.append("- Phase-2 neighbours by test perplexity: " + "; ".join(pairs) + ".")
    return lines


def _markdown(frame: pd.DataFrame, final: pd.DataFrame, ranking: dict, lat_col: str) -> str:
    det = ["tag", "embed_share", "glu", "d_model", "n_layers", "d_ff", "params", "param_error_pct",
           "embed_share_actual", "glu_actual", "lr", "seeds", "best_dev_ppl", "best_dev_ppl_ci95", "stopped_early",
           "plateaued", "late_gain_max", "tokens_seen"]
    det = [c for c in det if c in frame]
    winners = ", ".join(f"#{t['rank']} {_tag(t)} ({t.get('why', 'joint')}; dev ppl "
                        f"{_fmt_ci(t['best_dev_ppl'], t.get('best_dev_ppl_ci95'))})" for t in ranking["top"])
    order = "; ".join(f"#{t['rank']} {_tag(t)} {_fmt_ci(t['best_dev_ppl'], t.get('best_dev_ppl_ci95'))}"
                      for t in ranking["all"])
    chance = chance_tasks(final)
    hidden = [c for t in chance for c in final.columns if c.startswith(f"{t}_")]
    deterministic = [c for c in final.columns if not c.startswith(("latency", "throughput", "peak_memory", "memory_"))
                     and c not in hidden and c != "test_ppl_seeds"]
    machine = ["run"] + [c for c in final.columns if c.startswith(("latency", "throughput", "peak_memory"))]
    reasons = unanswered_reasons(frame, final)
    notes = caveats(frame, final)
    axis = ranking.get("axis", {})
    if reasons:
        answer = "This grid is a plumbing check, not a result: " + "; ".join(reasons) + "."
    else:
        best = ranking["all"][0]
        tied = [t for t in ranking["all"][1:] if not t["separable_from_top1"]]
        answer = (f"Lowest mean dev perplexity: {_tag(best)} (embedding share {best['embed_share']:.0%}, GLU "
                  f"{best['glu']}; {_fmt_ci(best['best_dev_ppl'], best.get('best_dev_ppl_ci95'))}, 95 % t interval "
                  f"over {best['seeds']} seeds)"
                  + (f"; per axis, share {axis['best_embed_share']:.0%} and GLU {axis['best_glu']}" if axis else "")
                  + (f"; the seeds cannot separate it from {', '.join(_tag(t) for t in tied)}" if tied else
                     "; the seeds separate it from every other point") + ".")
    sections = [
        report_preamble("param_alloc: embedding share x GLU expansion at a fixed parameter budget",
                        QUESTION, not reasons, answer).rstrip("\n"), "",
        "Generated by the `param_alloc-report` stage; do not edit. Deterministic columns are reproduced",
        "exactly by CI; latency/throughput/memory depend on the machine that ran the stages.", "",
    ]
    if notes:
        sections += ["**Caveats:** " + " ".join(f"{n[0].upper()}{n[1:]}." for n in notes), ""]
    sections += [
        f"**Phase-2 winners:** {winners}", "",
        f"**Phase-1 order (mean best dev perplexity ± 95 % t half-width):** {order}", "",
        "**What the seeds cannot separate** (Welch's t-test on the per-seed best dev perplexities, p ≥ 0.05):", "",
        *separation_lines(ranking), "",
    ]
    if axis:
        sections += ["**Per-axis means** (each value averaged over the other axis): embedding share "
                     + ", ".join(f"{float(k):.0%}: {v:.3f}" for k, v in axis["embed_share"].items())
                     + "; GLU " + ", ".join(f"{k}: {v:.3f}" for k, v in axis["glu"].items()) + ".", ""]
    sections += [
        "## Phase 1: every grid point (per-point LR, early stopping, mean over seeds)", "",
        frame[det].to_markdown(index=False, floatfmt=".4g"), "",
        "`plateaued`: runs that stopped early or whose dev perplexity improved by < 1 % over the last quarter of",
        "their in-run evaluations (every `train.eval_every` steps); `late_gain_max`: the largest such late",
        "improvement among the point's runs.", "",
        "![Perplexity vs GLU ratio](ppl_vs_glu.png) ![Perplexity vs embedding share](ppl_vs_embed_share.png)", "",
        "## Phase 2 (winners trained longer)" + (" + baseline" if (final["run"] == "baseline").any() else "")
        + ": evaluation on the test split", "",
        final[deterministic].to_markdown(index=False, floatfmt=".4g"), "",
        *phase_agreement(frame, final), "",
        "![Scores](scores.png)", "",
        "## Speed and memory (machine-dependent)", "",
        final[machine].to_markdown(index=False, floatfmt=".4g"), "",
        "![Perplexity vs latency](pareto_latency.png) ![Perplexity vs memory](pareto_memory.png)", "",
        f"Pareto plots use phase-1 dev perplexity against {lat_col} and the peak memory of one training "
        "forward+backward (parameters, activations, gradients) at the training batch and sequence length, "
        "per grid shape.", "",
    ]
    return "\n".join(sections)
