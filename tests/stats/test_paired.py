"""Paired statistics: the exact McNemar test on discordant pairs (reference values and
invariants), and the shadow stage's paired means, rates and quantiles (against scipy, hand
computations and simulation)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats as scipy_stats

from rolloutctl.stats import sequential
from rolloutctl.stats.compare import MarginSpec
from rolloutctl.stats.paired import (
    PairedMoments,
    PairedQuantiles,
    compare_paired,
    discordant,
    discordant_counts,
    mcnemar,
    mcnemar_always_valid,
    mcnemar_exact,
    paired_contrast,
    pick_bandwidth,
    quantile_contrast,
)
from rolloutctl.stats.sufficient import RatioMoments

# statsmodels, statsmodels/stats/tests/test_nonparametric.py::test_mcnemar_exact: 2x2 tables
# [[a, b], [c, d]] and their exact two-sided p-values ("vassar college online computation"),
# asserted there to 6 decimals. Only the discordant cells b and c matter.
STATSMODELS_EXACT = [
    ((121, 59), 0.000004),
    ((70, 59), 0.378688),
    ((80, 59), 0.089452),
    ((30, 60), 0.00206),
    ((10, 30), 0.002221),
    ((10, 10), 1.0),
]


@pytest.mark.parametrize(("bc", "p"), STATSMODELS_EXACT)
def test_two_sided_matches_statsmodels_reference(bc: tuple[int, int], p: float) -> None:
    b, c = bc
    assert mcnemar_exact(b, c, "two-sided") == pytest.approx(p, abs=1.5e-6)


def test_one_sided_is_the_binomial_upper_tail() -> None:
    # 8 new failures, 2 fixes: P(B >= 8 | 10, 1/2) = (C(10,8) + C(10,9) + C(10,10)) / 2**10
    assert mcnemar_exact(8, 2) == pytest.approx((45 + 10 + 1) / 1024)
    # ... and toward the other side, P(B <= 2) is the same number
    assert mcnemar_exact(2, 8, "less") == pytest.approx(56 / 1024)
    # one new failure and nothing fixed: a coin flip's worth of evidence
    assert mcnemar_exact(1, 0) == pytest.approx(0.5)
    # all discordant pairs are fixes: the candidate is not shown worse at all
    assert mcnemar_exact(0, 5) == 1.0


def test_no_discordant_pairs_means_no_evidence() -> None:
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(0, 0, "two-sided") == 1.0


def test_negative_counts_are_refused() -> None:
    with pytest.raises(ValueError, match="counts"):
        mcnemar_exact(-1, 3)


def test_result_carries_counts_and_both_p_values() -> None:
    result = mcnemar(121, 59)
    assert (result.new_failures, result.fixed, result.discordant) == (121, 59, 180)
    assert result.p_two_sided == pytest.approx(0.000004, abs=1.5e-6)
    assert result.p_worse == pytest.approx(result.p_two_sided / 2)


def test_discordant_counts_from_pairs() -> None:
    pairs = [(True, False)] * 3 + [(False, True)] + [(True, True)] * 5 + [(False, False)] * 2
    assert discordant_counts(pairs) == (3, 1)


counts = st.integers(min_value=0, max_value=400)


@given(counts, counts)
def test_p_values_are_probabilities(b: int, c: int) -> None:
    for alternative in ("greater", "less", "two-sided"):
        p = mcnemar_exact(b, c, alternative)  # type: ignore[arg-type]
        assert 0.0 <= p <= 1.0 and not math.isnan(p)


@given(counts, counts)
def test_two_sided_is_symmetric_in_the_arms(b: int, c: int) -> None:
    assert mcnemar_exact(b, c, "two-sided") == pytest.approx(mcnemar_exact(c, b, "two-sided"))


@given(counts, counts)
def test_two_sided_is_at_least_each_one_sided_tail_and_at_most_twice_the_smaller(
    b: int, c: int
) -> None:
    greater, less = mcnemar_exact(b, c, "greater"), mcnemar_exact(b, c, "less")
    two = mcnemar_exact(b, c, "two-sided")
    assert two == pytest.approx(min(1.0, 2 * min(greater, less)))


@given(counts, st.integers(min_value=0, max_value=100))
def test_one_more_new_failure_never_makes_the_candidate_look_better(b: int, c: int) -> None:
    assert mcnemar_exact(b + 1, c) <= mcnemar_exact(b, c) + 1e-12


# ================================================================ shadow pairs


def _moments(x: np.ndarray, y: np.ndarray) -> PairedMoments:
    return PairedMoments(len(x), x.sum(), y.sum(), (x * x).sum(), (y * y).sum(), (x * y).sum())


@pytest.mark.parametrize("margin", [0.0, 3.0])
def test_paired_mean_is_the_paired_t_statistic(margin: float) -> None:
    # Fixed-horizon analogue: scipy.stats.ttest_rel (paired t). Same statistic exactly; the
    # one-look p-value here is its normal tail, within a few percent of t with 499 df.
    rng = np.random.default_rng(7)
    x = rng.lognormal(6, 0.5, 500)
    y = x * rng.lognormal(0.01, 0.1, 500)
    m = _moments(x, y)
    theta, var = paired_contrast(m, relative=False)
    ref = scipy_stats.ttest_rel(y - margin, x, alternative="greater")
    assert (theta - margin) / math.sqrt(var) == pytest.approx(ref.statistic, rel=1e-9)
    comp = compare_paired(m, MarginSpec(margin, False), "higher", 0.05, 1.0, fixed=True)
    assert comp.p_fail == pytest.approx(scipy_stats.norm.sf(ref.statistic), rel=1e-9)
    assert comp.p_fail == pytest.approx(ref.pvalue, rel=0.06)
    assert comp.estimate == pytest.approx(np.mean(y - x))


def test_sequential_bound_is_wider_than_one_look() -> None:
    rng = np.random.default_rng(8)
    x = rng.normal(100, 10, 2000)
    m = _moments(x, x + rng.normal(1, 5, 2000))
    rho2 = sequential.tune_rho2(0.05, 2000)
    seq = compare_paired(m, MarginSpec(0, False), "higher", 0.05, rho2)
    one = compare_paired(m, MarginSpec(0, False), "higher", 0.05, rho2, fixed=True)
    assert seq.ci[0] < one.ci[0] < seq.estimate
    assert seq.p_fail > one.p_fail


def test_relative_contrast_by_hand() -> None:
    # x = 1 2 3 4, y = 2 2 5 4: means 2.5, 3.25, R = 1.3; s_x^2 = 5/3, s_y^2 = 2.25, s_xy = 1.5;
    # Var(R) = (2.25 - 2 * 1.3 * 1.5 + 1.69 * 5/3) / (4 * 2.5^2) = 1.1666.../25
    m = _moments(np.array([1.0, 2, 3, 4]), np.array([2.0, 2, 5, 4]))
    theta, var = paired_contrast(m, relative=True)
    assert theta == pytest.approx(0.3)
    assert var == pytest.approx((2.25 - 3.9 + 1.69 * 5 / 3) / 25)
    theta, var = paired_contrast(m, relative=False)  # d = 1 0 2 0: mean 0.75, s^2 = 2.75/3
    assert (theta, var) == pytest.approx((0.75, 2.75 / 3 / 4))


def test_paired_proportion_discordant_pairs_and_mcnemar() -> None:
    # 2x2 table (control, shadow): n11 = 5, n10 = 3, n01 = 7, n00 = 85.
    m = PairedMoments(100, 8, 12, 8, 12, 5)
    assert discordant(m, "higher") == (7, 3)  # b: only the shadow has the event
    assert discordant(m, "lower") == (3, 7)  # event is good: only the shadow lost it
    comp = compare_paired(m, MarginSpec(0.0, False), "higher", 0.05, 1.0, binary=True)
    # Agresti-Min: half a pair per cell, so theta = (12.5 - 8.5) / 102 * ... = 4 / 102
    assert comp.estimate == pytest.approx(4 / 102)
    assert (comp.control_value, comp.canary_value) == (0.08, 0.12)


def test_always_valid_mcnemar_by_hand_and_never_bolder_than_one_look() -> None:
    # b = 10, c = 0: E = 2^11 * integral_{1/2}^1 p^10 dp = (2^11 - 1) / 11
    assert mcnemar_always_valid(10, 0) == pytest.approx(11 / 2047)
    # b = 8, c = 2: E = 2^11 * integral p^8 (1-p)^2 = 2^11 * B(9, 3) * P(Bin(11, .5) <= 8)
    e = 2**11 * math.exp(math.lgamma(9) + math.lgamma(3) - math.lgamma(12))
    e *= scipy_stats.binom.cdf(8, 11, 0.5)
    assert mcnemar_always_valid(8, 2) == pytest.approx(1 / e)
    assert mcnemar_always_valid(0, 0) == 1.0
    assert mcnemar_always_valid(0, 9) == 1.0
    for b in range(0, 30, 3):
        for c in range(0, 30, 4):
            assert mcnemar_always_valid(b, c) >= mcnemar_exact(b, c) * 0.999


def test_always_valid_mcnemar_keeps_false_alarms_under_alpha_over_every_look() -> None:
    # Under "not worse", discordant pairs are fair coin flips; look after every one of 100.
    n = 100
    table = np.ones((n + 1, n + 1))
    for b in range(n + 1):
        for c in range(n + 1 - b):
            table[b, c] = mcnemar_always_valid(b, c)
    rng = np.random.default_rng(11)
    flips = rng.random((4000, n)) < 0.5
    b = np.cumsum(flips, axis=1)
    c = np.arange(1, n + 1) - b
    ever = (table[b, c] <= 0.05).any(axis=1).mean()
    assert ever <= 0.05
    assert ever > 0.005  # it does reject sometimes: not vacuous


def test_paired_quantile_variance_matches_simulation() -> None:
    # Correlated lognormal latencies; the Bahadur variance of Qy - Qx (relative and absolute)
    # against the spread of the estimate over 300 simulated stages.
    rng = np.random.default_rng(5)
    n, q = 4000, 0.95
    delta = pick_bandwidth(n, q)
    thetas, predicted = {True: [], False: []}, {True: [], False: []}
    for _ in range(300):
        base = rng.normal(0, 0.5, n)
        x = np.exp(6.5 + base + rng.normal(0, 0.2, n))
        y = np.exp(6.55 + base + rng.normal(0, 0.2, n))
        qs = {s: np.quantile(v, [q - delta, q, q + delta]) for s, v in (("x", x), ("y", y))}
        s = PairedQuantiles(
            n,
            q,
            delta,
            qs["x"][1],
            qs["y"][1],
            qs["x"][0],
            qs["x"][2],
            qs["y"][0],
            qs["y"][2],
            int((x > qs["x"][1]).sum()),
            int((y > qs["y"][1]).sum()),
            int(((x > qs["x"][1]) & (y > qs["y"][1])).sum()),
        )
        for relative in (True, False):
            theta, var = quantile_contrast(s, relative)
            thetas[relative].append(theta)
            predicted[relative].append(var)
    for relative in (True, False):
        empirical = np.std(thetas[relative])
        assert math.sqrt(np.mean(predicted[relative])) == pytest.approx(empirical, rel=0.15)
    assert np.mean(thetas[True]) == pytest.approx(math.exp(0.05) - 1, abs=0.01)


def test_pooled_sums_keep_their_kind() -> None:
    # PairedMoments and RatioMoments share their six sums and `+`, not their meaning: the
    # gate dispatches on RatioMoments, so a PairedMoments must never pass for one.
    a, b = PairedMoments(2, 3.0, 5.0, 5.0, 13.0, 8.0), PairedMoments(1, 1.0, 2.0, 1.0, 4.0, 2.0)
    pooled = a + b
    assert pooled == PairedMoments(3, 4.0, 7.0, 6.0, 17.0, 10.0)
    assert type(pooled) is PairedMoments and pooled.mean_y == pytest.approx(7 / 3)
    assert not isinstance(pooled, RatioMoments)
    ratio = RatioMoments(2, 3.0, 5.0, 5.0, 13.0, 8.0) + RatioMoments(1, 1.0, 2.0, 1.0, 4.0, 2.0)
    assert type(ratio) is RatioMoments and ratio.ratio == pytest.approx(4 / 7)
    assert ratio != pooled  # same sums, different things


def test_mcnemar_refuses_what_it_cannot_test() -> None:
    with pytest.raises(
        ValueError, match="alternative must be greater, less or two-sided, got 'up'"
    ):
        mcnemar_exact(1, 2, "up")  # type: ignore[arg-type]
    for b, c in ((-1, 2), (2, -1)):
        with pytest.raises(ValueError, match=f"discordant counts must be >= 0, got b={b}, c={c}"):
            mcnemar_always_valid(b, c)
