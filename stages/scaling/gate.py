"""The validation gate every (N, D, loss) table passes before any fit (Great Expectations).

Checked: N and D present, not null and > 0; loss present, not null, finite and > 0 (a log-loss
fit needs it); every checkpoint of every run listed once (the source's identity columns are
unique). A failure raises ``GateFailure`` naming the expectation, the column and the rows.
"""

from __future__ import annotations

import pandas as pd

from harness.validation import expect, run_gate

#: finite and positive: GE's between-check with an upper bound rejects ±inf, not-null rejects NaN
_FINITE_MAX = 1e300


def table_expectations(unique: list[str]) -> list:
    checks = []
    for column in ("N", "D", "loss"):
        checks += [
            expect("ExpectColumnToExist", column=column),
            expect("ExpectColumnValuesToNotBeNull", column=column),
            expect("ExpectColumnValuesToBeBetween", column=column, min_value=0, max_value=_FINITE_MAX,
                   strict_min=True),
        ]
    checks.append(expect("ExpectColumnValuesToNotBeNull", column="run"))
    if len(unique) == 1:
        checks.append(expect("ExpectColumnValuesToBeUnique", column=unique[0]))
    else:
        checks.append(expect("ExpectCompoundColumnsToBeUnique", column_list=list(unique)))
    return checks


def validate_table(name: str, frame: pd.DataFrame, unique: list[str]) -> dict:
    """Raise ``GateFailure`` unless ``frame`` is a usable (N, D, loss) table; return the report."""
    return run_gate(f"scaling/{name}", frame.reset_index(drop=True), table_expectations(unique))
