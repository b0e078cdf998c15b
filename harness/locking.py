"""Who may run what at once: per-stage and per-project locks, and dying with the parent.

Why: two runs of one stage share a checkpoint folder and output paths, and two schedulers of one
project both remove, write and record the same outputs; either can leave a result nobody can
trust. The second run therefore stops at once, naming the holder (pid, host, command, start),
instead of racing. Locks are ``flock`` locks on files under ``.harness/locks/`` (untracked): the
kernel drops them when the holder dies, even by ``kill -9``, so a lock is never stale; the file
only says who held it last.

``dvc repro`` holds DVC's own repo lock (``.dvc/tmp/lock``, also an ``flock``) for its whole
run, so ``harness repro``/``collect`` probe it too; and a ``harness run`` that DVC starts checks
that no ``harness repro`` of another process holds the project (:func:`check_project_free`).

Kept free of heavy imports: ``harness run`` calls it before anything else.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

LOCK_DIR = ".harness/locks"
#: set by a process holding the project lock, for the stage processes it starts
OWNER_ENV = "HARNESS_PROJECT_LOCK_OWNER"
#: exit code of a command refused because another run holds the lock
EXIT_BUSY = 4


class LockHeld(Exception):
    """Another process holds the lock; the message names it."""

    def __init__(self, what: str, holder: dict, path: Path):
        self.what, self.holder, self.path = what, holder, path
        who = describe_holder(holder)
        super().__init__(f"{what} is already running ({who}); wait for it to finish or stop it. "
                         f"Lock: {path}")


def describe_holder(holder: dict) -> str:
    if not holder:
        return "holder unknown"
    parts = [f"pid {holder.get('pid', '?')}"]
    if holder.get("host") and holder.get("host") != socket.gethostname():
        parts.append(f"on {holder['host']}")
    if holder.get("cmd"):
        parts.append(f"`{holder['cmd']}`")
    if holder.get("started"):
        parts.append(f"since {holder['started']}")
    return ", ".join(parts)


def _read_holder(path: Path) -> dict:
    try:
        text = path.read_text(errors="replace").strip()
    except OSError:
        return {}
    try:
        data = json.loads(text)
        return data if isinstance(data, dict) else {}
    except json.JSONDecodeError:  # DVC's lock file holds a bare pid (zc.lockfile)
        pid = text.split()[0] if text.split() else ""
        return {"pid": pid, "cmd": "dvc (repo lock)"} if pid else {}


def _holder_from_proc(path: Path) -> dict:
    """Who holds an flock on ``path``, from /proc/locks (Linux): DVC's lock file names its pid
    only once its holder flushes it, so the kernel's table is the reliable witness."""
    try:
        inode = os.stat(path).st_ino
        for line in Path("/proc/locks").read_text().splitlines():
            parts = line.split()
            if len(parts) > 5 and parts[1] == "FLOCK" and parts[5].rsplit(":", 1)[-1] == str(inode):
                pid = parts[4]
                try:
                    cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                except OSError:
                    cmd = ""
                return {"pid": pid, "cmd": " ".join(os.path.basename(a) if i == 0 else a
                                                    for i, a in enumerate(cmd.split()))[:300]}
    except OSError:
        pass
    return {}


def _cmdline() -> str:
    args = [os.path.basename(sys.argv[0]) if sys.argv else "python", *sys.argv[1:]]
    return " ".join(args)[:300]


@contextlib.contextmanager
def hold(path: Path, what: str) -> Iterator[Path]:
    """Hold an exclusive ``flock`` on ``path`` for the block, or raise :class:`LockHeld` at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            raise LockHeld(what, _read_holder(path), path) from None
        info = {"pid": os.getpid(), "host": socket.gethostname(), "cmd": _cmdline(),
                "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        yield path
    finally:
        os.close(fd)  # closing drops the flock


def is_held(path: Path) -> dict | None:
    """The holder of ``path``'s lock if some process holds it now, else ``None`` (takes nothing)."""
    if not path.exists():
        return None
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            holder = _read_holder(path)
            return holder if holder.get("pid") else (_holder_from_proc(path) or {"pid": "?"})
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def project_lock_path(root: Path) -> Path:
    return Path(root) / LOCK_DIR / "project.lock"


def stage_lock_path(root: Path, profile: str, stage: str) -> Path:
    return Path(root) / LOCK_DIR / f"stage-{profile}-{stage}.lock"


def dvc_lock_path(root: Path) -> Path:
    return Path(root) / ".dvc" / "tmp" / "lock"


@contextlib.contextmanager
def hold_project(root: Path, command: str) -> Iterator[None]:
    """The project lock for a scheduler (``harness repro``, ``harness collect``).

    Refused when another harness scheduler holds it, or when ``dvc repro`` (DVC's repo lock) is
    running. Stage processes started inside inherit :data:`OWNER_ENV`, so their own
    :func:`check_project_free` lets them through.
    """
    holder = is_held(dvc_lock_path(root))
    if holder is not None:
        raise LockHeld(f"a DVC command in {root} ({command} needs the project)", holder, dvc_lock_path(root))
    with hold(project_lock_path(root), f"a harness scheduler in {root} ({command} needs the project)"):
        previous = os.environ.get(OWNER_ENV)
        os.environ[OWNER_ENV] = str(os.getpid())
        try:
            yield
        finally:
            if previous is None:
                os.environ.pop(OWNER_ENV, None)
            else:
                os.environ[OWNER_ENV] = previous


def check_project_free(root: Path) -> None:
    """For ``harness run``: refuse when a scheduler other than our own ancestor holds the project
    (``dvc repro`` started while ``harness repro`` runs would otherwise race it)."""
    holder = is_held(project_lock_path(root))
    if holder is None:
        return
    if os.environ.get(OWNER_ENV) and str(holder.get("pid")) == os.environ[OWNER_ENV]:
        return
    raise LockHeld(f"a harness scheduler in {root}", holder, project_lock_path(root))


PR_SET_PDEATHSIG = 1


def die_with_parent(grace_s: float = 5.0) -> None:
    """Stop this process when its parent dies (``kill -9`` of ``dvc repro``), instead of going on
    writing outputs that a second ``dvc repro`` may be checking out.

    The kernel sends SIGTERM at the parent's death (``prctl(PR_SET_PDEATHSIG)``, Linux): a
    training loop checkpoints and stops (see :mod:`harness.runtime`). A watcher thread then ends
    the process ``grace_s`` later if it is still running (stages that do not poll for a stop,
    and platforms without prctl). Never raises.
    """
    parent = os.getppid()
    if parent <= 1:
        return  # started by init / a container's pid 1: no parent to follow
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # the parent died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        time.sleep(grace_s)
        print(f"[harness] parent process {parent} died; stopping this stage (pid {os.getpid()})",
              file=sys.stderr, flush=True)
        os._exit(143)

    threading.Thread(target=watch, name="harness-parent-watch", daemon=True).start()
