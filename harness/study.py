"""The contract between a study and the harness core.

A study is a Pydantic spec model plus a ``plan`` function that turns a validated spec into a
list of :class:`StageDef`. Each ``StageDef`` names the stage code (``func``, a dotted
``module:function`` path), the typed config that code receives, and the files it reads and
writes. The compiler turns StageDefs into ``dvc.yaml``; ``harness run <stage>`` re-plans
from the current spec + params and calls ``func(config)``. Because the stage code only ever
sees its typed config, specs and stage code meet only through typed models.

Studies are discovered automatically: every module in ``harness/studies/`` that defines a
module-level ``STUDY`` is registered, so adding a study never edits a shared file.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from typing import Any, Callable

from pydantic import BaseModel, ConfigDict, Field


class StrictModel(BaseModel):
    """Base for every spec and stage-config model: unknown keys are errors, not silently kept."""

    model_config = ConfigDict(extra="forbid", frozen=False)


class Resources(StrictModel):
    """What a stage needs from a cluster node. Where it runs is *not* part of the spec."""

    gpus: int = Field(0, ge=0)
    cpus: int = Field(1, ge=1)
    mem_gb: float = Field(2.0, gt=0)
    time_min: int = Field(30, ge=1)
    #: seconds before the time limit at which SLURM sends USR1 so the stage can checkpoint
    signal_before_s: int = Field(60, ge=0)


@dataclass
class StageDef:
    """One DVC stage, as planned by a study.

    ``reads`` lists dotted spec paths (``"baseline"``, ``"train.lr"``) whose values flow into
    ``config``; the compiler lists under ``params:`` exactly the knobs referenced (``${knob}``)
    somewhere below those paths, plus ``profile``. ``deps`` are files/dirs (upstream outputs,
    data); the spec file and the module of ``func`` are added automatically.
    """

    name: str
    func: str
    config: BaseModel
    reads: list[str] = field(default_factory=list)
    deps: list[str] = field(default_factory=list)
    outs: list[str] = field(default_factory=list)
    metrics: list[str] = field(default_factory=list)
    plots: list[Any] = field(default_factory=list)
    #: outputs kept in git rather than the DVC cache (committed reports)
    outs_no_cache: list[str] = field(default_factory=list)
    resources: Resources = field(default_factory=Resources)
    #: stage kind, used to look up resources and for display ("train", "fit", ...)
    kind: str = "stage"
    #: extra code files whose change must rerun the stage
    code_deps: list[str] = field(default_factory=list)

    def resolve_func(self) -> Callable[[Any], Any]:
        module_name, _, attr = self.func.partition(":")
        return getattr(importlib.import_module(module_name), attr)

    @property
    def module_path(self) -> str:
        module_name = self.func.partition(":")[0]
        return module_name.replace(".", "/") + ".py"


@dataclass
class PlanContext:
    """What a plan may know besides the spec: the active profile and the spec's file."""

    profile: str
    spec_path: str


@dataclass
class Study:
    name: str
    spec_model: type[BaseModel]
    plan: Callable[[Any, PlanContext], list[StageDef]]


def discover_studies() -> dict[str, Study]:
    """Import every module of ``harness.studies`` and collect its ``STUDY``."""
    import harness.studies as pkg

    found: dict[str, Study] = {}
    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda i: i.name):
        module = importlib.import_module(f"harness.studies.{info.name}")
        study = getattr(module, "STUDY", None)
        if isinstance(study, Study):
            found[study.name] = study
    return found
