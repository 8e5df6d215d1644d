"""One grammar for the hand-parsed fast path and the typer app: the same argument lists go
through `rolloutctl` as installed (the fast path when it applies) and through the typer app
alone, and must end alike — a usage error (exit 2) in both or in neither. The fast path must
also take every well-formed on-call invocation (and only those), or it would not be fast."""

from __future__ import annotations

from pathlib import Path

import pytest

from rolloutctl.cli import entry

USAGE, RAN = "usage error", "ran"
# (arguments, how both end, whether the fast path takes it). "nope" is no rollout: a command
# that runs ends with exit 5, so only the parsing differs between the cases.
CASES: list[tuple[list[str], str, bool]] = [
    (["status"], RAN, True),
    (["status", "nope"], RAN, True),
    (["status", "nope", "-v"], RAN, True),  # it used to run here and fail in `history`
    (["history", "nope", "-v"], RAN, False),
    (["-v", "status", "nope"], RAN, True),
    (["--verbose", "history", "nope"], RAN, False),
    (["status", "-vv"], RAN, True),  # -v, -vv, --verbose, -q and --no-color move
    (["-vv", "status"], RAN, True),
    (["status", "-vvv"], USAGE, False),  # a longer cluster is typer's to refuse
    (["-q", "status", "nope"], RAN, True),
    (["status", "--quiet", "--no-color"], RAN, True),
    (["pause", "nope", "--no-color", "--reason", "r", "-q"], RAN, True),
    (["--json", "status"], RAN, True),
    (["status", "--json"], RAN, True),
    (["status", "nope", "--json", "-v"], RAN, True),
    (["rollback", "nope", "--reason", "r"], RAN, True),
    (["rollback", "--reason", "r", "nope"], RAN, True),
    (["rollback", "nope", "--json", "--reason=r"], RAN, True),
    (["--json", "rollback", "nope", "--reason", "r"], RAN, True),
    (["rollback", "nope", "--reason", "-x"], RAN, True),  # the next argument is the value
    (["rollback", "nope", "--reason", "--"], RAN, False),  # argparse cannot; typer runs it
    (["rollback", "nope", "--reason=--json"], RAN, True),
    (["rollback", "nope", "--reason", "--json"], USAGE, False),  # --json moves: no value left
    (["rollback", "nope"], USAGE, True),  # missing --reason: the command says so (exit 2)
    (["rollback", "nope", "--reason", ""], USAGE, True),
    (["rollback", "nope", "--reason"], USAGE, False),
    (["rollback"], USAGE, False),
    (["rollback", "a", "b", "--reason", "r"], USAGE, False),
    (["rollback", "nope", "--reasn", "r"], USAGE, False),
    (["rollback", "nope", "--rea", "r"], USAGE, False),  # no abbreviations
    (["rollback", "nope", "--reason", "r", "--force"], USAGE, False),
    (["rollback", "nope", "--reason", "r", "--state-dir", "x"], USAGE, False),  # global: first
    (["rollback", "--", "nope", "--reason", "r"], USAGE, False),
    (["pause", "nope", "--reason", "r", "-v"], RAN, True),
    (["resume", "nope", "--verbose", "--reason", "r"], RAN, True),
    (["pause", "-1", "--reason", "r"], USAGE, False),
    (["status", "--reason", "r"], USAGE, False),
    (["status", "a", "b"], USAGE, False),
    (["status", "--bogus"], USAGE, False),
    (["--bogus", "status"], USAGE, False),
    (["-h", "status"], USAGE, False),
    (["status", "--help"], RAN, False),
    (["--help"], RAN, False),
    (["--state-dir", "{state}", "status"], RAN, True),
    (["--state-dir={state}", "--actor", "me", "status", "nope"], RAN, True),
    (["--actor", "-v", "status"], USAGE, False),  # -v moves: `status` is the actor
    (["--wait", "abc", "status"], USAGE, False),
    (["--wait", "-1", "status"], RAN, True),
    (["--wait=2.5", "rollback", "nope", "--reason", "r"], RAN, True),
    (["--now", "garbage", "status"], USAGE, True),  # both parse it the same way, then refuse
    (["--now", "2026-03-02T09:00:00Z", "status"], RAN, True),
    (["--state-dir"], USAGE, False),
    (["control", "list", "nope"], RAN, True),
    (["control", "list", "--json", "nope"], RAN, True),
    (["control", "-v", "list", "nope"], RAN, True),
    (["control", "list", "nope", "--reason", "r"], USAGE, False),
    (["control", "list"], USAGE, False),
    (["control", "apply", "nope", "kill", "--reason", "r"], RAN, True),
    (["control", "apply", "nope", "kill"], USAGE, True),
    (["control", "apply", "nope", "kill", "--force", "--reason", "r"], USAGE, False),
    (["control", "revert", "nope", "kill", "--force", "--reason", "r"], RAN, True),
    (["control", "revert", "nope"], USAGE, False),
    (["control", "undo", "nope", "kill"], USAGE, False),
    (["validate", "nope.yaml"], RAN, True),  # ends with exit 3: no such file
    (["validate", "a.yaml", "b.yaml", "--json"], RAN, True),
    (["-q", "validate", "nope.yaml"], RAN, True),
    (["validate"], USAGE, False),
    (["validate", "nope.yaml", "--strict"], USAGE, False),
    (["validate", "--help"], RAN, False),
    (["advance", "nope"], RAN, False),
    (["advance", "status"], RAN, False),
    (["bogus"], USAGE, False),
]


def ending(code: int) -> str:
    return USAGE if code == 2 else RAN


@pytest.mark.parametrize(
    ("argv", "expected", "fast"), CASES, ids=[" ".join(argv) or "(none)" for argv, _, _ in CASES]
)
def test_the_fast_path_and_typer_read_one_grammar(
    argv: list[str],
    expected: str,
    fast: bool,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("ROLLOUTCTL_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("ROLLOUTCTL_REPORTS_DIR", str(tmp_path / "reports"))
    monkeypatch.delenv("ROLLOUTCTL_NOW", raising=False)
    argv = [arg.replace("{state}", str(tmp_path / "other")) for arg in argv]

    installed = entry.main(list(argv))
    said = capsys.readouterr()
    typer_only = entry.run_full(entry.normalize(list(argv)))
    typer_said = capsys.readouterr()

    assert ending(installed) == ending(typer_only) == expected, (
        installed,
        typer_only,
        said.err,
        typer_said.err,
    )
    assert (entry.parse_fast(entry.normalize(list(argv))) is not None) == fast
    if expected == USAGE:
        assert "Traceback" not in said.err + typer_said.err
        assert said.err.strip()  # the usage error is explained


def test_a_parser_usage_error_is_shown_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    """Click's exceptions are caught by type: the message and usage line are shown."""
    assert entry.run_full(["pause", "nope", "--reasn", "x"]) == 2
    err = capsys.readouterr().err
    assert "No such option: --reasn" in err and "Usage: rolloutctl pause" in err


def test_normalize_moves_json_and_verbose_before_the_command_up_to_a_double_dash() -> None:
    argv = ["rollback", "x", "--json", "--reason", "r", "-v", "--", "--json"]
    assert entry.normalize(argv) == [
        "--json",
        "-v",
        "rollback",
        "x",
        "--reason",
        "r",
        "--",
        "--json",
    ]
