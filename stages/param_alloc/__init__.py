"""param_alloc: embedding share x GLU expansion at a fixed budget (see docs/param_alloc.md)."""
