"""Cross-machine reproducibility: the thread pin, the machine record, drift's machine notes, the probe
table of `harness doctor`, and `harness drift --perturb`'s verdicts.

The kernel pin itself is tested in test_kernel_pinning.py; here, what a second machine changes
besides the SIMD kernels: its core count (so the threads a runner grants), and how a user tells
"another machine" from "another result".
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# numpy's OpenBLAS matmul, hashed, in a process that imports the CLI first (as `harness run` does)
_PINNED = """
import hashlib, os, sys
sys.argv = ["harness"]
import harness.cli  # pins kernels and threads before numpy loads
import numpy as np, torch
rng = np.random.default_rng(0)
a, b = rng.standard_normal((257, 257)), rng.standard_normal((257, 257))
print(hashlib.sha256((a @ b).tobytes()).hexdigest()[:16], torch.get_num_threads(), os.environ["OPENBLAS_NUM_THREADS"])
"""
_UNPINNED = """
import hashlib
import numpy as np
rng = np.random.default_rng(0)
a, b = rng.standard_normal((257, 257)), rng.standard_normal((257, 257))
print(hashlib.sha256((a @ b).tobytes()).hexdigest()[:16])
"""


def _py(code: str, **env: str) -> list[str]:
    base = {k: v for k, v in os.environ.items()
            if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "HARNESS_THREADS")}
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env={**base, **env}, capture_output=True,
                         text=True, timeout=120, check=True)
    return out.stdout.split()


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs 2 cores to show that threads change bits")
def test_runner_granted_threads_no_longer_change_the_bits():
    # without the pin, the thread count a runner exports changes OpenBLAS's result (so the test can fail)
    assert _py(_UNPINNED, OMP_NUM_THREADS="1") != _py(_UNPINNED, OMP_NUM_THREADS="2")
    one = _py(_PINNED, OMP_NUM_THREADS="1")
    two = _py(_PINNED, OMP_NUM_THREADS="2")
    unset = _py(_PINNED)
    assert one == two == unset
    assert one[1:] == ["1", "1"]  # torch and OpenBLAS both run the pinned single thread


def test_harness_threads_is_a_deliberate_choice():
    assert _py(_PINNED, HARNESS_THREADS="2")[1:] == ["2", "2"]
    assert _py(_PINNED, HARNESS_THREADS="zero")[1:] == ["1", "1"]  # ignored with a note, never a crash


def test_machine_record_is_deterministic_and_names_what_differs():
    from harness.machine import machine_differences, machine_record

    a, b = machine_record(), machine_record()
    assert a == b and machine_differences(a, b) == []
    assert "time" not in json.dumps(a) and a["cpu"]["arch"]
    other = json.loads(json.dumps(a))
    other["cpu"].update(vendor="AuthenticAMD", model="AMD EPYC 9B14")
    other["threads"]["pinned"] = 2
    other["libraries"]["numpy"] = "0.0"
    diffs = machine_differences(other, a)
    assert any(d.startswith("cpu AuthenticAMD 'AMD EPYC 9B14' -> ") for d in diffs)
    assert any(d.startswith("threads.pinned: 2 -> ") for d in diffs)
    assert any(d.startswith("libraries.numpy: '0.0' -> ") for d in diffs)
    assert machine_differences(None, a) == ["no machine record for the committed run"]


def _git(root: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=root, check=True, capture_output=True)


def test_drift_says_whether_the_machine_changed(tmp_path: Path):
    """A drifted metric is printed with how the reproducing machine differs from the committing one."""
    from harness.machine import machine_record

    root = tmp_path / "p"
    (root / "metrics" / "s").mkdir(parents=True)
    (root / "machines").mkdir()
    (root / "dvc.yaml").write_text("stages:\n  s-train:\n    cmd: harness run s-train\n"
                                   "    metrics:\n    - metrics/s/train.json:\n        cache: false\n")
    (root / "metrics" / "s" / "train.json").write_text(json.dumps({"loss": 2.0}))
    committed = machine_record()
    committed["cpu"].update(vendor="AuthenticAMD", model="AMD EPYC 7B13")
    (root / "machines" / "s-train.json").write_text(json.dumps(committed))
    _git(root, "init", "-q")
    _git(root, "-c", "user.email=a@b", "-c", "user.name=a", "add", "-A")
    _git(root, "-c", "user.email=a@b", "-c", "user.name=a", "commit", "-qm", "x")
    (root / "metrics" / "s" / "train.json").write_text(json.dumps({"loss": 2.1}))
    (root / "machines" / "s-train.json").write_text(json.dumps(machine_record()))
    cmd = [sys.executable, "-m", "harness.cli", "drift"]
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert "metrics/s/train.json: loss committed 2.0, reproduced 2.1" in proc.stderr
    assert "machine: s-train: other machine: cpu AuthenticAMD 'AMD EPYC 7B13' -> " in proc.stderr
    # the same machine: drift is then a real change, and says so
    _git(root, "add", "machines")
    _git(root, "-c", "user.email=a@b", "-c", "user.name=a", "commit", "-qm", "same machine")
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert "s-train: same machine, kernels, threads and libraries" in proc.stderr


def test_doctor_compares_probe_tables_row_by_row():
    from harness.doctor import committed_tables, compare, parse

    tables = committed_tables(REPO)
    assert tables, "machines/probe/ holds at least the table of the machine that made the committed results"
    text = tables[0].read_text()
    header, rows = parse(text)
    assert header["threads"] == "1" and header["pin"].startswith("avx2") and len(rows) >= 40
    assert compare(text, text) == []
    name = "torch.train20.lstm"
    changed = text.replace(rows[name][0], "0" * 16)
    assert compare(changed, text) == [f"{name}: bits differ (sum {rows[name][1]} there, {rows[name][1]} here)"]
    assert compare("\n".join(l for l in text.splitlines() if not l.startswith("sklearn.rf")), text) == \
        ["sklearn.rf: only on the committed one"]


def test_perturb_selects_the_downstream_closure_in_dag_order():
    from harness.perturb import load_pipeline, select

    stages = load_pipeline(REPO, "smoke")
    order = select(stages, ["scaling-table-synthetic"])
    assert order[0] == "scaling-table-synthetic"
    assert {"scaling-fit-a1-synthetic", "scaling-fit-a2-synthetic", "scaling-fit-a3-synthetic"} <= set(order)
    assert order.index("scaling-fit-a1-synthetic") < order.index("scaling-report")
    assert "param_alloc-tokenize" not in order
    with pytest.raises(ValueError, match="no stage matches 'scaling-tabel-\\*'"):
        select(stages, ["scaling-tabel-*"])


def test_perturb_flags_a_metric_that_moves_and_spares_one_declared(tmp_path: Path, monkeypatch):
    """The verdict logic on a stand-in stage run: a moved metric is chaotic unless a spec declares it."""
    from harness import perturb as P

    root = tmp_path / "p"
    (root / "metrics" / "s").mkdir(parents=True)
    (root / "dvc.yaml").write_text("stages:\n  s-fit:\n    cmd: harness run s-fit\n"
                                   "    metrics:\n    - metrics/s/fit.json:\n        cache: false\n")
    (root / "metrics" / "s" / "fit.json").write_text(json.dumps({"pick": 0.25, "loss": 2.0, "rank": 0.5}))
    from harness.dag.dvcgraph import dvc_executable

    _git(root, "init", "-q")  # the stages are read through DVC's own graph
    subprocess.run([dvc_executable(), "init", "-q"], cwd=root, check=True, capture_output=True)

    def fake_run(scratch, stages, order, env, jobs, log_dir, out):  # the stage "ran" under perturbation
        (scratch / "metrics" / "s" / "fit.json").write_text(json.dumps({"pick": 0.12, "loss": 2.0 + 1e-9,
                                                                          "rank": -0.3}))
        return []

    monkeypatch.setattr(P, "run_stages", fake_run)
    from harness.drift import NotReproducible

    declared = NotReproducible([("metrics/s/fit.json:rank", "Spearman over 6 near-tied rows; moved 1.6 under isa", "x")])
    monkeypatch.setattr(P, "declared_not_reproducible", lambda root: declared)
    result = P.perturb(root, "threads", ["s-*"], out=lambda msg: None)
    assert [(m.key, m.old, m.new) for m in result.chaotic] == [("pick", 0.25, 0.12)]
    assert result.declared and result.declared[0][0] == "metrics/s/fit.json:rank"
    assert result.largest["metrics/s/fit.json"][0] == "pick"
    lines = P.summary_lines(result)
    assert any(line.startswith("  CHAOTIC metrics/s/fit.json: pick pinned 0.25, perturbed 0.12") for line in lines)
    assert any("declared not reproducible: 1 value(s), largest move 1.6" in line for line in lines)


def test_a_declared_metric_is_printed_as_not_reproducible_never_as_a_number():
    from stages.scaling.report import sweep_section

    summary = {"sweep": "lstm", "parametrization": "sp", "widths": {
        "16": {"N": 1, "N_no_emb": 1, "lr_refined": 0.1893, "loss": 2.46, "on_edge": False,
               "micro_batch": 8, "grad_accum": 1, "tokens_per_step": 256}}}
    plain = "\n".join(sweep_section([summary], {}, ["metrics/scaling/sweep-lstm-sp.json"], {}))
    assert "0.189" in plain and "not reproducible" not in plain
    declared = {"metrics/scaling/sweep-lstm-*.json:widths.*.lr_refined": "chaotic: moved 8 %"}
    text = "\n".join(sweep_section([summary], {}, ["metrics/scaling/sweep-lstm-sp.json"], declared))
    assert "0.189" not in text and "not reproducible across machines [1]" in text
    assert "[1] chaotic: moved 8 %" in text and "2.46" in text  # the undeclared loss stays a number


def test_drift_skips_and_lists_declared_metrics(tmp_path: Path):
    root = tmp_path / "p"
    (root / "metrics" / "scaling").mkdir(parents=True)
    (root / "specs").mkdir()
    (root / "dvc.yaml").write_text("stages: {}\n")
    (root / "params.yaml").write_text((REPO / "params.yaml").read_text())
    (root / "specs" / "scaling.yaml").write_text((REPO / "specs" / "scaling.yaml").read_text())
    metric = root / "metrics" / "scaling" / "sweep-lstm-sp.json"
    metric.write_text(json.dumps({"shift_log2": -0.55, "widths": {"16": {"N": 10368, "lr_refined": 0.19}}}))
    _git(root, "init", "-q")
    _git(root, "-c", "user.email=a@b", "-c", "user.name=a", "add", "-A")
    _git(root, "-c", "user.email=a@b", "-c", "user.name=a", "commit", "-qm", "x")
    metric.write_text(json.dumps({"shift_log2": -0.67, "widths": {"16": {"N": 10368, "lr_refined": 0.12}}}))
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "drift"], cwd=root, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "not reproducible across machines (declared, not compared): " \
           "metrics/scaling/sweep-lstm-*.json:*_log2*: 1 value(s)" in proc.stdout
    metric.write_text(json.dumps({"shift_log2": -0.67, "widths": {"16": {"N": 11000, "lr_refined": 0.12}}}))
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "drift"], cwd=root, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 1 and "widths.16.N committed 10368, reproduced 11000" in proc.stderr


@pytest.mark.parametrize("entry, message", [
    ('"metrics/scaling/sweep-lstm-sp.json:*": "chaotic"', "a bare wildcard would hide a whole file"),
    ('"metrics/param_alloc/overfit.json:final_loss": "chaotic"', "may only name this study's metrics"),
    ('"metrics/scaling/sweep-lstm-sp.json:shift_log2": ""', "give the reason and the measured sensitivity"),
])
def test_a_bad_not_reproducible_declaration_is_a_spec_error(tmp_path: Path, entry: str, message: str):
    root = tmp_path / "p"
    (root / "metrics" / "scaling").mkdir(parents=True)
    (root / "specs").mkdir()
    (root / "dvc.yaml").write_text("stages: {}\n")
    (root / "params.yaml").write_text((REPO / "params.yaml").read_text())
    text = (REPO / "specs" / "scaling.yaml").read_text().replace(
        "not_reproducible:\n", f"not_reproducible:\n  {entry}\n", 1)
    (root / "specs" / "scaling.yaml").write_text(text)
    (root / "metrics" / "scaling" / "x.json").write_text("{}")
    _git(root, "init", "-q")
    _git(root, "-c", "user.email=a@b", "-c", "user.name=a", "add", "-A")
    _git(root, "-c", "user.email=a@b", "-c", "user.name=a", "commit", "-qm", "x")
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "drift"], cwd=root, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "specs/scaling.yaml" in proc.stderr and "not_reproducible" in proc.stderr and message in proc.stderr
