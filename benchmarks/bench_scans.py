"""One scan of the request log per look, or several? The request-log gate reads the log in
four passes: a health scan (bad rows, freshness, segment cardinality), counts and sums by
arm, look and segment, the exact distinct units per arm (the sample-ratio check), and a
log-bucket histogram per quantile metric. This times those passes as the source runs them,
beside single queries that fold the last three into one aggregation over the same rows:

- units as a grouping set of the aggregation (one hash table per grouping set, one scan);
- histograms as a `histogram()` map per cell, added up afterwards;
- both.

Same log, same metrics and segments (the starter playbook, as `benchmarks/bench_check.py`
sets it up), each query run twice and the faster kept. Prints figures; asserts nothing.

    python benchmarks/bench_scans.py [ROWS] [--log EXISTING.parquet]
"""

from __future__ import annotations

import logging
import re
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rolloutctl.metrics.base import MeasureRequest
from rolloutctl.metrics.requestlog import RequestLogSource, _Plan
from rolloutctl.playbook.load import load_playbook
from rolloutctl.stats.sufficient import LOG_GAMMA, ZERO_BUCKET

START = datetime(2026, 1, 5, tzinfo=UTC)


class Steps(logging.Handler):
    """The source's own step timings ("source requests: <step>: 0.57 s")."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.seconds: dict[str, float] = {}

    def emit(self, record: logging.LogRecord) -> None:
        found = re.match(r"source \S+: (.*): ([\d.]+) s$", record.getMessage())
        if found:
            self.seconds[found[1]] = float(found[2])


def request_for(playbook: Path, log: Path) -> tuple[RequestLogSource, MeasureRequest]:
    loaded = load_playbook(playbook)
    pb = loaded.playbook
    metrics = tuple(m for m in pb.metrics if m.source == "requests")
    request = MeasureRequest(
        metrics,
        START,
        START + timedelta(days=1),
        pb.flag.control,
        pb.flag.canary,
        dimensions=tuple(pb.segments.dimensions),
        max_segments=pb.analysis.max_segments,
        never_pooled=pb.segments.never_pooled(),
    )
    return RequestLogSource("requests", [str(log)]), request


def best_of_two(con: object, query: str) -> float:
    times = []
    for _ in range(2):
        started = time.perf_counter()
        con.execute(query).fetchall()  # type: ignore[attr-defined]
        times.append(time.perf_counter() - started)
    return min(times)


def folded_queries(
    source: RequestLogSource, request: MeasureRequest, con: object
) -> dict[str, str]:
    """The aggregation the gate runs, with units and/or histograms folded into it."""
    types = source.open(con)  # type: ignore[arg-type]
    out = __import__("rolloutctl.metrics.base", fromlist=["Measurement"]).Measurement()
    plan = _Plan.of(request, types, timedelta(hours=1), False, out)
    plan.dim_exprs = {d: source._dim_expr(d, None) for d in plan.dims}
    aggregates = ["count(*)"]
    quantile = None
    for metric in request.metrics:
        parts = source._aggregates(metric, plan.columns, types)
        if parts is None:
            quantile = metric
        else:
            aggregates += parts
    keys = ", ".join(["variant", "__bin", *plan.seg_names])
    rows = (
        f"(SELECT *, {plan.bin_sql} AS __bin{plan.seg_cols} FROM log WHERE {plan.where}) AS __rows"
    )
    sums = ", ".join(aggregates)
    assert quantile is not None and quantile.value is not None
    x = source._number(quantile.value, plan.columns, types)
    bucket = (
        f"CASE WHEN {x} <= 0 THEN {ZERO_BUCKET} "
        f"ELSE CAST(floor(ln({x}) / {LOG_GAMMA!r}) AS INTEGER) END"
    )
    units = f"GROUPING SETS (({keys}), (variant, unit_id))"
    return {
        "cells alone (the gate's aggregation, before its roll-up)": (
            f"SELECT {keys}, {sums} FROM {rows} GROUP BY {keys}"
        ),
        "cells + distinct units as a grouping set": (
            f"SELECT {keys}, unit_id, {sums}, min(__bin) FROM {rows} GROUP BY {units}"
        ),
        "cells + a histogram map per cell": (
            f"SELECT {keys}, {sums}, histogram({bucket}) FROM {rows} GROUP BY {keys}"
        ),
        "cells + units + histogram map": (
            f"SELECT {keys}, unit_id, {sums}, histogram({bucket}), min(__bin) FROM {rows} "
            f"GROUP BY {units}"
        ),
    }


def main() -> None:
    args = sys.argv[1:]
    rows = int(args[0]) if args and args[0].isdigit() else 10_000_000
    root = Path(tempfile.mkdtemp(prefix="bench-scans-"))
    log = root / "requests.parquet"
    if "--log" in args:
        log = Path(args[args.index("--log") + 1]).resolve()
    else:
        bench_check = Path(__file__).with_name("bench_check.py")
        subprocess.run(
            [sys.executable, str(bench_check), "--make", str(log), str(rows)], check=True
        )
    from importlib.resources import files

    playbook = root / "rollout.yaml"
    playbook.write_text(files("rolloutctl.playbook").joinpath("starter.yaml").read_text())
    source, request = request_for(playbook, log)

    steps = Steps()
    logging.getLogger("rolloutctl.metrics.requestlog").addHandler(steps)
    logging.getLogger("rolloutctl.metrics.requestlog").setLevel(logging.INFO)
    started = time.perf_counter()
    source.measure_series(request, timedelta(hours=1), segments_per_look=False)
    whole = time.perf_counter() - started
    print(f"log: {log} ({log.stat().st_size / 2**20:.0f} MiB)")
    print(f"the gate's passes (as the source runs them), {whole:.2f} s in all:")
    for step, seconds in steps.seconds.items():
        print(f"  {step}: {seconds:.2f} s")
    con = source.connect()
    try:
        for name, query in folded_queries(source, request, con).items():
            print(f"  one query, {name}: {best_of_two(con, query):.2f} s")
    finally:
        con.close()


if __name__ == "__main__":
    main()
