"""Splits: disjoint, each honouring its threshold, exported as the seed's .npy files, and gated."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from harness.validation import GateFailure
from stages.mixture_sim.configs import (
    LargerThanSplit, RandomSplit, SizeAtLeastSplit, SplitsStageConfig, StepAboveSplit,
)
from stages.mixture_sim.splits import check_split, make_split, run as splits_stage
from stages.mixture_sim.synthetic import seed_schema, smooth_table
from stages.mixture_sim.tableio import read_parquet, write_parquet

SPLITS = [
    RandomSplit(name="random", test_fraction=0.2),
    SizeAtLeastSplit(name="size", threshold=1e9),
    StepAboveSplit(name="step", threshold=15000),
    LargerThanSplit(name="larger", threshold=150e6),
]


@pytest.fixture(scope="module")
def schema():
    return seed_schema()


@pytest.fixture(scope="module")
def table(schema):
    return smooth_table(schema, n_mixtures=6)


def keys(frame, schema) -> set[tuple[str, int]]:
    return set(zip(frame[schema.run], frame[schema.step]))


@pytest.mark.parametrize("split", SPLITS, ids=lambda s: s.name)
def test_split_is_disjoint_complete_and_honours_threshold(split, table, schema):
    train, test, report = make_split(table, schema, split, seed=0)
    assert report["success"]
    assert len(train) and len(test)
    assert not keys(train, schema) & keys(test, schema)
    assert keys(train, schema) | keys(test, schema) == keys(table, schema)
    if split.kind == "random":
        assert not set(train[schema.run]) & set(test[schema.run])  # by run, not by row
        assert test[schema.run].nunique() == round(0.2 * table[schema.run].nunique())
    if split.kind == "size_at_least":
        assert (test[schema.size] >= 1e9).all() and (train[schema.size] < 1e9).all()
    if split.kind == "step_above":
        assert (test[schema.step] > 15000).all() and (train[schema.step] <= 15000).all()
    if split.kind == "larger_than":
        assert (test[schema.size] > 150e6).all() and (train[schema.size] <= 150e6).all()
        assert test[schema.size].min() > train[schema.size].max()  # pure extrapolation


def test_random_split_depends_on_seed_only(table, schema):
    a = make_split(table, schema, SPLITS[0], seed=3)[1]
    b = make_split(table, schema, SPLITS[0], seed=3)[1]
    c = make_split(table, schema, SPLITS[0], seed=4)[1]
    assert set(a[schema.run]) == set(b[schema.run]) != set(c[schema.run])


def test_gate_rejects_leaking_random_split(table, schema):
    train, test, _ = make_split(table, schema, SPLITS[0], seed=0)
    leaked_run = train[schema.run].iloc[0]
    # move one checkpoint of a training run into test: rows stay disjoint but the run leaks
    moved = train[(train[schema.run] == leaked_run) & (train[schema.step] == 30000)]
    with pytest.raises(GateFailure) as info:
        check_split(train.drop(moved.index), pd.concat([test, moved]), schema, SPLITS[0], len(table))
    (fail,) = info.value.failures
    assert fail["column"] == schema.run and fail["values"] == [leaked_run]
    assert fail["rows"] == [len(train) - 1 + len(test)]  # the stacked frame's last row


def test_gate_rejects_overlap_and_threshold_violation(table, schema):
    split = SPLITS[1]
    train, test, _ = make_split(table, schema, split, seed=0)
    bad_test = pd.concat([test, train.iloc[[0]]], ignore_index=True)  # a small model in test, also in train
    with pytest.raises(GateFailure) as info:
        check_split(train, bad_test, schema, split, len(table))
    names = {f["expectation"] for f in info.value.failures}
    assert {"expect_compound_columns_to_be_unique", "expect_column_values_to_be_between",
            "expect_table_row_count_to_equal"} <= names


def test_stage_writes_parquet_and_seed_npy_exports(tmp_path, table, schema):
    write_parquet(tmp_path / "table.parquet", table)
    cfg = SplitsStageConfig(table=schema, table_file=str(tmp_path / "table.parquet"), splits=SPLITS, seed=0,
                            out_dirs={s.name: str(tmp_path / s.name) for s in SPLITS},
                            metrics=str(tmp_path / "metrics.json"))
    splits_stage(cfg)
    for split in SPLITS:
        folder = tmp_path / split.name
        for side in ("train", "test"):
            frame = read_parquet(folder / f"{side}.parquet")
            x = np.load(folder / f"X_{side}_{split.name}.npy")
            y = np.load(folder / f"y_{side}_{split.name}.npy")
            assert x.shape == (len(frame), 9) and y.shape == (len(frame), 11)
            np.testing.assert_array_equal(x[:, -1], frame[schema.step].to_numpy())
            np.testing.assert_array_equal(y[:, 0], frame["train/CrossEntropyLoss"].to_numpy())


def test_empty_side_is_rejected(table, schema):
    with pytest.raises(GateFailure, match="distinct_values_to_equal_set"):
        make_split(table, schema, SizeAtLeastSplit(name="none", threshold=1e12), seed=0)
