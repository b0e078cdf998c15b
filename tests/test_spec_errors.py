"""Malformed specs exit with code 2 and name file:line:col, the field path and what was expected;
nothing is written."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml

from conftest import REPO, run

SPEC = "specs/param_alloc.yaml"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "specs").mkdir()
    shutil.copy(REPO / SPEC, tmp_path / SPEC)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    keep = {k: params[k] for k in ("seed", "lr", "embed_share", "glu")}  # param_alloc's knobs
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(keep))
    run(["harness", "compile"], tmp_path)  # the pristine spec compiles
    return tmp_path


def _line_of(path: Path, needle: str) -> int:
    for i, line in enumerate(path.read_text().splitlines(), start=1):
        if needle in line:
            return i
    raise AssertionError(f"{needle!r} not in {path}")


def _break(root: Path, old: str, new: str) -> int:
    spec = root / SPEC
    text = spec.read_text()
    assert old in text, old
    spec.write_text(text.replace(old, new, 1))
    return _line_of(spec, new.strip().splitlines()[0])


def _compile_fails(root: Path) -> str:
    before = (root / "dvc.yaml").read_text()
    proc = run(["harness", "compile"], root, check=False)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert (root / "dvc.yaml").read_text() == before, "a failed compile must not write dvc.yaml"
    return proc.stderr


def test_unknown_field_names_line_and_suggests(root: Path):
    line = _break(root, "  top_k: 2", "  top_kk: 2")
    err = _compile_fails(root)
    assert re.search(rf"{SPEC}:{line}:\d+: phase1\.top_kk: unknown field `top_kk`; did you mean `top_k`\?", err), err


def test_wrong_type(root: Path):
    line = _break(root, "  batch_size: 16", "  batch_size: sixteen")
    err = _compile_fails(root)
    assert f"{SPEC}:{line}:" in err and "train.batch_size" in err and "valid integer" in err, err


def test_out_of_range_share(root: Path):
    line = _break(root, "  embed_share: [0.25, 0.35, 0.45]", "  embed_share: [0.25, 1.35, 0.45]")
    err = _compile_fails(root)
    assert f"{SPEC}:{line}:" in err and "grid.embed_share.1" in err and "less than 1 (got 1.35)" in err, err


def test_fractions_must_sum_to_one(root: Path):
    line = _break(root, "  fractions: {train: 0.8, dev: 0.1, test: 0.1}", "  fractions: {train: 0.8, dev: 0.1, test: 0.07}")
    err = _compile_fails(root)
    assert f"{SPEC}:{line}:" in err and "data" in err and "sum to 1" in err, err


def test_negative_glu_in_params_is_rejected(root: Path):
    text = (root / "params.yaml").read_text().replace("glu: 2.66", "glu: -1.0")
    (root / "params.yaml").write_text(text)
    err = _compile_fails(root)
    assert "baseline.glu" in err and "greater than 0" in err, err


def test_unknown_knob_reference(root: Path):
    line = _break(root, "  lr: ${lr}", "  lr: ${lrr}")
    err = _compile_fails(root)
    assert f"{SPEC}:{line}:" in err and "knob `lrr` is not defined in params.yaml; did you mean `lr`?" in err, err


def test_yaml_syntax_error(root: Path):
    line = _break(root, "  seq_len: 64", "  seq_len: [64")
    err = _compile_fails(root)
    assert f"{SPEC}:" in err and "not valid YAML" in err, err


def test_unknown_param_knob(root: Path):
    (root / "params.yaml").write_text((root / "params.yaml").read_text() + "gluu: 3.0\n")
    proc = run(["harness", "check-params"], root, check=False)
    assert proc.returncode == 2
    assert "unknown knob `gluu`" in proc.stderr and "did you mean `glu`?" in proc.stderr, proc.stderr


def test_compile_is_byte_identical_and_check_detects_staleness(root: Path):
    first = (root / "dvc.yaml").read_bytes()
    run(["harness", "compile"], root)
    assert (root / "dvc.yaml").read_bytes() == first
    assert run(["harness", "compile", "--check"], root, check=False).returncode == 0
    (root / "dvc.yaml").write_text(first.decode().replace("- seed\n", "", 1))
    assert run(["harness", "compile", "--check"], root, check=False).returncode == 1
