"""The SQL each engine receives for one gate, in files reviewed like code: for the engines
CI runs (PostgreSQL, ClickHouse: tests/metrics/test_sql_source.py runs them) and for those
it cannot reach (BigQuery, Snowflake, Databricks, Trino), which are not run against a live
service anywhere in this suite. Every query is parsed back by sqlglot in its own dialect.

After an intended change to the queries, rewrite the files and review the diff:

    python -m tests.metrics.test_sql_dialects
"""

from __future__ import annotations

import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest

from rolloutctl import simulate
from rolloutctl.metrics.sql import SqlConnection, SqlSource
from tests.conftest import START
from tests.metrics.test_sql_source import MODELS, RENAMED, request

DIALECTS = ("postgres", "clickhouse", "bigquery", "snowflake", "databricks", "trino")
GOLDEN = Path(__file__).resolve().parents[1] / "data" / "sql_dialects"


class Recording(SqlSource):
    """The duckdb engine, keeping the connection so the queries it was asked can be read."""

    last: SqlConnection | None = None

    def connect(self) -> Any:
        con = super().connect()
        Recording.last = con
        return con


class Described:
    """An engine that only describes: the table's columns, for building `log`."""

    def __init__(self, columns: dict[str, str]) -> None:
        self.found = columns

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        raise AssertionError("a dialect's golden SQL is never run")

    def columns(self, sql: str) -> dict[str, str]:
        return self.found

    def close(self) -> None:
        pass


def asked_and_columns(folder: Path) -> tuple[list[str], dict[str, str]]:
    """A gate's measurement through the duckdb engine over a table with production names:
    the queries it asked (DuckDB's SQL, over `log`) and the table's columns."""
    frame = simulate.generate(
        "healthy",
        START,
        START + timedelta(hours=2),
        requests_per_hour=2_000,
        canary_percent=20,
        seed=5,
    )
    parquet = simulate.write(frame, folder / "log.parquet")
    database = folder / "logs.duckdb"
    model = "CASE variant " + " ".join(f"WHEN '{a}' THEN '{m}'" for a, m in MODELS.items())
    con = duckdb.connect(str(database))
    con.execute(
        "CREATE TABLE requests AS SELECT ts AS event_time, unit_id AS user_id, "
        f"{model} ELSE variant END AS model, * EXCLUDE (ts, unit_id, variant) "
        f"FROM read_parquet('{parquet}')"
    )
    columns = {str(r[0]): str(r[1]) for r in con.execute("DESCRIBE requests").fetchall()}
    con.close()
    source = Recording(
        "requests",
        [],
        engine="duckdb",
        url=str(database),
        relation="requests",
        mapping=dict(RENAMED),
        variants=dict(MODELS),
    )
    measured = source.measure_series(request(), timedelta(minutes=30))
    assert measured[-1][1].arm_counts[None]["canary"] > 0  # the queries found the rows
    assert Recording.last is not None
    return list(Recording.last.asked), columns


def rendered(dialect: str, asked: list[str], columns: dict[str, str]) -> list[str]:
    """Every query as `dialect`'s engine would receive it, `log` included."""
    source = SqlSource(
        "requests",
        [],
        engine=dialect,
        relation="requests",
        mapping=dict(RENAMED),
        variants=dict(MODELS),
    )
    con = SqlConnection(Described(columns), dialect)
    source.open(con)
    return [con.engine_sql(q) for q in asked]


def golden_text(queries: list[str]) -> str:
    return "".join(f"-- query {i + 1}\n{q};\n\n" for i, q in enumerate(queries))


@pytest.fixture(scope="module")
def asked(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[str], dict[str, str]]:
    return asked_and_columns(tmp_path_factory.mktemp("dialects"))


@pytest.mark.parametrize("dialect", DIALECTS)
def test_each_engine_receives_the_reviewed_sql(
    dialect: str, asked: tuple[list[str], dict[str, str]]
) -> None:
    import sqlglot

    queries = rendered(dialect, *asked)
    assert len(queries) >= 4  # health, aggregation, units, a histogram
    for query in queries:
        sqlglot.parse_one(query, read=dialect)  # raises on SQL the dialect cannot read
    path = GOLDEN / f"{dialect}.sql"
    assert path.read_text() == golden_text(queries), (
        f"{path} differs: after an intended change, run python -m tests.metrics.test_sql_dialects"
    )


def main() -> None:
    import tempfile

    asked_, columns = asked_and_columns(Path(tempfile.mkdtemp()))
    GOLDEN.mkdir(parents=True, exist_ok=True)
    for dialect in DIALECTS:
        (GOLDEN / f"{dialect}.sql").write_text(golden_text(rendered(dialect, asked_, columns)))
        print(f"wrote {GOLDEN / dialect}.sql", file=sys.stderr)


if __name__ == "__main__":
    main()


def test_an_engine_not_run_yet_is_a_usage_error_naming_the_ones_that_are() -> None:
    from rolloutctl.errors import UsageError

    source = SqlSource("requests", [], engine="snowflake", relation="requests", where="pb")
    with pytest.raises(UsageError) as refused:
        source.measure(request())
    assert "cannot connect to snowflake" in refused.value.message
    assert "duckdb, postgres, clickhouse" in refused.value.message
