"""DVC's own view of the pipeline: stages, edges, what is stale, and recording into dvc.lock.

Why DVC's API rather than parsing dvc.yaml: DVC decides what an edge is (an output of one stage
that another depends on, at any directory depth), what "changed" means (dep/param/out/cmd
hashes), and how a lock entry is written. Reusing it keeps ``harness repro`` exactly in step with
``dvc repro``. Everything here runs in the one scheduler process, and each call opens the repo
only for as long as it needs it, so DVC's repo lock is never held across a run nor contended by
stage processes: those (SLURM jobs or local subprocesses) only run stage commands, never DVC.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("DVC_NO_ANALYTICS", "1")


@dataclass
class PipelineStage:
    name: str
    commands: list[str]
    #: upstream stages whose outputs this one depends on (DVC's graph edges)
    upstream: list[str] = field(default_factory=list)
    #: outputs ``dvc repro`` deletes before running (everything but ``persist: true``)
    removable_outs: list[str] = field(default_factory=list)
    frozen: bool = False
    #: the stage's working directory relative to the repo root (its ``cmd`` runs, and its
    #: ``removable_outs`` are relative, there)
    wdir: str = "."
    #: its metrics files, relative to the repo root
    metrics: list[str] = field(default_factory=list)


def dvc_executable() -> str:
    """The venv's ``dvc`` beside this Python, even when the venv is not activated; else PATH's."""
    import sys

    beside = Path(sys.executable).parent / "dvc"
    return str(beside) if beside.exists() else "dvc"


@contextlib.contextmanager
def _open(root: Path):
    """The repo, with the working directory at its root: DVC names stages relative to the cwd
    (``dvc.yaml:a`` seen from elsewhere is ``../p/dvc.yaml:a``), and its CLI always runs there.

    Waits for DVC's repo lock rather than failing: DVC gives up after ~3 s, and a user's
    ``dvc status`` in another terminal (5-10 s on this project) used to crash a long
    ``harness repro`` with a ``LockError`` traceback. A ``dvc repro`` cannot hold it for long
    meanwhile: its first stage's ``harness run`` refuses while this scheduler holds the project.
    """
    from dvc.repo import Repo

    previous = os.getcwd()
    os.chdir(root)
    try:
        with Repo(".", _wait_for_lock=True) as repo:
            yield repo
    finally:
        os.chdir(previous)


def load_pipeline(root: Path, targets: list[str] | None = None) -> dict[str, PipelineStage]:
    """The stages ``dvc repro [targets]`` would consider, in the order it would visit them.

    The order is DVC's own (``plan_repro``: a post-order walk of the active graph), so stages
    are recorded into ``dvc.lock`` in the order ``dvc repro`` writes them and the lock files
    come out byte-identical. Frozen stages are cut from their dependencies, as DVC does.
    """
    from dvc.dvcfile import PROJECT_FILE
    from dvc.repo.reproduce import collect_stages, get_active_graph, plan_repro

    with _open(root) as repo:
        graph = get_active_graph(repo.index.graph)  # edge (stage, dependency)
        # no targets: the root dvc.yaml, as `dvc repro` (without --all-pipelines) takes it
        chosen = collect_stages(repo, targets or [PROJECT_FILE])
        stages: dict[str, PipelineStage] = {}
        for stage in plan_repro(graph, chosen):
            if not getattr(stage, "cmd", None):
                continue  # .dvc files (data.dvc): tracked data, nothing to run
            cmd = stage.cmd if isinstance(stage.cmd, list) else [stage.cmd]
            wdir = os.path.relpath(stage.wdir, os.getcwd())
            stages[stage.addressing] = PipelineStage(
                name=stage.addressing,
                commands=list(cmd),
                upstream=[dep.addressing for dep in graph.successors(stage) if getattr(dep, "cmd", None)],
                removable_outs=[out.def_path for out in stage.outs if not out.persist],
                frozen=bool(stage.frozen),
                wdir=wdir,
                metrics=[os.path.normpath(os.path.join(wdir, out.def_path)) for out in stage.outs if out.is_metric],
            )
        return stages


def changed_stages(root: Path) -> set[str]:
    """Stages ``dvc status`` reports as changed (deps, params, outs, cmd, or always_changed)."""
    with _open(root) as repo:
        return set(repo.status())


def changed_among(root: Path, names: list[str]) -> set[str]:
    """Which of ``names`` DVC's status reports as changed now (each stage alone, no upstream)."""
    if not names:
        return set()
    with _open(root) as repo:
        return set(repo.status(targets=list(names)))


def stale_stages(root: Path, pipeline: dict[str, PipelineStage],
                 changed: set[str] | None = None) -> list[str]:
    """Changed stages plus everything downstream of them, in the pipeline's order.

    Downstream stages are included even though DVC's status cannot yet see them as changed (their
    inputs are upstream outputs that have not been rebuilt yet): ``dvc repro`` would rerun them
    once those outputs change. When a rebuilt output comes out byte-identical, ``dvc repro``
    skips the stage below it; so does the local runner, which asks DVC again (``changed_among``)
    once a downstream-only stage's upstreams are done. Frozen stages are skipped, as ``dvc
    repro`` skips them.
    """
    changed = changed_stages(root) if changed is None else changed
    stale: list[str] = []
    for name, stage in pipeline.items():  # upstream first: their decisions are already made
        if stage.frozen:
            continue
        if name in changed or any(up in stale for up in stage.upstream):
            stale.append(name)
    return stale


def record(root: Path, names: list[str]) -> dict[str, str]:
    """Record finished stages into dvc.lock and the cache, as ``dvc commit -f`` does.

    Returns ``{stage: error}`` for stages DVC refused (e.g. a declared output is missing); those
    are not recorded. Must be called from a single process (DVC's repo lock).

    Why batched: ``repo.commit(name)`` re-collects the pipeline and rewrites the whole lock file
    for every stage (about 2 s each on this project's 7,000-line lock, which left the parallel
    run a 78 s recording tail). Here each pipeline file is loaded once, every stage is saved and
    committed with DVC's own ``Stage.save``/``Stage.commit``, and the lock is written once per
    file with ``dump_stages``, in the order given (the plan order), as ``dvc commit`` does.
    """
    from dvc.dvcfile import PROJECT_FILE, load_file

    from harness import depstamp

    errors: dict[str, str] = {}
    if not names:
        return errors
    by_file: dict[str, list[tuple[str, str]]] = {}
    for name in names:
        path, _, stage_name = name.rpartition(":")
        by_file.setdefault(path or PROJECT_FILE, []).append((name, stage_name))
    restore_record_backups(root)
    with _open(root) as repo, repo.lock:
        for path, items in by_file.items():
            _backup_lock(root, path)
            dvcfile = load_file(repo, path)
            stages = dvcfile.stages
            done = []
            for name, stage_name in items:
                moved = depstamp.changed_since_start(root, stage_name, depstamp.profile_of(path))
                if moved:  # DVC would hash the new inputs and record them as the ones that ran
                    errors[name] = (f"inputs changed after the stage started ({', '.join(moved[:5])}"
                                    f"{' ...' if len(moved) > 5 else ''}); not recorded, so it stays stale: rerun it")
                    continue
                try:
                    stage = stages[stage_name]
                    stage.save()
                    # relink=False: DVC's relink deletes each workspace output and re-links it
                    # from the cache; a recorder killed in between (the chaos test does that)
                    # left outputs missing. Without it the workspace is never touched; the lock
                    # entry and the cache object are the same
                    stage.commit(relink=False)
                    done.append(stage)
                except Exception as exc:  # noqa: BLE001 - DVC raises many types; report, don't crash the run
                    errors[name] = f"{type(exc).__name__}: {exc}"
            if done:
                dvcfile.dump_stages(done, update_pipeline=False)
            _drop_backup(root, path)
    return errors


def _record_dir(root: Path) -> Path:
    """Where the recorder's lock backups and :func:`snapshot_lock`'s copies live."""
    return Path(root) / ".dvc" / "tmp" / "harness-record"


def _lock_of(root: Path, dvcyaml: str) -> Path:
    return Path(root) / (dvcyaml[: -len("dvc.yaml")] + "dvc.lock" if dvcyaml.endswith("dvc.yaml") else dvcyaml + ".lock")


def _kept_copy(root: Path, dvcyaml: str, suffix: str) -> Path:
    """A kept copy of ``dvcyaml``'s lock: ``.lock.bak`` (the recorder's) or ``.lock.good`` (a stage's)."""
    return _record_dir(root) / (dvcyaml.replace("/", "__") + suffix)


def _pipelines_with(root: Path, suffix: str) -> list[tuple[str, Path]]:
    """``(dvcyaml, kept copy)`` for every copy with ``suffix`` in the record folder."""
    folder = _record_dir(root)
    return [(copy.name[: -len(suffix)].replace("__", "/"), copy)
            for copy in (sorted(folder.glob(f"*{suffix}")) if folder.is_dir() else [])]


def _copy_atomically(src: Path, dst: Path) -> None:
    """``dst`` becomes a copy of ``src`` (or empty, ``src`` being absent) in one rename: a copy cut
    short by a kill never replaces what was there. (Not ``harness.io.atomic_path``: it removes
    the target before its rename, right for stage outputs, not for a lock that must never be absent.)"""
    import shutil

    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    if src.exists():
        shutil.copy2(src, tmp)
    else:
        tmp.write_text("")
    os.replace(tmp, dst)


def _backup_lock(root: Path, dvcyaml: str) -> None:
    """DVC rewrites dvc.lock in place (not atomically); a recorder killed mid-write would leave it
    truncated. A copy taken first (empty when there was no lock file), removed once the write is
    done, is restored by the next recorder."""
    _copy_atomically(_lock_of(root, dvcyaml), _kept_copy(root, dvcyaml, ".lock.bak"))


def _drop_backup(root: Path, dvcyaml: str) -> None:
    _kept_copy(root, dvcyaml, ".lock.bak").unlink(missing_ok=True)


def snapshot_lock(root: Path, dvcyaml: str) -> None:
    """Keep a copy of ``dvcyaml``'s lock as it is when a stage that ``dvc repro`` started begins.

    Why: ``dvc repro`` rewrites ``dvc.lock`` in place after each stage (about a second for this
    project's lock), so a ``kill -9`` in that window leaves a truncated lock that every later DVC
    command refuses ("dvc.lock validation failed"); the kill matrix of tests/test_reliability_kills
    hit it. When a stage starts, DVC has finished writing the lock (it runs stages one at a time
    and writes in between), so this copy is complete; :func:`restore_interrupted_record`
    (``harness repair``, and the start of every ``harness repro`` / ``collect``) puts it back if
    DVC would refuse the lock. An older lock is always safe to restore: a stage whose recorded
    hashes do not match its files is rerun. Best effort: a failed copy never stops the stage.
    """
    lock, good = _lock_of(root, dvcyaml), _kept_copy(root, dvcyaml, ".lock.good")
    try:
        if lock.exists():
            _copy_atomically(lock, good)
        else:
            good.unlink(missing_ok=True)
    except OSError:
        pass


def _parses(lock: Path) -> bool:
    """Whether DVC would accept ``lock``: YAML, and DVC's own lock-file schema (a write cut inside
    a stage's entry is still YAML, but lacks keys DVC requires: "validation failed")."""
    import yaml
    from dvc.schema import COMPILED_LOCKFILE_SCHEMA

    try:
        data = yaml.load(lock.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        COMPILED_LOCKFILE_SCHEMA(data)
    except Exception:  # noqa: BLE001 - OSError, decode, YAML or voluptuous errors: all mean "DVC refuses it"
        return False
    return True


def restore_interrupted_record(root: Path) -> list[str]:
    """Everything a killed write left half done, put back (``harness repair``; every ``harness
    repro`` / ``collect`` does it first, under the project lock, before DVC reads a lock): the
    rwlock, lock files a killed recorder was rewriting, and locks a killed ``dvc repro`` left
    unparseable (from :func:`snapshot_lock`'s copy). Returns what it restored."""
    restored = restore_record_backups(root)
    for dvcyaml, good in _pipelines_with(root, ".lock.good"):
        lock = _lock_of(root, dvcyaml)
        if lock.exists() and not _parses(lock) and _parses(good):
            _copy_atomically(good, lock)
            restored.append(f"{lock.relative_to(root)} (unparseable, left by a killed DVC write)")
    return restored


def restore_record_backups(root: Path) -> list[str]:
    """Put back the rwlock and every lock file whose recording was cut short (the stages it was
    recording are not marked recorded in the run manifest, so they are recorded again). Cheap:
    run before every recording."""
    _repair_rwlock(root)
    restored = []
    for dvcyaml, backup in _pipelines_with(root, ".lock.bak"):
        lock = _lock_of(root, dvcyaml)
        if backup.stat().st_size == 0:
            lock.unlink(missing_ok=True)
        else:
            _copy_atomically(backup, lock)
        backup.unlink()
        restored.append(str(lock.relative_to(root)))
    return restored


def _repair_rwlock(root: Path) -> None:
    """DVC rewrites ``.dvc/tmp/rwlock`` in place too; a process killed mid-write leaves JSON that
    DVC refuses forever after (``RWLockFileCorruptedError``). Only the recorder runs DVC during a
    run, so a rwlock that does not parse was left by a killed recorder: remove it (DVC recreates
    it, and already drops entries of dead processes itself)."""
    import json

    path = Path(root) / ".dvc" / "tmp" / "rwlock"
    try:
        text = path.read_text()
    except FileNotFoundError:
        return
    try:
        ok = isinstance(json.loads(text), dict)
    except json.JSONDecodeError:  # includes the empty file a write cut short right after open()
        ok = False
    if not ok:
        path.unlink(missing_ok=True)
