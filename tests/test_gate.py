"""gate.evaluate on measurements built by hand: where alpha goes on each side."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from rolloutctl import gate
from rolloutctl.metrics.base import Measurement
from rolloutctl.playbook.model import Playbook
from rolloutctl.stats.sufficient import Proportion
from tests.conftest import FILE_FLAG

START = datetime(2026, 3, 2, 9, tzinfo=UTC)


def _playbook(weight_a: float, pass_requires: str = "no_failure") -> Playbook:
    def metric(name: str, weight: float) -> dict[str, Any]:
        return {
            "name": name,
            "group": "technical",
            "source": "s",
            "kind": "proportion",
            "event": "x",
            "worse": "higher",
            "margin": {"absolute": 0.005},
            "weight": weight,
        }

    return Playbook.model_validate(
        {
            "rollout": "weights",
            "flag": FILE_FLAG,
            "sources": {"s": {"kind": "requestlog", "path": "x.parquet"}},
            "analysis": {
                "alpha": 0.05,
                "min_samples_per_arm": 1000,
                "pass_requires": pass_requires,
                "expected_samples_per_arm": 20_000,
            },
            "metrics": [metric("a_rate", weight_a), metric("b_rate", 1.0)],
            "stages": [{"name": "c1", "traffic": 50, "min_duration": "1h"}],
        }
    )


def _look(n: int, control: int, a: int, b: int) -> Measurement:
    m = Measurement()
    for name, canary in (("a_rate", a), ("b_rate", b)):
        m.stats[(name, None)] = {"control": Proportion(n, control), "canary": Proportion(n, canary)}
    m.arm_counts[None] = {"control": n, "canary": n}
    return m


def _evaluate(playbook: Playbook, look: Measurement) -> gate.GateResult:
    return gate.evaluate(
        playbook,
        0,
        {"s": look},
        {},
        stage_started=START,
        now=START + timedelta(hours=2),
        consecutive_errors=0,
    )


def test_a_metric_with_more_weight_gets_more_of_alpha_to_fail() -> None:
    """a_rate 6.2% against 5.0% with a 0.5 pt margin, always-valid p about 0.031: over two
    equal metrics Holm needs p <= 0.025, so the gate passes (no_failure); with weight 4 of 5
    the first step is 0.04 and it fails, the interval's lower end beyond the margin."""
    look = _look(20_000, 1000, 1245, 1000)
    equal, weighted = _evaluate(_playbook(1.0), look), _evaluate(_playbook(4.0), look)
    a_equal, a_weighted = equal.metrics[0], weighted.metrics[0]
    assert 0.025 < (a_equal.p_value or 0) < 0.04
    assert (equal.verdict, a_equal.alpha) == ("pass", 0.025)
    assert (a_equal.ci[0] or 0) < 0.005
    assert weighted.verdict == "fail" and a_weighted.alpha == 0.04
    assert (a_weighted.ci[0] or 0) > 0.005
    assert weighted.metrics[1].alpha == 0.01
    assert weighted.reasons[0].startswith("a rate is worse than allowed")
    assert "after Holm (weighted) over 2 vetoing comparisons" in weighted.reasons[0]


def test_passing_shows_each_metric_at_the_full_alpha() -> None:
    """b_rate 5.1% against 5.0%, 60,000 per arm: its upper bound at alpha = 0.05 is within the
    0.5 pt margin, at alpha / 2 it is not. Every metric must pass (intersection-union), so
    each is shown at alpha and the gate passes."""
    look = _look(60_000, 3000, 2700, 3060)
    playbook = _playbook(1.0, "non_inferiority")
    result = _evaluate(playbook, look)
    b = result.metrics[1]
    assert result.verdict == "pass", result.reasons
    assert (b.alpha, b.alpha_pass, b.verdict) == (0.025, 0.05, "pass")
    assert (b.ci[1] or 1) < 0.005
    split = gate.compare_metric(
        playbook.metric("b_rate"),
        Proportion(60_000, 3000),
        Proportion(60_000, 3060),
        0.025,
        "sequential",
        gate.stage_rho2(playbook, 0, gate.tuned_total(playbook, 0)),
    )
    assert split.verdict == "inconclusive" and split.ci[1] > 0.005


def test_a_trigger_that_cannot_be_evaluated_holds_as_a_measurement_error() -> None:
    """A trigger whose `when` raises at run time (it compares a number with a string:
    `validate` refuses it, a playbook built another way may not) never crashes a look: it
    holds the gate as a measurement error, counted toward the consecutive-error limit."""
    book = _playbook(1.0).model_dump()
    book["triggers"] = [{"name": "broken", "when": "canary.a_rate > 'abc'", "action": "rollback"}]
    playbook = Playbook.model_validate(book)
    result = _evaluate(playbook, _look(20_000, 200, 200, 200))
    assert result.verdict == "inconclusive" and result.errors == 1
    assert any("cannot evaluate" in r and "broken" in r for r in result.reasons), result.reasons
    [trigger] = result.triggers
    assert trigger["evaluated"] is False and "TypeError" in trigger["error"]
    last = gate.evaluate(
        playbook,
        0,
        {"s": _look(20_000, 200, 200, 200)},
        {},
        stage_started=START,
        now=START + timedelta(hours=2),
        consecutive_errors=3,
    )
    assert last.verdict == "error"
