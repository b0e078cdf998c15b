"""A memo for ``harness compile --check``: skip the compile when none of its inputs changed.

Why: the check is run by CI, by hooks and by hand after every edit; compiling means importing
every study's models and planning every profile (about a second of CPU), while the answer only
depends on files whose state is cheap to read. The key covers everything the compile reads:
params.yaml, specs/*.yaml and every pipeline file (by content), every ``.py`` file of the
project's ``harness`` and ``stages`` trees and of the packages Python would import them from (by
path, size and mtime, since code deps are derived from imports), the interpreter, and
``$HARNESS_STUDY_PATH``. A key is stored only after a check found everything current, so a
stale pipeline is never answered from the memo. Imports nothing heavy.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import sys
from pathlib import Path

CACHE_FILE = ".harness/cache/compile-check.json"


def _package_dirs(name: str) -> list[Path]:
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return []
    return [Path(p) for p in (spec.submodule_search_locations or [])] if spec else []


def check_key(root: Path) -> str:
    """Hash of every input of ``harness compile --check`` for the project at ``root``."""
    root = Path(root).resolve()
    h = hashlib.sha256()
    h.update(f"{sys.version}|{sys.prefix}|{os.environ.get('HARNESS_STUDY_PATH', '')}".encode())
    content = [root / "params.yaml", *sorted((root / "specs").glob("*.yaml")), root / "dvc.yaml",
               *sorted((root / "profiles").glob("*/dvc.yaml")),
               # each profile's compiled kinds and resources (harness.dag.resources.SIDECAR)
               root / "dvc.resources.json", *sorted((root / "profiles").glob("*/dvc.resources.json"))]
    for path in content:
        h.update(str(path).encode())
        try:
            h.update(hashlib.sha256(path.read_bytes()).digest())
        except OSError:
            h.update(b"<absent>")
    trees = {root / "harness", root / "stages", *_package_dirs("harness"), *_package_dirs("stages")}
    for extra in os.environ.get("HARNESS_STUDY_PATH", "").split(os.pathsep):
        if extra:
            trees.add(Path(extra))
    for tree in sorted(trees):
        for dirpath, dirnames, filenames in os.walk(tree):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith((".", "__pycache__")))
            for name in sorted(filenames):
                if name.endswith(".py"):
                    st = os.stat(os.path.join(dirpath, name))
                    h.update(f"{dirpath}/{name}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()


def is_known_current(root: Path, key: str) -> bool:
    try:
        return json.loads((Path(root) / CACHE_FILE).read_text()).get("key") == key
    except (OSError, ValueError, AttributeError):
        return False


def remember_current(root: Path, key: str) -> None:
    """Record that the pipelines were current for ``key`` (best effort: a read-only tree is fine)."""
    path = Path(root) / CACHE_FILE
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"key": key}) + "\n")
        os.replace(tmp, path)
    except OSError:
        pass
