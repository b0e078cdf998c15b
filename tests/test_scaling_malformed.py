"""Every scaling-table reader against a malformed input: a clear error, never a traceback or a fit.

Four ways a published table arrives broken, for each of the four readers (Epoch, Misfitting,
Porian, a runs CSV): a required column is missing, a value is NaN, a value is negative, the file
is truncated. Each is run through the table stage's own ``prepare`` (reader, duplicate policy,
Great Expectations gate), and must fail with ``TableError`` (the reader: which file, which
column, what was expected) or ``GateFailure`` (the gate: which expectation, column and rows),
which ``harness run`` reports as a clear message with exit code 2.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness.validation import GateFailure
from stages.scaling.configs import CsvSource, EpochSource, MisfittingSource, PorianSource, Selection, TableConfig
from stages.scaling.table import prepare
from stages.scaling.tables import TableError

BAD = (TableError, GateFailure)

from conftest import REPO

PUBLISHED = REPO / "published" / "scaling"
PORIAN_CONFIG = {"hparams": "tuned", "warmup": "short", "decay": "const"}


def _config(tmp_path: Path, kind: str, path: Path) -> TableConfig:
    source = {"epoch": EpochSource(path=str(path)), "misfitting": MisfittingSource(path=str(path)),
              "porian": PorianSource(path=str(path), config=PORIAN_CONFIG), "csv": CsvSource(path=str(path))}[kind]
    select = Selection(duplicates="drop") if kind == "misfitting" else Selection()
    return TableConfig(name=f"bad-{kind}", source=source, select=select, out=str(tmp_path / "t.parquet"),
                       reference_out=str(tmp_path / "r.json"), metrics=str(tmp_path / "m.json"))


def _csv_sources(tmp_path: Path) -> dict[str, tuple[pd.DataFrame, str, str]]:
    """kind -> (a valid frame, the loss-like column to break, a required column to drop)."""
    runs = pd.DataFrame({"run": np.repeat(["r0", "r1", "r2"], 3), "N": np.repeat([1e7, 3e7, 1e8], 3),
                         "D": np.tile([1e9, 3e9, 1e10], 3)})
    runs["loss"] = 2 + 400 / runs["N"] ** 0.3 + 400 / runs["D"] ** 0.3
    return {
        "epoch": (pd.read_csv(PUBLISHED / "chinchilla_epoch_extracted.csv"), "loss", "C"),
        # the first 400 checkpoints keep the test fast; they are a valid table on their own
        "misfitting": (pd.read_csv(PUBLISHED / "misfitting_scaling_results.csv").head(400), "loss", "N_no_emb"),
        "csv": (runs, "loss", "D"),
    }


def _write_csv(frame: pd.DataFrame, path: Path) -> Path:
    frame.to_csv(path, index=False)
    return path


_SUMMARY: list[pd.DataFrame] = []


def _porian_summary() -> pd.DataFrame:
    """A fresh copy of the published summary (decompressed once per test session)."""
    if not _SUMMARY:
        _SUMMARY.append(pd.read_pickle(PUBLISHED / "porian_summary_df.pickle.xz"))
    return _SUMMARY[0].copy(deep=True)


def _porian_row(summary: pd.DataFrame) -> int:
    mask = np.ones(len(summary), dtype=bool)
    for key, value in PORIAN_CONFIG.items():
        mask &= summary[key].astype(str).to_numpy() == value
    return int(np.flatnonzero(mask)[0])


@pytest.mark.parametrize("kind", ["epoch", "misfitting", "csv"])
def test_csv_readers_name_the_missing_column(tmp_path, kind):
    frame, _, required = _csv_sources(tmp_path)[kind]
    path = _write_csv(frame.drop(columns=[required]), tmp_path / f"{kind}.csv")
    with pytest.raises(BAD, match=rf"{path.name}.*missing column\(s\) \['{required}'\]"):
        prepare(_config(tmp_path, kind, path))


@pytest.mark.parametrize("kind", ["epoch", "misfitting", "csv"])
def test_csv_readers_reject_nan_and_negative_values_naming_column_and_rows(tmp_path, kind):
    """One NaN loss (row 4) and one negative loss (row 6): the gate reports both, with their rows."""
    frame, column, _ = _csv_sources(tmp_path)[kind]
    frame = frame.copy()
    frame.loc[frame.index[4], column] = np.nan
    frame.loc[frame.index[6], column] = -1.0
    path = _write_csv(frame, tmp_path / f"{kind}.csv")
    with pytest.raises(GateFailure) as err:
        prepare(_config(tmp_path, kind, path))
    message = str(err.value)
    assert "expect_column_values_to_not_be_null on column `loss`" in message and "[4]" in message
    assert "expect_column_values_to_be_between on column `loss`" in message and "[6]" in message


@pytest.mark.parametrize("kind", ["epoch", "misfitting", "csv"])
@pytest.mark.parametrize("keep", [0.5, 0.0], ids=["cut-mid-row", "empty"])
def test_csv_readers_reject_a_truncated_file(tmp_path, kind, keep):
    frame, _, _ = _csv_sources(tmp_path)[kind]
    text = frame.to_csv(index=False)
    cut = int(len(text) * keep)
    if keep:  # cut inside a row: the last row loses its trailing fields
        line_start = text.rfind("\n", 0, cut) + 1
        cut = line_start + 3
    path = tmp_path / f"{kind}.csv"
    path.write_text(text[:cut])
    with pytest.raises(BAD, match=rf"{path.name}|expect_column_values_to_not_be_null") as err:
        prepare(_config(tmp_path, kind, path))
    message = str(err.value)
    if not keep:
        assert "cannot read CSV" in message
    else:  # the cut row's missing fields: the reader (a run key) or the gate (a value) names them
        assert "not_be_null" in message or "truncated or incomplete" in message


def test_porian_reader_names_a_missing_column(tmp_path):
    summary = _porian_summary().drop(columns=["fit_results"])
    path = tmp_path / "porian.pickle"
    summary.to_pickle(path)
    with pytest.raises(BAD, match=r"porian.pickle: missing column\(s\) \['fit_results'\]"):
        prepare(_config(tmp_path, "porian", path))
    summary = _porian_summary()
    row = _porian_row(summary)
    summary.at[summary.index[row], "data"] = summary.iloc[row]["data"].drop(columns=["orig_loss"])
    summary.to_pickle(path)
    with pytest.raises(BAD, match=r"its `data` table\): missing column\(s\) \['orig_loss'\]"):
        prepare(_config(tmp_path, "porian", path))


def test_porian_reader_rejects_nan_and_negative_values(tmp_path):
    summary = _porian_summary()
    row = _porian_row(summary)
    data = summary.at[summary.index[row], "data"].copy()
    first = data.index[0]
    loss = np.array(data.at[first, "orig_loss"], dtype=np.float64, copy=True)
    n = np.array(data.at[first, "orig_n"], dtype=np.float64, copy=True)
    loss[1], n[2] = np.nan, -3.0e7
    data.at[first, "orig_loss"], data.at[first, "orig_n"] = loss, n
    summary.at[summary.index[row], "data"] = data
    path = tmp_path / "porian.pickle"
    summary.to_pickle(path)
    with pytest.raises(GateFailure) as err:
        prepare(_config(tmp_path, "porian", path))
    message = str(err.value)
    assert "expect_column_values_to_not_be_null on column `loss`" in message and "[1]" in message
    assert "expect_column_values_to_be_between on column `N`" in message and "[2]" in message


def test_porian_reader_rejects_a_truncated_file(tmp_path):
    path = tmp_path / "porian.pickle.xz"
    data = (PUBLISHED / "porian_summary_df.pickle.xz").read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(BAD, match=r"porian.pickle.xz: cannot read the Porian summary pickle"):
        prepare(_config(tmp_path, "porian", path))


def test_a_missing_file_is_named(tmp_path):
    for kind in ("epoch", "misfitting", "csv", "porian"):
        path = tmp_path / f"absent-{kind}"
        with pytest.raises(BAD, match=str(path.name)):
            prepare(_config(tmp_path, kind, path))


def test_the_published_copies_are_intact():
    """The copies are the source's bytes (sha256 in published/scaling/README.md)."""
    import hashlib

    readme = (PUBLISHED / "README.md").read_text()
    for name in ("chinchilla_epoch_extracted.csv", "misfitting_scaling_results.csv", "porian_summary_df.pickle.xz",
                 "misfitting_fit_results_final_1b.json"):
        digest = hashlib.sha256((PUBLISHED / name).read_bytes()).hexdigest()
        assert digest in readme, f"{name}: sha256 {digest} is not the one recorded in published/scaling/README.md"
