"""Scoped torch default dtype, restored on exit (thread counts: ``harness.runtime.torch_threads``).

Why scoped: it is process-global in torch; a stage may set it for its own work, but a test
process that calls several stages (or other studies' code) must not inherit it.
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
