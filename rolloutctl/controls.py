"""Layered kill switches and operator controls: `control list | apply | revert`.

The playbook's `controls:` are stored beside the state at `start` (`controls.json`), so a
control works without the playbook, with every metrics source down, and without importing
the analysis stack. A control's `set:` maps flag keys to values; the rollout flag itself takes
`{canary_percent: N}` and is written as the backend's split. `apply` records the values it
replaces (before writing anything) so `revert` restores exactly what was there.

A control that holds the rollout flag stops the gates from moving it: `advance` pauses and
`promote` / `retry` refuse until it is reverted. `rollback` leaves controls as they are."""

from __future__ import annotations

from typing import Any

from typing_extensions import TypedDict  # pydantic reads this one on 3.11

from rolloutctl.context import Context, ControlChange, Outcome
from rolloutctl.errors import ExitCode, StateConflict, UsageError
from rolloutctl.flags.registry import build_backend
from rolloutctl.state.store import ACTIVE, AuditEvent, RolloutState, Store
from rolloutctl.state.store import snapshot as _snapshot

# Seconds a control waits for the rollout's lock: a gate evaluation holds it for a few
# seconds, and an operator's kill switch should wait for it rather than fail.
LOCK_WAIT = 60.0


# ---------------------------------------------------------------- stored definitions


def load_book(store: Store, rollout: str) -> dict[str, Any]:
    """{"controls": [definitions], "applied": {name: record}}; empty when never stored."""
    try:
        data = store.read_doc(rollout, "controls")
    except ValueError as exc:
        raise StateConflict(
            f"{exc}; nothing was changed",
            hint="restore the stored controls from a backup; or delete them, then revert by "
            "hand the controls the audit log shows as applied (`rolloutctl history`)",
        ) from None
    if not isinstance(data, dict):
        return {"controls": [], "applied": {}}
    data.setdefault("controls", [])
    data.setdefault("applied", {})
    return dict(data)


def save_book(store: Store, rollout: str, book: dict[str, Any]) -> None:
    store.write_doc(rollout, "controls", book)


def store_definitions(store: Store, rollout: str, controls: list[dict[str, Any]]) -> None:
    """At `start`: the playbook's controls; records of applied controls that still exist are
    kept (their flags are still set)."""
    book = load_book(store, rollout)
    names = {c["name"] for c in controls}
    applied = {k: v for k, v in book.get("applied", {}).items() if k in names}
    save_book(store, rollout, {"controls": controls, "applied": applied})


def holding_flag(store: Store, rollout: str, flag_key: str) -> list[str]:
    """Names of applied controls that set the rollout flag (the gates must not move it)."""
    book = load_book(store, rollout)
    return sorted(
        name for name, record in book["applied"].items() if flag_key in record.get("values", {})
    )


# ---------------------------------------------------------------- reading the flags


def _same(a: Any, b: Any) -> bool:
    """Equal values of the same kind (True is not 1.0 here)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return isinstance(a, bool) == isinstance(b, bool) and a == b


def _current(backend: Any, flag_key: str, key: str) -> Any:
    if key == flag_key:
        split = backend.read()
        return None if split is None else {"canary_percent": split.canary_percent}
    return backend.read_control(key)


def _find(book: dict[str, Any], name: str, rollout: str) -> dict[str, Any]:
    for control in book["controls"]:
        if control["name"] == name:
            return dict(control)
    known = ", ".join(c["name"] for c in book["controls"]) or "none"
    raise UsageError(
        f"rollout {rollout!r} has no control named {name!r} (controls: {known})",
        hint=f"`rolloutctl control list {rollout}` shows them",
    )


def _state_of(values: dict[str, Any], current: dict[str, Any]) -> str:
    matches = [_same(current[k], v) for k, v in values.items()]
    if all(matches):
        return "applied"
    return "partly applied" if any(matches) else "not applied"


# ---------------------------------------------------------------- interrupted changes


def reconcile_interrupted(ctx: Context, state: RolloutState) -> None:
    """A control's apply or revert killed between its writes. `apply` records the control in
    the book before writing flags; `revert` marks the record `reverting` before writing
    them; each ends with its audited state write (and revert then drops the record). So
    the book, the flags and the audit log say how far a killed command got:

    - flags at the control's values but the apply not audited (or the state not matching
      the rollout flag): the apply reached the flags; record it (`reconcile`);
    - flags at the values it replaced and the apply never audited: the apply never reached
      them; drop the record;
    - a `reverting` record whose flags are back at the values it replaced: the revert
      reached the flags; record it unless it was, and drop the record.

    A record whose flags were changed by hand is left alone (`revert` refuses it)."""
    book = load_book(ctx.store, state.rollout)
    if not book["applied"]:
        return
    backend = build_backend(state.flag)
    real = backend.read()
    if real is None or real.problem is not None:
        return
    flag_key = state.flag["key"]
    history: list[AuditEvent] = []  # the audit log, read once and only when needed

    def audited(name: str, at: str) -> bool:
        if not history:
            history.extend(ctx.store.history(state.rollout))
        return _apply_audited(history, name, at)

    for name, record in list(book["applied"].items()):
        values, previous = record["values"], record["previous"]
        current = {k: _current(backend, flag_key, k) for k in values}
        changes = [k for k in values if not _same(values[k], previous.get(k))]
        at_values = all(_same(current[k], values[k]) for k in values)
        at_previous = bool(changes) and all(_same(current[k], previous.get(k)) for k in changes)
        drifted = flag_key in values and real.fingerprint != state.flag_fingerprint
        if record.get("reverting"):
            if not at_previous:
                continue  # partly reverted: `revert` run again finishes it
            if not _last_event_is(state, name, "revert"):
                _record_from_flag(ctx, state, real, name, "revert", dict(previous))
            del book["applied"][name]
            save_book(ctx.store, state.rollout, book)
        elif at_values and (drifted or not audited(name, record["at"])):
            _record_from_flag(ctx, state, real, name, "apply", dict(values), record["at"])
        elif at_previous and not audited(name, record["at"]):
            del book["applied"][name]
            save_book(ctx.store, state.rollout, book)


def _last_event_is(state: RolloutState, name: str, operation: str) -> bool:
    after = (state.pending_audit or {}).get("after") or {}
    return after.get("control") == name and after.get("operation") == operation


def _apply_audited(history: list[AuditEvent], name: str, at: str) -> bool:
    """An apply of control `name` recorded at `at` is in the audit log (as itself, or as the
    reconcile that recorded it)."""
    for event in reversed(history):
        after = event.get("after") or {}
        same = after.get("control") == name and after.get("operation") == "apply"
        if same and at in (event.get("time"), after.get("applied_at")):
            return True
    return False


def _record_from_flag(
    ctx: Context,
    state: RolloutState,
    real: Any,
    name: str,
    operation: str,
    values: dict[str, Any],
    applied_at: str | None = None,
) -> None:
    before, version = _snapshot(state), state.version
    if state.flag["key"] in values:
        state.canary_percent, state.flag_fingerprint = real.canary_percent, real.fingerprint
    extra = {"control": name, "operation": operation, "values": values}
    ctx.store.commit(
        state,
        expected_version=version,
        actor=ctx.actor,
        command="reconcile",
        reason=f"an interrupted {operation} of control {name!r} wrote the flags but was not "
        "recorded; recorded it now",
        before=before,
        after_extra={**extra, "applied_at": applied_at} if applied_at else extra,
        at=ctx.clock().isoformat(),
    )


# ---------------------------------------------------------------- commands


class AppliedBy(TypedDict):
    actor: str | None
    reason: str | None
    at: str | None
    previous: dict[str, Any] | None  # the flags' values the control replaced


class ControlRow(TypedDict):
    """One control of `control list`: what it sets, what the flags hold now, and who
    applied it."""

    name: str
    layer: str
    title: str
    set: dict[str, Any]  # flag key -> the value the control sets
    current: dict[str, Any]  # flag key -> the value the backend holds now
    state: str  # applied | partly applied | not applied
    applied: bool
    applied_by: AppliedBy | None


class ControlList(TypedDict):
    rollout: str
    controls: list[ControlRow]


def list_controls(ctx: Context, rollout: str) -> ControlList:
    state = ctx.store.load(rollout)
    book = load_book(ctx.store, rollout)
    backend = build_backend(state.flag)
    rows: list[ControlRow] = []
    for control in book["controls"]:
        current = {k: _current(backend, state.flag["key"], k) for k in control["set"]}
        record = book["applied"].get(control["name"])
        state_now = _state_of(control["set"], current)
        rows.append(
            ControlRow(
                name=control["name"],
                layer=control["layer"],
                title=control["title"],
                set=control["set"],
                current=current,
                state=state_now,
                applied=state_now == "applied",
                applied_by=None
                if record is None
                else AppliedBy(
                    actor=record.get("actor"),
                    reason=record.get("reason"),
                    at=record.get("at"),
                    previous=record.get("previous"),
                ),
            )
        )
    return ControlList(rollout=rollout, controls=rows)


def _outcome(
    state: RolloutState,
    message: str,
    control: dict[str, Any],
    operation: str,
    before: dict[str, Any],
    after: dict[str, Any],
    warnings: list[str] | None = None,
) -> Outcome:
    out = Outcome(
        state.rollout,
        "control",
        state.status,
        state.stage,
        state.canary_percent,
        message,
        ExitCode.OK,
        warnings=warnings or [],
    )
    out.control = ControlChange(
        name=control["name"],
        layer=control["layer"],
        title=control["title"],
        operation=operation,
        before=before,
        after=after,
        applied=operation == "apply",
    )
    return out


def _set_split(backend: Any, state: RolloutState, percent: float) -> None:
    split = backend.set_split(percent, state.scope, rollout=state.rollout, stage=state.stage)
    state.flag_fingerprint, state.canary_percent = split.fingerprint, split.canary_percent


def apply(ctx: Context, rollout: str, name: str, reason: str) -> Outcome:
    store = ctx.store
    with store.lock(rollout, "control apply", max(ctx.lock_wait, LOCK_WAIT)):
        state = store.load(rollout)
        reconcile_interrupted(ctx, state)
        book = load_book(store, rollout)
        control = _find(book, name, rollout)
        flag_key = state.flag["key"]
        backend = build_backend(state.flag)
        values: dict[str, Any] = control["set"]
        current = {k: _current(backend, flag_key, k) for k in values}
        record = book["applied"].get(name)
        if record is not None and _state_of(values, current) == "applied":
            return _outcome(
                state,
                f"{name} is already applied: {control['title']}",
                control,
                "apply",
                current,
                current,
            )
        opens = flag_key in values and float(values[flag_key]["canary_percent"]) > 0
        if opens and state.status not in ACTIVE:
            raise StateConflict(
                f"control {name!r} would send traffic to {state.flag['canary']} but rollout "
                f"{rollout!r} is {state.status}",
                hint="`rolloutctl retry` restarts the rollout first",
            )
        # The values being replaced are recorded before anything is written: a crash midway
        # still leaves what `revert` needs. A re-apply keeps the first record's values.
        previous = record["previous"] if record is not None else current
        now = ctx.clock().isoformat()
        book["applied"][name] = {
            "previous": previous,
            "values": values,
            "actor": ctx.actor,
            "reason": reason,
            "at": now,
        }
        save_book(store, rollout, book)
        before, version = _snapshot(state), state.version
        for key, value in values.items():
            if _same(current[key], value):
                continue
            if key == flag_key:
                _set_split(backend, state, float(value["canary_percent"]))
            else:
                backend.set_control(key, value)
        store.commit(
            state,
            expected_version=version,
            actor=ctx.actor,
            command="control",
            reason=reason,
            before={**before, "control": name, "operation": "apply", "values": current},
            after_extra={"control": name, "operation": "apply", "values": dict(values)},
            at=now,
        )
    out = _outcome(
        state, f"applied {name}: {control['title']}", control, "apply", current, dict(values)
    )
    out.warnings += _notify(ctx, state, out, reason, now)
    return out


def revert(ctx: Context, rollout: str, name: str, reason: str, *, force: bool = False) -> Outcome:
    store = ctx.store
    warnings: list[str] = []
    with store.lock(rollout, "control revert", max(ctx.lock_wait, LOCK_WAIT)):
        state = store.load(rollout)
        reconcile_interrupted(ctx, state)
        book = load_book(store, rollout)
        control = _find(book, name, rollout)
        flag_key = state.flag["key"]
        backend = build_backend(state.flag)
        current = {k: _current(backend, flag_key, k) for k in control["set"]}
        record = book["applied"].get(name)
        if record is None:
            if _state_of(control["set"], current) != "not applied":
                warnings.append(
                    f"the flags of {name} hold its values, but rolloutctl did not apply it, so "
                    "it has nothing to restore; change them in the flag system if needed"
                )
            return _outcome(
                state, f"{name} is not applied", control, "revert", current, current, warnings
            )
        applied: dict[str, Any] = record["values"]
        changed = [k for k in applied if not _same(current.get(k), applied[k])]
        if changed and not force and not record.get("reverting"):
            raise StateConflict(
                f"flag(s) {', '.join(changed)} changed since {name} was applied (now "
                f"{', '.join(f'{k}={current.get(k)!r}' for k in changed)}); refusing to overwrite",
                hint="pass --force to restore the values from before the control anyway",
            )
        record["reverting"] = ctx.clock().isoformat()  # before any flag is written
        save_book(store, rollout, book)
        before, version = _snapshot(state), state.version
        restored: dict[str, Any] = {}
        for key, old in record["previous"].items():
            if key == flag_key:
                if state.status not in ACTIVE:
                    warnings.append(
                        f"rollout {rollout} is {state.status}: flag {flag_key} stays at "
                        f"{state.canary_percent:g}% to {state.flag['canary']}"
                    )
                    restored[key] = current.get(key)
                    continue
                _set_split(backend, state, float((old or {}).get("canary_percent", 0.0)))
            elif old is None:
                backend.remove_control(key)  # it did not exist before
            else:
                backend.set_control(key, old)
            restored[key] = old
        now = ctx.clock().isoformat()
        store.commit(
            state,
            expected_version=version,
            actor=ctx.actor,
            command="control",
            reason=reason,
            before={**before, "control": name, "operation": "revert", "values": current},
            after_extra={"control": name, "operation": "revert", "values": restored},
            at=now,
        )
        del book["applied"][name]  # last: a kill before this leaves a record reconciled later
        save_book(store, rollout, book)
    out = _outcome(
        state,
        f"reverted {name}: {control['title']} is off",
        control,
        "revert",
        current,
        restored,
        warnings,
    )
    assert out.control is not None
    out.control["applied"] = False
    out.warnings += _notify(ctx, state, out, reason, now)
    return out


def _notify(ctx: Context, state: RolloutState, out: Outcome, reason: str, now: str) -> list[str]:
    from rolloutctl import notify

    info = out.control
    assert info is not None
    body = notify.event_body(
        rollout=state.rollout,
        stage=state.stage,
        event="control",
        decision=info["operation"],
        verdict=None,
        reasons=[reason],
        report=state.last_report,
        actor=ctx.actor,
        time=now,
        message=out.message,
        control=info["name"],
    )
    return notify.send(ctx.store, state.rollout, body)
