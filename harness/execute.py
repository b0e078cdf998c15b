"""Run one stage in this process: what ``harness run <stage>`` does on the local runner.

The stage receives exactly the config that DVC hashed: the file ``check-params`` wrote
(``work/_harness/configs/<stage>.json``), not a fresh re-plan of the spec, so what ran and what
``dvc.lock`` records can never disagree. Without that file (a stage run by hand before any
``dvc repro``) the stage is planned from the current spec instead, and the run says so.
Kept apart from the CLI and the runners so that both can call it without importing each other.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any


def load_stage_config(root: Path, name: str, profile: str) -> tuple[str, Any, str, set[str]] | None:
    """``(func, config, source, machinery)`` from the stage's config file; ``None`` without one.

    ``machinery``: the project modules loaded before the stage's own config class is imported.
    """
    from harness.compiler import config_file
    from harness.spec import SpecError
    from harness.study import resolve

    rel = config_file(profile, name)
    path = root / rel
    if not path.exists():
        return None
    doc = json.loads(path.read_text())
    machinery = loaded_project_files(root)
    try:
        cls = resolve(doc["config_class"])
        return doc["func"], cls.model_validate(doc["config"]), rel, machinery
    except Exception as exc:  # noqa: BLE001 - a config file the code no longer accepts
        raise SpecError([f"{rel}: no longer matches {doc.get('config_class')} ({exc}); "
                         "run `dvc repro` (or `harness check-params`) to rewrite it"]) from None


def execute_local(root: Path, name: str, profile: str = "smoke") -> int:
    """Run one stage in this process and return 0; exceptions propagate to the CLI."""
    from harness import depstamp  # machinery: imported before the trace's "before" snapshot
    from harness.freshness import stale_config_problem
    from harness.runtime import STAGE_ENV, install_signal_handlers
    from harness.study import resolve

    stale = stale_config_problem(root, name, profile)  # a spec edit since check-params: refuse
    if stale:
        from harness.spec import SpecError

        raise SpecError([stale])
    found = load_stage_config(root, name, profile)
    if found is None:
        from harness.compiler import find_stage

        stage, _ = find_stage(root, name, profile)
        func, config, source = stage.func, stage.config, "planned from specs (no config file yet)"
        before = None
    else:
        func, config, source, before = found
    os.environ[STAGE_ENV] = name
    os.environ["HARNESS_PROFILE"] = profile  # harness.provenance reads it for report headers
    install_signal_handlers()
    print(f"[harness] {name}: {func} (config: {source})", flush=True)
    depstamp.record_start(root, name, profile)
    t0 = time.perf_counter()
    try:
        resolve(func)(config)
    except BaseException:
        restore_committed_outputs(root, name, profile, config)
        raise
    moved = depstamp.changed_since_start(root, name, profile)
    if moved:
        from harness.spec import SpecError

        # the outputs came from the old inputs: exiting non-zero keeps DVC from recording them
        raise SpecError([f"{name}: inputs changed while the stage ran ({', '.join(moved[:5])}"
                         f"{' ...' if len(moved) > 5 else ''}); its outputs are not recorded: rerun it"])
    print(f"[harness] {name}: done in {time.perf_counter() - t0:.1f}s", flush=True)
    if before is not None:
        _write_trace(root, name, profile, before)
    write_machine_record(root, name, profile)
    return 0


def write_machine_record(root: Path, name: str, profile: str) -> None:
    """Record the machine this stage ran on beside its outputs (``machines/<profile>/<stage>.json``).

    Tracked by git, not hashed by DVC (a new machine reruns nothing), so ``harness drift`` can
    print "committed on X, reproduced on Y" next to a drifted metric. Written only after the
    stage finished; same bytes on the same machine, so an unchanged machine shows no git diff.
    """
    from harness.compiler import machines_dir
    from harness.io import write_json
    from harness.machine import machine_record

    try:
        write_json(root / machines_dir(profile) / f"{name}.json", {"stage": name, **machine_record()})
    except OSError:  # a diagnostic: never fail a finished stage over it
        pass


def loaded_project_files(root: Path) -> set[str]:
    """Project-relative paths of the project's modules this process has imported."""
    found = set()
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if not path:
            continue
        resolved = Path(path).resolve()
        if not resolved.is_file():  # some extension modules report a bare, relative file name
            continue
        try:
            rel = resolved.relative_to(root.resolve())
        except ValueError:
            continue
        if any(part.startswith(".") or part == "site-packages" for part in rel.parts):
            continue  # a virtualenv inside the project (.venv) is installed code, not the project's
        found.add(rel.as_posix())
    return found


def _write_trace(root: Path, name: str, profile: str, before: set[str]) -> None:
    """Record which project modules the stage really loaded (checked against its compiled deps).

    ``machinery`` are the modules ``harness run`` itself had loaded before the stage's config
    class was imported; the test of derived code deps checks that set separately.
    """
    from harness.compiler import traces_dir

    trace = {"stage": name, "machinery": sorted(before), "loaded": sorted(loaded_project_files(root) - before)}
    path = root / traces_dir(profile) / f"{name}.json"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(trace, indent=1) + "\n")
    except OSError:  # a trace is a diagnostic: never fail a finished stage over it
        pass


def restore_committed_outputs(root: Path, name: str, profile: str, config: Any) -> list[str]:
    """After a failed stage, put back the git-tracked outputs DVC deleted before running it.

    Why: ``dvc repro`` removes a stage's outputs before its command runs, including the
    ``cache: false`` ones git keeps (metrics, plots, committed reports), which the DVC cache
    cannot restore. When a gate then refuses the data, the committed results would be gone
    (``git status``: ``D metrics/...``) although nothing replaced them. A file is restored from
    ``HEAD`` only when its bytes are the ones ``dvc.lock`` records for this stage, so the tree
    stays exactly as the lock describes. Returns the restored paths. Never raises.
    """
    import hashlib
    import subprocess

    try:
        import yaml

        from harness.compiler import pipeline_file
        from harness.schema import declared_paths

        paths = declared_paths(config)
        wanted = [p for section in ("outs_no_cache", "metrics", "plots") for p, _ in paths[section]]
        missing = [p for p in wanted if not (root / p).exists()]
        if not missing:
            return []
        lock_path = root / Path(pipeline_file(profile)).parent / "dvc.lock"
        lock = yaml.safe_load(lock_path.read_text()) if lock_path.exists() else {}
        recorded = {o.get("path"): o.get("md5") for o in ((lock or {}).get("stages", {}).get(name, {}).get("outs") or [])}
        restored = []
        for rel in missing:
            md5 = recorded.get(rel)
            if not md5:
                continue
            blob = subprocess.run(["git", "show", f"HEAD:{rel}"], cwd=root, capture_output=True)
            if blob.returncode != 0 or hashlib.md5(blob.stdout).hexdigest() != md5:
                continue
            target = root / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(blob.stdout)
            restored.append(rel)
        if restored:
            print(f"[harness] {name} failed: restored its committed outputs {restored} (as dvc.lock records them)",
                  file=sys.stderr, flush=True)
        return restored
    except Exception:  # noqa: BLE001 - a best-effort repair must never mask the stage's own error
        return []
