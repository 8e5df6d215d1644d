"""Canary-versus-control comparisons against a non-inferiority margin.

Every comparison asks one question, one-sided toward harm: is the canary worse than the
control by more than the margin? With `worse: higher` the harm is theta > margin, where theta
is canary - control (absolute margin) or canary / control - 1 (relative margin, delta method:
the control's own noise enters the variance; it is never treated as a constant).

Each comparison returns two p-values, both one-sided:
- `p_fail` for "not worse than the margin": small when the canary is shown worse (FAIL);
- `p_pass` for "worse than the margin": small when non-inferiority is shown (PASS);
and the bounds [lo, hi], each one-sided: the bound on the harmful side at `alpha` (it lies
beyond the margin exactly when the verdict is fail), the bound on the safe side at
`alpha_pass` (within the margin exactly when the verdict is pass; `alpha` when not given).

The two levels differ because the two errors are controlled differently. A FAIL by any one
vetoing comparison rolls back, so the gate splits alpha over them (Holm). A PASS needs every
deciding metric's non-inferiority shown at once: an intersection-union test, whose chance of
passing a canary that is worse on any one metric is at most the largest of the single tests'
levels (Berger 1982, "Multiparameter hypothesis testing and acceptance sampling",
Technometrics 24(4)), so each is shown at the full alpha and nothing is split.

- `sequential` (default): always-valid p-values and bounds (`stats.sequential`), so the gate
  can look every few minutes and keep its false-rollback chance under alpha;
- `fixed`: the normal tail, valid for one planned look only (`stats.fixed` has Welch,
  Newcombe and Fisher for the A/B stage's report).

`half_width` is the two-sided confidence sequence exactly as GrowthBook computes it, kept for
comparison in the benchmarks and tests.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from statistics import NormalDist
from typing import Literal

from rolloutctl.stats import exact, sequential
from rolloutctl.stats.sufficient import Histogram, Moments, Proportion, RatioMoments, Tail

Verdict = Literal["pass", "fail", "inconclusive"]
Method = Literal["sequential", "fixed"]
Worse = Literal["higher", "lower"]


@dataclass(frozen=True)
class MarginSpec:
    value: float
    relative: bool


@dataclass(frozen=True)
class Comparison:
    control_value: float
    canary_value: float
    estimate: float  # theta: difference, or relative lift when the margin is relative
    ci: tuple[float, float]
    margin: float  # in theta's units, signed toward harm (negative for worse: lower)
    verdict: Verdict
    method: str
    note: str = ""
    p_fail: float = 1.0  # always-valid (sequential) p-value of "not worse than the margin"
    p_pass: float = 1.0  # ... of "worse than the margin"


DEFAULT_RHO2 = sequential.tune_rho2(0.05, 40_000)


def half_width(variance: float, n_total: int, alpha: float, method: Method, tune_n: int) -> float:
    """Two-sided half-width in GrowthBook's form (Waudby-Smith et al. 2023, eq. 2.4, mixture
    tuned at `tune_n` with the same alpha); `fixed` gives the one-sided Wald width."""
    if variance <= 0 or n_total <= 0:
        return 0.0
    if method == "fixed":
        return NormalDist().inv_cdf(1 - alpha) * math.sqrt(variance)
    scale2 = variance * n_total  # per-observation variance of the estimator's influence
    rho2 = sequential.tune_rho2(alpha, tune_n)
    t = n_total
    width2 = 2 * (t * rho2 + 1) / (t * t * rho2) * math.log(math.sqrt(t * rho2 + 1) / alpha)
    return math.sqrt(scale2 * width2)


def one_sided_width(
    variance: float, n_total: int, alpha: float, method: Method, rho2: sequential.Rho2
) -> float:
    """Distance from the estimate to its one-sided bound at level alpha."""
    if variance <= 0 or n_total <= 0:
        return 0.0
    z = sequential.critical_z(alpha, n_total, rho2, fixed=method == "fixed")
    return z * math.sqrt(variance)


def bound_levels(worse: Worse, alpha: float, alpha_pass: float | None) -> tuple[float, float]:
    """The alphas of the lower and the upper bound: the harmful side at `alpha`, the safe side
    at `alpha_pass`."""
    safe = alpha if alpha_pass is None else alpha_pass
    return (alpha, safe) if worse == "higher" else (safe, alpha)


def decide(
    control_value: float,
    canary_value: float,
    theta: float,
    variance: float,
    n_total: int,
    margin: MarginSpec,
    worse: Worse,
    alpha: float,
    method: Method,
    rho2: sequential.Rho2,
    note: str = "",
    alpha_pass: float | None = None,
) -> Comparison:
    signed_margin = margin.value if worse == "higher" else -margin.value
    if not all(math.isfinite(x) for x in (theta, variance)):
        return _undefined(
            control_value,
            canary_value,
            margin,
            worse,
            method,
            note or "the estimate is undefined (a zero control value under a relative margin?)",
        )
    alpha_lo, alpha_hi = bound_levels(worse, alpha, alpha_pass)
    lo = theta - one_sided_width(variance, n_total, alpha_lo, method, rho2)
    hi = theta + one_sided_width(variance, n_total, alpha_hi, method, rho2)
    p_fail, p_pass = p_values(theta, variance, n_total, signed_margin, worse, method, rho2)
    verdict = _verdict(p_fail, p_pass, alpha, alpha_pass)
    return Comparison(
        control_value,
        canary_value,
        theta,
        (lo, hi),
        signed_margin,
        verdict,
        method,
        note,
        p_fail,
        p_pass,
    )


def p_values(
    theta: float,
    variance: float,
    n_total: int,
    signed_margin: float,
    worse: Worse,
    method: Method,
    rho2: sequential.Rho2,
) -> tuple[float, float]:
    """(p_fail, p_pass) of an asymptotically normal estimate against the margin."""
    harm = (theta - signed_margin) * (1.0 if worse == "higher" else -1.0)  # > 0: worse
    if variance <= 0:  # no spread at all: the estimate is the truth
        return (0.0, 1.0) if harm > 0 else (1.0, 0.0) if harm < 0 else (1.0, 1.0)
    z = harm / math.sqrt(variance)
    fixed = method == "fixed"
    return sequential.p_value(z, n_total, rho2, fixed), sequential.p_value(-z, n_total, rho2, fixed)


def _verdict(p_fail: float, p_pass: float, alpha: float, alpha_pass: float | None) -> Verdict:
    if p_fail <= alpha:
        return "fail"
    return "pass" if p_pass <= (alpha if alpha_pass is None else alpha_pass) else "inconclusive"


def _contrast(
    mean_c: float, var_mean_c: float, mean_t: float, var_mean_t: float, relative: bool
) -> tuple[float, float]:
    """theta and its variance from two independent arm estimates and their variances."""
    if not relative:
        return mean_t - mean_c, var_mean_t + var_mean_c
    if mean_c == 0:
        return math.nan, math.nan
    theta = mean_t / mean_c - 1
    variance = var_mean_t / mean_c**2 + mean_t**2 * var_mean_c / mean_c**4
    return theta, variance


def compare_proportions(
    control: Proportion,
    canary: Proportion,
    margin: MarginSpec,
    worse: Worse,
    alpha: float,
    method: Method = "sequential",
    rho2: sequential.Rho2 = DEFAULT_RHO2,
    alpha_pass: float | None = None,
) -> Comparison:
    """Difference (or ratio) of two rates, with the Agresti-Caffo adjustment (one pseudo-event
    and one pseudo-non-event per arm) so zero counts still give an honest width. With one
    planned look and an absolute margin: Newcombe's hybrid score interval instead."""
    if method == "fixed" and not margin.relative and control.n and canary.n:
        return _newcombe(control, canary, margin, worse, alpha, alpha_pass)
    theta, variance = _rates_contrast(control, canary, margin.relative)
    return decide(
        control.rate,
        canary.rate,
        theta,
        variance,
        control.n + canary.n,
        margin,
        worse,
        alpha,
        method,
        rho2,
        alpha_pass=alpha_pass,
    )


def _rates_contrast(control: Proportion, canary: Proportion, relative: bool) -> tuple[float, float]:
    """theta and its variance for two rates, Agresti-Caffo adjusted."""
    pc = (control.events + 1) / (control.n + 2)
    pt = (canary.events + 1) / (canary.n + 2)
    var_c = pc * (1 - pc) / (control.n + 2)
    var_t = pt * (1 - pt) / (canary.n + 2)
    return _contrast(pc, var_c, pt, var_t, relative)


def _newcombe(
    control: Proportion,
    canary: Proportion,
    margin: MarginSpec,
    worse: Worse,
    alpha: float,
    alpha_pass: float | None,
) -> Comparison:
    """One planned look at a difference of rates: Newcombe's interval at 1 - 2 alpha gives
    the one-sided bounds; the p-values invert it (the smallest alpha whose bound reaches the
    margin, by bisection)."""
    from rolloutctl.stats import fixed  # scipy.stats: a second to import, only for one look

    signed_margin = margin.value if worse == "higher" else -margin.value
    sign = 1.0 if worse == "higher" else -1.0

    def harm_bound(a: float) -> float:  # the bound on the harmful side, minus the margin
        lo, hi = fixed.newcombe_interval(control, canary, 1 - 2 * a)
        return sign * ((lo if worse == "higher" else hi) - signed_margin)

    def safe_bound(a: float) -> float:  # the bound on the safe side, minus the margin
        lo, hi = fixed.newcombe_interval(control, canary, 1 - 2 * a)
        return sign * (signed_margin - (hi if worse == "higher" else lo))

    def invert(distance: Callable[[float], float]) -> float:
        lo_a, hi_a = 1e-15, 0.5 - 1e-12
        if distance(hi_a) <= 0:
            return 1.0
        if distance(lo_a) > 0:
            return lo_a
        for _ in range(60):
            mid = math.sqrt(lo_a * hi_a)
            lo_a, hi_a = (lo_a, mid) if distance(mid) > 0 else (mid, hi_a)
        return hi_a

    p_fail, p_pass = invert(harm_bound), invert(safe_bound)
    alpha_lo, alpha_hi = bound_levels(worse, alpha, alpha_pass)
    lo = fixed.newcombe_interval(control, canary, 1 - 2 * alpha_lo)[0]
    hi = fixed.newcombe_interval(control, canary, 1 - 2 * alpha_hi)[1]
    verdict = _verdict(p_fail, p_pass, alpha, alpha_pass)
    note = ""
    if worse == "higher" and margin.value == 0 and min(control.events, canary.events) < 5:
        note = f"Fisher exact one-sided p = {fixed.fisher_exact_greater(control, canary):.3g}"
    return Comparison(
        control.rate,
        canary.rate,
        canary.rate - control.rate,
        (lo, hi),
        signed_margin,
        verdict,
        "fixed (Newcombe)",
        note,
        p_fail,
        p_pass,
    )


def _welch(
    control: Moments,
    canary: Moments,
    margin: MarginSpec,
    worse: Worse,
    alpha: float,
    alpha_pass: float | None,
) -> Comparison:
    """One planned look at a difference of means: Welch's t with Satterthwaite's df."""
    from scipy.stats import t as t_dist

    from rolloutctl.stats import fixed

    signed_margin = margin.value if worse == "higher" else -margin.value
    alpha_lo, alpha_hi = bound_levels(worse, alpha, alpha_pass)
    result = fixed.welch(control, canary, 1 - 2 * alpha_lo)
    upper = fixed.welch(control, canary, 1 - 2 * alpha_hi).ci[1]
    if not math.isfinite(result.df) or result.se <= 0:
        return _undefined(
            control.mean, canary.mean, margin, worse, "fixed (Welch)", "no spread in either arm"
        )
    harm = (1.0 if worse == "higher" else -1.0) * (result.difference - signed_margin)
    p_fail = float(t_dist.sf(harm / result.se, result.df))
    p_pass = float(t_dist.cdf(harm / result.se, result.df))
    verdict = _verdict(p_fail, p_pass, alpha, alpha_pass)
    return Comparison(
        control.mean,
        canary.mean,
        result.difference,
        (result.ci[0], upper),
        signed_margin,
        verdict,
        "fixed (Welch)",
        f"Welch t, {result.df:.0f} df",
        p_fail,
        p_pass,
    )


def compare_rare_events(
    control: Proportion,
    canary: Proportion,
    margin: MarginSpec,
    worse: Worse,
    alpha: float,
    method: Method = "sequential",
    rho2: sequential.Rho2 = DEFAULT_RHO2,
    alpha_pass: float | None = None,
) -> Comparison:
    """A rare, severe event rate (unsafe answers). FAIL comes from one always-valid test built
    for a handful of events (`stats.exact`): the exact conditional test under a relative
    margin, universal inference under an absolute one. The interval's harmful end is that
    test inverted, so the bound shown lies beyond the margin exactly when the verdict is fail;
    the other end and the PASS side (non-inferiority) come from the proportion comparison."""
    base = compare_proportions(control, canary, margin, worse, alpha, method, rho2, alpha_pass)
    if worse == "lower" and not margin.relative:
        note = "an absolute margin on a falling rare rate is judged by the normal sequence"
        return replace(base, note=note)
    if margin.relative:
        p_fail, note = _conditional_test(control, canary, margin.value, alpha, worse)
        observed = canary.rate / control.rate - 1 if control.events else math.inf
        lower = (
            exact.largest_rejected(
                lambda r: _conditional_test(control, canary, r, alpha, worse)[0] <= alpha,
                margin.value,
                observed,
            )
            if worse == "higher"
            else base.ci[0]
        )
    else:
        result = exact.absolute_margin_test(control, canary, margin.value, alpha)
        p_fail, note, lower = result.p_value, result.note, result.lower
    ci = (lower, base.ci[1]) if worse == "higher" else base.ci
    verdict = _verdict(p_fail, base.p_pass, alpha, alpha_pass)
    return replace(base, ci=ci, verdict=verdict, p_fail=p_fail, note=note)


def _conditional_test(
    control: Proportion, canary: Proportion, relative: float, alpha: float, worse: Worse
) -> tuple[float, str]:
    result = exact.rare_event_test(
        control, canary, relative=relative, alpha=alpha, worse_higher=worse == "higher"
    )
    return result.p_value, result.note


def compare_means(
    control: Moments,
    canary: Moments,
    margin: MarginSpec,
    worse: Worse,
    alpha: float,
    method: Method = "sequential",
    rho2: sequential.Rho2 = DEFAULT_RHO2,
    alpha_pass: float | None = None,
) -> Comparison:
    """Difference (or ratio) of means with unequal variances (Welch's standard error; with
    one planned look and an absolute margin, Welch's t test itself)."""
    if control.n < 2 or canary.n < 2:
        return _undefined(control.mean, canary.mean, margin, worse, method, "fewer than 2 values")
    if method == "fixed" and not margin.relative:
        return _welch(control, canary, margin, worse, alpha, alpha_pass)
    theta, variance = _contrast(
        control.mean,
        control.variance / control.n,
        canary.mean,
        canary.variance / canary.n,
        margin.relative,
    )
    return decide(
        control.mean,
        canary.mean,
        theta,
        variance,
        control.n + canary.n,
        margin,
        worse,
        alpha,
        method,
        rho2,
        alpha_pass=alpha_pass,
    )


def _ratio_and_variance(m: RatioMoments) -> tuple[float, float]:
    """Ratio of sums and its delta-method variance (units are the rows)."""
    n = m.n
    if n < 2 or m.sum_y == 0:
        return math.nan, math.nan
    mx, my = m.sum_x / n, m.sum_y / n
    vx = (m.sum_x2 - n * mx * mx) / (n - 1)
    vy = (m.sum_y2 - n * my * my) / (n - 1)
    cxy = (m.sum_xy - n * mx * my) / (n - 1)
    r = mx / my
    variance = (vx - 2 * r * cxy + r * r * vy) / (my * my * n)
    return r, max(variance, 0.0)


def compare_ratios(
    control: RatioMoments,
    canary: RatioMoments,
    margin: MarginSpec,
    worse: Worse,
    alpha: float,
    method: Method = "sequential",
    rho2: sequential.Rho2 = DEFAULT_RHO2,
    alpha_pass: float | None = None,
) -> Comparison:
    """Ratio-of-sums metrics (cost per completed task) by the delta method."""
    rc, vc = _ratio_and_variance(control)
    rt, vt = _ratio_and_variance(canary)
    if math.isnan(rc) or math.isnan(rt):
        return _undefined(rc, rt, margin, worse, method, "a denominator sums to zero")
    theta, variance = _contrast(rc, vc, rt, vt, margin.relative)
    return decide(
        rc,
        rt,
        theta,
        variance,
        control.n + canary.n,
        margin,
        worse,
        alpha,
        method,
        rho2,
        alpha_pass=alpha_pass,
    )


def compare_quantiles(
    control: Histogram,
    canary: Histogram,
    q: float,
    margin: MarginSpec,
    worse: Worse,
    alpha: float,
    method: Method = "sequential",
    rho2: sequential.Rho2 = DEFAULT_RHO2,
    alpha_pass: float | None = None,
) -> Comparison:
    """A quantile (p95) judged through exceedance shares, which are proportions.

    Let c be the control's q-quantile. If the canary were worse by exactly the margin (every
    value scaled by 1 + r, or shifted by a), the share of canary requests above c would equal
    the control's share above c / (1 + r) (or c - a). The test compares the canary's share
    above c with the control's share above c, against that implied exceedance margin, with
    the proportion machinery above. The interval of the quantile's difference is that test
    inverted over the margin: its harmful end is the largest margin the fail test rejects,
    its safe end the smallest at which the pass test shows non-inferiority, so each end is
    beyond (or within) the playbook's margin exactly when the verdict is fail (or pass).

    The estimate is the difference of the two quantiles read from the histograms, kept inside
    that interval: each quantile is known to a bucket (1%), which with large samples is
    coarser than the interval, and an estimate outside its own interval would contradict the
    verdict. (Centring the estimate by the same inversion, as Hodges-Lehmann does for a rank
    test, stays inside too but was less accurate on simulated latencies: a mean error of
    0.0084 against 0.0078 in the relative difference.)"""
    nc, nt = control.n, canary.n
    if nc < 2 or nt < 2:
        return _undefined(math.nan, math.nan, margin, worse, method, "fewer than 2 values")
    qc, qt = control.quantile(q), canary.quantile(q)
    higher = worse == "higher"
    tail_c, tail_t = Tail(control, higher), Tail(canary, higher)
    above_c, above_t = Proportion(nc, tail_c.beyond(qc)), Proportion(nt, tail_t.beyond(qc))

    def implied(r: float) -> float:
        """The rise in the control's share beyond c if the canary were worse by r."""
        if margin.relative:
            r = min(max(r, -0.999999), 0.999999) if not higher else max(r, -0.999999)
            shifted = qc / (1 + r) if higher else qc / (1 - r)
        else:
            shifted = qc - r if higher else qc + r
        return tail_c.beyond(shifted) / nc - above_c.rate

    def exceedance(r: float) -> Comparison:
        return compare_proportions(
            above_c,
            above_t,
            MarginSpec(implied(r), False),
            "higher",
            alpha,
            method,
            rho2,
            alpha_pass,
        )

    exceed = exceedance(margin.value)
    if method == "sequential":  # the same p-values as `exceedance`, without its bounds
        e_theta, e_var = _rates_contrast(above_c, above_t, relative=False)

        def p_at(r: float) -> tuple[float, float]:
            return p_values(e_theta, e_var, nc + nt, implied(r), "higher", method, rho2)
    else:

        def p_at(r: float) -> tuple[float, float]:
            found = exceedance(r)
            return found.p_fail, found.p_pass

    theta = (qt / qc - 1 if qc else math.nan) if margin.relative else qt - qc
    harm = theta if higher else -theta  # the estimate, counted toward harm
    scale = max(
        abs(margin.value),
        abs(harm) if math.isfinite(harm) else 0.0,
        0.01 if margin.relative else 0.01 * abs(qc),
        1e-12,
    )
    safe_alpha = alpha if alpha_pass is None else alpha_pass
    fail_end = _boundary(lambda r: p_at(r)[0] <= alpha, margin.value, scale)
    pass_end = -_boundary(lambda s: p_at(-s)[1] <= safe_alpha, -margin.value, scale)
    if math.isfinite(harm):
        theta = min(max(harm, fail_end), pass_end) * (1 if higher else -1)
    ci = (fail_end, pass_end) if higher else (-pass_end, -fail_end)
    signed_margin = margin.value if higher else -margin.value
    beyond = "above" if higher else "at or below"
    note = (
        f"share of canary {beyond} the control's p{q * 100:g} ({qc:.4g}): "
        f"{above_t.rate:.2%} vs control {above_c.rate:.2%}, allowed "
        f"+{implied(margin.value):.2%}"
    )
    return Comparison(
        qc,
        qt,
        theta,
        ci,
        signed_margin,
        exceed.verdict,
        method,
        note,
        exceed.p_fail,
        exceed.p_pass,
    )


def _boundary(rejects: Callable[[float], bool], start: float, scale: float) -> float:
    """sup {r : rejects(r)} for a test that rejects every r below some edge: bracketed from
    `start` in steps that double from `scale`, then bisected to 1e-4 of the bracket;
    +-inf when no edge lies within 2^30 scales."""
    step = scale
    if rejects(start):
        lo, hi = start, start + step
        while rejects(hi):
            lo, step = hi, step * 2
            hi = lo + step
            if step > scale * 2**30:
                return math.inf
    else:
        lo, hi = start - step, start
        while not rejects(lo):
            hi, step = lo, step * 2
            lo = hi - step
            if step > scale * 2**30:
                return -math.inf
    width = (hi - lo) * 1e-4
    while hi - lo > width:
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if rejects(mid) else (lo, mid)
    return lo


def _undefined(
    control_value: float,
    canary_value: float,
    margin: MarginSpec,
    worse: Worse,
    method: str,
    note: str,
) -> Comparison:
    signed_margin = margin.value if worse == "higher" else -margin.value
    return Comparison(
        control_value,
        canary_value,
        math.nan,
        (math.nan, math.nan),
        signed_margin,
        "inconclusive",
        method,
        note,
    )


def srm_p_value(control_n: int, canary_n: int, canary_percent: float) -> float:
    """Chi-square goodness of fit (1 df) of the observed split against the configured one."""
    total = control_n + canary_n
    share = canary_percent / 100
    if total == 0 or share <= 0 or share >= 1:
        return 1.0
    expected_t, expected_c = total * share, total * (1 - share)
    stat = (canary_n - expected_t) ** 2 / expected_t + (control_n - expected_c) ** 2 / expected_c
    return math.erfc(math.sqrt(stat / 2))
