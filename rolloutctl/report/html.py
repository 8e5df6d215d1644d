"""Self-contained HTML reports (jinja2, autoescaped): one per gate evaluation, an index per
rollout, and `reports/index.html` listing rollouts. No script, font or image is fetched."""

from __future__ import annotations

import json
import math
import re
from datetime import datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

from rolloutctl.atomic import atomic_write

_env = Environment(
    loader=PackageLoader("rolloutctl.report", "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)

GROUPS = ("safety", "quality", "technical", "product")


def _num(value: Any, kind: str = "", relative: bool = False) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    if relative:
        return f"{value:+.2%}"
    if kind == "proportion":
        return f"{value:.3%}"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.4g}"


def _delta(value: Any, kind: str, relative: bool) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    if relative:
        return f"{value:+.2%}"
    if kind == "proportion":
        return f"{value * 100:+.3f} pt"
    return f"{value:+.4g}"


def _pval(value: Any) -> str:
    if value is None or not isinstance(value, int | float) or not math.isfinite(value):
        return "—"
    return "< 0.0001" if value < 1e-4 else f"{value:.2g}" if value < 0.01 else f"{value:.3f}"


_env.filters["num"] = _num
_env.filters["pval"] = _pval
_env.filters["delta"] = _delta


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip("-") or "x"


def gate_report_name(stage_index: int, stage: str, evaluated_at: str) -> str:
    stamp = datetime.fromisoformat(evaluated_at).strftime("%Y%m%dT%H%M%SZ")
    return f"gate-{stage_index:02d}-{_slug(stage)}-{stamp}.html"


def render_gate(loaded: Any, state: Any, result: Any, audit: list[dict[str, Any]]) -> str:
    data = result.to_dict()
    metrics = data["metrics"]
    by_group: dict[str, list[dict[str, Any]]] = {g: [] for g in GROUPS}
    for m in metrics:
        if m["segment"] is None:
            by_group.setdefault(m["group"], []).append(m)
    segments = [m for m in metrics if m["segment"] is not None]
    segments.sort(key=lambda m: ({"fail": 0, "inconclusive": 1, "pass": 2}.get(m["verdict"], 3),
                                 m["name"], json.dumps(m["segment"])))  # fmt: skip
    stage_events = [e for e in audit if (e.get("after") or {}).get("stage") == result.stage
                    or (e.get("before") or {}).get("stage") == result.stage]  # fmt: skip
    return _env.get_template("gate.html").render(
        r=data, pb=loaded.playbook, state=state.to_dict(), by_group=by_group,
        segments=segments, audit=stage_events[-20:],
        queries=sorted({(m["name"], m["query"]) for m in metrics if m["segment"] is None
                        and m["query"]}),
    )  # fmt: skip


def write_gate_report(
    reports_dir: Path, loaded: Any, state: Any, result: Any, audit: list[dict[str, Any]]
) -> Path:
    folder = reports_dir / state.rollout
    path = folder / gate_report_name(result.stage_index, result.stage, result.evaluated_at)
    result.report = str(path)
    atomic_write(path, render_gate(loaded, state, result, audit).encode())
    write_rollout_index(reports_dir, state.rollout, audit)
    return path


def write_rollout_index(reports_dir: Path, rollout: str, audit: list[dict[str, Any]]) -> Path:
    folder = reports_dir / rollout
    folder.mkdir(parents=True, exist_ok=True)
    reports = sorted(p.name for p in folder.glob("gate-*.html"))
    html = _env.get_template("rollout.html").render(rollout=rollout, reports=reports, audit=audit)
    path = folder / "index.html"
    atomic_write(path, html.encode())
    rollouts = sorted(p.parent.name for p in reports_dir.glob("*/index.html"))
    top = _env.get_template("index.html").render(rollouts=rollouts)
    atomic_write(reports_dir / "index.html", top.encode())
    return path
