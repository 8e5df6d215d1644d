"""Self-contained HTML reports (jinja2, autoescaped): one per gate evaluation, an index per
rollout, and `reports/index.html` listing rollouts. No script, font or image is fetched."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

from rolloutctl import formatting as fmt
from rolloutctl.atomic import atomic_write
from rolloutctl.report.names import gate_report_name

_env = Environment(
    loader=PackageLoader("rolloutctl.report", "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)

GROUPS = ("safety", "quality", "technical", "product")
COMPARED = ("proportion", "mean", "quantile", "ratio")  # rows that compare two arms


_env.filters["num"] = fmt.value
_env.filters["pval"] = fmt.p_value
_env.filters["p_is"] = fmt.p_is
_env.filters["delta"] = fmt.delta


def _where(segment: dict[str, str] | None) -> str:
    return "" if not segment else " in " + ", ".join(f"{k} {v}" for k, v in segment.items())


def headline(data: dict[str, Any], acted: bool = True) -> str:
    """The decision in one sentence: what happened (or, for `check`, would), where, by how
    much."""
    stage, decision, verdict = data["stage"], data.get("decision"), data["verdict"]
    if acted:
        done = {
            "rollback": f"Rolled back at {stage}",
            "advance": f"Advanced from {stage}",
            "complete": f"Completed at {stage}",
            "pause": f"Paused at {stage}",
            "hold": f"Holding at {stage}",
        }.get(decision or "", f"Gate {verdict} at {stage}")
        if decision == "hold" and verdict == "fail":  # the monitor: drift alerts, flag stays
            done = f"Drift found at {stage} (the flag is unchanged)"
    else:
        done = f"Checked {stage}: would {decision}" if decision else f"Gate {verdict} at {stage}"
    failing = [
        m
        for m in data["metrics"]
        if m["verdict"] == "fail" and m["vetoes"] and m["kind"] in COMPARED
    ]
    if verdict == "fail" and failing:
        m = min(failing, key=lambda r: r.get("p_adjusted") or 1.0)
        rel = m["margin_kind"] == "relative"
        went = "rose" if m["worse"] == "higher" else "fell"
        return (
            f"{done}: {m['title']} {went}{_where(m['segment'])} "
            f"({fmt.value(m['control']['value'], m['kind'])} → {fmt.value(m['canary']['value'], m['kind'])}, "
            f"{fmt.delta(m['estimate'], m['kind'], rel)} against a {fmt.delta(m['margin'], m['kind'], rel)}"
            f" margin; adjusted p {fmt.p_is(m.get('p_adjusted'))})."
        )
    reason = data["reasons"][0] if data.get("reasons") else ""
    return f"{done}: {reason}." if reason else f"{done}."


def _heatmap(metrics: list[dict[str, Any]]) -> dict[str, Any]:
    """Segment rows × metric columns, each cell the estimate and verdict; worst cells first."""
    cells = [m for m in metrics if m["segment"] is not None]
    vetoing = {m["name"] for m in cells if m["vetoes"]}
    columns = sorted({m["name"] for m in cells}, key=lambda n: (n not in vetoing, n))
    rows: dict[str, dict[str, dict[str, Any]]] = {}
    for m in cells:
        key = ", ".join(f"{k} = {v}" for k, v in m["segment"].items())
        rows.setdefault(key, {})[m["name"]] = m
    titles = {m["name"]: m["title"] for m in cells}
    order = {"fail": 0, "inconclusive": 1, "pass": 2}
    worst = sorted(
        (m for m in cells if m["verdict"] == "fail"),
        key=lambda m: (not m["vetoes"], m.get("p_adjusted") or 1.0),
    )[:5]
    ranked = sorted(
        rows, key=lambda k: (min(order.get(c["verdict"], 3) for c in rows[k].values()), k)
    )
    return {
        "columns": columns,
        "titles": titles,
        "rows": [(k, rows[k]) for k in ranked],
        "worst": worst,
    }


def build_record(
    loaded: Any,
    state: Any,
    result: Any,
    audit: Sequence[Mapping[str, Any]],
    evidence: dict[str, Any],
    stage_traffic: float,
    scope: str | None,
) -> dict[str, Any]:
    """Everything a gate page shows, as plain data: stored beside the state so `report`
    re-renders the same page without querying anything."""
    pb = loaded.playbook
    index = result.stage_index
    following = pb.stages[index + 1] if index + 1 < len(pb.stages) else None
    stage_events = [
        e
        for e in audit
        if (e.get("after") or {}).get("stage") == result.stage
        or (e.get("before") or {}).get("stage") == result.stage
    ]
    return {
        "format": 1,
        "gate": result.to_dict(),
        "goal": pb.goal,
        "playbook": str(loaded.path),
        "flag": {
            "key": state.flag.get("key"),
            "control": state.flag["control"],
            "canary": state.flag["canary"],
        },
        "traffic": stage_traffic,
        "scope": scope,
        "next_stage": None
        if following is None
        else {
            "name": following.name,
            "traffic": following.traffic,
            "approval": following.approval,
        },
        "audit": stage_events[-20:],
        "evidence": evidence,
    }


def render_gate(record: dict[str, Any], rendered_at: str) -> str:
    from rolloutctl.report import charts
    from rolloutctl.results import queries_served
    from rolloutctl.stats.sufficient import GAMMA

    data = record["gate"]
    metrics = data["metrics"]
    by_group: dict[str, list[dict[str, Any]]] = {g: [] for g in GROUPS}
    for m in metrics:
        if m["segment"] is None:
            by_group.setdefault(m["group"], []).append(m)
    evidence = record.get("evidence") or {}
    over_time = []
    for m in metrics:
        points = (evidence.get("series") or {}).get(m["name"])
        if m["segment"] is None and not m["advisory"] and points:
            over_time.append(
                Markup(
                    charts.metric_over_time(
                        f"ts{m['name']}",
                        m["title"],
                        points,
                        percent=m["kind"] == "proportion",
                        relative=m["margin_kind"] == "relative",
                    )
                )
            )
    spread = []
    for name, arms in sorted((evidence.get("distributions") or {}).items()):
        title = next((m["title"] for m in metrics if m["name"] == name), name)
        spread.append(
            Markup(
                charts.distributions(
                    f"d{name}",
                    title,
                    {int(b): c for b, c in arms["control"].items()},
                    {int(b): c for b, c in arms["canary"].items()},
                    GAMMA,
                )
            )
        )
    approvals = [e for e in record.get("audit", []) if e.get("command") == "promote"]
    return _env.get_template("gate.html").render(
        r=data,
        record=record,
        headline=headline(data, record.get("acted", True)),
        by_group=by_group,
        heat=_heatmap(metrics),
        over_time=over_time,
        spread=spread,
        approvals=approvals,
        audit=record.get("audit", []),
        rendered_at=rendered_at,
        queries=[
            (", ".join(names), query)
            for query, names in queries_served(
                (m["name"], m["query"]) for m in metrics if m["segment"] is None
            ).items()
        ],
    )


def write_gate_report(reports_dir: Path, record: dict[str, Any], rendered_at: str) -> Path:
    data = record["gate"]
    folder = reports_dir / data["rollout"]
    path = folder / gate_report_name(data["stage_index"], data["stage"], data["evaluated_at"])
    atomic_write(path, render_gate(record, rendered_at).encode())
    return path


def write_rollout_index(
    reports_dir: Path, rollout: str, audit: Sequence[Mapping[str, Any]], rendered_at: str = ""
) -> Path:
    from rolloutctl.report import charts

    folder = reports_dir / rollout
    folder.mkdir(parents=True, exist_ok=True)
    reports = sorted(p.name for p in folder.glob("gate-*.html"))
    steps = [
        (
            e["time"],
            float((e.get("after") or {}).get("canary_percent") or 0.0),
            str((e.get("after") or {}).get("stage") or ""),
        )
        for e in audit
        if e.get("time") and (e.get("after") or {})
    ]
    chart = Markup(charts.traffic(f"tr{rollout}", steps)) if steps else None
    html = _env.get_template("rollout.html").render(
        rollout=rollout, reports=reports, audit=audit, traffic=chart, rendered_at=rendered_at
    )
    path = folder / "index.html"
    atomic_write(path, html.encode())
    rollouts = sorted(p.parent.name for p in reports_dir.glob("*/index.html"))
    top = _env.get_template("index.html").render(rollouts=rollouts, rendered_at=rendered_at)
    atomic_write(reports_dir / "index.html", top.encode())
    return path
