"""``harness submit --dry-run`` / ``harness repro --dry-run``: what a run would ask SLURM for, and
what it would cost, before anything is queued.

Why: a profile at its designed sizes is hundreds of GPU jobs; a wrong resource (the wrong
profile's, or the defaults) costs hours of queue time before anyone notices. The dry run plans
exactly as ``harness submit`` does (DVC's graph and status, read only; each stage's kind and
resources from its own pipeline's compiled ``dvc.resources.json``; the same array grouping and
dependency rules, by calling the submitter's own code with placeholder job ids) and prints, per
stage, the ``sbatch`` argv it would run (or the array it joins) and its upstream edges, then the
totals: jobs, arrays, array tasks, GPU-hours and CPU-hours requested (time limit x count), per
study and overall. Nothing is submitted, no manifest, script or log is written, DVC's lock and
cache are not touched.

Placeholders: a job id reads ``<stage>`` (a single job) or ``<a3>`` / ``<a3>_2`` (an array, one of
its tasks); the run id in lane names and log paths reads ``dry-run``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from harness.dag import resources as stage_resources
from harness.dag.manifest import RunPaths
from harness.slurm import arrays
from harness.slurm.sbatch import array_args, sbatch_args
from harness.slurm.settings import SlurmSettings

RUN_ID = "dry-run"
#: the study column of stages no spec planned (check-params)
NO_STUDY = "(harness)"


def _name(address: str) -> str:
    return stage_resources.split_address(address)[1]


def plan(root: Path, settings: SlurmSettings, targets: list[str] | None = None, jobs_limit: int = 0,
         status: str = "pipeline", use_arrays: bool = True, runner: str = "slurm") -> dict[str, Any]:
    """The dry run's document: ``{"stages": [...], "totals": {...}}`` (see :func:`totals`).

    ``status``: ``pipeline`` asks DVC about the targeted pipeline's stages (what is stale now),
    ``everything`` counts every stage of the targets as stale (the cost of a whole profile),
    ``repo`` asks about the whole repo as a real run does (slower, same answer)."""
    from harness.slurm.scheduler import Submitter, prepare_run

    root = Path(root).resolve()
    manifest, _ = prepare_run(root, targets, jobs_limit, run_id=RUN_ID, status=status)
    planned = stage_resources.for_addresses(root, manifest.order)
    arrays.plan_groups(manifest, use_arrays and runner == "slurm")
    paths = RunPaths(root, settings.runs_dir, RUN_ID)
    sub = Submitter(root, settings, manifest, paths)
    rows: dict[str, dict[str, Any]] = {}
    limit = manifest.jobs_limit
    for s in manifest.in_order():
        if s.name in rows:
            continue
        res = _res(s.resources)
        group = manifest.groups.get(s.group) if s.group else None
        if runner != "slurm":
            rows[s.name] = _row(s, planned, res, None, None)
            continue
        if group is not None:
            names = list(group.members)
            if group.mode == "aftercorr":
                rest = sub._dependency([names[0]], skip=arrays.corr_upstream(manifest, names[0]))
                dep = ",".join(d for d in (f"aftercorr:{manifest.groups[group.upstream].job_id}", rest) if d)
            else:
                dep = sub._dependency(names)
            tasks = sorted(manifest.stages[n].task for n in names)
            args = array_args(sub._job(names[0]), settings, tasks, limit, name=f"{s.kind or 'stage'}[{len(names)}]",
                              comment=f"{RUN_ID}:@{s.group}", output=paths.log(f"array-{s.group}_%a"),
                              dependency=dep)
            group.job_id = f"<{s.group}>"
            for n in names:
                m = manifest.stages[n]
                m.job_id = f"{group.job_id}_{m.task}"
                array = {"id": s.group, "task": m.task, "tasks": len(names), "mode": group.mode,
                         "first": n == names[0]}
                rows[n] = _row(m, planned, _res(m.resources), array, args)
            continue
        lane = f"{RUN_ID}.lane{manifest.order.index(s.name) % limit}" if 0 < limit < len(manifest.order) else None
        job = sub._job(s.name, lane=lane)
        dep = sub._dependency([s.name])
        job.after_ok = dep.removeprefix("afterok:").split(":") if dep else []
        rows[s.name] = _row(s, planned, res, None, sbatch_args(job, settings))
        s.job_id = f"<{_name(s.name)}>"
    stages = [rows[name] for name in manifest.order]
    return {"runner": runner, "targets": targets or ["dvc.yaml"], "status": status,
            "stages": stages, "totals": totals(stages)}


def _res(data: dict):
    from harness.study import Resources

    return Resources.model_validate(data) if data else Resources()


def _row(s, planned, res, array, sbatch) -> dict[str, Any]:
    entry = planned.get(s.name, stage_resources.UNPLANNED)
    return {"stage": _name(s.name), "address": s.name, "study": entry.study or NO_STUDY, "kind": s.kind,
            "gpus": res.gpus, "cpus": res.cpus, "mem_gb": res.mem_gb, "time_min": res.time_min,
            "array": array, "after": [_name(u) for u in s.after], "sbatch": sbatch}


def _hours(n: int, minutes: int) -> float:
    return n * minutes / 60.0


def totals(stages: list[dict[str, Any]]) -> dict[str, Any]:
    """Per study and overall: stages, single jobs, arrays (sbatch calls), array tasks, sbatch calls,
    GPUs/CPUs x time limit in hours. An array is counted in every study it has a member of, once
    overall."""

    def empty() -> dict[str, Any]:
        return {"stages": 0, "jobs": 0, "arrays": 0, "array_tasks": 0, "sbatch_calls": 0, "gpu_stages": 0,
                "gpu_hours": 0.0, "cpu_hours": 0.0}

    overall, by_study = empty(), {}
    seen_overall: set[str] = set()
    seen_study: set[tuple[str, str]] = set()
    for row in stages:
        study = by_study.setdefault(row["study"], empty())
        for t in (overall, study):
            t["stages"] += 1
            t["gpu_hours"] += _hours(row["gpus"], row["time_min"])
            t["cpu_hours"] += _hours(row["cpus"], row["time_min"])
            t["gpu_stages"] += 1 if row["gpus"] else 0
        if row["array"] is None:
            for t in (overall, study):
                t["jobs"] += 1
        else:
            gid = row["array"]["id"]
            for t in (overall, study):
                t["array_tasks"] += 1
            if gid not in seen_overall:
                seen_overall.add(gid)
                overall["arrays"] += 1
            if (row["study"], gid) not in seen_study:
                seen_study.add((row["study"], gid))
                study["arrays"] += 1
    for t in (overall, *by_study.values()):
        t["sbatch_calls"] = t["jobs"] + t["arrays"]
        t["gpu_hours"] = round(t["gpu_hours"], 2)
        t["cpu_hours"] = round(t["cpu_hours"], 2)
    return {"overall": overall, "by_study": dict(sorted(by_study.items()))}


def _mem(gb: float) -> str:
    return f"{gb:g}G"


def render_text(doc: dict[str, Any]) -> str:
    """Per stage: resources, upstream edges, and the sbatch argv (or the array it joins); then totals."""
    import shlex

    out = []
    slurm = doc["runner"] == "slurm"
    for row in doc["stages"]:
        after = ", ".join(row["after"]) if row["after"] else "-"
        out.append(f"{row['stage']}  [{row['study']}/{row['kind'] or '-'}] gpus={row['gpus']} cpus={row['cpus']} "
                   f"mem={_mem(row['mem_gb'])} time={row['time_min']}m  after: {after}")
        array = row["array"]
        if array is not None:
            if array["first"]:
                out.append(f"    sbatch {shlex.join(row['sbatch'])}")
            out.append(f"    joins array {array['id']} as task {array['task']} ({array['tasks']} tasks, {array['mode']})")
        elif slurm:
            out.append(f"    sbatch {shlex.join(row['sbatch'])}")
    out.append("")
    out.append(render_totals(doc))
    return "\n".join(out)


def render_totals(doc: dict[str, Any]) -> str:
    t = doc["totals"]
    head = ("study", "stages", "jobs", "arrays", "tasks", "sbatch", "gpu stages", "GPU-h", "CPU-h")
    rows = [head]
    for name, v in [*t["by_study"].items(), ("total", t["overall"])]:
        rows.append((name, str(v["stages"]), str(v["jobs"]), str(v["arrays"]), str(v["array_tasks"]),
                     str(v["sbatch_calls"]), str(v["gpu_stages"]), f"{v['gpu_hours']:,.1f}", f"{v['cpu_hours']:,.1f}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in rows]
    what = "requested (time limit x count; an array counted in each study it has tasks of)"
    nothing = "" if doc["stages"] else "nothing to do: every stage is up to date\n"
    return (f"{nothing}dry run ({doc['runner']}, nothing submitted): {what}\n" + "\n".join(lines))


def main(root: Path, settings: SlurmSettings, targets: list[str] | None, jobs_limit: int, as_json: bool,
         everything: bool, runner: str = "slurm", out: Callable[[str], None] = print) -> int:
    doc = plan(root, settings, targets, jobs_limit, status="everything" if everything else "pipeline",
               runner=runner)
    out(json.dumps(doc, indent=1) if as_json else render_text(doc))
    return 0
