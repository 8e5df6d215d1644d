"""Gate reports as the engine writes them: each gate's record stored beside the state
(in the state store, `gates/*.json` in the file store) and its page rendered from that record, so `report`
renders the same pages again without querying anything. Writing never raises: a report that
cannot be written becomes a warning, so it cannot undo or hide a decision."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from rolloutctl.errors import InvalidInput
from rolloutctl.playbook.scope import scope_text

if TYPE_CHECKING:
    from rolloutctl.context import Context
    from rolloutctl.playbook.load import LoadedPlaybook
    from rolloutctl.results import GateResult
    from rolloutctl.state.store import RolloutState


def report_path(ctx: Context, rollout: str, result: GateResult) -> str:
    from rolloutctl.report.names import gate_report_name

    name = gate_report_name(result.stage_index, result.stage, result.evaluated_at)
    return str(ctx.reports_dir / rollout / name)


def write_report(
    ctx: Context,
    loaded: LoadedPlaybook,
    state: RolloutState,
    result: Any,
    measurements: dict[str, Any],
    looks: dict[str, Any],
    stage_traffic: float,
    *,
    acted: bool = True,
) -> list[str]:
    """Collect the report's evidence, store its record beside the state (so `report` can
    re-render it), and write the gate page and the indexes; or, when the context defers
    reports, queue that for after the verdict is printed. Returns warnings: a report that
    cannot be written is said, never raised, so it cannot undo or hide a decision."""

    def write() -> list[str]:
        try:
            _write_report_now(ctx, loaded, state, result, measurements, looks, stage_traffic, acted)
        except Exception as exc:  # the decision stands whatever went wrong in the report
            return [f"the gate report was not written ({type(exc).__name__}: {exc})"]
        return []

    if ctx.deferred is not None:
        ctx.deferred.append(write)
        return []
    return write()


def _write_report_now(
    ctx: Context,
    loaded: LoadedPlaybook,
    state: RolloutState,
    result: Any,
    measurements: dict[str, Any],
    looks: dict[str, Any],
    stage_traffic: float,
    acted: bool,
) -> None:

    from rolloutctl.report import evidence, html
    from rolloutctl.report.names import gate_report_name

    scope = scope_text(loaded, result.stage_index)
    series = ctx.charts == "all" or result.decision not in (None, "hold")
    collected: dict[str, Any] = {}
    if measurements:  # smoke, eval, shadow and monitor gates carry their evidence in rows
        collected = evidence.collect(
            loaded, result.stage_index, result, measurements, looks if series else None
        )
    name = gate_report_name(result.stage_index, result.stage, result.evaluated_at)
    audit = ctx.store.history(state.rollout)
    record = html.build_record(loaded, state, result, audit, collected, stage_traffic, scope)
    record["acted"] = acted
    ctx.store.save_record(state.rollout, name.removesuffix(".html"), record)
    rendered_at = ctx.clock().isoformat()
    html.write_gate_report(ctx.reports_dir, record, rendered_at)
    html.write_rollout_index(ctx.reports_dir, state.rollout, audit, rendered_at)


def rerender_reports(ctx: Context, rollout: str) -> Path:
    """Every gate page of the rollout again from its stored records, and the indexes."""

    from rolloutctl.report import html

    ctx.store.load(rollout)
    rendered_at = ctx.clock().isoformat()
    try:
        records = ctx.store.records(rollout)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None
    for record in records.values():
        html.write_gate_report(ctx.reports_dir, record, rendered_at)
    return html.write_rollout_index(
        ctx.reports_dir, rollout, ctx.store.history(rollout), rendered_at
    )
