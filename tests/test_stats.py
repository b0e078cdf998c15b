"""harness.stats against independent references: scipy.stats, hand-worked examples, brute force."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats as st

from harness import stats as hs

RNG = np.random.default_rng(20240527)


# ------------------------------------------------------------------ t intervals


@pytest.mark.parametrize("n", [2, 3, 5, 12])
@pytest.mark.parametrize("level", [0.9, 0.95, 0.99])
def test_t_interval_matches_scipy(n, level):
    x = RNG.normal(1.0, 2.0, size=n)
    iv = hs.t_interval(x, level)
    lo, hi = st.t.interval(level, n - 1, loc=x.mean(), scale=st.sem(x))
    assert iv.low == pytest.approx(lo, rel=1e-12) and iv.high == pytest.approx(hi, rel=1e-12)
    assert (iv.n, iv.df) == (n, n - 1)
    assert iv.verdict == hs.DETERMINED
    assert f"n={n}, df={n - 1}" in iv.text()


def test_t_interval_refuses_one_value():
    iv = hs.t_interval([0.7])
    assert iv.low is None and iv.high is None and iv.df is None
    assert iv.verdict == hs.INCONCLUSIVE and "n=1 < 2" in iv.reason
    assert hs.decide(iv, high=1.0).verdict == hs.INCONCLUSIVE


def test_issue_mup_shift_example():
    """Issue 27: per-seed shifts -0.43, -0.09, -0.61 -> -0.37 [-1.03, +0.28]: |shift| <= 0.5 not established."""
    iv = hs.t_interval([-0.43, -0.09, -0.61])
    assert (round(iv.estimate, 2), round(iv.low, 2), round(iv.high, 2)) == (-0.38, -1.03, 0.28)
    assert hs.decide(iv, -0.5, 0.5).verdict == hs.INCONCLUSIVE
    assert hs.decide(iv, -2.0, 2.0).verdict == hs.ESTABLISHED
    assert hs.decide(iv, low=0.5).verdict == hs.REFUTED  # "the shift is at least 0.5": interval entirely below


def test_zero_spread_is_not_a_confident_interval():
    iv = hs.t_interval([1.0, 1.0, 1.0])
    assert iv.low == iv.high == 1.0 and iv.verdict == hs.INCONCLUSIVE and "zero spread" in iv.reason


def test_non_finite_values_are_refused():
    with pytest.raises(ValueError, match="non-finite"):
        hs.t_interval([1.0, math.nan])


# ------------------------------------------------------------------ bootstrap


def _brute_distinct(values) -> int:
    n = len(values)
    return len({tuple(sorted(values[i] for i in idx)) for idx in itertools.product(range(n), repeat=n)})


@pytest.mark.parametrize("values", [[1.0], [1.0, 2.0], [1.0, 2.0, 3.0], [1.0, 1.0, 2.0], [1, 2, 3, 4, 5],
                                    [1, 1, 2, 2, 3, 3], [4.0] * 5])
def test_distinct_resamples_brute_force(values):
    assert hs.distinct_resamples(values) == _brute_distinct(values)


def test_bootstrap_refuses_three_seeds():
    """Three seeds admit 10 distinct resamples: the interval ends would be single-seed values."""
    iv = hs.bootstrap_interval([-0.43, -0.09, -0.61])
    assert iv.low is None and iv.verdict == hs.INCONCLUSIVE
    assert "only 10 distinct resamples" in iv.reason and str(hs.MIN_DISTINCT_RESAMPLES) in iv.reason


def test_bootstrap_minimum_is_seven_distinct_values():
    assert hs.distinct_resamples(range(6)) == 462 < hs.MIN_DISTINCT_RESAMPLES
    assert hs.distinct_resamples(range(7)) == 1716 >= hs.MIN_DISTINCT_RESAMPLES
    assert hs.bootstrap_interval(np.arange(6.0)).low is None
    assert hs.bootstrap_interval(np.arange(7.0)).verdict == hs.DETERMINED
    # ties count: 8 values with only two distinct ones admit C(9, 8) = 9 resamples
    assert hs.bootstrap_interval([0.0] * 4 + [1.0] * 4).verdict == hs.INCONCLUSIVE


def test_bootstrap_percentile_agrees_with_scipy():
    x = RNG.normal(size=40)
    ours = hs.bootstrap_interval(x, samples=20_000, seed=1)
    ref = st.bootstrap((x,), np.mean, method="percentile", n_resamples=20_000, random_state=2).confidence_interval
    assert ours.low == pytest.approx(ref.low, abs=0.03) and ours.high == pytest.approx(ref.high, abs=0.03)


def test_paired_bootstrap_resamples_pairs():
    a = RNG.normal(size=30)
    b = a - 0.5 + RNG.normal(scale=0.1, size=30)
    iv = hs.paired_bootstrap(a, b, seed=3)
    assert iv.low < 0.5 < iv.high and iv.high - iv.low < 0.2
    two_col = hs.bootstrap_interval(np.column_stack([a, b]), statistic=lambda r: float((r[:, 0] - r[:, 1]).mean()),
                                    seed=3)
    assert (two_col.low, two_col.high) == pytest.approx((iv.low, iv.high))


# ------------------------------------------------------------------ paired / Welch


@pytest.mark.parametrize("n", [2, 3, 6, 20])
def test_paired_t_matches_scipy_ttest_rel(n):
    a = RNG.normal(size=n)
    b = a + RNG.normal(0.3, 0.5, size=n)
    ours = hs.paired_t(a, b)
    ref = st.ttest_rel(a, b)
    ci = ref.confidence_interval(0.95)
    assert ours.statistic == pytest.approx(ref.statistic, rel=1e-12)
    assert ours.p == pytest.approx(ref.pvalue, rel=1e-10)
    assert (ours.low, ours.high) == pytest.approx((ci.low, ci.high), rel=1e-12)
    assert ours.df == n - 1
    assert ours.verdict == (hs.ESTABLISHED if ref.pvalue < 0.05 else hs.INCONCLUSIVE)


def test_paired_t_edge_cases():
    assert hs.paired_t([1.0], [0.0]).verdict == hs.INCONCLUSIVE
    same = hs.paired_t([1.0, 2.0, 3.0], [0.5, 1.5, 2.5])
    assert same.p == 0.0 and same.verdict == hs.ESTABLISHED and "all differences equal" in same.reason
    with pytest.raises(ValueError, match="pairs must match"):
        hs.paired_t([1.0, 2.0], [1.0])


@pytest.mark.parametrize("na,nb", [(2, 2), (3, 5), (8, 4)])
def test_welch_matches_scipy(na, nb):
    a, b = RNG.normal(size=na), RNG.normal(0.5, 2.0, size=nb)
    ours = hs.welch_t(a, b)
    ref = st.ttest_ind(a, b, equal_var=False)
    ci = ref.confidence_interval(0.95)
    assert ours.p == pytest.approx(ref.pvalue, rel=1e-10)
    assert ours.df == pytest.approx(float(ref.df), rel=1e-12)
    assert (ours.low, ours.high) == pytest.approx((ci.low, ci.high), rel=1e-10)


# ------------------------------------------------------------------ Holm


def test_holm_worked_example():
    """The Holm-Bonferroni worked example (Wikipedia, "Holm-Bonferroni method"): four hypotheses,
    p = 0.01, 0.04, 0.03, 0.005, alpha = 0.05. Sorted: 0.005 <= 0.05/4 reject, 0.01 <= 0.05/3
    reject, 0.03 > 0.05/2 stop: H1 and H4 rejected, H2 and H3 not (Bonferroni alone, 0.0125,
    would reject the same two; unadjusted, all four)."""
    res = hs.holm([0.01, 0.04, 0.03, 0.005], alpha=0.05)
    assert res.rejected == (True, False, False, True)
    # by hand: 4*0.005 = 0.02; max(0.02, 3*0.01) = 0.03; max(0.03, 2*0.03) = 0.06; max(0.06, 1*0.04) = 0.06
    assert res.adjusted == pytest.approx((0.03, 0.06, 0.06, 0.02))
    assert res.verdicts == (hs.ESTABLISHED, hs.INCONCLUSIVE, hs.INCONCLUSIVE, hs.ESTABLISHED)


def test_holm_step_down_stops_at_first_failure():
    """Step-down: a later p that would pass its own threshold is not rejected after a failure
    (p = 0.02, 0.024 at m = 2: 0.02 > 0.025? no, 0.02 <= 0.025 reject; then 0.024 <= 0.05 reject).
    With 0.03, 0.031: 0.03 > 0.025 stops, so 0.031 <= 0.05 is not rejected either."""
    assert hs.holm([0.02, 0.024]).rejected == (True, True)
    assert hs.holm([0.03, 0.031]).rejected == (False, False)
    assert hs.holm([0.03, 0.031]).adjusted == pytest.approx((0.06, 0.06))


def _closed_testing(p: np.ndarray, alpha: float) -> tuple[list[bool], list[float]]:
    """Brute force: closed testing with Bonferroni local tests is exactly Holm. H_i is rejected
    iff every intersection S containing i has min_{j in S} p_j <= alpha/|S|; the adjusted p-value
    is max over such S of min(1, |S| min_{j in S} p_j)."""
    m = len(p)
    rejected, adjusted = [], []
    for i in range(m):
        worst = 0.0
        for size in range(1, m + 1):
            for subset in itertools.combinations(range(m), size):
                if i in subset:
                    worst = max(worst, min(1.0, size * min(p[j] for j in subset)))
        adjusted.append(worst)
        rejected.append(worst <= alpha)
    return rejected, adjusted


@pytest.mark.parametrize("trial", range(40))
def test_holm_equals_closed_testing(trial):
    rng = np.random.default_rng(trial)
    m = int(rng.integers(1, 8))
    p = rng.uniform(0, 0.2, size=m) ** rng.uniform(0.5, 2)
    if trial % 5 == 0 and m > 1:
        p[1] = p[0]  # ties
    res = hs.holm(p, alpha=0.05)
    rejected, adjusted = _closed_testing(p, 0.05)
    assert list(res.rejected) == rejected
    assert list(res.adjusted) == pytest.approx(adjusted, rel=1e-12)


def test_holm_input_checks():
    with pytest.raises(ValueError):
        hs.holm([])
    with pytest.raises(ValueError):
        hs.holm([0.1, 1.2])
    assert hs.holm([0.01, 0.2], labels=["a", "b"]).rows()[0][0] == "a"


# ------------------------------------------------------------------ equivalence (TOST)


@pytest.mark.parametrize("shift,margin,n", [(0.0, 0.5, 5), (0.3, 0.5, 8), (0.9, 0.5, 5), (0.1, 0.2, 3), (-0.4, 1.0, 12)])
def test_tost_equals_two_one_sided_scipy_tests(shift, margin, n):
    published = 2.0
    x = published + shift + RNG.normal(scale=0.3, size=n)
    ours = hs.equivalence_from_samples(x, published, margin)
    lower = st.ttest_1samp(x, published - margin, alternative="greater").pvalue  # H0: mu <= pub - margin
    upper = st.ttest_1samp(x, published + margin, alternative="less").pvalue  # H0: mu >= pub + margin
    assert ours.p_lower == pytest.approx(lower, rel=1e-10)
    assert ours.p_upper == pytest.approx(upper, rel=1e-10)
    assert ours.p == pytest.approx(max(lower, upper), rel=1e-10)
    assert (ours.verdict == hs.ESTABLISHED) == (max(lower, upper) < 0.05)
    # equivalence <=> the 90% interval of the difference is inside (-margin, margin)
    assert (ours.verdict == hs.ESTABLISHED) == (-margin < ours.low and ours.high < margin)
    ci90 = st.ttest_1samp(x, published).confidence_interval(0.90)
    assert (ours.low, ours.high) == pytest.approx((ci90.low - published, ci90.high - published), rel=1e-10)


def test_tost_combines_both_standard_errors():
    a = hs.equivalence(0.50, 0.03, 0.46, margin=0.05, published_se=0.04)
    b = hs.equivalence(0.50, 0.05, 0.46, margin=0.05)
    assert a.se == pytest.approx(0.05) and a.p == pytest.approx(b.p)
    # normal reference, by hand: p_upper = Phi((0.04 - 0.05) / 0.05) = Phi(-0.2)
    assert a.p_upper == pytest.approx(st.norm.cdf(-0.2)) and a.verdict == hs.INCONCLUSIVE


def test_a_wide_interval_no_longer_passes_as_a_match():
    """Issue 27: Porian approach 3, 9 published SEs away, "matched" because our CI [0.36, 0.62]
    covered the published value. TOST with a 0.02 margin: the 9-SE difference is refuted; the
    wide CI alone can never establish a match."""
    se_ours = hs.se_from_interval(0.36, 0.62)
    far = hs.equivalence(0.49, se_ours, 0.49 + 9 * 0.005, margin=0.02, published_se=0.005)
    assert far.verdict == hs.INCONCLUSIVE  # our interval is too wide to decide anything
    precise = hs.equivalence(0.49, 0.004, 0.49 + 9 * 0.005, margin=0.02, published_se=0.005)
    assert precise.verdict == hs.REFUTED
    close = hs.equivalence(0.49, 0.004, 0.492, margin=0.02, published_se=0.003)
    assert close.verdict == hs.ESTABLISHED
    assert "margin ±0.02" in close.text()


def test_se_from_interval_round_trip():
    lo, hi = st.norm.interval(0.95, loc=1.0, scale=0.2)
    assert hs.se_from_interval(lo, hi) == pytest.approx(0.2)
    lo, hi = st.t.interval(0.9, 4, loc=1.0, scale=0.2)
    assert hs.se_from_interval(lo, hi, 0.9, df=4) == pytest.approx(0.2)


def test_tost_input_checks():
    with pytest.raises(ValueError, match="margin"):
        hs.equivalence(1.0, 0.1, 1.0, margin=0.0)
    with pytest.raises(ValueError, match="n=1"):
        hs.equivalence_from_samples([1.0], 1.0, 0.1)
    exact = hs.equivalence(1.0, 0.0, 1.05, margin=0.1)
    assert exact.verdict == hs.ESTABLISHED


# ------------------------------------------------------------------ fitted values


def test_degenerate_fit_is_not_determined():
    """Issue 27: A = 2.1e4 [1076, 1.3e8] spans 5 orders of magnitude: shown as not determined."""
    a = hs.fitted_value("A", 2.1e4, 1076.0, 1.3e8)
    assert a.verdict == hs.NOT_DETERMINED and "orders of magnitude" in a.reasons[0]
    assert "2.1e+04" not in a.text() and a.text().startswith("A: not determined")


def test_fit_on_search_box_and_failed_resamples():
    assert hs.fitted_value("alpha", 2.0, 1.9, 2.0, bounds=(0.0, 2.0)).verdict == hs.NOT_DETERMINED
    assert "upper bound" in hs.fitted_value("alpha", 2.0, bounds=(0.0, 2.0)).reasons[0]
    assert "lower bound" in hs.fitted_value("E", 0.0, bounds=(0.0, 5.0)).reasons[0]
    failed = hs.fitted_value("a", 0.5, 0.4, 0.6, failed=150, resamples=1000)
    assert failed.verdict == hs.NOT_DETERMINED and "150 of 1000" in failed.reasons[0]
    assert hs.fitted_value("a", 0.5, 0.4, 0.6, failed=50, resamples=1000).verdict == hs.DETERMINED
    assert hs.fitted_value("B", 3.0, -1.0, 5.0, positive=True).verdict == hs.NOT_DETERMINED
    assert hs.fitted_value("x", math.inf).verdict == hs.NOT_DETERMINED


def test_ordinary_fit_is_determined():
    ok = hs.fitted_value("a", 0.49, 0.46, 0.52, bounds=(0.0, 2.0))
    assert ok.verdict == hs.DETERMINED and ok.reasons == () and ok.text() == "a = 0.49 [0.46, 0.52]"


def test_every_verdict_is_a_known_string():
    results = [hs.t_interval([1.0, 2.0]), hs.t_interval([1.0]), hs.bootstrap_interval([1.0, 2.0]),
               hs.paired_t([1.0, 2.0], [0.0, 0.5]), hs.equivalence(1.0, 0.1, 1.0, 0.5),
               hs.fitted_value("a", 1.0), hs.decide(hs.t_interval([1.0, 2.0]), 0.0, 3.0)]
    assert all(r.verdict in hs.VERDICTS for r in results)
    assert all(v in hs.VERDICTS for v in hs.holm([0.01, 0.5]).verdicts)
