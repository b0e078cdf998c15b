"""Statistics every study reports with: intervals over seeds, paired comparisons, Holm, equivalence.

Imports only numpy and scipy. Every function returns a small frozen dataclass whose ``verdict``
is one of the strings below, so a report's first line and its table can come from the same value:

* ``established``: the data decide in favour of the claim (interval inside the region, test
  rejects its null at ``alpha``, equivalence shown within the stated margin);
* ``refuted``: the data decide against it (interval entirely outside the claimed region; a
  difference larger than the equivalence margin shown);
* ``inconclusive``: the interval straddles the boundary, the test does not reject, or there are
  too few values to compute an interval at all (``n < 2``) or a meaningful bootstrap;
* ``determined`` / ``not determined``: for a fitted value (``fitted_value``): a degenerate fit
  (on the search box, a CI spanning orders of magnitude, too many resamples without a fit) is
  ``not determined`` and must be shown as such, never as a number.

Choices, stated once:

* **t intervals over seeds** (``t_interval``): Student t with ``df = n - 1``; the result carries
  ``n`` and ``df``. With ``n < 2`` there is no interval (``low``/``high`` None, ``inconclusive``).
* **Bootstrap** (``bootstrap_interval``): percentile interval, refused (``inconclusive``, no
  interval) when the sample admits fewer than ``MIN_DISTINCT_RESAMPLES`` = 1000 distinct
  resamples. ``n`` values with ``k`` distinct ones give ``C(n + k - 1, n)`` distinct multisets:
  3 seeds give 10 (the ends of a 95 % interval are then single-seed values), 6 give 462, 7 give
  1716. So a bootstrap over seeds needs at least 7 distinct values; below that use ``t_interval``.
* **Paired comparisons** (``paired_t``): the t test of the per-pair differences (``scipy.stats.
  ttest_rel``'s statistic), with the t interval of the mean difference. ``welch_t`` for unpaired.
* **Multiple comparisons** (``holm``): Holm's step-down adjustment of a family of p-values;
  a family's verdicts must come from the adjusted values.
* **Matches a published value** (``equivalence``): two one-sided tests (TOST) of
  ``|ours - published| < margin``, with both standard errors combined; the margin is stated (and
  must be chosen before looking). "Inside our CI" or "within one published SE" is not evidence of
  a match: a wide CI passes anything.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import stats as _st

ESTABLISHED = "established"
REFUTED = "refuted"
INCONCLUSIVE = "inconclusive"
DETERMINED = "determined"
NOT_DETERMINED = "not determined"
VERDICTS = (ESTABLISHED, REFUTED, INCONCLUSIVE, DETERMINED, NOT_DETERMINED)

#: the fewest distinct resamples a bootstrap interval is computed from (see the module docstring)
MIN_DISTINCT_RESAMPLES = 1000


def _fmt(x: float | None, digits: int = 4) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.{digits}g}"


def _values(values: Sequence[float] | np.ndarray, what: str = "values") -> np.ndarray:
    arr = np.asarray(values, dtype=float).ravel()
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{what}: non-finite entries {arr[~np.isfinite(arr)].tolist()}; drop or explain them first")
    return arr


def _check_level(level: float) -> None:
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")


# --------------------------------------------------------------------------- t intervals


@dataclass(frozen=True)
class Interval:
    """An estimate with its interval; ``low``/``high`` None when no interval can be computed."""

    estimate: float
    low: float | None
    high: float | None
    level: float
    n: int
    method: str  # "t (df=..)", "bootstrap percentile (B=..)"
    df: int | None = None
    sd: float | None = None
    se: float | None = None
    verdict: str = INCONCLUSIVE  # ESTABLISHED never: an interval alone claims nothing; see ``decide``
    reason: str = ""

    @property
    def determined(self) -> bool:
        return self.low is not None and self.high is not None

    def text(self, digits: int = 4) -> str:
        """``-0.37 [-1.03, +0.28] (95% t, n=3, df=2)`` or ``-0.37 (no interval: n=1 < 2)``."""
        if not self.determined:
            return f"{_fmt(self.estimate, digits)} (no interval: {self.reason})"
        df = f", df={self.df}" if self.df is not None else ""
        return (f"{_fmt(self.estimate, digits)} [{_fmt(self.low, digits)}, {_fmt(self.high, digits)}] "
                f"({self.level:.0%} {self.method.split(' (')[0]}, n={self.n}{df})")


def t_interval(values: Sequence[float], level: float = 0.95) -> Interval:
    """Mean of ``values`` (e.g. one number per seed) with its Student-t interval, ``df = n - 1``."""
    _check_level(level)
    x = _values(values)
    n = len(x)
    if n == 0:
        raise ValueError("t_interval: no values")
    mean = float(x.mean())
    if n < 2:
        return Interval(mean, None, None, level, n, "t", df=None, verdict=INCONCLUSIVE,
                        reason=f"n={n} < 2: no spread, no interval")
    sd = float(x.std(ddof=1))
    se = sd / math.sqrt(n)
    half = float(_st.t.ppf(0.5 + level / 2, n - 1)) * se
    reason = "all values equal: zero spread (deterministic, or too few seeds to see it)" if sd == 0 else ""
    return Interval(mean, mean - half, mean + half, level, n, f"t (df={n - 1})", df=n - 1, sd=sd, se=se,
                    verdict=INCONCLUSIVE if sd == 0 else DETERMINED, reason=reason)


def distinct_resamples(values: Sequence[float]) -> int:
    """How many distinct bootstrap resamples (multisets) ``values`` admit: ``C(n + k - 1, n)``."""
    x = np.asarray(values, dtype=float).ravel() if np.ndim(values) <= 1 else np.asarray(values)
    n = len(x)
    k = len(np.unique(x, axis=0)) if n else 0
    return math.comb(n + k - 1, n) if n else 0


def bootstrap_interval(values: Sequence[float] | np.ndarray, statistic: Callable[[np.ndarray], float] = np.mean,
                       level: float = 0.95, samples: int = 10_000, seed: int = 0,
                       min_distinct: int = MIN_DISTINCT_RESAMPLES) -> Interval:
    """Percentile bootstrap of ``statistic`` over the rows of ``values``; refused with too few values.

    ``values`` is 1-D (one number per unit) or 2-D (one row per unit, e.g. paired columns; the
    statistic receives the resampled rows). When the rows admit fewer than ``min_distinct``
    distinct resamples the result is ``inconclusive`` with no interval, and says why.
    """
    _check_level(level)
    arr = np.asarray(values, dtype=float)
    if arr.ndim not in (1, 2):
        raise ValueError(f"bootstrap_interval: values must be 1-D or 2-D, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError("bootstrap_interval: non-finite values; drop or explain them first")
    n = len(arr)
    if n == 0:
        raise ValueError("bootstrap_interval: no values")
    estimate = float(statistic(arr))
    distinct = distinct_resamples(arr)
    if distinct < min_distinct:
        return Interval(estimate, None, None, level, n, "bootstrap", verdict=INCONCLUSIVE,
                        reason=f"{n} values admit only {distinct} distinct resamples (< {min_distinct}); "
                               "use a t interval")
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n, size=(samples, n))
    boot = np.array([float(statistic(arr[idx])) for idx in draws])
    good = boot[np.isfinite(boot)]
    if len(good) < samples:
        return Interval(estimate, None, None, level, n, "bootstrap", verdict=NOT_DETERMINED,
                        reason=f"{samples - len(good)} of {samples} resamples give no finite statistic")
    lo, hi = np.percentile(good, [50 * (1 - level), 50 * (1 + level)])
    return Interval(estimate, float(lo), float(hi), level, n, f"bootstrap percentile (B={samples})",
                    se=float(good.std(ddof=1)), verdict=DETERMINED)


def paired_bootstrap(a: Sequence[float], b: Sequence[float], **kwargs) -> Interval:
    """Bootstrap of ``mean(a - b)`` over pairs (same refusal rule as ``bootstrap_interval``)."""
    x, y = _values(a, "a"), _values(b, "b")
    if len(x) != len(y):
        raise ValueError(f"paired_bootstrap: {len(x)} vs {len(y)} values; pairs must match")
    return bootstrap_interval(x - y, **kwargs)


# --------------------------------------------------------------------------- claims on an interval


@dataclass(frozen=True)
class Decision:
    """Whether an interval lies inside the claimed region ``[low, high]`` (either end may be open)."""

    claim: str
    interval: Interval
    verdict: str
    reason: str


def decide(interval: Interval, low: float | None = None, high: float | None = None, claim: str = "") -> Decision:
    """``established`` when the whole interval is inside ``[low, high]``, ``refuted`` when it is
    entirely outside, otherwise (or without an interval) ``inconclusive``.

    Example: per-seed μP shifts -0.43, -0.09, -0.61 give -0.37 [-1.03, +0.28]; ``decide(iv, -0.5,
    0.5)`` is inconclusive, because the interval reaches below -0.5.
    """
    if low is None and high is None:
        raise ValueError("decide: give low and/or high")
    lo_txt = "-inf" if low is None else f"{low:g}"
    hi_txt = "+inf" if high is None else f"{high:g}"
    claim = claim or f"value in [{lo_txt}, {hi_txt}]"
    if not interval.determined:
        return Decision(claim, interval, INCONCLUSIVE, f"no interval ({interval.reason})")
    lo_b = -math.inf if low is None else low
    hi_b = math.inf if high is None else high
    if lo_b <= interval.low and interval.high <= hi_b:
        return Decision(claim, interval, ESTABLISHED, f"interval {interval.text()} inside [{lo_txt}, {hi_txt}]")
    if interval.high < lo_b or interval.low > hi_b:
        return Decision(claim, interval, REFUTED, f"interval {interval.text()} outside [{lo_txt}, {hi_txt}]")
    return Decision(claim, interval, INCONCLUSIVE, f"interval {interval.text()} straddles [{lo_txt}, {hi_txt}]")


# --------------------------------------------------------------------------- two-sample tests


@dataclass(frozen=True)
class Comparison:
    """A difference ``a - b`` with its interval and two-sided test."""

    difference: float
    low: float | None
    high: float | None
    level: float
    n: int  # pairs (paired) or n_a + n_b (Welch)
    df: float | None
    statistic: float | None
    p: float | None
    alpha: float
    method: str
    verdict: str
    reason: str = ""

    def text(self, digits: int = 3) -> str:
        if self.low is None:
            return f"{_fmt(self.difference, digits)} (no test: {self.reason})"
        return (f"{_fmt(self.difference, digits)} [{_fmt(self.low, digits)}, {_fmt(self.high, digits)}] "
                f"{self.method}, df={_fmt(self.df, 3)}, p={_fmt(self.p, 2)}: {self.verdict}")


def _test_verdict(p: float, alpha: float) -> str:
    return ESTABLISHED if p < alpha else INCONCLUSIVE


def paired_t(a: Sequence[float], b: Sequence[float], level: float = 0.95, alpha: float | None = None) -> Comparison:
    """Paired t test of ``a - b`` (pairs share a seed, a split, a target), with the t interval.

    ``established`` means the difference is nonzero at ``alpha`` (default ``1 - level``); a
    family of such comparisons must go through ``holm`` before any is called established.
    """
    _check_level(level)
    alpha = 1 - level if alpha is None else alpha
    x, y = _values(a, "a"), _values(b, "b")
    if len(x) != len(y):
        raise ValueError(f"paired_t: {len(x)} vs {len(y)} values; pairs must match")
    d = x - y
    n = len(d)
    if n == 0:
        raise ValueError("paired_t: no pairs")
    mean = float(d.mean())
    if n < 2:
        return Comparison(mean, None, None, level, n, None, None, None, alpha, "paired t", INCONCLUSIVE,
                          f"n={n} pair < 2")
    sd = float(d.std(ddof=1))
    if sd == 0:  # every pair differs by the same amount: the t statistic is not finite
        p = 1.0 if mean == 0 else 0.0
        return Comparison(mean, mean, mean, level, n, n - 1, None if mean == 0 else math.copysign(math.inf, mean),
                          p, alpha, "paired t", _test_verdict(p, alpha), "all differences equal")
    se = sd / math.sqrt(n)
    t = mean / se
    p = float(2 * _st.t.sf(abs(t), n - 1))
    half = float(_st.t.ppf(0.5 + level / 2, n - 1)) * se
    return Comparison(mean, mean - half, mean + half, level, n, n - 1, t, p, alpha, "paired t", _test_verdict(p, alpha))


def welch_t(a: Sequence[float], b: Sequence[float], level: float = 0.95, alpha: float | None = None) -> Comparison:
    """Welch's unpaired t test of ``mean(a) - mean(b)`` with the Welch-Satterthwaite interval."""
    _check_level(level)
    alpha = 1 - level if alpha is None else alpha
    x, y = _values(a, "a"), _values(b, "b")
    diff = float(x.mean() - y.mean()) if len(x) and len(y) else math.nan
    if len(x) < 2 or len(y) < 2:
        return Comparison(diff, None, None, level, len(x) + len(y), None, None, None, alpha, "Welch t", INCONCLUSIVE,
                          f"n_a={len(x)}, n_b={len(y)}: each needs >= 2")
    va, vb = x.var(ddof=1) / len(x), y.var(ddof=1) / len(y)
    se = math.sqrt(va + vb)
    if se == 0:
        p = 1.0 if diff == 0 else 0.0
        return Comparison(diff, diff, diff, level, len(x) + len(y), None, None, p, alpha, "Welch t",
                          _test_verdict(p, alpha), "no spread in either sample")
    df = (va + vb) ** 2 / (va**2 / (len(x) - 1) + vb**2 / (len(y) - 1))
    t = diff / se
    p = float(2 * _st.t.sf(abs(t), df))
    half = float(_st.t.ppf(0.5 + level / 2, df)) * se
    return Comparison(diff, diff - half, diff + half, level, len(x) + len(y), float(df), t, p, alpha, "Welch t",
                      _test_verdict(p, alpha))


# --------------------------------------------------------------------------- Holm


@dataclass(frozen=True)
class Holm:
    """Holm's step-down correction of a family of ``m`` p-values (in the caller's order)."""

    labels: tuple[str, ...]
    p: tuple[float, ...]
    adjusted: tuple[float, ...]
    rejected: tuple[bool, ...]
    alpha: float
    verdicts: tuple[str, ...] = field(default=())

    def rows(self) -> list[tuple[str, float, float, str]]:
        return list(zip(self.labels, self.p, self.adjusted, self.verdicts))


def holm(pvalues: Sequence[float], alpha: float = 0.05, labels: Sequence[str] | None = None) -> Holm:
    """Holm (1979): sort ``p_(1) <= ... <= p_(m)``; adjusted ``p~_(i) = max_{j<=i} min(1, (m-j+1) p_(j))``.

    A hypothesis is rejected (verdict ``established``) when its adjusted p-value is ``<= alpha``;
    this controls the family-wise error rate at ``alpha`` under any dependence. Ties keep their
    input order. Adjusted values come back in the input order.
    """
    p = np.asarray(pvalues, dtype=float).ravel()
    m = len(p)
    if m == 0:
        raise ValueError("holm: empty family")
    if np.any(~np.isfinite(p)) or np.any((p < 0) | (p > 1)):
        raise ValueError(f"holm: p-values must be in [0, 1], got {p.tolist()}")
    labels = tuple(labels) if labels is not None else tuple(f"H{i + 1}" for i in range(m))
    if len(labels) != m:
        raise ValueError(f"holm: {len(labels)} labels for {m} p-values")
    order = np.argsort(p, kind="stable")
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    adj_sorted = np.maximum.accumulate(scaled)
    adjusted = np.empty(m)
    adjusted[order] = adj_sorted
    rejected = adjusted <= alpha
    return Holm(labels, tuple(map(float, p)), tuple(map(float, adjusted)), tuple(map(bool, rejected)), alpha,
                tuple(ESTABLISHED if r else INCONCLUSIVE for r in rejected))


# --------------------------------------------------------------------------- equivalence (TOST)


@dataclass(frozen=True)
class Equivalence:
    """TOST of ``|estimate - published| < margin``."""

    estimate: float
    published: float
    difference: float
    se: float  # of the difference: sqrt(se_ours^2 + se_published^2)
    margin: float
    df: float | None  # None: normal reference
    p_lower: float  # H0: difference <= -margin
    p_upper: float  # H0: difference >= +margin
    p: float  # max of the two: equivalence shown when p < alpha
    low: float  # the (1 - 2 alpha) interval of the difference; equivalence <=> inside (-margin, margin)
    high: float
    alpha: float
    verdict: str
    reason: str

    def text(self, digits: int = 3) -> str:
        return (f"{_fmt(self.estimate, digits)} vs published {_fmt(self.published, digits)}: difference "
                f"{_fmt(self.difference, digits)} [{_fmt(self.low, digits)}, {_fmt(self.high, digits)}] "
                f"({1 - 2 * self.alpha:.0%}), margin ±{_fmt(self.margin, digits)}, TOST p={_fmt(self.p, 2)}: "
                f"{self.verdict}")


def se_from_interval(low: float, high: float, level: float = 0.95, df: float | None = None) -> float:
    """The standard error a symmetric ``level`` interval implies (normal, or t with ``df``)."""
    _check_level(level)
    q = _st.t.ppf(0.5 + level / 2, df) if df is not None else _st.norm.ppf(0.5 + level / 2)
    return (high - low) / (2 * float(q))


def equivalence(estimate: float, se: float, published: float, margin: float, published_se: float = 0.0,
                df: float | None = None, alpha: float = 0.05) -> Equivalence:
    """Does our ``estimate`` (standard error ``se``) match ``published`` within ``margin``?

    Two one-sided tests on ``d = estimate - published`` with ``SE_d = sqrt(se^2 + published_se^2)``:
    ``H0: d <= -margin`` and ``H0: d >= +margin``; equivalence is ``established`` when both reject
    at ``alpha`` (``p = max``), i.e. when the ``1 - 2 alpha`` interval of ``d`` is inside
    ``(-margin, margin)``. ``refuted`` when the two-sided ``1 - alpha`` interval of ``d`` lies
    entirely outside ``[-margin, margin]`` (a difference larger than the margin is shown);
    otherwise ``inconclusive``. ``df`` (e.g. ``n - 1`` of our seeds) uses a t reference; with a
    published SE added, our ``df`` is conservative (Satterthwaite's would be larger). The margin
    must be chosen before the comparison (what difference would not matter for the claim).
    """
    if not margin > 0:
        raise ValueError(f"equivalence: margin must be > 0, got {margin}")
    if se < 0 or published_se < 0:
        raise ValueError("equivalence: standard errors must be >= 0")
    vals = (estimate, se, published, published_se)
    if not all(math.isfinite(v) for v in vals):
        raise ValueError(f"equivalence: non-finite input {vals}")
    d = estimate - published
    se_d = math.hypot(se, published_se)
    dist = _st.t(df) if df is not None else _st.norm()
    if se_d == 0:
        inside = abs(d) < margin
        p_lo = 0.0 if d > -margin else 1.0
        p_hi = 0.0 if d < margin else 1.0
        low = high = d
        verdict = ESTABLISHED if inside else REFUTED
        reason = "no standard error given: exact comparison"
    else:
        p_lo = float(dist.sf((d + margin) / se_d))
        p_hi = float(dist.cdf((d - margin) / se_d))
        q = float(dist.ppf(1 - alpha))
        low, high = d - q * se_d, d + q * se_d
        q2 = float(dist.ppf(1 - alpha / 2))
        if max(p_lo, p_hi) < alpha:
            verdict, reason = ESTABLISHED, f"{1 - 2 * alpha:.0%} interval of the difference inside ±{margin:g}"
        elif d - q2 * se_d > margin or d + q2 * se_d < -margin:
            verdict, reason = REFUTED, f"{1 - alpha:.0%} interval of the difference outside ±{margin:g}"
        else:
            verdict, reason = INCONCLUSIVE, f"interval of the difference reaches past ±{margin:g}"
    return Equivalence(float(estimate), float(published), float(d), float(se_d), float(margin), df,
                       p_lo, p_hi, max(p_lo, p_hi), float(low), float(high), alpha, verdict, reason)


def equivalence_from_samples(values: Sequence[float], published: float, margin: float, published_se: float = 0.0,
                             alpha: float = 0.05) -> Equivalence:
    """``equivalence`` of the mean of ``values`` (e.g. per seed), ``se = sd/sqrt(n)``, ``df = n - 1``."""
    x = _values(values)
    if len(x) < 2:
        raise ValueError(f"equivalence_from_samples: n={len(x)} < 2, no standard error")
    return equivalence(float(x.mean()), float(x.std(ddof=1) / math.sqrt(len(x))), published, margin,
                       published_se=published_se, df=len(x) - 1, alpha=alpha)


# --------------------------------------------------------------------------- fitted values


@dataclass(frozen=True)
class FittedValue:
    """A fitted parameter with its interval; ``not determined`` values must not be shown as numbers."""

    name: str
    value: float
    low: float | None
    high: float | None
    verdict: str  # DETERMINED or NOT_DETERMINED
    reasons: tuple[str, ...]

    def text(self, digits: int = 3) -> str:
        if self.verdict == NOT_DETERMINED:
            return f"{self.name}: not determined ({'; '.join(self.reasons)})"
        ci = f" [{_fmt(self.low, digits)}, {_fmt(self.high, digits)}]" if self.low is not None else ""
        return f"{self.name} = {_fmt(self.value, digits)}{ci}"


def fitted_value(name: str, value: float, low: float | None = None, high: float | None = None, *,
                 bounds: tuple[float, float] | None = None, bound_rtol: float = 1e-6,
                 max_decades: float | None = 1.0, positive: bool = False,
                 failed: int = 0, resamples: int = 0, max_failed_share: float = 0.1) -> FittedValue:
    """Classify a fitted value as ``determined`` or ``not determined`` (degenerate), with the reasons.

    Not determined when: the value or an interval end is not finite; the value lies on a bound of
    the search box ``bounds`` (within ``bound_rtol`` of the box width); ``positive`` and the
    interval reaches 0 or below; the interval spans more than ``max_decades`` orders of magnitude
    (``log10(high / low)``, for positive ends); more than ``max_failed_share`` of ``resamples``
    bootstrap resamples gave no fit (``failed``). Example: A = 2.1e4 [1076, 1.3e8] spans 5.1
    decades: not determined.
    """
    reasons: list[str] = []
    if value is None or not math.isfinite(value):
        reasons.append(f"value is {value}")
    if (low is None) != (high is None):
        raise ValueError("fitted_value: give both interval ends or neither")
    if low is not None:
        if not (math.isfinite(low) and math.isfinite(high)):
            reasons.append(f"interval [{low}, {high}] not finite")
        elif low > high:
            raise ValueError(f"fitted_value: low {low} > high {high}")
        else:
            if positive and low <= 0:
                reasons.append(f"interval reaches {low:.3g} <= 0 for a positive quantity")
            if max_decades is not None and low > 0 and high > 0:
                decades = math.log10(high / low)
                if decades > max_decades:
                    reasons.append(f"interval [{low:.3g}, {high:.3g}] spans {decades:.1f} orders of magnitude "
                                   f"(> {max_decades:g})")
    if bounds is not None and value is not None and math.isfinite(value):
        lo_b, hi_b = bounds
        width = hi_b - lo_b
        for b, side in ((lo_b, "lower"), (hi_b, "upper")):
            if math.isfinite(b):
                tol = bound_rtol * (width if math.isfinite(width) and width > 0 else max(1.0, abs(b)))
                if abs(value - b) <= tol:
                    reasons.append(f"on the {side} bound {b:g} of the search box")
    if resamples:
        if failed > max_failed_share * resamples:
            reasons.append(f"{failed} of {resamples} resamples gave no fit (> {max_failed_share:.0%})")
    elif failed:
        raise ValueError("fitted_value: failed given without resamples")
    return FittedValue(name, float(value) if value is not None else math.nan, low, high,
                       NOT_DETERMINED if reasons else DETERMINED, tuple(reasons))
