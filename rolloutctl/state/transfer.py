"""`rolloutctl state export` / `import`: rollouts moved between stores (a folder to a team's
PostgreSQL, or back) with everything kept of them: the state at its version, the whole audit
log, a pending intent, the stored controls and notification targets, and the gate records.

The bundle is one JSON document (`format: rolloutctl-state`, `version: 1`)."""

from __future__ import annotations

from typing import Any

from rolloutctl.errors import InvalidInput, StateConflict
from rolloutctl.state.store import RolloutState, Store, state_from

FORMAT = "rolloutctl-state"
VERSION = 1
DOCUMENTS = ("controls", "notify")


def export_rollouts(store: Store, names: list[str] | None = None) -> dict[str, Any]:
    rollouts = []
    for name in names or store.names():
        with store.lock(name, "state export"):
            state = store.load(name)
            rollouts.append(
                {
                    "state": state.to_dict(),
                    "audit": list(store.history(name)),
                    "intent": store.read_intent(name),
                    "documents": {
                        doc: data
                        for doc in DOCUMENTS
                        if (data := store.read_doc(name, doc)) is not None
                    },
                    "records": store.records(name),
                }
            )
    return {"format": FORMAT, "version": VERSION, "rollouts": rollouts}


def import_rollouts(store: Store, bundle: Any, where: str, *, replace: bool = False) -> list[str]:
    """Write every rollout of the bundle; a rollout the store already has is refused (exit
    5) unless `replace`. Checked whole before anything is written."""
    entries = _entries(bundle, where)
    existing = [s.rollout for s, _ in entries if store.exists(s.rollout)]
    if existing and not replace:
        raise StateConflict(
            f"the store already has {', '.join(existing)}; nothing was imported",
            hint="pass --replace to overwrite them with the bundle's",
        )
    for state, entry in entries:
        with store.lock(state.rollout, "state import"):
            store.restore(state, [e for e in entry.get("audit") or [] if isinstance(e, dict)])
            if entry.get("intent"):
                store.write_intent(state.rollout, entry["intent"])
            for doc, data in (entry.get("documents") or {}).items():
                if doc in DOCUMENTS:
                    store.write_doc(state.rollout, doc, data)
            for record_name, record in (entry.get("records") or {}).items():
                store.save_record(state.rollout, record_name, record)
    return [state.rollout for state, _ in entries]


def _entries(bundle: Any, where: str) -> list[tuple[RolloutState, dict[str, Any]]]:
    if not isinstance(bundle, dict) or bundle.get("format") != FORMAT:
        raise InvalidInput(f"{where}: not a rolloutctl state bundle (format: {FORMAT} expected)")
    if bundle.get("version") != VERSION:
        raise InvalidInput(
            f"{where}: bundle version {bundle.get('version')!r}; this rolloutctl reads {VERSION}"
        )
    out = []
    for index, entry in enumerate(bundle.get("rollouts") or []):
        try:
            out.append((state_from(entry["state"]), entry))
        except (KeyError, TypeError) as exc:
            raise InvalidInput(f"{where}: rollouts[{index}] is not a rollout ({exc})") from None
    return out
