"""Drawing a gate report's charts: 10 metrics over 24 looks (the values per arm, and the
estimate with its interval against the margin), one latency distribution, and the rollout's
traffic steps; the time to import the chart module in a fresh process, the time to draw
them all, and their size. Prints figures; asserts nothing.

    python benchmarks/bench_charts.py
"""

from __future__ import annotations

import math
import random
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any


def series(seed: int, looks: int = 24) -> list[dict[str, Any]]:
    """Cumulative looks as the report's evidence holds them: a shrinking interval."""
    rng = random.Random(seed)
    start = datetime(2026, 3, 2, 9, tzinfo=UTC)
    points = []
    for i in range(1, looks + 1):
        width = 0.02 / math.sqrt(i)
        estimate = rng.gauss(0.002, width / 3)
        points.append(
            {
                "time": (start + timedelta(hours=i)).isoformat(),
                "control": 0.05 + rng.gauss(0, 0.002),
                "canary": 0.052 + rng.gauss(0, 0.002),
                "estimate": estimate,
                "ci_low": estimate - width,
                "ci_high": estimate + width,
                "margin": 0.01,
            }
        )
    return points


def latency(seed: int, n: int = 200_000) -> dict[int, int]:
    """Log-bucket counts of a log-normal latency, as the histogram statistic keeps them."""
    from rolloutctl.stats.sufficient import LOG_GAMMA

    rng = random.Random(seed)
    counts: dict[int, int] = {}
    for _ in range(n):
        b = math.floor(math.log(rng.lognormvariate(7.0, 0.5)) / LOG_GAMMA)
        counts[b] = counts.get(b, 0) + 1
    return counts


def draw_all() -> tuple[float, int]:
    from rolloutctl.report import charts
    from rolloutctl.stats.sufficient import GAMMA

    inputs = [series(seed) for seed in range(10)]
    control, canary = latency(1), latency(2)
    steps = [
        ((datetime(2026, 3, 2, tzinfo=UTC) + timedelta(hours=h)).isoformat(), p, f"stage-{h}")
        for h, p in enumerate((1, 5, 10, 25, 50, 100))
    ]
    started = time.perf_counter()
    svgs = [
        charts.metric_over_time(f"ts{i}", f"metric {i}", points, percent=True, relative=False)
        for i, points in enumerate(inputs)
    ]
    svgs.append(charts.distributions("dlatency", "p95 latency ms", control, canary, GAMMA))
    svgs.append(charts.traffic("traffic", steps))
    return time.perf_counter() - started, sum(len(s) for s in svgs)


def main() -> None:
    if sys.argv[1:] == ["--child"]:
        started = time.perf_counter()
        from rolloutctl.report import charts  # noqa: F401

        imported = time.perf_counter() - started
        first, size = draw_all()
        again = [draw_all()[0] for _ in range(3)]
        print(f"{imported} {first} {statistics.median(again)} {size}")
        return
    runs = [
        subprocess.run(
            [sys.executable, __file__, "--child"], capture_output=True, text=True, check=True
        ).stdout.split()
        for _ in range(3)
    ]
    imported, first, again, size = (statistics.median(float(r[i]) for r in runs) for i in range(4))
    print(
        f"12 charts (10 metrics x 24 looks, a distribution, traffic), median of 3 processes:\n"
        f"  import of the chart module: {imported * 1000:.0f} ms\n"
        f"  first drawing of all 12: {first * 1000:.0f} ms; again in the same process: "
        f"{again * 1000:.0f} ms\n"
        f"  SVG: {size / 1024:.0f} KiB in all"
    )


if __name__ == "__main__":
    main()
