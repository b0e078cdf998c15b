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
        for out in stage.outs:
            assert out.startswith("work/hmm_icl/")
        for m in stage.metrics:
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


def test_knobs_reach_exactly_the_stages_that_read_them():
    loaded = _load()
    by_kind = {}
    for stage in loaded.plan():
        by_kind.setdefault(stage.kind, set()).update(loaded.knobs_under(stage.reads))
    assert "hmm_update_freq" in by_kind["fit"] and "hmm_permute" not in by_kind["fit"]
    assert "hmm_permute" in by_kind["sample"]
    assert not {"hmm_update_freq", "hmm_permute"} & (by_kind["eval"] | by_kind["train"] | by_kind["icl"])
    fit = next(s for s in loaded.plan() if s.kind == "fit")
    assert fit.config.em.update_freq == load_params(REPO / "params.yaml")["hmm_update_freq"]


def test_synthetic_point_outside_the_grid_is_a_spec_error(tmp_path):
    text = SPEC.read_text().replace("points: [{emissions: 32, hidden: 16, seq_len: 32}]",
                                    "points: [{emissions: 32, hidden: 17, seq_len: 32}]")
    bad = tmp_path / "hmm_icl.yaml"
    bad.write_text(text)
    params = load_params(REPO / "params.yaml")
    with pytest.raises(SpecError, match="k32-h17-l32"):
        load_spec(bad, params, discover_studies())
