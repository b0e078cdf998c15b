"""The selftest's join stage, in a module of its own that no other stage imports, so tests can
check that editing it makes exactly that stage stale. Copied to ``studies/slurm_selftest/joiner.py``."""

import json
from pathlib import Path

from harness.io import write_json


def summarize(parts: list[dict]) -> dict:
    return {"branches": [p["branch"] for p in parts], "n": len(parts)}


def run_join(cfg) -> None:
    parts = [json.loads(Path(p).read_text()) for p in cfg.inputs]
    write_json(cfg.out, summarize(parts))
