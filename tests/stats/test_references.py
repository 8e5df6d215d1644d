"""The existing comparisons in `stats.compare` against published reference values."""

from __future__ import annotations

import math

import pytest
from scipy import stats as sps

from rolloutctl.stats.compare import half_width, srm_p_value
from rolloutctl.stats.sufficient import Moments, Proportion

# ---------------------------------------------------------------------------------------------
# Sample ratio mismatch: chi-square goodness of fit, 1 df


def test_srm_kohavi_tang_xu_example() -> None:
    # Kohavi, Tang & Xu (2020), "Trustworthy Online Controlled Experiments", ch. 21 (Sample
    # Ratio Mismatch and Other Trust-Related Guardrail Metrics): Control 821,588 users,
    # Treatment 815,482 users on a 1:1 design; "the p-value of the above .993 Sample Ratio is
    # 1.8E-6".
    p = srm_p_value(control_n=821_588, canary_n=815_482, canary_percent=50.0)
    assert p == pytest.approx(1.8e-6, abs=0.05e-6)
    assert p == pytest.approx(sps.chisquare([821_588, 815_482]).pvalue, rel=1e-9)


def test_srm_wikipedia_example() -> None:
    # Wikipedia, "Sample ratio mismatch", Example: 1000 users on a 50-50 split, treatment 600
    # and control 400; Pearson's chi-squared goodness of fit gives p = 2.54 x 10^-10.
    p = srm_p_value(control_n=400, canary_n=600, canary_percent=50.0)
    assert p == pytest.approx(2.54e-10, abs=0.005e-10)
    assert p == pytest.approx(sps.chisquare([400, 600]).pvalue, rel=1e-9)


def test_srm_vermeer_faq_example() -> None:
    # Lukas Vermeer, SRM Checker FAQ (lukasvermeer.nl/srm/docs/faq): 502 control and 498
    # treatment on an equal split; stats.chisquare([502, 498], [500, 500]) -> p = 0.899.
    assert srm_p_value(502, 498, 50.0) == pytest.approx(0.899, abs=5e-4)


def test_srm_osc_garden_calculator_example() -> None:
    # srm.osc.garden (SRM calculator), Context: 44,000 users in A and 45,000 in B on a 50/50
    # split give "a p-value of 0.0008".
    assert srm_p_value(44_000, 45_000, 50.0) == pytest.approx(0.0008, abs=5e-5)


@pytest.mark.parametrize(
    ("control_n", "canary_n", "canary_percent"),
    [(9_000, 1_000, 10.0), (9_120, 880, 10.0), (74_810, 25_190, 25.0), (990, 10, 1.0)],
)
def test_srm_unequal_splits_match_scipy_chisquare(
    control_n: int, canary_n: int, canary_percent: float
) -> None:
    total = control_n + canary_n
    share = canary_percent / 100
    reference = sps.chisquare([control_n, canary_n], [total * (1 - share), total * share]).pvalue
    assert srm_p_value(control_n, canary_n, canary_percent) == pytest.approx(reference, rel=1e-9)


@pytest.mark.parametrize(
    ("control_n", "canary_n", "canary_percent"), [(0, 0, 50.0), (10, 10, 0.0), (10, 10, 100.0)]
)
def test_srm_degenerate_inputs_give_one(
    control_n: int, canary_n: int, canary_percent: float
) -> None:
    assert srm_p_value(control_n, canary_n, canary_percent) == 1.0


# ---------------------------------------------------------------------------------------------
# GrowthBook's sequential interval
#
# Reference: gbstats' own tests, growthbook/growthbook
# packages/stats/tests/frequentist/test_tests.py, class TestSequentialTTest. There,
# SequentialTwoSidedTTest takes (control, treatment) statistics and a SequentialConfig
# (default alpha 0.05, two-sided; default sequential_tuning_parameter 5000; default difference
# type relative) and returns ci = estimate -/+ halfwidth, where halfwidth is computed from the
# estimator's variance times n and n = control.n + treatment.n. `half_width` takes the
# estimator's variance and the total n in the same way, so their inputs map one to one.


def _relative_lift(
    control_mean: float,
    control_var: float,
    control_n: int,
    canary_mean: float,
    canary_var: float,
    canary_n: int,
) -> tuple[float, float]:
    """gbstats' relative lift and its delta-method variance (TTest.point_estimate/variance)."""
    lift = (canary_mean - control_mean) / control_mean
    variance = canary_var / (control_mean**2 * canary_n) + control_var * canary_mean**2 / (
        control_mean**4 * control_n
    )
    return lift, variance


def test_half_width_reproduces_gbstats_sequential_test_runs() -> None:
    # test_sequential_test_runs: SampleMeanStatistic(sum=1396.87, sum_squares=52377.9767,
    # n=3000) vs SampleMeanStatistic(sum=2422.7, sum_squares=134698.29, n=3461),
    # sequential_tuning_parameter=1000 -> expected 0.50336, ci (-0.55844, 1.56516),
    # uplift stddev 0.33341 (all rounded to 5 decimals).
    control = Moments(3000, 1396.87, 52377.9767)
    canary = Moments(3461, 2422.7, 134698.29)
    lift, variance = _relative_lift(
        control.mean, control.variance, control.n, canary.mean, canary.variance, canary.n
    )
    assert lift == pytest.approx(0.50336, abs=5e-6)
    assert math.sqrt(variance) == pytest.approx(0.33341, abs=5e-6)
    hw = half_width(variance, control.n + canary.n, 0.05, "sequential", 1000)
    assert (lift - hw, lift + hw) == pytest.approx((-0.55844, 1.56516), abs=5e-6)


def test_half_width_reproduces_gbstats_sequential_test_runs_prop() -> None:
    # test_sequential_test_runs_prop: ProportionStatistic(sum=1396, n=3000) vs
    # ProportionStatistic(sum=2422, n=3461), default config (alpha 0.05, tuning 5000) ->
    # expected 0.50386, ci (0.40098, 0.60675), uplift stddev 0.03386. gbstats' proportion
    # variance is p (1 - p), with no small-sample correction.
    control, canary = Proportion(3000, 1396), Proportion(3461, 2422)
    lift, variance = _relative_lift(
        control.rate,
        control.rate * (1 - control.rate),
        control.n,
        canary.rate,
        canary.rate * (1 - canary.rate),
        canary.n,
    )
    assert lift == pytest.approx(0.50386, abs=5e-6)
    assert math.sqrt(variance) == pytest.approx(0.03386, abs=5e-6)
    hw = half_width(variance, control.n + canary.n, 0.05, "sequential", 5000)
    assert (lift - hw, lift + hw) == pytest.approx((0.40098, 0.60675), abs=5e-6)


def test_half_width_is_narrowest_when_tuned_near_the_sample() -> None:
    # test_sequential_test_tuning_as_expected: with 3000 + 3461 = 6461 units, tuning at 10
    # gives a wider interval than at 10000, and both are wider than tuning at 6461.
    control = Moments(3000, 1396.87, 52377.9767)
    canary = Moments(3461, 2422.7, 134698.29)
    _, variance = _relative_lift(
        control.mean, control.variance, control.n, canary.mean, canary.variance, canary.n
    )
    below, near, above = (
        half_width(variance, 6461, 0.05, "sequential", tune_n) for tune_n in (10, 6461, 10_000)
    )
    assert below > above > near
