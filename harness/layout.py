"""Where things live: profile names and the project-relative paths of every profile's files.

Why its own module: stage code asks these facts too (a report names the pipeline that produced
it), and whatever a stage imports is a code dep of that stage. Kept here, apart from the
compiler, the spec loader and the study contract, a report stage depends on this small file
only, so editing the compiler or the spec loader reruns no stage (``check-params`` aside).
It imports nothing from the project: keep it that way (tests/test_stage_deps_layering.py).
:mod:`harness.compiler` and :mod:`harness.study` re-export every name.
"""

from __future__ import annotations

#: the profile ``dvc repro`` (the root ``dvc.yaml``) runs, and CI reproduces on every submission
DEFAULT_PROFILE = "smoke"
#: every profile: each compiles to its own pipeline (own ``dvc.yaml``, lock and output folders)
PROFILES = ("smoke", "reference", "full")


def profile_prefix(profile: str) -> str:
    """Where a profile's outputs live: the default profile at the top, others one folder down."""
    return "" if profile == DEFAULT_PROFILE else f"{profile}/"


def pipeline_file(profile: str) -> str:
    """The ``dvc.yaml`` of a profile, relative to the project root."""
    return "dvc.yaml" if profile == DEFAULT_PROFILE else f"profiles/{profile}/dvc.yaml"


def configs_dir(profile: str) -> str:
    return f"work/{profile_prefix(profile)}_harness/configs"


def traces_dir(profile: str) -> str:
    """Where ``harness run`` records which project modules each stage really loaded."""
    return f"work/{profile_prefix(profile)}_harness/traces"


def machines_dir(profile: str) -> str:
    """Where ``harness run`` records the machine each stage last ran on (tracked by git, not DVC)."""
    return f"machines/{profile_prefix(profile)}"


def stamps_dir(profile: str) -> str:
    """Where ``harness run`` stamps the deps a stage started with (:mod:`harness.depstamp`)."""
    return f"work/{profile_prefix(profile)}_harness/stamps"


def config_file(profile: str, stage: str) -> str:
    """Where check-params writes a stage's config: the stage's only view of the spec."""
    return f"{configs_dir(profile)}/{stage}.json"
