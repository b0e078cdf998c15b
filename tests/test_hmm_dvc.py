"""hmm_icl through the real dvc CLI on a throwaway copy of the repo (shrunk smoke spec).

dvc repro runs every hmm_icl stage and writes the report; a second repro is a no-op;
``dvc exp run -S hmm_start=stationary`` reruns sampling, the Llamas, ICL and the report (both pools), but
not the corpus, the HMM fits or their evaluation (the knob is read only by the sample stages). One grid
point keeps it short.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import edit_yaml, ran_stages, reproduced_project, run

pytestmark = pytest.mark.slow

UPSTREAM = {"hmm_icl-corpus-k32-l32", "hmm_icl-fit-k32-h16-l32", "hmm_icl-eval-k32-h16-l32"}
DOWNSTREAM_OF_START = {f"hmm_icl-{kind}-k32-h16-l32-p{m}" for kind in ("sample", "train", "icl") for m in (1, 4)} | {
    "hmm_icl-report"}


def shrink(root: Path) -> None:
    def mutate(spec: dict) -> None:
        spec["grid"]["hidden"] = [16]  # one HMM keeps the flow under a minute
        spec.pop("em_experiments", None)
        spec["fit"].update(epochs=2, checkpoint_every=1, history_val_sequences=32)
        spec["synthetic"].update(train_sequences=256, val_sequences=32, eval_sequences=32, shard_sequences=128)
        spec["lm"]["train"].update(steps=6, eval_every=0, checkpoint_every=3, warmup_steps=2)
        spec.pop("profiles", None)

    edit_yaml(root / "specs" / "hmm_icl.yaml", mutate)



@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return reproduced_project(tmp_path_factory.mktemp("hmm_flow") / "repo", "hmm_icl", shrink)


def test_repro_runs_every_stage_and_writes_the_report(project):
    root, out = project
    ran = ran_stages(out)
    assert UPSTREAM | DOWNSTREAM_OF_START <= ran
    results = (root / "reports" / "hmm_icl" / "RESULTS.md").read_text()
    assert "| k32-h16-l32 |" in results and (root / "reports" / "hmm_icl" / "icl_curves.png").exists()
    icl = json.loads((root / "metrics" / "hmm_icl" / "icl" / "k32-h16-l32-p4.json").read_text())
    assert icl["permuted"] is True and icl["sequences"] == 32 and icl["pool"] == 4 and icl["target"] == "fair"


def test_second_repro_is_a_no_op(project):
    root, _ = project
    assert not ran_stages(run(["dvc", "repro"], root).stdout) - {"check-params"}


def test_start_knob_reruns_only_sampling_and_downstream(project):
    root, _ = project
    out = run(["dvc", "exp", "run", "-S", "hmm_start=stationary"], root).stdout
    ran = ran_stages(out) - {"check-params"}
    assert ran == DOWNSTREAM_OF_START, ran
    sample = json.loads((root / "metrics" / "hmm_icl" / "sample" / "k32-h16-l32-p4.json").read_text())
    assert sample["start"] == "stationary" and sample["pool"] == 4
