"""Issue 26: one helper decides a stage's device and precision, following what its job was given
(:func:`harness.placement.placement`). Tested on CPU; CUDA's presence is simulated where needed."""

from __future__ import annotations

import pytest
import torch

from harness.placement import job_gpus, placement

SLURM_VARS = ("SLURM_JOB_ID", "SLURM_JOB_GPUS", "SLURM_STEP_GPUS", "SLURM_GPUS_ON_NODE", "CUDA_VISIBLE_DEVICES",
              "LOCAL_RANK", "WORLD_SIZE")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for var in SLURM_VARS:
        monkeypatch.delenv(var, raising=False)


def fake_cuda(monkeypatch, count: int = 2, bf16: bool = True):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)


def test_cpu_is_fp32_and_autocast_is_a_no_op(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    p = placement()
    assert (p.device, p.precision, p.is_cuda) == ("cpu", "fp32", False)
    with p.autocast():
        y = torch.ones(2, 2) @ torch.ones(2, 2)
    assert y.dtype == torch.float32
    # bf16 asked for a CPU run: still fp32 (CPU results are the reproducible ones)
    assert placement(precision="bf16").precision == "fp32"


def test_cuda_asked_but_absent_is_an_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="asks for a GPU"):
        placement("cuda")


def test_cuda_gives_bf16_autocast(monkeypatch):
    fake_cuda(monkeypatch)
    p = placement()
    assert (p.device, p.precision) == ("cuda", "bf16")
    assert placement(precision="fp32").precision == "fp32"
    assert placement(precision="fp16").precision == "fp16"
    fake_cuda(monkeypatch, bf16=False)
    assert placement().precision == "fp16"  # a GPU without bf16 (pre-Ampere)


def test_follows_the_slurm_allocation(monkeypatch):
    fake_cuda(monkeypatch)
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    # a CPU job on a node whose GPUs it can see (no cgroup device confinement): stays on the CPU
    assert job_gpus() == 0
    p = placement()
    assert (p.device, p.precision) == ("cpu", "fp32") and "given no GPU" in p.why
    # the same job given one GPU by SLURM
    monkeypatch.setenv("SLURM_JOB_GPUS", "1")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    assert job_gpus() == 1
    assert placement().device == "cuda"
    monkeypatch.delenv("SLURM_JOB_GPUS")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    assert job_gpus() == 2
    assert job_gpus() is not None and placement("cpu").device == "cpu"


def test_torchrun_rank_takes_its_local_device(monkeypatch):
    fake_cuda(monkeypatch)
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert placement().device == "cuda:1"


def test_outside_slurm_nothing_to_follow(monkeypatch):
    assert job_gpus() is None
    with pytest.raises(ValueError):
        placement("tpu")
