"""Rank view of a canary comparison: Mann-Whitney U and the Hodges-Lehmann shift.

This is the comparison Kayenta (Spinnaker's canary judge) makes for a metric: is the canary
stochastically greater or less than the control, and by how much is it shifted? It is reported
beside the gate's decision and never decides anything; the gates are in `compare.py`.

Both arms come as weighted samples, (value, count) pairs: raw values are `[(x, 1) for x in xs]`
and a latency histogram is its bucket midpoints with their counts (`from_histogram`). Nothing is
expanded into single observations; the work is on distinct values only, so a million requests in
a few hundred buckets cost no more than a few hundred values.

- U of the canary is the number of (canary, control) pairs with canary > control, a tie counting
  one half (Mann & Whitney 1947, "On a test of whether one of two random variables is
  stochastically larger than the other").
- z is its normal approximation: mean N1 N2 / 2 and variance
  N1 N2 / 12 * ((N + 1) - sum(t^3 - t) / (N (N - 1))), t the sizes of the groups of tied values
  over both arms, N = N1 + N2, with a continuity correction of 0.5 toward the mean. These are
  R's `wilcox.test(exact = FALSE, correct = TRUE)` and
  `scipy.stats.mannwhitneyu(method="asymptotic")`.
- shift is the Hodges-Lehmann estimate (Hodges & Lehmann 1963, "Estimates of location based on
  rank tests"): the median of the N1 N2 pairwise differences canary - control.
- ci is the distribution-free interval of Moses (1965) and Bauer (1972, "Constructing confidence
  sets using rank statistics"): two order statistics of those same differences, at ranks taken
  from the normal approximation of U (see `mann_whitney`). R's `wilcox.test(conf.int = TRUE)`,
  which Kayenta ports, inverts the tie- and continuity-corrected test by root finding instead;
  both end at pairwise differences, and on Kayenta's own tie-out data they agree to R's
  root-finding tolerance, but with heavy ties R's interval can be the narrower one.

Order statistics of the differences are found by sorting the distinct-value differences with
their weights (count products). Past `_SORT_LIMIT` distinct pairs (long raw samples) they are
selected without building the differences, pivoting on a weighted median of row medians as in
Johnson & Mizoguchi's selection in X + Y (1978, SIAM J. Comput. 7).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import numpy.typing as npt

from rolloutctl.stats.sufficient import Histogram

__all__ = ["RankResult", "Weighted", "from_histogram", "mann_whitney"]

Weighted = Sequence[tuple[float, int]]

_F64 = npt.NDArray[np.float64]
_I64 = npt.NDArray[np.int64]

# Up to this many distinct (canary, control) value pairs the differences are built and sorted;
# beyond it selecting them in place is faster (about 300 distinct values per arm).
_SORT_LIMIT = 1 << 17


@dataclass(frozen=True)
class RankResult:
    u: float  # Mann-Whitney U of the canary: pairs canary > control, ties counting 1/2
    z: float  # (U - N1 N2 / 2) over its tie-corrected sd, continuity-corrected toward 0
    p_greater: float  # one-sided: the canary is stochastically greater than the control
    p_less: float  # one-sided: the canary is stochastically less
    p_two_sided: float
    shift: float  # Hodges-Lehmann: median of the pairwise differences canary - control
    ci: tuple[float, float]  # two-sided interval of the shift (Moses / Bauer)
    n_control: int
    n_canary: int


def from_histogram(h: Histogram) -> list[tuple[float, int]]:
    """The histogram as a weighted sample: bucket midpoints with their counts, ascending.

    Values in one bucket become ties, so U is exact whenever no control and canary observation
    share a bucket; the shift is then known to the bucket's 1% resolution."""
    return [(Histogram.midpoint(b), c) for b, c in sorted(h.counts.items()) if c > 0]


def mann_whitney(control: Weighted, canary: Weighted, confidence: float = 0.95) -> RankResult:
    """Mann-Whitney U, its p-values and the Hodges-Lehmann shift of canary against control.

    Values that are not finite and non-positive counts are left out. An empty arm gives NaNs
    and p-values of 1; arms whose values are all equal give z = 0 and p-values of 1.

    The interval of the shift: with N1, N2 the arm sizes and z the (1 + confidence) / 2
    normal quantile,

        k = floor(N1 N2 / 2 - z * sqrt(N1 N2 (N1 + N2 + 1) / 12)),  at least 1,

    and the interval runs from the k-th to the (N1 N2 - k + 1)-th smallest of the N1 N2
    pairwise differences (ranks from 1). Rounding k down widens the interval rather than
    narrowing it; so does leaving ties out of the variance, since ties only shrink the true
    one."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie strictly between 0 and 1, not {confidence}")
    a, m = _collapse(control)
    b, n = _collapse(canary)
    n_control, n_canary = int(m.sum()), int(n.sum())
    if n_control == 0 or n_canary == 0:
        return RankResult(
            math.nan,
            math.nan,
            1.0,
            1.0,
            1.0,
            math.nan,
            (math.nan, math.nan),
            n_control,
            n_canary,
        )

    pairs = n_control * n_canary
    total = n_control + n_canary
    u = _u_statistic(a, m, b, n)
    d = u - pairs / 2
    variance = pairs / 12 * ((total + 1) - _tie_term(a, m, b, n) / (total * (total - 1)))
    if variance <= 0:  # a single value over both arms: nothing to rank
        z, p_greater, p_less, p_two_sided = 0.0, 1.0, 1.0, 1.0
    else:
        sd = math.sqrt(variance)
        z = math.copysign(max(abs(d) - 0.5, 0.0), d) / sd
        p_greater = _upper_tail((d - 0.5) / sd)
        p_less = _upper_tail((-d - 0.5) / sd)
        p_two_sided = min(1.0, 2 * _upper_tail(abs(z)))

    z_ci = NormalDist().inv_cdf((1 + confidence) / 2)
    k = max(1, math.floor(pairs / 2 - z_ci * math.sqrt(pairs * (total + 1) / 12)))
    middle = [(pairs + 1) // 2, pairs // 2 + 1]  # one rank twice when pairs is odd
    lo, hi, mid_lo, mid_hi = _order_statistics(a, m, b, n, [k, pairs - k + 1, *middle])
    return RankResult(
        u,
        z,
        p_greater,
        p_less,
        p_two_sided,
        (mid_lo + mid_hi) / 2,
        (lo, hi),
        n_control,
        n_canary,
    )


def _collapse(sample: Weighted) -> tuple[_F64, _F64]:
    """Distinct finite values, ascending, with their total counts."""
    values = np.fromiter((v for v, _ in sample), dtype=np.float64, count=len(sample))
    counts = np.fromiter((c for _, c in sample), dtype=np.float64, count=len(sample))
    keep = np.isfinite(values) & (counts > 0)
    distinct, which = np.unique(values[keep], return_inverse=True)
    totals = np.bincount(which, weights=counts[keep], minlength=len(distinct))
    return distinct, totals.astype(np.float64)


def _u_statistic(a: _F64, m: _F64, b: _F64, n: _F64) -> float:
    below = np.concatenate(([0.0], np.cumsum(m)))  # control weight under each cut
    lt = np.searchsorted(a, b, side="left")
    le = np.searchsorted(a, b, side="right")
    return float(np.dot(n, below[lt] + 0.5 * (below[le] - below[lt])))


def _tie_term(a: _F64, m: _F64, b: _F64, n: _F64) -> float:
    """sum(t^3 - t) over the groups of equal values in both arms together."""
    _, which = np.unique(np.concatenate((a, b)), return_inverse=True)
    t = np.bincount(which, weights=np.concatenate((m, n)))
    return float(np.sum(t**3 - t))


def _upper_tail(x: float) -> float:
    return 0.5 * math.erfc(x / math.sqrt(2))


def _order_statistics(
    a: _F64, m: _F64, b: _F64, n: _F64, ranks: list[int], sort_limit: int = _SORT_LIMIT
) -> list[float]:
    """The rank-th smallest (from 1) of the differences b[j] - a[i], each counted n[j] m[i]
    times."""
    if len(a) * len(b) <= sort_limit:
        diffs = np.subtract.outer(b, a).ravel()
        order = np.argsort(diffs, kind="stable")
        reached = np.cumsum(np.multiply.outer(n, m).ravel()[order])
        at = np.searchsorted(reached, np.asarray(ranks, dtype=np.float64), side="left")
        return [float(x) for x in diffs[order][np.minimum(at, len(order) - 1)]]
    return [_select(a, m, b, n, r) for r in ranks]


def _select(a: _F64, m: _F64, b: _F64, n: _F64, rank: int) -> float:
    """One order statistic of the weighted differences without building them.

    With the control reversed, D[j, i] = b[j] - a_desc[i] ascends along rows and columns
    (rounded subtraction is monotone), so each row keeps a window [lo, hi) of columns that may
    still hold the answer: everything left of it is at most a pivot already found too small,
    everything right of it at least one found too large. The next pivot is the weighted median
    of the windows' middle elements, weighted by window length: at least a quarter of the
    remaining candidates lies on each side of it, and one side is dropped every round."""
    a_desc = a[::-1]
    before = np.concatenate(([0.0], np.cumsum(m[::-1])))  # weight of the first i columns
    lo = np.zeros(len(b), dtype=np.int64)
    hi = np.full(len(b), len(a), dtype=np.int64)
    target = float(rank)
    while True:
        live = np.flatnonzero(lo < hi)
        if live.size == 0:  # only if rank lies outside [1, total weight]
            return math.nan
        b_live, lo_live, hi_live = b[live], lo[live], hi[live]
        middles = b_live - a_desc[(lo_live + hi_live - 1) // 2]
        order = np.argsort(middles, kind="stable")
        reached = np.cumsum((hi_live - lo_live)[order])
        pivot = float(middles[order][np.searchsorted(reached, reached[-1] / 2)])
        # The pivot lies strictly between the pivots that fixed the windows, so each row's
        # count of columns below it falls inside the row's window (an empty window is its own
        # answer).
        lt, le = lo.copy(), lo.copy()
        lt[live] = _columns_below(b_live, a_desc, pivot, lo_live, hi_live, strict=True)
        le[live] = _columns_below(b_live, a_desc, pivot, lo_live, hi_live, strict=False)
        if target <= float(np.dot(n, before[lt])):
            hi = lt
        elif target > float(np.dot(n, before[le])):
            lo = le
        else:
            return pivot


def _columns_below(b: _F64, a_desc: _F64, pivot: float, lo: _I64, hi: _I64, strict: bool) -> _I64:
    """For each row j, how many columns have b[j] - a_desc[i] < pivot (<= pivot if not
    strict), known to lie in [lo[j], hi[j]]: a binary search run on all rows at once."""
    last = len(a_desc) - 1
    for _ in range(int((hi - lo).max()).bit_length()):
        mid = (lo + hi) // 2
        values = b - a_desc[np.minimum(mid, last)]
        below = values < pivot if strict else values <= pivot
        open_ = lo < hi
        lo = np.where(open_ & below, mid + 1, lo)
        hi = np.where(open_ & ~below, mid, hi)
    return lo
