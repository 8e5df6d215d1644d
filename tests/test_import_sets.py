"""Each command imports what it uses (the fast paths have their own test in
tests/cli/test_rollout.py): validate, schema and init never load the analysis stack; plan
reads a log with DuckDB but draws nothing; a gate decides without jinja2 or pandas,
which only the report drawn after the verdict loads, and imports scipy only for a statistic
that needs it."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta

import pytest

from tests.conftest import START, Workspace, cli_env

ANALYSIS = {"pandas", "scipy", "duckdb", "numpy", "jinja2", "httpx", "pyarrow"}


def imported(ws: Workspace, *argv: str) -> set[str]:
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "rolloutctl", *argv],
        capture_output=True,
        text=True,
        env=cli_env(ws.root),
        cwd=ws.root,
        timeout=120,
    )
    assert proc.returncode == 0, (argv, proc.stderr[-2000:])
    return {
        line.split("|")[-1].strip().split(".")[0]
        for line in proc.stderr.splitlines()
        if line.startswith("import time:")
    }


@pytest.mark.parametrize(
    "argv",
    [
        ["validate", "rollout.yaml"],
        ["schema"],
        ["schema", "--output", "gate-result"],
        ["init", "new"],
    ],
    ids=" ".join,
)
def test_playbook_commands_load_no_analysis_stack(ws: Workspace, argv: list[str]) -> None:
    found = imported(ws, *argv)
    assert "rolloutctl" in found and not found & ANALYSIS, found & ANALYSIS


def test_validate_runs_without_the_cli_framework(ws: Workspace) -> None:
    """CI validates on every commit: the fast path parses it (no typer, click or rich)."""
    found = imported(ws, "validate", "rollout.yaml", "--json")
    assert "yaml" in found and not found & {"typer", "click", "rich"}, found


def test_plan_before_any_traffic_loads_no_query_engine(ws: Workspace) -> None:
    """A playbook whose request log has no file yet: the plan says so without DuckDB."""
    found = imported(ws, "plan", "rollout.yaml")
    assert not found & {"duckdb", "numpy", "pandas", "scipy", "jinja2"}, found


def test_plan_reads_the_log_and_draws_nothing(ws: Workspace) -> None:
    ws.log("healthy", START, 2, 20, "p1", rate=5_000)
    found = imported(ws, "plan", "rollout.yaml")
    assert "duckdb" in found  # the control's statistics come from the log
    assert not found & {"pandas", "scipy", "jinja2"}, found


GATE = """
import sys
from datetime import datetime, timedelta
from rolloutctl import engine
from rolloutctl.context import Context
from rolloutctl.state.registry import open_store
queued = []
ctx = Context(open_store(sys.argv[1]), "tester", __import__("pathlib").Path(sys.argv[2]),
              clock=lambda: datetime.fromisoformat(sys.argv[3]), deferred=queued)
outcome = engine.check(ctx, "shop-answers")
assert outcome.gate is not None and len(queued) == 1
print(" ".join(sorted(m for m in sys.modules if "." not in m)))
"""


def test_a_gate_decides_without_scipy_jinja2_or_pandas(ws: Workspace) -> None:
    ws.log("healthy", START, 2, 20, "p1", rate=5_000)
    assert ws.run("start", str(ws.playbook), now=START).code == 0
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            GATE,
            str(ws.root / "state"),
            str(ws.root / "reports"),
            (START + timedelta(hours=2)).isoformat(),
        ],
        capture_output=True,
        text=True,
        cwd=ws.root,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    loaded = set(proc.stdout.split())
    assert "duckdb" in loaded  # a request-log source is in play
    drawing = {"jinja2", "pandas"}
    assert not loaded & drawing, loaded & drawing


def test_scipy_is_loaded_only_by_a_statistic_that_needs_it() -> None:
    """The gate's modules import no scipy; the rare-event test (stats.exact) and the
    fixed-horizon tests load it when they compute."""
    code = (
        "import sys; import rolloutctl.gate, rolloutctl.stats.compare, rolloutctl.stages.registry;"
        "print('scipy' in sys.modules)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == "False", proc.stderr


RARE = """
import sys
from rolloutctl.stats import compare
from rolloutctl.stats.sufficient import Proportion
control, canary = Proportion(72_969, 34), Proportion(3_818, 18)
margin = compare.MarginSpec(float(sys.argv[1]), sys.argv[2] == "relative")
result = compare.compare_rare_events(control, canary, margin, "higher", 0.002)
print(result.verdict, "scipy" in sys.modules)
"""


@pytest.mark.parametrize(
    ("margin", "kind", "loads_scipy"), [("0.0005", "absolute", False), ("0.5", "relative", True)]
)
def test_a_rare_event_against_an_absolute_margin_needs_no_scipy(
    margin: str, kind: str, loads_scipy: bool
) -> None:
    """Safety metrics are rare events with absolute margins: their test (a Beta mixture
    against the null's maximum) is computed with the standard library; a relative margin's
    conditional test needs scipy's incomplete Beta function."""
    proc = subprocess.run(
        [sys.executable, "-c", RARE, margin, kind], capture_output=True, text=True, timeout=60
    )
    verdict, loaded = proc.stdout.split()
    assert verdict in ("fail", "pass", "inconclusive") and loaded == str(loads_scipy), proc.stderr
