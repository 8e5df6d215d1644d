"""Prometheus histogram buckets as the project's log-bucket histograms.

Each Prometheus bucket's count is spread evenly, in log space, over the project's 1% log
buckets between its lower and upper bound (what `histogram_quantile` does with linear
interpolation, on a log scale); the lowest bucket starts one bucket width (geometric) below
its bound; the `+Inf` bucket sits just above the highest finite bound. Resolution is
therefore the Prometheus bucket layout's."""

from __future__ import annotations

import math

from rolloutctl.stats.sufficient import GAMMA, ZERO_BUCKET, Histogram, Moments


def bound(le: str) -> float:
    """An `le` label's value as a number (ValueError when it is none)."""
    return math.inf if le.strip() in ("+Inf", "Inf", "+inf", "inf") else float(le)


def to_histogram(cumulative: dict[float, float]) -> Histogram:
    """Cumulative Prometheus bucket counts (upper bound -> count) as a log-bucket Histogram.

    Each bucket's count is spread evenly over the log buckets between its lower and upper
    bound (integers, largest remainder first); see the module docstring."""
    bounds = sorted(cumulative)
    counts: dict[int, int] = {}
    finite = [b for b in bounds if math.isfinite(b)]
    previous_total = 0.0
    previous_bound: float | None = None
    for i, upper in enumerate(bounds):
        total = max(cumulative[upper], previous_total)  # extrapolation can break monotonicity
        count = round(total) - round(previous_total)
        previous_total = total
        lower = previous_bound
        previous_bound = upper
        if count <= 0:
            continue
        if not math.isfinite(upper):
            top = finite[-1] if finite else 1.0
            b = Histogram.bucket_of(top) + 1
            counts[b] = counts.get(b, 0) + count
            continue
        if upper <= 0:
            counts[ZERO_BUCKET] = counts.get(ZERO_BUCKET, 0) + count
            continue
        if lower is None or lower <= 0:
            following = [b for b in finite[i + 1 :] if b > upper]
            lower = upper * upper / following[0] if following else upper / GAMMA
        first = Histogram.bucket_of(lower) + 1 if lower > 0 else Histogram.bucket_of(upper)
        last = Histogram.bucket_of(upper)
        # a value equal to the bound `upper` counts in its bucket: bucket_of(upper) holds it
        first = min(first, last)
        span = last - first + 1
        base, extra = divmod(count, span)
        for k in range(span):
            # the remainder goes to evenly spaced sub-buckets
            add = base + (1 if extra and (k * extra) // span != ((k + 1) * extra) // span else 0)
            if add:
                counts[first + k] = counts.get(first + k, 0) + add
    return Histogram(counts)


def moments_of(hist: Histogram) -> Moments:
    s = ss = 0.0
    for b, c in hist.counts.items():
        x = Histogram.midpoint(b)
        s += c * x
        ss += c * x * x
    return Moments(hist.n, s, ss)
