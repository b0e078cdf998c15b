"""Talking to SLURM: submit (sbatch), query (scontrol show job), cancel (scancel), tail logs.

Why ``scontrol show job`` and not ``sacct``: clusters and CI boxes without slurmdbd have no
accounting, and scontrol answers from the controller's memory (kept ``MinJobAge`` seconds after
a job ends). For anything older the job's own record file (written by the batch script, see
:mod:`harness.slurm.sbatch`) is the fallback.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from harness.io import write_text
from harness.slurm.sbatch import JobSpec, render_script, sbatch_args
from harness.slurm.settings import SlurmSettings

OK = "COMPLETED"
#: states after which a job never runs again; all but COMPLETED are failures
FAILED_STATES = frozenset({
    "FAILED", "TIMEOUT", "OUT_OF_MEMORY", "PREEMPTED", "NODE_FAIL", "CANCELLED", "BOOT_FAIL", "DEADLINE",
})
TERMINAL = FAILED_STATES | {OK}
_KEY = re.compile(r" (?=[A-Za-z][A-Za-z0-9_:/]*=)")


class SlurmError(RuntimeError):
    """sbatch/scontrol refused; the message carries SLURM's own words."""


@dataclass
class JobInfo:
    job_id: str
    state: str
    reason: str = ""
    exit_code: int | None = None
    #: signal that ended the job (``ExitCode=0:9`` means killed by SIGKILL)
    signal: int = 0
    restarts: int = 0
    start: datetime | None = None
    end: datetime | None = None
    run_time_s: int = 0
    log_path: str = ""

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL

    @property
    def failed(self) -> bool:
        return self.state in FAILED_STATES


class ControllerUnavailable(SlurmError):
    """The controller did not answer (restarting, overloaded): try again later, nothing changed."""


#: what SLURM's clients print when the controller is down or busy (the call may be retried)
TRANSIENT = ("Unable to contact slurm controller", "Socket timed out", "Zero Bytes were transmitted",
             "Connection refused", "Transport endpoint", "temporarily unable", "Resource temporarily unavailable",
             "Communication connection failure", "Slurm backup controller in standby mode")


def _run(argv: list[str], check: bool = True) -> subprocess.CompletedProcess:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired as exc:
        raise ControllerUnavailable(f"{argv[0]} did not answer within 120 s") from exc
    if check and proc.returncode != 0:
        message = f"{argv[0]} failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}"
        if any(t.lower() in message.lower() for t in TRANSIENT):
            raise ControllerUnavailable(message)
        raise SlurmError(message)
    return proc


def sbatch(args: list[str], script_path: Path) -> str:
    """``sbatch --parsable``; the job id (an array's job id for arrays)."""
    out = _run(["sbatch", "--parsable", *args, str(script_path)]).stdout.strip()
    return out.split(";")[0]


def submit(job: JobSpec, settings: SlurmSettings, script_path: Path) -> str:
    """Write the batch script and submit it; returns the job id."""
    write_text(script_path, render_script(job, settings))
    script_path.chmod(0o755)
    job.log_path.parent.mkdir(parents=True, exist_ok=True)
    job.record_path.parent.mkdir(parents=True, exist_ok=True)
    return sbatch(sbatch_args(job, settings), script_path)


def parse_show_job(line: str) -> dict[str, str]:
    """``scontrol show job -o`` prints one ``Key=Value`` line per job; values may contain '='."""
    fields: dict[str, str] = {}
    for token in _KEY.split(line.strip()):
        key, sep, value = token.partition("=")
        if sep:
            fields[key] = value
    return fields


def _time(value: str | None) -> datetime | None:
    if not value or value in ("Unknown", "None", "N/A"):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def _seconds(value: str) -> int:
    """SLURM durations: ``[D-]HH:MM:SS``."""
    days, _, hms = value.rpartition("-")
    parts = [int(p) for p in hms.split(":") if p.isdigit()]
    while len(parts) < 3:
        parts.insert(0, 0)
    return (int(days) if days else 0) * 86400 + parts[0] * 3600 + parts[1] * 60 + parts[2]


def to_info(fields: dict[str, str]) -> JobInfo:
    code, _, sig = fields.get("ExitCode", "0:0").partition(":")
    state = fields.get("JobState", "UNKNOWN")
    return JobInfo(
        job_id=fields.get("JobId", ""),
        state=state,
        reason=fields.get("Reason", ""),
        exit_code=int(code) if code.isdigit() and state in TERMINAL else None,
        signal=int(sig) if sig.isdigit() else 0,
        restarts=int(fields.get("Restarts", "0") or 0),
        start=_time(fields.get("StartTime")),
        end=_time(fields.get("EndTime")),
        run_time_s=_seconds(fields.get("RunTime", "0:0:0")),
        log_path=fields.get("StdOut", ""),
    )


#: ``squeue -O`` fields read in one call per poll for every job of a run (``-r``: array tasks one per line)
SQUEUE_FIELDS = ("JobArrayID", "State", "Reason", "exit_code", "RestartCnt", "NodeList", "StartTime", "EndTime",
                 "Comment")


@dataclass
class Polled:
    """One job as ``squeue`` lists it (an array task is ``<array id>_<task>``)."""

    job_id: str
    state: str
    reason: str
    #: the exit status as the kernel reports it: ``code << 8 | signal``
    raw_exit: int
    restarts: int
    nodes: str
    start: datetime | None
    end: datetime | None
    comment: str
    injected: bool = False
    extra: dict = field(default_factory=dict)

    @property
    def exit_code(self) -> int | None:
        return self.raw_exit >> 8 if self.state in TERMINAL else None

    @property
    def signal(self) -> int:
        return self.raw_exit & 0x7F

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL or self.state == "LOST"

    @property
    def started(self) -> bool:
        """The job got a node (a job cancelled while pending never did)."""
        return bool(self.nodes) and self.nodes not in ("(null)", "None")


def poll(comment_prefix: str) -> dict[str, Polled] | None:
    """Every job of this user whose ``--comment`` starts with ``comment_prefix`` (one run), in ONE
    ``squeue`` call, whatever the number of jobs; ``None`` when the controller does not answer.

    Why squeue over per-job ``scontrol show job``: one RPC per poll instead of one per job, which
    is what lets a 1,000-job run be polled every half second without loading the controller.
    """
    fmt = ",".join(f"{f}:|" for f in SQUEUE_FIELDS)
    try:
        proc = _run(["squeue", "--me", "-h", "-r", "-t", "all", "-O", fmt])
    except SlurmError:
        return None
    found: dict[str, Polled] = {}
    for line in proc.stdout.splitlines():
        parts = [p.strip() for p in line.split("|")]
        if len(parts) < len(SQUEUE_FIELDS):
            continue
        job_id, state, reason, raw, restarts, nodes, start, end, comment = parts[:len(SQUEUE_FIELDS)]
        if not comment.startswith(comment_prefix):
            continue
        found[job_id] = Polled(job_id=job_id, state=state.split()[0] if state else "UNKNOWN", reason=reason,
                               raw_exit=int(raw) if raw.isdigit() else 0,
                               restarts=int(restarts) if restarts.isdigit() else 0, nodes=nodes,
                               start=_time(start), end=_time(end), comment=comment)
    return found


#: tests only: a JSON file ``{"<stage>": {"<attempt>": {"state": ..., "nodes": ...}}}``; when the
#: named attempt (1 = first job) of the stage has really ended, the state reader reports the
#: injected state instead. For what the local one-node cluster cannot produce (OUT_OF_MEMORY
#: needs cgroup enforcement, NODE_FAIL a second node, PREEMPTED a preemption policy).
INJECT_ENV = "HARNESS_SLURM_INJECT"


def inject(job: Polled, stage: str, attempt: int) -> Polled:
    """Apply :data:`INJECT_ENV` at the layer that reads job states (a no-op when unset)."""
    path = os.environ.get(INJECT_ENV)
    if not path or not job.terminal:
        return job
    try:
        table = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError):
        return job
    fake = (table.get(stage) or {}).get(str(attempt))
    if not fake:
        return job
    return Polled(**{**job.__dict__, "state": fake["state"], "nodes": fake.get("nodes", job.nodes),
                     "raw_exit": int(fake.get("raw_exit", job.raw_exit)), "reason": fake.get("reason", "injected"),
                     "injected": True})


def query(job_id: str) -> JobInfo | None:
    """The controller's view of one job; ``None`` once the controller has forgotten it."""
    proc = _run(["scontrol", "show", "job", "-o", job_id], check=False)
    if proc.returncode != 0:
        if "Invalid job id" in proc.stderr:
            return None
        raise SlurmError(f"scontrol show job {job_id}: {proc.stderr.strip()}")
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("JobId=")), "")
    return to_info(parse_show_job(line)) if line else None


def cancel(job_ids: list[str]) -> None:
    if job_ids:
        _run(["scancel", *job_ids], check=False)


def requeue(job_id: str) -> None:
    _run(["scontrol", "requeue", job_id])


def signal_batch(job_id: str, signal: str = "USR1") -> None:
    """Send ``signal`` to the batch shell only: what SLURM itself does before a time limit."""
    _run(["scancel", f"--signal={signal}", "--batch", job_id])


def available() -> bool:
    """True when a controller answers (the local cluster is up or this is a login node)."""
    try:
        return subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


class LogTail:
    """Incremental reader of a job log (it grows while the job runs, and across requeues)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.offset = 0

    def read_new(self) -> str:
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self.offset)
                data = fh.read()
        except FileNotFoundError:
            return ""
        self.offset += len(data)
        return data.decode("utf-8", errors="replace")


def last_lines(path: Path, n: int = 20) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-n:])
    except FileNotFoundError:
        return f"(no log at {path})"
