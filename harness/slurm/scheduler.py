"""Submit the stale DAG to SLURM at once, then collect: poll, retry by cause, record into dvc.lock.

Why this shape: DVC runs stages one at a time under a repo lock (DVC #755, #7419, #9805). Here
every stale stage becomes a job (or a task of a job array) at submit time, wired with
``--dependency=afterok``/``aftercorr`` edges that mirror DVC's own graph, so SLURM itself
enforces the DAG and runs independent stages side by side; jobs only run stage commands (never
DVC), and one process, the collector, records finished stages into ``dvc.lock`` with DVC's own
commit. ``collect`` is idempotent and works from the manifest alone (commands, resources and
attempts are in it), so the blocking ``repro`` is just ``submit`` followed by ``collect`` in a
loop, and a ``collect`` started after a crashed ``repro`` takes over where it stopped.

This module is the SLURM *backend* of the shared scheduler (:mod:`harness.dag.scheduler`, which
plans the stale DAG, propagates failures and records in DVC's order). :class:`SlurmBackend`:

* reads every job of the run with ONE ``squeue`` call per poll (:func:`harness.slurm.jobs.poll`),
  falling back to the job's own record file once the controller has forgotten it;
* retries by cause (:mod:`harness.slurm.retry`): a new job with more memory, more time, a node
  excluded, or unchanged, and re-points the stages below it (their pending jobs, which SLURM
  cancels or would cancel as ``DependencyNeverSatisfied``, are resubmitted against the new job);
* survives its own death: a submission token (``--comment``) is saved before each ``sbatch``,
  so a job whose id never reached the manifest is adopted, not submitted twice; and survives a
  restarting controller (calls that find it down are retried on the next poll).

A job that ends in a state its policy does not retry is reported with job id, state, exit code,
attempts and log path; its in-run descendants are cancelled and named, and it is never recorded,
so nothing from it enters the DVC cache.
"""

from __future__ import annotations

import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

from harness.dag import scheduler as core
from harness.dag.scheduler import (  # noqa: F401  (re-exported: the SLURM path's historical names)
    DEP_CANCELLED, LOST, PLANNED, RECORD_FAILED, SUBMITTED, CollectReport, plan_run, recordable, table,
)
from harness.dag.scheduler import short as _short
from harness.slurm import arrays, jobs, retry
from harness.dag.manifest import Attempt, RunManifest, RunPaths, StageRun, new_run_id, read_events, save
from harness.slurm.sbatch import JobSpec, array_args, render_array_script, render_script
from harness.slurm.settings import SlurmSettings
from harness.study import Resources

#: a stage whose last job ended in a retried state (or below one that did), waiting to be resubmitted
RETRY_PENDING = "RETRY_PENDING"
#: polls in a row a job must be missing from squeue before it counts as cancelled or lost
MISSES = 3
#: sbatch calls in flight at once while submitting one level of the DAG (they are I/O-bound)
SUBMIT_THREADS = 8


def _resources(stage: StageRun) -> Resources:
    return Resources.model_validate(stage.resources) if stage.resources else Resources()


def prepare_run(root: Path, targets: list[str] | None = None, jobs_limit: int = 0,
                resources: dict[str, Resources] | None = None, run_id: str | None = None,
                status: str = "repo") -> tuple[RunManifest, dict]:
    """Plan the stale DAG and give every stage its command, kind and resources; submits nothing.

    Kind and resources come from the profile the stage's own DVC address names (its pipeline's
    compiled ``dvc.resources.json``, :mod:`harness.dag.resources`), never from another profile's
    plan. ``resources`` overrides them by stage name (the address or its file-safe form).
    ``status``: how DVC's status is asked (:data:`harness.dag.scheduler.STATUS_SCOPES`)."""
    from harness.dag import resources as stage_resources

    root = Path(root).resolve()
    manifest, pipeline = plan_run(root, targets, jobs_limit, run_id or new_run_id("repro"), status=status)
    planned = stage_resources.for_addresses(root, manifest.order)
    for name in manifest.order:
        stage, entry = manifest.stages[name], planned[name]
        res = entry.resources
        if resources is not None:
            res = resources.get(name, resources.get(_short(name), res))
        stage.commands, stage.remove_before = pipeline[name].commands, pipeline[name].removable_outs
        stage.kind, stage.resources = entry.kind, res.model_dump(mode="json")
    return manifest, pipeline


def submit_run(root: Path, settings: SlurmSettings, targets: list[str] | None = None, jobs_limit: int = 0,
               resources: dict[str, Resources] | None = None, out: Callable[[str], None] = print,
               use_arrays: bool = True) -> tuple[RunManifest, RunPaths]:
    """Plan, write the manifest (every stage, its command, resources, array), submit every stage."""
    root = Path(root).resolve()
    manifest, _ = prepare_run(root, targets, jobs_limit, resources)
    paths = RunPaths(root, settings.runs_dir, manifest.run_id)
    if not manifest.order:
        out("nothing to do: every stage is up to date")
        return manifest, paths
    return submit_manifest(root, settings, manifest, paths, out=out, use_arrays=use_arrays)


def submit_manifest(root: Path, settings: SlurmSettings, manifest: RunManifest, paths: RunPaths,
                    out: Callable[[str], None] = print, use_arrays: bool = True) -> tuple[RunManifest, RunPaths]:
    """Group into arrays and submit a planned manifest (the benchmark calls this on a synthetic DAG)."""
    arrays.plan_groups(manifest, use_arrays)
    save(paths, manifest)
    t0 = time.perf_counter()
    try:
        submitted = Submitter(Path(root), settings, manifest, paths).submit_ready()
    except jobs.ControllerUnavailable as exc:
        out(f"[harness] the controller stopped answering mid-submission ({exc}); `harness collect "
            f"{manifest.run_id}` submits the rest")
        return manifest, paths
    except Exception:
        jobs.cancel(sorted({s.job_id.split("_")[0] for s in manifest.in_order() if s.job_id}))
        for s in manifest.in_order():
            s.state = DEP_CANCELLED if s.job_id else s.state
        save(paths, manifest)
        raise
    n_arrays = sum(1 for g in manifest.groups.values() if g.job_id)
    out(f"run {manifest.run_id}: submitted {submitted} stage(s) as {submitted - _in_arrays(manifest)} job(s) + "
        f"{n_arrays} array(s) in {time.perf_counter() - t0:.1f}s; manifest {paths.manifest.relative_to(root)}")
    return manifest, paths


def _in_arrays(manifest: RunManifest) -> int:
    return sum(len(g.members) for g in manifest.groups.values() if g.job_id)


class Submitter:
    """Submits every stage that is ready: not yet submitted, and every in-run upstream either has
    a job or has completed. Arrays of the initial plan go as one ``sbatch --array``; retries and
    stages whose array could not be kept whole go as jobs of their own."""

    def __init__(self, root: Path, settings: SlurmSettings, manifest: RunManifest, paths: RunPaths):
        self.root, self.settings, self.m, self.paths = root, settings, manifest, paths

    # -- what may be submitted ----------------------------------------------------------------
    def _waiting(self, s: StageRun) -> bool:
        return not s.job_id and s.state in (PLANNED, RETRY_PENDING) and not s.reason.startswith(core.NOT_THEIR_FAULT)

    def _upstream_ready(self, s: StageRun) -> bool:
        for up in s.after:
            u = self.m.stages[up]
            if u.state in core.GONE and u.state != RETRY_PENDING:
                return False
            if not (u.job_id or u.state == core.OK):
                return False
        return True

    def _units(self) -> list[list[str]]:
        """Ready units: a whole planned array (all members waiting) or one stage."""
        units, seen = [], set()
        for s in self.m.in_order():
            if s.name in seen or not self._waiting(s) or not self._upstream_ready(s):
                continue
            group = self.m.groups.get(s.group) if s.group else None
            if group and not group.job_id and s.state == PLANNED:
                members = [self.m.stages[n] for n in group.members]
                if all(self._waiting(x) and x.state == PLANNED and self._upstream_ready(x) for x in members) \
                        and self._corr_ok(group):
                    units.append(list(group.members))
                    seen.update(group.members)
                    continue
                if not all(self._upstream_ready(x) for x in members):
                    continue  # wait for the rest of the array's upstream
            units.append([s.name])
            seen.add(s.name)
        return units

    def _corr_ok(self, group) -> bool:
        """An aftercorr array needs its upstream array submitted whole and still current."""
        if group.mode != "aftercorr":
            return True
        up = self.m.groups.get(group.upstream)
        if not up or not up.job_id:
            return False
        return all(self.m.stages[n].job_id == f"{up.job_id}_{self.m.stages[n].task}" for n in up.members)

    # -- dependencies -------------------------------------------------------------------------
    def _dependency(self, names: list[str], skip: str = "") -> str:
        ups: list[str] = []
        for name in names:
            for up in self.m.stages[name].after:
                if up not in ups and up != skip:
                    ups.append(up)
        ids = [self.m.stages[u].job_id for u in ups if self.m.stages[u].state != core.OK]
        # a whole, unretried upstream array is one token
        for g in self.m.groups.values():
            if not g.job_id:
                continue
            tasks = {f"{g.job_id}_{self.m.stages[n].task}" for n in g.members}
            if tasks <= set(ids) and all(self.m.stages[n].job_id == f"{g.job_id}_{self.m.stages[n].task}"
                                          for n in g.members):
                ids = [i for i in ids if i not in tasks] + [g.job_id]
        return f"afterok:{':'.join(ids)}" if ids else ""

    def _job(self, name: str, in_array: bool = False, lane: str | None = None) -> JobSpec:
        s = self.m.stages[name]
        short = _short(name)
        return JobSpec(name=short, commands=s.commands, resources=_resources(s), workdir=self.root,
                       log_path=self.paths.log(short), record_path=self.paths.record(short),
                       remove_before=s.remove_before, comment=s.token, mem_mb=s.mem_mb, time_min=s.time_min,
                       exclude=list(s.exclude), in_array=in_array, lane=lane)

    # -- submission ---------------------------------------------------------------------------
    def _submit_single(self, name: str) -> None:
        s = self.m.stages[name]
        limit = self.m.jobs_limit
        lane = (f"{self.m.run_id}.lane{self.m.order.index(name) % limit}"
                if 0 < limit < len(self.m.order) and not s.attempts else None)
        job = self._job(name, lane=lane)
        dep = self._dependency([name])
        job.after_ok = dep.removeprefix("afterok:").split(":") if dep else []
        script = self.paths.script(job.name)
        _write_script(script, render_script(job, self.settings))
        job.log_path.parent.mkdir(parents=True, exist_ok=True)
        job.record_path.parent.mkdir(parents=True, exist_ok=True)
        from harness.slurm.sbatch import sbatch_args

        job_id = jobs.sbatch(sbatch_args(job, self.settings), script)
        self._started(s, job_id, job)

    def _submit_array(self, names: list[str]) -> None:
        first = self.m.stages[names[0]]
        group = self.m.groups[first.group]
        scripts = {}
        for name in names:
            job = self._job(name, in_array=True)
            _write_script(self.paths.script(job.name), render_script(job, self.settings))
            job.record_path.parent.mkdir(parents=True, exist_ok=True)
            job.log_path.parent.mkdir(parents=True, exist_ok=True)
            scripts[self.m.stages[name].task] = self.paths.script(job.name)
        if group.mode == "aftercorr":
            rest = self._dependency([names[0]], skip=arrays.corr_upstream(self.m, names[0]))
            dep = ",".join(d for d in (f"aftercorr:{self.m.groups[group.upstream].job_id}", rest) if d)
        else:
            dep = self._dependency(names)
        array_script = self.paths.script(f"array-{first.group}")
        _write_script(array_script, render_array_script(scripts))
        args = array_args(self._job(names[0]), self.settings, sorted(scripts), self.m.jobs_limit,
                          name=f"{first.kind or 'stage'}[{len(names)}]", comment=group.token,
                          output=self.paths.log(f"array-{first.group}_%a"), dependency=dep)
        array_id = jobs.sbatch(args, array_script)
        group.job_id = array_id
        for name in names:
            s = self.m.stages[name]
            self._started(s, f"{array_id}_{s.task}", self._job(name))

    def _started(self, s: StageRun, job_id: str, job: JobSpec) -> None:
        s.job_id, s.state, s.noticed_at = job_id, SUBMITTED, 0.0
        s.attempts.append(Attempt(job_id=job_id, mem_mb=job.mem, time_min=job.minutes, exclude=list(job.exclude),
                                  submitted_at=time.time()))

    def submit_ready(self) -> int:
        """Submit level by level until nothing more is ready; returns how many stages were submitted."""
        total = 0
        while True:
            units = self._units()
            if not units:
                return total
            for unit in units:  # tokens first: a crash after sbatch can then be adopted, never doubled
                first = self.m.stages[unit[0]]
                if len(unit) > 1:
                    group = self.m.groups[first.group]
                    group.token = f"{self.m.run_id}:@{first.group}"
                    for n in unit:
                        self.m.stages[n].token = group.token
                else:
                    first.token = f"{self.m.run_id}:{_short(first.name)}:{len(first.attempts) + 1}"
                    if first.group and not self.m.groups[first.group].job_id:
                        first.group, first.task = "", None  # its array could not be kept whole
            save(self.paths, self.m)
            errors: list[BaseException] = []

            def one(unit: list[str]) -> None:
                try:
                    self._submit_array(unit) if len(unit) > 1 else self._submit_single(unit[0])
                except BaseException as exc:  # noqa: BLE001 - collected, re-raised below
                    errors.append(exc)

            with ThreadPoolExecutor(SUBMIT_THREADS) as pool:
                list(pool.map(one, units))
            total += sum(len(u) for u in units if self.m.stages[u[0]].job_id)
            save(self.paths, self.m)
            if errors:
                raise errors[0]

    def _adopt(self, polled: dict[str, jobs.Polled] | None = None) -> bool:
        """Jobs submitted with a saved token whose id never reached the manifest (a crash)."""
        pending = [s for s in self.m.in_order() if s.token and not s.job_id]
        if not pending:
            return False
        polled = jobs.poll(f"{self.m.run_id}:") if polled is None else polled
        if not polled:
            return False
        by_comment: dict[str, list[str]] = {}
        for job_id, p in polled.items():
            by_comment.setdefault(p.comment, []).append(job_id)
        adopted = False
        for s in pending:
            ids = by_comment.get(s.token, [])
            if s.token.split(":")[1].startswith("@"):
                want = [i for i in ids if i.endswith(f"_{s.task}")]
                if want:
                    group = self.m.groups[s.group]
                    group.job_id = want[0].rsplit("_", 1)[0]
                    self._started(s, want[0], self._job(s.name))
                    adopted = True
            elif ids:
                self._started(s, sorted(ids)[-1], self._job(s.name))
                adopted = True
        return adopted


def _write_script(path: Path, text: str) -> None:
    """Write-then-rename (a job never reads a half-written script); cheaper than harness.io's
    directory-based atomic write, which matters for the 1,000 scripts of a large run."""
    import os

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.chmod(0o755)
    os.replace(tmp, path)


def _elapsed_from_events(stage: StageRun, events: list[dict], running: bool, fallback: float) -> float:
    starts = [e["t"] for e in events if e["event"] == "start"]
    if not starts:
        return fallback
    ends = [e["t"] for e in events if e["event"] == "end"]
    return round((time.time() if running or not ends else ends[-1]) - starts[-1], 1)


class SlurmBackend:
    """Stages are SLURM jobs or array tasks; SLURM enforces the DAG; this retries and re-points."""

    name = "slurm"

    def __init__(self, root: Path | None = None, settings: SlurmSettings | None = None):
        self.root = Path(root) if root else None
        self.settings = settings or SlurmSettings()
        self.controller_down_since: float | None = None
        #: job id -> consecutive polls that did not list it
        self._misses: dict[str, int] = {}

    @property
    def show_table(self) -> bool:
        return True

    def refresh(self, manifest: RunManifest, paths: RunPaths) -> None:
        root = self.root or Path(manifest.root)
        sub = Submitter(root, self.settings, manifest, paths)
        polled = jobs.poll(f"{manifest.run_id}:")
        if polled is None:  # controller restarting: keep every state, try again next poll
            self.controller_down_since = self.controller_down_since or time.time()
            return
        self.controller_down_since = None
        if sub._adopt(polled):
            save(paths, manifest)
        victims: list[str] = self._duplicates(manifest, polled)
        for stage in manifest.in_order():
            if (stage.recorded or not stage.job_id or stage.reason.startswith(core.NOT_THEIR_FAULT)
                    or stage.state in (RECORD_FAILED, LOST) or (stage.attempts and stage.attempts[-1].action)):
                continue
            info = polled.get(stage.job_id)
            events = read_events(paths.record(_short(stage.name)))
            if info is None:
                info = self._missing(stage, events)
                if info is None:
                    continue
            else:
                self._misses.pop(stage.job_id, None)
            info = jobs.inject(info, _short(stage.name), len(stage.attempts))
            att = stage.attempts[-1] if stage.attempts else None
            stage.state, stage.reason, stage.restarts = info.state, info.reason, info.restarts
            stage.exit_code = info.exit_code
            stage.elapsed_s = _elapsed_from_events(stage, events, not info.terminal, stage.elapsed_s)
            if att is not None:
                att.state, att.exit_code, att.injected = info.state, info.exit_code, info.injected
                att.nodes = info.nodes if info.started else att.nodes
            if info.terminal and not stage.noticed_at:
                stage.noticed_at = time.time()
            if info.terminal and info.state != core.OK:
                victims += self._ended(manifest, stage, info)
        save(paths, manifest)
        if victims:
            jobs.cancel(victims)
        try:
            sub.submit_ready()
        except jobs.ControllerUnavailable:
            pass  # next poll
        except jobs.SlurmError as exc:
            for s in manifest.in_order():
                if s.token and not s.job_id and s.state in (PLANNED, RETRY_PENDING):
                    s.state, s.reason = core.FAILED, f"sbatch refused the resubmission: {exc}"
                    if s.attempts:
                        s.attempts[-1].action = s.attempts[-1].action or "final"
            save(paths, manifest)

    @staticmethod
    def _duplicates(manifest: RunManifest, polled: dict[str, jobs.Polled]) -> list[str]:
        """Jobs of this run that no stage knows: an ``sbatch`` that outlived a killed collector
        landed after the next collector had already submitted the same stage again. They are
        cancelled before they run twice, and recorded as attempts so the table misses none."""
        known = {a.job_id for s in manifest.in_order() for a in s.attempts}
        by_token = {s.token: s for s in manifest.in_order() if s.token and not s.token.split(":")[1].startswith("@")}
        extra: list[str] = []
        for job_id, p in polled.items():
            if job_id in known:
                continue
            parts = p.comment.split(":")
            if len(parts) < 2:
                continue
            if parts[1].startswith("@"):  # an array: task i is the member with task index i
                if "_" not in job_id:
                    continue  # the array's own record, listed beside its tasks
                group = manifest.groups.get(parts[1][1:])
                task = job_id.rsplit("_", 1)[-1]
                owner = next((manifest.stages[n] for n in (group.members if group else [])
                              if str(manifest.stages[n].task) == task), None)
            else:
                owner = by_token.get(p.comment) or manifest.stages.get(
                    next((n for n in manifest.order if _short(n) == parts[1]), ""))
            if owner is None or (owner.job_id == job_id):
                continue
            extra.append(job_id)
            # recorded before the stage's current attempt, so retry counting and the table stay right
            owner.attempts.insert(max(0, len(owner.attempts) - 1), Attempt(
                job_id=job_id, state=p.state, cause="duplicate submission", nodes=p.nodes,
                action="cancelled (duplicate)"))
        return extra

    def _missing(self, stage: StageRun, events: list[dict]) -> jobs.Polled | None:
        """The controller answered but does not list the job. Three cases, told apart by the
        job's own record (events since this attempt was submitted): it ended (forgotten after
        ``MinJobAge``: the record's exit code decides); it never started (a pending array task
        that was ``scancel``-ed leaves no record at all in the controller: CANCELLED); it started
        and has no end (the controller lost it: LOST, resubmitted unchanged). A job must be
        missing from :data:`MISSES` polls in a row before the last two are believed."""
        since = stage.attempts[-1].submitted_at - 1 if stage.attempts else 0
        mine = [e for e in events if e.get("t", 0) >= since]
        if mine and mine[-1]["event"] == "end":
            rc = mine[-1]["rc"]
            return jobs.Polled(stage.job_id, core.OK if rc == 0 else core.FAILED, "forgotten by the controller; "
                               "state from the job's record", (rc or 0) << 8, 0, "", None, None, "")
        self._misses[stage.job_id] = self._misses.get(stage.job_id, 0) + 1
        if self._misses[stage.job_id] < MISSES:
            return None
        if not any(e["event"] == "start" for e in mine):
            return jobs.Polled(stage.job_id, "CANCELLED", "vanished before it started (cancelled while pending)",
                               0, 0, "", None, None, "")
        return jobs.Polled(stage.job_id, LOST, "the controller lost the running job (no end in its record)",
                           0, 0, "", None, None, "")

    def _ended(self, manifest: RunManifest, stage: StageRun, info: jobs.Polled) -> list[str]:
        """A job ended badly: retry it (and re-point what waits for it), or leave it final."""
        att = stage.attempts[-1]
        ups = [manifest.stages[u] for u in stage.after]
        upstream_retried = any(u.state == RETRY_PENDING or not u.job_id for u in ups)
        if info.state == "CANCELLED" and not info.started and (info.reason == "DependencyNeverSatisfied"
                                                                or upstream_retried):
            if any(u.state in core.GONE and u.state != RETRY_PENDING for u in ups):
                return []  # an upstream failed for good: the core cancels and names this stage
            self._requeue(stage, att, retry.UPSTREAM, "waits for a retried upstream stage")
            return []
        previous: dict[str, int] = {}
        for a in stage.attempts[:-1]:
            if a.action == "resubmitted" and a.cause != retry.UPSTREAM:
                previous[a.cause] = previous.get(a.cause, 0) + 1
        decision = retry.decide(info.state, _resources(stage), previous, att.mem_mb, att.time_min, att.exclude, info.nodes)
        att.cause = decision.cause
        if not decision.retry:
            att.action = "final"
            stage.reason = f"{info.reason}; {decision.why}" if info.reason and info.reason != "None" else decision.why
            return []
        stage.mem_mb, stage.time_min, stage.exclude = decision.mem_mb, decision.time_min, decision.exclude
        self._requeue(stage, att, decision.cause, decision.why)
        victims = []
        for name in manifest.descendants(stage.name):  # their jobs wait for the old one: re-point them
            d = manifest.stages[name]
            if d.recorded or not d.job_id or d.reason.startswith(core.NOT_THEIR_FAULT):
                continue
            if d.attempts and not d.attempts[-1].action:
                victims.append(d.job_id)
                self._requeue(d, d.attempts[-1], retry.UPSTREAM, f"upstream {stage.name} retried")
        return victims

    @staticmethod
    def _requeue(stage: StageRun, att: Attempt, cause: str, why: str) -> None:
        att.cause = att.cause or cause
        att.action = "resubmitted"
        stage.job_id, stage.token, stage.state, stage.reason = "", "", RETRY_PENDING, why
        stage.exit_code = None

    def cancel(self, manifest: RunManifest, names: list[str]) -> None:
        ids = [manifest.stages[n].job_id for n in names if manifest.stages[n].job_id]
        jobs.cancel(ids)
        for n in names:
            s = manifest.stages[n]
            if s.attempts and not s.attempts[-1].action:
                s.attempts[-1].action = "final"

    def describe_failure(self, manifest: RunManifest, paths: RunPaths, name: str) -> str:
        stage = manifest.stages[name]
        tries = f"; {len(stage.attempts)} attempt(s)" if len(stage.attempts) > 1 else ""
        return (f"FAILED {name}: job {stage.job_id} {stage.state} exit code {stage.exit_code} "
                f"reason {stage.reason or '-'}{tries}; log {paths.log(_short(name))}")


def _backend(root: Path, manifest: RunManifest, settings: SlurmSettings | None) -> SlurmBackend:
    return SlurmBackend(root, settings)


def collect(root: Path, manifest: RunManifest, paths: RunPaths, out: Callable[[str], None] = print,
            settings: SlurmSettings | None = None) -> CollectReport:
    """One pass: refresh states, retry, cancel dependents of failures, record what can be recorded."""
    return core.collect(root, manifest, paths, _backend(root, manifest, settings))


def wait(root: Path, manifest: RunManifest, paths: RunPaths, poll_s: float,
         out: Callable[[str], None] = print, settings: SlurmSettings | None = None) -> CollectReport:
    """Collect until every stage is terminal and recorded; print the table when it changes."""
    report = core.wait(root, manifest, paths, _backend(root, manifest, settings), poll_s, out)
    retried = [s for s in manifest.in_order() if len(s.attempts) > 1]
    if retried:
        out(core.attempts_table(manifest))
    return report


def print_err(text: str) -> None:
    print(text, file=sys.stderr, flush=True)
