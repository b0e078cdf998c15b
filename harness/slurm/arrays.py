"""Which stages of a run go into one ``sbatch --array``, with dependencies that keep the DAG exact.

Why arrays: sites cap jobs per user and ask for arrays; one array is one submission and one
pending record however many stages it holds, so a 1,000-stage sweep submits in seconds. Two
shapes keep every edge of DVC's graph:

* ``afterok`` arrays: stages of one kind, with the same resources and exactly the same in-run
  upstream set (a sweep's training runs below one data stage, a fan-out). Every task waits for
  the whole set, which is what each member asks for, no more.
* ``aftercorr`` arrays: stages of one kind and resources that each wait for exactly one task of
  one earlier array (distinct tasks), plus the same set of other stages (level k of N parallel
  chains). Task i is given the index of its upstream task and waits for it alone
  (``--dependency=aftercorr:<array>``) and for the shared rest (``afterok``).

Everything else is a job of its own. Grouping is by depth-consistent keys, so an array never
waits for one of its own members and arrays can be submitted level by level.
"""

from __future__ import annotations

import json

from harness.dag.manifest import ArrayGroup, RunManifest

#: below this many members a stage is submitted as a plain job (an array of one buys nothing)
MIN_ARRAY = 2


def _res_key(resources: dict) -> str:
    return json.dumps(resources, sort_keys=True)


def plan_groups(manifest: RunManifest, use_arrays: bool = True) -> None:
    """Set ``group``/``task`` on the manifest's stages and fill ``manifest.groups``.

    Reads each stage's ``kind``, ``resources`` and ``after`` (already in the manifest).
    """
    manifest.groups.clear()
    for s in manifest.in_order():
        s.group, s.task = "", None
    if not use_arrays:
        return
    by_key: dict[tuple, list[str]] = {}
    for s in manifest.in_order():
        by_key.setdefault((s.kind, _res_key(s.resources), tuple(sorted(s.after))), []).append(s.name)
    n = 0
    for members in by_key.values():
        if len(members) >= MIN_ARRAY:
            name = f"a{n}"
            n += 1
            manifest.groups[name] = ArrayGroup(members=members)
            for i, member in enumerate(members):
                manifest.stages[member].group, manifest.stages[member].task = name, i
    # parallel chains: singles waiting for one task each of the same array -> aftercorr arrays,
    # created in plan order so a chain's next level finds its previous level already grouped
    changed = True
    while changed:
        changed = False
        corr: dict[tuple, list[str]] = {}
        for s in manifest.in_order():
            grouped = [u for u in s.after if manifest.stages[u].group]
            if s.group or len(grouped) != 1:
                continue
            up = manifest.stages[grouped[0]]
            rest = tuple(sorted(u for u in s.after if u != up.name))
            corr.setdefault((s.kind, _res_key(s.resources), up.group, rest), []).append(s.name)
        for (_, _, up_group, _), members in corr.items():
            tasks = [manifest.stages[corr_upstream(manifest, m)].task for m in members]
            if len(members) < MIN_ARRAY or len(set(tasks)) != len(tasks):
                continue
            name = f"a{n}"
            n += 1
            manifest.groups[name] = ArrayGroup(members=members, mode="aftercorr", upstream=up_group)
            for member, task in zip(members, tasks):
                manifest.stages[member].group, manifest.stages[member].task = name, task
            changed = True


def depth(manifest: RunManifest) -> dict[str, int]:
    """Longest in-run path from a root to each stage (roots are 0)."""
    out: dict[str, int] = {}
    for s in manifest.in_order():  # topological
        out[s.name] = 1 + max((out[u] for u in s.after), default=-1)
    return out


def corr_upstream(manifest: RunManifest, name: str) -> str:
    """The one upstream of an ``aftercorr`` member that belongs to an array (its task i)."""
    return next(u for u in manifest.stages[name].after if manifest.stages[u].group)
