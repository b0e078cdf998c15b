"""Throwaway git+DVC projects that use the ``slurm_selftest`` study (tests and benchmarks).

Why self-contained: the SLURM tests must not depend on other studies being finished or fast.
The project holds only the selftest spec, params, the study module (at the path its StageDefs
name as code deps) and the three core files the compiled ``check-params`` stage lists as deps.
Code runs from the installed harness; ``$HARNESS_STUDY_PATH`` (the project's ``studies/``) makes
the study discoverable in every subprocess, SLURM jobs included (sbatch exports the environment).
"""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
SUPPORT = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent

BASE_SPEC = {
    "study": "slurm_selftest",
    "description": "SLURM runner self-test",
    "seed": "${seed}",
    "message": "${message}",
    "fail": "${fail}",
    "work_s": 0.0,
    "resources": {"default": {"cpus": 1, "mem_gb": 0.25, "time_min": 5, "signal_before_s": 0}},
}
BASE_PARAMS = {"seed": 0, "message": "hello", "fail": "none"}


def deep_merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in over.items():
        out[key] = deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


class Project:
    def __init__(self, root: Path):
        self.root = root
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("HARNESS_")},
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "HARNESS_STUDY_PATH": str(root / "studies"),
            # DVC's repro order (the order of dvc.lock entries) follows set iteration, which varies
            # with the hash seed; tests compare locks byte for byte, so every process plans alike
            "PYTHONHASHSEED": "0",
            "DVC_NO_ANALYTICS": "1",
            "GX_ANALYTICS_ENABLED": "false",
        }

    def run(self, cmd: list[str] | str, check: bool = True, env: dict | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess:
        proc = subprocess.run(cmd, cwd=self.root, capture_output=True, text=True, env={**self.env, **(env or {})},
                              timeout=timeout, shell=isinstance(cmd, str))
        if check and proc.returncode != 0:
            raise AssertionError(f"{cmd} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
        return proc

    def popen(self, cmd: list[str], env: dict | None = None) -> subprocess.Popen:
        return subprocess.Popen(cmd, cwd=self.root, env={**self.env, **(env or {})}, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    def set_params(self, **values) -> None:
        path = self.root / "params.yaml"
        params = yaml.safe_load(path.read_text())
        params.update(values)
        path.write_text(yaml.safe_dump(params, sort_keys=False))

    def read(self, rel: str) -> str:
        return (self.root / rel).read_text()

    def lock(self) -> str:
        return self.read("dvc.lock")


def make_project(dest: Path, spec: dict | None = None, params: dict | None = None) -> Project:
    """Write, compile and commit a selftest project at ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "specs").mkdir(exist_ok=True)
    (dest / "specs" / "slurm_selftest.yaml").write_text(yaml.safe_dump(deep_merge(BASE_SPEC, spec or {}),
                                                                        sort_keys=False))
    (dest / "params.yaml").write_text(yaml.safe_dump({**BASE_PARAMS, **(params or {})}, sort_keys=False))
    study_dir = dest / "studies" / "slurm_selftest"
    study_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy2(SUPPORT / "slurm_selftest.py", study_dir / "study.py")
    shutil.copy2(SUPPORT / "selftest_joiner.py", study_dir / "joiner.py")
    (study_dir / "__init__.py").write_text('"""Test-only study (copied by tests/slurm_support/project.py)."""\n')
    (dest / ".gitignore").write_text("/work/\n/.harness/\n__pycache__/\n")
    project = Project(dest)
    project.run(["harness", "compile"])
    for cmd in (["git", "init", "-q"], ["git", "config", "user.email", "ci@example.com"],
                ["git", "config", "user.name", "ci"], ["dvc", "init", "-q"],
                ["dvc", "config", "core.analytics", "false"], ["git", "add", "-A"], ["git", "commit", "-qm", "init"]):
        project.run(cmd)
    return project
