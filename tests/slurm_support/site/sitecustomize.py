"""Test-only study registration for subprocesses (``harness run`` inside dvc and SLURM jobs).

Why: the harness discovers studies in the ``harness.studies`` package only. The SLURM tests need
a tiny study of their own that exists only in a throwaway project, and every process that
plans it (``harness compile``, ``harness run`` under DVC, the same command inside a SLURM job)
must see it. Python imports ``sitecustomize`` at start-up from ``PYTHONPATH``; the tests put this
directory there and name the extra study folders in ``HARNESS_TEST_STUDY_DIRS``, which are
appended to ``harness.studies.__path__`` so discovery imports them like any other study.
"""

import os

_dirs = [d for d in os.environ.get("HARNESS_TEST_STUDY_DIRS", "").split(os.pathsep) if d]
if _dirs:
    try:
        import harness.studies as _studies
    except ImportError:  # a process without the harness (git, a bare python): nothing to do
        pass
    else:
        _studies.__path__.extend(d for d in _dirs if d not in _studies.__path__)
