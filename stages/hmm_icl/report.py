"""The hmm_icl report: grid table, per-position CE / KL curves, sampler throughput (reproduced by CI).

``RESULTS.md`` and every CSV/PNG except ``sampler_throughput.md`` are deterministic on CPU and
must be byte-identical between runs. Throughput depends on the machine and its load, so it
lives in its own file, which is expected to change on every run.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from harness.io import atomic_path
from harness.provenance import report_preamble
from stages.hmm_icl.configs import ReportConfig


def _read(path: str) -> dict:
    return json.loads(Path(path).read_text())


def grid_table(cfg: ReportConfig) -> pd.DataFrame:
    rows = []
    for point, fit_path, eval_path in zip(cfg.points, cfg.fit_metrics, cfg.eval_metrics):
        fit, ev = _read(fit_path), _read(eval_path)
        rows.append({
            "tag": point.tag, "K": point.emissions, "H": point.hidden, "L": point.seq_len,
            "epochs": fit["epochs"], "updates": fit["updates"],
            "train_ll": fit["train_loglik_per_token"], "val_ll": ev["val_loglik_per_token"],
            "hmm_ce": ev["hmm_ce"], "uniform_ce": ev["uniform_ce"], "unigram_ce": ev["unigram_ce"],
            "bigram_ce": ev["bigram_ce"], "hmm_final_ce": ev["hmm_final_ce"],
            "uniform_final_ce": ev["uniform_final_ce"], "unigram_final_ce": ev["unigram_final_ce"],
            "bigram_final_ce": ev["bigram_final_ce"],
            "kl_uniform": ev["kl_from_uniform"], "kl_unigram": ev["kl_from_unigram"], "kl_bigram": ev["kl_from_bigram"],
        })
    return pd.DataFrame(rows)


def _pm(mean: float, ci: float) -> str:
    return f"{mean:.4f} ± {ci:.4f}"


def icl_table(cfg: ReportConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One row per ICL measurement (grid point x permutation pool), and all per-position curves."""
    rows, curves = [], []
    for point, perms, lm_path, icl_path, curve_path in zip(cfg.icl_points, cfg.icl_permutations, cfg.lm_metrics,
                                                           cfg.icl_metrics, cfg.icl_curves):
        lm, icl = _read(lm_path), _read(icl_path)
        tag = f"{point.tag}-{perms.tag}"
        row = {"tag": tag, "K": point.emissions, "H": point.hidden, "L": point.seq_len,
               "pool": "unbounded" if perms.pool is None else perms.pool, "target": icl["target"],
               "llama_params": lm["parameters"], "lm_steps": lm["steps"], "lm_dev_loss": lm["dev_loss"],
               "window": icl["window_positions"]}
        for name in ("model", "fair", "oracle", "unigram_ic", "bigram_ic"):
            for w in ("pos1", "early", "late"):
                row[f"ce_{name}_{w}"] = icl.get(f"ce_{name}_{w}", float("nan"))
        for w in ("pos1", "early", "late"):
            for key in ("gap_model", "gap_bigram_ic", "gap_oracle", "model_minus_bigram"):
                row[f"{key}_{w}"] = icl[f"{key}_{w}"]
                row[f"{key}_{w}_ci"] = icl[f"{key}_{w}_ci"]
        rows.append(row)
        curve = pd.read_csv(curve_path)
        curve.insert(0, "tag", tag)
        curves.append(curve)
    return pd.DataFrame(rows), (pd.concat(curves, ignore_index=True) if curves else pd.DataFrame())


def gap_table(icl: pd.DataFrame) -> pd.DataFrame:
    """The headline table: the Llama's gap to the target (fair optimum) at position 1, early, late, with CIs."""
    if not len(icl):
        return icl
    out = pd.DataFrame({"tag": icl["tag"], "pool M": icl["pool"], "target": icl["target"], "window": icl["window"]})
    for w, label in (("pos1", "position 1"), ("early", "early"), ("late", "late")):
        out[f"gap {label}"] = [_pm(m, c) for m, c in zip(icl[f"gap_model_{w}"], icl[f"gap_model_{w}_ci"])]
    out["bigram-IC gap late"] = [_pm(m, c) for m, c in zip(icl["gap_bigram_ic_late"], icl["gap_bigram_ic_late_ci"])]
    out["Llama - bigram-IC late"] = [_pm(m, c) for m, c in zip(icl["model_minus_bigram_late"],
                                                                 icl["model_minus_bigram_late_ci"])]
    out["oracle gap late"] = [_pm(m, c) for m, c in zip(icl["gap_oracle_late"], icl["gap_oracle_late_ci"])]
    return out


def ce_table(icl: pd.DataFrame) -> pd.DataFrame:
    """Mean CE of every predictor at position 1 and over the early / late windows."""
    if not len(icl):
        return icl
    cols = {"tag": icl["tag"]}
    for w in ("pos1", "early", "late"):
        for name, label in (("model", "Llama"), ("fair", "fair"), ("oracle", "oracle"), ("bigram_ic", "bigram-IC"),
                            ("unigram_ic", "unigram-IC")):
            cols[f"{label} {w}"] = icl[f"ce_{name}_{w}"]
    return pd.DataFrame(cols)


def identified_by(curves: pd.DataFrame, tag: str, level: float = 0.9) -> int | None:
    """First position at which the fair optimum's mean posterior of the true pool member reaches ``level``."""
    c = curves[curves["tag"] == tag]
    if "p_true_member" not in c or c["p_true_member"].isna().all():
        return None
    hit = c[c["p_true_member"] >= level]
    return int(hit["position"].iloc[0]) if len(hit) else None


def verdicts(icl: pd.DataFrame, curves: pd.DataFrame | None = None, goal: float = 0.05) -> list[str]:
    """Plain statements of what each Llama learned, derived from the numbers (no hand-written claims)."""
    lines = []
    for _, r in icl.iterrows():
        model = f"{int(r['llama_params']):,}-parameter Llama, {int(r['lm_steps'])} steps"
        if r["target"] != "fair":
            lines.append(f"- `{r['tag']}` (unbounded permutations; {model}): no fair reference exists; the gap shown is"
                         f" to the privileged oracle ({_pm(r['gap_model_late'], r['gap_model_late_ci'])} nats late), an"
                         " upper bound on the gap to the (uncomputable) fair optimum.")
            continue
        beats = r["model_minus_bigram_late"] + r["model_minus_bigram_late_ci"] < 0
        falls = r["gap_model_late"] + r["gap_model_late_ci"] < r["gap_model_early"] - r["gap_model_early_ci"]
        met = r["gap_model_late"] <= goal
        what = ("predicts better than in-context bigram counting" if beats
                else "does not beat in-context bigram counting")
        found = identified_by(curves, r["tag"]) if curves is not None and r["pool"] != 1 else None
        member = (f" The fair optimum's posterior of the true pool member reaches 0.9 at position {found}."
                  if found else "")
        lines.append(
            f"- `{r['tag']}` (pool M = {r['pool']}; {model}): CE falls from {r['ce_model_pos1']:.3f} at position 1 to"
            f" {r['ce_model_late']:.3f} late (fair optimum {r['ce_fair_pos1']:.3f} -> {r['ce_fair_late']:.3f}). Gap to"
            f" the fair optimum: early {_pm(r['gap_model_early'], r['gap_model_early_ci'])}, late"
            f" {_pm(r['gap_model_late'], r['gap_model_late_ci'])} nats/token"
            f" ({'falling' if falls else 'not significantly falling'} with position); at late positions the Llama"
            f" {what} (Llama - bigram-IC {_pm(r['model_minus_bigram_late'], r['model_minus_bigram_late_ci'])})."
            f"{member} Goal late gap <= {goal}: {'met' if met else 'not met'}.")
    return lines


def throughput_table(cfg: ReportConfig) -> pd.DataFrame:
    rows = []
    for point, perms, sample_dir in zip(cfg.icl_points, cfg.icl_permutations, cfg.sample_dirs):
        perf = _read(str(Path(sample_dir) / "perf.json"))
        rows.append({"tag": f"{point.tag}-{perms.tag}", "tokens": perf["tokens"], "seconds": perf["seconds"],
                     "tokens_per_s": perf["tokens_per_s"], "batch_sequences": perf["batch_sequences"]})
    return pd.DataFrame(rows)


def _plot_curves(curves: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tags = list(dict.fromkeys(curves["tag"]))
    fig, axes = plt.subplots(3, len(tags), figsize=(4.5 * len(tags), 10), squeeze=False)
    for j, tag in enumerate(tags):
        c = curves[curves["tag"] == tag]
        pos = c["position"]
        ax = axes[0, j]
        for col, label, style in (("ce_model", "Llama", "-"), ("ce_fair", "fair optimum (mixture forward)", "-"),
                                  ("ce_oracle", "oracle (knows the permutation)", "-."),
                                  ("ce_unigram_ic", "in-context unigram", "--"),
                                  ("ce_bigram_ic", "in-context bigram", ":")):
            if col in c:
                ax.plot(pos, c[col], style, label=label)
                ax.fill_between(pos, c[col] - c[col + "_ci"], c[col] + c[col + "_ci"], alpha=0.2)
        ax.set_title(tag)
        ax.set_xlabel("position")
        ax.set_ylabel("cross-entropy (nats)")
        ax.legend(fontsize=7)
        ax = axes[1, j]
        target = "fair optimum" if "ce_fair" in c else "oracle"
        for col, label in (("gap_model", f"Llama - {target}"), ("gap_bigram_ic", f"bigram-IC - {target}")):
            ax.plot(pos, c[col], label=label)
            ax.fill_between(pos, c[col] - c[col + "_ci"], c[col] + c[col + "_ci"], alpha=0.2)
        ax.axhline(0.05, color="grey", lw=0.8, ls="--", label="0.05 nats")
        ax.axhline(0.0, color="black", lw=0.5)
        ax.set_xlabel("position")
        ax.set_ylabel("CE gap (nats)")
        ax.set_yscale("symlog", linthresh=0.05)
        ax.legend(fontsize=7)
        ax = axes[2, j]
        if "p_true_member" in c:
            ax.plot(pos, c["p_true_member"], label="p(true pool member | prefix)")
            ax.fill_between(pos, c["p_true_member"] - c["p_true_member_ci"],
                            c["p_true_member"] + c["p_true_member_ci"], alpha=0.2)
            ax.set_ylim(0, 1.02)
        ax.set_xlabel("position")
        ax.set_ylabel("posterior of the true member")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90, metadata={"Software": None})
    plt.close(fig)


def _plot_fit(cfg: ReportConfig, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for point, hist_path in zip(cfg.points, cfg.fit_histories):
        hist = pd.read_csv(hist_path)
        if "val_loglik_per_token" in hist:
            ax.plot(hist["epoch"], hist["val_loglik_per_token"], marker="o", ms=3, label=point.tag)
    ax.set_xlabel("EM epoch")
    ax.set_ylabel("validation log-likelihood / token")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)


def em_sections(cfg: ReportConfig, grid: pd.DataFrame, out: Path) -> list[str]:
    """The seed's EM experiments: update_freq scan, unique vs duplicated data, hidden x length heatmap."""
    lines: list[str] = []
    tables = {Path(t).stem: pd.read_csv(t) for t in cfg.em_tables}
    if "update_freq" in tables:
        t = tables["update_freq"]
        best = t.loc[t["val_loglik_per_token"].idxmax()]
        lines += ["## EM: update_freq scan (M-step every N mini-batches; `epoch` = classic EM)", "",
                  "Same data, seed and epochs; final log-likelihood per token against the number of M-steps.",
                  "`train_loglik_per_token`: mean over the last epoch's mini-batches, each scored before its window's",
                  "M-step; `val_loglik_per_token`: the final parameters on the validation split (with inertia 0 the last",
                  "M-step refits the parameters to its own window only, so small windows can overfit it).", "",
                  _md(t), "",
                  f"Best validation log-likelihood: update_freq = {best['update_freq']} ({best['updates']} M-steps,"
                  f" {best['val_loglik_per_token']:.4f}/token); spread over the scan"
                  f" {t['val_loglik_per_token'].max() - t['val_loglik_per_token'].min():.4f} nats/token.", ""]
    if "duplicates" in tables:
        t = tables["duplicates"]
        base = float(t.loc[t["repeats"] == 1, "val_loglik_per_token"].iloc[0])
        t = t.assign(val_loss_vs_unique=base - t["val_loglik_per_token"])
        lines += ["## EM: unique vs duplicated training sequences at equal token count", "",
                  "`repeats` r: the first 1/r of the training sequences, each r times (r = 1: all unique).",
                  "`val_loss_vs_unique`: validation log-likelihood lost against the unique run (nats/token).", "",
                  _md(t), ""]
    if len(grid) and grid["H"].nunique() > 1 and grid["L"].nunique() > 1:
        _plot_heatmap(grid, out / "final_ce_heatmap.png")
        # one row per (K, H): a pivot on H alone would average different vocabularies together
        pivot = grid.pivot_table(index=["K", "H"], columns="L", values="hmm_final_ce")
        pivot.columns = [f"L={c}" for c in pivot.columns]
        lines += ["## Final-token cross-entropy: hidden states x sequence length (validation)", "",
                  _md(pivot.reset_index()), "", "![final-token CE heatmap](final_ce_heatmap.png)", ""]
    return lines


def _plot_heatmap(grid: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ks = sorted(grid["K"].unique())
    fig, axes = plt.subplots(1, len(ks), figsize=(4.5 * len(ks), 3.6), squeeze=False)
    for ax, k in zip(axes[0], ks):
        pivot = grid[grid["K"] == k].pivot_table(index="H", columns="L", values="hmm_final_ce")
        im = ax.imshow(pivot.values, cmap="viridis_r", aspect="auto")
        ax.set_xticks(range(len(pivot.columns)), [str(c) for c in pivot.columns])
        ax.set_yticks(range(len(pivot.index)), [str(i) for i in pivot.index])
        for (i, j), v in np.ndenumerate(pivot.values):
            ax.text(j, i, f"{v:.3f}", ha="center", va="center", color="white", fontsize=8)
        ax.set_xlabel("sequence length L")
        ax.set_ylabel("hidden states H")
        ax.set_title(f"final-token CE (nats), K = {k}")
        fig.colorbar(im, ax=ax)
    fig.tight_layout()
    fig.savefig(path, dpi=90, metadata={"Software": None})
    plt.close(fig)


def _md(frame: pd.DataFrame) -> str:
    # object dtype keeps integer columns integers (a numeric-only frame would reach tabulate as floats)
    return frame.astype(object).to_markdown(index=False, floatfmt=".4f") if len(frame) else "_(none)_"


def throughput_markdown(perf: pd.DataFrame) -> str:
    return "\n".join([
        "# hmm_icl: sampler throughput (machine-dependent: changes on every run)", "",
        "Wall-clock rate of the sample stage (all splits, shards written and hashed) on the machine",
        "that last ran `dvc repro`. For the ratio against a per-token reference loop run",
        "`python benchmarks/bench_hmm_sampler.py`.", "",
        _md(perf), "",
    ])


QUESTION = ("Does a small Llama trained on text sampled from an HMM learn in context, and how close does it get to"
            " the fair Bayes-optimal predictor (the one that does not know the sequence's emission permutation)?")


def answer(icl: pd.DataFrame, curves: pd.DataFrame | None = None) -> tuple[bool, str]:
    """Answered when some measurement has a fair reference and a Llama above chance; else why not."""
    if not len(icl):
        return False, "No ICL measurement in this profile."
    fair = icl[icl["target"] == "fair"]
    if not len(fair):
        return False, "Every measurement uses unbounded permutations, which have no fair reference."
    lines = verdicts(icl, curves)
    at_chance = [r["tag"] for _, r in icl.iterrows() if r["ce_model_late"] >= 0.98 * math.log(r["K"])]
    if at_chance:
        return False, (f"the Llama of {', '.join(at_chance)} is at chance (CE >= 98% of log K): a plumbing run,"
                       " not a result.\n\n" + "\n".join(lines))
    return True, "Per measurement (95% CIs over held-out sequences):\n\n" + "\n".join(lines)


def markdown(grid: pd.DataFrame, icl: pd.DataFrame, extra: list[str] | None = None,
             curves: pd.DataFrame | None = None) -> str:
    answered, text = answer(icl, curves)
    lines = [
        report_preamble("hmm_icl results", QUESTION, answered, text).rstrip(), "",
        "Generated by `dvc repro` (stage `hmm_icl-report`); do not edit by hand.", "",
        "## HMM grid (validation split of the word-level corpus)", "",
        "`val_ll`: log-likelihood per token; `*_ce`: cross-entropy per token over all positions, `*_final_ce`: of the",
        "last token of each length-L sequence (nats); `kl_*`: mean KL(p_HMM || baseline) of the next-token",
        "distributions over all positions; uniform / unigram / bigram fitted on the training split (add-one).", "",
        _md(grid), "",
        "## In-context learning: Llama vs the fair Bayes-optimal predictor (held-out sampled sequences)", "",
        "Each sequence's emission ids are relabelled by a permutation drawn uniformly from a pool of M permutations",
        "fixed by the seed (M = 1: none). **fair** = the Bayes-optimal predictor that does not know which member:",
        "the mixture forward algorithm over the pool (posterior over members updated token by token). **oracle** =",
        "knows the permutation (a lower bound no learner reaches early). With unbounded permutations (a fresh one",
        "per sequence) the fair optimum is a sum over K! maps and is not computed; gaps are then to the oracle.", "",
        "Gaps (nats/token, mean ± 95% CI over sequences) of the Llama to the target: position 1 alone (no",
        "context), and the `window` positions right after it (early) and at the end (late).", "",
        _md(gap_table(icl)), "",
        "Cross-entropy of every predictor (nats/token):", "",
        _md(ce_table(icl)), "",
        "![per-position CE, gaps and member posterior](icl_curves.png)", "",
        "![EM convergence](fit_history.png)", "",
        *(extra or []),
        "## Sampler throughput", "",
        "Machine-dependent, so kept out of this file: see [sampler_throughput.md](sampler_throughput.md)",
        "and `python benchmarks/bench_hmm_sampler.py` (vectorised sampler vs a per-token loop).", "",
    ]
    return "\n".join(lines)


def run(cfg: ReportConfig) -> None:
    grid = grid_table(cfg)
    icl, curves = icl_table(cfg)
    perf = throughput_table(cfg)
    with atomic_path(cfg.out_dir) as tmp:
        tmp.mkdir()
        grid.to_csv(tmp / "grid.csv", index=False, float_format="%.6g", lineterminator="\n")
        icl.to_csv(tmp / "icl.csv", index=False, float_format="%.6g", lineterminator="\n")
        curves.to_csv(tmp / "icl_curves.csv", index=False, float_format="%.6g", lineterminator="\n")
        if len(curves):
            _plot_curves(curves, tmp / "icl_curves.png")
        _plot_fit(cfg, tmp / "fit_history.png")
        extra = em_sections(cfg, grid, tmp)
        for t in cfg.em_tables:
            pd.read_csv(t).to_csv(tmp / f"em_{Path(t).stem}.csv", index=False, float_format="%.6g", lineterminator="\n")
        (tmp / "RESULTS.md").write_text(markdown(grid, icl, extra, curves))
        (tmp / "sampler_throughput.md").write_text(throughput_markdown(perf))
    print(f"report: {len(grid)} HMMs, {len(icl)} ICL measurements -> {cfg.out_dir}", flush=True)
