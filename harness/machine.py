"""The machine side of a result: pinned thread counts, and a record of the machine a stage ran on.

Kept out of :mod:`harness.runtime` (which every stage imports, so every stage depends on its
bytes): what the CLI does around a stage is machinery, and editing it must not rerun studies.

Threads. OpenMP reductions (scikit-learn's histogram gradient boosting), torch's intra-op
reductions and threaded BLAS split their sums by thread, so the thread count is part of the
result: on the Intel machine of ``../shared/xcpu``, going from 1 to 2 torch threads alone changed
the bits of 20 AdamW steps of a transformer layer. Runners export ``OMP_NUM_THREADS`` as the
CPUs they grant, which varies with ``-j`` and with the cluster, so :func:`pin_threads` overrides
it: every math library in a stage process runs ``$HARNESS_THREADS`` threads (default 1). A stage
whose config declares ``threads`` (hashed by DVC) sets torch's count itself. A different
``HARNESS_THREADS`` is a deliberate choice; it is printed and recorded.

Machine record. :func:`machine_record` is what a stage's numbers may depend on besides its inputs
(CPU vendor and model, SIMD flags, kernel pin, thread counts, library versions); ``harness run``
writes it to ``machines/<profile>/<stage>.json`` (git-tracked, not hashed by DVC) and
``harness drift`` prints :func:`machine_differences` beside any drift, so "another machine" and
"another result" are told apart at a glance.
"""

from __future__ import annotations

import os
import platform
import sys

from harness.runtime import _cpu_flags, cpu_kernel_settings

THREADS_ENV = "HARNESS_THREADS"
DEFAULT_THREADS = 1
THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")

#: CPU flags that decide which SIMD kernels a library may pick (other flags do not change numbers)
SIMD_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_bf16",
              "avx512_fp16", "avx_vnni", "amx_bf16")
#: libraries whose versions shape numbers (pinned in pyproject.toml)
NUMERIC_LIBRARIES = ("torch", "numpy", "scipy", "scikit-learn", "pandas", "pomegranate", "transformers",
                     "tokenizers", "threadpoolctl")

_THREADS: dict = {}


def requested_threads() -> tuple[int, str]:
    """(thread count, note): ``$HARNESS_THREADS`` when it is a positive integer, else 1."""
    raw = os.environ.get(THREADS_ENV, "").strip()
    if not raw:
        return DEFAULT_THREADS, ""
    if raw.isdigit() and int(raw) >= 1:
        n = int(raw)
        note = "" if n == DEFAULT_THREADS else (
            f"{THREADS_ENV}={n}: math libraries run {n} threads (numbers may differ from {DEFAULT_THREADS}-thread runs)")
        return n, note
    return DEFAULT_THREADS, f"ignored {THREADS_ENV}={raw!r} (expected a positive integer); using {DEFAULT_THREADS}"


def pin_threads() -> int:
    """Set every math library's thread count (before numpy/torch load); returns it. Idempotent."""
    n, note = requested_threads()
    replaced = {var: os.environ[var] for var in THREAD_ENV_VARS if os.environ.get(var) not in (None, str(n))}
    for var in THREAD_ENV_VARS:
        os.environ[var] = str(n)
    late = sorted(m for m in ("numpy", "torch", "sklearn") if m in sys.modules)
    _THREADS.update(threads=n, note=note, replaced=replaced, late_imports=late)
    return n


def thread_summary() -> str:
    """For a stage's log: ``threads: 1 (OMP_NUM_THREADS=2 from the runner replaced)``."""
    n = _THREADS.get("threads", os.environ.get("OMP_NUM_THREADS", "?"))
    extra = [_THREADS["note"]] if _THREADS.get("note") else []
    if _THREADS.get("replaced"):
        extra.append("replaced " + ", ".join(f"{k}={v}" for k, v in sorted(_THREADS["replaced"].items())))
    return f"threads: {n}" + (f" ({'; '.join(extra)})" if extra else "")


def _cpu_identity() -> dict:
    """Vendor, model name and logical CPU count (what tells two machines apart)."""
    out = {"vendor": "?", "model": "?", "logical_cpus": os.cpu_count() or 0, "arch": platform.machine()}
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "vendor_id" and out["vendor"] == "?":
                    out["vendor"] = value.strip()
                elif key == "model name" and out["model"] == "?":
                    out["model"] = value.strip()
    except OSError:
        pass
    flags = _cpu_flags() or set()
    out["simd_flags"] = sorted(f for f in SIMD_FLAGS if f in flags)
    return out


def machine_record() -> dict:
    """What a stage's numbers may depend on besides its inputs.

    Deterministic for a given machine and venv (no time, no host name): rerunning on the same
    machine rewrites the same bytes, so git shows a change only when the machine changed.
    Probes only libraries already loaded (a report stage never loads torch for this).
    """
    from importlib import metadata

    settings = cpu_kernel_settings(probe=False)
    versions = {}
    for lib in NUMERIC_LIBRARIES:
        try:
            versions[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            continue
    return {"cpu": _cpu_identity(),
            "kernels": {"isa": settings["isa"], "env": settings["env"], "user_set": settings["overridden"],
                        "reported": _loaded_library_report()},
            "threads": {"pinned": _THREADS.get("threads", requested_threads()[0]),
                        **{var: os.environ.get(var) for var in THREAD_ENV_VARS}},
            "python": platform.python_version(),
            "libraries": versions}


def _loaded_library_report() -> dict:
    """What torch / numpy report they use, for the ones this process has loaded."""
    out: dict = {}
    if "torch" in sys.modules:
        out["torch_cpu_capability"] = sys.modules["torch"].backends.cpu.get_cpu_capability()
    if "numpy" in sys.modules:
        try:
            from numpy.lib.introspect import opt_func_info

            out["numpy_simd_targets"] = sorted({d["current"] for f in opt_func_info().values() for d in f.values()})
        except ImportError:
            pass
    return out


def machine_differences(old: dict | None, new: dict | None) -> list[str]:
    """Readable differences between two machine records; empty when numbers should be bitwise alike."""
    if not old or not new:
        return [] if old == new else ["no machine record " + ("for the committed run" if not old else "for this run")]
    out = []
    oc, nc = old.get("cpu", {}), new.get("cpu", {})
    if (oc.get("vendor"), oc.get("model")) != (nc.get("vendor"), nc.get("model")):
        out.append(f"cpu {oc.get('vendor')} {oc.get('model')!r} -> {nc.get('vendor')} {nc.get('model')!r}")
    if oc.get("simd_flags") != nc.get("simd_flags"):
        gone = sorted(set(oc.get("simd_flags", [])) - set(nc.get("simd_flags", [])))
        added = sorted(set(nc.get("simd_flags", [])) - set(oc.get("simd_flags", [])))
        out.append(f"simd flags: lost {gone}, gained {added}")
    for section in ("kernels", "threads", "libraries"):
        a, b = old.get(section, {}), new.get(section, {})
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                out.append(f"{section}.{key}: {a.get(key)!r} -> {b.get(key)!r}")
    if old.get("python") != new.get("python"):
        out.append(f"python {old.get('python')} -> {new.get('python')}")
    return out
