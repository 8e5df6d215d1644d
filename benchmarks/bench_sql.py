"""A gate over request logs kept in ClickHouse (chdb, in-process) and in PostgreSQL, each
beside the embedded DuckDB reading the same rows as Parquet, in the same run. Prints
figures; asserts nothing.

- ClickHouse: ROWS rows (default 100 million) made by ClickHouse itself in a MergeTree table
  with production names (event_time, user_id, model), exported to Parquet for DuckDB. The
  gate is a measurement of a playbook's metrics (error rate, hallucination rate, p95
  latency, cost per request, unsafe answers) by arm and over two segment dimensions, as a
  `kind: sql` source configured the way the README shows (table:, columns:, variants:);
  the figures are its wall time and the bytes of results read back.
- PostgreSQL (started here, tests/servers/postgres.py): PG_ROWS rows (default 10 million)
  loaded with COPY, the same gate, beside DuckDB on the same rows, and the time of each of
  the gate's queries (where the time goes).

    pip install -e '.[test]'      # psycopg and chdb
    python benchmarks/bench_sql.py [--rows 100000000] [--pg-rows 10000000]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

START = datetime(2026, 1, 5, tzinfo=UTC)
HOURS = 24
PLAYBOOK = """\
rollout: bench
flag: {backend: file, path: flags.json, key: answer-model, control: v1, canary: v2}
sources:
  requests: {kind: requestlog, path: log.parquet}
metrics:
  - {name: error_rate, group: technical, source: requests, kind: proportion, event: "status = 'error'", worse: higher, margin: {absolute: 0.01}}
  - {name: hallucination_rate, group: quality, source: requests, kind: proportion, event: hallucination, worse: higher, margin: {absolute: 0.005}}
  - {name: p95_latency_ms, group: technical, source: requests, kind: quantile, q: 0.95, value: latency_ms, worse: higher, margin: {relative: 0.15}}
  - {name: cost_per_request, group: technical, source: requests, kind: mean, value: cost_usd, worse: higher, margin: {relative: 0.5}}
  - {name: unsafe_answer_rate, group: safety, source: requests, kind: proportion, event: safety_violation, worse: higher, margin: {absolute: 0.002}}
stages:
  - {name: c1, traffic: 20, min_duration: 1h}
"""

# Rows made by ClickHouse: a day of traffic, 20% on the candidate, production column names.
MAKE_ROWS = """
SELECT
  toDateTime64('2026-01-05 00:00:00', 3, 'UTC') + toIntervalMillisecond(intDiv(number * {ms}, {rows})) AS event_time,
  concat('u', toString(cityHash64(number, 1) % 5000000)) AS user_id,
  if(cityHash64(number, 2) % 100 < 20, 'answer-model-v2', 'answer-model-v1') AS model,
  ['health', 'travel', 'shopping', 'finance', 'sports', 'tech', 'food', 'news'][1 + cityHash64(number, 3) % 8] AS category,
  ['mobile', 'desktop', 'tablet'][1 + cityHash64(number, 4) % 3] AS device,
  if(cityHash64(number, 5) % 1000 < 10, 'error', 'ok') AS status,
  400 + (cityHash64(number, 6) % 100000) / 50.0 AS latency_ms,
  0.002 + (cityHash64(number, 7) % 1000) / 1000000.0 AS cost_usd,
  cityHash64(number, 8) % 1000 < 25 AS hallucination,
  cityHash64(number, 9) % 10000 < 4 AS safety_violation
FROM numbers({rows})
"""
RENAMED = {"ts": "event_time", "unit_id": "user_id", "variant": "model"}
MODELS = {"v1": "answer-model-v1", "v2": "answer-model-v2"}


def the_request(folder: Path) -> Any:
    from rolloutctl.metrics.base import MeasureRequest
    from rolloutctl.playbook.load import load_playbook

    (folder / "rollout.yaml").write_text(PLAYBOOK)
    loaded = load_playbook(folder / "rollout.yaml")
    return MeasureRequest(
        tuple(loaded.playbook.metrics),
        START,
        START + timedelta(hours=HOURS),
        "v1",
        "v2",
        dimensions=("category", "device"),
    )


def timed(runs: int, measure: Any) -> tuple[float, Any]:
    times, last = [], None
    for _ in range(runs):
        t = time.perf_counter()
        last = measure()
        times.append(time.perf_counter() - t)
    return statistics.median(times), last


def duckdb_gate(parquet: Path, request: Any, runs: int) -> float:
    from rolloutctl.metrics.requestlog import RequestLogSource

    source = RequestLogSource("requests", [str(parquet)])
    seconds, _ = timed(runs, lambda: source.measure(request))
    return seconds


def clickhouse(root: Path, rows: int, request: Any, runs: int) -> None:
    from chdb import session

    from rolloutctl.metrics.sql import SqlConnection, SqlSource

    data = root / "chdb"
    parquet = root / "ch.parquet"
    t = time.perf_counter()
    db = session.Session(str(data))
    try:
        db.query(
            "CREATE TABLE requests ENGINE = MergeTree ORDER BY (event_time) AS "
            + MAKE_ROWS.format(rows=rows, ms=HOURS * 3_600_000)
        )
        db.query(
            f"SELECT event_time AS ts, user_id AS unit_id, "
            f"if(model = 'answer-model-v2', 'v2', 'v1') AS variant, * EXCEPT "
            f"(event_time, user_id, model) FROM requests "
            f"INTO OUTFILE '{parquet}' FORMAT Parquet"
        )
    finally:
        db.close()
    print(f"made {rows:,} rows in ClickHouse and as Parquet in {time.perf_counter() - t:.0f} s")

    kept: list[SqlConnection] = []

    class Kept(SqlSource):
        def connect(self) -> Any:
            con = super().connect()
            kept.append(con)
            return con

    source = Kept(
        "requests",
        [],
        engine="clickhouse",
        url=f"chdb://{data}",
        relation="requests",
        mapping=dict(RENAMED),
        variants=dict(MODELS),
    )
    seconds, measured = timed(runs, lambda: source.measure(request))
    received = kept[-1].engine.received_bytes  # type: ignore[attr-defined]
    canary = measured.arm_counts[None]["canary"]
    print(
        f"gate over {rows:,} rows in ClickHouse (chdb): median {seconds:.2f} s over {runs} "
        f"runs, {received / 1024:.1f} KiB of results read back ({canary:,} canary requests)"
    )
    print(
        f"  the same gate in embedded DuckDB over the Parquet: median "
        f"{duckdb_gate(parquet, request, runs):.2f} s"
    )
    clickhouse_floor(data)


# What the gate's three kinds of scan cost in ClickHouse written by hand for this table (no
# mapping, no NULL handling, no looks): a floor for the generated SQL on this machine.
FLOOR = {
    "counts and sums by arm and segment": "SELECT model, category, device, count(), "
    "countIf(status = 'error'), countIf(hallucination), sum(cost_usd), sum(cost_usd * cost_usd), "
    "countIf(safety_violation) FROM requests GROUP BY model, category, device",
    "exact distinct users per arm": "SELECT model, count() FROM (SELECT model, user_id "
    "FROM requests GROUP BY model, user_id) GROUP BY model",
    "latency histogram by arm and segment": "SELECT model, category, device, "
    "floor(log(latency_ms) / 0.01) AS k, count() FROM requests GROUP BY model, category, device, k",
}


# The same three scans folded into one aggregation, two ways ClickHouse allows: mergeable
# aggregate states per cell (exact distinct users as uniqExactState, the histogram as a
# sumMap), and the users as a grouping set beside the cells.
ONE_SCAN = {
    "one scan: per-cell uniqExactState and sumMap histogram, merged": "SELECT model, "
    "uniqExactMerge(u), sumMap(h) FROM (SELECT model, category, device, count(), "
    "countIf(status = 'error'), countIf(hallucination), sum(cost_usd), "
    "sum(cost_usd * cost_usd), countIf(safety_violation), uniqExactState(user_id) AS u, "
    "sumMap([toInt32(floor(log(latency_ms) / 0.01))], [toUInt64(1)]) AS h FROM requests "
    "GROUP BY model, category, device) GROUP BY model",
    "one scan: users as a grouping set beside the cells": "SELECT model, category, device, "
    "user_id, count(), countIf(status = 'error'), countIf(hallucination), sum(cost_usd), "
    "sum(cost_usd * cost_usd), countIf(safety_violation) FROM requests "
    "GROUP BY GROUPING SETS ((model, category, device), (model, user_id))",
}


def clickhouse_floor(data: Path) -> None:
    from chdb import session

    db = session.Session(str(data))
    try:
        print("  hand-written ClickHouse queries over the same table (a floor):")
        for what, query in FLOOR.items():
            t = time.perf_counter()
            db.query(query + " FORMAT Null")
            print(f"    {time.perf_counter() - t:6.2f} s  {what}")
        for what, query in ONE_SCAN.items():
            t = time.perf_counter()
            db.query(query + " FORMAT Null")
            print(f"    {time.perf_counter() - t:6.2f} s  {what}")
    finally:
        db.close()


def per_query(source: Any, request: Any) -> list[tuple[float, str]]:
    """Each query of one measurement with its wall time, named by what it computes."""
    from rolloutctl.metrics import sql

    timed_queries: list[tuple[float, str]] = []
    original = sql._Postgres._run

    def run(self: Any, text: str) -> Any:
        t = time.perf_counter()
        found = original(self, text)
        body = text[text.find(") SELECT") + 2 :] if ") SELECT" in text else text
        timed_queries.append((time.perf_counter() - t, body[:90]))
        return found

    sql._Postgres._run = run  # type: ignore[method-assign]
    try:
        source.measure(request)
    finally:
        sql._Postgres._run = original  # type: ignore[method-assign]
    return timed_queries


def postgres(root: Path, rows: int, request: Any, runs: int) -> None:
    import psycopg
    from chdb import session

    from rolloutctl.metrics.sql import SqlSource
    from tests.servers.postgres import start_state_server

    parquet, csv = root / "pg.parquet", root / "pg.csv"
    db = session.Session()
    try:
        made = MAKE_ROWS.format(rows=rows, ms=HOURS * 3_600_000)
        db.query(f"SELECT * FROM ({made}) INTO OUTFILE '{csv}' FORMAT CSV")
        db.query(
            f"SELECT event_time AS ts, user_id AS unit_id, "
            f"if(model = 'answer-model-v2', 'v2', 'v1') AS variant, * EXCEPT "
            f"(event_time, user_id, model) FROM ({made}) INTO OUTFILE '{parquet}' FORMAT Parquet"
        )
    finally:
        db.close()
    server = start_state_server()
    try:
        url = server.new_database()
        t = time.perf_counter()
        with psycopg.connect(url) as conn:
            conn.execute(
                "CREATE TABLE requests (event_time timestamptz, user_id text, model text, "
                "category text, device text, status text, latency_ms double precision, "
                "cost_usd double precision, hallucination boolean, safety_violation boolean)"
            )
            with (
                conn.cursor().copy("COPY requests FROM STDIN (FORMAT csv)") as copy,
                csv.open("rb") as handle,
            ):
                while chunk := handle.read(1 << 20):
                    copy.write(chunk)
            conn.execute("ANALYZE requests")
        print(f"loaded {rows:,} rows into PostgreSQL in {time.perf_counter() - t:.0f} s")
        source = SqlSource(
            "requests",
            [],
            engine="postgres",
            url=url,
            relation="requests",
            mapping=dict(RENAMED),
            variants=dict(MODELS),
        )
        seconds, _ = timed(runs, lambda: source.measure(request))
        print(f"gate over {rows:,} rows in PostgreSQL: median {seconds:.2f} s over {runs} runs")
        print(
            f"  the same gate in embedded DuckDB over the Parquet: median "
            f"{duckdb_gate(parquet, request, runs):.2f} s"
        )
        print("  where PostgreSQL spends it (one more gate, each query timed):")
        for seconds, what in per_query(source, request):
            print(f"    {seconds:6.2f} s  {what}")
    finally:
        server.stop()
        shutil.rmtree(server.root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000_000, help="rows in ClickHouse")
    parser.add_argument("--pg-rows", type=int, default=10_000_000, help="rows in PostgreSQL")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-sql-"))
    try:
        request = the_request(root)
        clickhouse(root, args.rows, request, args.runs)
        if args.pg_rows:
            postgres(root, args.pg_rows, request, args.runs)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
