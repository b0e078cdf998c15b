"""Scoped torch settings: default dtype and intra-op thread count, restored on exit.

Why scoped: both are process-global in torch; a stage may set them for its own work, but a test
process that calls several stages (or other studies' code) must not inherit them.
"""

from __future__ import annotations

import contextlib
from typing import Iterator


@contextlib.contextmanager
def default_dtype(dtype) -> Iterator[None]:
    """pomegranate allocates its summary buffers with torch's default dtype; match the model's."""
    import torch

    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run with ``n`` intra-op threads (None: leave torch's setting alone).

    Why: the smoke models are tiny, so every op is a few microseconds and thread hand-offs
    dominate; on a busy 2-core machine one thread measured ~40x faster per Llama step than two.
    """
    import torch

    if not n:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)
