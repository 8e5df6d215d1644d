"""Always-valid one-sided bounds and p-values for an asymptotically normal estimate.

A gate looks again and again while data accumulates. The bounds here hold at every look at
once, so the chance that *any* look wrongly shows harm stays under alpha however often the
gate is evaluated.

The method is the asymptotic confidence sequence of Waudby-Smith, Arbour, Sinha, Kennedy &
Ramdas (2023, "Time-uniform central limit theory and asymptotic confidence sequences"),
with Robbins' normal mixture — the family GrowthBook's sequential engine uses — made
one-sided: the mixture over the drift is a half-normal on the harmful side only. For an
estimate with standard error `sd` after `t` observations, write z = (estimate - margin) / sd
toward harm and x = t * rho2. The mixture martingale is

    M = 2 / sqrt(x + 1) * exp(k**2 z**2 / 2) * Phi(k z),    k = sqrt(x / (x + 1)),

and Ville's inequality gives P(M ever >= 1/alpha) <= alpha under "not worse than the
margin". So 1/M is an always-valid p-value, and the bound is where M = 1/alpha.

`rho2` sets where the sequence is tightest: `tune_rho2(alpha, n)` makes it tightest near a
total of n observations (GrowthBook's `sequential_tuning_parameter`), the sample a stage
expects. It must not depend on the outcomes; the gate fixes it per stage.

A single tuning point is slow far before it: a mixture tuned at 120,000 observations needs
z = 5.2 at 6,000 where one tuned there needs 3.85, so a large harm caught early waits hours.
`tune_grid` therefore averages the martingales of four tuning points, n, n/4, n/16 and n/64:
an average of test martingales is one (its mixing measure is the average of the four
half-normals), Ville's inequality still holds, and the boundary stays within about 0.15 of
the best single tuning over that whole range.
"""

from __future__ import annotations

import functools
import math
from statistics import NormalDist

_NORMAL = NormalDist()
_SQRT2 = math.sqrt(2.0)

Rho2 = float | tuple[float, ...]  # one mixture precision, or several averaged
GRID_STEPS = (1, 4, 16, 64)  # tune_grid: tuning points at n / step


def tune_grid(alpha: float, expected_n: int) -> tuple[float, ...]:
    """Mixture precisions tightest near n, n/4, n/16 and n/64 observations, to be averaged."""
    return tuple(tune_rho2(alpha, max(expected_n // step, 1)) for step in GRID_STEPS)


def tune_rho2(alpha: float, expected_n: int) -> float:
    """Mixture precision tightest near `expected_n` total observations (Waudby-Smith et al.
    2023, eq. 2.5; GrowthBook's choice)."""
    log_a = -2 * math.log(alpha)
    return (log_a + math.log(log_a + 1)) / max(expected_n, 1)


def _log_phi(z: float) -> float:
    """log Phi(z), accurate far into the lower tail."""
    if z > -5:
        return math.log(0.5 * math.erfc(-z / _SQRT2))
    # Mills ratio asymptotics: Phi(z) ~ phi(z) / |z| * (1 - 1/z**2 + 3/z**4)
    return (
        -0.5 * z * z - math.log(-z) - 0.5 * math.log(2 * math.pi) + math.log1p(-1 / z**2 + 3 / z**4)
    )


def log_mixture(z: float, n: int, rho2: Rho2) -> float:
    """log of the one-sided mixture martingale at standardized harm z after n observations
    (the average over the precisions when several are given)."""
    if isinstance(rho2, tuple):
        if len(rho2) == 1:
            return log_mixture(z, n, rho2[0])
        logs = [log_mixture(z, n, r) for r in rho2]
        top = max(logs)
        return top + math.log(sum(math.exp(v - top) for v in logs) / len(logs))
    x = n * rho2
    k = math.sqrt(x / (x + 1))
    return math.log(2) - 0.5 * math.log1p(x) + 0.5 * (k * z) ** 2 + _log_phi(k * z)


def p_value(z: float, n: int, rho2: Rho2, fixed: bool = False) -> float:
    """One-sided p-value of "harm <= 0" given standardized harm z: always valid when
    sequential, the ordinary normal tail when `fixed` (one planned look)."""
    if not math.isfinite(z):
        return 1.0 if not z > 0 else 0.0
    if fixed:
        return 1 - _NORMAL.cdf(z)
    if n <= 0:
        return 1.0
    return min(1.0, math.exp(-log_mixture(z, n, rho2)))


@functools.lru_cache(maxsize=4096)  # a look asks it again for every metric with the same n
def critical_z(alpha: float, n: int, rho2: Rho2, fixed: bool = False) -> float:
    """The standardized distance from the estimate to its one-sided bound at level alpha."""
    if fixed:
        return _NORMAL.inv_cdf(1 - alpha)
    if n <= 0:
        return math.inf
    if isinstance(rho2, tuple):
        if len(rho2) == 1:
            return critical_z(alpha, n, rho2[0])
        # The average reaches 1/alpha no sooner than the best member and no later than the
        # best member reaches len/alpha: Newton's method kept inside that bracket.
        lo = min(critical_z(alpha, n, r) for r in rho2)
        hi = min(critical_z(alpha / len(rho2), n, r) for r in rho2)
        return _critical_z_average(-math.log(alpha), n, rho2, lo, hi)
    return _critical_z_one(alpha, n, rho2)


def _critical_z_average(
    target: float, n: int, rho2: tuple[float, ...], lo: float, hi: float
) -> float:
    """Where the log of the averaged martingales reaches `target`, within [lo, hi]."""
    z = 0.5 * (lo + hi)
    for _ in range(60):
        logs = [log_mixture(z, n, r) for r in rho2]
        top = max(logs)
        weights = [math.exp(v - top) for v in logs]
        f = top + math.log(sum(weights) / len(weights)) - target
        if f < 0:
            lo = z
        else:
            hi = z
        slope = sum(w * _dlog_mixture(z, n, r) for w, r in zip(weights, rho2, strict=True))
        slope /= sum(weights)
        step = f / slope if slope > 0 else math.inf
        if abs(step) < 1e-10 * max(1.0, abs(z)):
            break  # converged; checked before moving, as in exact._log_null_max
        z = z - step if lo < z - step < hi else 0.5 * (lo + hi)
        if hi - lo < 1e-12:
            break
    return z


def _dlog_mixture(z: float, n: int, rho2: float) -> float:
    """d/dz of log_mixture for one precision."""
    x = n * rho2
    k2 = x / (x + 1)
    k = math.sqrt(k2)
    kz = k * z
    mills = math.exp(-0.5 * kz * kz - _log_phi(kz)) / math.sqrt(2 * math.pi)
    return k2 * z + k * mills


def _critical_z_one(alpha: float, n: int, rho2: float) -> float:
    x = n * rho2
    k2 = x / (x + 1)
    target = -math.log(alpha)
    # Start from the two-sided boundary at 2 alpha (nearly the one-sided one), then Newton.
    z = math.sqrt(max(2 * math.log(math.sqrt(x + 1) / (2 * alpha)), 1e-12) / k2)
    for _ in range(8):
        f = log_mixture(z, n, rho2) - target
        step = f / _dlog_mixture(z, n, rho2)
        z -= step
        if abs(step) < 1e-10 * max(1.0, abs(z)):
            break
    return z
