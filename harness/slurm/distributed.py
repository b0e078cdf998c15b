"""Process-group setup for stages launched through ``torchrun`` (multi-GPU DDP).

Why here: the SLURM runner launches a stage whose resources ask for N > 1 GPUs as
``torchrun --standalone --nproc-per-node=N ... harness run <stage>``; torchrun exports RANK,
WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT, and stage code only has to call :func:`init_from_env`.
The backend follows the device: NCCL on GPUs, gloo on CPU (which is how CI tests DDP with two
processes and no GPU). A stage run without torchrun gets rank 0 of 1 and no process group, so
the same code runs single-process.
"""

from __future__ import annotations

import os


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def init_from_env() -> tuple[int, int, str]:
    """(rank, world size, backend); joins the torchrun process group when there is one."""
    world = world_size()
    if world <= 1:
        return 0, 1, "none"
    import torch
    import torch.distributed as dist

    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)  # env:// rendezvous set up by torchrun
    return dist.get_rank(), dist.get_world_size(), backend


def is_main() -> bool:
    """Only rank 0 writes outputs: DVC must see one writer per artifact."""
    return int(os.environ.get("RANK", "0")) == 0


def shutdown() -> None:
    if world_size() > 1:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()
