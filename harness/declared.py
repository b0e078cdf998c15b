"""Metrics a spec declares not reproducible across machines (``not_reproducible:``), in one rule.

Why its own module: reports import it to print "not reproducible across machines" in place of a
declared value, and a report stage must not depend on the drift machinery (git, subprocess).
Patterns are ``"<metrics file glob>:<flattened key glob>"`` (keys flattened with dots, list items
by index), the same syntax as ``drift_tolerance``.
"""

from __future__ import annotations

import fnmatch

#: what a report prints in place of a declared value
NOT_REPRODUCIBLE = "not reproducible across machines"


def declared_reason(patterns: dict[str, str], metrics_file: str, key: str) -> str | None:
    """The declared reason when ``<metrics_file>:<key>`` matches a pattern; else ``None``."""
    name = f"{metrics_file}:{key}"
    return next((reason for pattern, reason in patterns.items() if fnmatch.fnmatchcase(name, pattern)), None)
