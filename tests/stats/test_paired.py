"""Exact McNemar test on discordant pairs: reference values and invariants."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rolloutctl.stats.paired import discordant_counts, mcnemar, mcnemar_exact

# statsmodels, statsmodels/stats/tests/test_nonparametric.py::test_mcnemar_exact: 2x2 tables
# [[a, b], [c, d]] and their exact two-sided p-values ("vassar college online computation"),
# asserted there to 6 decimals. Only the discordant cells b and c matter.
STATSMODELS_EXACT = [
    ((121, 59), 0.000004),
    ((70, 59), 0.378688),
    ((80, 59), 0.089452),
    ((30, 60), 0.00206),
    ((10, 30), 0.002221),
    ((10, 10), 1.0),
]


@pytest.mark.parametrize(("bc", "p"), STATSMODELS_EXACT)
def test_two_sided_matches_statsmodels_reference(bc: tuple[int, int], p: float) -> None:
    b, c = bc
    assert mcnemar_exact(b, c, "two-sided") == pytest.approx(p, abs=1.5e-6)


def test_one_sided_is_the_binomial_upper_tail() -> None:
    # 8 new failures, 2 fixes: P(B >= 8 | 10, 1/2) = (C(10,8) + C(10,9) + C(10,10)) / 2**10
    assert mcnemar_exact(8, 2) == pytest.approx((45 + 10 + 1) / 1024)
    # ... and toward the other side, P(B <= 2) is the same number
    assert mcnemar_exact(2, 8, "less") == pytest.approx(56 / 1024)
    # one new failure and nothing fixed: a coin flip's worth of evidence
    assert mcnemar_exact(1, 0) == pytest.approx(0.5)
    # all discordant pairs are fixes: the candidate is not shown worse at all
    assert mcnemar_exact(0, 5) == 1.0


def test_no_discordant_pairs_means_no_evidence() -> None:
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(0, 0, "two-sided") == 1.0


def test_negative_counts_are_refused() -> None:
    with pytest.raises(ValueError, match="counts"):
        mcnemar_exact(-1, 3)


def test_result_carries_counts_and_both_p_values() -> None:
    result = mcnemar(121, 59)
    assert (result.new_failures, result.fixed, result.discordant) == (121, 59, 180)
    assert result.p_two_sided == pytest.approx(0.000004, abs=1.5e-6)
    assert result.p_worse == pytest.approx(result.p_two_sided / 2)


def test_discordant_counts_from_pairs() -> None:
    pairs = [(True, False)] * 3 + [(False, True)] + [(True, True)] * 5 + [(False, False)] * 2
    assert discordant_counts(pairs) == (3, 1)


counts = st.integers(min_value=0, max_value=400)


@given(counts, counts)
def test_p_values_are_probabilities(b: int, c: int) -> None:
    for alternative in ("greater", "less", "two-sided"):
        p = mcnemar_exact(b, c, alternative)  # type: ignore[arg-type]
        assert 0.0 <= p <= 1.0 and not math.isnan(p)


@given(counts, counts)
def test_two_sided_is_symmetric_in_the_arms(b: int, c: int) -> None:
    assert mcnemar_exact(b, c, "two-sided") == pytest.approx(mcnemar_exact(c, b, "two-sided"))


@given(counts, counts)
def test_two_sided_is_at_least_each_one_sided_tail_and_at_most_twice_the_smaller(
    b: int, c: int
) -> None:
    greater, less = mcnemar_exact(b, c, "greater"), mcnemar_exact(b, c, "less")
    two = mcnemar_exact(b, c, "two-sided")
    assert two == pytest.approx(min(1.0, 2 * min(greater, less)))


@given(counts, st.integers(min_value=0, max_value=100))
def test_one_more_new_failure_never_makes_the_candidate_look_better(b: int, c: int) -> None:
    assert mcnemar_exact(b + 1, c) <= mcnemar_exact(b, c) + 1e-12
