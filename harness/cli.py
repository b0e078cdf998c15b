"""The ``harness`` command line.

Exit codes: 0 ok, 1 stage failure, 2 bad spec/params/usage, 3 validation gate failed,
4 refused because another run holds the stage or the project (the message names it).
Heavy libraries (torch, transformers, great_expectations) are imported only inside the stage
that needs them, so ``harness compile`` and ``check-params`` start in well under a second.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")

# Before anything imports numpy or torch: the same SIMD kernels on every x86-64 machine
# ($HARNESS_CPU_ISA=native turns it off; see harness.runtime.pin_cpu_kernels). Imports no numpy.
from harness.machine import pin_threads, thread_summary  # noqa: E402
from harness.runtime import cpu_kernel_summary, pin_cpu_kernels  # noqa: E402

pin_cpu_kernels()
pin_threads()  # the thread count is part of the result: fixed, not the runner's granted CPUs
if "run" in sys.argv[1:4]:  # `harness [--root R] run <stage>`: record the choice in the stage log
    print(f"[harness] {cpu_kernel_summary()}; {thread_summary()}", flush=True)

EXIT_STAGE_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_GATE_FAILED = 3
EXIT_BUSY = 4  # harness.locking.EXIT_BUSY
#: schedulers that remove, write and record outputs of the whole project: one at a time
#: commands that hold the project lock; each first puts back what a killed write left half done
PROJECT_COMMANDS = ("repro", "collect", "repair")
#: errors of the machine's state (full disk, quota, read-only folder) reported as messages
WRITE_ERRNOS = {28, 122, 30, 13}  # ENOSPC, EDQUOT, EROFS, EACCES


def _root(args) -> Path:
    return Path(args.root).resolve() if getattr(args, "root", None) else Path.cwd()


def cmd_compile(args) -> int:
    root = _root(args)
    if args.check:
        from harness import compilecache

        key = compilecache.check_key(root)  # nothing changed since a check that passed: answer at once
        if compilecache.is_known_current(root, key):
            print("pipelines are up to date")
            return 0
        from harness.compiler import compile_all, stale_pipelines
        from harness.dag import resources

        compiled = compile_all(root)
        stale = stale_pipelines(root, compiled) + resources.stale(root, compiled)  # + each profile's resources
        for rel in stale:
            print(f"{rel}: stale; run `harness compile` and commit it", file=sys.stderr)
        if stale:
            return 1
        compilecache.remember_current(root, key)
        print("pipelines are up to date")
        return 0
    from harness.compiler import write_pipelines

    from harness.dag import resources

    changed = write_pipelines(root) + resources.write(root)  # dvc.yaml + dvc.resources.json per profile
    for rel in changed:
        print(f"{'wrote' if (root / rel).exists() else 'removed'} {rel}")
    if not changed:
        print("pipelines unchanged")
    return 0


def cmd_check_params(args) -> int:
    """First DVC stage of a pipeline: specs valid, knobs known, pipelines fresh; writes stage configs.

    Each stage's config file is rewritten only if its bytes change, and a file of a stage that is
    no longer planned is removed, so DVC sees exactly the stages whose config changed.
    """
    from harness.compiler import compile_all, config_file, config_payload, configs_dir, stale_pipelines
    from harness.freshness import spec_inputs, write_record
    from harness.io import write_text

    root = _root(args)
    inputs = spec_inputs(root)  # taken before reading them: an edit during the check counts as later
    compiled = compile_all(root)  # validates every spec of every profile and the knobs
    stale = stale_pipelines(root, compiled)
    if stale:
        print(f"{', '.join(stale)} stale relative to specs/params: run `harness compile`. A knob that changes "
              "the plan (a path, the stage list) cannot be set with `dvc exp run -S`: set it in params.yaml, "
              "run `harness compile`, then `dvc repro`", file=sys.stderr)
        return EXIT_BAD_INPUT
    stages = compiled[args.profile].stages
    wanted = {}
    for stage, _ in stages:
        wanted[root / config_file(args.profile, stage.name)] = config_payload(stage)
    written = 0
    for path, text in wanted.items():
        if not path.exists() or path.read_text() != text:
            write_text(path, text)
            written += 1
    folder = root / configs_dir(args.profile)
    for old in folder.glob("*.json") if folder.is_dir() else []:
        if old not in wanted:
            old.unlink()
    write_record(root, args.profile, inputs)  # what `harness run` compares its spec and params with
    print(f"params ok; {len(stages)} stage configs ({written} rewritten) in {configs_dir(args.profile)}/")
    return 0


def _check_study(planned, study: str, profile: str) -> None:
    """``--study S``: an error naming the known studies when no planned stage belongs to S."""
    from harness.spec import SpecError

    if any(item.study.name == study for _, item in planned):
        return
    import difflib

    names = sorted({item.study.name for _, item in planned})
    close = difflib.get_close_matches(study, names, n=1)
    hint = f"; did you mean `{close[0]}`?" if close else ""
    raise SpecError([f"--study {study}: no such study in the {profile} profile{hint}; "
                     f"known: {', '.join(names) or 'none'}"])


def study_targets(root: Path, study: str, profile: str = "smoke") -> list[str]:
    """The stages of one study (``--study S`` on ``repro``, ``submit``, ``status``), in plan order."""
    from harness.compiler import plan_profile

    planned = plan_profile(root, profile)
    _check_study(planned, study, profile)
    return [stage.name for stage, item in planned if item.study.name == study]


def _apply_study(args) -> None:
    """``--study S``: the study's stages become the targets (with any named explicitly)."""
    study = getattr(args, "study", None)
    if study and hasattr(args, "targets") and args.command != "stages":
        named = study_targets(_root(args), study, getattr(args, "profile", "smoke"))
        if args.command == "status":
            from harness.compiler import CHECK_STAGE

            named = [CHECK_STAGE, *named]  # the root every stage of the study waits for
        args.targets = list(dict.fromkeys([*(args.targets or []), *named]))


def cmd_stages(args) -> int:
    from harness.compiler import plan_profile

    planned = plan_profile(_root(args), args.profile)
    if args.study:
        _check_study(planned, args.study, args.profile)
    for stage, item in planned:
        if args.study and item.study.name != args.study:
            continue
        knobs = sorted(item.knobs_under(stage.reads))
        print(f"{stage.name:50s} {stage.kind:12s} params={','.join(knobs) or '-'}")
    return 0


def cmd_status(args) -> int:
    """Every stale stage with the reason in the user's terms; exit 1 when any is stale (--check)."""
    from harness.status import format_statuses, stage_statuses

    statuses = stage_statuses(_root(args), args.profile, committed=args.committed, targets=args.targets or None)
    if args.json:
        print(json.dumps([s.as_dict() for s in statuses], indent=1))
    else:
        print(format_statuses(statuses, show_downstream=not args.direct))
    return 1 if (statuses and args.check) else 0


def selected_runner(args) -> str:
    """Runner from --runner, $HARNESS_RUNNER or the untracked .harness/config.yaml; never params."""
    from pydantic import ValidationError

    from harness.runners import selected_runner as resolve
    from harness.spec import SpecError

    try:
        return resolve(_root(args), getattr(args, "runner", None))
    except (ValidationError, ValueError) as exc:
        detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']} (got {e.get('input')!r})"
                           for e in exc.errors(include_url=False)) if isinstance(exc, ValidationError) else str(exc)
        raise SpecError([f"runner settings (--runner, $HARNESS_RUNNER, .harness/config.yaml): {detail}"]) from None


def cmd_run(args) -> int:
    """One stage, under its own lock; dies with its parent (a ``kill -9`` of ``dvc repro``)."""
    from harness.locking import OWNER_ENV, check_project_free, die_with_parent, hold, stage_lock_path

    root = _root(args)
    runner = selected_runner(args)
    die_with_parent()
    if os.environ.get("DVC_ROOT") and not os.environ.get(OWNER_ENV):  # started by `dvc repro`
        check_project_free(root)
        if os.environ.get("RANK", "0") == "0":
            from harness.compiler import pipeline_file
            from harness.dag.dvcgraph import snapshot_lock

            snapshot_lock(root, pipeline_file(args.profile))  # DVC's next in-place lock write may be cut
    # the job it submits runs `harness run` locally and takes the stage lock there; of a torchrun
    # group only rank 0 takes it (the other ranks are the same stage run, not a second one)
    if runner != "local" or os.environ.get("RANK", "0") != "0":
        return _run_stage(args, root, runner)
    with hold(stage_lock_path(root, args.profile, args.stage), f"stage {args.stage} ({args.profile})"):
        return _run_stage(args, root, runner)


def _run_stage(args, root: Path, runner: str) -> int:
    if runner == "local":
        from harness.execute import execute_local

        return execute_local(root, args.stage, args.profile)
    try:
        from harness.runners import run_stage
    except ImportError:
        print(f"runner `{runner}` is not available (harness.runners missing)", file=sys.stderr)
        return EXIT_BAD_INPUT
    return int(run_stage(args.stage, runner, root=root, profile=args.profile) or 0)


def cmd_repair(args) -> int:
    """For when a ``dvc`` command refuses with "dvc.lock validation failed" or a corrupted rwlock
    after a ``kill -9``. The repair itself is what every project command does first (``main``,
    under the project lock); this one only reports it."""
    print("nothing to repair" if not args.restored else
          f"{len(args.restored)} file(s) restored; `dvc repro` reruns what they no longer record")
    return 0


def cmd_bootstrap(args) -> int:
    """Generate the embedded default data and check it against data.dvc."""
    import subprocess

    from harness.dag.dvcgraph import dvc_executable
    from harness.embedded import generate_all

    root = _root(args)
    names = generate_all(root / "data")
    if not names:  # no study found: committing an empty data/ would overwrite data.dvc
        print("no study ships embedded data (is the `stages` package installed?); data/ left as is",
              file=sys.stderr)
        return 1
    print(f"generated data/: {', '.join(names)}")
    if (root / "data.dvc").exists():
        dvc = dvc_executable()
        out = subprocess.run([dvc, "status", "--json", "data.dvc"], cwd=root, capture_output=True, text=True)
        status = json.loads(out.stdout or "{}") if out.returncode == 0 else {"error": out.stderr}
        changes = [c for entry in status.get("data.dvc", []) if isinstance(entry, dict)
                   for c in entry.get("changed outs", {}).values()]
        if "error" in status or any(c != "not in cache" for c in changes):
            print("data/ differs from data.dvc: if the generators changed on purpose, run "
                  "`dvc add data` and commit data.dvc", file=sys.stderr)
            return 1
        if changes:  # a fresh clone: the bytes match, put them in the local cache so status is clean
            subprocess.run([dvc, "commit", "-f", "-q", "data.dvc"], cwd=root, check=True)
        print("data/ matches data.dvc")
    return 0


def cmd_drift(args) -> int:
    """CI: fail when a reproduced metric differs from the committed one beyond a relative tolerance.

    Exit 1 on drift; 2 when the check cannot run (unknown rev, no project, no committed metrics).
    The project root is found from any subdirectory (``--root`` overrides). Beside a drift it
    prints, per stage, how the machine that reproduced it differs from the one that committed it.
    ``--perturb KIND [STAGE ...]`` instead reruns stages under a perturbation (``harness.perturb``).
    """
    from harness.drift import DriftError, find_drift, machine_notes, project_root

    try:
        root = Path(args.root).resolve() if getattr(args, "root", None) else project_root()
        if args.perturb:
            return _drift_perturb(root, args)
        report = find_drift(root, rev=args.rev, rtol=args.rtol)
    except DriftError as exc:
        print(f"harness drift: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    for line in report.tolerance_lines():  # every loosened comparison, and where it came from
        print(line)
    for pattern, n in sorted(report.skipped.items()):
        print(f"not reproducible across machines (declared, not compared): {pattern}: {n} value(s)")
    for p in report.problems:
        print(p, file=sys.stderr)
    if report.problems:
        for line in machine_notes(root, report, args.rev):
            print(f"machine: {line}", file=sys.stderr)
        print(f"{len(report.problems)} metric(s) drifted from {args.rev}", file=sys.stderr)
        return EXIT_STAGE_FAILED
    print(f"no metric drift against {args.rev}: {report.compared} values in {report.files} files "
          f"(rtol {args.rtol:g}{', per-metric tolerances above' if report.loosened else ''})")
    return 0


def cmd_doctor(args) -> int:
    """Probe this machine's numeric primitives and compare them, bit for bit, with the committed tables.

    Exit 0 when every row agrees with every committed table (``machines/probe/*.txt``), 1 when a
    row differs (printed: the primitive, and the committed machine it differs from).
    """
    from harness.doctor import PROBE_DIR, committed_tables, compare, parse, probe_text, run_probe, slug

    if args.probe_only:  # the child process: pinned by this module's import, prints the table
        sys.stdout.write(probe_text(args.threads))
        return 0
    root = _root(args)
    mine = run_probe(root, args.threads)
    if args.write:
        header, _ = parse(mine)
        target = root / PROBE_DIR / f"{slug(header.get('cpu', 'machine'))}-{header.get('pin', 'pin').split()[0]}.txt"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(mine)
        print(f"wrote {target.relative_to(root)}")
    if args.show:
        sys.stdout.write(mine)
    tables = committed_tables(root)
    if not tables:
        print(f"no committed probe tables under {PROBE_DIR}/ to compare with (`harness doctor --write` adds this one)")
        return 0
    differing = 0
    for table in tables:
        header, rows = parse(table.read_text())
        diffs = compare(mine, table.read_text())
        name = f"{table.relative_to(root)} ({header.get('cpu', '?')}, pin {header.get('pin', '?').split()[0]}, " \
               f"{header.get('threads', '?')} thread(s))"
        if diffs:
            differing += 1
            print(f"{name}: {len(diffs)} of {len(rows)} primitive(s) differ from this machine:")
            for line in diffs:
                print(f"  {line}")
        else:
            print(f"{name}: all {len(rows)} primitives bit-identical")
    if differing:
        print("metrics fed by a differing primitive are reproducible here only if they are stable under "
              "`harness drift --perturb isa` (see docs/reproducibility.md)")
    return 1 if differing else 0


def _drift_perturb(root: Path, args) -> int:
    """``harness drift --perturb KIND [STAGE ...]``: exit 1 when a metric is chaotic, 2 on bad input."""
    import json as _json

    from harness.perturb import perturb, summary_lines

    try:
        result = perturb(root, args.perturb, args.stages, profile=args.profile, jobs=args.jobs,
                         keep=Path(args.keep) if args.keep else None,
                         out=(lambda msg: print(msg, file=sys.stderr, flush=True)))
    except (ValueError, FileNotFoundError) as exc:
        print(f"harness drift --perturb: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    for line in summary_lines(result):
        print(line)
    if args.json:
        Path(args.json).write_text(_json.dumps({
            "kind": result.kind, "stages": result.stages, "failed": result.failed, "seconds": result.seconds,
            "compared": result.report.compared,
            "largest": {rel: {"key": k, "relative": v} for rel, (k, v) in result.largest.items()},
            "chaotic": [{"file": m.rel, "key": m.key, "pinned": m.old, "perturbed": m.new,
                         "relative": m.relative, "rtol": m.rtol} for m in result.chaotic],
            "declared": [{"metric": k, "reason": r, "relative": v} for k, r, v in result.declared]},
            indent=1, default=str) + "\n")
    if result.failed:
        print(f"{len(result.failed)} stage(s) failed under the perturbation", file=sys.stderr)
        return EXIT_STAGE_FAILED
    if result.chaotic:
        print(f"{len(result.chaotic)} chaotic metric(s): make each stable in its study or declare it in the "
              "spec (not_reproducible, with the measured sensitivity and a reason)", file=sys.stderr)
        return EXIT_STAGE_FAILED
    print(f"no chaotic metric: every compared value stayed within its tolerance under `{result.kind}`")
    return 0


def cmd_new_study(args) -> int:
    """Write a working minimal study (spec, data stage with its gate, train sweep, report, test)."""
    from harness.scaffold import ScaffoldError, new_study

    root = _root(args)
    try:
        written = new_study(root, args.name, args.package_dir)
    except ScaffoldError as exc:
        print(f"harness new-study: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    for path in written:
        print(f"wrote {path.relative_to(root)}")
    print(f"next: harness compile && harness stages --study {args.name} && harness repro --study {args.name}; "
          f"pytest tests/test_{args.name}.py (docs/new-study.md walks through it)")
    return 0


def cmd_history(args) -> int:
    """Every committed value of a metric (``FILE[:KEY-GLOB]``) and what changed in the setup between them."""
    from harness.history import HistoryError, history

    try:
        hist = history(_root(args), args.target, every_commit=args.all, worktree=not args.committed_only)
    except HistoryError as exc:
        print(f"harness history: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(json.dumps(hist.as_dict(), indent=1, default=str) if args.json else hist.text())
    return 0


def cmd_study_command(args) -> int:
    """A command a study provides (``Study.commands``), e.g. ``simulate``: the core only dispatches."""
    from harness.study import discover_studies, resolve

    studies = discover_studies()
    if args.study not in studies:
        print(f"unknown study `{args.study}`; studies: {', '.join(sorted(studies))}", file=sys.stderr)
        return EXIT_BAD_INPUT
    dotted = studies[args.study].commands.get(args.command)
    if dotted is None:
        print(f"study `{args.study}` has no `{args.command}` command", file=sys.stderr)
        return EXIT_BAD_INPUT
    options = {k: v for k, v in vars(args).items() if k not in ("func", "command", "root", "study", "profile")}
    return int(resolve(dotted)(_root(args), args.profile, options) or 0)


def _rtol(text: str) -> float:
    value = float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"rtol must be > 0 and < 1, got {text}")
    return value


def _profile_arg(p: argparse.ArgumentParser) -> None:
    from harness.study import DEFAULT_PROFILE, PROFILES

    p.add_argument("--profile", default=DEFAULT_PROFILE, choices=PROFILES,
                   help=f"which profile's pipeline (default {DEFAULT_PROFILE})")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="harness", description=__doc__.splitlines()[0])
    parser.add_argument("--root", help="project root (default: current directory)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("compile", help="specs + params -> dvc.yaml")
    p.add_argument("--check", action="store_true", help="exit 1 if dvc.yaml is stale, write nothing")
    p.set_defaults(func=cmd_compile)

    p = sub.add_parser("run", help="run one stage (what each dvc.yaml cmd calls)")
    p.add_argument("stage")
    _profile_arg(p)
    p.add_argument("--runner", help="local (default) or slurm; also $HARNESS_RUNNER or .harness/config.yaml")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("check-params", help="validate specs and knobs; write every stage's config file")
    _profile_arg(p)
    p.set_defaults(func=cmd_check_params)

    p = sub.add_parser("stages", help="list planned stages and the knobs each reads")
    p.add_argument("--study")
    _profile_arg(p)
    p.set_defaults(func=cmd_stages)

    p = sub.add_parser("status", help="which stages are stale, and why (knob, spec value, function, upstream)")
    p.add_argument("targets", nargs="*", help="stages to explain (default: all)")
    _profile_arg(p)
    p.add_argument("--json", action="store_true", help="machine-readable list of {stage, reasons}")
    p.add_argument("--committed", action="store_true",
                   help="results kept in git but not rerun here: ignore outputs absent from this cache")
    p.add_argument("--direct", action="store_true", help="hide stages stale only through a stale upstream")
    p.add_argument("--check", action="store_true", help="exit 1 when any stage is stale")
    p.add_argument("--study", help="only this study's stages (and check-params)")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("new-study", help="write a working minimal study to start from (docs/new-study.md)")
    p.add_argument("name", help="the study's name: a Python package name, the prefix of its stage names")
    p.add_argument("--package-dir", default="stages",
                   help="where its package goes (default stages/; another folder must be on $HARNESS_STUDY_PATH)")
    p.set_defaults(func=cmd_new_study)

    p = sub.add_parser("repair", help="restore a dvc.lock (or DVC rwlock) that a killed write left unparseable")
    p.set_defaults(func=cmd_repair)

    p = sub.add_parser("bootstrap", help="generate the embedded default data (data/) and check data.dvc")
    p.set_defaults(func=cmd_bootstrap)

    p = sub.add_parser("doctor", help="probe this CPU's numeric primitives; compare with the committed machines")
    p.add_argument("--threads", type=int, default=1, help="torch threads for the probe (stages run 1)")
    p.add_argument("--show", action="store_true", help="print this machine's probe table")
    p.add_argument("--write", action="store_true", help="add this machine's table under machines/probe/")
    p.add_argument("--probe-only", action="store_true", help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_doctor)

    p = sub.add_parser("drift", help="compare reproduced metrics/ with the committed ones")
    p.add_argument("--rev", default="HEAD", help="the commit holding the reference metrics (default HEAD)")
    p.add_argument("--rtol", type=_rtol, default=1e-4,
                   help="relative tolerance (default 1e-4); specs may set per-metric ones (drift_tolerance)")
    p.add_argument("--perturb", choices=("isa", "threads"), default=None,
                   help="rerun STAGES (globs; default all) and their downstream in a scratch copy under other "
                        "SIMD kernels (isa) or 2 threads (threads); report how far each metric moves")
    p.add_argument("stages", nargs="*", help="with --perturb: stage names or globs (e.g. 'mixture_sim-*')")
    p.add_argument("--profile", default="smoke", help="with --perturb: the profile whose pipeline to rerun")
    p.add_argument("-j", "--jobs", type=int, default=1, help="with --perturb: stages run side by side")
    p.add_argument("--keep", default=None, help="with --perturb: scratch folder to keep (default: a temp dir)")
    p.add_argument("--json", default=None, help="with --perturb: also write the result to this JSON file")
    p.set_defaults(func=cmd_drift)

    p = sub.add_parser("history", help="every committed value of a metric, with the spec/params changes between them")
    p.add_argument("target", help="metrics file, optionally :KEY-GLOB (e.g. metrics/scaling/transfer.json:mup.shift.*)")
    p.add_argument("--all", action="store_true", help="one entry per commit touching the file, changed or not")
    p.add_argument("--committed-only", action="store_true", help="leave out an uncommitted change on disk")
    p.add_argument("--json", action="store_true", help="machine-readable")
    p.set_defaults(func=cmd_history)

    p = sub.add_parser("simulate", help="predict every target of a study's table for new mixtures (saved simulator)")
    p.add_argument("--study", required=True)
    p.add_argument("--table", required=True, help="the table whose saved simulator to use")
    p.add_argument("--input", required=True, help="CSV: one row per mixture, a column per domain (+ other features)")
    p.add_argument("--output", required=True, help="CSV to write: the input plus a column per target")
    _profile_arg(p)
    p.set_defaults(func=cmd_study_command)

    try:  # SLURM scheduler subcommands (repro -j, submit, collect) live in their own package
        from harness.slurm.cli import add_subcommands
    except ImportError:
        pass
    else:
        add_subcommands(sub)
        for name in ("repro", "submit"):  # --study S: that study's stages as the targets
            if name in sub.choices:
                sub.choices[name].add_argument("--study", help="only this study's stages (and what they need)")
    return parser


def main(argv: list[str] | None = None) -> int:
    from harness.locking import LockHeld
    from harness.spec import SpecError

    args = build_parser().parse_args(argv)
    if getattr(args, "root", None) and not Path(args.root).is_dir():
        print(f"harness: --root {args.root}: no such directory", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        _apply_study(args)
        if args.command in PROJECT_COMMANDS:
            from harness.dag.dvcgraph import restore_interrupted_record
            from harness.locking import hold_project

            root = _root(args)
            with hold_project(root, f"harness {args.command}"):
                args.restored = restore_interrupted_record(root)
                for item in args.restored:
                    print(f"restored {item}")
                return int(args.func(args) or 0)
        return int(args.func(args) or 0)
    except BrokenPipeError:  # `harness stages | head`: the reader left; not an error
        sys.stderr.close()
        return 0
    except SpecError as exc:
        print("\n".join(exc.problems), file=sys.stderr)
        return EXIT_BAD_INPUT
    except LockHeld as exc:
        print(f"harness {args.command}: refused: {exc}", file=sys.stderr)
        return EXIT_BUSY
    except OSError as exc:
        if exc.errno not in WRITE_ERRNOS:
            raise
        # a full disk or a read-only folder is the machine's state, not a bug: say what and where;
        # outputs are written to a temporary sibling and renamed (harness.io), so the previous
        # ones are still in place and DVC records nothing for a failed command
        where = f" {exc.filename}" if exc.filename else ""
        what = f"stage {args.stage}" if args.command == "run" else f"harness {args.command}"
        print(f"{what}: cannot write{where}: {exc.strerror or exc}; previous outputs are left as they were "
              "(free space or fix permissions, then rerun)", file=sys.stderr)
        return EXIT_STAGE_FAILED
    except Exception as exc:  # noqa: BLE001 - classify known failures, re-raise the rest
        from harness.validation import GateFailure

        if isinstance(exc, GateFailure):
            print(str(exc), file=sys.stderr)
            return EXIT_GATE_FAILED
        raise


if __name__ == "__main__":
    sys.exit(main())
