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

from harness.io import write_text
from harness.study import StrictModel


class Attempt(StrictModel):
    """One job a stage ran (or was queued) as: what it asked for, how it ended, what followed.

    Why kept per attempt: a 500-job sweep that retried 30 jobs must say which, why and with
    what; the manifest is the one place that outlives the controller's memory of the jobs.
    """

    job_id: str
    state: str = ""
    #: the retry cause read from the job's end (OUT_OF_MEMORY, TIMEOUT, NODE_FAIL, PREEMPTED,
    #: FAILED, CANCELLED, or "upstream <stage> retried" for a job that never started)
    cause: str = ""
    exit_code: int | None = None
    nodes: str = ""
    mem_mb: int = 0
    time_min: int = 0
    exclude: list[str] = Field(default_factory=list)
    #: what the harness did next: "resubmitted", "final", or "" while the job is current
    action: str = ""
    #: when the harness submitted it (matches the job's own record events to this attempt)
    submitted_at: float = 0.0
    #: where the injected state came from, when the state was injected (tests; see jobs.INJECT_ENV)
    injected: bool = False


class StageRun(StrictModel):
    name: str
    #: SLURM job id, or the local process id
    job_id: str = ""
    #: in-run stages this one waits for (``afterok``)
    after: list[str] = Field(default_factory=list)
    #: DVC reported this stage itself changed at plan time (else: stale only through an upstream)
    direct: bool = True
    state: str = "PLANNED"
    exit_code: int | None = None
    reason: str = ""
    restarts: int = 0
    elapsed_s: float = 0.0
    #: true once the stage's outputs and hashes are in dvc.lock and the DVC cache
    recorded: bool = False
    #: wall-clock times the collector first saw the stage's job ended, and recorded it
    noticed_at: float = 0.0
    recorded_at: float = 0.0
    #: SLURM: every job this stage ran as, oldest first (the current one last)
    attempts: list[Attempt] = Field(default_factory=list)
    #: SLURM: the submission token (``--comment``) of the job being submitted, so a collector
    #: that took over after a crash adopts a job whose id never reached the manifest
    token: str = ""
    #: SLURM: the array the stage was planned into ("" = a job of its own) and its task index
    group: str = ""
    task: int | None = None
    #: SLURM: what the job runs (from dvc.yaml at submit time), so a collector that takes over
    #: resubmits without re-planning: commands, outputs deleted first, resources, kind
    commands: list[str] = Field(default_factory=list)
    remove_before: list[str] = Field(default_factory=list)
    resources: dict = Field(default_factory=dict)
    kind: str = ""
    #: SLURM: memory / time / excluded nodes the next submission asks for (after a retry)
    mem_mb: int = 0
    time_min: int = 0
    exclude: list[str] = Field(default_factory=list)


class ArrayGroup(StrictModel):
    """Stages submitted as one ``sbatch --array`` (same kind, same resources, same upstream set;
    or, ``aftercorr``, task i of each waiting for task i of one upstream array: parallel chains)."""

    members: list[str] = Field(default_factory=list)
    #: "afterok": every task waits for the members' common upstream set; "aftercorr": task i
    #: waits for task i of ``upstream``
    mode: str = "afterok"
    upstream: str = ""
    job_id: str = ""
    token: str = ""


class RunManifest(StrictModel):
    run_id: str
    root: str
    created: float
    runner: str = "slurm"
    jobs_limit: int = 0
    #: stage names in topological order (``stages`` is saved with sorted keys)
    order: list[str] = Field(default_factory=list)
    stages: dict[str, StageRun] = Field(default_factory=dict)
    #: SLURM job arrays of the initial submission (group name -> members)
    groups: dict[str, ArrayGroup] = Field(default_factory=dict)

    def in_order(self) -> list[StageRun]:
        return [self.stages[name] for name in self.order]

    def dependents(self, name: str) -> list[str]:
        return list(self._children().get(name, ()))

    def _children(self) -> dict[str, list[str]]:
        """Stage -> in-run stages that wait for it, cached per shape (a 1,000-stage run asks
        this for every stage on every poll)."""
        key = (len(self.order), id(self.stages))
        cached = self.__dict__.get("_children_cache")
        if cached is None or cached[0] != key:
            children: dict[str, list[str]] = {}
            for s in self.in_order():
                for up in s.after:
                    children.setdefault(up, []).append(s.name)
            cached = (key, children)
            self.__dict__["_children_cache"] = cached
        return cached[1]

    def descendants(self, name: str) -> list[str]:
        seen: set[str] = set()
        todo = list(self.dependents(name))
        while todo:
            child = todo.pop()
            if child not in seen:
                seen.add(child)
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
    # pydantic's own (compiled) JSON encoder, unindented: a 1,000-stage manifest is saved after
    # every submission level and poll, and Python's indenting encoder took a second per save
    write_text(paths.manifest, manifest.model_dump_json() + "\n")


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
