"""Every package imported by rolloutctl, its tests and its benchmarks is declared in pyproject.toml.

A package installed by hand on one machine can satisfy an import that a fresh install cannot;
tests/run.sh runs the suite in a virtualenv holding only what pyproject.toml declares, and this
file says which declaration each import is missing before anything fails at run time:

- rolloutctl/ may import the runtime dependencies only;
- tests/ may also import the `test` extra, benchmarks/ the `bench` extra;
- a pandas call that loads an optional engine (`to_parquet`, `read_excel`, ...) counts as an
  import of that engine, since pandas imports it only when the call runs;
- every runtime dependency is imported by rolloutctl/ (an unused one only makes installs bigger).

Modules are mapped to the distributions that provide them with importlib.metadata, in the
environment the tests run in.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from dataclasses import dataclass
from functools import cache
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIRST_PARTY = frozenset({"rolloutctl", "tests", "benchmarks"})
# Calls that make pandas import an optional package (pandas' "optional dependencies").
PANDAS_ENGINES = {
    "to_parquet": "pyarrow",
    "read_parquet": "pyarrow",
    "to_feather": "pyarrow",
    "read_feather": "pyarrow",
    "to_orc": "pyarrow",
    "read_orc": "pyarrow",
    "to_excel": "openpyxl",
    "read_excel": "openpyxl",
    "to_markdown": "tabulate",
}
# Functions whose first argument, a string literal, names a module they import.
IMPORTING_CALLS = frozenset({"import_module", "importorskip", "__import__", "require"})


@dataclass(frozen=True)
class Import:
    module: str  # the top-level module name
    path: str
    line: int
    via: str = ""  # how a call imports it, for the message


def normalize(name: str) -> str:
    """A distribution name as PEP 503 compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(spec: str) -> tuple[str, list[str]]:
    """'pandas>=2.1' -> ('pandas', []); 'rolloutctl[test]' -> ('rolloutctl', ['test'])."""
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[([^\]]*)\])?", spec)
    assert match, f"pyproject.toml: cannot read the requirement {spec!r}"
    extras = [e.strip() for e in (match.group(2) or "").split(",") if e.strip()]
    return normalize(match.group(1)), extras


def declared(pyproject: str, extras: tuple[str, ...] = ()) -> frozenset[str]:
    """The distributions pyproject.toml declares: the runtime ones plus EXTRAS, expanded
    through self-references such as `bench = ["rolloutctl[test]", ...]`."""
    project = tomllib.loads(pyproject)["project"]
    own = normalize(project["name"])
    optional = project.get("optional-dependencies", {})
    names: set[str] = set()
    todo, seen = [*project.get("dependencies", [])], set()
    todo += [spec for extra in extras for spec in optional[extra]]
    while todo:
        name, more = _requirement_name(todo.pop())
        if name != own:
            names.add(name)
            continue
        for extra in more:
            if extra not in seen:
                seen.add(extra)
                todo += optional[extra]
    return frozenset(names)


def imports(source: str, path: str) -> list[Import]:
    """The third-party imports of one file, with the optional engines of pandas calls."""
    found: list[Import] = []
    for node in ast.walk(ast.parse(source, path)):
        if isinstance(node, ast.Import):
            found += [Import(a.name.split(".")[0], path, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append(Import(node.module.split(".")[0], path, node.lineno))
        elif isinstance(node, ast.Call):
            found += _call_imports(node, path)
    return [
        i for i in found if i.module not in sys.stdlib_module_names and i.module not in FIRST_PARTY
    ]


def _call_imports(call: ast.Call, path: str) -> list[Import]:
    func = call.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
    if name in PANDAS_ENGINES and not _is_duckdb_call(func):
        return [Import(PANDAS_ENGINES[name], path, call.lineno, f"pandas' {name}()")]
    first = call.args[0] if call.args else None
    if name in IMPORTING_CALLS and isinstance(first, ast.Constant) and isinstance(first.value, str):
        return [Import(first.value.split(".")[0], path, call.lineno, f"{name}()")]
    return []


def _is_duckdb_call(func: ast.expr) -> bool:
    """duckdb.read_parquet(...) and con.read_parquet(...) read Parquet without pyarrow."""
    owner = func.value if isinstance(func, ast.Attribute) else None
    return isinstance(owner, ast.Name) and owner.id in {"duckdb", "con", "connection"}


@cache
def providers() -> dict[str, list[str]]:
    return packages_distributions()


def undeclared(found: list[Import], allowed: frozenset[str], where: str) -> list[str]:
    """A sentence for each import that no declared distribution provides."""
    problems = []
    for imp in found:
        dists = providers().get(imp.module)
        how = f" (through {imp.via})" if imp.via else ""
        at = f"{imp.path}:{imp.line} imports {imp.module}{how}"
        if not dists:
            # Declared under its own name but not installed here (pyarrow of the bench extra
            # while the tests run): fine. Anything else cannot be installed from pyproject.
            if normalize(imp.module) not in allowed:
                problems.append(
                    f"{at}, which no installed distribution provides: declare it {where}"
                )
        elif not any(normalize(d) in allowed for d in dists):
            problems.append(f"{at} from {', '.join(sorted(set(dists)))}: declare it {where}")
    return problems


def tree_imports(folder: str) -> list[Import]:
    return [
        i
        for path in sorted((ROOT / folder).rglob("*.py"))
        for i in imports(path.read_text(), str(path.relative_to(ROOT)))
    ]


PYPROJECT = (ROOT / "pyproject.toml").read_text()
WHERE = {
    "rolloutctl": ((), "in [project] dependencies"),
    "tests": (("test",), "in [project] dependencies or the test extra"),
    "benchmarks": (("bench",), "in [project] dependencies or the bench extra"),
}


# Modules of rolloutctl/ that may import an optional extra's package: each imports it only
# when the feature is used and names the `pip install` when it is missing.
OPTIONAL_EXTRAS = {
    "rolloutctl/state/postgres.py": ("postgres",),
    "rolloutctl/metrics/sql.py": ("postgres", "clickhouse"),
    "rolloutctl/metrics/remote.py": ("s3", "gcs", "http"),
}


def test_every_import_is_declared() -> None:
    problems = []
    for folder, (extras, where) in WHERE.items():
        found = tree_imports(folder)
        plain = [i for i in found if i.path not in OPTIONAL_EXTRAS]
        problems += undeclared(plain, declared(PYPROJECT, extras), where)
        for path, extra in OPTIONAL_EXTRAS.items():
            mine = [i for i in found if i.path == path]
            problems += undeclared(mine, declared(PYPROJECT, extra), f"in the {extra} extra")
    assert not problems, "\n".join(problems)


def test_every_runtime_dependency_is_imported() -> None:
    used = {normalize(d) for i in tree_imports("rolloutctl") for d in providers().get(i.module, [])}
    unused = sorted(declared(PYPROJECT) - used)
    assert not unused, f"pyproject.toml declares {unused} but rolloutctl/ imports none of them"


# ---------------------------------------------------------------- the check itself


SAMPLE_PYPROJECT = """
[project]
name = "rolloutctl"
dependencies = ["pandas>=2", "PyYAML"]
[project.optional-dependencies]
test = ["pytest>=8"]
bench = ["rolloutctl[test]", "pyarrow"]
"""


def test_declared_follows_extras_through_self_references() -> None:
    assert declared(SAMPLE_PYPROJECT) == {"pandas", "pyyaml"}
    assert declared(SAMPLE_PYPROJECT, ("test",)) == {"pandas", "pyyaml", "pytest"}
    assert declared(SAMPLE_PYPROJECT, ("bench",)) == {"pandas", "pyyaml", "pytest", "pyarrow"}


def test_the_check_finds_what_a_fresh_install_would_miss() -> None:
    source = (
        "import os, yaml\n"
        "from . import sibling\n"
        "from rolloutctl import simulate\n"
        "import pytest\n"
        "def f(frame, path):\n"
        "    frame.to_parquet(path)\n"
        "    duckdb.read_parquet(path)\n"
        "    importlib.import_module('not_a_real_module_anywhere')\n"
    )
    found = imports(source, "rolloutctl/x.py")
    assert [(i.module, i.line) for i in found] == [
        ("yaml", 1),
        ("pytest", 4),
        ("pyarrow", 6),
        ("not_a_real_module_anywhere", 8),
    ]
    problems = undeclared(found, declared(SAMPLE_PYPROJECT), "in [project] dependencies")
    assert len(problems) == 3, problems
    assert problems[0].startswith("rolloutctl/x.py:4 imports pytest from pytest: declare it")
    assert "rolloutctl/x.py:6 imports pyarrow (through pandas' to_parquet())" in problems[1]
    assert (
        "x.py:8 imports not_a_real_module_anywhere (through import_module()), which no installed"
        " distribution provides" in problems[2]
    )
    assert not undeclared(found[:2], declared(SAMPLE_PYPROJECT, ("test",)), "")
