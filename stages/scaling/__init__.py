"""scaling: Chinchilla approaches 1-3 and SP vs muP width sweeps (see docs/scaling.md)."""
