"""`rolloutctl check` on a large Parquet request log (default 10 million rows, 10 metrics,
3 segment dimensions): wall time and peak memory of the CLI process, beside a straightforward
pandas implementation of the same aggregation. Prints figures; asserts nothing.

    pip install -e '.[bench]'    # the test helpers, and pyarrow for pandas' read_parquet
    python benchmarks/bench_check.py [ROWS] [--log EXISTING.parquet]

Peak memory is read per child process with wait4(). A child's figure includes the memory its
parent had when it forked, so the heavy steps (making the log, the pandas gate) run in child
processes too and this parent stays small; its own peak is printed for reference.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path


def make_log(path: Path, rows: int) -> None:
    """Write ROWS rows in 1M-row parts, then merge into one Parquet file with DuckDB."""
    import duckdb

    from rolloutctl import simulate

    start = datetime(2026, 1, 5, tzinfo=UTC)
    parts = []
    per_hour = 1_000_000
    hours = max(1, rows // per_hour)
    for h in range(hours):
        frame = simulate.generate(
            "healthy",
            start + timedelta(hours=h),
            start + timedelta(hours=h + 1),
            requests_per_hour=per_hour,
            canary_percent=10,
            seed=h,
        )
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
    df = pd.read_parquet(path, engine="pyarrow")
    df["err"] = df.status == "error"
    df["tmo"] = df.status == "timeout"
    cols = [
        "err",
        "tmo",
        "hallucination",
        "citation_grounded",
        "safety_violation",
        "reformulated",
        "task_completed",
        "cost_usd",
        "latency_ms",
    ]
    for dim in (None, "language", "category", "device"):
        keys = ["variant"] if dim is None else ["variant", dim]
        df.groupby(keys)[cols].agg(["count", "sum"])
        df.groupby(keys)["latency_ms"].quantile(0.95)
    return time.perf_counter() - t


def timed_child(cmd: list[str], **kwargs: object) -> tuple[float, float, str, float]:
    """Run CMD; return wall seconds, its own peak RSS in GiB (from wait4), its stdout, and
    the seconds until its first output (a gate prints its verdict before drawing the report)."""
    import threading

    chunks: list[bytes] = []
    first: list[float] = []
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, **kwargs)  # type: ignore[call-overload]

    def drain() -> None:
        while chunk := proc.stdout.read1(65536):
            if not first:
                first.append(time.perf_counter() - t)
            chunks.append(chunk)

    reader = threading.Thread(target=drain)
    reader.start()
    _, _, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    reader.join()
    proc.returncode = 0  # reaped above; keep Popen from waiting again
    out = b"".join(chunks).decode()
    return wall, usage.ru_maxrss / 2**20, out, first[0] if first else wall


def main() -> None:
    args = sys.argv[1:]
    if args[:1] == ["--make"]:
        make_log(Path(args[1]), int(args[2]))
        return
    if args[:1] == ["--pandas"]:
        seconds = pandas_gate(Path(args[1]))
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        print(f"{seconds:.2f} {peak:.2f}")
        return
    rows = int(args[0]) if args and args[0].isdigit() else 10_000_000
    root = Path(tempfile.mkdtemp(prefix="bench-check-"))
    (root / "data").mkdir()
    log = root / "data" / "requests.parquet"
    if "--log" in args:
        log.symlink_to(Path(args[args.index("--log") + 1]).resolve())
    else:
        t = time.perf_counter()
        subprocess.run([sys.executable, __file__, "--make", str(log), str(rows)], check=True)
        print(f"log made in {time.perf_counter() - t:.1f} s")
    print(f"log: {log.stat().st_size / 2**20:.0f} MiB of Parquet")
    from importlib.resources import files

    playbook = files("rolloutctl.playbook").joinpath("starter.yaml").read_text()
    playbook = playbook.replace("data/requests/*.parquet", "data/requests.parquet")
    # The gate of a canary stage: the stages before it judge an endpoint, eval runs, pairs.
    playbook = "\n".join(
        line
        for line in playbook.splitlines()
        if not any(f"kind: {k}," in line for k in ("smoke", "offline_eval", "shadow"))
    )
    playbook = playbook.replace("traffic: 1, min_duration", "traffic: 10, min_duration")
    (root / "rollout.yaml").write_text(playbook)
    env = {
        **os.environ,
        "ROLLOUTCTL_STATE_DIR": str(root / "state"),
        "ROLLOUTCTL_REPORTS_DIR": str(root / "reports"),
        "ROLLOUTCTL_NOW": "2026-01-05T00:00:00+00:00",
    }
    script = Path(sys.executable).parent / "rolloutctl"  # not a version-manager shim
    cli = [str(script)] if script.exists() else [sys.executable, "-m", "rolloutctl"]
    subprocess.run(
        [*cli, "start", "rollout.yaml"], cwd=root, env=env, check=True, capture_output=True
    )
    env["ROLLOUTCTL_NOW"] = (datetime(2026, 1, 5, tzinfo=UTC) + timedelta(days=1)).isoformat()
    for attempt in range(3):
        wall, peak, out, printed = timed_child(
            [*cli, "--json", "check", "ai-search-answer-v2"], cwd=root, env=env
        )
        verdict = json.loads(out).get("verdict") if out.strip() else "?"
        print(
            f"rolloutctl check (run {attempt + 1}): verdict printed after {printed:.2f} s, "
            f"{wall:.2f} s with its full report, peak RSS {peak:.2f} GiB, verdict {verdict}"
        )
    wall, peak, out, _ = timed_child([sys.executable, __file__, "--pandas", str(log)])
    seconds, _ = out.split()
    print(
        f"pandas (load + group by, same statistics): {float(seconds):.2f} s in the gate, "
        f"{wall:.2f} s with start-up, peak RSS {peak:.2f} GiB"
    )
    print(
        f"(this parent process: peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB)"
    )


if __name__ == "__main__":
    main()
