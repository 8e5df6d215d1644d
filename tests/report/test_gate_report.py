"""Gate and rollout reports through the real CLI: what a reader sees first, the evidence,
and re-rendering from the stored records."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

from rolloutctl.report import charts
from rolloutctl.report.evidence import interval_for
from tests.conftest import START, Workspace


def _rolled_back(ws: Workspace) -> tuple[Path, dict[str, object]]:
    assert ws.run("start", str(ws.playbook), now=START).code == 0
    ws.log("hallucination_regression", START, 2, 20, "p1", seed=4)
    result = ws.run("--json", "advance", "shop-answers", now=START + timedelta(hours=2))
    assert result.code == 10, result.err
    data = result.json()
    return Path(data["report"]), data


def _text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_the_decision_comes_first_with_where_and_by_how_much(ws: Workspace) -> None:
    path, data = _rolled_back(ws)
    html = path.read_text()
    decision = html[html.index('class="decision') :].split("</div>", 1)[0]
    sentence = _text(decision)
    assert "Rolled back at c1: hallucination rate rose" in sentence
    assert "→" in sentence and "margin" in sentence and "adjusted p" in sentence
    # The evidence: every deciding metric over the stage, and the latency distributions.
    deciding = [m for m in data["metrics"] if m["segment"] is None and not m["advisory"]]  # type: ignore[index, union-attr]
    assert html.count('aria-label="') >= len(deciding) + 1
    assert "hallucination rate over the stage" in html
    assert "p95 latency ms: distributions of control and canary overlaid" in html
    # The heat map calls out the worst cells, and every cell carries a text verdict.
    assert "Worst cells" in html and "✗" in html
    assert html.count("Rendered ") == 1  # the one line that may differ between renders


def test_a_query_that_served_several_metrics_is_shown_once_with_their_names(
    ws: Workspace,
) -> None:
    path, data = _rolled_back(ws)
    html = path.read_text()
    queries = html[html.index("<h2>Queries</h2>") : html.index("<h2>Audit")]
    shown = re.findall(r"<p><strong>([^<]*)</strong></p><pre>", queries)
    overall = [m for m in data["metrics"] if m["segment"] is None and m["query"]]  # type: ignore[index, union-attr]
    assert len(shown) == len({m["query"] for m in overall}) < len(overall)  # type: ignore[index]
    names = [n for line in shown for n in line.split(", ")]
    assert sorted(names) == sorted(m["name"] for m in overall)  # type: ignore[index]
    assert any("error_rate" in line and "hallucination_rate" in line for line in shown)


def test_check_says_what_it_would_do_without_doing_it(ws: Workspace) -> None:
    assert ws.run("start", str(ws.playbook), now=START).code == 0
    ws.log("hallucination_regression", START, 2, 20, "p1", seed=4)
    result = ws.run("--json", "check", "shop-answers", now=START + timedelta(hours=2))
    assert result.code == 10
    html = Path(result.json()["report"]).read_text()
    assert "Checked c1: would rollback" in _text(html)
    assert ws.state()["status"] == "running"


def test_report_rerenders_the_same_pages_from_the_records(ws: Workspace) -> None:
    path, _ = _rolled_back(ws)
    first = path.read_bytes()
    index = (path.parent / "index.html").read_text()
    assert path.name in index and "Traffic to the canary" in index
    path.unlink()
    again = ws.run("report", "shop-answers", now=START + timedelta(days=3))
    assert again.code == 0, again.err
    second = path.read_bytes()

    def without_rendered_line(page: bytes) -> list[bytes]:
        return [line for line in page.splitlines() if b"Rendered " not in line]

    assert without_rendered_line(first) == without_rendered_line(second)
    assert first != second  # only the rendered-at line differs
    records = list((ws.root / "state" / "shop-answers" / "gates").glob("*.json"))
    assert [r.stem for r in records] == [path.stem]


def test_charts_are_deterministic_svg_with_unique_ids() -> None:
    points = [
        {
            "time": f"2026-01-01T0{h}:00:00+00:00",
            "control": 0.01,
            "canary": 0.012,
            "estimate": 0.002,
            "ci_low": -0.01 / (h + 1),
            "ci_high": 0.01 / (h + 1),
            "margin": 0.005,
        }
        for h in range(1, 6)
    ]
    one = charts.metric_over_time("a", "error <rate>", points, percent=True, relative=False)
    two = charts.metric_over_time("a", "error <rate>", points, percent=True, relative=False)
    other = charts.metric_over_time("b", "error <rate>", points, percent=True, relative=False)
    assert one == two and one.startswith("<svg")
    assert "<rate>" not in one and "&lt;rate&gt;" in one  # titles are escaped text
    ids_a = set(re.findall(r'id="([^"]+)"', one))
    ids_b = set(re.findall(r'id="([^"]+)"', other))
    assert ids_a and not ids_a & ids_b


def test_time_series_intervals_are_round() -> None:
    assert interval_for(timedelta(hours=2)) == timedelta(minutes=5)
    assert interval_for(timedelta(hours=6)) == timedelta(minutes=15)
    assert interval_for(timedelta(days=1)) == timedelta(hours=1)
    assert timedelta(days=30) / interval_for(timedelta(days=30)) <= 24
