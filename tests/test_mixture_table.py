"""The simulator table's Great Expectations gate and its external-table reader.

Each corruption test breaks exactly one row of an otherwise valid table and checks that the
gate fails on the right expectation, on the right column, naming exactly that row.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from harness.validation import GateFailure
from stages.mixture_sim.configs import ExternalSource, TableSchema, TableStageConfig
from stages.mixture_sim.gate import SUM_COLUMN, gate_table
from stages.mixture_sim.synthetic import seed_schema, smooth_table
from stages.mixture_sim.table import run as table_stage
from stages.mixture_sim.tableio import read_external, read_parquet

@pytest.fixture(scope="module")
def schema() -> TableSchema:
    return seed_schema()


@pytest.fixture()
def table(schema) -> pd.DataFrame:
    return smooth_table(schema, n_mixtures=3, sizes=[(20e6, 256, 4), (60e6, 512, 8)], steps=[1000, 2000])


def failures_on(exc: GateFailure, column: str) -> list[dict]:
    return [f for f in exc.failures if f["column"] == column]


def test_valid_table_passes(table, schema):
    report = gate_table(table, schema)
    assert report["success"] and report["rows"] == len(table) == 12
    assert "expect_compound_columns_to_be_unique" in report["expectations"]


def test_proportions_summing_to_097_rejected_with_row(table, schema):
    table.loc[5, schema.domains] = table.loc[5, schema.domains] * 0.97
    with pytest.raises(GateFailure) as info:
        gate_table(table, schema)
    (fail,) = failures_on(info.value, SUM_COLUMN)
    assert fail["rows"] == [5] and fail["unexpected_count"] == 1
    assert fail["values"][0] == pytest.approx(0.97)
    assert "row" in str(info.value) and "[5]" in str(info.value)
    assert len(info.value.failures) == 1  # every proportion is still in [0, 1]


def test_nan_target_rejected_with_row(table, schema):
    target = "eval/RedPajamaGithub/CrossEntropyLoss"
    table.loc[7, target] = np.nan
    with pytest.raises(GateFailure) as info:
        gate_table(table, schema)
    fails = failures_on(info.value, target)
    assert [f["expectation"] for f in fails] == ["expect_column_values_to_not_be_null"]
    assert fails[0]["rows"] == [7]


def test_infinite_target_rejected(table, schema):
    table.loc[3, "train/CrossEntropyLoss"] = np.inf
    with pytest.raises(GateFailure) as info:
        gate_table(table, schema)
    (fail,) = failures_on(info.value, "train/CrossEntropyLoss")
    assert fail["expectation"] == "expect_column_values_to_be_between" and fail["rows"] == [3]


def test_duplicated_row_rejected_naming_both_rows(table, schema):
    duplicated = pd.concat([table, table.iloc[[2]]], ignore_index=True)
    with pytest.raises(GateFailure) as info:
        gate_table(duplicated, schema)
    (fail,) = [f for f in info.value.failures if f["expectation"] == "expect_compound_columns_to_be_unique"]
    assert sorted(fail["rows"]) == [2, len(table)]


def test_non_positive_size_and_step_and_proportion_out_of_range(table, schema):
    table.loc[0, schema.size] = 0.0
    table.loc[1, schema.step] = -5
    table.loc[2, schema.domains[0]] = 1.2
    with pytest.raises(GateFailure) as info:
        gate_table(table, schema)
    assert failures_on(info.value, schema.size)[0]["rows"] == [0]
    assert failures_on(info.value, schema.step)[0]["rows"] == [1]
    assert failures_on(info.value, schema.domains[0])[0]["rows"] == [2]
    assert failures_on(info.value, SUM_COLUMN)[0]["rows"] == [2]


def test_missing_column_and_wrong_type_rejected(table, schema):
    broken = table.drop(columns=["eval/downstream/piqa_len_norm"])
    broken["d_model"] = broken["d_model"].astype(str)
    with pytest.raises(GateFailure) as info:
        gate_table(broken, schema)
    kinds = {(f["expectation"], f["column"]) for f in info.value.failures}
    assert ("expect_column_to_exist", "eval/downstream/piqa_len_norm") in kinds
    assert ("expect_column_values_to_be_in_type_list", "d_model") in kinds


def _seed_style_csv(table: pd.DataFrame, schema: TableSchema, path) -> None:
    """The seed's layout: no run column, size in millions, heads under another name."""
    out = table.drop(columns=[schema.run]).rename(columns={"model_size": "Model size (M)", "n_heads": "heads"})
    out["Model size (M)"] = out["Model size (M)"] / 1e6
    out["extra/ignored_metric"] = 1.0
    out.sample(frac=1.0, random_state=0).to_csv(path, index=False)


def test_external_csv_with_seed_columns_is_read_and_gated(tmp_path, table, schema):
    csv = tmp_path / "seed_table.csv"
    _seed_style_csv(table, schema, csv)
    source = ExternalSource(path=str(csv), rename={"Model size (M)": "model_size", "heads": "n_heads"},
                            size_multiplier=1e6)
    frame = read_external(source, schema)
    assert frame[schema.run].nunique() == table[schema.run].nunique()  # one derived run per (mixture, size)
    cfg = TableStageConfig(table=schema, source=source, out=str(tmp_path / "t.parquet"),
                           gate_report=str(tmp_path / "gate.json"), metrics=str(tmp_path / "m.json"))
    table_stage(cfg)
    written = read_parquet(cfg.out)
    assert list(written.columns) == schema.columns
    assert np.allclose(np.sort(written[schema.size].unique()), [20e6, 60e6])
    expected = table.sort_values(["model_size", "step", "RedPajamaWikipedia"]).reset_index(drop=True)
    got = written.sort_values(["model_size", "step", "RedPajamaWikipedia"]).reset_index(drop=True)
    np.testing.assert_allclose(got[schema.target_names].to_numpy(), expected[schema.target_names].to_numpy())


def test_external_parquet_failing_gate_writes_nothing(tmp_path, table, schema):
    table.loc[4, "eval/downstream/arc_easy_acc"] = np.nan
    path = tmp_path / "bad.parquet"
    table.to_parquet(path, index=False)
    cfg = TableStageConfig(table=schema, source=ExternalSource(path=str(path)), out=str(tmp_path / "t.parquet"),
                           gate_report=str(tmp_path / "gate.json"), metrics=str(tmp_path / "m.json"))
    with pytest.raises(GateFailure, match="arc_easy_acc"):
        table_stage(cfg)
    assert not (tmp_path / "t.parquet").exists() and not (tmp_path / "m.json").exists()
