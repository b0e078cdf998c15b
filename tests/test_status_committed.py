"""`harness status --committed` on a clone without the reference outputs (what CI sees).

A sweep stage writes a folder; the stage after it depends on one file inside. In a fresh clone
neither is present, and the lock records only the folder's hash: that is "not in this clone",
not "stale" (CI printed both scaling reference stages as stale for that reason alone).
"""

from __future__ import annotations

from pathlib import Path

from harness.status import _file_reason, _owner_of

OUT_OWNER = {"work/ref/sweeps/sp": "sweep-sp", "work/ref/table.csv": "table"}


def _reasons(path: str, what: str, committed: bool, dep_md5: str | None = None) -> list[str]:
    reasons: list[str] = []
    lock = {"stages": {"transfer": {"deps": [{"path": path, "md5": dep_md5}]}}}
    locked = {"sweep-sp": {"outs": [{"path": "work/ref/sweeps/sp", "md5": "abc.dir"}]},
              "table": {"outs": [{"path": "work/ref/table.csv", "md5": "m1"}]}}
    _file_reason(Path("."), Path("."), "transfer", path, what, lock, OUT_OWNER, locked, None, committed,
                 lambda name, reason: reasons.append(reason))
    return reasons


def test_a_file_inside_an_output_folder_has_the_folders_owner():
    assert _owner_of("work/ref/sweeps/sp/results.csv", OUT_OWNER) == "sweep-sp"
    assert _owner_of("work/ref/table.csv", OUT_OWNER) == "table"
    assert _owner_of("work/ref/sweeps/spx/results.csv", OUT_OWNER) is None


def test_committed_mode_accepts_an_absent_file_of_an_upstream_folder():
    assert _reasons("work/ref/sweeps/sp/results.csv", "deleted", committed=True) == []


def test_it_is_still_stale_when_the_file_is_there_and_changed_or_outside_committed_mode():
    assert _reasons("work/ref/sweeps/sp/results.csv", "modified", committed=True, dep_md5="x1") == [
        "upstream sweep-sp output work/ref/sweeps/sp/results.csv changed"]
    assert _reasons("work/ref/sweeps/sp/results.csv", "deleted", committed=False) == [
        "upstream sweep-sp output work/ref/sweeps/sp/results.csv missing"]
    # an exact output whose lock record disagrees with the dep's: stale even in committed mode
    assert _reasons("work/ref/table.csv", "deleted", committed=True, dep_md5="m0") == [
        "upstream table output work/ref/table.csv missing"]
