"""Issue 29 item 4: declarations apart from machinery, so an edit reruns only what it can change.

A stage's code deps are the import closure of its modules (:mod:`harness.codedeps`), so whatever
a config module or a shared helper imports becomes a dep of every stage using it. Two layers keep
edits local:

* settings models (:mod:`harness.settings`) and layout facts (:mod:`harness.layout`) import only
  :mod:`harness.schema`: a study's ``configs.py`` and a report's provenance header need nothing
  more;
* the planning machinery (compiler, spec loader, study contract, codedeps, contentmemo) is a dep
  of ``check-params`` only, and the LM trainer (``harness/trainer.py``) a dep only of stages of
  a training kind: editing ``train_lm`` reruns training (and what reads its outputs), never a
  gate, a table, a fit or a report.

Checked on the plan compiled from the tree and on the committed pipelines (with each stage's kind
from the ``dvc.resources.json`` beside them).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from harness.codedeps import code_deps
from harness.compiler import CHECK_STAGE, compile_all
from harness.layout import PROFILES, pipeline_file

ROOT = Path(__file__).resolve().parents[1]

#: only check-params may depend on these (it plans every spec)
MACHINERY = ["harness/compiler.py", "harness/spec.py", "harness/study.py", "harness/codedeps.py",
             "harness/contentmemo.py"]
TRAINER = "harness/trainer.py"
#: stage kinds whose code runs the shared LM trainer (its loop, loss, evaluate or batches)
TRAINING_KINDS = {"train", "eval", "probe"}


@pytest.fixture(scope="module")
def compiled():
    return compile_all(ROOT)


def _problems(pipeline: dict, kinds: dict[str, str], where: str) -> list[str]:
    problems = []
    for name, entry in pipeline["stages"].items():
        if name == CHECK_STAGE:
            continue
        deps = entry.get("deps", [])
        problems += [f"{where}: {name} depends on {m}" for m in MACHINERY if m in deps]
        if TRAINER in deps and kinds[name] not in TRAINING_KINDS:
            problems.append(f"{where}: {name} (kind {kinds[name]!r}, not a training kind) depends on {TRAINER}")
    return problems


@pytest.mark.parametrize("profile", PROFILES)
def test_compiled_plan_keeps_machinery_out_of_stage_deps(compiled, profile):
    c = compiled[profile]
    if c.text is None:
        pytest.skip(f"no spec declares profile {profile}")
    kinds = {stage.name: stage.kind for stage, _ in c.stages}
    assert _problems(yaml.safe_load(c.text), kinds, c.pipeline) == []


@pytest.mark.parametrize("profile", PROFILES)
def test_committed_pipelines_keep_machinery_out_of_stage_deps(profile):
    path = ROOT / pipeline_file(profile)
    if not path.exists():
        pytest.skip(f"{path.relative_to(ROOT)} is not compiled")
    sidecar = json.loads((path.parent / "dvc.resources.json").read_text())
    kinds = {name: entry["kind"] for name, entry in sidecar["stages"].items()}
    assert _problems(yaml.safe_load(path.read_text()), kinds, pipeline_file(profile)) == []


def test_some_training_stage_still_depends_on_the_trainer(compiled):
    """Guards the test above against passing vacuously (e.g. a path spelt differently)."""
    c = compiled["smoke"]
    pipeline = yaml.safe_load(c.text)
    assert any(TRAINER in e.get("deps", []) for n, e in pipeline["stages"].items() if n != CHECK_STAGE)
    assert all(m in pipeline["stages"][CHECK_STAGE]["deps"] for m in ["harness/compiler.py", "harness/spec.py"])


@pytest.mark.parametrize("module, allowed", [
    ("harness.settings", {"harness/settings.py", "harness/schema.py"}),
    ("harness.layout", {"harness/layout.py", "harness/schema.py"}),
    ("harness.provenance", {"harness/provenance.py", "harness/layout.py", "harness/schema.py"}),
])
def test_declaration_modules_import_only_schema(module, allowed):
    deps = set(code_deps(ROOT, [module])) - {"harness/__init__.py"}
    assert deps <= allowed, f"{module} imports {sorted(deps - allowed)}"


def test_old_import_paths_still_work():
    import harness.compiler as compiler
    import harness.layout as layout
    import harness.settings as settings
    import harness.study as study
    import harness.trainer as trainer

    assert trainer.TrainSettings is settings.TrainSettings
    assert trainer.EarlyStopConfig is settings.EarlyStopConfig
    for name in ["pipeline_file", "configs_dir", "traces_dir", "machines_dir", "stamps_dir", "config_file",
                 "DEFAULT_PROFILE", "PROFILES", "profile_prefix"]:
        assert getattr(compiler, name) is getattr(layout, name), name
    for name in ["DEFAULT_PROFILE", "PROFILES", "profile_prefix"]:
        assert getattr(study, name) is getattr(layout, name), name
