"""The contract between a study and the harness core.

A study is a Pydantic spec model plus a ``plan`` function that turns a validated spec into a
list of :class:`StageDef`. Each ``StageDef`` names the stage code (``func``, a dotted
``module:function`` path), the typed config that code receives, and the files it reads and
writes. The compiler turns StageDefs into ``dvc.yaml``; ``harness run <stage>`` re-plans
from the current spec + params and calls ``func(config)``. Because the stage code only ever
sees its typed config, specs and stage code meet only through typed models.

Studies are plug-ins, discovered rather than imported: every package ``<study>/`` with a
``study.py`` that defines a module-level ``STUDY``, found in the installed ``stages`` package or in
a folder named by ``$HARNESS_STUDY_PATH``, is registered. The core never imports a study by
name, so adding a study never edits a shared file and nothing in ``harness/`` depends on
``stages/`` (see docs/architecture.md for the placement rule).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from dataclasses import dataclass, field
from typing import Any, Callable

from pydantic import BaseModel, Field

from harness.layout import DEFAULT_PROFILE, PROFILES, profile_prefix  # noqa: F401 - re-exported
from harness.schema import (  # noqa: F401 - re-exported: the contract in one import
    SECTIONS, Committed, Dep, Metric, Out, PathRole, Plot, StrictModel, declared_paths,
)


class RetryPolicy(StrictModel):
    """How many times, and how, a SLURM job is resubmitted, by the cause of its end.

    Why by cause: a job killed for memory needs more memory, one that ran out of time needs more
    time (and resumes from its checkpoint), one whose node died needs another node; rerunning any
    of them unchanged (what a blind retry count does) fails the same way or wastes the queue. A
    stage's own error (``FAILED`` with a non-zero exit) is a bug to fix, so it is not retried
    unless the spec asks. Counts are per cause; caps bound what a retry may ask for (``None``:
    four times the declared value). Declared with the stage kind's resources in the spec.
    """

    #: OUT_OF_MEMORY: resubmit with ``mem_gb * mem_factor``, at most ``max_mem_gb``
    out_of_memory: int = Field(2, ge=0)
    mem_factor: float = Field(2.0, ge=1)
    max_mem_gb: float | None = Field(None, gt=0)
    #: TIMEOUT: resubmit with ``time_min * time_factor`` (at most ``max_time_min``), resuming
    #: from the stage's checkpoint
    timeout: int = Field(2, ge=0)
    time_factor: float = Field(1.5, ge=1)
    max_time_min: int | None = Field(None, ge=1)
    #: NODE_FAIL (and BOOT_FAIL): resubmit excluding the node(s) the job ran on
    node_fail: int = Field(2, ge=0)
    #: PREEMPTED: resubmit unchanged; the stage resumes from its checkpoint
    preempted: int = Field(5, ge=0)
    #: FAILED (non-zero exit, or killed by a signal): the stage's own failure; 0 = never retried
    failed: int = Field(0, ge=0)
    #: CANCELLED by someone other than the harness (``scancel``, an admin): 0 = never retried
    cancelled: int = Field(0, ge=0)


class Resources(StrictModel):
    """What a stage needs from a cluster node. Where it runs is *not* part of the spec."""

    gpus: int = Field(0, ge=0)
    cpus: int = Field(1, ge=1)
    mem_gb: float = Field(2.0, gt=0)
    time_min: int = Field(30, ge=1)
    #: seconds before the time limit at which SLURM sends USR1 so the stage can checkpoint
    signal_before_s: int = Field(60, ge=0)
    #: SLURM resubmission by the cause of a job's end (see :class:`RetryPolicy`)
    retry: RetryPolicy = Field(default_factory=RetryPolicy)


@dataclass
class StageDef:
    """One DVC stage, as planned by a study: a name, the code, its typed config, knobs, resources.

    Everything else is derived: ``deps/outs/metrics/plots`` from the config's path fields
    (:class:`PathRole`), the code deps from the imports of ``func``'s module and of the config's
    module (:mod:`harness.codedeps`), and ``params:`` from the knobs referenced (``${knob}``) below
    the dotted spec paths in ``reads``.
    """

    name: str
    func: str
    config: BaseModel
    reads: list[str] = field(default_factory=list)
    resources: Resources = field(default_factory=Resources)
    #: stage kind, used to look up resources and for display ("train", "fit", ...)
    kind: str = "stage"

    def resolve_func(self) -> Callable[[Any], Any]:
        return resolve(self.func)

    @property
    def modules(self) -> list[str]:
        """The modules a run of this stage imports first: its code and its config's class."""
        return [self.func.partition(":")[0], type(self.config).__module__]

    def paths(self) -> dict[str, list[tuple[str, dict[str, Any]]]]:
        """The config's declared paths by DVC section (see :func:`harness.schema.declared_paths`)."""
        return declared_paths(self.config)


def resolve(dotted: str) -> Any:
    """``package.module:attr`` -> the object (study folders on ``$HARNESS_STUDY_PATH`` included)."""
    _add_study_path()
    module_name, _, attr = dotted.partition(":")
    return getattr(importlib.import_module(module_name), attr)


@dataclass
class PlanContext:
    """What a plan may know besides the spec: the profile it plans for and the spec's file.

    Output folders come from here (``ctx.work``, ``ctx.metrics`` ...), never from constants in a
    study, so two profiles of one study never write the same path.
    """

    profile: str
    spec_path: str
    study: str = ""

    def _dir(self, kind: str) -> str:
        return f"{kind}/{profile_prefix(self.profile)}{self.study}"

    @property
    def work(self) -> str:
        return self._dir("work")

    @property
    def metrics(self) -> str:
        return self._dir("metrics")

    @property
    def plots(self) -> str:
        return self._dir("plots")

    @property
    def reports(self) -> str:
        return self._dir("reports")


@dataclass
class Study:
    name: str
    spec_model: type[BaseModel]
    plan: Callable[[Any, PlanContext], list[StageDef]]
    #: study-provided CLI commands: command name -> dotted ``module:function`` taking
    #: ``(root: Path, profile: str, options: dict)`` and returning an exit code (e.g. ``simulate``);
    #: the core dispatches to them by name and never imports the study's code itself
    commands: dict[str, str] = field(default_factory=dict)


#: the package whose sub-packages are the shipped studies (``stages/<study>/study.py``)
DEFAULT_STUDY_PACKAGE = "stages"
#: extra folders of study packages (``<dir>/<study>/study.py``), e.g. test-only studies
STUDY_PATH_ENV = "HARNESS_STUDY_PATH"


def _add_study_path() -> list[str]:
    """Put the folders of ``$HARNESS_STUDY_PATH`` on ``sys.path``; return them."""
    extras = [p for p in os.environ.get(STUDY_PATH_ENV, "").split(os.pathsep) if p]
    for extra in extras:
        if extra not in sys.path:
            sys.path.insert(0, extra)
    return extras


def study_packages() -> dict[str, str]:
    """Importable package name of every study folder: ``{"param_alloc": "stages.param_alloc"}``."""
    found: dict[str, str] = {}
    spec = importlib.util.find_spec(DEFAULT_STUDY_PACKAGE)
    roots: list[tuple[str, str]] = []
    if spec is not None and spec.submodule_search_locations:
        roots += [(loc, DEFAULT_STUDY_PACKAGE + ".") for loc in spec.submodule_search_locations]
    for extra in _add_study_path():
        roots.append((extra, ""))
    for location, prefix in roots:
        if not os.path.isdir(location):
            continue
        for name in sorted(os.listdir(location)):
            if os.path.isfile(os.path.join(location, name, "study.py")):
                found.setdefault(name, prefix + name)
    return found


class Studies(dict):
    """``{study name: Study}``, importing a study's code only when it is first looked up.

    Why lazy: planning one study must not import (or be broken by) the others, and the CLI
    starts faster. A study's name is its folder's name.
    """

    def __init__(self, packages: dict[str, str]):
        super().__init__()
        self.packages = packages

    def __contains__(self, name: object) -> bool:
        return name in self.packages

    def __iter__(self):
        return iter(self.packages)

    def __len__(self) -> int:
        return len(self.packages)

    def keys(self):  # type: ignore[override]
        return self.packages.keys()

    def __getitem__(self, name: str) -> Study:
        if not dict.__contains__(self, name):
            module = importlib.import_module(f"{self.packages[name]}.study")
            study = getattr(module, "STUDY", None)
            if not isinstance(study, Study) or study.name != name:
                raise TypeError(f"{module.__file__}: must define STUDY = Study(name={name!r}, ...)")
            dict.__setitem__(self, name, study)
        return dict.__getitem__(self, name)


def discover_studies() -> Studies:
    """Every study folder, by name; its ``study.py`` is imported on first use."""
    return Studies(study_packages())
