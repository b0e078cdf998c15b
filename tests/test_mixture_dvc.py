"""mixture_sim through the real DVC CLI, with an external (seed-style) table as the source.

Why the external source here: it exercises table -> splits -> sweep -> evaluate -> report in a
few seconds per stage; the LM-generated source is exercised stage by stage in
test_mixture_generated.py and end to end by the smoke `dvc repro` in CI.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import run
from stages.mixture_sim.synthetic import seed_schema, smooth_table

CSV = "external/seed_table.csv"


def _write_seed_csv(path: Path, nan_row: int | None = None) -> None:
    schema = seed_schema()
    table = smooth_table(schema, n_mixtures=6, sizes=[(20e6, 256, 4), (60e6, 512, 8), (150e6, 768, 12)],
                         steps=[2000, 5000, 10000, 20000])
    if nan_row is not None:
        table.loc[nan_row, "eval/RedPajamaBook/CrossEntropyLoss"] = np.nan
    out = table.drop(columns=[schema.run]).rename(columns={"model_size": "Model size (M)"})
    out["Model size (M)"] = out["Model size (M)"] / 1e6
    path.parent.mkdir(parents=True, exist_ok=True)
    out.to_csv(path, index=False)


def _use_external_table(root: Path) -> None:
    _write_seed_csv(root / CSV)
    spec_path = root / "specs" / "mixture_sim.yaml"
    spec = yaml.safe_load(spec_path.read_text())
    spec["source"] = {"kind": "external", "path": CSV, "rename": {"Model size (M)": "model_size"},
                      "size_multiplier": 1.0e6}
    for profile in spec["profiles"].values():
        profile.pop("source", None)
        profile.pop("regressors", None)
    spec["profiles"]["smoke"]["splits"] = [
        {"kind": "random", "name": "random", "test_fraction": 0.2},
        {"kind": "larger_than", "name": "larger", "threshold": 60.0e6},
    ]
    spec["regressors"] = [{"kind": "ridge", "grid": {"alpha": [0.01, 1000.0]}}]
    spec_path.write_text(yaml.safe_dump(spec, sort_keys=False))


@pytest.mark.slow
def test_external_table_reproduces_and_a_bad_table_stops_the_dag(repo_copy):
    root = repo_copy(studies=["mixture_sim"], edit=_use_external_table)
    stages = run(["harness", "stages"], root).stdout
    assert "mixture_sim-run-" not in stages and stages.count("mixture_sim-sweep-ridge-") == 2

    run(["dvc", "repro"], root)
    metrics = json.loads((root / "metrics/mixture_sim/evaluate.json").read_text())
    assert metrics["random"]["selected"] == "ridge"
    assert metrics["random"]["ridge"]["mean_r2"] > 0.9 > metrics["random"]["mean"]["mean_r2"] + 0.9
    selection = json.loads((root / "work/mixture_sim/evaluate/selection.json").read_text())
    assert selection["larger"]["regressors"]["ridge"]["params"] == {"alpha": 0.01}
    table_metrics = json.loads((root / "metrics/mixture_sim/table.json").read_text())
    assert table_metrics["rows"] == 6 * 3 * 4 and table_metrics["runs"] == 18
    assert np.load(root / "work/mixture_sim/splits/random/X_train_random.npy").shape[1] == 9
    report = (root / "reports/mixture_sim/README.md").read_text()
    assert "| random |" in report and (root / "reports/mixture_sim/r2_heatmap.png").stat().st_size > 0

    _write_seed_csv(root / CSV, nan_row=7)
    failed = run(["dvc", "repro"], root, check=False)
    assert failed.returncode != 0
    log = failed.stdout + failed.stderr
    assert "expect_column_values_to_not_be_null" in log and "RedPajamaBook" in log and "[7]" in log
    assert not (root / "work/mixture_sim/table/table.parquet").exists()
    status = run(["dvc", "status", "--json"], root).stdout
    assert "mixture_sim-splits" in json.loads(status)  # downstream stays stale: nothing ran on bad data
