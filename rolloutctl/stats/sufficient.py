"""Sufficient statistics: the only numbers that cross from a metrics source to the stats engine.

Each is a frozen dataclass that pools with `+` (arm totals from segments, windows from
sub-windows), in the manner of GrowthBook's gbstats."""

from __future__ import annotations

import bisect
import itertools
import math
from dataclasses import dataclass, field
from typing import Self

# Quantile metrics travel as log-spaced histograms: bucket b holds values in
# [GAMMA**b, GAMMA**(b+1)); values <= 0 go to ZERO_BUCKET. 1% relative resolution.
GAMMA = 1.01
LOG_GAMMA = math.log(GAMMA)
ZERO_BUCKET = -(10**6)


@dataclass(frozen=True)
class Proportion:
    n: int
    events: int

    @property
    def rate(self) -> float:
        return self.events / self.n if self.n else math.nan

    def __add__(self, other: Proportion) -> Proportion:
        return Proportion(self.n + other.n, self.events + other.events)


@dataclass(frozen=True)
class Moments:
    n: int
    sum: float
    sum_squares: float

    @property
    def mean(self) -> float:
        return self.sum / self.n if self.n else math.nan

    @property
    def variance(self) -> float:
        """Unbiased sample variance (0 for n < 2)."""
        if self.n < 2:
            return 0.0
        return max(0.0, (self.sum_squares - self.sum**2 / self.n) / (self.n - 1))

    def __add__(self, other: Moments) -> Moments:
        return Moments(self.n + other.n, self.sum + other.sum, self.sum_squares + other.sum_squares)


@dataclass(frozen=True)
class BivariateSums:
    """n units that each carry two values x and y: n, and the sums of x, y, x^2, y^2, x y.
    What x and y are belongs to the subclass: numerator and denominator (`RatioMoments`), or
    the control's and the shadow's value of one request (`stats.paired.PairedMoments`)."""

    n: int
    sum_x: float
    sum_y: float
    sum_x2: float
    sum_y2: float
    sum_xy: float

    def __add__(self, other: Self) -> Self:
        return type(self)(
            self.n + other.n,
            self.sum_x + other.sum_x,
            self.sum_y + other.sum_y,
            self.sum_x2 + other.sum_x2,
            self.sum_y2 + other.sum_y2,
            self.sum_xy + other.sum_xy,
        )


@dataclass(frozen=True)
class RatioMoments(BivariateSums):
    """Per-unit sums for a ratio of sums (e.g. cost per completed task): x / y."""

    @property
    def ratio(self) -> float:
        return self.sum_x / self.sum_y if self.sum_y else math.nan


@dataclass(frozen=True)
class Histogram:
    """Counts per log bucket; enough for quantiles and counts above a threshold."""

    counts: dict[int, int] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return sum(self.counts.values())

    def __add__(self, other: Histogram) -> Histogram:
        merged = dict(self.counts)
        for b, c in other.counts.items():
            merged[b] = merged.get(b, 0) + c
        return Histogram(merged)

    @staticmethod
    def bucket_of(value: float) -> int:
        return ZERO_BUCKET if value <= 0 else math.floor(math.log(value) / LOG_GAMMA)

    @staticmethod
    def lower_edge(bucket: int) -> float:
        return 0.0 if bucket == ZERO_BUCKET else GAMMA**bucket

    @staticmethod
    def midpoint(bucket: int) -> float:
        return 0.0 if bucket == ZERO_BUCKET else GAMMA ** (bucket + 0.5)

    def value_at_rank(self, rank: float) -> float:
        """The value of the rank-th smallest observation (1-based, clamped)."""
        total = self.n
        if total == 0:
            return math.nan
        rank = min(max(rank, 1.0), float(total))
        seen = 0
        for b in sorted(self.counts):
            seen += self.counts[b]
            if seen >= rank:
                return self.midpoint(b)
        return self.midpoint(max(self.counts))

    def quantile(self, q: float) -> float:
        return self.value_at_rank(math.ceil(q * self.n))

    def count_above(self, threshold: float) -> int:
        """Observations in buckets lying above the threshold's bucket."""
        cut = self.bucket_of(threshold)
        return sum(c for b, c in self.counts.items() if b > cut)


class Tail:
    """Counts of a histogram beyond a value (above it, or at and below it), by bisection over
    cumulative bucket counts: for callers that ask many times (`count_above` asks once)."""

    def __init__(self, h: Histogram, above: bool) -> None:
        self.buckets = sorted(h.counts)
        self.cumulative = list(itertools.accumulate(h.counts[b] for b in self.buckets))
        self.n, self.above = h.n, above

    def beyond(self, value: float) -> int:
        cut = Histogram.bucket_of(value)
        at_or_below = bisect.bisect_right(self.buckets, cut)
        below = self.cumulative[at_or_below - 1] if at_or_below else 0
        return self.n - below if self.above else below


Stat = Proportion | Moments | RatioMoments | Histogram
