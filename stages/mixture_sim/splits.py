"""Stage `splits`: train/test partitions of the table, each checked disjoint and honest.

Kinds: random 80/20 *by run* (rows of one run share everything but the step, so a row-level
split would leak), held-out large models (size >= threshold), held-out late checkpoints
(step > threshold), extrapolation to models larger than any trained on (train size <=
threshold), held-out *mixtures* (a test mixture appears in training at no size and no step),
and the source's own partition (RegMix's train/test). Every split is checked with Great
Expectations before it is written: train and test share no key row (and, for the random split,
no run; for the mixture split, no mixture), every test row satisfies the split's predicate and
no train row does, and together they cover the table.

Each split's training rows carry ``_cv_group``: what the split holds out (run, size, step or
mixture, :data:`CV_GROUPING`), so model selection cross-validates the way the split tests.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from harness.io import atomic_path, write_json
from harness.validation import ExpectationSpec, expect, run_gate
from stages.mixture_sim.configs import (
    CV_GROUPING, HeldOutMixtureSplit, LargerThanSplit, RandomSplit, SizeAtLeastSplit, Split, SplitsStageConfig,
    StepAboveSplit, SubsetSplit, TableSchema,
)
from stages.mixture_sim.tableio import read_parquet, write_parquet

SIDE = "_side"
#: helper column: the mixture of a row, as a string of its proportions (checked, not fitted)
MIXTURE = "_mixture"
#: the CV group of a training row (see the module docstring)
GROUP = "_cv_group"
#: decimals a mixture is compared at: proportions equal to this precision are the same mixture
MIXTURE_DECIMALS = 9


def mixture_keys(frame, schema: TableSchema) -> np.ndarray:
    """One string per row naming its mixture (rounded proportions), equal iff the mixtures are."""
    values = np.round(frame[schema.domains].to_numpy(dtype=np.float64), MIXTURE_DECIMALS) + 0.0
    return np.array([",".join(repr(float(v)) for v in row) for row in values], dtype=object)


def cv_groups(frame, schema: TableSchema, split: Split) -> np.ndarray:
    """The CV group of every row: what ``split`` holds out (run, size, step or mixture)."""
    what = CV_GROUPING[split.kind]
    if what == "mixture":
        return mixture_keys(frame, schema)
    column = {"run": schema.run, "size": schema.size, "step": schema.step}[what]
    return frame[column].astype(str).to_numpy(dtype=object)


def _grouped_test(groups: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    from sklearn.model_selection import GroupShuffleSplit

    splitter = GroupShuffleSplit(n_splits=1, test_size=fraction, random_state=seed)
    _, test_idx = next(splitter.split(groups, groups=groups))
    mask = np.zeros(len(groups), dtype=bool)
    mask[test_idx] = True
    return mask


def test_mask(frame, schema: TableSchema, split: Split, seed: int) -> np.ndarray:
    """Boolean mask of the test rows of ``split``."""
    if isinstance(split, RandomSplit):
        return _grouped_test(frame[schema.run].to_numpy(), split.test_fraction, seed)
    if isinstance(split, HeldOutMixtureSplit):
        return _grouped_test(mixture_keys(frame, schema), split.test_fraction, seed)
    if isinstance(split, SubsetSplit):
        return (frame[schema.subset].astype(str) == split.test).to_numpy()
    if isinstance(split, SizeAtLeastSplit):
        return (frame[schema.size] >= split.threshold).to_numpy()
    if isinstance(split, StepAboveSplit):
        return (frame[schema.step] > split.threshold).to_numpy()
    if isinstance(split, LargerThanSplit):
        return (frame[schema.size] > split.threshold).to_numpy()
    raise TypeError(f"unknown split kind {split!r}")


def split_expectations(schema: TableSchema, split: Split, n_rows: int, train_runs: list[str],
                       train_mixtures: list[str] | None = None) -> list[ExpectationSpec]:
    """Disjointness, coverage, non-emptiness and the split's own threshold, as GE expectations."""

    from great_expectations.expectations.row_conditions import Column

    def on(side: str, name: str, **kwargs: Any) -> ExpectationSpec:
        return expect(name, row_condition=Column(SIDE) == side, **kwargs)

    out = [
        expect("ExpectTableRowCountToEqual", value=n_rows),
        expect("ExpectColumnDistinctValuesToEqualSet", column=SIDE, value_set=["train", "test"]),
        (expect("ExpectCompoundColumnsToBeUnique", column_list=schema.key_columns) if len(schema.key_columns) > 1
         else expect("ExpectColumnValuesToBeUnique", column=schema.run)),
    ]
    if isinstance(split, (RandomSplit, SubsetSplit)):
        out.append(on("test", "ExpectColumnValuesToNotBeInSet", column=schema.run, value_set=train_runs))
    if isinstance(split, HeldOutMixtureSplit):
        out.append(on("test", "ExpectColumnValuesToNotBeInSet", column=MIXTURE, value_set=train_mixtures or []))
    if isinstance(split, SubsetSplit):
        out.append(on("test", "ExpectColumnValuesToBeInSet", column=schema.subset, value_set=[split.test]))
        out.append(on("train", "ExpectColumnValuesToNotBeInSet", column=schema.subset, value_set=[split.test]))
    elif isinstance(split, SizeAtLeastSplit):
        out.append(on("test", "ExpectColumnValuesToBeBetween", column=schema.size, min_value=split.threshold))
        out.append(on("train", "ExpectColumnValuesToBeBetween", column=schema.size, max_value=split.threshold,
                      strict_max=True))
    elif isinstance(split, StepAboveSplit):
        out.append(on("test", "ExpectColumnValuesToBeBetween", column=schema.step, min_value=split.threshold,
                      strict_min=True))
        out.append(on("train", "ExpectColumnValuesToBeBetween", column=schema.step, max_value=split.threshold))
    elif isinstance(split, LargerThanSplit):
        out.append(on("test", "ExpectColumnValuesToBeBetween", column=schema.size, min_value=split.threshold,
                      strict_min=True))
        out.append(on("train", "ExpectColumnValuesToBeBetween", column=schema.size, max_value=split.threshold))
    return out


def check_split(train, test, schema: TableSchema, split: Split, n_rows: int) -> dict[str, Any]:
    """Gate one split; raises ``GateFailure`` (naming rows of the stacked train+test frame)."""
    import pandas as pd

    stacked = pd.concat([train.assign(**{SIDE: "train"}), test.assign(**{SIDE: "test"})], ignore_index=True)
    stacked[MIXTURE] = mixture_keys(stacked, schema)
    train_runs = sorted(train[schema.run].unique().tolist())
    train_mixtures = sorted(set(stacked.loc[stacked[SIDE] == "train", MIXTURE]))
    return run_gate(f"mixture_sim/split_{split.name}", stacked,
                    split_expectations(schema, split, n_rows, train_runs, train_mixtures))


def make_split(frame, schema: TableSchema, split: Split, seed: int):
    """(train, test) frames of ``split``, gated."""
    mask = test_mask(frame, schema, split, seed)
    train, test = frame[~mask].reset_index(drop=True), frame[mask].reset_index(drop=True)
    report = check_split(train, test, schema, split, len(frame))
    train[GROUP] = cv_groups(train, schema, split)
    return train, test, report


def arrays(frame, schema: TableSchema) -> tuple[np.ndarray, np.ndarray]:
    """Feature matrix and target matrix in the schema's column order (the seed's .npy layout)."""
    return (frame[schema.feature_columns].to_numpy(dtype=np.float64),
            frame[schema.target_names].to_numpy(dtype=np.float64))


def write_split(out_dir: str, name: str, train, test, schema: TableSchema, summary: dict[str, Any]) -> None:
    """Everything of one split in one folder, written atomically as a whole."""
    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        write_parquet(tmp / "train.parquet", train)
        write_parquet(tmp / "test.parquet", test)
        for side, part in (("train", train), ("test", test)):
            x, y = arrays(part, schema)
            with open(tmp / f"X_{side}_{name}.npy", "wb") as fh:
                np.save(fh, x)
            with open(tmp / f"y_{side}_{name}.npy", "wb") as fh:
                np.save(fh, y)
        write_json(tmp / "split.json", {**summary, "feature_columns": schema.feature_columns,
                                        "target_columns": schema.target_names})


def same_partitions(frame, schema: TableSchema, splits: list[Split], seed: int) -> list[tuple[str, str]]:
    """Pairs of splits with identical test rows: one of them tests nothing the other does not.

    On a small model grid ``larger_than`` can coincide with ``size_at_least`` (three sizes: both
    hold out the largest); reporting both would count one result twice under two names.
    """
    masks = {s.name: test_mask(frame, schema, s, seed) for s in splits}
    names = list(masks)
    return [(a, b) for i, a in enumerate(names) for b in names[i + 1:] if np.array_equal(masks[a], masks[b])]


def run(cfg: SplitsStageConfig) -> None:
    frame = read_parquet(cfg.table_file)
    same = same_partitions(frame, cfg.table, cfg.splits, cfg.seed)
    if same:
        raise ValueError("splits with identical test rows on this table (drop one, or change a threshold): "
                         + ", ".join(f"`{a}` = `{b}`" for a, b in same))
    metrics: dict[str, Any] = {}
    for split in cfg.splits:
        train, test, report = make_split(frame, cfg.table, split, cfg.seed)
        summary = {
            "split": split.model_dump(), "train_rows": len(train), "test_rows": len(test),
            "train_runs": int(train[cfg.table.run].nunique()), "test_runs": int(test[cfg.table.run].nunique()),
            "train_mixtures": len(set(mixture_keys(train, cfg.table))),
            "test_mixtures": len(set(mixture_keys(test, cfg.table))),
            "heldout_test_mixtures": len(set(mixture_keys(test, cfg.table)) - set(mixture_keys(train, cfg.table))),
            "cv_groups": int(train[GROUP].nunique()), "cv_grouping": CV_GROUPING[split.kind],
            "expectations": report["expectations"],
        }
        write_split(cfg.out_dirs[split.name], split.name, train, test, cfg.table, summary)
        metrics[split.name] = {k: summary[k] for k in ("train_rows", "test_rows", "train_runs", "test_runs",
                                                       "test_mixtures", "heldout_test_mixtures", "cv_groups")}
        print(f"split {split.name}: {len(train)} train / {len(test)} test rows, disjoint", flush=True)
    write_json(cfg.metrics, metrics)
