"""The shadow stage: the candidate answers the same requests in the background, pairwise.

Every request is served by the control (variant `v1`); the same request (same `request_id`)
is also sent to the candidate and logged with variant `shadow:v2`. Nobody sees the shadow
answer. Pairing the two rows of each request removes the between-request noise that an
unpaired canary comparison has to carry, so a shadow stage judges latency, cost, validity and
safety on far fewer requests. Only user reactions (product metrics) cannot exist for a shadow
answer; those, and ratio metrics (cost per completed task), are skipped with a note.

What crosses from DuckDB to Python: per group (overall, and each segment value), counts, sums,
sums of squares and cross products of the paired values — never a row. At most two queries:
the control quantiles of the pairs (only with quantile metrics), then the sums.

The statistics are pure functions of those sums, in `stats.paired` (its docstring has the
formulas): paired means; paired rates, with the exact McNemar test on the discordant pairs
shown and, for safety, any significant excess failing; paired quantiles (Bahadur variance);
and the output length as a ratio of sums, a diagnostic that never vetoes.

Each estimate gets the always-valid one-sided bounds and p-values of `stats.sequential` with
n = the number of pairs, so `rho2` should be tuned for the pairs the stage expects:
`sequential.tune_rho2(alpha, expected_pairs)`. Failed calls (status error or timeout, on either
side) are left out of the quality comparisons, which compare answers where both answered
(leaving out only the shadow's failures would compare the candidate's successes with all the
control's answers, failures included, and flatter the candidate); they are counted in the
shadow health rows instead: paired error and timeout rates, and shadow coverage.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import duckdb

from rolloutctl.errors import InvalidInput
from rolloutctl.formatting import json_safe
from rolloutctl.playbook import expr
from rolloutctl.playbook.expr import sql_ident
from rolloutctl.playbook.model import Metric
from rolloutctl.stats import multiple, sequential
from rolloutctl.stats.compare import MarginSpec, Worse
from rolloutctl.stats.paired import (
    PairedMoments,
    PairedQuantiles,
    bandwidths,
    compare_paired,
    compare_paired_quantiles,
    discordant,
    mcnemar_exact,
    pick_bandwidth,
    ratio_of_sums,
)

if TYPE_CHECKING:
    from rolloutctl.metrics.requestlog import RequestLogSource

__all__ = ["ShadowComparison", "ShadowResult", "analyze_shadow"]

Kind = Literal["paired_mean", "paired_proportion", "paired_quantile", "ratio", "rate"]


# ================================================================ results


@dataclass
class ShadowComparison:
    """One row of the report. With `relative`, estimate, ci and margin are relative lifts
    (shadow / control - 1); margins are signed toward harm (negative for worse: lower)."""

    name: str
    title: str
    group: str  # technical | quality | safety | product | shadow
    kind: str  # paired_mean | paired_proportion | paired_quantile | ratio | rate
    segment: dict[str, str] | None
    vetoes: bool
    n_pairs: int
    control_value: float | None
    shadow_value: float | None
    estimate: float | None  # shadow - control (or ratio for ratios)
    ci: tuple[float | None, float | None]
    margin: float | None
    p_value: float | None  # always-valid one-sided p that the candidate is worse than the margin
    p_adjusted: float | None  # Holm over vetoing rows
    mcnemar_p: float | None  # exact one-sided McNemar, for paired proportions
    discordant: tuple[int, int] | None  # (b: only shadow worse, c: only control worse)
    verdict: str  # pass | fail | inconclusive
    note: str = ""
    relative: bool = False


@dataclass
class ShadowResult:
    pairs: int
    control_rows: int
    shadow_rows: int
    duplicates: int
    comparisons: list[ShadowComparison]
    verdict: str  # pass | fail | inconclusive
    reasons: list[str]
    query: str
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = json_safe(asdict(self))
        return out


# ================================================================ the analysis


@dataclass
class _Item:
    """One thing to compare: a playbook metric, a shadow health rate or the length ratio."""

    name: str
    title: str
    group: str
    kind: Kind
    col: int  # index of the paired value: v{col} per side, x{col} / y{col} in `pairs`
    universe: str  # __answered (both answered) or __paired (every pair)
    metric: Metric | None
    segmented: bool = False  # judged per segment value too
    key: str = ""  # suffix of its aggregates' names in the queries


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _ts_sql(ts: datetime) -> str:
    return f"TIMESTAMPTZ '{ts.astimezone(UTC).isoformat()}'"


def _num(value: float | None) -> str:
    return "NULL" if value is None or not math.isfinite(value) else repr(float(value))


def _status_event(event: str | None) -> str | None:
    """'error' / 'timeout' when the event is exactly `status = '<that>'`."""
    try:
        node = expr.parse(event or "")
    except expr.ExprError:
        return None
    if isinstance(node, expr.Bin) and node.op == "=":
        sides = {type(node.left): node.left, type(node.right): node.right}
        name, lit = sides.get(expr.Name), sides.get(expr.Lit)
        if isinstance(name, expr.Name) and isinstance(lit, expr.Lit) and name.name == "status":
            return lit.value if lit.value in ("error", "timeout") else None
    return None


def analyze_shadow(
    source: RequestLogSource,
    *,
    start: datetime,
    end: datetime,
    control: str,
    candidate: str,
    metrics: Sequence[Metric],
    dimensions: Sequence[str] = (),
    alpha: float = 0.05,
    rho2: sequential.Rho2,
    min_pairs: int = 1000,
    min_segment_pairs: int = 200,
    min_coverage: float = 0.9,
    critical_segments: Collection[tuple[str, str]] = (),
) -> ShadowResult:
    """Pair control and `shadow:<candidate>` rows by request_id in [start, end) and judge
    the candidate on the same requests (see the module docstring for the statistics).

    FAIL when a vetoing comparison (every non-advisory metric overall; critical per-segment
    metrics in each segment, and critical metrics in the `critical_segments` (dimension,
    value) as the canary gate does, with >= `min_segment_pairs` pairs; the error / timeout rate when
    the playbook has a `status = 'error'` / `'timeout'` metric) fails after Holm at `alpha`.
    PASS only with >= `min_pairs` pairs, non-inferiority shown for every non-advisory metric
    (each at the full `alpha`: an intersection-union test, as in the canary gate),
    no excess of shadow errors or timeouts and shadow coverage >= `min_coverage`.
    INCONCLUSIVE otherwise, with the reasons."""
    con = source.connect()
    try:
        types = source.open(con)
        if "request_id" not in types:
            raise InvalidInput(
                f"request log {source.name!r}: no request_id column, so shadow rows cannot be "
                f"paired with the control's (columns: {', '.join(sorted(types))})",
                hint=f"log the same request_id on the control row (variant {control!r}) and "
                f"on its shadow call (variant 'shadow:{candidate}')",
            )
        return _Analysis(
            con,
            types,
            start,
            end,
            control,
            candidate,
            metrics,
            dimensions,
            alpha,
            rho2,
            min_pairs,
            min_segment_pairs,
            min_coverage,
            critical_segments,
        ).run()
    finally:
        con.close()


class _Analysis:
    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        types: dict[str, str],
        start: datetime,
        end: datetime,
        control: str,
        candidate: str,
        metrics: Sequence[Metric],
        dimensions: Sequence[str],
        alpha: float,
        rho2: sequential.Rho2,
        min_pairs: int,
        min_segment_pairs: int,
        min_coverage: float,
        critical_segments: Collection[tuple[str, str]] = (),
    ) -> None:
        self.con, self.columns = con, set(types)
        self.start, self.end, self.control, self.shadow = start, end, control, "shadow:" + candidate
        self.metrics, self.alpha, self.rho2 = list(metrics), alpha, rho2
        self.min_pairs, self.min_segment_pairs, self.min_coverage = (
            min_pairs,
            min_segment_pairs,
            min_coverage,
        )
        self.notes: list[str] = []
        self.critical_segments = set(critical_segments)
        self.dims = [d for d in dimensions if d in self.columns]
        self.notes += [
            f"segment dimension {d!r} is not a column of the log"
            for d in dimensions
            if d not in self.columns
        ]
        self.values: list[str] = []  # per-side SQL of each paired value
        self.items: list[_Item] = []
        self.skipped: list[ShadowComparison] = []
        self.blocking: list[str] = []  # deciding metrics that could not be measured

    # ------------------------------------------------------------ planning

    def _value(self, sql: str) -> int:
        """Index of a per-side paired value (the same SQL is computed once)."""
        if sql not in self.values:
            self.values.append(sql)
        return self.values.index(sql)

    def _skip(self, name: str, title: str, group: str, kind: Kind, note: str, blocks: bool) -> None:
        self.skipped.append(
            ShadowComparison(
                name,
                title,
                group,
                kind,
                None,
                False,
                0,
                None,
                None,
                None,
                (None, None),
                None,
                None,
                None,
                None,
                None,
                "inconclusive",
                "skipped: " + note,
            )
        )
        if blocks:
            self.blocking.append(f"{name} ({note})")

    def plan(self) -> None:
        health: dict[str, Metric | None] = {"error": None, "timeout": None}
        for metric in self.metrics:
            title = metric.title or metric.name.replace("_", " ")
            kind: Kind = (
                "paired_proportion"
                if metric.kind == "proportion"
                else "paired_quantile"
                if metric.kind == "quantile"
                else "ratio"
                if metric.kind == "ratio"
                else "paired_mean"
            )
            which = _status_event(metric.event) if metric.kind == "proportion" else None
            if which is not None and health[which] is None:
                health[which] = metric
                continue
            if metric.group == "product" or metric.kind == "ratio":
                why = (
                    "a user reaction, which a shadow answer nobody sees cannot have"
                    if metric.group == "product"
                    else "ratio metrics are not compared pairwise"
                )
                self._skip(metric.name, title, metric.group, kind, why, blocks=False)
                continue
            text = metric.event if metric.kind == "proportion" else metric.value
            if text is None:
                self._skip(
                    metric.name,
                    title,
                    metric.group,
                    kind,
                    "not a request-log metric (no event or value)",
                    metric.deciding,
                )
                continue
            try:
                sql = expr.to_sql(expr.parse(text or ""), self.columns)
            except expr.ExprError as exc:
                self._skip(metric.name, title, metric.group, kind, str(exc), metric.deciding)
                continue
            col = self._value(
                f"CAST(TRY_CAST({sql} AS BOOLEAN) AS DOUBLE)"
                if metric.kind == "proportion"
                else f"TRY_CAST({sql} AS DOUBLE)"
            )
            uses_status = "status" in expr.names(expr.parse(text or ""))
            self.items.append(
                _Item(
                    metric.name,
                    title,
                    metric.group,
                    kind,
                    col,
                    "__paired" if uses_status else "__answered",
                    metric,
                    segmented=metric.critical
                    and bool(self.dims)
                    and (
                        metric.per_segment or any(d in self.dims for d, _ in self.critical_segments)
                    ),
                )
            )
        for which, rate_metric in health.items():
            name, title = f"shadow_{which}_rate", f"shadow {which} rate"
            if "status" not in self.columns:
                self._skip(
                    name,
                    title,
                    "shadow",
                    "rate",
                    "no status column in the log",
                    blocks=rate_metric is not None and rate_metric.deciding,
                )
                continue
            col = self._value(f"CAST(CAST(status AS VARCHAR) = {_literal(which)} AS DOUBLE)")
            self.items.append(_Item(name, title, "shadow", "rate", col, "__paired", rate_metric))
        if "output_tokens" in self.columns:
            col = self._value("TRY_CAST(output_tokens AS DOUBLE)")
            self.items.append(
                _Item(
                    "output_length_ratio",
                    "output length ratio (shadow / control output tokens)",
                    "shadow",
                    "ratio",
                    col,
                    "__answered",
                    None,
                )
            )
        else:
            self._skip(
                "output_length_ratio",
                "output length ratio",
                "shadow",
                "ratio",
                "no output_tokens column in the log",
                blocks=False,
            )
        for i, item in enumerate(self.items):
            item.key = f"_{i}"

    # ------------------------------------------------------------ SQL

    def _pairs_cte(self) -> str:
        ctl, shd = _literal(self.control), _literal(self.shadow)
        window = f"__ts >= {_ts_sql(self.start)} AND __ts < {_ts_sql(self.end)}"
        failed = (
            "COALESCE(CAST(status AS VARCHAR) IN ('error', 'timeout'), FALSE)"
            if "status" in self.columns
            else "FALSE"
        )
        segs = "".join(
            f", COALESCE(CAST({sql_ident(d)} AS VARCHAR), '(missing)') AS seg{i}"
            for i, d in enumerate(self.dims)
        )
        vals = "".join(f", {sql} AS v{k}" for k, sql in enumerate(self.values))
        seg_out = "".join(f"c.seg{i} AS seg{i}, " for i in range(len(self.dims)))
        xy = "".join(f", c.v{k} AS x{k}, s.v{k} AS y{k}" for k in range(len(self.values)))
        return (
            f"WITH win AS (\n  SELECT * FROM log WHERE {window} AND variant IN ({ctl}, {shd})\n"
            f"), side AS MATERIALIZED (\n  SELECT variant, request_id, {failed} AS __failed"
            f"{segs}{vals},\n    row_number() OVER (PARTITION BY variant, request_id "
            f"ORDER BY __ts) AS __rank\n  FROM win WHERE request_id IS NOT NULL\n"
            f"), pairs AS (\n  SELECT {seg_out}s.request_id IS NOT NULL AS __paired,\n"
            f"    s.request_id IS NOT NULL AND NOT c.__failed AND NOT s.__failed AS __answered"
            f"{xy}\n  FROM (SELECT * FROM side WHERE variant = {ctl} AND __rank = 1) c\n"
            f"  LEFT JOIN (SELECT * FROM side WHERE variant = {shd} AND __rank = 1) s\n"
            f"    ON c.request_id = s.request_id\n)\n"
        )

    def _grouped(self, cte: str, aggregates: list[str]) -> tuple[str, list[dict[str, Any]]]:
        """Run the aggregates per grouping set (overall, each dimension); rows as dicts with
        '__segment' = None or (dimension, value)."""
        segs = [f"seg{i}" for i in range(len(self.dims))]
        sets = ", ".join(["()", *(f"({s})" for s in segs)])
        flags = [f"grouping({s}) AS g{i}" for i, s in enumerate(segs)]
        query = (
            f"{cte}SELECT {', '.join([*segs, *flags, *aggregates])}\n"
            f"FROM pairs GROUP BY GROUPING SETS ({sets})"
        )
        try:
            cursor = self.con.execute(query)
            names = [d[0] for d in cursor.description]
            rows = [dict(zip(names, r, strict=True)) for r in cursor.fetchall()]
        except duckdb.Error as exc:
            raise InvalidInput(
                f"request log: shadow query failed: {str(exc).splitlines()[0]}"
            ) from None
        for r in rows:
            present = [i for i in range(len(segs)) if r[f"g{i}"] == 0]
            r["__segment"] = (self.dims[present[0]], str(r[segs[present[0]]])) if present else None
        return query, rows

    @staticmethod
    def _cond(item: _Item) -> str:
        k = item.col
        return f"{item.universe} AND x{k} IS NOT NULL AND y{k} IS NOT NULL"

    # ------------------------------------------------------------ running

    def run(self) -> ShadowResult:
        self.plan()
        cte = self._pairs_cte()
        queries: list[str] = []
        quantiles: dict[tuple[str, Any], dict[str, float]] = {}
        q_items = [i for i in self.items if i.kind == "paired_quantile"]
        if q_items:
            aggs = []
            for item in q_items:
                assert item.metric is not None and item.metric.q is not None
                levels = self._levels(item.metric.q)
                cond, k = self._cond(item), item.col
                aggs += [
                    f"count(*) FILTER (WHERE {cond}) AS qn{item.key}",
                    f"quantile_cont(x{k}, {levels}) FILTER (WHERE {cond}) AS qx{item.key}",
                    f"quantile_cont(y{k}, {levels}) FILTER (WHERE {cond}) AS qy{item.key}",
                ]
            query, rows = self._grouped(cte, aggs)
            queries.append(query)
            for r in rows:
                for item in q_items:
                    quantiles[(item.name, r["__segment"])] = self._quantile_points(item, r)

        ctl, shd = _literal(self.control), _literal(self.shadow)
        aggs = [
            "count(*) AS __requests",
            "count(*) FILTER (WHERE __paired) AS __pairs",
            f"(SELECT {{'control_rows': count(*) FILTER (WHERE variant = {ctl}), 'shadow_rows': "
            f"count(*) FILTER (WHERE variant = {shd}), 'control_no_id': count(*) FILTER (WHERE variant = {ctl} AND "
            f"request_id IS NULL), 'shadow_no_id': count(*) FILTER (WHERE variant = {shd} AND request_id IS "
            f"NULL)}} FROM win) AS __rows",
            f"(SELECT {{'control_dup': count(*) FILTER (WHERE variant = {ctl} AND __rank > 1), 'shadow_dup': "
            f"count(*) FILTER (WHERE variant = {shd} AND __rank > 1), 'shadow_ids': count(*) FILTER (WHERE variant = {shd} "
            f"AND __rank = 1)}} FROM side) AS __ids",
        ]
        for item in self.items:
            k, cond = item.col, self._cond(item)
            if item.kind == "paired_quantile":
                aggs += self._exceedance_aggregates(item, quantiles)
                continue
            aggs += [
                f"count(*) FILTER (WHERE {cond}) AS n{item.key}",
                *(
                    f"sum({e}) FILTER (WHERE {cond}) AS {a}{item.key}"
                    for a, e in (
                        ("sx", f"x{k}"),
                        ("sy", f"y{k}"),
                        ("sxx", f"x{k} * x{k}"),
                        ("syy", f"y{k} * y{k}"),
                        ("sxy", f"x{k} * y{k}"),
                    )
                ),
            ]
        query, rows = self._grouped(cte, aggs)
        queries.append(query)
        return self._judge(rows, quantiles, ";\n\n".join(queries))

    def _levels(self, q: float) -> str:
        widths = bandwidths(q)
        points = [q - d for d in reversed(widths)] + [q] + [q + d for d in widths]
        return "[" + ", ".join(repr(round(p, 6)) for p in points) + "]"

    def _quantile_points(self, item: _Item, r: dict[str, Any]) -> dict[str, float]:
        assert item.metric is not None and item.metric.q is not None
        q = item.metric.q
        n, xs, ys = int(r[f"qn{item.key}"] or 0), r[f"qx{item.key}"], r[f"qy{item.key}"]
        widths = bandwidths(q)
        if not n or xs is None or ys is None:
            return {"n": n}
        delta = pick_bandwidth(n, q)
        i, mid = widths.index(delta), len(widths)
        lo, hi = mid - 1 - i, mid + 1 + i
        return {
            "n": n,
            "delta": delta,
            "qx": xs[mid],
            "qy": ys[mid],
            "qx_lo": xs[lo],
            "qx_hi": xs[hi],
            "qy_lo": ys[lo],
            "qy_hi": ys[hi],
        }

    def _exceedance_aggregates(
        self, item: _Item, quantiles: dict[tuple[str, Any], dict[str, float]]
    ) -> list[str]:
        """Counts above each group's own control and shadow quantiles: overall, and per
        dimension for a segmented metric (the group's threshold picked by a CASE)."""
        k, cond = item.col, self._cond(item)
        overall = quantiles.get((item.name, None), {})
        # (column suffix, x threshold SQL, y threshold SQL)
        levels = [("", _num(overall.get("qx")), _num(overall.get("qy")))]
        for i, dim in enumerate(self.dims if item.segmented else []):
            found = {
                seg[1]: v
                for (name, seg), v in quantiles.items()
                if name == item.name and seg is not None and seg[0] == dim
            }
            if found:
                levels.append((f"_{i}", _case(i, found, "qx"), _case(i, found, "qy")))
        out = []
        for suffix, tx, ty in levels:
            out += [
                f"count(*) FILTER (WHERE {cond} AND x{k} > {tx}) AS ax{item.key}{suffix}",
                f"count(*) FILTER (WHERE {cond} AND y{k} > {ty}) AS ay{item.key}{suffix}",
                f"count(*) FILTER (WHERE {cond} AND x{k} > {tx} AND y{k} > {ty}) "
                f"AS axy{item.key}{suffix}",
            ]
        return out

    # ------------------------------------------------------------ judging

    def _judge(
        self,
        rows: list[dict[str, Any]],
        quantiles: dict[tuple[str, Any], dict[str, float]],
        query: str,
    ) -> ShadowResult:
        overall = next(r for r in rows if r["__segment"] is None)
        counts, ids = overall["__rows"], overall["__ids"]
        requests, pairs = int(overall["__requests"]), int(overall["__pairs"])
        duplicates = int(ids["control_dup"]) + int(ids["shadow_dup"])
        if duplicates:
            self.notes.append(
                f"{duplicates:,} duplicate rows (same request_id and variant: "
                f"{ids['control_dup']:,} control, {ids['shadow_dup']:,} shadow); the first of "
                "each (by ts) was kept"
            )
        for side in ("control", "shadow"):
            if counts[f"{side}_no_id"]:
                self.notes.append(
                    f"{counts[f'{side}_no_id']:,} {side} rows without a "
                    "request_id could not be paired"
                )
        orphans = int(ids["shadow_ids"]) - pairs
        if orphans:
            self.notes.append(f"{orphans:,} shadow requests have no control row in the window")

        # ---- what to compare, and which comparisons veto (alpha is split over those)
        planned: list[tuple[_Item, Any, dict[str, Any], bool, int]] = []
        for item in self.items:
            for r in rows:
                seg = r["__segment"]
                if seg is not None and not (
                    item.segmented
                    and (
                        item.metric is None
                        or item.metric.per_segment
                        or tuple(seg) in self.critical_segments
                    )
                ):
                    continue
                n = (
                    int(r[f"n{item.key}"] or 0)
                    if item.kind != "paired_quantile"
                    else int(quantiles.get((item.name, seg), {}).get("n", 0))
                )
                metric = item.metric
                vetoes = (
                    metric is not None
                    and metric.deciding
                    and (seg is None or n >= self.min_segment_pairs)
                )
                planned.append((item, seg, r, vetoes, n))
        n_veto = max(1, sum(1 for p in planned if p[3]))
        alpha_each = self.alpha / n_veto

        results: list[ShadowComparison] = []
        for item, seg, r, vetoes, n in planned:
            results.append(
                self._compare(
                    item, seg, r, quantiles, n, vetoes, alpha_each if vetoes else self.alpha
                )
            )

        # ---- Holm over the vetoing comparisons
        vetoing = [c for c in results if c.vetoes and c.p_value is not None]
        rejected, adjusted = multiple.holm([c.p_value or 0.0 for c in vetoing], self.alpha)
        for c, reject, adj in zip(vetoing, rejected, adjusted, strict=True):
            c.p_adjusted = adj
            c.verdict = "fail" if reject else "inconclusive" if c.verdict == "fail" else c.verdict

        coverage = pairs / requests if requests else 0.0
        results.append(
            ShadowComparison(
                "shadow_coverage",
                "shadow coverage (control requests with a shadow row)",
                "shadow",
                "rate",
                None,
                False,
                requests,
                None,
                coverage,
                None,
                (None, None),
                None,
                None,
                None,
                None,
                None,
                "pass" if requests and coverage >= self.min_coverage else "inconclusive",
                f"{pairs:,} of {requests:,} control requests have a shadow row "
                f"({coverage:.1%}; at least {self.min_coverage:.0%} needed)",
            )
        )
        results += self.skipped
        verdict, reasons = self._verdict(results, pairs, coverage, len(vetoing))
        return ShadowResult(
            pairs,
            int(counts["control_rows"]),
            int(counts["shadow_rows"]),
            duplicates,
            results,
            verdict,
            reasons,
            query,
            self.notes,
        )

    def _compare(
        self,
        item: _Item,
        seg: tuple[str, str] | None,
        r: dict[str, Any],
        quantiles: dict[tuple[str, Any], dict[str, float]],
        n: int,
        vetoes: bool,
        alpha: float,
    ) -> ShadowComparison:
        metric = item.metric
        segment = None if seg is None else {seg[0]: seg[1]}
        relative = metric is not None and metric.margin.relative is not None
        margin = (
            MarginSpec(
                (metric.margin.relative if relative else metric.margin.absolute) or 0.0, relative
            )
            if metric is not None
            else MarginSpec(0.0, False)
        )
        worse: Worse = metric.worse if metric is not None else "higher"
        row = ShadowComparison(
            item.name,
            item.title,
            item.group,
            item.kind,
            segment,
            vetoes,
            n,
            None,
            None,
            None,
            (None, None),
            None,
            None,
            None,
            None,
            None,
            "inconclusive",
            relative=relative,
        )
        if seg is not None and n < self.min_segment_pairs:
            row.note = f"too few pairs to judge ({n:,} < {self.min_segment_pairs:,})"
            return row
        mcnemar_p, disc = None, None
        if item.kind == "paired_quantile":
            assert metric is not None and metric.q is not None
            p = quantiles.get((item.name, seg), {})
            suffix = "" if seg is None else f"_{self.dims.index(seg[0])}"
            if "qx" not in p:
                row.note = "no pairs with values"
                return row
            stats = PairedQuantiles(
                n,
                metric.q,
                p["delta"],
                p["qx"],
                p["qy"],
                p["qx_lo"],
                p["qx_hi"],
                p["qy_lo"],
                p["qy_hi"],
                int(r[f"ax{item.key}{suffix}"]),
                int(r[f"ay{item.key}{suffix}"]),
                int(r[f"axy{item.key}{suffix}"]),
            )
            comp = compare_paired_quantiles(
                stats, margin, worse, alpha, self.rho2, alpha_pass=self.alpha
            )
            note = (
                f"paired p{metric.q * 100:g} of {metric.value} (Bahadur variance, "
                f"density bandwidth {stats.delta:g})"
            )
        else:
            m = PairedMoments(
                n, *(float(r[f"{a}{item.key}"] or 0.0) for a in ("sx", "sy", "sxx", "syy", "sxy"))
            )
            if item.kind == "ratio":
                return self._ratio(row, m, alpha)
            binary = item.kind in ("paired_proportion", "rate")
            safety = binary and metric is not None and metric.group == "safety"
            comp = compare_paired(
                m,
                margin,
                worse,
                alpha,
                self.rho2,
                binary=binary,
                zero_tolerance=safety,
                alpha_pass=self.alpha,
            )
            note = f"paired mean of {metric.value}" if metric and item.kind == "paired_mean" else ""
            if binary:
                disc = discordant(m, worse)
                mcnemar_p = mcnemar_exact(*disc, alternative="greater")
                note = f"{disc[0]:,} pairs only the shadow worse, {disc[1]:,} only the control"
                if item.kind == "rate":
                    note += (
                        f"; margin of the playbook metric {metric.name}"
                        if metric
                        else "; no playbook metric for it: judged at margin 0, never vetoes"
                    )
        row.control_value, row.shadow_value = comp.control_value, comp.canary_value
        row.estimate, row.ci, row.margin = comp.estimate, comp.ci, comp.margin
        row.p_value, row.verdict = comp.p_fail, comp.verdict
        row.mcnemar_p, row.discordant = mcnemar_p, disc
        row.note = "; ".join(x for x in (note, comp.note) if x)
        return row

    def _ratio(self, row: ShadowComparison, m: PairedMoments, alpha: float) -> ShadowComparison:
        """Output length: a two-sided always-valid interval for sum(y) / sum(x); flagged
        (verdict fail, never vetoing) when it excludes 1."""
        ratio, var = ratio_of_sums(m)
        row.control_value, row.shadow_value, row.estimate = m.mean_x, m.mean_y, ratio
        if not (math.isfinite(ratio) and math.isfinite(var)) or var <= 0:
            row.note = "undefined (no pairs with output tokens, or no spread)"
            return row
        se = math.sqrt(var)
        width = sequential.critical_z(alpha / 2, m.n, self.rho2) * se
        row.ci = (ratio - width, ratio + width)
        z = (ratio - 1) / se
        p = min(
            1.0,
            2 * min(sequential.p_value(z, m.n, self.rho2), sequential.p_value(-z, m.n, self.rho2)),
        )
        row.p_value = p
        row.verdict = "fail" if p <= alpha else "inconclusive"
        row.note = (
            f"diagnostic, never vetoes: shadow answers use {ratio - 1:+.1%} output "
            f"tokens; p = two-sided always-valid p of 'same length'"
        )
        return row

    # ------------------------------------------------------------ the verdict

    def _verdict(
        self, results: list[ShadowComparison], pairs: int, coverage: float, m: int
    ) -> tuple[str, list[str]]:
        failing = sorted(  # strongest evidence first; DuckDB's group order is not stable
            (c for c in results if c.vetoes and c.verdict == "fail"),
            key=lambda c: (c.p_adjusted or 0.0, c.p_value or 0.0, c.name, str(c.segment)),
        )
        if failing:
            return "fail", [self._fail_reason(c, m) for c in failing]
        reasons: list[str] = []
        if pairs < self.min_pairs:
            reasons.append(f"{pairs:,} of {self.min_pairs:,} pairs needed")
        overall = [c for c in results if c.segment is None]
        undecided = [c.name for c in overall if c.vetoes and c.verdict != "pass"]
        if undecided:
            reasons.append("non-inferiority not yet shown for " + ", ".join(undecided))
        if self.blocking:
            reasons.append(
                "no measurement for " + "; ".join(self.blocking) + " (missing data never passes)"
            )
        for c in overall:
            if c.group == "shadow" and c.kind == "rate" and not c.vetoes and c.verdict == "fail":
                reasons.append(
                    f"shadow calls fail more often than the control's: {c.title} "
                    f"{_pct(c.shadow_value)} vs {_pct(c.control_value)} on the same requests "
                    f"(p {_p_is(c.p_value)}); add a playbook metric on status with a margin to "
                    "tolerate some"
                )
        if pairs and coverage < self.min_coverage:
            reasons.append(
                f"only {coverage:.1%} of control requests have a shadow row "
                f"({self.min_coverage:.0%} needed): the shadow harness drops calls"
            )
        if not pairs:
            reasons.append(f"no control request has a shadow row ({self.shadow!r}) in the window")
        if reasons:
            return "inconclusive", reasons
        return "pass", [
            f"every metric is within its margin on {pairs:,} paired requests "
            f"(shadow coverage {coverage:.1%})"
        ]

    def _fail_reason(self, c: ShadowComparison, n_vetoing: int) -> str:
        """e.g. "shadow latency is worse: paired mean of latency_ms 758 → 946 (+24.8%, one-sided
        bound +23.5%) against a +10.0% margin; always-valid p = ..."."""
        metric = next((m for m in self.metrics if m.name == c.name), None)
        where = (
            ""
            if c.segment is None
            else " in " + ", ".join(f"{k}={v}" for k, v in c.segment.items())
        )
        lo, hi = c.ci
        harm_bound = hi if metric is not None and metric.worse == "lower" else lo
        value = metric.value if metric is not None else None
        what = {
            "paired_mean": f"paired mean of {value} ",
            "paired_quantile": f"paired p{(metric.q or 0) * 100:g} of {value} " if metric else "",
        }.get(c.kind, "")
        fmt = _pct if c.kind in ("paired_proportion", "rate") else _num_text
        title = c.title if c.title.startswith("shadow") else "shadow " + c.title
        against = (
            ": any significant excess fails for safety"
            if c.group == "safety" and c.kind == "paired_proportion"
            else f" against a {_theta(c, c.margin)} margin"
        )
        extra = ""
        if c.discordant is not None:
            extra = (
                f"; {c.discordant[0]:,} requests worse only on the shadow, "
                f"{c.discordant[1]:,} only on the control, exact McNemar p "
                f"{_p_is(c.mcnemar_p)}"
            )
        return (
            f"{title}{where} is worse: {what}{fmt(c.control_value)} → {fmt(c.shadow_value)} "
            f"({_theta(c, c.estimate)}, one-sided bound {_theta(c, harm_bound)}){against}; "
            f"always-valid p {_p_is(c.p_value)}, {_p(c.p_adjusted)} after Holm over "
            f"{n_vetoing} vetoing comparisons{extra}"
        )


def _case(i: int, found: dict[str, dict[str, float]], side: str) -> str:
    """SQL picking the threshold of the row's own segment value of dimension i."""
    cases = " ".join(f"WHEN {_literal(v)} THEN {_num(p.get(side))}" for v, p in found.items())
    return f"CASE seg{i} {cases} END"


def _pct(v: float | None) -> str:
    return "—" if v is None or not math.isfinite(v) else f"{v:.2%}"


def _num_text(v: float | None) -> str:
    return "—" if v is None or not math.isfinite(v) else f"{v:.4g}"


def _p(v: float | None) -> str:
    return "—" if v is None else "< 0.0001" if v < 1e-4 else f"{v:.2g}"


def _p_is(v: float | None) -> str:
    """What follows "p" in a sentence: "= 0.012" or "< 0.0001"."""
    text = _p(v)
    return text if text.startswith("<") else f"= {text}"


def _theta(c: ShadowComparison, v: float | None) -> str:
    if v is None or not math.isfinite(v):
        return "—"
    if c.relative:
        return f"{v:+.1%}"
    if c.kind in ("paired_proportion", "rate"):
        return f"{v * 100:+.2f} pt"
    return f"{v:+.4g}"
