"""Pytest fixtures for the SLURM tests: the real local cluster and selftest projects.

Import into a test module (``from conftest_slurm import slurm_cluster, selftest_project``) or
from ``tests/conftest.py``. The cluster is started through ``scripts/slurm_cluster.sh`` once per
session; tests are skipped, with the script's own words, only when it cannot be started (not
root, no package registry, no SLURM binaries).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "slurm_support"))

from project import REPO, make_project  # noqa: E402

SCRIPT = REPO / "scripts" / "slurm_cluster.sh"


@pytest.fixture(scope="session")
def slurm_cluster() -> bool:
    from harness.slurm import jobs

    if jobs.available():
        return True
    if shutil.which("bash") is None:
        pytest.skip("no bash to run scripts/slurm_cluster.sh")
    proc = subprocess.run(["bash", str(SCRIPT), "start"], capture_output=True, text=True, timeout=600)
    if proc.returncode != 0 or not jobs.available():
        pytest.skip(f"local SLURM cluster could not be started: {(proc.stderr or proc.stdout).strip()[-800:]}")
    return True


@pytest.fixture
def selftest_project(tmp_path: Path):
    """Factory: ``selftest_project(name, spec={...}, params={...})`` -> a committed git+DVC Project."""

    def make(name: str = "proj", spec: dict | None = None, params: dict | None = None):
        return make_project(tmp_path / name, spec, params)

    return make
