"""The prometheus source over a stage's time (the looks a gate report charts) and with arm
label values that are not the flag's variant names, against real servers (conftest.py)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from rolloutctl import gate
from rolloutctl.metrics.prometheus import PrometheusSource
from rolloutctl.metrics.registry import build_source
from rolloutctl.playbook.load import LoadedPlaybook, load_playbook
from rolloutctl.report import evidence
from rolloutctl.stats.sufficient import Histogram, Moments, Proportion
from tests.conftest import Workspace
from tests.metrics.conftest import T0, Traffic, at
from tests.metrics.test_prometheus import (
    BUCKETS,
    PLAYBOOK,
    PROM_FIELDS,
    make_request,
    metric,
    request_for,
    write_playbook,
)
from tests.metrics.test_prometheus_errors import mean_latency


@pytest.fixture
def loaded(tmp_path: Path, server_url: str, traffic: Traffic) -> LoadedPlaybook:
    return load_playbook(write_playbook(tmp_path, server_url, traffic.log, PROM_FIELDS))


def test_series_looks_agree_with_instant_queries(server_url: str) -> None:
    """Each earlier look sums the look interval's increases; it agrees with an instant query
    over its own window (to Prometheus' extrapolation), and the last look is the gate's."""
    source = PrometheusSource("prom", server_url)
    quantile = metric(
        name="p95",
        kind="quantile",
        q=0.95,
        query=None,
        event=None,
        histogram=BUCKETS,
        margin={"relative": 0.1},
    )
    metrics = (metric(), quantile, mean_latency())
    request = make_request(*metrics, end=at(3), dimensions=("category",))
    looks = source.measure_series(request, timedelta(minutes=15), segments_per_look=False)

    assert [t for t, _ in looks] == [T0 + timedelta(minutes=15 * k) for k in range(1, 13)]
    final = looks[-1][1]
    assert final.stats == source.measure(request).stats
    assert ("error_rate", ("category", "chat")) in final.stats
    at_one_hour = looks[3][1]
    assert ("error_rate", ("category", "chat")) not in at_one_hour.stats  # overall only
    instant = source.measure(make_request(*metrics, end=at(1)))
    for name in ("error_rate", "p95", "mean_latency"):
        for arm in ("control", "canary"):
            drawn, truth = at_one_hour.stats[(name, None)][arm], instant.stats[(name, None)][arm]
            assert drawn.n == pytest.approx(truth.n, rel=0.01), (name, arm)
            if isinstance(drawn, Proportion) and isinstance(truth, Proportion):
                assert drawn.events == pytest.approx(truth.events, rel=0.02, abs=2)
            if isinstance(drawn, Moments) and isinstance(truth, Moments):
                assert drawn.mean == pytest.approx(truth.mean, rel=0.01)
                assert drawn.variance == pytest.approx(truth.variance, rel=0.05)
            if isinstance(drawn, Histogram) and isinstance(truth, Histogram):
                assert drawn.quantile(0.95) == pytest.approx(truth.quantile(0.95), rel=0.05)
    # One range query per template serves all 11 earlier looks (a query per look and
    # template would be 44 more): 4 instant + 2 step-range for the gate, 6 for the series.
    calls = source.calls
    source.measure_series(request, timedelta(minutes=15), segments_per_look=False)
    assert source.calls - calls == 12


def test_a_report_charts_a_prometheus_stage(loaded: LoadedPlaybook) -> None:
    """The report draws the stage from the series: one point per look, not "the stage is too
    young for a time series" for a three-hour stage."""
    source = build_source("prom", loaded)
    request = request_for(loaded, "prom", T0, at(3))
    looks = source.measure_series(request, timedelta(minutes=15), segments_per_look=False)  # type: ignore[attr-defined]
    result = gate.evaluate(
        loaded.playbook,
        0,
        {"prom": looks[-1][1]},
        {},
        stage_started=T0,
        now=at(3),
        consecutive_errors=0,
    )
    collected = evidence.collect(loaded, 0, result, {"prom": looks[-1][1]}, {"prom": looks})
    assert not any("too young" in note for note in collected["notes"])
    points = collected["series"]["error_rate"]
    assert len(points) == 12
    assert points[0]["canary"] < 0.04 < points[-1]["canary"]  # the regression after 1h


def test_check_stores_the_series_of_a_prometheus_stage(
    ws: Workspace, prometheus_url: str, traffic: Traffic, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws.playbook.write_text(PLAYBOOK.format(url="${PROM_URL}", log=traffic.log, **PROM_FIELDS))
    monkeypatch.setenv("PROM_URL", prometheus_url)
    assert ws.run("start", str(ws.playbook), now=T0).code == 0
    late = ws.run("--json", "check", "prom-answers", now=at(3))
    assert late.code == 10, late.out + late.err
    (record,) = (ws.root / "state" / "prom-answers" / "gates").glob("*.json")
    stored = json.loads(record.read_text())["evidence"]
    looks = timedelta(hours=3) // evidence.interval_for(timedelta(hours=3))  # 18: every 10m
    assert len(stored["series"]["error_rate"]) == looks, stored["notes"]


@pytest.mark.parametrize("per_arm", [False, True])
def test_variants_map_flag_variants_to_label_values(
    tmp_path: Path, prometheus_url: str, traffic: Traffic, per_arm: bool
) -> None:
    """The flag's variants are answer-v1 and answer-v2; the series carry v1 and v2 (as
    instrumentation labels a model name). `variants:` maps one to the other."""
    fields = dict(PROM_FIELDS)
    if per_arm:
        fields["error"] = fields["error"].replace('=~"{{variant}}"', '="{{variant}}"')
    path = write_playbook(tmp_path, prometheus_url, traffic.log, fields)
    text = path.read_text().replace(
        "timeout: 5s}", "timeout: 5s, variants: {answer-v1: v1, answer-v2: v2}}"
    )
    path.write_text(
        text.replace("control: v1, canary: v2", "control: answer-v1, canary: answer-v2")
    )
    mapped = load_playbook(path)
    source = build_source("prom", mapped)
    request = replace(
        request_for(mapped, "prom", T0, at(1)), control="answer-v1", canary="answer-v2"
    )
    m = source.measure(request)
    assert not m.errors, m.errors
    plain = PrometheusSource("prom", prometheus_url).measure(
        replace(request, control="v1", canary="v2")
    )
    assert m.stats == plain.stats and m.arm_counts[None] == plain.arm_counts[None]
    expected = '{variant="v2"}' if per_arm else '{variant=~"v1|v2"}'
    assert expected in m.queries["error_rate"].replace("llm_requests_total", "")
    assert "answer-v" not in m.queries["error_rate"]
