"""The RegMix-format table (parts joined on a key, no size/step), the held-out-mixture split,
the saved simulator and its CLI input checks, and the mixture search on a known optimum."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness.spec import load_params, load_spec
from harness.study import discover_studies
from harness.validation import GateFailure
from stages.mixture_sim.configs import (
    FeatureSpec, HeldOutMixtureSplit, SearchSpec, SimulatorStageConfig, SubsetSplit, TableSchema, TableStageConfig,
    TargetSpec,
)
from stages.mixture_sim.search import search
from stages.mixture_sim.simulate import InputError, check_input, main as simulate_main, predict_frame
from stages.mixture_sim.simulator import fit_simulator, load_simulator, save_simulator, schema_payload
from stages.mixture_sim.splits import arrays, make_split, mixture_keys
from stages.mixture_sim.synthetic import seed_schema, smooth_table
from stages.mixture_sim.table import run as table_stage

REPO = Path(__file__).resolve().parents[1]
PUBLISHED = REPO / "published" / "regmix"


@pytest.fixture(scope="module")
def regmix():
    """The spec's RegMix table study (schema + source), as the pipeline sees it."""
    params = load_params(REPO / "params.yaml")
    return load_spec(REPO / "specs" / "mixture_sim.yaml", params, discover_studies()).spec.tables["regmix"]


def _small_parts(tmp_path: Path, rows: int = 12, edit=None) -> dict[str, list[str]]:
    """The first rows of RegMix's four CSVs in tmp_path; ``edit(name, frame)`` may corrupt one."""
    parts = {}
    for part in ("train", "test"):
        files = []
        for kind in ("mixture", "pile_loss"):
            name = f"{part}_{kind}_1m.csv"
            frame = pd.read_csv(PUBLISHED / name).head(rows)
            if edit:
                frame = edit(name, frame)
            frame.to_csv(tmp_path / name, index=False)
            files.append(str(tmp_path / name))
        parts[part] = files
    return parts


def _table_cfg(regmix, tmp_path: Path, parts) -> TableStageConfig:
    source = regmix.source.model_copy(update={"parts": parts})
    return TableStageConfig(table=regmix.table, source=source, out=str(tmp_path / "out" / "table.parquet"),
                            gate_report=str(tmp_path / "out" / "gate.json"), metrics=str(tmp_path / "out" / "m.json"))


def _gate_fails(regmix, tmp_path, edit) -> GateFailure:
    cfg = _table_cfg(regmix, tmp_path, _small_parts(tmp_path, edit=edit))
    with pytest.raises(GateFailure) as info:
        table_stage(cfg)
    assert not Path(cfg.out).exists() and not Path(cfg.metrics).exists()  # nothing half-written
    return info.value


def test_published_copy_is_unchanged():
    import hashlib

    readme = (PUBLISHED / "README.md").read_text()
    for name in ("train_mixture_1m.csv", "train_pile_loss_1m.csv", "test_mixture_1m.csv", "test_pile_loss_1m.csv",
                 "LICENSE"):
        digest = hashlib.sha256((PUBLISHED / name).read_bytes()).hexdigest()
        assert digest in readme, name


def test_regmix_parts_join_and_pass_the_gate(regmix, tmp_path):
    cfg = _table_cfg(regmix, tmp_path, _small_parts(tmp_path))
    table_stage(cfg)
    table = pd.read_parquet(cfg.out)
    assert len(table) == 24 and set(table["part"]) == {"train", "test"}
    assert table["run"].str.match(r"^(train|test)-\d+$").all()
    assert list(table.columns[:2]) == ["run", "arxiv"] and "loss/pile_cc" in table.columns
    # RegMix rounds to 3 decimals: sums are off by up to 0.004 and must pass
    assert (table[regmix.table.domains].sum(axis=1) - 1).abs().max() > 1e-6
    metrics = json.loads(Path(cfg.metrics).read_text())
    assert metrics["subsets"] == {"test": 12, "train": 12} and "sizes" not in metrics


def test_gate_rejects_a_row_summing_to_1_2(regmix, tmp_path):
    def edit(name, frame):
        if name == "train_mixture_1m.csv":
            frame.loc[3, "train_the_pile_arxiv"] += 0.2
        return frame
    failure = _gate_fails(regmix, tmp_path, edit)
    sums = [f for f in failure.failures if f["column"] == "_proportion_sum"]
    assert sums and "1.2" in sums[0]["summary"] and "0.9915" in sums[0]["summary"]  # 1 - 17 x 0.0005


def test_gate_rejects_a_nan_loss(regmix, tmp_path):
    def edit(name, frame):
        if name == "test_pile_loss_1m.csv":
            frame.loc[5, "metric/the_pile_github_val_loss"] = np.nan
        return frame
    failure = _gate_fails(regmix, tmp_path, edit)
    assert any(f["column"] == "loss/github" and "not_be_null" in f["summary"] for f in failure.failures)


def test_gate_rejects_a_duplicated_key(regmix, tmp_path):
    def edit(name, frame):
        if name.startswith("train_"):
            frame.loc[7, "index"] = frame.loc[6, "index"]
        return frame
    failure = _gate_fails(regmix, tmp_path, edit)
    assert any(f["column"] == "run" and "unique" in f["summary"] for f in failure.failures)


def _final_loss_schema() -> TableSchema:
    return TableSchema(step=None, size=None, shape={}, domains=["a", "b", "c"],
                       targets=[TargetSpec(name="loss"), TargetSpec(name="other")])


def test_subset_split_is_the_sources_own_and_disjoint():
    schema = TableSchema(step=None, size=None, shape={}, subset="part", domains=["a", "b"],
                         targets=[TargetSpec(name="loss")])
    frame = pd.DataFrame({"run": [f"r{i}" for i in range(10)], "a": np.linspace(0, 1, 10),
                          "part": ["train"] * 7 + ["test"] * 3})
    frame["b"] = 1 - frame["a"]
    frame["loss"] = frame["a"] ** 2
    train, test, _ = make_split(frame, schema, SubsetSplit(name="own"), seed=0)
    assert set(test["part"]) == {"test"} and set(train["part"]) == {"train"}
    assert not set(train["run"]) & set(test["run"]) and len(train) + len(test) == 10


def test_heldout_mixture_split_shares_no_mixture_at_any_size_or_step():
    schema = seed_schema()
    table = smooth_table(schema, n_mixtures=8, sizes=[(20e6, 256, 4), (60e6, 512, 8)], steps=[1000, 2000, 4000])
    train, test, report = make_split(table, schema, HeldOutMixtureSplit(name="mix", test_fraction=0.25), seed=3)
    train_mix, test_mix = set(mixture_keys(train, schema)), set(mixture_keys(test, schema))
    assert len(test_mix) == 2 and len(train_mix) == 6 and not train_mix & test_mix
    assert len(test) == 2 * 2 * 3  # every size and step of a held-out mixture is held out
    assert train["_cv_group"].nunique() == 6  # CV folds hold out mixtures too
    assert "expect_column_values_to_not_be_in_set" in report["expectations"]


def test_heldout_mixture_gate_catches_a_leak():
    from stages.mixture_sim.splits import check_split

    schema = seed_schema()
    table = smooth_table(schema, n_mixtures=4, sizes=[(20e6, 256, 4)], steps=[1000, 2000])
    keys = mixture_keys(table, schema)
    test = table[keys == keys[0]]
    train = table[keys != keys[0]]
    leak = pd.concat([train, test.iloc[:1]])  # one checkpoint of a test mixture also in training
    with pytest.raises(GateFailure) as info:
        check_split(leak, test.iloc[1:], schema, HeldOutMixtureSplit(name="mix"), len(table))
    assert any(f["column"] == "_mixture" for f in info.value.failures)


def _sim_cfg(tmp_path: Path, schema: TableSchema) -> SimulatorStageConfig:
    return SimulatorStageConfig(study="mixture_sim", table_name="toy", table=schema, features=FeatureSpec(),
                                split="s", split_dir=str(tmp_path), evaluate_dir=str(tmp_path), members=3, seed=0,
                                out_dir=str(tmp_path / "sim"), metrics=str(tmp_path / "sim.json"))


def _linear_table(n: int = 200, seed: int = 0):
    """loss = 3 - 2a - 0.5b (so the best mixture is all `a`), other = a + c; exactly linear."""
    rng = np.random.default_rng(seed)
    mix = rng.dirichlet([1.0, 1.0, 1.0], size=n)
    return pd.DataFrame({"run": [f"r{i}" for i in range(n)], "a": mix[:, 0], "b": mix[:, 1], "c": mix[:, 2],
                         "loss": 3 - 2 * mix[:, 0] - 0.5 * mix[:, 1], "other": mix[:, 0] + mix[:, 2]})


def _saved(tmp_path: Path, kind: str = "ridge", params=None):
    schema = _final_loss_schema()
    frame = _linear_table()
    x, y = arrays(frame, schema)
    cfg = _sim_cfg(tmp_path, schema)
    params = params if params is not None else {"alpha": 1e-6}
    model, members = fit_simulator(schema, cfg.features, kind, params, x, y, cfg.members, cfg.seed)
    save_simulator(cfg.out_dir, schema_payload(cfg, kind, kind, params, len(frame)), model, members)
    return schema, frame, cfg, model


@pytest.mark.parametrize("kind,params", [("ridge", {"alpha": 1e-6}),
                                         ("hist_gradient_boosting", {"max_iter": 50, "learning_rate": 0.1,
                                                                     "max_leaf_nodes": 7, "min_samples_leaf": 5,
                                                                     "l2_regularization": 0.0})])
def test_saved_simulator_round_trip(tmp_path, kind, params):
    schema, frame, cfg, model = _saved(tmp_path, kind, params)
    sim = load_simulator(cfg.out_dir)
    assert sim.targets == ["loss", "other"] and sim.features == ["a", "b", "c"]
    assert sim.schema["format_version"] == 1 and sim.schema["kind"] == kind
    x, _ = arrays(frame, schema)
    pred, spread = sim.predict(x)
    np.testing.assert_array_equal(pred, np.asarray(model.predict(x)))  # the pickled model, unchanged
    assert spread.shape == pred.shape and (spread >= 0).all() and spread.max() > 0
    schema_file = Path(cfg.out_dir) / "schema.json"
    stale = json.loads(schema_file.read_text())
    stale["format_version"] = 0
    schema_file.write_text(json.dumps(stale))
    with pytest.raises(ValueError, match="format 0"):
        load_simulator(cfg.out_dir)


def test_ridge_simulator_is_exact_on_a_linear_table(tmp_path):
    _, _, cfg, _ = _saved(tmp_path)
    sim = load_simulator(cfg.out_dir)
    pred, _ = sim.predict(np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]))
    np.testing.assert_allclose(pred, [[1.0, 1.0], [3.0, 1.0]], atol=1e-4)  # closed form


def test_search_finds_the_known_best_mixture(tmp_path):
    schema, frame, cfg, _ = _saved(tmp_path)
    sim = load_simulator(cfg.out_dir)
    spec = SearchSpec(target="loss", candidates=20000, concentration=1.0, top=10)
    found = search(sim, schema, spec, frame[schema.domains].to_numpy(), seed=0)
    best = found["mixtures"][0]
    assert best[0] > 0.97  # the optimum is the pure-`a` vertex; 20k draws get close
    assert found["pred"][0] == pytest.approx(3 - 2 * best[0] - 0.5 * best[1], abs=1e-4)
    assert np.all(np.diff(found["pred"]) >= 0)  # ranked best first
    assert found["mixtures"].sum(axis=1) == pytest.approx(np.ones(10))
    # maximising flips the choice: `other` = a + c is best with no `b`
    sim.schema["better"]["other"] = "higher"
    up = search(sim, schema, SearchSpec(target="other", candidates=5000, top=3), frame[schema.domains].to_numpy(), 0)
    assert up["mixtures"][0][1] < 0.03


def test_simulate_input_is_validated(tmp_path):
    _, _, cfg, _ = _saved(tmp_path)
    sim = load_simulator(cfg.out_dir)
    good = pd.DataFrame({"id": ["x"], "a": [0.5], "b": [0.25], "c": [0.25]})
    check_input(good, sim, "in.csv")
    out = predict_frame(good, sim)
    assert out.loc[0, "loss"] == pytest.approx(3 - 1 - 0.125, abs=1e-4) and "spread:loss" in out

    def problems(frame) -> str:
        with pytest.raises(InputError) as info:
            check_input(frame, sim, "in.csv")
        return str(info.value)

    msg = problems(good.assign(d=[0.0]))
    assert "in.csv: unknown column(s) ['d']" in msg and "['a', 'b', 'c']" in msg
    assert "missing column(s) ['c']" in problems(good.drop(columns=["c"]))
    assert "line 2 sums to 1.2" in problems(good.assign(a=[0.7]))
    assert "outside [0, 1]" in problems(good.assign(a=[1.5], b=[-0.25], c=[-0.25]))
    assert "not a number" in problems(good.assign(b=["x"]))


def test_simulate_command_exits_2_on_an_unknown_domain(tmp_path, capsys):
    """The CLI hook end to end on the repository's own saved RegMix simulator, when present."""
    folder = REPO / "work" / "mixture_sim" / "regmix" / "simulator"
    if not (folder / "schema.json").exists():
        pytest.skip("the RegMix simulator is not reproduced in this checkout (dvc repro)")
    domains = load_simulator(folder).domains
    row = {d: 1.0 / len(domains) for d in domains}
    (tmp_path / "in.csv").write_text(pd.DataFrame([{**row, "openwebtext": 0.0}]).to_csv(index=False))
    code = simulate_main(REPO, "smoke", {"table": "regmix", "input": str(tmp_path / "in.csv"),
                                         "output": str(tmp_path / "out.csv")})
    assert code == 2 and "unknown column(s) ['openwebtext']" in capsys.readouterr().err
    assert not (tmp_path / "out.csv").exists()
    (tmp_path / "in.csv").write_text(pd.DataFrame([row]).to_csv(index=False))
    assert simulate_main(REPO, "smoke", {"table": "regmix", "input": str(tmp_path / "in.csv"),
                                         "output": str(tmp_path / "out.csv")}) == 0
    assert len(pd.read_csv(tmp_path / "out.csv")) == 1
    assert simulate_main(REPO, "smoke", {"table": "nope", "input": "x", "output": "y"}) == 2


def test_a_split_identical_to_another_is_refused(tmp_path):
    from stages.mixture_sim.configs import LargerThanSplit, SizeAtLeastSplit, SplitsStageConfig
    from stages.mixture_sim.splits import run as splits_stage
    from stages.mixture_sim.tableio import write_parquet

    schema = seed_schema()
    table = smooth_table(schema, n_mixtures=3, sizes=[(20e6, 256, 4), (60e6, 512, 8), (150e6, 768, 12)],
                         steps=[1000, 2000])
    write_parquet(tmp_path / "t.parquet", table)
    splits = [SizeAtLeastSplit(name="size", threshold=1e8), LargerThanSplit(name="larger", threshold=6e7)]
    cfg = SplitsStageConfig(table=schema, table_file=str(tmp_path / "t.parquet"), splits=splits, seed=0,
                            out_dirs={s.name: str(tmp_path / s.name) for s in splits}, metrics=str(tmp_path / "m.json"))
    with pytest.raises(ValueError, match="`size` = `larger`"):
        splits_stage(cfg)
    assert not (tmp_path / "size").exists()
    differ = [splits[0], LargerThanSplit(name="larger", threshold=3e7)]  # train 20M only; test 60M and 150M
    splits_stage(cfg.model_copy(update={"splits": differ}))
    info = json.loads((tmp_path / "m.json").read_text())
    assert info["size"]["test_rows"] == 6 and info["larger"]["test_rows"] == 12


def test_ensemble_simulator_is_the_mean_of_its_members(tmp_path):
    from stages.mixture_sim.regressors import build

    schema = _final_loss_schema()
    frame = _linear_table()
    x, y = arrays(frame, schema)
    hgb = {"max_iter": 30, "learning_rate": 0.1, "max_leaf_nodes": 7, "min_samples_leaf": 5, "l2_regularization": 0.0}
    params = {"members": [{"regressor": "ridge", "kind": "ridge", "params": {"alpha": 1.0}},
                          {"regressor": "hgb", "kind": "hist_gradient_boosting", "params": hgb}]}
    cfg = _sim_cfg(tmp_path, schema)
    model, members = fit_simulator(schema, cfg.features, "ensemble", params, x, y, 2, 0)
    save_simulator(cfg.out_dir, schema_payload(cfg, "ensemble", "ensemble", params, len(frame)), model, members)
    sim = load_simulator(cfg.out_dir)
    singles = [build(m["kind"], m["params"], schema, cfg.features, 0).fit(x, y).predict(x) for m in params["members"]]
    np.testing.assert_allclose(sim.predict(x)[0], np.mean(singles, axis=0), rtol=0, atol=1e-12)


def test_per_target_simulator_takes_each_column_from_its_own_choice(tmp_path):
    from stages.mixture_sim.regressors import build

    schema = _final_loss_schema()
    frame = _linear_table()
    x, y = arrays(frame, schema)
    hgb = {"max_iter": 30, "learning_rate": 0.1, "max_leaf_nodes": 7, "min_samples_leaf": 5, "l2_regularization": 0.0}
    members = [{"regressor": "ridge", "kind": "ridge", "params": {"alpha": 1.0}},
               {"regressor": "hgb", "kind": "hist_gradient_boosting", "params": hgb}]
    combos = [["ridge"], ["hgb"], ["ridge", "hgb"]]
    targets = {t: combos[j % 3] for j, t in enumerate(schema.target_names)}
    params = {"members": members, "targets": targets}
    cfg = _sim_cfg(tmp_path, schema)
    model, boot = fit_simulator(schema, cfg.features, "per_target", params, x, y, 2, 0)
    save_simulator(cfg.out_dir, schema_payload(cfg, "per_target", "per_target", params, len(frame)), model, boot)
    sim = load_simulator(cfg.out_dir)
    single = {m["regressor"]: build(m["kind"], m["params"], schema, cfg.features, 0).fit(x, y).predict(x).reshape(len(x), -1)
              for m in members}
    got = sim.predict(x)[0]
    for j, t in enumerate(schema.target_names):
        np.testing.assert_allclose(got[:, j], np.mean([single[m][:, j] for m in targets[t]], axis=0), rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="no regressor for target"):
        fit_simulator(schema, cfg.features, "per_target", {"members": members, "targets": {}}, x, y, 0, 0)
