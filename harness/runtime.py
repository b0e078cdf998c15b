"""What a running stage may ask of its environment, without it leaking into the stage config.

The stage name, checkpoint directory and device are facts about *this execution*, not about what
the stage computes, so they are not part of the typed config (and so not part of any hash).

CPU kernel pinning (``pin_cpu_kernels``) is the exception that *does* shape results: numpy,
OpenBLAS, MKL, oneDNN and ATen each pick SIMD kernels for the CPU they find, and an AVX-512 box
rounds differently from an AVX2 one. The CLI pins them all to one instruction set before anything
imports numpy or torch. This module imports neither at its top, so that pinning can run first.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
from pathlib import Path
from typing import Iterator

import numpy as np

STAGE_ENV = "HARNESS_STAGE"
CHECKPOINT_ROOT_ENV = "HARNESS_CHECKPOINT_ROOT"


def stage_name() -> str:
    return os.environ.get(STAGE_ENV, "adhoc")


def checkpoint_dir(config=None) -> Path:
    """Per-stage checkpoint folder, keyed by the config so a changed config never resumes stale state."""
    root = Path(os.environ.get(CHECKPOINT_ROOT_ENV, ".harness/checkpoints"))
    key = ""
    if config is not None:
        payload = config.model_dump_json() if hasattr(config, "model_dump_json") else json.dumps(config, sort_keys=True)
        key = "-" + hashlib.sha256(payload.encode()).hexdigest()[:12]
    path = root / f"{stage_name()}{key}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def device(prefer: str = "auto") -> str:
    """``cuda`` when asked for (or ``auto``) and available; else ``cpu``. CPU runs are deterministic."""
    import torch

    if prefer == "cpu":
        return "cpu"
    if torch.cuda.is_available():
        return "cuda"
    if prefer == "cuda":
        raise RuntimeError("the profile asks for a GPU (device: cuda) but none is visible")
    return "cpu"


def set_threads(n: int | None) -> None:
    """Fix torch's intra-op thread count from the stage config (None: torch's default).

    Why from the config and not the environment: on CPU the thread count changes the order of
    float reductions, so it is part of what makes a result reproducible; and for the tiny smoke
    models thread hand-offs dominate (one thread measured many times faster on a busy 2-core box).
    """
    if n:
        import torch

        torch.set_num_threads(n)


def seed_everything(seed: int) -> None:
    """Seed every RNG a stage may touch; call once at the start of stage code."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


_STOP = {"requested": False}


def request_stop(*_args) -> None:
    """Signal handler (SLURM sends USR1 before the time limit): ask long loops to checkpoint and exit."""
    _STOP["requested"] = True


def stop_requested() -> bool:
    return _STOP["requested"]


def install_signal_handlers() -> None:
    import signal

    for sig in (signal.SIGUSR1, signal.SIGTERM):
        try:
            signal.signal(sig, request_stop)
        except (ValueError, OSError):  # not the main thread: nothing to install
            pass


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` torch intra-op threads, restored afterwards (``None``/0: leave as is).

    The one thread-count helper of the project. Why scoped: the setting is process-global in
    torch, and a test process that calls several stages must not inherit one stage's choice. Why
    from the config: on CPU the thread count changes the order of float reductions, so it is part
    of what makes a result reproducible; and for tiny models thread hand-offs dominate (one
    thread measured 10-40x faster than two on a busy 2-core machine).
    """
    if not n or n <= 0:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
