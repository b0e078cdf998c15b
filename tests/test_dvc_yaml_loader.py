"""DVC parses every dvc.yaml / dvc.lock with ruamel's ``typ="safe"`` loader on each command.

With ``ruamel.yaml.clib`` installed that loader is libyaml-based and about 3x faster, which is
most of a no-op ``dvc repro`` / ``dvc status`` on this project (benchmarks/bench_core.py). The
speed is only worth having if the parsed values are the same as the pure-Python loader's.
"""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PIPELINE_FILES = sorted(p for p in [ROOT / "dvc.yaml", ROOT / "dvc.lock", *ROOT.glob("profiles/*/dvc.*"),
                                    *ROOT.glob("*.dvc")] if p.is_file())


def test_the_c_loader_is_installed_and_used_by_dvc():
    from ruamel.yaml import YAML
    from ruamel.yaml.main import CParser

    assert CParser is not None, "ruamel.yaml.clib is missing: every dvc command parses YAML in pure Python"
    assert YAML(typ="safe").Parser is CParser


@pytest.mark.parametrize("path", PIPELINE_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_c_and_pure_loaders_agree_on_the_pipeline_files(path: Path):
    from dvc.utils.serialize import parse_yaml
    from ruamel.yaml import YAML

    text = path.read_text()
    assert parse_yaml(text, str(path)) == YAML(typ="safe", pure=True).load(text)
