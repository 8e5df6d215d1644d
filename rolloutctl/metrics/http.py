"""Any JSON web service as a metrics source (in the manner of Argo Rollouts' web metric).

The request: the source's `url` (and `body`, for POST) are templates. Placeholders:

  {{variant}}          the arm's variant name (the flag's control or canary)
  {{start}} {{end}}    the stage window, ISO 8601 UTC (`2026-03-02T09:00:00Z`), the same for
                       both arms
  {{window}}           the window's length in whole seconds
  {{segment.<dim>}}    a segment value; the overall request renders it empty ("all")
  {{metric}}           the metric's name

Values are percent-encoded in the URL and JSON-string-escaped in the body. One request is made
per arm, and per arm and segment value when a template names `{{segment.<dim>}}` (values from
the source's `segments:`, for dimensions the analysis asks for); templates that name
`{{metric}}` add one request per metric. Identical rendered requests are sent once.

The answer: JSON; the statistics of a metric are the object at its path: the metric's
`query:`, else the source's `json_path`, else `$.{{metric}}` (a dotted path with optional
`[index]`, `{{metric}}` allowed). The object holds sufficient statistics, never a finished
rate, so the gate can judge the difference with its own statistics:

  proportion   {"events": 12, "total": 4810}            events among total
  mean         {"n": 4810, "sum": 5731.2, "sum_squares": 9120.4}
  ratio        {"n", "sum_x", "sum_y", "sum_x2", "sum_y2", "sum_xy"}   per-unit sums
  quantile     {"buckets": [[0.25, 310], [0.5, 2200], ..., ["+Inf", 4]]}
               [upper bound, count] pairs, counts per bucket (add "cumulative": true for
               Prometheus-style running totals); each count sits at its bucket's upper
               bound, the +Inf bucket's at the largest finite bound (conservative to the
               service's bucket resolution)

An arm's sample count (for the sample-ratio check) is the largest n among its metrics.

Faults: 5xx answers and connection failures are retried (bounded, exponential backoff), 4xx
never; a timeout is not retried (a slow server would only be waited on longer). A request
that still fails, an answer that is not JSON, a missing path or a value of the wrong shape
becomes an error entry for each metric it serves, with the method, URL and the start of the
answer; a server that cannot be reached at all raises BackendError. Header values (often
secrets from `${ENV}`) never appear in queries, errors or notes."""

from __future__ import annotations

import json
import math
import re
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar

from rolloutctl import transport
from rolloutctl.durations import parse_duration
from rolloutctl.envvars import resolve_env
from rolloutctl.errors import BackendError, InvalidInput
from rolloutctl.metrics import retry
from rolloutctl.metrics.base import Measurement, MeasureRequest, SegmentKey
from rolloutctl.metrics.retry import short
from rolloutctl.playbook.load import LoadedPlaybook
from rolloutctl.playbook.model import HttpSpec, Metric
from rolloutctl.retrying import GaveUp
from rolloutctl.stats.sufficient import Histogram, Moments, Proportion, RatioMoments, Stat

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_.\-]*)\s*\}\}")
_SIMPLE = {"variant", "start", "end", "window", "metric"}
_PATH_STEP = re.compile(r"\.([^.\[\]]+)|\[(\d+)\]")


def placeholders(template: str) -> set[str]:
    return {m.group(1) for m in PLACEHOLDER.finditer(template)}


def render(template: str, values: dict[str, str], escape: Callable[[str], str]) -> str:
    def sub(match: re.Match[str]) -> str:
        return escape(values.get(match.group(1), ""))

    return PLACEHOLDER.sub(sub, template)


def _url_escape(value: str) -> str:
    return urllib.parse.quote(value, safe="")


def _json_escape(value: str) -> str:
    return json.dumps(value)[1:-1]


def _iso(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class AnswerError(ValueError):
    """The answer does not hold what the contract promises (message says what and where)."""


def find(document: Any, path: str) -> Any:
    """The value at a dotted JSON path (`$.a.b[0].c`); AnswerError when it is missing."""
    text = path.strip()
    text = text[1:] if text.startswith("$") else "." + text
    value, walked, position = document, "$", 0
    for match in _PATH_STEP.finditer(text):
        if match.start() != position:
            raise AnswerError(f"json_path {path!r} is not a dotted path like $.stats.error_rate")
        position = match.end()
        key, index = match.group(1), match.group(2)
        if key is not None:
            if not isinstance(value, dict) or key not in value:
                raise AnswerError(f"no {key!r} at {walked}")
            value, walked = value[key], f"{walked}.{key}"
        else:
            i = int(index)
            if not isinstance(value, list) or i >= len(value):
                raise AnswerError(f"no [{i}] at {walked}")
            value, walked = value[i], f"{walked}[{i}]"
    if position != len(text):
        raise AnswerError(f"json_path {path!r} is not a dotted path like $.stats.error_rate")
    return value


def _count(obj: dict[str, Any], key: str) -> int:
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise AnswerError(f"{key!r} must be a count, got {value!r}")
    if value < 0 or value != int(value):
        raise AnswerError(f"{key!r} must be a whole number >= 0, got {value!r}")
    return int(value)


def _real(obj: dict[str, Any], key: str) -> float:
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise AnswerError(f"{key!r} must be a finite number, got {value!r}")
    return float(value)


def statistic(metric: Metric, value: Any) -> Stat:
    """The sufficient statistic of one metric from the object the contract describes."""
    if not isinstance(value, dict):
        raise AnswerError(f"expected an object of statistics, got {short(json.dumps(value))}")
    if metric.kind == "proportion":
        events, total = _count(value, "events"), _count(value, "total")
        if events > total:
            raise AnswerError(f"events ({events}) exceed total ({total})")
        return Proportion(total, events)
    if metric.kind == "mean":
        return Moments(_count(value, "n"), _real(value, "sum"), _real(value, "sum_squares"))
    if metric.kind == "ratio":
        keys = ("sum_x", "sum_y", "sum_x2", "sum_y2", "sum_xy")
        return RatioMoments(_count(value, "n"), *(_real(value, k) for k in keys))
    return _histogram(value)


def _histogram(value: dict[str, Any]) -> Histogram:
    """A quantile metric's buckets, [[upper_bound, count], ...] (cumulative when it says so),
    onto the log-spaced buckets every source shares."""
    rows = _bucket_rows(value.get("buckets"))
    if value.get("cumulative") is True:
        rows = _decumulated(rows)
    finite = [u for u, _ in rows if math.isfinite(u)]
    counts: dict[int, int] = {}
    for upper, n in rows:
        if n == 0:
            continue
        if not finite:
            raise AnswerError("buckets have no finite upper bound")
        b = Histogram.bucket_of(upper if math.isfinite(upper) else max(finite))
        counts[b] = counts.get(b, 0) + n
    return Histogram(counts)


def _bucket_rows(buckets: Any) -> list[tuple[float, int]]:
    """(upper bound, count) pairs, sorted by bound; "+Inf" is infinity."""
    if not isinstance(buckets, list):
        raise AnswerError("a quantile metric needs 'buckets': [[upper_bound, count], ...]")
    rows: list[tuple[float, int]] = []
    for i, pair in enumerate(buckets):
        if not isinstance(pair, list) or len(pair) != 2:
            raise AnswerError(f"buckets[{i}] must be [upper_bound, count]")
        bound = pair[0]
        upper = math.inf if bound in ("+Inf", "Inf", "inf") else bound
        if isinstance(upper, bool) or not isinstance(upper, int | float) or math.isnan(upper):
            raise AnswerError(f"buckets[{i}] upper bound {bound!r} is not a number")
        rows.append((float(upper), _count({"count": pair[1]}, "count")))
    return sorted(rows)


def _decumulated(rows: list[tuple[float, int]]) -> list[tuple[float, int]]:
    previous, plain = 0, []
    for upper, total in rows:
        if total < previous:
            raise AnswerError("cumulative bucket counts decrease")
        plain.append((upper, total - previous))
        previous = total
    return plain


def _n(stat: Stat) -> int:
    return stat.n


@dataclass(frozen=True)
class _Call:
    method: str
    url: str
    body: str | None

    def describe(self) -> str:
        return f"{self.method} {self.url}" + (f"\n{self.body}" if self.body else "")


@dataclass
class HttpSource:
    KIND: ClassVar[str] = "http"
    name: str
    url: str
    method: str = "GET"
    headers: dict[str, str] = field(default_factory=dict)  # resolved values: never shown
    body: str | None = None
    json_path: str | None = None
    timeout: float = 10.0
    retries: int = 3
    backoff: float = 0.5
    segments: dict[str, list[str]] = field(default_factory=dict)
    transport: Any = None  # an httpx transport: tests inject faults here
    calls: int = 0

    @classmethod
    def from_spec(cls, name: str, spec: Any, loaded: LoadedPlaybook) -> HttpSource:
        assert isinstance(spec, HttpSpec)
        where = f"{loaded.path}: sources.{name}"
        for template in (spec.url, spec.body or ""):
            check_placeholders(template, where)
        return cls(
            name,
            resolve_env(spec.url, where=where),
            spec.method,
            {k: resolve_env(v, where=f"{where}.headers.{k}") for k, v in spec.headers.items()},
            None if spec.body is None else resolve_env(spec.body, where=where),
            spec.json_path,
            parse_duration(spec.timeout).total_seconds(),
            spec.retries,
            segments=dict(spec.segments),
        )

    # ------------------------------------------------------------ requests

    def _segment_dims(self, request: MeasureRequest) -> list[str]:
        used = placeholders(self.url) | placeholders(self.body or "")
        return [d for d in request.dimensions if f"segment.{d}" in used]

    def _call(self, values: dict[str, str]) -> _Call:
        body = None if self.body is None else render(self.body, values, _json_escape)
        return _Call(self.method, render(self.url, values, _url_escape), body)

    def fetch(self, client: transport.Client, call: _Call) -> Any:
        """The decoded JSON answer; AnswerError for an answer the contract cannot use,
        BackendError when the server cannot be reached at all."""
        where = f"{call.method} {call.url}"
        try:
            response = retry.send(
                lambda: client.request(call.method, call.url, content=call.body),
                retries=self.retries,
                backoff=self.backoff,
                on_try=self._count,
            )
        except GaveUp as exc:
            last = exc.last
            if last.kind == "timed out":
                raise AnswerError(f"{where}: no answer within {self.timeout:g}s") from None
            if last.status is not None:
                raise AnswerError(f"{where}: {last.detail} (after {exc.tries} tries)") from None
            raise BackendError(
                f"http source {self.name!r}: cannot reach {where} after {exc.tries} tries "
                f"({last.detail})",
                hint="check the URL and that the service is up; rollback does not need it",
            ) from None
        if response.status_code >= 400:
            hint = " (check the source's headers)" if response.status_code in (401, 403) else ""
            raise AnswerError(f"{where}: HTTP {response.status_code}{hint}: {short(response.text)}")
        try:
            return response.json()
        except ValueError:
            raise AnswerError(
                f"{where}: HTTP {response.status_code}, not JSON: {short(response.text)}"
            ) from None

    def _count(self) -> None:
        self.calls += 1

    # ------------------------------------------------------------ measuring

    def measure(self, request: MeasureRequest) -> Measurement:
        out = Measurement()
        dims = self._segment_dims(request)
        segments: list[tuple[SegmentKey, dict[str, str]]] = [(None, {})]
        for d in dims:
            values = self.segments.get(d, [])
            if not values:
                out.notes.append(f"no values listed in sources.{self.name}.segments.{d}")
            segments.extend(((d, v), {f"segment.{d}": v}) for v in values)
        base = {
            "start": _iso(request.start),
            "end": _iso(request.end),
            "window": str(int((request.end - request.start).total_seconds())),
        }
        answers: dict[_Call, Any] = {}
        failures: dict[_Call, str] = {}
        with transport.Client(
            headers=self.headers, timeout=self.timeout, transport=self.transport
        ) as client:
            for metric in request.metrics:
                path_template = metric.query or self.json_path or "$.{{metric}}"
                path = render(path_template, {"metric": metric.name}, str)
                shown: list[str] = []
                for segment, seg_values in segments:
                    for arm, variant in (("control", request.control), ("canary", request.canary)):
                        fields = {**base, **seg_values, "variant": variant, "metric": metric.name}
                        call = self._call(fields)
                        if segment is None:
                            shown.append(call.describe())
                        if call not in answers and call not in failures:
                            try:
                                answers[call] = self.fetch(client, call)
                            except AnswerError as exc:
                                failures[call] = str(exc)
                        if call in failures:
                            out.errors.setdefault(metric.name, failures[call])
                            continue
                        try:
                            stat = statistic(metric, find(answers[call], path))
                        except AnswerError as exc:
                            out.errors.setdefault(
                                metric.name,
                                f"{call.method} {call.url}: at {path}: {exc}; answer: "
                                f"{short(json.dumps(answers[call]))}",
                            )
                            continue
                        out.stats.setdefault((metric.name, segment), {})[arm] = stat
                extra = len(segments) - 1
                out.queries[metric.name] = (
                    "\n".join(shown)
                    + (f"\n(+ {2 * extra} segment requests)" if extra else "")
                    + f"\njson_path: {path}"
                )
                if metric.name in out.errors:  # one broken answer: the metric has no value
                    for segment, _ in segments:
                        out.stats.pop((metric.name, segment), None)
        for (_, segment), arms in out.stats.items():
            counts = out.arm_counts.setdefault(segment, {"control": 0, "canary": 0})
            for arm, stat in arms.items():
                counts[arm] = max(counts[arm], _n(stat))
        out.arm_counts.setdefault(None, {"control": 0, "canary": 0})
        return out


def check_placeholders(template: str, where: str) -> None:
    for name in placeholders(template):
        if name not in _SIMPLE and not name.startswith("segment."):
            raise InvalidInput(
                f"{where}: unknown placeholder {{{{{name}}}}}",
                hint="use {{variant}}, {{start}}, {{end}}, {{window}}, {{metric}} or "
                "{{segment.<dimension>}}",
            )
