"""Output that fits the terminal it lands in: in an 80-column CI log the gate's figures are all
there, whole (no `estima…`, no `(91176…`), a metric at a time; on a wide terminal the table;
and no escape sequence in a pipe, under NO_COLOR or with --no-color."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from rolloutctl import formatting as fmt
from tests.conftest import START, Workspace

LOOK = START + timedelta(hours=2)


@pytest.fixture
def started(ws: Workspace) -> Workspace:
    ws.log("hallucination_regression", START, 2, 20, "p1", seed=3, rate=20_000)
    assert ws.run("start", str(ws.playbook), now=START).code == 0
    return ws


def figures(metric: dict[str, Any]) -> list[str]:
    """What a reader needs of one compared metric, formatted as the CLI formats it."""
    kind, rel = metric["kind"], metric["margin_kind"] == "relative"
    return [
        fmt.value(metric["control"]["value"], kind),
        fmt.value(metric["canary"]["value"], kind),
        f"{metric['control']['n']:,}",
        f"{metric['canary']['n']:,}",
        fmt.delta(metric["estimate"], kind, rel),
        fmt.delta(metric["ci"][0], kind, rel),
        fmt.delta(metric["ci"][1], kind, rel),
        fmt.delta(metric["margin"], kind, rel),
    ]


def shown_metrics(ws: Workspace) -> list[dict[str, Any]]:
    r = ws.run("--json", "check", "shop-answers", now=LOOK)
    assert r.code == 10, r.err
    metrics = r.json()["metrics"]
    return [m for m in metrics if m["segment"] is None or m["verdict"] == "fail"]


@pytest.mark.parametrize("columns", [80, 60])
def test_at_80_columns_every_figure_of_the_gate_is_whole(started: Workspace, columns: int) -> None:
    r = started.run("check", "shop-answers", now=LOOK, env={"COLUMNS": str(columns)})
    assert r.code == 10, r.err
    assert "…" not in r.out
    table_lines = r.out.split("gate fail")[0].splitlines()
    assert all(len(line) <= columns for line in table_lines), max(table_lines, key=len)
    metrics = shown_metrics(started)
    assert any(m["segment"] for m in metrics)  # a failed segment is shown too
    for metric in metrics:
        block = _block(r.out, metric)
        for figure in figures(metric):
            assert figure in block, (metric["name"], figure, block)


def _block(out: str, metric: dict[str, Any]) -> str:
    """The lines of one metric in the narrow layout: its head line and the indented lines
    after it."""
    lines = out.splitlines()
    segment = ", ".join(f"{k}={v}" for k, v in (metric["segment"] or {}).items())
    for i, line in enumerate(lines):
        head = line.startswith(metric["title"]) and line.rstrip().endswith(
            metric["verdict"].upper()
        )
        if head and (segment in line if segment else "·" not in line):
            end = i + 1
            while end < len(lines) and lines[end].startswith("  "):
                end += 1
            return "\n".join(lines[i:end])
    raise AssertionError(f"no block for {metric['name']} {segment} in:\n{out}")


def test_a_wide_terminal_gets_the_table_with_the_same_figures(started: Workspace) -> None:
    r = started.run("check", "shop-answers", now=LOOK, env={"COLUMNS": "200"})
    assert r.code == 10, r.err
    assert "┃ metric" in r.out and "…" not in r.out
    for metric in shown_metrics(started):
        row = next(
            line
            for line in r.out.splitlines()
            if line.startswith(f"│ {metric['title']}")
            and (not metric["segment"] or "=" in line)
            and (metric["segment"] or "=" not in line)
        )
        for figure in figures(metric):
            assert figure in row, (metric["name"], figure, row)


COLOUR = {"FORCE_COLOR": "1", "TERM": "xterm-256color", "NO_COLOR": None}


@pytest.mark.parametrize(
    ("flag", "env"),
    [
        ([], {**COLOUR, "NO_COLOR": "1"}),  # NO_COLOR wins over a forced terminal
        (["--no-color"], COLOUR),
        ([], {"FORCE_COLOR": None, "NO_COLOR": None}),  # a pipe
    ],
    ids=["NO_COLOR", "--no-color", "pipe"],
)
def test_no_escape_sequences_under_no_color_or_no_color_flag(
    started: Workspace, flag: list[str], env: dict[str, str | None]
) -> None:
    r = started.run(*flag, "check", "shop-answers", now=LOOK, env={"COLUMNS": "200", **env})
    assert r.code == 10, r.err
    assert "\x1b[" not in r.out, repr(r.out[:300])
    coloured = started.run("check", "shop-answers", now=LOOK, env=COLOUR)
    assert "\x1b[" in coloured.out  # the check above could fail: colour does reach a terminal


def _stderr_on_a_terminal(ws: Workspace, *args: str) -> tuple[int, str, str]:
    """Run the CLI with stderr on a pseudo-terminal (stdout piped, as in `cmd > out`)."""
    import os
    import pty
    import subprocess
    import sys

    from tests.conftest import cli_env

    master, slave = pty.openpty()
    env = {**cli_env(ws.root), "ROLLOUTCTL_NOW": LOOK.isoformat(), "TERM": "xterm"}
    env.pop("CI", None)
    out_file = ws.root / "stdout.txt"
    with out_file.open("w") as out_sink:  # a file, not a pipe: the child never blocks on it
        proc = subprocess.Popen(
            [sys.executable, "-m", "rolloutctl", *args],
            stdout=out_sink,
            stderr=slave,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=ws.root,
        )
        os.close(slave)
        seen = b""
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            seen += chunk
        os.close(master)
        code = proc.wait(120)
    out = out_file.read_text()
    return code, out, seen.decode(errors="replace")


def test_progress_shows_on_a_terminal_and_never_in_json_or_the_output(started: Workspace) -> None:
    code, out, terminal = _stderr_on_a_terminal(started, "check", "shop-answers")
    assert code == 10
    assert (
        "source requests: " in terminal
    )  # a step being worked on (rich redraws ~12 times a second)
    assert "source requests" not in out and "\x1b" not in out  # stdout is a pipe: plain
    code, out, terminal = _stderr_on_a_terminal(started, "--json", "check", "shop-answers")
    assert code == 10 and out.startswith("{")
    assert "source requests" not in terminal
