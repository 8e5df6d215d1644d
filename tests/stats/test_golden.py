"""Every public statistic on a grid of inputs, each output pinned to a reviewed copy.

The reference tests beside this file check the methods against scipy, statsmodels and the
published formulas on chosen inputs; this table pins their exact outputs (values, intervals,
p-values, verdicts) across both margin kinds, both directions of harm, both methods,
separate pass levels, tiny and large samples, ties and zero counts, so a change to any
number shows as a diff to review. Numbers compare to 1e-9 relative. Rewrite the copy
(tests/data/stats_golden.json) after a reviewed change with

    python -m tests.stats.test_golden
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

import pytest

from rolloutctl.stats import compare, drift, exact, fixed, multiple, paired, rank, sequential
from rolloutctl.stats.compare import MarginSpec
from rolloutctl.stats.paired import PairedMoments, PairedQuantiles
from rolloutctl.stats.sufficient import Histogram, Moments, Proportion, RatioMoments
from tests.golden import differences

GOLDEN = Path(__file__).parent.parent / "data" / "stats_golden.json"
RHO2 = sequential.tune_rho2(0.05, 20_000)
RHO2_GRID = sequential.tune_grid(0.05, 20_000)

ABS = MarginSpec(0.005, relative=False)
REL = MarginSpec(0.10, relative=True)
SETTINGS: list[tuple[str, MarginSpec, str, str, float | None]] = [
    # name, margin, worse, method, alpha_pass
    ("abs-higher-seq", ABS, "higher", "sequential", None),
    ("rel-higher-seq", REL, "higher", "sequential", None),
    ("abs-lower-seq", ABS, "lower", "sequential", None),
    ("rel-lower-fixed", REL, "lower", "fixed", None),
    ("abs-higher-fixed-pass", ABS, "higher", "fixed", 0.2),
    ("rel-higher-seq-pass", REL, "higher", "sequential", 0.2),
]


def _hist(center: float, n: int, spread: int = 30) -> Histogram:
    """n values in a triangle of log buckets around `center`."""
    mid = Histogram.bucket_of(center)
    weights = {mid + k: spread + 1 - abs(k) for k in range(-spread, spread + 1)}
    total = sum(weights.values())
    counts = {b: round(n * w / total) for b, w in weights.items()}
    return Histogram({b: c for b, c in counts.items() if c})


def _paired(n: int, shift: float, seed_scale: float = 1.0) -> PairedMoments:
    """Pairs whose shadow value is the control's plus `shift`, with some noise."""
    sx, sx2 = 1.2 * n, 1.9 * n * seed_scale
    sy = sx + shift * n
    sy2 = sx2 + 2 * shift * sx + (shift * shift + 0.05) * n
    sxy = sx2 + shift * sx
    return PairedMoments(n, sx, sy, sx2, sy2, sxy)


def _binary_pairs(n: int, both: int, only_x: int, only_y: int) -> PairedMoments:
    sx, sy = both + only_x, both + only_y
    return PairedMoments(n, sx, sy, sx, sy, both)


PROPORTIONS = [
    (Proportion(20_000, 200), Proportion(20_000, 260)),
    (Proportion(20_000, 200), Proportion(20_000, 190)),
    (Proportion(3_000, 30), Proportion(2_800, 31)),
    (Proportion(500, 0), Proportion(480, 2)),
    (Proportion(50_000, 48_000), Proportion(50_000, 47_200)),
]
RARE = [
    (Proportion(40_000, 20), Proportion(40_000, 60)),
    (Proportion(40_000, 20), Proportion(2_000, 1)),
    (Proportion(10_000, 0), Proportion(10_000, 0)),
    (Proportion(10_000, 3), Proportion(1_000, 4)),
]
MEANS = [
    (Moments(20_000, 40.0, 0.2), Moments(20_000, 48.0, 0.29)),
    (Moments(20_000, 40.0, 0.2), Moments(20_000, 39.0, 0.19)),
    (Moments(1_500, 3.0, 0.01), Moments(1_400, 3.1, 0.011)),
    (Moments(2, 1.0, 0.5), Moments(2, 1.0, 0.5)),
    (Moments(3, 3.0, 3.0), Moments(3, 3.0, 3.0)),  # no spread in either arm
    (Moments(1, 1.0, 1.0), Moments(500, 400.0, 330.0)),  # fewer than 2 values
]
RATIOS = [
    (
        RatioMoments(10_000, 20.0, 15_000.0, 0.09, 30_000.0, 40.0),
        RatioMoments(10_000, 26.0, 15_100.0, 0.14, 30_500.0, 52.0),
    ),
    (
        RatioMoments(10_000, 20.0, 15_000.0, 0.09, 30_000.0, 40.0),
        RatioMoments(10_000, 20.1, 15_000.0, 0.091, 30_000.0, 40.2),
    ),
    (
        RatioMoments(100, 2.0, 0.0, 0.05, 0.0, 0.0),  # a denominator summing to zero
        RatioMoments(100, 2.0, 150.0, 0.05, 300.0, 4.0),
    ),
]
QUANTILES = [
    (_hist(800.0, 20_000), _hist(880.0, 20_000)),
    (_hist(800.0, 20_000), _hist(790.0, 20_000)),
    (_hist(800.0, 900, spread=10), _hist(1000.0, 950, spread=10)),
    (Histogram({5: 1000}), Histogram({5: 990, 6: 10})),
    (Histogram({5: 1}), Histogram({5: 900, 7: 100})),  # fewer than 2 values
]
PAIRED_QUANTILES = [
    PairedQuantiles(
        4000, 0.95, 0.02, 1500.0, 1600.0, 1400.0, 1620.0, 1480.0, 1730.0, 200, 230, 150
    ),
    PairedQuantiles(4000, 0.5, 0.03, 800.0, 790.0, 760.0, 840.0, 750.0, 830.0, 2000, 1980, 1700),
]
MIX = [
    ("en", 5_000, 5_200),
    ("de", 2_000, 1_000),
    ("fr", 1_500, 1_550),
    ("ja", 3, 400),
    ("pt", 40, 38),
    ("it", 2, 1),
]


def _jsonable(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return _jsonable(asdict(value))
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    return value


def _two_sample(kind: str, cases: list[tuple[Any, Any]], fn: Callable[..., Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for i, (c, t) in enumerate(cases):
        for name, margin, worse, method, alpha_pass in SETTINGS:
            rho2 = RHO2_GRID if name.endswith("pass") else RHO2
            out[f"{kind}/{i}/{name}"] = fn(
                c, t, margin, worse, 0.01, method, rho2, alpha_pass=alpha_pass
            )
    return out


def _quantiles() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for i, (c, t) in enumerate(QUANTILES):
        for q in (0.5, 0.95):
            for name, margin, worse, method, alpha_pass in SETTINGS:
                out[f"quantiles/{i}/q{q}/{name}"] = compare.compare_quantiles(
                    c, t, q, margin, worse, 0.01, method, RHO2, alpha_pass=alpha_pass
                )
    return out


def _paired_results() -> dict[str, Any]:
    out: dict[str, Any] = {}
    cases = {
        "worse": _paired(3000, 0.02),
        "same": _paired(3000, 0.0),
        "better": _paired(3000, -0.02),
        "binary": _binary_pairs(3000, 2500, 40, 90),
        "binary-rare": _binary_pairs(3000, 0, 1, 9),
        "one-pair": PairedMoments(1, 1.0, 1.2, 1.0, 1.44, 1.2),
        "two-pairs": _paired(2, 0.1),
        "three-pairs": _paired(3, 0.1),
        "zero-control": PairedMoments(100, 0.0, 5.0, 0.0, 30.0, 0.0),
    }
    for key, m in cases.items():
        binary = key.startswith("binary")
        for name, margin, worse, method, alpha_pass in SETTINGS:
            for zero in (False, True) if binary else (False,):
                out[f"paired/{key}/{name}/zero{zero}"] = paired.compare_paired(
                    m,
                    margin,
                    worse,
                    0.01,
                    RHO2,
                    binary=binary,
                    zero_tolerance=zero,
                    fixed=method == "fixed",
                    alpha_pass=alpha_pass,
                )
        out[f"paired/{key}/contrast"] = [
            paired.paired_contrast(m, False),
            paired.paired_contrast(m, True),
            paired.ratio_of_sums(m),
            paired.discordant(m, "higher"),
            paired.discordant(m, "lower"),
            paired.agresti_min(m),
        ]
    for i, s in enumerate(PAIRED_QUANTILES):
        for name, margin, worse, method, alpha_pass in SETTINGS:
            out[f"paired_quantiles/{i}/{name}"] = paired.compare_paired_quantiles(
                s, margin, worse, 0.01, RHO2, fixed=method == "fixed", alpha_pass=alpha_pass
            )
        out[f"paired_quantiles/{i}/contrast"] = [
            paired.quantile_contrast(s, False),
            paired.quantile_contrast(s, True),
        ]
    for b, c in ((0, 0), (3, 12), (12, 3), (40, 40), (1, 30)):
        out[f"mcnemar/{b}/{c}"] = [
            paired.mcnemar_exact(b, c),
            paired.mcnemar_exact(b, c, "less"),
            paired.mcnemar_exact(b, c, "two-sided"),
            paired.mcnemar(b, c),
            paired.mcnemar_always_valid(b, c),
        ]
    out["bandwidths"] = [
        [paired.hall_sheather(n, q), paired.pick_bandwidth(n, q), paired.bandwidths(q)]
        for n in (200, 5000)
        for q in (0.5, 0.9, 0.99)
    ]
    return out


def _sequential_results() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for alpha, n in ((0.05, 1000), (0.01, 50_000), (0.001, 200)):
        out[f"tune/{alpha}/{n}"] = [sequential.tune_rho2(alpha, n), sequential.tune_grid(alpha, n)]
    for rho2_name, rho2 in (("one", RHO2), ("grid", RHO2_GRID)):
        for n in (100, 5_000, 400_000):
            out[f"critical_z/{rho2_name}/{n}"] = [
                sequential.critical_z(a, n, rho2, fixed=f)
                for a in (0.05, 0.001)
                for f in (False, True)
            ]
            out[f"p_value/{rho2_name}/{n}"] = [
                [sequential.p_value(z, n, rho2, fixed=f), sequential.log_mixture(z, n, rho2)]
                for z in (-1.0, 0.0, 1.5, 3.0, 6.0)
                for f in (False, True)
            ]
    for variance, n, alpha in ((1e-6, 40_000, 0.05), (0.02, 300, 0.001)):
        out[f"widths/{variance}/{n}"] = [
            compare.half_width(variance, n, alpha, "sequential", 20_000),
            compare.half_width(variance, n, alpha, "fixed", 20_000),
            compare.one_sided_width(variance, n, alpha, "sequential", RHO2_GRID),
            compare.one_sided_width(variance, n, alpha, "fixed", RHO2),
        ]
    out["bound_levels"] = [
        compare.bound_levels("higher", 0.01, None),
        compare.bound_levels("lower", 0.01, 0.2),
    ]
    out["srm"] = [
        compare.srm_p_value(c, t, pct)
        for c, t, pct in ((5000, 5000, 50), (9000, 1100, 10), (9500, 500, 5), (0, 10, 50))
    ]
    return out


def _exact_results() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for i, (c, t) in enumerate(RARE):
        for rel in (0.0, 0.5, 2.0):
            for higher in (True, False):
                out[f"rare_event/{i}/{rel}/{higher}"] = exact.rare_event_test(
                    c, t, relative=rel, alpha=0.01, worse_higher=higher
                )
        for margin in (0.0005, 0.002):
            out[f"absolute_margin/{i}/{margin}"] = exact.absolute_margin_test(c, t, margin, 0.01)
            out[f"absolute_margin/{i}/{margin}/prior"] = exact.absolute_margin_test(
                c, t, margin, 0.01, prior_scale=0.01
            )
    out["log_e_value"] = [
        exact.log_e_value(k, total, p0)
        for k, total, p0 in ((5, 10, 0.5), (9, 10, 0.05), (0, 4, 0.2))
    ]
    return out


def _other_results() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for i, (c, t) in enumerate(QUANTILES):
        out[f"mann_whitney/{i}"] = rank.mann_whitney(rank.from_histogram(c), rank.from_histogram(t))
    out["mann_whitney/ties"] = rank.mann_whitney(
        [(1.0, 50), (2.0, 50)], [(1.0, 40), (2.0, 60)], 0.9
    )
    for i, (c, t) in enumerate(PROPORTIONS):
        out[f"fixed/{i}"] = [
            fixed.wilson_interval(c),
            fixed.wilson_interval(t, 0.9),
            fixed.newcombe_interval(c, t),
            fixed.fisher_exact_greater(c, t),
        ]
    for i, (c, t) in enumerate(MEANS):
        out[f"welch/{i}"] = fixed.welch(c, t, 0.9)
    out["drift/new_values"] = drift.new_values(MIX)
    out["drift/new_values/strict"] = drift.new_values(MIX, min_share=0.05, min_count=500)
    out["drift/mix_shift"] = drift.mix_shift(MIX, top=3)
    out["drift/mix_shift/no_change"] = drift.mix_shift([("a", 100, 100), ("b", 50, 50)])
    ps = [0.001, 0.012, 0.012, 0.04, 0.2, 0.0125]
    out["holm"] = [
        multiple.holm(ps, 0.05),
        multiple.holm(ps, 0.05, [2.0, 1.0, 1.0, 1.0, 0.5, 1.0]),
        multiple.holm([], 0.05),
    ]
    out["bh"] = [multiple.benjamini_hochberg(ps), multiple.benjamini_hochberg([0.5])]
    return out


PARTS: dict[str, Callable[[], dict[str, Any]]] = {
    "proportions": lambda: _two_sample("proportions", PROPORTIONS, compare.compare_proportions),
    "rare": lambda: _two_sample("rare", RARE, compare.compare_rare_events),
    "means": lambda: _two_sample("means", MEANS, compare.compare_means),
    "ratios": lambda: _two_sample("ratios", RATIOS, compare.compare_ratios),
    "quantiles": _quantiles,
    "paired": _paired_results,
    "sequential": _sequential_results,
    "exact": _exact_results,
    "other": _other_results,
}


def _reviewed() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(GOLDEN.read_text())
    return data


@pytest.mark.parametrize("part", list(PARTS))
def test_the_statistics_are_the_reviewed_ones(part: str) -> None:
    """Each part computed inside its own test, so mutation testing, which maps a function to
    the tests that call it, runs exactly the parts a change can affect."""
    computed = _jsonable(PARTS[part]())
    reviewed = {k: v for k, v in _reviewed().items() if k in computed}
    assert sorted(computed) == sorted(reviewed), "a key is missing from the reviewed copy"
    diffs = [d for k in reviewed for d in differences(computed[k], reviewed[k], k)]
    assert not diffs, f"{len(diffs)} differences:\n" + "\n".join(diffs[:30])


def results() -> dict[str, Any]:
    data: dict[str, Any] = {}
    for part in PARTS.values():
        data.update(part())
    return _jsonable(data)


if __name__ == "__main__":
    GOLDEN.write_text(json.dumps(results(), indent=0) + "\n")
    sys.exit(print(f"wrote {GOLDEN}"))
