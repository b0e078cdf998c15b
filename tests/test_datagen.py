"""Embedded data is byte-identical on every run, so data.dvc's hash is stable on any machine."""

from __future__ import annotations

import hashlib
from pathlib import Path

from harness.embedded import generate_all


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_generation_is_deterministic(tmp_path: Path):
    generate_all(tmp_path / "a")
    generate_all(tmp_path / "b")
    a, b = _digest(tmp_path / "a"), _digest(tmp_path / "b")
    assert a and a == b


def test_generated_data_matches_committed_data_dvc(tmp_path: Path):
    """`dvc status` finds freshly generated data identical to what data.dvc records."""
    import json
    import shutil

    from conftest import REPO, run

    run(["git", "init", "-q"], tmp_path)
    run(["dvc", "init", "-q"], tmp_path)
    shutil.copy(REPO / "data.dvc", tmp_path / "data.dvc")
    generate_all(tmp_path / "data")
    status = json.loads(run(["dvc", "status", "--json", "data.dvc"], tmp_path).stdout)
    # a fresh project has an empty cache; anything but "not in cache" means different bytes
    changes = [c for e in status.get("data.dvc", []) for c in e.get("changed outs", {}).values()]
    assert set(changes) <= {"not in cache"}, status
