"""Shadow-stage analysis: paired statistics against references, and whole analyses of
generated request logs (real Parquet / JSONL files, real DuckDB)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from rolloutctl.errors import InvalidInput
from rolloutctl.metrics.requestlog import RequestLogSource
from rolloutctl.playbook.model import Metric
from rolloutctl.shadow import (
    PairedMoments,
    PairedQuantiles,
    ShadowComparison,
    ShadowResult,
    analyze_shadow,
    compare_paired,
    discordant,
    mcnemar_always_valid,
    paired_contrast,
    pick_bandwidth,
    quantile_contrast,
)
from rolloutctl.stats import sequential
from rolloutctl.stats.compare import MarginSpec

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
END = START + timedelta(hours=2)
CATEGORIES = ("general", "coding", "health", "shopping")


# ================================================================ statistics


def _moments(x: np.ndarray, y: np.ndarray) -> PairedMoments:
    return PairedMoments(len(x), x.sum(), y.sum(), (x * x).sum(), (y * y).sum(), (x * y).sum())


@pytest.mark.parametrize("margin", [0.0, 3.0])
def test_paired_mean_is_the_paired_t_statistic(margin: float) -> None:
    # Fixed-horizon analogue: scipy.stats.ttest_rel (paired t). Same statistic exactly; the
    # one-look p-value here is its normal tail, within a few percent of t with 499 df.
    rng = np.random.default_rng(7)
    x = rng.lognormal(6, 0.5, 500)
    y = x * rng.lognormal(0.01, 0.1, 500)
    m = _moments(x, y)
    theta, var = paired_contrast(m, relative=False)
    ref = scipy_stats.ttest_rel(y - margin, x, alternative="greater")
    assert (theta - margin) / math.sqrt(var) == pytest.approx(ref.statistic, rel=1e-9)
    comp = compare_paired(m, MarginSpec(margin, False), "higher", 0.05, 1.0, fixed=True)
    assert comp.p_fail == pytest.approx(scipy_stats.norm.sf(ref.statistic), rel=1e-9)
    assert comp.p_fail == pytest.approx(ref.pvalue, rel=0.06)
    assert comp.estimate == pytest.approx(np.mean(y - x))


def test_sequential_bound_is_wider_than_one_look() -> None:
    rng = np.random.default_rng(8)
    x = rng.normal(100, 10, 2000)
    m = _moments(x, x + rng.normal(1, 5, 2000))
    rho2 = sequential.tune_rho2(0.05, 2000)
    seq = compare_paired(m, MarginSpec(0, False), "higher", 0.05, rho2)
    one = compare_paired(m, MarginSpec(0, False), "higher", 0.05, rho2, fixed=True)
    assert seq.ci[0] < one.ci[0] < seq.estimate
    assert seq.p_fail > one.p_fail


def test_relative_contrast_by_hand() -> None:
    # x = 1 2 3 4, y = 2 2 5 4: means 2.5, 3.25, R = 1.3; s_x^2 = 5/3, s_y^2 = 2.25, s_xy = 1.5;
    # Var(R) = (2.25 - 2 * 1.3 * 1.5 + 1.69 * 5/3) / (4 * 2.5^2) = 1.1666.../25
    m = _moments(np.array([1.0, 2, 3, 4]), np.array([2.0, 2, 5, 4]))
    theta, var = paired_contrast(m, relative=True)
    assert theta == pytest.approx(0.3)
    assert var == pytest.approx((2.25 - 3.9 + 1.69 * 5 / 3) / 25)
    theta, var = paired_contrast(m, relative=False)  # d = 1 0 2 0: mean 0.75, s^2 = 2.75/3
    assert (theta, var) == pytest.approx((0.75, 2.75 / 3 / 4))


def test_paired_proportion_discordant_pairs_and_mcnemar() -> None:
    # 2x2 table (control, shadow): n11 = 5, n10 = 3, n01 = 7, n00 = 85.
    m = PairedMoments(100, 8, 12, 8, 12, 5)
    assert discordant(m, "higher") == (7, 3)  # b: only the shadow has the event
    assert discordant(m, "lower") == (3, 7)  # event is good: only the shadow lost it
    comp = compare_paired(m, MarginSpec(0.0, False), "higher", 0.05, 1.0, binary=True)
    # Agresti-Min: half a pair per cell, so theta = (12.5 - 8.5) / 102 * ... = 4 / 102
    assert comp.estimate == pytest.approx(4 / 102)
    assert (comp.control_value, comp.canary_value) == (0.08, 0.12)


def test_always_valid_mcnemar_by_hand_and_never_bolder_than_one_look() -> None:
    # b = 10, c = 0: E = 2^11 * integral_{1/2}^1 p^10 dp = (2^11 - 1) / 11
    assert mcnemar_always_valid(10, 0) == pytest.approx(11 / 2047)
    # b = 8, c = 2: E = 2^11 * integral p^8 (1-p)^2 = 2^11 * B(9, 3) * P(Bin(11, .5) <= 8)
    e = 2**11 * math.exp(math.lgamma(9) + math.lgamma(3) - math.lgamma(12))
    e *= scipy_stats.binom.cdf(8, 11, 0.5)
    assert mcnemar_always_valid(8, 2) == pytest.approx(1 / e)
    assert mcnemar_always_valid(0, 0) == 1.0
    assert mcnemar_always_valid(0, 9) == 1.0
    from rolloutctl.stats.paired import mcnemar_exact

    for b in range(0, 30, 3):
        for c in range(0, 30, 4):
            assert mcnemar_always_valid(b, c) >= mcnemar_exact(b, c) * 0.999


def test_always_valid_mcnemar_keeps_false_alarms_under_alpha_over_every_look() -> None:
    # Under "not worse", discordant pairs are fair coin flips; look after every one of 100.
    n = 100
    table = np.ones((n + 1, n + 1))
    for b in range(n + 1):
        for c in range(n + 1 - b):
            table[b, c] = mcnemar_always_valid(b, c)
    rng = np.random.default_rng(11)
    flips = rng.random((4000, n)) < 0.5
    b = np.cumsum(flips, axis=1)
    c = np.arange(1, n + 1) - b
    ever = (table[b, c] <= 0.05).any(axis=1).mean()
    assert ever <= 0.05
    assert ever > 0.005  # it does reject sometimes: not vacuous


def test_paired_quantile_variance_matches_simulation() -> None:
    # Correlated lognormal latencies; the Bahadur variance of Qy - Qx (relative and absolute)
    # against the spread of the estimate over 300 simulated stages.
    rng = np.random.default_rng(5)
    n, q = 4000, 0.95
    delta = pick_bandwidth(n, q)
    thetas, predicted = {True: [], False: []}, {True: [], False: []}
    for _ in range(300):
        base = rng.normal(0, 0.5, n)
        x = np.exp(6.5 + base + rng.normal(0, 0.2, n))
        y = np.exp(6.55 + base + rng.normal(0, 0.2, n))
        qs = {s: np.quantile(v, [q - delta, q, q + delta]) for s, v in (("x", x), ("y", y))}
        s = PairedQuantiles(
            n, q, delta, qs["x"][1], qs["y"][1], qs["x"][0], qs["x"][2], qs["y"][0], qs["y"][2],
            int((x > qs["x"][1]).sum()), int((y > qs["y"][1]).sum()),
            int(((x > qs["x"][1]) & (y > qs["y"][1])).sum()),
        )  # fmt: skip
        for relative in (True, False):
            theta, var = quantile_contrast(s, relative)
            thetas[relative].append(theta)
            predicted[relative].append(var)
    for relative in (True, False):
        empirical = np.std(thetas[relative])
        assert math.sqrt(np.mean(predicted[relative])) == pytest.approx(empirical, rel=0.15)
    assert np.mean(thetas[True]) == pytest.approx(math.exp(0.05) - 1, abs=0.01)


# ================================================================ request logs


def make_log(
    n: int = 8000,
    *,
    seed: int = 1,
    coverage: float = 0.95,
    latency_factor: float = 1.0,
    shadow_error: float = 0.01,
    health_safety: float = 0.003,
    tokens_factor: float = 1.0,
    health_latency: float | None = None,
) -> pd.DataFrame:
    """v1 serves n requests over two hours; `shadow:v2` answers about `coverage` of them
    half a second later, with values correlated through each request's difficulty."""
    rng = np.random.default_rng(seed)
    ts = START + pd.to_timedelta(np.sort(rng.uniform(0, 7190, n)), unit="s")
    category = rng.choice(CATEGORIES, n, p=(0.4, 0.25, 0.15, 0.2))
    base = rng.normal(6.5, 0.5, n)  # how slow this request is, whoever answers it
    length = rng.gamma(4, 60, n)  # how long an answer it needs
    hard = rng.random(n) < 0.05  # hard requests often break the JSON

    def arm(latency: Any, error: float, safety: np.ndarray, tokens: float) -> dict[str, Any]:
        out = np.round(length * rng.lognormal(0, 0.1, n) * tokens)
        u = rng.random(n)
        return {
            "latency_ms": np.exp(base + rng.normal(0, 0.15, n)) * latency,
            "output_tokens": out.astype(int),
            "cost_usd": 1e-4 + out * 2e-6,
            "json_valid": ~((hard & (rng.random(n) < 0.6)) | (rng.random(n) < 0.005)),
            "safety_violation": rng.random(n) < safety,
            "status": np.where(u < error, "error", np.where(u < error + 0.005, "timeout", "ok")),
        }

    common = {"request_id": [f"r{i:06d}" for i in range(n)], "category": category,
              "language": rng.choice(("en", "es"), n)}  # fmt: skip
    control = pd.DataFrame({"ts": ts, "variant": "v1", **common,
                            **arm(1.0, 0.01, np.full(n, 0.003), 1.0)})  # fmt: skip
    safety = np.where(category == "health", health_safety, 0.003)
    shadow = pd.DataFrame({"ts": ts + pd.to_timedelta(rng.uniform(0.2, 1.0, n), unit="s"),
                           "variant": "shadow:v2", **common,
                           **arm(np.where(category == "health", health_latency or latency_factor, latency_factor),
                                 shadow_error, safety, tokens_factor)})  # fmt: skip
    shadow = shadow[rng.random(n) < coverage]
    return pd.concat([control, shadow], ignore_index=True).sort_values("ts", ignore_index=True)


def _metric(**kw: Any) -> Metric:
    return Metric(**{"group": "technical", "source": "requests", "worse": "higher", **kw})


METRICS = [
    _metric(name="latency_ms", kind="mean", value="latency_ms", margin={"relative": 0.10}),
    _metric(
        name="p95_latency_ms",
        kind="quantile",
        q=0.95,
        value="latency_ms",
        margin={"relative": 0.15},
    ),
    _metric(name="cost_per_request", kind="mean", value="cost_usd", margin={"relative": 0.10}),
    _metric(
        name="json_valid_rate",
        group="quality",
        kind="proportion",
        event="json_valid",
        worse="lower",
        margin={"absolute": 0.02},
    ),
    _metric(
        name="unsafe_answer_rate",
        group="safety",
        kind="proportion",
        event="safety_violation",
        margin={"absolute": 0.005},
        critical=True,
        per_segment=True,
    ),
    _metric(
        name="error_rate",
        kind="proportion",
        event="status = 'error'",
        margin={"absolute": 0.01},
        critical=True,
    ),
    _metric(
        name="task_completion",
        group="product",
        kind="proportion",
        event="task_completed",
        worse="lower",
        margin={"absolute": 0.02},
    ),
]


def run(frame: pd.DataFrame, path: Path, **kw: Any) -> ShadowResult:
    if path.suffix == ".jsonl":
        frame = frame.assign(ts=frame.ts.map(lambda t: t.isoformat()))
        frame.to_json(path, orient="records", lines=True)
    else:
        frame.to_parquet(path)
    args: dict[str, Any] = {
        "start": START, "end": END, "control": "v1", "candidate": "v2", "metrics": METRICS,
        "dimensions": ("category",), "rho2": sequential.tune_rho2(0.05, 8000),
        "min_pairs": 2000, **kw,
    }  # fmt: skip
    return analyze_shadow(RequestLogSource("requests", [str(path)]), **args)


def row(result: ShadowResult, name: str, segment: dict[str, str] | None = None) -> ShadowComparison:
    return next(c for c in result.comparisons if c.name == name and c.segment == segment)


def answered_pairs(frame: pd.DataFrame) -> pd.DataFrame:
    window = frame[(frame.ts >= pd.Timestamp(START)) & (frame.ts < pd.Timestamp(END))]
    c = window[window.variant == "v1"].drop_duplicates("request_id")
    s = window[window.variant == "shadow:v2"].drop_duplicates("request_id")
    return c.merge(s, on="request_id", suffixes=("_c", "_s"))


@pytest.mark.parametrize("suffix", [".parquet", ".jsonl"])
def test_equivalent_candidate_passes(tmp_path: Path, suffix: str) -> None:
    frame = make_log()
    result = run(frame, tmp_path / f"log{suffix}")
    assert result.verdict == "pass", result.reasons
    pairs = answered_pairs(frame)
    assert result.pairs == len(pairs)
    assert result.control_rows == (frame.variant == "v1").sum()
    assert result.shadow_rows == (frame.variant == "shadow:v2").sum()
    assert result.duplicates == 0
    ok = pairs[(pairs.status_c == "ok") & (pairs.status_s == "ok")]
    latency = row(result, "latency_ms")
    assert latency.n_pairs == len(ok)
    assert latency.control_value == pytest.approx(ok.latency_ms_c.mean())
    assert latency.estimate == pytest.approx(ok.latency_ms_s.mean() / ok.latency_ms_c.mean() - 1)
    assert latency.verdict == "pass" and latency.relative and latency.kind == "paired_mean"
    p95 = row(result, "p95_latency_ms")
    assert p95.kind == "paired_quantile"
    assert p95.control_value == pytest.approx(np.quantile(ok.latency_ms_c, 0.95))
    assert p95.shadow_value == pytest.approx(np.quantile(ok.latency_ms_s, 0.95))
    valid = row(result, "json_valid_rate")
    b = int((ok.json_valid_c & ~ok.json_valid_s).sum())
    c = int((~ok.json_valid_c & ok.json_valid_s).sum())
    assert valid.discordant == (b, c)
    assert valid.mcnemar_p == pytest.approx(scipy_stats.binom.sf(b - 1, b + c, 0.5))
    errors = row(result, "shadow_error_rate")
    assert errors.vetoes and errors.verdict == "pass" and errors.n_pairs == len(pairs)
    assert errors.shadow_value == pytest.approx((pairs.status_s == "error").mean())
    assert row(result, "unsafe_answer_rate", {"category": "health"}).vetoes
    assert row(result, "shadow_coverage").shadow_value == pytest.approx(len(pairs) / 8000)
    ratio = row(result, "output_length_ratio")
    assert ratio.estimate == pytest.approx(ok.output_tokens_s.sum() / ok.output_tokens_c.sum())
    assert not ratio.vetoes and ratio.ci[0] < 1 < ratio.ci[1]  # type: ignore[operator]
    product = row(result, "task_completion")
    assert "skipped" in product.note and not product.vetoes
    assert all(c.p_adjusted is not None for c in result.comparisons if c.vetoes and c.n_pairs)
    assert "shadow:v2" in result.query and "GROUPING SETS" in result.query
    assert result.to_json()["comparisons"][0]["name"] == "latency_ms"


def test_slower_candidate_fails_on_latency(tmp_path: Path) -> None:
    result = run(make_log(latency_factor=1.25), tmp_path / "log.parquet")
    assert result.verdict == "fail"
    latency = row(result, "latency_ms")
    assert latency.verdict == "fail"
    assert latency.estimate == pytest.approx(0.25, abs=0.02)
    assert latency.ci[0] > 0.10  # type: ignore[operator]
    assert row(result, "p95_latency_ms").verdict == "fail"
    assert row(result, "json_valid_rate").verdict == "pass"
    assert any(
        r.startswith("shadow latency ms is worse: paired mean of latency_ms")
        for r in result.reasons
    )


def test_safety_regression_in_one_segment_fails_there(tmp_path: Path) -> None:
    result = run(make_log(health_safety=0.05), tmp_path / "log.parquet")
    assert result.verdict == "fail"
    health = row(result, "unsafe_answer_rate", {"category": "health"})
    assert health.verdict == "fail" and health.vetoes
    assert health.discordant is not None and health.discordant[0] > 5 * health.discordant[1]
    assert health.p_adjusted is not None and health.p_adjusted <= 0.05
    for category in ("general", "coding", "shopping"):
        assert row(result, "unsafe_answer_rate", {"category": category}).verdict != "fail"
    assert any("category=health" in r for r in result.reasons)


def test_tail_latency_regression_in_one_segment_fails_there(tmp_path: Path) -> None:
    p95 = METRICS[1].model_copy(update={"critical": True, "per_segment": True})
    frame = make_log(health_latency=1.4)
    result = run(frame, tmp_path / "log.parquet", metrics=[p95, *METRICS[2:]])
    assert result.verdict == "fail"
    health = row(result, "p95_latency_ms", {"category": "health"})
    assert health.verdict == "fail" and health.vetoes
    pairs = answered_pairs(frame)
    ok = pairs[(pairs.status_c == "ok") & (pairs.status_s == "ok") & (pairs.category_c == "health")]
    assert health.n_pairs == len(ok)
    assert health.control_value == pytest.approx(np.quantile(ok.latency_ms_c, 0.95))
    assert health.estimate == pytest.approx(0.4, abs=0.1)
    for category in ("general", "coding", "shopping"):
        assert row(result, "p95_latency_ms", {"category": category}).verdict != "fail"
    assert any(
        r.startswith("shadow p95 latency ms in category=health is worse") for r in result.reasons
    )


def test_failing_shadow_calls_fail_on_shadow_health(tmp_path: Path) -> None:
    result = run(make_log(shadow_error=0.08), tmp_path / "log.parquet")
    assert result.verdict == "fail"
    errors = row(result, "shadow_error_rate")
    assert errors.verdict == "fail" and errors.vetoes
    assert errors.shadow_value == pytest.approx(0.08, abs=0.01)
    assert errors.control_value == pytest.approx(0.01, abs=0.005)
    assert any(r.startswith("shadow error rate is worse: 0.") for r in result.reasons)
    # failed shadow calls are left out of the quality comparisons
    assert row(result, "json_valid_rate").verdict == "pass"


def test_error_excess_without_a_playbook_metric_holds_instead(tmp_path: Path) -> None:
    metrics = [m for m in METRICS if m.name != "error_rate"]
    result = run(make_log(shadow_error=0.08), tmp_path / "log.parquet", metrics=metrics)
    assert result.verdict == "inconclusive"
    errors = row(result, "shadow_error_rate")
    assert not errors.vetoes and errors.verdict == "fail"
    assert any("shadow calls fail more often" in r for r in result.reasons)


def test_too_few_pairs_is_inconclusive(tmp_path: Path) -> None:
    result = run(make_log(400), tmp_path / "log.parquet", min_pairs=1000)
    assert result.verdict == "inconclusive"
    assert f"{result.pairs:,} of 1,000 pairs needed" in result.reasons
    assert 350 < result.pairs < 400


def test_low_coverage_is_inconclusive(tmp_path: Path) -> None:
    result = run(make_log(coverage=0.6), tmp_path / "log.parquet")
    assert result.verdict == "inconclusive"
    assert row(result, "shadow_coverage").verdict == "inconclusive"
    assert any("have a shadow row" in r for r in result.reasons)


def test_no_request_id_is_invalid_input(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="no request_id column") as info:
        run(make_log(500).drop(columns="request_id"), tmp_path / "log.parquet")
    assert "'requests'" in info.value.message and "shadow:v2" in (info.value.hint or "")


def test_duplicates_are_counted_and_the_first_kept(tmp_path: Path) -> None:
    frame = make_log(3000)
    clean = run(frame, tmp_path / "clean.parquet", min_pairs=100)
    dup_c = frame[frame.variant == "v1"].head(30).assign(latency_ms=1e7)
    dup_s = frame[frame.variant == "shadow:v2"].head(20).assign(latency_ms=1e7)
    later = pd.concat([dup_c, dup_s]).assign(ts=lambda f: f.ts + pd.Timedelta(seconds=5))
    result = run(pd.concat([frame, later]), tmp_path / "dup.parquet", min_pairs=100)
    assert result.duplicates == 50
    assert any("50 duplicate rows" in note for note in result.notes)
    assert result.pairs == clean.pairs
    assert row(result, "latency_ms").control_value == pytest.approx(
        row(clean, "latency_ms").control_value, rel=1e-12
    )


def test_missing_columns_skip_with_a_note(tmp_path: Path) -> None:
    frame = make_log(3000).drop(columns=["output_tokens", "json_valid"])
    result = run(frame, tmp_path / "log.parquet", min_pairs=100, dimensions=("category", "x"))
    assert "no output_tokens column" in row(result, "output_length_ratio").note
    valid = row(result, "json_valid_rate")
    assert valid.verdict == "inconclusive" and "json_valid" in valid.note
    assert result.verdict == "inconclusive"  # missing data never passes
    assert any("no measurement for json_valid_rate" in r for r in result.reasons)
    assert any("'x' is not a column" in note for note in result.notes)
