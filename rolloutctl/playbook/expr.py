"""The small expression language of playbooks.

One grammar serves three places, each with its own emitter, so a playbook condition is
parsed and checked once and never spliced into SQL as raw text:

- metric `event:` / `value:` and stage `scope:`  -> DuckDB SQL over request-log columns;
- stage `scope:`                                 -> JsonLogic targeting in the flag file;
- trigger `when:` (`canary.p95_latency_ms > 3000`) -> evaluated on gate results.

Grammar (keywords case-insensitive)::

    expr   := or ;  or := and ('or' and)* ;  and := not ('and' not)*
    not    := 'not' not | cmp
    cmp    := sum [ op sum | ['not'] 'in' list | 'is' ['not'] 'null' ]   op: = == != <> < <= > >=
    sum    := prod (('+'|'-') prod)* ;  prod := unary (('*'|'/') unary)*
    unary  := '-' unary | atom
    atom   := number | 'string' | true | false | null | name('.'name)* | '(' expr ')' | list
    list   := '[' literal (',' literal)* ']'  |  '(' literal (',' literal)* ')'
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

KEYWORDS = {"and", "or", "not", "in", "is", "null", "true", "false"}
# Bounds on what a playbook may write, so a hostile condition is an ExprError, not a crash or a
# stall: every function below recurses over the tree, and tokenizing is quadratic in length.
MAX_LENGTH = 10_000  # characters; a long scope lists a few hundred values
MAX_DEPTH = 50  # parentheses, `not`, `-` and chained operators; real conditions use under 10
_TOKEN = re.compile(
    r"""\s*(?:
        (?P<num>\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)
      | (?P<str>'(?:[^'\\]|\\.|'')*'|"(?:[^"\\]|\\.)*")
      | (?P<name>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
      | (?P<op>==|!=|<>|<=|>=|[=<>+\-*/(),\[\]])
    )""",
    re.VERBOSE,
)


class ExprError(ValueError):
    """A condition that does not parse or names something unknown; message says where."""


# ------------------------------------------------------------------ AST


@dataclass(frozen=True)
class Lit:
    value: Any


@dataclass(frozen=True)
class Name:
    name: str


@dataclass(frozen=True)
class Neg:
    operand: Node


@dataclass(frozen=True)
class Not:
    operand: Node


@dataclass(frozen=True)
class Bin:
    op: str  # + - * / = != < <= > >= and or
    left: Node
    right: Node


@dataclass(frozen=True)
class In:
    operand: Node
    values: tuple[Any, ...]
    negated: bool


@dataclass(frozen=True)
class IsNull:
    operand: Node
    negated: bool


Node = Lit | Name | Neg | Not | Bin | In | IsNull


# ------------------------------------------------------------------ parsing


def _tokenize(text: str) -> list[tuple[str, str, int]]:
    tokens: list[tuple[str, str, int]] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        match = _TOKEN.match(text, pos)
        if not match or match.end() == pos:
            col = len(text) - len(text[pos:].lstrip()) + 1
            raise ExprError(f"unexpected character {text[col - 1]!r} at column {col}")
        kind = match.lastgroup or ""
        value = match.group(kind)
        column = match.start(kind) + 1
        if kind == "name" and value.lower() in KEYWORDS:
            kind, value = "kw", value.lower()
        tokens.append((kind, value, column))
        pos = match.end()
    tokens.append(("end", "", len(text) + 1))
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.i = 0
        self.depth = 0

    def nested(self, parse: Callable[[], Node]) -> Node:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ExprError(f"nested more than {MAX_DEPTH} levels deep at column {self.peek()[2]}")
        node = parse()
        self.depth -= 1
        return node

    def peek(self) -> tuple[str, str, int]:
        return self.tokens[self.i]

    def take(self) -> tuple[str, str, int]:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def accept(self, kind: str, value: str | None = None) -> bool:
        k, v, _ = self.peek()
        if k == kind and (value is None or v == value):
            self.i += 1
            return True
        return False

    def expect(self, kind: str, value: str) -> None:
        if not self.accept(kind, value):
            _, got, col = self.peek()
            raise ExprError(f"expected {value!r} at column {col}, found {got or 'end of text'!r}")

    def parse(self) -> Node:
        node = self.or_()
        kind, value, col = self.peek()
        if kind != "end":
            raise ExprError(f"unexpected {value!r} at column {col}")
        return node

    def or_(self) -> Node:
        node = self.and_()
        while self.accept("kw", "or"):
            node = Bin("or", node, self.and_())
        return node

    def and_(self) -> Node:
        node = self.not_()
        while self.accept("kw", "and"):
            node = Bin("and", node, self.not_())
        return node

    def not_(self) -> Node:
        if self.accept("kw", "not"):
            return Not(self.nested(self.not_))
        return self.cmp()

    def cmp(self) -> Node:
        left = self.sum()
        kind, value, _ = self.peek()
        if kind == "op" and value in ("=", "==", "!=", "<>", "<", "<=", ">", ">="):
            self.take()
            op = {"==": "=", "<>": "!="}.get(value, value)
            return Bin(op, left, self.sum())
        if kind == "kw" and value in ("in", "not"):
            negated = self.accept("kw", "not")
            self.expect("kw", "in")
            return In(left, self.literal_list(), negated)
        if self.accept("kw", "is"):
            negated = self.accept("kw", "not")
            self.expect("kw", "null")
            return IsNull(left, negated)
        return left

    def sum(self) -> Node:
        node = self.prod()
        while self.peek()[0] == "op" and self.peek()[1] in "+-":
            op = self.take()[1]
            node = Bin(op, node, self.prod())
        return node

    def prod(self) -> Node:
        node = self.unary()
        while self.peek()[0] == "op" and self.peek()[1] in "*/":
            op = self.take()[1]
            node = Bin(op, node, self.unary())
        return node

    def unary(self) -> Node:
        if self.accept("op", "-"):
            return Neg(self.nested(self.unary))
        return self.atom()

    def atom(self) -> Node:
        kind, value, col = self.take()
        if kind == "num":
            try:
                number = float(value) if any(c in value for c in ".eE") else int(value)
                finite = math.isfinite(number)
            except (ValueError, OverflowError):  # an int beyond a float, or of 4300+ digits
                finite = False
            if not finite:
                shown = value if len(value) <= 20 else value[:17] + "..."
                raise ExprError(f"{shown} at column {col} is too large to be a number")
            return Lit(number)
        if kind == "str":
            return Lit(_unquote(value))
        if kind == "kw" and value in ("true", "false", "null"):
            return Lit({"true": True, "false": False, "null": None}[value])
        if kind == "name":
            return Name(value)
        if kind == "op" and value == "(":
            node = self.nested(self.or_)
            self.expect("op", ")")
            return node
        raise ExprError(f"expected a value or column at column {col}, found {value or 'end'!r}")

    def literal_list(self) -> tuple[Any, ...]:
        close = "]" if self.accept("op", "[") else ")" if self.accept("op", "(") else None
        if close is None:
            _, got, col = self.peek()
            raise ExprError(f"expected a list like ['a', 'b'] at column {col}, found {got!r}")
        values: list[Any] = []
        while not self.accept("op", close):
            if values:
                self.expect("op", ",")
            node = self.unary()
            if isinstance(node, Neg) and isinstance(node.operand, Lit):
                node = Lit(-node.operand.value)
            if not isinstance(node, Lit):
                raise ExprError("a list after 'in' may hold only literal values")
            values.append(node.value)
        return tuple(values)


def _unquote(token: str) -> str:
    body = token[1:-1]
    if token[0] == "'":
        body = body.replace("''", "'")
    return re.sub(r"\\(.)", r"\1", body)


def parse(text: str) -> Node:
    """Parse a condition or arithmetic expression; raise ExprError saying where it broke."""
    if not text or not text.strip():
        raise ExprError("empty expression")
    if len(text) > MAX_LENGTH:
        raise ExprError(f"longer than {MAX_LENGTH:,} characters (the limit)")
    node = _Parser(text).parse()
    if _depth(node) > MAX_DEPTH:
        raise ExprError(f"nested more than {MAX_DEPTH} levels deep (chained operators count)")
    return node


def _depth(node: Node) -> int:
    """How deep the tree goes, without recursing (`a + a + ...` nests one level per `+`)."""
    deepest, todo = 0, [(node, 1)]
    while todo:
        here, level = todo.pop()
        deepest = max(deepest, level)
        match here:
            case Neg(x) | Not(x) | In(x, _, _) | IsNull(x, _):
                todo.append((x, level + 1))
            case Bin(_, left, right):
                todo += [(left, level + 1), (right, level + 1)]
    return deepest


def names(node: Node) -> set[str]:
    """Every column / metric reference in the expression."""
    match node:
        case Name(name):
            return {name}
        case Neg(x) | Not(x) | In(x, _, _) | IsNull(x, _):
            return names(x)
        case Bin(_, left, right):
            return names(left) | names(right)
    return set()


def unknown_names(node: Node, known: Iterable[str]) -> list[str]:
    """Messages for references outside `known`, with the nearest valid name as a hint."""
    known = sorted(set(known))
    problems = []
    for name in sorted(names(node)):
        if name not in known:
            near = difflib.get_close_matches(name, known, n=1)
            tip = f" (did you mean {near[0]!r}?)" if near else ""
            problems.append(f"unknown name {name!r}{tip}")
    return problems


# ------------------------------------------------------------------ emitters


def _sql_literal(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int | float):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


def sql_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def to_sql(node: Node, columns: Iterable[str]) -> str:
    """DuckDB SQL for the expression; every name must be one of `columns`."""
    problems = unknown_names(node, columns)
    if problems:
        raise ExprError("; ".join(problems) + f" — columns: {', '.join(sorted(columns))}")
    return _sql(node)


def _sql(node: Node) -> str:
    match node:
        case Lit(value):
            return _sql_literal(value)
        case Name(name):
            return sql_ident(name)
        case Neg(x):
            return f"(-{_sql(x)})"
        case Not(x):
            return f"(NOT {_sql(x)})"
        case In(x, values, negated):
            items = ", ".join(_sql_literal(v) for v in values) or "NULL"
            return f"({_sql(x)} {'NOT IN' if negated else 'IN'} ({items}))"
        case IsNull(x, negated):
            return f"({_sql(x)} IS {'NOT ' if negated else ''}NULL)"
        case Bin(op, left, right):
            sql_op = {"and": "AND", "or": "OR"}.get(op, op)
            if op == "/":
                return f"({_sql(left)} / NULLIF({_sql(right)}, 0))"
            return f"({_sql(left)} {sql_op} {_sql(right)})"
    raise AssertionError(node)


def type_problems(node: Node, kind: str, name_type: Callable[[str], str]) -> list[str]:
    """What makes an expression unable to work, found before it runs: a comparison of a
    number with a string, arithmetic on a string, a condition that is a constant (`'x'`,
    `1`), or none of the names it should read. `kind` is "condition" (a trigger's `when`, a
    proportion's `event`) or "value"; `name_type(name)` is "number", "string" or "any"."""
    types = _Types(name_type)
    result = types.of(node)
    problems = types.problems
    if not names(node):
        problems.append("is a constant: it names no metric or column, so it never changes")
    elif kind == "condition" and result in ("number", "string"):
        problems.append(f"is a {result}, not a condition (a comparison such as `x > 3`)")
    return list(dict.fromkeys(problems))


def _literal_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    return "number" if isinstance(value, int | float) else "string"


@dataclass
class _Types:
    """The type of each node of an expression ("number", "string", "bool", "null" or
    "any"), noting on the way what cannot work."""

    name_type: Callable[[str], str]
    problems: list[str] = field(default_factory=list)

    def of(self, n: Node) -> str:
        match n:
            case Lit(value):
                return _literal_type(value)
            case Name(name):
                return self.name_type(name)
            case Neg(x):
                if self.of(x) == "string":
                    self.problems.append(f"`-` of a string ({_show(x)})")
                return "number"
            case Not(x) | IsNull(x, _):
                self.of(x)
                return "bool"
            case In(x, values, _):
                left = self.of(x)
                for value in values:
                    self.mismatch(left, _literal_type(value), n)
                return "bool"
            case Bin(op, left, right):
                return self.binary(n, op, left, right)
        return "any"

    def binary(self, n: Node, op: str, left: Node, right: Node) -> str:
        if op in ("and", "or"):
            self.of(left)
            self.of(right)
            return "bool"
        if op in ("+", "-", "*", "/"):
            for side in (left, right):
                if self.of(side) == "string":
                    self.problems.append(f"arithmetic on a string ({_show(side)})")
            return "number"
        self.mismatch(self.of(left), self.of(right), n)
        return "bool"

    def mismatch(self, left: str, right: str, n: Node) -> None:
        if {left, right} == {"number", "string"}:
            self.problems.append(f"compares a number with a string in {_show(n)}")


def _show(node: Node) -> str:
    match node:
        case Lit(value):
            return repr(value)
        case Name(name):
            return name
        case Bin(op, left, right):
            return f"{_show(left)} {op} {_show(right)}"
    return "the expression"


def scope_problems(node: Node) -> list[str]:
    """What a stage scope may not say, because a flag's JsonLogic would read it differently
    from the gate's SQL: comparisons with null (JsonLogic `null != 'en'` is true, SQL's is
    unknown; `is null` / `is not null` say it), arithmetic (JsonLogic counts a missing value
    as 0 and fails on a division by zero), and a value other than true or false as a
    condition."""
    problems: list[str] = []

    def condition(n: Node) -> None:
        match n:
            case Not(x):
                condition(x)
            case Bin("and" | "or", left, right):
                condition(left)
                condition(right)
            case IsNull(x, _):
                operand(x)
            case In(x, values, _):
                operand(x)
                if None in values:
                    problems.append("a list after 'in' may not hold null (use `is null`)")
            case Bin(op, left, right) if op in _NEGATED_CMP:
                operand(left)
                operand(right)
                if Lit(None) in (left, right):
                    problems.append(f"`{op} null` is never true in SQL: use `is null`")
            case Name(_) | Lit(True | False):
                pass  # a boolean attribute (guarded like a comparison), or true / false
            case _:
                problems.append(
                    "a scope's conditions are comparisons (`tier = 'free'`, `score >= 3`) "
                    "or boolean attributes"
                )

    def operand(n: Node) -> None:
        if isinstance(n, Neg) and isinstance(n.operand, Lit):
            return
        if not isinstance(n, Lit | Name):
            problems.append(
                "a scope compares attributes with values; arithmetic is not supported in "
                "flag targeting"
            )

    condition(node)
    return list(dict.fromkeys(problems))


def to_jsonlogic(node: Node) -> Any:
    """JsonLogic for flag targeting (flagd evaluates it against the evaluation context).

    The condition keeps SQL's rule for a missing value, so the flag and the gate's SQL agree
    on who is in scope: a request that lacks an attribute a comparison reads is never in
    scope, negated or not (`category not in [...]` is false, not true, for a request without
    a category). JsonLogic has no such rule (`{"!": {"in": [null, [...]]}}` is true), so
    negations are pushed down to the comparisons (De Morgan; `not a < 3` is `a >= 3`) and
    every comparison is guarded by `{"!==": [{"var": name}, null]}` for each name it reads;
    an `and`/`or` of guarded comparisons is then true exactly when SQL's is. A condition
    with one of the `scope_problems` is refused."""
    problems = scope_problems(node)
    if problems:
        raise ExprError("; ".join(problems))
    return _jl_condition(node, negated=False)


_NEGATED_CMP = {"=": "!=", "!=": "=", "<": ">=", "<=": ">", ">": "<=", ">=": "<"}
_JL_CMP = {"=": "==", "!=": "!="}


def jl_present(name: str) -> Any:
    """JsonLogic true exactly when the context has `name` (not missing, not null)."""
    return {"!==": [{"var": name}, None]}


def jl_presence_of(node: Any) -> str | None:
    """The attribute a `jl_present` test checks, else None."""
    if isinstance(node, dict) and set(node) == {"!=="}:
        args = node["!=="]
        if isinstance(args, list) and len(args) == 2 and args[1] is None:
            var = args[0]
            if isinstance(var, dict) and set(var) == {"var"} and isinstance(var["var"], str):
                return var["var"]
    return None


def _jl_condition(node: Node, *, negated: bool) -> Any:
    match node:
        case Not(x):
            return _jl_condition(x, negated=not negated)
        case Bin("and" | "or" as op, left, right):
            if negated:
                op = "or" if op == "and" else "and"
            parts = (_jl_condition(left, negated=negated), _jl_condition(right, negated=negated))
            return {op: [c for part in parts for c in _jl_operands(part, op)]}
        case IsNull(x, is_not):
            return {"!==" if is_not != negated else "===": [_jl_value(x), None]}
        case Lit(value):
            return {"!": value} if negated else value
    guards = [jl_present(name) for name in sorted(names(node))]
    test = _jl_comparison(node, negated=negated)
    return {"and": [*guards, test]} if guards else test


def _jl_operands(condition: Any, op: str) -> list[Any]:
    """`a and (b and c)` as one `and` of three."""
    if isinstance(condition, dict) and set(condition) == {op}:
        return list(condition[op])
    return [condition]


def _jl_comparison(node: Node, *, negated: bool) -> Any:
    match node:
        case In(x, values, is_not):
            test = {"in": [_jl_value(x), list(values)]}
            return {"!": test} if is_not != negated else test
        case Bin(op, left, right) if op in _NEGATED_CMP:
            op = _NEGATED_CMP[op] if negated else op
            return {_JL_CMP.get(op, op): [_jl_value(left), _jl_value(right)]}
    value = _jl_value(node)
    return {"!": value} if negated else value


def _jl_value(node: Node) -> Any:
    """An operand: a literal, an attribute or a negative number (`scope_problems` refuses
    anything else)."""
    match node:
        case Lit(value):
            return value
        case Name(name):
            return {"var": name}
        case Neg(Lit(value)):
            return -value
    raise AssertionError(node)


def evaluate(node: Node, lookup: Callable[[str], Any]) -> Any:
    """Evaluate with SQL-like NULL semantics: an unknown value makes the result None."""
    match node:
        case Lit(value):
            return value
        case Name(name):
            return lookup(name)
        case Neg(x):
            v = evaluate(x, lookup)
            return None if v is None else -v
        case Not(x):
            v = evaluate(x, lookup)
            return None if v is None else not v
        case In(x, values, negated):
            v = evaluate(x, lookup)
            if v is None:
                return None
            if v in values:
                return not negated
            return None if None in values else negated  # SQL: `x in ('a', null)` is unknown
        case IsNull(x, negated):
            return (evaluate(x, lookup) is None) != negated
        case Bin(op, left, right):
            a, b = evaluate(left, lookup), evaluate(right, lookup)
            if op == "and":
                return False if a is False or b is False else (None if None in (a, b) else True)
            if op == "or":
                return True if a is True or b is True else (None if None in (a, b) else False)
            if a is None or b is None:
                return None
            if op == "/":
                return None if b == 0 else a / b
            return _BINARY[op](a, b)
    raise AssertionError(node)


_BINARY: dict[str, Callable[[Any, Any], Any]] = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
    "=": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}
