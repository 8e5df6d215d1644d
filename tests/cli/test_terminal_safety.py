"""What the CLI prints never carries control characters or rich markup from data: a segment
value in a request log and a control's title in a playbook are printed as plain text (escape
sequences removed, markup shown literally), while `--json` keeps them exactly, as data."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from typing import Any

import pytest

from rolloutctl import simulate
from rolloutctl.cli import common, terminal
from tests.conftest import START, Workspace, cli_env

# set the window title, then clear the screen; then markup rich would otherwise apply
HOSTILE = "\x1b]0;pwned\x07\x1b[2Jgeneral[bold]x[/bold][link=https://example.com]y[/link]"
SHOWN = "general[bold]x[/bold][link=https://example.com]y[/link]"
CONTROL_TITLE = "Stop \x1b[2J\x1b]0;pwned\x1b\\health answers\x9b31m [red]now[/red]"


def run(ws: Workspace, *args: str) -> subprocess.CompletedProcess[str]:
    """The real CLI, with a wide terminal so rich never wraps a table cell."""
    env = {**cli_env(ws.root, ws.store_spec), "COLUMNS": "400"}
    return subprocess.run(
        [sys.executable, "-m", "rolloutctl", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ws.root,
        timeout=120,
    )


def assert_terminal_safe(text: str) -> None:
    controls = sorted(
        {c for c in text if (ord(c) < 32 and c not in "\t\n") or 0x7F <= ord(c) < 0xA0}
    )
    assert not controls, f"control characters reached the terminal: {controls!r}"
    assert "pwned" not in text  # the escape sequence went with its payload


def test_a_hostile_segment_value_prints_as_text_and_stays_data_in_json(ws: Workspace) -> None:
    assert ws.run("start", str(ws.playbook), now=START).code == 0
    frame = simulate.generate(
        "hallucination_regression",
        START,
        START + timedelta(hours=2),
        requests_per_hour=30_000,
        canary_percent=20,
        seed=4,
    )
    frame["category"] = frame["category"].replace("general", HOSTILE)  # a failing segment
    simulate.write(frame, ws.root / "data" / "p1.parquet")
    now = (START + timedelta(hours=2)).isoformat()

    text = run(ws, "--now", now, "check", "shop-answers")
    assert text.returncode == 10, text.stdout + text.stderr
    assert_terminal_safe(text.stdout + text.stderr)
    assert f"category={SHOWN}" in text.stdout  # the failing segment's row, markup literal

    data = json.loads(run(ws, "--now", now, "--json", "check", "shop-answers").stdout)
    segments = [m["segment"] for m in data["metrics"] if m["verdict"] == "fail" and m["segment"]]
    assert {"category": HOSTILE} in segments  # JSON keeps the value exactly


def test_a_hostile_control_title_prints_as_text(ws: Workspace) -> None:
    title = json.dumps(CONTROL_TITLE)  # a YAML double-quoted string: \u001b is ESC
    ws.playbook.write_text(
        ws.playbook.read_text()
        + "controls:\n"
        + f"  - {{name: health-off, layer: scenario, title: {title}, "
        + "set: {ai-answers-health: false}}\n"
    )
    assert ws.run("start", str(ws.playbook), now=START).code == 0

    listed = run(ws, "control", "list", "shop-answers")  # the fast path: no rich
    assert listed.returncode == 0, listed.stderr
    assert_terminal_safe(listed.stdout + listed.stderr)
    assert "Stop health answers31m [red]now[/red]" in listed.stdout

    applied = run(ws, "control", "apply", "shop-answers", "health-off", "--reason", "\x1b[2Jsee")
    assert applied.returncode == 0, applied.stderr
    assert_terminal_safe(applied.stdout + applied.stderr)

    data = json.loads(run(ws, "--json", "control", "list", "shop-answers").stdout)
    assert data["controls"][0]["title"] == CONTROL_TITLE


def test_an_error_message_or_a_warning_carrying_escapes_is_cleaned(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from rolloutctl.errors import InvalidInput

    code = common.report_error(InvalidInput("bad \x1b[2Jvalue\r", hint="\x07fix"), verbose=False)
    common.warn("segment \x1b]8;;https://evil\x1b\\link\x1b]8;;\x1b\\ seen")
    common.say("tab\tand\nnewline stay; \x00\x08\x0b\x0c\x7f\x85 go")
    out, err = capsys.readouterr()
    assert code == 3
    assert err == "error: bad value\nhint: fix\nwarning: segment link seen\n"
    assert out == "tab\tand\nnewline stay;  go\n"


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("\x1b[31mred\x1b[0m", "red"),  # CSI colours
        ("a\x1b[2J\x1b[Hb", "ab"),  # clear screen, cursor home
        ("\x1b]0;title\x07after", "after"),  # OSC ended by BEL
        ("\x1b]0;title\x1b\\after", "after"),  # OSC ended by ST
        ("\x1bP1;2|data\x1b\\after", "after"),  # DCS string
        ("\x1bcreset", "reset"),  # RIS (reset the terminal)
        ("\x1b(Bascii", "ascii"),  # charset switch
        ("\x9b31mC1", "31mC1"),  # the 8-bit CSI goes; its parameters stay as harmless text
        ("cut at the end \x1b", "cut at the end "),
        ("ünïcödé ✓ stays", "ünïcödé ✓ stays"),
    ],
)
def test_clean_removes_escape_sequences_and_control_characters(raw: str, shown: str) -> None:
    assert terminal.clean(raw) == shown


def test_the_gate_table_shows_markup_in_data_literally(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from rolloutctl.cli.render import print_gate

    monkeypatch.setenv("COLUMNS", "400")  # no wrapping inside a cell

    row: dict[str, Any] = {
        "segment": {"category": "[bold]x[/bold]"},
        "verdict": "fail",
        "kind": "check",
        "title": "[link=https://evil]click[/link] :warning:",
        "note": "\x1b[2Jwhy [i]",
    }
    gate = _Namespace(
        rollout="r\x1b]0;t\x07",
        stage="[red]s[/red]",
        elapsed="1h",
        metrics=[_Namespace(**row)],
        verdict="fail",
        decision="rollback",
        reasons=["seg [bold]x[/bold] \x1b[2J:warning:"],
        srm=None,
        report="reports/[x].html",
    )
    print_gate(gate)
    out = capsys.readouterr().out
    assert_terminal_safe(out)
    for literal in (
        "[bold]x[/bold]",
        "[link=https://evil]click[/link] :warning:",
        "why [i]",
        "[red]s[/red]",
        "seg [bold]x[/bold] :warning:",
        "reports/[x].html",
    ):
        assert literal in out


class _Namespace:
    def __init__(self, **fields: Any) -> None:
        self.__dict__.update(fields)


def test_json_output_escapes_control_characters(capsys: pytest.CaptureFixture[str]) -> None:
    common.emit_json({"value": HOSTILE})
    out = capsys.readouterr().out
    assert out.isascii() and out.replace("\n", "").isprintable()  # escaped, as data
    assert json.loads(out) == {"value": HOSTILE}
