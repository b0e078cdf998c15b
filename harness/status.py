"""Why is a stage stale? ``harness status`` answers in the user's terms.

``dvc status`` says "modified: params.yaml" or "changed deps"; a researcher wants to read
``param_alloc-shapes: knob glu 2.66 -> 3.0`` or ``param_alloc-eval-top1: harness/trainer.py
changed (evaluate)``. This module combines three sources:

- ``dvc status --json`` for what DVC itself sees (params, files, outputs, commands);
- the stage configs the specs compile to *now*, hashed and compared with the config file hash
  in ``dvc.lock``, so a spec edit is reported before ``check-params`` has rewritten the file;
  the old config comes from the DVC cache (check-params' outputs are cached), so the reason
  names the config values that changed;
- for a changed code file, its recorded version from git history (matched by the md5 in
  ``dvc.lock``), diffed per top-level function and class with :mod:`ast`.

``committed`` mode is for results CI does not rerun (the ``reference`` profile): outputs absent
from a clean clone's cache are expected, and an upstream output counts as unchanged when the
lock's own records agree; what remains is exactly "the code, params, data or spec changed".
"""

from __future__ import annotations

import ast
import hashlib
import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


@dataclass
class StageStatus:
    stage: str
    reasons: list[str] = field(default_factory=list)
    #: stale only because an upstream is (it reruns if that upstream's outputs change)
    downstream_only: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"stage": self.stage, "reasons": self.reasons}


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def _read_yaml(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text()) if path.exists() else {}


def _flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for k, v in obj.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out or {prefix.rstrip("."): {}}
    if isinstance(obj, list) and obj and all(isinstance(v, dict) for v in obj):
        out = {}
        for i, v in enumerate(obj):
            out.update(_flatten(v, f"{prefix}{i}."))
        return out
    return {prefix.rstrip("."): obj}


def _short(value: Any, limit: int = 60) -> str:
    text = json.dumps(value, sort_keys=True) if not isinstance(value, str) else value
    return text if len(text) <= limit else text[: limit - 3] + "..."


def config_changes(old: dict[str, Any], new: dict[str, Any], limit: int = 4) -> list[str]:
    """``["eval.latency_repeats 3 -> 5", ...]`` between two stage configs."""
    a, b = _flatten(old), _flatten(new)
    changes = []
    for key in sorted(set(a) | set(b)):
        if a.get(key, "<absent>") != b.get(key, "<absent>"):
            changes.append(f"{key} {_short(a.get(key, '<absent>'))} -> {_short(b.get(key, '<absent>'))}")
    if len(changes) > limit:
        changes = changes[:limit] + [f"(+{len(changes) - limit} more)"]
    return changes


def changed_definitions(old_src: bytes, new_src: bytes) -> list[str]:
    """Names of top-level functions/classes (and module-level code) that differ."""
    def defs(src: bytes) -> dict[str, str]:
        try:
            tree = ast.parse(src)
        except SyntaxError:
            return {"<syntax error>": ""}
        found: dict[str, str] = {}
        rest = []
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                found[node.name] = ast.dump(node, include_attributes=False)
            else:
                rest.append(ast.dump(node, include_attributes=False))
        found["<module level>"] = "\n".join(rest)
        return found

    a, b = defs(old_src), defs(new_src)
    names = [n for n in sorted(set(a) | set(b)) if a.get(n) != b.get(n)]
    return names or ["comments/formatting only"]


class History:
    """Old versions of files, found in git by the md5 ``dvc.lock`` recorded."""

    def __init__(self, root: Path, depth: int = 30):
        self.root, self.depth = root, depth

    def version(self, rel: str, md5: str) -> bytes | None:
        revs = subprocess.run(["git", "log", f"-{self.depth}", "--format=%H", "--", rel], cwd=self.root,
                              capture_output=True, text=True).stdout.split()
        for rev in ["HEAD", *revs]:
            blob = subprocess.run(["git", "show", f"{rev}:{rel}"], cwd=self.root, capture_output=True)
            if blob.returncode == 0 and _md5(blob.stdout) == md5:
                return blob.stdout
        return None


def _cache_object(root: Path, md5: str) -> bytes | None:
    path = root / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:]
    return path.read_bytes() if path.is_file() else None


_COMMITTED: dict[tuple[str, str], dict[str, bytes]] = {}


def committed_configs(root: Path, profile: str) -> dict[str, bytes]:
    """Stage config files as the committed specs and params (git HEAD) compile to.

    Where the DVC cache lacks an old config (a fresh clone), this recovers it: when its md5
    equals the lock's record, the committed spec is what produced the committed result.
    """
    import tempfile

    from harness.compiler import config_payload, plan_profile

    key = (str(root), profile)
    if key in _COMMITTED:
        return _COMMITTED[key]
    found: dict[str, bytes] = {}
    files = subprocess.run(["git", "ls-tree", "-r", "--name-only", "HEAD", "--", "specs", "params.yaml"],
                           cwd=root, capture_output=True, text=True).stdout.split()
    if files:
        with tempfile.TemporaryDirectory() as tmp:
            for rel in files:
                blob = subprocess.run(["git", "show", f"HEAD:{rel}"], cwd=root, capture_output=True)
                (Path(tmp) / rel).parent.mkdir(parents=True, exist_ok=True)
                (Path(tmp) / rel).write_bytes(blob.stdout)
            try:
                found = {s.name: config_payload(s).encode() for s, _ in plan_profile(Path(tmp), profile)}
            except Exception:  # noqa: BLE001 - the committed spec no longer plans: no old values
                found = {}
    _COMMITTED[key] = found
    return found


def _lock_entries(lock: dict[str, Any], section: str, stage: str) -> dict[str, dict[str, Any]]:
    return {e["path"]: e for e in lock.get("stages", {}).get(stage, {}).get(section, []) or []}


def stage_statuses(root: Path, profile: str = "smoke", committed: bool = False,
                   targets: list[str] | None = None) -> list[StageStatus]:
    """Every stale stage of a profile's pipeline with its reasons, in pipeline order."""
    from harness.compiler import CHECK_STAGE, config_file, config_payload, pipeline_file, plan_profile
    from harness.spec import load_params

    pipe_rel = pipeline_file(profile)
    pipe = _read_yaml(root / pipe_rel)
    lock_path = (root / pipe_rel).with_name("dvc.lock")
    lock = _read_yaml(lock_path)
    stages: dict[str, Any] = pipe.get("stages", {})
    wdir = root / (Path(pipe_rel).parent) / next((s.get("wdir") for s in stages.values() if s.get("wdir")), ".")
    wdir = wdir.resolve()
    locked = lock.get("stages", {})
    params_now = load_params(root / "params.yaml")
    history = History(root)

    out_owner: dict[str, str] = {}
    for name, entry in stages.items():
        for item in (entry.get("outs") or []) + (entry.get("metrics") or []) + (entry.get("plots") or []):
            out_owner[item if isinstance(item, str) else next(iter(item))] = name

    planned = {s.name: s for s, _ in plan_profile(root, profile)}
    dvc_view = _dvc_status(root, pipe_rel)
    result: dict[str, StageStatus] = {}

    def add(stage: str, reason: str) -> None:
        status = result.setdefault(stage, StageStatus(stage))
        if reason not in status.reasons:
            status.reasons.append(reason)

    for name, entry in stages.items():
        if targets and name not in targets:
            continue
        if name not in locked:
            add(name, "never run (not in the lock)")
            continue
        # 1. the stage's config, as the specs compile it now
        if name in planned:
            rel = config_file(profile, name)
            new_text = config_payload(planned[name])
            recorded = _lock_entries(lock, "deps", name).get(rel, {}).get("md5")
            if recorded and recorded != _md5(new_text.encode()):
                old_raw = _cache_object(root, recorded)
                if old_raw is None and (wdir / rel).is_file() and _md5((wdir / rel).read_bytes()) == recorded:
                    old_raw = (wdir / rel).read_bytes()
                if old_raw is None:
                    old_raw = committed_configs(root, profile).get(name)
                    old_raw = old_raw if old_raw is not None and _md5(old_raw) == recorded else None
                if old_raw is not None:
                    old_doc, new_doc = json.loads(old_raw), json.loads(new_text)
                    for change in config_changes(old_doc.get("config", {}), new_doc.get("config", {})):
                        add(name, f"spec value {change}")
                    if old_doc.get("func") != new_doc.get("func"):
                        add(name, f"stage function {old_doc.get('func')} -> {new_doc.get('func')}")
                else:
                    add(name, "spec values changed (old config not in the cache)")
        # 2. what DVC sees
        for change in dvc_view.get(name, []):
            if not isinstance(change, dict):
                if change == "always changed":
                    add(name, "always runs")
                continue
            if "changed command" in change:
                add(name, "command changed")
            for path, what in (change.get("changed deps") or {}).items():
                if isinstance(what, dict):  # params file: {knob: "modified"}
                    for knob, kind in what.items():
                        old = (locked[name].get("params", {}).get(path, {}) or {}).get(knob, "<unset>")
                        new = params_now.get(knob, "<unset>")
                        add(name, f"knob {knob} {_short(old)} -> {_short(new)}" if kind == "modified"
                            else f"knob {knob} {kind}")
                    continue
                if path == config_file(profile, name):
                    continue  # reported from the config itself (step 1), as spec values
                _file_reason(root, wdir, name, path, what, lock, out_owner, locked, history, committed, add)
            for path, what in (change.get("changed outs") or {}).items():
                if committed and what in ("deleted", "not in cache"):
                    continue
                add(name, f"output {path} {'missing' if what == 'deleted' else what}")
    # 3. what will rerun after a stale upstream, if that upstream's outputs come out different
    changed = True
    while changed:
        changed = False
        for name, entry in stages.items():
            if name in result or (targets and name not in targets):
                continue
            owners = {_owner_of(d, out_owner) for d in entry.get("deps") or []}
            ups = sorted(o for o in owners if o in result and o not in (name, CHECK_STAGE))
            if ups:
                add(name, f"may rerun: upstream {', '.join(ups)} stale")
                result[name].downstream_only = True
                changed = True
    order = list(stages)
    return sorted(result.values(), key=lambda s: order.index(s.stage) if s.stage in order else len(order))


def _owner_of(path: str, out_owner: dict[str, str]) -> str | None:
    """The stage whose output is ``path``, or a directory holding it (a sweep writes a folder;
    a later stage reads one file of it)."""
    if path in out_owner:
        return out_owner[path]
    parts = path.split("/")
    for end in range(len(parts) - 1, 0, -1):
        owner = out_owner.get("/".join(parts[:end]))
        if owner:
            return owner
    return None


def _file_reason(root, wdir, name, path, what, lock, out_owner, locked, history, committed, add) -> None:
    owner = _owner_of(path, out_owner)
    if owner and owner != name:
        if committed:
            theirs = {e["path"]: e.get("md5") for e in (locked.get(owner, {}).get("outs") or [])}
            mine = _lock_entries(lock, "deps", name).get(path, {}).get("md5")
            if mine is not None and theirs.get(path) == mine:
                return  # the lock is self-consistent; the file is just not in this clone
            if path not in theirs and what == "deleted":
                # a file inside the upstream's output folder, absent from this clone: the lock
                # records only the folder's hash, and the upstream's own status says if it is stale
                return
        add(name, f"upstream {owner} output {path} {'missing' if what == 'deleted' else 'changed'}")
        return
    if what == "deleted":
        add(name, f"{path} missing")
        return
    if path.endswith(".py") and what == "modified":
        recorded = _lock_entries(lock, "deps", name).get(path, {}).get("md5")
        old = history.version(path, recorded) if recorded else None
        new_file = wdir / path
        if old is not None and new_file.is_file():
            add(name, f"{path} changed ({', '.join(changed_definitions(old, new_file.read_bytes()))})")
        else:
            add(name, f"{path} changed")
        return
    add(name, f"{path} {what}")


def _dvc_status(root: Path, pipeline: str) -> dict[str, Any]:
    from harness.dag.dvcgraph import dvc_executable

    proc = subprocess.run([dvc_executable(), "status", "--json", pipeline], cwd=root, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"dvc status failed: {proc.stderr.strip()[-500:]}")
    data = json.loads(proc.stdout or "{}")
    # subdirectory pipelines are keyed "profiles/x/dvc.yaml:stage"
    return {key.rpartition(":")[2] if ":" in key else key: value for key, value in data.items()}


def format_statuses(statuses: list[StageStatus], show_downstream: bool = True) -> str:
    shown = [s for s in statuses if show_downstream or not s.downstream_only]
    if not shown:
        return "every stage is up to date"
    return "\n".join(f"{s.stage}: {'; '.join(s.reasons)}" for s in shown)
