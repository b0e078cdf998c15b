"""Retry by cause: what the next submission of a job that ended badly asks for, or why none.

Why a module of its own, pure and cluster-free: the decision is the policy a researcher declares
in the spec (:class:`harness.study.RetryPolicy`) applied to the job's end state; keeping it apart
from sbatch/squeue makes every branch testable without a cluster and readable in one place.

| end state | next submission |
| --- | --- |
| OUT_OF_MEMORY | memory x ``mem_factor``, at most ``max_mem_gb`` |
| TIMEOUT | time x ``time_factor``, at most ``max_time_min``; the stage resumes from its checkpoint |
| NODE_FAIL, BOOT_FAIL | the same, with the node(s) it ran on excluded |
| PREEMPTED | the same; the stage resumes from its checkpoint |
| FAILED (non-zero exit, signal) | none, unless ``failed > 0`` |
| CANCELLED (not by the harness) | none, unless ``cancelled > 0`` |
| LOST (the controller lost a running job) | the same, counted with ``preempted`` |

Each cause has its own count. A retry that could not ask for more than the last attempt did
(the memory or time cap already reached) is refused: it would only fail the same way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from harness.study import Resources, RetryPolicy

#: end state -> the RetryPolicy field that counts its retries
CAUSE_FIELD = {
    "OUT_OF_MEMORY": "out_of_memory",
    "TIMEOUT": "timeout",
    "NODE_FAIL": "node_fail",
    "BOOT_FAIL": "node_fail",
    "PREEMPTED": "preempted",
    "FAILED": "failed",
    "CANCELLED": "cancelled",
    #: the controller no longer lists a job that started and never ended (its state was lost)
    "LOST": "preempted",
}
#: cause recorded for a job that never started because an upstream stage was being retried
UPSTREAM = "upstream retried"


@dataclass
class Decision:
    retry: bool
    cause: str
    mem_mb: int
    time_min: int
    exclude: list[str] = field(default_factory=list)
    #: one line for the table / the log: what changes, or why there is no retry
    why: str = ""


def base_mem_mb(res: Resources) -> int:
    return math.ceil(res.mem_gb * 1024)


def decide(state: str, res: Resources, previous: dict[str, int], mem_mb: int, time_min: int,
           exclude: list[str], nodes: str) -> Decision:
    """The next submission after a job ended in ``state``.

    ``previous``: retries already spent per cause (this stage); ``mem_mb``/``time_min``/``exclude``:
    what the ended attempt asked for; ``nodes``: where it ran (hostlist, as SLURM prints it).
    """
    policy: RetryPolicy = res.retry
    mem_mb = mem_mb or base_mem_mb(res)
    time_min = time_min or res.time_min
    key = CAUSE_FIELD.get(state)
    keep = Decision(False, state, mem_mb, time_min, list(exclude))
    if key is None:
        keep.why = f"{state}: never retried"
        return keep
    allowed, used = getattr(policy, key), previous.get(state, 0)
    if used >= allowed:
        keep.why = (f"{state}: no retry (spec resources.retry.{key} = {allowed})" if allowed == 0
                    else f"{state}: retries spent ({used} of {allowed})")
        return keep
    out = Decision(True, state, mem_mb, time_min, list(exclude))
    if key == "out_of_memory":
        cap = math.ceil((policy.max_mem_gb or 4 * res.mem_gb) * 1024)
        out.mem_mb = min(cap, math.ceil(mem_mb * policy.mem_factor))
        if out.mem_mb <= mem_mb:
            return Decision(False, state, mem_mb, time_min, list(exclude), f"{state}: memory cap {cap} MiB reached")
        out.why = f"memory {mem_mb} -> {out.mem_mb} MiB"
    elif key == "timeout":
        cap = policy.max_time_min or 4 * res.time_min
        out.time_min = min(cap, math.ceil(time_min * policy.time_factor))
        if out.time_min <= time_min:
            return Decision(False, state, mem_mb, time_min, list(exclude), f"{state}: time cap {cap} min reached")
        out.why = f"time {time_min} -> {out.time_min} min, resume from checkpoint"
    elif key == "node_fail":
        bad = [n for n in nodes.split(",") if n and n not in exclude and n not in ("(null)", "None")]
        out.exclude = list(exclude) + bad
        out.why = f"excluding node(s) {','.join(out.exclude) or '-'}"
    elif key == "preempted":
        out.why = "requeued unchanged, resume from checkpoint"
    else:
        out.why = f"retry {used + 1} of {allowed} (spec resources.retry.{key})"
    return out
