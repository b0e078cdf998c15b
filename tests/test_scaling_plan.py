"""scaling plan: paths declared on the configs, one trainer settings model, profiles kept apart.

Fast (no training): plans the shipped spec and checks what the compiler derives from it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from harness.compiler import plan_profile
from harness.trainer import TrainSettings
from stages.scaling.lmconfigs import SweepTrain

ROOT = Path(__file__).resolve().parents[1]


def _stages(profile: str):
    return {s.name: s for s, _ in plan_profile(ROOT, profile, only_study_prefix_of="scaling-x")}


def test_sweep_run_settings_are_the_trainers_own():
    train = SweepTrain(steps=30, batch_size=8, seq_len=32, warmup_steps=40, weight_decay=0.0, threads=1, seed=3)
    run = train.for_run(0.01, micro_batch_size=4)
    assert type(run) is TrainSettings
    # what the sweep built field by field before SweepTrain composed TrainSettings
    assert run == TrainSettings(steps=30, batch_size=8, micro_batch_size=4, seq_len=32, lr=0.01, warmup_steps=30,
                                weight_decay=0.0, seed=3, threads=1)
    assert set(SweepTrain.model_fields) == set(TrainSettings.model_fields)


@pytest.mark.parametrize("field,value", [("lr", 0.01), ("micro_batch_size", 2)])
def test_sweep_train_leaves_lr_and_micro_batch_open(field, value):
    with pytest.raises(ValidationError, match=field):
        SweepTrain(steps=3, batch_size=4, seq_len=8, **{field: value})


def test_plan_declares_paths_on_configs_and_configs_round_trip():
    for stage in _stages("smoke").values():
        config = stage.config
        assert type(config).model_validate(config.model_dump(mode="json")) == config, stage.name


def test_derived_paths_of_the_smoke_plan():
    stages = _stages("smoke")
    corpus = stages["scaling-corpus"].paths()
    assert [p for p, _ in corpus["deps"]] == ["data/scaling/train.txt", "data/scaling/dev.txt"]
    assert [p for p, _ in corpus["outs"]] == ["work/scaling/corpus"]
    own = stages["scaling-table-own"].paths()
    assert [p for p, _ in own["deps"]] == ["work/scaling/sweeps/transformer-mup/runs.csv"]
    sweep = stages["scaling-sweep-transformer-mup"]
    assert sweep.config.train.seed == 0 and sweep.config.train.weight_decay == 0.0 and sweep.config.train.threads == 1
    report = stages["scaling-report"].paths()
    assert [p for p, _ in report["outs_no_cache"]] == ["reports/scaling"]
    assert "metrics/scaling/coord-lstm.json" in [p for p, _ in report["deps"]]


def test_profiles_write_disjoint_paths():
    def written(stages):
        return {p for s in stages.values() for sec in ("outs", "outs_no_cache", "metrics", "plots")
                for p, _ in s.paths()[sec]}

    smoke, full = written(_stages("smoke")), written(_stages("full"))
    assert smoke and full and not smoke & full
    assert all(p.split("/")[1] == "full" for p in full)


def test_spec_rejects_a_train_seed(tmp_path):
    """Sweep runs are seeded by the spec's top-level `seed`; a second seed under `train` is an error."""
    import yaml

    from harness.spec import SpecError, load_params, load_spec
    from stages.scaling.study import STUDY

    spec = yaml.safe_load((ROOT / "specs" / "scaling.yaml").read_text())
    spec["train"]["seed"] = 1
    path = tmp_path / "scaling.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    params = load_params(ROOT / "params.yaml")
    spec["train"].pop("seed")
    path.with_name("ok.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    assert load_spec(path.with_name("ok.yaml"), params, {"scaling": STUDY}).spec.train.seed == 0
    with pytest.raises(SpecError, match="train.seed"):
        load_spec(path, params, {"scaling": STUDY})
