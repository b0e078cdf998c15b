"""Moved to :mod:`harness.dag.dvcgraph` (shared by the SLURM and local schedulers); re-exported here."""

from harness.dag.dvcgraph import PipelineStage, _open, changed_stages, load_pipeline, record, stale_stages

__all__ = ["PipelineStage", "_open", "changed_stages", "load_pipeline", "record", "stale_stages"]
