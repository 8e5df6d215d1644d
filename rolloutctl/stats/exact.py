"""Rare, severe events (unsafe answers): an exact sequential test conditional on the events.

Normal approximations fail when a segment has a dozen events: the variance estimate is
itself noise, and a confidence sequence built on it needs far more data than the events
carry. Instead, condition on the total number of events K = X_canary + X_control. If the
canary's event rate is at most `ratio` times the control's, and the canary served a share
s of the requests, each event is a canary event with probability at most

    p0 = s * ratio / (s * ratio + 1 - s),

whatever the control's rate (the exact conditional test of two Poisson rates; Lehmann &
Romano, Testing Statistical Hypotheses, §4.5). Events arrive one after another, so the
likelihood ratio of p against p0, mixed over p with a Beta prior truncated to p >= p0, is
a test supermartingale over events (for every p' <= p0 each factor has expectation <= 1).
Its value E is an e-value at every look: Ville's inequality gives P(E ever >= 1/alpha)
<= alpha, and min(1, 1/E) is an always-valid p-value. E depends on (X, K) only, so looking
at cumulative counts is enough.

An absolute margin d (canary rate <= control rate + d) has no such exact form: the control's
rate is a nuisance. `absolute_margin_test` uses universal inference instead (Wasserman,
Ramdas & Balakrishnan 2020, "Universal inference", PNAS 117(29), §6 on its sequential form):
the marginal likelihood of both arms' counts under a prior, divided by the likelihood
maximised over the null set {p_canary <= p_control + d}. The numerator, a Bayes mixture, is a
probability of the whole event sequence; the denominator is at least the likelihood at the
true null parameters, so the ratio is dominated by a test martingale and Ville's inequality
applies at every look. The control's rate is estimated with all of its (usually ten to a
hundred times larger) data instead of through a conservative confidence bound.

The prior only moves power, never validity. It is fixed by the margin alone: for each arm an
equal mixture of Beta(1, 1/m - 1) with means m = d, 2d, 4d and 8d (rare rates near the
margin's scale, with the heavy right tail of shape 1 for anything larger).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from rolloutctl.stats.sufficient import Proportion

_PRIOR_CONCENTRATION = 2.0  # a weak prior ...
_PRIOR_RATIO_STEP = 2.0  # ... centred on twice the margin's ratio


@dataclass(frozen=True)
class ExactResult:
    p_value: float  # always valid, one-sided toward harm
    e_value: float
    null_share: float  # p0: the largest canary share of events allowed by the margin
    ratio: float  # the rate ratio tested (1 + relative margin, or from the absolute one)
    note: str


def _log_upper_beta(a: float, b: float, x: float) -> float:
    """log of the integral of p**(a-1) (1-p)**(b-1) over [x, 1]."""
    from scipy import special  # lazily: a gate that never meets a rare event never pays for it

    tail = float(special.betaincc(a, b, x))
    if tail <= 0.0:
        return -math.inf
    return float(special.betaln(a, b)) + math.log(tail)


def log_e_value(canary_events: int, total_events: int, p0: float) -> float:
    """log E of the truncated-Beta mixture likelihood ratio for "canary share <= p0"."""
    x, k = canary_events, total_events
    if k == 0 or p0 >= 1.0:
        return 0.0
    p1 = min(0.99, p0 * _PRIOR_RATIO_STEP) if p0 > 0 else 0.5
    a, b = p1 * _PRIOR_CONCENTRATION, (1 - p1) * _PRIOR_CONCENTRATION
    mixed = _log_upper_beta(a + x, b + k - x, p0) - _log_upper_beta(a, b, p0)
    null = x * math.log(p0) + (k - x) * math.log1p(-p0) if p0 > 0 else -math.inf
    return mixed - null


def rare_event_test(
    control: Proportion,
    canary: Proportion,
    *,
    relative: float,
    alpha: float,
    worse_higher: bool = True,
) -> ExactResult:
    """Always-valid p-value that the canary's event rate is worse than a relative margin
    allows (absolute margins: `absolute_margin_test`)."""
    if control.n == 0 or canary.n == 0:
        return ExactResult(1.0, 1.0, math.nan, math.nan, "no requests in one arm")
    share = canary.n / (canary.n + control.n)
    x, k = canary.events, canary.events + control.events
    if not worse_higher:
        # Harm is fewer canary events: test the control's share against the inverse ratio.
        ratio = 1 / (1 - relative) if relative < 1 else math.inf
        share, x = 1 - share, control.events
    else:
        ratio = 1 + relative
    if not math.isfinite(ratio):
        return ExactResult(1.0, 1.0, 1.0, ratio, "the margin allows any rate")
    p0 = share * ratio / (share * ratio + 1 - share)
    log_e = log_e_value(x, k, p0)
    p = min(1.0, math.exp(-log_e)) if log_e > 0 else 1.0
    e = math.exp(min(log_e, 700.0))
    note = (
        f"exact conditional test on {k} events ({canary.events} canary, {control.events} "
        f"control): canary share {x / k if k else 0:.1%} vs at most {p0:.1%} allowed "
        f"(rate ratio {ratio:.3g}); e-value {e:.3g}"
    )
    return ExactResult(p, e, p0, ratio, note)


_PRIOR_MEAN_STEPS = (1.0, 2.0, 4.0, 8.0)  # prior means in units of the absolute margin


_SUMMED_FACTORS = 1_000  # below this many, log B(k, b) is summed factor by factor


def _log_beta_int(k: int, b: float) -> float:
    """log B(k, b) for a whole k >= 1: B(k, b) = (k-1)! / (b (b+1) ... (b+k-1)), summed as
    logs while k is small, so nothing is lost when b is millions (lgamma(b) and
    lgamma(b + k) would each be ~10^7 and their difference keep only ~9 digits); past that
    the lgamma difference, whose rounding (~1e-9) is then far below the terms themselves."""
    if k <= _SUMMED_FACTORS:
        return math.lgamma(k) - math.fsum(math.log(b + i) for i in range(k))
    return math.lgamma(k) + math.lgamma(b) - math.lgamma(b + k)


def _log_marginal(events: int, n: int, means: tuple[float, ...]) -> float:
    """log probability of one event sequence with `events` of `n` under the Beta mixture:
    one component is B(1 + events, b + n - events) / B(1, b) with b = 1/m - 1, and
    B(1, b) = 1/b. The standard library is enough (no scipy import for a rare event)."""
    terms = [_log_beta_int(1 + events, 1 / m - 1 + n - events) + math.log(1 / m - 1) for m in means]
    top = max(terms)
    return top + math.log(math.fsum(math.exp(t - top) for t in terms)) - math.log(len(means))


def _log_lik(events: int, n: int, p: float) -> float:
    if p <= 0.0:
        return 0.0 if events == 0 else -math.inf
    if p >= 1.0:
        return 0.0 if events == n else -math.inf
    return events * math.log(p) + (n - events) * math.log1p(-p)


def _log_null_max(control: Proportion, canary: Proportion, d: float) -> float:
    """The largest log likelihood with p_canary <= p_control + d. When the arms' own rates
    are outside that set the maximum lies on its edge p_canary = p_control + d, where the log
    likelihood is concave in p_control: Newton's method on its derivative, kept inside a
    bracket that bisection shrinks when a step would leave it."""
    xc, nc, xt, nt = control.events, control.n, canary.events, canary.n
    pc, pt = xc / nc, xt / nt
    if pt <= pc + d:
        return _log_lik(xc, nc, pc) + _log_lik(xt, nt, pt)

    def slope_and_curvature(q: float) -> tuple[float, float]:
        r = q + d
        slope = curvature = 0.0
        for events, trials, p in ((xc, nc, q), (xt, nt, r)):
            if events:
                slope += events / p
                curvature -= events / (p * p)
            if trials > events:
                slope -= (trials - events) / (1 - p)
                curvature -= (trials - events) / ((1 - p) * (1 - p))
        return slope, curvature

    a, b = max(0.0, -d) + 1e-15, min(1.0, 1.0 - d) - 1e-15
    q = min(max(0.5 * (pc + pt - d), a), b)  # between the two arms' own estimates
    for _ in range(100):
        slope, curvature = slope_and_curvature(q)
        if slope > 0:
            a = q
        else:
            b = q
        step = -slope / curvature if curvature < 0 else math.inf
        if abs(step) < 1e-13 * max(q, 1e-300):
            break  # q is the maximum, to rounding (checked before moving: a step too small
            # to change q would otherwise fail the bracket test and jump to its middle)
        q = q + step if a < q + step < b else 0.5 * (a + b)
        if b - a < 1e-15 + 1e-12 * b:
            break
    return _log_lik(xc, nc, q) + _log_lik(xt, nt, q + d)


@dataclass(frozen=True)
class MarginTest:
    p_value: float  # always valid, of "canary rate <= control rate + margin"
    e_value: float
    lower: float  # always-valid lower bound of canary - control at the given alpha
    note: str


def absolute_margin_test(
    control: Proportion,
    canary: Proportion,
    margin: float,
    alpha: float,
    prior_scale: float | None = None,
) -> MarginTest:
    """Universal-inference e-value that the canary's rate exceeds the control's by more than
    `margin`, and the lower confidence bound of the difference it implies (the largest
    difference still rejected at alpha), so the interval shown is the one the verdict used."""
    if control.n == 0 or canary.n == 0:
        return MarginTest(1.0, 1.0, -math.inf, "no requests in one arm")
    scale = prior_scale or (margin if margin > 0 else 1e-4)  # the playbook's margin
    means = tuple(min(0.5, scale * k) for k in _PRIOR_MEAN_STEPS)
    numerator = _log_marginal(control.events, control.n, means) + _log_marginal(
        canary.events, canary.n, means
    )

    def log_e(d: float) -> float:
        return numerator - _log_null_max(control, canary, d)

    at_margin = log_e(margin)
    target = -math.log(alpha)
    lower = largest_rejected(lambda d: log_e(d) >= target, margin, canary.rate - control.rate)
    e = math.exp(min(at_margin, 700.0))
    note = (
        f"universal-inference test on {canary.events} canary and {control.events} control "
        f"events: e-value {e:.3g} against canary ≤ control + {margin:g} (needs {1 / alpha:.3g})"
    )
    return MarginTest(min(1.0, math.exp(-at_margin)), e, lower, note)


def largest_rejected(rejects: Callable[[float], bool], margin: float, observed: float) -> float:
    """The largest margin whose null is still rejected, by bisection between the playbook's
    margin and the observed difference. Starting from the margin keeps the bound consistent
    with the verdict: above the margin exactly when the test at the margin rejects."""
    if rejects(margin):
        lo, hi = margin, max(observed, margin)
        if rejects(hi):
            return hi
    else:
        lo, hi = min(-0.5, observed, margin), margin
        if not rejects(lo):
            return -math.inf
    tolerance = 1e-5 * max(abs(margin), abs(observed) if math.isfinite(observed) else 0.0)
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if rejects(mid) else (lo, mid)
        if hi - lo <= tolerance:
            break
    return lo
