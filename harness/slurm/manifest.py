"""Moved to :mod:`harness.dag.manifest` (shared by the SLURM and local schedulers); re-exported here."""

from harness.dag.manifest import RunManifest, RunPaths, StageRun, latest, load, new_run_id, read_events, save

__all__ = ["RunManifest", "RunPaths", "StageRun", "latest", "load", "new_run_id", "read_events", "save"]
