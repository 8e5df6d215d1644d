"""Prometheus templates as text: rendering (dotted OpenTelemetry labels written the
Prometheus 3 way, arm values mapped by `variants:`) and what `validate` refuses before any
query is sent. The Debian Prometheus the other tests start is 2.42, which cannot run quoted
label names: their rendering is checked as text here, the rest against the server."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rolloutctl.errors import PlaybookInvalid
from rolloutctl.metrics.base import MeasureRequest
from rolloutctl.metrics.prometheus import PrometheusSource, parse_matchers
from rolloutctl.metrics.prometheus.promql import (
    arm_matchers,
    label_list,
    label_name,
    template_problems,
)
from rolloutctl.playbook.load import load_playbook
from rolloutctl.playbook.model import Metric
from tests.metrics.conftest import T0
from tests.metrics.test_prometheus import BUCKETS, COUNTER, metric, vector

OTEL = (
    "sum by ({{by}}) (increase(gen_ai_client_operation_duration_seconds_count"
    '{"gen_ai.request.model"=~"{{variant}}", "gen_ai.operation.name"="chat"}[{{window}}]))'
)


def otel_request(
    metrics: tuple[Metric, ...] = (), dimensions: tuple[str, ...] = ()
) -> MeasureRequest:
    end = T0 + timedelta(hours=1)
    return MeasureRequest(metrics, T0, end, "v1", "v2", dimensions=dimensions)


def otel_source(**extra: Any) -> PrometheusSource:
    variants = {"v1": "answer-model-v1", "v2": "answer-model-v2"}
    return PrometheusSource("prom", "http://prometheus.test", variants=variants, **extra)


# ---------------------------------------------------------------- rendering


def test_dotted_labels_are_quoted_in_the_arm_matcher_and_in_by() -> None:
    text = otel_source().render(OTEL, otel_request(), ["gen_ai.operation.name", "language"])
    assert text == (
        'sum by ("gen_ai.request.model", "gen_ai.operation.name", language) '
        "(increase(gen_ai_client_operation_duration_seconds_count"
        '{"gen_ai.request.model"=~"answer-model-v1|answer-model-v2", '
        '"gen_ai.operation.name"="chat"}[3600s]))'
    )


def test_a_bare_dotted_arm_label_is_written_quoted_per_arm() -> None:
    template = (
        "sum by ({{by}}) (increase(gen_ai_client_operation_duration_seconds_bucket"
        '{gen_ai.request.model="{{variant}}"}[{{window}}]))'
    )
    text = otel_source().render(template, otel_request(), ["le"], "canary")
    assert text == (
        'sum by ("gen_ai.request.model", le) (increase('
        'gen_ai_client_operation_duration_seconds_bucket{"gen_ai.request.model"='
        '"answer-model-v2"}[3600s]))'
    )


def test_control_and_canary_placeholders_are_the_mapped_values() -> None:
    template = 'x{model=~"{{variant}}"} and on() y{base="{{control}}", new="{{canary}}"}'
    text = otel_source().render(template, otel_request(), [])
    assert text == (
        'x{model=~"answer-model-v1|answer-model-v2"} and on() '
        'y{base="answer-model-v1", new="answer-model-v2"}'
    )


@pytest.mark.parametrize(
    ("name", "written"),
    [
        ("model", "model"),
        ("gen_ai.operation.name", '"gen_ai.operation.name"'),
        ("http.status-code", '"http.status-code"'),
        ('we"ird', '"we\\"ird"'),
        ("9lives", '"9lives"'),
    ],
)
def test_label_names(name: str, written: str) -> None:
    assert label_name(name) == written


def test_dotted_event_labels_are_parsed_and_matched() -> None:
    (quoted, bare) = parse_matchers(
        '"gen_ai.response.finish_reasons"="error", gen_ai.system=~"o.*"'
    )
    assert quoted.label == "gen_ai.response.finish_reasons" and bare.label == "gen_ai.system"
    assert quoted.matches({"gen_ai.response.finish_reasons": "error"})
    assert bare.matches({"gen_ai.system": "openai"}) and not bare.matches({"gen_ai.system": "x"})


def test_otel_series_are_told_apart_by_the_mapped_model_label() -> None:
    """An answer labelled the OpenTelemetry way: arms from `gen_ai.request.model` through
    `variants:`, segments from a dotted dimension, events from a dotted event label."""
    sent: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(httpx.QueryParams(request.content.decode())["query"])
        model, op, status = "gen_ai.request.model", "gen_ai.operation.name", "error.type"
        return httpx.Response(
            200,
            json=vector(
                ({model: "answer-model-v1", op: "chat", status: "none"}, "900"),
                ({model: "answer-model-v1", op: "chat", status: "timeout"}, "100"),
                ({model: "answer-model-v1", op: "embed", status: "none"}, "500"),
                ({model: "answer-model-v2", op: "chat", status: "none"}, "180"),
                ({model: "answer-model-v2", op: "chat", status: "timeout"}, "20"),
                ({model: "other-model", op: "chat", status: "none"}, "7"),
            ),
        )

    errors = metric(
        query=OTEL.replace(', "gen_ai.operation.name"="chat"', ""), event='"error.type"!="none"'
    )
    source = otel_source(transport=httpx.MockTransport(handler), backoff=0.001)
    m = source.measure(otel_request(metrics=(errors,), dimensions=("gen_ai.operation.name",)))
    assert not m.errors, m.errors
    assert sent == [
        'sum by ("gen_ai.request.model", "gen_ai.operation.name", "error.type") (increase('
        'gen_ai_client_operation_duration_seconds_count{"gen_ai.request.model"=~'
        '"answer-model-v1|answer-model-v2"}[3600s]))'
    ]
    overall = m.stats[("error_rate", None)]
    assert (overall["control"].n, overall["canary"].n) == (1500, 200)
    chat = m.stats[("error_rate", ("gen_ai.operation.name", "chat"))]["control"]
    assert chat.n == 1000 and getattr(chat, "events", None) == 100


# ---------------------------------------------------------------- validate

PLAYBOOK = """\
rollout: prom-check
flag: {{backend: file, path: f.json, key: k, control: v1, canary: v2}}
sources:
  prom: {{kind: prometheus, url: "http://127.0.0.1:9", variants: {{v1: answer-model-v1}}}}
segments: {{dimensions: [{dims}]}}
metrics:
  - {{name: m, group: technical, source: prom, worse: higher, margin: {{absolute: 0.01}}, {fields}}}
stages:
  - {{name: c1, traffic: 10, min_duration: 1h}}
"""


def problems_of(tmp_path: Path, fields: str, dims: str = "") -> list[str]:
    path = tmp_path / "p.yaml"
    path.write_text(PLAYBOOK.format(fields=fields, dims=dims))
    try:
        load_playbook(path)
    except PlaybookInvalid as exc:
        return exc.problems
    return []


def quoted(template: str) -> str:
    return "'" + template.replace("'", "''") + "'"


@pytest.mark.parametrize(
    ("fields", "dims"),
    [
        (f"kind: proportion, query: {quoted(COUNTER)}, event: 'status=\"error\"'", "category"),
        (f"kind: quantile, q: 0.95, histogram: {quoted(BUCKETS)}", "category, language"),
        (f'kind: proportion, query: {quoted(OTEL)}, event: \'"error.type"!="none"\'', ""),
        (
            "kind: mean, query: "
            + quoted(COUNTER.replace("llm_requests_total", "x_sum"))
            + ", total: "
            + quoted(COUNTER.replace("llm_requests_total", "x_count")),
            "",
        ),
        (  # an explicit list that keeps what is needed works without segments
            "kind: proportion, event: 'status=\"error\"', query: "
            + quoted(COUNTER.replace("{{by}}", "variant, status")),
            "",
        ),
    ],
)
def test_templates_that_can_work_are_valid(tmp_path: Path, fields: str, dims: str) -> None:
    assert problems_of(tmp_path, fields, dims) == []


@pytest.mark.parametrize(
    ("template", "dims", "expected"),
    [
        (
            'sum by ({{by}}) (increase(llm_requests_total{model="x"}[{{window}}]))',
            "",
            'metrics[0].query: no arm matcher such as variant=~"{{variant}}"',
        ),
        (
            COUNTER.replace("sum by ({{by}}) ", "sum by (variant, status) "),
            "category",
            "metrics[0].query: segments are used (category) but the template has no {{by}}",
        ),
        (
            'sum(increase(llm_requests_total{variant=~"{{variant}}"}[{{window}}]))',
            "",
            "metrics[0].query: `sum(...)` drops labels the source needs (`variant` is the arm "
            "label; `status` is matched by `event`): group with sum by ({{by}}) (...)",
        ),
        (
            COUNTER.replace("[{{window}}]))", "[{{window}}])"),
            "",
            "metrics[0].query: unbalanced brackets: `(` at character 17 is never closed",
        ),
        (
            COUNTER.replace('"}[', '"['),
            "",
            "metrics[0].query: unbalanced brackets: `)` at character 80 closes `{`",
        ),
        (
            COUNTER.replace("increase(", "rate("),
            "",
            "metrics[0].query: rate() gives per-second rates, but every value of this "
            "template is read as a count",
        ),
        (
            COUNTER.replace("{{window}}", "{{windw}}"),
            "",
            "metrics[0].query: unknown placeholder {{windw}}",
        ),
    ],
)
def test_templates_that_cannot_work_are_refused(
    tmp_path: Path, template: str, dims: str, expected: str
) -> None:
    fields = f"kind: proportion, query: {quoted(template)}, event: 'status=\"error\"'"
    problems = problems_of(tmp_path, fields, dims)
    assert len(problems) == 1 and expected in problems[0], problems
    assert problems[0].startswith(f"{tmp_path / 'p.yaml'}:7:")  # the query's line


def test_kinds_prometheus_cannot_measure_are_refused(tmp_path: Path) -> None:
    assert (
        "a ratio cannot be measured from prometheus"
        in problems_of(tmp_path, f"kind: ratio, query: {quoted(COUNTER)}")[0]
    )
    (only_sum,) = problems_of(tmp_path, f"kind: mean, query: {quoted(COUNTER)}")
    assert "metrics[0].total: a mean from prometheus needs `histogram`" in only_sum
    (bad_event,) = problems_of(tmp_path, f"kind: proportion, query: {quoted(COUNTER)}, event: oops")
    assert "metrics[0].event: 'oops': not a label matcher" in bad_event


def test_variants_must_map_to_distinct_values(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    text = PLAYBOOK.format(
        fields=f"kind: proportion, query: {quoted(COUNTER)}, event: 'a=\"b\"'", dims=""
    )
    path.write_text(text.replace("{v1: answer-model-v1}", "{v1: m, v2: m}"))
    with pytest.raises(PlaybookInvalid, match="two variants map to the same label value"):
        load_playbook(path)


def test_the_readme_templates_are_valid() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("## Prometheus", 1)[1].split("\n## ", 1)[0]
    found = [
        line.split("'", 1)[1].rsplit("'", 1)[0]
        for line in section.splitlines()
        if line.strip().startswith(("query: '", "histogram: '", "total: '"))
    ]
    assert found
    for template in found:
        keep = {"le": "the bucket bound"} if "_bucket" in template else {}
        assert template_problems(template, keep=keep) == [], template


@given(
    st.lists(
        st.text(st.characters(codec="utf-8", exclude_categories=["Cs", "Cc"]), min_size=1),
        min_size=1,
        max_size=4,
    )
)
def test_any_label_name_renders_to_a_matcher_that_lexes_back(names: list[str]) -> None:
    """Whatever the arm label is called, the rendered matcher is found again under that
    name (quoting and escaping round-trip), and `{{by}}` lists each name once."""
    for name in names:
        (found,) = arm_matchers(f'x{{{label_name(name)}=~"{{{{variant}}}}"}}')
        assert found.label == name
    assert label_list([*names, *names]) == label_list(names)
