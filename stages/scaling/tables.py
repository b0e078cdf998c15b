"""Readers that turn every (N, D, loss) source into one frame, and the run-level selections.

The common frame has one row per (run, checkpoint):

    run (str) · N (total parameters) · N_no_emb (non-embedding parameters, NaN if unknown) ·
    D (tokens) · loss · plus source-specific columns (``budget`` for IsoFLOP designs,
    ``peak_lr``, ``step`` ...)

Why one frame: the three approaches and the bootstrap only need (run, N, D, loss), so a new
source is one reader here, never a change to the fitting code. Values are *not* checked here:
a reader converts, the Great Expectations gate (``stages.scaling.gate``) rejects, so a bad
table fails with a message that names the column and the rows instead of a NumPy traceback.
Only a missing column is reported by the reader itself (there is nothing to validate then).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

#: the columns every source must end up with
CORE = ["run", "N", "N_no_emb", "D", "loss"]


class TableError(ValueError):
    """A table that cannot even be converted (missing file, column or configuration row)."""


@dataclass
class Table:
    frame: pd.DataFrame
    #: columns that together identify one checkpoint of one run (checked unique by the gate)
    unique: list[str]
    #: run-identifying columns beside the ones in ``run`` itself (used by ``best_over``)
    keys: list[str] = field(default_factory=list)
    #: published values shipped inside the source itself (Porian's fit results)
    reference: dict[str, Any] = field(default_factory=dict)


def _require(frame: pd.DataFrame, columns: list[str], where: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise TableError(f"{where}: missing column(s) {missing}; found {sorted(map(str, frame.columns))}")


def _numeric(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Coerce to float; non-numbers become NaN so the gate reports them as missing values."""
    for col in columns:
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype("float64")
    return frame


def read_epoch(path: str | Path) -> Table:
    """Besiroglu et al. (2024) extraction of Chinchilla's runs: N, C, loss; D = C / (6 N)."""
    raw = _read_csv(path)
    _require(raw, ["N", "C", "loss"], str(path))
    frame = _numeric(raw[["N", "C", "loss"]].copy(), ["N", "C", "loss"])
    with np.errstate(divide="ignore", invalid="ignore"):
        frame["D"] = frame["C"] / (6.0 * frame["N"])
    frame["run"] = [f"epoch-{i:03d}" for i in range(len(frame))]
    frame["N_no_emb"] = np.nan
    # one final point per run: two runs at the same (N, D) are the same run listed twice
    return Table(frame=frame[CORE + ["C"]], unique=["N", "D"])


MISFITTING_KEYS = ["model", "sweep", "peak_lr", "total_steps", "total_epochs"]


def read_misfitting(path: str | Path) -> Table:
    """Li, Kudugunta & Zettlemoyer (2025) checkpoints: a run is (model, sweep, lr, steps, epochs)."""
    raw = _read_csv(path)
    _require(raw, ["loss", "N", "N_no_emb", "D", "current_steps", *MISFITTING_KEYS], str(path))
    frame = raw[["loss", "N", "N_no_emb", "D", "current_steps", *MISFITTING_KEYS]].copy()
    frame = _numeric(frame, ["loss", "N", "N_no_emb", "D", "peak_lr"])
    unkeyed = frame[MISFITTING_KEYS].isna().any(axis=1).to_numpy()
    if unkeyed.any():
        rows = np.flatnonzero(unkeyed)
        raise TableError(f"{path}: {len(rows)} row(s) lack a run key ({MISFITTING_KEYS}); first rows "
                         f"{rows[:5].tolist()} (a truncated or incomplete file?)")
    frame["run"] = frame[MISFITTING_KEYS].astype(str).agg("|".join, axis=1)
    frame = frame.rename(columns={"current_steps": "step"})
    return Table(frame=frame[CORE + ["step", *MISFITTING_KEYS]], unique=["run", "step"], keys=MISFITTING_KEYS)


PORIAN_SELECT = ("dataset", "hparams", "warmup", "decay", "param_count", "val")


def read_porian(path: str | Path, config: dict[str, str]) -> Table:
    """Porian et al. (2024) summary: pick one configuration row, explode its IsoFLOP runs.

    Each row of the summary holds, per FLOP budget, the sizes (``orig_n``), tokens (``orig_t``)
    and losses (``orig_loss``) of the runs of that IsoFLOP profile, and the paper's own fits
    (``fit_results``: compute-optimal exponents, with bootstrap replicates).
    """
    import lzma
    import pickle

    try:
        summary = pd.read_pickle(path)
    except (OSError, ValueError, EOFError, lzma.LZMAError, pickle.UnpicklingError) as exc:
        raise TableError(f"{path}: cannot read the Porian summary pickle ({type(exc).__name__}: {exc}); "
                         "expected the xz-compressed pandas pickle of Porian et al.") from None
    if not isinstance(summary, pd.DataFrame):
        raise TableError(f"{path}: the pickle holds a {type(summary).__name__}, expected a pandas DataFrame")
    _require(summary, [*config, "data", "fit_results"], str(path))
    mask = np.ones(len(summary), dtype=bool)
    for key, value in config.items():
        mask &= summary[key].astype(str).to_numpy() == str(value)
    if mask.sum() != 1:
        choices = summary[[c for c in PORIAN_SELECT if c in summary.columns]].to_dict("records")
        raise TableError(f"{path}: configuration {config} matches {int(mask.sum())} rows (need exactly 1); "
                         f"rows are {choices}")
    row = summary[mask].iloc[0]
    where = f"{path} (row {config}, its `data` table)"
    if not isinstance(row["data"], pd.DataFrame):
        raise TableError(f"{where}: expected a DataFrame of IsoFLOP budgets, found {type(row['data']).__name__}")
    _require(row["data"], ["flops", "orig_n", "orig_t", "orig_loss"], where)
    parts = []
    for i, budget in row["data"].iterrows():
        try:
            n, t, loss = (np.asarray(budget[c], dtype=np.float64).reshape(-1) for c in ("orig_n", "orig_t", "orig_loss"))
        except (TypeError, ValueError) as exc:
            raise TableError(f"{where}, budget row {i}: orig_n/orig_t/orig_loss are not numeric arrays ({exc})") from None
        if not len(n) == len(t) == len(loss):
            raise TableError(f"{where}, budget row {i}: orig_n, orig_t, orig_loss have lengths "
                             f"{len(n)}, {len(t)}, {len(loss)}; expected one value per run in each")
        parts.append(pd.DataFrame({"N": n, "D": t, "loss": loss, "budget": float(budget["flops"])}))
    if not parts:
        raise TableError(f"{where}: no IsoFLOP budgets")
    frame = pd.concat(parts, ignore_index=True)
    frame["run"] = [f"{b:.4g}|{n:.0f}" for b, n in zip(frame["budget"], frame["N"])]
    frame["N_no_emb"] = np.nan
    return Table(frame=frame[CORE + ["budget"]], unique=["budget", "N"], reference=porian_reference(row))


def porian_reference(row: pd.Series) -> dict[str, Any]:
    """The paper's compute-optimal exponents for this configuration, with bootstrap percentiles."""
    fits = row["fit_results"]
    out: dict[str, Any] = {"config": {k: str(row[k]) for k in PORIAN_SELECT if k in row.index}}
    for key, name in (("n_exponent", "a"), ("t_exponent", "b")):
        boot = np.array([float(r[key]) for r in fits.get("bootstrap_weighted", []) if key in r])
        entry = {"value": float(fits["weighted"][key])}
        if len(boot):
            entry.update(ci_low=float(np.percentile(boot, 2.5)), ci_high=float(np.percentile(boot, 97.5)),
                         se=float(boot.std(ddof=1)), n_boot=int(len(boot)))
        out[name] = entry
    return out


def read_runs_csv(path: str | Path, keys: list[str] | None = None) -> Table:
    """A table in the common layout (the synthetic stage, the width sweeps, a user's CSV).

    ``keys`` names run-identifying columns (the sweeps' ``width`` and ``lr``) for ``best_over``.
    """
    raw = _read_csv(path)
    _require(raw, ["run", "N", "D", "loss"], str(path))
    frame = raw.copy()
    if "N_no_emb" not in frame.columns:
        frame["N_no_emb"] = np.nan
    frame = _numeric(frame, ["N", "N_no_emb", "D", "loss"])
    frame["run"] = frame["run"].astype(str)
    keys = list(keys or [])
    _require(frame, keys, str(path))
    extra = [c for c in frame.columns if c not in CORE]
    return Table(frame=frame[CORE + extra], unique=["run", "D"], keys=keys)


def _read_csv(path: str | Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise TableError(f"{path}: cannot read CSV: {exc}") from None


# -- run-level selections (applied after reading, before the gate) ---------------------------


def duplicate_checkpoints(table: Table) -> pd.Series:
    """Rows whose checkpoint identity (``table.unique``) occurs more than once."""
    return table.frame.duplicated(table.unique, keep=False)


def final_checkpoints(frame: pd.DataFrame) -> pd.DataFrame:
    """Keep each run's last checkpoint (most tokens)."""
    idx = frame.groupby("run", sort=True)["D"].idxmax()
    return frame.loc[np.sort(idx.to_numpy())].reset_index(drop=True)


def best_over(frame: pd.DataFrame, keys: list[str], over: list[str]) -> pd.DataFrame:
    """Among runs that differ only in the ``over`` columns, keep the one whose last loss is lowest.

    E.g. ``over=["peak_lr"]`` keeps, for every (model, steps, ...) configuration, the run at its
    best learning rate, as the compute-optimal fits assume tuned runs.
    """
    unknown = [c for c in over if c not in keys]
    if unknown:
        raise TableError(f"best_over: {unknown} are not run keys of this source; keys are {keys}")
    rest = [k for k in keys if k not in over]
    last = frame.loc[frame.groupby("run", sort=True)["D"].idxmax(), ["run", *keys, "loss"]]
    if rest:
        winners = last.sort_values(["loss", "run"], kind="stable").groupby(rest, sort=True, dropna=False).head(1)
    else:
        winners = last.sort_values(["loss", "run"], kind="stable").head(1)
    return frame[frame["run"].isin(set(winners["run"]))].reset_index(drop=True)


def drop_highest_loss_runs(frame: pd.DataFrame, count: int) -> pd.DataFrame:
    """Drop the ``count`` runs whose last loss is highest (Besiroglu et al. drop 5 of 245)."""
    if count <= 0:
        return frame
    last = frame.loc[frame.groupby("run", sort=True)["D"].idxmax(), ["run", "loss"]]
    worst = last.sort_values(["loss", "run"], ascending=[False, True], kind="stable").head(count)["run"]
    return frame[~frame["run"].isin(set(worst))].reset_index(drop=True)
