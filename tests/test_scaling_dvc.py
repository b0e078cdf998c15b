"""scaling through the real dvc CLI on a throwaway copy of the repo (shrunk smoke spec).

``dvc repro`` runs every scaling stage and writes the report; a second repro is a no-op;
``dvc exp run -S huber_delta=0.01`` reruns the Approach 3 fit and the report only (the knob is
read by no other stage): not the sweeps, the tables or Approaches 1 and 2.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import edit_yaml, ran_stages, reproduced_project, run

pytestmark = pytest.mark.slow


def shrink(root: Path) -> None:
    def mutate(spec: dict) -> None:
        spec["synthetic"].update(n_sizes=10, checkpoints=8)
        spec["train"].update(steps=6, eval_every=2)
        spec["sweeps"] = {"transformer": {**spec["sweeps"]["transformer"], "widths": [16, 32], "lrs": [0.01, 0.05]}}
        spec["coord"] = {"transformer": {**spec["coord"]["transformer"], "widths": [16, 32, 64], "steps": 2}}
        # the published tables' fits are the smoke profile's (CI reproduces them); here the DAG's mechanics
        spec["tables"] = {k: spec["tables"][k] for k in ("synthetic", "own")}
        spec["bootstrap"]["samples"] = 30
        spec.pop("profiles", None)

    edit_yaml(root / "specs" / "scaling.yaml", mutate)



@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return reproduced_project(tmp_path_factory.mktemp("scaling_flow") / "repo", "scaling", shrink)


def test_repro_runs_every_stage_and_writes_the_report(project):
    root, out = project
    ran = ran_stages(out)
    expected = {"scaling-synthetic", "scaling-corpus", "scaling-sweep-transformer-sp", "scaling-sweep-transformer-mup",
                "scaling-coord-transformer", "scaling-table-synthetic", "scaling-table-own", "scaling-fit-a1-synthetic",
                "scaling-fit-a2-synthetic", "scaling-fit-a3-synthetic", "scaling-fit-a1-own",
                "scaling-fit-a1-own-noemb", "scaling-transfer-transformer", "scaling-report"}
    assert expected <= ran, expected - ran
    report = (root / "reports" / "scaling" / "README.md").read_text()
    assert "| synthetic | a3 (parametric) |" in report and "μP coordinate check" in report
    for figure in ("frontier.png", "isoflop.png", "lr-transformer.png", "coord-transformer-mup.png"):
        assert (root / "reports" / "scaling" / figure).stat().st_size > 0
    a3 = json.loads((root / "metrics" / "scaling" / "fit-a3-synthetic.json").read_text())
    assert a3["fit"]["alpha"]["value"] == pytest.approx(0.34, rel=0.05)


def test_second_repro_is_a_noop_and_a_knob_reruns_only_its_readers(project):
    root, _ = project
    assert ran_stages(run(["dvc", "repro"], root).stdout) == set()
    out = run(["dvc", "exp", "run", "-S", "huber_delta=0.01"], root).stdout
    assert ran_stages(out) == {"check-params", "scaling-fit-a3-synthetic", "scaling-report"}
