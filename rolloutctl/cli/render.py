"""Human-readable rendering with rich (imported only by commands that show tables)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from rolloutctl import formatting as fmt

_STYLE = {"pass": "green", "fail": "bold red", "inconclusive": "yellow", "error": "magenta"}
COMPARED = ("proportion", "mean", "quantile", "ratio")  # rows comparing two arms


def _seg(m: Any) -> str:
    return "" if m.segment is None else escape(", ".join(f"{k}={v}" for k, v in m.segment.items()))


def gate_table(result: Any) -> Table:
    title = f"{result.rollout} · {result.stage} · window {result.elapsed}"
    shown = [m for m in result.metrics if m.segment is None or m.verdict == "fail"]
    if all(m.kind not in COMPARED for m in shown):  # a smoke, eval or shadow stage's checks
        table = Table(title=title)
        for col in ("check", "segment", "verdict", "why"):
            table.add_column(col)
        for m in shown:
            table.add_row(
                escape(m.title),
                _seg(m),
                f"[{_STYLE.get(m.verdict, '')}]{m.verdict}[/]",
                escape(m.note),
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
            escape(m.title) + (" *" if m.critical else "") + (" (advisory)" if m.advisory else ""),
            _seg(m),
            f"{fmt.value(m.control['value'], m.kind)} ({m.control['n']})",
            f"{fmt.value(m.canary['value'], m.kind)} ({m.canary['n']})",
            fmt.delta(m.estimate, m.kind, rel),
            f"[{fmt.delta(m.ci[0], m.kind, rel)}, {fmt.delta(m.ci[1], m.kind, rel)}]",
            fmt.delta(m.margin, m.kind, rel),
            f"[{_STYLE.get(m.verdict, '')}]{m.verdict}[/]",
        )
    return table


def print_gate(result: Any) -> None:
    console = Console()
    console.print(gate_table(result))
    style = _STYLE.get(result.verdict, "")
    console.print(f"[{style}]gate {result.verdict}[/] → {result.decision}")
    for reason in result.reasons:
        console.print(f"  • {reason}", markup=False)
    if result.srm and not result.srm["ok"]:
        console.print(f"  sample ratio mismatch p={result.srm['p_value']:.2g}")
    if result.report:
        console.print(f"  report: {result.report}", markup=False)
