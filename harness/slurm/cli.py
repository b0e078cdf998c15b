"""``harness repro``, ``harness submit``, ``harness collect``: the scheduler's command line.

``harness.cli`` calls :func:`add_subcommands` when building its parser, so this package adds
commands without editing the core CLI. ``repro`` runs the stale DAG on the selected runner's
backend: SLURM jobs (:mod:`harness.slurm.scheduler`) or the local process pool
(:mod:`harness.dag.local`). Exit codes: 0 all recorded, 1 a stage failed or was cancelled,
2 bad usage, 75 (``collect`` only) jobs still queued or running, 130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

EXIT_PENDING = 75


def _root(args) -> Path:
    return Path(args.root).resolve() if getattr(args, "root", None) else Path.cwd().resolve()


def _settings(args):
    from harness.slurm.settings import load_settings

    return load_settings(_root(args), runner=getattr(args, "runner", None), partition=getattr(args, "partition", None),
                         account=getattr(args, "account", None), qos=getattr(args, "qos", None))


def _cluster_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--partition", help="SLURM partition (else $HARNESS_SLURM_PARTITION or .harness/config.yaml)")
    p.add_argument("--account", help="SLURM account (else $HARNESS_SLURM_ACCOUNT or .harness/config.yaml)")
    p.add_argument("--qos", help="SLURM QOS (else $HARNESS_SLURM_QOS or .harness/config.yaml)")


def _dry_run(args, settings, runner: str) -> int:
    from harness.slurm import dryrun

    return dryrun.main(_root(args), settings.slurm, args.targets or None, args.jobs or 0, args.json,
                       args.all, runner=runner)


def _dry_run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dry-run", action="store_true",
                   help="plan only: print each stage's sbatch argv (or the array it joins), its upstream "
                        "stages, and the totals (jobs, arrays, GPU-/CPU-hours) per study; submits nothing, "
                        "writes nothing, reads DVC's state only")
    p.add_argument("--json", action="store_true", help="with --dry-run: one JSON document {stages, totals}")
    p.add_argument("--all", action="store_true",
                   help="with --dry-run: count every stage of the targets, stale or not (a whole profile's cost)")


def cmd_repro(args) -> int:
    settings = _settings(args)
    root = _root(args)
    if args.dry_run:
        return _dry_run(args, settings, settings.runner)
    if settings.runner == "local":
        # the local process pool: -j N CPUs at once (0: all cores; no -j: one, i.e. sequential)
        from harness.dag.local import run_local

        return run_local(root, args.targets or None, args.jobs, runs_dir=settings.slurm.runs_dir)
    from harness.slurm import scheduler

    manifest, paths = scheduler.submit_run(root, settings.slurm, args.targets or None, args.jobs or 0)
    if not manifest.order:
        return 0
    try:
        report = scheduler.wait(root, manifest, paths, settings.slurm.poll_s, settings=settings.slurm)
    except KeyboardInterrupt:
        print(f"\n[harness] stopped waiting; jobs keep running. Record them later with "
              f"`harness collect {manifest.run_id}` (or cancel with scancel).", file=sys.stderr)
        return 130
    return report.exit_code


def cmd_submit(args) -> int:
    settings = _settings(args)
    if args.dry_run:
        return _dry_run(args, settings, "slurm")
    from harness.slurm import scheduler

    manifest, _ = scheduler.submit_run(_root(args), settings.slurm, args.targets or None, args.jobs)
    if manifest.order:
        print(scheduler.table(manifest) if len(manifest.order) <= scheduler.core.TABLE_MAX
              else scheduler.core.summary(manifest))
        print(f"collect with: harness collect {manifest.run_id}")
    return 0


def cmd_collect(args) -> int:
    from harness.dag import manifest as mf
    from harness.slurm import scheduler

    settings = _settings(args)
    root = _root(args)
    if args.run_id:
        path = root / settings.slurm.runs_dir / f"{args.run_id}.json"
    else:
        path = mf.latest(root, settings.slurm.runs_dir)
    if path is None or not path.exists():
        print(f"no run manifest found under {settings.slurm.runs_dir}/", file=sys.stderr)
        return 2
    manifest = mf.load(path)
    paths = mf.RunPaths(root, settings.slurm.runs_dir, manifest.run_id)
    if manifest.runner == "local":  # its processes ended with the run: recorded already, or never
        print(scheduler.table(manifest))
        print(f"run {manifest.run_id} ran on the local pool; nothing to collect (rerun `harness repro` "
              "for stages not recorded)")
        return 0 if all(s.recorded for s in manifest.in_order()) else 1
    if args.wait:
        return scheduler.wait(root, manifest, paths, settings.slurm.poll_s, settings=settings.slurm).exit_code
    report = scheduler.collect(root, manifest, paths, settings=settings.slurm)
    print(scheduler.table(manifest))
    if any(len(s.attempts) > 1 for s in manifest.in_order()):
        print(scheduler.core.attempts_table(manifest))
    for name, message in zip(report.failed, report.messages):
        print(message)
    if report.active:
        print(f"still running or queued: {', '.join(report.active)}; run `harness collect {manifest.run_id}` again")
    if report.failed or report.cancelled:
        return 1
    return 0 if report.done else EXIT_PENDING


def add_subcommands(sub) -> None:
    """Register ``repro``, ``submit`` and ``collect`` on the core CLI's subparsers."""
    p = sub.add_parser("repro", help="run the stale DAG: on SLURM all at once (afterok edges), "
                                     "locally on a process pool (-j CPUs)")
    p.add_argument("targets", nargs="*", help="stages to bring up to date (default: all)")
    p.add_argument("-j", "--jobs", type=int, default=None,
                   help="SLURM: at most N jobs running at once (0 or unset: as many as SLURM grants); "
                        "local: at most N CPUs in use at once (0: os.cpu_count(); unset: 1, sequential)")
    p.add_argument("--runner", choices=["local", "slurm"], help="else $HARNESS_RUNNER or .harness/config.yaml")
    _cluster_args(p)
    _dry_run_args(p)
    p.set_defaults(func=cmd_repro)

    p = sub.add_parser("submit", help="submit the stale DAG to SLURM, write a run manifest, exit")
    p.add_argument("targets", nargs="*")
    p.add_argument("-j", "--jobs", type=int, default=0)
    _cluster_args(p)
    _dry_run_args(p)
    p.set_defaults(func=cmd_submit)

    p = sub.add_parser("collect", help="record finished jobs of a submitted run into dvc.lock; report the rest")
    p.add_argument("run_id", nargs="?", help="default: the latest run")
    p.add_argument("--wait", action="store_true", help="keep collecting until every job has ended")
    p.set_defaults(func=cmd_collect)
