"""Drift check: do reproduced metrics equal the committed ones?

Why not ``git diff --exit-code metrics/``: a CPU with other SIMD units may round the last bits of a
float differently, and 60 training steps can carry that to the 7th significant digit. Metrics are
compared numerically with a relative tolerance (default 1e-4: far below any effect a study
reports, far above cross-CPU rounding); anything else (a missing file, a new key, a changed
string or boolean) is drift.
"""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path
from typing import Any


def _flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for k, v in obj.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    if isinstance(obj, list):
        out = {}
        for i, v in enumerate(obj):
            out.update(_flatten(v, f"{prefix}{i}."))
        return out
    return {prefix.rstrip("."): obj}


def _committed(root: Path, rel: str, rev: str) -> Any | None:
    proc = subprocess.run(["git", "show", f"{rev}:{rel}"], cwd=root, capture_output=True, text=True)
    return json.loads(proc.stdout) if proc.returncode == 0 else None


def _differs(old: Any, new: Any, rtol: float) -> bool:
    if isinstance(old, bool) or isinstance(new, bool) or not isinstance(old, (int, float)) \
            or not isinstance(new, (int, float)):
        return old != new
    if math.isnan(old) and math.isnan(new):
        return False
    return not math.isclose(old, new, rel_tol=rtol, abs_tol=rtol * 1e-3)


def find_drift(root: Path, metrics_dir: str = "metrics", rev: str = "HEAD", rtol: float = 1e-4) -> list[str]:
    problems = []
    tracked = subprocess.run(["git", "ls-tree", "-r", "--name-only", rev, metrics_dir], cwd=root,
                             capture_output=True, text=True).stdout.split()
    for rel in sorted(tracked):
        if not rel.endswith(".json"):
            continue
        path = root / rel
        if not path.exists():
            problems.append(f"{rel}: committed but not reproduced")
            continue
        old, new = _flatten(_committed(root, rel, rev)), _flatten(json.loads(path.read_text()))
        for key in sorted(set(old) | set(new)):
            if key not in new or key not in old:
                problems.append(f"{rel}: {key} {'missing' if key not in new else 'new'}")
            elif _differs(old[key], new[key], rtol):
                problems.append(f"{rel}: {key} committed {old[key]!r}, reproduced {new[key]!r}")
    return problems
