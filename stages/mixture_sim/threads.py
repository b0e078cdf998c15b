"""Scoped torch CPU thread count.

Why: the networks of this study (a 20k-100k parameter Llama, a small MLP) are too small for
intra-op parallelism to pay; with 2 threads on a busy 2-core machine, OpenMP hand-offs made one
MLP fit 10-100x slower (measured 0.35 s on 1 thread vs 3.6-42 s on 2; a 24-step test run 0.9 s
vs 33 s); on an idle machine 1 thread costs little (0.20 s vs 0.17 s, benchmarks/bench_mixture.py).
The count is restored afterwards so the caller's setting is untouched.
"""

from __future__ import annotations

import contextlib
from typing import Iterator


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` torch intra-op threads (``n <= 0``: leave torch's default)."""
    import torch

    before = torch.get_num_threads()
    if n > 0:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
