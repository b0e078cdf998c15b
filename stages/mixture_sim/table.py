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
    origin = cfg.source.path if cfg.source is not None else f"{len(cfg.run_files)} generated runs"
    print(f"table: {len(frame)} rows from {origin}; validating", flush=True)
    if cfg.table.run in frame.columns:  # run ids are strings; a missing id stays missing for the gate
        run_col = frame[cfg.table.run]
        frame[cfg.table.run] = run_col.where(run_col.isna(), run_col.astype(str))
    report = gate_table(frame, cfg.table)
    table = normalise(frame[cfg.table.columns], cfg.table)
    write_parquet(cfg.out, table)
    write_json(cfg.gate_report, report)
    write_json(cfg.metrics, {
        "rows": len(table),
        "runs": int(table[cfg.table.run].nunique()),
        "sizes": int(table[cfg.table.size].nunique()),
        "size_range": [float(table[cfg.table.size].min()), float(table[cfg.table.size].max())],
        "steps": int(table[cfg.table.step].nunique()),
        "step_range": [float(table[cfg.table.step].min()), float(table[cfg.table.step].max())],
        "expectations_passed": len(report["expectations"]),
    })
    print(f"table: {len(table)} rows, {table[cfg.table.run].nunique()} runs passed the gate", flush=True)
