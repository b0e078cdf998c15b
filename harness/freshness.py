"""Refuse to run a stage whose config file is older than the spec or params it came from.

``harness run <stage>`` runs the config ``check-params`` wrote (so what ran is what ``dvc.lock``
hashed). After a spec or ``params.yaml`` edit that file is stale until ``check-params`` runs
again; ``dvc repro`` runs it first, but ``harness run`` by hand (or ``dvc repro -s``) would run
the old values without a word. So:

- ``check-params`` records the sha256 of ``params.yaml`` and every spec it compiled from
  (``work/<profile/>_harness/inputs.json``, untracked);
- ``harness run`` compares the stage's own spec and ``params.yaml`` with that record (microseconds).
  When they differ it checks precisely, in a child process (so this one loads no study code
  before the stage does; see the traces of :mod:`harness.execute`): the stage is planned from the
  current files and its config compared with the file's. A different config is an error naming
  the changed values; an edit that does not touch this stage's config (a comment, another
  study's knob) is not.

Not a dependency of any compiled stage (imported by the CLI and :mod:`harness.execute` only).
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

from harness.study import DEFAULT_PROFILE, profile_prefix


def record_file(profile: str) -> str:
    return f"work/{profile_prefix(profile)}_harness/inputs.json"


def spec_inputs(root: Path) -> dict[str, str]:
    """sha256 of ``params.yaml`` and every ``specs/*.yaml``, by project-relative path."""
    found = {}
    for path in [root / "params.yaml", *sorted((root / "specs").glob("*.yaml"))]:
        try:
            found[path.relative_to(root).as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError:
            found[path.relative_to(root).as_posix()] = "<unreadable>"
    return found


def write_record(root: Path, profile: str, inputs: dict[str, str]) -> None:
    """What ``check-params`` compiled from (``inputs``: :func:`spec_inputs` taken before it read them)."""
    from harness.io import write_text

    text = json.dumps(inputs, indent=1, sort_keys=True) + "\n"
    path = root / record_file(profile)
    if not path.exists() or path.read_text() != text:
        write_text(path, text)


def _own_inputs(root: Path, stage: str) -> dict[str, str]:
    """The current hashes of ``params.yaml`` and of the spec(s) whose study owns ``stage``."""
    current = spec_inputs(root)
    own = {"params.yaml": current.get("params.yaml", "<absent>")}
    for spec_file in sorted((root / "specs").glob("*.yaml")):
        match = re.search(rb"^study:\s*([A-Za-z0-9_]+)", spec_file.read_bytes(), re.MULTILINE)
        if match and stage.startswith(match.group(1).decode() + "-"):
            rel = spec_file.relative_to(root).as_posix()
            own[rel] = current[rel]
    return own


def stale_config_problem(root: Path, stage: str, profile: str = DEFAULT_PROFILE) -> str | None:
    """Why the stage's config file no longer matches the spec and params; ``None`` when it does
    (or when there is no file: the stage is then planned from the spec itself)."""
    from harness.compiler import config_file

    if not (root / config_file(profile, stage)).exists():
        return None
    try:
        record = json.loads((root / record_file(profile)).read_text())
    except (OSError, ValueError):
        record = {}
    own = _own_inputs(root, stage)
    if record and all(record.get(rel) == digest for rel, digest in own.items()):
        return None  # nothing this stage's config comes from changed since check-params wrote it
    proc = subprocess.run([sys.executable, "-m", "harness.freshness", str(root), profile, stage],
                          capture_output=True, text=True)
    if proc.returncode == 0:
        return None
    return (proc.stdout + proc.stderr).strip() or f"{config_file(profile, stage)}: cannot check it against the spec"


def precise_check(root: Path, profile: str, stage: str) -> int:
    """Plan ``stage`` from the current spec and params and compare with its config file: 0 when
    they agree, 1 (with the reason on stdout) when not."""
    from harness.compiler import config_file, config_payload, find_stage
    from harness.spec import SpecError
    from harness.status import config_changes

    rel = config_file(profile, stage)
    again = "harness check-params" + ("" if profile == DEFAULT_PROFILE else f" --profile {profile}")
    try:
        planned, _ = find_stage(root, stage, profile)
    except SpecError as exc:
        print(f"{rel}: cannot be checked against the current spec and params.yaml, which do not compile:\n"
              + "\n".join(exc.problems))
        return 1
    old = json.loads((root / rel).read_text())
    new = json.loads(config_payload(planned))
    if old == new:
        return 0
    changes = config_changes(old.get("config", {}), new.get("config", {}))
    if old.get("func") != new.get("func"):
        changes.append(f"func {old.get('func')} -> {new.get('func')}")
    if old.get("config_class") != new.get("config_class"):
        changes.append(f"config_class {old.get('config_class')} -> {new.get('config_class')}")
    print(f"{rel}: older than the spec/params.yaml it comes from ({'; '.join(changes) or 'values changed'}): "
          f"`harness run {stage}` would run the old config. Run `{again}` (or `dvc repro`, which runs it "
          "first), then run the stage again")
    return 1


if __name__ == "__main__":
    sys.exit(precise_check(Path(sys.argv[1]), sys.argv[2], sys.argv[3]))
