"""The validation gate: Great Expectations suites that must pass before anything trains.

Why a gate and not a report: a model trained on a corrupted split wastes GPU hours and yields a
number nobody can trust. A gate stage raises :class:`GateFailure`; ``harness run`` exits
non-zero, DVC stops the DAG, and because outputs are written only after the gate passes, no
downstream artifact exists.

Usage from stage code::

    from harness.validation import expect, run_gate
    run_gate("tokens/train", frame, [
        expect("ExpectColumnValuesToBeBetween", column="id", min_value=0, max_value=vocab - 1),
        expect("ExpectTableRowCountToEqual", value=recorded_count),
    ])
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("TQDM_DISABLE", "1")

#: at most this many failing row indices are quoted in a message
MAX_ROWS_SHOWN = 10


@dataclass
class ExpectationSpec:
    """A GE expectation by class name and kwargs; built lazily so importing is cheap."""

    name: str
    kwargs: dict[str, Any]

    def build(self):
        import great_expectations as gx

        return getattr(gx.expectations, self.name)(**self.kwargs)


def expect(name: str, **kwargs: Any) -> ExpectationSpec:
    return ExpectationSpec(name, kwargs)


class GateFailure(Exception):
    """Raised when a dataset fails its suite; the message says what, where and how many rows."""

    def __init__(self, dataset: str, failures: list[dict[str, Any]]):
        self.dataset = dataset
        self.failures = failures
        lines = [f"validation gate FAILED for {dataset}: {len(failures)} expectation(s) not met"]
        for f in failures:
            lines.append("  - " + f["summary"])
        super().__init__("\n".join(lines))


def _summarise(res, n_rows: int) -> dict[str, Any]:
    cfg = res.expectation_config
    kwargs = {k: v for k, v in cfg.kwargs.items() if k not in ("batch_id",)}
    result = res.result or {}
    column = kwargs.get("column", "<table>")
    shown = {k: v for k, v in kwargs.items() if k != "column" and not (isinstance(v, (list, set)) and len(v) > 8)}
    info: dict[str, Any] = {"expectation": cfg.type, "column": column, "kwargs": shown}
    if "unexpected_count" in result:
        rows = list(result.get("unexpected_index_list") or [])[:MAX_ROWS_SHOWN]
        values = list(result.get("partial_unexpected_list") or [])[:MAX_ROWS_SHOWN]
        info.update(unexpected_count=int(result["unexpected_count"]), rows=rows, values=values)
        info["summary"] = (
            f"{cfg.type} on column `{column}` {shown}: {result['unexpected_count']} of {n_rows} rows fail"
            f"; first rows {rows} with values {values}"
        )
    else:
        info.update(observed=result.get("observed_value"))
        info["summary"] = f"{cfg.type} on `{column}` {shown}: observed {result.get('observed_value')!r}"
    return info


def run_gate(dataset: str, frame, expectations: list[ExpectationSpec]) -> dict[str, Any]:
    """Validate ``frame`` against ``expectations``; raise :class:`GateFailure` on any failure.

    Returns a JSON-able report (what was checked, on how many rows) for the stage to record.
    """
    import great_expectations as gx

    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    source = context.data_sources.add_pandas(name="harness")
    asset = source.add_dataframe_asset(name=dataset.replace("/", "_"))
    batch = asset.add_batch_definition_whole_dataframe("all").get_batch(batch_parameters={"dataframe": frame})
    suite = gx.ExpectationSuite(name=f"gate_{dataset}")
    for item in expectations:
        suite.add_expectation(item.build())
    result = batch.validate(suite, result_format={"result_format": "COMPLETE"})
    checked = [r.expectation_config.type for r in result.results]
    failures = [_summarise(r, len(frame)) for r in result.results if not r.success]
    if failures:
        raise GateFailure(dataset, failures)
    return {"dataset": dataset, "rows": int(len(frame)), "expectations": checked, "success": True}
