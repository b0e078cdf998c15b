"""Embedded default data: small corpora the project generates deterministically.

Why generated rather than committed or downloaded: CI and a fresh clone have no network and no
DVC remote, yet ``data.dvc`` must match. Each module here exposes ``generate(out_dir)`` that
writes ``data/<module>/`` from a fixed seed with no dependence on the machine, so the bytes,
and therefore the hash recorded in ``data.dvc``, are identical everywhere.
"""

from __future__ import annotations

import importlib
import pkgutil
import shutil
from pathlib import Path


def generators() -> dict[str, object]:
    import harness.datagen as pkg

    return {
        info.name: importlib.import_module(f"harness.datagen.{info.name}")
        for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda i: i.name)
        if not info.name.startswith("_")
    }


def generate_all(data_dir: Path) -> list[str]:
    """(Re)generate every embedded data set under ``data_dir``; returns the names written."""
    data_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, module in generators().items():
        target = data_dir / name
        tmp = data_dir / f".{name}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        module.generate(tmp)
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)
        written.append(name)
    return written
