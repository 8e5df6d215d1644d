"""Read a playbook file into a `Playbook`, reporting every problem with file:line:column,
the key path and what was expected, and the nearest valid key for a typo."""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import math
import os
import re
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NotRequired

import yaml
from pydantic import BaseModel, ValidationError
from typing_extensions import TypedDict

from rolloutctl import envvars
from rolloutctl.durations import DURATION_PATTERN
from rolloutctl.errors import InvalidInput, PlaybookInvalid
from rolloutctl.playbook import expr
from rolloutctl.playbook.model import (
    LOG_KINDS,
    METRIC_NAME_RE,
    NAME_RE,
    Playbook,
)

Loc = tuple[str | int, ...]

# Columns a request log may carry (the README's "Request logs"); segment columns come from the
# playbook.
REQUEST_LOG_COLUMNS = {
    "ts",
    "variant",
    "request_id",
    "unit_id",
    "session_id",
    "status",
    "latency_ms",
    "ttft_ms",
    "input_tokens",
    "output_tokens",
    "cost_usd",
    "fallback_used",
    "json_valid",
    "citation_grounded",
    "hallucination",
    "safety_violation",
    "refusal",
    "escalated",
    "reformulated",
    "task_completed",
    "source_clicked",
    "feedback",
}
# Segment columns people commonly use, accepted without being declared as dimensions.
COMMON_SEGMENT_COLUMNS = {"language", "category", "risk", "device", "region", "user_tier"}


@dataclass(frozen=True)
class LoadedPlaybook:
    playbook: Playbook
    path: Path
    digest: str  # sha256 of the file's bytes: which playbook version a rollout runs

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    def resolve_path(self, value: str) -> str:
        """A path from the playbook: environment references expanded, relative to its folder."""
        expanded = envvars.resolve_env(value, where=f"{self.path}")
        if os.path.isabs(expanded) or _is_url(expanded):
            return expanded
        return str(self.base_dir / expanded)


_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]+://")  # RFC 3986's scheme; one letter is a drive


def _is_url(value: str) -> bool:
    """An address with a scheme (s3://, https://...), not a path under the playbook's folder."""
    return _URL.match(value) is not None


# ------------------------------------------------------------------ YAML with positions

# What a playbook may be, so a hostile or broken file is refused in well under a second and a
# few megabytes instead of taking minutes, gigabytes or the process (exit 3, never 1):
MAX_PLAYBOOK_BYTES = 256 * 1024  # 50 times the largest real playbook (~5 KB); parses in ~1 s
MAX_DEPTH = 32  # nesting of mappings and lists; a playbook uses 6
MAX_ALIAS_NODES = 10_000  # nodes produced through aliases (*name), counted as expanded
_MERGE = "tag:yaml.org,2002:merge"


class _Refused(Exception):
    """A playbook beyond one of the limits above, or with a duplicate key, at `mark`."""

    def __init__(self, mark: Any, message: str) -> None:
        super().__init__(message)
        self.line = mark.line + 1
        self.message = message


# libyaml's parser and composer (C, ~10x faster than PyYAML's) where PyYAML was built with it.
_Base: Any = yaml.CSafeLoader if getattr(yaml, "__with_libyaml__", False) else yaml.SafeLoader


class _Loader(_Base):
    """A safe loader with YAML 1.2 booleans (only true/false, so `on:` stays a key) that
    refuses what PyYAML accepts silently: duplicate keys (the last one would win), numbers
    beyond a float's range, and malformed typed scalars (a `2026-13-01` date, `!!int x`),
    each with its line. Composing recurses (in C for libyaml), so `_refuse_deep` measures
    the nesting on the flat event stream first."""

    def construct_object(self, node: Any, deep: bool = False) -> Any:
        try:
            value = super().construct_object(node, deep=deep)
        except (ValueError, OverflowError, AttributeError, TypeError) as exc:
            # AttributeError / TypeError: PyYAML's typed constructors (`!!timestamp x`) fail so
            # on a value their pattern does not match.
            digits = str(node.value).lstrip("+-").replace("_", "")
            if not (node.tag == "tag:yaml.org,2002:int" and digits.isdecimal()):
                raise _Refused(node.start_mark, f"cannot read {_snippet(node)}: {exc}") from None
            value = math.inf  # more digits than Python converts (4300)
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if number and abs(value) > sys.float_info.max and ".inf" not in str(node.value).lower():
            raise _Refused(
                node.start_mark,
                f"the number {_snippet(node)} is too large "
                f"(the limit is ±{sys.float_info.max:.3g}, the largest float)",
            )
        return value

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        first: dict[Any, int] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == _MERGE:
                continue  # a complex key is refused below; keys a `<<` merge brings may be overridden
            key = self.construct_object(key_node)
            if key in first:
                raise _Refused(
                    key_node.start_mark,
                    f"key {key!r} appears twice (first at line {first[key]})",
                )
            first[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def _refuse_deep(text: str) -> None:
    """Refuse nesting beyond MAX_DEPTH before the loader composes it (composing recurses)."""
    too_deep = f"nested more than {MAX_DEPTH} levels deep (the limit)"
    events = _Base(text)
    depth = 0
    try:
        while (event := events.get_event()) is not None:
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_DEPTH:
                    raise _Refused(event.start_mark, too_deep)
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
    except yaml.MarkedYAMLError as exc:  # libyaml's own limit, met while looking ahead
        if "nesting depth" not in str(exc.problem) or exc.problem_mark is None:
            raise
        raise _Refused(exc.problem_mark, too_deep) from None
    finally:
        events.dispose()


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool",
    re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"),
)


def _snippet(node: Any) -> str:
    text = str(node.value)
    return repr(text if len(text) <= 40 else text[:37] + "...")


@dataclass
class _Walk:
    """What walking the composed graph has seen: aliases share nodes, so a node met again was
    produced through an alias."""

    seen: set[int] = field(default_factory=set)
    repeated: int = 0
    path: set[int] = field(default_factory=set)  # the nodes above this one: a cycle check


def _compose_positions(
    node: yaml.Node, loc: Loc, out: dict[Loc, tuple[int, int]], walk: _Walk | None = None
) -> None:
    """Record where each key path starts, expanding aliases within MAX_ALIAS_NODES and
    MAX_DEPTH (the data built from this graph is then as bounded as this walk)."""
    walk = walk or _Walk()
    if id(node) in walk.path:
        raise _Refused(node.start_mark, "an alias refers to a value that contains it")
    if id(node) in walk.seen:
        walk.repeated += 1
        if walk.repeated > MAX_ALIAS_NODES:
            raise _Refused(
                node.start_mark,
                f"aliases expand to more than {MAX_ALIAS_NODES:,} nodes (the limit); "
                "the value anchored at this line is repeated too often",
            )
    if len(loc) >= MAX_DEPTH:
        raise _Refused(
            node.start_mark, f"aliases nest values more than {MAX_DEPTH} levels deep (the limit)"
        )
    walk.seen.add(id(node))
    out[loc] = (node.start_mark.line + 1, node.start_mark.column + 1)
    walk.path.add(id(node))
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else "?"
            out[(*loc, key, "__key__")] = (
                key_node.start_mark.line + 1,
                key_node.start_mark.column + 1,
            )
            _compose_positions(value_node, (*loc, key), out, walk)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _compose_positions(item, (*loc, i), out, walk)
    walk.path.discard(id(node))


def _read_yaml(path: Path) -> tuple[Any, dict[Loc, tuple[int, int]], bytes]:
    try:
        with path.open("rb") as file:
            raw = file.read(MAX_PLAYBOOK_BYTES + 1)
    except FileNotFoundError:
        raise InvalidInput(
            f"{path}: no such playbook file", hint="`rolloutctl init` writes a starter playbook"
        ) from None
    except OSError as exc:
        raise InvalidInput(f"{path}: cannot read the playbook: {exc.strerror}") from None
    if len(raw) > MAX_PLAYBOOK_BYTES:
        raise InvalidInput(
            f"{path}: larger than {MAX_PLAYBOOK_BYTES // 1024} KiB, the limit for a playbook",
            hint="a playbook is a few kilobytes; is this the right file?",
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{path}: not UTF-8 text (byte {exc.start})") from None
    positions: dict[Loc, tuple[int, int]] = {}
    loader: _Loader | None = None
    try:
        _refuse_deep(text)  # and control characters, which both parsers refuse
        loader = _Loader(text)
        node = loader.get_single_node()
        if node is not None:
            _compose_positions(node, (), positions)  # bounds the aliases before building
        data = loader.construct_document(node) if node is not None else None
    except _Refused as exc:
        raise InvalidInput(f"{path}:{exc.line}: {exc.message}") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise InvalidInput(
            f"{where}: not valid YAML: {exc.problem}",
            hint="check indentation and quoting around this line",
        ) from None
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow, at an offset
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - text.rfind("\n", 0, exc.position)
        raise InvalidInput(
            f"{path}:{line}:{column}: not valid YAML: the character U+{exc.character:04X} "
            "is not allowed (a control character or a non-character)",
            hint="remove it; a tab or newline inside a value needs quotes and an escape (\\t)",
        ) from None
    except yaml.YAMLError as exc:
        raise InvalidInput(f"{path}: not valid YAML: {exc}") from None
    finally:
        if loader is not None:
            loader.dispose()
    if data is None:
        raise InvalidInput(f"{path}: the playbook is empty", hint="`rolloutctl init` writes one")
    if not isinstance(data, dict):
        raise InvalidInput(f"{path}:1:1: a playbook is a mapping of keys (rollout:, flag:, ...)")
    return data, positions, raw


def _position(positions: dict[Loc, tuple[int, int]], loc: Loc, *, key: bool = False) -> str:
    probe = (*loc, "__key__") if key else loc
    if probe in positions:
        line, col = positions[probe]
        return f"{line}:{col}"
    for cut in range(len(loc), -1, -1):
        if loc[:cut] in positions:
            line, col = positions[loc[:cut]]
            return f"{line}:{col}"
    return "1:1"


def _dotted(loc: Loc) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


# ------------------------------------------------------------------ pydantic errors


def _data_loc(data: Any, loc: Loc) -> Loc:
    """Drop the parts of a pydantic location that are not keys of the data (union tags)."""
    out: list[str | int] = []
    node = data
    for part in loc:
        if isinstance(node, dict) and part in node:
            out.append(part)
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            out.append(part)
            node = node[part]
        elif isinstance(part, str) and not isinstance(node, dict | list):
            break
    return tuple(out)


def _model_at(data: Any, loc: Loc) -> type[BaseModel] | None:
    """The model class that validates the mapping at `loc` (to list its valid keys)."""
    annotation: Any = Playbook
    node = data
    for part in loc:
        model = _as_model(annotation, node)
        if model is not None:
            field = model.model_fields.get(str(part))
            if field is None:
                return None
            annotation = field.annotation
        else:
            annotation = _container_item(annotation)
            if annotation is None:
                return None
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        else:
            node = None
    return _as_model(annotation, node)


def _unwrap(annotation: Any) -> list[Any]:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return [a for arg in typing.get_args(annotation) for a in _unwrap(arg)]
    return [annotation]


def _as_model(annotation: Any, node: Any) -> type[BaseModel] | None:
    models = [a for a in _unwrap(annotation) if isinstance(a, type) and issubclass(a, BaseModel)]
    if len(models) == 1:
        return models[0]
    if isinstance(node, dict):  # a discriminated union: pick the member whose kind matches
        for model in models:
            kind = model.model_fields.get("kind")
            if kind is not None and node.get("kind") in typing.get_args(kind.annotation):
                return model
    return None


def _container_item(annotation: Any) -> Any:
    for option in _unwrap(annotation):
        args = typing.get_args(option)
        if typing.get_origin(option) is list and args:
            return args[0]
        if typing.get_origin(option) is dict and len(args) == 2:
            return args[1]
    return None


_PATTERN_WORDS = {
    NAME_RE: "expected a lowercase name: letters, digits, '.', '_' or '-', up to 80 characters",
    DURATION_PATTERN: "expected a duration such as 30s, 15m, 2h, 7d",
    METRIC_NAME_RE: "expected an identifier: letters, digits and '_', not starting with a digit",
}


def _describe(error: Any, data: Any, positions: dict[Loc, tuple[int, int]], path: Path) -> str:
    loc = _data_loc(data, tuple(error["loc"]))
    kind = error["type"]
    if kind == "extra_forbidden":
        key = str(error["loc"][-1])
        parent = _data_loc(data, tuple(error["loc"][:-1]))
        model = _model_at(data, parent)
        valid = sorted(model.model_fields) if model else []
        near = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
        tip = f"; did you mean {near[0]!r}?" if near else ""
        where = _position(positions, (*parent, key), key=True)
        expected = f" (valid keys: {', '.join(valid)})" if valid and not near else ""
        return f"{path}:{where}: {_dotted((*parent, key))}: unknown key {key!r}{tip}{expected}"
    where = _position(positions, loc)
    message = error["msg"].removeprefix("Value error, ")
    if kind == "missing":
        field = str(error["loc"][-1])
        parent_loc = _data_loc(data, tuple(error["loc"][:-1]))
        where = _position(positions, parent_loc)
        return f"{path}:{where}: {_dotted((*parent_loc, field))}: required key is missing"
    if kind == "string_pattern_mismatch":
        pattern = error.get("ctx", {}).get("pattern", "")
        message = _PATTERN_WORDS.get(pattern, message)
        message = f"{message} (got {error['input']!r})"
    elif kind in ("literal_error", "union_tag_invalid"):
        message = message.replace("Input should be", "expected")
        message = f"{message} (got {error['input']!r})"
    elif "input" in error and not isinstance(error["input"], dict | list):
        message = f"{message} (got {error['input']!r})"
    return f"{path}:{where}: {_dotted(loc)}: {message}"


# ------------------------------------------------------------------ semantic checks


def _items(data: Any, key: str) -> list[tuple[int, dict[str, Any]]]:
    """The mapping items of a top-level list, with their indexes; anything else is skipped
    (the schema reports it)."""
    value = data.get(key) if isinstance(data, dict) else None
    if not isinstance(value, list):
        return []
    return [(i, item) for i, item in enumerate(value) if isinstance(item, dict)]


def _mapping(data: dict[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key)
    return value if isinstance(value, dict) else {}


def semantic_problems(data: Any, positions: dict[Loc, tuple[int, int]], path: Path) -> list[str]:
    """Cross-references the schema cannot see: names, expressions, stage order.

    Reads the raw YAML data, skipping whatever has the wrong shape, so these problems are
    reported together with the schema's own in one pass."""
    if not isinstance(data, dict):
        return []
    check = _Semantics(data, positions, path)
    check.metric_sources()
    check.stages()
    check.triggers()
    _check_flag_backend(_mapping(data, "flag"), _items(data, "stages"), check.at)
    _check_eval_metrics(data, check.at)
    check.controls()
    return check.problems


_STAGE_SOURCE_KIND = {
    "offline_eval": ("evalfile",),
    "shadow": ("requestlog",),
    "monitor": LOG_KINDS,
}


class _Semantics:
    """The names a playbook declares, and the problems found so far, each at its line."""

    def __init__(self, data: dict[str, Any], positions: dict[Loc, tuple[int, int]], path: Path):
        self.data, self.positions, self.path = data, positions, path
        self.problems: list[str] = []
        self.sources: dict[str, Any] = _mapping(data, "sources")
        self.source_names = sorted(str(k) for k in self.sources)
        self.metric_names = [
            m["name"] for _, m in _items(data, "metrics") if isinstance(m.get("name"), str)
        ]
        dimensions = _mapping(data, "segments").get("dimensions")
        self.dimensions = [str(d) for d in dimensions] if isinstance(dimensions, list) else []
        self.columns = REQUEST_LOG_COLUMNS | COMMON_SEGMENT_COLUMNS | set(self.dimensions)

    def at(self, loc: Loc, message: str) -> None:
        self.problems.append(
            f"{self.path}:{_position(self.positions, loc)}: {_dotted(loc)}: {message}"
        )

    def source_kind(self, name: str) -> Any:
        spec = self.sources.get(name)
        return spec.get("kind") if isinstance(spec, dict) else None

    def check_columns(
        self, loc: Loc, text: str, allow_eval: bool = True, kind: str = "", known: bool = True
    ) -> None:
        """An expression over request-log columns: it parses, has the type its place needs
        (`kind`: condition or value), and names only known columns."""
        try:
            node = expr.parse(text)
        except expr.ExprError as exc:
            self.at(loc, f"cannot parse {text!r}: {exc}")
            return
        for problem in expr.type_problems(node, kind, lambda _: "any") if kind else []:
            self.at(loc, f"{text!r} {problem}")
        bad = [n for n in expr.names(node) if n not in self.columns] if known else []
        if allow_eval:
            bad = [n for n in bad if not n.startswith("eval.")]
        if bad:
            unknown = expr.unknown_names(node, self.columns)
            self.at(loc, "; ".join(unknown) + " (request-log columns)")

    def metric_sources(self) -> None:
        """Each metric names a declared source, and its expressions fit that source."""
        for i, m in _items(self.data, "metrics"):
            name = m.get("source")
            if not isinstance(name, str):
                continue
            if name not in self.sources:
                near = difflib.get_close_matches(name, self.source_names, n=1)
                tip = f"; did you mean {near[0]!r}?" if near else f"; sources: {self.source_names}"
                self.at(("metrics", i, "source"), f"unknown source {name!r}{tip}")
            elif self.source_kind(name) in LOG_KINDS:
                # A table's columns are known to its engine only: it names an unknown one
                # when the query runs (exit 3); a file log's are the request-log schema's.
                known = self.source_kind(name) == "requestlog"
                for field in ("event", "value", "numerator", "denominator"):
                    text = m.get(field)
                    if isinstance(text, str):
                        kind = "condition" if field == "event" else "value"
                        self.check_columns(("metrics", i, field), text, kind=kind, known=known)
            elif self.source_kind(name) == "prometheus":
                from rolloutctl.metrics.prometheus import metric_problems

                for field, problem in metric_problems(m, self.dimensions):
                    self.at(("metrics", i, field), problem)

    def stages(self) -> None:
        previous_traffic = -1.0
        for i, stage in _items(self.data, "stages"):
            self.stage_scope(i, stage.get("scope"))
            if stage.get("scope") is not None:
                previous_traffic = -1.0  # a new audience: the ramp starts again
            previous_traffic = self.stage_traffic(i, stage, previous_traffic)
            self.stage_metrics(i, stage.get("metrics"))
            self.stage_source(i, stage)

    def stage_scope(self, i: int, scope: Any) -> None:
        if isinstance(scope, str) and scope.strip().lower() != "all":
            self.check_columns(("stages", i, "scope"), scope, allow_eval=False)
            with contextlib.suppress(expr.ExprError):  # a parse error is reported above
                for problem in expr.scope_problems(expr.parse(scope)):
                    self.at(("stages", i, "scope"), f"{scope!r}: {problem}")

    def stage_traffic(self, i: int, stage: dict[str, Any], previous: float) -> float:
        """Canary stages of one audience only ramp up; returns the highest traffic so far."""
        traffic = stage.get("traffic")
        if stage.get("kind", "canary") != "canary" or not isinstance(traffic, int | float):
            return previous
        if traffic < previous:
            self.at(
                ("stages", i, "traffic"),
                f"traffic {traffic:g}% is lower than the stage before it "
                f"({previous:g}%) with the same scope; stages only ramp up "
                "(rollback is automatic)",
            )
        return max(previous, float(traffic))

    def stage_metrics(self, i: int, listed: Any) -> None:
        for j, name in enumerate(listed if isinstance(listed, list) else []):
            if isinstance(name, str) and name not in self.metric_names:
                near = difflib.get_close_matches(name, self.metric_names, n=1)
                tip = f"; did you mean {near[0]!r}?" if near else ""
                self.at(("stages", i, "metrics", j), f"unknown metric {name!r}{tip}")

    def stage_source(self, i: int, stage: dict[str, Any]) -> None:
        source = stage.get("source")
        if not isinstance(source, str):
            return
        if source not in self.sources:
            self.at(
                ("stages", i, "source"),
                f"unknown source {source!r}; sources: {self.source_names}",
            )
            return
        kind = stage.get("kind", "canary")
        wanted = _STAGE_SOURCE_KIND.get(kind)
        if wanted is not None and self.source_kind(source) not in wanted:
            self.at(
                ("stages", i, "source"),
                f"a {kind} stage reads a {' or '.join(wanted)} source; "
                f"{source!r} is a {self.source_kind(source)} source",
            )

    def triggers(self) -> None:
        """A trigger's `when` names canary.METRIC or control.METRIC and can be true."""
        arm_names = [f"{arm}.{m}" for arm in ("canary", "control") for m in self.metric_names]
        for i, trigger in _items(self.data, "triggers"):
            when = trigger.get("when")
            if not isinstance(when, str):
                continue
            loc = ("triggers", i, "when")
            try:
                node = expr.parse(when)
            except expr.ExprError as exc:
                self.at(loc, f"cannot parse {when!r}: {exc}")
                continue
            for name in sorted(expr.names(node)):
                arm, _, metric = name.partition(".")
                if arm not in ("canary", "control"):
                    self.at(loc, f"{name!r}: write canary.METRIC or control.METRIC")
                elif metric not in self.metric_names:
                    near = difflib.get_close_matches(name, arm_names, n=1)
                    tip = f"; did you mean {near[0]!r}?" if near else ""
                    self.at(loc, f"unknown metric {metric!r}{tip}")
            for problem in expr.type_problems(node, "condition", lambda _: "number"):
                self.at(loc, f"{when!r} {problem}; the trigger could never fire")

    def controls(self) -> None:
        """A control that sets the rollout flag sets only its canary_percent."""
        flag_key = _mapping(self.data, "flag").get("key")
        for i, control in _items(self.data, "controls"):
            settings = control.get("set")
            for key, value in settings.items() if isinstance(settings, dict) else []:
                if key == flag_key and not (
                    isinstance(value, dict) and set(value) <= {"canary_percent"}
                ):
                    self.at(
                        ("controls", i, "set", key), "the rollout flag takes {canary_percent: N}"
                    )


def _check_eval_metrics(data: dict[str, Any], at: Any) -> None:
    """Offline eval results are not live traffic: a metric on an `evalfile` source is judged
    only by an offline_eval stage that reads its source (gate.stage_metrics), so a traffic
    stage or a trigger that names one, or such a metric with no offline_eval stage to judge
    it, would silently never be judged."""
    sources = _mapping(data, "sources")

    def kind(name: Any) -> Any:
        spec = sources.get(name) if isinstance(name, str) else None
        return spec.get("kind") if isinstance(spec, dict) else None

    metric_source = {
        m["name"]: m.get("source")
        for _, m in _items(data, "metrics")
        if isinstance(m.get("name"), str)
    }
    stages = _items(data, "stages")
    judged_by = {s.get("source") for _, s in stages if s.get("kind") == "offline_eval"}
    for i, stage in stages:
        listed = stage.get("metrics")
        for j, name in enumerate(listed if isinstance(listed, list) else []):
            source = metric_source.get(name)
            if name not in metric_source:
                continue  # reported as an unknown metric
            if stage.get("kind") == "offline_eval" and source != stage.get("source"):
                at(
                    ("stages", i, "metrics", j),
                    f"an offline_eval stage judges the metrics of its evalfile source "
                    f"{stage.get('source')!r}; {name!r} reads source {source!r}",
                )
            elif stage.get("kind", "canary") != "offline_eval" and kind(source) == "evalfile":
                at(
                    ("stages", i, "metrics", j),
                    f"{name!r} reads evalfile source {source!r}: offline eval results are "
                    "judged by the offline_eval stage that reads them, never against live "
                    "traffic; remove it from this stage's metrics",
                )
    for i, metric in _items(data, "metrics"):
        source = metric.get("source")
        if kind(source) == "evalfile" and source not in judged_by:
            at(
                ("metrics", i, "source"),
                f"{metric.get('name')!r} reads evalfile source {source!r}, which no "
                "offline_eval stage reads, so it would never be judged; add a stage "
                f"`{{kind: offline_eval, source: {source}}}`",
            )
    for i, trigger in _items(data, "triggers"):
        when = trigger.get("when")
        try:
            names = expr.names(expr.parse(when)) if isinstance(when, str) else set()
        except expr.ExprError:
            continue  # reported above
        for name in sorted(names):
            named = name.partition(".")[2]
            if kind(metric_source.get(named)) == "evalfile":
                at(
                    ("triggers", i, "when"),
                    f"{named!r} is an offline eval metric, judged once by its offline_eval "
                    "stage; triggers watch live traffic (give the metric a `limit:` instead)",
                )


_UNTARGETED = {
    "gateway": "an LLM gateway's weights apply to every request",
    "launchdarkly": "rolloutctl writes only the flag's default rule",
}


def _check_flag_backend(
    flag: dict[str, Any], stages: list[tuple[int, dict[str, Any]]], at: Any
) -> None:
    """What the chosen flag backend cannot do, found before anything is started: scoped
    stages where a backend cannot target, fractions of a percent where it cannot split."""
    backend = flag.get("backend", "file")
    for i, stage in stages:
        scope = stage.get("scope")
        scoped = isinstance(scope, str) and scope.strip().lower() != "all"
        if scoped and backend in _UNTARGETED:
            at(
                ("stages", i, "scope"),
                f"the {backend} flag backend cannot limit a stage to "
                f"some users ({_UNTARGETED[backend]}); remove the scope or use `scope: all`",
            )
        if backend != "unleash":
            continue
        from rolloutctl.flags import unleash

        traffic = stage.get("traffic")
        if isinstance(traffic, int | float) and not float(traffic).is_integer():
            at(
                ("stages", i, "traffic"),
                f"Unleash rolls out in whole percents; {traffic:g}% is not one",
            )
        if scoped:
            try:
                unleash.constraints_of(expr.to_jsonlogic(expr.parse(str(scope))))
            except expr.ExprError:
                pass  # reported by the column check above
            except unleash.ScopeNotExpressible as exc:
                at(("stages", i, "scope"), f"{scope!r}: {exc}")


# ------------------------------------------------------------------ entry point


def load_playbook(path: str | Path) -> LoadedPlaybook:
    """Parse and validate; raise PlaybookInvalid listing every problem found."""
    path = Path(path)
    data, positions, raw = _read_yaml(path)
    problems = semantic_problems(data, positions, path)
    playbook: Playbook | None = None
    try:
        playbook = Playbook.model_validate(data)
    except ValidationError as exc:
        problems += [_describe(e, data, positions, path) for e in exc.errors()]
    if problems or playbook is None:
        raise PlaybookInvalid(str(path), _sorted_by_line(problems))
    return LoadedPlaybook(playbook, path.resolve(), hashlib.sha256(raw).hexdigest())


def _sorted_by_line(problems: list[str]) -> list[str]:
    def line_of(problem: str) -> tuple[int, int]:
        try:
            _, line, col = problem.split(": ", 1)[0].rsplit(":", 2)
            return int(line), int(col)
        except ValueError:
            return (0, 0)

    return sorted(dict.fromkeys(problems), key=line_of)


class PlaybookCheck(TypedDict):
    """One playbook as `validate --json` reports it."""

    file: str
    ok: bool
    problems: list[str]  # each `file:line:column: key.path: what was expected`
    rollout: NotRequired[str]
    unset_env: NotRequired[list[str]]  # ${VAR}s without a default that are not set here


class ValidateResult(TypedDict):
    ok: bool
    playbooks: list[PlaybookCheck]


def env_references(path: str | Path) -> list[str]:
    """The ${VAR} names a playbook reads, for `validate` to list the unset ones."""
    text = Path(path).read_text(encoding="utf-8", errors="replace")
    return envvars.references(text)
