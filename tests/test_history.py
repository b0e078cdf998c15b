"""harness history on a throwaway git repository built in tmp_path."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from harness.cli import main
from harness.history import HistoryError, flatten, history, markdown, setup_changes

ENV = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
       "GIT_COMMITTER_EMAIL": "t@t", "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True, text=True, env=ENV).stdout


def commit(root: Path, files: dict[str, object], message: str, date: str) -> str:
    for rel, content in files.items():
        path = root / rel
        if content is None:
            path.unlink()
            git(root, "rm", "-q", "--cached", rel)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        if rel.endswith(".json"):
            path.write_text(json.dumps(content, indent=1))
        elif rel.endswith((".yaml", ".py", ".md")):
            path.write_text(content if isinstance(content, str) else yaml.safe_dump(content))
        git(root, "add", rel)
    subprocess.run(["git", "-C", str(root), "commit", "-q", "-m", message], check=True,
                   env={**ENV, "GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date})
    return git(root, "rev-parse", "HEAD").strip()


METRIC = "metrics/reference/scaling/transfer.json"


@pytest.fixture()
def repo(tmp_path: Path) -> dict[str, str]:
    root = tmp_path / "proj"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    spec = {"study": "scaling", "profiles": {"reference": {"model": {"base_width": 32, "depth": 2}}},
            "seeds": [1, 2, 3]}
    other = {"study": "hmm_icl", "hmm": {"K": 32}}
    shas = {}
    shas["first"] = commit(root, {"specs/scaling.yaml": spec, "specs/hmm_icl.yaml": other,
                                  "params.yaml": {"seed": 1, "lr": 0.01},
                                  "stages/scaling/fit.py": "x = 1\n",
                                  METRIC: {"mup": {"shift": -0.81, "ci": [-0.97, -0.61]}, "sp": {"shift": -4.38}}},
                           "scaling reference at base 32", "2026-01-01T10:00:00+00:00")
    spec["profiles"]["reference"]["model"]["base_width"] = 16
    other["hmm"]["K"] = 16
    shas["base16"] = commit(root, {"specs/scaling.yaml": spec, "specs/hmm_icl.yaml": other},
                            "pilot: base 16", "2026-01-02T10:00:00+00:00")
    spec["profiles"]["reference"]["model"]["base_width"] = 8
    shas["second"] = commit(root, {"specs/scaling.yaml": spec, "params.yaml": {"seed": 1, "lr": 0.02},
                                   "stages/scaling/fit.py": "x = 2\n",
                                   METRIC: {"mup": {"shift": -0.33, "ci": [-0.36, -0.09]}, "sp": {"shift": -4.38}}},
                            "scaling reference at base 8: goal met", "2026-01-03T10:00:00+00:00")
    # the file changes but not the mup values
    shas["sp_only"] = commit(root, {METRIC: {"mup": {"shift": -0.33, "ci": [-0.36, -0.09]}, "sp": {"shift": -4.5}},
                                    "specs/scaling.yaml": {**spec, "seeds": [1, 2, 3, 4, 5]}},
                             "sp rerun", "2026-01-04T10:00:00+00:00")
    return {"root": str(root), **shas}


def test_values_and_setup_changes_between_them(repo):
    root = Path(repo["root"])
    hist = history(root, f"{METRIC}:mup.*", worktree=False)
    assert [e.commit for e in hist.entries] == [repo["first"], repo["second"]]  # sp_only: mup unchanged
    assert hist.commits_touching == 3
    first, second = hist.entries
    assert first.values == {"mup.shift": -0.81, "mup.ci": [-0.97, -0.61]} and first.setup == []
    assert first.date.startswith("2026-01-01") and first.subject == "scaling reference at base 32"
    assert second.changed_values == {"mup.shift": (-0.81, -0.33), "mup.ci": ([-0.97, -0.61], [-0.36, -0.09])}
    changes = {(c.file, c.key): (c.old, c.new) for c in second.setup}
    # the pilot commit in between is folded into the spec diff: 32 -> 8, not a text diff
    assert changes[("specs/scaling.yaml", "profiles.reference.model.base_width")] == (32, 8)
    assert changes[("params.yaml", "lr")] == (0.01, 0.02)
    assert changes[("specs/hmm_icl.yaml", "hmm.K")] == (32, 16)
    assert ("specs/scaling.yaml", "profiles.reference.model.depth") not in changes  # unchanged keys are not listed
    assert second.code == ["stages/scaling/fit.py"]


def test_text_and_every_commit(repo):
    root = Path(repo["root"])
    text = history(root, f"{METRIC}:mup.shift", worktree=False).text()
    assert "mup.shift: -0.81 -> -0.33" in text
    assert "setup: specs/scaling.yaml: profiles.reference.model.base_width 32 -> 8" in text
    assert "setup: params.yaml: lr 0.01 -> 0.02" in text
    assert "specs/hmm_icl.yaml: 1 key(s) changed (another study's spec" in text  # folded: not this study
    assert "code: stages/scaling/fit.py" in text
    every = history(root, f"{METRIC}:mup.shift", every_commit=True, worktree=False)
    assert len(every.entries) == 3
    assert every.entries[2].changed_values == {}
    assert [(c.key, c.old, c.new) for c in every.entries[2].setup] == [("seeds", [1, 2, 3], [1, 2, 3, 4, 5])]
    whole = history(root, METRIC, worktree=False)
    assert len(whole.entries) == 3 and whole.entries[2].changed_values == {"sp.shift": (-4.38, -4.5)}


def test_uncommitted_change_is_shown_last(repo):
    root = Path(repo["root"])
    (root / METRIC).write_text(json.dumps({"mup": {"shift": -0.2, "ci": [-0.3, -0.1]}, "sp": {"shift": -4.5}}))
    hist = history(root, f"{METRIC}:mup.shift")
    assert hist.entries[-1].commit == "working tree"
    assert hist.entries[-1].changed_values == {"mup.shift": (-0.33, -0.2)}
    assert "(uncommitted)" in hist.text()
    assert len(history(root, f"{METRIC}:mup.shift", worktree=False).entries) == 2


def test_deleted_file_and_bad_pattern(repo):
    root = Path(repo["root"])
    sha = commit(root, {METRIC: None}, "drop the result", "2026-01-05T10:00:00+00:00")
    hist = history(root, f"{METRIC}:mup.shift", worktree=False)
    assert hist.entries[-1].commit == sha and hist.entries[-1].values is None
    assert "(file absent)" in hist.text()
    with pytest.raises(HistoryError, match="no key matches"):
        history(root, f"{METRIC}:nothing.*", worktree=False)
    with pytest.raises(HistoryError, match="not in git history"):
        history(root, "metrics/none.json", worktree=False)


def test_report_file_is_listed_per_commit(repo):
    root = Path(repo["root"])
    commit(root, {"reports/scaling/README.md": "# answered\n"}, "report v1", "2026-01-05T10:00:00+00:00")
    commit(root, {"reports/scaling/README.md": "# not answered\n", "params.yaml": {"seed": 2, "lr": 0.02}},
           "report v2", "2026-01-06T10:00:00+00:00")
    hist = history(root, "reports/scaling/README.md", worktree=False)
    assert [e.subject for e in hist.entries] == ["report v1", "report v2"]
    assert [(c.key, c.old, c.new) for c in hist.entries[1].setup] == [("seed", 1, 2)]


def test_setup_changes_added_and_removed_files(repo):
    root = Path(repo["root"])
    sha = commit(root, {"specs/new.yaml": {"a": {"b": 1}}, "specs/hmm_icl.yaml": None}, "swap specs",
                 "2026-01-05T10:00:00+00:00")
    changes = {c.file: c for c in setup_changes(root, repo["sp_only"], sha)}
    assert "added" in changes["specs/new.yaml"].text() and "removed" in changes["specs/hmm_icl.yaml"].text()


def test_flatten():
    assert flatten({"a": {"b": 1, "c": [1, 2]}, "d": {}}) == {"a.b": 1, "a.c": [1, 2], "d": {}}


def test_markdown_section(repo):
    md = markdown(history(Path(repo["root"]), f"{METRIC}:mup.shift", worktree=False))
    assert md.startswith("## How we got here")
    assert "mup.shift -0.33" in md and "base_width 32 -> 8" in md


def test_cli(repo, capsys):
    root = repo["root"]
    assert main(["--root", root, "history", f"{METRIC}:mup.shift", "--committed-only"]) == 0
    out = capsys.readouterr().out
    assert "2 value(s) in 3 commit(s)" in out and repo["second"][:7] in out
    assert main(["--root", root, "history", f"{METRIC}:mup.shift", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [e["commit"] for e in data["entries"]] == [repo["first"], repo["second"]]
    assert main(["--root", root, "history", f"{METRIC}:zzz"]) == 2
    assert "no key matches" in capsys.readouterr().err
