"""hmm_icl spec and plan: one stage per grid point, profiles, knob wiring, validation errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from harness.spec import SpecError, load_params, load_spec
from harness.study import discover_studies

REPO = Path(__file__).resolve().parents[1]
SPEC = REPO / "specs" / "hmm_icl.yaml"


def _load(profile: str = "smoke", **overrides):
    params = load_params(REPO / "params.yaml")
    params.update(profile=profile, **overrides)
    return load_spec(SPEC, params, discover_studies(), display=Path("specs/hmm_icl.yaml"))


def test_smoke_plan_has_one_fit_per_grid_point_and_valid_names():
    loaded = _load()
    stages = loaded.plan()
    names = [s.name for s in stages]
    assert len(names) == len(set(names))
    assert all(re.fullmatch(r"[A-Za-z0-9_-]+", n) for n in names)
    grid = loaded.spec.grid
    fits = [n for n in names if n.startswith("hmm_icl-fit-")]
    assert len(fits) == len(grid.emissions) * len(grid.hidden) * len(grid.seq_len)
    assert names[-1] == "hmm_icl-report"
    for stage in stages:
        assert callable(stage.resolve_func())
        paths = stage.paths()
        for out, _ in paths["outs"]:
            assert out.startswith("work/hmm_icl/")
        for m, _ in paths["metrics"]:
            assert m.startswith("metrics/hmm_icl/")


def test_full_profile_covers_the_design_grid_on_gpu():
    loaded = _load("full")
    spec, stages = loaded.spec, loaded.plan()
    assert set(spec.grid.hidden) == {100, 200, 300, 400, 500, 600}
    fit = next(s for s in stages if s.name.startswith("hmm_icl-fit-"))
    assert fit.config.em.device == "cuda" and fit.resources.gpus == 1
    trains = [s for s in stages if s.name.startswith("hmm_icl-train-")]
    assert len(trains) == len(spec.synthetic.points) == 3
    assert all(t.config.train.seq_len == t.config.point.seq_len + 1 for t in trains)
    # a profile of its own: nothing of full is written where smoke writes
    for stage in stages:
        paths = stage.paths()
        written = [p for section in ("outs", "outs_no_cache", "metrics", "plots") for p, _ in paths[section]]
        assert written and all(p.split("/")[1] == "full" for p in written), stage.name


def test_stage_paths_are_declared_on_the_configs():
    stages = {s.kind: s for s in _load().plan()}
    corpus = stages["data"].paths()
    assert [p for p, _ in corpus["deps"]] == ["data/tinystories_like/stories.txt"]
    train = stages["train"]
    assert [p for p, _ in train.paths()["deps"]] == [train.config.shards_dir]
    assert train.paths()["plots"] == [(train.config.curve, {"x": "step", "y": "train_loss"})]
    assert train.config.train.threads == 1 and train.config.train.seq_len == train.config.point.seq_len + 1
    report = stages["report"].paths()
    assert report["outs_no_cache"] == [("reports/hmm_icl", {})]
    assert {p for p, _ in report["deps"]} >= set(stages["report"].config.icl_curves)


def test_trainer_fields_the_study_fixes_are_spec_errors(tmp_path):
    text = SPEC.read_text().replace("device: cpu, threads: 1}", "device: cpu, threads: 1, seq_len: 64}")
    bad = tmp_path / "hmm_icl.yaml"
    bad.write_text(text)
    with pytest.raises(SpecError, match="seq_len"):
        load_spec(bad, load_params(REPO / "params.yaml"), discover_studies())


def test_knobs_reach_exactly_the_stages_that_read_them():
    loaded = _load()
    by_kind = {}
    for stage in loaded.plan():
        by_kind.setdefault(stage.kind, set()).update(loaded.knobs_under(stage.reads))
    assert "hmm_update_freq" in by_kind["fit"] and "hmm_start" not in by_kind["fit"]
    assert "hmm_start" in by_kind["sample"]
    assert not {"hmm_update_freq", "hmm_start"} & (by_kind["eval"] | by_kind["train"] | by_kind["icl"])
    fit = next(s for s in loaded.plan() if s.kind == "fit")
    assert fit.config.em.update_freq == load_params(REPO / "params.yaml")["hmm_update_freq"]


def test_every_permutation_pool_gets_its_own_corpus_llama_and_icl_stage():
    stages = _load().plan()
    pool = 4
    for kind in ("sample", "train", "icl"):
        names = sorted(s.name for s in stages if s.kind == kind)
        assert names == sorted([f"hmm_icl-{kind}-k32-h16-l32-p1", f"hmm_icl-{kind}-k32-h16-l32-p{pool}"])
    assert {s.config.permutations.pool for s in stages if s.kind == "sample"} == {1, pool}


def test_reference_profile_runs_pools_1_8_64_on_the_tinystories_slice():
    loaded = _load("reference")
    stages = loaded.plan()
    assert loaded.spec.corpus.path == "published/tinystories/val.txt"
    icl = [s for s in stages if s.kind == "icl"]
    assert sorted(s.config.permutations.pool for s in icl) == [1, 8, 64]
    assert all(s.config.point.seq_len >= 128 and 16 <= s.config.point.emissions <= 32 for s in icl)
    assert {"hmm_icl-em-update-freq", "hmm_icl-em-duplicates"} <= {s.name for s in stages}
    for stage in stages:
        paths = stage.paths()
        written = [p for section in ("outs", "outs_no_cache", "metrics", "plots") for p, _ in paths[section]]
        assert all(p.split("/")[1] == "reference" for p in written), stage.name


def test_em_experiments_point_outside_the_grid_is_a_spec_error(tmp_path):
    text = SPEC.read_text().replace("point: {emissions: 32, hidden: 8, seq_len: 32}",
                                    "point: {emissions: 32, hidden: 9, seq_len: 32}", 1)
    bad = tmp_path / "hmm_icl.yaml"
    bad.write_text(text)
    with pytest.raises(SpecError, match="k32-h9-l32"):
        load_spec(bad, load_params(REPO / "params.yaml"), discover_studies())


def test_synthetic_point_outside_the_grid_is_a_spec_error(tmp_path):
    text = SPEC.read_text().replace("points: [{emissions: 32, hidden: 16, seq_len: 32}]",
                                    "points: [{emissions: 32, hidden: 17, seq_len: 32}]")
    bad = tmp_path / "hmm_icl.yaml"
    bad.write_text(text)
    params = load_params(REPO / "params.yaml")
    with pytest.raises(SpecError, match="k32-h17-l32"):
        load_spec(bad, params, discover_studies())


def test_steps_by_pool_sets_only_that_pools_llama_steps(tmp_path):
    text = SPEC.read_text().replace("icl: {smoothing: 0.5,", "  steps_by_pool: {4: 350}\n\nicl: {smoothing: 0.5,", 1)
    spec = tmp_path / "hmm_icl.yaml"
    spec.write_text(text)
    loaded = load_spec(spec, load_params(REPO / "params.yaml"), discover_studies())
    steps = {s.name: s.config.train.steps for s in loaded.plan() if s.kind == "train"}
    assert steps == {"hmm_icl-train-k32-h16-l32-p1": 200, "hmm_icl-train-k32-h16-l32-p4": 350}


def test_steps_by_pool_naming_an_unknown_pool_is_a_spec_error(tmp_path):
    text = SPEC.read_text().replace("icl: {smoothing: 0.5,", "  steps_by_pool: {16: 350}\n\nicl: {smoothing: 0.5,", 1)
    bad = tmp_path / "hmm_icl.yaml"
    bad.write_text(text)
    with pytest.raises(SpecError, match=r"steps_by_pool names pool sizes \[16\]"):
        load_spec(bad, load_params(REPO / "params.yaml"), discover_studies())
