"""Load time of a large gate report (50 metrics x 20 segments) in headless Chromium, and its
size: navigation start to the load event, from the browser's Navigation Timing, median of
five loads. Prints figures; asserts nothing. Needs Debian's chromium (`bash tests/run.sh`
installs it) and the test extras (playwright)."""

from __future__ import annotations

import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.conftest import make_workspace
from tests.report.browser import ReportBrowser
from tests.report.test_browser import fifty_by_twenty_report


def main(loads: int = 5) -> None:
    root = Path(tempfile.mkdtemp(prefix="bench-report-"))
    report, _, _ = fifty_by_twenty_report(make_workspace(root))
    browser = ReportBrowser()
    try:
        times = [browser.render(report, root / f"shot-{i}.png").load_ms for i in range(loads)]
    finally:
        browser.close()
    print(f"gate report 50 metrics x 20 segments: {report.stat().st_size / 1e6:.2f} MB")
    print(
        f"load in Chromium: median {statistics.median(times):.0f} ms "
        f"(min {min(times):.0f}, max {max(times):.0f}, {loads} loads)"
    )


if __name__ == "__main__":
    main()
