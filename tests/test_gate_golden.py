"""The whole gate result, field by field, for one look of each decision rule.

Each scenario states its verdict and decision here, in the test; the complete result
(every metric row with its value, interval, alpha, p-values and test; the reasons in order;
the sample-ratio check; triggers; notes) is compared with a reviewed copy in
tests/data/gate_golden/, numbers to 1e-9 relative. A change to what the gate computes or
says shows as a diff to review, and the copy is rewritten with

    python -m tests.test_gate_golden

The numbers themselves are checked against references elsewhere (tests/stats/): these
files pin that the gate puts the right number in the right place, for every metric kind,
segment, limit, trigger and error path.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rolloutctl import gate
from rolloutctl.metrics.base import Measurement, MetricError
from rolloutctl.playbook.model import Playbook
from rolloutctl.stats.sufficient import LOG_GAMMA, Histogram, Moments, Proportion, RatioMoments
from tests.conftest import FILE_FLAG
from tests.golden import differences

GOLDEN = Path(__file__).parent / "data" / "gate_golden"
START = datetime(2026, 3, 2, 9, tzinfo=UTC)
SEGMENTS = {"health": 0.2, "finance": 0.3, "travel": 0.5}  # category -> share of traffic


def _metrics() -> list[dict[str, Any]]:
    base = {"source": "s", "group": "technical"}
    return [
        {
            **base,
            "name": "error_rate",
            "kind": "proportion",
            "event": "e",
            "worse": "higher",
            "margin": {"absolute": 0.005},
            "critical": True,
            "limit": 0.05,
        },
        {
            **base,
            "name": "p95_latency_ms",
            "kind": "quantile",
            "q": 0.95,
            "value": "latency_ms",
            "worse": "higher",
            "margin": {"relative": 0.10},
        },
        {
            **base,
            "name": "cost_per_request",
            "kind": "mean",
            "value": "cost",
            "worse": "higher",
            "margin": {"relative": 0.20},
        },
        {
            **base,
            "name": "cost_per_task",
            "kind": "ratio",
            "numerator": "cost",
            "denominator": "tasks",
            "worse": "higher",
            "margin": {"relative": 0.25},
        },
        {
            **base,
            "name": "unsafe_rate",
            "group": "safety",
            "kind": "proportion",
            "event": "u",
            "worse": "higher",
            "margin": {"absolute": 0.001},
            "critical": True,
            "per_segment": True,
        },
        {
            **base,
            "name": "helpfulness",
            "group": "quality",
            "kind": "proportion",
            "event": "h",
            "worse": "lower",
            "margin": {"absolute": 0.02},
        },
        {
            **base,
            "name": "grounding",
            "group": "quality",
            "kind": "proportion",
            "event": "g",
            "worse": "lower",
            "margin": {"absolute": 0.02},
            "advisory": True,
        },
    ]


def _playbook(**change: Any) -> Playbook:
    data: dict[str, Any] = {
        "rollout": "golden",
        "flag": FILE_FLAG,
        "sources": {"s": {"kind": "requestlog", "path": "x.parquet"}},
        "segments": {"dimensions": ["category"], "critical": {"category": ["health"]}},
        "analysis": {
            "alpha": 0.05,
            "min_samples_per_arm": 1000,
            "min_samples_per_segment": 200,
            "expected_samples_per_arm": 20_000,
        },
        "metrics": _metrics(),
        "stages": [
            {"name": "c1", "traffic": 50, "min_duration": "1h", "max_duration": "6h"},
            {"name": "c2", "traffic": 50, "min_duration": "1h"},
            {"name": "c3", "traffic": 50, "min_duration": "1h", "approval": "required"},
            {"name": "full", "traffic": 100, "min_duration": "30m"},
        ],
        "triggers": [
            {
                "name": "cost-spike",
                "when": "canary.cost_per_request > 3 * control.cost_per_request",
                "action": "pause",
            },
            {
                "name": "grounding-collapse",
                "when": "canary.grounding < 0.6 * control.grounding",
                "action": "pause",
            },
        ],
    }
    for key, value in change.items():
        if key in ("analysis",):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return Playbook.model_validate(data)


@dataclass
class Arm:
    """The true rates of one arm; counts are drawn from them with a fixed seed."""

    n: int = 20_000
    error: float = 0.010
    unsafe: dict[str, float] = field(default_factory=lambda: dict.fromkeys(SEGMENTS, 0.0005))
    helpful: float = 0.80
    grounded: float = 0.90
    latency_scale: float = 1.0
    cost_scale: float = 1.0


def _arm_stats(rng: np.random.Generator, arm: Arm) -> dict[tuple[str, Any], Any]:
    """Sufficient statistics per metric and segment (and overall, their sum)."""
    out: dict[tuple[str, Any], Any] = {}
    for category, share in SEGMENTS.items():
        n = round(arm.n * share)
        seg = ("category", category)
        out[("error_rate", seg)] = Proportion(n, int(rng.binomial(n, arm.error)))
        out[("unsafe_rate", seg)] = Proportion(n, int(rng.binomial(n, arm.unsafe[category])))
        out[("helpfulness", seg)] = Proportion(n, int(rng.binomial(n, arm.helpful)))
        out[("grounding", seg)] = Proportion(n, int(rng.binomial(n, arm.grounded)))
        latency = rng.lognormal(math.log(800 * arm.latency_scale), 0.5, n)
        buckets, counts = np.unique(np.floor(np.log(latency) / LOG_GAMMA), return_counts=True)
        out[("p95_latency_ms", seg)] = Histogram(
            {int(b): int(c) for b, c in zip(buckets, counts, strict=True)}
        )
        cost = rng.lognormal(math.log(0.002 * arm.cost_scale), 0.6, n)
        out[("cost_per_request", seg)] = Moments(n, float(cost.sum()), float((cost**2).sum()))
        tasks = rng.poisson(1.5, n).astype(float)
        out[("cost_per_task", seg)] = RatioMoments(
            n,
            float(cost.sum()),
            float(tasks.sum()),
            float((cost**2).sum()),
            float((tasks**2).sum()),
            float((cost * tasks).sum()),
        )
    for name in {name for name, _ in out}:
        parts = [out[(name, ("category", c))] for c in SEGMENTS]
        total = parts[0]
        for part in parts[1:]:
            total = total + part
        out[(name, None)] = total
    return out


def _measurement(control: Arm, canary: Arm, seed: int, skew: float = 1.0) -> Measurement:
    """Both arms' statistics; `skew` scales the canary's row counts for the ratio check."""
    rng = np.random.default_rng(seed)
    c, t = _arm_stats(rng, control), _arm_stats(rng, canary)
    m = Measurement()
    for key in c:
        m.stats[key] = {"control": c[key], "canary": t[key]}
    m.arm_counts[None] = {"control": control.n, "canary": round(canary.n * skew)}
    for category, share in SEGMENTS.items():
        m.arm_counts[("category", category)] = {
            "control": round(control.n * share),
            "canary": round(canary.n * share * skew),
        }
    m.queries["*"] = "SELECT ... -- the request log's aggregation"
    return m


@dataclass(frozen=True)
class Scenario:
    """One look: what the gate must conclude (verdict, decision) and how it got there."""

    verdict: str
    decision: str
    build: Callable[[], gate.GateResult]
    playbook: Callable[[], Playbook]


def _run(
    playbook: Playbook,
    measurement: Measurement | None,
    *,
    hours: float = 2.0,
    stage_index: int = 0,
    source_errors: dict[str, str] | None = None,
    consecutive_errors: int = 0,
) -> gate.GateResult:
    return gate.evaluate(
        playbook,
        stage_index,
        {} if measurement is None else {"s": measurement},
        source_errors or {},
        stage_started=START,
        now=START + timedelta(hours=hours),
        consecutive_errors=consecutive_errors,
    )


def _healthy(seed: int = 1) -> Measurement:
    return _measurement(Arm(), Arm(), seed)


def _non_inferiority() -> Playbook:
    return _playbook(analysis={"pass_requires": "non_inferiority"})


def _rollback_at_max() -> Playbook:
    """A stage that rolls back when still inconclusive at its maximum duration."""
    stage = {"name": "c1", "traffic": 50, "min_duration": "1h", "max_duration": "6h"}
    return _playbook(
        analysis={"pass_requires": "non_inferiority"},
        stages=[{**stage, "on_inconclusive_at_max": "rollback"}, {"name": "full", "traffic": 100}],
    )


AB_STAGES = [
    {"name": "ab", "kind": "ab", "traffic": 50, "duration": "4h", "method": "fixed"},
    {"name": "full", "traffic": 100},
]


def _ab_playbook() -> Playbook:
    metrics = [
        *_metrics(),
        {
            "source": "s",
            "name": "helpful_votes",
            "group": "product",
            "kind": "proportion",
            "event": "h",
            "worse": "lower",
            "margin": {"absolute": 0.01},
        },
    ]
    return _playbook(stages=AB_STAGES, metrics=metrics)


def _ab(hours: float) -> gate.GateResult:
    m = _measurement(Arm(), Arm(grounded=0.87), 20)
    for seg in [None, *(("category", c) for c in SEGMENTS)]:
        m.stats[("helpful_votes", seg)] = m.stats[("grounding", seg)]
    return _run(_ab_playbook(), m, hours=hours)


def _full_traffic(error: float) -> gate.GateResult:
    m = _measurement(Arm(n=0), Arm(error=error), 21)
    return _run(_playbook(), m, stage_index=3)


def _with_bad_rows() -> gate.GateResult:
    m = _healthy()
    m.bad_rows = {"non-numeric or non-finite latency_ms": 12, "unreadable CSV lines": 3}
    return _run(_playbook(), m)


def _source_down() -> gate.GateResult:
    return _run(_playbook(), None, source_errors={"s": "connection refused"}, consecutive_errors=1)


def _source_down_one_short_of_the_limit() -> gate.GateResult:
    return _run(_playbook(), None, source_errors={"s": "timeout"}, consecutive_errors=2)


def _source_down_past_the_limit() -> gate.GateResult:
    return _run(_playbook(), None, source_errors={"s": "connection refused"}, consecutive_errors=3)


def _one_metric_unmeasurable() -> gate.GateResult:
    m = _healthy()
    for key in [k for k in m.stats if k[0] == "p95_latency_ms"]:
        del m.stats[key]
    m.fail("p95_latency_ms", MetricError("histogram query returned no series", query="q95"))
    return _run(_playbook(), m)


SCENARIOS: dict[str, Scenario] = {
    "healthy_shown_within_every_margin_advances": Scenario(
        "pass", "advance", lambda: _run(_playbook(), _healthy()), _playbook
    ),
    "healthy_holds_before_min_duration": Scenario(
        "inconclusive", "hold", lambda: _run(_playbook(), _healthy(), hours=0.5), _playbook
    ),
    "too_few_samples_hold": Scenario(
        "inconclusive",
        "hold",
        lambda: _run(_playbook(), _measurement(Arm(n=600), Arm(n=600), 2)),
        _playbook,
    ),
    "non_inferiority_shown_passes": Scenario(
        "pass",
        "advance",
        lambda: _run(
            _non_inferiority(),
            _measurement(Arm(n=400_000), Arm(n=400_000), 3),
            hours=5,
        ),
        _non_inferiority,
    ),
    "non_inferiority_not_yet_holds": Scenario(
        "inconclusive",
        "hold",
        lambda: _run(
            _non_inferiority(),
            _measurement(Arm(n=3000), Arm(n=3000), 4),
        ),
        _non_inferiority,
    ),
    "inconclusive_at_max_duration_rolls_back": Scenario(
        "inconclusive",
        "rollback",
        lambda: _run(_rollback_at_max(), _measurement(Arm(n=3000), Arm(n=3000), 5), hours=7),
        _rollback_at_max,
    ),
    "error_regression_fails": Scenario(
        "fail",
        "rollback",
        lambda: _run(_playbook(), _measurement(Arm(), Arm(error=0.022), 6)),
        _playbook,
    ),
    "latency_and_cost_regressions_fail": Scenario(
        "fail",
        "rollback",
        lambda: _run(_playbook(), _measurement(Arm(), Arm(latency_scale=1.3, cost_scale=1.6), 7)),
        _playbook,
    ),
    "limit_breached_fails_without_a_significant_difference": Scenario(
        "fail",
        "rollback",
        lambda: _run(_playbook(), _measurement(Arm(error=0.0505), Arm(error=0.0505), 8)),
        _playbook,
    ),
    "unsafe_answers_in_health_only_veto": Scenario(
        "fail",
        "rollback",
        lambda: _run(
            _playbook(),
            _measurement(
                Arm(), Arm(unsafe={"health": 0.02, "finance": 0.0005, "travel": 0.0005}), 9
            ),
        ),
        _playbook,
    ),
    "helpfulness_drop_is_diagnostic_and_fails_overall": Scenario(
        "fail",
        "rollback",
        lambda: _run(_playbook(), _measurement(Arm(), Arm(helpful=0.74, grounded=0.80), 10)),
        _playbook,
    ),
    "sample_ratio_mismatch_holds": Scenario(
        "inconclusive",
        "hold",
        lambda: _run(_playbook(), _measurement(Arm(), Arm(), 11, skew=0.9)),
        _playbook,
    ),
    "a_pause_trigger_on_an_advisory_metric_pauses": Scenario(
        "inconclusive",
        "pause",
        lambda: _run(_playbook(), _measurement(Arm(), Arm(grounded=0.4), 12)),
        _playbook,
    ),
    "next_stage_needs_approval": Scenario(
        "pass",
        "pause",
        lambda: _run(_playbook(), _healthy(13), stage_index=1),
        _playbook,
    ),
    "before_full_traffic_critical_metrics_must_be_shown_within_margin": Scenario(
        "inconclusive",
        "hold",
        lambda: _run(_playbook(), _healthy(14), stage_index=2),
        _playbook,
    ),
    "shown_within_margin_the_last_canary_stage_advances_to_full": Scenario(
        "pass",
        "advance",
        lambda: _run(_playbook(), _measurement(Arm(n=400_000), Arm(n=400_000), 15), stage_index=2),
        _playbook,
    ),
    "source_down_holds": Scenario("inconclusive", "hold", _source_down, _playbook),
    "source_down_one_short_of_the_error_limit_holds": Scenario(
        "inconclusive", "hold", _source_down_one_short_of_the_limit, _playbook
    ),
    "ab_product_metric_waits_for_the_planned_end": Scenario(
        "inconclusive", "hold", lambda: _ab(2), _ab_playbook
    ),
    "ab_product_metric_is_tested_once_at_the_end": Scenario(
        "fail", "rollback", lambda: _ab(4), _ab_playbook
    ),
    "full_traffic_is_judged_on_limits": Scenario(
        "pass", "complete", lambda: _full_traffic(0.01), _playbook
    ),
    "full_traffic_beyond_a_limit_fails": Scenario(
        "fail", "rollback", lambda: _full_traffic(0.07), _playbook
    ),
    "bad_rows_are_reported": Scenario("pass", "advance", _with_bad_rows, _playbook),
    "source_down_past_the_error_limit_errors": Scenario(
        "error", "hold", _source_down_past_the_limit, _playbook
    ),
    "one_metric_unmeasurable_is_an_error_row": Scenario(
        "inconclusive", "hold", _one_metric_unmeasurable, _playbook
    ),
}


def _result(name: str) -> dict[str, Any]:
    scenario = SCENARIOS[name]
    result = scenario.build()
    data = result.to_dict()
    data["decision"] = gate.decide(scenario.playbook(), result.stage_index, result)
    return data


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_the_gate_result_is_the_reviewed_one(name: str) -> None:
    scenario = SCENARIOS[name]
    data = _result(name)
    assert (data["verdict"], data["decision"]) == (scenario.verdict, scenario.decision), data[
        "reasons"
    ]
    want = json.loads((GOLDEN / f"{name}.json").read_text())
    diffs = differences(data, want, name)
    assert not diffs, "\n".join(diffs[:30])


def regenerate() -> None:
    GOLDEN.mkdir(parents=True, exist_ok=True)
    for name in SCENARIOS:
        (GOLDEN / f"{name}.json").write_text(json.dumps(_result(name), indent=1) + "\n")
        print(f"wrote {GOLDEN / name}.json")


if __name__ == "__main__":
    sys.exit(regenerate())
