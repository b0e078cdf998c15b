"""Seed statistics: mean with a Student-t confidence interval, and whether two points separate.

Why Student t (scipy.stats): with 3 seeds per point a normal interval is far too narrow; the
t interval and Welch's test are the standard small-sample choices and come from scipy.
"""

from __future__ import annotations

import math


def mean_ci(values: list[float], level: float = 0.95) -> dict[str, float | None]:
    """Mean, sample std and the half-width of the ``level`` t interval (None with one value)."""
    from scipy import stats

    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return {"mean": mean, "std": None, "ci_half": None, "n": n}
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * std / math.sqrt(n)
    return {"mean": mean, "std": std, "ci_half": half, "n": n}


def separable(a: list[float], b: list[float], alpha: float = 0.05) -> tuple[bool, float | None]:
    """Welch's t-test of two seed samples: (p < alpha, p); (False, None) when either has < 2 values."""
    from scipy import stats

    if len(a) < 2 or len(b) < 2:
        return False, None
    if max(a) == min(a) and max(b) == min(b):  # no spread at all: the means either differ or not
        return a[0] != b[0], 0.0 if a[0] != b[0] else 1.0
    p = float(stats.ttest_ind(a, b, equal_var=False).pvalue)
    return p < alpha, p
