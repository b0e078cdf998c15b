"""The stop flag a long stage polls: set by USR1 (SLURM's time-limit warning) or TERM.

Why a flag and not an exception raised from the handler: a handler fires between any two
bytecodes, possibly in the middle of a checkpoint write. Setting a flag lets the training loop
finish its step, write a complete checkpoint, and exit at a point it chooses; the batch script
(:mod:`harness.slurm.sbatch`) then requeues the job, which resumes from that checkpoint.

The flag itself lives in :mod:`harness.runtime` (the shared trainer already polls
``harness.runtime.stop_requested``), so there is exactly one flag whichever module sets it.
"""

from __future__ import annotations

from harness.runtime import install_signal_handlers, request_stop, stop_requested

__all__ = ["install_signal_handlers", "request_stop", "stop_requested"]
