"""Missing and bad values never make a gate pass (`pass_requires: no_failure`, what `init`
writes): values that are NULL, not numbers, NaN or infinite are counted, left out, shown, and
a metric left without enough values holds the gate."""

from __future__ import annotations

from datetime import timedelta

import duckdb
import pytest

from tests.conftest import START, Workspace

AT = START + timedelta(hours=2)


def _rewrite_canary(ws: Workspace, assignments: str) -> None:
    """Rewrite the canary's rows of the log with DuckDB (`SET`-style assignments)."""
    path = ws.log("healthy", START, 2, 20, "p1", seed=3)
    con = duckdb.connect()
    con.execute(f"CREATE TABLE t AS SELECT * FROM read_parquet('{path}')")
    con.execute(f"UPDATE t SET {assignments} WHERE variant = 'v2'")
    con.execute(f"COPY t TO '{path}' (FORMAT parquet)")


@pytest.mark.parametrize(
    ("assignments", "bad"),
    [
        ("latency_ms = 'nan'::DOUBLE", "latency_ms"),
        ("cost_usd = '-inf'::DOUBLE", "cost_usd"),
        ("latency_ms = NULL", None),
    ],
    ids=["NaN latency", "minus infinite cost", "NULL latency"],
)
def test_a_metric_without_canary_values_holds_and_bad_values_are_counted(
    ws: Workspace, assignments: str, bad: str | None
) -> None:
    assert ws.run("start", str(ws.playbook), now=START).code == 0
    _rewrite_canary(ws, assignments)
    r = ws.run("--json", "check", "shop-answers", now=AT)
    assert r.code == 11, r.err  # inconclusive: never a pass, never a crash
    data = r.json()
    metric = "cost_per_request" if bad == "cost_usd" else "p95_latency_ms"
    assert any(f"too few values of {metric}" in reason for reason in data["reasons"]), data
    if bad is not None:
        assert data["bad_rows"][f"non-numeric or non-finite {bad}"] > 1000
    advance = ws.run("advance", "shop-answers", now=AT)
    assert advance.code == 11 and ws.state()["stage"] == "c1"


def test_text_among_numbers_is_left_out_and_counted(ws: Workspace) -> None:
    """A CSV whose latency column holds text on some canary rows: those rows are left out of
    the latency statistics and counted; the rest are judged."""
    assert ws.run("start", str(ws.playbook), now=START).code == 0
    path = ws.log("healthy", START, 2, 20, "p1", seed=4)
    con = duckdb.connect()
    con.execute(f"CREATE TABLE t AS SELECT * FROM read_parquet('{path}')")
    con.execute("ALTER TABLE t ALTER latency_ms TYPE VARCHAR")
    con.execute(
        "UPDATE t SET latency_ms = 'slow' WHERE variant = 'v2' AND hash(request_id) % 10 = 0"
    )
    csv = path.with_suffix(".csv")
    con.execute(f"COPY t TO '{csv}' (HEADER)")
    path.unlink()
    ws.playbook.write_text(ws.playbook.read_text().replace("data/*.parquet", "data/*.csv"))
    r = ws.run("--json", "check", "shop-answers", now=AT)
    assert r.code == 0, r.err
    data = r.json()
    assert data["bad_rows"]["non-numeric or non-finite latency_ms"] > 100
    latency = [m for m in data["metrics"] if m["name"] == "p95_latency_ms" and not m["segment"]]
    assert latency[0]["canary"]["n"] > 1000


def test_a_csv_with_garbage_lines_is_read_and_the_lines_are_counted(ws: Workspace) -> None:
    """5% of the lines are garbage (too many or too few fields, binary noise): the rest is
    judged and the report counts what was skipped (it used to fail whole, blaming `ts`)."""
    assert ws.run("start", str(ws.playbook), now=START).code == 0
    path = ws.log("healthy", START, 2, 20, "p1", seed=5)
    csv = path.with_suffix(".csv")
    duckdb.connect().execute(f"COPY (SELECT * FROM read_parquet('{path}')) TO '{csv}' (HEADER)")
    path.unlink()
    lines = csv.read_text().splitlines()
    garbage = ["garbage", "a,b", "\x01\x02,,", lines[1] + ",1,2,3"]
    mixed = [lines[0]]
    for i, line in enumerate(lines[1:]):
        mixed.append(garbage[i % 4] if i % 20 == 7 else line)
    csv.write_text("\n".join(mixed) + "\n")
    ws.playbook.write_text(ws.playbook.read_text().replace("data/*.parquet", "data/*.csv"))
    r = ws.run("--json", "check", "shop-answers", now=AT)
    assert r.code == 0, r.err
    skipped = r.json()["bad_rows"]["unreadable CSV lines"]
    expected = sum(1 for i in range(len(lines) - 1) if i % 20 == 7)
    assert 0.9 * expected <= skipped <= expected, (skipped, expected)
