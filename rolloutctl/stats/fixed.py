"""Fixed-horizon methods: for an A/B stage analysed once, at its planned end.

None of these holds under repeated looks (checking every few minutes and stopping at the first
significant result inflates the error rate; use the confidence sequence in `compare.py` for
that). Each is the standard small-sample-safe choice for its question:

- `wilson_interval`: the Wilson (1927) score interval of one rate, without continuity
  correction; method 3 of Newcombe (1998a, "Two-sided confidence intervals for the single
  proportion: comparison of seven methods", Stat Med 17:857-872). Unlike the Wald interval it
  never leaves [0, 1] and does not collapse to a point at 0 or n events.
- `newcombe_interval`: Newcombe's hybrid score interval of canary.rate - control.rate, method
  10 of Newcombe (1998b, "Interval estimation for the difference between independent
  proportions: comparison of eleven methods", Stat Med 17:873-890). Each bound combines the
  distances from each rate to its own Wilson bound (square-and-add), so it inherits Wilson's
  behaviour at 0 and n events and stays within [-1, 1].
- `welch`: the difference of means with unequal variances (Welch 1947): standard error
  sqrt(s1^2/n1 + s2^2/n2), Welch-Satterthwaite degrees of freedom, Student t quantile.
- `fisher_exact_greater`: the one-sided Fisher exact test on the 2x2 table of events and
  non-events, conditional on both margins: the upper tail of the hypergeometric distribution
  of the canary's events (as R's `fisher.test(alternative = "greater")`). It needs no large-
  sample approximation, which matters for rare events (a handful of unsafe answers).

Degenerate inputs (an empty arm, fewer than two values for Welch, no variance in either arm, a
confidence outside (0, 1), counts outside [0, n]) give NaN intervals or p = 1.0, never an
exception: "no evidence" is an outcome the gate can report.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from rolloutctl.stats.sufficient import Moments, Proportion

_NAN_INTERVAL = (math.nan, math.nan)


def _counts_valid(p: Proportion) -> bool:
    return p.n > 0 and 0 <= p.events <= p.n


def _two_sided_z(confidence: float) -> float:
    """z(1 - (1 - confidence) / 2), or NaN for a confidence outside (0, 1)."""
    if not 0 < confidence < 1:
        return math.nan
    return statistics.NormalDist().inv_cdf(0.5 + confidence / 2)


def wilson_interval(p: Proportion, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of one rate (no continuity correction)."""
    z = _two_sided_z(confidence)
    if not _counts_valid(p) or math.isnan(z):
        return _NAN_INTERVAL
    n, rate = p.n, p.events / p.n
    z2 = z * z
    denominator = 1 + z2 / n
    centre = (rate + z2 / (2 * n)) / denominator
    half = z * math.sqrt(rate * (1 - rate) / n + z2 / (4 * n * n)) / denominator
    # At 0 or n events one bound is exactly 0 or 1; rounding must not push it past.
    lo = 0.0 if p.events == 0 else max(0.0, centre - half)
    hi = 1.0 if p.events == p.n else min(1.0, centre + half)
    return lo, hi


def newcombe_interval(
    control: Proportion, canary: Proportion, confidence: float = 0.95
) -> tuple[float, float]:
    """Newcombe's hybrid score interval (1998, method 10) of canary.rate - control.rate."""
    l_t, u_t = wilson_interval(canary, confidence)
    l_c, u_c = wilson_interval(control, confidence)
    if math.isnan(l_t) or math.isnan(l_c):
        return _NAN_INTERVAL
    p_t, p_c = canary.rate, control.rate
    d = p_t - p_c
    lo = d - math.hypot(p_t - l_t, u_c - p_c)
    hi = d + math.hypot(u_t - p_t, p_c - l_c)
    return max(-1.0, lo), min(1.0, hi)


@dataclass(frozen=True)
class WelchResult:
    difference: float  # canary.mean - control.mean
    se: float
    df: float  # Welch-Satterthwaite
    ci: tuple[float, float]  # two-sided at `confidence`


def welch(control: Moments, canary: Moments, confidence: float = 0.95) -> WelchResult:
    """Difference of means, unequal variances, with a two-sided t interval."""
    difference = canary.mean - control.mean
    if control.n < 2 or canary.n < 2:
        return WelchResult(difference, math.nan, math.nan, _NAN_INTERVAL)
    v_c = control.variance / control.n
    v_t = canary.variance / canary.n
    se2 = v_c + v_t
    if se2 <= 0:
        return WelchResult(difference, 0.0, math.nan, _NAN_INTERVAL)
    se = math.sqrt(se2)
    df = se2 * se2 / (v_c * v_c / (control.n - 1) + v_t * v_t / (canary.n - 1))
    if not 0 < confidence < 1:
        return WelchResult(difference, se, df, _NAN_INTERVAL)
    from scipy import stats  # lazily: only a fixed-horizon mean needs Student's t

    half = float(stats.t.ppf(0.5 + confidence / 2, df)) * se
    return WelchResult(difference, se, df, (difference - half, difference + half))


def fisher_exact_greater(control: Proportion, canary: Proportion) -> float:
    """One-sided Fisher exact p-value that the canary's rate is higher (odds ratio > 1)."""
    if not (_counts_valid(control) and _counts_valid(canary)):
        return 1.0
    total = control.n + canary.n
    events = control.events + canary.events
    from scipy import stats

    # P(X >= canary.events), X ~ the canary's events when `events` fall at random on `total`.
    p = float(stats.hypergeom.sf(canary.events - 1, total, canary.n, events))
    return min(1.0, max(0.0, p))
