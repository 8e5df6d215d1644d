"""The demo ends as README promises: v2 walks every stage kind to the end of its post-launch
monitor; v3 is rolled back in the shadow stage."""

from __future__ import annotations

from pathlib import Path

from rolloutctl.demo import run_demo


def test_demo_rollouts_end_as_described(tmp_path: Path) -> None:
    healthy, unsafe = run_demo(tmp_path / "work", tmp_path / "reports")
    assert (healthy.status, healthy.stage) == ("completed", "monitor")
    walked = " ".join(healthy.steps)
    assert "smoke 0%: gate passed: advanced to offline-eval" in healthy.steps[0]
    for stage in ("shadow", "canary-1", "ramp-50", "ab-test", "full", "monitor"):
        assert f"advanced to {stage}" in walked, stage
    assert "rollout completed" in healthy.steps[-1]
    # The safety regression in health questions is caught before any user sees v3.
    assert (unsafe.status, unsafe.stage) == ("rolled_back", "shadow")
    assert unsafe.report and "category health" in Path(unsafe.report).read_text()
    assert (tmp_path / "reports" / "index.html").exists()
