"""A shadow-first `start` writes the flag with no split, as README's stage table says: a split
left in the flag file from earlier must not serve an unvetted candidate while its shadow
stage runs."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.cli.test_shadow_stage import STAGES
from tests.conftest import PLAYBOOK, START, Workspace

README = Path(__file__).resolve().parents[2] / "README.md"


def test_shadow_first_start_removes_a_leftover_split(ws: Workspace) -> None:
    head, _, tail = PLAYBOOK.partition("stages:\n")
    ws.playbook.write_text(head + STAGES + tail[tail.index("triggers:") :])
    (ws.root / "flags").mkdir()
    leftover = {
        "state": "ENABLED",
        "variants": {"v1": "v1", "v2": "v2"},
        "defaultVariant": "v1",
        "targeting": {"fractional": [["v1", 50000], ["v2", 50000]]},
    }
    (ws.root / "flags" / "flags.json").write_text(json.dumps({"flags": {"answer-model": leftover}}))
    r = ws.run("start", str(ws.playbook), now=START)
    assert r.code == 0, r.out + r.err
    assert ws.state()["stage"] == "shadow" and ws.state()["canary_percent"] == 0
    assert ws.flag["defaultVariant"] == "v1" and ws.flag.get("targeting") is None
    row = next(line for line in README.read_text().splitlines() if line.startswith("| `shadow`"))
    assert "not touched" not in row and re.search(r"`start` writes the flag", row)
