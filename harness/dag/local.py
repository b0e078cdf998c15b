"""``harness repro -j N`` on the local runner: the stale DAG on a local process pool.

Why not ``dvc repro``: DVC runs one stage at a time under its repo lock (DVC #755, #7419,
#9805), so independent stages (a sweep's training runs, a diamond's branches) queue behind each
other on a machine with idle cores. Here the shared scheduler (:mod:`harness.dag.scheduler`)
plans the stale DAG from DVC and records finished stages into ``dvc.lock`` with DVC's own commit
in DVC's repro order (byte-identical to sequential ``dvc repro``), and :class:`LocalBackend`
runs each stage's ``cmd`` as soon as its upstream stages have completed and enough CPUs are free.

Shape: the pool runs in a thread of its own (launch, reap, kill; it never touches DVC), the main
thread is the one recorder (``dvcgraph.record``, which opens the repo only for each commit) and
owns the signal handlers. Each stage runs as ``bash -c '<cmd> && ...'`` in its own session
(process group), with ``HARNESS_RUNNER=local`` (the stage runs in-process, never submits or runs
DVC), ``OMP_NUM_THREADS``/``MKL_NUM_THREADS`` set to its granted CPUs, stdout+stderr appended to
``<runs_dir>/<run_id>/logs/<stage>.log`` and start/end events to ``records/<stage>.jsonl``.

Stale but unchanged: a stage that is stale only because an upstream is (DVC did not report it
changed at plan time) is held until its upstreams have completed; the main thread then asks DVC's
status about it, and a stage whose inputs came out byte-identical is not rerun (its lock entry
already describes it), as ``dvc repro`` skips it. So an edit that changes nothing downstream
(a comment in ``harness/cli.py``, which the check-params stage reads) reruns one stage, not 139.

CPU budget: ``-j N`` is the number of CPUs the run may use at once (``-j 0``: ``os.cpu_count()``;
no ``-j``: 1, i.e. sequential through the pool). A stage takes the ``cpus`` its own profile
declares (that pipeline's compiled ``dvc.resources.json``, :mod:`harness.dag.resources`); one
asking more than the budget runs alone, granted the whole budget. GPUs are not scheduled locally: stages asking for GPUs share whatever the
machine has (set ``CUDA_VISIBLE_DEVICES`` yourself, or use ``-j`` to keep them apart).

Interrupts: SIGINT / SIGTERM stop launching, send SIGTERM to every running stage's process
group (SIGKILL after :data:`KILL_GRACE_S`, or at a second signal), and wait for them. Killed
stages are never recorded; stages that had completed before the interrupt are recorded (they
are whole), and the run exits 130. A commit in progress is never cut short: the handlers only
set a flag.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from harness.dag import dvcgraph
from harness.dag import scheduler as core
from harness.dag.dvcgraph import PipelineStage
from harness.dag.manifest import RunManifest, RunPaths, new_run_id, save
from harness.study import Resources

#: what each stage process gets: run in-process (no SLURM submission, no DVC) and unbuffered
STAGE_ENV = {"HARNESS_RUNNER": "local", "PYTHONUNBUFFERED": "1"}
#: seconds between SIGTERM and SIGKILL for an interrupted stage's process group
KILL_GRACE_S = 5.0
#: pool thread tick; also bounds how late a finished stage is noticed
TICK_S = 0.02


def cpu_budget(jobs: int | None) -> int:
    """``None`` (no ``-j``): 1, sequential; ``0``: every core; ``N``: N CPUs."""
    if jobs is None:
        return 1
    if jobs <= 0:
        return os.cpu_count() or 1
    return jobs


@dataclass
class _Proc:
    popen: subprocess.Popen
    started: float
    cpus: int
    log: object
    term_sent: float = 0.0


class LocalBackend:
    """A pool of stage subprocesses bounded by a CPU budget; see the module docstring."""

    name = "local"
    show_table = False

    def __init__(self, root: Path, manifest: RunManifest, paths: RunPaths, pipeline: dict[str, PipelineStage],
                 resources: dict[str, Resources], budget: int, out: Callable[[str], None] = print,
                 t0: float | None = None):
        self.root, self.paths, self.pipeline, self.budget, self.out = Path(root), paths, pipeline, budget, out
        self.order = list(manifest.order)
        self.after = {name: list(manifest.stages[name].after) for name in self.order}
        # by the stage's own address (an override may use its file-safe form); a stage no
        # override names gets what its own profile's compiled sidecar declares
        from harness.dag.resources import for_address

        self.cpus = {}
        for name in self.order:
            res = resources.get(name, resources.get(core.short(name)))
            self.cpus[name] = max(1, (res if res is not None else for_address(self.root, name).resources).cpus)
        self.t0 = time.time() if t0 is None else t0
        self.priority = _downstream_work(self.order, self.after)
        # pool-thread state, guarded by _lock: name -> (state, exit_code, elapsed_s, pid, reason)
        self._lock = threading.Lock()
        self._state: dict[str, tuple[str, int | None, float, str, str]] = {
            name: (core.PLANNED, None, 0.0, "", "") for name in self.order}
        self._procs: dict[str, _Proc] = {}
        self._cancelled: set[str] = set()
        self._interrupt = threading.Event()
        self._interrupts = 0
        self._why = ""
        self._error = ""
        self._announced = False
        self._finished = threading.Event()
        # downstream-only stages (not changed themselves at plan time): held back until the main
        # thread has asked DVC whether their inputs actually changed once their upstreams ran
        self._held = {name for name in self.order if not manifest.stages[name].direct}
        self._thread = threading.Thread(target=self._loop, name="harness-local-pool", daemon=True)

    # -- the scheduler's side -------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def release_held(self) -> None:
        """Main thread (the one that may open DVC): for each held stage whose upstreams have all
        completed, ask DVC's status whether it changed; release it to the pool if so, else mark it
        completed as unchanged (nothing to run, its lock entry stands), as ``dvc repro`` does."""
        with self._lock:
            due = self._held_due()
        if not due:
            return
        changed = dvcgraph.changed_among(self.root, due)
        with self._lock:
            for name in due:
                self._held.discard(name)
                if name not in changed:
                    self._state[name] = (core.OK, 0, 0.0, "", core.UNCHANGED)
                    self.out(f"[harness] {self._elapsed()} skip   {name}: inputs unchanged, not rerun")

    def _held_due(self) -> list[str]:
        """Held stages whose upstreams have all completed: DVC is to be asked about them (caller
        holds ``_lock``)."""
        return [name for name in self.order if name in self._held and name not in self._cancelled
                and self._state[name][0] == core.PLANNED
                and all(self._state[up][0] == core.OK for up in self.after[name])]

    def refresh(self, manifest: RunManifest, paths: RunPaths) -> None:
        if self._error:
            raise RuntimeError(f"the local process pool failed; running stages were killed:\n{self._error}")
        self.release_held()
        with self._lock:
            snapshot = dict(self._state)
        for name, (state, code, elapsed, pid, reason) in snapshot.items():
            stage = manifest.stages[name]
            if stage.state == core.RECORD_FAILED or stage.reason.startswith(core.NOT_THEIR_FAULT) or stage.recorded:
                continue
            if state == core.PLANNED and not self._finished.is_set():
                continue
            if state == core.PLANNED:  # the pool is done and never started it
                why = "run interrupted" if self._interrupt.is_set() else "an upstream stage did not complete"
                state, reason = core.DEP_CANCELLED, reason or f"not started: {why}"
            stage.state, stage.exit_code, stage.elapsed_s = state, code, elapsed
            stage.job_id, stage.reason = pid, reason

    def cancel(self, manifest: RunManifest, names: list[str]) -> None:
        with self._lock:
            self._cancelled.update(names)
            for name in names:
                proc = self._procs.get(name)
                if proc is not None and not proc.term_sent:
                    self._signal(proc, signal.SIGTERM)

    def describe_failure(self, manifest: RunManifest, paths: RunPaths, name: str) -> str:
        stage = manifest.stages[name]
        what = f"exit code {stage.exit_code}" if stage.state != core.RECORD_FAILED else f"not recorded: {stage.reason}"
        return f"FAILED {name}: {what}; log {paths.log(core.short(name))}"

    def interrupt(self, why: str = "interrupt") -> None:
        """From a signal handler: only flags; the pool thread reports and does the killing."""
        self._why = self._why or why
        self._interrupts += 1
        self._interrupt.set()

    def close(self) -> None:
        """Kill whatever still runs (the scheduler is leaving, e.g. on an exception) and wait."""
        self._interrupt.set()
        self._interrupts = max(self._interrupts, 2)
        self._thread.join(timeout=KILL_GRACE_S + 5)

    # -- the pool thread ------------------------------------------------------------------------
    def _elapsed(self) -> str:
        return f"{time.time() - self.t0:7.1f}s"

    def _signal(self, proc: _Proc, sig: int) -> None:
        try:
            os.killpg(proc.popen.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
        if sig == signal.SIGTERM:
            proc.term_sent = time.time()

    def _used(self) -> int:
        return sum(p.cpus for p in self._procs.values())

    def _ready(self) -> list[str]:
        """Stages whose upstreams are done, those with the most work below them first.

        Why a priority: a long chain (prepare -> tokenize -> 12 training runs -> rank -> ...)
        started late leaves a slot idle at the end; starting it first keeps every slot busy.
        """
        ready = [name for name in self.order
                 if self._state[name][0] == core.PLANNED and name not in self._cancelled and name not in self._held
                 and all(self._state[up][0] == core.OK for up in self.after[name])]
        return sorted(ready, key=lambda name: -self.priority[name])

    def _launch(self, name: str, cpus: int) -> None:
        short = core.short(name)
        log_path, record_path = self.paths.log(short), self.paths.record(short)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        record_path.parent.mkdir(parents=True, exist_ok=True)
        wdir = self.root / self.pipeline[name].wdir
        for rel in self.pipeline[name].removable_outs:  # as dvc repro does before running a stage
            target = wdir / rel
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            elif target.exists() or target.is_symlink():
                target.unlink()
        commands = self.pipeline[name].commands
        script = " && ".join(commands) if commands else "true"
        env = {**os.environ, **STAGE_ENV, "HARNESS_STAGE": short,
               "OMP_NUM_THREADS": str(cpus), "MKL_NUM_THREADS": str(cpus)}
        log = open(log_path, "ab")
        log.write(f"[harness] stage {name}: local, {cpus} cpu(s), cmd: {script}\n".encode())
        log.flush()
        popen = subprocess.Popen(["bash", "-c", script], cwd=wdir, env=env, stdin=subprocess.DEVNULL,
                                 stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        now = time.time()
        self._procs[name] = _Proc(popen=popen, started=now, cpus=cpus, log=log)
        self._state[name] = (core.RUNNING, None, 0.0, str(popen.pid), "")
        _event(record_path, "start", now, popen.pid)
        self.out(f"[harness] {self._elapsed()} start  {name} ({cpus} cpu{'s' if cpus > 1 else ''}, pid {popen.pid})")

    def _reap(self) -> None:
        for name, proc in list(self._procs.items()):
            rc = proc.popen.poll()
            if rc is None:
                continue
            now = time.time()
            proc.log.close()
            del self._procs[name]
            _event(self.paths.record(core.short(name)), "end", now, proc.popen.pid, rc)
            took = round(now - proc.started, 1)
            if rc == 0:
                state, word = core.OK, "done  "
            elif proc.term_sent and (self._interrupt.is_set() or name in self._cancelled):
                state, word = core.INTERRUPTED, "killed"
            else:
                state, word = core.FAILED, "FAILED"
            self._state[name] = (state, rc, took, str(proc.popen.pid), "")
            detail = "" if rc == 0 else f", exit code {rc}, log {self.paths.log(core.short(name))}"
            self.out(f"[harness] {self._elapsed()} {word} {name} in {took:.1f}s{detail}")

    def _loop(self) -> None:
        try:
            while True:
                with self._lock:
                    self._reap()
                    if self._interrupt.is_set():
                        now = time.time()
                        if self._why and not self._announced:
                            self._announced = True
                            self.out(f"[harness] {self._elapsed()} {self._why}: stopping {len(self._procs)} running "
                                     f"stage(s), starting no more (again to kill at once)")
                        for proc in self._procs.values():
                            if not proc.term_sent:
                                self._signal(proc, signal.SIGTERM)
                            elif self._interrupts > 1 or now - proc.term_sent > KILL_GRACE_S:
                                self._signal(proc, signal.SIGKILL)
                    else:
                        for name in self._ready():
                            used, want = self._used(), self.cpus[name]
                            if used == 0 and want >= self.budget:
                                self._launch(name, self.budget)  # too big for the budget: alone, all of it
                            elif used + want <= self.budget:
                                self._launch(name, want)
                    if not self._procs and (self._interrupt.is_set() or not (self._ready() or self._held_due())):
                        break
                time.sleep(TICK_S)
        except BaseException as exc:  # noqa: BLE001 - surfaced to the scheduler by refresh()
            import traceback

            self._error = "".join(traceback.format_exception(exc)).rstrip()
        finally:
            with self._lock:
                for name, proc in list(self._procs.items()):  # only after an unexpected error here
                    self._signal(proc, signal.SIGKILL)
                    proc.popen.wait()
                    self._state[name] = (core.INTERRUPTED, proc.popen.returncode, 0.0, str(proc.popen.pid), "")
            self._finished.set()


def _downstream_work(order: list[str], after: dict[str, list[str]]) -> dict[str, int]:
    """Per stage: its in-run descendants plus the longest chain below it (a critical-path proxy)."""
    below: dict[str, set[str]] = {name: set() for name in order}
    depth: dict[str, int] = {name: 0 for name in order}
    for name in reversed(order):  # order is topological: every reader comes after what it reads
        for up in after[name]:
            below[up] |= below[name] | {name}
            depth[up] = max(depth[up], depth[name] + 1)
    return {name: len(below[name]) + depth[name] for name in order}


def _event(path: Path, event: str, t: float, pid: int, rc: int | None = None) -> None:
    with open(path, "a") as fh:
        fh.write(json.dumps({"event": event, "t": t, "job": str(pid), "restarts": 0, "rc": rc}) + "\n")


def run_local(root: Path, targets: list[str] | None = None, jobs: int | None = None,
              runs_dir: str = ".harness/runs", out: Callable[[str], None] | None = None,
              resources: dict[str, Resources] | None = None) -> int:
    """Plan, run on the pool, record; returns the exit code (0 ok, 1 a stage failed, 130 interrupted)."""
    out = out or (lambda text: print(text, flush=True))
    root = Path(root).resolve()
    t0 = time.time()
    budget = cpu_budget(jobs)
    run_id = new_run_id("local")
    manifest, pipeline = core.plan_run(root, targets, budget, run_id, runner="local")
    if not manifest.order:
        out("nothing to do: every stage is up to date")
        return 0
    paths = RunPaths(root, runs_dir, run_id)
    # each stage's resources come from its own pipeline's profile (harness.dag.resources), by its
    # address, in LocalBackend; ``resources`` only overrides (tests)
    resources = resources or {}
    save(paths, manifest)
    out(f"[harness] run {run_id}: {len(manifest.order)} stale stage(s) on the local pool, {budget} cpu(s); "
        f"logs {paths.dir.relative_to(root)}/logs/")
    backend = LocalBackend(root, manifest, paths, pipeline, resources, budget, out, t0=t0)

    def on_signal(signum, _frame):  # no printing here: the main thread may be inside a print
        backend.interrupt(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        backend.start()
        report = core.wait(root, manifest, paths, backend, poll_s=0.1, out=out)
    finally:
        backend.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    out(f"[harness] wall {time.time() - t0:.1f}s")
    return report.exit_code
