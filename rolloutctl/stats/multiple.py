"""Many comparisons at once: metrics × segments.

- Holm (1979) for comparisons that veto (deciding metrics overall, critical metrics in
  critical segments): the chance of any false rollback stays under alpha. It needs no
  independence and is valid on always-valid p-values, so it holds over every look too.
- Benjamini-Hochberg (1995) for diagnostic segments, which are reported but never veto:
  it controls the share of flagged cells that are false, which is what a reader of a
  segment heat map needs.
"""

from __future__ import annotations

from collections.abc import Sequence


def holm(p_values: Sequence[float], alpha: float) -> tuple[list[bool], list[float]]:
    """Which hypotheses Holm's step-down rejects at family level alpha, and the adjusted
    p-values (reject exactly when adjusted <= alpha)."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [1.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
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
