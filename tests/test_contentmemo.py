"""The on-disk memo behind `harness compile --check`'s spec parses and import scans.

It may only ever save time: the same bytes give the stored value, other bytes or other code
(the salt) recompute, a corrupt entry recomputes, and an error is never stored.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from harness import contentmemo
from harness.spec import SpecError, read_yaml_with_positions


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "memo"))
    return tmp_path / "memo"


def test_same_bytes_are_served_other_bytes_or_code_recompute():
    calls = []

    def compute(value):
        def run():
            calls.append(value)
            return {"v": value, "t": (1, 2)}
        return run

    assert contentmemo.memoised("k", b"salt", b"abc", compute(1)) == {"v": 1, "t": (1, 2)}
    assert contentmemo.memoised("k", b"salt", b"abc", compute(2)) == {"v": 1, "t": (1, 2)}  # stored
    assert contentmemo.memoised("k", b"salt", b"abd", compute(3))["v"] == 3  # other content
    assert contentmemo.memoised("k", b"other", b"abc", compute(4))["v"] == 4  # other code
    assert calls == [1, 3, 4]


def test_a_corrupt_entry_is_recomputed(private_cache: Path):
    contentmemo.memoised("k", b"s", b"x", lambda: [1, 2, 3])
    (entry,) = (private_cache / "k").glob("*.marshal")
    entry.write_bytes(b"\x00garbage")
    assert contentmemo.memoised("k", b"s", b"x", lambda: [4]) == [4]


def test_values_marshal_cannot_hold_are_computed_every_time(private_cache: Path):
    class Odd:
        pass

    first = contentmemo.memoised("k", b"s", b"y", Odd)
    assert isinstance(first, Odd) and not list((private_cache / "k").glob("*.marshal"))


def test_spec_errors_are_never_memoised(tmp_path: Path):
    spec = tmp_path / "s.yaml"
    spec.write_text("study: x\nkey: [1, 2\n")
    for _ in range(2):  # the second read must fail the same way, not be served a stored result
        with pytest.raises(SpecError) as err:
            read_yaml_with_positions(spec)
        assert "s.yaml:3:1: <document>: not valid YAML" in err.value.problems[0]
    spec.write_text("study: x\nkey: [1, 2]\n")
    data, positions = read_yaml_with_positions(spec)
    assert data == {"study": "x", "key": [1, 2]} and positions[("key",)] == (2, 1)
    again, _ = read_yaml_with_positions(spec)  # a fresh copy: callers mutate what they get
    again["key"].append(3)
    assert read_yaml_with_positions(spec)[0]["key"] == [1, 2]
