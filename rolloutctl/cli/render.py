"""Human-readable rendering with rich (imported only by commands that show tables)."""

from __future__ import annotations

import math
from typing import Any

from rich.console import Console
from rich.table import Table

_STYLE = {"pass": "green", "fail": "bold red", "inconclusive": "yellow", "error": "magenta"}


def _v(value: Any, kind: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    if kind == "proportion":
        return f"{value:.3%}"
    return f"{value:.4g}"


def _d(value: Any, kind: str, relative: bool) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    if relative:
        return f"{value:+.1%}"
    return f"{value * 100:+.3f}pt" if kind == "proportion" else f"{value:+.4g}"


def gate_table(result: Any) -> Table:
    table = Table(title=f"{result.rollout} · {result.stage} · window {result.elapsed}")
    for col in ("metric", "segment", "control (n)", "canary (n)", "estimate", "interval",
                "margin", "verdict"):  # fmt: skip
        table.add_column(col, justify="left" if col in ("metric", "segment") else "right")
    shown = [m for m in result.metrics if m.segment is None or m.verdict == "fail"]
    for m in shown:
        rel = m.margin_kind == "relative"
        seg = "" if m.segment is None else ", ".join(f"{k}={v}" for k, v in m.segment.items())
        table.add_row(
            m.title + (" *" if m.critical else "") + (" (advisory)" if m.advisory else ""),
            seg,
            f"{_v(m.control['value'], m.kind)} ({m.control['n']})",
            f"{_v(m.canary['value'], m.kind)} ({m.canary['n']})",
            _d(m.estimate, m.kind, rel),
            f"[{_d(m.ci[0], m.kind, rel)}, {_d(m.ci[1], m.kind, rel)}]",
            _d(m.margin, m.kind, rel),
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
    if not result.srm["ok"]:
        console.print(f"  sample ratio mismatch p={result.srm['p_value']:.2g}")
    if result.report:
        console.print(f"  report: {result.report}", markup=False)
