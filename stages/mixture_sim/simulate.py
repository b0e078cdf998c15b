"""`harness simulate --study mixture_sim --table <name> --input mixtures.csv --output predictions.csv`.

Predicts every target of a table for new mixtures with the table's saved simulator (the
`<table>-simulator` stage's artifact). The input is checked before anything is predicted: every
column must be a known feature (a domain of the table, or one of its size/shape/step columns;
an ``id``-like column is passed through only if named ``id``/``name``/``run``), every feature
present, numbers only, proportions in [0, 1] summing to 1 within the table's tolerance. Any
problem: the file, row and column are named, nothing is written, exit 2.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

from harness.io import write_csv
from stages.mixture_sim.simulator import Simulator, load_simulator

EXIT_BAD_INPUT = 2
#: columns carried from input to output without being features
PASSTHROUGH = ("id", "name", "run")
MAX_LISTED = 5


class InputError(Exception):
    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


def _rows(mask: np.ndarray) -> str:
    idx = np.flatnonzero(mask)
    shown = ", ".join(str(i + 2) for i in idx[:MAX_LISTED])  # +2: header line, 1-based lines
    return f"{len(idx)} row(s), first at line(s) {shown}"


def check_input(frame, sim: Simulator, path: str) -> None:
    """Raise :class:`InputError` listing every problem of ``frame`` as input to ``sim``."""
    problems = []
    features, domains = sim.features, sim.domains
    unknown = [c for c in frame.columns if c not in features and c not in PASSTHROUGH]
    if unknown:
        problems.append(f"{path}: unknown column(s) {unknown}: the simulator of table `{sim.schema['table']}` knows "
                        f"the domains {domains}" + (f" and the features {sim.schema['context_columns']}"
                                                    if sim.schema["context_columns"] else ""))
    missing = [c for c in features if c not in frame.columns]
    if missing:
        problems.append(f"{path}: missing column(s) {missing}: every domain (0 where unused) and every other feature "
                        "is required")
    if len(frame) == 0:
        problems.append(f"{path}: no rows")
    if problems:
        raise InputError(problems)
    import pandas as pd

    for column in features:
        values = pd.to_numeric(frame[column], errors="coerce")
        bad = values.isna().to_numpy()
        if bad.any():
            problems.append(f"{path}: column `{column}`: {_rows(bad)} not a number")
    if problems:
        raise InputError(problems)
    x = frame[domains].to_numpy(dtype=np.float64)
    outside = ((x < 0) | (x > 1)).any(axis=1)
    if outside.any():
        problems.append(f"{path}: proportions outside [0, 1] in {_rows(outside)}")
    total = x.sum(axis=1)
    tol = float(sim.schema["sum_tolerance"])
    off = np.abs(total - 1.0) > tol
    if off.any():
        first = int(np.flatnonzero(off)[0])
        problems.append(f"{path}: proportions must sum to 1 (within {tol:g}); {_rows(off)} do not, "
                        f"e.g. line {first + 2} sums to {total[first]:.6g}")
    if problems:
        raise InputError(problems)


def predict_frame(frame, sim: Simulator):
    """The input plus ``<target>`` (prediction) and ``spread:<target>`` (ensemble std) columns."""
    x = frame[sim.features].to_numpy(dtype=np.float64)
    pred, spread = sim.predict(x)
    out = frame.copy()
    for j, target in enumerate(sim.targets):
        out[target] = pred[:, j]
    for j, target in enumerate(sim.targets):
        out[f"spread:{target}"] = spread[:, j]
    return out


def simulator_dir(root: Path, profile: str, table: str) -> Path:
    from harness.compiler import find_stage

    stage, _ = find_stage(root, f"mixture_sim-{table}-simulator", profile)
    return root / stage.config.out_dir


def main(root: Path, profile: str, options: dict[str, Any]) -> int:
    import pandas as pd

    from harness.spec import SpecError

    table, source, target = options["table"], options["input"], options["output"]
    try:
        folder = simulator_dir(root, profile, table)
    except SpecError as exc:
        print(f"no table `{table}` in the {profile} profile of mixture_sim: " + "; ".join(exc.problems),
              file=sys.stderr)
        return EXIT_BAD_INPUT
    if not (folder / "schema.json").exists():
        print(f"{folder}: no saved simulator; run `dvc repro` (or `harness run mixture_sim-{table}-simulator`) "
              "first", file=sys.stderr)
        return EXIT_BAD_INPUT
    sim = load_simulator(folder)
    try:
        frame = pd.read_csv(source)
    except (OSError, ValueError) as exc:
        print(f"{source}: cannot read as CSV: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        check_input(frame, sim, source)
    except InputError as exc:
        print("\n".join(exc.problems), file=sys.stderr)
        return EXIT_BAD_INPUT
    out = predict_frame(frame, sim)
    write_csv(target, out)
    print(f"{target}: {len(out)} mixtures x {len(sim.targets)} targets predicted by the {sim.schema['regressor']} "
          f"simulator of table `{table}` (spread: std over {len(sim.members)} bootstrap members)")
    return 0
