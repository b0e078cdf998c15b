"""Where a committed result came from: the commit and the command that produced it.

Results CI does not rerun (the ``reference`` and ``full`` profiles) are committed; their report
must say what produced them, so a reader can tell a stale one and rerun it. The smoke profile's
reports carry no header: CI reproduces them on every submission, and a commit id in them would
make every reproduction differ.
"""

from __future__ import annotations

import os
import subprocess

# the layout module, not harness.compiler/study: whatever this imports is a code dep of every report
from harness.layout import DEFAULT_PROFILE, pipeline_file

PROFILE_ENV = "HARNESS_PROFILE"


def current_profile() -> str:
    """The profile of the running stage (set by ``harness run``)."""
    return os.environ.get(PROFILE_ENV, DEFAULT_PROFILE)


def _git(*args: str) -> str:
    proc = subprocess.run(["git", *args], capture_output=True, text=True)
    return proc.stdout.strip() if proc.returncode == 0 else ""


def report_header() -> str:
    """Markdown lines naming the commit and command, for a non-default profile's report; else ``""``."""
    profile = current_profile()
    if profile == DEFAULT_PROFILE:
        return ""
    commit = _git("rev-parse", "--short=12", "HEAD") or "unknown"
    # only inputs count: the run itself rewrites locks, metrics and reports before they are committed
    dirty = " (with uncommitted code or spec changes)" if _git(
        "status", "--porcelain", "--untracked-files=no", "--", "harness", "stages", "specs", "params.yaml") else ""
    return (f"> Profile `{profile}`: produced at commit `{commit}`{dirty} by "
            f"`dvc repro {pipeline_file(profile)}`. CI does not rerun it; "
            f"`harness status --profile {profile} --committed` says whether it is stale.\n\n")


def answer_lines(question: str, answered: bool, answer: str) -> str:
    """The first lines of every study report: its question, and whether this run answers it.

    Why a shared helper: a reader (and CI's reviewer) must tell from the first lines alone
    whether a report is a result or a plumbing check, in every study and every profile alike.
    ``answer`` is the answer when ``answered``, else the reason it is not (too little data, a
    score at chance, a fit that is not determined ...).
    """
    verdict = "**Answered.**" if answered else "**Not answered by this run.**"
    return f"**Question.** {question}\n\n{verdict} {answer.strip()}\n\n"


def report_preamble(title: str, question: str, answered: bool, answer: str) -> str:
    """Title, question/answer lines, then (non-default profiles) the provenance header."""
    return f"# {title}\n\n{answer_lines(question, answered, answer)}{report_header()}"
