"""PromQL as text: a metric's templates (`query:`, `histogram:`, `total:`) rendered for one
request, and checked before anything is sent.

rolloutctl does not parse PromQL. It lexes just enough to find what it rewrites (the arm
matcher, the placeholders), to write label names the way Prometheus 3 reads them (dotted
OpenTelemetry names quoted: `{"gen_ai.operation.name"="chat"}`, `by ("gen_ai.request.model")`),
and to refuse at `validate` the templates that cannot work: no arm matcher, brackets that do
not pair, an aggregation that drops the labels the source groups by, `rate()` where counts
are read."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
KNOWN = ("variant", "window", "start", "end", "by", "control", "canary")
# Aggregations that keep only the labels named in `by (...)`; topk, bottomk and limitk
# return their input series with every label, so they are not among them.
AGGREGATIONS = frozenset(
    ("sum", "avg", "min", "max", "count", "group", "stddev", "stdvar", "quantile", "count_values")
)
_LEGACY_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_VARIANT = re.compile(r"\{\{\s*variant\s*\}\}")
_RE2_SPECIAL = set(r"\.+*?()|[]{}^$")
_TOKEN = re.compile(
    r"""
      (?P<space>\s+|\#[^\n]*)
    | (?P<placeholder>\{\{\s*[A-Za-z_][A-Za-z0-9_]*\s*\}\})
    | (?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*'|`[^`]*`)
    | (?P<open_string>["'`])
    | (?P<number>\d[\w.]*)
    | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*(?:\.[A-Za-z_][A-Za-z0-9_:]*)*)
    | (?P<op>=~|!~|!=|==|>=|<=|[-+*/%^<>=,@:;])
    | (?P<bracket>[(){}\[\]])
    | (?P<other>.)
    """,
    re.VERBOSE | re.DOTALL,
)


@dataclass(frozen=True)
class Token:
    kind: str  # placeholder, string, open_string, number, ident, op, bracket, other
    text: str
    start: int

    @property
    def end(self) -> int:
        return self.start + len(self.text)


def lex(text: str) -> list[Token]:
    """The template's tokens, whitespace and comments left out. A `{{name}}` outside a string
    is one token; a bare dotted name (`gen_ai.request.model`) is one identifier."""
    return [
        Token(m.lastgroup or "other", m.group(), m.start())
        for m in _TOKEN.finditer(text)
        if m.lastgroup != "space"
    ]


def unquote(literal: str) -> str:
    """A PromQL string literal's content."""
    body = literal[1:-1]
    return body if literal.startswith("`") else re.sub(r"\\(.)", r"\1", body)


def string_literal(value: str) -> str:
    """`value` as the content of a double-quoted PromQL string."""
    return value.replace("\\", "\\\\").replace('"', '\\"')


def label_name(name: str) -> str:
    """A label name as PromQL reads it: bare when it is a classic name, else quoted (the
    Prometheus 3 syntax for UTF-8 names such as OpenTelemetry's `gen_ai.operation.name`)."""
    return name if _LEGACY_NAME.fullmatch(name) else f'"{string_literal(name)}"'


def label_list(names: Sequence[str]) -> str:
    """What `{{by}}` becomes: the names, each once, in order."""
    return ", ".join(label_name(n) for n in dict.fromkeys(names))


def regex_literal(value: str) -> str:
    """A name as an RE2 regex matching only itself, inside a PromQL double-quoted string."""
    return string_literal("".join("\\" + c if c in _RE2_SPECIAL else c for c in value))


# ---------------------------------------------------------------- the arm matcher


@dataclass(frozen=True)
class ArmMatcher:
    """`label=~"{{variant}}"` (both arms in one query, told apart by the label) or
    `label="{{variant}}"` (one query per arm), found in a template."""

    label: str  # as Prometheus stores it: `gen_ai.request.model`, never quoted
    op: str  # "=~" or "="
    start: int  # the span in the template, from the label's name to the value's quote
    end: int

    @property
    def per_arm(self) -> bool:
        return self.op == "="


def arm_matchers(template: str) -> list[ArmMatcher]:
    """Every arm matcher, in order: inside a selector's braces, a label name (bare, bare
    dotted, or quoted) compared with `=` or `=~` to the string `"{{variant}}"`."""
    tokens = lex(template)
    found: list[ArmMatcher] = []
    for i in range(1, len(tokens) - 2):
        before, name, op, value = tokens[i - 1 : i + 3]
        if (
            before.text in ("{", ",")
            and name.kind in ("ident", "string")
            and op.text in ("=", "=~")
            and value.kind == "string"
            and _VARIANT.fullmatch(unquote(value.text).strip())
        ):
            label = name.text if name.kind == "ident" else unquote(name.text)
            found.append(ArmMatcher(label, op.text, name.start, value.end))
    return found


def render(
    template: str,
    values: Mapping[str, str],
    arm_values: Sequence[str],
    per_arm: bool,
) -> tuple[str, list[str]]:
    """The template for one query, and the placeholders it names that are not in `values`
    (left in the text, so a plan still shows the query). Each arm matcher becomes
    `label=~"a|b"` for `arm_values` a and b, or `label="a"` when `per_arm`; its label name
    is written the Prometheus 3 way when it is not a classic name."""
    unknown: list[str] = []

    def fill(text: str) -> str:
        def one(match: re.Match[str]) -> str:
            key = match.group(1)
            if key in values:
                return values[key]
            unknown.append(key)
            return match.group(0)

        return PLACEHOLDER.sub(one, text)

    parts: list[str] = []
    position = 0
    for arm in arm_matchers(template):
        parts.append(fill(template[position : arm.start]))
        if per_arm:
            parts.append(f'{label_name(arm.label)}="{string_literal(arm_values[0])}"')
        else:
            regex = "|".join(regex_literal(v) for v in arm_values)
            parts.append(f'{label_name(arm.label)}=~"{regex}"')
        position = arm.end
    parts.append(fill(template[position:]))
    return "".join(parts), list(dict.fromkeys(unknown))


def unknown_placeholder(key: str) -> str:
    if key == "variant":
        return (
            "{{variant}} is understood only as a label matcher's value: "
            'label=~"{{variant}}" (both arms) or label="{{variant}}" (one query per arm)'
        )
    return f"unknown placeholder {{{{{key}}}}} (known: {', '.join(KNOWN)})"


NO_ARM_MATCHER = (
    'no arm matcher such as variant=~"{{variant}}": the arms cannot be told apart '
    '(a dotted label is written "gen_ai.request.model"=~"{{variant}}")'
)


# ---------------------------------------------------------------- event matchers


_MATCHER = re.compile(
    r'\s*("(?:[^"\\]|\\.)*"|[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)'
    r'\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*'
)


@dataclass(frozen=True)
class Matcher:
    label: str
    op: str
    value: str

    def matches(self, labels: Mapping[str, str]) -> bool:
        have = labels.get(self.label, "")
        if self.op == "=":
            return have == self.value
        if self.op == "!=":
            return have != self.value
        hit = re.fullmatch(self.value, have) is not None  # PromQL regexes are anchored
        return hit if self.op == "=~" else not hit


def parse_matchers(text: str) -> list[Matcher]:
    """`status="error", kind=~"a|b"` (or `"gen_ai.response.status"="error"`) -> matchers;
    ValueError when it is not that shape."""
    out: list[Matcher] = []
    for part in _split_top(text.strip().strip("{}")):
        m = _MATCHER.fullmatch(part)
        if m is None:
            raise ValueError(
                f'not a label matcher: {part.strip()!r} (expected e.g. status="error")'
            )
        label = unquote(m.group(1)) if m.group(1).startswith('"') else m.group(1)
        value = re.sub(r"\\(.)", r"\1", m.group(3))
        if m.group(2) in ("=~", "!~"):
            re.compile(value)
        out.append(Matcher(label, m.group(2), value))
    if not out:
        raise ValueError("empty label matcher")
    return out


def _split_top(text: str) -> list[str]:
    """Split on commas outside double quotes."""
    parts, current, quoted, escaped = [], "", False, False
    for ch in text:
        if escaped:
            current, escaped = current + ch, False
            continue
        if ch == "\\":
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif ch == "," and not quoted:
            parts.append(current)
            current = ""
            continue
        current += ch
    if current.strip():
        parts.append(current)
    return parts


# ---------------------------------------------------------------- checks before sending


def template_problems(
    template: str, *, keep: Mapping[str, str], dimensions: Sequence[str] = ()
) -> list[str]:
    """Why this template cannot work, before anything is sent (none: it may). `keep` are the
    labels its answer must carry besides the arm label and the segment `dimensions`, each
    with why (`{"le": "the bucket bound"}`)."""
    tokens = lex(template)
    opened = next((t for t in tokens if t.kind == "open_string"), None)
    if opened is not None:
        return [f"unterminated string starting at character {opened.start + 1}"]
    problems = _bracket_problems(tokens)
    for key in dict.fromkeys(PLACEHOLDER.findall(template)):
        if key not in KNOWN:
            problems.append(unknown_placeholder(key))
    arms = arm_matchers(template)
    if not arms:
        problems.append(NO_ARM_MATCHER)
    elif len({(a.label, a.op) for a in arms}) > 1:
        problems.append(
            "the arm matchers differ ("
            + ", ".join(f"{a.label}{a.op}" for a in arms)
            + "): use one label and one operator"
        )
    elif any(
        t.kind == "string" and _VARIANT.search(t.text)
        for t in tokens
        if not any(a.start <= t.start < a.end for a in arms)
    ):
        problems.append(unknown_placeholder("variant"))
    for i, t in enumerate(tokens[:-1]):
        if t.kind == "ident" and t.text in ("rate", "irate") and tokens[i + 1].text == "(":
            problems.append(
                f"{t.text}() gives per-second rates, but every value of this template is read "
                "as a count (requests, events, bucket or _sum increases): a rate would become "
                "the gate's sample size. Use increase(...[{{window}}])"
            )
            break
    if dimensions and "by" not in {_placeholder(t) for t in tokens}:
        problems.append(
            f"segments are used ({', '.join(dimensions)}) but the template has no {{{{by}}}}: "
            "group with sum by ({{by}}) (...) so each segment's labels are kept"
        )
    elif arms and not problems:
        needed = dict(keep)
        if not arms[0].per_arm:
            needed = {arms[0].label: "the arm label", **needed}
        needed.update({d: "a segment dimension" for d in dimensions if d not in needed})
        problems.extend(_dropping(template, tokens, arms, needed))
    return problems


def metric_problems(metric: Mapping[str, Any], dimensions: Sequence[str]) -> list[tuple[str, str]]:
    """(field, problem) for a prometheus metric as the playbook gives it (raw YAML, any
    shape): what `validate` refuses before a gate would send the queries."""
    kind = metric.get("kind")

    def text(field: str) -> str | None:
        value = metric.get(field)
        return value if isinstance(value, str) else None

    query, histogram, total, event = text("query"), text("histogram"), text("total"), text("event")
    out: list[tuple[str, str]] = []
    templates: list[tuple[str, str | None, dict[str, str]]] = []
    if kind == "ratio":
        out.append(
            (
                "kind",
                "a ratio cannot be measured from prometheus (the delta method needs per-unit "
                "sums of squares, which counters do not keep); use a requestlog source",
            )
        )
    elif kind == "proportion":
        event_labels: dict[str, str] = {}
        if query is None:
            out.append(("query", "a proportion from prometheus needs `query`"))
        elif total is None and event is None:
            out.append(
                (
                    "event",
                    "a proportion from prometheus needs `event` (a label matcher such as "
                    'status="error") or a `total` query',
                )
            )
        elif total is None and event is not None:
            try:
                event_labels = {m.label: "matched by `event`" for m in parse_matchers(event)}
            except (ValueError, re.error) as exc:
                out.append(("event", f"{event!r}: {exc}"))
        templates = [("query", query, event_labels), ("total", total, {})]
    elif kind == "quantile":
        field = "histogram" if histogram is not None else "query"
        templates = [(field, histogram or query, {"le": "the bucket bound"})]
    elif kind == "mean":
        if histogram is not None:
            templates = [("histogram", histogram, {"le": "the bucket bound"})]
        elif query is not None and total is not None:
            templates = [("query", query, {}), ("total", total, {})]
        else:
            out.append(
                (
                    "total" if query is not None else "query",
                    "a mean from prometheus needs `histogram` (a _bucket query), or `query` "
                    "(the _sum increase) and `total` (the _count increase)",
                )
            )
    for field, template, keep in templates:
        if template is not None:
            out.extend(
                (field, p) for p in template_problems(template, keep=keep, dimensions=dimensions)
            )
    return out


def _placeholder(token: Token) -> str:
    """The name of a placeholder token (`{{ by }}` -> by); "" for other tokens."""
    found = PLACEHOLDER.fullmatch(token.text) if token.kind == "placeholder" else None
    return found.group(1) if found else ""


def _bracket_problems(tokens: list[Token]) -> list[str]:
    pairs = {")": "(", "]": "[", "}": "{"}
    stack: list[Token] = []
    for t in tokens:
        if t.kind != "bracket":
            continue
        if t.text in "([{":
            stack.append(t)
        elif not stack:
            return [f"unbalanced brackets: `{t.text}` at character {t.start + 1} closes nothing"]
        elif stack[-1].text != pairs[t.text]:
            return [
                f"unbalanced brackets: `{t.text}` at character {t.start + 1} closes "
                f"`{stack[-1].text}` from character {stack[-1].start + 1}"
            ]
        else:
            stack.pop()
    if stack:
        return [
            f"unbalanced brackets: `{stack[-1].text}` at character {stack[-1].start + 1} is "
            "never closed"
        ]
    return []


def _closing(tokens: list[Token], i: int) -> int | None:
    """The index of the bracket closing tokens[i]."""
    depth = 0
    for j in range(i, len(tokens)):
        if tokens[j].kind != "bracket":
            continue
        depth += 1 if tokens[j].text in "([{" else -1
        if depth == 0:
            return j
    return None


def _grouping(tokens: list[Token], i: int) -> tuple[tuple[str, list[str]], int] | None:
    """`by (a, "b.c", {{by}})` at tokens[i]: (("by", ["a", "b.c", "{{by}}"]), index after)."""
    if i + 1 >= len(tokens) or tokens[i + 1].text != "(":
        return None
    close = _closing(tokens, i + 1)
    if close is None:
        return None
    names = []
    for t in tokens[i + 2 : close]:
        if t.kind == "ident":
            names.append(t.text)
        elif t.kind == "string":
            names.append(unquote(t.text))
        elif t.kind == "placeholder":
            names.append("{{" + _placeholder(t) + "}}")
    return (tokens[i].text, names), close + 1


def _dropping(
    template: str, tokens: list[Token], arms: list[ArmMatcher], needed: Mapping[str, str]
) -> list[str]:
    """Each aggregation around an arm matcher that drops a label the answer must keep."""
    problems: list[str] = []
    for i, t in enumerate(tokens):
        if t.kind != "ident" or t.text not in AGGREGATIONS:
            continue
        j, clause = i + 1, None
        if j < len(tokens) and tokens[j].text in ("by", "without"):
            found = _grouping(tokens, j)
            if found is None:
                continue
            clause, j = found
        if j >= len(tokens) or tokens[j].text != "(":
            continue
        close = _closing(tokens, j)
        if close is None:
            continue
        if not any(tokens[j].start < a.start < tokens[close].start for a in arms):
            continue
        tail = ""
        if close + 1 < len(tokens) and tokens[close + 1].text in ("by", "without"):
            found = _grouping(tokens, close + 1)
            if clause is None and found is not None:
                clause = found[0]
                tail = template[tokens[close].end : tokens[found[1] - 1].end]
        if clause is None:
            lost = list(needed)
        elif clause[0] == "by":
            lost = [] if "{{by}}" in clause[1] else [n for n in needed if n not in clause[1]]
        else:
            lost = [n for n in needed if n in clause[1]]
        if lost:
            snippet = template[t.start : tokens[j].end] + "...)" + tail
            why = "; ".join(f"`{n}` is {needed[n]}" for n in lost)
            problems.append(
                f"`{snippet}` drops {'labels' if len(lost) > 1 else 'a label'} the source needs "
                f"({why}): "
                f"group with {t.text} by ({{{{by}}}}) (...), which keeps them"
            )
    return problems
