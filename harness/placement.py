"""Device and precision for stage code, decided in one place (issue 26).

Kept out of :mod:`harness.runtime` (which nearly every stage imports, so its bytes are part of
nearly every stage's hash): adding this helper must not rerun studies that do not use it.
"""

from __future__ import annotations

import os


# -- device and precision: one helper for every stage (issue 26) ---------------------------------
#: torch autocast dtypes by precision name; ``fp32`` (and every CPU run) means no autocast
_AUTOCAST_DTYPES = {"bf16": "bfloat16", "fp16": "float16"}

from dataclasses import dataclass as _dataclass  # noqa: E402 - kept with the helper it serves


@_dataclass(frozen=True)
class Placement:
    """Where a stage computes and in which precision, decided once by :func:`placement`.

    ``device`` is a torch device string (``cpu``, ``cuda`` or ``cuda:<LOCAL_RANK>`` under
    torchrun), ``precision`` what matmuls run in (``bf16``/``fp16`` autocast on CUDA, ``fp32``
    on CPU, always: CPU results are the reproducible ones), ``why`` one line for the stage log."""

    device: str
    precision: str
    why: str

    @property
    def is_cuda(self) -> bool:
        return self.device.startswith("cuda")

    def autocast(self):
        """``with placement.autocast(): loss = model(x)``: torch autocast on CUDA in bf16/fp16, a
        no-op context on CPU and in fp32."""
        import contextlib

        if not self.is_cuda or self.precision == "fp32":
            return contextlib.nullcontext()
        import torch

        return torch.autocast("cuda", dtype=getattr(torch, _AUTOCAST_DTYPES[self.precision]))


def job_gpus() -> int | None:
    """GPUs the scheduler gave this job: ``None`` outside a SLURM job (nothing to follow), else the
    number of devices SLURM listed (``SLURM_JOB_GPUS`` / ``CUDA_VISIBLE_DEVICES``; 0 when none)."""
    if not os.environ.get("SLURM_JOB_ID"):
        return None
    listed = os.environ.get("SLURM_JOB_GPUS") or os.environ.get("SLURM_STEP_GPUS") or ""
    if not listed and os.environ.get("SLURM_GPUS_ON_NODE", "").isdigit():
        return int(os.environ["SLURM_GPUS_ON_NODE"])
    if not listed:
        listed = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    return len([d for d in listed.split(",") if d.strip() and d.strip() != "NoDevFiles"])


def placement(device: str = "auto", precision: str = "auto") -> Placement:
    """The device and precision a stage uses, following what its job was given.

    * ``device``: ``auto`` takes CUDA when the job was given a GPU and torch sees one, else the
      CPU; ``cuda`` insists (an error when no GPU is visible: a GPU profile on a CPU node is a
      mistake to report, not to run for days); ``cpu`` never touches a GPU.
    * A SLURM job given no GPU stays on the CPU even when the node's GPUs are visible to it (a
      cluster without cgroup device confinement shows every GPU to every job).
    * Under ``torchrun`` each rank takes ``cuda:<LOCAL_RANK>``.
    * ``precision``: ``auto`` is bf16 autocast on CUDA (fp16 on a GPU without bf16) and fp32 on
      the CPU; ``bf16``/``fp16`` apply on CUDA only; ``fp32`` everywhere means no autocast.
    """
    import torch

    if device not in ("auto", "cpu", "cuda") or precision not in ("auto", "fp32", "bf16", "fp16"):
        raise ValueError(f"placement(device={device!r}, precision={precision!r}): unknown value")
    given = job_gpus()
    visible = torch.cuda.is_available()
    if device == "cpu":
        chosen, why = "cpu", "device: cpu asked"
    elif given == 0 and device == "auto":
        chosen, why = "cpu", "the SLURM job was given no GPU"
    elif visible:
        rank = os.environ.get("LOCAL_RANK")
        chosen = f"cuda:{int(rank)}" if rank is not None and os.environ.get("WORLD_SIZE", "1") != "1" else "cuda"
        why = f"CUDA visible ({torch.cuda.device_count()} device(s), CUDA_VISIBLE_DEVICES=" \
              f"{os.environ.get('CUDA_VISIBLE_DEVICES', '<unset>')})"
    elif device == "cuda":
        raise RuntimeError("the stage asks for a GPU (device: cuda) but torch sees none "
                           f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '<unset>')})")
    else:
        chosen, why = "cpu", "no CUDA device visible" + (f" (the job was given {given})" if given else "")
    if not chosen.startswith("cuda"):
        return Placement(chosen, "fp32", why + "; fp32 on the CPU")
    if precision == "auto":
        precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return Placement(chosen, precision, f"{why}; {precision}" + (" autocast" if precision != "fp32" else ""))
