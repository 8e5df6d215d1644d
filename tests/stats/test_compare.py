"""The stats engine against reference values (scipy) and its repeated-looks guarantee."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats as sps

from rolloutctl.stats.compare import (
    MarginSpec,
    compare_means,
    compare_proportions,
    compare_quantiles,
    compare_ratios,
    half_width,
    srm_p_value,
)
from rolloutctl.stats.sequential import tune_rho2
from rolloutctl.stats.sufficient import Histogram, Moments, Proportion, RatioMoments, Tail


def test_fixed_bound_is_the_wald_bound() -> None:
    # One-sided 95% Wald bound: z = scipy.stats.norm.ppf(0.95) = 1.6449 times the standard error.
    hw = half_width(0.0001, 2000, 0.05, "fixed", 0)
    assert hw == pytest.approx(sps.norm.ppf(0.95) * 0.01, rel=1e-9)


def test_sequential_bound_is_wider_than_fixed_and_narrows() -> None:
    fixed = half_width(1 / 1000, 1000, 0.05, "sequential", 10_000)
    assert fixed > half_width(1 / 1000, 1000, 0.05, "fixed", 0)
    widths = [half_width(1 / n, n, 0.05, "sequential", 10_000) for n in (1000, 4000, 16000)]
    assert widths[0] > widths[1] > widths[2]


def test_srm_matches_scipy_chisquare() -> None:
    observed = [9_400, 600]
    expected = [9_500, 500]
    reference = sps.chisquare(observed, expected).pvalue
    assert srm_p_value(9_400, 600, 5.0) == pytest.approx(reference, rel=1e-9)


def test_proportions_pass_fail_and_direction() -> None:
    control = Proportion(200_000, 2_000)  # 1.0%
    same = Proportion(20_000, 200)
    worse = Proportion(20_000, 600)  # 3.0%
    margin = MarginSpec(0.005, relative=False)
    assert compare_proportions(control, same, margin, "higher", 0.05).verdict == "pass"
    failed = compare_proportions(control, worse, margin, "higher", 0.05)
    assert failed.verdict == "fail" and failed.ci[0] > 0.005
    # "worse: lower": a drop in completion fails, a rise passes.
    completion = Proportion(200_000, 120_000)
    assert (
        compare_proportions(
            completion, Proportion(20_000, 10_000), MarginSpec(0.02, False), "lower", 0.05
        ).verdict
        == "fail"
    )
    assert (
        compare_proportions(
            completion, Proportion(20_000, 12_400), MarginSpec(0.02, False), "lower", 0.05
        ).verdict
        == "pass"
    )


def test_relative_margin_uses_delta_method() -> None:
    control = Moments(50_000, 50_000 * 2.0, 50_000 * (4.0 + 1.0))  # mean 2, var ~1
    canary = Moments(5_000, 5_000 * 2.6, 5_000 * (2.6**2 + 1.0))
    result = compare_means(control, canary, MarginSpec(0.2, True), "higher", 0.05, "fixed")
    assert result.estimate == pytest.approx(0.3, rel=1e-6)
    # delta-method variance of mean_t / mean_c - 1
    var = (1 / 5_000) / 4 + 2.6**2 * (1 / 50_000) / 16
    assert result.ci[0] == pytest.approx(0.3 - sps.norm.ppf(0.95) * math.sqrt(var), rel=1e-3)
    assert result.verdict == "fail"


def test_ratio_metric_delta_method_against_simulation() -> None:
    rng = np.random.default_rng(3)
    x = rng.gamma(2.0, 0.001, 20_000)
    y = (rng.random(20_000) < 0.6).astype(float)
    m = RatioMoments(len(x), x.sum(), y.sum(), (x * x).sum(), (y * y).sum(), (x * y).sum())
    result = compare_ratios(m, m, MarginSpec(0.2, True), "higher", 0.05)
    assert result.estimate == pytest.approx(0.0, abs=1e-12)
    assert result.verdict == "pass"


def test_histogram_quantile_within_bucket_resolution() -> None:
    rng = np.random.default_rng(1)
    values = rng.lognormal(7, 0.6, 50_000)
    buckets, counts = np.unique(np.floor(np.log(values) / math.log(1.01)), return_counts=True)
    hist = Histogram({int(b): int(c) for b, c in zip(buckets, counts, strict=True)})
    assert hist.quantile(0.95) == pytest.approx(np.quantile(values, 0.95), rel=0.01)
    slower = Histogram({b + 30: c for b, c in hist.counts.items()})  # every value x1.35
    verdict = compare_quantiles(hist, slower, 0.95, MarginSpec(0.1, True), "higher", 0.05)
    assert verdict.verdict == "fail" and verdict.estimate == pytest.approx(0.35, abs=0.02)
    same = compare_quantiles(hist, hist, 0.95, MarginSpec(0.1, True), "higher", 0.05)
    assert same.verdict == "pass"


@pytest.mark.slow
def test_sequential_keeps_false_fails_under_alpha_over_many_looks() -> None:
    """A/A with 30 looks each: the fixed test fails far more often than alpha; the sequential
    bound stays under it (Armitage, McPherson & Rowe 1969 for the fixed-test inflation)."""
    rng = np.random.default_rng(7)
    runs, looks, per_look, p, alpha = 400, 30, 400, 0.1, 0.05
    margin = MarginSpec(0.0, False)
    rho2 = tune_rho2(alpha, 12_000)
    false_fail = {"sequential": 0, "fixed": 0}
    for _ in range(runs):
        a = rng.binomial(per_look, p, looks).cumsum()
        b = rng.binomial(per_look, p, looks).cumsum()
        for method in false_fail:
            for k in range(looks):
                n = per_look * (k + 1)
                result = compare_proportions(
                    Proportion(n, int(a[k])),
                    Proportion(n, int(b[k])),
                    margin,
                    "higher",
                    alpha,
                    method,
                    rho2,  # type: ignore[arg-type]
                )
                if result.verdict == "fail":
                    false_fail[method] += 1
                    break
    assert false_fail["sequential"] / runs <= alpha
    assert false_fail["fixed"] / runs > 2 * alpha


@given(
    st.integers(200, 50_000),
    st.floats(0.01, 0.5),
    st.integers(200, 50_000),
    st.floats(0.01, 0.5),
    st.floats(0.0, 0.05),
)
def test_proportion_comparison_invariants(
    n_c: int, p_c: float, n_t: int, p_t: float, margin: float
) -> None:
    control, canary = Proportion(n_c, round(n_c * p_c)), Proportion(n_t, round(n_t * p_t))
    spec = MarginSpec(margin, False)
    higher = compare_proportions(control, canary, spec, "higher", 0.05)
    # p-values are probabilities; the interval contains the estimate.
    assert 0 <= higher.p_fail <= 1 and 0 <= higher.p_pass <= 1
    assert higher.ci[0] <= higher.estimate <= higher.ci[1]
    # Swapping the arms and the direction of harm is the same question.
    swapped = compare_proportions(canary, control, spec, "lower", 0.05)
    assert swapped.estimate == pytest.approx(-higher.estimate)
    assert swapped.p_fail == pytest.approx(higher.p_fail, rel=1e-9, abs=1e-12)
    assert swapped.verdict == higher.verdict
    # A wider margin never makes the canary look worse.
    wider = compare_proportions(control, canary, MarginSpec(margin + 0.01, False), "higher", 0.05)
    assert wider.p_fail >= higher.p_fail - 1e-12
    assert wider.p_pass <= higher.p_pass + 1e-12


@given(st.integers(10, 5_000), st.floats(1.0, 100.0), st.floats(0.1, 0.5), st.floats(0.0, 0.3))
def test_mean_comparison_invariants(n: int, mean: float, cv: float, lift: float) -> None:
    sd = mean * cv
    control = Moments(n, n * mean, n * (sd**2 + mean**2))
    m_t = mean * (1 + lift)
    canary = Moments(n, n * m_t, n * (sd**2 + m_t**2))
    result = compare_means(control, canary, MarginSpec(0.1, True), "higher", 0.05)
    assert result.ci[0] <= result.estimate <= result.ci[1]
    assert result.estimate == pytest.approx(lift, rel=1e-6, abs=1e-9)
    fixed = compare_means(control, canary, MarginSpec(0.1, True), "higher", 0.05, "fixed")
    # One look is bolder than the always-valid bound at the same alpha.
    assert fixed.p_fail <= result.p_fail + 1e-12


@given(
    st.integers(200, 50_000),
    st.floats(0.01, 0.5),
    st.integers(200, 50_000),
    st.floats(0.01, 0.5),
    st.floats(0.0, 0.05),
    st.sampled_from(["higher", "lower"]),
    st.sampled_from(["sequential", "fixed"]),
)
def test_each_side_of_the_interval_is_the_test_of_its_verdict(
    n_c: int, p_c: float, n_t: int, p_t: float, margin: float, worse: str, method: str
) -> None:
    """FAIL at alpha / 26, PASS at alpha: the harmful-side bound lies beyond the margin exactly
    when the canary fails, the safe-side bound within it exactly when it passes, and the
    safe side is the narrower one."""
    control, canary = Proportion(n_c, round(n_c * p_c)), Proportion(n_t, round(n_t * p_t))
    spec = MarginSpec(margin, False)
    alpha, alpha_pass = 0.05 / 26, 0.05
    two = compare_proportions(
        control,
        canary,
        spec,
        worse,
        alpha,
        method,
        alpha_pass=alpha_pass,  # type: ignore[arg-type]
    )
    one = compare_proportions(control, canary, spec, worse, alpha, method)  # type: ignore[arg-type]
    lo, hi = two.ci
    harm_end, safe_end = (lo, hi) if worse == "higher" else (-hi, -lo)
    signed = two.margin if worse == "higher" else -two.margin
    assert (two.verdict == "fail") == (harm_end > signed) or abs(harm_end - signed) < 1e-9
    if two.verdict != "fail":
        assert (two.verdict == "pass") == (safe_end < signed) or abs(safe_end - signed) < 1e-9
    # The harmful side is the same as with one level; the safe side is tighter.
    assert two.p_fail == one.p_fail and two.p_pass == one.p_pass
    assert (lo == one.ci[0]) if worse == "higher" else (hi == one.ci[1])
    assert (hi <= one.ci[1]) if worse == "higher" else (lo >= one.ci[0])
    assert not (one.verdict == "pass" and two.verdict != "pass")


def test_passing_every_metric_at_full_alpha_keeps_false_passes_at_alpha() -> None:
    """Intersection-union (Berger 1982): five metrics, one worse than its control by exactly
    its margin (10% relative) and four healthy. The gate passes only when each is shown
    non-inferior at alpha, so it passes the harmful canary at most alpha of the time, and with
    one planned look nearly exactly alpha (the healthy four almost always pass): passing is
    not split over the metrics (that would give about alpha / 5), nor looser than alpha."""
    rng = np.random.default_rng(11)
    runs, n, alpha = 6000, 40_000, 0.05
    control = rng.binomial(n * 4, 0.10, (runs, 5))
    canary = rng.binomial(n, [0.11, 0.10, 0.10, 0.10, 0.10], (runs, 5))
    false_pass = 0
    for c, t in zip(control, canary, strict=True):
        verdicts = [
            compare_proportions(
                Proportion(n * 4, int(c[i])),
                Proportion(n, int(t[i])),
                MarginSpec(0.1, True),
                "higher",
                alpha / 5,
                "fixed",
                alpha_pass=alpha,
            ).verdict
            for i in range(5)
        ]
        false_pass += all(v == "pass" for v in verdicts)
    assert 0.04 <= false_pass / runs <= 0.06


def _latency_histogram(rng: np.random.Generator, n: int, scale: float) -> Histogram:
    values = rng.lognormal(math.log(900 * scale), 0.55, n)
    counts: dict[int, int] = {}
    for b in (np.floor(np.log(values) / math.log(1.01))).astype(int):
        counts[int(b)] = counts.get(int(b), 0) + 1
    return Histogram(counts)


@given(
    st.integers(0, 10**6),
    st.floats(0.85, 1.4),
    st.floats(0.0, 0.3),
    st.sampled_from(["higher", "lower"]),
    st.booleans(),
)
def test_the_quantile_interval_is_the_exceedance_test_inverted(
    seed: int, lift: float, margin: float, worse: str, relative: bool
) -> None:
    """The interval shown for a p95 is the one its verdict used: the harmful end lies beyond
    the margin exactly when the verdict is fail, the safe end within it exactly when it is
    pass (fail at alpha / 20, pass at alpha)."""
    rng = np.random.default_rng(seed)
    control = _latency_histogram(rng, 6000, 1.0)
    canary = _latency_histogram(rng, 1500, lift)
    spec = MarginSpec(margin if relative else margin * 1000, relative)
    result = compare_quantiles(
        control,
        canary,
        0.95,
        spec,
        worse,
        0.05 / 20,
        alpha_pass=0.05,  # type: ignore[arg-type]
    )
    lo, hi = result.ci
    harm_end, safe_end = (lo, hi) if worse == "higher" else (-hi, -lo)
    edge = spec.value
    assert (result.verdict == "fail") == (harm_end > edge)
    assert (result.verdict == "pass") == (safe_end < edge and result.verdict != "fail")
    assert harm_end <= safe_end


@pytest.mark.parametrize("worse", ["higher", "lower"])
@pytest.mark.parametrize("relative", [True, False])
def test_a_p95_estimate_lies_inside_its_interval_when_samples_outgrow_the_buckets(
    worse: str, relative: bool
) -> None:
    """Two million requests an arm: the interval is about a bucket (1%) wide, so the
    quantiles' own ratio, known to a bucket, could fall outside it (a p95 estimate outside
    its own interval in the report); the estimate is kept inside."""
    rng = np.random.default_rng(0)  # a draw where the ratio fell outside (before the fix)
    control = _latency_histogram(rng, 2_000_000, 1.0)
    canary = _latency_histogram(rng, 2_000_000, 1.005)
    spec = MarginSpec(0.15, True) if relative else MarginSpec(100.0, False)
    result = compare_quantiles(control, canary, 0.95, spec, worse, 0.0025)  # type: ignore[arg-type]
    assert result.ci[1] - result.ci[0] < 0.011 * (1 if relative else result.control_value)
    assert result.ci[0] <= result.estimate <= result.ci[1]


def test_a_slower_canary_fails_with_its_interval_beyond_the_margin() -> None:
    rng = np.random.default_rng(3)
    control, canary = _latency_histogram(rng, 40_000, 1.0), _latency_histogram(rng, 4_000, 1.3)
    result = compare_quantiles(control, canary, 0.95, MarginSpec(0.05, True), "higher", 0.05)
    assert result.verdict == "fail" and result.ci[0] > 0.05
    assert result.ci[0] < result.estimate < result.ci[1]
    same = _latency_histogram(rng, 4_000, 1.0)
    healthy = compare_quantiles(control, same, 0.95, MarginSpec(0.1, True), "higher", 0.05)
    assert healthy.verdict == "pass" and healthy.ci[1] < 0.1 and healthy.ci[0] < 0 < healthy.ci[1]


@given(
    st.dictionaries(st.integers(-50, 900), st.integers(1, 50), min_size=1),
    st.floats(0.0, 1e4, allow_nan=False),
)
def test_a_tail_counts_what_count_above_counts(counts: dict[int, int], value: float) -> None:
    h = Histogram(counts)
    assert Tail(h, above=True).beyond(value) == h.count_above(value)
    assert Tail(h, above=False).beyond(value) == h.n - h.count_above(value)
