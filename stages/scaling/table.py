"""Stage ``scaling-table-<name>``: read one source, gate it, select rows, write the common frame.

Order matters: duplicates are resolved by the declared policy, then the gate runs on every row
the source has (a corrupt row must fail the stage even if a selection would have dropped it),
then the selections (best LR, final checkpoints, highest-loss runs) pick what the fits see.
"""

from __future__ import annotations

import numpy as np

from harness.io import atomic_path, write_json
from stages.scaling.configs import TableConfig
from stages.scaling.gate import validate_table
from stages.scaling.tables import (
    Table, TableError, best_over, drop_highest_loss_runs, duplicate_checkpoints, final_checkpoints, read_epoch,
    read_misfitting, read_porian, read_runs_csv,
)


def load_source(cfg: TableConfig) -> Table:
    src = cfg.source
    if src.kind == "epoch":
        return read_epoch(src.path)
    if src.kind == "misfitting":
        return read_misfitting(src.path)
    if src.kind == "porian":
        return read_porian(src.path, src.config)
    if src.kind == "csv":
        return read_runs_csv(src.path)
    if cfg.input is None:
        raise TableError(f"table {cfg.name}: a `{src.kind}` source needs the input file the plan resolves")
    return read_runs_csv(cfg.input, keys=["width", "lr"] if src.kind == "sweep" else None)


def prepare(cfg: TableConfig) -> tuple[Table, dict]:
    """Read, resolve duplicates, gate, select; returns the selected table and what happened."""
    table = load_source(cfg)
    frame = table.frame
    info: dict = {"rows_read": int(len(frame)), "runs_read": int(frame["run"].nunique())}
    dups = duplicate_checkpoints(table)
    info["duplicate_rows"] = int(dups.sum())
    if dups.any() and cfg.select.duplicates == "drop":
        frame = frame[~dups.to_numpy()].reset_index(drop=True)
        print(f"table {cfg.name}: dropped {int(dups.sum())} rows whose checkpoint {table.unique} is listed "
              f"more than once with policy duplicates=drop", flush=True)
    info["gate"] = validate_table(cfg.name, frame, table.unique)
    sel = cfg.select
    if sel.best_over:
        frame = best_over(frame, table.keys, sel.best_over)
    if sel.final_only:
        frame = final_checkpoints(frame)
    if sel.n_max is not None:
        frame = frame[frame["N"] < sel.n_max]
    frame = drop_highest_loss_runs(frame, sel.drop_highest_loss)
    info.update(rows=int(len(frame)), runs=int(frame["run"].nunique()),
                N_min=float(frame["N"].min()), N_max=float(frame["N"].max()),
                D_min=float(frame["D"].min()), D_max=float(frame["D"].max()),
                has_non_embedding=bool(np.isfinite(frame["N_no_emb"]).all()))
    return Table(frame=frame.reset_index(drop=True), unique=table.unique, keys=table.keys,
                 reference=table.reference), info


def run(cfg: TableConfig) -> None:
    table, info = prepare(cfg)
    with atomic_path(cfg.out) as tmp:
        table.frame.to_parquet(tmp, index=False)
    write_json(cfg.reference_out, table.reference)
    write_json(cfg.metrics, {k: v for k, v in info.items() if k != "gate"} | {"gate_expectations": len(info["gate"]["expectations"])})
    print(f"table {cfg.name}: {info['rows']} rows, {info['runs']} runs -> {cfg.out}", flush=True)
