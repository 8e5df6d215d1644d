"""The demo ends as README promises: v2 walks every stage kind to the end of its post-launch
monitor; v3 is rolled back in the shadow stage. And every gate it records is the one the
reviewed copy holds (tests/data/demo_golden.json), so a change meant to preserve behaviour
(a refactoring) is shown to: the verdict, decision and reasons of each gate in full, and a
digest of the whole gate result (every row's numbers to 6 significant digits; the SQL text,
the local endpoint's port, measured latencies and the reports' folder left out). A change of behaviour that is
meant rewrites the copy: `python -m tests.test_demo`, then review its diff."""

from __future__ import annotations

import hashlib
import json
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from rolloutctl import schemas
from rolloutctl.demo import DemoRun, run_demo
from tests.golden import differences

GOLDEN = Path(__file__).parent / "data" / "demo_golden.json"

_PORT = re.compile(r"127\.0\.0\.1:\d+")
_MEASURED = {"reachable", "timeout_honoured", "latency"}  # smoke checks that measure time


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return float(f"{value:.6g}")
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    if isinstance(value, str):
        return _PORT.sub("127.0.0.1:PORT", value)
    return value


def _stable_row(row: dict[str, Any]) -> dict[str, Any]:
    row = {k: v for k, v in row.items() if k != "query"}  # SQL names the temporary folder
    if row["group"] == "smoke" and row["name"] in _MEASURED:
        row = {**row, "note": None, "canary": {**row["canary"], "value": None}}
    return row


def summary(state_dir: Path) -> dict[str, Any]:
    """Per rollout, per recorded gate (by file name): verdict, decision, reasons, digest."""
    out: dict[str, Any] = {}
    for record in sorted(state_dir.glob("*/gates/*.json")):
        gate = json.loads(record.read_text())["gate"]
        rows = sorted(gate["metrics"], key=lambda r: (r["name"], json.dumps(r["segment"])))
        report = Path(gate["report"]) if gate.get("report") else None  # under a temporary folder
        where = report and f"{report.parent.name}/{report.name}"
        stable = _rounded({**gate, "report": where, "metrics": [_stable_row(r) for r in rows]})
        text = json.dumps(stable, sort_keys=True)
        out.setdefault(record.parts[-3], {})[record.stem] = {
            "verdict": gate["verdict"],
            "decision": gate.get("decision"),
            "reasons": [_PORT.sub("127.0.0.1:PORT", r) for r in gate["reasons"]],
            "rows": len(gate["metrics"]),
            "digest": hashlib.sha256(text.encode()).hexdigest()[:16],
        }
    return out


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[DemoRun, DemoRun, Path, Path]:
    root = tmp_path_factory.mktemp("demo")
    healthy, unsafe = run_demo(root / "work", root / "reports")
    return healthy, unsafe, root / "work", root / "reports"


def test_demo_rollouts_end_as_described(demo: tuple[DemoRun, DemoRun, Path, Path]) -> None:
    healthy, unsafe, _, reports = demo
    assert (healthy.status, healthy.stage) == ("completed", "monitor")
    walked = " ".join(healthy.steps)
    assert "smoke 0%: gate passed: advanced to offline-eval" in healthy.steps[0]
    for stage in ("shadow", "canary-1", "ramp-50", "ab-test", "full", "monitor"):
        assert f"advanced to {stage}" in walked, stage
    assert "rollout completed" in healthy.steps[-1]
    # The safety regression in health questions is caught before any user sees v3.
    assert (unsafe.status, unsafe.stage) == ("rolled_back", "shadow")
    assert unsafe.report and "category health" in Path(unsafe.report).read_text()
    assert (reports / "index.html").exists()


def test_every_gate_the_demo_records_is_the_reviewed_one(
    demo: tuple[DemoRun, DemoRun, Path, Path],
) -> None:
    got = summary(demo[2] / "state")
    want = json.loads(GOLDEN.read_text())
    assert got.keys() == want.keys()
    for rollout in want:
        assert got[rollout].keys() == want[rollout].keys(), rollout
    problems = differences(got, want, "demo")
    assert not problems, "\n".join(problems[:20]) + "\nregenerate: python -m tests.test_demo"


def test_every_gate_the_demo_records_matches_the_published_schema(
    demo: tuple[DemoRun, DemoRun, Path, Path],
) -> None:
    """Every stage kind's gate (smoke to monitor) is a `gate-result` document."""
    validator = schemas.adapter("gate-result")
    records = sorted((demo[2] / "state").glob("*/gates/*.json"))
    assert len(records) == 32
    for record in records:
        validator.validate_python(json.loads(record.read_text())["gate"])
    ran = {"workdir": str(demo[2]), "rollouts": [run.to_json() for run in demo[:2]]}
    schemas.adapter("demo").validate_python(ran)  # what `demo --json` prints


def _rewrite() -> None:
    with tempfile.TemporaryDirectory() as root:
        run_demo(Path(root) / "work", Path(root) / "reports")
        data = summary(Path(root) / "work" / "state")
    GOLDEN.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    print(f"wrote {GOLDEN} ({sum(len(v) for v in data.values())} gates)", file=sys.stderr)


if __name__ == "__main__":
    _rewrite()
