"""PrometheusSource: the source's settings, its HTTP, and the looks it measures (the gate's,
and the earlier looks of the stage's time series).

HTTP failures are translated here, in one place: an answer that is not a result becomes the
failing metric's QueryError (with the query and the server's error type and message); a
server that cannot be reached at all raises BackendError."""

from __future__ import annotations

import base64
import contextlib
import os
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar

from rolloutctl import transport
from rolloutctl.durations import parse_duration
from rolloutctl.envvars import resolve_env
from rolloutctl.errors import BackendError, InvalidInput
from rolloutctl.metrics import retry
from rolloutctl.metrics.base import Measurement, MeasureRequest
from rolloutctl.metrics.prometheus.kinds import Look, hold, measure_metric
from rolloutctl.metrics.prometheus.reading import (
    ARMS,
    LiveReader,
    LookReader,
    NotEnoughData,
    Queries,
    QueryError,
)
from rolloutctl.metrics.retry import short
from rolloutctl.playbook import expr
from rolloutctl.playbook.model import Metric, PrometheusSpec
from rolloutctl.retrying import GaveUp

if TYPE_CHECKING:
    from rolloutctl.playbook.load import LoadedPlaybook


@dataclass
class PrometheusSource:
    KIND: ClassVar[str] = "prometheus"
    name: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    timeout: float = 10.0
    verify: bool | str = True
    retries: int = 2  # after the first try
    step: timedelta = timedelta(minutes=5)
    auth: tuple[str, str] | None = None
    # flag variant -> the arm label's value, where they differ (`variants:`)
    variants: dict[str, str] = field(default_factory=dict)
    backoff: float = 0.2  # seconds before the second try; doubles each time
    transport: Any = None  # an httpx transport: tests inject faults here
    calls: int = 0  # HTTP requests made (benchmarks count them)

    @classmethod
    def from_spec(cls, name: str, spec: Any, loaded: LoadedPlaybook) -> PrometheusSource:
        assert isinstance(spec, PrometheusSpec)
        where = f"{loaded.path}: sources.{name}"
        headers = {k: resolve_env(v, where=f"{where}.headers.{k}") for k, v in spec.headers.items()}
        auth = None
        if spec.bearer_token_env:
            headers["Authorization"] = "Bearer " + _secret(spec.bearer_token_env, where)
        if spec.basic_auth_env:
            user, sep, password = _secret(spec.basic_auth_env, where).partition(":")
            if not sep:
                raise InvalidInput(
                    f"{where}: {spec.basic_auth_env} must hold user:password",
                    hint=f"export {spec.basic_auth_env}=user:password",
                )
            auth = (user, password)
        verify: bool | str = spec.tls_verify
        if isinstance(verify, str):
            verify = loaded.resolve_path(verify)
            if not os.path.isfile(verify):
                raise InvalidInput(
                    f"{where}.tls_verify: no CA bundle at {verify}",
                    hint="give a PEM file of the CA that signed the server's certificate",
                )
        return cls(
            name=name,
            url=resolve_env(spec.url, where=f"{where}.url").rstrip("/"),
            headers=headers,
            timeout=parse_duration(spec.timeout).total_seconds(),
            verify=verify,
            retries=spec.retries,
            step=parse_duration(spec.step),
            auth=auth,
            variants=dict(spec.variants),
        )

    # ------------------------------------------------------------ measuring

    def measure(self, request: MeasureRequest) -> Measurement:
        """The gate's look: every metric over the stage window, pinned at its end."""
        with self.client() as client:
            measurement, _ = self._measure(client, request)
        return measurement

    def measure_series(
        self, request: MeasureRequest, every: timedelta, *, segments_per_look: bool = True
    ) -> list[tuple[datetime, Measurement]]:
        """Cumulative measurements at start + every, start + 2 every, ... and the end, for
        the report's charts. The last is `measure(request)` itself (what the gate judges);
        the earlier ones come from one range query per template at `every`, each look summing
        the interval increases up to it (Prometheus extrapolates each interval's increase to
        its edges, so a look agrees with an instant query over its window to within that).
        With `segments_per_look=False` the earlier looks hold the overall numbers only.
        A series that cannot be drawn is a note, never an error: the gate's look decides."""
        with self.client() as client:
            final, readers = self._measure(client, request)
            times = _look_times(request.start, request.end, every)
            if not times:
                return [(request.end, final)]
            looks = [(t, Measurement()) for t in times]
            try:
                self._earlier_looks(request, every, segments_per_look, final, readers, looks)
            except BackendError as exc:
                final.notes.append(f"no time series from prometheus source {self.name!r}: {exc}")
                return [(request.end, final)]
        return [*looks, (request.end, final)]

    def explain(self, request: MeasureRequest) -> dict[str, list[str]]:
        """The exact queries `measure` would send for this request, sending none (`plan`)."""
        return {metric.name: self._plan(request, metric) for metric in request.metrics}

    def render(
        self, template: str, request: MeasureRequest, by: list[str], arm: str | None = None
    ) -> str:
        """One template as `measure` sends it: `by` the labels besides the arm label, `arm`
        "control" or "canary" for a per-arm template (None: both arms)."""
        return self._queries(request, None).render(template, by, arm)

    def _measure(
        self, client: transport.Client, request: MeasureRequest
    ) -> tuple[Measurement, dict[str, LiveReader]]:
        out = Measurement()
        look = Look(request, list(request.dimensions), _scope_names(request), out)
        readers: dict[str, LiveReader] = {}
        answers: dict[tuple[str, ...], list[Any] | QueryError] = {}  # one send per query
        for metric in request.metrics:
            reader = LiveReader(self._queries(request, client, answers))
            try:
                measure_metric(reader, metric, look)
                readers[metric.name] = reader
                out.queries[metric.name] = "\n".join(reader.queries.rendered)
            except NotEnoughData as exc:
                out.stats = {k: v for k, v in out.stats.items() if k[0] != metric.name}
                hold(out, metric, str(exc))
                out.queries[metric.name] = "\n".join(reader.queries.rendered)
            except QueryError as exc:
                out.stats = {k: v for k, v in out.stats.items() if k[0] != metric.name}
                out.fail(metric.name, exc.error)
                # every query the metric sends, the failing one among them (check --explain)
                plan = self._plan(request, metric) or reader.queries.rendered
                if plan:
                    out.queries[metric.name] = "\n".join(plan)
        out.arm_counts.setdefault(None, {"control": 0, "canary": 0})
        _note_shared_queries(out)
        return out, readers

    def _earlier_looks(
        self,
        request: MeasureRequest,
        every: timedelta,
        segments_per_look: bool,
        final: Measurement,
        readers: dict[str, LiveReader],
        looks: list[tuple[datetime, Measurement]],
    ) -> None:
        dims = list(request.dimensions) if segments_per_look else []
        last = looks[-1][0]
        for metric in request.metrics:
            live = readers.get(metric.name)
            if live is None:  # failed or held at the gate's look: nothing to draw
                continue
            pinned = [t for t in _templates(metric) if "{{start}}" in t or "{{end}}" in t]
            if pinned:
                final.notes.append(
                    f"no time series for {metric.name}: its query pins {{{{start}}}} or "
                    "{{end}}, so it cannot be evaluated per interval"
                )
                continue
            failure: QueryError | None = None
            drawn = 0
            for at, measurement in looks:
                look = Look(request, dims, _scope_names(request), measurement)
                reader = LookReader(live.queries, every.total_seconds(), last, at, live)
                try:
                    measure_metric(reader, metric, look)
                    drawn += 1
                except NotEnoughData:
                    continue
                except QueryError as exc:
                    failure = exc
                    measurement.stats = {
                        k: v for k, v in measurement.stats.items() if k[0] != metric.name
                    }
            if failure is not None and not drawn:
                final.notes.append(f"no time series for {metric.name}: {failure}")
        for _, measurement in looks:
            measurement.errors = dict(final.errors)
            measurement.metric_errors = dict(final.metric_errors)
            measurement.queries = dict(final.queries)
            measurement.arm_counts.setdefault(None, {arm: 0 for arm in ARMS})

    def _plan(self, request: MeasureRequest, metric: Metric) -> list[str]:
        reader = LiveReader(self._queries(request, None))
        look = Look(request, list(request.dimensions), _scope_names(request), Measurement())
        # What was rendered before the (empty) answers ran out is the plan.
        with contextlib.suppress(QueryError, NotEnoughData, ValueError, ZeroDivisionError):
            measure_metric(reader, metric, look)
        return reader.queries.rendered

    def _queries(
        self,
        request: MeasureRequest,
        client: transport.Client | None,
        answers: dict[tuple[str, ...], list[Any] | QueryError] | None = None,
    ) -> Queries:
        kept = {} if answers is None else answers

        def send(path: str, params: dict[str, str], query: str) -> list[Any]:
            """Each distinct query once per look: two metrics (a rate and a count, a
            quantile and a mean) asking the same question share one answer."""
            assert client is not None
            key = (path, *(f"{k}={v}" for k, v in sorted(params.items())))
            if key not in kept:
                try:
                    kept[key] = self.api(client, path, params, query)
                except QueryError as exc:
                    kept[key] = exc
            answer = kept[key]
            if isinstance(answer, QueryError):
                raise answer
            return answer

        return Queries(request, self.variants, send if client else None, self.step.total_seconds())

    # ------------------------------------------------------------ HTTP

    def client(self) -> transport.Client:
        headers = dict(self.headers)
        if self.auth is not None:
            token = base64.b64encode(f"{self.auth[0]}:{self.auth[1]}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        return transport.Client(
            timeout=self.timeout,
            headers=headers,
            transport=self.transport,
            tls=transport.tls_for(self.verify),
        )

    def api(
        self, client: transport.Client, path: str, params: dict[str, str], query: str | None = None
    ) -> list[Any]:
        """POST one query; the `data.result` list, or QueryError / BackendError."""
        query = query or params.get("query", "")
        try:
            response = retry.send(
                lambda: client.request("POST", self.url + path, data=params),
                retries=self.retries,
                backoff=self.backoff,
                on_try=self._count,
            )
        except GaveUp as exc:
            last = exc.last
            if last.kind == "timed out":
                raise QueryError(f"timed out after {self.timeout:g}s", query, "timeout") from None
            if last.status is not None:
                raise QueryError(
                    f"{last.detail} after {exc.tries} tries", query, f"HTTP {last.status}"
                ) from None
            raise BackendError(
                f"prometheus source {self.name!r}: cannot reach {self.url} after {exc.tries} "
                f"tries ({last.detail})",
                hint="check the URL and that the server is up; rollback does not need it",
            ) from None
        return _result(response, query)

    def _count(self) -> None:
        self.calls += 1


def _result(response: transport.Response, query: str) -> list[Any]:
    try:
        body = response.json()
    except ValueError:
        raise QueryError(
            f"HTTP {response.status_code}, not JSON: {short(response.text)}",
            query,
            f"HTTP {response.status_code}",
        ) from None
    if not isinstance(body, dict):
        raise QueryError(f"unexpected answer {short(response.text)}", query)
    if body.get("status") != "success" or response.status_code >= 400:
        kind = str(body.get("errorType") or f"HTTP {response.status_code}")
        raise QueryError(f"{kind}: {short(str(body.get('error') or response.text))}", query, kind)
    data = body.get("data")
    if not isinstance(data, dict) or not isinstance(data.get("result"), list):
        if isinstance(data, dict) and data.get("resultType") == "scalar":
            return [{"metric": {}, "value": data.get("result")}]
        raise QueryError(f"unexpected answer {short(response.text)}", query)
    result: list[Any] = data["result"]
    return result


def _scope_names(request: MeasureRequest) -> list[str]:
    return sorted(expr.names(request.scope)) if request.scope is not None else []


def _templates(metric: Metric) -> list[str]:
    return [t for t in (metric.query, metric.histogram, metric.total) if t is not None]


def _look_times(start: datetime, end: datetime, every: timedelta) -> list[datetime]:
    """The earlier looks: start + every, start + 2 every, ... before the end."""
    times: list[datetime] = []
    if every <= timedelta(0):
        return times
    t = start + every
    while t < end:
        times.append(t)
        t += every
    return times


def _secret(variable: str, where: str) -> str:
    value = os.environ.get(variable)
    if not value:
        raise InvalidInput(
            f"{where}: environment variable {variable} is not set (it holds the credential)",
            hint=f"export {variable}=...",
        )
    return value


def _note_shared_queries(out: Measurement) -> None:
    """Say which metrics a query sent once served (the report's notes)."""
    from rolloutctl.results import queries_served

    lines = ((metric, q) for metric, text in out.queries.items() for q in text.splitlines())
    for query, metrics in queries_served(lines).items():
        if len(metrics) > 1:
            out.notes.append(f"one query served {', '.join(metrics)}: {query}")
