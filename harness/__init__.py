"""Spec-driven reproducibility harness: YAML specs -> Pydantic models -> DVC stages."""

__version__ = "0.1.0"
