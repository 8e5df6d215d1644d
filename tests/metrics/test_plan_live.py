"""`plan` sizes metrics on a Prometheus source from that source: the control's rates over the
last day and the last hour's traffic, asked of the real server with the gate's own queries."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import Workspace
from tests.metrics.conftest import Traffic, at
from tests.metrics.test_prometheus import LOG_FIELDS, PROM_FIELDS, write_playbook


def _plan(ws: Workspace, book: Path) -> dict:
    r = ws.run("--json", "plan", str(book), now=at(3))
    assert r.code == 0, r.err
    return r.json()


def _samples(plan: dict, metric: str) -> int:
    [row] = [m for m in plan["stages"][0]["metrics"] if m["name"] == metric]
    return int(row["samples_per_arm"])


def test_plan_sizes_prometheus_metrics_from_the_server(
    prometheus_url: str, traffic: Traffic, ws: Workspace
) -> None:
    from_log = _plan(ws, write_playbook(ws.root, prometheus_url, traffic.log, LOG_FIELDS))
    from_prom = _plan(ws, write_playbook(ws.root, prometheus_url, traffic.log, PROM_FIELDS))
    assert "prometheus source 'prom'" in from_prom["volume_source"]
    for metric in ("error_rate", "timeout_rate"):
        log_n, prom_n = _samples(from_log, metric), _samples(from_prom, metric)
        # The same traffic, seen through the request log or through Prometheus: the same size
        # (p = 0.5, what plan assumed without a baseline, would ask for about 12 times more).
        assert 0.7 < prom_n / log_n < 1.4, (metric, log_n, prom_n)
