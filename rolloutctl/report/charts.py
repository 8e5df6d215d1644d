"""Report charts drawn with matplotlib and inlined as SVG: nothing is fetched, text stays
text (searchable, readable by screen readers through the label), and the same data always
gives the same bytes (fixed hash salt, no date in the metadata).

Colours come from a palette that stays distinguishable in grey-scale and for the common
colour-vision deficiencies (control: dark blue, solid; canary: orange, dashed), and every
chart also has a text label, so colour is never the only carrier of meaning.
"""

from __future__ import annotations

import functools
import io
import math
import re
import threading
import warnings
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, ParamSpec

import matplotlib
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

P = ParamSpec("P")
CONTROL, CANARY, MARGIN, BAND = "#1f3b73", "#d55e00", "#b3261e", "#f0b98d"
_RC: Any = {
    "svg.fonttype": "none",  # text as <text>, not outlines: small files, selectable text
    "font.family": "sans-serif",
    "font.size": 8.5,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "#e6e6e6",
    "grid.linewidth": 0.6,
}


# matplotlib's rc settings are global: charts are drawn one at a time (the warm-up may run
# on a thread while the gate's queries run).
_DRAWING = threading.Lock()
# A segment value or title in a script the font lacks is drawn as a box; matplotlib's warning
# about it would reach the user's terminal, where it means nothing to them.
warnings.filterwarnings("ignore", message=r"Glyph \d+ .* missing from", category=UserWarning)


def _serial(draw: Callable[P, str]) -> Callable[P, str]:
    @functools.wraps(draw)
    def locked(*args: P.args, **kwargs: P.kwargs) -> str:
        with _DRAWING:
            return draw(*args, **kwargs)

    return locked


def _svg(fig: Figure, key: str, label: str) -> str:
    """The figure as an inline <svg> element with an accessible name; ids made unique per key."""
    buffer = io.StringIO()
    settings: Any = {**_RC, "svg.hashsalt": key}
    with matplotlib.rc_context(settings):
        fig.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
    text = buffer.getvalue()
    text = text[text.index("<svg") :]  # drop the XML declaration and DOCTYPE
    safe = (
        label.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;").replace(">", "&gt;")
    )
    text = text.replace("<svg ", f'<svg role="img" aria-label="{safe}" ', 1)
    # Unique ids per chart: several charts share one page.
    prefix = re.sub(r"[^a-zA-Z0-9]", "", key)[:24] or "c"
    text = re.sub(r'id="([^"]+)"', lambda m: f'id="{prefix}-{m.group(1)}"', text)
    text = re.sub(r"url\(#([^)]+)\)", lambda m: f"url(#{prefix}-{m.group(1)})", text)
    text = re.sub(r'xlink:href="#([^"]+)"', lambda m: f'xlink:href="#{prefix}-{m.group(1)}"', text)
    return text


def _new(width: float, height: float, **adjust: float) -> Figure:
    """A figure with fixed margins (a layout engine would cost more than the drawing)."""
    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=(width, height), dpi=72)
    fig.subplots_adjust(**{"left": 0.08, "right": 0.98, "top": 0.88, "bottom": 0.2, **adjust})
    return fig


def _few_ticks(*axes: Any) -> None:
    """Four ticks per axis: enough to read, and tick layout is most of the drawing time."""
    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(4))
        ax.yaxis.set_major_locator(MaxNLocator(4))


def _hours(times: Sequence[str]) -> list[float]:
    start = datetime.fromisoformat(times[0])
    return [(datetime.fromisoformat(t) - start).total_seconds() / 3600 for t in times]


@_serial
def metric_over_time(
    key: str, title: str, points: list[dict[str, Any]], *, percent: bool, relative: bool, worse: str
) -> str:
    """Both arms' values over the stage (left), and the canary-minus-control estimate with
    its always-valid interval narrowing against the margin (right)."""
    with matplotlib.rc_context(_RC):
        fig = _new(7.2, 2.2, wspace=0.28)
        left, right = fig.subplots(1, 2)
        if points:
            x = [0.0, *_hours([p["time"] for p in points])][1:]
            scale = 100.0 if percent else 1.0
            left.plot(
                x,
                [_f(p["control"]) * scale for p in points],
                color=CONTROL,
                lw=1.6,
                label="control",
            )
            left.plot(
                x,
                [_f(p["canary"]) * scale for p in points],
                color=CANARY,
                lw=1.6,
                ls="--",
                label="canary",
            )
            left.legend(frameon=False, loc="upper right")
            est_scale = 100.0 if (percent or relative) else 1.0
            lo = [_f(p["ci_low"]) * est_scale for p in points]
            hi = [_f(p["ci_high"]) * est_scale for p in points]
            right.fill_between(
                x, lo, hi, color=BAND, alpha=0.6, lw=0, label="always-valid interval"
            )
            right.plot(
                x,
                [_f(p["estimate"]) * est_scale for p in points],
                color=CANARY,
                lw=1.4,
                label="estimate",
            )
            margin = _f(points[-1]["margin"]) * est_scale
            right.axhline(margin, color=MARGIN, lw=1.2, ls=":", label="margin")
            right.axhline(0, color="#888888", lw=0.8)
            right.legend(frameon=False, loc="upper right", fontsize=7)
            finite = [v for v in (*lo, *hi) if math.isfinite(v)]
            if finite:  # keep the margin and zero in view without letting early looks dominate
                tail = finite[len(finite) // 3 :] or finite
                low, high = min(*tail, margin, 0.0), max(*tail, margin, 0.0)
                pad = (high - low) * 0.15 or 1.0
                right.set_ylim(low - pad, high + pad)
        left.set_title(f"{title}: value per arm", loc="left")
        unit = " (%)" if percent else ""
        left.set_ylabel("value" + unit)
        right.set_title(
            "canary − control" + (" (relative, %)" if relative else " (pt)" if percent else ""),
            loc="left",
        )
        for ax in (left, right):
            ax.set_xlabel("hours since the stage began")
        _few_ticks(left, right)
    label = f"{title} over the stage: control and canary, and the estimate with its interval"
    return _svg(fig, key, label)


@_serial
def distributions(
    key: str, title: str, control: dict[int, int], canary: dict[int, int], gamma: float
) -> str:
    """Both arms' distributions (e.g. latency) as densities on a log axis."""
    with matplotlib.rc_context(_RC):
        fig = _new(7.2, 2.2)
        ax = fig.subplots()
        for counts, colour, style, name in (
            (control, CONTROL, "-", "control"),
            (canary, CANARY, "--", "canary"),
        ):
            total = sum(counts.values())
            positive = sorted(b for b in counts if b > -(10**5))
            if not total or not positive:
                continue
            edges = [gamma**b for b in positive]
            share = [counts[b] / total / (gamma ** (b + 1) - gamma**b) for b in positive]
            ax.step(
                edges,
                share,
                where="post",
                color=colour,
                ls=style,
                lw=1.3,
                label=f"{name} (n = {total:,})",
            )
        ax.set_xscale("log")
        ax.set_yticks([])
        ax.set_title(f"{title}: distribution of each arm", loc="left")
        ax.set_xlabel("value (log scale)")
        if ax.get_lines():  # an arm with no values draws nothing to name
            ax.legend(frameon=False)
    return _svg(fig, key, f"{title}: distributions of control and canary overlaid")


@_serial
def traffic(key: str, steps: list[tuple[str, float, str]]) -> str:
    """The canary's share over the rollout, one step per recorded change."""
    with matplotlib.rc_context(_RC):
        fig = _new(7.2, 1.8, bottom=0.24)
        ax = fig.subplots()
        if steps:
            x = _hours([t for t, _, _ in steps])
            ax.step(x, [p for _, p, _ in steps], where="post", color=CANARY, lw=1.8)
            for xi, (_, p, name) in zip(x, steps, strict=True):
                ax.annotate(name, (xi, p), textcoords="offset points", xytext=(2, 4), fontsize=7)
        ax.set_ylim(0, 105)
        ax.set_ylabel("canary %")
        ax.set_xlabel("hours since the rollout started")
        ax.set_title("Traffic to the canary", loc="left")
    return _svg(fig, key, "Traffic to the canary over the rollout")


def _f(value: Any) -> float:
    return float(value) if isinstance(value, int | float) else math.nan


def warm_up() -> None:
    """Draw one tiny chart: loads the fonts and the SVG backend before a report needs them."""
    traffic(
        "warm", [("2026-01-01T00:00:00+00:00", 1.0, "x"), ("2026-01-01T01:00:00+00:00", 5.0, "y")]
    )
