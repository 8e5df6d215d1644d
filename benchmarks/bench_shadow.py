"""`analyze_shadow` on a large shadow log (default 1,000,000 control requests over two hours,
about 970,000 shadow rows beside them), with the starter playbook's metrics and its three
segment dimensions (language, category, device): wall time and peak memory. Prints figures;
asserts nothing.

    python benchmarks/bench_shadow.py [--requests N] [--log EXISTING.parquet]

Each run is a fresh process, so a figure includes the imports (DuckDB, scipy) as a shadow
gate pays them; the time of `analyze_shadow` itself is printed beside it. Peak memory is read
per child with wait4(). A child's figure includes the memory its parent had when it forked,
so making the log runs in a child too and this parent imports nothing heavy.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

START = datetime(2026, 1, 5, 9, tzinfo=UTC)
HOURS = 2  # the starter playbook's shadow stage lasts at least 2h
RUNS = 3


def make_log(path: Path, requests: int) -> None:
    from rolloutctl import simulate

    frame = simulate.generate_shadow(
        "healthy", START, START + timedelta(hours=HOURS), requests_per_hour=requests / HOURS, seed=1
    )
    simulate.write(frame, path)
    shadow = int(frame.variant.str.startswith("shadow:").sum())
    print(json.dumps({"control": len(frame) - shadow, "shadow": shadow}))


def analyze(log: Path) -> None:
    """One shadow analysis, as the shadow stage runs it: the starter playbook's request-log
    metrics and segment dimensions, the window from the log's first to its last row."""
    from importlib.resources import files

    from rolloutctl.gate import planned_vetoes
    from rolloutctl.metrics.registry import build_source
    from rolloutctl.metrics.requestlog import RequestLogSource
    from rolloutctl.playbook.load import load_playbook
    from rolloutctl.stages.shadow_pairs import analyze_shadow
    from rolloutctl.stats import sequential

    text = files("rolloutctl.playbook").joinpath("starter.yaml").read_text()
    with tempfile.TemporaryDirectory(prefix="bench-shadow-pb-") as folder:
        copy = Path(folder) / "rollout.yaml"
        copy.write_text(text.replace("data/requests/*.parquet", str(log)))
        loaded = load_playbook(copy)
    pb = loaded.playbook
    source = build_source("requests", loaded)
    assert isinstance(source, RequestLogSource)
    window = source.time_range()
    assert window is not None, f"{log}: no dated rows"
    metrics = [m for m in pb.metrics if m.source == "requests"]
    alpha = pb.analysis.alpha

    t = time.perf_counter()
    result = analyze_shadow(
        source,
        start=window[0],
        end=window[1] + timedelta(seconds=1),
        control="v1",
        candidate="v2",
        metrics=metrics,
        dimensions=pb.segments.dimensions,
        alpha=alpha,
        rho2=sequential.tune_rho2(alpha / planned_vetoes(pb, metrics), 20_000),
        min_segment_pairs=pb.analysis.min_samples_per_segment,
    )
    seconds = time.perf_counter() - t
    print(
        json.dumps(
            {
                "seconds": seconds,
                "verdict": result.verdict,
                "pairs": result.pairs,
                "control_rows": result.control_rows,
                "shadow_rows": result.shadow_rows,
                "comparisons": len(result.comparisons),
            }
        )
    )


def timed_child(cmd: list[str]) -> tuple[float, float, str]:
    """Run CMD; return wall seconds, its own peak RSS in GiB (from wait4) and its stdout."""
    with tempfile.TemporaryFile("w+") as out:
        t = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped above
        if proc.returncode:
            raise SystemExit(f"{' '.join(cmd)} exited with {proc.returncode}")
        out.seek(0)
        return wall, usage.ru_maxrss / 2**20, out.read()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1_000_000, help="control requests")
    parser.add_argument("--log", type=Path, help="an existing shadow log (Parquet) to reuse")
    parser.add_argument("--make", type=Path, help=argparse.SUPPRESS)  # child: write the log
    parser.add_argument("--analyze", type=Path, help=argparse.SUPPRESS)  # child: one run
    args = parser.parse_args()
    if args.make:
        make_log(args.make, args.requests)
        return
    if args.analyze:
        analyze(args.analyze)
        return

    if args.log:
        log = args.log.resolve()
    else:
        log = Path(tempfile.mkdtemp(prefix="bench-shadow-")) / "requests.parquet"
        wall, peak, out = timed_child(
            [sys.executable, __file__, "--make", str(log), "--requests", str(args.requests)]
        )
        rows = json.loads(out)
        print(
            f"log made in {wall:.1f} s (peak RSS {peak:.2f} GiB): {rows['control']:,} "
            f"control requests, {rows['shadow']:,} shadow rows"
        )
    print(f"log: {log} ({log.stat().st_size / 2**20:.0f} MiB of Parquet)")

    walls, inner, peaks = [], [], []
    for attempt in range(RUNS):
        wall, peak, out = timed_child([sys.executable, __file__, "--analyze", str(log)])
        run = json.loads(out)
        walls.append(wall)
        inner.append(run["seconds"])
        peaks.append(peak)
        print(
            f"run {attempt + 1}: {wall:.2f} s process ({run['seconds']:.2f} s in "
            f"analyze_shadow), peak RSS {peak:.2f} GiB; {run['pairs']:,} pairs, "
            f"{run['comparisons']} comparisons, verdict {run['verdict']}"
        )
    print(
        f"median of {RUNS}: {statistics.median(walls):.2f} s process, "
        f"{statistics.median(inner):.2f} s in analyze_shadow, "
        f"peak RSS {statistics.median(peaks):.2f} GiB (max {max(peaks):.2f})"
    )
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"(this parent process: peak RSS {own:.2f} GiB)")


if __name__ == "__main__":
    main()
