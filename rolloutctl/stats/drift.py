"""Post-launch drift in a segment's mix of values: new query patterns and a shifted mix.

The input is one dimension's mix, as `RequestLogSource.segment_mix` returns it: rows of
(value, baseline count, recent count), the baseline being the control's traffic before the
rollout and the recent window the candidate's traffic now. Two questions are asked of it:

- `new_values`: which values carry a real share of recent traffic but (almost) none of the
  baseline? A new language, a new query category: traffic the change was never judged on.
- `mix_shift`: has the distribution over values moved? A chi-square test of homogeneity of
  the 2 x k table (windows x values), with Cramér's V as the size of the move. With a
  million rows every p-value is tiny, so V (and the top movers) lead, not p.

Pure functions on counts: no I/O, no clock; scipy is imported only where a p-value is needed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

MixRow = tuple[str, int, int]  # (value, baseline rows, recent rows)
OTHER = "(other)"
MIN_EXPECTED = 5.0  # Cochran's rule for the chi-square approximation


@dataclass(frozen=True)
class NewValue:
    value: str
    recent_count: int
    recent_share: float  # recent_count / all recent rows of the dimension
    baseline_count: int


@dataclass(frozen=True)
class Mover:
    value: str
    baseline_share: float
    recent_share: float

    @property
    def change(self) -> float:
        """recent share - baseline share (positive: the value grew)."""
        return self.recent_share - self.baseline_share


@dataclass(frozen=True)
class MixShift:
    chi2: float  # nan when a window has no rows
    dof: int  # pooled values - 1; 0 when there is nothing to compare
    p_value: float  # nan when a window has no rows
    cramers_v: float  # the effect size: lead with it, n makes any shift "significant"
    top_movers: tuple[Mover, ...]  # largest |share change| first, over unpooled values
    n_baseline: int = 0
    n_recent: int = 0
    pooled: tuple[str, ...] = ()  # values pooled into "(other)" for the test

    @property
    def effect(self) -> str:
        """Cohen's (1988, §7.2) labels for w, which equals V for a 2 x k table:
        negligible < 0.1 <= small < 0.3 <= medium < 0.5 <= large."""
        v = self.cramers_v
        if math.isnan(v):
            return "unknown"
        return next(
            label
            for label, edge in (("large", 0.5), ("medium", 0.3), ("small", 0.1), ("negligible", 0))
            if v >= edge
        )


def _merged(mix_rows: Sequence[MixRow]) -> dict[str, tuple[int, int]]:
    """value -> (baseline, recent), duplicates summed, all-zero values dropped."""
    merged: dict[str, tuple[int, int]] = {}
    for value, baseline, recent in mix_rows:
        if baseline < 0 or recent < 0:
            raise ValueError(f"negative count for {value!r}: {baseline}, {recent}")
        b, r = merged.get(value, (0, 0))
        merged[value] = (b + int(baseline), r + int(recent))
    return {v: c for v, c in merged.items() if c != (0, 0)}


def new_values(
    mix_rows: Sequence[MixRow],
    *,
    min_share: float = 0.01,
    min_count: int = 50,
    baseline_max_share: float = 0.001,
) -> list[NewValue]:
    """Values that are new in the recent window, largest first.

    A value v is new when, with r_v, b_v its recent and baseline rows and R, B the windows'
    totals: r_v >= min_count, r_v / R >= min_share and b_v / B <= baseline_max_share.
    An empty baseline (B = 0) gives every value a baseline share of 0, so every value with
    enough recent traffic is new: check that the baseline has rows before trusting this.
    """
    merged = _merged(mix_rows)
    recent_total = sum(r for _, r in merged.values())
    baseline_total = sum(b for b, _ in merged.values())
    found = []
    for value, (b, r) in merged.items():
        share = r / recent_total if recent_total else 0.0
        baseline_share = b / baseline_total if baseline_total else 0.0
        if r >= min_count and share >= min_share and baseline_share <= baseline_max_share:
            found.append(NewValue(value, r, share, b))
    return sorted(found, key=lambda v: (-v.recent_count, v.value))


def _pool(columns: dict[str, tuple[int, int]], threshold: float) -> tuple[list[str], list[str]]:
    """Split values into kept and pooled: pool every value whose column total is under
    `threshold` (its smallest expected count is under MIN_EXPECTED), then, while the pool
    itself is under it, move the smallest kept value into the pool too."""
    order = sorted(columns, key=lambda v: (sum(columns[v]), v))
    pooled = [v for v in order if sum(columns[v]) < threshold]
    kept = [v for v in order if sum(columns[v]) >= threshold]
    while pooled and kept and sum(sum(columns[v]) for v in pooled) < threshold:
        pooled.append(kept.pop(0))
    if len(pooled) == 1 and not kept:  # one value in all: nothing to pool it with
        kept, pooled = pooled, []
    return kept, pooled


def mix_shift(mix_rows: Sequence[MixRow], *, top: int = 5) -> MixShift:
    """Chi-square test of homogeneity of the value mix between the two windows.

    With O_wj the rows of value j in window w (w = baseline, recent), R_w = sum_j O_wj,
    C_j = sum_w O_wj and N = sum R_w, the expected count is E_wj = R_w C_j / N and

        chi2 = sum_wj (O_wj - E_wj)^2 / E_wj,   dof = k - 1,   p = P(chi2_dof > chi2),
        V = sqrt(chi2 / (N (min(2, k) - 1))) = sqrt(chi2 / N)

    (Cramér 1946, §21.9; no Yates correction, as V is defined on the uncorrected statistic).
    Values whose smallest expected count min_w E_wj is under 5 are pooled into "(other)"
    first (Cochran 1954), so k counts pooled columns. One value in all means no shift:
    chi2 = 0, p = 1, V = 0. A window with no rows, or so few rows that everything pools into
    one column, makes the test undefined: chi2, p and V are nan, dof 0 (the movers still
    show both windows' shares, an empty window's as 0).
    top_movers are the `top` values, unpooled, with the largest |recent share - baseline
    share|.
    """
    columns = _merged(mix_rows)
    n_baseline = sum(b for b, _ in columns.values())
    n_recent = sum(r for _, r in columns.values())
    movers = sorted(
        (
            Mover(v, b / n_baseline if n_baseline else 0.0, r / n_recent if n_recent else 0.0)
            for v, (b, r) in columns.items()
        ),
        key=lambda m: (-round(abs(m.change), 12), m.value),  # equal changes: by name
    )[: max(top, 0)]
    if n_baseline == 0 or n_recent == 0:
        nan = math.nan
        return MixShift(nan, 0, nan, nan, tuple(movers), n_baseline, n_recent)
    n = n_baseline + n_recent
    kept, pooled = _pool(columns, MIN_EXPECTED * n / min(n_baseline, n_recent))
    table = [columns[v] for v in kept]
    if pooled:
        table.append((sum(columns[v][0] for v in pooled), sum(columns[v][1] for v in pooled)))
    dof = len(table) - 1
    if dof == 0:  # one value (no shift possible), or too few rows to test any
        chi2, p, v = (0.0, 1.0, 0.0) if len(columns) == 1 else (math.nan,) * 3
        return MixShift(chi2, 0, p, v, tuple(movers), n_baseline, n_recent, tuple(sorted(pooled)))
    chi2 = 0.0
    for b, r in table:
        c = b + r
        for observed, total in ((b, n_baseline), (r, n_recent)):
            expected = total * c / n
            chi2 += (observed - expected) ** 2 / expected
    from scipy.stats import chi2 as chi2_dist  # lazily: fast paths never import scipy

    return MixShift(
        chi2=chi2,
        dof=dof,
        p_value=float(chi2_dist.sf(chi2, dof)),
        cramers_v=math.sqrt(chi2 / n),
        top_movers=tuple(movers),
        n_baseline=n_baseline,
        n_recent=n_recent,
        pooled=tuple(sorted(pooled)),
    )
