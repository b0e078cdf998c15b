"""The vocabulary of stage configs: strict models and the roles of their path fields.

Why a module of its own: every stage config imports it, so it is a code dependency of every
stage. It holds only what a config needs, kept small and stable, so that editing the harness's
planning machinery (``harness/study.py``) does not rerun every stage.
"""

from __future__ import annotations

import os
import typing
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator
from pydantic_core import PydanticCustomError

#: the Pydantic error type of a boolean given for a number (its ``ctx["field"]`` names the field)
BOOL_FOR_NUMBER = "bool_for_number"


class StrictModel(BaseModel):
    """Base for every spec and stage-config model: unknown keys are errors, not silently kept.

    Two values Pydantic's lax mode would accept are refused here, for every field of every
    study at once: a non-finite float (``lr: .inf``, ``1e400``, ``-S lr=inf``), which no
    hyperparameter or measurement means; and a boolean where the field takes no boolean
    (``batch_size: true`` would become 1, ``glu: true`` 1.0).
    """

    model_config = ConfigDict(extra="forbid", frozen=False, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _no_bool_for_numbers(cls, data: Any) -> Any:
        # a model-level check (a per-field "before" validator would clash with discriminated
        # unions); the field is named in ctx so the spec loader can point at its line
        if not isinstance(data, dict):
            return data
        for name, value in data.items():
            field = cls.model_fields.get(name) if isinstance(name, str) else None
            if field is not None and _holds_bool(value) and not _accepts_bool(field.annotation):
                raise PydanticCustomError(
                    BOOL_FOR_NUMBER, "expected {expected}, got a boolean ({value}); "
                    "true/false are not numbers here",
                    {"field": name, "expected": _type_name(field.annotation), "value": repr(value)})
        return data


def _holds_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return True
    if isinstance(value, (list, tuple)):
        return any(_holds_bool(v) for v in value)
    if isinstance(value, dict):
        return any(_holds_bool(v) for v in value.values())
    return False


@lru_cache(maxsize=None)
def _accepts_bool(annotation: Any) -> bool:
    """Whether a boolean may appear anywhere a value of this annotation holds (nested models
    decide for themselves; ``Any``, ``object`` and unknown constructs are given the benefit)."""
    if annotation is bool or annotation is Any or annotation is object:
        return True
    if isinstance(annotation, type):
        if issubclass(annotation, BaseModel):
            return True
        if issubclass(annotation, (int, float, str, bytes, os.PathLike)) or annotation in (complex,):
            return False
        return True  # an arbitrary class: let its own validation decide
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Literal:
        return any(isinstance(a, bool) for a in args)
    if origin is typing.Annotated:
        return _accepts_bool(args[0])
    if origin is None:
        return True  # a TypeVar, a forward reference, ...: not ours to judge
    if origin in (dict, typing.Mapping) or (isinstance(origin, type) and issubclass(origin, dict)):
        return _accepts_bool(args[1]) if len(args) == 2 else True
    if not args:
        return True
    return any(_accepts_bool(a) for a in args if a is not Ellipsis)


def _type_name(annotation: Any) -> str:
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


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
