"""Segment-mix drift: the chi-square test against scipy.stats.chi2_contingency, Cramér's V
against scipy.stats.contingency.association, and new values checked by hand."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sps
from scipy.stats.contingency import association

from rolloutctl.stats.drift import MixRow, Mover, NewValue, mix_shift, new_values


def _table(rows: list[MixRow]) -> np.ndarray:
    """The 2 x k table (baseline, recent) x values that scipy takes."""
    return np.array([[b for _, b, _ in rows], [r for _, _, r in rows]])


def _scipy(rows: list[MixRow]) -> tuple[float, float, int, float]:
    table = _table(rows)
    # correction=False: scipy applies Yates' correction to 2 x 2 tables by default
    chi2, p, dof, _ = sps.chi2_contingency(table, correction=False)
    return float(chi2), float(p), int(dof), float(association(table, method="cramer"))


TABLES: list[list[MixRow]] = [
    # 2 x 2: a language mix that moved a little
    [("en", 5200, 4900), ("hi", 800, 1100)],
    # 2 x 5: categories, one grew, one shrank
    [
        ("chat", 2800, 2500),
        ("coding", 1300, 1500),
        ("health", 1000, 980),
        ("legal", 400, 700),
        ("travel", 500, 320),
    ],
    # the same mix in both windows, at different sizes: chi2 = 0 exactly
    [("a", 100, 300), ("b", 200, 600), ("c", 700, 2100)],
    # huge n, tiny move: p is tiny, V small (why reports lead with V)
    [("a", 500_000, 505_000), ("b", 500_000, 495_000)],
]


@pytest.mark.parametrize("rows", TABLES)
def test_matches_scipy_chi2_contingency(rows: list[MixRow]) -> None:
    chi2, p, dof, v = _scipy(rows)
    got = mix_shift(rows)
    assert got.chi2 == pytest.approx(chi2, rel=1e-12, abs=1e-12)
    assert got.p_value == pytest.approx(p, rel=1e-9, abs=1e-300)
    assert got.dof == dof
    assert got.cramers_v == pytest.approx(v, rel=1e-12, abs=1e-12)
    assert got.pooled == ()
    assert (got.n_baseline, got.n_recent) == (sum(r[1] for r in rows), sum(r[2] for r in rows))


def test_huge_n_tiny_shift_is_significant_but_negligible() -> None:
    got = mix_shift(TABLES[3])
    assert got.p_value < 1e-11
    assert got.cramers_v == pytest.approx(0.005, rel=1e-3)  # sqrt(chi2 / N), chi2 = 50 000
    assert got.effect == "negligible"


def test_hand_checked_2x2() -> None:
    # baseline (90, 10), recent (70, 30): N = 200, column totals 160 and 40, each window
    # 100 rows, so every E is 80 or 20; chi2 = 2 (10^2/80) + 2 (10^2/20) = 12.5
    got = mix_shift([("a", 90, 70), ("b", 10, 30)])
    assert got.chi2 == pytest.approx(12.5)
    assert got.dof == 1
    assert got.p_value == pytest.approx(sps.chi2.sf(12.5, 1))
    assert got.cramers_v == pytest.approx(math.sqrt(12.5 / 200))
    assert got.effect == "small"


def test_small_values_pool_into_other() -> None:
    rows: list[MixRow] = [
        ("a", 400, 380),
        ("b", 300, 330),
        ("c", 290, 270),
        ("rare1", 2, 5),
        ("rare2", 1, 0),
        ("rare3", 0, 3),
    ]
    got = mix_shift(rows)
    # N = 1981, smaller window 988: a value is pooled when its total < 5 * 1981 / 988 = 10.03
    assert got.pooled == ("rare1", "rare2", "rare3")  # together 11 rows: enough
    chi2, p, dof, v = _scipy([*rows[:3], ("(other)", 3, 8)])
    assert (got.chi2, got.dof) == (pytest.approx(chi2, rel=1e-12), dof)
    assert got.p_value == pytest.approx(p, rel=1e-9)
    assert got.cramers_v == pytest.approx(v, rel=1e-12)


def test_pool_too_small_takes_the_next_smallest_value() -> None:
    rows: list[MixRow] = [("a", 500, 480), ("b", 400, 430), ("c", 10, 12), ("tiny", 1, 1)]
    got = mix_shift(rows)
    # N = 1834, smaller window 911: threshold 10.07; only "tiny" (2) is under it, alone
    # too small, so "c" (22) joins it
    assert got.pooled == ("c", "tiny")
    chi2, p, dof, _ = _scipy([*rows[:2], ("(other)", 11, 13)])
    assert got.chi2 == pytest.approx(chi2, rel=1e-12) and got.dof == dof == 2
    assert got.p_value == pytest.approx(p, rel=1e-9)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 3000), st.integers(0, 3000)), min_size=2, max_size=12).filter(
        lambda cells: sum(b for b, _ in cells) > 0 and sum(r for _, r in cells) > 0
    )
)
def test_property_equals_scipy_on_the_pooled_table(cells: list[tuple[int, int]]) -> None:
    rows: list[MixRow] = [(f"v{i}", b, r) for i, (b, r) in enumerate(cells)]
    got = mix_shift(rows)
    kept = [r for r in rows if r[0] not in got.pooled and (r[1], r[2]) != (0, 0)]
    pooled = [r for r in rows if r[0] in got.pooled]
    if pooled:
        kept.append(("(other)", sum(r[1] for r in pooled), sum(r[2] for r in pooled)))
    if len(kept) < 2:
        assert got.dof == 0
        return
    table = _table(kept)
    expected = np.outer(table.sum(axis=1), table.sum(axis=0)) / table.sum()
    assert expected.min() >= 5  # Cochran's rule holds after pooling
    chi2, p, dof, v = _scipy(kept)
    assert got.dof == dof
    assert got.chi2 == pytest.approx(chi2, rel=1e-9, abs=1e-9)
    assert got.p_value == pytest.approx(p, rel=1e-6, abs=1e-12)
    assert got.cramers_v == pytest.approx(v, rel=1e-9, abs=1e-9)
    assert 0.0 <= got.cramers_v <= 1.0 + 1e-12


def test_top_movers_are_the_largest_share_changes() -> None:
    rows: list[MixRow] = [
        ("chat", 500, 400),
        ("coding", 300, 300),
        ("health", 200, 100),
        ("agentic", 0, 200),
    ]
    got = mix_shift(rows, top=3)
    # baseline shares .5 .3 .2 0, recent .4 .3 .1 .2: changes -.1 0 -.1 +.2
    assert [m.value for m in got.top_movers] == ["agentic", "chat", "health"]
    assert got.top_movers[0] == Mover("agentic", 0.0, 0.2)
    assert got.top_movers[1].change == pytest.approx(-0.1)


def test_all_new_values_is_the_largest_shift() -> None:
    got = mix_shift([("a", 100, 0), ("b", 300, 0), ("c", 0, 250), ("d", 0, 50)])
    assert got.chi2 == pytest.approx(700.0)  # complete separation: chi2 = N
    assert got.cramers_v == pytest.approx(1.0)
    assert got.effect == "large"
    assert got.dof == 3 and got.p_value < 1e-100
    found = new_values([("a", 100, 0), ("b", 300, 0), ("c", 0, 250), ("d", 0, 50)])
    assert [v.value for v in found] == ["c", "d"]


def test_single_value_means_no_shift() -> None:
    got = mix_shift([("en", 1000, 10)])
    assert (got.chi2, got.dof, got.p_value, got.cramers_v) == (0.0, 0, 1.0, 0.0)
    assert got.top_movers == (Mover("en", 1.0, 1.0),)


def test_empty_window_makes_the_test_undefined() -> None:
    got = mix_shift([("en", 0, 90), ("hi", 0, 10)])
    assert math.isnan(got.chi2) and math.isnan(got.p_value) and math.isnan(got.cramers_v)
    assert got.dof == 0 and got.effect == "unknown"
    assert got.top_movers == (Mover("en", 0.0, 0.9), Mover("hi", 0.0, 0.1))
    assert math.isnan(mix_shift([]).cramers_v)
    # so few rows that everything pools into one column: no test either
    tiny = mix_shift([("a", 1, 2), ("b", 2, 1)])
    assert tiny.dof == 0 and math.isnan(tiny.p_value)


def test_new_values_by_hand() -> None:
    rows: list[MixRow] = [
        ("en", 9_000, 8_000),
        ("hi", 995, 1_000),
        ("hinglish", 5, 600),  # 5 / 10 000 = 0.05% of the baseline (<= 0.1%): new
        ("ta", 0, 300),  # 3% of recent, none before: new
        ("xx", 0, 40),  # new but under min_count
        ("yy", 0, 60),  # 60 rows, but 0.6% of recent: under min_share
    ]
    # recent total 10 000, baseline total 10 000
    assert new_values(rows) == [
        NewValue("hinglish", 600, 0.06, 5),
        NewValue("ta", 300, 0.03, 0),
    ]
    assert [v.value for v in new_values(rows, baseline_max_share=0.0)] == ["ta"]
    assert [v.value for v in new_values(rows, min_share=0.005, min_count=50)] == [
        "hinglish",
        "ta",
        "yy",
    ]
    assert [v.value for v in new_values(rows, min_count=30, min_share=0.0)] == [
        "hinglish",
        "ta",
        "yy",
        "xx",
    ]


def test_new_values_edge_cases() -> None:
    assert new_values([]) == []
    # empty baseline: every value with enough recent traffic counts as new
    assert [v.value for v in new_values([("a", 0, 900), ("b", 0, 100)])] == ["a", "b"]
    # single value present in both windows: nothing new
    assert new_values([("en", 100, 100)]) == []
    # nothing recent: nothing new
    assert new_values([("en", 100, 0)]) == []
    # duplicate rows for one value are summed
    assert new_values([("n", 0, 30), ("n", 0, 30), ("old", 100, 0)]) == [NewValue("n", 60, 1.0, 0)]
    with pytest.raises(ValueError, match="negative"):
        new_values([("a", -1, 5)])


def test_importing_drift_does_not_import_scipy() -> None:
    code = "import sys, rolloutctl.stats.drift; sys.exit('scipy' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
