"""Run manifests: what a run planned and started (SLURM jobs or local processes), on disk.

Why on disk: on clusters whose login nodes kill long processes, ``harness submit`` exits right
after submitting; ``harness collect`` (later, any number of times, from a new shell) must know
which job is which stage, which stages depend on which, and what is already recorded into
``dvc.lock``. Blocking ``harness repro`` writes the same manifest, so an interrupted repro is
finished with ``harness collect``. Local parallel runs (``runner: local``) write one too, as a
record of what ran (their processes end with the run, so there is nothing to collect later).

Layout, under ``runs_dir`` (default ``.harness/runs``, untracked)::

    <run_id>.json                 the manifest
    <run_id>/scripts/<stage>.sh   rendered batch scripts (SLURM)
    <run_id>/logs/<stage>.log     stage stdout+stderr (appended across requeues)
    <run_id>/records/<stage>.jsonl  start / end / requeue events (SLURM: by the job itself)
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from pydantic import Field

from harness.io import write_json
from harness.study import StrictModel


class StageRun(StrictModel):
    name: str
    #: SLURM job id, or the local process id
    job_id: str = ""
    #: in-run stages this one waits for (``afterok``)
    after: list[str] = Field(default_factory=list)
    state: str = "PLANNED"
    exit_code: int | None = None
    reason: str = ""
    restarts: int = 0
    elapsed_s: float = 0.0
    #: true once the stage's outputs and hashes are in dvc.lock and the DVC cache
    recorded: bool = False


class RunManifest(StrictModel):
    run_id: str
    root: str
    created: float
    runner: str = "slurm"
    jobs_limit: int = 0
    #: stage names in topological order (``stages`` is saved with sorted keys)
    order: list[str] = Field(default_factory=list)
    stages: dict[str, StageRun] = Field(default_factory=dict)

    def in_order(self) -> list[StageRun]:
        return [self.stages[name] for name in self.order]

    def dependents(self, name: str) -> list[str]:
        return [s.name for s in self.in_order() if name in s.after]

    def descendants(self, name: str) -> list[str]:
        seen: list[str] = []
        todo = self.dependents(name)
        while todo:
            child = todo.pop(0)
            if child not in seen:
                seen.append(child)
                todo += self.dependents(child)
        return [s for s in self.order if s in seen]


class RunPaths:
    """Where one run keeps its files."""

    def __init__(self, root: Path, runs_dir: str, run_id: str):
        self.base = Path(root) / runs_dir
        self.run_id = run_id
        self.dir = self.base / run_id
        self.manifest = self.base / f"{run_id}.json"

    def script(self, stage: str) -> Path:
        return self.dir / "scripts" / f"{stage}.sh"

    def log(self, stage: str) -> Path:
        return self.dir / "logs" / f"{stage}.log"

    def record(self, stage: str) -> Path:
        return self.dir / "records" / f"{stage}.jsonl"


def new_run_id(label: str = "run") -> str:
    """Sortable and unique enough for one user: UTC time to the millisecond plus a label."""
    now = time.time()
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime(now)) + f"{int(now * 1000) % 1000:03d}-{label}"


def save(paths: RunPaths, manifest: RunManifest) -> None:
    ignore = paths.base / ".gitignore"
    if not ignore.exists():  # run files are local state, never something to commit
        paths.base.mkdir(parents=True, exist_ok=True)
        ignore.write_text("*\n")
    write_json(paths.manifest, manifest.model_dump(mode="json"))


def load(path: Path) -> RunManifest:
    return RunManifest.model_validate_json(Path(path).read_text())


def latest(root: Path, runs_dir: str) -> Path | None:
    """The most recent manifest (run ids sort by time)."""
    found = sorted((Path(root) / runs_dir).glob("*.json"))
    return found[-1] if found else None


def read_events(path: Path) -> list[dict]:
    """The job's own record lines; a half-written last line (job killed mid-write) is skipped."""
    events = []
    try:
        for line in Path(path).read_text().splitlines():
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    except FileNotFoundError:
        pass
    return events
