"""A gate over a Parquet request log read in place from a web server and from an
S3-compatible store (moto's), beside the same file on local disk, in the same run. Prints
figures; asserts nothing.

The log is ROWS rows (default 10 million) made by ClickHouse (chdb) with the column names of
the request-log schema, written as one Parquet file; the gate measures five metrics by arm
over two segment dimensions, the source configured as the README shows (`path: https://…`,
`path: s3://…`, credentials from the environment). Figures: wall time of each, and the bytes
the web server sent (Parquet is read by ranges, so a gate reads its columns, not the file).

    pip install -e '.[test]'      # chdb, s3fs, aiohttp, moto
    python benchmarks/bench_remote.py [--rows 10000000] [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_sql import HOURS, MAKE_ROWS, the_request, timed


def make_log(root: Path, rows: int) -> Path:
    from chdb import session

    parquet = root / "log.parquet"
    db = session.Session()
    try:
        db.query(
            "SELECT event_time AS ts, user_id AS unit_id, "
            "if(model = 'answer-model-v2', 'v2', 'v1') AS variant, * EXCEPT "
            f"(event_time, user_id, model) FROM ({MAKE_ROWS.format(rows=rows, ms=HOURS * 3_600_000)})"
            f" INTO OUTFILE '{parquet}' FORMAT Parquet"
        )
    finally:
        db.close()
    return parquet


def sent_bytes(log: Path) -> int:
    """Bytes the web server sent, from its request log's ranges."""
    total = 0
    for line in log.read_text().splitlines() if log.exists() else []:
        found = re.search(r"bytes=(\d+)-(\d+)", line)
        if line.startswith("GET ") and found:
            total += int(found.group(2)) - int(found.group(1)) + 1
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    from rolloutctl.metrics import remote
    from rolloutctl.metrics.requestlog import RequestLogSource
    from tests.servers.objectstores import S3Server, WebFiles

    root = Path(tempfile.mkdtemp(prefix="bench-remote-"))
    web = WebFiles(root, root / "web.log")
    s3 = S3Server()
    try:
        t = time.perf_counter()
        parquet = make_log(root, args.rows)
        size = parquet.stat().st_size
        print(
            f"made {args.rows:,} rows as Parquet ({size / 2**20:.0f} MiB) in {time.perf_counter() - t:.0f} s"
        )
        request = the_request(root)
        web.start()
        s3.start()
        s3.upload("ai-logs", {"requests/log.parquet": parquet})
        os.environ.update(s3.env)
        remote._filesystem.cache_clear()

        sources = {
            "local file": str(parquet),
            "web server (http://127.0.0.1)": f"{web.url}/log.parquet",
            "S3-compatible (moto, s3://)": "s3://ai-logs/requests/log.parquet",
        }
        for label, path in sources.items():
            source = RequestLogSource("requests", [path])
            before = sent_bytes(web.log)
            seconds, measured = timed(args.runs, lambda s=source: s.measure(request))
            canary = measured.arm_counts[None]["canary"]
            line = (
                f"gate over {args.rows:,} rows, {label}: median {seconds:.2f} s ({canary:,} canary)"
            )
            if label.startswith("web"):
                per_gate = (sent_bytes(web.log) - before) / args.runs
                line += (
                    f", {per_gate / 2**20:.0f} MiB sent per gate of a {size / 2**20:.0f} MiB file"
                )
            print(line)
    finally:
        web.stop()
        s3.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
