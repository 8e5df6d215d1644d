"""Text output: whatever a playbook or a log says is shown literally, never as rich markup."""

from __future__ import annotations

from rich.console import Console

from rolloutctl.cli.render import gate_table
from rolloutctl.stages.base import StageLook, result, row
from tests.conftest import START


class _Loaded:
    """Just enough of a loaded playbook for stages.base.result()."""

    def __init__(self) -> None:
        from rolloutctl.playbook.model import Playbook

        self.playbook = Playbook.model_validate(
            {
                "rollout": "r",
                "flag": {"key": "k", "control": "a", "canary": "b", "path": "f.json"},
                "sources": {"s": {"kind": "requestlog", "path": "x.jsonl"}},
                "metrics": [
                    {
                        "name": "m",
                        "group": "technical",
                        "source": "s",
                        "kind": "proportion",
                        "event": "e",
                        "worse": "higher",
                        "margin": {"absolute": 0.01},
                    }
                ],
                "stages": [{"name": "c", "traffic": 5}],
            }
        )


def test_brackets_in_titles_segments_and_notes_are_printed_as_text() -> None:
    rows = [
        row(
            "m", "cost [/usd] [bold]", "smoke", "fail", "why [/] [red]x", segment={"tier": "[gold]"}
        ),
        row("m", "latency [ms]", "smoke", "pass", "fine"),
    ]
    look = StageLook(_Loaded(), 0, START, START, "a", "b", lambda: START)  # type: ignore[arg-type]
    gate = result(
        look,
        verdict="fail",  # type: ignore[arg-type]
        reasons=["r"],
        rows=rows,
    )
    console = Console(width=200, record=True)
    console.print(gate_table(gate))
    text = console.export_text()
    for literal in ("cost [/usd] [bold]", "why [/] [red]x", "tier=[gold]", "latency [ms]"):
        assert literal in text, literal
