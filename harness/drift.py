"""Drift check: do reproduced metrics equal the committed ones?

Why not ``git diff --exit-code metrics/``: a CPU with other SIMD units may round the last bits of a
float differently, and 60 training steps can carry that to the 7th significant digit. Metrics are
compared numerically with a relative tolerance (default 1e-4: far below any effect a study
reports, far above cross-CPU rounding); anything else (a missing file, a new key or file, a
changed string or boolean) is drift. Stage processes pin their CPU kernels
(:func:`harness.runtime.pin_cpu_kernels`), so the tolerance only has to absorb what is left.

A metric that is legitimately sensitive (say, the best of near-equal candidates) gets its own
tolerance in its study's spec (``drift_tolerance:``, see :class:`harness.spec.StudySpec`); nothing
is loosened globally, and every loosened comparison is reported.

A check that cannot run is an error, never a pass: an unknown revision, no project root, or no
committed metric files under the revision raise :class:`DriftError` (the CLI exits 2).
"""

from __future__ import annotations

import fnmatch
import json
import math
import posixpath
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class DriftError(Exception):
    """The drift check could not be carried out (bad revision, no project, nothing to compare)."""


@dataclass
class Tolerance:
    pattern: str  # "<metrics file glob>:<key glob>"
    rtol: float
    source: str  # the spec file that declared it


@dataclass
class Movement:
    rel: str
    key: str
    old: Any
    new: Any
    rtol: float

    @property
    def relative(self) -> float:
        return relative_change(self.old, self.new)


@dataclass
class DriftReport:
    problems: list[str] = field(default_factory=list)
    files: int = 0
    compared: int = 0
    #: pattern -> (rtol, source, comparisons it governed)
    loosened: dict[str, tuple[float, str, int]] = field(default_factory=dict)
    #: not_reproducible pattern -> values it kept out of the comparison
    skipped: dict[str, int] = field(default_factory=dict)
    #: files with at least one problem, in the order found
    drifted_files: list[str] = field(default_factory=list)
    #: every value that moved beyond its tolerance
    moved: list["Movement"] = field(default_factory=list)

    def __iter__(self):  # a report reads like the list of problems it used to be
        return iter(self.problems)

    def __len__(self) -> int:
        return len(self.problems)

    def __bool__(self) -> bool:
        return bool(self.problems)

    def tolerance_lines(self) -> list[str]:
        return [f"tolerance {rtol:g} for {pattern} ({source}): {n} comparison(s)"
                for pattern, (rtol, source, n) in sorted(self.loosened.items())]


def _git(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)


def project_root(start: Path | None = None) -> Path:
    """The project containing ``start`` (default: cwd), from any subdirectory.

    The git toplevel when it holds ``dvc.yaml``; else the nearest ancestor that is a DVC root
    (``.dvc/``) or holds both ``dvc.yaml`` and ``specs/`` (``profiles/<p>/dvc.yaml`` is no root).
    """
    start = (start or Path.cwd()).resolve()
    top = _git(start, "rev-parse", "--show-toplevel")
    if top.returncode == 0 and (Path(top.stdout.strip()) / "dvc.yaml").is_file():
        return Path(top.stdout.strip())
    for folder in (start, *start.parents):
        if (folder / ".dvc").is_dir() or ((folder / "dvc.yaml").is_file() and (folder / "specs").is_dir()):
            return folder
    raise DriftError(f"{start}: not inside a harness project (no dvc.yaml at the git toplevel or above)")


def resolve_rev(root: Path, rev: str) -> str:
    """The commit ``rev`` names; :class:`DriftError` when it names none (typo, past the history)."""
    if _git(root, "rev-parse", "--git-dir").returncode != 0:
        raise DriftError(f"{root}: not a git repository, so there are no committed metrics to compare with")
    proc = _git(root, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{rev}^{{commit}}")
    if proc.returncode != 0 or not proc.stdout.strip():
        raise DriftError(f"unknown revision {rev!r}: not a commit of {root} "
                         "(mistyped, or further back than the history; try `git log --oneline`)")
    return proc.stdout.strip()


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


def _differs(old: Any, new: Any, rtol: float) -> bool:
    if isinstance(old, bool) or isinstance(new, bool) or not isinstance(old, (int, float)) \
            or not isinstance(new, (int, float)):
        return old != new
    if math.isnan(old) and math.isnan(new):
        return False
    return not math.isclose(old, new, rel_tol=rtol, abs_tol=rtol * 1e-3)


def spec_tolerances(root: Path) -> list[Tolerance]:
    """Every ``drift_tolerance`` the project's specs declare (validated by the spec models)."""
    if not (root / "specs").is_dir():
        return []
    from harness.spec import load_all

    _, loaded = load_all(root)
    return [Tolerance(pattern, rtol, str(item.path))
            for item in loaded for pattern, rtol in (getattr(item.spec, "drift_tolerance", None) or {}).items()]


@dataclass
class NotReproducible:
    """Metrics a spec declares chaotic across machines (``not_reproducible:``): never compared, never a result."""

    entries: list[tuple[str, str, str]] = field(default_factory=list)  # (pattern, reason, spec file)

    def match(self, rel: str, key: str) -> tuple[str, str] | None:
        """(pattern, reason) of the first declaration naming ``<rel>:<key>``; ``None`` if none does."""
        name = f"{rel}:{key}"
        return next(((p, r) for p, r, _ in self.entries if fnmatch.fnmatchcase(name, p)), None)

    def reason(self, rel: str, key: str) -> str | None:
        found = self.match(rel, key)
        return found[1] if found else None

    def pop_declared(self, rel: str, old: dict[str, Any], new: dict[str, Any]) -> list[tuple[str, str, str, Any, Any]]:
        """Take the declared keys out of both flattened files: (key, pattern, reason, old, new) each."""
        taken = []
        for key in sorted(set(old) | set(new)):
            found = self.match(rel, key)
            if found:
                taken.append((key, *found, old.pop(key, None), new.pop(key, None)))
        return taken


def declared_not_reproducible(root: Path) -> NotReproducible:
    """Every ``not_reproducible`` pattern the project's specs declare, with its reason."""
    if not (root / "specs").is_dir():
        return NotReproducible()
    from harness.spec import load_all

    _, loaded = load_all(root)
    return NotReproducible([(pattern, reason, str(item.path)) for item in loaded
                            for pattern, reason in (getattr(item.spec, "not_reproducible", None) or {}).items()])


def _tolerance_for(rel: str, key: str, tolerances: list[Tolerance]) -> Tolerance | None:
    """The declared tolerance for ``<rel>:<key>``; the loosest one where several match."""
    name = f"{rel}:{key}"
    matches = [t for t in tolerances if fnmatch.fnmatchcase(name, t.pattern)]
    return max(matches, key=lambda t: t.rtol) if matches else None


def find_drift(root: Path, metrics_dir: str = "metrics", rev: str = "HEAD", rtol: float = 1e-4,
               tolerances: list[Tolerance] | None = None,
               declared: NotReproducible | None = None) -> DriftReport:
    """Compare ``metrics_dir`` (JSON files) in the working tree with ``rev``; the problems found.

    ``tolerances``: per-metric overrides of ``rtol``; ``None`` reads them from the specs.
    Raises :class:`DriftError` when the comparison cannot be made.
    """
    root = Path(root)
    commit = resolve_rev(root, rev)
    if tolerances is None:
        tolerances = spec_tolerances(root)
    if declared is None:
        declared = declared_not_reproducible(root)
    listing = _git(root, "ls-tree", "-r", "--name-only", commit, "--", metrics_dir)
    if listing.returncode != 0:
        raise DriftError(f"git ls-tree {rev} {metrics_dir} failed: {listing.stderr.strip()}")
    committed = sorted(rel for rel in listing.stdout.splitlines() if rel.endswith(".json"))
    if not committed:
        raise DriftError(f"no metric files (*.json) under {metrics_dir}/ at {rev}: nothing to compare, "
                         "which is not a pass (wrong --rev, or run from outside the project?)")

    report = DriftReport(files=len(committed))
    # reproduced files git does not ignore and the revision lacks: a stage nobody committed
    untracked = _git(root, "ls-files", "--others", "--exclude-standard", "--", metrics_dir).stdout.splitlines()
    tracked_now = _git(root, "ls-files", "--", metrics_dir).stdout.splitlines()
    on_disk = {rel for rel in untracked + tracked_now if rel.endswith(".json") and (root / rel).exists()}
    for rel in sorted(on_disk - set(committed)):
        report.problems.append(f"{rel}: reproduced but not committed at {rev}")
    for rel in committed:
        path = root / rel
        if not path.exists():
            report.problems.append(f"{rel}: committed but not reproduced")
            report.drifted_files.append(rel)
            continue
        shown = _git(root, "show", f"{commit}:./{rel}")
        try:
            old = _flatten(json.loads(shown.stdout))
        except json.JSONDecodeError as exc:
            report.problems.append(f"{rel}: committed file is not JSON ({exc})")
            continue
        try:
            new = _flatten(json.loads(path.read_text()))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            report.problems.append(f"{rel}: reproduced file is not JSON ({exc})")
            continue
        for _, pattern, _, _, _ in declared.pop_declared(rel, old, new):
            report.skipped[pattern] = report.skipped.get(pattern, 0) + 1
        before = len(report.problems)
        compare_values(rel, old, new, tolerances, rtol, report)
        if len(report.problems) > before:
            report.drifted_files.append(rel)
    return report


def compare_values(rel: str, old: dict[str, Any], new: dict[str, Any], tolerances: list[Tolerance],
                   rtol: float, report: DriftReport, labels: tuple[str, str] = ("committed", "reproduced")) -> None:
    """Compare two flattened metric files key by key into ``report`` (the one comparison rule)."""
    for key in sorted(set(old) | set(new)):
        if key not in new or key not in old:
            report.problems.append(f"{rel}: {key} {'missing' if key not in new else 'new'}")
            continue
        report.compared += 1
        tol = _tolerance_for(rel, key, tolerances)
        limit = tol.rtol if tol else rtol
        if tol:
            r, src, n = report.loosened.get(tol.pattern, (tol.rtol, tol.source, 0))
            report.loosened[tol.pattern] = (r, src, n + 1)
        if _differs(old[key], new[key], limit):
            how = f" (rtol {limit:g} from {tol.source})" if tol else ""
            report.problems.append(f"{rel}: {key} {labels[0]} {old[key]!r}, {labels[1]} {new[key]!r}{how}")
            report.moved.append(Movement(rel, key, old[key], new[key], limit))


def relative_change(old: Any, new: Any) -> float:
    """|new - old| / max(|old|, tiny): inf for a changed non-number, 0 for equal values."""
    if isinstance(old, bool) or isinstance(new, bool) or not isinstance(old, (int, float)) \
            or not isinstance(new, (int, float)):
        return 0.0 if old == new else math.inf
    if math.isnan(old) and math.isnan(new):
        return 0.0
    if math.isnan(old) or math.isnan(new) or math.isinf(old) or math.isinf(new):
        return 0.0 if old == new else math.inf
    return abs(new - old) / max(abs(old), 1e-12)


def load_flat(path: Path) -> dict[str, Any]:
    return _flatten(json.loads(Path(path).read_text()))


def metric_producers(root: Path) -> dict[str, tuple[str, str]]:
    """Metrics file -> (profile, stage) for every pipeline of the project (from the dvc.yaml files)."""
    import yaml

    from harness.study import DEFAULT_PROFILE

    out: dict[str, tuple[str, str]] = {}
    pipelines = [(DEFAULT_PROFILE, root / "dvc.yaml")] + [
        (p.parent.name, p) for p in sorted((root / "profiles").glob("*/dvc.yaml"))]
    for profile, path in pipelines:
        if not path.is_file():
            continue
        doc = yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) or {}
        prefix = "" if path.parent == root else path.parent.relative_to(root).as_posix() + "/"
        for stage, body in (doc.get("stages") or {}).items():
            for entry in (body or {}).get("metrics") or []:
                rel = next(iter(entry)) if isinstance(entry, dict) else entry
                out[posixpath.normpath(prefix + rel)] = (profile, stage)
    return out


def machine_notes(root: Path, report: DriftReport, rev: str = "HEAD") -> list[str]:
    """For each drifted file: the machine that committed it vs the one that reproduced it."""
    from harness.compiler import machines_dir
    from harness.machine import machine_differences

    producers = metric_producers(root)
    commit = resolve_rev(root, rev)
    lines: list[str] = []
    seen: set[tuple[str, str]] = set()
    for rel in report.drifted_files:
        owner = producers.get(rel)
        if owner is None or owner in seen:
            continue
        seen.add(owner)
        profile, stage = owner
        record = f"{machines_dir(profile)}{stage}.json"
        shown = _git(root, "show", f"{commit}:./{record}")
        old = json.loads(shown.stdout) if shown.returncode == 0 and shown.stdout.strip() else None
        new = json.loads((root / record).read_text()) if (root / record).is_file() else None
        diffs = machine_differences(old, new)
        if old is None or new is None:
            lines.append(f"{stage}: machine unknown: {diffs[0] if diffs else 'no machine records'}")
        elif diffs:
            lines.append(f"{stage}: other machine: " + "; ".join(diffs))
        else:
            lines.append(f"{stage}: same machine, kernels, threads and libraries as the committed run "
                         "(a real change in code, data or params?)")
    return lines
