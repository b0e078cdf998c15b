"""Runners: where ``harness run <stage>`` executes a stage, behind one interface.

``local`` calls the stage function in this process. ``slurm`` submits the stage as a batch job
(resources from the stage's :class:`~harness.study.Resources`), tails its log here, and exits
with the job's status, so that plain ``dvc repro`` behaves exactly as if the stage had run
locally: DVC hashes and caches the outputs after the command returns 0, and records nothing
when it fails.

The runner is chosen by ``--runner``, ``$HARNESS_RUNNER`` or the untracked
``.harness/config.yaml`` (see :mod:`harness.slurm.settings`), never by tracked params, so
switching runner invalidates no DVC stage.
"""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path
from typing import Callable, Protocol

from harness.slurm.settings import RunnerSettings, load_settings
from harness.study import Resources

#: exit code when SLURM ended the job without one of its own (CANCELLED, TIMEOUT, NODE_FAIL...)
EXIT_JOB_LOST = 1


class Runner(Protocol):
    name: str

    def run_stage(self, root: Path, stage: str, profile: str = "smoke") -> int:
        """Run one planned stage to completion; return its exit status."""
        ...


class LocalRunner:
    name = "local"

    def run_stage(self, root: Path, stage: str, profile: str = "smoke") -> int:
        from harness.execute import execute_local

        return execute_local(root, stage, profile)


class SlurmRunner:
    """One stage, one job: submit, tail the log, exit with the job's status."""

    name = "slurm"

    def __init__(self, settings: RunnerSettings, out: Callable[[str], None] | None = None):
        self.settings = settings
        self.out = out or (lambda text: (sys.stdout.write(text), sys.stdout.flush()))

    def run_stage(self, root: Path, stage: str, profile: str = "smoke") -> int:
        from harness.dag import resources as stage_resources
        from harness.slurm import jobs
        from harness.dag.manifest import RunPaths, new_run_id
        from harness.slurm.sbatch import JobSpec

        entry = stage_resources.for_stage(root, profile, stage)  # this profile's compiled sidecar
        if entry is None:
            from harness.compiler import find_stage

            planned, item = find_stage(root, stage, profile)  # a typo fails fast, before anything is queued
            print(f"[harness] {stage_resources.sidecar_file(profile)} does not list {stage}: stale, run "
                  "`harness compile`; using the spec's resources", file=sys.stderr, flush=True)
            entry = stage_resources.StageResources(item.study.name, planned.kind, planned.resources)
        slurm = self.settings.slurm
        paths = RunPaths(root, slurm.runs_dir, new_run_id(stage))
        job = JobSpec(
            name=stage, commands=[f"harness run --profile {profile} {stage}"], resources=entry.resources, workdir=root,
            log_path=paths.log(stage), record_path=paths.record(stage),
        )
        job_id = jobs.submit(job, slurm, paths.script(stage))
        print(f"[harness] {stage}: submitted SLURM job {job_id} (log {job.log_path})", flush=True)
        return wait_for_job(job_id, job.log_path, slurm.poll_s, self.out)


def wait_for_job(job_id: str, log_path: Path, poll_s: float, out: Callable[[str], None]) -> int:
    """Stream the job's log until it ends; cancel it if we are interrupted (no orphan jobs)."""
    from harness.slurm import jobs

    tail = jobs.LogTail(log_path)
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    info = None
    try:
        while True:
            info = jobs.query(job_id)
            out(tail.read_new())
            if info is None or info.terminal:
                break
            time.sleep(poll_s)
    except KeyboardInterrupt:
        jobs.cancel([job_id])
        print(f"\n[harness] interrupted: cancelled SLURM job {job_id}", file=sys.stderr, flush=True)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    time.sleep(0.2)  # the last lines can land just after the state flips
    out(tail.read_new())
    if info is None:
        print(f"[harness] job {job_id}: SLURM no longer knows it; see {log_path}", file=sys.stderr)
        return EXIT_JOB_LOST
    if info.state == jobs.OK:
        return 0
    code = info.exit_code or EXIT_JOB_LOST
    print(f"[harness] job {job_id} ended {info.state} (exit code {info.exit_code}, signal {info.signal}, "
          f"reason {info.reason}); log: {log_path}", file=sys.stderr, flush=True)
    return code


def _raise_interrupt(*_args) -> None:
    raise KeyboardInterrupt


def make_runner(settings: RunnerSettings) -> Runner:
    if settings.runner == "slurm":
        return SlurmRunner(settings)
    return LocalRunner()


def selected_runner(root: Path, flag: str | None = None) -> str:
    """``--runner`` flag, else ``$HARNESS_RUNNER``, else ``.harness/config.yaml``, else ``local``."""
    return load_settings(root, runner=flag).runner


def run_stage(stage_name: str, runner: str | None = None, root: Path | None = None,
              profile: str = "smoke") -> int:
    """What ``harness run <stage>`` calls: run the stage with the selected runner."""
    root = Path(root or Path.cwd()).resolve()
    return make_runner(load_settings(root, runner=runner)).run_stage(root, stage_name, profile)
