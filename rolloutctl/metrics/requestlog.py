"""Request logs (JSONL / CSV / Parquet, paths or globs) queried in place by DuckDB.

Only aggregates leave DuckDB: per arm and per segment, counts, sums and sums of squares,
and log-bucket histograms for quantile metrics, in one scan for the moments and one per
quantile metric. Metric expressions are parsed and checked against the log's columns
before they become SQL."""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar, Literal

import duckdb

from rolloutctl.errors import InvalidInput, RolloutError, first_line
from rolloutctl.metrics import remote
from rolloutctl.metrics.base import Measurement, MeasureRequest, SegmentKey
from rolloutctl.playbook import expr
from rolloutctl.playbook.expr import sql_ident
from rolloutctl.playbook.load import LoadedPlaybook
from rolloutctl.playbook.model import Metric, RequestLogSpec
from rolloutctl.stats.sufficient import (
    LOG_GAMMA,
    ZERO_BUCKET,
    Histogram,
    Moments,
    Proportion,
    RatioMoments,
    Stat,
)

log = logging.getLogger(__name__)

_NUMERIC = (
    "TINYINT",
    "SMALLINT",
    "INTEGER",
    "BIGINT",
    "HUGEINT",
    "FLOAT",
    "DOUBLE",
    "DECIMAL",
    "UTINYINT",
    "USMALLINT",
    "UINTEGER",
    "UBIGINT",
    "BOOLEAN",
)


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def epoch_us(ts: datetime) -> int:
    """A time as integer microseconds since 1970 (the `__t` column every query compares)."""
    return (ts - EPOCH) // timedelta(microseconds=1)


def _time_sql(ts: datetime) -> str:
    """A time as `__t` compares it, with the time in words for a reader of the query."""
    return f"{epoch_us(ts)} /* {ts.astimezone(UTC).isoformat()} */"


def _window_sql(start: datetime, end: datetime) -> str:
    return f"__t >= {_time_sql(start)} AND __t < {_time_sql(end)}"


def _arm_rows(request: MeasureRequest) -> tuple[str, str]:
    """SQL for the rows that belong to either arm, and for the rows of any variant in the
    windows looked at (where unknown variants are counted). Without a control window both
    arms share [start, end); with one, each arm has its own window."""
    window = _window_sql(request.start, request.end)
    if request.control_window is None:
        arms = f"({_literal(request.control)}, {_literal(request.canary)})"
        return f"{window} AND variant IN {arms}", window
    baseline = _window_sql(*request.control_window)
    return (
        f"((variant = {_literal(request.control)} AND {baseline})"
        f" OR (variant = {_literal(request.canary)} AND {window}))",
        f"(({baseline}) OR ({window}))",
    )


def _skipped_csv_lines(con: duckdb.DuckDBPyConnection, files: list[str]) -> int:
    """Lines of CSV files that did not become rows: data lines (all lines but each file's
    header) minus the rows read."""
    lines = 0
    for name in files:
        with open(name, "rb") as handle:
            last = b"\n"
            while chunk := handle.read(1 << 20):
                lines += chunk.count(b"\n")
                last = chunk[-1:]
            lines += 0 if last == b"\n" else 1  # a last line without its newline
        lines -= 1  # the header
    row = con.execute("SELECT count(*) FROM raw_log_csv").fetchone()
    return max(0, lines - int(row[0] if row else 0))


_FORMAT_OF_SUFFIX = {
    ".parquet": "parquet",
    ".csv": "csv",
    ".tsv": "csv",
    ".jsonl": "jsonl",
    ".json": "jsonl",
    ".ndjson": "jsonl",
}


@contextlib.contextmanager
def _timed(what: str) -> Iterator[None]:
    """Log how long a step took (-v); its start is the progress line's (cli/output.py)."""
    log.debug("%s ...", what, extra={"progress": True})
    started = time.perf_counter()
    yield
    log.info("%s: %.2f s", what, time.perf_counter() - started)


def _first_of(paths: list[str]) -> str:
    """Paths for a reader: the first, fit to print, and how many more."""
    more = f" (and {len(paths) - 1} more)" if len(paths) > 1 else ""
    return f"{remote.shown(paths[0])}{more}"


def _is_glob(path: str) -> bool:
    """Does the path name files to be listed (a web server's `?` is a query, not a glob)?"""
    return remote.is_glob(path) if remote.is_remote(path) else glob.has_magic(path)


def _expand(pattern: str) -> list[str]:
    """The files a path or glob names, local or remote (sorted within a glob)."""
    if remote.is_remote(pattern):
        return remote.expand(pattern)
    matched = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
    return [f for f in matched if os.path.isfile(f)]


def _reader(fmt: str, files: list[str]) -> str:
    """The DuckDB table function that reads `files` of one format."""
    listing = "[" + ", ".join(_literal(f) for f in files) + "]"
    return {
        "parquet": f"read_parquet({listing}, union_by_name = true)",
        # A malformed line is skipped, not fatal: `_skipped_csv_lines` counts it for the report.
        "csv": f"read_csv({listing}, union_by_name = true, types = {{'ts': 'VARCHAR'}},"
        " ignore_errors = true)",
        # Full-scan type detection: a bad value late in the file must not abort the read.
        "jsonl": f"read_json({listing}, format = 'newline_delimited', union_by_name = true,"
        " sample_size = -1)",
    }[fmt]


WHOLE = -1  # the bin of rows aggregated over the whole window (segments, when not per look)


def _is_boolean(node: expr.Node, types: dict[str, str]) -> bool:
    """Is the expression boolean-typed in SQL already (no cast needed)?"""
    if isinstance(node, expr.Name):
        return types.get(node.name) == "BOOLEAN"
    if isinstance(node, expr.Bin):
        return node.op in ("=", "!=", "<", "<=", ">", ">=") or (
            node.op in ("and", "or")
            and _is_boolean(node.left, types)
            and _is_boolean(node.right, types)
        )
    return isinstance(node, expr.In | expr.IsNull) or (
        isinstance(node, expr.Not) and _is_boolean(node.operand, types)
    )


def _look_times(start: datetime, end: datetime, every: timedelta | None) -> list[datetime]:
    """The end of each cumulative look: one look at `end`, or every `every` up to it."""
    if every is None or every <= timedelta(0):
        return [end]
    times, t = [], start + every
    while t < end:
        times.append(t)
        t += every
    times.append(end)
    return times


def _accumulate(total: Measurement, part: Measurement | None) -> Measurement:
    """total + part, statistic by statistic (sufficient statistics pool with +)."""
    if part is None:
        return total
    stats = {k: dict(v) for k, v in total.stats.items()}
    for key, arms in part.stats.items():
        into = stats.setdefault(key, {})
        for arm, stat in arms.items():
            into[arm] = into[arm] + stat if arm in into else stat  # type: ignore[operator]
    counts: dict[str, dict[SegmentKey, dict[str, int]]] = {}
    for name in ("arm_counts", "unit_counts"):
        merged = {k: dict(v) for k, v in getattr(total, name).items()}
        for key, arms in getattr(part, name).items():
            into = merged.setdefault(key, {"control": 0, "canary": 0})
            for arm, n in arms.items():
                into[arm] = into.get(arm, 0) + n
        counts[name] = merged
    return Measurement(
        stats=stats, arm_counts=counts["arm_counts"], unit_counts=counts["unit_counts"]
    )


@dataclass
class _Plan:
    """The SQL pieces one measurement's queries share."""

    columns: set[str]
    arms: str  # (control, canary) as a SQL list
    window: str  # the canary's window: freshness is judged on it
    arm_rows: str  # rows of either arm in its window
    span: str  # rows anywhere in the windows
    dims: list[str]  # segment dimensions that are columns of the log
    bin_sql: str  # a row's look interval (0 when there is one look)
    where: str  # arm rows inside the stage scope
    segments_per_look: bool
    dim_exprs: dict[str, str] = field(default_factory=dict)  # segment value per dimension

    @property
    def seg_names(self) -> list[str]:
        return [sql_ident("seg_" + d) for d in self.dims]

    @property
    def seg_bin(self) -> str:
        return "__bin, " if self.segments_per_look else ""

    @property
    def seg_cols(self) -> str:
        return "".join(f", {e} AS {sql_ident('seg_' + d)}" for d, e in self.dim_exprs.items())

    @classmethod
    def of(
        cls,
        request: MeasureRequest,
        types: dict[str, str],
        every: timedelta | None,
        segments_per_look: bool,
        out: Measurement,
    ) -> _Plan:
        """The pieces for `request` over a log with these column types; what cannot be used
        (a scope or dimension the log cannot express) becomes a note on `out`."""
        columns = set(types)
        arm_rows, span = _arm_rows(request)
        scope_sql = "TRUE"
        if request.scope is not None:
            try:
                scope_sql = expr.to_sql(request.scope, columns)
            except expr.ExprError as exc:
                out.notes.append(f"stage scope ignored for analysis: {exc}")
        for d in request.dimensions:
            if d not in columns:
                out.notes.append(f"segment dimension {d!r} is not a column of the log")
        return cls(
            columns=columns,
            arms=f"({_literal(request.control)}, {_literal(request.canary)})",
            window=_window_sql(request.start, request.end),
            arm_rows=arm_rows,
            span=span,
            dims=[d for d in request.dimensions if d in columns],
            bin_sql=_bin_sql(request, every),
            where=f"{arm_rows} AND ({scope_sql})",
            segments_per_look=segments_per_look,
        )


def _bin_sql(request: MeasureRequest, every: timedelta | None) -> str:
    """The look interval a row falls in, counted from the stage's start."""
    if every is None:
        return "0"
    every_us = every // timedelta(microseconds=1)
    bin_sql = f"CAST(floor(CAST(__t - {epoch_us(request.start)} AS DOUBLE) / {every_us}) AS BIGINT)"
    if request.control_window is None:
        return bin_sql
    # Looks follow the canary's window; the baseline is whole at every look, so it goes to
    # the first bin, which every cumulative look includes.
    return f"CASE WHEN variant = {_literal(request.control)} THEN 0 ELSE {bin_sql} END"


@dataclass
class RequestLogSource:
    KIND: ClassVar[str] = "requestlog"
    name: str
    paths: list[str]
    format: str = "auto"
    skipped_lines: int = 0  # CSV lines that could not be read as a row (set by `open`)

    @classmethod
    def from_spec(cls, name: str, spec: Any, loaded: LoadedPlaybook) -> RequestLogSource:
        assert isinstance(spec, RequestLogSpec)
        raw = spec.path if isinstance(spec.path, list) else [spec.path]
        return cls(name, [loaded.resolve_path(p) for p in raw], spec.format)

    # ------------------------------------------------------------ reading

    @property
    def label(self) -> str:
        """Where the rows are, for a reader: the first path (and how many more)."""
        return _first_of(self.paths) if self.paths else self.name

    def _nothing_to_read(self) -> bool:
        """Every path is a glob that matches no file yet (the gate then holds on no data)."""
        return all(map(_is_glob, self.paths)) and not self._matches()

    def _matches(self) -> list[str]:
        return [f for pattern in self.paths for f in _expand(pattern)]

    def _files(self) -> list[str]:
        files = self._matches()
        if not files:
            shown = ", ".join(remote.shown(p) for p in self.paths)
            raise InvalidInput(
                f"request log {self.name!r}: no file matches {shown}",
                hint="check sources.<name>.path (relative paths start at the playbook's folder)",
            )
        return files

    def _formats(self, files: list[str]) -> dict[str, list[str]]:
        """The files grouped by format: `format:` when set, else each file's suffix (a list
        may mix JSONL, CSV and Parquet)."""
        if self.format != "auto":
            return {self.format: files}
        groups: dict[str, list[str]] = {}
        unknown: set[str] = set()
        for f in files:
            suffix = Path(remote.shown(f)).suffix.lower()
            fmt = _FORMAT_OF_SUFFIX.get(suffix)
            if fmt is None:
                unknown.add(suffix)
            else:
                groups.setdefault(fmt, []).append(f)
        if unknown:
            raise InvalidInput(
                f"request log {self.name!r}: cannot tell the format of {sorted(unknown)}",
                hint="name files .jsonl, .csv or .parquet, or set sources.<name>.format",
            )
        return groups

    def open(self, con: duckdb.DuckDBPyConnection) -> dict[str, str]:
        """Create view `log` with a normalised `__ts`; return column -> DuckDB type. Files of
        several formats are read one view per format, then unioned by column name."""
        files = self._files()
        groups = self._formats(files)
        remote.register(con, files)
        views = []
        for fmt, group in groups.items():
            view = f"raw_log_{fmt}"
            try:
                con.execute(
                    f"CREATE OR REPLACE TEMP VIEW {view} AS SELECT * FROM {_reader(fmt, group)}"
                )
                con.execute(f"DESCRIBE {view}").fetchall()
            except duckdb.Error as exc:
                if remote.failed_read(exc) and remote.is_remote(group[0]):
                    raise remote.unreachable(group, exc) from None
                raise self._unreadable(group, exc) from None
            views.append(view)
        try:
            union = " UNION ALL BY NAME ".join(f"SELECT * FROM {v}" for v in views)
            con.execute(f"CREATE OR REPLACE TEMP VIEW raw_log AS {union}")
            described = con.execute("DESCRIBE raw_log").fetchall()
        except duckdb.Error as exc:
            raise InvalidInput(
                f"request log {self.name!r}: cannot combine its {' and '.join(groups)} files: "
                f"{str(exc).splitlines()[0]}",
                hint="give a column the same type in every file",
            ) from None
        types = {row[0]: str(row[1]) for row in described}
        if "csv" in groups:
            self.skipped_lines = _skipped_csv_lines(con, groups["csv"])
        missing = [c for c in ("ts", "variant") if c not in types]
        if missing:
            raise InvalidInput(
                f"request log {self.name!r}: no {' or '.join(missing)} column "
                f"(columns: {', '.join(sorted(types)) or 'none'})",
                hint="every row needs ts (when) and variant (which arm served it)",
            )
        selects = []
        for col, typ in types.items():
            if typ == "JSON":  # mixed types in JSONL: keep the text, cast where used
                selects.append(f"json_extract_string({sql_ident(col)}, '$') AS {sql_ident(col)}")
            else:
                selects.append(sql_ident(col))
        ts_type = types["ts"]
        if ts_type.startswith("TIMESTAMP") or ts_type == "DATE":
            ts_expr = "CAST(ts AS TIMESTAMPTZ)"
        else:
            text = "CAST(ts AS VARCHAR)"
            number = f"TRY_CAST({text} AS DOUBLE)"
            ts_expr = (
                f"COALESCE(TRY_CAST({text} AS TIMESTAMPTZ), CASE WHEN {number} IS NULL THEN NULL"
                f" WHEN {number} > 1e11 THEN to_timestamp({number} / 1000)"
                f" ELSE to_timestamp({number}) END)"
            )
        con.execute(
            f"CREATE OR REPLACE TEMP VIEW log AS SELECT *, epoch_us(__ts) AS __t FROM "
            f"(SELECT *, {ts_expr} AS __ts FROM (SELECT {', '.join(selects)} FROM raw_log))"
        )
        return {c: ("VARCHAR" if t == "JSON" else t) for c, t in types.items()}

    def _unreadable(self, group: list[str], exc: duckdb.Error) -> InvalidInput:
        return InvalidInput(
            f"request log {self.name!r}: cannot read {_first_of(group)}: {first_line(exc)}",
            hint="each file must be valid JSONL, CSV or Parquet with ts and variant columns",
        )

    def _query_failed(self, exc: duckdb.Error) -> RolloutError:
        """A query's error: a remote read lost partway is the store's (exit 4), anything else
        the log's (exit 3)."""
        if remote.failed_read(exc) and any(map(remote.is_remote, self.paths)):
            return remote.unreachable(self.paths, exc)
        return InvalidInput(f"request log {self.name!r}: query failed: {first_line(exc)}")

    @contextlib.contextmanager
    def _opened(self) -> Iterator[tuple[duckdb.DuckDBPyConnection, dict[str, str]]]:
        """A connection with the log opened, closed after use; any query's error mapped."""
        con = self.connect()
        try:
            yield con, self.open(con)
        except duckdb.Error as exc:
            raise self._query_failed(exc) from None
        finally:
            con.close()

    def shown(self, con: Any, query: str) -> str:
        """The query as the engine runs it (the SQL source renders it for its engine)."""
        return query

    def connect(self) -> duckdb.DuckDBPyConnection:
        con = duckdb.connect(":memory:")
        con.execute("SET TimeZone = 'UTC'")
        return con

    # ------------------------------------------------------------ measuring

    def time_range(self) -> tuple[datetime, datetime] | None:
        """The first and last timestamp in the log (None when it has no dated rows)."""
        with self._opened() as (con, _):
            row = con.execute("SELECT min(__t), max(__t) FROM log").fetchone()
        if not row or row[0] is None:
            return None
        first, last = (EPOCH + timedelta(microseconds=int(v)) for v in row)
        return first, last

    def measure(self, request: MeasureRequest) -> Measurement:
        return self._run(request, None)[-1][1]

    def measure_series(
        self, request: MeasureRequest, every: timedelta, *, segments_per_look: bool = True
    ) -> list[tuple[datetime, Measurement]]:
        """Cumulative measurements at start + every, start + 2 every, ... up to the end, from
        one pass over the log (each interval aggregated in SQL, then summed): how `backtest`
        replays a gate look by look. With `segments_per_look=False` only the overall numbers
        are kept per look and segments come with the last look alone: the gate's own
        measurement plus the series its report charts, for about the price of one look.

        With `request.control_window` the looks divide the canary's window only; the control
        arm is the whole baseline window at every look (it does not grow)."""
        return self._run(request, every, segments_per_look)

    def segment_mix(self, request: MeasureRequest) -> dict[str, list[tuple[str, int, int]]]:
        """Per dimension of the request that is a column: (value, baseline rows, recent rows),
        NULL as "(missing)", largest recent count first, from one query. Baseline rows are the
        control variant's in `control_window` (else in [start, end)), recent rows the canary's
        in [start, end), both within the scope. Every value is kept, none pooled into
        '(other)': new query patterns are what this is for. Dimensions that are not columns
        are left out; a glob that matches no file yet gives {}. The input of `stats.drift`."""
        if self._nothing_to_read():
            return {}
        with self._opened() as (con, types):
            dims = [d for d in request.dimensions if d in types]
            if not dims:
                return {}
            scope_sql = "TRUE"
            if request.scope is not None:
                with contextlib.suppress(expr.ExprError):  # ignored, as `measure` does
                    scope_sql = expr.to_sql(request.scope, set(types))
            arm_rows, _ = _arm_rows(request)
            baseline = _window_sql(*(request.control_window or (request.start, request.end)))
            recent = _window_sql(request.start, request.end)
            seg_names = [sql_ident("seg_" + d) for d in dims]
            seg_cols = "".join(
                f", {self._dim_expr(d, None)} AS {n}" for d, n in zip(dims, seg_names, strict=True)
            )
            query = (
                f"SELECT {', '.join([*seg_names, *(f'grouping({n})' for n in seg_names)])}, "
                f"count(*) FILTER (WHERE variant = {_literal(request.control)} AND {baseline}), "
                f"count(*) FILTER (WHERE variant = {_literal(request.canary)} AND {recent}) "
                f"FROM (SELECT variant, __t{seg_cols} FROM log "
                f"WHERE {arm_rows} AND ({scope_sql})) AS __rows "
                f"GROUP BY GROUPING SETS ({', '.join(f'({n})' for n in seg_names)})"
            )
            rows = con.execute(query).fetchall()
        mix: dict[str, list[tuple[str, int, int]]] = {d: [] for d in dims}
        for r in rows:  # (segment values..., grouping flags..., baseline, recent)
            i = list(r[len(dims) : 2 * len(dims)]).index(0)
            mix[dims[i]].append((str(r[i]), int(r[-2]), int(r[-1])))
        for values in mix.values():
            values.sort(key=lambda v: (-v[2], -v[1], v[0]))
        return mix

    def _run(
        self, request: MeasureRequest, every: timedelta | None, segments_per_look: bool = True
    ) -> list[tuple[datetime, Measurement]]:
        ends = _look_times(request.start, request.end, every)
        if self._nothing_to_read():
            series = []
            for end in ends:  # a glob that matches nothing yet: no data, so the gate holds
                out = Measurement()
                out.notes.append(f"no request-log file matches {', '.join(self.paths)} yet")
                self._fill_empty(out, request, [])
                series.append((end, out))
            return series
        with self._opened() as (con, types):
            return self._measure(con, types, request, every, ends, segments_per_look)

    def _measure(
        self,
        con: duckdb.DuckDBPyConnection,
        types: dict[str, str],
        request: MeasureRequest,
        every: timedelta | None,
        ends: list[datetime],
        segments_per_look: bool = True,
    ) -> list[tuple[datetime, Measurement]]:
        """The looks ending at `ends`: one health scan, one grouped aggregation by arm, bin
        and segment, the distinct units, a histogram query per quantile metric; then the
        bins added up look by look."""
        out = Measurement()  # what every look shares: notes, bad rows, errors, queries
        plan = _Plan.of(request, types, every, segments_per_look, out)
        with _timed(f"source {self.name}: health scan (bad rows, freshness, segment counts)"):
            segment_values = self._health(con, plan, request, types, out)
        plan.dim_exprs = {d: self._dim_expr(d, segment_values[d]) for d in plan.dims}
        with _timed(f"source {self.name}: counts and sums by arm, look and segment"):
            bins = self._aggregate(con, plan, request, types, out)
        with _timed(f"source {self.name}: distinct units per arm"):
            self._units(con, plan, request, bins)
        for metric in request.metrics:
            if metric.kind == "quantile" and metric.name not in out.errors:
                with _timed(f"source {self.name}: histogram of {metric.name}"):
                    self._histograms(con, metric, plan, types, out, bins, request)
        for query in dict.fromkeys(out.queries.values()):
            log.debug("source %s query:\n%s", self.name, query)
        return self._series(ends, bins, out, request, plan.dims)

    def _health(
        self,
        con: duckdb.DuckDBPyConnection,
        plan: _Plan,
        request: MeasureRequest,
        types: dict[str, str],
        out: Measurement,
    ) -> dict[str, list[str] | None]:
        """Bad rows, freshness, and segment cardinality, in one scan; returns per dimension
        the values judged on their own (None: all of them). Bad values are counted by the
        aggregation, among the rows it judges."""
        dims = plan.dims
        card = ", ".join(f"approx_count_distinct({sql_ident(d)})" for d in dims) or "0"
        health_sql = (
            f"SELECT count(*) FILTER (WHERE __t IS NULL),"
            f" count(*) FILTER (WHERE {plan.span} AND (variant IS NULL OR (variant NOT IN "
            f"{plan.arms} AND variant NOT LIKE 'shadow:%'))),"
            f" max(__t) FILTER (WHERE {plan.window}), {card},"
            f" count(*) FILTER (WHERE {plan.window})"
            " FROM log"
        )
        row = con.execute(health_sql).fetchone() or ()
        bad_ts, unknown_variant, latest = row[0], row[1], row[2]
        if bad_ts:
            out.bad_rows["unparseable ts"] = int(bad_ts)
        if unknown_variant:
            out.bad_rows["unknown variant"] = int(unknown_variant)
        if self.skipped_lines:
            out.bad_rows["unreadable CSV lines"] = self.skipped_lines
        out.latest = None if latest is None else EPOCH + timedelta(microseconds=int(latest))
        return {
            d: self._segments_judged(con, plan, request, d, row[3 + i] or 0, out)
            for i, d in enumerate(dims)
        }

    def _segments_judged(
        self,
        con: duckdb.DuckDBPyConnection,
        plan: _Plan,
        request: MeasureRequest,
        d: str,
        about: int,
        out: Measurement,
    ) -> list[str] | None:
        """Past max_segments values, the largest and the never-pooled (critical) ones are
        judged; the rest are pooled as '(other)'. None: every value is judged."""
        if about <= request.max_segments:
            return None
        top = con.execute(
            f"SELECT CAST({sql_ident(d)} AS VARCHAR) v FROM log WHERE {plan.arm_rows} "
            f"GROUP BY v ORDER BY count(*) DESC, v "
            f"LIMIT {request.max_segments}"
        ).fetchall()
        largest = [str(t[0]) for t in top]
        critical = [v for v in dict(request.never_pooled).get(d, ()) if v not in largest]
        out.notes.append(
            f"segment {d!r} has about {about} values; judging the "
            f"{request.max_segments} largest"
            + (f" and the critical {', '.join(map(repr, critical))}" if critical else "")
            + ", the rest pooled as '(other)'"
        )
        return largest + critical

    def _aggregate(
        self,
        con: duckdb.DuckDBPyConnection,
        plan: _Plan,
        request: MeasureRequest,
        types: dict[str, str],
        out: Measurement,
    ) -> dict[int, Measurement]:
        """Counts and sums of every non-quantile metric by arm, bin and segment, one scan."""
        aggregates: list[str] = ["count(*)"]
        readers: list[tuple[Metric, int, int]] = []
        for metric in request.metrics:
            try:
                parts = self._aggregates(metric, plan.columns, types)
            except expr.ExprError as exc:
                out.errors[metric.name] = str(exc)
                continue
            if parts is None:  # quantile: its own histogram query
                continue
            readers.append((metric, len(aggregates), len(parts)))
            aggregates.extend(parts)
        # Values that are there but not finite numbers, counted in the same pass.
        bad_values = list(self._bad_value_counts(request.metrics, plan.columns, types).items())
        bad_at = len(aggregates)
        aggregates.extend(sql for _, sql in bad_values)
        # One hash aggregation over the rows, by arm, bin and every segment at once; the
        # grouping sets then add up that small table (every aggregate is a count or a sum),
        # instead of scanning the rows once per grouping set.
        seg_names, dims = plan.seg_names, plan.dims
        sets = ["(variant, __bin)"] + [f"(variant, {plan.seg_bin}{s})" for s in seg_names]
        grouping = [f"grouping({s})" for s in seg_names]
        inner = ", ".join(f"{a} AS __a{i}" for i, a in enumerate(aggregates))
        keys = "".join(", " + s for s in seg_names)
        outer = [f"sum(__a{i})" for i in range(len(aggregates))]
        query = (
            f"SELECT variant, __bin, {', '.join([*seg_names, *grouping, *outer])} FROM ("
            f"SELECT variant, __bin{keys}, {inner} "
            f"FROM (SELECT *, {plan.bin_sql} AS __bin{plan.seg_cols} FROM log "
            f"WHERE {plan.where}) AS __rows GROUP BY variant, __bin{keys}) AS __cells "
            f"GROUP BY GROUPING SETS ({', '.join(sets)})"
        )
        try:
            rows = con.execute(query).fetchall()
        except duckdb.Error as exc:
            raise self._query_failed(exc) from None
        for metric, _, _ in readers:
            out.queries[metric.name] = self.shown(con, query)
        bins: dict[int, Measurement] = {}
        offset = 2 + 2 * len(dims)
        bad_counts = [0] * len(bad_values)
        for r in rows:
            arm = "control" if r[0] == request.control else "canary"
            segment = self._segment_of(r, dims)
            if segment is False:
                continue
            if segment is None:  # the overall rows (one per arm and look) add up to the window
                for i in range(len(bad_values)):
                    bad_counts[i] += int(r[offset + bad_at + i] or 0)
            part = bins.setdefault(WHOLE if r[1] is None else int(r[1]), Measurement())
            part.arm_counts.setdefault(segment, {"control": 0, "canary": 0})[arm] = int(r[offset])
            for metric, start, width in readers:
                values = r[offset + start : offset + start + width]
                part.stats.setdefault((metric.name, segment), {})[arm] = self._stat(metric, values)
        for (text, _), n in zip(bad_values, bad_counts, strict=True):
            if n:
                out.bad_rows[f"non-numeric or non-finite {text}"] = n
        return bins

    @staticmethod
    def _units(
        con: duckdb.DuckDBPyConnection,
        plan: _Plan,
        request: MeasureRequest,
        bins: dict[int, Measurement],
    ) -> None:
        """Distinct units per arm for the sample-ratio check (exact, never approximate)."""
        if not (request.units and "unit_id" in plan.columns):
            return
        if not plan.segments_per_look:
            # Overall distinct units for the last look only (charts need none per look).
            part = bins.setdefault(WHOLE, Measurement())
            units = part.unit_counts.setdefault(None, {"control": 0, "canary": 0})
            for variant, n in con.execute(
                f"SELECT variant, count(DISTINCT unit_id) FROM log WHERE {plan.where} "
                "GROUP BY variant"
            ).fetchall():
                units["control" if variant == request.control else "canary"] = int(n)
            return
        # Distinct units for the sample-ratio check, overall only, each counted in the
        # interval it was first seen (so intervals add up). A DISTINCT inside the grouping
        # sets of the aggregation would cost several times the whole scan.
        for variant, first_bin, n in con.execute(
            f"SELECT variant, first_bin, count(*) FROM (SELECT variant, unit_id, "
            f"min({plan.bin_sql}) AS first_bin FROM log WHERE {plan.where} "
            f"GROUP BY variant, unit_id) AS __units GROUP BY variant, first_bin"
        ).fetchall():
            part = bins.setdefault(int(first_bin), Measurement())
            units = part.unit_counts.setdefault(None, {"control": 0, "canary": 0})
            units["control" if variant == request.control else "canary"] = int(n)

    def _series(
        self,
        ends: list[datetime],
        bins: dict[int, Measurement],
        out: Measurement,
        request: MeasureRequest,
        dims: list[str],
    ) -> list[tuple[datetime, Measurement]]:
        """The cumulative look at each end: every bin up to it (and, at the last, the rows
        aggregated over the whole window), with what every look shares."""
        series: list[tuple[datetime, Measurement]] = []
        total = Measurement()
        for index, end in enumerate(ends):
            total = _accumulate(total, bins.get(index))
            if index == len(ends) - 1:  # segments over the whole window, when not per look
                total = _accumulate(total, bins.get(WHOLE))
            look = Measurement(
                stats={k: dict(v) for k, v in total.stats.items()},
                arm_counts={k: dict(v) for k, v in total.arm_counts.items()},
                unit_counts={k: dict(v) for k, v in total.unit_counts.items()},
                errors=dict(out.errors),
                queries=dict(out.queries),
                bad_rows=dict(out.bad_rows),
                notes=list(out.notes),
                latest=out.latest,
            )
            self._fill_empty(look, request, dims)
            series.append((end, look))
        return series

    @staticmethod
    def _dim_expr(dim: str, keep: Sequence[str] | None) -> str:
        text = f"COALESCE(CAST({sql_ident(dim)} AS VARCHAR), '(missing)')"
        if keep is None:
            return text
        listing = ", ".join(_literal(v) for v in keep)
        return f"CASE WHEN {text} IN ({listing}) THEN {text} ELSE '(other)' END"

    @staticmethod
    def _segment_of(row: Sequence[Any], dims: list[str]) -> SegmentKey | Literal[False]:
        """None for the overall row, (dim, value) for a one-dimension row, False otherwise.
        Rows are (variant, bin, segment values..., grouping flags..., aggregates...)."""
        flags = row[2 + len(dims) : 2 + 2 * len(dims)]
        present = [i for i, g in enumerate(flags) if g == 0]
        if not present:
            return None
        if len(present) != 1:
            return False
        i = present[0]
        return (dims[i], str(row[2 + i]))

    def _number(self, column_or_expr: str, columns: set[str], types: dict[str, str]) -> str:
        """The value as a finite DOUBLE, or NULL: text that is not a number, NaN and the
        infinities are left out of every statistic (and counted by `_bad_value_counts`)."""
        node = expr.parse(column_or_expr)
        sql = expr.to_sql(node, columns)
        if isinstance(node, expr.Name) and types.get(node.name, "").startswith(_NUMERIC):
            number = f"CAST({sql} AS DOUBLE)"
        else:
            number = f"TRY_CAST({sql} AS DOUBLE)"
        return f"(CASE WHEN {number} - {number} = 0 THEN {number} END)"  # not NaN nor ±inf

    def _bad_value_counts(
        self, metrics: Sequence[Metric], columns: set[str], types: dict[str, str]
    ) -> dict[str, str]:
        """Per value expression of the metrics: SQL counting the rows where it holds
        something (not NULL) that is not a finite number."""
        counts: dict[str, str] = {}
        for metric in metrics:
            for text in (metric.value, metric.numerator, metric.denominator):
                if text is None or text in counts:
                    continue
                try:
                    raw = expr.to_sql(expr.parse(text), columns)
                    clean = self._number(text, columns, types)
                except expr.ExprError:
                    continue  # reported as the metric's own error
                counts[text] = f"count(*) FILTER (WHERE ({raw}) IS NOT NULL AND {clean} IS NULL)"
        return counts

    def _aggregates(
        self, metric: Metric, columns: set[str], types: dict[str, str]
    ) -> list[str] | None:
        if metric.kind == "proportion":
            assert metric.event is not None
            node = expr.parse(metric.event)
            ev = expr.to_sql(node, columns)
            if not _is_boolean(node, types):  # e.g. a 0/1 or 'true' column: cast what parses
                ev = f"TRY_CAST({ev} AS BOOLEAN)"
            return [f"count({ev})", f"count_if({ev})"]
        if metric.kind == "mean":
            assert metric.value is not None
            x = self._number(metric.value, columns, types)
            return [f"count({x})", f"sum({x})", f"sum({x} * {x})"]
        if metric.kind == "ratio":
            assert metric.numerator is not None and metric.denominator is not None
            x = self._number(metric.numerator, columns, types)
            y = self._number(metric.denominator, columns, types)
            both = f"({x} IS NOT NULL AND {y} IS NOT NULL)"
            return [
                f"count(*) FILTER (WHERE {both})",
                f"sum({x}) FILTER (WHERE {both})",
                f"sum({y}) FILTER (WHERE {both})",
                f"sum({x} * {x}) FILTER (WHERE {both})",
                f"sum({y} * {y}) FILTER (WHERE {both})",
                f"sum({x} * {y}) FILTER (WHERE {both})",
            ]
        return None

    @staticmethod
    def _stat(metric: Metric, v: Sequence[Any]) -> Stat:
        f = [0.0 if x is None else float(x) for x in v]
        if metric.kind == "proportion":
            return Proportion(int(f[0]), int(f[1]))
        if metric.kind == "mean":
            return Moments(int(f[0]), f[1], f[2])
        return RatioMoments(int(f[0]), f[1], f[2], f[3], f[4], f[5])

    def _histograms(
        self,
        con: duckdb.DuckDBPyConnection,
        metric: Metric,
        plan: _Plan,
        types: dict[str, str],
        out: Measurement,
        bins: dict[int, Measurement],
        request: MeasureRequest,
    ) -> None:
        assert metric.value is not None
        try:
            x = self._number(metric.value, plan.columns, types)
        except expr.ExprError as exc:
            out.errors[metric.name] = str(exc)
            return
        dims, seg_names = plan.dims, plan.seg_names
        bucket = f"CASE WHEN __x <= 0 THEN {ZERO_BUCKET} ELSE CAST(floor(ln(__x) / {LOG_GAMMA!r}) AS INTEGER) END"
        grouping = [f"grouping({s})" for s in seg_names]
        sets = ["(variant, __bin, b)"] + [f"(variant, {plan.seg_bin}{s}, b)" for s in seg_names]
        query = (
            f"SELECT variant, __bin, {', '.join([*seg_names, *grouping, 'b', 'count(*)'])} FROM ("
            f"SELECT variant, __bin{plan.seg_cols}, {bucket} AS b FROM (SELECT *, {x} AS __x, "
            f"{plan.bin_sql} AS __bin FROM log WHERE {plan.where}) AS __rows "
            "WHERE __x IS NOT NULL) AS __values "
            f"GROUP BY GROUPING SETS ({', '.join(sets)})"
        )
        out.queries[metric.name] = self.shown(con, query)
        hist: dict[tuple[int, SegmentKey, str], dict[int, int]] = {}
        for r in con.execute(query).fetchall():
            arm = "control" if r[0] == request.control else "canary"
            segment = self._segment_of(r, dims)
            if segment is False:
                continue
            counts = hist.setdefault((WHOLE if r[1] is None else int(r[1]), segment, arm), {})
            counts[int(r[-2])] = int(r[-1])
        for (index, segment, arm), counts in hist.items():
            part = bins.setdefault(index, Measurement())
            part.stats.setdefault((metric.name, segment), {})[arm] = Histogram(counts)

    @staticmethod
    def _fill_empty(out: Measurement, request: MeasureRequest, dims: list[str]) -> None:
        """An arm with no rows gets zero statistics, so 'no data' is explicit, not missing."""
        empty: dict[str, Stat] = {
            "proportion": Proportion(0, 0),
            "mean": Moments(0, 0.0, 0.0),
            "ratio": RatioMoments(0, 0.0, 0.0, 0.0, 0.0, 0.0),
            "quantile": Histogram({}),
        }
        out.arm_counts.setdefault(None, {"control": 0, "canary": 0})
        for metric in request.metrics:
            if metric.name in out.errors:
                continue
            arms = out.stats.setdefault((metric.name, None), {})
            for arm in ("control", "canary"):
                arms.setdefault(arm, empty[metric.kind])
            for key, arms in list(out.stats.items()):
                if key[0] == metric.name:
                    for arm in ("control", "canary"):
                        arms.setdefault(arm, empty[metric.kind])
