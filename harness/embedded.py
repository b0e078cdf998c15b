"""Embedded default data: small corpora each study generates deterministically.

Why generated rather than committed or downloaded: CI and a fresh clone have no network and no
DVC remote, yet ``data.dvc`` must match. A study that ships data has a ``data.py`` module beside
its ``study.py`` exposing ``DATASET`` (the folder name under ``data/``) and ``generate(out_dir)``,
which writes that folder from a fixed seed with no dependence on the machine, so the bytes, and
therefore the hash recorded in ``data.dvc``, are identical everywhere.
"""

from __future__ import annotations

import importlib
import importlib.util
import shutil
from pathlib import Path
from types import ModuleType


def generators() -> dict[str, ModuleType]:
    """``{dataset folder: data module}`` of every discovered study that ships data."""
    from harness.study import study_packages

    found: dict[str, ModuleType] = {}
    for package in study_packages().values():
        if importlib.util.find_spec(f"{package}.data") is None:
            continue
        module = importlib.import_module(f"{package}.data")
        found[module.DATASET] = module
    return dict(sorted(found.items()))


def generate_all(data_dir: Path) -> list[str]:
    """(Re)generate every embedded data set under ``data_dir``; returns the names written.

    Each set is written to a temporary sibling and renamed into place, so an interrupted run
    never leaves a half-written folder that ``data.dvc`` would hash.
    """
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
