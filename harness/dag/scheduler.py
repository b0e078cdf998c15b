"""The backend-independent half of ``harness repro``: plan the stale DAG, follow its stages,
propagate failures, and record finished stages into ``dvc.lock`` from this one process.

Why split from the backends: *where* a stage runs (a SLURM job, a local subprocess) has nothing
to do with *what* makes a run equal to ``dvc repro``: the same stale set (DVC's status plus
everything downstream), the same edges (DVC's graph), stages recorded with DVC's own commit in
DVC's own repro order and only after every in-run reader of their outputs has ended, and a failed
stage never recorded while its descendants never start. That logic lives here once; a
:class:`Backend` only starts stages, reports their states and stops them.

Backends: :mod:`harness.slurm.scheduler` (``SlurmBackend``: every stage submitted up front with
``afterok`` edges, states from ``scontrol``) and :mod:`harness.dag.local` (``LocalBackend``: a
process pool bounded by CPUs). Neither ever runs DVC in a stage process, and the recorder opens
the repo only for the moment of a commit, so DVC's repo lock is never held while stages run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

from harness.dag import dvcgraph
from harness.dag.manifest import RunManifest, RunPaths, StageRun, save

#: states; SLURM's own names where one exists, so SLURM's states pass through unchanged
PLANNED, SUBMITTED, RUNNING, OK = "PLANNED", "SUBMITTED", "RUNNING", "COMPLETED"
FAILED, DEP_CANCELLED, LOST, RECORD_FAILED = "FAILED", "CANCELLED", "LOST", "RECORD_FAILED"
#: a local stage killed because the run was interrupted (Ctrl-C, SIGTERM)
INTERRUPTED = "INTERRUPTED"
#: states after which a stage never runs again; all but COMPLETED are failures
FAILED_STATES = frozenset({
    FAILED, "TIMEOUT", "OUT_OF_MEMORY", "PREEMPTED", "NODE_FAIL", DEP_CANCELLED, "BOOT_FAIL", "DEADLINE",
    INTERRUPTED,
})
TERMINAL = FAILED_STATES | {OK}
#: stages that will never be recorded
GONE = FAILED_STATES | {LOST, RECORD_FAILED}
#: ``reason`` prefixes of stages stopped because of another stage (not failures of their own)
NOT_THEIR_FAULT = ("dependency", "not started")
#: ``reason`` of a downstream stage not rerun: its upstreams reran and its inputs came out
#: byte-identical, so its lock entry already describes it (``dvc repro`` skips it the same way)
UNCHANGED = "unchanged: its inputs came out identical"


def short(name: str) -> str:
    """File-safe name for a stage address (``sub/dvc.yaml:train`` -> ``sub_dvc.yaml_train``)."""
    return name.replace("/", "_").replace(":", "_")


#: how :func:`plan_run` decides what changed: DVC's status of the whole repo (what a run uses),
#: of the targeted pipeline's stages only (same answer for them, faster: dry runs), or nothing
#: asked, every stage counted as changed (``--all``: what a whole profile would cost)
STATUS_SCOPES = ("repo", "pipeline", "everything")


def plan_run(root: Path, targets: list[str] | None, jobs_limit: int, run_id: str,
             runner: str = "slurm", status: str = "repo") -> tuple[RunManifest, dict[str, dvcgraph.PipelineStage]]:
    """The stale stages (DVC's status + downstream), in DVC's repro order, as an unstarted run.

    ``StageRun.direct``: DVC reports the stage itself as changed; the others are stale only
    because something upstream of them is (a backend may ask DVC again once those have run).
    ``status``: one of :data:`STATUS_SCOPES`; only reads DVC's state in every case."""
    pipeline = dvcgraph.load_pipeline(root, targets)
    if status == "everything":
        changed = set(pipeline)
    elif status == "pipeline":
        changed = dvcgraph.changed_among(root, list(pipeline))
    else:
        changed = dvcgraph.changed_stages(root)
    stale = dvcgraph.stale_stages(root, pipeline, changed)
    manifest = RunManifest(run_id=run_id, root=str(root), created=time.time(), runner=runner, jobs_limit=jobs_limit)
    for name in stale:
        after = [up for up in pipeline[name].upstream if up in stale]
        manifest.stages[name] = StageRun(name=name, after=after, direct=name in changed)
        manifest.order.append(name)
    return manifest, pipeline


def recordable(manifest: RunManifest) -> list[str]:
    """Finished stages that may be recorded now, in the run's (DVC's repro) order.

    Two rules. Recording follows the plan order strictly (a stage waits for every earlier stage
    to be recorded or to have failed), so ``dvc.lock`` lists stages in the order ``dvc repro``
    writes them, whatever order the stages happened to finish in: detached, blocking, local and
    plain DVC runs give byte-identical lock files. And a stage is recorded only once every in-run
    stage that reads its outputs has ended, so DVC never relinks a file a running stage reads.
    """
    ready: list[str] = []
    for stage in manifest.in_order():
        if stage.recorded or stage.state in GONE:
            continue
        readers_done = all(manifest.stages[d].state in TERMINAL | GONE for d in manifest.dependents(stage.name))
        if stage.state != OK or not readers_done:
            break
        ready.append(stage.name)
    return ready


class Backend(Protocol):
    """Where stages run. The scheduler owns the plan, failures and recording; a backend only
    starts stages, reports their states into the manifest, and stops them."""

    name: str
    #: print the whole progress table when states change (SLURM); else the backend prints lines
    show_table: bool

    def refresh(self, manifest: RunManifest, paths: RunPaths) -> None:
        """Update ``state``/``exit_code``/``elapsed_s`` (and ``job_id``) of the manifest's stages.

        Must leave stages the scheduler already cancelled (``reason`` in :data:`NOT_THEIR_FAULT`)
        or marked ``RECORD_FAILED`` as they are."""

    def cancel(self, manifest: RunManifest, names: list[str]) -> None:
        """Make sure the named stages never start, and stop those that are running."""

    def describe_failure(self, manifest: RunManifest, paths: RunPaths, name: str) -> str:
        """One line: the failed stage, its exit code, its log path (plus backend details)."""


@dataclass
class CollectReport:
    recorded: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    interrupted: list[str] = field(default_factory=list)
    active: list[str] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)

    @property
    def done(self) -> bool:
        return not self.active

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return 130
        if self.failed or self.cancelled:
            return 1
        return 0 if self.done else 75  # EX_TEMPFAIL: come back later


def collect(root: Path, manifest: RunManifest, paths: RunPaths, backend: Backend) -> CollectReport:
    """One pass: refresh states, cancel dependents of failures, record what can be recorded."""
    report = CollectReport()
    backend.refresh(manifest, paths)
    # failures: report, stop every in-run descendant that has not completed
    for stage in manifest.in_order():
        if stage.state == INTERRUPTED:
            report.interrupted.append(stage.name)
        elif stage.state in GONE and not stage.reason.startswith(NOT_THEIR_FAULT):
            report.failed.append(stage.name)
            victims = [manifest.stages[d] for d in manifest.descendants(stage.name)]
            victims = [v for v in victims if v.state != OK]
            backend.cancel(manifest, [v.name for v in victims if v.state not in TERMINAL])
            for v in victims:  # SLURM may already have cancelled them (DependencyNeverSatisfied)
                v.state, v.reason = DEP_CANCELLED, f"dependency {stage.name} failed"
    report.cancelled = [s.name for s in manifest.in_order() if s.reason.startswith(NOT_THEIR_FAULT)]
    for stage in manifest.in_order():  # not rerun: its lock entry stands as it is
        if stage.state == OK and stage.reason == UNCHANGED and not stage.recorded:
            stage.recorded, stage.recorded_at = True, time.time()
    ready = recordable(manifest)
    if ready:
        errors = dvcgraph.record(root, ready)
        for name in ready:
            stage = manifest.stages[name]
            if name in errors:
                stage.state, stage.reason = RECORD_FAILED, errors[name]
                report.failed.append(name)
            else:
                stage.recorded = True
                stage.recorded_at = time.time()
                report.recorded.append(name)
    report.active = [s.name for s in manifest.in_order()
                     if s.state not in TERMINAL | {LOST, RECORD_FAILED} or (s.state == OK and not s.recorded)]
    for name in report.failed:
        report.messages.append(backend.describe_failure(manifest, paths, name))
    save(paths, manifest)
    return report


#: runs with more stages print a one-line summary per change instead of the whole table
TABLE_MAX = 60


def _columns(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def table(manifest: RunManifest) -> str:
    """Progress table: stage, job id, state, attempts (SLURM jobs it ran as), elapsed, recorded."""
    rows = [("stage", "job", "state", "attempts", "elapsed", "recorded")]
    for s in manifest.in_order():
        rows.append((s.name, s.job_id or "-", s.state + (f" (restarts {s.restarts})" if s.restarts else ""),
                     str(len(s.attempts) or "-"), f"{s.elapsed_s:.0f}s", "yes" if s.recorded else ""))
    return _columns(rows)


def attempts_table(manifest: RunManifest) -> str:
    """Every job every stage ran as: its end, the cause read from it, what it asked for, what followed."""
    rows = [("stage", "try", "job", "state", "cause", "mem", "time", "nodes", "then")]
    for s in manifest.in_order():
        for i, a in enumerate(s.attempts, 1):
            rows.append((s.name, str(i), a.job_id, a.state + (" (injected)" if a.injected else ""), a.cause or "-",
                         f"{a.mem_mb}M" if a.mem_mb else "-", f"{a.time_min}m" if a.time_min else "-",
                         a.nodes or "-", a.action or ("recorded" if s.recorded else "-")))
    return _columns(rows)


def summary(manifest: RunManifest) -> str:
    """One line: how many stages are in each state (for runs too large for the table)."""
    counts: dict[str, int] = {}
    for s in manifest.in_order():
        key = "recorded" if s.recorded else s.state
        counts[key] = counts.get(key, 0) + 1
    retries = sum(max(0, len(s.attempts) - 1) for s in manifest.in_order())
    return (f"[harness] {len(manifest.order)} stages: "
            + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) + (f"; {retries} resubmission(s)" if retries else ""))


def last_lines(path: Path, n: int = 20) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-n:])
    except FileNotFoundError:
        return f"(no log at {path})"


def wait(root: Path, manifest: RunManifest, paths: RunPaths, backend: Backend, poll_s: float,
         out: Callable[[str], None] = print) -> CollectReport:
    """Collect until every stage has ended and every finished one is recorded; then report."""
    shown = ""
    while True:
        report = collect(root, manifest, paths, backend)
        if backend.show_table:
            snapshot = "|".join(f"{s.state}{s.recorded}{s.restarts}{len(s.attempts)}" for s in manifest.in_order())
            if snapshot != shown:
                if len(manifest.order) <= TABLE_MAX:
                    out(table(manifest))
                    out("")
                else:
                    out(summary(manifest))
                shown = snapshot
        if report.done:
            break
        time.sleep(poll_s)
    for name, message in zip(report.failed, report.messages):
        out(message)
        out(last_lines(paths.log(short(name)), 15))
    for name in report.failed:
        skipped = [d for d in manifest.descendants(name) if manifest.stages[d].reason == f"dependency {name} failed"]
        if skipped and not backend.show_table:
            out(f"skipped (dependency {name} failed): {', '.join(skipped)}")
    if report.interrupted:
        not_started = [s.name for s in manifest.in_order() if s.reason.startswith("not started")]
        out(f"interrupted: killed {', '.join(report.interrupted)}"
            + (f"; never started: {', '.join(not_started)}" if not_started else "")
            + "; none of them was recorded")
    unchanged = sum(1 for s in manifest.in_order() if s.reason == UNCHANGED)
    recorded = len(manifest.order) - len(report.failed) - len(report.cancelled) - len(report.interrupted) - unchanged
    out(f"run {manifest.run_id}: {recorded} recorded, "
        + (f"{unchanged} not rerun (inputs unchanged), " if unchanged else "")
        + f"{len(report.failed)} failed, {len(report.cancelled)} cancelled"
        + (f", {len(report.interrupted)} interrupted" if report.interrupted else ""))
    return report
