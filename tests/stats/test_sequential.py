"""Always-valid bounds, the exact rare-event test, and multiple-comparison adjustments."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sps

from rolloutctl.stats import exact, multiple, sequential
from rolloutctl.stats.compare import MarginSpec, compare_proportions, compare_rare_events
from rolloutctl.stats.sufficient import Proportion

RHO2 = sequential.tune_rho2(0.05, 20_000)


# ---------------------------------------------------------------- the one-sided mixture


@pytest.mark.parametrize("n", [50, 1_000, 20_000, 1_000_000])
@pytest.mark.parametrize("alpha", [0.05, 0.001])
def test_bound_and_p_value_agree(n: int, alpha: float) -> None:
    z = sequential.critical_z(alpha, n, RHO2)
    assert sequential.p_value(z, n, RHO2) == pytest.approx(alpha, rel=1e-9)
    # Always-valid bounds are wider than the one-look bound at every n.
    assert z > sps.norm.ppf(1 - alpha)


def test_one_sided_bound_is_tighter_than_the_two_sided_sequence() -> None:
    # GrowthBook's two-sided sequence at alpha spends alpha on both sides; the half-normal
    # mixture spends it on the harmful side only, so its bound is closer.
    n, alpha = 20_000, 0.05
    x = n * RHO2
    two_sided = math.sqrt(2 * (x + 1) / x * math.log(math.sqrt(x + 1) / alpha))
    assert sequential.critical_z(alpha, n, RHO2) < two_sided


def test_fixed_is_the_normal_tail() -> None:
    assert sequential.p_value(1.6448536, 10, RHO2, fixed=True) == pytest.approx(0.05, abs=1e-7)
    assert sequential.critical_z(0.05, 10, RHO2, fixed=True) == pytest.approx(sps.norm.ppf(0.95))


@given(st.floats(-30, 30), st.integers(1, 10**7))
def test_p_value_is_a_probability_and_falls_with_harm(z: float, n: int) -> None:
    p = sequential.p_value(z, n, RHO2)
    assert 0.0 <= p <= 1.0
    assert sequential.p_value(z + 0.5, n, RHO2) <= p


def test_log_phi_is_accurate_in_the_far_tail() -> None:
    for z in (-6.0, -10.0, -30.0):
        assert sequential._log_phi(z) == pytest.approx(sps.norm.logcdf(z), rel=1e-4)


# ---------------------------------------------------------------- rare events


def test_exact_test_is_never_bolder_than_the_one_look_binomial_test() -> None:
    """With one look, the e-value's p is at least the exact conditional binomial p-value
    (scipy.stats.binomtest), as an always-valid p must be."""
    control, canary = Proportion(19_000, 10), Proportion(1_000, 6)
    result = exact.rare_event_test(control, canary, relative=0.0, alpha=0.05)
    share = canary.n / (canary.n + control.n)
    one_look = sps.binomtest(6, 16, share, alternative="greater").pvalue
    assert one_look < 0.001
    assert result.p_value >= one_look
    assert result.p_value < 0.05  # and still decisive: 6 of 16 events where 5% expected


def test_exact_test_keeps_false_alarms_under_alpha_with_tiny_counts() -> None:
    """A/A at 0.05% with 96 looks: the chance of ever failing stays under alpha."""
    rng = np.random.default_rng(11)
    runs, looks, alpha = 600, 96, 0.05
    failed = 0
    for _ in range(runs):
        nt = nc = xt = xc = 0
        for _ in range(looks):
            nt, nc = nt + 50, nc + 950
            xt += rng.binomial(50, 0.0005)
            xc += rng.binomial(950, 0.0005)
            r = exact.rare_event_test(
                Proportion(nc, xc), Proportion(nt, xt), relative=0.0, alpha=alpha
            )
            if r.p_value <= alpha:
                failed += 1
                break
    assert failed / runs <= alpha


def test_exact_test_catches_what_the_normal_sequence_misses() -> None:
    """Unsafe answers 0.05% -> 0.5% in one segment: 12 canary events against 11 control
    events at a 5% split. The exact test fails it; the normal-approximation sequence at the
    same alpha does not yet."""
    control, canary = Proportion(22_800, 11), Proportion(2_400, 12)
    margin = MarginSpec(0.5, True)
    rare = compare_rare_events(control, canary, margin, "higher", 0.05 / 18)
    normal = compare_proportions(control, canary, margin, "higher", 0.05 / 18)
    assert rare.verdict == "fail"
    assert normal.verdict != "fail"


def test_absolute_margin_catches_a_tenfold_rate_in_one_segment() -> None:
    """The case a report once called inconclusive: 34 unsafe of 72,969 in the control, 18 of
    3,818 in the canary (ten times the rate) against a 0.05 pt margin, at the first Holm step
    of 26 vetoing comparisons. Universal inference rejects it, and the interval's lower end
    lies beyond the margin, as the verdict says."""
    control, canary = Proportion(72_969, 34), Proportion(3_818, 18)
    alpha = 0.05 / 26
    result = exact.absolute_margin_test(control, canary, 0.0005, alpha)
    assert result.e_value > 1 / alpha
    assert 0.0005 < result.lower < canary.rate - control.rate
    comp = compare_rare_events(control, canary, MarginSpec(0.0005, False), "higher", alpha)
    assert comp.verdict == "fail" and comp.ci[0] == result.lower


def test_the_mixture_numerator_is_the_beta_binomial_likelihood() -> None:
    """One prior component of the numerator equals scipy's beta-binomial pmf without the
    binomial coefficient (the probability of one sequence rather than of the count)."""
    from scipy.special import comb

    k, n, m = 7, 3_000, 0.002
    ours = exact._log_marginal(k, n, (m,))
    scipys = sps.betabinom.logpmf(k, n, 1, 1 / m - 1) - math.log(comb(n, k, exact=True))
    assert ours == pytest.approx(scipys, rel=1e-9)


def test_the_null_maximum_matches_a_numerical_optimiser() -> None:
    from scipy.optimize import minimize_scalar

    control, canary, d = Proportion(40_000, 20), Proportion(2_000, 9), 0.0005

    def negative(q: float) -> float:
        return -(
            exact._log_lik(control.events, control.n, q)
            + exact._log_lik(canary.events, canary.n, q + d)
        )

    best = minimize_scalar(
        negative, bounds=(1e-9, 0.01), method="bounded", options={"xatol": 1e-13}
    )
    assert exact._log_null_max(control, canary, d) == pytest.approx(-best.fun, abs=1e-7)


@pytest.mark.slow
def test_absolute_margin_test_keeps_false_alarms_under_alpha_on_the_margin() -> None:
    """The canary exactly at control + margin (the null's edge), 96 looks: the chance of
    ever failing stays under alpha."""
    rng = np.random.default_rng(5)
    runs, looks, alpha, d = 300, 96, 0.05, 0.0005
    failed = 0
    for _ in range(runs):
        xc = rng.binomial(950, 0.0005, size=looks).cumsum()
        xt = rng.binomial(50, 0.0005 + d, size=looks).cumsum()
        for k in range(0, looks, 4):
            n = k + 1
            r = exact.absolute_margin_test(
                Proportion(950 * n, int(xc[k])), Proportion(50 * n, int(xt[k])), d, alpha
            )
            if r.p_value <= alpha:
                failed += 1
                break
    assert failed / runs <= alpha


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 30), st.integers(0, 30), st.floats(0.0001, 0.01))
def test_absolute_margin_p_value_falls_as_the_margin_tightens(xc: int, xt: int, d: float) -> None:
    control, canary = Proportion(50_000, xc), Proportion(3_000, xt)
    """With the prior fixed (it comes from the playbook's margin), a tighter null margin is
    rejected at least as readily."""
    loose = exact.absolute_margin_test(control, canary, d * 2, 0.01, prior_scale=d).p_value
    tight = exact.absolute_margin_test(control, canary, d, 0.01, prior_scale=d).p_value
    assert tight <= loose + 1e-12


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 40), st.integers(0, 40), st.floats(0.0001, 0.005))
def test_the_interval_shown_is_the_one_the_verdict_used(xc: int, xt: int, d: float) -> None:
    control, canary = Proportion(60_000, xc), Proportion(3_000, xt)
    comp = compare_rare_events(control, canary, MarginSpec(d, False), "higher", 0.002)
    assert comp.ci[0] is not None
    if math.isclose(comp.ci[0], d, rel_tol=1e-9):
        return  # the interval ends on the margin: the boundary itself, either reading holds
    assert (comp.verdict == "fail") == (comp.ci[0] > d)


@given(st.integers(0, 40), st.integers(0, 400), st.floats(0.001, 0.9))
def test_e_value_grows_with_canary_events(x: int, extra: int, p0: float) -> None:
    k = x + extra
    assert exact.log_e_value(x + 1, k + 1, p0) >= exact.log_e_value(x, k + 1, p0) - 1e-9


# ---------------------------------------------------------------- multiple comparisons


def test_holm_step_down() -> None:
    # Holm (1979): sort p, compare p_(i) with alpha / (m - i + 1), stop at the first miss.
    p = [0.01, 0.04, 0.03, 0.005]
    rejected, adjusted = multiple.holm(p, 0.05)
    assert adjusted == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert rejected == [True, False, False, True]


def test_weighted_holm_by_hand_and_at_the_boundary() -> None:
    """Holm (1979, section 5), weights 3 and 1 (W = 4): in the order of p / w, the first is
    compared with alpha * 3 / 4, the second with alpha * 1 / 1."""
    rejected, adjusted = multiple.holm([0.02, 0.011], 0.05, [3.0, 1.0])
    assert adjusted == pytest.approx([4 * 0.02 / 3, 4 * 0.02 / 3])
    assert rejected == [True, True]
    # Exactly at the level it rejects; just above it does not.
    at, _ = multiple.holm([0.0375, 0.5], 0.05, [3.0, 1.0])
    above, _ = multiple.holm([0.0376, 0.5], 0.05, [3.0, 1.0])
    assert at == [True, False] and above == [False, False]
    # The plain procedure reaches 0.0375 only at alpha / 2 = 0.025: weights moved alpha.
    assert multiple.holm([0.0375, 0.5], 0.05)[0] == [False, False]
    # Equal weights are the plain procedure.
    p = [0.01, 0.04, 0.03, 0.005]
    assert multiple.holm(p, 0.05, [2.0] * 4) == multiple.holm(p, 0.05)


def test_weighted_holm_keeps_the_family_wise_error_under_alpha() -> None:
    rng = np.random.default_rng(2)
    weights = [8.0, 1.0, 1.0, 1.0, 1.0, 0.5]
    rejections = sum(
        any(multiple.holm(list(rng.uniform(size=6)), 0.1, weights)[0]) for _ in range(20_000)
    )
    assert rejections / 20_000 == pytest.approx(0.1, abs=0.008)  # Bonferroni's first step


def test_benjamini_hochberg_matches_scipy() -> None:
    p = [0.001, 0.008, 0.039, 0.041, 0.042, 0.06, 0.074, 0.205, 0.212, 0.216]
    reference = sps.false_discovery_control(p, method="bh")
    assert multiple.benjamini_hochberg(p) == pytest.approx(list(reference))


@given(st.lists(st.floats(0, 1), min_size=1, max_size=30))
def test_adjusted_p_values_are_probabilities_not_below_the_raw_ones(p: list[float]) -> None:
    _, holm = multiple.holm(p, 0.05)
    bh = multiple.benjamini_hochberg(p)
    for raw, h, q in zip(p, holm, bh, strict=True):
        assert raw <= h <= 1.0
        assert raw <= q + 1e-12 and q <= 1.0
        assert q <= h + 1e-12  # BH never stricter than Holm


@pytest.mark.parametrize("n", [100, 5_000, 400_000, 3_000_000])
@pytest.mark.parametrize("alpha", [0.05, 0.01, 0.001])
def test_the_grid_mixtures_critical_z_is_where_their_average_reaches_one_over_alpha(
    n: int, alpha: float
) -> None:
    """Against plain bisection of the averaged martingales' log (no Newton steps): a step
    too small to move z once sent the search to the middle of its bracket (3.341 for
    3.352 at n = 400,000, alpha = 0.05)."""
    grid = sequential.tune_grid(0.05, 20_000)

    def log_average(z: float) -> float:
        logs = [sequential.log_mixture(z, n, r) for r in grid]
        top = max(logs)
        return top + math.log(sum(math.exp(v - top) for v in logs) / len(logs))

    lo, hi = 0.0, 30.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if log_average(mid) < -math.log(alpha) else (lo, mid)
    assert sequential.critical_z(alpha, n, grid) == pytest.approx(lo, rel=1e-9)
