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
import platform
import random
import re
import sys
from pathlib import Path
from typing import Iterator

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


# --------------------------------------------------------------------------------------------
# CPU kernel pinning
#
# Why: numpy/scipy/sklearn (OpenBLAS + numpy's own SIMD dispatch) and torch (ATen, MKL, oneDNN)
# choose kernels for the CPU they run on at import time. Re-running on one machine is bitwise
# identical, but an AVX-512 machine and an AVX2-only one round differently, and 60 training steps
# carry that far past the drift tolerance. So every `harness run` process asks all of them for
# the same instruction set: AVX2 (x86-64-v3), which every x86-64 machine CI may use has.
#
# What each variable does, as measured with the libraries in .venv (torch 2.13 with MKL 2024.2
# and oneDNN 3.12, numpy 2.4 and scipy 1.17 with scipy-openblas 0.3.3x):
#   ATEN_CPU_CAPABILITY      torch's own vectorised ops (default/avx2/avx512)
#   DNNL_MAX_CPU_ISA         oneDNN (torch's LSTM and some matmuls on CPU)
#   MKL_CBWR                 MKL (torch's sgemm). AVX2 would be faster, but MKL honours named
#                            branches on Intel CPUs only: on AMD it falls back to AUTO and runs
#                            Zen-specific kernels (seen with perf). COMPATIBLE is the one branch
#                            identical on every vendor; it costs ~1.7x on the tiny smoke trainer.
#   MKL_ENABLE_INSTRUCTIONS  caps MKL's ISA where CNR is off (a user's MKL_CBWR override)
#   OPENBLAS_CORETYPE        OpenBLAS kernels (numpy/scipy/sklearn linear algebra)
#   NPY_DISABLE_CPU_FEATURES numpy's runtime-dispatched loops (exp, log, tanh, ...)
# A variable the user already exported is left alone (recorded under "overridden"); the
# setting HARNESS_CPU_ISA=native turns the whole pin off.
# --------------------------------------------------------------------------------------------

CPU_ISA_ENV = "HARNESS_CPU_ISA"
#: set by the pin itself, so child processes know which values are the pin's and not the user's
CPU_PINNED_ENV = "HARNESS_CPU_PINNED"
DEFAULT_CPU_ISA = "avx2"
CPU_ISA_LEVELS = ("avx2", "sse4", "native")

_PINS: dict[str, dict[str, str]] = {
    "avx2": {
        "ATEN_CPU_CAPABILITY": "avx2",
        "DNNL_MAX_CPU_ISA": "AVX2",
        "MKL_CBWR": "COMPATIBLE",
        "MKL_ENABLE_INSTRUCTIONS": "AVX2",
        "OPENBLAS_CORETYPE": "Haswell",
        "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR",
    },
    "sse4": {  # for x86-64 machines without AVX2 (none in CI): slower, same numbers among themselves
        "ATEN_CPU_CAPABILITY": "default",
        "DNNL_MAX_CPU_ISA": "SSE41",
        "MKL_CBWR": "COMPATIBLE",
        "MKL_ENABLE_INSTRUCTIONS": "SSE4_2",
        "OPENBLAS_CORETYPE": "Nehalem",
        "NPY_DISABLE_CPU_FEATURES": "X86_V3 X86_V4 AVX512_ICL AVX512_SPR",
    },
}
_NEEDS_FLAGS = {"avx2": {"avx2", "fma"}, "sse4": {"sse4_2"}}
KERNEL_ENV_VARS = tuple(_PINS["avx2"])
_MKL_BRANCHES = {0: "OFF", 1: "OFF", 2: "AUTO", 3: "COMPATIBLE", 4: "SSE2", 6: "SSSE3", 7: "SSE4_1",
                 8: "SSE4_2", 9: "AVX", 10: "AVX2", 11: "AVX512_MIC", 12: "AVX512",
                 13: "AVX512_MIC_E1", 14: "AVX512_E1"}

_PIN_STATE: dict | None = None


def _is_x86_64() -> bool:
    return platform.machine().lower() in ("x86_64", "amd64")


def _cpu_flags() -> set[str] | None:
    """The CPU's feature flags from /proc/cpuinfo (Linux); None where they cannot be read."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        return None
    return None


def _numpy_version() -> tuple[int, ...] | None:
    """numpy's version without importing numpy (importing it would load OpenBLAS unpinned)."""
    import importlib.util

    try:
        found = importlib.util.find_spec("numpy")
    except (ImportError, ValueError):
        return None
    for folder in (found.submodule_search_locations or []) if found else []:
        try:
            text = Path(folder, "version.py").read_text()
        except OSError:
            continue
        match = re.search(r"^(?:__)?version(?:__)?\s*(?::\s*str)?\s*=\s*['\"](\d+)\.(\d+)", text, re.M)
        if match:
            return int(match.group(1)), int(match.group(2))
    return None


def pin_cpu_kernels() -> dict:
    """Pin numpy/OpenBLAS/MKL/oneDNN/ATen to one instruction set; call before numpy/torch load.

    ``$HARNESS_CPU_ISA``: ``avx2`` (default), ``sse4``, or ``native`` (no pin). Returns (and
    remembers, for :func:`cpu_kernel_settings`) what was decided. Idempotent; harmless on
    non-x86 machines (nothing is set there).
    """
    global _PIN_STATE
    requested = os.environ.get(CPU_ISA_ENV, "").strip().lower() or None
    level = requested or DEFAULT_CPU_ISA
    notes: list[str] = []
    if level not in CPU_ISA_LEVELS:
        notes.append(f"unknown {CPU_ISA_ENV}={requested!r} (expected one of {', '.join(CPU_ISA_LEVELS)}); "
                     f"using {DEFAULT_CPU_ISA}")
        level = DEFAULT_CPU_ISA
    if level != "native" and not _is_x86_64():
        notes.append(f"{platform.machine() or 'unknown'} is not x86-64: kernels not pinned")
        level = "native"
    if level != "native":
        flags = _cpu_flags()
        if flags is None:
            notes.append("CPU flags unreadable (no /proc/cpuinfo): kernels not pinned")
            level = "native"
        elif not _NEEDS_FLAGS[level] <= flags:
            fallback = "sse4" if level == "avx2" and _NEEDS_FLAGS["sse4"] <= flags else "native"
            notes.append(f"this CPU lacks {sorted(_NEEDS_FLAGS[level] - flags)}: using {fallback}")
            level = fallback

    late = sorted(m for m in ("numpy", "torch", "scipy", "sklearn") if m in sys.modules)
    previous = os.environ.get(CPU_PINNED_ENV)
    inherited = _PINS.get(previous or "", {})
    applied: dict[str, str] = {}
    overridden: dict[str, str] = {}
    if level != "native":
        wanted = dict(_PINS[level])
        npv = _numpy_version()
        if npv is None or npv < (2, 4):  # older numpy names its dispatch targets differently
            wanted.pop("NPY_DISABLE_CPU_FEATURES")
            notes.append(f"numpy {npv or '?'}: its SIMD dispatch is not pinned (needs numpy >= 2.4)")
        for var, value in wanted.items():
            current = os.environ.get(var)
            if current is not None and current != value and current != inherited.get(var):
                overridden[var] = current  # the user's explicit choice wins, and is recorded
                continue
            os.environ[var] = value
            applied[var] = value
        os.environ[CPU_PINNED_ENV] = level
    else:
        os.environ.pop(CPU_PINNED_ENV, None)
    if late and level != "native":
        notes.append(f"{', '.join(late)} already imported: the pin applies to child processes only")
    _PIN_STATE = {"isa": level, "requested": requested, "machine": platform.machine(),
                  "applied": applied, "overridden": overridden, "late_imports": late, "notes": notes}
    return dict(_PIN_STATE)


def _probe_libraries() -> dict:
    """What the loaded libraries report they actually use (imports numpy and torch)."""
    out: dict = {}
    try:
        import torch

        out["torch_cpu_capability"] = torch.backends.cpu.get_cpu_capability()
        try:
            import ctypes

            lib = ctypes.CDLL(str(Path(torch.__file__).parent / "lib" / "libtorch_cpu.so"))
            torch.ones(2, 2) @ torch.ones(2, 2)  # MKL reads MKL_CBWR on its first call
            out["mkl_cbwr_branch"] = _MKL_BRANCHES.get(lib.mkl_serv_cbwr_get(1), "?")
        except (OSError, AttributeError):
            pass
    except ImportError:
        pass
    try:
        import numpy as np

        from numpy.lib.introspect import opt_func_info

        out["numpy_simd_targets"] = sorted({d["current"] for f in opt_func_info().values()
                                            for d in f.values()})
        np.ones(2) @ np.ones(2)
    except ImportError:
        pass
    try:
        from threadpoolctl import threadpool_info

        out["openblas_coretypes"] = sorted({str(i.get("architecture")) for i in threadpool_info()
                                            if i.get("internal_api") == "openblas"})
    except ImportError:
        pass
    return out


def cpu_kernel_settings(probe: bool = False) -> dict:
    """The active CPU kernel choice: pin level, the variables in effect, and (``probe=True``)
    what torch/MKL/OpenBLAS/numpy report they use. For stages and reports to record."""
    state = dict(_PIN_STATE) if _PIN_STATE is not None else {
        "isa": os.environ.get(CPU_PINNED_ENV, "native"), "requested": os.environ.get(CPU_ISA_ENV),
        "machine": platform.machine(), "applied": {}, "overridden": {}, "late_imports": [],
        "notes": ["pin_cpu_kernels() was not called in this process"]}
    state["env"] = {var: os.environ[var] for var in KERNEL_ENV_VARS if var in os.environ}
    if probe:
        state["probe"] = _probe_libraries()
    return state


def cpu_kernel_summary() -> str:
    """One line for a stage's log: ``cpu kernels: avx2 (ATEN_CPU_CAPABILITY=avx2 ...)``."""
    s = cpu_kernel_settings()
    env = " ".join(f"{k}={v}" for k, v in s["env"].items())
    extra = "".join(f"; {n}" for n in s["notes"])
    if s["overridden"]:
        extra += "; user-set: " + ", ".join(s["overridden"])
    return f"cpu kernels: {s['isa']}" + (f" ({env})" if env else "") + extra
