"""Where stages run: runner, partition, account, qos, job setup lines.

Why not in params.yaml or the spec: *where* a stage runs is not part of *what* it computes. DVC
hashes params and deps, so anything read from tracked files would invalidate the cache when a
researcher moves from a laptop to a cluster. These settings come, in increasing priority, from
the untracked ``.harness/config.yaml`` (or ``$HARNESS_CONFIG``), environment variables, and the
command line; none of them is ever a DVC dependency.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from harness.study import StrictModel

CONFIG_ENV = "HARNESS_CONFIG"
CONFIG_FILE = Path(".harness") / "config.yaml"
RUNNER_ENV = "HARNESS_RUNNER"
#: environment variable -> SlurmSettings field
SLURM_ENV = {
    "HARNESS_SLURM_PARTITION": "partition",
    "HARNESS_SLURM_ACCOUNT": "account",
    "HARNESS_SLURM_QOS": "qos",
}


class SlurmSettings(StrictModel):
    """Cluster-specific choices; all optional so the local dev cluster needs none."""

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    #: shell lines run in the job before the stage: ``module load cuda/12.1``, ``source .venv/bin/activate``
    setup: list[str] = Field(default_factory=list)
    #: argv that wraps the stage command, e.g. ``[apptainer, exec, --nv, img.sif]`` for a container
    prefix: list[str] = Field(default_factory=list)
    #: further sbatch options, passed verbatim as separate arguments (``--constraint=a100``)
    extra_args: list[str] = Field(default_factory=list)
    #: ``gres`` renders ``--gres=gpu:N``; ``gpus`` renders ``--gpus=N`` (clusters differ)
    gpu_flag: Literal["gres", "gpus"] = "gres"
    #: seconds between job-state polls
    poll_s: float = Field(0.5, gt=0)
    #: run manifests, batch scripts, logs and job records, relative to the project root
    runs_dir: str = ".harness/runs"


class RunnerSettings(StrictModel):
    runner: Literal["local", "slurm"] = "local"
    slurm: SlurmSettings = Field(default_factory=SlurmSettings)


def config_path(root: Path) -> Path:
    return Path(os.environ[CONFIG_ENV]) if os.environ.get(CONFIG_ENV) else root / CONFIG_FILE


def load_settings(root: Path, runner: str | None = None, **slurm_overrides: Any) -> RunnerSettings:
    """Merge config file < environment < explicit arguments (the CLI's flags); ``None`` means unset."""
    import yaml

    data: dict[str, Any] = {}
    path = config_path(root)
    if path.exists():
        data = yaml.safe_load(path.read_text()) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a mapping (runner:, slurm:)")
    slurm = dict(data.get("slurm") or {})
    for env, field in SLURM_ENV.items():
        if os.environ.get(env):
            slurm[field] = os.environ[env]
    slurm.update({k: v for k, v in slurm_overrides.items() if v is not None})
    chosen = runner or os.environ.get(RUNNER_ENV) or data.get("runner") or "local"
    return RunnerSettings.model_validate({"runner": chosen, "slurm": slurm})
