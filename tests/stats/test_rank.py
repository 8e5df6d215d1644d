"""The rank view (Mann-Whitney U, Hodges-Lehmann shift) against R, Kayenta and scipy."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy import stats as sps

from rolloutctl.stats import rank
from rolloutctl.stats.rank import from_histogram, mann_whitney
from rolloutctl.stats.sufficient import GAMMA, ZERO_BUCKET, Histogram


def _raw(xs: list[float]) -> list[tuple[float, int]]:
    return [(x, 1) for x in xs]


def _expand(sample: list[tuple[float, int]]) -> np.ndarray:
    return np.repeat([v for v, _ in sample], [c for _, c in sample]).astype(float)


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split()]


def _brute_force_shift_and_ci(
    control: np.ndarray, canary: np.ndarray, confidence: float
) -> tuple[float, float, float]:
    """Every pairwise difference written out, and the Moses rank rule applied to them."""
    diffs = np.sort(np.subtract.outer(canary, control).ravel())
    pairs = diffs.size
    z = sps.norm.ppf((1 + confidence) / 2)
    k = max(1, math.floor(pairs / 2 - z * math.sqrt(pairs * (len(control) + len(canary) + 1) / 12)))
    return float(np.median(diffs)), float(diffs[k - 1]), float(diffs[pairs - k])


# --- R: the examples of ?wilcox.test -----------------------------------------------------------


def test_r_wilcox_test_two_sample_example() -> None:
    # R documentation of wilcox.test, two-sample example (Hollander & Wolfe 1973, p. 69):
    # wilcox.test(x, y, alternative = "greater") gives W = 35, p-value = 0.1272 (exact).
    x = [0.80, 0.83, 1.89, 1.04, 1.45, 1.38, 1.91, 1.64, 0.73, 1.46]
    y = [1.15, 0.88, 0.90, 0.74, 1.21]
    result = mann_whitney(control=_raw(y), canary=_raw(x))
    assert result.u == 35.0  # R's W is the U of its first sample
    assert (result.n_control, result.n_canary) == (5, 10)
    # The normal approximation with continuity correction (R: exact = FALSE, correct = TRUE) is
    # scipy.stats.mannwhitneyu(x, y, alternative="greater", method="asymptotic") = 0.12231180.
    reference = sps.mannwhitneyu(x, y, alternative="greater", method="asymptotic")
    assert reference.pvalue == pytest.approx(0.12231180256349167, rel=1e-12)
    assert result.p_greater == pytest.approx(reference.pvalue, rel=1e-12)
    assert result.z == pytest.approx((35 - 25 - 0.5) / math.sqrt(5 * 10 * 16 / 12), rel=1e-12)
    # ... and lies within 0.01 of R's exact 0.1272.
    assert abs(result.p_greater - 0.1272) < 0.01


def test_r_wilcox_test_airquality_example_with_ties() -> None:
    # R documentation of wilcox.test: wilcox.test(Ozone ~ Month, data = airquality,
    # subset = Month %in% c(5, 8)) gives "Wilcoxon rank sum test with continuity correction",
    # W = 127.5, p-value = 0.0001208 (two-sided; ties, so the normal approximation).
    # Ozone of R's datasets::airquality, non-missing days of May and of August.
    may = _floats("41 36 12 18 28 23 19 8 7 16 11 14 18 14 34 6 30 11 1 11 4 32 23 45 115 37")
    august = _floats(
        "39 9 16 78 35 66 122 89 110 44 28 65 22 59 23 31 44 21 9 45 168 73 76 118 84 85"
    )
    result = mann_whitney(control=_raw(august), canary=_raw(may))
    assert result.u == 127.5
    assert result.p_two_sided == pytest.approx(0.0001208, rel=5e-4)
    assert result.p_less < result.p_two_sided < result.p_greater
    assert result.shift < 0 and result.ci[1] < 0  # May's ozone is lower


# --- Kayenta: kayenta-mannwhitney/src/test/scala/.../mannwhitney/MannWhitneySuite.scala ---------
# spinnaker/kayenta, MannWhitneySuite.scala (its experimentData is the canary). Kayenta ports R's
# wilcox.test(conf.int = TRUE), which finds the interval by root finding (uniroot, tol = 1e-4) on
# a step function whose steps sit at pairwise differences; the Moses ranks used here pick those
# same differences, so the R figures agree to that tolerance.

_KAYENTA_R_TOLERANCE = 1e-4


def test_kayenta_returns_expected_values() -> None:
    # MannWhitneySuite "returns expected values": control 1..4, experiment 10..40, 95%:
    # interval (6.0, 39.0), estimate 22.5 (E = 1e-6).
    result = mann_whitney(_raw([1.0, 2.0, 3.0, 4.0]), _raw([10.0, 20.0, 30.0, 40.0]), 0.95)
    assert result.ci == pytest.approx((6.0, 39.0), abs=1e-6)
    assert result.shift == pytest.approx(22.5, abs=1e-6)
    assert result.u == 16.0
    # The suite's p-value 0.02857142857142857 is R's exact one (2 / 70); the normal
    # approximation is scipy's mannwhitneyu(method="asymptotic") = 0.0303828.
    assert result.p_two_sided == pytest.approx(0.03038282197657749, rel=1e-9)


_KAYENTA_TIE_OUT_CONTROL = _floats(
    "1.5 6.0 5.0 2.5 2.5 2.0 2.0 3.5 3.0 3.0 3.0 2.0 3.0 8.0 4.0 2.5 3.0 2.5 2.5 2.0 2.5 "
    "2.0 2.0 2.5 3.5 3.0 1.5 5.0 2.5 5.5 2.0 2.5 3.5 2.0 2.5 4.0 2.0 2.0 2.0 2.0 5.5 4.5 "
    "4.0 3.0 3.0 3.5 2.5 3.0 2.5 4.0 6.0 2.0 5.0 6.0 3.5 3.0 54.5 3.0 5.0 6.0 3.5 4.5 2.5 "
    "2.0 6.0 5.0 2.5 3.5 2.0 3.0 2.5 3.5 3.5 2.5 3.0 4.5 3.0 15.5 5.0 2.5 3.0 4.0 3.5 4.0 "
    "4.0 2.0 4.5 2.5 4.0 3.0 "
)
_KAYENTA_TIE_OUT_EXPERIMENT = _floats(
    "2.5 2.5 2.0 2.5 3.5 2.0 3.5 1.5 3.0 3.0 2.5 3.5 2.0 2.5 2.0 2.0 5.0 3.0 2.0 1.5 2.0 "
    "4.0 3.0 2.5 3.0 2.0 2.0 2.0 2.5 3.5 1.5 1.5 3.5 2.0 2.5 2.5 3.0 3.5 2.5 6.5 2.5 4.0 "
    "2.5 3.0 2.5 6.5 2.5 3.0 1.5 2.0 2.5 3.0 7.5 1.5 2.0 4.0 2.5 2.0 2.5 3.5 4.0 2.5 3.0 "
    "2.5 2.0 3.5 3.0 16.5 3.0 3.0 7.0 4.5 5.0 2.0 3.5 6.0 1.5 3.0 2.5 4.0 3.0 1.5 5.0 3.0 "
    "2.5 5.5 3.0 1.5 2.5 6.0 "
)
_KAYENTA_TIE_OUT_AGAIN_CONTROL = _floats(
    "1.5 1.5 1.0 2.0 1.5 1.5 1.5 2.0 1.0 1.0 2.0 1.5 1.5 1.0 1.5 1.5 1.5 1.5 1.5 2.0 1.0 "
    "1.5 3.0 2.0 1.0 1.5 1.5 1.5 2.0 1.5 1.0 1.0 1.5 2.5 2.0 0.0 1.0 2.0 2.0 1.5 3.0 2.0 "
    "1.0 2.5 0.5 1.5 0.5 2.5 2.0 1.5 1.5 2.0 1.0 4.5 2.5 0.5 2.5 1.5 1.5 1.0 2.0 1.0 2.5 "
    "1.5 2.0 1.5 3.0 1.5 1.5 1.5 1.5 2.0 1.0 2.5 1.0 1.5 2.5 1.5 2.5 2.0 1.5 1.5 1.5 2.5 "
    "1.0 7.5 1.5 3.0 5.5 1.0 1.5 2.0 1.0 1.5 2.5 2.5 1.0 1.0 2.5 1.5 1.5 3.0 4.0 1.0 1.5 "
    "2.0 1.5 1.5 1.5 2.5 1.5 3.5 2.5 1.5 2.0 1.0 4.0 1.5 1.0 1.5 2.5 2.5 2.0 2.5 1.5 1.5 "
    "2.0 1.0 1.5 2.0 1.5 1.0 2.5 1.5 1.5 2.0 2.0 1.0 1.5 2.5 0.5 2.0 2.5 2.0 1.0 2.0 0.5 "
    "1.5 1.0 2.5 1.0 1.5 1.0 7.0 1.0 3.5 1.5 2.0 1.5 1.5 2.0 3.0 1.5 1.5 2.0 1.5 2.0 1.5 "
    "4.0 2.0 1.5 1.5 1.5 1.5 1.5 0.5 2.0 1.0 1.5 0.5 "
)
_KAYENTA_TIE_OUT_AGAIN_EXPERIMENT = _floats(
    "1.5 2.0 5.0 1.5 1.5 8.5 1.0 1.0 2.0 1.0 1.5 0.5 2.0 1.5 2.0 1.5 1.0 2.5 1.5 1.5 2.0 "
    "1.5 1.5 1.5 2.0 2.0 1.0 5.5 1.5 2.0 1.5 1.5 1.0 2.5 1.0 2.0 1.5 1.5 2.0 2.0 1.5 1.5 "
    "1.0 1.0 2.0 0.5 1.5 0.5 3.5 1.5 3.0 19.0 0.5 1.5 0.5 1.5 2.0 1.5 1.5 1.5 1.5 2.0 1.5 "
    "2.0 2.0 1.5 1.0 1.5 1.0 2.0 1.0 2.0 1.5 1.5 3.0 2.0 1.5 1.5 0.5 2.0 1.5 1.0 2.0 1.0 "
    "1.0 2.0 1.0 2.0 1.5 1.0 1.0 2.0 1.5 1.5 1.5 0.5 1.5 1.5 0.5 1.0 1.5 1.5 1.5 1.0 2.0 "
    "2.0 2.0 1.5 1.0 1.5 1.0 1.0 1.5 3.5 2.0 1.5 1.0 2.0 1.5 5.5 0.5 2.0 3.5 1.5 1.0 2.0 "
    "0.5 2.5 1.0 1.5 0.5 2.0 2.0 1.0 0.5 1.5 1.0 1.5 0.5 0.5 1.0 1.5 1.0 1.5 0.5 1.5 1.0 "
    "1.0 0.5 1.0 0.5 4.0 1.0 1.5 2.0 5.5 1.5 0.5 2.0 1.0 1.5 1.0 1.5 1.5 1.0 1.5 1.5 1.5 "
    "1.5 1.5 1.5 2.0 0.5 1.5 1.0 2.0 1.0 1.0 0.5 1.0 "
)


@pytest.mark.parametrize(
    ("control", "experiment", "confidence", "r_ci", "r_estimate"),
    [
        # MannWhitneySuite "tie out with R version": rCiLow, rCiHigh, rEst.
        (
            _KAYENTA_TIE_OUT_CONTROL,
            _KAYENTA_TIE_OUT_EXPERIMENT,
            0.95,
            (-0.500002521696696, -3.486287505871302e-05),
            -0.4999393907180323,
        ),
        # MannWhitneySuite "tie out with R version again": rCiLow, rCiHigh, rEst.
        (
            _KAYENTA_TIE_OUT_AGAIN_CONTROL,
            _KAYENTA_TIE_OUT_AGAIN_EXPERIMENT,
            0.98,
            (-0.4999173250549087, -6.912685789769486e-06),
            -3.45044082729315e-05,
        ),
    ],
    ids=["tie-out-with-r", "tie-out-with-r-again"],
)
def test_kayenta_tie_outs_with_r(
    control: list[float],
    experiment: list[float],
    confidence: float,
    r_ci: tuple[float, float],
    r_estimate: float,
) -> None:
    result = mann_whitney(_raw(control), _raw(experiment), confidence)
    assert result.ci == pytest.approx(r_ci, abs=_KAYENTA_R_TOLERANCE)
    assert result.shift == pytest.approx(r_estimate, abs=_KAYENTA_R_TOLERANCE)
    # Heavy ties: the same data as (value, count) pairs gives the same answer.
    weighted = mann_whitney(
        list(Counter(control).items()), list(Counter(experiment).items()), confidence
    )
    assert weighted == result
    reference = sps.mannwhitneyu(experiment, control, method="asymptotic")
    assert result.u == reference.statistic
    assert result.p_two_sided == pytest.approx(reference.pvalue, rel=1e-9)


# --- scipy: U and p-values on weighted samples with ties ---------------------------------------


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_u_and_p_values_match_scipy_on_weighted_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    grid = np.round(rng.lognormal(5, 0.5, 40), 0)  # coarse values: many ties
    control = [(float(v), int(c)) for v, c in zip(grid[:25], rng.integers(1, 40, 25), strict=True)]
    canary = [(float(v), int(c)) for v, c in zip(grid[15:], rng.integers(1, 40, 25), strict=True)]
    x, y = _expand(canary), _expand(control)
    result = mann_whitney(control, canary)
    for alternative, p in (
        ("greater", result.p_greater),
        ("less", result.p_less),
        ("two-sided", result.p_two_sided),
    ):
        reference = sps.mannwhitneyu(x, y, alternative=alternative, method="asymptotic")
        assert p == pytest.approx(reference.pvalue, rel=1e-9, abs=1e-300)
    assert result.u == sps.mannwhitneyu(x, y, method="asymptotic").statistic
    assert (result.n_control, result.n_canary) == (len(y), len(x))


# --- Hodges-Lehmann shift and its interval against brute force ----------------------------------

_small_values = st.lists(
    st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False), min_size=1, max_size=12
)


@given(_small_values, _small_values, st.sampled_from([0.8, 0.9, 0.95, 0.99]))
def test_shift_and_interval_match_brute_force(
    control: list[float], canary: list[float], confidence: float
) -> None:
    result = mann_whitney(_raw(control), _raw(canary), confidence)
    shift, lo, hi = _brute_force_shift_and_ci(np.array(control), np.array(canary), confidence)
    assert result.shift == pytest.approx(shift, rel=1e-12, abs=1e-12)
    assert result.ci == (lo, hi)


_weighted = st.lists(
    st.tuples(st.integers(-30, 30).map(float), st.integers(1, 6)), min_size=1, max_size=10
)


@given(_weighted, _weighted)
def test_weighted_equals_expanded(
    control: list[tuple[float, int]], canary: list[tuple[float, int]]
) -> None:
    expanded = mann_whitney(_raw(list(_expand(control))), _raw(list(_expand(canary))))
    assert mann_whitney(control, canary) == expanded
    shift, lo, hi = _brute_force_shift_and_ci(_expand(control), _expand(canary), 0.95)
    assert (expanded.shift, *expanded.ci) == (shift, lo, hi)


def test_long_raw_samples_select_without_building_every_difference() -> None:
    rng = np.random.default_rng(7)
    control, canary = rng.lognormal(3, 1, 600), rng.lognormal(3.1, 1, 400)
    assert control.size * canary.size > rank._SORT_LIMIT  # the in-place selection path
    result = mann_whitney(_raw(list(control)), _raw(list(canary)), 0.9)
    shift, lo, hi = _brute_force_shift_and_ci(control, canary, 0.9)
    assert result.shift == pytest.approx(shift, rel=1e-12)
    assert result.ci == (lo, hi)


@settings(max_examples=200)
@given(
    st.lists(st.tuples(st.floats(-1e6, 1e6), st.integers(1, 1000)), min_size=1, max_size=25),
    st.lists(st.tuples(st.floats(-1e6, 1e6), st.integers(1, 1000)), min_size=1, max_size=25),
    st.lists(st.floats(0, 1), min_size=1, max_size=5),
)
def test_selection_agrees_with_sorting(
    control: list[tuple[float, int]], canary: list[tuple[float, int]], quantiles: list[float]
) -> None:
    a, m = rank._collapse(control)
    b, n = rank._collapse(canary)
    total = int(m.sum() * n.sum())
    ranks = [min(total, max(1, math.ceil(q * total))) for q in quantiles]
    by_sorting = rank._order_statistics(a, m, b, n, ranks, sort_limit=len(a) * len(b))
    by_selection = rank._order_statistics(a, m, b, n, ranks, sort_limit=0)
    assert by_selection == by_sorting


def test_huge_counts_are_never_expanded() -> None:
    # 2e12 observations a side: only distinct values are touched.
    control = [(1.0, 10**12), (2.0, 10**12)]
    canary = [(2.0, 10**12), (3.0, 10**12)]
    result = mann_whitney(control, canary)
    # canary 3 beats both control values, canary 2 beats 1 and ties 2: U = 3.5e24 of 4e24 pairs.
    assert result.u == pytest.approx(3.5e24, rel=1e-12)
    # Differences 0, 1, 1, 2 with equal weights: the median is 1, and so are both ends of an
    # interval this many observations pin down.
    assert result.shift == 1.0
    assert result.ci == (1.0, 1.0)
    assert result.p_greater < 1e-100 and result.p_less == pytest.approx(1.0)


# --- invariants ---------------------------------------------------------------------------------

_any_weighted = st.lists(
    st.tuples(st.floats(-1e6, 1e6, allow_nan=False), st.integers(1, 50)), min_size=1, max_size=15
)


@given(_any_weighted, _any_weighted, st.floats(0.5, 0.999))
def test_p_values_are_probabilities_and_the_interval_holds_the_shift(
    control: list[tuple[float, int]], canary: list[tuple[float, int]], confidence: float
) -> None:
    result = mann_whitney(control, canary, confidence)
    for p in (result.p_greater, result.p_less, result.p_two_sided):
        assert 0.0 <= p <= 1.0
    assert result.ci[0] <= result.shift <= result.ci[1]
    assert 0.0 <= result.u <= result.n_control * result.n_canary


@given(_any_weighted, _any_weighted)
def test_swapping_arms_mirrors_the_result(
    control: list[tuple[float, int]], canary: list[tuple[float, int]]
) -> None:
    forward, backward = mann_whitney(control, canary), mann_whitney(canary, control)
    assert backward.shift == -forward.shift
    assert backward.ci == (-forward.ci[1], -forward.ci[0])
    assert backward.p_greater == forward.p_less
    assert backward.p_less == forward.p_greater
    assert backward.p_two_sided == forward.p_two_sided
    assert backward.z == -forward.z
    assert backward.u == forward.n_control * forward.n_canary - forward.u


@given(_weighted, _weighted, st.integers(-1000, 1000))
def test_moving_the_canary_moves_the_shift(
    control: list[tuple[float, int]], canary: list[tuple[float, int]], c: int
) -> None:
    # Integer values keep every difference exact, so the move is exact too.
    moved = mann_whitney(control, [(v + c, k) for v, k in canary])
    base = mann_whitney(control, canary)
    assert moved.shift == base.shift + c
    assert moved.ci == (base.ci[0] + c, base.ci[1] + c)


# --- histograms -----------------------------------------------------------------------------------


def test_from_histogram_gives_sorted_midpoints_with_counts() -> None:
    h = Histogram({300: 2, -5: 4, ZERO_BUCKET: 1, 17: 0})
    assert from_histogram(h) == [
        (0.0, 1),
        (Histogram.midpoint(-5), 4),
        (Histogram.midpoint(300), 2),
    ]
    assert from_histogram(Histogram()) == []


@given(
    st.dictionaries(
        st.integers(-300, 900),
        st.tuples(st.booleans(), st.lists(st.floats(0.05, 0.95), min_size=1, max_size=4)),
        min_size=2,
    )
)
def test_histogram_u_equals_raw_u_when_arms_share_no_bucket(
    buckets: dict[int, tuple[bool, list[float]]],
) -> None:
    control_raw: list[float] = []
    canary_raw: list[float] = []
    for bucket, (is_canary, offsets) in buckets.items():
        values = [GAMMA ** (bucket + f) for f in offsets]
        (canary_raw if is_canary else control_raw).extend(values)
    assume(control_raw and canary_raw)
    control_h, canary_h = _histogram(control_raw), _histogram(canary_raw)
    assert not set(control_h.counts) & set(canary_h.counts)  # the premise holds
    from_buckets = mann_whitney(from_histogram(control_h), from_histogram(canary_h))
    from_values = mann_whitney(_raw(control_raw), _raw(canary_raw))
    assert from_buckets.u == from_values.u
    assert (from_buckets.n_control, from_buckets.n_canary) == (len(control_raw), len(canary_raw))


def _histogram(values: list[float]) -> Histogram:
    return Histogram(dict(Counter(Histogram.bucket_of(v) for v in values)))


# --- degenerate input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("control", "canary"),
    [
        ([], []),
        ([], [(1.0, 3)]),
        ([(2.0, 5)], []),
        ([(2.0, 0)], [(1.0, 3)]),  # a zero count is no observation
        ([(2.0, -3)], [(1.0, 3)]),  # nor is a negative one
        ([(math.nan, 4)], [(1.0, 3)]),  # nor is a value that cannot be ranked
    ],
)
def test_an_empty_arm_gives_nans_and_p_values_of_one(
    control: list[tuple[float, int]], canary: list[tuple[float, int]]
) -> None:
    result = mann_whitney(control, canary)
    assert math.isnan(result.u) and math.isnan(result.z) and math.isnan(result.shift)
    assert all(math.isnan(x) for x in result.ci)
    assert (result.p_greater, result.p_less, result.p_two_sided) == (1.0, 1.0, 1.0)
    assert result.n_control == sum(c for v, c in control if math.isfinite(v) and c > 0)


def test_one_value_everywhere_gives_no_evidence() -> None:
    result = mann_whitney([(5.0, 10)], [(5.0, 7)])
    assert result.u == 35.0
    assert (result.z, result.p_greater, result.p_less, result.p_two_sided) == (0, 1, 1, 1)
    assert result.shift == 0.0 and result.ci == (0.0, 0.0)


@pytest.mark.parametrize("confidence", [0.0, 1.0, -0.5, 95.0])
def test_confidence_must_be_a_probability(confidence: float) -> None:
    with pytest.raises(ValueError, match="confidence"):
        mann_whitney([(1.0, 1)], [(2.0, 1)], confidence)
