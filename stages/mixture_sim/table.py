"""Stage `table`: build the simulator table (from per-run rows or an external file) and gate it.

Nothing is written unless the Great Expectations suite passes, so a bad table stops the DAG
before any split or regressor exists.
"""

from __future__ import annotations

from harness.io import write_json
from stages.mixture_sim.configs import TableStageConfig
from stages.mixture_sim.gate import gate_table
from stages.mixture_sim.tableio import normalise, read_external, read_parquet, write_parquet


def load_table(cfg: TableStageConfig):
    """The raw table, before the gate: concatenated run rows, or the external file."""
    import pandas as pd

    if cfg.source is not None:
        return read_external(cfg.source, cfg.table)
    return pd.concat([read_parquet(f) for f in cfg.run_files], ignore_index=True)


def run(cfg: TableStageConfig) -> None:
    frame = load_table(cfg)
    origin = ", ".join(cfg.source.files) if cfg.source is not None else f"{len(cfg.run_files)} generated runs"
    print(f"table: {len(frame)} rows from {origin}; validating", flush=True)
    if cfg.table.run in frame.columns:  # run ids are strings; a missing id stays missing for the gate
        run_col = frame[cfg.table.run]
        frame[cfg.table.run] = run_col.where(run_col.isna(), run_col.astype(str))
    report = gate_table(frame, cfg.table)
    table = normalise(frame[cfg.table.columns], cfg.table)
    write_parquet(cfg.out, table)
    write_json(cfg.gate_report, report)
    from stages.mixture_sim.splits import mixture_keys

    metrics = {"rows": len(table), "runs": int(table[cfg.table.run].nunique()),
               "mixtures": len(set(mixture_keys(table, cfg.table))), "domains": len(cfg.table.domains),
               "targets": len(cfg.table.targets), "expectations_passed": len(report["expectations"])}
    for what, column in (("size", cfg.table.size), ("step", cfg.table.step)):
        if column is not None:
            metrics[f"{what}s"] = int(table[column].nunique())
            metrics[f"{what}_range"] = [float(table[column].min()), float(table[column].max())]
    # the outcomes themselves, summarised: what every later score is computed from, so a changed
    # training result (a knob, the code, another machine's rounding) shows here before it shows in
    # the scores of small splits, which amplify it
    metrics["target_summary"] = {t: {"mean": float(table[t].mean()), "min": float(table[t].min()),
                                     "max": float(table[t].max())} for t in cfg.table.target_names}
    if cfg.table.subset is not None:
        metrics["subsets"] = {str(k): int(v) for k, v in table[cfg.table.subset].value_counts().sort_index().items()}
    write_json(cfg.metrics, metrics)
    print(f"table: {len(table)} rows, {table[cfg.table.run].nunique()} runs passed the gate", flush=True)
