"""``harness drift --perturb KIND [STAGE ...]``: measure how far each metric moves under a perturbation
that any second machine could cause, so drift tolerances are measured, not guessed.

Why: two x86-64 CPUs may round the last bit of a sum differently even under the kernel pin
(:func:`harness.runtime.pin_cpu_kernels`), and a study can amplify that into another result (the
best of near-equal candidates, a Spearman over near-ties, a sampled token). No second machine is
needed to find such a metric: rerun the stage here with other kernels or another thread count and
see what moves. A metric that moves beyond its drift tolerance is **chaotic**: it must be made
stable in its study, or declared in its spec (``not_reproducible:``, with the measured
sensitivity and a reason) so that reports and ``harness drift`` never present it as a result.

How: the project's working tree (code, specs, params, ``data/``, ``work/`` and ``metrics/``, not
``.git`` or the DVC cache) is copied to a scratch folder; the named stages and everything
downstream of them rerun there, each with its own ``cmd`` from the compiled pipeline and the
perturbation in its environment; their metric files are compared with the working tree's using
the drift rule (:func:`harness.drift.compare_values`, declared tolerances included). Nothing in
the project, its ``dvc.lock`` or its DVC cache (run cache included) is touched. The working tree
must hold a reproduction of the pipeline (``dvc repro`` / ``harness repro`` first).

Perturbations:

* ``isa``: other SIMD kernels: unpinned (``HARNESS_CPU_ISA=native``) on a CPU with AVX-512, which
  then runs AVX-512 kernels instead of the pinned AVX2 ones; ``sse4`` elsewhere.
* ``threads``: two threads for every math library (``HARNESS_THREADS=2``) instead of one.
"""

from __future__ import annotations

import fnmatch
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from harness.dag import dvcgraph
from harness.dag.dvcgraph import PipelineStage
from harness.drift import (DriftReport, Movement, compare_values, declared_not_reproducible, load_flat,
                           relative_change, spec_tolerances)

#: what is never copied to the scratch tree (history, caches, environments, run records)
SKIP_TOP = {".git", ".venv", ".harness", ".pytest_cache", "__pycache__"}
SKIP_DVC = {"cache", "tmp"}
PERTURBATIONS = ("isa", "threads")


def perturbation_env(kind: str) -> tuple[dict[str, str], str]:
    """(environment, description) for a perturbation kind."""
    from harness.runtime import _cpu_flags

    if kind == "isa":
        flags = _cpu_flags() or set()
        if "avx512f" in flags:
            return {"HARNESS_CPU_ISA": "native"}, "unpinned kernels (this CPU's AVX-512) instead of the AVX2 pin"
        return {"HARNESS_CPU_ISA": "sse4"}, "SSE4 kernels instead of the AVX2 pin"
    if kind == "threads":
        return {"HARNESS_THREADS": "2"}, "2 math-library threads instead of 1"
    raise ValueError(f"unknown perturbation {kind!r} (expected one of {', '.join(PERTURBATIONS)})")


@dataclass
class PerturbResult:
    kind: str
    description: str
    stages: list[str]
    report: DriftReport
    #: metric files compared, with the largest relative move in each
    largest: dict[str, tuple[str, float]] = field(default_factory=dict)
    declared: list[tuple[str, str, float]] = field(default_factory=list)  # (rel:key, reason, moved)
    failed: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def chaotic(self) -> list[Movement]:
        return self.report.moved


def load_pipeline(root: Path, profile: str) -> dict[str, PipelineStage]:
    """The profile's stages as DVC sees them (edges, outputs, working folders), in ``dvc repro`` order."""
    from harness.layout import pipeline_file

    return dvcgraph.load_pipeline(root, [pipeline_file(profile)])


def select(stages: dict[str, PipelineStage], patterns: list[str]) -> list[str]:
    """The stages matching ``patterns`` (names or globs) and everything downstream, in DAG order."""
    chosen = {n for n in stages for p in patterns if fnmatch.fnmatchcase(n, p)}
    unknown = [p for p in patterns if not any(fnmatch.fnmatchcase(n, p) for n in stages)]
    if unknown:
        raise ValueError(f"no stage matches {', '.join(map(repr, unknown))} (see `harness stages`)")
    for name in stages:  # DVC's order visits every upstream stage first
        if name not in chosen and set(stages[name].upstream) & chosen:
            chosen.add(name)
    return [n for n in stages if n in chosen]


def scratch_copy(root: Path, into: Path) -> Path:
    """Copy the working tree (no history, caches or environments) into ``into``."""

    def ignore(folder: str, names: list[str]) -> set[str]:
        here = Path(folder).resolve()
        if here == root:
            return {n for n in names if n in SKIP_TOP}
        if here == root / ".dvc":
            return {n for n in names if n in SKIP_DVC}
        return {n for n in names if n == "__pycache__"}

    shutil.copytree(root, into, ignore=ignore, symlinks=True, dirs_exist_ok=True)
    return into


def run_stages(scratch: Path, stages: dict[str, PipelineStage], order: list[str], env: dict[str, str],
               jobs: int, log_dir: Path, out: Callable[[str], None]) -> list[str]:
    """Run ``order`` in ``scratch`` (DAG order, up to ``jobs`` at once); the names that failed."""
    bindir = str(Path(sys.executable).parent)
    full_env = {**os.environ, **env, "HARNESS_RUNNER": "local", "PYTHONUNBUFFERED": "1",
                "PATH": bindir + os.pathsep + os.environ.get("PATH", "")}
    # the parent's own pin (this process was pinned when the CLI loaded) must not pass for the
    # child's choice: drop what it applied, keep what the user exported on purpose
    from harness.runtime import CPU_PINNED_ENV, cpu_kernel_settings

    for var in [*cpu_kernel_settings()["applied"], CPU_PINNED_ENV]:
        if var not in env:
            full_env.pop(var, None)
    pending, running, done, failed = list(order), {}, set(), []
    t0 = time.perf_counter()
    while pending or running:
        for name in list(pending):
            if len(running) >= max(1, jobs):
                break
            waits = set(stages[name].upstream) & set(order)
            if not waits <= done:
                continue
            if waits & set(failed):
                pending.remove(name)
                failed.append(name)
                continue
            for rel in stages[name].removable_outs:  # as DVC does before a stage runs
                target = scratch / stages[name].wdir / rel
                if target.is_dir():
                    shutil.rmtree(target)
                elif target.exists():
                    target.unlink()
            log = open(log_dir / f"{name}.log", "w")
            cmd = " && ".join(stages[name].commands)
            running[name] = (subprocess.Popen(["bash", "-c", cmd], cwd=scratch / stages[name].wdir, env=full_env, stdout=log,
                                              stderr=subprocess.STDOUT, start_new_session=True), log)
            pending.remove(name)
            out(f"[perturb] {time.perf_counter() - t0:7.1f}s start {name}")
        for name, (proc, log) in list(running.items()):
            if proc.poll() is None:
                continue
            log.close()
            del running[name]
            done.add(name)
            if proc.returncode != 0:
                failed.append(name)
                out(f"[perturb] {time.perf_counter() - t0:7.1f}s FAILED {name} (exit {proc.returncode}, "
                    f"log {log_dir / (name + '.log')})")
            else:
                out(f"[perturb] {time.perf_counter() - t0:7.1f}s done  {name}")
        time.sleep(0.05)
    return failed


def perturb(root: Path, kind: str, patterns: list[str], profile: str = "smoke", jobs: int = 1,
            keep: Path | None = None, out: Callable[[str], None] = print) -> PerturbResult:
    """Rerun the selected stages under perturbation ``kind`` in a scratch copy; compare their metrics."""
    root = Path(root).resolve()
    env, description = perturbation_env(kind)
    stages = load_pipeline(root, profile)
    order = select(stages, patterns or ["*"])
    order = [n for n in order if stages[n].commands and stages[n].commands[0].startswith("harness run")]
    missing = [m for n in order for m in stages[n].metrics if not (root / m).is_file()]
    if missing:
        raise FileNotFoundError(f"{missing[0]} (and {len(missing) - 1} more) not reproduced in the working tree: "
                                "run `harness repro` (or `dvc repro`) first, then perturb")
    t0 = time.perf_counter()
    scratch_parent = Path(tempfile.mkdtemp(prefix="harness-perturb-")) if keep is None else Path(keep)
    scratch = scratch_copy(root, scratch_parent / "tree")
    log_dir = scratch_parent / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    out(f"[perturb] {kind}: {description}; {len(order)} stage(s) rerun in {scratch}")
    failed = run_stages(scratch, stages, order, env, jobs, log_dir, out)
    tolerances = spec_tolerances(root)
    declared = declared_not_reproducible(root)
    report = DriftReport()
    result = PerturbResult(kind, description, order, report, failed=failed)
    for name in order:
        if name in failed:
            continue
        for rel in stages[name].metrics:
            old, new = load_flat(root / rel), load_flat(scratch / rel)
            for key, _, reason, was, now in declared.pop_declared(rel, old, new):
                result.declared.append((f"{rel}:{key}", reason, relative_change(was, now)))
            report.files += 1
            compare_values(rel, old, new, tolerances, 1e-4, report, labels=("pinned", "perturbed"))
            moves = [(k, relative_change(old[k], new[k])) for k in old if k in new]
            if moves:
                result.largest[rel] = max(moves, key=lambda kv: kv[1])
    result.seconds = time.perf_counter() - t0
    if keep is None and not failed:
        shutil.rmtree(scratch_parent, ignore_errors=True)
    elif failed:
        out(f"[perturb] kept {scratch_parent} (logs/ and tree/) to read the failures")
    return result


def summary_lines(result: PerturbResult) -> list[str]:
    """The table a user reads: per metric file, the largest move, and every chaotic metric."""
    lines = [f"perturbation {result.kind}: {result.description}; {len(result.stages)} stage(s), "
             f"{result.report.compared} value(s) in {result.report.files} file(s), {result.seconds:.0f}s"]
    for rel, (key, moved) in sorted(result.largest.items()):
        lines.append(f"  {rel}: largest relative move {moved:.2g} ({key})")
    by_reason: dict[str, list[float]] = {}
    for _, reason, moved in result.declared:
        by_reason.setdefault(reason, []).append(moved)
    for reason, moves in by_reason.items():
        lines.append(f"  declared not reproducible: {len(moves)} value(s), largest move {max(moves):.2g} ({reason})")
    for m in result.chaotic:
        lines.append(f"  CHAOTIC {m.rel}: {m.key} pinned {m.old!r}, perturbed {m.new!r} "
                     f"(moved {m.relative:.2g}, tolerance {m.rtol:g})")
    for p in result.report.problems:
        if "missing" in p or " new" in p:
            lines.append(f"  {p}")
    for name in result.failed:
        lines.append(f"  FAILED {name}")
    return lines
