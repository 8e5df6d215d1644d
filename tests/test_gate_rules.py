"""gate.evaluate and gate.decide, one decision rule at a time: absolute limits, the
inconclusive-at-max action, and `per_segment` vetoes outside the declared critical segments."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from rolloutctl import gate
from rolloutctl.metrics.base import Measurement
from rolloutctl.playbook.model import Playbook
from rolloutctl.stats.sufficient import Proportion
from tests.conftest import FILE_FLAG

START = datetime(2026, 3, 2, 9, tzinfo=UTC)
N = 20_000  # per arm, well above min_samples_per_arm (1000) and per segment (200)


def _metric(**extra: Any) -> dict[str, Any]:
    return {
        "name": "err_rate",
        "group": "technical",
        "source": "s",
        "kind": "proportion",
        "event": "x",
        "worse": "higher",
        "margin": {"absolute": 0.005},
        **extra,
    }


def _playbook(
    metric: dict[str, Any],
    *,
    stages: list[dict[str, Any]] | None = None,
    pass_requires: str = "no_failure",
    segments: dict[str, Any] | None = None,
) -> Playbook:
    return Playbook.model_validate(
        {
            "rollout": "rules",
            "flag": FILE_FLAG,
            "sources": {"s": {"kind": "requestlog", "path": "x.parquet"}},
            "segments": segments or {},
            "analysis": {
                "alpha": 0.05,
                "min_samples_per_arm": 1000,
                "pass_requires": pass_requires,
                "expected_samples_per_arm": 20_000,
            },
            "metrics": [metric],
            "stages": stages or [{"name": "c1", "traffic": 50, "min_duration": "1h"}],
        }
    )


def _look(control: int, canary: int, n: int = N) -> Measurement:
    m = Measurement()
    m.stats[("err_rate", None)] = {
        "control": Proportion(n, control),
        "canary": Proportion(n, canary),
    }
    m.arm_counts[None] = {"control": n, "canary": n}
    return m


def _evaluate(
    playbook: Playbook, look: Measurement, elapsed: timedelta = timedelta(hours=2)
) -> gate.GateResult:
    return gate.evaluate(
        playbook,
        0,
        {"s": look},
        {},
        stage_started=START,
        now=START + elapsed,
        consecutive_errors=0,
    )


# ---------------------------------------------------------------- absolute limits


def test_a_canary_beyond_its_absolute_limit_fails_the_gate_on_its_own() -> None:
    """Both arms at exactly 5.00% (1000 of 20,000): no comparison fails, so without a limit
    the stage passes (no_failure, minimum duration and samples met). A limit of 4.99% on the
    canary's own rate fails it; a limit equal to the rate (5.00%) is not exceeded."""
    look = _look(1000, 1000)
    assert _evaluate(_playbook(_metric()), look).verdict == "pass"

    breached = _evaluate(_playbook(_metric(limit=0.0499)), look)
    assert breached.verdict == "fail"
    assert [r for r in breached.reasons if "beyond the limit" in r] == [
        "err rate: canary 5.000% is beyond the limit 4.990%"
    ], breached.reasons
    assert breached.metrics[0].verdict != "fail"  # the comparison itself did not fail
    assert gate.decide(_playbook(_metric(limit=0.0499)), 0, breached) == "rollback"

    at_limit = _evaluate(_playbook(_metric(limit=0.05)), look)
    assert at_limit.verdict == "pass", at_limit.reasons


def test_a_limit_on_a_lower_is_worse_metric_is_a_floor() -> None:
    """worse: lower, both arms 5.00%: a floor of 5.01% is breached, a floor of 5.00% is not."""
    look = _look(1000, 1000)
    below = _evaluate(_playbook(_metric(worse="lower", limit=0.0501)), look)
    assert below.verdict == "fail"
    assert any("beyond the limit 5.010%" in r for r in below.reasons), below.reasons
    assert _evaluate(_playbook(_metric(worse="lower", limit=0.05)), look).verdict == "pass"


def test_a_limit_judges_a_full_traffic_stage_without_a_control() -> None:
    """At 100% there is no control to compare with: limits (and triggers) are what judges."""
    stages = [{"name": "full", "traffic": 100, "min_duration": "1h"}]
    look = Measurement()
    look.stats[("err_rate", None)] = {"control": Proportion(0, 0), "canary": Proportion(N, 1000)}
    look.arm_counts[None] = {"control": 0, "canary": N}
    ok = _evaluate(_playbook(_metric(limit=0.06), stages=stages), look)
    assert ok.verdict == "pass", ok.reasons
    bad = _evaluate(_playbook(_metric(limit=0.04), stages=stages), look)
    assert bad.verdict == "fail"
    assert any("beyond the limit 4.000%" in r for r in bad.reasons), bad.reasons


def test_an_advisory_metrics_limit_never_fails_the_gate() -> None:
    look = _look(1000, 1000)
    result = _evaluate(_playbook(_metric(limit=0.0499, advisory=True)), look)
    assert result.verdict == "pass", result.reasons


# ---------------------------------------------------------------- at max_duration


def _undecided_at(elapsed: timedelta, action: str) -> tuple[Playbook, gate.GateResult]:
    """Equal arms at 1,000 per arm: nothing fails, non-inferiority is not yet shown, so
    the gate is inconclusive."""
    stages = [
        {
            "name": "c1",
            "traffic": 50,
            "min_duration": "1h",
            "max_duration": "4h",
            "on_inconclusive_at_max": action,
        },
        {"name": "c2", "traffic": 100},
    ]
    playbook = _playbook(_metric(), stages=stages, pass_requires="non_inferiority")
    return playbook, _evaluate(playbook, _look(50, 50, n=1000), elapsed)


@pytest.mark.parametrize("action", ["pause", "rollback", "advance", "hold"])
def test_inconclusive_at_max_duration_takes_the_stages_action(action: str) -> None:
    playbook, at_max = _undecided_at(timedelta(hours=4), action)
    assert at_max.verdict == "inconclusive" and at_max.max_duration_passed
    assert any("non-inferiority not yet shown" in r for r in at_max.reasons), at_max.reasons
    assert gate.decide(playbook, 0, at_max) == action


@pytest.mark.parametrize("action", ["pause", "rollback", "advance"])
def test_before_max_duration_an_inconclusive_gate_holds(action: str) -> None:
    playbook, before = _undecided_at(timedelta(hours=4) - timedelta(seconds=1), action)
    assert before.verdict == "inconclusive" and not before.max_duration_passed
    assert gate.decide(playbook, 0, before) == "hold"


# ---------------------------------------------------------------- per_segment vetoes

SEGMENTS = {"dimensions": ["region"], "critical": {"region": ["us"]}}
EU = ("region", "eu")


def _segmented_look() -> Measurement:
    """Overall equal (5.0% in both arms); in `region=eu` (not a declared critical segment)
    the canary has 10.0% against 5.0% on 2,000 requests per arm, far beyond a 0.5 pt margin."""
    m = _look(1000, 1000)
    m.stats[("err_rate", ("region", "us"))] = {
        "control": Proportion(5000, 250),
        "canary": Proportion(5000, 250),
    }
    m.stats[("err_rate", EU)] = {
        "control": Proportion(2000, 100),
        "canary": Proportion(2000, 200),
    }
    return m


def _segment(result: gate.GateResult, value: str) -> gate.MetricResult:
    [row] = [r for r in result.metrics if r.segment == {"region": value}]
    return row


def test_per_segment_vetoes_in_a_segment_that_is_not_declared_critical() -> None:
    playbook = _playbook(_metric(critical=True, per_segment=True), segments=SEGMENTS)
    result = _evaluate(playbook, _segmented_look())
    eu = _segment(result, "eu")
    assert eu.vetoes and eu.verdict == "fail"
    assert result.verdict == "fail"
    assert result.reasons[0].startswith("err rate in region=eu is worse than allowed")
    assert gate.decide(playbook, 0, result) == "rollback"


def test_without_per_segment_the_same_segment_is_only_diagnostic() -> None:
    """A critical metric vetoes in its declared critical segments only: `region=eu` is
    flagged (BH) for the report, never fails the gate."""
    playbook = _playbook(_metric(critical=True), segments=SEGMENTS)
    result = _evaluate(playbook, _segmented_look())
    eu, us = _segment(result, "eu"), _segment(result, "us")
    assert not eu.vetoes and us.vetoes
    assert eu.verdict == "fail"  # flagged for the report
    assert result.verdict == "pass", result.reasons


def test_which_comparisons_veto() -> None:
    """_Look.vetoes, rule by rule: overall always (unless advisory); a segment only for a
    critical metric, in a declared critical segment or anywhere with per_segment."""
    cases = [
        # (metric fields, segment, vetoes)
        ({}, None, True),
        ({}, EU, False),
        ({"per_segment": True}, EU, False),  # per_segment without critical does not veto
        ({"critical": True}, ("region", "us"), True),
        ({"critical": True}, EU, False),
        ({"critical": True, "per_segment": True}, EU, True),
        ({"advisory": True}, None, False),
    ]
    for fields, segment, expected in cases:
        playbook = _playbook(_metric(**fields), segments=SEGMENTS)
        look = gate._look(playbook, 0, START, START + timedelta(hours=2), 2 * N)
        assert look.vetoes(playbook.metrics[0], segment) is expected, (fields, segment)


# ---------------------------------------------------------------- self-tuning and decide()


def _untuned(stages: list[dict[str, Any]]) -> Playbook:
    data = _playbook(_metric(), stages=stages).model_dump(exclude_none=True)
    del data["analysis"]["expected_samples_per_arm"]
    return Playbook.model_validate(data)


@pytest.mark.parametrize(
    ("per_hour", "total"),
    [
        (None, 200_000),  # before any traffic: 20,000 per arm at the stage's 10% share
        (0.0, 200_000),
        (-5.0, 200_000),
        (1000.0, 2048),  # 2,000 requests by the 2 h minimum, to the nearest power of two
        (3000.0, 8192),  # 6,000 -> 2^13
        (10.0, 100),  # never below 100
        (0.5, 100),
    ],
)
def test_the_mixture_is_tuned_to_the_traffic_the_stage_sees_by_its_horizon(
    per_hour: float | None, total: int
) -> None:
    playbook = _untuned([{"name": "c1", "traffic": 10, "min_duration": "2h"}])
    assert gate.tuned_total(playbook, 0, per_hour) == total


def test_a_written_expected_sample_wins_and_the_share_is_the_smaller_arm() -> None:
    stages = [
        {"name": "c1", "traffic": 10, "min_duration": "2h"},
        {"name": "c2", "traffic": 90, "min_duration": "2h", "expected_samples_per_arm": 900},
        {"name": "full", "traffic": 100},
    ]
    playbook = _playbook(_metric(), stages=stages)  # analysis: 20,000 per arm
    assert gate.tuned_total(playbook, 0, 1e6) == 200_000  # 20,000 / 0.1
    assert gate.tuned_total(playbook, 1, 1e6) == 9_000  # the stage's own 900 / 0.1
    assert gate.tuned_total(playbook, 2, 1e6) == 40_000  # no split: half and half
    untuned = _untuned([*stages[:1], {"name": "c2", "traffic": 50}])
    assert gate.tuned_total(untuned, 1, 1e6) == 40_000  # no horizon: the fallback


def test_the_horizon_is_the_minimum_then_the_maximum_then_the_duration() -> None:
    stage = _playbook(_metric()).stages[0].model_copy
    assert gate.stage_horizon(stage(update={"min_duration": "1h", "max_duration": "5h"})) == (
        timedelta(hours=1)
    )
    assert gate.stage_horizon(stage(update={"min_duration": None, "max_duration": "5h"})) == (
        timedelta(hours=5)
    )
    assert gate.stage_horizon(
        stage(update={"min_duration": None, "max_duration": None, "duration": "3d"})
    ) == timedelta(days=3)
    assert gate.stage_horizon(stage(update={"min_duration": None})) is None


def _decided(playbook: Playbook, stage_index: int, **result: Any) -> str:
    base = _evaluate(_playbook(_metric()), _look(1000, 1000))
    fields = {"trigger_action": None, "no_data": False, "max_duration_passed": False}
    return gate.decide(playbook, stage_index, replace(base, **{**fields, **result}))


def test_decide_maps_each_verdict_to_an_action() -> None:
    stages = [
        {"name": "c1", "traffic": 50, "min_duration": "1h", "on_inconclusive_at_max": "pause"},
        {"name": "c2", "traffic": 80, "approval": "required"},
        {"name": "full", "traffic": 100},
    ]
    pb = _playbook(_metric(), stages=stages)
    assert _decided(pb, 0, verdict="fail") == "rollback"
    assert _decided(pb, 0, verdict="fail", trigger_action="pause") == "rollback"
    assert _decided(pb, 0, verdict="pass", trigger_action="pause") == "pause"
    assert _decided(pb, 0, verdict="pass") == "pause"  # c2 needs approval
    assert _decided(pb, 1, verdict="pass") == "advance"
    assert _decided(pb, 2, verdict="pass") == "complete"
    assert _decided(pb, 0, verdict="inconclusive") == "hold"
    assert _decided(pb, 0, verdict="inconclusive", max_duration_passed=True) == "pause"
    assert _decided(pb, 0, verdict="error") == "hold"


def test_decide_on_no_data_acts_only_after_the_minimum_duration() -> None:
    data = _playbook(_metric()).model_dump(exclude_none=True)
    data["analysis"]["on_no_data"] = "rollback"
    pb = Playbook.model_validate(data)
    empty = {"verdict": "inconclusive", "no_data": True}
    assert _decided(pb, 0, **empty, min_duration_met=True) == "rollback"
    assert _decided(pb, 0, **empty, min_duration_met=False) == "hold"
    held = _playbook(_metric())  # on_no_data: hold (the default)
    assert _decided(held, 0, **empty, min_duration_met=True) == "hold"


def test_a_monitor_stage_moves_the_flag_only_on_a_rollback_trigger() -> None:
    stages = [
        {"name": "full", "traffic": 100, "min_duration": "1h"},
        {"name": "watch", "kind": "monitor", "source": "s", "duration": "3h"},
    ]
    pb = _playbook(_metric(), stages=stages)
    assert _decided(pb, 1, verdict="fail") == "hold"  # drift alerts, the flag stays
    assert _decided(pb, 1, verdict="fail", trigger_action="rollback") == "rollback"
    assert _decided(pb, 1, verdict="pass", trigger_action="pause") == "hold"
    assert _decided(pb, 1, verdict="pass") == "hold"  # not yet over
    assert _decided(pb, 1, verdict="pass", max_duration_passed=True) == "complete"
    assert _decided(pb, 1, verdict="inconclusive", max_duration_passed=True) == "hold"
    more = _playbook(_metric(), stages=[*stages, {**stages[1], "name": "watch2"}])
    assert _decided(more, 1, verdict="pass", max_duration_passed=True) == "hold"


# ---------------------------------------------------------------- boundaries and notes


def _with_eu(per_arm_control: int, per_arm_canary: int) -> Measurement:
    """Overall equal; `region=eu` with the given requests per arm at 5% errors in both."""
    m = _look(1000, 1000)
    m.stats[("err_rate", EU)] = {
        "control": Proportion(per_arm_control, per_arm_control // 20),
        "canary": Proportion(per_arm_canary, per_arm_canary // 20),
    }
    return m


def test_a_segment_is_judged_from_exactly_its_minimum_sample_per_arm() -> None:
    """min_samples_per_segment is 200: 200 in each arm is enough, 199 in either is not."""
    playbook = _playbook(_metric(critical=True, per_segment=True), segments=SEGMENTS)
    judged = _segment(_evaluate(playbook, _with_eu(200, 200)), "eu")
    assert judged.estimate == pytest.approx(0.0) and not judged.note
    for control, canary in [(199, 200), (200, 199)]:
        short = _segment(_evaluate(playbook, _with_eu(control, canary)), "eu")
        assert short.estimate is None and short.verdict == "inconclusive"
        assert short.note == "too few samples to judge (199 < 200 per arm)"


def test_the_alpha_split_counts_only_the_vetoing_comparisons_that_are_judged() -> None:
    """Two vetoing comparisons (overall and eu) halve alpha when eu has its 200 per arm; with
    199 the eu row is not judged and the overall comparison keeps the whole 0.05."""
    playbook = _playbook(_metric(critical=True, per_segment=True), segments=SEGMENTS)
    overall = [r for r in _evaluate(playbook, _with_eu(200, 200)).metrics if r.segment is None]
    assert overall[0].alpha == pytest.approx(0.025)
    short = [r for r in _evaluate(playbook, _with_eu(199, 200)).metrics if r.segment is None]
    assert short[0].alpha == pytest.approx(0.05)


def test_look_judged_needs_the_minimum_in_both_arms_or_the_canary_alone_at_full() -> None:
    playbook = _playbook(_metric())
    look = gate._look(playbook, 0, START, START + timedelta(hours=2), 2 * N)
    assert look.judged({"control": Proportion(200, 1), "canary": Proportion(200, 1)})
    assert not look.judged({"control": Proportion(199, 1), "canary": Proportion(500, 1)})
    assert not look.judged({"control": Proportion(500, 1), "canary": Proportion(199, 1)})
    full = replace(look, has_control=False)
    assert full.judged({"control": Proportion(0, 0), "canary": Proportion(200, 1)})
    assert not full.judged({"control": Proportion(0, 0), "canary": Proportion(199, 1)})


AB = [
    {"name": "ab", "kind": "ab", "traffic": 50, "duration": "4h", "method": "fixed"},
    {"name": "full", "traffic": 100},
]
BETTER_NOTE = "better than the control (the interval excludes no change)"


@pytest.mark.parametrize(
    ("worse", "canary", "noted"),
    [
        ("higher", 800, True),  # 4% errors against 5%: better
        ("higher", 1000, False),  # no change
        ("higher", 1200, False),  # worse
        ("lower", 1200, True),  # 6% of a good thing against 5%: better
        ("lower", 800, False),
    ],
)
def test_an_ab_metric_at_its_end_says_when_the_canary_is_better(
    worse: str, canary: int, noted: bool
) -> None:
    playbook = _playbook(_metric(group="product", worse=worse), stages=AB)
    result = _evaluate(playbook, _look(1000, canary), elapsed=timedelta(hours=4))
    [row] = result.metrics
    assert row.test == "difference of proportions, fixed"
    assert (row.note is not None and BETTER_NOTE in row.note) is noted, row.note


def test_before_its_end_an_ab_metric_waits_and_says_how_long() -> None:
    playbook = _playbook(_metric(group="product"), stages=AB)
    [row] = _evaluate(playbook, _look(1000, 800), elapsed=timedelta(hours=1)).metrics
    assert row.verdict == "inconclusive" and row.estimate is None and not row.vetoes
    assert row.note == "A/B metric: compared once, at the end of the planned 4h (3h left)"


def test_planned_alpha_splits_by_weight_over_the_planned_vetoing_comparisons() -> None:
    """Three metrics: a (weight 2), b (weight 1, critical: overall plus the two declared
    critical segments), c advisory. Planned weight 2 + 1×3 = 5: a starts at 2/5 of alpha,
    b at 1/5, and an advisory metric (not among the planned) would have the whole alpha."""
    data = _playbook(_metric()).model_dump(exclude_none=True)
    data["segments"] = {"dimensions": ["region"], "critical": {"region": ["us", "eu"]}}
    data["metrics"] = [
        _metric(name="a", weight=2),
        _metric(name="b", critical=True),
        _metric(name="c", advisory=True),
    ]
    pb = Playbook.model_validate(data)
    a, b, c = pb.metrics
    assert gate.planned_alpha(pb, pb.metrics, a) == pytest.approx(0.05 * 2 / 5)
    assert gate.planned_alpha(pb, pb.metrics, b) == pytest.approx(0.05 * 1 / 5)
    assert gate.planned_alpha(pb, [c], c) == pytest.approx(0.05)
    assert gate.planned_vetoes(pb, pb.metrics) == 4


def test_a_fixed_horizon_failure_names_a_plain_p_and_a_sequential_one_an_always_valid_p() -> None:
    """A/B metrics compared once at the end use a fixed-horizon test: its p is valid at the
    planned end only, and the reason says p, not always-valid p (the guard metrics keep the
    sequential wording)."""
    fixed = _playbook(_metric(group="product"), stages=AB)
    [reason] = _evaluate(fixed, _look(1000, 1400), elapsed=timedelta(hours=4)).reasons
    assert "margin; p = " in reason and "always-valid" not in reason, reason
    sequential = _evaluate(_playbook(_metric()), _look(1000, 1400))
    assert "margin; always-valid p = " in sequential.reasons[0], sequential.reasons
