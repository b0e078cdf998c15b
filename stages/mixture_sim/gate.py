"""The table's Great Expectations suite: what every simulator table must satisfy before fitting.

Why a suite and not asserts: a wrong table (proportions that do not sum to one, a NaN loss from a
diverged run, a checkpoint logged twice) silently biases every regressor fitted on it. The gate
names the expectation, the column and the failing rows, and stops the DAG before any fit.
"""

from __future__ import annotations

from typing import Any

from harness.validation import ExpectationSpec, expect, run_gate
from stages.mixture_sim.configs import TableSchema

#: helper column holding the per-row sum of the domain proportions (checked, then dropped)
SUM_COLUMN = "_proportion_sum"
NUMERIC_TYPES = ["int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float32", "float64"]
#: finite-ness check: GE's between() fails +-inf, NaN is caught by not_null
HUGE = 1e300


def table_expectations(schema: TableSchema) -> list[ExpectationSpec]:
    """The suite, built from the schema's column names."""
    out: list[ExpectationSpec] = [expect("ExpectTableRowCountToBeBetween", min_value=1)]
    out += [expect("ExpectColumnToExist", column=c) for c in schema.columns]
    out.append(expect("ExpectColumnValuesToBeOfType", column=schema.run, type_="str"))
    out.append(expect("ExpectColumnValuesToNotBeNull", column=schema.run))
    for column in schema.feature_columns + schema.target_names:
        out.append(expect("ExpectColumnValuesToBeInTypeList", column=column, type_list=NUMERIC_TYPES))
        out.append(expect("ExpectColumnValuesToNotBeNull", column=column))
    for column in schema.domains:
        out.append(expect("ExpectColumnValuesToBeBetween", column=column, min_value=0.0, max_value=1.0))
    out.append(expect("ExpectColumnValuesToBeBetween", column=SUM_COLUMN,
                      min_value=1.0 - schema.tolerance, max_value=1.0 + schema.tolerance))
    for column in schema.context_columns:
        out.append(expect("ExpectColumnValuesToBeBetween", column=column, min_value=0, strict_min=True))
    for column in schema.target_names:
        out.append(expect("ExpectColumnValuesToBeBetween", column=column, min_value=-HUGE, max_value=HUGE))
    if len(schema.key_columns) > 1:
        out.append(expect("ExpectCompoundColumnsToBeUnique", column_list=schema.key_columns))
    else:
        out.append(expect("ExpectColumnValuesToBeUnique", column=schema.run))
    return out


def gate_table(frame, schema: TableSchema, dataset: str = "mixture_sim/table") -> dict[str, Any]:
    """Run the suite on ``frame`` (not modified); raise ``GateFailure`` naming failing rows."""
    checked = frame.copy()
    present = [c for c in schema.domains if c in checked.columns]
    if present:
        checked[SUM_COLUMN] = checked[present].sum(axis=1, skipna=False)
    return run_gate(dataset, checked, table_expectations(schema))
