"""``harness history FILE[:KEY-GLOB]``: every committed value of a result, and what changed between them.

For a metrics file (JSON or YAML) it walks ``git log`` of the file (oldest first), reads the file
at each commit (``git show``), flattens it to dotted keys (``mup.shift.log2``) and keeps the
commits where a selected value changed. Between two consecutive values it lists what changed in
the setup, as keys rather than text: every spec file (``specs/*.yaml``) and ``params.yaml`` is
read at both commits and compared key by key (``specs/scaling.yaml: transfer.base_width 32 -> 16``),
plus the code files (``stages/``, ``harness/``) that changed in between. So a result reached by
changing the setup until a goal was met shows each change beside each value.

Any other file (a report) is listed per commit that changed it, with the same setup changes.
"""

from __future__ import annotations

import fnmatch
import json
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

#: the setup whose changes are listed between two values
SETUP_GLOBS = ("specs/*.yaml", "specs/*.yml", "params.yaml")
#: code whose changed files are listed (names only)
CODE_DIRS = ("stages", "harness")
WORKTREE = "working tree"
_MISSING = object()


class HistoryError(Exception):
    pass


@dataclass
class Change:
    file: str
    key: str  # dotted; "" for the whole file (added or removed)
    old: Any
    new: Any

    def text(self) -> str:
        where = f"{self.file}: {self.key}" if self.key else self.file
        if self.old is _MISSING:
            return f"{where} added" + ("" if not self.key else f" = {_show(self.new)}")
        if self.new is _MISSING:
            return f"{where} removed" + ("" if not self.key else f" (was {_show(self.old)})")
        return f"{where} {_show(self.old)} -> {_show(self.new)}"


@dataclass
class Entry:
    commit: str  # full hash, or WORKTREE
    date: str
    subject: str
    values: dict[str, Any] | None  # None: the file is absent at this commit (or not a metrics file)
    changed_values: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    setup: list[Change] = field(default_factory=list)
    code: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"commit": self.commit, "date": self.date, "subject": self.subject,
                "values": _jsonable(self.values),
                "changed_values": {k: [_jsonable(o), _jsonable(n)] for k, (o, n) in self.changed_values.items()},
                "setup": [{"file": c.file, "key": c.key, "old": _jsonable(c.old), "new": _jsonable(c.new)}
                          for c in self.setup],
                "code": self.code}


@dataclass
class History:
    path: str
    pattern: str | None
    entries: list[Entry]
    commits_touching: int

    def text(self, max_setup: int = 20) -> str:
        sel = f" [{self.pattern}]" if self.pattern else ""
        kind = "value(s)" if any(e.values is not None for e in self.entries) else "version(s)"
        lines = [f"{self.path}{sel}: {len(self.entries)} {kind} in {self.commits_touching} commit(s) touching it"]
        for e in self.entries:
            short = e.commit[:7] if e.commit != WORKTREE else "(uncommitted)"
            lines.append(f"{short} {e.date[:10]} {e.subject}")
            if e.values is None:
                lines.append("    (file absent)")
            elif e.changed_values:
                for key, (old, new) in e.changed_values.items():
                    lines.append(f"    {key}: {_show(new)}" if old is _MISSING else
                                 f"    {key}: {_show(old)} -> {_show(new)}")
            shown = [c for c in e.setup if self.related(c.file)]
            for change in shown[:max_setup]:
                lines.append(f"    setup: {change.text()}")
            if len(shown) > max_setup:
                lines.append(f"    setup: ... {len(shown) - max_setup} more key(s)")
            others: dict[str, int] = {}
            for change in e.setup:
                if not self.related(change.file):
                    others[change.file] = others.get(change.file, 0) + 1
            for rel, count in sorted(others.items()):
                lines.append(f"    setup: {rel}: {count} key(s) changed (another study's spec; --json lists them)")
            parts = set(Path(self.path).with_suffix("").parts)
            mine = [c for c in e.code if not c.startswith("stages/") or c.split("/")[1] in parts]
            if mine:
                more = f" (+{len(mine) - 8} more)" if len(mine) > 8 else ""
                lines.append(f"    code: {', '.join(mine[:8])}{more}")
            if len(e.code) > len(mine):
                lines.append(f"    code: {len(e.code) - len(mine)} file(s) of other studies changed")
        return "\n".join(lines)

    def related(self, setup_file: str) -> bool:
        """Whether a setup file belongs to this result: params.yaml, or the spec named in its path
        (``specs/scaling.yaml`` for ``metrics/reference/scaling/...``); every spec when none is named."""
        parts = set(Path(self.path).with_suffix("").parts)
        stems = {Path(c.file).stem for e in self.entries for c in e.setup if c.file.startswith("specs/")}
        if not setup_file.startswith("specs/") or not (parts & stems):
            return True
        return Path(setup_file).stem in parts

    def as_dict(self) -> dict:
        return {"path": self.path, "pattern": self.pattern, "commits_touching": self.commits_touching,
                "entries": [e.as_dict() for e in self.entries]}


def _jsonable(v):
    return None if v is _MISSING else v


def _show(v: Any, width: int = 60) -> str:
    if v is _MISSING:
        return "(absent)"
    if isinstance(v, float):
        text = f"{v:.6g}"
    else:
        text = json.dumps(v, default=str) if not isinstance(v, str) else v
    return text if len(text) <= width else text[: width - 3] + "..."


def _git(root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    out = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True)
    if check and out.returncode != 0:
        raise HistoryError(f"git {' '.join(args)}: {out.stderr.strip()}")
    return out


def _read(root: Path, rev: str, path: str) -> str | None:
    """The file at ``rev`` (WORKTREE: on disk); None when absent."""
    if rev == WORKTREE:
        p = root / path
        return p.read_text() if p.is_file() else None
    out = _git(root, "show", f"{rev}:{path}", check=False)
    return out.stdout if out.returncode == 0 else None


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """Nested mappings to dotted keys; lists and scalars are leaves."""
    if isinstance(obj, dict):
        flat: dict[str, Any] = {}
        for k, v in obj.items():
            flat.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        if not obj and prefix:
            flat[prefix] = {}
        return flat
    return {prefix: obj}


def _parse(path: str, text: str) -> Any:
    if path.endswith(".json"):
        return json.loads(text)
    return yaml.safe_load(text)


def _is_metrics(path: str) -> bool:
    return path.endswith((".json", ".yaml", ".yml"))


def _select(flat: dict[str, Any], pattern: str | None) -> dict[str, Any]:
    if not pattern:
        return flat
    return {k: v for k, v in flat.items() if fnmatch.fnmatchcase(k, pattern)}


def _setup_files(root: Path, rev: str) -> set[str]:
    if rev == WORKTREE:
        return {str(p.relative_to(root)) for g in SETUP_GLOBS for p in root.glob(g) if p.is_file()}
    out = _git(root, "ls-tree", "-r", "--name-only", rev, "--", "specs", "params.yaml").stdout.split()
    return {p for p in out if any(fnmatch.fnmatchcase(p, g) for g in SETUP_GLOBS)}


def setup_changes(root: Path, old: str, new: str) -> list[Change]:
    """Changed keys of every spec file and params.yaml between two commits (YAML compared, not text)."""
    changes: list[Change] = []
    files_old, files_new = _setup_files(root, old), _setup_files(root, new)
    for rel in sorted(files_old | files_new):
        a, b = _read(root, old, rel), _read(root, new, rel)
        if a == b:
            continue
        if a is None or b is None:
            changes.append(Change(rel, "", _MISSING if a is None else "", _MISSING if b is None else ""))
            continue
        try:
            fa, fb = flatten(yaml.safe_load(a) or {}), flatten(yaml.safe_load(b) or {})
        except yaml.YAMLError as exc:
            changes.append(Change(rel, "(unparseable YAML)", "", str(exc).splitlines()[0]))
            continue
        for key in sorted(set(fa) | set(fb)):
            va, vb = fa.get(key, _MISSING), fb.get(key, _MISSING)
            if va != vb or (va is _MISSING) != (vb is _MISSING):
                changes.append(Change(rel, key, va, vb))
    return changes


def code_changes(root: Path, old: str, new: str) -> list[str]:
    """The .py files under stages/ and harness/ that differ between two commits."""
    args = ["diff", "--name-only", old] + ([] if new == WORKTREE else [new]) + ["--", *CODE_DIRS]
    return sorted(p for p in _git(root, *args).stdout.split() if p.endswith(".py"))


def split_target(target: str) -> tuple[str, str | None]:
    """``FILE[:KEY-GLOB]`` -> (file, glob or None)."""
    path, sep, pattern = target.partition(":")
    return path, (pattern or None) if sep else None


def history(root: Path, target: str, *, every_commit: bool = False, worktree: bool = True) -> History:
    """The committed values of ``target`` (``FILE[:KEY-GLOB]``), oldest first.

    ``every_commit``: one entry per commit touching the file, even when no selected value changed.
    ``worktree``: add an "(uncommitted)" entry when the file on disk differs from the last commit.
    """
    base = Path(os.path.abspath(root))
    top = Path(os.path.realpath(_git(base, "rev-parse", "--show-toplevel").stdout.strip()))
    path, pattern = split_target(target)
    full = Path(os.path.realpath(base / path))  # relative paths are relative to ``root`` (the cwd by default)
    try:
        path = full.relative_to(top).as_posix()
    except ValueError:
        raise HistoryError(f"{target}: outside the repository {top}") from None
    root = top
    log = _git(root, "log", "--reverse", "--format=%H%x09%cI%x09%s", "--", path).stdout.splitlines()
    commits = [line.split("\t", 2) for line in log if line.strip()]
    if not commits and not (root / path).exists():
        raise HistoryError(f"{path}: not in git history and not on disk")
    metrics = _is_metrics(path)
    if worktree and (root / path).exists():
        last = _read(root, commits[-1][0], path) if commits else None
        if (root / path).read_text() != last:
            commits.append([WORKTREE, "", "(uncommitted change on disk)"])
    entries: list[Entry] = []
    prev_values: dict[str, Any] | None = None
    matched_any = False
    for sha, date, subject in commits:
        text = _read(root, sha, path)
        values: dict[str, Any] | None = None
        if metrics and text is not None:
            try:
                values = _select(flatten(_parse(path, text)), pattern)
            except (json.JSONDecodeError, yaml.YAMLError) as exc:
                values = {"(unparseable)": str(exc).splitlines()[0]}
            matched_any = matched_any or bool(values)
        if metrics:
            if values is None and prev_values is None and entries:
                continue
            old = prev_values or {}
            new = values or {}
            changed = {k: (old.get(k, _MISSING), new.get(k, _MISSING)) for k in sorted(set(old) | set(new))
                       if old.get(k, _MISSING) != new.get(k, _MISSING)}
            if not changed and values is not None and entries and not every_commit:
                continue  # the file changed, the selected values did not
            if not entries and values is not None and not values and pattern:
                continue  # no selected key yet
        else:
            changed = {}
        entry = Entry(sha, date, subject, values if metrics else None, changed)
        if entries:
            entry.setup = setup_changes(root, entries[-1].commit, sha)
            entry.code = code_changes(root, entries[-1].commit, sha)
        entries.append(entry)
        prev_values = values
    if metrics and pattern and not matched_any:
        raise HistoryError(f"{path}: no key matches `{pattern}` in any committed version")
    return History(path, pattern, entries, sum(1 for c in commits if c[0] != WORKTREE))


def markdown(hist: History, max_setup: int = 8) -> str:
    """A short "How we got here" section for a report: one bullet per value, with its setup changes."""
    lines = ["## How we got here", "",
             f"Every committed value of `{hist.path}`{f' (`{hist.pattern}`)' if hist.pattern else ''}, "
             "oldest first, with what changed in the specs, params.yaml and code before it "
             "(`harness history` prints the full list):", ""]
    for e in hist.entries:
        vals = ", ".join(f"{k} {_show(n)}" for k, (_, n) in e.changed_values.items()) or "unchanged"
        short = e.commit[:7] if e.commit != WORKTREE else "uncommitted"
        lines.append(f"- `{short}` {e.date[:10]} {e.subject}: {vals}")
        setup = [c.text() for c in e.setup[:max_setup]]
        if len(e.setup) > max_setup:
            setup.append(f"... {len(e.setup) - max_setup} more")
        if setup:
            lines.append(f"  - setup: {'; '.join(setup)}")
        if e.code:
            lines.append(f"  - code: {len(e.code)} file(s) ({', '.join(e.code[:4])}{', ...' if len(e.code) > 4 else ''})")
    return "\n".join(lines) + "\n"
