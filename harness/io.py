"""Atomic outputs: write to a temporary sibling, then rename.

Why: DVC hashes and caches whatever a stage leaves at its output paths. A stage killed halfway
through a plain ``open(...).write`` would leave a truncated file that the next ``dvc commit``
could cache as if it were real. ``os.replace`` within one directory is atomic on POSIX, so a
reader sees either the old artifact, nothing, or the complete new one.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; on success rename it onto ``target``.

    Works for files and directories: the caller creates whatever it likes at the yielded path.
    On an exception the temporary is removed and ``target`` is left untouched.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    inner = tmp / target.name
    try:
        yield inner
        if not inner.exists():
            raise FileNotFoundError(f"stage produced nothing at {target}")
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif target.exists() or target.is_symlink():
            target.unlink()
        os.replace(inner, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_text(target: str | Path, text: str) -> Path:
    with atomic_path(target) as tmp:
        tmp.write_text(text)
    return Path(target)


def write_json(target: str | Path, data: Any) -> Path:
    """JSON with sorted keys and a trailing newline, so identical results are identical bytes."""
    return write_text(target, json.dumps(_jsonable(data), indent=2, sort_keys=True) + "\n")


def write_npy(target: str | Path, array: np.ndarray) -> Path:
    with atomic_path(target) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, array)
    return Path(target)


def write_csv(target: str | Path, frame) -> Path:
    with atomic_path(target) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.6g", lineterminator="\n")
    return Path(target)


def save_figure(target: str | Path, fig) -> Path:
    """Save a matplotlib figure atomically with fixed metadata (no timestamps: stable bytes)."""
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format=Path(target).suffix.lstrip(".") or "png", dpi=110,
                    metadata={"Software": None} if str(target).endswith(".png") else None,
                    bbox_inches="tight")
    return Path(target)


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, float):
        return round(obj, 10)  # last-bit float noise must not churn metrics files
    if isinstance(obj, Path):
        return str(obj)
    return obj
