"""What the prometheus source says when a metric cannot be measured, against a real
Prometheus (conftest.py): each metric its own error with its own query, the reason a
forgotten {{by}} gives nothing, and a young stage that holds instead of erroring."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from rolloutctl import gate
from rolloutctl.metrics.base import MetricError
from rolloutctl.metrics.prometheus import PrometheusSource
from rolloutctl.stats.sufficient import Moments, Proportion
from tests.metrics.conftest import T0, at
from tests.metrics.test_prometheus import (
    COUNTER,
    answering,
    make_request,
    metric,
    mocked,
    playbook_for,
    vector,
)

SUM = 'sum by ({{by}}) (increase(llm_request_duration_seconds_sum{variant=~"{{variant}}"}[{{window}}]))'
COUNT = SUM.replace("_sum{", "_count{")


def mean_latency(**fields: Any) -> Any:
    base: dict[str, Any] = {
        "name": "mean_latency",
        "kind": "mean",
        "event": None,
        "query": SUM,
        "total": COUNT,
        "margin": {"relative": 0.1},
    }
    base.update(fields)
    return metric(**base)


def test_each_failing_metric_has_its_own_error_and_query(prometheus_url: str) -> None:
    """A misspelt metric and a PromQL syntax error in one look: each is reported with the
    query that was sent for it and what Prometheus answered to that query."""
    typo = metric(name="a_typo", query=COUNTER.replace("llm_requests_total", "llm_request_total"))
    syntax = metric(name="b_syntax", query=COUNTER.replace("[{{window}}]", "[{{window}}"))
    fine = metric(name="c_fine")
    m = PrometheusSource("prom", prometheus_url).measure(make_request(typo, syntax, fine))

    assert set(m.errors) == {"a_typo", "b_syntax"} and ("c_fine", None) in m.stats
    a, b = m.metric_errors["a_typo"], m.metric_errors["b_syntax"]
    assert isinstance(a, MetricError) and isinstance(b, MetricError)
    assert a.message.startswith("empty result: no series for either arm")
    assert a.query == (
        'sum by (variant, status) (increase(llm_request_total{variant=~"v1|v2"}[3600s]))'
    )
    assert b.error_type == "bad_data" and "parse error" in b.message
    assert b.query == (
        'sum by (variant, status) (increase(llm_requests_total{variant=~"v1|v2"}[3600s))'
    )
    assert "llm_request_total" not in str(b) and "parse error" not in str(a)
    # the one-line texts are the records' own, and every failing query is kept for --explain
    assert m.errors == {"a_typo": str(a), "b_syntax": str(b)}
    assert m.queries["a_typo"] == a.query and m.queries["b_syntax"] == b.query
    assert m.error_for("b_syntax") == b and m.error_for("c_fine") is None


def test_a_failing_metric_keeps_every_query_it_sends(prometheus_url: str) -> None:
    """A mean from counters sends four queries; when the first fails, `queries` still shows
    all four (check --explain prints them), and the error names the one that failed."""
    broken = mean_latency(query=SUM.replace("sum by", "sum bye"))
    m = PrometheusSource("prom", prometheus_url).measure(make_request(broken))
    error = m.metric_errors["mean_latency"]
    assert error.error_type == "bad_data" and error.query is not None
    assert error.query.startswith("sum bye (variant)")
    lines = m.queries["mean_latency"].splitlines()
    assert len(lines) == 4 and lines[0] == error.query
    assert "llm_request_duration_seconds_count" in lines[1]
    assert all(line.endswith("[range, step 300s]") for line in lines[2:])


def test_a_forgotten_by_names_the_missing_arm_label(prometheus_url: str) -> None:
    """`sum(...)` without {{by}}: Prometheus answers one series with no labels. That is what
    the error says, not "empty result"."""
    flat = metric(query='sum(increase(llm_requests_total{variant=~"{{variant}}"}[{{window}}]))')
    m = PrometheusSource("prom", prometheus_url).measure(make_request(flat))
    error = m.metric_errors["error_rate"]
    assert "empty result" not in error.message
    assert error.message.startswith(
        "Prometheus returned 1 series but none carries the arm label `variant`; the query "
        "must keep it: group by ({{by}})"
    )
    assert error.query == 'sum(increase(llm_requests_total{variant=~"v1|v2"}[3600s]))'


def test_label_values_that_are_not_the_arms_point_at_variants(prometheus_url: str) -> None:
    """The flag's variants are named answer-v1/answer-v2, the series say v1/v2: the empty
    answer points at `variants:`."""
    source = PrometheusSource("prom", prometheus_url)
    request = make_request(metric())
    request = type(request)(**{**request.__dict__, "control": "answer-v1", "canary": "answer-v2"})
    error = source.measure(request).metric_errors["error_rate"]
    assert "empty result" in error.message and "`variants:`" in error.message


def test_a_young_mean_from_counters_holds_instead_of_erroring(prometheus_url: str) -> None:
    """A mean from _sum/_count with the default 5m step: before 3 steps there is no variance
    estimate. The look holds on too few samples, counting no error, and sends no range
    query Prometheus would reject (end before start under 5 minutes)."""
    source = PrometheusSource("prom", prometheus_url)
    playbook = playbook_for(mean_latency())
    for minutes in (4, 12):
        end = T0 + timedelta(minutes=minutes)
        m = source.measure(make_request(mean_latency(), end=end))
        assert not m.errors, m.errors
        assert m.stats[("mean_latency", None)] == {
            "control": Moments(0, 0.0, 0.0),
            "canary": Moments(0, 0.0, 0.0),
        }
        assert m.arm_counts[None]["control"] > 0  # the requests were counted all the same
        assert any("not enough data yet" in n and "3 intervals of 300s" in n for n in m.notes)
        assert "range" not in m.queries["mean_latency"]
        result = gate.evaluate(
            playbook, 0, {"prom": m}, {}, stage_started=T0, now=end, consecutive_errors=3
        )
        assert result.verdict == "inconclusive" and result.errors == 0, result.reasons
    later = source.measure(make_request(mean_latency(), end=T0 + timedelta(minutes=16)))
    assert not later.errors
    stat = later.stats[("mean_latency", None)]["canary"]
    assert isinstance(stat, Moments) and stat.n > 1000 and stat.variance > 0


def test_a_stage_younger_than_a_scrape_holds(prometheus_url: str) -> None:
    """30 s after the start no counter has two samples in the window: Prometheus answers
    nothing, which is no data yet, not an error."""
    end = T0 + timedelta(seconds=30)
    m = PrometheusSource("prom", prometheus_url).measure(make_request(metric(), end=end))
    assert not m.errors
    assert m.stats[("error_rate", None)]["canary"] == Proportion(0, 0)
    result = gate.evaluate(
        playbook_for(metric()), 0, {"prom": m}, {}, stage_started=T0, now=end, consecutive_errors=3
    )
    assert result.verdict == "inconclusive" and result.errors == 0
    # an hour in, the same empty answer is an error again
    typo = metric(query=COUNTER.replace("llm_requests_total", "llm_request_total"))
    late = PrometheusSource("prom", prometheus_url).measure(make_request(typo, end=at(1)))
    assert "empty result" in late.errors["error_rate"]


def test_queries_that_cannot_be_sent_are_still_shown() -> None:
    """A template without an arm matcher or with a misspelt placeholder is never sent, but
    its query is rendered as far as it goes, for the error and for `check --explain`."""
    typo = metric(query=COUNTER.replace("{{window}}", "{{windw}}"))
    no_arm = metric(name="no_arm", query="sum(increase(llm_requests_total[{{window}}]))")
    source = mocked(answering(vector()))
    m = source.measure(make_request(typo, no_arm))
    assert source.calls == 0
    assert m.queries["no_arm"] == m.metric_errors["no_arm"].query
    assert m.metric_errors["no_arm"].query == "sum(increase(llm_requests_total[3600s]))"
    assert m.metric_errors["error_rate"].message.startswith("unknown placeholder {{windw}}")
    assert m.queries["error_rate"] == (
        'sum by (variant, status) (increase(llm_requests_total{variant=~"v1|v2"}[{{windw}}]))'
    )


def test_each_failing_metric_reaches_text_json_explain_and_report(
    ws: Any, prometheus_url: str, traffic: Any, monkeypatch: Any
) -> None:
    """Two metrics fail for two different reasons: each is named with its own error and its
    query in the reasons, in `--json` (a row with verdict "error"), in `check --explain`,
    and in the HTML report; a third, healthy metric is judged as usual."""
    from tests.metrics.test_prometheus import PLAYBOOK, PROM_FIELDS

    typo = PROM_FIELDS["timeout"].replace("llm_requests_total", "llm_requestz_total")
    syntax = PROM_FIELDS["latency"].replace("(increase(", "(increasez(")  # no such function
    ws.playbook.write_text(
        PLAYBOOK.format(
            url="${PROM_URL}", log=traffic.log, **{**PROM_FIELDS, "timeout": typo}
        ).replace(PROM_FIELDS["latency"], syntax)
    )
    monkeypatch.setenv("PROM_URL", prometheus_url)
    assert ws.run("start", str(ws.playbook), now=T0).code == 0
    r = ws.run("--json", "check", "prom-answers", now=at(1))
    data = r.json()
    rows = {m["name"]: m for m in data["metrics"] if not m["segment"]}
    assert rows["timeout_rate"]["verdict"] == "error"
    assert "llm_requestz_total" in rows["timeout_rate"]["error"]["query"]
    assert "empty result" in rows["timeout_rate"]["error"]["message"]
    assert rows["p95_latency"]["verdict"] == "error"
    assert rows["p95_latency"]["error"]["error_type"] == "bad_data"
    assert rows["error_rate"]["verdict"] in ("pass", "inconclusive")
    reason = next(x for x in data["reasons"] if x.startswith("no measurement"))
    assert "timeout_rate: " in reason and "p95_latency: bad_data" in reason
    explained = ws.run("check", "--explain", "prom-answers", now=at(1))
    assert "llm_requestz_total" in explained.out and "llm_request_duration" in explained.out
    report = (ws.root / data["report"]).read_text()  # an absolute path replaces the root
    assert "llm_requestz_total" in report and "bad_data" in report
