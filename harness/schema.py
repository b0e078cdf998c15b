"""The vocabulary of stage configs: strict models and the roles of their path fields.

Why a module of its own: every stage config imports it, so it is a code dependency of every
stage. It holds only what a config needs, kept small and stable, so that editing the harness's
planning machinery (``harness/study.py``) does not rerun every stage.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    """Base for every spec and stage-config model: unknown keys are errors, not silently kept."""

    model_config = ConfigDict(extra="forbid", frozen=False)


@dataclass(frozen=True)
class PathRole:
    """What a path field of a stage config is to DVC: read (a dep) or written (an out, ...).

    Declared once, on the config field (``tokens_dir: Annotated[str, Dep]``), so the stage code
    that opens the path and the ``dvc.yaml`` entry that hashes it can never disagree. The field's
    value may be a path, ``None`` (nothing), or a list/tuple/dict whose string leaves are paths.
    ``props`` are DVC plot properties (``x``, ``y``, ``template`` ...).
    """

    section: str  # "deps", "outs", "outs_no_cache", "metrics", "plots"
    props: tuple[tuple[str, Any], ...] = ()

    def __call__(self, **props: Any) -> "PathRole":
        return PathRole(self.section, tuple(sorted(props.items())))


#: a file or folder the stage reads (an upstream output, data, a task file)
Dep = PathRole("deps")
#: a file or folder the stage writes into the DVC cache
Out = PathRole("outs")
#: a file or folder the stage writes and git keeps (a committed report): ``cache: false``
Committed = PathRole("outs_no_cache")
#: a JSON metrics file (git-tracked, ``cache: false``), compared by ``harness drift``
Metric = PathRole("metrics")
#: a CSV/JSON plot file (git-tracked); ``Plot(x="step", y="loss")`` adds DVC plot properties
Plot = PathRole("plots")

SECTIONS = ("deps", "outs", "outs_no_cache", "metrics", "plots")


def _leaf_paths(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (str, os.PathLike)):
        return [os.fspath(value)]
    if isinstance(value, dict):
        return [p for v in value.values() for p in _leaf_paths(v)]
    if isinstance(value, (list, tuple, set, frozenset)):
        return [p for v in value for p in _leaf_paths(v)]
    raise TypeError(f"a path field holds {type(value).__name__}, expected str/Path/list/dict of them")


def declared_paths(config: BaseModel) -> dict[str, list[tuple[str, dict[str, Any]]]]:
    """Every path the config declares, by DVC section, walking nested models, lists and dicts.

    Returns ``{"deps": [(path, props), ...], "outs": [...], ...}`` in field order, so the compiled
    ``dvc.yaml`` is stable.
    """
    found: dict[str, list[tuple[str, dict[str, Any]]]] = {s: [] for s in SECTIONS}

    def walk(node: Any) -> None:
        if isinstance(node, BaseModel):
            for name, info in type(node).model_fields.items():
                value = getattr(node, name)
                roles = [m for m in info.metadata if isinstance(m, PathRole)]
                if roles:
                    for role in roles:
                        found[role.section] += [(p, dict(role.props)) for p in _leaf_paths(value)]
                else:
                    walk(value)
        elif isinstance(node, dict):
            for value in node.values():
                walk(value)
        elif isinstance(node, (list, tuple)):
            for value in node:
                walk(value)

    walk(config)
    return found
