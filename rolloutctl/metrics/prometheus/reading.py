"""From templates to series: render a template for the request, send it, and give every
series of the answer its arm.

Readers are what the metric kinds (`kinds.py`) read through, so one computation serves the
gate's measurement, the looks of its time series and `plan`:

  LiveReader  instant queries pinned at the request's end, over the stage window (the gate),
              and range queries at the source's step (a mean's per-interval variance);
              without a client it only renders (`plan`, `check --explain`)
  LookReader  one earlier look of the stage, at `at`: each series summed over the look
              interval increments up to `at` (one range query per template for all looks)

Errors: QueryError carries the metric's MetricError (the rendered query and the answer);
NotEnoughData is a young stage's "nothing to measure yet", which holds without counting as
an error."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from rolloutctl.metrics.base import MeasureRequest, MetricError
from rolloutctl.metrics.prometheus import promql
from rolloutctl.metrics.retry import short

ARMS = ("control", "canary")


class QueryError(Exception):
    """One metric cannot be measured; `error` says why and names the query."""

    def __init__(self, message: str, query: str | None = None, error_type: str | None = None):
        super().__init__(message)
        self.error = MetricError(message, query, error_type)

    def __str__(self) -> str:
        return str(self.error)


class NotEnoughData(Exception):
    """Nothing to measure yet (a stage younger than the data needs): the metric holds as a
    measurement with no samples, never as an error."""


@dataclass(frozen=True)
class Series:
    arm: str  # control | canary
    labels: dict[str, str]
    value: float
    at: float = 0.0  # evaluation time (range queries)


def seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(value)


# Sends one query: (API path, parameters, rendered query for messages) -> the result list.
Send = Callable[[str, dict[str, str], str], list[Any]]


class Queries:
    """One metric's templates for one request, rendered and sent (`send` None: rendered
    only). Range answers are kept, so every look of a time series reuses one query."""

    def __init__(
        self, request: MeasureRequest, variants: dict[str, str], send: Send | None, step: float
    ) -> None:
        self.request, self.send, self.step = request, send, step
        self.values = {
            "control": variants.get(request.control, request.control),
            "canary": variants.get(request.canary, request.canary),
        }
        self.arm_of = {value: arm for arm, value in self.values.items()}
        self.rendered: list[str] = []  # every query rendered, in order
        self.window = max(1, math.ceil((request.end - request.start).total_seconds()))
        self._ranges: dict[tuple[Any, ...], list[Series] | QueryError] = {}

    def matcher(self, template: str) -> promql.ArmMatcher:
        """The template's (first) arm matcher; without one, the error names the query as
        rendered anyway (so `check --explain` can show it)."""
        found = promql.arm_matchers(template)
        if not found:
            self.render(template, [], None)  # raises, naming the query as rendered
        return found[0]

    def render(
        self, template: str, by: list[str], arm: str | None, window: float | None = None
    ) -> str:
        """The query for one arm (None: both). It is recorded in `rendered` before any
        problem with it is raised: no arm matcher, arms that share a label value, or an
        unknown placeholder (left in the text as written)."""
        found = promql.arm_matchers(template)
        values = {
            "window": f"{int(window or self.window)}s",
            "start": seconds(self.request.start.timestamp()),
            "end": seconds(self.request.end.timestamp()),
            "by": promql.label_list([found[0].label, *by] if found else by),
            "control": self.values["control"],
            "canary": self.values["canary"],
        }
        arms = [self.values[arm]] if arm else [self.values[a] for a in ARMS]
        text, unknown = promql.render(template, values, arms, arm is not None)
        self.rendered.append(text)
        if not found:
            raise QueryError(f"the template has {promql.NO_ARM_MATCHER}", text)
        if self.values["control"] == self.values["canary"]:
            raise QueryError(
                f"both arms have the label value {self.values['control']!r}: the arms cannot be "
                "told apart (check the source's `variants:`)",
                text,
            )
        if unknown:
            raise QueryError(promql.unknown_placeholder(unknown[0]), text)
        return text

    def instant(self, template: str, by: list[str]) -> list[Series]:
        """Every series of the template's answer at the request's end, with its arm."""
        matcher = self.matcher(template)
        out: list[Series] = []
        strays: list[dict[str, str]] = []
        for arm in ARMS if matcher.per_arm else (None,):
            query = self.render(template, by, arm)
            if self.send is None:  # explaining: render, send nothing
                continue
            params = {"query": query, "time": seconds(self.request.end.timestamp())}
            for item in self.send("/api/v1/query", params, query):
                labels, value = _sample(item, query)
                which = arm or self.arm_of.get(labels.get(matcher.label, ""))
                if which is None:
                    strays.append(labels)
                else:
                    out.append(Series(which, labels, value))
        if not out and self.send is not None:
            raise self._nothing(matcher, strays, self.rendered[-1])
        return out

    def range(
        self,
        template: str,
        by: list[str],
        window: float,
        step: float,
        start: datetime,
        end: datetime,
    ) -> list[Series]:
        """Each series' values at start, start + step, ... end; every value covers `window`
        seconds up to its time (the template rendered with that window)."""
        matcher = self.matcher(template)
        key = (template, tuple(by), window, step, start, end)
        if key in self._ranges:
            kept = self._ranges[key]
            if isinstance(kept, QueryError):
                raise kept
            return kept
        out: list[Series] = []
        try:
            for arm in ARMS if matcher.per_arm else (None,):
                query = self.render(template, by, arm, window=window)
                self.rendered[-1] += f" [range, step {int(step)}s]"
                if self.send is None:
                    continue
                params = {
                    "query": query,
                    "step": seconds(step),
                    "start": seconds(start.timestamp()),
                    "end": seconds(end.timestamp()),
                }
                for item in self.send("/api/v1/query_range", params, query):
                    labels = {str(k): str(v) for k, v in (item.get("metric") or {}).items()}
                    which = arm or self.arm_of.get(labels.get(matcher.label, ""))
                    for at, raw in item.get("values") or []:
                        value = float(raw)
                        if which is not None and math.isfinite(value):
                            out.append(Series(which, labels, value, float(at)))
        except QueryError as exc:
            self._ranges[key] = exc
            raise
        except (AttributeError, TypeError, ValueError):
            error = QueryError("unexpected range answer", self.rendered[-1])
            self._ranges[key] = error
            raise error from None
        self._ranges[key] = out
        return out

    def _nothing(
        self, matcher: promql.ArmMatcher, strays: list[dict[str, str]], query: str
    ) -> Exception:
        """Why an answer gave neither arm anything, as precisely as the answer shows."""
        label = matcher.label
        n = len(strays)
        series = f"{n} series" if n != 1 else "1 series"
        if strays and not any(label in s for s in strays):
            seen = sorted({k for s in strays for k in s})
            return QueryError(
                f"Prometheus returned {series} but none carries the arm label `{label}`; the "
                f"query must keep it: group by ({{{{by}}}}), which holds it, e.g. "
                f"`sum by ({{{{by}}}}) (...)` "
                + (f"(labels seen: {short(', '.join(seen), 120)})" if seen else "(no labels)"),
                query,
            )
        if strays:
            seen = sorted({s[label] for s in strays if label in s})
            return QueryError(
                f"Prometheus returned {series} whose `{label}` is "
                f"{', '.join(repr(v) for v in seen[:5])}, none of the arms' values "
                f"({self.values['control']!r} control, {self.values['canary']!r} canary); map "
                "the flag's variants to these values with the source's `variants:`",
                query,
            )
        if self.window < self.step:
            return NotEnoughData(
                f"no series yet, {self.window}s into the stage (a counter's increase needs two "
                "samples in the window)"
            )
        return QueryError(
            f"empty result: no series for either arm at {self.request.end.isoformat()} (a "
            f"misspelt metric or label, no traffic in the window, or `{label}` values other "
            f"than {self.values['control']!r} and {self.values['canary']!r}: see the "
            "source's `variants:`)",
            query,
        )


def _sample(item: Any, query: str) -> tuple[dict[str, str], float]:
    try:
        labels = {str(k): str(v) for k, v in (item.get("metric") or {}).items()}
        value = float(item["value"][1])
    except (AttributeError, KeyError, IndexError, TypeError, ValueError):
        raise QueryError(f"unexpected series {short(str(item))}", query) from None
    if not math.isfinite(value):
        raise QueryError(f"value {value} for {labels or 'the series'}", query)
    return labels, value


# ---------------------------------------------------------------- readers


class LiveReader:
    """The gate's look: instant queries over the whole stage window; without sending
    (`Queries.send` None) it only renders what it would send."""

    def __init__(self, queries: Queries) -> None:
        self.queries = queries
        request = queries.request
        self.start = request.start
        self.window = (request.end - request.start).total_seconds()
        self.step = queries.step

    def rows(self, template: str, by: list[str]) -> list[Series]:
        return self.queries.instant(template, by)

    def last_query(self) -> str | None:
        return self.queries.rendered[-1] if self.queries.rendered else None

    def intervals(self, template: str, by: list[str]) -> list[Series]:
        """Per-step increases over the window (their times are the intervals' ends)."""
        request = self.queries.request
        start = request.start + timedelta(seconds=self.step)
        return self.queries.range(template, by, self.step, self.step, start, request.end)


class LookReader:
    """An earlier look of the stage, at `at`: each series' increments over the look interval
    `every`, summed up to `at`; a mean's intervals are those ending by `at`."""

    def __init__(
        self, queries: Queries, every: float, last: datetime, at: datetime, live: LiveReader
    ) -> None:
        self.queries, self.every, self.last, self.at, self.live = queries, every, last, at, live
        self.start = queries.request.start
        self.window = (at - self.start).total_seconds()
        self.step = queries.step

    def rows(self, template: str, by: list[str]) -> list[Series]:
        increments = self.queries.range(
            template,
            by,
            self.every,
            self.every,
            self.start + timedelta(seconds=self.every),
            self.last,
        )
        limit = self.at.timestamp() + 1e-6
        totals: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        labels_of: dict[tuple[str, tuple[tuple[str, str], ...]], dict[str, str]] = {}
        for r in increments:
            if r.at <= limit:
                key = (r.arm, tuple(sorted(r.labels.items())))
                totals[key] = totals.get(key, 0.0) + r.value
                labels_of[key] = r.labels
        return [Series(arm, labels_of[(arm, k)], v) for (arm, k), v in totals.items()]

    def intervals(self, template: str, by: list[str]) -> list[Series]:
        limit = self.at.timestamp() + 1e-6
        return [r for r in self.live.intervals(template, by) if r.at <= limit]

    def last_query(self) -> str | None:
        return self.live.last_query()
