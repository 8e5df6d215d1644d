"""The rollout state machine: start, check, advance, pause, resume, rollback, promote, retry.

The engine takes its store, clock, actor and report folder as arguments (no globals), so
tests drive time. Heavy modules (DuckDB, the stats engine, reports) are imported inside the
functions that need them: `rollback`, `pause`, `resume` and `status` stay fast and work when
every metrics backend is down.

Beside it: `reconcile.py` (the flag and the state disagree), `stages/` (each stage kind's
gate, one module per kind), `report/records.py` (gate records and pages) and
`playbook/scope.py` (who may get the canary at each stage)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from rolloutctl import reconcile
from rolloutctl.context import Context, Outcome
from rolloutctl.errors import (
    BackendError,
    ExitCode,
    InvalidInput,
    StateConflict,
    StoreUnavailable,
    UsageError,
)
from rolloutctl.flags.registry import build_backend
from rolloutctl.playbook.scope import effective_scopes
from rolloutctl.report import records
from rolloutctl.state.store import ACTIVE, RolloutState, Store, snapshot

if TYPE_CHECKING:
    from rolloutctl.playbook.load import LoadedPlaybook
    from rolloutctl.results import GateResult

# ---------------------------------------------------------------- playbook helpers


def _flag_spec(loaded: LoadedPlaybook) -> dict[str, Any]:
    from rolloutctl.envvars import resolve_env

    flag = loaded.playbook.flag.model_dump()
    if flag.get("path"):  # file-based backends; remote ones have none
        flag["path"] = loaded.resolve_path(flag["path"])
    for key in ("key", "control", "canary"):
        flag[key] = resolve_env(flag[key], where=str(loaded.path))
    return flag


def _load_playbook_for(state: RolloutState) -> LoadedPlaybook:
    from rolloutctl.playbook.load import load_playbook

    return load_playbook(state.playbook)


def _parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text)


# ---------------------------------------------------------------- start


def start(ctx: Context, loaded: LoadedPlaybook, *, force: bool = False) -> Outcome:
    pb = loaded.playbook
    _check_sources(loaded)
    store = ctx.store
    flag = _flag_spec(loaded)
    # The flag's lock too: two rollouts started at once on one flag (from two machines, with
    # a shared store) cannot both see it free.
    with (
        store.lock(pb.rollout, "start", ctx.lock_wait),
        store.flag_lock(flag_id(flag), "start", ctx.lock_wait),
    ):
        if store.exists(pb.rollout):
            existing = store.load(pb.rollout)
            if existing.status in ACTIVE:
                raise StateConflict(
                    f"rollout {pb.rollout!r} is already {existing.status} at stage "
                    f"{existing.stage}",
                    hint="`rolloutctl status` shows it; `rolloutctl rollback` ends it",
                )
        backend = build_backend(flag)
        others = [other for other in _other_rollouts(store, pb.rollout) if other.status in ACTIVE]
        if not force:
            _refuse_a_flag_owned_elsewhere(others, pb.rollout, flag, backend)
        first = pb.stages[0]
        scope = effective_scopes(loaded)[0]
        now = ctx.clock()
        state = RolloutState(
            rollout=pb.rollout,
            playbook=str(loaded.path),
            playbook_digest=loaded.digest,
            flag=flag,
            status="running",
            stage_index=0,
            stage=first.name,
            stage_started_at=now.isoformat(),
            canary_percent=first.traffic or 0.0,
            scope=scope,
        )
        _store_operations(store, loaded)  # before the flip: an unreadable book stops here
        split = backend.set_split(state.canary_percent, scope, rollout=pb.rollout, stage=first.name)
        state.flag_fingerprint = split.fingerprint
        released = _release_controls(store, others, backend, pb.controls, flag)
        store.commit(
            state,
            actor=ctx.actor,
            command="start",
            reason=None,
            before=None,
            at=now.isoformat(),
        )
    return Outcome(
        pb.rollout,
        "start",
        state.status,
        state.stage,
        state.canary_percent,
        f"started {pb.rollout}: stage {first.name}, {state.canary_percent:g}% to {flag['canary']}",
        warnings=released + _unset_notify_variables(loaded),
    )


def _refuse_a_flag_owned_elsewhere(
    active: list[RolloutState], rollout: str, flag: dict[str, Any], backend: Any
) -> None:
    """Two rollouts moving one flag would undo each other's stages: a flag that an active
    rollout of this state store drives, or that the flag itself says another rollout set
    (while it still sends traffic to a canary), is not taken over without --force."""
    owners = [other.rollout for other in active if same_flag(other.flag, flag)]
    current = backend.read()
    if not owners and current is not None and current.owner not in (None, rollout):
        serving = current.problem is not None or current.canary_percent > 0
        owners = [current.owner] if serving else []
    if owners:
        raise StateConflict(
            f"flag {flag['key']!r} is driven by rollout {owners[0]!r}; starting "
            f"{rollout!r} on it would take it over, nothing was changed",
            hint=f"finish or roll back {owners[0]!r} first, or pass --force to take the flag over",
        )


def _other_rollouts(store: Store, rollout: str) -> list[RolloutState]:
    others = []
    for name in store.names():
        if name == rollout:
            continue
        try:
            others.append(store.load(name))
        except (StateConflict, UsageError):
            continue  # a corrupt or stray folder says nothing about the flag
    return others


def same_flag(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two flag sections point at the same flag of the same backend."""
    return flag_id(a) == flag_id(b)


def flag_id(flag: dict[str, Any]) -> str:
    """One string per flag (what same_flag compares): the backend, where it lives, its key."""
    backend = flag.get("backend", "file")
    if flag.get("path"):
        return f"{backend}:{os.path.realpath(str(flag['path']))}#{flag['key']}"
    where = ("url", "base_url", "project", "environment", "write_url", "read_url")
    return f"{backend}:" + "|".join(str(flag.get(k) or "") for k in where) + f"#{flag['key']}"


def _store_operations(store: Store, loaded: LoadedPlaybook) -> None:
    """Controls and notification targets beside the state: `control` and `rollback` use them
    without parsing the playbook. Notify URLs keep their `${ENV}` references (no secrets on
    disk); they are expanded when a notification is sent."""
    from rolloutctl import controls, notify

    pb = loaded.playbook
    controls.store_definitions(store, pb.rollout, [c.model_dump() for c in pb.controls])
    notify.save_config(store, pb.rollout, [n.model_dump() for n in pb.notify])


def _unset_notify_variables(loaded: LoadedPlaybook) -> list[str]:
    from rolloutctl.envvars import resolve_env

    warnings = []
    for entry in loaded.playbook.notify:
        try:
            resolve_env(entry.url, where=f"{loaded.path}: notify ({entry.kind})")
        except InvalidInput as exc:
            warnings.append(exc.message + "; those notifications will fail until it is set")
    return warnings


def _notify(
    ctx: Context,
    state: RolloutState,
    event: str,
    message: str,
    *,
    decision: str | None = None,
    verdict: str | None = None,
    reasons: list[str] | None = None,
    report: str | None = None,
) -> list[str]:
    """Send the event to the rollout's notification targets (after the state is saved)."""
    from rolloutctl import notify

    body = notify.event_body(
        rollout=state.rollout,
        stage=state.stage,
        event=event,
        decision=decision,
        verdict=verdict,
        reasons=reasons or [],
        report=report,
        actor=ctx.actor,
        time=ctx.clock().isoformat(),
        message=message,
    )
    return notify.send(ctx.store, state.rollout, body)


def _controls_holding_flag(ctx: Context, state: RolloutState) -> list[str]:
    from rolloutctl import controls

    return controls.holding_flag(ctx.store, state.rollout, state.flag["key"])


def _release_controls(
    store: Store,
    active: list[RolloutState],
    backend: Any,
    controls: list[Any],
    flag: dict[str, Any],
) -> list[str]:
    """A rollout starts with its boolean controls released, on every backend: each control
    flag is set to the opposite of what its control sets (a kill switch created off in
    Unleash would otherwise start engaged). A flag that a control of another active rollout
    holds is left as it is. Numeric controls are written only when applied. Returns what
    was changed or left, for the start's warnings."""
    from rolloutctl import controls as control_book

    held = {
        key
        for other in active
        for record in control_book.load_book(store, other.rollout)["applied"].values()
        for key in record.get("values", {})
    }
    notes: list[str] = []
    for control in controls:
        for key, value in control.set.items():
            if key == flag["key"] or not isinstance(value, bool):
                continue
            current = backend.read_control(key)
            if current is (not value):
                continue
            if key in held:
                notes.append(f"control flag {key!r} is held by another rollout's control; left it")
                continue
            backend.set_control(key, not value)
            if current is not None:
                notes.append(
                    f"control {control.name!r}: flag {key!r} was {current!r}, released it to "
                    f"{not value!r}"
                )
    return notes


def _check_sources(loaded: LoadedPlaybook) -> None:
    from rolloutctl.metrics.registry import available_kinds

    pb = loaded.playbook
    for metric in pb.metrics:
        kind = pb.sources[metric.source].kind
        if kind not in available_kinds() and not metric.advisory:
            raise InvalidInput(
                f"{loaded.path}: metric {metric.name!r} reads source {metric.source!r} of kind "
                f"{kind!r}, which this version cannot query (it queries: "
                f"{', '.join(available_kinds())})",
                hint="mark the metric `advisory: true` or move it to a requestlog source",
            )


# ---------------------------------------------------------------- gate evaluation


def measure_and_judge(
    ctx: Context, loaded: LoadedPlaybook, state: RolloutState, now: datetime
) -> tuple[GateResult, dict[str, Any], dict[str, Any]]:
    """The gate's verdict, the measurements it came from, and per source the cumulative
    looks over the stage that the report charts (same pass over the data, when the source
    can give them). The stage's kind judges it (rolloutctl/stages/)."""
    from rolloutctl.stages import registry
    from rolloutctl.stages.base import StageLook

    look = StageLook(
        loaded=loaded,
        stage_index=state.stage_index,
        started=_parse_time(state.stage_started_at),
        now=now,
        control=state.flag["control"],
        canary=state.flag["canary"],
        exposure_started=lambda: _exposure_started(ctx, state),
        consecutive_errors=state.consecutive_errors,
    )
    judged = registry.judge(look)
    return judged.result, judged.measurements, judged.looks


def _exposure_started(ctx: Context, state: RolloutState) -> datetime:
    """When users first got the canary: the first audited transition to more than 0% (the
    pre-rollout baseline of `monitor` ends there; smoke, eval and shadow stages are before)."""
    for event in ctx.store.history(state.rollout):
        if float((event.get("after") or {}).get("canary_percent") or 0) > 0 and event.get("time"):
            return _parse_time(str(event["time"]))
    return _parse_time(state.stage_started_at)


def _resolve_stage(loaded: LoadedPlaybook, state: RolloutState) -> None:
    names = [s.name for s in loaded.playbook.stages]
    if state.stage not in names:
        raise StateConflict(
            f"stage {state.stage!r} of rollout {state.rollout!r} is no longer in "
            f"{loaded.path} (stages: {', '.join(names)})",
            hint="restore the stage in the playbook, or roll back and start again",
        )
    state.stage_index = names.index(state.stage)


def check(ctx: Context, rollout: str) -> Outcome:
    state = ctx.store.load(rollout)
    loaded = _load_playbook_for(state)
    _resolve_stage(loaded, state)
    warnings = []
    drift = reconcile.flag_drift(state)
    if drift:
        warnings.append(drift)
    result, measurements, looks = measure_and_judge(ctx, loaded, state, ctx.clock())
    result.decision = _would_do(loaded, state, result)
    result.report = records.report_path(ctx, state.rollout, result)
    warnings += records.write_report(
        ctx, loaded, state, result, measurements, looks, state.canary_percent, acted=False
    )
    code = {
        "pass": ExitCode.OK,
        "fail": ExitCode.GATE_FAILED,
        "inconclusive": ExitCode.GATE_INCONCLUSIVE,
        "error": ExitCode.BACKEND,
    }[result.verdict]
    return Outcome(
        rollout,
        "check",
        state.status,
        state.stage,
        state.canary_percent,
        f"gate {result.verdict} at {state.stage}: would {result.decision}",
        code,
        result,
        warnings,
    )


def _would_do(loaded: LoadedPlaybook, state: RolloutState, result: GateResult) -> str:
    from rolloutctl.gate import decide

    return decide(loaded.playbook, state.stage_index, result)


# ---------------------------------------------------------------- advance


def advance(
    ctx: Context, rollout: str, *, force: bool = False, only_monitor: bool = False
) -> Outcome:
    """Evaluate the current gate and act on it. `only_monitor` (the `monitor` command)
    refuses unless the rollout is running its monitor stage."""
    store = ctx.store
    # With --wait, several runs may queue for one look: the first judges it, the others
    # report that decision instead of judging the same data again seconds later.
    seen = store.load(rollout).version if ctx.lock_wait > 0 else None
    with store.lock(rollout, "advance", ctx.lock_wait):
        state = store.load(rollout)
        if seen is not None and state.version != seen:
            return _decided_while_waiting(state)
        reconcile.reconcile_pending(ctx, state)
        refused = _refusal(ctx, state)
        if refused is not None:
            return refused
        loaded = _load_playbook_for(state)
        _resolve_stage(loaded, state)
        if only_monitor:
            _require_monitor_stage(loaded, state)
        warnings = _refuse_drifted_flag(ctx, state, force)
        now = ctx.clock()
        result, measurements, looks = measure_and_judge(ctx, loaded, state, now)
        stage_traffic = state.canary_percent
        decision = _would_do(loaded, state, result)
        result.decision = decision
        was = _Was.of(state)
        state.last_verdict, state.last_decision = result.verdict, decision
        state.last_reasons, state.last_checked_at = result.reasons, now.isoformat()
        state.consecutive_errors = state.consecutive_errors + 1 if result.errors else 0
        pb = loaded.playbook
        backend = build_backend(state.flag)
        code = ExitCode.OK
        if decision == "rollback":
            split = backend.rollback(rollout=rollout, reason="; ".join(result.reasons))
            state.flag_fingerprint, state.canary_percent = split.fingerprint, 0.0
            state.status = "rolled_back"
            message = f"gate failed at {state.stage}: rolled back to {state.flag['control']}"
            code = ExitCode.GATE_FAILED
        elif decision == "complete":
            state.status = "completed"
            message = f"gate passed at {state.stage}: rollout completed"
        elif decision == "advance":
            _enter_stage(ctx, loaded, state, backend, state.stage_index + 1, now, "advance")
            message = f"gate passed: advanced to {state.stage} ({state.canary_percent:g}%)"
        elif decision == "pause":
            state.status = "awaiting_approval" if result.verdict == "pass" else "paused"
            state.paused_reason = (
                f"stage {pb.stages[state.stage_index + 1].name} requires approval"
                if result.verdict == "pass"
                else "; ".join(result.reasons)
            )
            message = f"paused at {state.stage}: {state.paused_reason}"
            code = ExitCode.PAUSED
        elif result.verdict == "fail":  # monitor: drift is reported, the flag stays
            message = (
                f"drift found at {state.stage}: {result.reasons[0]}; the flag is "
                "unchanged (only a rollback trigger moves it)"
            )
            code = ExitCode.GATE_FAILED
        else:
            message = f"holding at {state.stage}: {result.reasons[0] if result.reasons else ''}"
            code = ExitCode.BACKEND if result.verdict == "error" else ExitCode.GATE_INCONCLUSIVE
        result.report = records.report_path(ctx, state.rollout, result)
        state.last_report = result.report
        verdict = {
            "verdict": result.verdict,
            "decision": decision,
            "reasons": result.reasons[:5],
            "report": result.report,
        }
        spooled = _record(ctx, state, was, backend, "advance", None, now, verdict, result.reasons)
        warnings += spooled
        if not spooled:
            # After the action is recorded: a report that cannot be written never undoes it.
            warnings += records.write_report(
                ctx, loaded, state, result, measurements, looks, stage_traffic
            )
    event = decision if decision != "hold" or result.max_duration_passed else None
    if decision == "hold" and result.verdict == "fail":
        event = "drift"
    if event is not None:
        warnings += _notify(
            ctx,
            state,
            event,
            message,
            decision=decision,
            verdict=result.verdict,
            reasons=result.reasons,
            report=result.report,
        )
    return Outcome(
        rollout,
        "advance",
        state.status,
        state.stage,
        state.canary_percent,
        message,
        code,
        result,
        warnings,
    )


@dataclass(frozen=True)
class _Was:
    """A rollout as the store has it before a command moves it: the audit's `before`, the
    version the commit expects, and the scope to put the flag back to. `none()` for a
    rollout the store has no record of."""

    snapshot: dict[str, Any] | None
    version: int | None
    scope: Any

    @classmethod
    def of(cls, state: RolloutState) -> _Was:
        return cls(snapshot(state), state.version, state.scope)

    @classmethod
    def none(cls) -> _Was:
        return cls(None, None, None)


def _record(
    ctx: Context,
    state: RolloutState,
    was: _Was,
    backend: Any,
    command: str,
    reason: str | None,
    at: datetime,
    verdict: dict[str, Any] | None = None,
    reasons: list[str] | None = None,
) -> list[str]:
    """Commit the move, with its audit event. When the store fails before recording it, the
    flag decides: a move to rolled back stays (traffic is safe) and its event is spooled on
    this machine (the warning is returned); any other move is undone on the flag and
    StoreUnavailable raised (exit 4, nothing changed)."""
    try:
        ctx.store.commit(
            state,
            expected_version=was.version,
            actor=ctx.actor,
            command=command,
            reason=reason,
            before=was.snapshot,
            at=at.isoformat(),
            verdict=verdict,
        )
    except StoreUnavailable as exc:
        if state.status != "rolled_back":
            _undo_unrecorded_move(state, was, backend, exc)
        return [_spool_unrecorded_rollback(ctx, state, reasons or [reason or command], exc)]
    return []


def _undo_unrecorded_move(
    state: RolloutState, was: _Was, backend: Any, lost: StoreUnavailable
) -> NoReturn:
    """Put the flag back where the recorded state says it is (a rolled-back rollout's flag
    back to serving only the control), then raise. The intent left in the store is dropped
    by the next command, which finds the flag where it was."""
    before = was.snapshot
    assert before is not None  # a rollout without a record only ever rolls back
    percent = float(before["canary_percent"])
    rolled_back = before["status"] == "rolled_back"
    if state.canary_percent == percent and not rolled_back:
        raise lost
    try:
        if rolled_back:
            backend.rollback(rollout=state.rollout, reason="the state store failed")
        else:
            backend.set_split(percent, was.scope, rollout=state.rollout, stage=before["stage"])
    except BackendError as exc:
        raise StoreUnavailable(
            f"{lost.message}, and setting the flag back failed too ({exc.message}): the flag "
            f"serves {state.canary_percent:g}% (stage {state.stage}) while the store still "
            f"says {percent:g}% (stage {before['stage']})",
            hint="when the store is back, the next rolloutctl command completes the "
            "move it recorded as pending; `rolloutctl rollback PLAYBOOK` works meanwhile",
        ) from None
    where = (
        f"serve only {state.flag['control']!r} (rolled back)"
        if rolled_back
        else f"{percent:g}% (stage {before['stage']})"
    )
    raise StoreUnavailable(
        f"{lost.message}; the flag was set back to {where}: nothing changed",
        hint=lost.hint,
    ) from None


def _spool_unrecorded_rollback(
    ctx: Context, state: RolloutState, reasons: list[str], lost: StoreUnavailable
) -> str:
    """A rollback the store failed to record: the flag stays on the control (traffic is
    safe) and the audit event waits in this machine's spool (state/spool.py)."""
    from rolloutctl.state import spool

    event = spool.new_event(ctx.actor, "; ".join(reasons[:3]), ctx.clock().isoformat(), None)
    path = spool.put(ctx.store.where, state, event)
    return (
        f"{lost.message}: the rollback is NOT recorded there yet; its audit event is kept in "
        f"{path} and the next rolloutctl command on this machine that reaches the store "
        "records it"
    )


def _refuse_drifted_flag(ctx: Context, state: RolloutState, force: bool) -> list[str]:
    """StateConflict when someone else changed the flag, unless --force (then a warning)."""
    drift = reconcile.flag_drift(state)
    if not drift:
        return []
    # Raises when the flag already serves only the control (a rollback to record).
    reconcile.reconcile_rollback(ctx, state)
    if not force:
        raise StateConflict(
            drift + "; refusing to act on a flag someone else changed",
            hint="put the flag back, or pass --force to let rolloutctl overwrite it",
        )
    return [drift + " (overwritten: --force)"]


def _decided_while_waiting(state: RolloutState) -> Outcome:
    """The rollout changed while this run waited for its lock: the exit code of what the
    other run decided (or of the status it left), nothing judged or written again."""
    decision = state.last_decision or "none"
    if state.status == "rolled_back":
        code = ExitCode.GATE_FAILED
    elif state.status in ("paused", "awaiting_approval"):
        code = ExitCode.PAUSED
    elif decision == "hold" and state.status == "running":
        code = ExitCode.BACKEND if state.last_verdict == "error" else ExitCode.GATE_INCONCLUSIVE
    else:
        code = ExitCode.OK
    return Outcome(
        state.rollout,
        "advance",
        state.status,
        state.stage,
        state.canary_percent,
        f"{state.rollout} changed while this run waited for it (last decision: {decision}); "
        f"now {state.status} at {state.stage} ({state.canary_percent:g}%), not judged again",
        code,
    )


def _refusal(ctx: Context, state: RolloutState) -> Outcome | None:
    """Why `advance` does not judge this rollout now (completed, paused, held by a
    control), or None; a rolled-back rollout is a conflict (exit 5)."""
    if state.status == "completed":
        return Outcome(
            state.rollout,
            "advance",
            state.status,
            state.stage,
            state.canary_percent,
            f"{state.rollout} is already completed",
        )
    if state.status == "rolled_back":
        raise StateConflict(
            f"rollout {state.rollout!r} was rolled back at stage {state.stage}",
            hint="`rolloutctl retry` restarts that stage; `rolloutctl start` begins anew",
        )
    if state.status in ("paused", "awaiting_approval"):
        why = state.paused_reason or state.status
        return Outcome(
            state.rollout,
            "advance",
            state.status,
            state.stage,
            state.canary_percent,
            f"{state.rollout} is paused ({why}); `rolloutctl resume` or "
            "`rolloutctl promote` continues",
            ExitCode.PAUSED,
        )
    held = _controls_holding_flag(ctx, state)
    if held:
        return Outcome(
            state.rollout,
            "advance",
            state.status,
            state.stage,
            state.canary_percent,
            f"control {', '.join(held)} holds flag {state.flag['key']!r} at "
            f"{state.canary_percent:g}%; the gate will not move it until "
            "`rolloutctl control revert` releases it",
            ExitCode.PAUSED,
        )
    return None


def monitor(ctx: Context, rollout: str) -> Outcome:
    """One look of the post-launch monitor: `advance` at a monitor stage (drift is reported
    and notified, the flag moves only when a rollback trigger fires). Exit 0 when no drift
    is seen, 10 when it is, 11 while the baseline or the recent window has too little data."""
    outcome = advance(ctx, rollout, only_monitor=True)
    outcome.action = "monitor"
    if outcome.gate is not None and outcome.gate.verdict == "pass":
        outcome.exit_code = ExitCode.OK
    return outcome


def _require_monitor_stage(loaded: LoadedPlaybook, state: RolloutState) -> None:
    stage = loaded.playbook.stages[state.stage_index]
    if stage.kind != "monitor":
        kinds = [s.name for s in loaded.playbook.stages if s.kind == "monitor"]
        raise StateConflict(
            f"rollout {state.rollout!r} is {state.status} at stage {state.stage} "
            f"({stage.kind}); monitor runs at a monitor stage, after the rollout reached 100%",
            hint=f"`rolloutctl advance {state.rollout}` moves it on"
            + (f" to {kinds[0]}" if kinds else "; add a `kind: monitor` stage to the playbook"),
        )


def _enter_stage(
    ctx: Context,
    loaded: LoadedPlaybook,
    state: RolloutState,
    backend: Any,
    index: int,
    now: datetime,
    command: str,
) -> None:
    """Set the flag for stage `index` and move the state there (the caller saves it). The
    intent is written first: a crash between the flag write and the state write leaves
    pending.json, and the next command reconciles from the flag (reconcile_pending)."""
    stage = loaded.playbook.stages[index]
    scope = effective_scopes(loaded)[index]
    percent = stage.traffic if stage.traffic is not None else state.canary_percent
    ctx.store.write_intent(
        state.rollout,
        {
            "command": command,
            "stage_index": index,
            "stage": stage.name,
            "canary_percent": percent,
            "scope": scope,
            "at": now.isoformat(),
        },
    )
    split = backend.set_split(percent, scope, rollout=state.rollout, stage=stage.name)
    state.stage_index, state.stage = index, stage.name
    state.stage_started_at = now.isoformat()
    state.canary_percent, state.scope = percent, scope
    state.flag_fingerprint = split.fingerprint
    state.status, state.paused_reason, state.consecutive_errors = "running", None, 0


# ---------------------------------------------------------------- manual actions


def rollback(ctx: Context, rollout: str, reason: str, playbook: Path | None = None) -> Outcome:
    """No analysis, no playbook parsing: the flag spec lives in the stored state. Given the
    playbook, it also works where the store has no record of the rollout (the flag section is
    the playbook's; the record is created) and when the store cannot be reached (the flag is
    flipped and the audit event spooled on this machine until the store is back)."""
    try:
        return _rollback(ctx, rollout, reason, playbook)
    except StoreUnavailable as exc:
        if playbook is None:
            raise StoreUnavailable(
                exc.message + "; the flag was NOT changed",
                hint="pass the playbook (`rolloutctl rollback PLAYBOOK --reason ...`): its flag "
                "section is enough to flip the flag while the store is down",
            ) from None
        return _rollback_spooled(ctx, reason, playbook, exc)


def _rollback(ctx: Context, rollout: str, reason: str, playbook: Path | None) -> Outcome:
    store = ctx.store
    with store.lock(rollout, "rollback", ctx.lock_wait):
        was = _Was.none()
        if playbook is not None and not store.exists(rollout):
            state = _state_from_playbook(ctx, playbook)
        else:
            state = store.load(rollout)
            if state.status == "rolled_back" and _serves_only_control(state):
                return Outcome(
                    rollout,
                    "rollback",
                    state.status,
                    state.stage,
                    0.0,
                    f"{rollout} is already rolled back (the flag serves only "
                    f"{state.flag['control']})",
                )
            was = _Was.of(state)
        backend = _flip_to_control(state, reason)
        message = f"rolled back {rollout}: all traffic on {state.flag['control']}"
        spooled = _record(ctx, state, was, backend, "rollback", reason, ctx.clock())
        if spooled:  # the flag is flipped: say so, the event waits in the spool
            return Outcome(
                rollout, "rollback", state.status, state.stage, 0.0, message, warnings=spooled
            )
    # The flag is flipped and recorded, the lock released: a notification cannot undo it.
    warnings = _notify(
        ctx,
        state,
        "rollback",
        message,
        decision="rollback",
        reasons=[reason],
        report=state.last_report,
    )
    return Outcome(rollout, "rollback", state.status, state.stage, 0.0, message, warnings=warnings)


def _flip_to_control(state: RolloutState, reason: str) -> Any:
    """Send all traffic to the control and mark the state rolled back; returns the flag
    backend. BackendError (exit 4) saying traffic may still reach the canary when the flag
    cannot be written."""
    backend = build_backend(state.flag)
    try:
        split = backend.rollback(rollout=state.rollout, reason=reason)
    except BackendError as exc:
        raise BackendError(
            exc.message + f" — the rollback did NOT complete: traffic may still reach "
            f"{state.flag['canary']!r}",
            hint=f"set flag {state.flag['key']!r} to serve only {state.flag['control']!r} "
            "by hand"
            + (f" ({state.flag['path']})" if state.flag.get("path") else "")
            + ", then run this command again",
        ) from None
    state.flag_fingerprint, state.canary_percent = split.fingerprint, 0.0
    state.status, state.paused_reason = "rolled_back", reason
    return backend


def _state_from_playbook(ctx: Context, playbook: Path) -> RolloutState:
    """A rollout's state built from its playbook, for a store that has no record of it: the
    first stage, its flag section (a rollback then records it)."""
    from rolloutctl.playbook.load import load_playbook

    loaded = load_playbook(playbook)
    pb = loaded.playbook
    return RolloutState(
        rollout=pb.rollout,
        playbook=str(loaded.path),
        playbook_digest=loaded.digest,
        flag=_flag_spec(loaded),
        status="running",
        stage_index=0,
        stage=pb.stages[0].name,
        stage_started_at=ctx.clock().isoformat(),
        canary_percent=0.0,
    )


def _rollback_spooled(
    ctx: Context, reason: str, playbook: Path, unreachable: StoreUnavailable
) -> Outcome:
    """The store is down: flip the flag from the playbook's flag section, keep the audit
    event on this machine (state/spool.py), and say so."""
    state = _state_from_playbook(ctx, playbook)
    _flip_to_control(state, reason)
    warning = _spool_unrecorded_rollback(ctx, state, [reason], unreachable)
    message = f"rolled back {state.rollout}: all traffic on {state.flag['control']}"
    return Outcome(
        state.rollout, "rollback", state.status, state.stage, 0.0, message, warnings=[warning]
    )


def _serves_only_control(state: RolloutState) -> bool:
    """The flag, read now, sends nobody to the canary (a rolled-back rollout's flag can be
    set back by hand or by a tool; rolling back again then flips it again)."""
    try:
        real = build_backend(state.flag).read()
    except BackendError:
        return False
    return real is not None and real.problem is None and real.canary_percent == 0


def pause(ctx: Context, rollout: str, reason: str) -> Outcome:
    return _set_status(ctx, rollout, "pause", reason, "paused")


def resume(ctx: Context, rollout: str, reason: str) -> Outcome:
    return _set_status(ctx, rollout, "resume", reason, "running")


def _set_status(ctx: Context, rollout: str, command: str, reason: str, target: str) -> Outcome:
    store = ctx.store
    with store.lock(rollout, command, ctx.lock_wait):
        state = store.load(rollout)
        reconcile.reconcile_pending(ctx, state)
        if state.status == target:
            return Outcome(
                rollout,
                command,
                state.status,
                state.stage,
                state.canary_percent,
                f"{rollout} is already {target}",
                _status_exit(target),
            )
        if state.status not in ACTIVE:
            raise StateConflict(
                f"cannot {command} {rollout!r}: it is {state.status}",
                hint="`rolloutctl retry` restarts a rolled-back stage",
            )
        if command == "resume" and state.status == "awaiting_approval":
            raise StateConflict(
                f"{rollout!r} is waiting for approval: {state.paused_reason}",
                hint="`rolloutctl promote ROLLOUT --reason ...` approves and advances",
            )
        before, version = snapshot(state), state.version
        state.status = target
        state.paused_reason = reason if target == "paused" else None
        store.commit(
            state,
            expected_version=version,
            actor=ctx.actor,
            command=command,
            reason=reason,
            before=before,
            at=ctx.clock().isoformat(),
        )
    verb = "paused" if target == "paused" else "resumed"
    message = f"{verb} {rollout} at {state.stage}"
    warnings = []
    if command == "pause":
        warnings = _notify(
            ctx,
            state,
            "pause",
            message,
            decision="pause",
            reasons=[reason],
            report=state.last_report,
        )
    return Outcome(
        rollout,
        command,
        state.status,
        state.stage,
        state.canary_percent,
        message,
        _status_exit(target),
        warnings=warnings,
    )


def _status_exit(status: str) -> ExitCode:
    """pause exits 12 whenever the rollout ends paused, whether or not it already was."""
    return ExitCode.PAUSED if status == "paused" else ExitCode.OK


def promote(ctx: Context, rollout: str, reason: str) -> Outcome:
    """Manual override: move to the next stage whatever the gate says (audited)."""
    store = ctx.store
    with store.lock(rollout, "promote", ctx.lock_wait):
        state = store.load(rollout)
        reconcile.reconcile_pending(ctx, state)
        if state.status not in ACTIVE:
            raise StateConflict(
                f"cannot promote {rollout!r}: it is {state.status}",
                hint="`rolloutctl retry` restarts a rolled-back stage",
            )
        _refuse_while_held(ctx, state, "promote")
        loaded = _load_playbook_for(state)
        _resolve_stage(loaded, state)
        was, now, backend = _Was.of(state), ctx.clock(), build_backend(state.flag)
        if state.stage_index + 1 >= len(loaded.playbook.stages):
            state.status, state.paused_reason = "completed", None
            message = f"promoted {rollout}: completed"
        else:
            _enter_stage(ctx, loaded, state, backend, state.stage_index + 1, now, "promote")
            message = f"promoted {rollout} to {state.stage} ({state.canary_percent:g}%)"
        state.last_decision = "promote"
        _record(ctx, state, was, backend, "promote", reason, now)
    event = "complete" if state.status == "completed" else "advance"
    warnings = _notify(
        ctx, state, event, message, decision="promote", reasons=[reason], report=state.last_report
    )
    return Outcome(
        rollout,
        "promote",
        state.status,
        state.stage,
        state.canary_percent,
        message,
        warnings=warnings,
    )


def _refuse_while_held(ctx: Context, state: RolloutState, command: str) -> None:
    held = _controls_holding_flag(ctx, state)
    if held:
        raise StateConflict(
            f"cannot {command} {state.rollout!r}: control {', '.join(held)} holds flag "
            f"{state.flag['key']!r} at {state.canary_percent:g}%",
            hint=f"`rolloutctl control revert {state.rollout} {held[0]} --reason ...` first",
        )


def retry(ctx: Context, rollout: str, reason: str | None) -> Outcome:
    """Restart the current stage after a rollback (or a hold): split re-applied, clock reset."""
    store = ctx.store
    with store.lock(rollout, "retry", ctx.lock_wait):
        state = store.load(rollout)
        reconcile.reconcile_pending(ctx, state)
        if state.status == "completed":
            raise StateConflict(f"cannot retry {rollout!r}: it is completed")
        _refuse_while_held(ctx, state, "retry")
        loaded = _load_playbook_for(state)
        _resolve_stage(loaded, state)
        was, now, backend = _Was.of(state), ctx.clock(), build_backend(state.flag)
        _enter_stage(ctx, loaded, state, backend, state.stage_index, now, "retry")
        state.last_verdict = state.last_decision = None
        _record(ctx, state, was, backend, "retry", reason, now)
    return Outcome(
        rollout,
        "retry",
        state.status,
        state.stage,
        state.canary_percent,
        f"restarted stage {state.stage} of {rollout} ({state.canary_percent:g}%)",
    )


def status(ctx: Context, rollout: str | None) -> list[dict[str, Any]]:
    names = [rollout] if rollout else ctx.store.names()
    rows = []
    for name in names:
        state = ctx.store.load(name)
        row = state.to_dict()
        intent = ctx.store.read_intent(name)
        if intent is not None:
            row["pending"] = intent
        try:
            row["flag_warning"] = reconcile.flag_drift(state)
        except BackendError as exc:
            row["flag_warning"] = exc.message
        rows.append(row)
    return rows
