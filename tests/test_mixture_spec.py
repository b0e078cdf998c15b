"""specs/mixture_sim.yaml: validation with positions, and what the plan makes of it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.spec import SpecError, load_params, load_spec
from harness.study import discover_studies

REPO = Path(__file__).resolve().parents[1]
SPEC = REPO / "specs" / "mixture_sim.yaml"
DOMAIN_DIRS = ("wikipedia", "stackexchange", "github", "arxiv", "book")


def _load(text: str | None = None, profile: str = "smoke", tmp_path: Path | None = None):
    params = load_params(REPO / "params.yaml")
    params["profile"] = profile
    path = SPEC
    if text is not None:
        path = tmp_path / "mixture_sim.yaml"
        path.write_text(text)
    return load_spec(path, params, discover_studies())


def _broken(tmp_path: Path, old: str, new: str) -> str:
    text = SPEC.read_text()
    assert old in text, old
    with pytest.raises(SpecError) as info:
        _load(text.replace(old, new, 1), tmp_path=tmp_path)
    return str(info.value)


@pytest.mark.parametrize("profile", ["smoke", "full"])
def test_both_profiles_plan_a_consistent_dag(profile):
    loaded = _load(profile=profile)
    spec = loaded.spec
    assert list(spec.tables) == ["generated", "regmix"]
    gen = spec.tables["generated"]
    stages = [s for s in loaded.plan() if s.name.startswith("mixture_sim-generated-")]
    names = [s.name for s in stages]
    runs = [s for s in stages if s.kind == "train"]
    assert len(runs) == gen.source.mixtures.count * len(gen.source.models)
    assert names[len(runs):len(runs) + 2] == ["mixture_sim-generated-table", "mixture_sim-generated-splits"]
    assert names[-4:] == [f"mixture_sim-generated-{s}" for s in ("evaluate", "simulator", "search", "report")]
    n_points = sum(len(r.grid.points()) for r in gen.regressors)
    assert sum(1 for s in stages if s.kind == "fit") == n_points + 1  # + the simulator
    for stage in runs:
        assert abs(sum(stage.config.proportions.values()) - 1.0) < 1e-9
        deps = [p for p, _ in stage.paths()["deps"]]
        # the exact files a run reads: each domain's train.txt, the eval corpora and task files
        assert set(deps) == {f"data/mixture_domains/{d}/{f}" for d in DOMAIN_DIRS for f in ("train.txt", "eval.txt")} | {
            f"data/mixture_domains/{d}/eval.txt" for d in ("commoncrawl", "c4")} | {
            f"data/mixture_domains/tasks/{t}_style.jsonl" for t in ("hellaswag", "piqa", "arc_easy")}
        assert [p for p, _ in stage.paths()["outs"]] == [stage.config.out]
        assert stage.config.train.seed == spec.seed and stage.config.train.eval_every == 0
    table = stages[len(runs)]
    assert [p for p, _ in table.paths()["deps"]] == [s.config.out for s in runs]
    work = "work/mixture_sim/generated" if profile == "smoke" else f"work/{profile}/mixture_sim/generated"
    assert all(p.startswith(work + "/") for s in stages for p, _ in s.paths()["outs"])
    assert loaded.knobs_under(runs[0].reads) == {"seed", "mixture_corpora"}
    assert loaded.knobs_under(table.reads) == set()  # table building reads no knob


def test_regmix_table_plans_from_the_published_copy():
    loaded = _load()
    regmix = loaded.spec.tables["regmix"]
    assert len(regmix.table.domains) == 17 and len(regmix.table.targets) == 13
    assert regmix.table.size is None and regmix.table.step is None and regmix.table.key_columns == ["run"]
    assert regmix.table.tolerance == pytest.approx(17 * 0.0005)
    assert set(regmix.reference.spearman_percent) == set(regmix.table.target_names)
    table = next(s for s in loaded.plan() if s.name == "mixture_sim-regmix-table")
    deps = [p for p, _ in table.paths()["deps"]]
    assert sorted(deps) == sorted(f"published/regmix/{p}_{k}_1m.csv" for p in ("train", "test")
                                  for k in ("mixture", "pile_loss"))
    assert all((REPO / d).is_file() for d in deps)


def test_table_without_size_cannot_declare_a_size_split(tmp_path):
    message = _broken(tmp_path, "- {kind: subset, name: regmix, test: test}",
                      "- {kind: subset, name: regmix, test: test}\n      - {kind: size_at_least, name: big, "
                      "threshold: 10}")
    assert "split `big` (size_at_least) needs the table's `size` column" in message


def test_search_target_and_context_are_checked(tmp_path):
    assert "search.target `loss/pile` is not a target" in _broken(tmp_path, "search: {target: loss/pile_cc,",
                                                                   "search: {target: loss/pile,")
    assert "search.at must give exactly the non-mixture features" in _broken(
        tmp_path, "at: {model_size: 98624, d_model: 64, n_heads: 4, step: 100}", "at: {model_size: 98624}")


def test_adding_a_grid_value_keeps_existing_sweep_stage_names(tmp_path):
    before = {s.name for s in _load().plan() if s.kind == "fit"}
    text = SPEC.read_text().replace("grid: {alpha: [0.1, 10.0]}", "grid: {alpha: [0.1, 10.0, 100.0]}")
    after = {s.name for s in _load(text, tmp_path=tmp_path).plan() if s.kind == "fit"}
    assert before < after and len(after - before) == 1


def test_measures_must_cover_the_targets(tmp_path):
    message = _broken(tmp_path, "    eval/downstream/arc_easy_acc: {kind: choice_accuracy",
                      "    eval/downstream/arc_easy: {kind: choice_accuracy")
    assert "mixture_sim.yaml:" in message
    assert "missing ['eval/downstream/arc_easy_acc']" in message and "not targets ['eval/downstream/arc_easy']" in message


def test_unknown_log_feature_and_bad_split_kind_are_named(tmp_path):
    assert "features.log names unknown feature columns ['steps']" in _broken(
        tmp_path, "log: [model_size, step]", "log: [model_size, steps]")
    message = _broken(tmp_path, "{kind: step_above, name: step, threshold: 60}",
                      "{kind: step_after, name: step, threshold: 60}")
    assert "splits.3" in message and "step_after" in message


def test_typo_in_a_regressor_grid_is_rejected_with_position(tmp_path):
    message = _broken(tmp_path, "grid: {alpha: [0.1, 10.0]}", "grid: {alpah: [0.1, 10.0]}")
    assert "alpah" in message and "unknown field" in message


def test_train_section_is_the_shared_trainer_settings(tmp_path):
    from harness.trainer import TrainSettings

    source = _load().spec.tables["generated"].source
    assert type(source.train) is TrainSettings and source.train.weight_decay == 0.1
    message = _broken(tmp_path, "device: cpu, threads: 1}", "device: cpu, threads: 1, seed: 3}")
    assert "top-level `seed`" in message


@pytest.mark.parametrize("profile", ["smoke", "full"])
def test_stage_configs_survive_their_key_sorted_config_file(profile):
    """`harness run` loads each config from its file, which stores mappings key-sorted: values and
    every order that shapes an output (features, splits, regressors) must come back unchanged."""
    from harness.compiler import config_payload

    loaded = _load(profile=profile)
    spec = loaded.spec
    for stage in loaded.plan():
        again = type(stage.config).model_validate(json.loads(config_payload(stage))["config"])
        assert again == stage.config
        assert again.table.feature_columns == stage.config.table.feature_columns
        if stage.kind == "evaluate":
            ts = spec.tables[stage.name.split("-")[1]]
            assert [s.name for s in again.split_dirs] == [s.name for s in ts.splits]
            assert [g.regressor for g in again.sweeps] == [r.label for r in ts.regressors]
