"""stats.exact.rare_event_test against an independent computation with scipy.

The reference follows the module's definition (Lehmann & Romano §4.5 for the null share; a
Beta(2 p1, 2 (1 - p1)) prior on the canary's share of events, p1 = min(0.99, 2 p0),
truncated to p >= p0): E = [int_p0^1 p^(a+x-1) (1-p)^(b+k-x-1) dp / int_p0^1 p^(a-1)
(1-p)^(b-1) dp] / [p0^x (1-p0)^(k-x)], integrated numerically by scipy.integrate.quad
(algebraic weight for the end-point singularities) instead of the incomplete Beta functions
the code uses, and p = min(1, 1/E)."""

from __future__ import annotations

import math

import pytest
from scipy import integrate, optimize

from rolloutctl.stats import exact
from rolloutctl.stats.compare import MarginSpec, compare_rare_events
from rolloutctl.stats.sufficient import Proportion


def null_share(share: float, ratio: float) -> float:
    """The largest canary share of events when its rate is `ratio` times the control's."""
    return share * ratio / (share * ratio + 1 - share)


def reference_e_value(x: int, k: int, p0: float) -> float:
    p1 = min(0.99, 2 * p0)
    a, b = 2 * p1, 2 * (1 - p1)

    def upper(alpha_exp: float, beta_exp: float) -> float:
        # int_p0^1 p^alpha_exp (1-p)^beta_exp dp, the (1-p) factor as quad's weight
        value, _ = integrate.quad(
            lambda p: p**alpha_exp, p0, 1, weight="alg", wvar=(0, beta_exp), epsrel=1e-12
        )
        return value

    mixed = upper(a + x - 1, b + k - x - 1) / upper(a - 1, b - 1)
    return mixed / (p0**x * (1 - p0) ** (k - x))


# (control, canary, relative margin, worse higher, canary share p0 by hand)
CASES = [
    # share 1000 / 20000 = 0.05; ratio 1: p0 = 0.05
    ((19_000, 10), (1_000, 6), 0.0, True, 0.05),
    # share 2400 / 25200 = 2/21; ratio 1.5: p0 = (3/21) / (3/21 + 19/21) = 3/22
    ((22_800, 11), (2_400, 12), 0.5, True, 3 / 22),
    # fewer canary events is worse: the control's share 0.75 against ratio 1 / (1 - 0.2)
    # = 1.25: p0 = 0.9375 / (0.9375 + 0.25) = 15/19, x = the control's 60 of 65 events
    ((15_000, 60), (5_000, 5), 0.2, False, 15 / 19),
    # share 0.05, 3 of 13 canary events: weak evidence, p well above alpha
    ((19_000, 10), (1_000, 3), 0.0, True, 0.05),
]


@pytest.mark.parametrize(("control", "canary", "relative", "higher", "p0"), CASES)
def test_rare_event_test_matches_the_scipy_reference(
    control: tuple[int, int],
    canary: tuple[int, int],
    relative: float,
    higher: bool,
    p0: float,
) -> None:
    share = canary[0] / (canary[0] + control[0])
    expected_ratio = 1 + relative if higher else 1 / (1 - relative)
    own_share = share if higher else 1 - share
    assert null_share(own_share, expected_ratio) == pytest.approx(p0, rel=1e-12)
    x, k = (canary[1] if higher else control[1]), control[1] + canary[1]
    e = reference_e_value(x, k, p0)

    result = exact.rare_event_test(
        Proportion(*control),
        Proportion(*canary),
        relative=relative,
        alpha=0.05,
        worse_higher=higher,
    )
    assert result.null_share == pytest.approx(p0, rel=1e-12)
    assert result.ratio == pytest.approx(expected_ratio, rel=1e-12)
    assert result.e_value == pytest.approx(e, rel=1e-7)
    assert result.p_value == pytest.approx(min(1.0, 1 / e), rel=1e-7)


def test_reference_values_written_out() -> None:
    """The first two cases' numbers, from reference_e_value above (scipy 1.x quad)."""
    a = exact.rare_event_test(
        Proportion(19_000, 10), Proportion(1_000, 6), relative=0.0, alpha=0.05
    )
    assert (a.e_value, a.p_value) == pytest.approx((806.8758833, 0.0012393480), rel=1e-7)
    b = exact.rare_event_test(
        Proportion(22_800, 11), Proportion(2_400, 12), relative=0.5, alpha=0.05
    )
    assert (b.e_value, b.p_value) == pytest.approx((4369.887595, 0.00022883884), rel=1e-7)


def test_the_p_value_does_not_depend_on_alpha() -> None:
    """Always-valid p: alpha decides what p means, never its value."""
    control, canary = Proportion(22_800, 11), Proportion(2_400, 12)
    values = {
        exact.rare_event_test(control, canary, relative=0.5, alpha=alpha).p_value
        for alpha in (0.1, 0.05, 0.025, 0.05 / 18, 1e-4)
    }
    assert len(values) == 1


def test_no_evidence_and_an_unbounded_margin_give_p_one() -> None:
    # Fewer canary events than its share: E < 1, so p = 1.
    low = exact.rare_event_test(
        Proportion(19_000, 20), Proportion(1_000, 0), relative=0.0, alpha=0.05
    )
    assert low.p_value == 1.0 and low.e_value < 1
    # Harm is fewer events, relative margin 100%: any rate is allowed.
    free = exact.rare_event_test(
        Proportion(5_000, 40), Proportion(5_000, 0), relative=1.0, alpha=0.05, worse_higher=False
    )
    assert (free.p_value, free.null_share, free.ratio) == (1.0, 1.0, math.inf)


def test_the_intervals_lower_end_inverts_the_exact_test() -> None:
    """Unsafe answers: 12 of 2,400 canary against 11 of 22,800 control, relative margin 50%,
    alpha 0.05 / 18. The interval's lower end is the largest relative increase r still
    rejected at alpha: reference_e_value(12, 23, p0(r)) = 18 / 0.05, solved by brentq."""
    control, canary, alpha = Proportion(22_800, 11), Proportion(2_400, 12), 0.05 / 18
    share = 2_400 / 25_200

    def log_excess(r: float) -> float:
        return math.log(reference_e_value(12, 23, null_share(share, 1 + r))) + math.log(alpha)

    bound = optimize.brentq(log_excess, 0.5, 9.0, xtol=1e-10)
    result = compare_rare_events(control, canary, MarginSpec(0.5, True), "higher", alpha)
    assert result.verdict == "fail"
    assert result.p_fail == pytest.approx(min(1.0, 1 / reference_e_value(12, 23, 3 / 22)))
    assert result.ci[0] == pytest.approx(bound, rel=1e-4)
    assert result.ci[0] > 0.5  # beyond the margin, as the verdict says


def reference_null_max(control: Proportion, canary: Proportion, d: float) -> float:
    """The largest log likelihood with p_canary <= p_control + d, by scipy's bounded scalar
    search along the edge p_canary = p_control + d (when the arms' own rates are outside)."""
    xc, nc, xt, nt = control.events, control.n, canary.events, canary.n
    if xt / nt <= xc / nc + d:
        return exact._log_lik(xc, nc, xc / nc) + exact._log_lik(xt, nt, xt / nt)

    def minus(q: float) -> float:
        return -(exact._log_lik(xc, nc, q) + exact._log_lik(xt, nt, q + d))

    low, high = max(0.0, -d) + 1e-12, min(1.0, 1.0 - d) - 1e-12
    found = optimize.minimize_scalar(
        minus, bounds=(low, high), method="bounded", options={"xatol": 1e-14}
    )
    return -float(found.fun)


@pytest.mark.parametrize(
    ("xc", "xt", "d"),
    [
        (26, 6, 0.0002),  # Newton converged, then a step too small to move q jumped away
        (26, 6, 0.0001),
        (0, 5, 0.0005),
        (40, 12, 0.001),
        (3, 30, 0.002),
        (500, 60, 0.0003),
    ],
)
def test_the_null_maximum_is_the_maximum(xc: int, xt: int, d: float) -> None:
    control, canary = Proportion(50_000, xc), Proportion(3_000, xt)
    got = exact._log_null_max(control, canary, d)
    assert got == pytest.approx(reference_null_max(control, canary, d), abs=1e-6)
