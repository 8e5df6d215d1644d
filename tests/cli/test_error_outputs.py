"""Error exits under `--json`, `--markdown` and `--junit`: a CI step that redirects stdout to
gate.json, or uploads gate.md / gate-junit.xml, finds an error summary, never an empty or
missing file."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import timedelta

import pytest

from tests.conftest import START, Workspace


@pytest.mark.parametrize(
    "args",
    [
        ("status", "nosuch"),  # the fast path
        ("rollback", "nosuch", "--reason", "x"),  # the fast path
        ("check", "nosuch"),  # the typer app
        ("advance", "nosuch"),
    ],
)
def test_json_error_is_one_object_on_stdout(ws: Workspace, args: tuple[str, ...]) -> None:
    r = ws.run("--json", *args)
    assert r.code == 5, r.out + r.err
    data = r.json()
    assert set(data) == {"error", "hint", "exit_code"}
    assert data["exit_code"] == 5 and "nosuch" in data["error"]
    assert "error:" in r.err  # the text stays on stderr


def test_json_usage_error_is_one_object_on_stdout(ws: Workspace) -> None:
    r = ws.run("check", "--json", "--no-such-option")
    assert r.code == 2
    assert r.json()["exit_code"] == 2


def test_json_error_after_the_playbook_is_unreadable(ws: Workspace) -> None:
    ws.playbook.write_text("rollout: [")
    r = ws.run("start", str(ws.playbook), "--json")
    assert r.code == 3 and r.json()["exit_code"] == 3


def test_ci_files_hold_an_error_summary_after_an_input_error(ws: Workspace) -> None:
    ws.log("healthy", START, 1, 20, "p1")
    assert ws.run("start", str(ws.playbook), now=START).code == 0
    (ws.root / "data" / "p1.parquet").write_text("not parquet")  # an unreadable request log
    md, junit = ws.root / "gate.md", ws.root / "gate-junit.xml"
    r = ws.run(
        "--json",
        "advance",
        "shop-answers",
        "--markdown",
        str(md),
        "--junit",
        str(junit),
        now=START + timedelta(hours=3),
    )
    assert r.code == 3, r.out + r.err
    assert r.json()["exit_code"] == r.code
    assert f"error (exit {r.code})" in md.read_text()
    root = ET.fromstring(junit.read_text())
    assert root.get("errors") == "1"
    (error,) = root.iter("error")
    assert error.get("type") == f"exit {r.code}" and error.get("message")


def test_ci_files_hold_an_error_summary_for_an_unknown_rollout(ws: Workspace) -> None:
    md, junit = ws.root / "m.md", ws.root / "j.xml"
    r = ws.run("check", "nosuch", "--markdown", str(md), "--junit", str(junit))
    assert r.code == 5
    assert "nosuch" in md.read_text()
    assert ET.fromstring(junit.read_text()).get("errors") == "1"
