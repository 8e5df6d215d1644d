"""Request logs where a team keeps them: a table in PostgreSQL, ClickHouse or DuckDB (and, by
dialect, BigQuery, Snowflake, Databricks or Trino), aggregated where the data is.

The queries are the request-log source's own (metrics/requestlog.py: counts, sums, sums of
squares, log-bucket histograms by arm, look and segment, exact distinct units), written once
over a relation named `log` and rendered for the engine by sqlglot. Only those sufficient
statistics cross the wire: kilobytes per look whatever the table's size.

`log` is a common table expression built from the playbook's mapping, in the engine's own
SQL: every column of `table:` (or of the `from:` subquery), with `columns:` naming the
engine's column or expression for a request-log column (`ts: event_time`, `latency_ms:
"duration_ns / 1e6"`), `variants:` mapping the flag's variants onto the values the table
holds (`v2: answer-model-v2`), and `__t`, the request's time as integer microseconds since
1970, which every window and look compares. The connection comes from `url:` (a `${ENV}`
reference; never printed). A driver is imported only when its engine is used."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from rolloutctl.envvars import resolve_env
from rolloutctl.errors import BackendError, InvalidInput, UsageError, first_line
from rolloutctl.extras import require
from rolloutctl.metrics.requestlog import RequestLogSource
from rolloutctl.playbook.load import LoadedPlaybook
from rolloutctl.playbook.model import SqlSpec

if TYPE_CHECKING:
    import duckdb

# Engines this version connects to; the others' SQL is rendered (and checked in the tests),
# not run.
RUNNABLE = ("duckdb", "postgres", "clickhouse")

# The request's time as integer microseconds since 1970, per engine ({ts}: the ts column).
EPOCH_US = {
    "duckdb": "epoch_us(CAST({ts} AS TIMESTAMPTZ))",
    # timestamptz - timestamptz is immutable (EXTRACT from a timestamptz is not), so an
    # index on this expression is allowed, and gives the planner its statistics.
    "postgres": "CAST(floor(EXTRACT(EPOCH FROM ({ts} - TIMESTAMPTZ '1970-01-01 00:00:00+00'))"
    " * 1000000) AS BIGINT)",
    "clickhouse": "toUnixTimestamp64Micro(toDateTime64({ts}, 6, 'UTC'))",
    "bigquery": "UNIX_MICROS(TIMESTAMP({ts}))",
    "snowflake": "DATE_PART(epoch_microsecond, {ts})",
    "databricks": "unix_micros({ts})",
    "trino": "CAST(floor(to_unixtime({ts}) * 1000000) AS BIGINT)",
}

# Engine type names -> the DuckDB names the request-log queries test (numeric, boolean, text).
_PG_TYPES = {
    16: "BOOLEAN",
    20: "BIGINT",
    21: "SMALLINT",
    23: "INTEGER",
    700: "FLOAT",
    701: "DOUBLE",
    1700: "DECIMAL",
    1082: "DATE",
    1114: "TIMESTAMP",
    1184: "TIMESTAMP WITH TIME ZONE",
}


def quote(name: str, dialect: str) -> str:
    """An identifier quoted for the engine."""
    from sqlglot import exp

    return exp.to_identifier(name, quoted=True).sql(dialect=dialect)


def literal(value: str, dialect: str) -> str:
    from sqlglot import exp

    return exp.Literal.string(value).sql(dialect=dialect)


def render(sql: str, dialect: str) -> str:
    """A request-log query (DuckDB's SQL) in the engine's SQL."""
    if dialect == "duckdb":
        return sql
    import sqlglot
    from sqlglot import exp

    def portable(node: exp.Expression) -> exp.Expression:
        # PostgreSQL has no approximate distinct count: count exactly (segment sizes only).
        if dialect == "postgres" and isinstance(node, exp.ApproxDistinct):
            return exp.Count(this=exp.Distinct(expressions=[node.this]))
        return node

    try:
        tree = sqlglot.parse_one(sql, read="duckdb").transform(portable)
        return tree.sql(dialect=dialect, unsupported_level=sqlglot.ErrorLevel.RAISE)
    except sqlglot.errors.SqlglotError as exc:
        raise InvalidInput(
            f"cannot write this query for {dialect}: {str(exc).splitlines()[0]}",
            hint="simplify the metric's expression, or use a requestlog source",
        ) from None


class Engine(Protocol):
    """A connection to one engine: rows of a query in its own SQL, and a relation's columns."""

    def rows(self, sql: str) -> list[tuple[Any, ...]]: ...

    def columns(self, sql: str) -> dict[str, str]: ...

    def close(self) -> None: ...


@dataclass
class _Result:
    found: list[tuple[Any, ...]]

    def fetchall(self) -> list[tuple[Any, ...]]:
        return self.found

    def fetchone(self) -> tuple[Any, ...] | None:
        return self.found[0] if self.found else None


@dataclass
class SqlConnection:
    """What the request-log queries talk to: each query (DuckDB's SQL over `log`) is rendered
    for the engine, `log` prepended as a common table expression, and run there."""

    engine: Engine
    dialect: str
    log_sql: str = ""  # the `log` relation in the engine's SQL (set by SqlSource.open)
    asked: list[str] = field(default_factory=list)  # every query, as written (DuckDB's SQL)

    def engine_sql(self, sql: str) -> str:
        return f"WITH log AS ({self.log_sql}) {render(sql, self.dialect)}"

    def execute(self, sql: str) -> _Result:
        self.asked.append(sql)
        return _Result(self.engine.rows(self.engine_sql(sql)))

    def close(self) -> None:
        self.engine.close()


@dataclass
class SqlSource(RequestLogSource):
    KIND: ClassVar[str] = "sql"
    engine: str = "duckdb"
    url: str | None = None
    relation: str = ""  # the table's name, or `(subquery)`, in the engine's SQL
    mapping: dict[str, str] = field(default_factory=dict)
    variants: dict[str, str] = field(default_factory=dict)
    where: str = ""  # the playbook, for messages

    @classmethod
    def from_spec(cls, name: str, spec: Any, loaded: LoadedPlaybook) -> SqlSource:
        assert isinstance(spec, SqlSpec)
        where = f"{loaded.path}: sources.{name}"
        url = resolve_env(spec.url, where=f"{where}.url") if spec.url else None
        if spec.engine == "duckdb" and url and not url.startswith(":"):
            url = loaded.resolve_path(url)
        relation = spec.table if spec.table is not None else f"({spec.from_}) AS __source"
        return cls(
            name,
            [],
            engine=spec.engine,
            url=url,
            relation=relation,
            mapping=dict(spec.columns),
            variants=dict(spec.variants),
            where=where,
        )

    @property
    def label(self) -> str:
        return f"{self.engine} {self.relation}"

    # ------------------------------------------------------------ the engine

    def _nothing_to_read(self) -> bool:
        return False

    def connect(self) -> duckdb.DuckDBPyConnection:
        if self.engine not in RUNNABLE:
            raise UsageError(
                f"{self.where}: rolloutctl cannot connect to {self.engine} yet (its SQL is "
                f"rendered and checked in rolloutctl's tests, not run); it runs "
                f"{', '.join(RUNNABLE)}",
                hint="copy the logs to one of those engines, or to Parquet for a requestlog source",
            )
        connection = SqlConnection(_connect(self.engine, self.url, self.name), self.engine)
        return connection  # type: ignore[return-value]  # the queries' interface, not DuckDB's

    def open(self, con: Any) -> dict[str, str]:
        """Define `log` from the mapping; return its column -> type (DuckDB's names)."""
        assert isinstance(con, SqlConnection)
        try:
            found = con.engine.columns(f"SELECT * FROM {self.relation}")
        except InvalidInput as exc:
            raise InvalidInput(
                f"{self.where}: cannot read {self.relation}: {exc.message}",
                hint="check table: (or from:) and that the role may read it",
            ) from None
        self._check_mapping(found)
        con.log_sql = self._log_sql(found)
        try:
            types = con.engine.columns(con.log_sql)
        except InvalidInput as exc:
            raise InvalidInput(
                f"{self.where}: the column mapping does not run on {self.engine}: {exc.message}",
                hint="each columns: value is a column or expression in the engine's own SQL; "
                "ts must be a timestamp",
            ) from None
        return {c: t for c, t in types.items() if c not in ("__t", "__ts")}

    def _check_mapping(self, found: dict[str, str]) -> None:
        """The mapping names no reserved column, and ts and variant exist one way or another."""
        for target, source in self.mapping.items():
            if target in ("__t", "__ts"):
                raise InvalidInput(f"{self.where}.columns: {target!r} is a reserved name")
            if not source.strip():
                raise InvalidInput(f"{self.where}.columns.{target}: an empty expression")
        if "ts" not in self.mapping and "ts" not in found:
            raise InvalidInput(
                f"{self.where}: no ts column (columns: {', '.join(sorted(found)) or 'none'})",
                hint="map it: columns: {ts: <the table's time column>}",
            )
        if "variant" not in self.mapping and "variant" not in found:
            raise InvalidInput(
                f"{self.where}: no variant column (columns: {', '.join(sorted(found))})",
                hint="map it: columns: {variant: <the column naming the model>}, and "
                "variants: {<flag variant>: <its value in that column>}",
            )

    def _log_sql(self, found: dict[str, str]) -> str:
        """`log` in the engine's SQL: the table's columns with the mapped ones replaced, the
        variant named as the flag names it, and `__ts` and `__t` (integer microseconds)."""
        dialect = self.engine
        kept = [quote(c, dialect) for c in found if c not in self.mapping]
        exprs = [f"({e}) AS {quote(t, dialect)}" for t, e in self.mapping.items()]
        inner = f"SELECT {', '.join([*kept, *exprs])} FROM {self.relation}"
        ts, variant = quote("ts", dialect), quote("variant", dialect)
        names = dict.fromkeys(c for c in [*found, *self.mapping] if c != "variant")
        columns = [
            *(quote(c, dialect) for c in names),
            f"{self._variant_sql(variant, dialect)} AS {variant}",
            f"{ts} AS {quote('__ts', dialect)}",
            f"{EPOCH_US[dialect].format(ts=ts)} AS {quote('__t', dialect)}",
        ]
        return f"SELECT {', '.join(columns)} FROM ({inner}) AS __mapped"

    def _variant_sql(self, variant: str, dialect: str) -> str:
        if not self.variants:
            return variant
        cases = " ".join(
            f"WHEN {literal(value, dialect)} THEN {literal(arm, dialect)}"
            for arm, value in self.variants.items()
        )
        return f"CASE {variant} {cases} ELSE {variant} END"

    def shown(self, con: Any, query: str) -> str:
        """The query as the engine receives it, for the report and `check --explain`."""
        return con.engine_sql(query) if isinstance(con, SqlConnection) else query


def _connect(engine: str, url: str | None, name: str) -> Engine:
    if engine == "postgres":
        return _Postgres(url, name)
    if engine == "clickhouse":
        return _ClickHouse(url, name)
    return _DuckDB(url, name)


class _DuckDB:
    def __init__(self, url: str | None, name: str) -> None:
        import duckdb

        self.name = name
        try:
            self.con = duckdb.connect(url or ":memory:", read_only=bool(url))
        except duckdb.Error as exc:
            raise BackendError(
                f"sql source {name!r}: cannot open the DuckDB database: {first_line(exc)}"
            ) from None
        self.con.execute("SET TimeZone = 'UTC'")

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        import duckdb

        try:
            return self.con.execute(sql).fetchall()
        except duckdb.Error as exc:
            raise InvalidInput(
                f"sql source {self.name!r}: query failed: {first_line(exc)}"
            ) from None

    def columns(self, sql: str) -> dict[str, str]:
        import duckdb

        try:
            described = self.con.execute(f"DESCRIBE {sql}").fetchall()
        except duckdb.Error as exc:
            raise InvalidInput(first_line(exc)) from None
        return {str(r[0]): str(r[1]) for r in described}

    def close(self) -> None:
        self.con.close()


class _Postgres:
    """psycopg (the `postgres` extra), read-only transactions, errors by kind: a query the
    playbook got wrong is invalid input (exit 3), a lost server a backend error (exit 4)."""

    def __init__(self, url: str | None, name: str) -> None:
        psycopg = require("psycopg", "postgres", f"sql source {name!r} (postgres)")
        self.psycopg, self.name = psycopg, name
        if not url:
            raise InvalidInput(f"sql source {name!r}: postgres needs url: (${{DATABASE_URL}})")
        try:
            self.conn = psycopg.connect(url, autocommit=True, connect_timeout=10)
        except psycopg.Error as exc:
            raise BackendError(
                f"sql source {name!r}: cannot reach PostgreSQL: {first_line(exc)}",
                hint="check the URL in the environment, and that the server is up",
            ) from None
        with contextlib.suppress(psycopg.Error):
            self.conn.execute("SET TIME ZONE 'UTC'")
            self.conn.execute("SET default_transaction_read_only = on")

    def _run(self, sql: str) -> Any:
        psycopg = self.psycopg
        try:
            return self.conn.execute(sql)
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            raise BackendError(
                f"sql source {self.name!r}: PostgreSQL failed: {first_line(exc)}",
                hint="check that the server is up; the gate holds until it answers",
            ) from None
        except psycopg.Error as exc:
            raise InvalidInput(
                f"sql source {self.name!r}: query failed: {first_line(exc)}"
            ) from None

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in self._run(sql).fetchall()]

    def columns(self, sql: str) -> dict[str, str]:
        try:
            cur = self._run(f"SELECT * FROM ({sql}) AS __described LIMIT 0")
        except InvalidInput as exc:
            raise InvalidInput(exc.message.split("query failed: ", 1)[-1]) from None
        return {d.name: _PG_TYPES.get(d.type_code, "VARCHAR") for d in cur.description or []}

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.conn.close()


class _ClickHouse:
    """ClickHouse in this process (chdb, the `clickhouse` extra): `url: chdb:///DATA_DIR` for
    a database on disk, empty for an in-memory one whose `from:` reads files (`file(...)`,
    `s3(...)`, `url(...)`). A ClickHouse server (`clickhouse://`) is not supported yet."""

    def __init__(self, url: str | None, name: str) -> None:
        self.name = name
        if url and not url.startswith("chdb://"):
            raise UsageError(
                f"sql source {name!r}: clickhouse runs in this process through chdb; "
                "a ClickHouse server URL is not supported yet",
                hint="url: chdb:///path/to/data (or leave url: out and read files in from:)",
            )
        session = require("chdb.session", "clickhouse", f"sql source {name!r} (clickhouse)")
        path = (url or "").removeprefix("chdb://")
        self.session = session.Session(path) if path else session.Session()
        self.received_bytes = 0  # results read back, for the benchmark's transfer figure

    def _query(self, sql: str) -> dict[str, Any]:
        import json

        try:
            found = self.session.query(
                sql + " SETTINGS output_format_json_quote_64bit_integers = 0", "JSONCompact"
            )
        except Exception as exc:  # chdb raises RuntimeError with the server's message
            raise InvalidInput(
                f"sql source {self.name!r}: query failed: {first_line(exc)}"
            ) from None
        raw = found.bytes() or b'{"meta": [], "data": []}'
        self.received_bytes += len(raw)
        data: dict[str, Any] = json.loads(raw)
        return data

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in self._query(sql)["data"]]

    def columns(self, sql: str) -> dict[str, str]:
        try:
            described = self._query(f"DESCRIBE ({sql})")["data"]
        except InvalidInput as exc:
            raise InvalidInput(exc.message.split("query failed: ", 1)[-1]) from None
        return {str(r[0]): _clickhouse_type(str(r[1])) for r in described}

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.session.close()


def _clickhouse_type(name: str) -> str:
    """A ClickHouse type as the DuckDB name the queries test."""
    for wrapper in ("Nullable(", "LowCardinality("):
        while name.startswith(wrapper):
            name = name[len(wrapper) : -1]
    if name == "Bool":
        return "BOOLEAN"
    if name.startswith("UInt"):
        return "UBIGINT"
    if name.startswith("Int"):
        return "BIGINT"
    if name.startswith("Float"):
        return "DOUBLE"
    if name.startswith("Decimal"):
        return "DECIMAL"
    if name.startswith("DateTime") or name.startswith("Date"):
        return "TIMESTAMP"
    return "VARCHAR"
