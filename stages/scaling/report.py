"""Stage ``scaling-report``: ``reports/scaling/`` — fits table, figures, width-sweep findings.

Everything in the report is read from the stages' outputs (fit details, gated tables, sweep
results, coord-check data); nothing is computed here that a stage did not record, so the
report is a pure function of the DAG's artefacts and reproduces byte for byte.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pandas as pd

from harness.io import atomic_path
from stages.scaling.configs import ReportConfig

FIT_KEYS = ("a", "b", "E", "A", "B", "alpha", "beta")


def fmt(x, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    if abs(x) >= 1e4 or (x != 0 and abs(x) < 1e-3):
        return f"{x:.{digits - 1}e}"
    return f"{x:.{digits}g}"


def value_ci(entry: dict | None) -> str:
    if not entry:
        return ""
    return f"{fmt(entry['value'])} [{fmt(entry.get('ci_low'))}, {fmt(entry.get('ci_high'))}]"


def fits_table(fits: list[dict]) -> list[str]:
    lines = ["| table | approach | N counted | runs | " + " | ".join(FIT_KEYS) + " |",
             "|" + "---|" * (4 + len(FIT_KEYS))]
    for fit in fits:
        m = fit["metrics"]
        if m.get("status") != "ok":
            lines.append(f"| {m['table']} | {m['approach']} ({m['kind']}) | {m['parameters']} | {m['runs']} | "
                         f"{m.get('status')}: {m.get('reason', '')} |" + " |" * (len(FIT_KEYS) - 1))
            continue
        cells = [value_ci(m["fit"].get(k)) for k in FIT_KEYS]
        lines.append(f"| {m['table']} | {m['approach']} ({m['kind']}) | {m['parameters']} | {m['runs']} | "
                     + " | ".join(cells) + " |")
    return lines


def agreement_table(fits: list[dict]) -> list[str]:
    lines = ["| table | approach | quantity | fitted [CI] | published (± SE or [CI]) | source | "
             "(fit − published)/SE | published in our CI |", "|---|---|---|---|---|---|---|---|"]
    for fit in fits:
        m = fit["metrics"]
        for origin, comparisons in m["agreement"].items():
            ref = fit["references"][origin]
            for key, cmp in comparisons.items():
                pub = ref["values"][key]
                shown = fmt(pub["value"])
                if pub.get("se") is not None:
                    shown += f" ± {fmt(pub['se'])}"
                elif pub.get("ci_low") is not None:
                    shown += f" [{fmt(pub['ci_low'])}, {fmt(pub['ci_high'])}]"
                diff = fmt(cmp["diff_in_se"], 3) if "diff_in_se" in cmp else "–"
                inside = {True: "yes", False: "no"}.get(cmp.get("published_within_our_ci"), "–")
                lines.append(f"| {m['table']} | {m['approach']} | {key} | {value_ci(m['fit'][key])} | {shown} | "
                             f"{ref['source']} | {diff} | {inside} |")
    return lines


def sweep_section(summaries: list[dict], plans: dict[str, dict]) -> list[str]:
    lines = ["| sweep | param. | width | N | N non-emb. | optimal LR (grid) | optimal LR (refined) | best dev loss | "
             "micro-batch × accum. | tokens/step |", "|---|---|---|---|---|---|---|---|---|---|"]
    for s in summaries:
        for w in sorted(s["widths"], key=int):
            v = s["widths"][w]
            lines.append(f"| {s['sweep']} | {s['parametrization']} | {w} | {v['N']} | {v['N_no_emb']} | {fmt(v['lr'])} | "
                         f"{fmt(v['lr_refined'])} | {fmt(v['loss'])} | {v['micro_batch']} × {v['grad_accum']} | "
                         f"{v['tokens_per_step']} |")
    lines += ["", "Optimal-LR shift across widths (log2 units; 0 = the optimum stays put):", "",
              "| sweep | param. | shift log2(lr*(widest) / lr*(narrowest)) | slope per doubling of width |",
              "|---|---|---|---|"]
    for s in summaries:
        lines.append(f"| {s['sweep']} | {s['parametrization']} | {fmt(s['shift_log2'], 3)} | "
                     f"{fmt(s['slope_log2_per_doubling'], 3)} |")
    return lines


def coord_section(coords: list[dict]) -> list[str]:
    lines = ["| model | param. | max slope (module, step) | min slope | no growth (≤ tolerance) |", "|---|---|---|---|---|"]
    for c in coords:
        for p in ("sp", "mup"):
            v = c[p]
            lines.append(f"| {c['label']} | {p} | {fmt(v['max_slope'], 3)} ({v['max_slope_module']}, t={v['max_slope_step']}) | "
                         f"{fmt(v['min_slope'], 3)} | {'yes' if v['no_growth'] else 'no'} (tol {c['tolerance']}) |")
    return lines


def run(cfg: ReportConfig) -> None:
    from stages.scaling import plots

    fits = [json.loads(Path(p).read_text()) for p in cfg.fits]
    tables = {name: pd.read_parquet(path) for name, path in cfg.tables.items()}
    summaries, results, plans = [], {}, {}
    for s in cfg.sweeps:
        summary = json.loads(Path(s.metrics).read_text())
        summaries.append(summary)
        results.setdefault(summary["sweep"], {})[summary["parametrization"]] = pd.read_csv(Path(s.dir) / "results.csv")
        plans[s.label] = json.loads((Path(s.dir) / "batching.json").read_text())
    coords = []
    for c in cfg.coords:
        coords.append({"label": c.label, **json.loads(Path(c.metrics).read_text())})

    figures = {"frontier.png": plots.frontier_figure(tables, fits), "isoflop.png": plots.isoflop_figure(fits)}
    if summaries:
        figures["lr-optimum.png"] = plots.lr_optimum_figure(summaries)
    for sweep, by_param in sorted(results.items()):
        figures[f"lr-{sweep}.png"] = plots.lr_figure(sweep, by_param)

    lines = ["# Scaling study report", "",
             "Generated by `scaling-report` from the outputs of the study's stages (`dvc repro`); do not edit.",
             f"Bootstrap: {fits[0]['metrics']['bootstrap'] if fits else 0} resamples of runs, "
             f"{int(100 * fits[0]['metrics']['level']) if fits else 95} % percentile intervals in brackets.", "",
             "## Fitted values per table and approach", "",
             "a, b: N_opt ∝ C^a, D_opt ∝ C^b with C = 6ND (Approach 3 derives them as β/(α+β), α/(α+β)).", ""]
    lines += fits_table(fits)
    lines += ["", "## Against published values", ""] + agreement_table(fits)
    lines += ["", "## Figures", "", "![frontier](frontier.png)", "", "![isoflop](isoflop.png)", ""]
    if summaries:
        lines += ["## Width sweeps: loss vs learning rate, SP and μP", ""] + sweep_section(summaries, plans)
        lines += ["", "![lr-optimum](lr-optimum.png)", ""] + [f"![{s}](lr-{s}.png)" for s in sorted(results)] + [""]
    if coords:
        lines += ["## μP coordinate check", "",
                  "Slope of log2(mean |activation|) vs log2(width), per module and step (mup's coord-check data).", ""]
        lines += coord_section(coords) + [""]
        lines += [f"![coord {c['label']} {p}](coord-{c['label']}-{p}.png)" for c in coords for p in ("sp", "mup")]
    text = "\n".join(lines) + "\n"

    import matplotlib.pyplot as plt

    with atomic_path(cfg.out_dir) as tmp:  # the report appears whole or not at all
        tmp.mkdir()
        (tmp / "README.md").write_text(text)
        for name, fig in figures.items():
            fig.savefig(tmp / name, dpi=100, metadata={"Software": None}, bbox_inches="tight")
            plt.close(fig)
        for c in cfg.coords:
            for p in ("sp", "mup"):
                shutil.copyfile(Path(c.dir) / f"coord-{p}.png", tmp / f"coord-{c.label}-{p}.png")
    print(f"report: {len(fits)} fits, {len(summaries)} sweeps, {len(coords)} coord checks -> {cfg.out_dir}", flush=True)
