"""When the flag and the state disagree: a change made outside rolloutctl, or a command that
died between writing the flag and writing the state. The flag is what users get, so it is
read first; only a difference rolloutctl can explain is recorded, never one that would
re-open traffic. Cheap to import (the on-call fast path uses it)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rolloutctl.errors import StateConflict
from rolloutctl.flags.registry import build_backend
from rolloutctl.state.store import RolloutState
from rolloutctl.state.store import snapshot as _snapshot

if TYPE_CHECKING:
    from rolloutctl.context import Context


def flag_drift(state: RolloutState) -> str | None:
    """A message when the flag no longer looks as rolloutctl last left it."""
    backend = build_backend(state.flag)
    current = backend.read()
    if current is None:
        return f"flag {state.flag['key']!r} is missing from {state.flag.get('path', 'the backend')}"
    if current.problem is not None:
        return (
            f"flag {state.flag['key']!r} was changed outside rolloutctl: {current.problem}, "
            "so what clients get from it is unknown"
        )
    if state.flag_fingerprint and current.fingerprint != state.flag_fingerprint:
        return (
            f"flag {state.flag['key']!r} was changed outside rolloutctl: it now sends "
            f"{current.canary_percent:g}% to {state.flag['canary']} (rolloutctl set "
            f"{state.canary_percent:g}%)"
        )
    return None


def reconcile_pending(ctx: Context, state: RolloutState) -> None:
    """A stage change whose state write never happened (pending.json is still there). If the
    flag shows the stage it was moving to, the change happened: record it (audited as
    `reconcile`). If the flag is as the state last left it, the change never reached the
    flag: forget it. Anything else is left to the drift check, which refuses to act."""
    from rolloutctl.controls import reconcile_interrupted

    reconcile_interrupted(ctx, state)
    intent = ctx.store.read_intent(state.rollout)
    if intent is None:
        return
    real = build_backend(state.flag).read()
    if real is None or real.problem is not None:
        return
    if real.fingerprint == state.flag_fingerprint:
        ctx.store.clear_intent(state.rollout)
        return
    target = intent.get("canary_percent")
    if not isinstance(target, int | float) or abs(real.canary_percent - float(target)) > 1e-9:
        return
    before, version = _snapshot(state), state.version
    reason = (
        f"the flag already serves stage {intent.get('stage')} ({float(target):g}%): "
        f"an interrupted {intent.get('command', 'change')} wrote the flag but not the "
        "state; recorded it now"
    )
    state.stage_index, state.stage = int(intent["stage_index"]), str(intent["stage"])
    state.stage_started_at = str(intent.get("at") or ctx.clock().isoformat())
    state.canary_percent, state.scope = float(target), intent.get("scope")
    state.flag_fingerprint = real.fingerprint
    state.status, state.paused_reason, state.consecutive_errors = "running", None, 0
    ctx.store.commit(
        state,
        expected_version=version,
        actor=ctx.actor,
        command="reconcile",
        reason=reason,
        before=before,
        at=ctx.clock().isoformat(),
    )


def reconcile_rollback(ctx: Context, state: RolloutState) -> None:
    """The flag serves only the control while the state says the canary has traffic: a
    rollback whose state write never happened (a crash between the two writes), or one made
    by hand. Either way the safe reading is the flag's: record the rollback, then refuse to
    advance. Never re-opens canary traffic; other differences still need a person."""
    real = build_backend(state.flag).read()
    if real is None or real.problem is not None:
        return
    if real.canary_percent > 0 or state.canary_percent <= 0:
        return
    before, version = _snapshot(state), state.version
    reason = "the flag already serves only the control (an interrupted or manual rollback)"
    state.flag_fingerprint, state.canary_percent = real.fingerprint, 0.0
    state.status, state.paused_reason = "rolled_back", reason
    ctx.store.commit(
        state,
        expected_version=version,
        actor=ctx.actor,
        command="reconcile",
        reason=reason,
        before=before,
        at=ctx.clock().isoformat(),
    )
    raise StateConflict(
        f"rollout {state.rollout!r} was rolled back at stage {state.stage}: {reason}; "
        "recorded it in the state now",
        hint="`rolloutctl retry` restarts that stage; `rolloutctl start` begins anew",
    )
