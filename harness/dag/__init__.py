"""Running the compiled DVC DAG outside ``dvc repro``, on a pluggable backend.

Why: DVC runs one stage at a time under a repo lock, so independent stages wait for each other.
The shared scheduler plans the stale DAG from DVC itself, lets a backend run the stages side by
side, and records finished ones into ``dvc.lock`` from this one process with DVC's own commit, in
DVC's repro order, so the lock is byte-identical to a sequential ``dvc repro``'s.

Modules: ``dvcgraph`` (DVC's pipeline, stale stages, recording), ``manifest`` (run manifests and
their files), ``scheduler`` (plan, follow, fail, record; the :class:`~harness.dag.scheduler.Backend`
protocol), ``local`` (the local process-pool backend, ``harness repro -j N``). The SLURM backend
lives in :mod:`harness.slurm.scheduler`. Nothing here imports a study.
"""
