"""Scaling tables: the readers of the published sources and the gate that rejects bad tables.

The published files are the copies in ``published/scaling/`` (with their provenance note), so
every test runs on a clean clone. Each bad-table test breaks one row of an otherwise valid
table and checks the gate names that column and that row; ``test_scaling_malformed.py`` breaks
every reader's input in every way a file arrives broken.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from harness.validation import GateFailure
from stages.scaling.configs import CsvSource, EpochSource, MisfittingSource, PorianSource, Selection, TableConfig
from stages.scaling.gate import validate_table
from stages.scaling.table import prepare, run as table_stage
from stages.scaling.tables import TableError, read_epoch, read_misfitting, read_porian, read_runs_csv

from conftest import REPO

SCALING = REPO / "published" / "scaling"
EPOCH = SCALING / "chinchilla_epoch_extracted.csv"
MISFIT = SCALING / "misfitting_scaling_results.csv"
PORIAN = SCALING / "porian_summary_df.pickle.xz"


def good_table() -> pd.DataFrame:
    n = np.repeat([1e7, 3e7, 1e8], 3)
    d = np.tile([1e9, 3e9, 1e10], 3)
    return pd.DataFrame({"run": np.repeat(["r0", "r1", "r2"], 3), "N": n, "N_no_emb": n / 2, "D": d,
                         "loss": 2 + 400 / n**0.3 + 400 / d**0.3})


@pytest.mark.parametrize("column,value,expectation", [
    ("N", -5.0, "expect_column_values_to_be_between"),
    ("D", 0.0, "expect_column_values_to_be_between"),
    ("D", np.nan, "expect_column_values_to_not_be_null"),
    ("loss", np.inf, "expect_column_values_to_be_between"),
    ("loss", np.nan, "expect_column_values_to_not_be_null"),
])
def test_gate_rejects_bad_value_naming_column_and_row(tmp_path, column, value, expectation):
    frame = good_table()
    frame.loc[4, column] = value
    path = tmp_path / "runs.csv"
    frame.to_csv(path, index=False)
    cfg = TableConfig(name="bad", source=CsvSource(path=str(path)), out=str(tmp_path / "t.parquet"),
                      reference_out=str(tmp_path / "r.json"), metrics=str(tmp_path / "m.json"))
    with pytest.raises(GateFailure) as info:
        table_stage(cfg)
    hits = [f for f in info.value.failures if f["column"] == column and f["expectation"] == expectation]
    assert hits and hits[0]["rows"] == [4], info.value.failures
    assert f"column `{column}`" in str(info.value)
    assert not (tmp_path / "t.parquet").exists(), "nothing downstream may be written when the gate fails"


def test_reader_names_a_missing_column(tmp_path):
    path = tmp_path / "runs.csv"
    good_table().drop(columns=["loss"]).to_csv(path, index=False)
    with pytest.raises(TableError, match=r"missing column\(s\) \['loss'\]"):
        read_runs_csv(path)


def test_gate_rejects_a_run_listed_twice():
    frame = good_table()
    frame = pd.concat([frame, frame.iloc[[2]]], ignore_index=True)  # r0's last checkpoint again
    with pytest.raises(GateFailure) as info:
        validate_table("dup", frame, ["run", "D"])
    (failure,) = info.value.failures
    assert failure["expectation"] == "expect_compound_columns_to_be_unique"
    assert sorted(failure["rows"]) == [2, 9]


def test_epoch_reader_derives_tokens_from_compute():
    table = read_epoch(EPOCH)
    raw = pd.read_csv(EPOCH)
    assert len(table.frame) == len(raw) == 245
    np.testing.assert_allclose(6 * table.frame["N"] * table.frame["D"], raw["C"], rtol=1e-12)
    assert table.frame["run"].is_unique


def test_misfitting_duplicates_fail_the_gate_unless_dropped(tmp_path):
    base = dict(name="misfit", source=MisfittingSource(path=str(MISFIT)), out=str(tmp_path / "t.parquet"),
                reference_out=str(tmp_path / "r.json"), metrics=str(tmp_path / "m.json"))
    with pytest.raises(GateFailure, match="compound_columns_to_be_unique"):
        prepare(TableConfig(**base))
    table, info = prepare(TableConfig(**base, select=Selection(duplicates="drop", best_over=["peak_lr"])))
    raw = read_misfitting(MISFIT).frame
    expected_dups = raw.duplicated(["run", "step"], keep=False).sum()
    assert info["duplicate_rows"] == expected_dups > 0
    # best_over peak_lr: one learning rate per (model, sweep, steps, epochs) configuration
    configs = table.frame.drop_duplicates("run")[["model", "sweep", "total_steps", "total_epochs"]]
    assert not configs.duplicated().any()
    assert np.isfinite(table.frame["N_no_emb"]).all() and (table.frame["N_no_emb"] < table.frame["N"]).all()


def test_porian_reader_explodes_one_configuration_and_keeps_published_exponents():
    table = read_porian(PORIAN, {"hparams": "tuned"})
    summary = pd.read_pickle(PORIAN)
    row = summary[summary["hparams"] == "tuned"].iloc[0]
    assert len(table.frame) == sum(len(r["orig_n"]) for _, r in row["data"].iterrows())
    # the IsoFLOP design: every run sits on its budget, C = 6 N D
    np.testing.assert_allclose(6 * table.frame["N"] * table.frame["D"], table.frame["budget"], rtol=1e-3)
    assert table.reference["a"]["value"] == pytest.approx(row["fit_results"]["weighted"]["n_exponent"])
    assert table.reference["a"]["ci_low"] < table.reference["a"]["value"] < table.reference["a"]["ci_high"]
    with pytest.raises(TableError, match="matches 4 rows"):
        read_porian(PORIAN, {"hparams": "base"})


def test_table_stage_writes_gated_selection(tmp_path):
    cfg = TableConfig(name="epoch", source=EpochSource(path=str(EPOCH)), select=Selection(drop_highest_loss=5),
                      out=str(tmp_path / "t.parquet"), reference_out=str(tmp_path / "r.json"),
                      metrics=str(tmp_path / "m.json"))
    table_stage(cfg)
    frame = pd.read_parquet(cfg.out)
    raw = pd.read_csv(EPOCH)
    assert len(frame) == 240 and frame["loss"].max() == pytest.approx(np.sort(raw["loss"])[-6])
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["rows_read"] == 245 and metrics["rows"] == 240
