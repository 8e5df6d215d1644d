"""The package's import graph has no cycle.

Every import counts, at module level or inside a function (an import moved into a function
hides a cycle from Python, not from a reader), and importing `a.b.c` also runs `a/__init__.py`
and `a/b/__init__.py`. Imports under `if TYPE_CHECKING:` are for annotations only and never run.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "rolloutctl"


def _module_names() -> dict[str, Path]:
    names = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


MODULES = _module_names()


def _type_checking_nodes(tree: ast.Module) -> set[int]:
    hidden: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            hidden.update(id(inner) for stmt in node.body for inner in ast.walk(stmt))
    return hidden


def _targets(module: str, path: Path) -> Iterator[str]:
    """The package modules an import statement in `module` runs."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    hidden = _type_checking_nodes(tree)
    for node in ast.walk(tree):
        if id(node) in hidden:
            continue
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)


def _with_parents(name: str) -> Iterator[str]:
    parts = name.split(".")
    for end in range(1, len(parts) + 1):
        prefix = ".".join(parts[:end])
        if prefix in MODULES:
            yield prefix


def import_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for module, path in MODULES.items():
        edges = {m for target in _targets(module, path) for m in _with_parents(target)}
        # A package's own parents are already running when it imports; not an edge.
        graph[module] = edges - {module} - set(_with_parents(module))
    return graph


def _cycle_through(graph: dict[str, set[str]], start: str) -> list[str] | None:
    """A shortest path start -> ... -> start, if any (breadth first)."""
    parents: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for nxt in sorted(graph.get(node, ())):
                if nxt == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(parents[path[-1]])
                    return [start, *reversed(path[:-1]), start]
                if nxt not in parents:
                    parents[nxt] = node
                    following.append(nxt)
        frontier = following
    return None


def test_the_walk_sees_the_package() -> None:
    graph = import_graph()
    assert "rolloutctl.engine" in graph
    assert "rolloutctl.state.store" in graph["rolloutctl.engine"]
    assert "rolloutctl.state" in graph["rolloutctl.engine"]  # a parent package runs too


def test_the_walk_finds_a_cycle_when_there_is_one() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycle_through(graph, "a") == ["a", "b", "c", "a"]
    assert _cycle_through(graph, "d") is None


def test_no_import_cycle_in_the_package() -> None:
    graph = import_graph()
    cycles = {tuple(c) for m in graph if (c := _cycle_through(graph, m)) is not None}
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in sorted(cycles))
