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
import time
from pathlib import Path
from typing import Any


def load_stage_config(root: Path, name: str, profile: str) -> tuple[str, Any, str] | None:
    """``(func, config, source)`` from the stage's config file; ``None`` when there is none."""
    from harness.compiler import config_file
    from harness.spec import SpecError
    from harness.study import resolve

    rel = config_file(profile, name)
    path = root / rel
    if not path.exists():
        return None
    doc = json.loads(path.read_text())
    try:
        cls = resolve(doc["config_class"])
        return doc["func"], cls.model_validate(doc["config"]), rel
    except Exception as exc:  # noqa: BLE001 - a config file the code no longer accepts
        raise SpecError([f"{rel}: no longer matches {doc.get('config_class')} ({exc}); "
                         "run `dvc repro` (or `harness check-params`) to rewrite it"]) from None


def execute_local(root: Path, name: str, profile: str = "smoke") -> int:
    """Run one stage in this process and return 0; exceptions propagate to the CLI."""
    from harness.runtime import STAGE_ENV, install_signal_handlers
    from harness.study import resolve

    found = load_stage_config(root, name, profile)
    if found is None:
        from harness.compiler import find_stage

        stage, _ = find_stage(root, name, profile)
        func, config, source = stage.func, stage.config, "planned from specs (no config file yet)"
    else:
        func, config, source = found
    os.environ[STAGE_ENV] = name
    install_signal_handlers()
    print(f"[harness] {name}: {func} (config: {source})", flush=True)
    t0 = time.perf_counter()
    resolve(func)(config)
    print(f"[harness] {name}: done in {time.perf_counter() - t0:.1f}s", flush=True)
    return 0
