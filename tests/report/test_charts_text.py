"""Text in charts in any script stays text (the browser picks a font for it), with no warning
on stderr."""

from __future__ import annotations

import subprocess
import sys

DRAW = """
from rolloutctl.report import charts
svg = charts.traffic("k", [("2026-03-02T09:00:00+00:00", 5.0, "健康 \\U0001F600"),
                           ("2026-03-02T10:00:00+00:00", 20.0, "c2")])
assert svg.startswith("<svg") and "健康 \U0001f600" in svg
"""


def test_a_label_in_a_script_the_font_lacks_warns_nobody() -> None:
    run = subprocess.run(
        [sys.executable, "-W", "default", "-c", DRAW], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr
    assert not run.stderr, run.stderr
