"""Run a `dvc` command with DVC's per-stage read/write lock (``dvc.rwlock.rwlock``) made a no-op.

A diagnostic for ``bench_core.py``, never a way to run a pipeline: it attributes the gap
between a no-op ``dvc repro`` and ``dvc status``. ``repro`` takes that lock four times per
stage (``reproduce``, ``changed``, ``_changed_deps``, ``changed_outs``; each a file-locked
read and rewrite of ``.dvc/tmp/rwlock``, and a check of every locked path against every
requested one), ``status`` once. What is left of the gap with the lock off is the rest of
DVC's repro path (its graph build). Usage: python benchmarks/dvc_without_rwlock.py repro dvc.yaml
"""

from __future__ import annotations

import contextlib
import sys


@contextlib.contextmanager
def _no_rwlock(*_args, **_kwargs):
    yield


if __name__ == "__main__":
    import dvc.rwlock

    dvc.rwlock.rwlock = _no_rwlock  # dvc.stage.decorators imports it at call time
    from dvc.cli import main

    sys.exit(main(sys.argv[1:]))
