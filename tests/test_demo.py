"""The demo ends as README promises: v2 reaches 100%, v3 is rolled back at a canary stage."""

from __future__ import annotations

from pathlib import Path

from rolloutctl.demo import run_demo


def test_demo_rollouts_end_as_described(tmp_path: Path) -> None:
    healthy, unsafe = run_demo(tmp_path / "work", tmp_path / "reports")
    assert (healthy.status, healthy.stage) == ("completed", "full")
    assert unsafe.status == "rolled_back" and unsafe.stage.startswith("canary")
    assert unsafe.report and "health" in Path(unsafe.report).read_text()
    assert (tmp_path / "reports" / "index.html").exists()
