"""Real Prometheus and VictoriaMetrics servers on 127.0.0.1, loaded with the same fixed
history of a canary rollout, and the same traffic as a request log.

The traffic: control v1 (80%) and canary v2 (20%) over three hours from T0, one-minute
samples. After the first hour the canary's error rate and latency rise. Prometheus gets the
history as an OpenMetrics file backfilled with promtool before it starts; VictoriaMetrics
through its Prometheus-text import API. Both run with a 100-year retention so the history
(months old) is kept, and are stopped by PID at teardown."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from rolloutctl import simulate

T0 = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)
HOURS = 3
PER_MINUTE = 300
CANARY_SHARE = 0.20
CATEGORIES = ("chat", "code", "health")
LANGUAGES = ("en", "hi")
BOUNDS = tuple(round(0.1 * 1.2**k, 6) for k in range(32))  # 0.1 s .. 28.8 s
LEAD_IN = 5  # minutes of zero samples before T0, so counters have history


@dataclass(frozen=True)
class Traffic:
    requests: pd.DataFrame  # one row per request (ts, variant, category, language, status, ...)
    log: Path  # the same requests as a Parquet request log
    openmetrics: Path  # for promtool
    prometheus_text: Path  # for VictoriaMetrics' import (millisecond timestamps)


def generate(seed: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    minutes = HOURS * 60
    n = rng.poisson(PER_MINUTE, minutes)
    minute = np.repeat(np.arange(minutes), n)
    total = int(n.sum())
    ts = T0.timestamp() + 60 * minute + rng.uniform(0, 60, total)
    canary = rng.random(total) < CANARY_SHARE
    late = minute >= 60  # the regression starts after the first hour
    error_p = np.where(canary & late, 0.08, 0.02)
    u = rng.random(total)
    status = np.where(u < error_p, "error", np.where(u < error_p + 0.01, "timeout", "ok"))
    latency_s = rng.lognormal(np.log(0.8), 0.5, total) * np.where(canary & late, 1.6, 1.0)
    return pd.DataFrame(
        {
            "ts": pd.to_datetime(ts, unit="s", utc=True),
            "variant": np.where(canary, "v2", "v1"),
            "category": rng.choice(CATEGORIES, total, p=[0.5, 0.3, 0.2]),
            "language": rng.choice(LANGUAGES, total, p=[0.7, 0.3]),
            "status": status,
            "latency_ms": latency_s * 1000,
            "latency_s": latency_s,
            "minute": minute,
        }
    )


def series_samples(frame: pd.DataFrame) -> dict[str, list[tuple[int, float]]]:
    """Cumulative samples per series (exposition text without the value) at each minute."""
    minutes = HOURS * 60
    times = [int(T0.timestamp()) + 60 * m for m in range(-LEAD_IN, minutes + 1)]
    out: dict[str, list[tuple[int, float]]] = {}

    def add(key: str, per_minute: np.ndarray, dtype: type = int) -> None:
        cumulative = np.concatenate([np.zeros(LEAD_IN + 1), np.cumsum(per_minute)])
        out[key] = [(t, dtype(v)) for t, v in zip(times, cumulative, strict=True)]

    for (variant, category, language), group in frame.groupby(["variant", "category", "language"]):
        labels = f'variant="{variant}",category="{category}",language="{language}"'
        for status in ("ok", "error", "timeout"):
            rows = group[group.status == status]
            counts = np.bincount(rows.minute, minlength=minutes)
            add(f'llm_requests_total{{{labels},status="{status}"}}', counts)
        for le in (*BOUNDS, float("inf")):
            rows = group[group.latency_s <= le]
            counts = np.bincount(rows.minute, minlength=minutes)
            le_text = "+Inf" if le == float("inf") else repr(le)
            add(f'llm_request_duration_seconds_bucket{{{labels},le="{le_text}"}}', counts)
        add(
            f"llm_request_duration_seconds_count{{{labels}}}",
            np.bincount(group.minute, minlength=minutes),
        )
        sums = np.bincount(group.minute, weights=group.latency_s, minlength=minutes)
        add(f"llm_request_duration_seconds_sum{{{labels}}}", sums, float)
    return out


def write_traffic(root: Path) -> Traffic:
    frame = generate()
    root.mkdir(parents=True, exist_ok=True)
    log = root / "requests.parquet"
    simulate.write(frame.drop(columns=["minute", "latency_s"]), log)
    samples = series_samples(frame)
    om, text = [], []
    families = {
        "llm_requests": "counter",
        "llm_request_duration_seconds": "histogram",
    }
    for family, kind in families.items():
        om.append(f"# TYPE {family} {kind}")
        for key, points in samples.items():
            if key.startswith(family + "_") and not (
                family == "llm_requests" and "duration" in key
            ):
                om.extend(f"{key} {v!r} {t}" for t, v in points)
    for key, points in samples.items():
        text.extend(f"{key} {v!r} {t * 1000}" for t, v in points)
    om.append("# EOF")
    openmetrics = root / "history.om"
    openmetrics.write_text("\n".join(om) + "\n")
    prometheus_text = root / "history.prom"
    prometheus_text.write_text("\n".join(text) + "\n")
    return Traffic(frame, log, openmetrics, prometheus_text)


@pytest.fixture(scope="session")
def traffic(tmp_path_factory: pytest.TempPathFactory) -> Traffic:
    return write_traffic(tmp_path_factory.mktemp("traffic"))


# ---------------------------------------------------------------- servers


def need_binary(name: str) -> str:
    """The binary's path; a missing binary skips the test (a failure under CI)."""
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (apt-get install prometheus victoria-metrics)")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"server not ready at {url}: {log.read_text()[-2000:]}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)


@pytest.fixture(scope="session")
def prometheus_url(traffic: Traffic, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = need_binary("prometheus")
    promtool = need_binary("promtool")
    root = tmp_path_factory.mktemp("prometheus")
    data = root / "data"
    subprocess.run(
        [
            promtool,
            "tsdb",
            "create-blocks-from",
            "openmetrics",
            str(traffic.openmetrics),
            str(data),
        ],
        check=True,
        capture_output=True,
    )
    config = root / "prometheus.yml"
    config.write_text("global:\n  scrape_interval: 1m\nscrape_configs: []\n")
    port = free_port()
    log = root / "server.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={data}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--storage.tsdb.retention.time=100y",
            ],
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url + "/-/ready", proc, log)
        yield url
    finally:
        stop(proc)


@pytest.fixture(scope="session")
def victoria_url(traffic: Traffic, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = need_binary("victoria-metrics")
    root = tmp_path_factory.mktemp("victoria")
    port = free_port()
    log = root / "server.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [
                binary,
                f"-storageDataPath={root / 'data'}",
                f"-httpListenAddr=127.0.0.1:{port}",
                "-retentionPeriod=100y",
                "-search.disableCache",
            ],
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url + "/health", proc, log)
        body = traffic.prometheus_text.read_bytes()
        httpx.post(url + "/api/v1/import/prometheus", content=body, timeout=60).raise_for_status()
        httpx.get(url + "/internal/force_flush", timeout=30).raise_for_status()
        yield url
    finally:
        stop(proc)


@pytest.fixture(params=["prometheus", "victoria-metrics"])
def server_url(request: pytest.FixtureRequest) -> str:
    """Each test that takes it runs against both engines."""
    name = "prometheus_url" if request.param == "prometheus" else "victoria_url"
    url: str = request.getfixturevalue(name)
    return url


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)
