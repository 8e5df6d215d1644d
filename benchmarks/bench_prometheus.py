"""A gate with 10 Prometheus metrics and 2 segment dimensions against a local Prometheus.

Starts Debian's Prometheus on 127.0.0.1 with the test suite's three-hour history (backfilled
with promtool), measures and judges the gate several times, and prints the queries made per
metric and the time per evaluation (target: at most one query per metric, under 1 s).

    python3 benchmarks/bench_prometheus.py [--runs 5] [--hours 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rolloutctl import gate
from rolloutctl.metrics.base import MeasureRequest
from rolloutctl.metrics.prometheus import PrometheusSource
from rolloutctl.playbook.model import Playbook
from tests.conftest import FILE_FLAG
from tests.metrics.conftest import T0, at, free_port, wait_ready, write_traffic

COUNTER = 'sum by ({{by}}) (increase(llm_requests_total{variant=~"{{variant}}"}[{{window}}]))'
BUCKETS = (
    "sum by ({{by}}) "
    '(increase(llm_request_duration_seconds_bucket{variant=~"{{variant}}"}[{{window}}]))'
)


def metrics() -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    events = [
        'status="error"',
        'status="timeout"',
        'status!="ok"',
        'status=~"error|timeout"',
        'status="ok"',
    ]
    for i, event in enumerate(events):
        out.append(
            {
                "name": f"rate_{i}",
                "group": "technical",
                "source": "prom",
                "kind": "proportion",
                "query": COUNTER,
                "event": event,
                "worse": "lower" if event == 'status="ok"' else "higher",
                "margin": {"absolute": 0.01},
                "critical": i == 0,
            }
        )
    for i, q in enumerate((0.5, 0.9, 0.95, 0.99)):
        out.append(
            {
                "name": f"latency_p{int(q * 100)}",
                "group": "technical",
                "source": "prom",
                "kind": "quantile",
                "q": q,
                "histogram": BUCKETS,
                "worse": "higher",
                "margin": {"relative": 0.1},
                "critical": i == 2,
            }
        )
    out.append(
        {
            "name": "latency_mean",
            "group": "technical",
            "source": "prom",
            "kind": "mean",
            "histogram": BUCKETS,
            "worse": "higher",
            "margin": {"relative": 0.1},
        }
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--hours", type=float, default=3.0)
    args = parser.parse_args()
    binary, promtool = shutil.which("prometheus"), shutil.which("promtool")
    if not binary or not promtool:
        sys.exit("needs Debian's prometheus package (apt-get install prometheus)")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        traffic = write_traffic(root / "traffic")
        subprocess.run(
            [
                promtool,
                "tsdb",
                "create-blocks-from",
                "openmetrics",
                str(traffic.openmetrics),
                str(root / "data"),
            ],
            check=True,
            capture_output=True,
        )
        (root / "prometheus.yml").write_text("global: {}\nscrape_configs: []\n")
        port, log = free_port(), root / "server.log"
        with log.open("wb") as sink:
            proc = subprocess.Popen(
                [
                    binary,
                    f"--config.file={root / 'prometheus.yml'}",
                    f"--storage.tsdb.path={root / 'data'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                    "--storage.tsdb.retention.time=100y",
                ],
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        try:
            url = f"http://127.0.0.1:{port}"
            wait_ready(url + "/-/ready", proc, log)
            run(url, args.runs, args.hours)
        finally:
            os.kill(proc.pid, signal.SIGTERM)
            proc.wait(10)


def playbook_data(url: str) -> dict[str, object]:
    return {
        "rollout": "bench",
        "flag": FILE_FLAG,
        "sources": {"prom": {"kind": "prometheus", "url": url}},
        "segments": {
            "dimensions": ["category", "language"],
            "critical": {"category": ["health"]},
        },
        "analysis": {"min_samples_per_arm": 1000, "pass_requires": "no_failure"},
        "metrics": metrics(),
        "stages": [{"name": "c1", "traffic": 20, "min_duration": "1h"}],
    }


def run(url: str, runs: int, hours: float) -> None:
    pb = Playbook.model_validate(playbook_data(url))
    end = at(hours)
    request = MeasureRequest(
        metrics=tuple(pb.metrics),
        start=T0,
        end=end,
        control="v1",
        canary="v2",
        dimensions=("category", "language"),
    )
    timings, calls = [], 0
    result = None
    for _ in range(runs):
        source = PrometheusSource("prom", url)
        started = time.perf_counter()
        measurement = source.measure(request)
        result = gate.evaluate(
            pb, 0, {"prom": measurement}, {}, stage_started=T0, now=end, consecutive_errors=0
        )
        timings.append(time.perf_counter() - started)
        calls = source.calls
        if measurement.errors:
            sys.exit(f"errors: {measurement.errors}")
    assert result is not None
    n_metrics = len(pb.metrics)
    print(f"metrics: {n_metrics}, segment dimensions: 2, window: {hours:g} h")
    print(f"HTTP queries per evaluation: {calls} ({calls / n_metrics:.2f} per metric)")
    print(f"comparisons judged: {len(result.metrics)}; verdict: {result.verdict}")
    print(
        f"evaluation time over {runs} runs: median {statistics.median(timings) * 1000:.0f} ms,"
        f" max {max(timings) * 1000:.0f} ms (target < 1000 ms)"
    )
    distinct = sorted({q for text in measurement.queries.values() for q in text.splitlines()})
    own = prometheus_eval_seconds(url, distinct, end)
    print(
        f"distinct queries: {len(distinct)}; Prometheus' own evaluation of them: {own * 1000:.0f} ms"
    )
    cli_check(url, runs, end, own)


def prometheus_eval_seconds(url: str, queries: list[str], end: object) -> float:
    """Prometheus' own evaluation time for each query (its stats=all timings), added up."""
    import httpx

    total = 0.0
    for query in queries:
        answer = httpx.post(
            url + "/api/v1/query",
            data={"query": query, "time": str(end.timestamp()), "stats": "all"},  # type: ignore[attr-defined]
        ).json()
        total += float(answer["data"]["stats"]["timings"]["evalTotalTime"])
    return total


def cli_check(url: str, runs: int, end: object, own: float) -> None:
    """`rolloutctl --json check` as a user runs it (the playbook as a file, the CLI in its
    own process): time to the verdict, and to the end with the report drawn."""
    import yaml

    from benchmarks.bench_check import timed_child

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "rollout.yaml").write_text(yaml.safe_dump(playbook_data(url), sort_keys=False))
        env = {
            **os.environ,
            "ROLLOUTCTL_STATE_DIR": str(root / "state"),
            "ROLLOUTCTL_REPORTS_DIR": str(root / "reports"),
            "ROLLOUTCTL_NOW": T0.isoformat(),
        }
        script = Path(sys.executable).parent / "rolloutctl"
        cli = [str(script)] if script.exists() else [sys.executable, "-m", "rolloutctl"]
        subprocess.run([*cli, "start", "rollout.yaml"], cwd=root, env=env, check=True)
        env["ROLLOUTCTL_NOW"] = end.isoformat()  # type: ignore[attr-defined]
        printed, walls = [], []
        for _ in range(runs):
            wall, _, out, first = timed_child([*cli, "--json", "check", "bench"], cwd=root, env=env)
            if not out.strip().startswith("{"):
                sys.exit(f"check printed no JSON: {out[:300]}")
            printed.append(first)
            walls.append(wall)
        print(
            f"rolloutctl check, {runs} runs: verdict printed after median "
            f"{statistics.median(printed) * 1000:.0f} ms, done with its report after median "
            f"{statistics.median(walls) * 1000:.0f} ms (target: 1000 ms + Prometheus' own "
            f"{own * 1000:.0f} ms)"
        )


if __name__ == "__main__":
    main()
