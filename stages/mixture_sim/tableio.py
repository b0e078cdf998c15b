"""Reading and writing simulator tables (Parquet via pyarrow), and reading external ones.

Why a separate module: the table stage, the splits stage and the tests all need the same
conventions (run ids are strings, rows sorted by (run, step), atomic Parquet writes).
"""

from __future__ import annotations

from pathlib import Path

from harness.io import atomic_path
from stages.mixture_sim.configs import ExternalSource, TableSchema


def write_parquet(target: str | Path, frame) -> Path:
    """Atomic Parquet write without the pandas index (row order is the data's order)."""
    with atomic_path(target) as tmp:
        frame.to_parquet(tmp, index=False, engine="pyarrow")
    return Path(target)


def read_parquet(path: str | Path):
    import pandas as pd

    return pd.read_parquet(path, engine="pyarrow")


def normalise(frame, schema: TableSchema):
    """String run ids and a stable (run, step) order, so identical tables are identical bytes."""
    frame = frame.copy()
    frame[schema.run] = frame[schema.run].astype(str)
    return frame.sort_values(schema.key_columns, kind="mergesort").reset_index(drop=True)


def _read_one(path: str | Path, format: str):
    import pandas as pd

    path = Path(path)
    fmt = format if format != "auto" else ("parquet" if path.suffix in (".parquet", ".pq") else "csv")
    return pd.read_parquet(path, engine="pyarrow") if fmt == "parquet" else pd.read_csv(path)


def _read_part(name: str, files: list[str], source: ExternalSource, schema: TableSchema):
    """The files of one part joined on ``join_on``; the run id is ``<part>-<id>``.

    An inner join would silently drop a row missing from one file; the join is ``outer`` so such
    a row arrives with NaNs and the gate names it. A key repeated within a file yields repeated
    run ids, which the gate's uniqueness expectation names.
    """
    key = source.join_on
    frame = None
    for path in files:
        part = _read_one(path, source.format)
        if key not in part.columns:
            raise ValueError(f"{path}: no join column `{key}` (columns: {list(part.columns)[:8]} ...)")
        frame = part if frame is None else frame.merge(part, on=key, how="outer")
    frame = frame.copy()
    frame[schema.run] = [f"{name}-{v}" for v in frame[key]]
    if schema.subset is not None:
        frame[schema.subset] = name
    return frame


def read_external(source: ExternalSource, schema: TableSchema):
    """Load a CSV/Parquet table, rename its columns, rescale sizes, and derive run ids if absent.

    A table without a run column (the seed's exports have none) gets one run per distinct
    (proportions, size, shape) tuple: the rows of one training run share exactly those values.
    Extra columns are kept here (the gate only requires the schema's); the caller selects.
    """
    import pandas as pd

    if source.path is not None:
        frame = _read_one(source.path, source.format)
    else:
        frame = pd.concat([_read_part(name, files, source, schema) for name, files in source.parts.items()],
                          ignore_index=True)
    frame = frame.rename(columns=source.rename)
    if schema.size in frame.columns and source.size_multiplier != 1.0:
        frame[schema.size] = frame[schema.size] * source.size_multiplier
    if schema.run not in frame.columns:
        keys = [c for c in [*schema.domains, schema.size, *schema.shape] if c in frame.columns]
        ids = frame.groupby(keys, sort=True, dropna=False).ngroup() if keys else pd.Series(0, index=frame.index)
        frame[schema.run] = [f"run{int(i):04d}" for i in ids]
    return frame
