"""The hmm_icl report: grid table, per-position CE / KL curves, sampler throughput (reproduced by CI).

``RESULTS.md`` and every CSV/PNG except ``sampler_throughput.md`` are deterministic on CPU and
must be byte-identical between runs. Throughput depends on the machine and its load, so it
lives in its own file, which is expected to change on every run.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from harness.io import atomic_path
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
            "hmm_ce": ev["hmm_ce"], "hmm_final_ce": ev["hmm_final_ce"],
            "uniform_final_ce": ev["uniform_final_ce"], "unigram_final_ce": ev["unigram_final_ce"],
            "bigram_final_ce": ev["bigram_final_ce"],
            "kl_uniform": ev["kl_from_uniform"], "kl_unigram": ev["kl_from_unigram"], "kl_bigram": ev["kl_from_bigram"],
        })
    return pd.DataFrame(rows)


def icl_table(cfg: ReportConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    rows, curves = [], []
    for point, lm_path, icl_path, curve_path in zip(cfg.icl_points, cfg.lm_metrics, cfg.icl_metrics, cfg.icl_curves):
        lm, icl = _read(lm_path), _read(icl_path)
        rows.append({
            "tag": point.tag, "permuted": icl["permuted"], "llama_params": lm["parameters"], "lm_steps": lm["steps"],
            "lm_dev_loss": lm["dev_loss"], "ce_model": icl["ce_model_mean"], "ce_optimal": icl["ce_optimal_mean"],
            "ce_unigram_ic": icl["ce_unigram_ic_mean"], "ce_bigram_ic": icl["ce_bigram_ic_mean"],
            "gap_early": icl["gap_early"], "gap_late": icl["gap_late"],
            "kl_early": icl["kl_early"], "kl_late": icl["kl_late"], "window": icl["window_positions"],
        })
        curve = pd.read_csv(curve_path)
        curve.insert(0, "tag", point.tag)
        curves.append(curve)
    return pd.DataFrame(rows), (pd.concat(curves, ignore_index=True) if curves else pd.DataFrame())


def throughput_table(cfg: ReportConfig) -> pd.DataFrame:
    rows = []
    for point, sample_dir in zip(cfg.icl_points, cfg.sample_dirs):
        perf = _read(str(Path(sample_dir) / "perf.json"))
        rows.append({"tag": point.tag, "tokens": perf["tokens"], "seconds": perf["seconds"],
                     "tokens_per_s": perf["tokens_per_s"], "batch_sequences": perf["batch_sequences"]})
    return pd.DataFrame(rows)


def _plot_curves(curves: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tags = list(dict.fromkeys(curves["tag"]))
    fig, axes = plt.subplots(2, len(tags), figsize=(5 * len(tags), 7), squeeze=False)
    for j, tag in enumerate(tags):
        c = curves[curves["tag"] == tag]
        ax = axes[0, j]
        for col, label, style in (("ce_model", "Llama", "-"), ("ce_optimal", "Bayes-optimal (HMM forward)", "-"),
                                  ("ce_unigram_ic", "in-context unigram", "--"),
                                  ("ce_bigram_ic", "in-context bigram", ":")):
            ax.plot(c["position"], c[col], style, label=label)
        ax.set_title(tag)
        ax.set_xlabel("position (tokens of context + 1)")
        ax.set_ylabel("cross-entropy (nats)")
        ax.legend(fontsize=7)
        ax = axes[1, j]
        ax.plot(c["position"], c["gap"], label="CE gap (Llama - optimal)")
        ax.plot(c["position"], c["kl_optimal_model"], "--", label="KL(optimal || Llama)")
        ax.plot(c["position"], c["kl_model_optimal"], ":", label="KL(Llama || optimal)")
        ax.set_xlabel("position")
        ax.set_ylabel("nats")
        ax.set_yscale("symlog", linthresh=0.1)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100, metadata={"Software": None})
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


def _md(frame: pd.DataFrame) -> str:
    return frame.to_markdown(index=False, floatfmt=".4f") if len(frame) else "_(none)_"


def throughput_markdown(perf: pd.DataFrame) -> str:
    return "\n".join([
        "# hmm_icl: sampler throughput (machine-dependent: changes on every run)", "",
        "Wall-clock rate of the sample stage (all splits, shards written and hashed) on the machine",
        "that last ran `dvc repro`. For the ratio against a per-token reference loop run",
        "`python benchmarks/bench_hmm_sampler.py`.", "",
        _md(perf), "",
    ])


def markdown(grid: pd.DataFrame, icl: pd.DataFrame) -> str:
    lines = [
        "# hmm_icl results", "",
        "Generated by `dvc repro` (stage `hmm_icl-report`); do not edit by hand.", "",
        "## HMM grid (validation split of the word-level corpus)", "",
        "`val_ll`: log-likelihood per token; `*_final_ce`: cross-entropy of the last token of each length-L",
        "sequence (nats); `kl_*`: mean KL(p_HMM || baseline) of the next-token distributions over all",
        "positions; baselines fitted on the training split with add-one smoothing.", "",
        _md(grid), "",
        "## In-context learning: Llama vs the Bayes-optimal predictor (held-out sampled sequences)", "",
        "`gap_*`: CE(Llama) - CE(optimal) averaged over the first / last `window` positions; `kl_*`:",
        "KL(Llama || optimal) over the same positions. ICL shows as the gap shrinking with position.", "",
        _md(icl), "",
        "![per-position CE and KL](icl_curves.png)", "",
        "![EM convergence](fit_history.png)", "",
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
        (tmp / "RESULTS.md").write_text(markdown(grid, icl))
        (tmp / "sampler_throughput.md").write_text(throughput_markdown(perf))
    print(f"report: {len(grid)} HMMs, {len(icl)} ICL measurements -> {cfg.out_dir}", flush=True)
