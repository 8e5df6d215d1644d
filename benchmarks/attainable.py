"""What any valid gate could detect by a given time, in the playbook users write.

`decision_quality.py` measures rolloutctl's gate. This script measures the ceiling every valid
gate lives under: whatever a sequential procedure does, the event "it failed the canary by
time T" is itself a test that uses the data up to T, and its false-alarm rate is at most the
α the procedure gave that comparison. So its chance of detection by T is at most the power of
the most powerful single test at T at that level (Neyman-Pearson). With α = 0.05 split over
26 vetoing comparisons (Holm's first step: 0.05/26, one-sided), and a failure that has to
show the canary worse than the *margin* (the gate's contract), this prints that ceiling for
each regression of the users configuration, at the time its target asks for and at 24 h.

Each bound is computed as favourably as possible for the gate: the control's rate, quantile
or mean is taken as known exactly (the control has 19 times the canary's data), and the test
is the uniformly most powerful one for the statistic (a one-sided z test on the difference,
the sign test for a quantile, the exact Poisson test for a rare count).

Run: python benchmarks/attainable.py
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy import stats as sps

ALPHA, COMPARISONS, SHARE, SEGMENTS = 0.05, 26, 0.05, 10
LEVEL = ALPHA / COMPARISONS  # the share of alpha a single vetoing comparison gets first


@dataclass(frozen=True)
class Ceiling:
    scenario: str
    target: str
    hours: float
    at_target: float  # the most powerful single test's power at the target time
    at_24h: float


def _z_power(distance: float, sd_one: float, n: float, level: float = LEVEL) -> float:
    """Power of a one-sided z test of a mean difference `distance` with per-sample sd."""
    return float(sps.norm.sf(sps.norm.isf(level) - distance / (sd_one / math.sqrt(n))))


def error_rate(hours: float) -> float:
    """1.0% -> 1.5% at 40,000 req/h, absolute margin 0.2 pt: the canary's rate against 1.2%."""
    n = 40_000 * SHARE * hours
    p_null, p_true = 0.010 + 0.002, 0.015
    sd = math.sqrt(p_true * (1 - p_true))
    return _z_power(p_true - p_null, sd, n)


def p95_latency(hours: float) -> float:
    """p95 +15% at 5,000 req/h, relative margin 5%: the sign test of "share above 1.05 x the
    control's p95 is at most 5%". Latency is lognormal(σ 0.55) with 0.4% timeouts at 30 s."""
    sigma, timeouts = 0.55, 0.004
    # The control's p95 of the mixture: 0.4% of requests sit at 30 s (above any p95).
    z95 = sps.norm.isf((0.05 - timeouts) / (1 - timeouts))
    shift = (math.log(1.15) - math.log(1.05)) / sigma
    p_true = timeouts + (1 - timeouts) * float(sps.norm.sf(z95 - shift))
    n = 5_000 * SHARE * hours
    critical = sps.binom.isf(LEVEL, round(n), 0.05)  # reject when count > critical
    return float(sps.binom.sf(critical, round(n), p_true))


def cost(hours: float) -> float:
    """Cost +25% at 5,000 req/h, relative margin 10% on the mean; lognormal(σ 0.8) costs."""
    cv = math.sqrt(math.exp(0.8**2) - 1)
    n = 5_000 * SHARE * hours
    return _z_power(1.25 - 1.10, 1.25 * cv, n)


def unsafe(hours: float) -> float:
    """0.05% -> 0.5% in the health category (a tenth of traffic) at 40,000 req/h, absolute
    margin 0.05 pt: the exact Poisson test of the canary's count against rate 0.1%."""
    n = 40_000 * SHARE * hours / SEGMENTS
    null_mean, true_mean = n * 0.0010, n * 0.0050
    critical = sps.poisson.isf(LEVEL, null_mean)  # reject when count > critical
    return float(sps.poisson.sf(critical, true_mean))


CASES = [
    ("error rate 1.0% -> 1.5% at 40,000/h", "≥ 99%, median ≤ 8 h", 8.0, error_rate),
    ("p95 latency +15% at 5,000/h", "100%, median ≤ 5 h", 5.0, p95_latency),
    ("cost +25% at 5,000/h", "100%, median ≤ 1.5 h", 1.5, cost),
    ("unsafe 0.05% -> 0.5% in health at 40,000/h", "≥ 95%, median ≤ 12 h", 12.0, unsafe),
]


def main() -> None:
    print(f"Ceiling for any valid gate: one-sided level {ALPHA}/{COMPARISONS} = {LEVEL:.5f}")
    print("(a median at the target time needs the ceiling there to be at least 50%)\n")
    header = f"{'regression':46} {'target':24} {'ceiling at target':>18} {'ceiling by 24 h':>16}"
    print(header)
    print("-" * len(header))
    for scenario, target, hours, power in CASES:
        ceiling = Ceiling(scenario, target, hours, power(hours), power(24.0))
        print(
            f"{ceiling.scenario:46} {ceiling.target:24} "
            f"{ceiling.at_target:>11.1%} @{ceiling.hours:g} h {ceiling.at_24h:>16.1%}"
        )


if __name__ == "__main__":
    main()
