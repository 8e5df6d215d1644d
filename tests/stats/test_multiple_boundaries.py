"""Holm's step-down at its boundaries: a p-value exactly equal to its threshold is rejected
(Holm 1979: reject H_(i) while p_(i) <= alpha / (m - i + 1)). The values are chosen so that
every product is exact in binary floating point (doubling and halving are exact)."""

from __future__ import annotations

from rolloutctl.stats import multiple


def test_a_p_value_equal_to_the_first_threshold_is_rejected() -> None:
    # m = 2: the first threshold is 0.05 / 2 = 0.025; adjusted 2 * 0.025 = 0.05 exactly.
    rejected, adjusted = multiple.holm([0.025, 0.5], 0.05)
    assert adjusted == [0.05, 0.5]
    assert rejected == [True, False]
    # Just above the threshold: nothing is rejected.
    assert multiple.holm([0.025000001, 0.5], 0.05)[0] == [False, False]


def test_a_p_value_equal_to_a_later_threshold_is_rejected() -> None:
    # Second step compares with alpha / 1: p = 0.05 exactly, after 0.01 (adjusted 0.02).
    rejected, adjusted = multiple.holm([0.05, 0.01], 0.05)
    assert adjusted == [0.05, 0.02]
    assert rejected == [True, True]


def test_a_single_p_value_equal_to_alpha_is_rejected() -> None:
    assert multiple.holm([0.05], 0.05) == ([True], [0.05])


def test_weighted_holm_rejects_at_its_threshold_exactly() -> None:
    # Weights 1, 1, 2 (W = 4): the weight-2 comparison starts at alpha * 2 / 4 = 0.025; its
    # adjusted p is 4 * 0.025 / 2 = 0.05 exactly.
    rejected, adjusted = multiple.holm([0.5, 0.5, 0.025], 0.05, [1.0, 1.0, 2.0])
    assert adjusted[2] == 0.05
    assert rejected == [False, False, True]
