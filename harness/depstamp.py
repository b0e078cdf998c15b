"""Which inputs a stage ran with: stat stamps of its declared deps, taken when it starts.

Why: DVC hashes a stage's deps when it *records* the stage, not when it starts it. A code file,
config or data file edited while the stage runs (or, under ``harness repro``, between the end of
the stage and its recording, which waits for DVC's plan order) would be recorded as the version
that ran: a stale result served as fresh. So ``harness run`` stamps the stage's deps (and
params.yaml) as it starts; it refuses to finish when one changed during the run, and
:func:`harness.dag.dvcgraph.record` refuses to record a stage whose deps changed since its start.
Stamps are ``(mtime_ns, size)`` per file: an edit always changes them; a rewrite with the same
bytes (``dvc checkout``) may too, and then the stage is merely rerun.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

PARAMS_FILE = "params.yaml"


def stage_deps(root: Path, name: str, profile: str) -> list[Path]:
    """The deps ``dvc.yaml`` declares for ``name`` (absolute), plus params.yaml when it reads knobs."""
    import yaml

    from harness.compiler import pipeline_file

    pipeline = root / pipeline_file(profile)
    try:
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        stage = (yaml.load(pipeline.read_text(encoding="utf-8"), Loader=loader) or {})["stages"][name]
    except (OSError, KeyError, TypeError, yaml.YAMLError):
        return []  # a stage not in the compiled pipeline (run by hand): nothing DVC would record
    base = pipeline.parent / stage.get("wdir", ".")
    deps = [base / str(d) for d in stage.get("deps", [])]
    if stage.get("params"):
        deps.append(base / PARAMS_FILE)
    return deps


def stamp(paths: list[Path]) -> dict[str, list[int] | None]:
    """``{file: [mtime_ns, size]}`` for every file under ``paths`` (``None``: missing)."""
    out: dict[str, list[int] | None] = {}
    for path in paths:
        if path.is_dir():
            for folder, dirs, files in os.walk(path):
                dirs.sort()
                for f in sorted(files):
                    _one(Path(folder) / f, out)
        else:
            _one(path, out)
    return out


def _one(path: Path, out: dict[str, list[int] | None]) -> None:
    try:
        st = path.stat()
        out[str(path)] = [st.st_mtime_ns, st.st_size]
    except OSError:
        out[str(path)] = None


def _file(root: Path, name: str, profile: str) -> Path:
    from harness.compiler import stamps_dir

    return root / stamps_dir(profile) / f"{name.replace('/', '_')}.json"


def record_start(root: Path, name: str, profile: str) -> dict[str, list[int] | None]:
    """Stamp the stage's deps now and keep the stamps beside the traces; returns them."""
    deps = stage_deps(root, name, profile)
    stamps = stamp(deps)
    path = _file(root, name, profile)
    path.parent.mkdir(parents=True, exist_ok=True)
    # a per-process name: the ranks of a torchrun group all stamp the same stage at once
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    # the dep list is kept too: the recorder re-stamps it without re-parsing dvc.yaml per stage
    tmp.write_text(json.dumps({"deps": [str(d) for d in deps], "stamps": stamps}) + "\n")
    os.replace(tmp, path)
    return stamps


def changed(before: dict[str, list[int] | None], after: dict[str, list[int] | None], root: Path) -> list[str]:
    """Files (relative to ``root``) added, removed or modified between two stampings."""
    names = sorted(set(before) | set(after))
    return [os.path.relpath(n, root) for n in names if before.get(n) != after.get(n)]


def changed_since_start(root: Path, name: str, profile: str) -> list[str] | None:
    """Deps that changed since the stage's last ``harness run`` started; ``None``: no stamp."""
    try:
        saved = json.loads(_file(root, name, profile).read_text())
        deps, before = [Path(d) for d in saved["deps"]], saved["stamps"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return changed(before, stamp(deps), root)


def profile_of(dvcyaml: str) -> str:
    """The profile a pipeline file belongs to (``profiles/<p>/dvc.yaml`` -> p; else the default)."""
    from harness.study import DEFAULT_PROFILE

    parts = Path(dvcyaml).parts
    return parts[1] if len(parts) == 3 and parts[0] == "profiles" and parts[2] == "dvc.yaml" else DEFAULT_PROFILE
