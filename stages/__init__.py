"""The studies: one package per study (``<study>/study.py`` is discovered by the harness)."""
