"""A stage whose inputs change after it started is never recorded as fresh.

DVC hashes deps when it records a stage, not when it starts it; ``harness repro`` records in
DVC's plan order, possibly minutes after a stage ended. An edit in that window (or during the
run) would be recorded as the code that ran. Driven through the real ``harness``/``dvc``
binaries on a throwaway selftest project; the reference is ``dvc status``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "slurm_support"))

from project import make_project  # noqa: E402

from harness import depstamp  # noqa: E402
from harness.dag import dvcgraph  # noqa: E402

SOURCE = "slurm_selftest-source"
BRANCH = "slurm_selftest-branch-b"  # sleeps work_s


def _touch_code(proj) -> Path:
    code = proj.root / "studies" / "slurm_selftest" / "study.py"
    code.write_text(code.read_text() + "\n# edited while the stage ran\n")
    return code


def test_an_edit_during_the_run_fails_the_stage(tmp_path):
    proj = make_project(tmp_path / "p", {"work_s": 4.0})
    proj.run(["harness", "check-params"])
    proj.run(["harness", "run", SOURCE])
    popen = proj.popen(["harness", "run", BRANCH])
    stamps = proj.root / "work" / "_harness" / "stamps" / f"{BRANCH}.json"
    deadline = time.time() + 60
    while not stamps.exists() and time.time() < deadline:
        time.sleep(0.1)
    assert stamps.exists(), "harness run stamps its deps as it starts"
    _touch_code(proj)
    out, _ = popen.communicate(timeout=120)
    assert popen.returncode == 2, out
    assert "inputs changed while the stage ran (studies/slurm_selftest/study.py" in out


def test_an_edit_after_the_run_is_not_recorded(tmp_path):
    proj = make_project(tmp_path / "p", {"work_s": 0.1})
    proj.run(["harness", "check-params"])
    proj.run(["harness", "run", SOURCE])
    assert depstamp.changed_since_start(proj.root, SOURCE, "smoke") == []
    _touch_code(proj)
    errors = dvcgraph.record(proj.root, [SOURCE])
    assert "studies/slurm_selftest/study.py" in errors[SOURCE] and "stays stale" in errors[SOURCE]
    assert SOURCE in proj.run(["dvc", "status", SOURCE]).stdout
    # rerun with the edited code: recorded, and DVC agrees it is up to date
    proj.run(["harness", "run", SOURCE])
    assert dvcgraph.record(proj.root, [SOURCE]) == {}
    assert SOURCE not in proj.run(["dvc", "status", SOURCE]).stdout
