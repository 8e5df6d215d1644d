"""HTTP source: a real local JSON service for the contract, httpx.MockTransport for the faults
a real server cannot be made to produce on demand."""

from __future__ import annotations

import json
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rolloutctl.errors import BackendError, InvalidInput
from rolloutctl.metrics.base import MeasureRequest
from rolloutctl.metrics.http import AnswerError, HttpSource, find, statistic
from rolloutctl.playbook.load import load_playbook
from rolloutctl.playbook.model import Metric
from rolloutctl.stats.sufficient import Histogram, Moments, Proportion

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
END = START + timedelta(hours=2)
SECRET = "s3cr3t-token-value"

# What the quality service knows, per variant and category ("" = all traffic).
STATS: dict[tuple[str, str], dict[str, Any]] = {
    ("v1", ""): {"errors": (12, 4810), "cost": (4810, 5.7312, 0.0071)},
    ("v2", ""): {"errors": (19, 2031), "cost": (2031, 2.0107, 0.0021)},
    ("v1", "health"): {"errors": (3, 610), "cost": (610, 0.7503, 0.0010)},
    ("v2", "health"): {"errors": (4, 255), "cost": (255, 0.2601, 0.0003)},
    ("v1", "billing"): {"errors": (1, 980), "cost": (980, 1.1, 0.0013)},
    ("v2", "billing"): {"errors": (0, 401), "cost": (401, 0.41, 0.0004)},
}


def _answer(variant: str, category: str, start: str, end: str) -> dict[str, Any]:
    s = STATS[(variant, category)]
    errors, total = s["errors"]
    n, total_cost, cost_sq = s["cost"]
    return {
        "variant": variant,
        "window": {"start": start, "end": end},
        "metrics": {
            "error_rate": {"events": errors, "total": total},
            "cost_per_request": {"n": n, "sum": total_cost, "sum_squares": cost_sq},
            "latency_ms": {
                "cumulative": True,
                "buckets": [
                    [250, total // 10],
                    [500, total // 2],
                    [1000, total - 5],
                    [2500, total - 1],
                    ["+Inf", total],
                ],
            },
        },
    }


class _Handler(BaseHTTPRequestHandler):
    seen: list[dict[str, Any]]

    def log_message(self, *args: Any) -> None:  # keep the test output clean
        pass

    def _reply(self, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
        self.seen.append({"path": url.path, "query": query, "auth": self.headers["Authorization"]})
        if self.headers["Authorization"] != f"Bearer {SECRET}":
            self._reply(401, {"error": "missing or wrong token"})
        elif (
            url.path != "/v1/stats"
            or (query.get("variant"), query.get("category", "")) not in STATS
        ):
            self._reply(404, {"error": f"unknown {url.path} {query}"})
        else:
            self._reply(
                200,
                _answer(query["variant"], query.get("category", ""), query["from"], query["to"]),
            )

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.seen.append({"path": self.path, "body": body, "auth": self.headers["Authorization"]})
        answer = _answer(body["variant"], "", body["from"], body["to"])
        self._reply(
            200,
            {"result": [{"metric": body["metric"], "stats": answer["metrics"][body["metric"]]}]},
        )


@pytest.fixture
def service() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    seen: list[dict[str, Any]] = []
    handler = type("Handler", (_Handler,), {"seen": seen})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _metric(**kw: object) -> Metric:
    base = {
        "group": "technical",
        "source": "quality",
        "worse": "higher",
        "margin": {"relative": 0.1},
    }
    return Metric.model_validate({**base, **kw})


ERROR_RATE = _metric(name="error_rate", kind="proportion", query="$.metrics.error_rate")
COST = _metric(name="cost_per_request", kind="mean", query="$.metrics.cost_per_request")
LATENCY = _metric(name="latency_ms", kind="quantile", q=0.95, query="$.metrics.latency_ms")


def _request(*metrics: Metric, dims: tuple[str, ...] = ()) -> MeasureRequest:
    return MeasureRequest(
        metrics=metrics or (ERROR_RATE, COST, LATENCY),
        start=START,
        end=END,
        control="v1",
        canary="v2",
        dimensions=dims,
    )


GET_URL = "/v1/stats?variant={{variant}}&from={{start}}&to={{end}}&category={{segment.category}}"


def _playbook(tmp_path: Path, source: str) -> Path:
    path = tmp_path / "playbook.yaml"
    path.write_text(
        "rollout: answers-v2\n"
        "flag: {backend: file, path: flags.json, key: answer-model, control: v1, canary: v2}\n"
        f"sources:\n  quality: {source}\n"
        "metrics:\n"
        "  - {name: error_rate, group: technical, source: quality, kind: proportion,\n"
        "     query: $.metrics.error_rate, worse: higher, margin: {absolute: 0.01}}\n"
        "stages:\n  - {name: c1, traffic: 30, min_duration: 1h}\n"
    )
    return path


def _from_playbook(tmp_path: Path, source: str) -> HttpSource:
    loaded = load_playbook(_playbook(tmp_path, source))
    built = HttpSource.from_spec("quality", loaded.playbook.sources["quality"], loaded)
    return built


# ------------------------------------------------------------------ against a real service


def test_one_request_per_arm_serves_every_metric(
    service: tuple[str, list[dict[str, Any]]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base, seen = service
    monkeypatch.setenv("QUALITY_URL", base)
    monkeypatch.setenv("QUALITY_TOKEN", SECRET)
    source = _from_playbook(
        tmp_path,
        f'{{kind: http, url: "${{QUALITY_URL}}{GET_URL}", '
        '"headers": {"Authorization": "Bearer ${QUALITY_TOKEN}"}, timeout: 5s}',
    )
    out = source.measure(_request())
    assert out.errors == {}
    assert len(seen) == 2 and source.calls == 2
    assert [s["query"]["variant"] for s in seen] == ["v1", "v2"]
    assert seen[0]["query"]["from"] == "2026-03-02T09:00:00Z"
    assert seen[0]["query"]["to"] == "2026-03-02T11:00:00Z"
    assert seen[0]["query"]["category"] == ""  # overall: the segment placeholder is empty
    assert out.stats[("error_rate", None)] == {
        "control": Proportion(4810, 12),
        "canary": Proportion(2031, 19),
    }
    assert out.stats[("cost_per_request", None)]["canary"] == Moments(2031, 2.0107, 0.0021)
    latency = out.stats[("latency_ms", None)]["control"]
    assert isinstance(latency, Histogram) and latency.n == 4810
    # 481 at <= 250, 1924 at <= 500, 2400 at <= 1000, 4 at <= 2500, 1 above: p95 is 1000
    assert latency.quantile(0.95) == pytest.approx(1000, rel=0.01)
    assert out.arm_counts[None] == {"control": 4810, "canary": 2031}
    query = out.queries["error_rate"]
    assert f"GET {base}/v1/stats?variant=v1&from=2026-03-02T09%3A00%3A00Z" in query
    assert "json_path: $.metrics.error_rate" in query
    assert SECRET not in json.dumps([out.queries, out.errors, out.notes])


def test_segment_placeholder_asks_once_per_listed_value(
    service: tuple[str, list[dict[str, Any]]],
) -> None:
    base, seen = service
    source = HttpSource(
        "quality",
        base + GET_URL,
        headers={"Authorization": f"Bearer {SECRET}"},
        segments={"category": ["health", "billing"]},
    )
    out = source.measure(_request(ERROR_RATE, COST, dims=("category", "device")))
    assert out.errors == {}
    assert len(seen) == 6  # 2 arms x (all, health, billing); device is not in the template
    assert out.stats[("error_rate", ("category", "health"))] == {
        "control": Proportion(610, 3),
        "canary": Proportion(255, 4),
    }
    assert out.arm_counts[("category", "billing")] == {"control": 980, "canary": 401}
    assert "(+ 4 segment requests)" in out.queries["error_rate"]


def test_post_body_template_per_metric(service: tuple[str, list[dict[str, Any]]]) -> None:
    base, seen = service
    body = (
        '{"variant": "{{variant}}", "metric": "{{metric}}", "from": "{{start}}", "to": "{{end}}"}'
    )
    source = HttpSource(
        "quality",
        base + "/v1/query",
        method="POST",
        body=body,
        json_path="$.result[0].stats",
        headers={"Authorization": f"Bearer {SECRET}"},
    )
    # no `query:` on these metrics: the source's json_path finds their statistics
    error_rate = _metric(name="error_rate", kind="proportion", event="status = 'error'")
    cost = _metric(name="cost_per_request", kind="mean", value="cost_usd")
    out = source.measure(_request(error_rate, cost))
    assert out.errors == {}
    assert len(seen) == 4  # {{metric}} in the body: one request per metric and arm
    assert seen[1]["body"] == {
        "variant": "v2",
        "metric": "error_rate",
        "from": "2026-03-02T09:00:00Z",
        "to": "2026-03-02T11:00:00Z",
    }
    assert out.stats[("error_rate", None)]["canary"] == Proportion(2031, 19)
    assert out.stats[("cost_per_request", None)]["control"] == Moments(4810, 5.7312, 0.0071)
    assert '"metric": "cost_per_request"' in out.queries["cost_per_request"]
    assert out.queries["cost_per_request"].startswith(f"POST {base}/v1/query\n")


def test_missing_path_and_wrong_shape_are_that_metrics_error(
    service: tuple[str, list[dict[str, Any]]],
) -> None:
    base, _ = service
    source = HttpSource("quality", base + GET_URL, headers={"Authorization": f"Bearer {SECRET}"})
    typo = _metric(name="timeout_rate", kind="proportion", query="$.metrics.timeout_rate")
    shape = _metric(name="cost_as_rate", kind="proportion", query="$.metrics.cost_per_request")
    out = source.measure(_request(ERROR_RATE, typo, shape))
    assert out.stats[("error_rate", None)]["control"] == Proportion(4810, 12)
    assert "no 'timeout_rate' at $.metrics" in out.errors["timeout_rate"]
    assert "'events' must be a count, got None" in out.errors["cost_as_rate"]
    assert f"GET {base}/v1/stats?variant=v1" in out.errors["cost_as_rate"]
    assert '"variant": "v1"' in out.errors["cost_as_rate"]  # the start of the answer
    assert not any(k[0] in ("timeout_rate", "cost_as_rate") for k in out.stats)


def test_wrong_token_is_an_error_without_retrying(
    service: tuple[str, list[dict[str, Any]]],
) -> None:
    base, seen = service
    source = HttpSource(
        "quality", base + GET_URL, headers={"Authorization": "Bearer expired"}, backoff=0
    )
    out = source.measure(_request(ERROR_RATE))
    assert "HTTP 401 (check the source's headers)" in out.errors["error_rate"]
    assert "missing or wrong token" in out.errors["error_rate"]
    assert len(seen) == 2  # one try per arm, no retry on 4xx
    assert out.stats == {}


# ------------------------------------------------------------------ faults (MockTransport)


def _source(handler: Callable[[httpx.Request], httpx.Response], **kw: Any) -> HttpSource:
    return HttpSource(
        "quality",
        "http://quality.internal" + GET_URL,
        backoff=0,
        transport=httpx.MockTransport(handler),
        **kw,
    )


def test_500_storm_gives_up_after_the_retries() -> None:
    source = _source(lambda r: httpx.Response(503, text="upstream overloaded"), retries=3)
    out = source.measure(_request(ERROR_RATE, COST))
    assert source.calls == 8  # 4 tries per arm, the answer shared by both metrics
    assert "HTTP 503: upstream overloaded (after 4 tries)" in out.errors["error_rate"]
    assert "http://quality.internal/v1/stats?variant=v1" in out.errors["cost_per_request"]
    assert out.stats == {}


def test_a_passing_5xx_is_retried() -> None:
    answers = iter(
        [httpx.Response(502, text="bad gateway")]
        + [httpx.Response(200, json=_answer(v, "", "a", "b")) for v in ("v1", "v2")]
    )
    source = _source(lambda r: next(answers))
    out = source.measure(_request(ERROR_RATE))
    assert out.errors == {} and source.calls == 3
    assert out.stats[("error_rate", None)]["canary"] == Proportion(2031, 19)


def test_timeout_is_an_error_and_not_retried() -> None:
    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    source = _source(slow, timeout=2.5)
    out = source.measure(_request(ERROR_RATE))
    assert "no answer within 2.5s" in out.errors["error_rate"]
    assert source.calls == 2


def test_garbage_json_is_an_error_with_the_start_of_the_answer() -> None:
    source = _source(lambda r: httpx.Response(200, text="<html>" + "x" * 5000 + "</html>"))
    out = source.measure(_request(ERROR_RATE))
    message = out.errors["error_rate"]
    assert "HTTP 200, not JSON: <html>xxx" in message
    assert "(5013 chars)" in message and len(message) < 600


def test_unreachable_service_raises_backend_error() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    source = _source(refuse, retries=2)
    with pytest.raises(BackendError, match=r"after 3 tries \(ConnectError\)"):
        source.measure(_request(ERROR_RATE))
    assert source.calls == 3


def test_events_above_total_are_refused() -> None:
    bad = {"metrics": {"error_rate": {"events": 9, "total": 4}}}
    source = _source(lambda r: httpx.Response(200, json=bad))
    out = source.measure(_request(ERROR_RATE))
    assert "events (9) exceed total (4)" in out.errors["error_rate"]


def test_unknown_placeholder_is_invalid_input(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match=r"unknown placeholder \{\{variantt\}\}"):
        _from_playbook(tmp_path, '{kind: http, url: "http://q/stats?v={{variantt}}"}')


def test_missing_environment_variable_is_invalid_input(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("QUALITY_TOKEN_UNSET", raising=False)
    with pytest.raises(InvalidInput, match="QUALITY_TOKEN_UNSET is not set"):
        _from_playbook(
            tmp_path,
            '{kind: http, url: "http://q/s", '
            '"headers": {"Authorization": "Bearer ${QUALITY_TOKEN_UNSET}"}}',
        )


# ------------------------------------------------------------------ the answer contract


def test_find_walks_keys_and_indexes() -> None:
    doc = {"data": {"result": [{"stats": {"events": 1}}, {"stats": {"events": 2}}]}}
    assert find(doc, "$.data.result[1].stats") == {"events": 2}
    assert find(doc, "data.result[0].stats.events") == 1
    with pytest.raises(AnswerError, match=r"no \[5\] at \$\.data\.result"):
        find(doc, "$.data.result[5]")
    with pytest.raises(AnswerError, match="not a dotted path"):
        find(doc, "$..data")


def test_plain_buckets_place_counts_at_upper_bounds() -> None:
    stat = statistic(LATENCY, {"buckets": [[100, 90], [400, 9], ["+Inf", 1]]})
    assert isinstance(stat, Histogram) and stat.n == 100
    assert stat.quantile(0.5) == pytest.approx(100, rel=0.01)
    assert stat.quantile(0.99) == pytest.approx(400, rel=0.01)
    assert stat.quantile(1.0) == pytest.approx(400, rel=0.01)  # +Inf at the last finite bound
    with pytest.raises(AnswerError, match="decrease"):
        statistic(LATENCY, {"cumulative": True, "buckets": [[100, 5], [200, 3]]})


keys = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_0123456789", min_size=1, max_size=8)


@given(
    st.lists(st.one_of(keys, st.integers(min_value=0, max_value=3)), min_size=1, max_size=6),
    st.integers(),
)
def test_find_returns_what_was_placed_at_the_path(steps: list[str | int], leaf: int) -> None:
    doc: Any = leaf
    path = ""
    for step in reversed(steps):
        doc = [None] * step + [doc] if isinstance(step, int) else {step: doc}
    for step in steps:
        path += f"[{step}]" if isinstance(step, int) else f".{step}"
    assert find(doc, "$" + path) == leaf
