"""Generic gate checks on raw input files, before any study code parses them.

Why here and not in each study: "is this text file UTF-8", "is it empty", "which lines are bad"
are the same question for every corpus, and a study that reads a file with
``errors="replace"`` (or lets ``UnicodeDecodeError`` escape as a traceback) either trains on
silently altered text or fails without naming the file. These checks raise the same
:class:`harness.validation.GateFailure` as the Great Expectations suites (exit code 3), naming
the file, the expectation, the column and the first offending rows, so nothing downstream runs.

Pure Python on purpose: decoding bytes is what the check *is*; starting a Great Expectations
context (seconds) to ask it would only slow every stage that opens a file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from harness.validation import MAX_ROWS_SHOWN, GateFailure


def _failure(expectation: str, column: str, rows: list[Any], values: list[Any], count: int, total: int,
             what: str) -> dict[str, Any]:
    rows, values = rows[:MAX_ROWS_SHOWN], values[:MAX_ROWS_SHOWN]
    summary = f"{expectation} on column `{column}`: {what}"
    if count:
        summary += f"; {count} of {total} rows fail; first rows {rows} with values {values}"
    return {"expectation": expectation, "column": column, "unexpected_count": count, "rows": rows,
            "values": values, "summary": summary}


def text_file_failures(path: str | Path, *, encoding: str | None = "utf-8", min_lines: int = 1) -> list[dict]:
    """What is wrong with one text file (empty list: nothing). Rows are 1-based line numbers."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        return [_failure("ExpectFileToExist", "<file>", [], [], 0, 0, f"{path}: cannot read ({exc.strerror})")]
    failures = []
    lines = data.split(b"\n")
    if encoding:
        bad_rows, bad_values = [], []
        try:
            data.decode(encoding)
        except UnicodeDecodeError:
            for number, line in enumerate(lines, start=1):
                try:
                    line.decode(encoding)
                except UnicodeDecodeError as exc:
                    bad_rows.append(number)
                    bad_values.append(f"col {exc.start + 1}: {line[max(0, exc.start - 10):exc.start + 10]!r}")
            if not bad_rows:  # a multi-byte character cut by the line split cannot happen in UTF-8
                bad_rows, bad_values = [0], ["?"]
        if bad_rows:
            failures.append(_failure(f"ExpectFileToBe{encoding.upper().replace('-', '')}", "<line bytes>",
                                     bad_rows, bad_values, len(bad_rows), len(lines),
                                     f"{path} is not {encoding} text (re-encode it; it is never silently replaced)"))
    nonblank = sum(1 for line in lines if line.strip())
    if nonblank < min_lines:
        failures.append(_failure("ExpectTableRowCountToBeBetween", "<non-blank lines>", [], [], 0, len(lines),
                                 f"{path}: {nonblank} non-blank line(s) ({len(data)} bytes), at least "
                                 f"{min_lines} expected (an empty or truncated file?)"))
    return failures


def check_text_files(dataset: str, paths: Iterable[str | Path], *, encoding: str | None = "utf-8",
                     min_lines: int = 1) -> dict[str, Any]:
    """Gate raw text files: each must decode as ``encoding`` (``None``: bytes, not checked) and
    hold at least ``min_lines`` non-blank lines. Raises :class:`GateFailure` naming every file
    that fails; returns a JSON-able report otherwise."""
    paths = [Path(p) for p in paths]
    failures = [f for p in paths for f in text_file_failures(p, encoding=encoding, min_lines=min_lines)]
    if failures:
        raise GateFailure(dataset, failures)
    return {"dataset": dataset, "files": [str(p) for p in paths], "success": True,
            "expectations": (["utf8"] if encoding else []) + [f"min_lines>={min_lines}"]}


def read_text_checked(path: str | Path, dataset: str | None = None, *, min_lines: int = 1) -> str:
    """The text of a UTF-8 file, or :class:`GateFailure` if it is not UTF-8 or (near) empty."""
    check_text_files(dataset or str(path), [path], min_lines=min_lines)
    return Path(path).read_text(encoding="utf-8")


def check_row_count(dataset: str, rows: int, minimum: int = 1, column: str = "<table>") -> None:
    """Refuse a table (a split, a list of articles) with fewer than ``minimum`` rows."""
    if rows < minimum:
        raise GateFailure(dataset, [_failure("ExpectTableRowCountToBeBetween", column, [], [], 0, rows,
                                             f"{rows} rows, at least {minimum} expected (an empty split?)")])
