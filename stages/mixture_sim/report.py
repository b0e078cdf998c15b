"""Stage `report`: reports/mixture_sim/<table>/ (Markdown + CSV tables + figures), committed to git.

Everything here is derived from the evaluate, simulator and search stages' outputs; the report
computes no new score, so it can never disagree with the DVC metrics. A flagged target
(constant or saturated on a test side) is listed with its reason and never shown as a result.
"""

from __future__ import annotations

import fnmatch

import math
from pathlib import Path
from typing import Any

from harness.io import atomic_path, read_json, write_csv
from harness.provenance import report_preamble
from stages.mixture_sim.configs import ReportStageConfig
from stages.mixture_sim.figures import pred_vs_true, r2_heatmaps

BASELINE = "mean"
QUESTION = ("Given a table of finished training runs, how well does a cheap regressor predict the outcomes "
            "of a data mixture not yet trained, and does it pick the better mixture?")
#: a target ranks "well" when its test Spearman reaches this
GOOD_SPEARMAN = 0.9
#: RegMix comparison goal: every target within this many points of the published Spearman (%)
GOAL_MARGIN, GOAL_MEAN = 0.3, 99.0


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if isinstance(value, float) and value.is_integer() and abs(value) >= 10:
        return f"{int(value):,}"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _md_table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(v if isinstance(v, str) else _fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _pick(m: dict) -> str:
    if not m["rank_comparisons"]:
        return "n/a (no held-out mixtures to compare)"
    return f"{_fmt(m['rank_hit_rate'])} (chance {_fmt(m['rank_chance'])}, {m['rank_comparisons']} picks)"


def _cv(info: dict) -> Any:
    """The selection score: out-of-fold R² where the split has CV folds."""
    return info.get("oof_r2", info["cv_r2"])


def _describe(regressor: str, params: dict) -> str:
    if "targets" in params:
        members = {m["regressor"]: m["params"] for m in params["members"]}
        picks = "; ".join(f"{t}: {' + '.join(f'`{m}`' for m in combo)}" for t, combo in params["targets"].items())
        return (f"`{regressor}`: per target, the regressor or mean of regressors best by out-of-fold R² ({picks}); "
                "members " + ", ".join(f"`{m}` {p}" for m, p in members.items()))
    if "members" in params:
        return f"`{regressor}`: mean of " + ", ".join(f"`{m['regressor']}` {m['params']}" for m in params["members"])
    return f"`{regressor}` {params}"


def headline_rows(metrics: dict, splits_info: dict, selection: dict) -> list[list[Any]]:
    rows = []
    for split, info in metrics.items():
        sel = info["selected"]
        m = info[sel]
        rows.append([split, splits_info[split]["train_rows"], splits_info[split]["test_rows"],
                     f"{splits_info[split]['heldout_test_mixtures']}/{splits_info[split]['test_mixtures']}", sel,
                     _cv(selection[split]["regressors"][sel]), m["pooled_r2"], m["median_r2"],
                     m["median_spearman"], m["median_mae"], _pick(m), f"{m['scored_targets']}",
                     info[BASELINE]["pooled_r2"]])
    return rows


def reference_rows(cfg: ReportStageConfig, metrics: dict) -> tuple[list[list[Any]], dict[str, Any]]:
    """Our selected simulator's Spearman (%) beside the published one, per target, and the verdict."""
    ref = cfg.reference
    info = metrics[ref.split]
    ours = info[info["selected"]]["targets"]
    rows, gaps, mine, theirs = [], [], [], []
    for target, published in ref.spearman_percent.items():
        rho = ours[target]["spearman"]
        value = 100 * rho if rho is not None else math.nan
        gap = value - published
        gaps.append(gap)
        mine.append(value)
        theirs.append(published)
        rows.append([target, f"{value:.2f}", f"{published:.2f}", f"{gap:+.2f}",
                     "yes" if gap >= -GOAL_MARGIN else "**no**"])
    mean_ours, mean_ref = sum(mine) / len(mine), sum(theirs) / len(theirs)
    rows.append(["**mean**", f"{mean_ours:.2f}", f"{mean_ref:.2f}", f"{mean_ours - mean_ref:+.2f}",
                 "yes" if mean_ours >= GOAL_MEAN else "**no**"])
    within = sum(g >= -GOAL_MARGIN for g in gaps)
    verdict = {"mean_ours": mean_ours, "mean_ref": mean_ref, "within": within, "targets": len(gaps),
               "worst_gap": min(gaps), "met": within == len(gaps) and mean_ours >= GOAL_MEAN}
    return rows, verdict


def can_and_cannot(metrics: dict) -> list[str]:
    """Plain statements from the scores: which targets rank well, which do not, which are unscorable."""
    lines = []
    for split, info in metrics.items():
        m = info[info["selected"]]
        good = [t for t, s in m["targets"].items() if t not in m["flagged_targets"]
                and s["spearman"] is not None and s["spearman"] >= GOOD_SPEARMAN]
        weak = [t for t, s in m["targets"].items() if t not in m["flagged_targets"] and t not in good]
        negative = [t for t, s in m["targets"].items() if t not in m["flagged_targets"]
                    and s["r2"] is not None and s["r2"] < 0]
        text = f"- **{split}** ({info['selected']}): ranks {len(good)} of {m['scored_targets']} scored targets " \
               f"with Spearman >= {GOOD_SPEARMAN}"
        if weak:
            text += f"; weaker on {', '.join(f'`{t}`' for t in weak)}"
        if negative:
            text += f"; absolute values worse than the training mean (R² < 0) on {', '.join(f'`{t}`' for t in negative)}"
        if m["flagged_targets"]:
            text += "; not assessable: " + ", ".join(f"`{t}` ({why})" for t, why in m["flagged_targets"].items())
        lines.append(text + ".")
    return lines


def declared_for(cfg: ReportStageConfig) -> dict[str, str]:
    """The spec's ``not_reproducible`` patterns that name this table's score files (pattern -> reason)."""
    files = (cfg.evaluate_metrics, cfg.simulator_metrics, str(Path(cfg.evaluate_metrics).parent / "search.json"))
    return {pattern: reason for pattern, reason in cfg.not_reproducible.items()
            if any(fnmatch.fnmatchcase(f, pattern.partition(":")[0]) for f in files)}


def run(cfg: ReportStageConfig) -> None:
    import pandas as pd

    from stages.mixture_sim.tableio import read_parquet

    ev = Path(cfg.evaluate_dir)
    scores = pd.read_csv(ev / "scores.csv")
    preds = read_parquet(ev / "predictions.parquet")
    selection = read_json(ev / "selection.json")
    metrics = read_json(cfg.evaluate_metrics)
    table_info, splits_info = read_json(cfg.table_metrics), read_json(cfg.splits_metrics)
    sim_info = read_json(cfg.simulator_metrics)
    search = read_json(Path(cfg.search_dir) / "search.json")
    best = pd.read_csv(Path(cfg.search_dir) / "best_mixtures.csv")
    targets = cfg.table.target_names
    regressors = [r for r in dict.fromkeys(scores.regressor) if r != BASELINE] + [BASELINE]

    ref_rows, verdict = reference_rows(cfg, metrics) if cfg.reference is not None else ([], None)
    if verdict is not None:
        answered = True
        answer = (f"On {cfg.reference.name}'s own held-out mixtures the selected simulator "
                  f"({metrics[cfg.reference.split]['selected']}, chosen by cross-validation on the training rows) "
                  f"ranks them with mean Spearman {verdict['mean_ours']:.2f} % against {verdict['mean_ref']:.2f} % "
                  f"published; {verdict['within']} of {verdict['targets']} targets are within {GOAL_MARGIN} points "
                  f"of the published value (worst {verdict['worst_gap']:+.2f}). Goal (every target within "
                  f"{GOAL_MARGIN}, mean >= {GOAL_MEAN}): {'met' if verdict['met'] else 'not met'}.")
    else:
        answered = False
        answer = ("this table is the smoke stand-in: byte-level LMs of 18k-99k parameters trained 100 steps on "
                  "template-grammar corpora, so its scores show that every split, score and the simulator work "
                  "end to end, not how well a simulator predicts real pre-training runs (see the `regmix` report).")
    unstable = declared_for(cfg)
    if unstable:
        answered = False
        answer += (" Its scores are **not reproducible across machines** (declared in the spec: "
                   + "; ".join(sorted(set(unstable.values()))) + "): every number below is a pipeline check, "
                   "never a result.")

    with atomic_path(cfg.out_dir) as out:
        out.mkdir()
        write_csv(out / "scores.csv", scores)
        write_csv(out / "best_mixtures.csv", best)
        r2_heatmaps(scores, regressors, targets, out / "r2_heatmap.png")
        figures = []
        for split in metrics:
            name = f"pred_vs_true_{split}.png"
            pred_vs_true(preds, split, metrics[split]["selected"], targets, out / name)
            figures.append(name)
        by_regressor = [[reg, *[metrics[s][reg]["pooled_r2"] for s in metrics]] for reg in regressors]
        per_target = []
        for split in metrics:
            sel = metrics[split]["selected"]
            part = scores[(scores.split == split) & (scores.regressor == sel)]
            for r in part.itertuples():
                flag = r.flag if isinstance(r.flag, str) else ""
                if flag:
                    per_target.append([split, r.target, "—", "—", "—", "—", f"flagged: {flag}"])
                else:
                    per_target.append([split, r.target, r.r2, r.mae, r.spearman,
                                       f"{r.rank_hits}/{r.rank_groups}" if r.rank_groups else "n/a", ""])
        split_rows = [[s, i["train_rows"], i["test_rows"], i["train_runs"], i["test_runs"],
                       f"{i['heldout_test_mixtures']}/{i['test_mixtures']}", i["cv_groups"]]
                      for s, i in splits_info.items()]
        top = best.head(5)
        shown_domains = [d for d in cfg.table.domains if top[d].max() >= 0.01]
        t = search["target"]
        search_rows = [[int(r["rank"]), *[f"{r[d]:.3f}" for d in shown_domains], f"{r[f'pred:{t}']:.4f}",
                        f"{r[f'spread:{t}']:.4f}"] for _, r in top.iterrows()]
        mean_mix = search["mean_mixture"]
        obs = search["best_observed"]
        context = ", ".join(f"{k} = {_fmt(float(v))}" for k, v in search["at"].items())
        sizes = (f"; {table_info['sizes']} model sizes ({_fmt(table_info['size_range'][0])}-"
                 f"{_fmt(table_info['size_range'][1])} parameters), {table_info['steps']} checkpoints per run"
                 if "sizes" in table_info else "; one row per run (final losses: no size or step columns)")
        subsets = (" Source subsets: " + ", ".join(f"{k} {v}" for k, v in table_info["subsets"].items()) + "."
                   if "subsets" in table_info else "")
        text = [
            report_preamble(f"mixture_sim / {cfg.table_name}: {cfg.title}", QUESTION, answered, answer).rstrip(),
            "",
            "Generated by `harness run mixture_sim-" + cfg.table_name + "-report` from the study's DVC outputs; "
            "do not edit by hand.",
            "",
            "## The table",
            "",
            f"{table_info['rows']} rows from {table_info['runs']} runs on {table_info['mixtures']} distinct mixtures "
            f"of {table_info['domains']} domains{sizes}; {table_info['targets']} targets; "
            f"{table_info['expectations_passed']} Great Expectations checks passed (proportions in [0, 1] summing "
            f"to 1 within {cfg.table.tolerance:g}, no NaN, finite targets, unique keys).{subsets}",
            "",
            "## What the simulator can and cannot predict",
            "",
            *can_and_cannot(metrics),
            "",
        ]
        if verdict is not None:
            text += [
                f"## Against {cfg.reference.name}",
                "",
                f"Spearman rank correlation (%) on the test side of split `{cfg.reference.split}`, our selected "
                f"simulator vs the published values. {cfg.reference.note}",
                "",
                _md_table(["target", "ours", cfg.reference.name, "difference",
                           f"within {GOAL_MARGIN} (mean: >= {GOAL_MEAN})"], ref_rows),
                "",
            ]
        text += [
            "## Splits",
            "",
            "Each split is checked by Great Expectations before it is written (sides disjoint and covering the "
            "table, thresholds honoured; a random split shares no run, a held-out-mixture split no mixture "
            "across sides). Model selection cross-validates on the training side grouped the way the split holds "
            "out (by run, size, step or mixture): *CV groups* below.",
            "",
            _md_table(["split", "train rows", "test rows", "train runs", "test runs",
                       "held-out / test mixtures", "CV groups"], split_rows),
            "",
            "## Per-split scores of the selected simulator",
            "",
            "The simulator of a split is the regressor (each at its best grid point by mean fold R²), `ensemble` "
            "(the equal-weight average of the 2 or 3 best) or `per_target` (for each target, the regressor or "
            "average best by out-of-fold R² on that target), with the highest out-of-fold R² of the grouped CV on "
            "that split's training side; test rows are used only for the scores below. Aggregates exclude flagged "
            "targets: *pooled R²* is one R² over every (row, target) pair, each target standardised by the training "
            "side's mean and deviation; the others are medians over targets. *Mixture pick*: among test rows of "
            "mixtures absent from training that share size, shape and step, does the simulator's favourite turn "
            "out truly best (per target)? Hit rate over all picks, and that of a random pick.",
            "",
            _md_table(["split", "train rows", "test rows", "held-out mixtures", "simulator", "CV R²", "pooled R²",
                       "median R²", "median Spearman", "median MAE", "mixture pick", "scored targets",
                       "mean-predictor pooled R²"], headline_rows(metrics, splits_info, selection)),
            "",
            "## Pooled test R² by regressor",
            "",
            _md_table(["regressor", *metrics], by_regressor),
            "",
            "![R² heatmaps](r2_heatmap.png)",
            "",
            "## Per target (selected simulator)",
            "",
            _md_table(["split", "target", "R²", "MAE", "Spearman", "mixture pick", "note"], per_target),
            "",
            "## The saved simulator",
            "",
            f"{_describe(sim_info['regressor'], sim_info['params'])} (selected on split `{sim_info['split']}` by CV R² "
            f"{_fmt(sim_info['cv_r2'])}), "
            f"fitted on that split's {sim_info['train_rows']} training rows, plus {sim_info['members']} bootstrap "
            "refits whose standard deviation is reported as the *spread* of every prediction. Query it with",
            "",
            "```",
            f"harness simulate --study mixture_sim --table {cfg.table_name} --input mixtures.csv "
            "--output predictions.csv",
            "```",
            "",
            f"(`mixtures.csv`: a column per domain, {', '.join(cfg.table.context_columns) or 'nothing else'}"
            f"{' too' if cfg.table.context_columns else ''}; proportions summing to 1).",
            "",
            "## Mixture search",
            "",
            f"{search['candidates']:,} candidates from a Dirichlet centred on the training mixtures "
            f"(concentration x mean mixture + floor){', at ' + context if context else ''}, ranked by the predicted "
            f"`{t}` ({search['better']} is better). The 5 best (domains under 1 % in all of them omitted; all "
            "10 in [best_mixtures.csv](best_mixtures.csv)):",
            "",
            _md_table(["rank", *shown_domains, f"predicted {t}", "spread"], search_rows),
            "",
            f"Mean of the top {len(best)}: predicted {search['mean_mixture_pred']:.4f} (spread "
            f"{search['mean_mixture_spread']:.4f}); "
            + ", ".join(f"{d} {v:.3f}" for d, v in mean_mix.items() if v >= 0.01)
            + f". Best observed in the table{' at the same size/step' if context else ''}: {obs['value']:.4f} "
            f"(run `{obs['run']}`). Candidates' predictions span {search['candidate_pred_range'][0]:.4f}-"
            f"{search['candidate_pred_range'][1]:.4f}. A predicted optimum below every observed value is an "
            "extrapolation: the spread, not the point estimate, says how far to trust it.",
            "",
            "## Predicted vs true",
            "",
            *[f"![{f}]({f})" for f in figures],
            "",
            "All scores: [scores.csv](scores.csv).",
            "",
        ]
        (out / "README.md").write_text("\n".join(text), encoding="utf-8")
    print(f"report written to {cfg.out_dir}", flush=True)
