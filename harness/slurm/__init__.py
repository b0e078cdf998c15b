"""Running the compiled DVC DAG on SLURM.

Why a package of its own: DVC runs one stage at a time under a repo lock, so a sweep of training
runs takes the sum of their times. This package submits every stale stage at once as SLURM jobs
wired with ``--dependency=afterok`` edges that mirror DVC's own graph, waits (or detaches), and
records each finished stage into ``dvc.lock`` from a single process, so that afterwards
``dvc status`` is clean exactly as if ``dvc repro`` had run the stages.

Modules, one job each: ``settings`` (where to run: partition/account/qos, never tracked params),
``sbatch`` (batch-script rendering), ``jobs`` (sbatch/scontrol/scancel), ``signals`` (USR1 ->
checkpoint-and-requeue), ``dvcgraph`` (stale stages, DAG, recording into dvc.lock), ``manifest``
(detached runs), ``scheduler`` (submit / poll / collect), ``cli`` (``repro``, ``submit``,
``collect``), ``distributed`` (torchrun/DDP process-group setup).
"""
