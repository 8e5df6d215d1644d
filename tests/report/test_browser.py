"""Reports written by the real CLI, loaded in a real headless Chromium with the network cut.

Every report must load without a console or page error, fetch nothing (it is self-contained),
open no dialog, and show whatever the playbook and the request log contain as text, never as
markup. A gate report of 50 metrics by 20 segment values stays under the product's limits:
3 MB on disk and 2 s from navigation to the load event.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from rolloutctl import simulate
from tests.conftest import PLAYBOOK, START, Workspace, cli_env
from tests.report.browser import Render, Rendered

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
HEALTHY, UNSAFE = "ai-search-answer-v2", "ai-search-answer-v3"

SCRIPT = "<script>alert(1)</script>"
IMG = '"><img src=x onerror=alert(1)>'
# Devanagari, emoji and right-to-left Arabic, 5,000 characters, no leading or trailing space.
LONG = ("नमस्ते दुनिया 🚀🌍👩🏽‍💻 مرحبا بالعالم " * 200)[:4999] + "ऋ"
HOSTILE = {"script": SCRIPT, "img": IMG, "long unicode": LONG}

MAX_REPORT_BYTES = 3_000_000


def assert_clean(rendered: Rendered) -> None:
    """Loaded with nothing fetched, thrown, logged as an error or popped up; screenshot taken."""
    assert rendered.problems == {}
    assert not rendered.dialog_fired
    shot = rendered.screenshot.read_bytes()
    assert len(shot) > 1_000 and shot.startswith(PNG_MAGIC)


# ---------------------------------------------------------------- the demo's reports


@dataclass(frozen=True)
class Demo:
    reports: Path
    state: Path

    def gate_report(self, rollout: str, verdict: str) -> Path:
        """The last gate report of `rollout` with that verdict, found through `history`."""
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "rolloutctl",
                "--state-dir",
                str(self.state),
                "--json",
                "history",
                rollout,
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        reports = [
            e["verdict"]["report"]
            for e in json.loads(proc.stdout)["events"]
            if (e.get("verdict") or {}).get("verdict") == verdict
        ]
        assert reports, f"{rollout} has no gate report with verdict {verdict}"
        return Path(reports[-1])


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    root = tmp_path_factory.mktemp("demo")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "rolloutctl",
            "--reports-dir",
            str(root / "reports"),
            "demo",
            "--workdir",
            str(root / "work"),
        ],
        capture_output=True,
        text=True,
        env=cli_env(root),
        cwd=root,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return Demo(root / "reports", root / "work" / "state")


DEMO_REPORTS: dict[str, Callable[[Demo], Path]] = {
    "index": lambda d: d.reports / "index.html",
    "rollout-v2": lambda d: d.reports / HEALTHY / "index.html",
    "rollout-v3": lambda d: d.reports / UNSAFE / "index.html",
    "gate-pass-v2": lambda d: d.gate_report(HEALTHY, "pass"),
    "gate-fail-v3": lambda d: d.gate_report(UNSAFE, "fail"),
    "gate-inconclusive-v2": lambda d: d.gate_report(HEALTHY, "inconclusive"),
}


@pytest.mark.parametrize("kind", sorted(DEMO_REPORTS))
def test_demo_report_loads_offline_without_errors(
    render: Render, demo: Demo, tmp_path: Path, kind: str
) -> None:
    path = DEMO_REPORTS[kind](demo)
    assert path.is_file() and path.resolve().is_relative_to(demo.reports.resolve())
    rendered = render(path, tmp_path / f"demo-{kind}.png")
    assert_clean(rendered)
    rollouts = (HEALTHY, UNSAFE) if kind == "index" else (HEALTHY if "v2" in kind else UNSAFE,)
    for rollout in rollouts:
        assert rollout in rendered.text


# ---------------------------------------------------------------- hostile input


def write_playbook(ws: Workspace, change: dict[str, Any], metrics: list[dict[str, Any]]) -> None:
    data = yaml.safe_load(PLAYBOOK)
    data.update(change)
    data["metrics"] = metrics
    ws.playbook.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))


def write_log(ws: Workspace, frame: pd.DataFrame) -> None:
    simulate.write(frame, ws.root / "data" / "p1.parquet")


def start_and_check(ws: Workspace, hours: float) -> dict[str, Any]:
    """`start`, then `check` once the stage's minimum duration has passed: the gate result."""
    started = ws.run("start", str(ws.playbook), now=START)
    assert started.code == 0, started.out + started.err
    checked = ws.run("--json", "check", "shop-answers", now=START + timedelta(hours=hours))
    assert checked.code == 11, checked.out + checked.err  # hold: too early to decide
    result: dict[str, Any] = checked.json()
    assert Path(result["report"]).is_file()
    return result


def test_hostile_playbook_and_log_text_is_shown_never_run(
    render: Render, ws: Workspace, tmp_path: Path
) -> None:
    metrics = yaml.safe_load(PLAYBOOK)["metrics"]
    for metric, title in zip(metrics, HOSTILE.values(), strict=False):
        metric["title"], metric["per_segment"] = title, True
    write_playbook(ws, {"segments": {"dimensions": ["category", "device"]}}, metrics)
    frame = simulate.generate(
        "healthy",
        START,
        START + timedelta(hours=2),
        requests_per_hour=2_000,
        canary_percent=20,
        seed=7,
    )
    frame["category"] = frame["category"].replace(
        {"health": SCRIPT, "shopping": IMG, "travel": LONG}
    )
    frame["device"] = frame["device"].replace({"tablet": SCRIPT})
    write_log(ws, frame)
    result = start_and_check(ws, hours=2)
    report = Path(result["report"])

    source = report.read_text(encoding="utf-8")
    assert SCRIPT not in source and "<img src=x" not in source  # escaped in the file itself
    rendered = render(report, tmp_path / "gate-hostile.png")
    assert_clean(rendered)
    assert rendered.active_content == []
    for name, text in HOSTILE.items():
        assert text in rendered.text, f"{name} string not shown as text"


# ---------------------------------------------------------------- scale

SEGMENTS = 20
METRIC_SHAPES: list[dict[str, Any]] = [
    {
        "kind": "proportion",
        "event": "status = 'error'",
        "worse": "higher",
        "margin": {"absolute": 0.01},
    },
    {
        "kind": "proportion",
        "event": "hallucination",
        "worse": "higher",
        "margin": {"absolute": 0.01},
    },
    {
        "kind": "proportion",
        "event": "task_completed",
        "worse": "lower",
        "margin": {"absolute": 0.02},
    },
    {
        "kind": "proportion",
        "event": "citation_grounded",
        "worse": "lower",
        "margin": {"absolute": 0.02},
    },
    {"kind": "mean", "value": "latency_ms", "worse": "higher", "margin": {"relative": 0.1}},
    {"kind": "mean", "value": "cost_usd", "worse": "higher", "margin": {"relative": 0.2}},
    {"kind": "mean", "value": "output_tokens", "worse": "higher", "margin": {"relative": 0.2}},
    {
        "kind": "quantile",
        "value": "latency_ms",
        "q": 0.9,
        "worse": "higher",
        "margin": {"relative": 0.15},
    },
    {
        "kind": "quantile",
        "value": "ttft_ms",
        "q": 0.5,
        "worse": "higher",
        "margin": {"relative": 0.15},
    },
    {
        "kind": "ratio",
        "numerator": "cost_usd",
        "denominator": "output_tokens",
        "worse": "higher",
        "margin": {"relative": 0.2},
    },
]
GROUPS = ("quality", "technical", "product", "safety")


def fifty_by_twenty_report(ws: Workspace) -> tuple[Path, dict[str, Any], list[str]]:
    """A gate report of 50 metrics x 20 segments (also loaded by benchmarks/bench_report.py):
    its path, the gate result and the segment values."""
    metrics = []
    for i in range(50):
        shape = METRIC_SHAPES[i % len(METRIC_SHAPES)]
        metrics.append(
            {
                "name": f"m{i:02d}_{shape['kind']}",
                "title": f"Metric {i} ({shape['kind']})",
                "group": GROUPS[i % len(GROUPS)],
                "source": "requests",
                "per_segment": True,
                **shape,
            }
        )
    change = {
        "segments": {"dimensions": ["category"]},
        "analysis": {
            "min_samples_per_arm": 500,
            "min_samples_per_segment": 30,
            "expected_samples_per_arm": 2_000,
            "max_segments": 60,
        },
        "stages": [{"name": "half", "traffic": 50, "min_duration": "1h"}],
        "triggers": [],
    }
    write_playbook(ws, change, metrics)
    frame = simulate.generate(
        "healthy",
        START,
        START + timedelta(hours=1),
        requests_per_hour=4_000,
        canary_percent=50,
        seed=11,
    )
    topics = [f"topic-{i:02d}" for i in range(SEGMENTS)]
    frame["category"] = [topics[i % SEGMENTS] for i in range(len(frame))]
    write_log(ws, frame)
    result = start_and_check(ws, hours=1)
    return Path(result["report"]), result, topics


def test_fifty_metrics_by_twenty_segments_is_small_and_loads_cleanly(
    render: Render, ws: Workspace, tmp_path: Path
) -> None:
    """Its load time is a benchmark figure (benchmarks/bench_report.py), not a test."""
    report, result, topics = fifty_by_twenty_report(ws)
    cells = [m for m in result["metrics"] if m["segment"] is not None]
    assert len(cells) == 50 * SEGMENTS

    size = report.stat().st_size
    assert size < MAX_REPORT_BYTES, f"gate report is {size:,} bytes"
    rendered = render(report, tmp_path / "gate-50x20.png")
    assert_clean(rendered)
    assert all(topic in rendered.text for topic in topics)
