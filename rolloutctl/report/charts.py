"""Report charts as inline SVG, drawn by `report/svg.py`: nothing is fetched, text stays text
(searchable, readable by screen readers through the label), and the same data always gives
the same bytes.

Colours come from a palette that stays distinguishable in grey-scale and for the common
colour-vision deficiencies (control: dark blue, solid; canary: orange, dashed), and every
chart also has a text label, so colour is never the only carrier of meaning.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from rolloutctl.report.svg import Panel, Pen, figure, span

CONTROL, CANARY, MARGIN, BAND = "#1f3b73", "#d55e00", "#b3261e", "#f0b98d"
DASHED, DOTTED = "5 3", "1.5 2.5"
WIDTH = 720.0


def _hours(times: Sequence[str]) -> list[float]:
    start = datetime.fromisoformat(times[0])
    return [(datetime.fromisoformat(t) - start).total_seconds() / 3600 for t in times]


def _f(value: Any) -> float:
    return float(value) if isinstance(value, int | float) else math.nan


def _estimate_range(lo: list[float], hi: list[float], margin: float) -> tuple[float, float]:
    """Keep the margin and zero in view without letting the wide early looks dominate."""
    finite = [v for v in (*lo, *hi) if math.isfinite(v)]
    tail = finite[len(finite) // 3 :] or finite
    shown = [*tail, *(v for v in (margin, 0.0) if math.isfinite(v))]
    low, high = min(shown), max(shown)
    pad = (high - low) * 0.15 or 1.0
    return low - pad, high + pad


def metric_over_time(
    key: str, title: str, points: list[dict[str, Any]], *, percent: bool, relative: bool
) -> str:
    """Both arms' values over the stage (left), and the canary-minus-control estimate with
    its always-valid interval narrowing against the margin (right)."""
    height = 220.0
    left = Panel(58, 28, 282, 150, title=f"{title}: value per arm")
    right = Panel(428, 28, 282, 150)
    left.y_label = "value (%)" if percent else "value"
    right.title = "canary − control" + (
        " (relative, %)" if relative else " (pt)" if percent else ""
    )
    for panel in (left, right):
        panel.x_label = "hours since the stage began"
    x = _hours([p["time"] for p in points]) if points else []
    scale = 100.0 if percent else 1.0
    est_scale = 100.0 if (percent or relative) else 1.0
    control = [_f(p["control"]) * scale for p in points]
    canary = [_f(p["canary"]) * scale for p in points]
    lo = [_f(p["ci_low"]) * est_scale for p in points]
    hi = [_f(p["ci_high"]) * est_scale for p in points]
    estimate = [_f(p["estimate"]) * est_scale for p in points]
    margin = _f(points[-1]["margin"]) * est_scale if points else math.nan
    x_range = span(x, pad=0.02)
    left.scales(x_range, span([*control, *canary]))
    right.scales(x_range, _estimate_range(lo, hi, margin))
    left.line(x, control, Pen(CONTROL, 1.6), "control")
    left.line(x, canary, Pen(CANARY, 1.6, DASHED), "canary")
    right.band(x, lo, hi, BAND, label="always-valid interval")
    right.line(x, estimate, Pen(CANARY, 1.4), "estimate")
    right.hline(margin, Pen(MARGIN, 1.2, DOTTED), "margin")
    right.hline(0.0, Pen("#888888", 0.8))
    label = f"{title} over the stage: control and canary, and the estimate with its interval"
    return figure(WIDTH, height, [left, right], key, label)


def distributions(
    key: str, title: str, control: dict[int, int], canary: dict[int, int], gamma: float
) -> str:
    """Both arms' distributions (e.g. latency) as densities on a log axis."""
    panel = Panel(20, 28, 690, 150, title=f"{title}: distribution of each arm", y_ticks=False)
    panel.x_label = "value (log scale)"
    drawn: list[tuple[list[float], list[float], str, str, str]] = []
    for counts, colour, dash, name in (
        (control, CONTROL, "", "control"),
        (canary, CANARY, DASHED, "canary"),
    ):
        total = sum(counts.values())
        positive = sorted(b for b in counts if b > -(10**5))
        if not total or not positive:
            continue
        edges = [gamma**b for b in positive]
        share = [counts[b] / total / (gamma ** (b + 1) - gamma**b) for b in positive]
        drawn.append((edges, share, colour, dash, f"{name} (n = {total:,})"))
    xs = [e for edges, *_ in drawn for e in edges]
    ys = [s for _, share, *_ in drawn for s in share]
    panel.scales(span(xs, log=True), (0.0, max(ys, default=1.0) * 1.08 or 1.0), x_log=True)
    for edges, share, colour, dash, name in drawn:
        panel.step(edges, share, Pen(colour, 1.3, dash), name, until=edges[-1] * gamma)
    return figure(
        WIDTH, 220.0, [panel], key, f"{title}: distributions of control and canary overlaid"
    )


def traffic(key: str, steps: list[tuple[str, float, str]]) -> str:
    """The canary's share over the rollout, one step per recorded change."""
    panel = Panel(58, 28, 652, 112, title="Traffic to the canary")
    panel.y_label, panel.x_label = "canary %", "hours since the rollout started"
    x = _hours([t for t, _, _ in steps]) if steps else []
    panel.scales(span(x, pad=0.04), (0.0, 105.0))
    panel.step(x, [p for _, p, _ in steps], Pen(CANARY, 1.8))
    for xi, (_, p, name) in zip(x, steps, strict=True):
        panel.note(xi, p, name)
    return figure(WIDTH, 180.0, [panel], key, "Traffic to the canary over the rollout")
