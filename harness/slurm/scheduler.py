"""Submit the stale DAG to SLURM at once, then collect: poll, cancel, record into dvc.lock.

Why this shape: DVC runs stages one at a time under a repo lock (DVC #755, #7419, #9805). Here
every stale stage becomes a job at submit time, wired with ``--dependency=afterok:<upstream
jobs>`` so SLURM itself enforces the DAG and runs independent stages side by side; jobs only
run stage commands (never DVC), and one process, the collector, records finished stages into
``dvc.lock`` with DVC's own commit. ``collect`` is idempotent and works from the manifest alone,
so the blocking ``repro`` is just ``submit`` followed by ``collect`` in a loop.

This module is the SLURM *backend* of the shared scheduler (:mod:`harness.dag.scheduler`, which
plans the stale DAG, propagates failures and records in DVC's order): :class:`SlurmBackend`
reads job states from ``scontrol`` (or the job's own record file) and cancels with ``scancel``.
The local process pool (:mod:`harness.dag.local`) is the other backend.

Failures are first-class: a job ending FAILED, TIMEOUT, OUT_OF_MEMORY, PREEMPTED, NODE_FAIL or
CANCELLED is reported with job id, exit code and log path; its in-run descendants are cancelled
(``scancel``; SLURM's ``--kill-on-invalid-dep`` does the same), and it is never recorded, so
nothing from it enters the DVC cache.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Callable

from harness.dag import scheduler as core
from harness.dag.scheduler import (  # noqa: F401  (re-exported: the SLURM path's historical names)
    DEP_CANCELLED, LOST, PLANNED, RECORD_FAILED, SUBMITTED, CollectReport, plan_run, recordable, table,
)
from harness.dag.scheduler import short as _short
from harness.slurm import jobs
from harness.dag.manifest import RunManifest, RunPaths, StageRun, new_run_id, read_events, save
from harness.slurm.sbatch import JobSpec
from harness.slurm.settings import SlurmSettings
from harness.study import Resources


def submit_run(root: Path, settings: SlurmSettings, targets: list[str] | None = None, jobs_limit: int = 0,
               resources: dict[str, Resources] | None = None, out: Callable[[str], None] = print) -> tuple[RunManifest, RunPaths]:
    """Submit every stale stage now; write the manifest after each submission (crash-safe)."""
    from harness.compiler import planned_resources

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


class SlurmBackend:
    """Stages are SLURM jobs, all submitted up front (:func:`submit_run`); SLURM enforces the DAG."""

    name = "slurm"
    show_table = True

    def refresh(self, manifest: RunManifest, paths: RunPaths) -> None:
        for stage in manifest.in_order():
            _refresh(stage, paths)

    def cancel(self, manifest: RunManifest, names: list[str]) -> None:
        jobs.cancel([manifest.stages[n].job_id for n in names if manifest.stages[n].job_id])

    def describe_failure(self, manifest: RunManifest, paths: RunPaths, name: str) -> str:
        stage = manifest.stages[name]
        return (f"FAILED {name}: job {stage.job_id} {stage.state} exit code {stage.exit_code} "
                f"reason {stage.reason or '-'}; log {paths.log(_short(name))}")


def collect(root: Path, manifest: RunManifest, paths: RunPaths, out: Callable[[str], None] = print) -> CollectReport:
    """One pass: refresh states, cancel dependents of failures, record what can be recorded."""
    return core.collect(root, manifest, paths, SlurmBackend())


def wait(root: Path, manifest: RunManifest, paths: RunPaths, poll_s: float,
         out: Callable[[str], None] = print) -> CollectReport:
    """Collect until every stage is terminal and recorded; print the table when it changes."""
    return core.wait(root, manifest, paths, SlurmBackend(), poll_s, out)


def print_err(text: str) -> None:
    print(text, file=sys.stderr, flush=True)
