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

An absolute margin d (canary rate <= control rate + d) becomes the ratio 1 + d / L, where L
is a time-uniform lower confidence bound of the control's rate (a conjugate beta-binomial
confidence sequence, Robbins 1970) at half of alpha; the test then runs at the other half.
With no control events L is 0 and an absolute margin cannot be tested this way: the
comparison says so and stays inconclusive.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy import special

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


def rate_lower_bound(p: Proportion, alpha: float) -> float:
    """Time-uniform lower confidence bound of a rate: the smallest q whose beta-binomial
    mixture martingale (Jeffreys prior) stays under 1/alpha."""
    x, n = p.events, p.n
    if x == 0 or n == 0:
        return 0.0
    log_mix = float(special.betaln(0.5 + x, 0.5 + n - x) - special.betaln(0.5, 0.5))
    target = -math.log(alpha)

    def log_m(q: float) -> float:
        return log_mix - x * math.log(q) - (n - x) * math.log1p(-q)

    hi = x / n
    if log_m(hi) >= target:
        return hi
    lo = 1e-300
    for _ in range(200):  # bisection on a log scale
        mid = math.sqrt(lo * hi)
        if log_m(mid) >= target:
            lo = mid
        else:
            hi = mid
        if hi / lo < 1 + 1e-9:
            break
    return hi


def rare_event_test(
    control: Proportion,
    canary: Proportion,
    *,
    relative: float | None,
    absolute: float | None,
    alpha: float,
    worse_higher: bool = True,
) -> ExactResult:
    """Always-valid p-value that the canary's event rate is worse than the margin allows."""
    if control.n == 0 or canary.n == 0:
        return ExactResult(1.0, 1.0, math.nan, math.nan, "no requests in one arm")
    share = canary.n / (canary.n + control.n)
    x, k = canary.events, canary.events + control.events
    test_alpha = alpha
    if not worse_higher:
        # Harm is fewer canary events: test the control's share against the inverse ratio.
        ratio = 1 / (1 - relative) if relative is not None and relative < 1 else math.inf
        if absolute is not None:
            return ExactResult(1.0, 1.0, math.nan, math.nan,
                               "an absolute margin on a falling rare rate is not supported")  # fmt: skip
        share, x = 1 - share, control.events
    elif relative is not None:
        ratio = 1 + relative
    else:
        floor = rate_lower_bound(control, alpha / 2)
        test_alpha = alpha / 2
        if floor <= 0:
            return ExactResult(1.0, 1.0, math.nan, math.inf,
                               "no control events yet: an absolute margin needs a control rate")  # fmt: skip
        ratio = 1 + (absolute or 0.0) / floor
    if not math.isfinite(ratio):
        return ExactResult(1.0, 1.0, 1.0, ratio, "the margin allows any rate")
    p0 = share * ratio / (share * ratio + 1 - share)
    log_e = log_e_value(x, k, p0)
    p = min(1.0, math.exp(-log_e)) if log_e > 0 else 1.0
    # Spend only the test's share of alpha: scale so p <= alpha exactly when E >= 1/test_alpha.
    p = min(1.0, p * alpha / test_alpha)
    e = math.exp(min(log_e, 700.0))
    note = (
        f"exact conditional test on {k} events ({canary.events} canary, {control.events} "
        f"control): canary share {x / k if k else 0:.1%} vs at most {p0:.1%} allowed "
        f"(rate ratio {ratio:.3g}); e-value {e:.3g}"
    )
    return ExactResult(p, e, p0, ratio, note)
