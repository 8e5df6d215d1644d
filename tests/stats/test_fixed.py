"""Fixed-horizon methods against published reference values, and their invariants."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from scipy import stats as sps

from rolloutctl.stats.fixed import (
    WelchResult,
    fisher_exact_greater,
    newcombe_interval,
    welch,
    wilson_interval,
)
from rolloutctl.stats.sufficient import Moments, Proportion

# ---------------------------------------------------------------------------------------------
# Wilson score interval


@pytest.mark.parametrize(
    ("events", "n", "expected"),
    [
        # Newcombe (1998a), "Two-sided confidence intervals for the single proportion:
        # comparison of seven methods", Stat Med 17:857-872, method 3 (score, no continuity
        # correction); the same figures from statsmodels 0.15
        # proportion_confint(method="wilson").
        (81, 263, (0.2553, 0.3662)),
        (15, 148, (0.0624, 0.1605)),
        (0, 20, (0.0000, 0.1611)),
        (1, 29, (0.0061, 0.1718)),
        # statsmodels 0.15 proportion_confint(29, 29, method="wilson").
        (29, 29, (0.8830, 1.0000)),
    ],
)
def test_wilson_matches_newcombe_1998a(events: int, n: int, expected: tuple[float, float]) -> None:
    assert wilson_interval(Proportion(n, events)) == pytest.approx(expected, abs=5e-5)


@pytest.mark.parametrize(
    ("events", "n", "confidence", "expected"),
    [
        # statsmodels 0.15 proportion_confint(81, 263, alpha=0.01, method="wilson")
        (81, 263, 0.99, (0.2401, 0.3853)),
        # statsmodels 0.15 proportion_confint(15, 148, alpha=0.10, method="wilson")
        (15, 148, 0.90, (0.0674, 0.1496)),
    ],
)
def test_wilson_at_other_confidence_levels_matches_statsmodels(
    events: int, n: int, confidence: float, expected: tuple[float, float]
) -> None:
    assert wilson_interval(Proportion(n, events), confidence) == pytest.approx(expected, abs=5e-5)


def test_wilson_bounds_are_exact_at_zero_and_all_events() -> None:
    assert wilson_interval(Proportion(20, 0))[0] == 0.0
    assert wilson_interval(Proportion(29, 29))[1] == 1.0


@pytest.mark.parametrize(
    ("p", "confidence"),
    [
        (Proportion(0, 0), 0.95),
        (Proportion(10, 3), 1.0),
        (Proportion(10, 3), 0.0),
        (Proportion(10, 11), 0.95),
        (Proportion(10, -1), 0.95),
    ],
)
def test_wilson_degenerate_inputs_give_nan(p: Proportion, confidence: float) -> None:
    lo, hi = wilson_interval(p, confidence)
    assert math.isnan(lo) and math.isnan(hi)


# ---------------------------------------------------------------------------------------------
# Newcombe hybrid score interval of canary - control


@pytest.mark.parametrize(
    ("canary", "control", "expected"),
    [
        # Newcombe (1998b), "Interval estimation for the difference between independent
        # proportions: comparison of eleven methods", Stat Med 17:873-890, Table II, method 10.
        # Newcombe's p1 - p2 is canary - control here: p1 is the canary. The same figures from
        # statsmodels 0.15 confint_proportions_2indep(x1, n1, x2, n2, method="newcomb").
        ((56, 70), (48, 80), (0.0524, 0.3339)),
        ((9, 10), (3, 10), (0.1705, 0.8090)),
        ((6, 7), (2, 7), (0.0582, 0.8062)),
        ((5, 56), (0, 29), (-0.0381, 0.1926)),
        ((0, 10), (0, 20), (-0.1611, 0.2775)),
        ((10, 10), (0, 20), (0.6791, 1.0000)),
        # statsmodels 0.15 confint_proportions_2indep(..., method="newcomb").
        ((0, 10), (0, 10), (-0.2775, 0.2775)),
        ((10, 10), (0, 10), (0.6075, 1.0000)),
    ],
)
def test_newcombe_matches_newcombe_1998b_method_10(
    canary: tuple[int, int], control: tuple[int, int], expected: tuple[float, float]
) -> None:
    result = newcombe_interval(Proportion(control[1], control[0]), Proportion(canary[1], canary[0]))
    assert result == pytest.approx(expected, abs=5e-5)


def test_newcombe_is_canary_minus_control() -> None:
    # statsmodels 0.15 confint_proportions_2indep(48, 80, 56, 70, method="newcomb"):
    # the 56/70 arm as control turns Table II's (0.0524, 0.3339) around.
    result = newcombe_interval(Proportion(70, 56), Proportion(80, 48))
    assert result == pytest.approx((-0.3339, -0.0524), abs=5e-5)


def test_newcombe_at_90_percent_matches_statsmodels() -> None:
    # statsmodels 0.15 confint_proportions_2indep(56, 70, 48, 80, method="newcomb", alpha=0.10)
    result = newcombe_interval(Proportion(80, 48), Proportion(70, 56), confidence=0.90)
    assert result == pytest.approx((0.0766, 0.3136), abs=5e-5)


def test_newcombe_with_an_empty_arm_is_nan() -> None:
    for control, canary in [
        (Proportion(0, 0), Proportion(10, 2)),
        (Proportion(10, 2), Proportion(0, 0)),
    ]:
        lo, hi = newcombe_interval(control, canary)
        assert math.isnan(lo) and math.isnan(hi)


# ---------------------------------------------------------------------------------------------
# Welch


def _moments(values: np.ndarray) -> Moments:
    return Moments(len(values), float(values.sum()), float((values * values).sum()))


def test_welch_matches_r_t_test_documentation_example() -> None:
    # R's ?t.test examples: t.test(1:10, y = c(7:20, 200)) prints
    # t = -1.6329, df = 14.165, p-value = 0.1245,
    # 95 percent confidence interval: -47.242900 6.376233 (R's x is the canary here).
    result = welch(_moments(np.r_[np.arange(7, 21), 200.0]), _moments(np.arange(1.0, 11.0)))
    assert result.difference / result.se == pytest.approx(-1.6329, abs=5e-5)
    assert result.df == pytest.approx(14.165, abs=5e-4)
    assert 2 * sps.t.sf(abs(result.difference / result.se), result.df) == pytest.approx(
        0.1245, abs=5e-5
    )
    assert result.ci == pytest.approx((-47.242900, 6.376233), abs=5e-7)


def test_welch_matches_r_t_test_documentation_p_value() -> None:
    # R's ?t.test examples: t.test(1:10, y = c(7:20))  # P = .00001855
    result = welch(_moments(np.arange(7.0, 21.0)), _moments(np.arange(1.0, 11.0)))
    p = 2 * sps.t.sf(abs(result.difference / result.se), result.df)
    assert p == pytest.approx(1.855e-5, rel=5e-4)


def test_welch_matches_published_textbook_example() -> None:
    # Statology, "How to Perform Welch's t-test in R" (exam scores with and without a prep
    # booklet): t = 2.2361, df = 14.354, 95% CI 0.3048395 to 13.8618272.
    booklet = np.array([90, 85, 88, 89, 94, 91, 79, 83, 87, 88, 91, 90], dtype=float)
    no_booklet = np.array([67, 90, 71, 95, 88, 83, 72, 66, 75, 86, 93, 84], dtype=float)
    result = welch(_moments(no_booklet), _moments(booklet))
    assert result.difference == pytest.approx(87.91667 - 80.83333, abs=1e-5)
    assert result.difference / result.se == pytest.approx(2.2361, abs=5e-5)
    assert result.df == pytest.approx(14.354, abs=5e-4)
    assert result.ci == pytest.approx((0.3048395, 13.8618272), abs=5e-8)


@pytest.mark.parametrize(
    ("seed", "n_control", "n_canary", "sd_canary", "confidence"),
    [
        (1, 50, 50, 1.0, 0.95),
        (2, 30, 400, 3.0, 0.95),
        (3, 1_000, 80, 0.2, 0.90),
        (4, 5, 7, 10.0, 0.99),
    ],
)
def test_welch_matches_scipy_ttest_ind(
    seed: int, n_control: int, n_canary: int, sd_canary: float, confidence: float
) -> None:
    rng = np.random.default_rng(seed)
    control = rng.normal(10.0, 1.0, n_control)
    canary = rng.normal(10.3, sd_canary, n_canary)
    reference = sps.ttest_ind(canary, control, equal_var=False)
    result = welch(_moments(control), _moments(canary), confidence)
    assert result.difference == pytest.approx(canary.mean() - control.mean(), rel=1e-9)
    assert result.difference / result.se == pytest.approx(reference.statistic, rel=1e-8)
    assert result.df == pytest.approx(reference.df, rel=1e-8)
    ci = reference.confidence_interval(confidence)
    assert result.ci == pytest.approx((ci.low, ci.high), rel=1e-8)


@pytest.mark.filterwarnings(
    "ignore:Precision loss occurred:RuntimeWarning"
)  # scipy on a constant arm
def test_welch_with_one_constant_arm_matches_scipy() -> None:
    control = np.full(12, 4.0)
    canary = np.array([3.0, 5.0, 4.5, 6.0, 5.5, 4.0])
    reference = sps.ttest_ind(canary, control, equal_var=False)
    result = welch(_moments(control), _moments(canary))
    assert result.df == pytest.approx(reference.df, rel=1e-9)  # = n_canary - 1
    assert result.ci == pytest.approx(tuple(reference.confidence_interval()), rel=1e-9)


@pytest.mark.parametrize(
    ("control", "canary"),
    [
        (Moments(1, 3.0, 9.0), Moments(10, 30.0, 100.0)),
        (Moments(10, 30.0, 100.0), Moments(0, 0, 0)),
        (Moments(5, 10.0, 20.0), Moments(8, 16.0, 32.0)),
    ],
)
def test_welch_degenerate_inputs_give_nan_interval(control: Moments, canary: Moments) -> None:
    result = welch(control, canary)
    assert isinstance(result, WelchResult)
    assert math.isnan(result.df)
    assert math.isnan(result.ci[0]) and math.isnan(result.ci[1])


def test_welch_without_variance_keeps_the_difference() -> None:
    result = welch(Moments(5, 10.0, 20.0), Moments(8, 24.0, 72.0))  # constant 2 vs constant 3
    assert result.difference == pytest.approx(1.0)
    assert result.se == 0.0


# ---------------------------------------------------------------------------------------------
# Fisher exact, one-sided


def test_fisher_matches_r_tea_tasting_example() -> None:
    # R's ?fisher.test: TeaTasting <- matrix(c(3, 1, 1, 3), nrow = 2);
    # fisher.test(TeaTasting, alternative = "greater")  ## => p = 0.2429
    # Rows are the guess; the "Milk" guesses (3 of 4 right) play the canary.
    p = fisher_exact_greater(control=Proportion(4, 1), canary=Proportion(4, 3))
    assert p == pytest.approx(0.2429, abs=5e-5)


@pytest.mark.parametrize(
    ("control", "canary"),
    [
        (Proportion(4, 1), Proportion(4, 3)),
        (Proportion(17, 2), Proportion(13, 10)),  # R's Convictions table, twins
        (Proportion(20, 5), Proportion(20, 5)),
        (Proportion(30, 12), Proportion(25, 3)),  # canary lower: p near 1
        (Proportion(2_000, 3), Proportion(200, 4)),
        (Proportion(1_000_000, 10_000), Proportion(1_000_000, 10_500)),
        (Proportion(999_999, 299_000), Proportion(1_000_001, 300_000)),
        (Proportion(1_000_000, 0), Proportion(1_000_000, 5)),
    ],
)
def test_fisher_matches_scipy_fisher_exact(control: Proportion, canary: Proportion) -> None:
    table = [
        [canary.events, canary.n - canary.events],
        [control.events, control.n - control.events],
    ]
    reference = sps.fisher_exact(table, alternative="greater").pvalue
    assert fisher_exact_greater(control, canary) == pytest.approx(reference, rel=1e-9)


@pytest.mark.parametrize(
    ("control", "canary"),
    [
        (Proportion(0, 0), Proportion(10, 3)),
        (Proportion(10, 3), Proportion(0, 0)),
        (Proportion(100, 0), Proportion(100, 0)),
        (Proportion(10, 12), Proportion(10, 3)),
    ],
)
def test_fisher_degenerate_inputs_give_one(control: Proportion, canary: Proportion) -> None:
    assert fisher_exact_greater(control, canary) == 1.0


# ---------------------------------------------------------------------------------------------
# Invariants


@st.composite
def proportions(draw: st.DrawFn, max_n: int = 100_000) -> Proportion:
    n = draw(st.integers(1, max_n))
    return Proportion(n, draw(st.integers(0, n)))


confidences = st.floats(0.5, 0.999)


@given(proportions(), confidences)
def test_wilson_is_ordered_inside_unit_interval_and_holds_the_rate(
    p: Proportion, confidence: float
) -> None:
    lo, hi = wilson_interval(p, confidence)
    assert 0.0 <= lo <= p.rate <= hi <= 1.0
    assert lo < hi


@given(proportions(), st.floats(0.5, 0.98), st.floats(0.01, 0.45))
def test_wilson_narrows_as_confidence_falls(p: Proportion, high: float, drop: float) -> None:
    low = max(high - drop, 0.05)
    lo_high, hi_high = wilson_interval(p, high)
    lo_low, hi_low = wilson_interval(p, low)
    assert lo_high <= lo_low and hi_low <= hi_high
    assert hi_low - lo_low < hi_high - lo_high


@given(proportions(), proportions(), confidences)
def test_newcombe_is_ordered_inside_bounds_and_holds_the_difference(
    control: Proportion, canary: Proportion, confidence: float
) -> None:
    lo, hi = newcombe_interval(control, canary, confidence)
    assert -1.0 <= lo <= canary.rate - control.rate <= hi <= 1.0
    assert lo < hi


@given(proportions(), proportions(), confidences)
def test_swapping_arms_negates_newcombe(
    control: Proportion, canary: Proportion, confidence: float
) -> None:
    lo, hi = newcombe_interval(control, canary, confidence)
    swapped_lo, swapped_hi = newcombe_interval(canary, control, confidence)
    assert (swapped_lo, swapped_hi) == pytest.approx((-hi, -lo), abs=1e-12)


samples = st.lists(st.floats(-100, 100), min_size=2, max_size=60)


@given(samples, samples, confidences)
def test_welch_interval_and_degrees_of_freedom_bounds(
    control_values: list[float], canary_values: list[float], confidence: float
) -> None:
    control, canary = _moments(np.array(control_values)), _moments(np.array(canary_values))
    assume(control.variance > 1e-6 or canary.variance > 1e-6)
    result = welch(control, canary, confidence)
    lo, hi = result.ci
    assert lo < result.difference < hi
    assert result.difference - lo == pytest.approx(hi - result.difference, rel=1e-9)
    # Welch-Satterthwaite lies between the smaller arm's n - 1 and the pooled n1 + n2 - 2.
    smallest = min(control.n, canary.n) - 1
    assert smallest * (1 - 1e-9) <= result.df <= (control.n + canary.n - 2) * (1 + 1e-9)


@given(proportions(max_n=5_000), proportions(max_n=5_000))
def test_fisher_tails_overlap_by_the_observed_table(
    control: Proportion, canary: Proportion
) -> None:
    # P(X >= x) + P(X <= x) = 1 + P(X = x) for the canary's events X given both margins.
    greater = fisher_exact_greater(control, canary)
    less = fisher_exact_greater(canary, control)
    assert 0.0 <= greater <= 1.0 and 0.0 <= less <= 1.0  # a far tail may underflow to 0
    point = sps.hypergeom.pmf(
        canary.events, control.n + canary.n, canary.n, control.events + canary.events
    )
    assert greater + less == pytest.approx(1.0 + point, abs=1e-9)
