"""The `sql` source against a real PostgreSQL: the same rows as a Parquet request log give
the same sufficient statistics (counts, sums, histograms, distinct units, freshness) at
every look, through a column and variant mapping like a production table needs; and the
errors a user can make each say what to fix."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest

from rolloutctl import simulate
from rolloutctl.errors import BackendError, InvalidInput
from rolloutctl.metrics.base import Measurement, MeasureRequest
from rolloutctl.metrics.requestlog import RequestLogSource
from rolloutctl.metrics.sql import SqlSource
from rolloutctl.playbook.load import load_playbook
from rolloutctl.stats.sufficient import Histogram, Moments, Proportion, RatioMoments
from tests.conftest import PLAYBOOK, START

# The production table's names for request-log columns, and its model labels for the arms.
RENAMED = {"ts": "event_time", "unit_id": "user_id", "variant": "model"}
MODELS = {"v1": "answer-model-v1", "v2": "answer-model-v2"}
PG_TYPES = {
    "VARCHAR": "text",
    "DOUBLE": "double precision",
    "BIGINT": "bigint",
    "BOOLEAN": "boolean",
    "TIMESTAMP WITH TIME ZONE": "timestamptz",
}


@dataclass
class Logs:
    parquet: Path
    url: str


def load_into_postgres(url: str, table: str, parquet: Path) -> None:
    """The Parquet rows as a PostgreSQL table with the production names (COPY)."""
    import psycopg

    con = duckdb.connect()
    described = con.execute(f"DESCRIBE SELECT * FROM read_parquet('{parquet}')").fetchall()
    names = [str(r[0]) for r in described]
    model = "CASE variant " + " ".join(f"WHEN '{a}' THEN '{m}'" for a, m in MODELS.items())
    select = ", ".join(f"{model} ELSE variant END" if n == "variant" else f'"{n}"' for n in names)
    rows = con.execute(f"SELECT {select} FROM read_parquet('{parquet}')").fetchall()
    columns = ", ".join(
        f'"{RENAMED.get(n, n)}" {PG_TYPES[str(r[1])]}'
        for n, r in zip(names, described, strict=True)
    )
    quoted = ", ".join(f'"{RENAMED.get(n, n)}"' for n in names)
    with psycopg.connect(url) as conn:
        conn.execute(f"CREATE TABLE {table} ({columns})")
        with conn.cursor().copy(f"COPY {table} ({quoted}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)


def regression(seed: int) -> Any:
    """Two hours of a hallucination regression, 20% on the candidate: the rows these tests
    put in each engine and store."""
    return simulate.generate(
        "hallucination_regression",
        START,
        START + timedelta(hours=2),
        requests_per_hour=20_000,
        canary_percent=20,
        seed=seed,
    )


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory, state_server: Any) -> Iterator[Logs]:
    root = tmp_path_factory.mktemp("sql-source")
    parquet = simulate.write(regression(seed=3), root / "log.parquet")
    url = state_server.new_database()
    load_into_postgres(url, "requests", parquet)
    yield Logs(parquet, url)


def request(**changes: Any) -> MeasureRequest:
    loaded = load_playbook_text()
    fields: dict[str, Any] = {
        "metrics": tuple(loaded.playbook.metrics),
        "start": START,
        "end": START + timedelta(hours=2),
        "control": "v1",
        "canary": "v2",
        "dimensions": ("category", "device"),
    }
    return MeasureRequest(**{**fields, **changes})


def load_playbook_text() -> Any:
    import tempfile

    folder = Path(tempfile.mkdtemp())
    path = folder / "rollout.yaml"
    path.write_text(PLAYBOOK)
    return load_playbook(path)


def postgres_source(url: str, **changes: Any) -> SqlSource:
    fields: dict[str, Any] = {
        "engine": "postgres",
        "url": url,
        "relation": "requests",
        "mapping": dict(RENAMED),
        "variants": dict(MODELS),
        "where": "rollout.yaml: sources.requests",
    }
    return SqlSource("requests", [], **{**fields, **changes})


def assert_same(a: Measurement, b: Measurement) -> None:
    assert a.arm_counts == b.arm_counts
    assert a.unit_counts == b.unit_counts
    assert a.bad_rows == b.bad_rows and a.errors == b.errors
    assert a.latest == b.latest
    assert set(a.stats) == set(b.stats)
    for key, arms in a.stats.items():
        for arm, stat in arms.items():
            other = b.stats[key][arm]
            assert type(stat) is type(other), key
            if isinstance(stat, Proportion | Histogram):
                assert stat == other, (key, arm)
            else:
                assert isinstance(stat, Moments | RatioMoments)
                for x, y in zip(vars(stat).values(), vars(other).values(), strict=True):
                    assert math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-9), (key, arm, x, y)


def test_postgres_gives_the_statistics_of_the_parquet_log_at_every_look(logs: Logs) -> None:
    files = RequestLogSource("requests", [str(logs.parquet)])
    table = postgres_source(logs.url)
    every = timedelta(minutes=30)
    looks_files = files.measure_series(request(), every)
    looks_table = table.measure_series(request(), every)
    assert [t for t, _ in looks_files] == [t for t, _ in looks_table]
    assert len(looks_table) == 4
    for (_, a), (_, b) in zip(looks_files, looks_table, strict=True):
        assert_same(a, b)
    last = looks_table[-1][1]
    assert last.arm_counts[None]["canary"] > 5_000
    assert any(key[1] is not None for key in last.stats)  # segments came back too
    query = last.queries["hallucination_rate"]
    assert query.startswith("WITH log AS (") and '"event_time"' in query  # the engine's SQL


def test_a_monitor_window_and_a_scope_are_pushed_down_alike(logs: Logs) -> None:
    from rolloutctl.playbook import expr

    changed = {
        "start": START + timedelta(hours=1),
        "control_window": (START, START + timedelta(hours=1)),
        "scope": expr.parse("category != 'health'"),
    }
    a = RequestLogSource("requests", [str(logs.parquet)]).measure(request(**changed))
    b = postgres_source(logs.url).measure(request(**changed))
    assert_same(a, b)


def test_the_monitor_segment_mix_is_the_same_from_the_table(logs: Logs) -> None:
    changed = {
        "start": START + timedelta(hours=1),
        "control_window": (START, START + timedelta(hours=1)),
    }
    files = RequestLogSource("requests", [str(logs.parquet)]).segment_mix(request(**changed))
    table = postgres_source(logs.url).segment_mix(request(**changed))
    assert files == table and set(table) == {"category", "device"}
    assert sum(n for _, _, n in table["device"]) > 0


def test_a_missing_table_a_bad_mapping_and_a_lost_server_say_what_to_fix(
    logs: Logs, state_server: Any
) -> None:
    with pytest.raises(InvalidInput) as missing:
        postgres_source(logs.url, relation="no_such_table").measure(request())
    assert "cannot read no_such_table" in missing.value.message
    assert "no_such_table" in missing.value.message and "does not exist" in missing.value.message

    with pytest.raises(InvalidInput) as unmapped:
        postgres_source(logs.url, mapping={"unit_id": "user_id"}).measure(request())
    assert "no ts column" in unmapped.value.message
    assert "columns: {ts:" in (unmapped.value.hint or "")

    with pytest.raises(InvalidInput) as wrong_type:
        postgres_source(logs.url, mapping={**RENAMED, "ts": "category"}).measure(request())
    assert "mapping does not run on postgres" in wrong_type.value.message

    password = state_server.db.password
    closed = logs.url.replace(f":{state_server.db.port}/", ":1/")
    with pytest.raises(BackendError) as lost:
        postgres_source(closed).measure(request())
    assert "cannot reach PostgreSQL" in lost.value.message
    assert password not in lost.value.message


SQL_SOURCE = """\
sources:
  requests:
    kind: sql
    engine: postgres
    url: ${DATABASE_URL}
    table: requests
    columns: {ts: event_time, unit_id: user_id, variant: model}
    variants: {v1: answer-model-v1, v2: answer-model-v2}
"""


def test_check_through_the_cli_judges_the_table_as_it_judges_the_files(
    logs: Logs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.conftest import make_workspace

    verdicts: list[Any] = []
    backtests: list[Any] = []
    plans: list[Any] = []
    for name, sources in (("files", None), ("table", SQL_SOURCE)):
        (tmp_path / name).mkdir()
        ws = make_workspace(tmp_path / name)
        text = PLAYBOOK
        if sources:
            start = text.index("sources:")
            end = text.index("segments:")
            text = text[:start] + sources + text[end:]
        else:
            (ws.root / "data").mkdir()
            (ws.root / "data" / "p1.parquet").write_bytes(logs.parquet.read_bytes())
        ws.playbook.write_text(text)
        monkeypatch.setenv("DATABASE_URL", logs.url)
        assert ws.run("start", str(ws.playbook), now=START).code == 0
        r = ws.run("--json", "check", "shop-answers", now=START + timedelta(hours=2))
        assert r.code == 10, r.err  # the hallucination regression is caught either way
        data = r.json()
        verdicts.append(
            [(m["name"], m["segment"], m["verdict"], m["control"]["n"]) for m in data["metrics"]]
        )
        assert logs.url.split("@")[0] not in r.out + r.err  # the URL's user:password never shown
        replay = ws.run(
            "--json", "backtest", str(ws.playbook), "--every", "30m", "--start", START.isoformat()
        )
        assert replay.code in (0, 10), replay.err
        backtests.append(replay.json())
        planned = ws.run("--json", "plan", str(ws.playbook))
        assert planned.code == 0, planned.err
        plans.append(planned.json())
    assert verdicts[0] == verdicts[1]
    assert backtests[0]["stages"] == backtests[1]["stages"]
    assert plans[0]["stages"] == plans[1]["stages"]  # sized from the same control statistics
    assert "postgres requests" in json.dumps(plans[1])


# ---------------------------------------------------------------- ClickHouse (chdb)


@pytest.fixture(scope="module")
def clickhouse(logs: Logs, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The same rows in a ClickHouse MergeTree table with the production names, on disk: the
    `url: chdb:///DIR` of a source."""
    from chdb import session

    folder = tmp_path_factory.mktemp("chdb")
    model = "CASE variant " + " ".join(f"WHEN '{a}' THEN '{m}'" for a, m in MODELS.items())
    db = session.Session(str(folder))
    try:
        db.query(
            "CREATE TABLE requests ENGINE = MergeTree ORDER BY tuple() AS "
            f"SELECT ts AS event_time, unit_id AS user_id, {model} ELSE variant END AS model, "
            f"* EXCEPT (ts, unit_id, variant) FROM file('{logs.parquet}', Parquet)"
        )
    finally:
        db.close()
    return f"chdb://{folder}"


def test_clickhouse_gives_the_statistics_of_the_parquet_log_at_every_look(
    logs: Logs, clickhouse: str
) -> None:
    files = RequestLogSource("requests", [str(logs.parquet)])
    table = postgres_source(clickhouse, engine="clickhouse")
    every = timedelta(minutes=30)
    for (_, a), (_, b) in zip(
        files.measure_series(request(), every), table.measure_series(request(), every), strict=True
    ):
        assert_same(a, b)
    query = table.measure(request()).queries["p95_latency_ms"]
    assert "toUnixTimestamp64Micro" in query  # ClickHouse's own SQL was sent


def test_clickhouse_reads_files_in_place_through_from(logs: Logs) -> None:
    files = RequestLogSource("requests", [str(logs.parquet)])
    in_place = postgres_source(
        None,
        engine="clickhouse",
        relation=f"(SELECT * FROM file('{logs.parquet}', Parquet)) AS __source",
        mapping={},
        variants={},
    )
    assert_same(files.measure(request()), in_place.measure(request()))


def test_a_malformed_sql_source_is_refused_at_its_line(tmp_path: Path) -> None:
    from tests.conftest import make_workspace

    ws = make_workspace(tmp_path)
    broken = SQL_SOURCE.replace(
        "    table: requests\n", "    table: requests\n    from: SELECT 1\n"
    )
    broken = broken.replace("engine: postgres", "engine: oracle")
    start, end = PLAYBOOK.index("sources:"), PLAYBOOK.index("segments:")
    ws.playbook.write_text(PLAYBOOK[:start] + broken + PLAYBOOK[end:])
    r = ws.run("validate", str(ws.playbook))
    assert r.code == 3
    assert "rollout.yaml:" in r.out and "engine" in r.out and "got 'oracle'" in r.out
    fixed = broken.replace("engine: oracle", "engine: postgres")
    ws.playbook.write_text(PLAYBOOK[:start] + fixed + PLAYBOOK[end:])
    r = ws.run("validate", str(ws.playbook))
    assert r.code == 3 and "exactly one of table: or from:" in r.out


def test_a_server_lost_in_the_middle_of_a_gate_is_a_backend_error(
    logs: Logs, state_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rolloutctl.metrics import sql

    original = sql._Postgres._run
    sent: list[str] = []

    def stop_before_the_aggregation(self: Any, text: str) -> Any:
        sent.append(text)
        if len(sent) == 4:  # after the mapping and health queries: the server goes away
            state_server.stop()
        return original(self, text)

    monkeypatch.setattr(sql._Postgres, "_run", stop_before_the_aggregation)
    try:
        with pytest.raises(BackendError) as lost:
            postgres_source(logs.url).measure(request())
    finally:
        state_server.start()
    assert "PostgreSQL failed" in lost.value.message
    assert state_server.db.password not in lost.value.message
