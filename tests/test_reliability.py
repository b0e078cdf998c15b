"""Reliability suite (issue 16): what the harness refuses, with counts.

Every check here is one "found when tried" case or a generated family of them. Outcomes are
also appended to ``$HARNESS_RELIABILITY_LOG`` (JSON lines) when set, which is how
``python scripts/reliability.py`` builds the tables of docs/reliability.md.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import REPO, run

sys.path.insert(0, str(Path(__file__).parent))
import spec_variants as sv  # noqa: E402


def record(category: str, case: str, outcome: str, detail: str = "") -> None:
    """One line of the published figures: outcome is refused / survived / lost."""
    path = os.environ.get("HARNESS_RELIABILITY_LOG")
    if path:
        with open(path, "a") as fh:
            fh.write(json.dumps({"category": category, "case": case, "outcome": outcome, "detail": detail[:300]}) + "\n")


# ---------------------------------------------------------------- malformed specs, generated

#: structural variants per (spec, category) in the CI sample; all of them with HARNESS_ALL_VARIANTS=1
SAMPLE_PER_GROUP = 10


def _sample(variants: list[sv.Variant]) -> list[sv.Variant]:
    if os.environ.get("HARNESS_ALL_VARIANTS"):
        return variants
    rng = random.Random(16)
    groups: dict[tuple[str, str], list[sv.Variant]] = {}
    for v in variants:
        groups.setdefault((v.spec, v.category), []).append(v)
    out = []
    for _key, items in sorted(groups.items()):
        out += items if len(items) <= SAMPLE_PER_GROUP else rng.sample(items, SAMPLE_PER_GROUP)
    return out


@pytest.fixture(scope="module")
def spec_project(tmp_path_factory) -> Path:
    return sv.project_root(REPO, tmp_path_factory.mktemp("specs") / "p")


def test_generated_spec_variants_are_refused(spec_project: Path):
    """>= 200 broken variants of the four real specs: each exits 2 with file:line:col and the field
    path, writes nothing, within 2 s of CPU; the alias bombs and the 50 MB file under 500 MB."""
    import resource

    variants = _sample(sv.all_variants(REPO))
    assert len(variants) >= 200, len(variants)
    failures = []
    # one untimed run first: the CLI's first call in a process imports its modules (under
    # tracemalloc that alone is ~2 s of CPU), which is start-up, not the cost of refusing a spec
    sv.run_in_process(spec_project, variants[0])
    rss_before_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    for variant in variants:
        heavy = variant.category in ("alias bomb", "oversized file")
        outcome = sv.run_in_process(spec_project, variant, memory=heavy)
        problems = outcome.problems
        record("specs", variant.name, "lost" if problems else "refused", "; ".join(problems) or outcome.message)
        if problems:
            failures.append(f"{variant.name}: {problems}")
    # the process's peak grows by less than 500 MB over the whole family (ru_maxrss is a lifetime
    # peak: in a full pytest session earlier tests, torch included, already set it; the heavy
    # variants are measured one by one with tracemalloc above)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    assert rss_mb - rss_before_mb < 500, f"peak RSS grew {rss_mb - rss_before_mb:.0f} MB (to {rss_mb:.0f} MB)"
    assert not failures, f"{len(failures)} of {len(variants)} not refused cleanly:\n" + "\n".join(failures[:40])


def test_real_cli_refuses_a_handful(spec_project: Path, tmp_path: Path):
    """The same refusals through the installed `harness` command (a subprocess), byte for byte."""
    wanted = {"not UTF-8", "alias bomb", "oversized file", "unknown key", "empty file", "duplicate key"}
    picked: dict[str, sv.Variant] = {}
    for v in sv.all_variants(REPO):
        if v.category in wanted and v.category not in picked:
            picked[v.category] = v
    root = sv.project_root(REPO, tmp_path / "cli")
    for v in picked.values():
        target = root / "specs" / v.spec
        original = target.read_bytes()
        target.write_bytes(v.data)
        before = sv.snapshot(root)
        t0 = time.perf_counter()
        proc = run(["harness", "--root", str(root), "compile"], root, check=False, timeout=60)
        seconds = time.perf_counter() - t0
        after = sv.snapshot(root)
        target.write_bytes(original)
        outcome = sv.Outcome(v, proc.returncode, proc.stderr, 0.0, 0.0,
                             [k for k in set(before) | set(after) if before.get(k) != after.get(k)])
        record("specs (CLI)", v.name, "lost" if outcome.problems else "refused", f"{seconds:.1f}s wall")
        assert not outcome.problems, (v.name, outcome.problems, proc.stderr[-2000:])


# ---------------------------------------------------------------- values that must never validate

@pytest.mark.parametrize("old,new,field", [
    ("lr: 0.003", "lr: .inf", "params.yaml:5:1: lr: knob `lr` is inf"),
    ("lr: 0.003", "lr: inf", "train.lr"),          # what `dvc exp run -S lr=inf` writes: a string
    ("lr: 0.003", "lr: 1e400", "params.yaml:5:1: lr: knob `lr` is inf"),
    ("lr: 0.003", "lr: .nan", "params.yaml:5:1: lr: knob `lr` is nan"),
    ("glu: 2.66", "glu: true", "baseline.glu"),
])
def test_knob_values_that_never_validate(spec_project: Path, old: str, new: str, field: str):
    params = spec_project / "params.yaml"
    original = params.read_text()
    assert old in original
    params.write_text(original.replace(old, new))
    try:
        outcome = sv.run_in_process(spec_project, sv.Variant(f"params {new}", "params", "param_alloc.yaml",
                                                              (spec_project / "specs/param_alloc.yaml").read_bytes()))
    finally:
        params.write_text(original)
    ok = outcome.rc == 2 and field in outcome.message and not outcome.written
    record("params", f"params.yaml {new}", "refused" if ok else "lost", outcome.message)
    assert ok, outcome.message


@pytest.mark.parametrize("spec,old,new,field", [
    ("param_alloc.yaml", "  batch_size: 16", "  batch_size: true", "train.batch_size"),
    ("param_alloc.yaml", "target_params: 120000", "target_params: 1e400", "model.target_params"),
    ("hmm_icl.yaml", "  hidden: [8, 16]", "  hidden: [-8, 16]", "grid.hidden.0"),
    ("scaling.yaml", "    widths: [16, 32, 64]", "    widths: [17, 32, 64]", "sweeps.transformer"),
    ("param_alloc.yaml", "target_params: 10000000", "target_param: 10000000", "model.target_param"),  # full profile
    ("mixture_sim.yaml", "  - kind: ridge", "  - kind: xgboost", "regressors.0"),
])
def test_spec_values_refused_at_their_line(spec_project: Path, spec: str, old: str, new: str, field: str):
    text = (spec_project / "specs" / spec).read_text()
    assert old in text, old
    broken = text.replace(old, new, 1)
    line = next(i for i, s in enumerate(broken.splitlines(), start=1) if new.strip() in s)
    outcome = sv.run_in_process(spec_project, sv.Variant(f"{spec}: {new.strip()}", "value", spec, broken.encode(), line))
    ok = not outcome.problems and field in outcome.message
    record("specs", f"{spec}: {new.strip()}", "refused" if ok else "lost", outcome.message)
    assert ok, (outcome.problems, outcome.message)


def test_undecodable_spec_does_not_stop_other_studies_stages(spec_project: Path, tmp_path: Path):
    from harness.compiler import find_stage

    root = sv.project_root(REPO, tmp_path / "p")
    target = root / "specs" / "hmm_icl.yaml"
    target.write_bytes(target.read_bytes() + b"# caf\xe9\n")
    stage, _ = find_stage(root, "param_alloc-shapes")
    assert stage.name == "param_alloc-shapes"
    outcome = sv.run_in_process(root, sv.Variant("hmm", "x", "hmm_icl.yaml", target.read_bytes()))
    assert outcome.rc == 2 and "specs/hmm_icl.yaml:" in outcome.message and "0xe9" in outcome.message
    record("specs", "non-UTF-8 hmm_icl.yaml vs param_alloc stage", "survived")


# ---------------------------------------------------------------- CLI: messages, not tracebacks

def _cli(args: list[str], cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return run(["harness", *args], cwd, check=False, env=env, timeout=120)


def test_cli_errors_are_messages(spec_project: Path, tmp_path: Path):
    cases = [
        ("--root /nonexistent drift", ["--root", "/nonexistent", "drift"], None, "no such directory"),
        ("HARNESS_RUNNER=bogus harness run", ["--root", str(spec_project), "run", "param_alloc-shapes"],
         {"HARNESS_RUNNER": "bogus"}, "'local' or 'slurm'"),
        ("harness stages --study nosuch", ["--root", str(spec_project), "stages", "--study", "nosuch"], None,
         "no such study"),
        ("harness stages --study param_aloc", ["--root", str(spec_project), "stages", "--study", "param_aloc"], None,
         "did you mean `param_alloc`"),
    ]
    for name, args, env, needle in cases:
        proc = _cli(args, tmp_path, env)
        ok = proc.returncode == 2 and needle in proc.stderr and "Traceback" not in proc.stderr
        record("CLI", name, "refused" if ok else "lost", proc.stderr)
        assert ok, (name, proc.returncode, proc.stderr[-2000:])


def test_non_utf8_params_is_located(spec_project: Path):
    params = spec_project / "params.yaml"
    original = params.read_bytes()
    params.write_bytes(original.replace(b"seed: 0", b"seed: 0 # caf\xe9"))
    try:
        outcome = sv.run_in_process(spec_project, sv.Variant("params", "x", "param_alloc.yaml",
                                                              (spec_project / "specs/param_alloc.yaml").read_bytes()))
    finally:
        params.write_bytes(original)
    ok = outcome.rc == 2 and "params.yaml:" in outcome.message and "0xe9" in outcome.message
    record("CLI", "non-UTF-8 params.yaml", "refused" if ok else "lost", outcome.message)
    assert ok, outcome.message


def test_drift_on_malformed_metric_json(tmp_path: Path):
    root = tmp_path / "d"
    (root / "metrics").mkdir(parents=True)
    (root / "metrics" / "m.json").write_text('{"x": 1.0}\n')
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"],
                ["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "m"]):
        run(cmd, root)
    for label, text in (("truncated", '{"x": 1.'), ("not UTF-8", b'{"x": "\xff"}'), ("empty", "")):
        path = root / "metrics" / "m.json"
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        proc = _cli(["--root", str(root), "drift"], root)
        ok = proc.returncode == 1 and "m.json" in proc.stderr and "Traceback" not in proc.stderr
        record("CLI", f"drift on {label} metric JSON", "refused" if ok else "lost", proc.stderr)
        assert ok, proc.stderr
    for rev in ("HAED", "HEAD~100"):
        proc = _cli(["--root", str(root), "drift", "--rev", rev], root)
        ok = proc.returncode == 2 and "Traceback" not in proc.stderr
        record("CLI", f"drift --rev {rev}", "refused" if ok else "lost", proc.stderr)
        assert ok, proc.stderr


# ---------------------------------------------------------------- locks and processes

def test_second_run_of_a_stage_is_refused_naming_the_holder(spec_project: Path):
    from harness.locking import hold, stage_lock_path

    with hold(stage_lock_path(spec_project, "smoke", "param_alloc-shapes"), "stage param_alloc-shapes"):
        proc = _cli(["--root", str(spec_project), "run", "param_alloc-shapes"], spec_project)
    ok = proc.returncode == 4 and f"pid {os.getpid()}" in proc.stderr and "already running" in proc.stderr
    record("concurrency", "two `harness run` of one stage", "refused" if ok else "lost", proc.stderr)
    assert ok, proc.stderr


@pytest.mark.parametrize("command", ["repro", "collect"])
def test_second_scheduler_is_refused_naming_the_holder(spec_project: Path, command: str):
    from harness.locking import hold_project

    with hold_project(spec_project, "test"):
        t0 = time.perf_counter()
        proc = _cli(["--root", str(spec_project), command], spec_project)
        seconds = time.perf_counter() - t0
    ok = proc.returncode == 4 and f"pid {os.getpid()}" in proc.stderr and "already running" in proc.stderr
    record("concurrency", f"two `harness {command}` at once", "refused" if ok else "lost",
           f"{seconds:.1f}s: {proc.stderr}")
    assert ok, proc.stderr


def test_scheduler_refused_while_dvc_holds_its_lock(spec_project: Path):
    import zc.lockfile

    (spec_project / ".dvc" / "tmp").mkdir(parents=True, exist_ok=True)
    lock = zc.lockfile.LockFile(str(spec_project / ".dvc" / "tmp" / "lock"))  # what `dvc repro` holds
    try:
        proc = _cli(["--root", str(spec_project), "repro"], spec_project)
    finally:
        lock.close()
    ok = proc.returncode == 4 and "dvc" in proc.stderr.lower() and str(os.getpid()) in proc.stderr
    record("concurrency", "`harness repro` while `dvc repro` runs", "refused" if ok else "lost", proc.stderr)
    assert ok, proc.stderr


def test_a_lock_truncated_by_a_killed_dvc_write_is_repaired(tmp_path: Path):
    """`dvc repro` rewrites dvc.lock in place after each stage; a kill -9 in that window leaves a
    lock every DVC command refuses. `harness run` keeps a copy of the lock as it was when the
    stage began; `harness repair` puts it back, and `dvc repro` then reruns only what it lacks."""
    from slurm_support.project import make_project

    project = make_project(tmp_path / "p", {"branches": ["a", "b"]})
    project.run(["dvc", "repro"])
    lock = project.root / "dvc.lock"
    complete = lock.read_bytes()
    # what a kill mid-write leaves: the text cut inside the last stage's entry, right after its
    # `outs:` key (still YAML, but DVC's lock schema refuses it: "validation failed")
    cut = complete.rindex(b"\n    outs:")
    lock.write_bytes(complete[: complete.index(b"\n", cut + 1) + 1])
    refused = project.run(["dvc", "status"], check=False)
    repaired = project.run(["harness", "repair"], check=False)
    status_after = project.run(["dvc", "status"], check=False)
    rerun = project.run(["dvc", "repro"], check=False)
    # the last stage only (from DVC's run cache: same inputs, same outputs); the others unchanged
    reran = rerun.stdout.count("Running stage") + rerun.stdout.count("is cached - skipping run")
    ok = (refused.returncode != 0 and repaired.returncode == 0 and "restored dvc.lock" in repaired.stdout
          and status_after.returncode == 0 and "join" in status_after.stdout
          and rerun.returncode == 0 and lock.read_bytes() == complete and reran == 1)
    record("kills", "dvc.lock cut inside a stage entry (a kill during DVC's lock write), then `harness repair`",
           "survived" if ok else "lost",
           f"dvc status refused (rc {refused.returncode}); repair: {repaired.stdout.strip()[:120]}; "
           f"dvc repro reran {reran} stage(s); lock byte-identical: {lock.read_bytes() == complete}")
    assert ok, (refused.stderr[-300:], repaired.stdout, repaired.stderr[-300:], status_after.stderr[-300:],
                rerun.stdout[-500:], rerun.stderr[-300:])


def test_scheduler_waits_for_a_short_dvc_command_instead_of_crashing(tmp_path: Path):
    """A `dvc status` in another terminal holds DVC's repo lock for seconds; DVC itself gives up
    after ~3 s, which crashed a running `harness repro` with a LockError. The scheduler's DVC
    calls now wait for the lock."""
    import threading

    import zc.lockfile

    from harness.dag import dvcgraph
    from slurm_support.project import make_project

    root = make_project(tmp_path / "p").root  # a real git + DVC project, nothing run yet
    lock = zc.lockfile.LockFile(str(root / ".dvc" / "tmp" / "lock"))  # what `dvc status` holds
    released = threading.Timer(5.0, lock.close)
    released.start()
    t0 = time.perf_counter()
    try:
        changed = dvcgraph.changed_stages(root)
        waited = time.perf_counter() - t0
        error = ""
    except Exception as exc:  # noqa: BLE001 - the failure being tested is any exception
        changed, waited, error = set(), time.perf_counter() - t0, f"{type(exc).__name__}: {exc}"
    finally:
        released.join()
    ok = not error and waited >= 4.5 and len(changed) > 0
    record("concurrency", "`dvc status` while `harness repro` asks DVC", "survived" if ok else "lost",
           f"waited {waited:.1f}s for the lock {error}")
    assert ok, (waited, error, sorted(changed)[:3])


def test_dvc_started_stage_refused_while_harness_repro_holds_project(spec_project: Path):
    from harness.locking import hold_project

    with hold_project(spec_project, "test"):
        env = {"DVC_ROOT": str(spec_project), "HARNESS_PROJECT_LOCK_OWNER": ""}
        proc = _cli(["--root", str(spec_project), "run", "param_alloc-shapes"], spec_project, env)
    ok = proc.returncode == 4 and "harness scheduler" in proc.stderr
    record("concurrency", "`dvc repro` while `harness repro` runs", "refused" if ok else "lost", proc.stderr)
    assert ok, proc.stderr


def test_stage_dies_with_its_parent(tmp_path: Path):
    """kill -9 of the parent (as of `dvc repro`): the stage process stops within seconds."""
    pid_file = tmp_path / "child.pid"
    child = ("import os, sys, time; from harness.locking import die_with_parent; die_with_parent(grace_s=1.0); "
             f"open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(120)")
    parent = ("import subprocess, sys, time; "
              f"subprocess.Popen([sys.executable, '-c', {child!r}]); time.sleep(120)")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", parent], env=env)
    deadline = time.time() + 60
    while not pid_file.exists() or not pid_file.read_text():
        assert time.time() < deadline, "child never started"
        time.sleep(0.1)
    child_pid = int(pid_file.read_text())
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    t0 = time.time()
    alive = True
    while time.time() - t0 < 15:
        try:
            os.kill(child_pid, 0)
        except ProcessLookupError:
            alive = False
            break
        try:  # reaped by init; a zombie still answers kill(0)
            with open(f"/proc/{child_pid}/stat") as fh:
                if fh.read().split()[2] == "Z":
                    alive = False
                    break
        except FileNotFoundError:
            alive = False
            break
        time.sleep(0.1)
    record("processes", "kill -9 of the parent of a stage", "survived" if not alive else "lost",
           f"child gone after {time.time() - t0:.1f}s")
    if alive:
        os.kill(child_pid, signal.SIGKILL)
    assert not alive, "the stage outlived its killed parent"


# ---------------------------------------------------------------- state after a refusal

def test_failed_stage_restores_committed_outputs_dvc_deleted(tmp_path: Path):
    """DVC deletes a stage's git-tracked metrics before running it; a stage that then fails (a
    gate refusal) puts back exactly the bytes dvc.lock records, and nothing else."""
    import hashlib

    import yaml

    from harness.execute import restore_committed_outputs
    from harness.schema import Metric, StrictModel
    from typing import Annotated

    class Cfg(StrictModel):
        metrics: Annotated[str, Metric]
        other: Annotated[str, Metric]

    root = tmp_path / "r"
    (root / "metrics").mkdir(parents=True)
    good, other = b'{"a": 1}\n', b'{"b": 2}\n'
    (root / "metrics" / "m.json").write_bytes(good)
    (root / "metrics" / "o.json").write_bytes(other)
    lock = {"schema": "2.0", "stages": {"s": {"outs": [
        {"path": "metrics/m.json", "md5": hashlib.md5(good).hexdigest()},
        {"path": "metrics/o.json", "md5": "0" * 32}]}}}  # o.json's committed bytes are not what the lock says
    (root / "dvc.lock").write_text(yaml.safe_dump(lock))
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"],
                ["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "m"]):
        run(cmd, root)
    (root / "metrics" / "m.json").unlink()
    (root / "metrics" / "o.json").unlink()
    restored = restore_committed_outputs(root, "s", "smoke", Cfg(metrics="metrics/m.json", other="metrics/o.json"))
    ok = restored == ["metrics/m.json"] and (root / "metrics/m.json").read_bytes() == good \
        and not (root / "metrics/o.json").exists()
    record("state after refusal", "git-tracked metrics after a refused gate", "survived" if ok else "lost")
    assert ok, restored


def test_check_params_outputs_persist():
    """A failed check-params must not leave every stage without its config: its outs persist."""
    import yaml

    stage = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]["check-params"]
    ok = all(isinstance(o, dict) and next(iter(o.values())).get("persist") is True for o in stage["outs"])
    record("state after refusal", "stage configs after a failed check-params", "survived" if ok else "lost")
    assert ok


def test_write_error_is_a_message_and_keeps_previous_output(tmp_path: Path, monkeypatch):
    """A full disk (ENOSPC injected at the write) fails the stage with a clear message; the
    previous output is intact (outputs are renamed into place only when complete)."""
    import contextlib
    import errno
    import io

    from harness import cli
    from harness import io as hio

    target = tmp_path / "out.json"
    hio.write_json(target, {"previous": True})
    real_write = Path.write_text

    def full_disk(self, *args, **kwargs):
        if self.name == target.name and ".tmp" in str(self.parent):
            raise OSError(errno.ENOSPC, "No space left on device", str(self))
        return real_write(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", full_disk)

    def func(args):
        hio.write_json(target, {"previous": False})
        return 0

    parser_ns = cli.build_parser().parse_args(["compile"])
    parser_ns.func = func
    monkeypatch.setattr(cli, "build_parser", lambda: type("P", (), {"parse_args": lambda self, a: parser_ns})())
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = cli.main([])
    monkeypatch.setattr(Path, "write_text", real_write)
    ok = rc == 1 and "No space left on device" in err.getvalue() and json.loads(target.read_text()) == {"previous": True} \
        and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    record("full disk", "ENOSPC injected at an output write", "survived" if ok else "lost", err.getvalue())
    assert ok, err.getvalue()


# ---------------------------------------------------------------- bad data at the gates

def _gate_refuses(call, needle: str, case: str) -> None:
    from harness.validation import GateFailure

    try:
        call()
    except GateFailure as exc:
        ok = needle in str(exc)
        record("data", case, "refused" if ok else "lost", str(exc))
        assert ok, str(exc)
        return
    except Exception as exc:  # noqa: BLE001
        record("data", case, "lost", f"{type(exc).__name__}: {exc}")
        raise
    record("data", case, "lost", "accepted")
    raise AssertionError(f"{case}: accepted")


def test_param_alloc_corpus_gates(tmp_path: Path):
    from stages.param_alloc.corpus import read_wikitext_articles
    from stages.param_alloc.gate import check_articles

    latin1 = tmp_path / "corpus.txt"
    latin1.write_bytes(" = Title = \nA caf\xe9 in Paris .\n".encode("latin-1"))
    _gate_refuses(lambda: read_wikitext_articles(latin1), "first rows [2]", "param_alloc: Latin-1 byte in corpus.txt")
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    _gate_refuses(lambda: read_wikitext_articles(empty), "0 non-blank line(s)", "param_alloc: empty corpus.txt")
    import pandas as pd

    corpus = tmp_path / "c"
    corpus.mkdir()
    pd.DataFrame({"split": ["train", "dev"], "doc": [0, 0], "doc_hash": ["a", "b"], "text": ["x", "y"]}) \
        .to_parquet(corpus / "articles.parquet")
    _gate_refuses(lambda: check_articles(corpus), "articles/test", "param_alloc: empty test split")
    pd.DataFrame({"split": ["train", "dev", "test"], "doc": [0, 0, 0], "doc_hash": ["a", "a", "b"],
                  "text": ["x", "x", "y"]}).to_parquet(corpus / "articles.parquet")
    _gate_refuses(lambda: check_articles(corpus), "expect_column_values_to_not_be_in_set", "param_alloc: article in two splits")


def test_hmm_icl_corpus_refuses_invalid_utf8(tmp_path: Path):
    from stages.hmm_icl.text import read_blocks

    path = tmp_path / "stories.txt"
    path.write_bytes(b"Once upon a time.\n\nThe \xff end.\n")
    _gate_refuses(lambda: read_blocks(path), "first rows [3]", "hmm_icl: invalid UTF-8 in stories.txt")


def test_mixture_sim_refuses_empty_domain_corpus(tmp_path: Path):
    from stages.mixture_sim.lm import mixed_stream

    full, empty = tmp_path / "c4.txt", tmp_path / "wikipedia.txt"
    full.write_text("some text\n")
    empty.write_bytes(b"")
    _gate_refuses(lambda: mixed_stream({"c4": str(full), "wikipedia": str(empty)}, {"c4": 0.967, "wikipedia": 0.033}, 1000),
                  "wikipedia.txt", "mixture_sim: empty wikipedia/train.txt")


def test_full_tmpfs_fails_cleanly_and_keeps_previous_output(tmp_path: Path):
    """A real nearly-full filesystem (a 64 KiB tmpfs; needs root, else skipped): writing a 1 MB
    output fails with a message naming the file, the previous output and nothing else remain."""
    import contextlib
    import io

    from harness import cli
    from harness import io as hio

    mount = tmp_path / "small"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (not root?): the injected ENOSPC test covers it")
    try:
        target = mount / "metrics.json"
        hio.write_json(target, {"previous": True})
        ns = cli.build_parser().parse_args(["compile"])
        ns.func = lambda _args: hio.write_text(target, "x" * (1 << 20)) and 0
        err = io.StringIO()
        original = cli.build_parser
        cli.build_parser = lambda: type("P", (), {"parse_args": lambda self, a: ns})()
        try:
            with contextlib.redirect_stderr(err):
                rc = cli.main([])
        finally:
            cli.build_parser = original
        left = sorted(p.name for p in mount.iterdir())
        ok = rc == 1 and "No space left on device" in err.getvalue() and \
            json.loads(target.read_text()) == {"previous": True} and left == ["metrics.json"]
        record("full disk", "1 MB output on a 64 KiB tmpfs", "survived" if ok else "lost", err.getvalue())
        assert ok, (rc, err.getvalue(), left)
    finally:
        subprocess.run(["umount", str(mount)], capture_output=True)
