"""expr.to_sql run in a real DuckDB: every expression form selects exactly the rows it says,
on a small table whose answers are worked out by hand in each case."""

from __future__ import annotations

import duckdb
import pytest

from rolloutctl.playbook import expr

# id, country, tier, score, latency_ms, flagged
ROWS = [
    (1, "us", "free", 3, 120.0, True),
    (2, "de", "pro", 7, 480.0, False),
    (3, "fr", None, 5, 3100.0, True),
    (4, "us", "pro", None, 90.0, None),
    (5, "gb", "O'Brien", 0, 0.0, False),
]
COLUMNS = ["country", "tier", "score", "latency_ms", "flagged"]


@pytest.fixture(scope="module")
def con() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute(
        "CREATE TABLE requests (id INTEGER, country VARCHAR, tier VARCHAR, score INTEGER, "
        "latency_ms DOUBLE, flagged BOOLEAN)"
    )
    con.executemany("INSERT INTO requests VALUES (?, ?, ?, ?, ?, ?)", ROWS)
    return con


def selected(con: duckdb.DuckDBPyConnection, text: str) -> list[int]:
    sql = expr.to_sql(expr.parse(text), COLUMNS)
    return [
        row[0] for row in con.execute(f"SELECT id FROM requests WHERE {sql} ORDER BY id").fetchall()
    ]


@pytest.mark.parametrize(
    ("text", "ids"),
    [
        # IN and NOT IN; SQL's NULL: a NULL tier is in neither list
        ("country in ['us', 'gb']", [1, 4, 5]),
        ("country not in ['us', 'gb']", [2, 3]),
        ("country in ('fr')", [3]),
        ("tier not in ['free']", [2, 4, 5]),
        ("score in [0, 7]", [2, 5]),
        ("score not in [-1, 0, 7]", [1, 3]),
        ("not country in ['us']", [2, 3, 5]),
        # comparisons, with == and <> spelled too
        ("country = 'us'", [1, 4]),
        ("country == 'us'", [1, 4]),
        ("country != 'us'", [2, 3, 5]),
        ("country <> 'us'", [2, 3, 5]),
        ("score < 5", [1, 5]),
        ("score <= 5", [1, 3, 5]),
        ("score > 5", [2]),
        ("score >= 5", [2, 3]),
        # boolean columns and literals
        ("flagged", [1, 3]),
        ("flagged = true", [1, 3]),
        ("flagged = false", [2, 5]),
        ("not flagged", [2, 5]),
        # IS [NOT] NULL
        ("tier is null", [3]),
        ("score is not null", [1, 2, 3, 5]),
        ("flagged is null", [4]),
        # and / or / not, and their precedence: `a or b and c` is `a or (b and c)`
        ("country = 'us' and tier = 'pro'", [4]),
        ("country = 'fr' or tier = 'pro'", [2, 3, 4]),
        ("country = 'fr' or country = 'us' and tier = 'pro'", [3, 4]),
        ("(country = 'fr' or country = 'us') and tier = 'free'", [1]),
        ("not (score > 3)", [1, 5]),
        # arithmetic; division by zero is NULL, never an error
        ("latency_ms / 1000 > 3", [3]),
        ("score * 2 + 1 = 11", [3]),
        ("score - 3 = 4", [2]),
        ("-score < -4", [2, 3]),
        ("latency_ms / score >= 40", [1, 2, 3]),  # 40, 68.6, 620; row 5 divides by 0
        ("latency_ms / score > 40", [2, 3]),
        ("1 / score is null", [4, 5]),
        # string literals with a quote inside, both spellings of it
        ("tier = 'O''Brien'", [5]),
        ('tier = "O\'Brien"', [5]),
        ("tier in ['free', 'O''Brien']", [1, 5]),
        ("tier not in ['O''Brien']", [1, 2, 4]),
    ],
)
def test_sql_selects_the_rows_it_says(
    con: duckdb.DuckDBPyConnection, text: str, ids: list[int]
) -> None:
    assert selected(con, text) == ids


def test_in_and_not_in_render_as_themselves() -> None:
    assert expr.to_sql(expr.parse("country in ['us']"), COLUMNS) == "(\"country\" IN ('us'))"
    assert (
        expr.to_sql(expr.parse("country not in ['us', 'gb']"), COLUMNS)
        == "(\"country\" NOT IN ('us', 'gb'))"
    )


def test_a_quote_in_a_string_literal_is_doubled() -> None:
    """A value is data, never SQL: a quote inside it is escaped as '' ."""
    assert expr._sql_literal("O'Brien") == "'O''Brien'"
    assert expr._sql_literal("x' OR '1'='1") == "'x'' OR ''1''=''1'"
    assert expr._sql_literal(None) == "NULL"
    assert expr._sql_literal(True) == "TRUE"
    assert expr._sql_literal(2.5) == "2.5"


def test_an_injection_attempt_matches_no_row(con: duckdb.DuckDBPyConnection) -> None:
    """`tier = 'x'' or ''1''=''1'` compares tier with the string x' or '1'='1: no row, where
    a spliced literal would select every row."""
    assert selected(con, "tier = 'x'' or ''1''=''1'") == []
    assert selected(con, "tier != 'x'' or ''1''=''1'") == [1, 2, 4, 5]
