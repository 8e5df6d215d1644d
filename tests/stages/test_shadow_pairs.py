"""Shadow-stage analysis: whole analyses of generated request logs (real Parquet / JSONL
files, real DuckDB). The paired statistics themselves are tested in tests/stats/test_paired.py."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from rolloutctl import simulate
from rolloutctl.errors import InvalidInput
from rolloutctl.metrics.requestlog import RequestLogSource
from rolloutctl.playbook.model import Metric
from rolloutctl.stages.shadow_pairs import ShadowComparison, ShadowResult, analyze_shadow
from rolloutctl.stats import sequential

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
END = START + timedelta(hours=2)
CATEGORIES = ("general", "coding", "health", "shopping")


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

    common = {
        "request_id": [f"r{i:06d}" for i in range(n)],
        "category": category,
        "language": rng.choice(("en", "es"), n),
    }
    control = pd.DataFrame(
        {"ts": ts, "variant": "v1", **common, **arm(1.0, 0.01, np.full(n, 0.003), 1.0)}
    )
    safety = np.where(category == "health", health_safety, 0.003)
    shadow = pd.DataFrame(
        {
            "ts": ts + pd.to_timedelta(rng.uniform(0.2, 1.0, n), unit="s"),
            "variant": "shadow:v2",
            **common,
            **arm(
                np.where(category == "health", health_latency or latency_factor, latency_factor),
                shadow_error,
                safety,
                tokens_factor,
            ),
        }
    )
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
        simulate.write(frame, path)
    args: dict[str, Any] = {
        "start": START,
        "end": END,
        "control": "v1",
        "candidate": "v2",
        "metrics": METRICS,
        "dimensions": ("category",),
        "rho2": sequential.tune_rho2(0.05, 8000),
        "min_pairs": 2000,
        **kw,
    }
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


def test_an_empty_window_holds_instead_of_crashing(tmp_path: Path) -> None:
    """Right after a rollout enters the shadow stage no pair exists yet."""
    later = END + timedelta(days=1)
    result = run(make_log(), tmp_path / "log.parquet", start=later, end=later + timedelta(hours=1))
    assert result.verdict == "inconclusive" and result.pairs == 0
    assert "0 of 2,000 pairs needed" in result.reasons


def test_a_critical_metric_vetoes_in_the_declared_critical_segments(tmp_path: Path) -> None:
    """As in the canary gate: a critical metric without per_segment is still judged in the
    playbook's critical segments (segments.critical), and only there."""
    unsafe = METRICS[4].model_copy(update={"per_segment": False})
    frame = make_log(health_safety=0.05)
    plain = run(frame, tmp_path / "a.parquet", metrics=[unsafe])
    assert all(c.segment is None for c in plain.comparisons if c.name == "unsafe_answer_rate")
    critical = run(
        frame, tmp_path / "b.parquet", metrics=[unsafe], critical_segments={("category", "health")}
    )
    health = row(critical, "unsafe_answer_rate", {"category": "health"})
    assert health.vetoes and health.verdict == "fail" and critical.verdict == "fail"
    segments = {json.dumps(c.segment) for c in critical.comparisons if c.name == unsafe.name}
    assert segments == {"null", '{"category": "health"}'}
