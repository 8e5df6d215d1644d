"""Paired comparisons: the same eval samples run by the baseline and by the candidate.

When both runs answered the same items, only the items on which they disagree carry evidence
about which is better (McNemar 1947, "Note on the sampling error of the difference between
correlated proportions or percentages", Psychometrika 12:153-157). With

- b: items that passed on the baseline and fail on the candidate (new failures),
- c: items that failed on the baseline and pass on the candidate (fixes),

under "neither run is better" each of the b + c discordant items is equally likely to fall
either way, so b ~ Binomial(b + c, 1/2) exactly. The exact test uses that binomial directly
instead of the chi-square approximation, which is poor for the handful of discordant items a
critical category usually has.

- `mcnemar_exact(b, c, "greater")`: one-sided toward harm, P(B >= b): small when the candidate
  breaks more items than it fixes;
- `mcnemar_exact(b, c, "two-sided")`: min(1, 2 P(B <= min(b, c))), as statsmodels'
  `mcnemar(table, exact=True)` and R's `binom.test(b, b + c)`; symmetric in b and c.

No discordant items (b + c = 0) means no evidence either way: p = 1.0. Negative counts are a
bug in the caller and raise ValueError.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from scipy.stats import binom

Alternative = Literal["greater", "less", "two-sided"]


def mcnemar_exact(b: int, c: int, alternative: Alternative = "greater") -> float:
    """Exact McNemar p-value from the discordant counts b (new failures) and c (fixes)."""
    if b < 0 or c < 0:
        raise ValueError(f"discordant counts must be >= 0, got b={b}, c={c}")
    n = b + c
    if n == 0:
        return 1.0
    if alternative == "greater":
        p = float(binom.sf(b - 1, n, 0.5))
    elif alternative == "less":
        p = float(binom.cdf(b, n, 0.5))
    elif alternative == "two-sided":
        p = 2.0 * float(binom.cdf(min(b, c), n, 0.5))
    else:
        raise ValueError(f"alternative must be greater, less or two-sided, got {alternative!r}")
    return min(1.0, max(0.0, p))


@dataclass(frozen=True)
class McNemar:
    """The discordant counts of a paired comparison and both exact p-values."""

    new_failures: int  # b: passed on the baseline, fail on the candidate
    fixed: int  # c: failed on the baseline, pass on the candidate
    p_worse: float  # one-sided: is the candidate worse?
    p_two_sided: float

    @property
    def discordant(self) -> int:
        return self.new_failures + self.fixed


def mcnemar(new_failures: int, fixed: int) -> McNemar:
    return McNemar(
        new_failures,
        fixed,
        mcnemar_exact(new_failures, fixed, "greater"),
        mcnemar_exact(new_failures, fixed, "two-sided"),
    )


def discordant_counts(pairs: list[tuple[bool, bool]]) -> tuple[int, int]:
    """(b, c) from (baseline passed, candidate passed) pairs."""
    b = sum(1 for base, cand in pairs if base and not cand)
    c = sum(1 for base, cand in pairs if cand and not base)
    return b, c
