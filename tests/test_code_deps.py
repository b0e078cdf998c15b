"""Code dependencies are derived from imports, never listed by hand, and they are complete.

Three checks: the AST closure on a synthetic package (lazy, relative and ``from pkg import
submodule`` imports; nothing outside the project); every module a stage really loaded while it
ran (its trace, written by ``harness run``) is among the deps compiled into ``dvc.yaml``; and
editing one helper through the real ``dvc status`` makes stale exactly the stages that loaded it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from conftest import REPO
from harness.codedeps import code_deps
from slurm_support.project import make_project

def _project_module(root: Path, rel: str) -> bool:
    """A module of the project (not of a virtualenv inside it), that exists as a file."""
    return not any(p.startswith(".") or p == "site-packages" for p in Path(rel).parts) and (root / rel).is_file()


def _write(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_closure_follows_lazy_relative_and_submodule_imports(tmp_path: Path):
    _write(tmp_path, "pkg/__init__.py", '"""pkg"""\n')
    _write(tmp_path, "pkg/stage.py", "import json\nfrom . import helper\n\ndef run():\n    from pkg.sub import deep\n")
    _write(tmp_path, "pkg/helper.py", "import numpy\nfrom .util import x\n")
    _write(tmp_path, "pkg/util.py", "x = 1\n")
    _write(tmp_path, "pkg/sub/__init__.py", '"""sub"""\n')
    _write(tmp_path, "pkg/sub/deep.py", "y = 2\n")
    _write(tmp_path, "pkg/unused.py", "z = 3\n")
    deps = code_deps(tmp_path, ["pkg.stage"])
    assert deps == ["pkg/__init__.py", "pkg/helper.py", "pkg/stage.py", "pkg/sub/__init__.py",
                    "pkg/sub/deep.py", "pkg/util.py"]


def _compiled_deps(pipeline: Path) -> dict[str, set[str]]:
    stages = yaml.safe_load(pipeline.read_text())["stages"]
    return {name: set(entry.get("deps", [])) for name, entry in stages.items()}


def _check_traces(root: Path, pipeline: Path, traces_dir: Path) -> int:
    deps = _compiled_deps(pipeline)
    checked = 0
    for trace_file in sorted(traces_dir.glob("*.json")):
        trace = json.loads(trace_file.read_text())
        if trace["stage"] not in deps:
            continue
        loaded = {m for m in trace["loaded"] if _project_module(root, m)}
        missing = loaded - deps[trace["stage"]]
        assert not missing, f"{trace['stage']} loaded {sorted(missing)} but dvc.yaml does not list them"
        # what `harness run` loaded before the stage's config class is harness machinery only: a
        # study module loaded there would be invisible to this check
        machinery = {m for m in trace["machinery"] if _project_module(root, m)}
        assert all(m.startswith("harness/") for m in machinery), (trace["stage"], machinery)
        checked += 1
    return checked


@pytest.fixture(scope="module")
def selftest(tmp_path_factory):
    project = make_project(tmp_path_factory.mktemp("codedeps") / "proj")
    project.run(["dvc", "repro"])
    project.run(["git", "add", "-A"])
    project.run(["git", "commit", "-qm", "repro"])
    return project


def test_every_module_a_selftest_stage_loaded_is_a_compiled_dep(selftest):
    checked = _check_traces(selftest.root, selftest.root / "dvc.yaml", selftest.root / "work/_harness/traces")
    assert checked == 4


def test_every_module_a_reproduced_stage_loaded_is_a_compiled_dep():
    """Covers every stage of the smoke pipeline after a `dvc repro` of this checkout (CI runs one first)."""
    traces = REPO / "work/_harness/traces"
    if not traces.is_dir() or not any(traces.glob("*.json")):
        pytest.skip("no stage traces yet: run `dvc repro` first (CI does)")
    checked = _check_traces(REPO, REPO / "dvc.yaml", traces)
    assert checked > 0


def test_editing_a_helper_stales_exactly_the_stages_that_loaded_it(selftest):
    root = selftest.root
    helper = "studies/slurm_selftest/joiner.py"
    loaders = {json.loads(p.read_text())["stage"] for p in (root / "work/_harness/traces").glob("*.json")
               if helper in json.loads(p.read_text())["loaded"]}
    assert loaders == {"slurm_selftest-join"}
    path = root / helper
    original = path.read_text()
    path.write_text(original.replace('"n": len(parts)', '"n": len(parts), "v": 2'))
    try:
        status = json.loads(selftest.run(["dvc", "status", "--json"]).stdout)
        assert set(status) == loaders, status
        why = selftest.run(["harness", "status"]).stdout
        assert f"slurm_selftest-join: {helper} changed (summarize)" in why, why
    finally:
        path.write_text(original)
    assert json.loads(selftest.run(["dvc", "status", "--json"]).stdout) == {}
