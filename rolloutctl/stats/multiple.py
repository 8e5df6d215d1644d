"""Many comparisons at once: metrics × segments.

- Holm (1979) for comparisons that veto (deciding metrics overall, critical metrics in
  critical segments): the chance of any false rollback stays under alpha. It needs no
  independence and is valid on always-valid p-values, so it holds over every look too.
  With weights (Holm 1979, section 5), a comparison of weight w starts at alpha * w / W
  instead of alpha / m: the playbook's `weight:` gives the metrics that must catch harm
  fastest more of alpha, at the others' expense, with the same family-wise guarantee.
- Benjamini-Hochberg (1995) for diagnostic segments, which are reported but never veto:
  it controls the share of flagged cells that are false, which is what a reader of a
  segment heat map needs.
"""

from __future__ import annotations

from collections.abc import Sequence


def holm(
    p_values: Sequence[float], alpha: float, weights: Sequence[float] | None = None
) -> tuple[list[bool], list[float]]:
    """Which hypotheses Holm's step-down rejects at family level alpha, and the adjusted
    p-values (reject exactly when adjusted <= alpha). With positive `weights`, the weighted
    step-down: in the order of p / w, each is compared with alpha * w / (the weight of those
    not yet rejected); equal weights give the plain procedure."""
    m = len(p_values)
    w = [1.0] * m if weights is None else [float(x) for x in weights]
    order = sorted(range(m), key=lambda i: p_values[i] / w[i])
    remaining = sum(w)
    adjusted = [1.0] * m
    running = 0.0
    for i in order:
        running = max(running, min(1.0, remaining * p_values[i] / w[i]))
        adjusted[i] = running
        remaining -= w[i]
    return [a <= alpha for a in adjusted], adjusted


def benjamini_hochberg(p_values: Sequence[float]) -> list[float]:
    """BH-adjusted p-values (q-values): flag the cells with q <= the chosen rate."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i], reverse=True)
    adjusted = [1.0] * m
    running = 1.0
    for position, i in enumerate(order):
        rank = m - position  # 1-based rank from the smallest
        running = min(running, p_values[i] * m / rank)
        adjusted[i] = min(1.0, running)
    return adjusted
