"""A small SVG plotter for the report's charts: line, band and step series on linear or log
axes, with ticks, grid, titles and a legend. The charts need no more than this, and drawing
it by hand takes milliseconds where matplotlib took most of a second (figures in
benchmarks/bench_charts.py).

Every number is rounded to a tenth of a pixel, so the same data gives the same bytes."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from xml.sax.saxutils import escape, quoteattr

FONT = "font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif"
GRID, AXIS, TEXT = "#e6e6e6", "#888888", "#222222"


def _n(value: float) -> str:
    """A coordinate as SVG text: a tenth of a pixel, no trailing zeros."""
    text = f"{value:.1f}"
    return text[:-2] if text.endswith(".0") else text


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About `count` round values (1, 2, 2.5 or 5 times a power of ten apart) covering
    [low, high]."""
    if not (math.isfinite(low) and math.isfinite(high)) or high <= low:
        return [low] if math.isfinite(low) else []
    raw = (high - low) / max(1, count)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    first = math.ceil(low / step - 1e-9) * step
    ticks, i = [], 0
    while first + i * step <= high + step * 1e-9:
        ticks.append(round(first + i * step, 12))
        i += 1
    return ticks


def log_ticks(low: float, high: float) -> list[float]:
    """Powers of ten within [low, high]; with 1, 2 and 5 times them when fewer than two."""
    if low <= 0 or high <= low:
        return []
    decades = range(math.floor(math.log10(low)), math.ceil(math.log10(high)) + 1)
    powers = [10.0**k for k in decades if low <= 10.0**k <= high]
    if len(powers) >= 2:
        return powers
    return [m * 10.0**k for k in decades for m in (1, 2, 5) if low <= m * 10.0**k <= high]


def tick_text(value: float, step: float) -> str:
    """A tick label with as many decimals as the spacing between ticks needs."""
    if value == 0:
        return "0"
    if abs(value) >= 1e6 or abs(value) < 1e-4:
        return f"{value:.0e}".replace("e+0", "e").replace("e-0", "e-")
    decimals = next((d for d in range(7) if abs(step * 10**d - round(step * 10**d)) < 1e-6), 6)
    return f"{value:,.{decimals}f}"


@dataclass
class Scale:
    """Data values to pixels along one axis."""

    low: float
    high: float
    start: float  # the pixel of `low`
    end: float  # the pixel of `high`
    log: bool = False

    def __call__(self, value: float) -> float:
        low, high, v = self.low, self.high, value
        if self.log:
            low, high, v = math.log10(low), math.log10(high), math.log10(value)
        return self.start + (v - low) / (high - low) * (self.end - self.start)

    def ticks(self) -> list[float]:
        if self.log:
            return log_ticks(self.low, self.high)
        return nice_ticks(self.low, self.high)


def span(values: Sequence[float], *, pad: float = 0.05, log: bool = False) -> tuple[float, float]:
    """A range covering the finite values with a margin; a flat or empty series gets one."""
    finite = [v for v in values if math.isfinite(v) and (v > 0 or not log)]
    if not finite:
        return (1.0, 10.0) if log else (0.0, 1.0)
    low, high = min(finite), max(finite)
    if log:
        return low / 1.1, high * 1.1
    if high == low:
        width = abs(low) * 0.1 or 1.0
        return low - width, high + width
    margin = (high - low) * pad
    return low - margin, high + margin


def runs(xs: Sequence[float], ys: Sequence[float]) -> Iterator[list[tuple[float, float]]]:
    """The finite stretches of a series: a missing value breaks the line, as no data should."""
    current: list[tuple[float, float]] = []
    for x, y in zip(xs, ys, strict=True):
        if math.isfinite(x) and math.isfinite(y):
            current.append((x, y))
        elif current:
            yield current
            current = []
    if current:
        yield current


@dataclass(frozen=True)
class Pen:
    """How a line is stroked."""

    colour: str
    width: float = 1.5
    dash: str = ""  # SVG stroke-dasharray; "" draws solid

    @property
    def stroke(self) -> str:
        dash = f' stroke-dasharray="{self.dash}"' if self.dash else ""
        return f'stroke="{self.colour}" stroke-width="{self.width}"{dash}'


@dataclass
class Entry:
    """A legend line: a pen's sample, or a filled swatch."""

    label: str
    pen: Pen
    fill: bool = False


@dataclass
class Panel:
    """One plotting area: its pixel box, its scales, and what is drawn in it."""

    left: float
    top: float
    width: float
    height: float
    x: Scale = field(init=False)
    y: Scale = field(init=False)
    title: str = ""
    x_label: str = ""
    y_label: str = ""
    y_ticks: bool = True
    marks: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # text beside points, never clipped
    legend: list[Entry] = field(default_factory=list)

    def scales(
        self,
        x: tuple[float, float],
        y: tuple[float, float],
        *,
        x_log: bool = False,
        y_log: bool = False,
    ) -> None:
        self.x = Scale(*x, self.left, self.left + self.width, x_log)
        self.y = Scale(*y, self.top + self.height, self.top, y_log)

    def _path(self, points: Sequence[tuple[float, float]]) -> str:
        return "M" + "L".join(f"{_n(self.x(x))},{_n(self.y(y))}" for x, y in points)

    def line(self, xs: Sequence[float], ys: Sequence[float], pen: Pen, label: str = "") -> None:
        for points in runs(xs, ys):
            if len(points) == 1:  # a lone look: a dot, or it would not show at all
                x, y = points[0]
                self.marks.append(
                    f'<circle cx="{_n(self.x(x))}" cy="{_n(self.y(y))}"'
                    f' r="{_n(pen.width * 1.2)}" fill="{pen.colour}"/>'
                )
                continue
            self.marks.append(
                f'<path d="{self._path(points)}" fill="none" {pen.stroke} stroke-linejoin="round"/>'
            )
        if label:
            self.legend.append(Entry(label, pen))

    def step(
        self,
        xs: Sequence[float],
        ys: Sequence[float],
        pen: Pen,
        label: str = "",
        until: float | None = None,
    ) -> None:
        """A step line: each value holds until the next x (the last until `until`)."""
        points: list[tuple[float, float]] = []
        for i, (x, y) in enumerate(zip(xs, ys, strict=True)):
            nxt = xs[i + 1] if i + 1 < len(xs) else (x if until is None else until)
            points += [(x, y), (nxt, y)]
        self.line([p[0] for p in points], [p[1] for p in points], pen, label)

    def band(
        self,
        xs: Sequence[float],
        low: Sequence[float],
        high: Sequence[float],
        colour: str,
        *,
        opacity: float = 0.6,
        label: str = "",
    ) -> None:
        finite = [math.isfinite(a) and math.isfinite(b) for a, b in zip(low, high, strict=True)]
        ok = [x if f else math.nan for x, f in zip(xs, finite, strict=True)]
        for stretch in runs(ok, low):
            first, last = stretch[0][0], stretch[-1][0]
            edge = [
                (x, h) for x, h, f in zip(xs, high, finite, strict=True) if f and first <= x <= last
            ]
            outline = stretch + edge[::-1]
            self.marks.append(
                f'<path d="{self._path(outline)}Z" fill="{colour}" fill-opacity="{opacity}"'
                ' stroke="none"/>'
            )
        if label:
            self.legend.append(Entry(label, Pen(colour), fill=True))

    def hline(self, y: float, pen: Pen, label: str = "") -> None:
        if not math.isfinite(y) or not (
            min(self.y.low, self.y.high) <= y <= max(self.y.low, self.y.high)
        ):
            return
        py = _n(self.y(y))
        self.marks.append(
            f'<path d="M{_n(self.left)},{py}H{_n(self.left + self.width)}" {pen.stroke}/>'
        )
        if label:
            self.legend.append(Entry(label, pen))

    def note(self, x: float, y: float, text: str) -> None:
        """A small label beside a point: to its right, or to its left where it would run
        past the panel (its width guessed at 5.5 px a character)."""
        px = self.x(x)
        fits = px + 2 + 5.5 * len(text) <= self.left + self.width
        anchor = f'x="{_n(px + 2)}"' if fits else f'x="{_n(px - 2)}" text-anchor="end"'
        self.notes.append(
            f'<text {anchor} y="{_n(self.y(y) - 4)}" font-size="9" fill="{TEXT}">'
            f"{escape(text)}</text>"
        )

    def render(self, clip: str) -> str:
        return "".join(
            [
                self._grid(),
                f'<g clip-path="url(#{clip})">{"".join(self.marks)}</g>',
                f'<clipPath id="{clip}"><rect x="{_n(self.left)}" y="{_n(self.top - 2)}"'
                f' width="{_n(self.width)}" height="{_n(self.height + 4)}"/></clipPath>',
                "".join(self.notes),
                self._labels(),
                self._legend(),
            ]
        )

    def _grid(self) -> str:
        parts = []
        bottom = self.top + self.height
        x_ticks = self.x.ticks()
        x_step = x_ticks[1] - x_ticks[0] if len(x_ticks) > 1 else 1.0
        for t in x_ticks:
            px = _n(self.x(t))
            parts.append(f'<path d="M{px},{_n(self.top)}V{_n(bottom)}" stroke="{GRID}"/>')
            text = f"{t:g}" if self.x.log else tick_text(t, x_step)
            parts.append(f'<text x="{px}" y="{_n(bottom + 12)}" text-anchor="middle">{text}</text>')
        if self.y_ticks:
            y_ticks = self.y.ticks()
            y_step = y_ticks[1] - y_ticks[0] if len(y_ticks) > 1 else 1.0
            for t in y_ticks:
                py = _n(self.y(t))
                parts.append(
                    f'<path d="M{_n(self.left)},{py}H{_n(self.left + self.width)}"'
                    f' stroke="{GRID}"/>'
                )
                parts.append(
                    f'<text x="{_n(self.left - 4)}" y="{_n(self.y(t) + 3)}"'
                    f' text-anchor="end">{tick_text(t, y_step)}</text>'
                )
        parts.append(
            f'<path d="M{_n(self.left)},{_n(self.top)}V{_n(bottom)}H{_n(self.left + self.width)}"'
            f' fill="none" stroke="{AXIS}"/>'
        )
        return "".join(parts)

    def _labels(self) -> str:
        parts = [
            f'<text x="{_n(self.left)}" y="{_n(self.top - 8)}" font-size="11">'
            f"{escape(self.title)}</text>"
        ]
        if self.x_label:
            parts.append(
                f'<text x="{_n(self.left + self.width / 2)}" y="{_n(self.top + self.height + 26)}"'
                f' text-anchor="middle">{escape(self.x_label)}</text>'
            )
        if self.y_label:
            cx, cy = self.left - 38, self.top + self.height / 2
            parts.append(
                f'<text x="{_n(cx)}" y="{_n(cy)}" text-anchor="middle"'
                f' transform="rotate(-90 {_n(cx)} {_n(cy)})">{escape(self.y_label)}</text>'
            )
        return "".join(parts)

    def _legend(self) -> str:
        parts = []
        right = self.left + self.width - 4
        for i, entry in enumerate(self.legend):
            y = self.top + 8 + i * 12
            x0 = right - 22
            if entry.fill:
                sample = (
                    f'<rect x="{_n(x0)}" y="{_n(y - 4)}" width="18" height="8"'
                    f' fill="{entry.pen.colour}" fill-opacity="0.6"/>'
                )
            else:  # every sample as wide, so thin lines still show their colour
                stroke = replace(entry.pen, width=1.6).stroke
                sample = f'<path d="M{_n(x0)},{_n(y)}h18" {stroke}/>'

            parts.append(
                f'{sample}<text x="{_n(x0 - 4)}" y="{_n(y + 3)}" text-anchor="end">'
                f"{escape(entry.label)}</text>"
            )
        return "".join(parts)


def figure(width: float, height: float, panels: Sequence[Panel], key: str, label: str) -> str:
    """The panels as one inline <svg>: an accessible name, text as text, ids unique per key."""
    prefix = "".join(c for c in key if c.isalnum())[:24] or "c"
    body = "".join(p.render(f"{prefix}-clip{i}") for i, p in enumerate(panels))
    return (
        f'<svg role="img" aria-label={quoteattr(label)} xmlns="http://www.w3.org/2000/svg"'
        f' viewBox="0 0 {_n(width)} {_n(height)}" width="{_n(width)}" height="{_n(height)}"'
        f' font-size="9.5" fill="{TEXT}" style="{FONT}">'
        f"<title>{escape(label)}</title>{body}</svg>"
    )
