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
    spec["tables"].pop("regmix")  # its own stages are the same code; keep this test to one table
    gen = spec["tables"]["generated"]
    gen["source"] = {"kind": "external", "path": CSV, "rename": {"Model size (M)": "model_size"},
                     "size_multiplier": 1.0e6}
    for profile in spec["profiles"].values():
        profile["tables"].pop("regmix", None)
        # an external table trains nothing: train resources would name no stage (a compile error)
        profile.get("resources", {}).pop("train", None)
        for key in ("source", "regressors"):
            profile["tables"]["generated"].pop(key, None)
    spec["profiles"]["smoke"]["tables"]["generated"]["splits"] = [
        {"kind": "random", "name": "random", "test_fraction": 0.2},
        {"kind": "larger_than", "name": "larger", "threshold": 60.0e6},
        {"kind": "heldout_mixture", "name": "mixture", "test_fraction": 0.34},
    ]
    spec["profiles"]["smoke"]["tables"]["generated"]["search"] = {
        "candidates": 2000, "at": {"model_size": 150e6, "d_model": 768, "n_heads": 12, "step": 20000}}
    gen["simulator"] = {"split": "random", "members": 2}
    gen["regressors"] = [{"kind": "ridge", "grid": {"alpha": [0.01, 1000.0]}}]
    spec_path.write_text(yaml.safe_dump(spec, sort_keys=False))


@pytest.mark.slow
def test_external_table_reproduces_and_a_bad_table_stops_the_dag(repo_copy):
    root = repo_copy(studies=["mixture_sim"], edit=_use_external_table)
    stages = run(["harness", "stages"], root).stdout
    assert "-run-" not in stages and stages.count("mixture_sim-generated-sweep-ridge-") == 2

    run(["dvc", "repro"], root)
    metrics = json.loads((root / "metrics/mixture_sim/generated/evaluate.json").read_text())
    assert metrics["random"]["selected"] == "ridge"
    assert metrics["random"]["ridge"]["pooled_r2"] > 0.9 > metrics["random"]["mean"]["pooled_r2"] + 0.9
    selection = json.loads((root / "work/mixture_sim/generated/evaluate/selection.json").read_text())
    assert selection["larger"]["regressors"]["ridge"]["params"] == {"alpha": 0.01}
    table_metrics = json.loads((root / "metrics/mixture_sim/generated/table.json").read_text())
    assert table_metrics["rows"] == 6 * 3 * 4 and table_metrics["runs"] == 18
    assert np.load(root / "work/mixture_sim/generated/splits/random/X_train_random.npy").shape[1] == 9
    report = (root / "reports/mixture_sim/generated/README.md").read_text()
    assert report.startswith("# mixture_sim / generated") and "**Question.**" in report
    assert "| random |" in report and (root / "reports/mixture_sim/generated/r2_heatmap.png").stat().st_size > 0

    # the saved simulator answers through the CLI; a bad input exits 2 and writes nothing
    mixtures = root / "new.csv"
    mixtures.write_text("RedPajamaWikipedia,RedPajamaStackExchange,RedPajamaGithub,RedPajamaArXiv,RedPajamaBook,"
                        "model_size,d_model,n_heads,step\n0.2,0.2,0.2,0.2,0.2,6e7,512,8,10000\n")
    run(["harness", "simulate", "--study", "mixture_sim", "--table", "generated", "--input", "new.csv",
         "--output", "pred.csv"], root)
    pred = (root / "pred.csv").read_text().splitlines()
    assert len(pred) == 2 and "spread:eval/RedPajamaBook/CrossEntropyLoss" in pred[0]
    mixtures.write_text(mixtures.read_text().replace("0.2,0.2,0.2,0.2,0.2", "0.4,0.2,0.2,0.2,0.2"))
    bad = run(["harness", "simulate", "--study", "mixture_sim", "--table", "generated", "--input", "new.csv",
               "--output", "bad.csv"], root, check=False)
    assert bad.returncode == 2 and "sum to 1" in bad.stderr and "line 2 sums to 1.2" in bad.stderr
    assert not (root / "bad.csv").exists()

    _write_seed_csv(root / CSV, nan_row=7)
    failed = run(["dvc", "repro"], root, check=False)
    assert failed.returncode != 0
    log = failed.stdout + failed.stderr
    assert "expect_column_values_to_not_be_null" in log and "RedPajamaBook" in log and "[7]" in log
    assert not (root / "work/mixture_sim/generated/table/table.parquet").exists()
    status = run(["dvc", "status", "--json"], root).stdout
    assert "mixture_sim-generated-splits" in json.loads(status)  # downstream stays stale: nothing ran on bad data
