"""The prometheus source against real Prometheus and VictoriaMetrics servers (loaded with the
same history, see conftest.py), and against httpx.MockTransport for the faults a real server
cannot be made to produce."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from rolloutctl import gate
from rolloutctl.errors import BackendError, InvalidInput
from rolloutctl.metrics.base import Measurement, MeasureRequest
from rolloutctl.metrics.prometheus import (
    PrometheusSource,
    parse_matchers,
    to_histogram,
)
from rolloutctl.metrics.registry import build_source
from rolloutctl.playbook import expr
from rolloutctl.playbook.load import LoadedPlaybook, load_playbook
from rolloutctl.playbook.model import Metric
from rolloutctl.stats.sufficient import Histogram, Moments, Proportion
from tests.conftest import FILE_FLAG, Workspace
from tests.metrics.conftest import BOUNDS, T0, Traffic, at, free_port

COUNTER = 'sum by ({{by}}) (increase(llm_requests_total{variant=~"{{variant}}"}[{{window}}]))'
BUCKETS = (
    "sum by ({{by}}) "
    '(increase(llm_request_duration_seconds_bucket{variant=~"{{variant}}"}[{{window}}]))'
)
PLAYBOOK = """\
rollout: prom-answers
flag: {{backend: file, path: flags/flags.json, key: answer-model, control: v1, canary: v2}}
sources:
  prom: {{kind: prometheus, url: "{url}", timeout: 5s}}
  requests: {{kind: requestlog, path: "{log}"}}
segments:
  dimensions: [category, language]
  critical: {{category: [health]}}
analysis:
  min_samples_per_arm: 1000
  min_samples_per_segment: 200
  expected_samples_per_arm: 10000
  pass_requires: no_failure
metrics:
  - {{name: error_rate, group: technical, source: {src}, kind: proportion, {error}, worse: higher, margin: {{absolute: 0.01}}, critical: true}}
  - {{name: timeout_rate, group: technical, source: {src}, kind: proportion, {timeout}, worse: higher, margin: {{absolute: 0.01}}}}
  - {{name: p95_latency, group: technical, source: {src}, kind: quantile, q: 0.95, {latency}, worse: higher, margin: {{relative: 0.10}}}}
stages:
  - {{name: c1, traffic: 20, min_duration: 1h}}
  - {{name: full, traffic: 100}}
"""
PROM_FIELDS = {
    "src": "prom",
    "error": f"""query: '{COUNTER}', event: 'status="error"'""",
    "timeout": f"""query: '{COUNTER}', event: 'status=~"timeout|deadline"'""",
    "latency": f"histogram: '{BUCKETS}'",
}
LOG_FIELDS = {
    "src": "requests",
    "error": "event: \"status = 'error'\"",
    "timeout": "event: \"status = 'timeout'\"",
    "latency": "value: latency_ms",
}


def write_playbook(root: Path, url: str, log: Path, fields: dict[str, str]) -> Path:
    path = root / f"rollout-{fields['src']}.yaml"
    path.write_text(PLAYBOOK.format(url=url, log=log, **fields))
    return path


def request_for(
    loaded: LoadedPlaybook, source: str, start: datetime, end: datetime, **extra: Any
) -> MeasureRequest:
    pb = loaded.playbook
    return MeasureRequest(
        metrics=tuple(m for m in pb.metrics if m.source == source),
        start=start,
        end=end,
        control="v1",
        canary="v2",
        dimensions=tuple(pb.segments.dimensions),
        **extra,
    )


def judge(
    loaded: LoadedPlaybook, source: str, start: datetime, end: datetime
) -> tuple[gate.GateResult, Measurement]:
    measurement = build_source(source, loaded).measure(request_for(loaded, source, start, end))
    result = gate.evaluate(
        loaded.playbook,
        0,
        {source: measurement},
        {},
        stage_started=start,
        now=end,
        consecutive_errors=0,
    )
    return result, measurement


def verdicts(result: gate.GateResult) -> dict[tuple[str, str], str]:
    return {(m.name, json.dumps(m.segment)): m.verdict for m in result.metrics}


@pytest.fixture
def prom_playbook(tmp_path: Path, server_url: str, traffic: Traffic) -> LoadedPlaybook:
    return load_playbook(write_playbook(tmp_path, server_url, traffic.log, PROM_FIELDS))


# ---------------------------------------------------------------- against real servers


def test_counts_are_exact_per_arm_and_segment(
    prom_playbook: LoadedPlaybook, traffic: Traffic
) -> None:
    source = build_source("prom", prom_playbook)
    m = source.measure(request_for(prom_playbook, "prom", T0, at(1)))
    assert not m.errors
    frame = traffic.requests[traffic.requests.minute < 60]
    for arm, variant in (("control", "v1"), ("canary", "v2")):
        rows = frame[frame.variant == variant]
        error = m.stats[("error_rate", None)][arm]
        assert error == Proportion(len(rows), int((rows.status == "error").sum()))
        timeout = m.stats[("timeout_rate", None)][arm]
        assert (
            isinstance(timeout, Proportion) and timeout.events == (rows.status == "timeout").sum()
        )
        for category in ("chat", "code", "health"):
            seg = rows[rows.category == category]
            stat = m.stats[("error_rate", ("category", category))][arm]
            assert stat == Proportion(len(seg), int((seg.status == "error").sum()))
        hist = m.stats[("p95_latency", ("language", "hi"))][arm]
        assert isinstance(hist, Histogram)
        assert hist.n == (rows.language == "hi").sum()
        assert m.arm_counts[None][arm] == len(rows)
    # one instant query per distinct question, for both arms and every segment, pinned at
    # the end: error_rate and timeout_rate ask the same one (requests by status), sent once
    assert isinstance(source, PrometheusSource) and source.calls == 2
    assert m.queries["error_rate"] == m.queries["timeout_rate"]
    assert any(n.startswith("one query served error_rate, timeout_rate") for n in m.notes)
    assert 'variant=~"v1|v2"' in m.queries["error_rate"] and "[3600s]" in m.queries["error_rate"]
    assert "by (variant, category, language, status)" in m.queries["error_rate"]
    assert "by (variant, category, language, le)" in m.queries["p95_latency"]


def test_gate_passes_in_the_first_hour_and_fails_after(prom_playbook: LoadedPlaybook) -> None:
    early, _ = judge(prom_playbook, "prom", T0, at(1))
    assert early.verdict == "pass", early.reasons
    # The regression starts after the first hour; the gate fails within the hour after it.
    second_hour, _ = judge(prom_playbook, "prom", T0, at(2))
    assert second_hour.verdict == "fail", second_hour.reasons
    late, m = judge(prom_playbook, "prom", T0, at(3))
    assert late.verdict == "fail", late.reasons
    failed = {r.name for r in late.metrics if r.verdict == "fail" and r.segment is None}
    assert failed >= {"error_rate", "p95_latency"}
    assert "timeout_rate" not in failed
    overall = next(r for r in late.metrics if r.name == "error_rate" and r.segment is None)
    assert overall.query == m.queries["error_rate"] and "[10800s]" in overall.query


def test_quantile_from_buckets_within_bucket_resolution(
    prom_playbook: LoadedPlaybook, traffic: Traffic
) -> None:
    m = build_source("prom", prom_playbook).measure(request_for(prom_playbook, "prom", T0, at(3)))
    frame = traffic.requests
    width = 1.2  # neighbouring bucket bounds differ by 20%
    for arm, variant in (("control", "v1"), ("canary", "v2")):
        true_p95 = float(np.quantile(frame[frame.variant == variant].latency_s, 0.95))
        hist = m.stats[("p95_latency", None)][arm]
        assert isinstance(hist, Histogram)
        assert true_p95 / width < hist.quantile(0.95) < true_p95 * width


def test_same_verdicts_as_the_request_log(
    tmp_path: Path, prometheus_url: str, victoria_url: str, traffic: Traffic
) -> None:
    from_log = load_playbook(write_playbook(tmp_path, "unused", traffic.log, LOG_FIELDS))
    for url in (prometheus_url, victoria_url):
        from_prom = load_playbook(write_playbook(tmp_path, url, traffic.log, PROM_FIELDS))
        for hours in (1, 2, 3):
            by_log, log_m = judge(from_log, "requests", T0, at(hours))
            by_prom, prom_m = judge(from_prom, "prom", T0, at(hours))
            assert by_prom.verdict == by_log.verdict, (url, hours)
            a, b = verdicts(by_log), verdicts(by_prom)
            assert set(a) == set(b)
            for key in a:
                if key[0] != "p95_latency":  # proportions: the very same counts
                    assert a[key] == b[key], (url, hours, key)
                    assert log_m.stats[(key[0], None)] == prom_m.stats[(key[0], None)]
            # quantiles agree overall; a segment may differ only at bucket resolution
            p95 = ("p95_latency", "null")
            assert a[p95] == b[p95], (url, hours)
            differing = [k for k in a if a[k] != b[k]]
            assert len(differing) <= 1, differing


def test_real_prometheus_rejects_a_bad_query(tmp_path: Path, prometheus_url: str) -> None:
    source = PrometheusSource("prom", prometheus_url)
    broken = metric(
        query='sum by ({{by}}) (increase(llm_requests_total{variant=~"{{variant}}"}[{{window}}])',
        event='status="error"',
    )
    m = source.measure(make_request(broken))
    assert "bad_data" in m.errors["error_rate"]
    assert "llm_requests_total" in m.errors["error_rate"]  # the query is shown
    assert m.queries["error_rate"].startswith("sum by (variant, status)")
    assert source.calls == 1  # a 400 is never retried


def test_per_arm_template_and_stage_scope(prometheus_url: str, traffic: Traffic) -> None:
    per_arm = metric(
        query='sum by ({{by}}) (increase(llm_requests_total{variant="{{variant}}"}[{{window}}]))',
        event='status="error"',
    )
    source = PrometheusSource("prom", prometheus_url)
    scope = expr.parse("category != 'health'")
    m = source.measure(make_request(per_arm, end=at(2), dimensions=("language",), scope=scope))
    assert source.calls == 2 and m.queries["error_rate"].count("\n") == 1
    frame = traffic.requests[
        (traffic.requests.minute < 120) & (traffic.requests.category != "health")
    ]
    for arm, variant in (("control", "v1"), ("canary", "v2")):
        rows = frame[frame.variant == variant]
        assert m.stats[("error_rate", None)][arm] == Proportion(
            len(rows), int((rows.status == "error").sum())
        )
        en = rows[rows.language == "en"]
        assert m.stats[("error_rate", ("language", "en"))][arm].n == len(en)


def test_mean_from_a_histogram_and_from_sum_and_count(
    prometheus_url: str, traffic: Traffic
) -> None:
    from_buckets = metric(kind="mean", histogram=BUCKETS, name="mean_latency")
    sum_count = Metric(
        name="mean_latency_exact",
        group="technical",
        source="prom",
        kind="mean",
        query='sum by ({{by}}) (increase(llm_request_duration_seconds_sum{variant=~"{{variant}}"}'
        "[{{window}}]))",
        total='sum by ({{by}}) (increase(llm_request_duration_seconds_count{variant=~"{{variant}}"}'
        "[{{window}}]))",
        worse="higher",
        margin={"relative": 0.1},
    )
    source = PrometheusSource("prom", prometheus_url)
    m = source.measure(make_request(from_buckets, sum_count, end=at(1)))
    assert not m.errors, m.errors
    frame = traffic.requests[traffic.requests.minute < 60]
    for arm, variant in (("control", "v1"), ("canary", "v2")):
        x = frame[frame.variant == variant].latency_s
        approx, exact = (
            m.stats[("mean_latency", None)][arm],
            m.stats[("mean_latency_exact", None)][arm],
        )
        assert isinstance(approx, Moments) and isinstance(exact, Moments)
        assert exact.n == len(x) and math.isclose(exact.mean, x.mean(), rel_tol=1e-9)
        assert math.isclose(approx.mean, x.mean(), rel_tol=0.05)
        assert math.isclose(approx.variance, x.var(), rel_tol=0.25)
        # between-interval estimate from 12 five-minute means: within a factor of two
        assert x.var() / 2 < exact.variance < x.var() * 2
    assert "[range, step 300s]" in m.queries["mean_latency_exact"]
    # Alone, the _count increase gives the gate its request counts (no "no data" hold).
    alone = source.measure(make_request(sum_count, end=at(1)))
    assert alone.arm_counts[None] == {
        arm: int((frame.variant == variant).sum())
        for arm, variant in (("control", "v1"), ("canary", "v2"))
    }


def test_unreachable_server_is_a_backend_error() -> None:
    source = PrometheusSource("prom", f"http://127.0.0.1:{free_port()}", backoff=0.01)
    with pytest.raises(BackendError, match="cannot reach"):
        source.measure(make_request(metric()))
    assert source.calls == 3


def test_cli_gate_against_prometheus(
    ws: Workspace, prometheus_url: str, traffic: Traffic, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws.playbook.write_text(PLAYBOOK.format(url="${PROM_URL}", log=traffic.log, **PROM_FIELDS))
    monkeypatch.setenv("PROM_URL", prometheus_url)  # the CLI's environment copies ours
    assert ws.run("start", str(ws.playbook), now=T0).code == 0
    early = ws.run("--json", "check", "prom-answers", now=at(1))
    assert early.code == 0, early.out + early.err
    late = ws.run("--json", "check", "prom-answers", now=at(3))
    assert late.code == 10, late.out + late.err
    data = late.json()
    assert data["verdict"] == "fail" and data["decision"] == "rollback"
    row = next(r for r in data["metrics"] if r["name"] == "error_rate" and not r["segment"])
    assert row["verdict"] == "fail" and "increase(llm_requests_total" in row["query"]
    monkeypatch.setenv("PROM_URL", f"http://127.0.0.1:{free_port()}")  # the server is gone
    down = ws.run("--json", "check", "prom-answers", now=at(3))
    # the first backend error holds; it counts toward the consecutive-error limit
    assert (down.code, down.json()["verdict"]) == (11, "inconclusive"), down.out
    assert "cannot reach" in " ".join(down.json()["reasons"])


# ---------------------------------------------------------------- faults (MockTransport)


def metric(**fields: Any) -> Metric:
    base: dict[str, Any] = {
        "name": "error_rate",
        "group": "technical",
        "source": "prom",
        "kind": "proportion",
        "query": COUNTER,
        "event": 'status="error"',
        "worse": "higher",
        "margin": {"absolute": 0.01},
    }
    base.update(fields)
    return Metric(**base)


def make_request(
    *metrics: Metric,
    end: datetime | None = None,
    dimensions: tuple[str, ...] = (),
    scope: expr.Node | None = None,
) -> MeasureRequest:
    return MeasureRequest(
        metrics=metrics,
        start=T0,
        end=end or at(1),
        control="v1",
        canary="v2",
        dimensions=dimensions,
        scope=scope,
    )


def vector(*series: tuple[dict[str, str], str]) -> dict[str, Any]:
    return {
        "status": "success",
        "data": {
            "resultType": "vector",
            "result": [{"metric": labels, "value": [1.0, v]} for labels, v in series],
        },
    }


def mocked(handler: Callable[[httpx.Request], httpx.Response], **kw: Any) -> PrometheusSource:
    return PrometheusSource(
        "prom",
        "http://prometheus.test",
        backoff=0.001,
        transport=httpx.MockTransport(handler),
        **kw,
    )


def answering(body: Any, status: int = 200) -> Callable[[httpx.Request], httpx.Response]:
    def handler(request: httpx.Request) -> httpx.Response:
        if isinstance(body, str):
            return httpx.Response(status, text=body)
        return httpx.Response(status, json=body)

    return handler


def test_500_storm_is_retried_then_an_error() -> None:
    source = mocked(answering("upstream overloaded", 503), retries=2)
    m = source.measure(make_request(metric()))
    assert source.calls == 3  # the first try and two retries
    assert "HTTP 503" in m.errors["error_rate"] and "upstream overloaded" in m.errors["error_rate"]
    assert ("error_rate", None) not in m.stats


def test_500_then_success_recovers() -> None:
    answers = [
        httpx.Response(500, text="busy"),
        httpx.Response(
            200,
            json=vector(
                ({"variant": "v1", "status": "ok"}, "90"),
                ({"variant": "v1", "status": "error"}, "10"),
                ({"variant": "v2", "status": "ok"}, "20"),
            ),
        ),
    ]
    source = mocked(lambda request: answers.pop(0))
    m = source.measure(make_request(metric()))
    assert source.calls == 2 and not m.errors
    assert m.stats[("error_rate", None)] == {
        "control": Proportion(100, 10),
        "canary": Proportion(20, 0),
    }


def test_401_is_not_retried_and_the_token_is_not_shown(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("authorization", ""))
        return httpx.Response(401, text="unauthorized")

    monkeypatch.setenv("PROM_TOKEN", "s3cret-token")
    path = tmp_path / "p.yaml"
    path.write_text(
        PLAYBOOK.format(url="http://prometheus.test", log="x.parquet", **PROM_FIELDS).replace(
            "timeout: 5s", "timeout: 5s, bearer_token_env: PROM_TOKEN"
        )
    )
    source = build_source("prom", load_playbook(path))
    assert isinstance(source, PrometheusSource)
    source.transport = httpx.MockTransport(handler)
    m = source.measure(make_request(metric()))
    assert seen == ["Bearer s3cret-token"]  # one try, with the token from the environment
    assert "HTTP 401" in m.errors["error_rate"]
    assert "s3cret" not in m.errors["error_rate"] + m.queries["error_rate"]


def test_basic_auth_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        PLAYBOOK.format(url="http://prometheus.test", log="x.parquet", **PROM_FIELDS).replace(
            "timeout: 5s", "timeout: 5s, basic_auth_env: PROM_BASIC"
        )
    )
    loaded = load_playbook(path)
    with pytest.raises(InvalidInput, match="PROM_BASIC is not set"):
        build_source("prom", loaded)
    monkeypatch.setenv("PROM_BASIC", "reader:pa55")
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["authorization"])
        return httpx.Response(200, json=vector(({"variant": "v1", "status": "ok"}, "5")))

    source = build_source("prom", loaded)
    assert isinstance(source, PrometheusSource)
    source.transport = httpx.MockTransport(handler)
    source.measure(make_request(metric()))
    assert seen == ["Basic " + __import__("base64").b64encode(b"reader:pa55").decode()]


def test_tls_options(tmp_path: Path) -> None:
    base = PLAYBOOK.format(url="https://prometheus.test", log="x.parquet", **PROM_FIELDS)
    path = tmp_path / "p.yaml"
    path.write_text(base.replace("timeout: 5s", "timeout: 5s, tls_verify: certs/ca.pem"))
    with pytest.raises(InvalidInput, match="no CA bundle"):
        build_source("prom", load_playbook(path))
    path.write_text(base.replace("timeout: 5s", "timeout: 5s, tls_verify: false"))
    source = build_source("prom", load_playbook(path))
    assert isinstance(source, PrometheusSource) and source.verify is False


def test_timeout_is_an_error_not_a_crash() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("read timed out", request=request)

    source = mocked(handler)
    m = source.measure(make_request(metric()))
    assert "timed out" in m.errors["error_rate"] and source.calls == 1


@pytest.mark.parametrize(
    ("body", "status", "expected"),
    [
        ("<html>gateway</html>", 200, "not JSON"),
        (
            {"status": "error", "errorType": "execution", "error": "query timed out"},
            422,
            "execution: query timed out",
        ),
        (vector(), 200, "empty result"),
        (vector(({"variant": "v1", "status": "ok"}, "NaN")), 200, "value nan"),
        (
            vector(
                ({"variant": "v1", "status": "ok", "pod": "a"}, "1"),
                ({"variant": "v1", "status": "ok", "pod": "b"}, "2"),
            ),
            200,
            "multiple series where one was expected (control, differing in pod)",
        ),
        (vector(({"variant": "v1"}, "10")), 200, "no series has the label 'status'"),
        ({"status": "success", "data": {"resultType": "matrix"}}, 200, "unexpected answer"),
    ],
)
def test_bad_answers_become_measurement_errors(body: Any, status: int, expected: str) -> None:
    m = mocked(answering(body, status)).measure(make_request(metric()))
    assert expected in m.errors["error_rate"], m.errors
    assert "llm_requests_total" in m.errors["error_rate"]  # the rendered query is shown
    result = gate.evaluate(
        playbook_for(metric()),
        0,
        {"prom": m},
        {},
        stage_started=T0,
        now=at(1),
        consecutive_errors=0,
    )
    assert result.verdict != "pass" and result.errors == 1


def test_histogram_without_le_is_an_error() -> None:
    body = vector(({"variant": "v1"}, "100"), ({"variant": "v2"}, "20"))
    quantile = metric(
        name="p95",
        kind="quantile",
        q=0.95,
        query=None,
        event=None,
        histogram=BUCKETS,
        margin={"relative": 0.1},
    )
    m = mocked(answering(body)).measure(make_request(quantile))
    assert "without an `le` label" in m.errors["p95"]


def test_ratio_and_incomplete_metrics_are_explained() -> None:
    ratio = metric(name="cost_per_task", kind="ratio", event=None)
    no_event = metric(name="errors_no_event", event=None)
    m = mocked(answering(vector())).measure(make_request(ratio, no_event))
    assert "not supported from prometheus" in m.errors["cost_per_task"]
    assert "needs `event`" in m.errors["errors_no_event"]


def test_unknown_placeholder_and_missing_variant_are_errors() -> None:
    typo = metric(query=COUNTER.replace("{{window}}", "{{windw}}"))
    no_arm = metric(name="no_arm", query="sum(increase(llm_requests_total[{{window}}]))")
    m = mocked(answering(vector())).measure(make_request(typo, no_arm))
    assert "unknown placeholder {{windw}}" in m.errors["error_rate"]
    assert "arms cannot be told apart" in m.errors["no_arm"]


def playbook_for(*metrics: Metric) -> Any:
    from rolloutctl.playbook.model import Playbook

    return Playbook.model_validate(
        {
            "rollout": "faults",
            "flag": FILE_FLAG,
            "sources": {"prom": {"kind": "prometheus", "url": "http://prometheus.test"}},
            "metrics": [m.model_dump(exclude_none=True) for m in metrics],
            "stages": [{"name": "c1", "traffic": 20, "min_duration": "1h"}],
        }
    )


# ---------------------------------------------------------------- pure parts


def test_to_histogram_keeps_counts_and_bounds() -> None:
    cumulative = {0.5: 10.0, 1.0: 60.0, 2.0: 95.0, math.inf: 100.0}
    hist = to_histogram(cumulative)
    assert hist.n == 100
    assert sum(c for b, c in hist.counts.items() if Histogram.midpoint(b) <= 0.5 * 1.01) == 10
    assert sum(c for b, c in hist.counts.items() if 0.5 < Histogram.lower_edge(b) <= 1.0) == 50
    assert 1.0 < hist.quantile(0.8) < 2.0
    assert hist.count_above(2.0) == 5  # the +Inf bucket sits just above the top bound


def test_to_histogram_against_raw_values() -> None:
    rng = np.random.default_rng(3)
    values = rng.lognormal(0, 0.6, 20_000)
    cumulative = {le: float((values <= le).sum()) for le in BOUNDS}
    cumulative[math.inf] = float(len(values))
    hist = to_histogram(cumulative)
    for q in (0.5, 0.9, 0.95, 0.99):
        truth = float(np.quantile(values, q))
        assert abs(math.log(hist.quantile(q) / truth)) < math.log(1.2) / 2


@pytest.mark.parametrize(
    ("text", "labels", "hit"),
    [
        ('status="error"', {"status": "error"}, True),
        ('status="error"', {"status": "errors"}, False),
        ('status=~"error|timeout"', {"status": "timeout"}, True),
        ('status=~"err"', {"status": "error"}, False),  # anchored, as in PromQL
        ('status!="ok", code=~"5.."', {"status": "error", "code": "503"}, True),
        ('{status!~"ok|skip"}', {"status": "skip"}, False),
        ('reason="a,b \\"c\\""', {"reason": 'a,b "c"'}, True),
    ],
)
def test_event_matchers(text: str, labels: dict[str, str], hit: bool) -> None:
    assert all(m.matches(labels) for m in parse_matchers(text)) is hit


@pytest.mark.parametrize("text", ["status", "status=error", 'status=="x"', ""])
def test_bad_event_matchers(text: str) -> None:
    with pytest.raises(ValueError):
        parse_matchers(text)


def test_rendering_pins_window_and_escapes_arm_names() -> None:
    source = PrometheusSource("prom", "http://prometheus.test")
    request = MeasureRequest(
        metrics=(),
        start=T0,
        end=T0 + timedelta(hours=3, minutes=15),
        control="gpt-4.1",
        canary='new"one',
    )
    text = source.render(
        'x{model=~"{{variant}}"}[{{window}}] {{start}} {{end}} by ({{by}})',
        request,
        ["model", "category"],
        None,
    )
    assert text == (
        f'x{{model=~"gpt-4\\\\.1|new\\"one"}}[11700s] {int(T0.timestamp())} '
        f"{int(T0.timestamp()) + 11700} by (model, category)"
    )
    assert source.render('x{m="{{variant}}"}', request, [], "canary") == 'x{m="new\\"one"}'


def test_plan_shows_the_exact_queries_without_sending_any(tmp_path: Path) -> None:
    """`plan` renders what a gate would send (nothing is listening on this port)."""
    import json
    import subprocess
    import sys

    from tests.conftest import cli_env

    playbook = tmp_path / "prom.yaml"
    playbook.write_text(
        "rollout: prom-plan\n"
        "flag: {backend: file, path: f.json, key: m, control: v1, canary: v2}\n"
        "sources: {prom: {kind: prometheus, url: 'http://127.0.0.1:9', retries: 0}}\n"
        "segments: {dimensions: [category]}\n"
        "metrics:\n"
        "  - {name: error_rate, group: technical, source: prom, kind: proportion,\n"
        '     query: \'sum by ({{by}}) (increase(llm_requests_total{variant=~"{{variant}}"}'
        "[{{window}}]))', event: 'status=\"error\"', worse: higher, margin: {absolute: 0.01}}\n"
        "stages:\n"
        "  - {name: c1, traffic: 10, min_duration: 2h}\n"
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "rolloutctl",
            "--json",
            "--now",
            "2026-03-02T12:00:00Z",
            "plan",
            str(playbook),
        ],
        capture_output=True,
        text=True,
        env=cli_env(tmp_path),
        cwd=tmp_path,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    (query,) = json.loads(proc.stdout)["stages"][0]["metrics"][0]["queries"]
    assert query == (
        'sum by (variant, category, status) (increase(llm_requests_total{variant=~"v1|v2"}[7200s]))'
    )
    # A token variable that is not set only costs the query text: plan sends nothing anyway.
    text = playbook.read_text().replace("retries: 0}", "retries: 0, bearer_token_env: PROM_UNSET}")
    playbook.write_text(text)
    unset = subprocess.run(
        [sys.executable, "-m", "rolloutctl", "--json", "plan", str(playbook)],
        capture_output=True,
        text=True,
        env=cli_env(tmp_path),
        cwd=tmp_path,
        timeout=60,
    )
    assert unset.returncode == 0, unset.stderr
    assert "queries" not in json.loads(unset.stdout)["stages"][0]["metrics"][0]
