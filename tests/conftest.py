"""Shared fixtures: a throwaway copy of the repository for driving the real ``dvc`` CLI.

Why a copy: tests run ``dvc repro`` / ``dvc exp run``, which rewrite dvc.lock, params.yaml and
outputs; they must never touch the developer's checkout.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
BIN = Path(sys.executable).parent

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")


def run(cmd: list[str] | str, cwd: Path, check: bool = True, env: dict | None = None,
        timeout: float = 600) -> subprocess.CompletedProcess:
    """Run a command with the venv's bin first on PATH (so dvc's `harness run` resolves)."""
    full_env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", **(env or {})}
    if (Path(cwd) / "harness").is_dir():  # a repo copy runs its own code, not the editable install's
        full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(cwd), full_env.get("PYTHONPATH", "")]))
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=full_env, timeout=timeout,
                          shell=isinstance(cmd, str))
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


def tracked_files(root: Path) -> list[str]:
    out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=root, capture_output=True,
                         text=True, check=True).stdout.split("\n")
    return [f for f in out if f and (root / f).is_file()]


def copy_repo(dest: Path, studies: list[str] | None = None) -> Path:
    """Copy the working tree (git-visible files) to ``dest``; keep only the given studies' specs."""
    for rel in tracked_files(REPO):
        if rel.startswith(("dvc.lock", "metrics/", "plots/", "reports/")):
            continue
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, target)
    if studies is not None:
        for spec in (dest / "specs").glob("*.yaml"):
            if spec.stem not in studies:
                spec.unlink()
        params = yaml.safe_load((dest / "params.yaml").read_text())
        (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return dest


def init_git(root: Path) -> None:
    run(["git", "init", "-q"], root)
    run(["git", "config", "user.email", "ci@example.com"], root)
    run(["git", "config", "user.name", "ci"], root)
    if not (root / ".dvc").exists():
        run(["dvc", "init", "-q"], root)
    run(["dvc", "config", "core.analytics", "false"], root)
    run(["git", "add", "-A"], root)
    run(["git", "commit", "-qm", "copy"], root)


def prepare_project(dest: Path, studies: list[str] | None = None, edit=None, edit_data=None) -> Path:
    """A committed git+DVC copy of the repo at ``dest``: ``edit(root)`` runs before the embedded
    data is generated, ``edit_data(root)`` after (to corrupt it, say); knobs of dropped studies go."""
    root = copy_repo(dest, studies)
    if edit:
        edit(root)
    run(["harness", "bootstrap"], root, check=False)
    if edit_data:
        edit_data(root)
    if studies is not None:
        prune_params(root)
    run(["harness", "compile"], root)
    init_git(root)
    return root


def reproduced_project(dest: Path, study: str, edit) -> tuple[Path, str]:
    """One study's copy after a first ``dvc repro``, committed; returns (root, repro stdout)."""
    root = prepare_project(dest, studies=[study], edit=edit)
    first = run(["dvc", "repro"], root)
    run(["git", "add", "-A"], root)
    run(["git", "commit", "-qm", "first repro"], root)
    return root, first.stdout


def ran_stages(output: str) -> set[str]:
    """Stage names DVC reports running in ``output``."""
    return set(re.findall(r"Running stage '([^']+)'", output))


@pytest.fixture
def repo_copy(tmp_path: Path):
    """Factory: ``repo_copy(studies=[...], edit=callable(root))`` -> a committed git+DVC project."""

    def make(studies: list[str] | None = None, edit=None) -> Path:
        return prepare_project(tmp_path / "repo", studies, edit)

    return make


def prune_params(root: Path) -> None:
    """Drop knobs no remaining spec reads (the copy keeps only some studies)."""
    sys.path.insert(0, str(root))
    from harness.spec import load_profiles

    params = yaml.safe_load((root / "params.yaml").read_text())
    _, by_profile = load_profiles(root)
    known = set().union(*(item.all_knobs for items in by_profile.values() for item in items))
    kept = {k: v for k, v in params.items() if k in known}
    (root / "params.yaml").write_text(yaml.safe_dump(kept, sort_keys=False))


def edit_yaml(path: Path, mutate) -> None:
    data = yaml.safe_load(path.read_text())
    mutate(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
