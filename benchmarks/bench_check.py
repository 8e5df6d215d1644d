"""`rolloutctl check` on a large Parquet request log (default 10 million rows, 10 metrics,
3 segment dimensions): wall time and peak memory of the CLI process, beside a straightforward
pandas implementation of the same aggregation. Prints figures; asserts nothing.

    python benchmarks/bench_check.py [ROWS]
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb

from rolloutctl import simulate


def make_log(path: Path, rows: int) -> None:
    """Write ROWS rows in 1M-row parts, then merge into one Parquet file with DuckDB."""
    start = datetime(2026, 1, 5, tzinfo=UTC)
    parts = []
    per_hour = 1_000_000
    hours = max(1, rows // per_hour)
    for h in range(hours):
        frame = simulate.generate("healthy", start + timedelta(hours=h),
                                  start + timedelta(hours=h + 1), requests_per_hour=per_hour,
                                  canary_percent=10, seed=h)  # fmt: skip
        part = path.parent / f"part-{h:03d}.parquet"
        simulate.write(frame, part)
        parts.append(part)
    listing = ", ".join(f"'{p}'" for p in parts)
    duckdb.sql(f"COPY (SELECT * FROM read_parquet([{listing}])) TO '{path}' (FORMAT parquet)")
    for part in parts:
        part.unlink()


def pandas_gate(path: Path) -> float:
    """The same sufficient statistics, the obvious way: load the log, group by in pandas."""
    import pandas as pd

    t = time.perf_counter()
    df = pd.read_parquet(path) if _has_pyarrow() else duckdb.sql(f"SELECT * FROM '{path}'").df()
    df["err"] = df.status == "error"
    df["tmo"] = df.status == "timeout"
    cols = ["err", "tmo", "hallucination", "citation_grounded", "safety_violation",
            "reformulated", "task_completed", "cost_usd", "latency_ms"]  # fmt: skip
    for dim in (None, "language", "category", "device"):
        keys = ["variant"] if dim is None else ["variant", dim]
        df.groupby(keys)[cols].agg(["count", "sum"])
        df.groupby(keys)["latency_ms"].quantile(0.95)
    return time.perf_counter() - t


def _has_pyarrow() -> bool:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        return False
    return True


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000_000
    root = Path(tempfile.mkdtemp(prefix="bench-check-"))
    (root / "data").mkdir()
    log = root / "data" / "requests.parquet"
    t = time.perf_counter()
    make_log(log, rows)
    n = duckdb.sql(f"SELECT count(*) FROM '{log}'").fetchall()[0][0]
    print(f"log: {n:,} rows, {log.stat().st_size / 2**20:.0f} MiB, made in "
          f"{time.perf_counter() - t:.1f} s")  # fmt: skip
    from importlib.resources import files

    playbook = files("rolloutctl.playbook").joinpath("starter.yaml").read_text()
    playbook = playbook.replace("data/requests/*.parquet", "data/requests.parquet")
    playbook = playbook.replace("traffic: 1, min_duration", "traffic: 10, min_duration")
    (root / "rollout.yaml").write_text(playbook)
    env = {**os.environ, "ROLLOUTCTL_STATE_DIR": str(root / "state"),
           "ROLLOUTCTL_REPORTS_DIR": str(root / "reports"),
           "ROLLOUTCTL_NOW": "2026-01-05T00:00:00+00:00"}  # fmt: skip
    subprocess.run(["rolloutctl", "start", "rollout.yaml"], cwd=root, env=env, check=True,
                   capture_output=True)  # fmt: skip
    env["ROLLOUTCTL_NOW"] = (datetime(2026, 1, 5, tzinfo=UTC) + timedelta(days=1)).isoformat()
    for attempt in range(2):
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        t = time.perf_counter()
        proc = subprocess.run(["rolloutctl", "check", "ai-search-answer-v2"], cwd=root,
                              env=env, capture_output=True, text=True)  # fmt: skip
        wall = time.perf_counter() - t
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        print(f"rolloutctl check (run {attempt + 1}): {wall:.2f} s, exit {proc.returncode}, "
              f"peak RSS of children {max(peak, before) / 2**20:.2f} GiB")  # fmt: skip
    t = time.perf_counter()
    seconds = pandas_gate(log)
    print(
        f"pandas (load + group by, same statistics): {seconds:.2f} s, "
        f"peak RSS of this process {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB"
    )


if __name__ == "__main__":
    main()
