"""Submit the stale DAG to SLURM at once, then collect: poll, cancel, record into dvc.lock.

Why this shape: DVC runs stages one at a time under a repo lock (DVC #755, #7419, #9805). Here
every stale stage becomes a job at submit time, wired with ``--dependency=afterok:<upstream
jobs>`` so SLURM itself enforces the DAG and runs independent stages side by side; jobs only
run stage commands (never DVC), and one process, the collector, records finished stages into
``dvc.lock`` with DVC's own commit. ``collect`` is idempotent and works from the manifest alone,
so the blocking ``repro`` is just ``submit`` followed by ``collect`` in a loop.

Failures are first-class: a job ending FAILED, TIMEOUT, OUT_OF_MEMORY, PREEMPTED, NODE_FAIL or
CANCELLED is reported with job id, exit code and log path; its in-run descendants are cancelled
(``scancel``; SLURM's ``--kill-on-invalid-dep`` does the same), and it is never recorded, so
nothing from it enters the DVC cache.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from harness.slurm import dvcgraph, jobs
from harness.slurm.manifest import RunManifest, RunPaths, StageRun, new_run_id, read_events, save
from harness.slurm.sbatch import JobSpec
from harness.slurm.settings import SlurmSettings
from harness.study import Resources

#: manifest states beyond SLURM's own
PLANNED, SUBMITTED, DEP_CANCELLED, LOST = "PLANNED", "SUBMITTED", "CANCELLED", "LOST"
RECORD_FAILED = "RECORD_FAILED"


def plan_run(root: Path, targets: list[str] | None, jobs_limit: int, run_id: str) -> tuple[RunManifest, dict]:
    """The stale stages (DVC's status + downstream), in topological order, as an unsubmitted run."""
    pipeline = dvcgraph.load_pipeline(root, targets)
    stale = dvcgraph.stale_stages(root, pipeline)
    manifest = RunManifest(run_id=run_id, root=str(root), created=time.time(), jobs_limit=jobs_limit)
    for name in stale:
        after = [up for up in pipeline[name].upstream if up in stale]
        manifest.stages[name] = StageRun(name=name, after=after)
        manifest.order.append(name)
    return manifest, pipeline


def submit_run(root: Path, settings: SlurmSettings, targets: list[str] | None = None, jobs_limit: int = 0,
               resources: dict[str, Resources] | None = None, out: Callable[[str], None] = print) -> tuple[RunManifest, RunPaths]:
    """Submit every stale stage now; write the manifest after each submission (crash-safe)."""
    from harness.runners import planned_resources

    root = Path(root).resolve()
    run_id = new_run_id("repro")
    manifest, pipeline = plan_run(root, targets, jobs_limit, run_id)
    paths = RunPaths(root, settings.runs_dir, run_id)
    if not manifest.order:
        out("nothing to do: every stage is up to date")
        return manifest, paths
    resources = planned_resources(root) if resources is None else resources
    save(paths, manifest)
    try:
        for i, name in enumerate(manifest.order):
            stage = manifest.stages[name]
            job = JobSpec(
                name=_short(name), commands=pipeline[name].commands,
                resources=resources.get(_short(name), Resources()), workdir=root,
                log_path=paths.log(_short(name)), record_path=paths.record(_short(name)),
                after_ok=[manifest.stages[up].job_id for up in stage.after],
                lane=f"{run_id}.lane{i % jobs_limit}" if 0 < jobs_limit < len(manifest.order) else None,
                remove_before=pipeline[name].removable_outs,
            )
            stage.job_id = jobs.submit(job, settings, paths.script(_short(name)))
            stage.state = SUBMITTED
            save(paths, manifest)
    except Exception:
        jobs.cancel([s.job_id for s in manifest.in_order() if s.job_id])
        for s in manifest.in_order():
            s.state = DEP_CANCELLED if s.job_id else s.state
        save(paths, manifest)
        raise
    out(f"run {run_id}: submitted {len(manifest.order)} job(s); manifest {paths.manifest.relative_to(root)}")
    return manifest, paths


def _short(name: str) -> str:
    """File-safe name for a stage address (``sub/dvc.yaml:train`` -> ``sub_dvc.yaml_train``)."""
    return name.replace("/", "_").replace(":", "_")


@dataclass
class CollectReport:
    recorded: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    active: list[str] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)

    @property
    def done(self) -> bool:
        return not self.active

    @property
    def exit_code(self) -> int:
        if self.failed or self.cancelled:
            return 1
        return 0 if self.done else 75  # EX_TEMPFAIL: come back later


def _refresh(stage: StageRun, paths: RunPaths) -> None:
    """Update one stage from SLURM, or from the job's own record once SLURM has forgotten it."""
    if stage.state in jobs.TERMINAL or stage.state in (RECORD_FAILED, LOST) or not stage.job_id:
        return
    info = jobs.query(stage.job_id)
    events = read_events(paths.record(_short(stage.name)))
    if info is None:
        ends = [e for e in events if e["event"] == "end"]
        last = events[-1]["event"] if events else None
        if last == "end":
            stage.exit_code = ends[-1]["rc"]
            stage.state = jobs.OK if stage.exit_code == 0 else "FAILED"
        else:
            stage.state, stage.reason = LOST, "SLURM forgot the job and its record has no end"
        return
    stage.state, stage.reason, stage.restarts = info.state, info.reason, info.restarts
    stage.exit_code = info.exit_code
    starts = [e["t"] for e in events if e["event"] == "start"]
    if starts:
        finished = [e["t"] for e in events if e["event"] == "end"]
        stage.elapsed_s = round((finished[-1] if info.terminal and finished else time.time()) - starts[0], 1)
    else:
        stage.elapsed_s = float(info.run_time_s)


def collect(root: Path, manifest: RunManifest, paths: RunPaths, out: Callable[[str], None] = print) -> CollectReport:
    """One pass: refresh states, cancel dependents of failures, record what can be recorded."""
    report = CollectReport()
    for stage in manifest.in_order():
        _refresh(stage, paths)
    # failures: report once, cancel every in-run descendant still queued or running
    for stage in manifest.in_order():
        if stage.state in jobs.FAILED_STATES | {LOST, RECORD_FAILED} and not stage.reason.startswith("dependency"):
            report.failed.append(stage.name)
            victims = [manifest.stages[d] for d in manifest.descendants(stage.name)]
            victims = [v for v in victims if v.state != jobs.OK]
            jobs.cancel([v.job_id for v in victims if v.job_id and v.state not in jobs.TERMINAL])
            for v in victims:  # SLURM may already have cancelled them (DependencyNeverSatisfied)
                v.state, v.reason = DEP_CANCELLED, f"dependency {stage.name} failed"
    report.cancelled = [s.name for s in manifest.in_order() if s.reason.startswith("dependency")]
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
                report.recorded.append(name)
    report.active = [s.name for s in manifest.in_order()
                     if s.state not in jobs.TERMINAL | {LOST, RECORD_FAILED}
                     or (s.state == jobs.OK and not s.recorded)]
    for name in report.failed:
        stage = manifest.stages[name]
        report.messages.append(
            f"FAILED {name}: job {stage.job_id} {stage.state} exit code {stage.exit_code} "
            f"reason {stage.reason or '-'}; log {paths.log(_short(name))}")
    save(paths, manifest)
    return report


def recordable(manifest: RunManifest) -> list[str]:
    """Finished stages that may be recorded now, in the run's (DVC's repro) order.

    Two rules. Recording follows the plan order strictly (a stage waits for every earlier stage
    to be recorded or to have failed), so ``dvc.lock`` lists stages in the order ``dvc repro``
    writes them, whatever order the jobs happened to finish in: detached, blocking and plain DVC
    runs give byte-identical lock files. And a stage is recorded only once every in-run stage
    that reads its outputs has ended, so DVC never relinks a file a running job is reading.
    """
    gone = jobs.FAILED_STATES | {LOST, RECORD_FAILED}
    ready: list[str] = []
    for stage in manifest.in_order():
        if stage.recorded or stage.state in gone:
            continue
        readers_done = all(manifest.stages[d].state in jobs.TERMINAL | gone for d in manifest.dependents(stage.name))
        if stage.state != jobs.OK or not readers_done:
            break
        ready.append(stage.name)
    return ready


def table(manifest: RunManifest) -> str:
    """Progress table: stage, job id, state, elapsed, recorded."""
    rows = [("stage", "job", "state", "elapsed", "recorded")]
    for s in manifest.in_order():
        rows.append((s.name, s.job_id or "-", s.state + (f" (restarts {s.restarts})" if s.restarts else ""),
                     f"{s.elapsed_s:.0f}s", "yes" if s.recorded else ""))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def wait(root: Path, manifest: RunManifest, paths: RunPaths, poll_s: float,
         out: Callable[[str], None] = print) -> CollectReport:
    """Collect until every stage is terminal and recorded; print the table when it changes."""
    shown = ""
    while True:
        report = collect(root, manifest, paths, out)
        snapshot = "|".join(f"{s.state}{s.recorded}{s.restarts}" for s in manifest.in_order())
        if snapshot != shown:
            out(table(manifest))
            out("")
            shown = snapshot
        if report.done:
            break
        time.sleep(poll_s)
    for name, message in zip(report.failed, report.messages):
        out(message)
        out(jobs.last_lines(paths.log(_short(name)), 15))
    out(f"run {manifest.run_id}: {len(manifest.order) - len(report.failed) - len(report.cancelled)} recorded, "
        f"{len(report.failed)} failed, {len(report.cancelled)} cancelled")
    return report


def print_err(text: str) -> None:
    print(text, file=sys.stderr, flush=True)
