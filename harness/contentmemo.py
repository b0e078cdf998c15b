"""A content-addressed, on-disk memo for pure functions of a file's bytes (parses, import scans).

Why: `harness compile --check` after an edit re-reads every spec and scans every module's imports,
although only the edited file changed; the ruamel round-trip parse of four specs and ~90 AST
scans are most of its second. A result is stored under the SHA-256 of (what computed it, the
code that computed it, the interpreter, the input bytes), so it can never be served for other
bytes or after the parser changed; a file that moved or was copied hits the same entry. Values
are serialised with :mod:`marshal` (plain containers only: what cannot be marshalled is simply
not memoised), and every failure to read or write the memo falls back to computing: the memo
only ever saves time.

Location: ``$HARNESS_CACHE_DIR``, else ``$XDG_CACHE_HOME/harness/memo``, else
``~/.cache/harness/memo``.
"""

from __future__ import annotations

import functools
import hashlib
import marshal
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
MAX_ENTRIES = 4096  # pruned (oldest first) beyond this, so the folder stays small


def cache_dir() -> Path:
    explicit = os.environ.get("HARNESS_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "harness" / "memo"


@functools.lru_cache(maxsize=None)
def source_salt(*modules_files: str) -> bytes:
    """Bytes of the code that computes a memoised value: a change to it invalidates every entry.
    (Read once per process: a compile asks for it once per scanned module.)"""
    h = hashlib.sha256()
    for name in modules_files:
        try:
            h.update(Path(name).read_bytes())
        except OSError:
            h.update(os.urandom(16))  # unreadable code: never reuse anything
    return h.digest()


def memoised(kind: str, salt: bytes, content: bytes, compute: Callable[[], T]) -> T:
    """``compute()``, or its stored value for exactly these ``content`` bytes, ``kind`` and ``salt``."""
    key = hashlib.sha256(f"{kind}\0{sys.version}\0".encode() + salt + b"\0" + content).hexdigest()
    path = cache_dir() / kind / f"{key}.marshal"
    try:
        return marshal.loads(path.read_bytes())
    except (OSError, EOFError, ValueError, TypeError):
        pass
    value = compute()
    _store(path, value)
    return value


def _store(path: Path, value: Any) -> None:
    try:
        blob = marshal.dumps(value)
    except ValueError:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(blob)
        os.replace(tmp, path)
        entries = list(path.parent.glob("*.marshal"))
        if len(entries) > MAX_ENTRIES:
            entries.sort(key=lambda p: p.stat().st_mtime)
            for old in entries[: len(entries) - MAX_ENTRIES]:
                old.unlink(missing_ok=True)
    except OSError:
        pass
