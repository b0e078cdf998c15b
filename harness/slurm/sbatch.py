"""Render one stage as an sbatch invocation: an argv of options plus a bash batch script.

Why options go on sbatch's argv and not in ``#SBATCH`` lines: argv elements reach sbatch
verbatim (``subprocess`` never involves a shell), so a partition or account string with shell
metacharacters cannot inject anything. Everything interpolated into the script body (stage
name, commands, paths) goes through :func:`shlex.quote`, so a spec string such as
``x; rm -rf ~ $(id)`` arrives at the stage as those exact characters.

Why a bash wrapper around the stage instead of ``sbatch --wrap``: it implements the time-limit
protocol. SLURM sends USR1 to the batch shell (``--signal=B:USR1@<s>``) ``signal_before_s``
seconds before the limit; the wrapper forwards it to the stage's process group, the stage
(``harness.runtime`` handler -> trainer) checkpoints and exits non-zero, and the wrapper
requeues the job (``scontrol requeue``, allowed by ``--requeue``). The requeued job appends to
the same log and resumes from the checkpoint. Intermediate shells and launchers (``torchrun``)
ignore USR1, so only code that installed a handler reacts; a command that knows nothing of
checkpoints simply runs on until its limit rather than restarting from zero forever.
"""

from __future__ import annotations

import math
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from harness.slurm.settings import SlurmSettings
from harness.study import Resources

#: what the job exports for the stage: run in-process (no second submission) and unbuffered
JOB_ENV = {"HARNESS_RUNNER": "local", "PYTHONUNBUFFERED": "1"}
#: prefix of the stage's shell: shells and launchers ignore USR1 (inherited); Python stages re-arm it
IGNORE_USR1 = "trap '' USR1; "


@dataclass
class JobSpec:
    """Everything needed to submit one stage; produced by the runner or the scheduler."""

    name: str
    #: shell command lines run in order (a DVC ``cmd`` may be a list), each must succeed
    commands: list[str]
    resources: Resources
    workdir: Path
    log_path: Path
    #: JSON-lines file the job appends start / end / requeue events to (precise times, rc)
    record_path: Path
    #: job ids this one may start after (``afterok``)
    after_ok: list[str] = field(default_factory=list)
    #: job name shared by a "lane" of jobs that must run one after another (``-j N`` throttling)
    lane: str | None = None
    #: outputs to delete before the commands run, as ``dvc repro`` does for non-persistent outs
    remove_before: list[str] = field(default_factory=list)
    #: processes per node: >1 launches through ``torchrun`` (one per GPU for DDP)
    nproc: int = 0
    env: dict[str, str] = field(default_factory=dict)
    #: ``--comment``: the run's submission token (``<run_id>:<stage>:<attempt>``), how a
    #: collector finds a job whose id never reached the manifest; default: the stage name
    comment: str = ""
    #: a retry's memory (MiB) / time limit (minutes) overriding the resources; 0 = as declared
    mem_mb: int = 0
    time_min: int = 0
    #: nodes a retry must avoid (``--exclude``), after a NODE_FAIL there
    exclude: list[str] = field(default_factory=list)
    #: the job is one task of an array: the script appends its own output to ``log_path``
    #: (the array's ``--output`` is shared by all tasks)
    in_array: bool = False

    @property
    def mem(self) -> int:
        """MiB asked for: the retry's override, else the declared ``mem_gb``."""
        return self.mem_mb or math.ceil(self.resources.mem_gb * 1024)

    @property
    def minutes(self) -> int:
        return self.time_min or self.resources.time_min

    @property
    def procs(self) -> int:
        """torchrun workers: explicit ``nproc``, else one per GPU when a stage asks for several."""
        return self.nproc or (self.resources.gpus if self.resources.gpus > 1 else 1)


def sbatch_args(job: JobSpec, settings: SlurmSettings) -> list[str]:
    """sbatch options as separate argv elements (no shell involved, so nothing to escape)."""
    res = job.resources
    args = [
        f"--job-name={job.lane or job.name}",
        f"--comment={job.comment or job.name}",
        f"--output={job.log_path}",
        "--open-mode=append",  # a requeued job continues the same log
        f"--chdir={job.workdir}",
        "--nodes=1",
        "--ntasks=1",
        f"--cpus-per-task={res.cpus}",
        f"--mem={job.mem}M",
        f"--time={job.minutes}",
        "--requeue",
    ]
    if job.exclude:
        args.append(f"--exclude={','.join(job.exclude)}")
    if res.signal_before_s > 0:
        args.append(f"--signal=B:USR1@{res.signal_before_s}")
    if res.gpus > 0:
        args.append(f"--gpus={res.gpus}" if settings.gpu_flag == "gpus" else f"--gres=gpu:{res.gpus}")
    for flag in ("partition", "account", "qos"):
        value = getattr(settings, flag)
        if value:
            args.append(f"--{flag}={value}")
    deps = [f"afterok:{':'.join(job.after_ok)}"] if job.after_ok else []
    if job.lane:
        deps.append("singleton")
    if deps:
        args += [f"--dependency={','.join(deps)}", "--kill-on-invalid-dep=yes"]
    args += list(settings.extra_args)
    return args


def payload(job: JobSpec, settings: SlurmSettings) -> str:
    """The stage's command line, wrapped by torchrun and/or a container prefix when asked."""
    script = " && ".join(job.commands) if job.commands else "true"
    if job.procs > 1:
        argv = ["torchrun", "--standalone", "--nnodes=1", f"--nproc-per-node={job.procs}", "--no-python",
                "bash", "-c", script]
        line = shlex.join(argv)
    else:
        line = script
    if settings.prefix:
        line = f"{shlex.join(settings.prefix)} bash -c {shlex.quote(line)}"
    return line


def render_script(job: JobSpec, settings: SlurmSettings) -> str:
    """The batch script body; every interpolated value is quoted."""
    q = shlex.quote
    env = {**JOB_ENV, "HARNESS_STAGE": job.name, **job.env}
    threads = max(1, job.resources.cpus // job.procs)
    lines = [
        "#!/bin/bash",
        f"# harness job for stage {q(job.name)}",
        f"# sbatch {shlex.join(sbatch_args(job, settings))}",
        "set -u",
        *([f"exec >>{q(str(job.log_path))} 2>&1"] if job.in_array else []),
        *settings.setup,
        *(f"export {k}={q(v)}" for k, v in env.items()),
        f"export OMP_NUM_THREADS={threads} MKL_NUM_THREADS={threads}",
        f"RECORD={q(str(job.record_path))}",
        'mkdir -p "$(dirname "$RECORD")"',
        "now() { date +%s.%N; }",
        'event() { printf \'{"event": "%s", "t": %s, "job": "%s", "restarts": %s, "rc": %s}\\n\' '
        '"$1" "$(now)" "${SLURM_JOB_ID:-}" "${SLURM_RESTART_COUNT:-0}" "${2:-null}" >> "$RECORD"; }',
        "event start",
        'echo "[harness] stage $HARNESS_STAGE: job ${SLURM_JOB_ID:-?} on $(hostname -s),'
        ' restart ${SLURM_RESTART_COUNT:-0}"',
    ]
    if job.remove_before:
        # the outputs, and what a killed earlier attempt left of its atomic writes next to them
        # (harness.io.atomic_path writes ``.<name>.<random>.tmp`` beside the target)
        leftovers = [f"{q(str(Path(p).parent))}/.{q(Path(p).name)}.*.tmp" for p in job.remove_before]
        lines.append(f"rm -rf -- {' '.join(q(p) for p in job.remove_before)} {' '.join(leftovers)}")
    lines += [
        'stop=""; interrupted=""; child=""',
        # USR1 (time limit near): ask the stage to checkpoint; TERM (scancel, preemption) reaches
        # the stage from SLURM directly, the trap only keeps this shell alive to record the end.
        "trap 'stop=1; interrupted=1; echo \"[harness] USR1: asking the stage to checkpoint and exit\";"
        ' [ -n "$child" ] && kill -USR1 -- "-$child" 2>/dev/null\' USR1',
        "trap 'interrupted=1' TERM",
        # setsid: the stage gets its own process group, so the forwarded USR1 reaches all its processes
        f"setsid -w bash -c {q(IGNORE_USR1 + payload(job, settings))} &",
        "child=$!",
        'while :; do wait "$child"; rc=$?',
        '  if [ "$rc" -gt 128 ] && [ -n "$interrupted" ]; then interrupted=""; continue; fi; break',
        "done",
        'event end "$rc"',
        'if [ -n "$stop" ] && [ "$rc" -ne 0 ]; then',
        '  echo "[harness] stage stopped for the time limit: requeueing job $SLURM_JOB_ID to resume"',
        "  event requeue",
        '  scontrol requeue "$SLURM_JOB_ID" && exit 0',
        "fi",
        'exit "$rc"',
    ]
    return "\n".join(lines) + "\n"


def array_args(first: JobSpec, settings: SlurmSettings, indices: list[int], throttle: int, name: str,
               comment: str, output: Path, dependency: str) -> list[str]:
    """sbatch options for one array of identical-resource stages (``first`` carries the resources).

    Why arrays: one submission (and one controller record while pending) for many stages, which
    is what sites that cap jobs per user ask for, and what makes a 1,000-stage DAG submit in
    seconds. ``%N`` caps how many tasks run at once (``-j N``). Each task's own script appends to
    its stage's log; the array's ``--output`` only catches what happens before that.
    """
    base = [a for a in sbatch_args(JobSpec(**{**first.__dict__, "after_ok": [], "lane": None}), settings)
            if not a.startswith(("--job-name=", "--comment=", "--output=", "--dependency=", "--kill-on-invalid-dep"))]
    spec = ",".join(str(i) for i in indices) + (f"%{throttle}" if throttle > 0 else "")
    args = [f"--job-name={name}", f"--comment={comment}", f"--output={output}", f"--array={spec}", *base]
    if dependency:
        args += [f"--dependency={dependency}", "--kill-on-invalid-dep=yes"]
    return args


def render_array_script(scripts: dict[int, Path]) -> str:
    """Dispatch on the task id to each stage's own wrapper script (``exec``: it becomes the batch
    shell, so SLURM's USR1 and the requeue protocol reach it exactly as for a single job)."""
    q = shlex.quote
    lines = ["#!/bin/bash", "# harness job array: one task per stage", 'case "$SLURM_ARRAY_TASK_ID" in']
    lines += [f"  {i}) exec bash {q(str(path))} ;;" for i, path in sorted(scripts.items())]
    lines += ['  *) echo "[harness] no stage for array task $SLURM_ARRAY_TASK_ID" >&2; exit 2 ;;', "esac"]
    return "\n".join(lines) + "\n"
