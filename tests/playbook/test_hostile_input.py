"""Hostile and broken playbooks are refused quickly, in little memory, with exit 3 and where:
alias bombs, oversized files, deep nesting in YAML and in expressions, numbers beyond a
float, duplicate keys. A fuzz test feeds random YAML-ish documents and expressions to the
loader and the expression parser: only the project's own errors may come out, in bounded
time and memory."""

from __future__ import annotations

import contextlib
import json
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rolloutctl.cli import common
from rolloutctl.errors import InvalidInput
from rolloutctl.playbook import expr
from rolloutctl.playbook.load import MAX_ALIAS_NODES, MAX_DEPTH, MAX_PLAYBOOK_BYTES, load_playbook
from tests.conftest import PLAYBOOK, START, Workspace, cli_env

# A guard against a hang, not a speed target: a refusal takes well under a second (old code
# took 15-40 s, and allocated without bound: MEGABYTES is the deterministic check).
SECONDS = 30.0
MEGABYTES = 64  # peak Python allocations while loading (old code: gigabytes for the bomb)

BOMB = "".join(
    f"lol{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10 if i else ["lol"]) + "]\n" for i in range(10)
)  # a billion "lol"s through aliases


def stages(n: int) -> str:
    head, _, tail = PLAYBOOK.partition("stages:\n")
    listed = "".join(f"  - {{name: s{i}, traffic: 1}}\n" for i in range(n))
    return head + "stages:\n" + listed + tail[tail.index("triggers:") :]


def event(text: str) -> str:
    return PLAYBOOK.replace("event: \"status = 'error'\"", f"event: {json.dumps(text)}")


def nested_yaml(n: int) -> str:
    return (
        PLAYBOOK
        + "x:\n"
        + "".join("  " * (i + 1) + f"k{i}:\n" for i in range(n))
        + "  " * n
        + "  v\n"
    )


# (name, playbook text, the line the message names or None, words the message must hold)
CASES: list[tuple[str, str, int | None, list[str]]] = [
    ("billion laughs", PLAYBOOK + BOMB, None, [f"more than {MAX_ALIAS_NODES:,} nodes"]),
    ("alias cycle", PLAYBOOK + "x: &c [1, *c]\n", 26, ["refers to a value that contains it"]),
    (
        "a terminal escape in a value",
        PLAYBOOK + 'goal2: "clear \x1b[2J"\n',
        26,
        ["U+001B is not allowed", ":26:15:"],
    ),
    (
        "aliases nesting deep",
        PLAYBOOK
        + "".join(f"a{i}: &a{i} [*a{i - 1}]\n" if i else "a0: &a0 [1]\n" for i in range(40)),
        None,
        [f"more than {MAX_DEPTH} levels deep"],
    ),
    (
        "a 10 MB string",
        PLAYBOOK + "goal2: '" + "a" * 10_000_000 + "'\n",
        None,
        [f"larger than {MAX_PLAYBOOK_BYTES // 1024} KiB"],
    ),
    ("20,000 stages", stages(20_000), None, [f"larger than {MAX_PLAYBOOK_BYTES // 1024} KiB"]),
    (
        "flow nesting",
        PLAYBOOK + "x: " + "[" * 100_000 + "]" * 100_000 + "\n",
        26,
        [f"nested more than {MAX_DEPTH} levels deep"],
    ),
    ("block nesting", nested_yaml(100), None, [f"nested more than {MAX_DEPTH} levels deep"]),
    (
        "a 400-digit integer",
        PLAYBOOK.replace("traffic: 20,", "traffic: 1" + "0" * 400 + ","),
        21,
        ["too large", "largest float"],
    ),
    (
        "a 5,000-digit integer",
        PLAYBOOK.replace("min_samples_per_arm: 1000", "min_samples_per_arm: 9" + "9" * 5000),
        10,
        ["too large"],
    ),
    (
        "a float beyond range",
        PLAYBOOK.replace("absolute: 0.01}", "absolute: -1.0e+400}"),
        15,
        ["'-1.0e+400' is too large"],
    ),
    (
        "a bad date",
        PLAYBOOK.replace("goal: cheaper", "goal: 2026-13-45\ndescription: cheaper"),
        2,
        ["cannot read '2026-13-45'"],
    ),
    (
        "a bad explicit int",
        PLAYBOOK.replace("traffic: 20,", "traffic: !!int twenty,"),
        21,
        ["cannot read 'twenty'"],
    ),
    (
        "a second rollout:",
        PLAYBOOK + "rollout: another\n",
        26,
        ["key 'rollout' appears twice (first at line 1)"],
    ),
    (
        "a duplicate nested key",
        PLAYBOOK.replace(
            'kind: proportion, event: "status', 'kind: proportion, kind: mean, event: "status'
        ),
        15,
        ["key 'kind' appears twice (first at line 15)"],
    ),
    (
        "parentheses in event:",
        event("(" * 1000 + "status = 'error'" + ")" * 1000),
        15,
        [f"nested more than {expr.MAX_DEPTH} levels deep"],
    ),
    (
        "not not not",
        event("not " * 2000 + "hallucination"),
        15,
        [f"nested more than {expr.MAX_DEPTH} levels deep"],
    ),
    (
        "minus minus",
        event("- " * 2000 + "latency_ms > 1"),
        15,
        [f"nested more than {expr.MAX_DEPTH} levels deep"],
    ),
    (
        "a chain of +",
        event("latency_ms" + " + latency_ms" * 500 + " > 1"),
        15,
        [f"nested more than {expr.MAX_DEPTH} levels deep"],
    ),
    (
        "a long expression",
        event("status in [" + ", ".join(["'x'"] * 5000) + "]"),
        15,
        [f"longer than {expr.MAX_LENGTH:,} characters"],
    ),
    (
        "a 400-digit number in event:",
        event("latency_ms > 1" + "0" * 400),
        15,
        ["too large to be a number"],
    ),
    (
        "a 5,000-digit number in event:",
        event("latency_ms > 9" + "9" * 5000),
        15,
        ["too large to be a number"],
    ),
    (
        "1e400 in when:",
        PLAYBOOK.replace("> 3 * control", "> 1e400 * control"),
        25,
        ["1e400 at column", "too large to be a number"],
    ),
    (
        "parentheses in when:",
        PLAYBOOK.replace(
            'when: "canary.cost_per_request', 'when: "' + "(" * 300 + "canary.cost_per_request"
        ).replace('control.cost_per_request"', "control.cost_per_request" + ")" * 300 + '"'),
        25,
        ["nested more than"],
    ),
]


@contextmanager
def bounded() -> Iterator[None]:
    """Fails when the block takes more than SECONDS or allocates more than MEGABYTES."""
    tracemalloc.start()
    started = time.perf_counter()
    try:
        yield
    finally:
        took = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert took < SECONDS, f"took {took:.1f} s"
    assert peak < MEGABYTES * 2**20, f"peak {peak / 2**20:.0f} MB"


@pytest.mark.parametrize(("name", "text", "line", "words"), CASES, ids=[c[0] for c in CASES])
def test_a_hostile_playbook_is_refused_quickly_saying_where_and_which_limit(
    name: str, text: str, line: int | None, words: list[str], tmp_path: Path
) -> None:
    path = tmp_path / "rollout.yaml"
    path.write_text(text)
    with bounded(), pytest.raises(InvalidInput) as info:
        load_playbook(path)
    message = info.value.message
    assert str(path) in message
    if line is not None:
        assert f"{path}:{line}:" in message, message[:500]
    for word in words:
        assert word in message, message[:500]


def test_both_lines_of_a_duplicate_key_are_named_exactly(tmp_path: Path) -> None:
    path = tmp_path / "rollout.yaml"
    path.write_text(PLAYBOOK + "rollout: another\n")
    with pytest.raises(InvalidInput) as info:
        load_playbook(path)
    assert info.value.message == f"{path}:26: key 'rollout' appears twice (first at line 1)"


def test_what_the_limits_leave_alone(tmp_path: Path) -> None:
    """Aliases and merges used as intended, `.inf` written out, quoted look-alike keys in
    different mappings, a long but shallow document: all still load (or fail only on the
    schema), so the limits bite on hostile input only."""
    path = tmp_path / "rollout.yaml"
    margin = PLAYBOOK.replace(
        "margin: {absolute: 0.01}, critical: true}",
        "margin: &tight {absolute: 0.01}, critical: true}",
    ).replace("margin: {absolute: 0.005}", "margin: *tight")
    path.write_text(margin)
    loaded = load_playbook(path)
    assert loaded.playbook.metrics[1].margin == loaded.playbook.metrics[0].margin

    merged = PLAYBOOK.replace(
        "analysis:\n  min_samples_per_arm: 1000\n",
        "analysis:\n  <<: {min_samples_per_arm: 5, alpha: 0.05}\n  min_samples_per_arm: 1000\n",
    )
    path.write_text(merged)
    assert load_playbook(path).playbook.analysis.min_samples_per_arm == 1000  # merge overridden

    path.write_text(stages(2000))  # 2,000 stages: under the size limit, loaded in time
    with bounded():
        assert len(load_playbook(path).playbook.stages) == 2000


def test_expression_limits(tmp_path: Path) -> None:
    assert expr.parse("(" * expr.MAX_DEPTH + "a" + ")" * expr.MAX_DEPTH) == expr.Name("a")
    with pytest.raises(expr.ExprError, match="nested more than"):
        expr.parse("(" * (expr.MAX_DEPTH + 1) + "a" + ")" * (expr.MAX_DEPTH + 1))
    assert expr.parse("a" + " + a" * (expr.MAX_DEPTH - 2))
    with pytest.raises(expr.ExprError, match="chained operators"):
        expr.parse("a" + " + a" * expr.MAX_DEPTH)
    assert expr.parse("x > 1.7e308") == expr.Bin(">", expr.Name("x"), expr.Lit(1.7e308))
    for huge in ("1e309", "1" + "0" * 309, "9" * 5000):
        with pytest.raises(expr.ExprError, match="too large to be a number"):
            expr.parse(f"x > {huge}")
    with pytest.raises(expr.ExprError, match="longer than"):
        expr.parse("x in [" + ", ".join(["'v'"] * 3000) + "]")


# ---------------------------------------------------------------- through the CLI


def run_limited(ws: Workspace, *args: str) -> subprocess.CompletedProcess[str]:
    """The real CLI under 1 GiB of address space and 30 s: old code died or hung here."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (2**30, 2**30))

    return subprocess.run(
        [sys.executable, "-m", "rolloutctl", *args],
        capture_output=True,
        text=True,
        env=cli_env(ws.root),
        cwd=ws.root,
        timeout=30,
        preexec_fn=limit,
    )


@pytest.mark.parametrize(
    "name",
    [
        "billion laughs",
        "flow nesting",
        "a 5,000-digit integer",
        "parentheses in event:",
        "a second rollout:",
    ],
)
def test_validate_refuses_it_with_exit_3(name: str, ws: Workspace) -> None:
    [(_, text, _, words)] = [case for case in CASES if case[0] == name]
    ws.playbook.write_text(text)
    proc = run_limited(ws, "validate", str(ws.playbook))
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr
    assert all(word in proc.stdout + proc.stderr for word in words)


def test_on_call_commands_given_a_hostile_playbook_path_refuse_it(ws: Workspace) -> None:
    """`rollback PLAYBOOK` reads only the rollout's name, without the loader (the fast path
    never imports it), within the loader's limits: a second `rollout:`, deep nesting or a
    file over the size limit is refused there too, and an alias bomb costs nothing."""
    assert ws.run("start", str(ws.playbook), now=START).code == 0
    refusals = {
        PLAYBOOK
        + "rollout: another\n": "rollout.yaml:26: key 'rollout' appears twice (first at line 1)",
        PLAYBOOK
        + "x: "
        + "[" * 100_000
        + "]" * 100_000
        + "\n": "rollout.yaml:26: nested more than 32",
        PLAYBOOK + "goal2: '" + "a" * MAX_PLAYBOOK_BYTES + "'\n": "larger than 256 KiB",
    }
    for text, message in refusals.items():
        ws.playbook.write_text(text)
        refused = run_limited(ws, "rollback", str(ws.playbook), "--reason", "r")
        assert refused.returncode == 3, refused.stderr
        assert message in refused.stderr
    assert ws.state()["status"] == "running"
    ws.playbook.write_text(PLAYBOOK + BOMB)
    proc = run_limited(ws, "--json", "status", str(ws.playbook))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["rollouts"][0]["rollout"] == "shop-answers"


def test_the_fast_path_reads_playbooks_within_the_loaders_limits() -> None:
    assert (common.PLAYBOOK_MAX_BYTES, common.PLAYBOOK_MAX_DEPTH) == (
        MAX_PLAYBOOK_BYTES,
        MAX_DEPTH,
    )


# ---------------------------------------------------------------- fuzz

FRAGMENTS = [
    "rollout: shop",
    "rollout: other",
    "flag: {backend: file, path: f.json, key: k, control: v1, canary: v2}",
    "stages:",
    "- {name: c1, traffic: 5}",
    "metrics:",
    'event: "((status"',
    "&a [1, 2]",
    "&b {x: *a}",
    "*a",
    "*b",
    "*undefined",
    "<<: *b",
    "<<: [*a, *b]",
    "? [a, b]",
    "? {a: 1}",
    ": value",
    "!!int abc",
    "!!float 1e999",
    "!!timestamp 2026-02-30",
    "2026-13-45",
    "!!binary ====",
    "!!set {a, b}",
    "!!omap [a: 1, a: 2]",
    "!!python/object/apply:os.system [id]",
    "!custom x",
    "1" + "0" * 400,
    "9" * 5000,
    "0x" + "f" * 300,
    "0b1010",
    "0o17",
    "1:20:30",
    "-1.0e+400",
    ".inf",
    "-.nan",
    "~",
    "null",
    "true",
    "on",
    "- ",
    "[",
    "]",
    "{",
    "}",
    "'",
    '"',
    '"\\e[2J\\x07"',
    "|",
    ">-",
    "---",
    "...",
    "%YAML 1.1",
    "%TAG ! tag:example.com,2000:",
    "#",
    "@",
    "`",
    "\t",
    "\u2028",
    "\ufeff",
    "\x85",
    "é",
    "[" * 60,
    "{a: " * 40,
]
SEPARATORS = [" ", "\n", ": ", ", ", "\n  ", "\n- ", "\n    ", ""]

yamlish = st.lists(
    st.one_of(
        st.sampled_from(FRAGMENTS),
        st.sampled_from(SEPARATORS),
        st.text(st.characters(blacklist_categories=("Cs",)), max_size=8),
    ),
    max_size=40,
).map("".join)


@st.composite
def mutated_playbook(draw: st.DrawFn) -> str:
    """The test playbook with fragments put in at random places."""
    lines = PLAYBOOK.splitlines()
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(lines)))
        lines.insert(at, draw(yamlish))
    return "\n".join(lines) + "\n"


EXPRESSION_PIECES = [
    "(",
    ")",
    "[",
    "]",
    ",",
    "not ",
    " and ",
    " or ",
    " in ",
    " not in ",
    " is null",
    " is not null",
    "-",
    "+",
    "*",
    "/",
    " = ",
    " != ",
    " <> ",
    " < ",
    " >= ",
    "'a'",
    "'it''s'",
    '"q\\"x"',
    "'unterminated",
    "status",
    "canary.error_rate",
    "control.x",
    "1",
    "0.5",
    ".5",
    "1e400",
    "1" + "0" * 400,
    "9" * 5000,
    "true",
    "null",
    "é",
    "$",
    "\x00",
    " ",
    "((((((((((",
    "- - - - - -",
    "not not not not ",
]
expressions = st.lists(
    st.one_of(st.sampled_from(EXPRESSION_PIECES), st.text(max_size=4)), max_size=60
).map("".join)

FUZZ = settings(
    max_examples=300,
    deadline=timedelta(seconds=2),
    suppress_health_check=[HealthCheck.too_slow],
)
FOLDER = Path(tempfile.mkdtemp(prefix="rolloutctl-fuzz-"))


def only_our_errors(load: Callable[[], object]) -> None:
    with bounded(), contextlib.suppress(InvalidInput, expr.ExprError):
        load()  # PlaybookInvalid is an InvalidInput


@FUZZ
@given(
    st.one_of(
        yamlish, mutated_playbook(), st.binary(max_size=200).map(lambda b: b.decode("latin-1"))
    )
)
def test_random_documents_raise_only_invalid_input(text: str) -> None:
    path = FOLDER / "fuzz.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    only_our_errors(lambda: load_playbook(path))


@FUZZ
@given(expressions)
def test_random_expressions_raise_only_expr_error(text: str) -> None:
    def parse_and_emit() -> None:
        node = expr.parse(text)
        expr.to_sql(node, expr.names(node))
        expr.scope_problems(node)
        expr.to_jsonlogic(node)

    only_our_errors(parse_and_emit)


@settings(
    max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(mutated_playbook())
def test_validate_on_random_documents_agrees_with_the_loader(ws: Workspace, text: str) -> None:
    """A random document is a playbook or it is not: validate exits 0 exactly when the loader
    accepts it, and 3 naming the file when the loader refuses it."""
    ws.playbook.write_text(text)
    try:
        load_playbook(ws.playbook)
        refused = False
    except InvalidInput:
        refused = True
    proc = run_limited(ws, "validate", str(ws.playbook))
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr
    if refused:
        assert proc.returncode == 3 and f"{ws.playbook}:" in proc.stdout, proc.stdout
    else:
        assert proc.returncode == 0 and f"{ws.playbook}: ok" in proc.stdout, proc.stderr


PURE_PYTHON = """
import sys, yaml
yaml.__with_libyaml__ = False  # as PyYAML built without libyaml
from rolloutctl.errors import InvalidInput
from rolloutctl.playbook import load
assert load._Base is yaml.SafeLoader
path = sys.argv[1]
load.load_playbook(path)
open(path, "a").write("deep: " + "[" * 200 + "]" * 200 + "\\n")
try:
    load.load_playbook(path)
except InvalidInput as exc:
    print(exc.message)
"""


def test_pyyaml_without_libyaml_reads_and_refuses_the_same(tmp_path: Path) -> None:
    path = tmp_path / "rollout.yaml"
    path.write_text(PLAYBOOK)
    run = subprocess.run(
        [sys.executable, "-c", PURE_PYTHON, str(path)], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr
    assert f"{path}:26: nested more than {MAX_DEPTH} levels deep" in run.stdout, run.stdout
