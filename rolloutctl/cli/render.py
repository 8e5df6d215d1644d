"""Human-readable rendering with rich (imported only by commands that show tables).

Every string from data (rollout, stage, metric titles, segment values, notes, reasons, paths)
goes through `_text`: control characters removed (`terminal.clean`) and rich markup escaped, so
a segment value such as `[bold]x[/bold]` or `[link=...]` prints literally; emoji codes are off
for the same reason (`:warning:` stays text)."""

from __future__ import annotations

from typing import Any

from rich.console import Console, Group, RenderableType
from rich.markup import escape
from rich.table import Table

from rolloutctl import formatting as fmt
from rolloutctl.cli import output
from rolloutctl.cli.terminal import clean

_STYLE = {"pass": "green", "fail": "bold red", "inconclusive": "yellow", "error": "magenta"}
COMPARED = ("proportion", "mean", "quantile", "ratio")  # rows comparing two arms


def _text(value: Any) -> str:
    """Data as rich markup that prints exactly that text, minus control characters."""
    return escape(clean(str(value)))


def _seg(m: Any) -> str:
    return "" if m.segment is None else _text(", ".join(f"{k}={v}" for k, v in m.segment.items()))


def _window(result: Any) -> str:
    """The window the gate compared: the stage so far, or a monitor's recent window (whose
    length is the playbook's `window:`, not the time since the stage began)."""
    window = getattr(result, "window", None) or {}
    if "baseline_end" in window:
        from datetime import datetime

        from rolloutctl.durations import format_duration

        try:
            start, end = (datetime.fromisoformat(window[k]) for k in ("start", "end"))
        except (KeyError, TypeError, ValueError):
            return str(result.elapsed)
        return format_duration(end - start)
    return str(result.elapsed)


def console(*, stderr: bool = False) -> Console:
    """The console every command prints through: no emoji codes, no automatic highlighting
    (bold numbers and paths), and no colour at all under NO_COLOR or --no-color."""
    output.finished()
    plain = output.CURRENT.no_color  # set by --no-color or NO_COLOR (cli/entry.py)
    return Console(
        stderr=stderr, emoji=False, highlight=False, color_system=None if plain else "auto"
    )


def gate_view(result: Any, width: int) -> RenderableType:
    """The gate's table when it fits in `width` columns with every figure whole; else the
    same figures a metric at a time, each on its own line (an 80-column CI log)."""
    table = gate_table(result)
    if _fits(table, width):
        return table
    return _stacked(result, width)


def _fits(table: Table, width: int) -> bool:
    for column in table.columns:
        column.no_wrap = True
    probe = Console(width=10_000, emoji=False, highlight=False, color_system=None)
    return probe.measure(table).maximum <= width


def _stacked(result: Any, width: int) -> Group:
    """One block per metric: its name, segment and verdict, then the arms, then the
    estimate with its interval and margin. Figures are never split or cut."""
    lines = [f"[bold]{_title(result)}[/]"]
    for m in _shown(result):
        head = _name(m)
        if m.segment is not None:
            head += f"  ·  {_seg(m)}"
        lines.append(f"{head}  [{_STYLE.get(m.verdict, '')}]{_text(m.verdict).upper()}[/]")
        if m.kind not in COMPARED:
            if m.note:
                lines.append(f"  {_text(m.note)}")
            continue
        rel = m.margin_kind == "relative"
        lines.append(
            f"  control {fmt.value(m.control['value'], m.kind)} (n {m.control['n']:,})"
            f"   canary {fmt.value(m.canary['value'], m.kind)} (n {m.canary['n']:,})"
        )
        estimate = (
            f"  estimate {fmt.delta(m.estimate, m.kind, rel)}"
            f"  interval [{fmt.delta(m.ci[0], m.kind, rel)}, {fmt.delta(m.ci[1], m.kind, rel)}]"
        )
        margin = f"margin {fmt.delta(m.margin, m.kind, rel)}"
        if len(estimate) + 2 + len(margin) <= width:
            lines.append(f"{estimate}  {margin}")
        else:
            lines += [estimate, f"  {margin}"]
    return Group(*lines)


def _title(result: Any) -> str:
    return _text(f"{result.rollout} · {result.stage} · window {_window(result)}")


def _name(m: Any) -> str:
    """A metric as a row names it: its title, * when critical, (advisory) when it never vetoes."""
    return _text(m.title) + (" *" if m.critical else "") + (" (advisory)" if m.advisory else "")


def _shown(result: Any) -> list[Any]:
    """Every overall row, and the segments that failed."""
    return [m for m in result.metrics if m.segment is None or m.verdict == "fail"]


def gate_table(result: Any) -> Table:
    title = _title(result)
    shown = _shown(result)
    if all(m.kind not in COMPARED for m in shown):  # a smoke, eval or shadow stage's checks
        table = Table(title=title)
        for col in ("check", "segment", "verdict", "why"):
            table.add_column(col)
        for m in shown:
            table.add_row(
                _text(m.title),
                _seg(m),
                f"[{_STYLE.get(m.verdict, '')}]{_text(m.verdict)}[/]",
                _text(m.note),
            )
        return table
    table = Table(title=title)
    for col in (
        "metric",
        "segment",
        "control (n)",
        "canary (n)",
        "estimate",
        "interval",
        "margin",
        "verdict",
    ):
        table.add_column(col, justify="left" if col in ("metric", "segment") else "right")
    for m in shown:
        rel = m.margin_kind == "relative"
        table.add_row(
            _name(m),
            _seg(m),
            f"{fmt.value(m.control['value'], m.kind)} ({m.control['n']:,})",
            f"{fmt.value(m.canary['value'], m.kind)} ({m.canary['n']:,})",
            fmt.delta(m.estimate, m.kind, rel),
            f"[{fmt.delta(m.ci[0], m.kind, rel)}, {fmt.delta(m.ci[1], m.kind, rel)}]",
            fmt.delta(m.margin, m.kind, rel),
            f"[{_STYLE.get(m.verdict, '')}]{_text(m.verdict)}[/]",
        )
    return table


def print_gate(result: Any) -> None:
    out = console()
    out.print(gate_view(result, out.width))
    style = _STYLE.get(result.verdict, "")
    out.print(f"[{style}]gate {_text(result.verdict)}[/] → {_text(result.decision)}")
    for reason in result.reasons:
        out.print(f"  • {_text(reason)}")
    if result.srm and not result.srm["ok"]:
        out.print(f"  sample ratio mismatch p={result.srm['p_value']:.2g}")
    if result.report:
        out.print(f"  report: {_text(result.report)}", overflow="ignore", crop=False)
