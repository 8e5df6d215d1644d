"""The hand-drawn SVG charts: round ticks, gaps where data is missing, well-formed markup
whose points land inside their panel."""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET

import pytest

from rolloutctl.report import charts, svg

NS = {"s": "http://www.w3.org/2000/svg"}


@pytest.mark.parametrize(
    ("low", "high", "expected"),
    [
        (0.0, 105.0, [0.0, 25.0, 50.0, 75.0, 100.0]),
        (0.0, 10.0, [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]),
        (0.0, 12.0, [0.0, 2.5, 5.0, 7.5, 10.0]),
        (-0.013, 0.021, [-0.01, 0.0, 0.01, 0.02]),
        (4.62, 5.71, [4.75, 5.0, 5.25, 5.5]),
    ],
)
def test_ticks_are_round_and_inside_the_range(
    low: float, high: float, expected: list[float]
) -> None:
    assert svg.nice_ticks(low, high) == pytest.approx(expected)


def test_tick_labels_carry_the_decimals_their_spacing_needs() -> None:
    assert [svg.tick_text(v, 2.5) for v in (0.0, 2.5, 5.0, 7.5)] == ["0", "2.5", "5.0", "7.5"]
    assert svg.tick_text(5.25, 0.25) == "5.25"
    assert svg.tick_text(12000.0, 2000.0) == "12,000"
    assert svg.log_ticks(150.0, 20000.0) == [1000.0, 10000.0]
    assert svg.log_ticks(150.0, 900.0) == [200.0, 500.0]


def _paths(text: str) -> list[str]:
    root = ET.fromstring(text)
    return [p.get("d", "") for p in root.iter("{http://www.w3.org/2000/svg}path")]


def _stroked(text: str, colour: str) -> list[ET.Element]:
    """The paths drawn in a colour (lines and legend samples)."""
    return [p for p in ET.fromstring(text).iter(f"{{{NS['s']}}}path") if p.get("stroke") == colour]


def _point(i: int, control: float | None) -> dict[str, object]:
    return {
        "time": f"2026-03-02T{9 + i:02d}:00:00+00:00",
        "control": control,
        "canary": 0.012,
        "estimate": 0.001,
        "ci_low": -0.01 / (i + 1),
        "ci_high": 0.01 / (i + 1),
        "margin": 0.005,
    }


def test_a_missing_look_breaks_the_line_instead_of_bridging_it() -> None:
    whole = charts.metric_over_time(
        "k",
        "error rate",
        [_point(i, 0.01) for i in range(6)],
        percent=True,
        relative=False,
    )
    gap = charts.metric_over_time(
        "k",
        "error rate",
        [_point(i, None if i == 3 else 0.01) for i in range(6)],
        percent=True,
        relative=False,
    )
    assert len(_stroked(whole, charts.CONTROL)) == 2  # the line and its legend sample
    assert len(_stroked(gap, charts.CONTROL)) == 3  # two stretches and the legend sample


def test_every_point_lands_inside_its_panel() -> None:
    points = [_point(i, 0.01 + 0.001 * i) for i in range(12)]
    text = charts.metric_over_time("k", "error rate", points, percent=True, relative=False)
    root = ET.fromstring(text)
    width, height = (float(v) for v in root.get("viewBox", "").split()[2:])
    for p in root.findall("s:path", NS):  # grid, axes and legend (outside the clipped marks)
        for x, y in re.findall(r"(-?[\d.]+),(-?[\d.]+)", p.get("d", "")):
            assert 0 <= float(x) <= width and 0 <= float(y) <= height, p.get("d")
    left = svg.Panel(58, 28, 282, 150)  # the panel of values per arm, as charts draws it
    marks = root.findall("s:g", NS)[0]  # the left panel's lines, one per arm
    assert len(marks.findall("s:path", NS)) == 2
    for p in marks.findall("s:path", NS):
        for x, y in re.findall(r"(-?[\d.]+),(-?[\d.]+)", p.get("d", "")):
            assert left.left <= float(x) <= left.left + left.width
            assert left.top <= float(y) <= left.top + left.height
    assert root.find("s:title", NS) is not None
    assert root.get("role") == "img" and "error rate" in root.get("aria-label", "")


def test_a_distribution_with_one_empty_arm_draws_the_other() -> None:
    gamma = 1.01
    counts = {int(math.log(v) / math.log(gamma)): 10 for v in (100, 200, 400, 800)}
    text = charts.distributions("d", "latency", counts, {}, gamma)
    root = ET.fromstring(text)
    texts = [t.text or "" for t in root.iter("{http://www.w3.org/2000/svg}text")]
    assert "control (n = 40)" in texts and not any("canary" in t for t in texts)


def test_traffic_labels_each_step_and_is_not_clipped() -> None:
    steps = [
        ("2026-03-02T00:00:00+00:00", 1.0, "canary-1"),
        ("2026-03-02T04:00:00+00:00", 100.0, "full <all>"),
    ]
    text = charts.traffic("t", steps)
    root = ET.fromstring(text)
    clipped = root.find("s:g", NS)
    assert clipped is not None
    outside = [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")]
    assert "full <all>" in outside  # escaped in the markup, read back whole
    assert all(t.text != "full <all>" for t in clipped.iter("{http://www.w3.org/2000/svg}text"))


@pytest.mark.parametrize(
    "points",
    [
        [],
        [_point(0, 0.01)],
        [{**_point(0, None), "canary": None, "estimate": None, "ci_low": None, "ci_high": None}],
        [{**_point(i, 0.01), "ci_low": None, "ci_high": None} for i in range(3)],
    ],
    ids=["no looks", "one look", "nothing measured", "no interval"],
)
def test_a_chart_with_little_or_no_data_is_still_a_picture(points: list[dict[str, object]]) -> None:
    text = charts.metric_over_time("k", "error rate", points, percent=True, relative=False)
    ET.fromstring(text)  # well-formed
    assert not re.search(r"nan|inf", text, re.IGNORECASE), text


def test_empty_distributions_and_a_single_traffic_step_draw() -> None:
    for text in (
        charts.distributions("d", "latency", {}, {}, 1.01),
        charts.distributions("d", "latency", {-1_000_000: 5, 10: 3}, {}, 1.01),
        charts.traffic("t", [("2026-03-02T09:00:00+00:00", 5.0, "c1")]),
    ):
        ET.fromstring(text)
        assert not re.search(r"nan|inf", text, re.IGNORECASE), text


def test_a_step_label_near_the_right_edge_reads_leftward() -> None:
    steps = [
        ("2026-03-02T00:00:00+00:00", 0.0, "smoke"),
        ("2026-03-02T04:00:00+00:00", 100.0, "post-launch-monitoring"),
    ]
    root = ET.fromstring(charts.traffic("t", steps))
    labels = {t.text: t for t in root.iter("{http://www.w3.org/2000/svg}text")}
    assert labels["smoke"].get("text-anchor") is None  # room on the right
    last = labels["post-launch-monitoring"]
    assert last.get("text-anchor") == "end"
    assert float(last.get("x", "0")) <= float(root.get("viewBox", "").split()[2])
