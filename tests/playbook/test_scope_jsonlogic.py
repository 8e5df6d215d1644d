"""A stage's scope means the same in the flag file as in the gate: the JsonLogic that
`expr.to_jsonlogic` writes, evaluated by flagd's own evaluator, puts a request in scope exactly
when `expr.evaluate` (SQL's NULL rules) says true and the gate's DuckDB SQL selects it.

flagd's evaluator is openfeature-flagd-core's `FlagdCore` (what openfeature-provider-flagd runs
in process), over panzi-json-logic (`json_logic`) with flagd's operators; the scope is wrapped
in `{"if": [scope, split, control]}` as rolloutctl/flags/file.py writes it. A request that lacks
an attribute the scope reads is never in scope, negated or not.

Without the flagd packages the tests skip on a developer's machine and fail under CI
(tests/conftest.py)."""

from __future__ import annotations

from functools import cache
from typing import Any

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rolloutctl.playbook import expr

try:
    from json_logic import jsonLogic
    from json_logic.builtins import to_bool
    from openfeature.contrib.tools.flagd.core import FlagdCore
    from openfeature.evaluation_context import EvaluationContext
except ImportError as exc:  # pragma: no cover - the fixture below says what to install
    MISSING: str | None = (
        f"{exc.name} is not installed: python -m pip install -e '.[test]' "
        "(openfeature-provider-flagd, panzi-json-logic)"
    )
else:
    MISSING = None

IN, OUT = "in-scope", "out-of-scope"

# Attributes a scope reads, the literals scopes compare them with, and the values requests
# carry (some in no literal list). `it's` checks quoting through parser, SQL and JsonLogic.
STRINGS = {"category": ["health", "finance", "shopping", "it's"], "language": ["en", "de", "fr"]}
NUMBERS = [-1, 0, 1, 2.5, 3]
REQUEST_VALUES: dict[str, list[Any]] = {
    "category": [*STRINGS["category"], "travel"],
    "language": [*STRINGS["language"], "es"],
    "score": [*NUMBERS, 2, 10],
    "internal": [True, False],
}
COLUMNS = {"category": "VARCHAR", "language": "VARCHAR", "score": "DOUBLE", "internal": "BOOLEAN"}
CMP = ["=", "!=", "<", "<=", ">", ">="]


@pytest.fixture(scope="module")
def flagd() -> None:
    if MISSING is not None:
        pytest.skip(MISSING)


# ---------------------------------------------------------------- the three readings


def flagd_in_scope(scope: Any, contexts: list[dict[str, Any]]) -> list[bool]:
    """What flagd serves: a flag whose targeting is the scope wrapped as file.py wraps it."""
    core = FlagdCore()
    core.set_flags(
        {
            "flags": {
                "scoped": {
                    "state": "ENABLED",
                    "variants": {IN: IN, OUT: OUT},
                    "defaultVariant": OUT,
                    "targeting": {"if": [scope, IN, OUT]},
                }
            }
        }
    )
    served = []
    for ctx in contexts:
        found = core.resolve_string_value(
            "scoped", "<error>", EvaluationContext(targeting_key="user-1", attributes=ctx)
        )
        assert found.value in (IN, OUT), (scope, ctx, found)
        # the bare engine reads the condition the same way
        assert to_bool(jsonLogic(scope, ctx)) == (found.value == IN), (scope, ctx)
        served.append(found.value == IN)
    return served


@cache
def connection() -> duckdb.DuckDBPyConnection:
    return duckdb.connect()


def sql_in_scope(node: expr.Node, contexts: list[dict[str, Any]]) -> list[bool]:
    """What the gate selects: the scope's SQL over a table of the requests (NULL = absent)."""
    con = connection()
    columns = ", ".join(f"{name} {kind}" for name, kind in COLUMNS.items())
    con.execute(f"CREATE OR REPLACE TEMP TABLE requests (i INTEGER, {columns})")
    con.executemany(
        f"INSERT INTO requests VALUES (?, {', '.join('?' * len(COLUMNS))})",
        [[i, *(ctx.get(name) for name in COLUMNS)] for i, ctx in enumerate(contexts)],
    )
    sql = expr.to_sql(node, COLUMNS)
    rows = con.execute(f"SELECT ({sql}) IS TRUE FROM requests ORDER BY i").fetchall()
    return [bool(row[0]) for row in rows]


def readings(text: str, contexts: list[dict[str, Any]]) -> dict[str, list[bool]]:
    node = expr.parse(text)
    return {
        "flagd": flagd_in_scope(expr.to_jsonlogic(node), contexts),
        "evaluate": [expr.evaluate(node, ctx.get) is True for ctx in contexts],
        "sql": sql_in_scope(node, contexts),
    }


# ---------------------------------------------------------------- random scopes


def quote(value: Any) -> str:
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return "true" if value is True else "false" if value is False else repr(value)


def literal_list(values: list[Any]) -> st.SearchStrategy[str]:
    items = st.lists(st.sampled_from(values), min_size=1, max_size=3, unique=True)
    return items.map(lambda xs: "[" + ", ".join(quote(x) for x in xs) + "]")


def comparison(name: str, values: list[Any]) -> st.SearchStrategy[str]:
    """`name op literal`, `literal op name`, `name [not] in [...]`."""
    literal = st.sampled_from(values).map(quote)
    return st.one_of(
        st.builds(lambda op, v: f"{name} {op} {v}", st.sampled_from(CMP), literal),
        st.builds(lambda op, v: f"{v} {op} {name}", st.sampled_from(CMP), literal),
        st.builds(
            lambda neg, xs: f"{name} {neg}in {xs}",
            st.sampled_from(["", "not "]),
            literal_list(values),
        ),
    )


ATOMS = st.one_of(
    comparison("category", STRINGS["category"]),
    comparison("language", STRINGS["language"]),
    comparison("score", NUMBERS),
    st.builds(
        lambda op: f"category {op} language", st.sampled_from(CMP)
    ),  # two attributes in one comparison
    st.builds(
        lambda name, neg: f"{name} is {neg}null",
        st.sampled_from(list(COLUMNS)),
        st.sampled_from(["", "not "]),
    ),
    st.sampled_from(["internal", "internal = true", "internal != false"]),
)

SCOPES = st.recursive(
    ATOMS,
    lambda inner: st.one_of(
        st.builds(lambda a, b: f"({a}) and ({b})", inner, inner),
        st.builds(lambda a, b: f"({a}) or ({b})", inner, inner),
        inner.map(lambda a: f"not ({a})"),
    ),
    max_leaves=6,
)


@st.composite
def requests(draw: st.DrawFn) -> dict[str, Any]:
    """A request's evaluation context: each attribute present with a value, or absent."""
    ctx = {}
    for name, values in REQUEST_VALUES.items():
        value = draw(st.one_of(st.none(), st.sampled_from(values)))
        if value is not None:
            ctx[name] = value
    return ctx


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=SCOPES, contexts=st.lists(requests(), min_size=1, max_size=8))
def test_flagd_serves_the_scope_the_gate_reads(
    flagd: None, text: str, contexts: list[dict[str, Any]]
) -> None:
    contexts = [*contexts, {}]  # the request with no attributes at all, every time
    seen = readings(text, contexts)
    for ctx, by_flagd, by_evaluate, by_sql in zip(
        contexts, seen["flagd"], seen["evaluate"], seen["sql"], strict=True
    ):
        assert by_flagd == by_evaluate, f"{text!r} with {ctx}: flagd {by_flagd}"
        assert by_sql == by_evaluate, f"{text!r} with {ctx}: SQL {by_sql}"


# ---------------------------------------------------------------- cases by hand

NOT_IN = "category not in ['health', 'finance']"
# (scope, request, in scope?) as SQL reads it.
AGREED = [
    (NOT_IN, {}, False),  # no category: not in scope, though JsonLogic's `!in` would say true
    (NOT_IN, {"language": "en"}, False),
    (NOT_IN, {"category": "health"}, False),
    (NOT_IN, {"category": "finance"}, False),
    (NOT_IN, {"category": "shopping"}, True),
    ("not (category in ['health'])", {}, False),
    ("language = 'en'", {"category": "shopping"}, False),
    ("language = 'en'", {"language": "en"}, True),
    ("language != 'en'", {}, False),
    ("not (score < 3)", {}, False),
    ("not (score < 3)", {"score": 3}, True),
    ("category is null", {}, True),
    ("not (category is null)", {}, False),
    ("category is not null", {"category": "health"}, True),
    ("category = 'health' or score > 1", {"score": 2}, True),  # NULL or TRUE
    ("not (category = 'health' and score > 1)", {"score": 0}, True),  # NOT (NULL and FALSE)
    ("not (category = 'health' and score > 1)", {"score": 2}, False),  # NOT (NULL and TRUE)
    ("not (category = 'health' or score > 1)", {"score": 0}, False),  # NOT (NULL or FALSE)
    ("not internal", {}, False),
    ("not internal", {"internal": False}, True),
]


@pytest.mark.parametrize(("text", "ctx", "in_scope"), AGREED)
def test_flagd_agrees_with_the_gate_by_hand(
    flagd: None, text: str, ctx: dict[str, Any], in_scope: bool
) -> None:
    node = expr.parse(text)
    assert sql_in_scope(node, [ctx]) == [in_scope]  # the gate's reading, the reference
    assert flagd_in_scope(expr.to_jsonlogic(node), [ctx]) == [in_scope]


# Scopes that flagd's JsonLogic would read differently from the gate's SQL, so they are
# refused (by `validate`, and by to_jsonlogic before anything is written): with the
# request each would get wrong.
REFUSED = [
    ("language != null", "null"),  # flagd: true for {"language": "en"}; SQL: unknown
    ("score = null", "null"),  # flagd: true for {"score": 0}
    ("score < null", "null"),  # flagd: true for {"score": -1}
    ("not null", "comparisons"),  # JsonLogic {"!": null} is true
    ("category not in ['health', null]", "null"),  # SQL: never true; flagd: true for others
    ("score + 1 is null", "arithmetic"),  # JsonLogic counts a missing score as 0
    ("score / 2 > 1", "arithmetic"),  # flagd raises on a division by zero
    ("'x'", "comparisons"),
]


@pytest.mark.parametrize(("text", "why"), REFUSED)
def test_scopes_flagd_would_read_differently_are_refused(text: str, why: str) -> None:
    node = expr.parse(text)
    assert any(why in problem for problem in expr.scope_problems(node)), text
    with pytest.raises(expr.ExprError):
        expr.to_jsonlogic(node)


def test_the_scope_written_for_not_in_guards_the_attribute() -> None:
    """The exact JsonLogic of the README's example scope, as it lands in the flag file."""
    assert expr.to_jsonlogic(expr.parse(NOT_IN)) == {
        "and": [
            {"!==": [{"var": "category"}, None]},
            {"!": {"in": [{"var": "category"}, ["health", "finance"]]}},
        ]
    }
