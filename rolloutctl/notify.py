"""Notifications: tell people what a rollout did, after it is done.

The playbook's `notify:` entries are stored beside the state at `start` (`notify.json`, URLs
kept as written, `${ENV}` references unexpanded so no secret lands on disk), so `rollback`
notifies without parsing the playbook. Two kinds:

- `slack`: a Slack-compatible incoming webhook, `{"text": "..."}` in plain language;
- `webhook`: a generic JSON webhook, the event object itself (see `event_body`).

Sending happens after the state is saved and the lock released. A failing endpoint is retried
briefly, then becomes a warning (stderr and audit log): a notification never blocks, delays
materially, or undoes what the command did. This module is cheap to import, and sends with
the flag backends' standard-library client (rolloutctl/transport.py), so a notification
after `rollback` adds no HTTP library import to it."""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING, Any

from rolloutctl import envvars
from rolloutctl.errors import StoreUnavailable

if TYPE_CHECKING:
    from rolloutctl.state.store import Store

EVENTS = ("advance", "hold", "pause", "rollback", "control", "complete", "drift")
TRIES = 3
TIMEOUT = 2.0  # seconds per try (connect, read, write)
BACKOFF = (0.2, 0.5)  # seconds before the second and third tries
DEADLINE = 6.0  # seconds for all notifications of one command, whatever the endpoints do

# ---------------------------------------------------------------- stored configuration


def save_config(store: Store, rollout: str, entries: list[dict[str, Any]]) -> None:
    store.write_doc(rollout, "notify", {"notify": entries})


def load_config(store: Store, rollout: str) -> list[dict[str, Any]]:
    """The stored targets; none when never stored. An unreadable document raises (`send`
    turns that into a warning), so notifications never stop silently."""
    data = store.read_doc(rollout, "notify")
    entries = data.get("notify") if isinstance(data, dict) else None
    return [e for e in entries or [] if isinstance(e, dict)]


# ---------------------------------------------------------------- messages


def event_body(
    *,
    rollout: str,
    stage: str,
    event: str,
    decision: str | None,
    verdict: str | None,
    reasons: list[str],
    report: str | None,
    actor: str,
    time: str,
    message: str,
    control: str | None = None,
) -> dict[str, Any]:
    """The generic webhook's JSON object (also the source of the Slack text)."""
    return {
        "rollout": rollout,
        "stage": stage,
        "event": event,
        "decision": decision,
        "verdict": verdict,
        "reasons": list(reasons),
        "report": report,
        "actor": actor,
        "time": time,
        "message": message,
        "control": control,
    }


def slack_text(body: dict[str, Any]) -> str:
    """What happened, why (the first reason), where the report is; who and when."""
    lines = [f"rolloutctl · {body['rollout']}: {body['message']}"]
    if body["reasons"]:
        lines.append(f"Why: {body['reasons'][0]}")
    if body["report"]:
        lines.append(f"Report: {body['report']}")
    lines.append(f"By {body['actor']} at {body['time']} (stage {body['stage']})")
    return "\n".join(lines)


# ---------------------------------------------------------------- sending


def send(store: Store, rollout: str, body: dict[str, Any]) -> list[str]:
    """Post the event to every entry that wants it; return one warning per failure.
    Never raises: whatever goes wrong here, the command's action stands."""
    try:
        entries = [e for e in load_config(store, rollout) if body["event"] in e.get("on", [])]
    except Exception as exc:  # an unreadable config is a warning like any other
        return [
            f"notifications skipped: {exc}; "
            "`rolloutctl start` writes it again from the playbook's notify:"
        ]
    if not entries:
        return []
    warnings = []
    deadline = time.monotonic() + DEADLINE
    for entry in entries:
        kind = entry.get("kind", "webhook")
        try:
            url = envvars.expand(str(entry.get("url", "")))
            payload = {"text": slack_text(body)} if kind == "slack" else body
            error = _post(url, payload, deadline)
        except envvars.UnsetVariable as exc:
            error = f"environment variable {exc.name} is not set"
            url = ""
        except Exception as exc:  # never let a notification break the command
            error, url = f"{type(exc).__name__}: {exc}", ""
        if error is None:
            continue
        from rolloutctl.transport import redact  # loaded only when something failed

        where = f" to {redact(url)}" if url else ""  # scheme and host: never path, query, user
        message = f"{kind} notification of {body['event']}{where} failed: {error}"
        warnings.append(message)
        with contextlib.suppress(OSError, StoreUnavailable):  # the warning still reaches stderr
            store.audit(
                rollout,
                actor=body["actor"],
                command="notify",
                reason=message,
                before=None,
                after=None,
                verdict={"event": body["event"], "kind": kind, "delivered": False},
                at=body.get("time"),  # the command's clock (--now), like its own audit line
            )
    return warnings


def _post(url: str, payload: dict[str, Any], deadline: float) -> str | None:
    """None when delivered, else why not (after up to TRIES tries within the deadline)."""
    from rolloutctl.transport import Client, TimedOut, Unreachable

    error, tried = "not sent", 0
    for attempt in range(TRIES):
        if attempt:
            pause = BACKOFF[min(attempt - 1, len(BACKOFF) - 1)]
            if time.monotonic() + pause >= deadline:
                break
            time.sleep(pause)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        tried += 1
        with Client(timeout=min(TIMEOUT, remaining)) as client:  # redirects are not followed
            try:
                response = client.request("POST", url, json=payload)
            except TimedOut:
                error = "timed out"
                continue
            except Unreachable as exc:
                error = f"unreachable ({exc})"
                continue
        if 200 <= response.status_code < 300:
            return None
        error = f"HTTP {response.status_code}"
        if 400 <= response.status_code < 500 and response.status_code not in (408, 429):
            break  # the endpoint refuses this request: trying again will not help
    return f"{error} ({tried} tr{'y' if tried == 1 else 'ies'})"
