"""The user's flow, through the real dvc CLI on a throwaway copy of the repo:

dvc repro -> dvc repro (no-op) -> dvc exp run -S glu=3.0 (only glu stages) -> dvc metrics diff
-> dvc exp run -S gluu=3.0 (rejected, nothing runs); plus a corrupted corpus blocked by the gate.
The param_alloc spec is shrunk (2 grid points, a few steps) so the whole flow takes ~1-2 minutes.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import edit_yaml, prepare_project, ran_stages, reproduced_project, run

pytestmark = pytest.mark.slow


def shrink(root: Path) -> None:
    def mutate(spec: dict) -> None:
        spec["grid"] = {"embed_share": [0.35], "glu": [2.0, 4.0]}
        spec["phase1"].update(tokens=6 * 16 * 64, top_k=1)
        spec["phase1"]["early_stop"]["window_tokens"] = 2048
        spec["phase2"]["tokens"] = 6 * 16 * 64
        spec["train"].update(eval_every=3, checkpoint_every=3, eval_batches=1)
        spec["lr_find"]["steps"] = 6
        spec["overfit"].update(steps=5, max_final_loss=100.0)
        spec["eval"].update(latency_seq_lens=[32], latency_repeats=1, throughput_batch=1,
                            throughput_seq_len=32, eval_batches=1)
        for task in spec["eval"]["tasks"]:
            task["max_examples"] = 4
        spec.pop("profiles", None)

    edit_yaml(root / "specs" / "param_alloc.yaml", mutate)



@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return reproduced_project(tmp_path_factory.mktemp("flow") / "repo", "param_alloc", shrink)


def test_first_repro_runs_everything_and_writes_report(project):
    root, out = project
    assert "param_alloc-phase1-e35_g2_0" in ran_stages(out)
    assert (root / "reports/param_alloc/RESULTS.md").exists()
    assert (root / "reports/param_alloc/pareto_latency.png").stat().st_size > 1000
    lock = (root / "dvc.lock").read_text()
    assert "param_alloc-report" in lock


def test_second_repro_is_a_noop(project):
    root, _ = project
    out = run(["dvc", "repro"], root).stdout
    assert ran_stages(out) == set(), out


def test_unknown_knob_rejected_and_nothing_runs(project):
    root, _ = project
    # DVC's own override parser already refuses a key missing from params.yaml ...
    proc = run(["dvc", "exp", "run", "-S", "gluu=3.0"], root, check=False)
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "gluu" in text, text
    assert ran_stages(text) == set(), text
    # ... and appending it (`+gluu`, or a hand edit) is caught by the check-params stage, with a hint
    proc = run(["dvc", "exp", "run", "-S", "+gluu=3.0"], root, check=False)
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "unknown knob `gluu`" in text and "did you mean `glu`?" in text, text
    assert ran_stages(text) <= {"check-params"}, text
    run(["git", "checkout", "--", "params.yaml"], root)
    # the failed check-params run removed its outputs (the stage configs); repro restores them from the cache
    out = run(["dvc", "repro"], root).stdout
    assert ran_stages(out) <= {"check-params"}, out
    assert set(json.loads(run(["dvc", "status", "--json"], root).stdout)) == set()


def _configs_mentioning(root: Path, key: str) -> set[str]:
    """Independent reference: stages whose config file holds ``key`` (read from the files)."""
    return {p.stem for p in (root / "work/_harness/configs").glob("*.json") if f'"{key}"' in p.read_text()}


def _stale(root: Path) -> set[str]:
    return set(json.loads(run(["dvc", "status", "--json"], root).stdout))


def test_spec_value_reruns_only_the_stages_whose_config_holds_it(project):
    root, _ = project
    spec = root / "specs/param_alloc.yaml"
    original = spec.read_text()
    readers = _configs_mentioning(root, "latency_repeats")
    assert readers and "param_alloc-phase1-e35_g2_0" not in readers
    edit_yaml(spec, lambda s: s["eval"].update(latency_repeats=2))
    try:
        why = run(["harness", "status", "--direct"], root).stdout
        for stage in readers:
            assert f"{stage}: spec value eval.latency_repeats 1 -> 2" in why, why
        run(["dvc", "repro", "check-params"], root)  # rewrites the configs; only changed files change hash
        assert _stale(root) == readers, (_stale(root), readers)
    finally:
        spec.write_text(original)
        run(["dvc", "repro", "check-params"], root)
    assert _stale(root) == set()


def test_editing_a_helper_function_stales_exactly_the_stages_that_loaded_it(project):
    root, _ = project
    helper = "stages/param_alloc/tasks.py"
    loaders = {json.loads(p.read_text())["stage"] for p in (root / "work/_harness/traces").glob("*.json")
               if helper in json.loads(p.read_text())["loaded"]}
    assert loaders and not any("phase1" in s for s in loaders), loaders
    path = root / helper
    original = path.read_text()
    path.write_text(original + "\n\ndef _unused_helper() -> int:\n    return 1\n")
    try:
        assert _stale(root) == loaders
        why = run(["harness", "status"], root).stdout
        assert any(f"{s}: {helper} changed (_unused_helper)" in why for s in loaders), why
    finally:
        path.write_text(original)
    assert _stale(root) == set()


def test_harness_status_names_the_knob(project):
    root, _ = project
    params = root / "params.yaml"
    original = params.read_text()
    edit_yaml(params, lambda p: p.update(glu=3.0))
    try:
        why = run(["harness", "status", "--json"], root).stdout
        reasons = {s["stage"]: s["reasons"] for s in json.loads(why)}
        assert "knob glu 2.66 -> 3.0" in reasons["param_alloc-shapes"], reasons
        assert "param_alloc-phase1-e35_g2_0" not in reasons
    finally:
        params.write_text(original)


def test_glu_knob_reruns_only_glu_stages_and_metrics_diff_shows_it(project):
    root, _ = project
    before = json.loads((root / "metrics/param_alloc/phase2/baseline.json").read_text())
    out = run(["dvc", "exp", "run", "-S", "glu=3.0"], root).stdout
    ran = ran_stages(out) - {"check-params"}
    glu_stages = {"param_alloc-shapes", "param_alloc-lr_find", "param_alloc-overfit",
                  "param_alloc-phase2-baseline", "param_alloc-eval-baseline"}
    downstream = {"param_alloc-profile", "param_alloc-report"}  # their inputs changed
    assert glu_stages <= ran <= glu_stages | downstream, ran
    assert not any("phase1" in s or "top1" in s or s.endswith(("prepare", "tokenize", "gate")) for s in ran)
    after = json.loads((root / "metrics/param_alloc/phase2/baseline.json").read_text())
    assert after["glu"] == 3.0 and before["glu"] == 2.66
    diff = run(["dvc", "metrics", "diff", "--json"], root).stdout
    changed = json.loads(diff)
    assert "metrics/param_alloc/phase2/baseline.json" in changed
    assert changed["metrics/param_alloc/phase2/baseline.json"]["glu"]["new"] == 3.0
    assert not any("phase1" in path for path in changed)


def test_corrupted_corpus_is_blocked_before_training(tmp_path: Path):
    def corrupt(root: Path) -> None:
        from stages.param_alloc.corpus import read_wikitext_articles

        corpus = root / "data/param_alloc/corpus.txt"
        first = read_wikitext_articles(corpus)[0]
        corpus.write_text(corpus.read_text() + ("\n " + first + "\n") * 30)  # 30 copies: some land in dev/test

    root = prepare_project(tmp_path / "repo", studies=["param_alloc"], edit=shrink, edit_data=corrupt)
    proc = run(["dvc", "repro"], root, check=False)
    text_out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "validation gate FAILED" in text_out and "disjoint" in text_out and "doc_hash" in text_out, text_out
    assert not any(s.startswith(("param_alloc-phase1", "param_alloc-lr_find")) for s in ran_stages(text_out))
    assert not (root / "work/param_alloc/gate.json").exists()
    assert not list((root / "work/param_alloc").glob("phase1/*"))
