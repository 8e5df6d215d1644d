"""The state store in PostgreSQL, for a team whose CI runners and on-call laptops share
nothing but a database (`--state postgresql://USER@HOST:PORT/DB`).

Everything the file store keeps, in the `rolloutctl` schema (created on first use, versioned
in `rolloutctl.meta`; `rolloutctl state migrate` creates or upgrades it ahead of time):

- `rollouts`: each rollout's state (jsonb) and its version;
- `audit`: the append-only audit log, one row per event; the tool's role needs only INSERT
  and SELECT on it (README: a least-privilege role);
- `intents`, `documents` (controls, notify targets), `records` (gate records);
- `holders`: who holds each lock, for the message the next command prints.

A transition is one transaction: the state row is updated only if its version is the one
the command read, and the audit row is inserted with it, so a state and its audit event
cannot part. A rollout's lock is a session advisory lock on the command's connection: a
holder that dies, or whose connection drops, releases it with the session.

The password comes from the URL, `PGPASSWORD` or `~/.pgpass` (libpq reads both) and is
never printed. Connection failures are BackendError (exit 4)."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Iterator
from typing import Any

from rolloutctl.errors import BackendError, StateConflict, StoreUnavailable, first_line
from rolloutctl.extras import require
from rolloutctl.state.store import (
    AuditEvent,
    AuditsByEvents,
    RolloutState,
    check_name,
    now_iso,
    shown,
    state_from,
    transition_event,
    version_conflict,
)

SCHEMA_VERSION = 1
CONNECT_TIMEOUT_S = 5
_LOCK_POLL_S = 0.05

# Each statement runs once, in order, in one transaction (`migrate`).
SCHEMA_V1 = (
    "CREATE SCHEMA IF NOT EXISTS rolloutctl",
    "CREATE TABLE IF NOT EXISTS rolloutctl.meta (key text PRIMARY KEY, value text NOT NULL)",
    """CREATE TABLE IF NOT EXISTS rolloutctl.rollouts (
        name text PRIMARY KEY,
        version integer NOT NULL,
        state jsonb NOT NULL,
        updated_at timestamptz NOT NULL DEFAULT now())""",
    """CREATE TABLE IF NOT EXISTS rolloutctl.audit (
        seq bigserial PRIMARY KEY,
        rollout text NOT NULL,
        event_id text,
        event jsonb NOT NULL,
        recorded_at timestamptz NOT NULL DEFAULT now())""",
    "CREATE INDEX IF NOT EXISTS audit_rollout ON rolloutctl.audit (rollout, seq)",
    """CREATE UNIQUE INDEX IF NOT EXISTS audit_event_id
        ON rolloutctl.audit (rollout, event_id) WHERE event_id IS NOT NULL""",
    """CREATE TABLE IF NOT EXISTS rolloutctl.intents (
        rollout text PRIMARY KEY, intent jsonb NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS rolloutctl.documents (
        rollout text NOT NULL, name text NOT NULL, data jsonb NOT NULL,
        PRIMARY KEY (rollout, name))""",
    """CREATE TABLE IF NOT EXISTS rolloutctl.records (
        rollout text NOT NULL, name text NOT NULL, record jsonb NOT NULL,
        PRIMARY KEY (rollout, name))""",
    """CREATE TABLE IF NOT EXISTS rolloutctl.holders (
        lock text PRIMARY KEY, holder text NOT NULL, backend_pid integer NOT NULL)""",
)


class PostgresStore(AuditsByEvents):
    def __init__(self, url: str) -> None:
        self.url = url
        self.where = shown(url)
        self._conn: Any = None
        self._psycopg = require("psycopg", "postgres", "a postgresql:// state store")

    # ------------------------------------------------------------ the connection

    @property
    def conn(self) -> Any:
        if self._conn is None:
            self._conn = self._connect()
            self._check_schema()
        return self._conn

    def _connect(self) -> Any:
        psycopg = self._psycopg
        try:
            return psycopg.connect(
                self.url,
                autocommit=True,
                connect_timeout=CONNECT_TIMEOUT_S,
                application_name=f"rolloutctl pid {os.getpid()}",
            )
        except psycopg.Error as exc:
            raise StoreUnavailable(
                f"cannot reach the state store {self.where}: {first_line(exc)}",
                hint="check that the database is up and the URL, user and password "
                "(PGPASSWORD or ~/.pgpass) are right; `rolloutctl rollback PLAYBOOK` still "
                "flips the flag while the store is down",
            ) from None

    @contextlib.contextmanager
    def _db(self, doing: str) -> Iterator[Any]:
        """A cursor; a lost connection or a database error becomes BackendError (exit 4)."""
        psycopg = self._psycopg
        try:
            with self.conn.cursor() as cur:
                yield cur
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            self._conn = None
            raise StoreUnavailable(
                f"the state store {self.where} failed while {doing}: {first_line(exc)}; "
                "nothing was recorded",
                hint="check that the database is up, then run the command again",
            ) from None
        except psycopg.errors.InsufficientPrivilege as exc:
            raise BackendError(
                f"the state store {self.where} refused {doing}: {first_line(exc)}",
                hint="grant the role the privileges the README's least-privilege role lists",
            ) from None

    def _check_schema(self) -> None:
        psycopg = self._psycopg
        try:
            with self._conn.cursor() as cur:
                cur.execute("SELECT value FROM rolloutctl.meta WHERE key = 'schema_version'")
                row = cur.fetchone()
        except psycopg.errors.UndefinedTable:
            self.migrate()
            return
        except psycopg.Error as exc:
            raise BackendError(
                f"cannot read the state store {self.where}: {first_line(exc)}"
            ) from None
        found = int(row[0]) if row else 0
        if found > SCHEMA_VERSION:
            raise StateConflict(
                f"the state store {self.where} has schema version {found}, newer than this "
                f"rolloutctl knows ({SCHEMA_VERSION}); nothing was changed",
                hint="upgrade rolloutctl on this machine",
            )
        if found < SCHEMA_VERSION:
            self.migrate()

    def migrate(self) -> int:
        """Create or upgrade the schema; returns its version. Idempotent."""
        psycopg = self._psycopg
        conn = self._conn or self._connect()
        self._conn = conn
        try:
            with conn.transaction(), conn.cursor() as cur:
                cur.execute(
                    "SELECT pg_advisory_xact_lock(hashtextextended('rolloutctl:schema', 0))"
                )
                for statement in SCHEMA_V1:
                    cur.execute(statement)
                cur.execute(
                    "INSERT INTO rolloutctl.meta (key, value) VALUES ('schema_version', %s) "
                    "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                    (str(SCHEMA_VERSION),),
                )
        except psycopg.errors.InsufficientPrivilege as exc:
            raise BackendError(
                f"cannot create the rolloutctl schema in {self.where}: {first_line(exc)}",
                hint="run `rolloutctl state migrate` once as the database owner",
            ) from None
        except psycopg.Error as exc:
            raise BackendError(f"cannot migrate {self.where}: {first_line(exc)}") from None
        return SCHEMA_VERSION

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None

    # ------------------------------------------------------------ state

    def names(self) -> list[str]:
        with self._db("listing rollouts") as cur:
            cur.execute("SELECT name FROM rolloutctl.rollouts ORDER BY name")
            return [row[0] for row in cur.fetchall()]

    def exists(self, rollout: str) -> bool:
        with self._db("reading a rollout") as cur:
            cur.execute("SELECT 1 FROM rolloutctl.rollouts WHERE name = %s", (check_name(rollout),))
            return cur.fetchone() is not None

    def load(self, rollout: str) -> RolloutState:
        with self._db("reading a rollout") as cur:
            cur.execute(
                "SELECT state FROM rolloutctl.rollouts WHERE name = %s", (check_name(rollout),)
            )
            row = cur.fetchone()
        if row is None:
            known = ", ".join(self.names()) or "none"
            raise StateConflict(
                f"no rollout named {rollout!r} in {self.where} (known: {known})",
                hint="start it with `rolloutctl start PLAYBOOK`, or pass --state",
            )
        try:
            return state_from(row[0])
        except TypeError as exc:
            raise StateConflict(f"the stored state of {rollout!r} is corrupt ({exc})") from None

    def commit(
        self,
        state: RolloutState,
        *,
        actor: str,
        command: str,
        reason: str | None,
        before: dict[str, Any] | None,
        expected_version: int | None = None,
        after_extra: dict[str, Any] | None = None,
        event_extra: dict[str, Any] | None = None,
        verdict: dict[str, Any] | None = None,
        at: str | None = None,
    ) -> None:
        """State and audit row in one transaction, the state row only at the version read."""
        check_name(state.rollout)
        new = RolloutState(**state.to_dict())
        new.version += 1
        new.updated_at = now_iso()
        new.created_at = new.created_at or new.updated_at
        new.pending_audit = None  # one transaction: no event can be left behind
        event = transition_event(
            new,
            actor=actor,
            command=command,
            reason=reason,
            before=before,
            after_extra=after_extra,
            event_extra=event_extra,
            verdict=verdict,
            at=at,
        )
        with self._db(f"recording {command}") as cur, self.conn.transaction():
            self._write_state(cur, new, expected_version)
            _insert_event(cur, state.rollout, event)
            cur.execute("DELETE FROM rolloutctl.intents WHERE rollout = %s", (state.rollout,))
        state.version, state.updated_at, state.created_at = (
            new.version,
            new.updated_at,
            new.created_at,
        )
        state.pending_audit = None

    def _write_state(self, cur: Any, new: RolloutState, expected_version: int | None) -> None:
        data = json.dumps(new.to_dict())
        cur.execute(
            "UPDATE rolloutctl.rollouts SET version = %s, state = %s, updated_at = now() "
            "WHERE name = %s AND (%s::integer IS NULL OR version = %s) RETURNING 1",
            (new.version, data, new.rollout, expected_version, expected_version),
        )
        if cur.fetchone() is not None:
            return
        cur.execute(
            "SELECT version FROM rolloutctl.rollouts WHERE name = %s FOR UPDATE", (new.rollout,)
        )
        row = cur.fetchone()
        if row is not None:
            raise version_conflict(new.rollout, int(row[0]), int(expected_version or 0))
        cur.execute(
            "INSERT INTO rolloutctl.rollouts (name, version, state) VALUES (%s, %s, %s)",
            (new.rollout, new.version, data),
        )

    # ------------------------------------------------------------ audit

    def append_events(self, rollout: str, events: list[dict[str, Any]]) -> None:
        with self._db("appending to the audit log") as cur:
            for event in events:
                _insert_event(cur, check_name(rollout), event)

    def history(self, rollout: str) -> list[AuditEvent]:
        with self._db("reading the audit log") as cur:
            cur.execute(
                "SELECT event FROM rolloutctl.audit WHERE rollout = %s ORDER BY seq",
                (check_name(rollout),),
            )
            events: list[AuditEvent] = [row[0] for row in cur.fetchall()]
        if not events and not self.exists(rollout):
            self.load(rollout)  # raises the "no rollout named" conflict
        return events

    # ------------------------------------------------------------ intents, documents, records

    def write_intent(self, rollout: str, intent: dict[str, Any]) -> None:
        with self._db("recording a pending change") as cur:
            cur.execute(
                "INSERT INTO rolloutctl.intents (rollout, intent) VALUES (%s, %s) "
                "ON CONFLICT (rollout) DO UPDATE SET intent = EXCLUDED.intent",
                (check_name(rollout), json.dumps(intent)),
            )

    def read_intent(self, rollout: str) -> dict[str, Any] | None:
        with self._db("reading a pending change") as cur:
            cur.execute("SELECT intent FROM rolloutctl.intents WHERE rollout = %s", (rollout,))
            row = cur.fetchone()
        if row is None:
            return None
        return row[0] if isinstance(row[0], dict) else {}

    def clear_intent(self, rollout: str) -> None:
        with self._db("clearing a pending change") as cur:
            cur.execute("DELETE FROM rolloutctl.intents WHERE rollout = %s", (rollout,))

    def read_doc(self, rollout: str, name: str) -> Any:
        with self._db(f"reading the stored {name}") as cur:
            cur.execute(
                "SELECT data FROM rolloutctl.documents WHERE rollout = %s AND name = %s",
                (check_name(rollout), name),
            )
            row = cur.fetchone()
        return None if row is None else row[0]

    def write_doc(self, rollout: str, name: str, data: Any) -> None:
        with self._db(f"storing the {name}") as cur:
            cur.execute(
                "INSERT INTO rolloutctl.documents (rollout, name, data) VALUES (%s, %s, %s) "
                "ON CONFLICT (rollout, name) DO UPDATE SET data = EXCLUDED.data",
                (check_name(rollout), name, json.dumps(data)),
            )

    def save_record(self, rollout: str, name: str, record: dict[str, Any]) -> None:
        with self._db("storing a gate record") as cur:
            cur.execute(
                "INSERT INTO rolloutctl.records (rollout, name, record) VALUES (%s, %s, %s) "
                "ON CONFLICT (rollout, name) DO UPDATE SET record = EXCLUDED.record",
                (check_name(rollout), name, json.dumps(record, default=str)),
            )

    def records(self, rollout: str) -> dict[str, dict[str, Any]]:
        with self._db("reading gate records") as cur:
            cur.execute(
                "SELECT name, record FROM rolloutctl.records WHERE rollout = %s ORDER BY name",
                (check_name(rollout),),
            )
            return {row[0]: row[1] for row in cur.fetchall()}

    def restore(self, state: RolloutState, events: list[dict[str, Any]]) -> None:
        data = json.dumps(state.to_dict())
        with self._db("importing a rollout") as cur, self.conn.transaction():
            cur.execute(
                "INSERT INTO rolloutctl.rollouts (name, version, state) VALUES (%s, %s, %s) "
                "ON CONFLICT (name) DO UPDATE SET version = EXCLUDED.version, "
                "state = EXCLUDED.state, updated_at = now()",
                (check_name(state.rollout), state.version, data),
            )
            for event in events:
                _insert_event(cur, state.rollout, event)

    # ------------------------------------------------------------ locks

    @contextlib.contextmanager
    def lock(self, rollout: str, command: str, wait: float = 0.0) -> Iterator[None]:
        name = f"rollout:{check_name(rollout)}"
        with self._advisory(name, f"rollout {rollout!r}", command, wait):
            yield

    @contextlib.contextmanager
    def flag_lock(self, flag_id: str, command: str, wait: float = 0.0) -> Iterator[None]:
        with self._advisory(f"flag:{flag_id}", f"flag {flag_id!r}", command, wait):
            yield

    @contextlib.contextmanager
    def _advisory(self, name: str, what: str, command: str, wait: float) -> Iterator[None]:
        key = f"rolloutctl:{name}"
        deadline = time.monotonic() + wait
        with self._db("taking a lock") as cur:
            while True:
                cur.execute("SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", (key,))
                if cur.fetchone()[0]:
                    break
                if time.monotonic() >= deadline:
                    raise StateConflict(
                        f"{what} is locked by another rolloutctl run ({_holder(cur, name, key)})",
                        hint="wait for it to finish (or pass --wait SECONDS); a run that dies "
                        "or loses its connection releases the lock by itself",
                    )
                time.sleep(_LOCK_POLL_S)
            holder = (
                f"pid {os.getpid()} on {socket.gethostname()} running {command} since {now_iso()}"
            )
            cur.execute(
                "INSERT INTO rolloutctl.holders (lock, holder, backend_pid) "
                "VALUES (%s, %s, pg_backend_pid()) ON CONFLICT (lock) "
                "DO UPDATE SET holder = EXCLUDED.holder, backend_pid = EXCLUDED.backend_pid",
                (name, holder),
            )
        try:
            yield
        finally:
            self._release(name, key)

    def _release(self, name: str, key: str) -> None:
        """Forget the holder before unlocking, so the next loser never reads a stale name."""
        if self._conn is None:
            return
        with contextlib.suppress(self._psycopg.Error), self._conn.cursor() as cur:
            cur.execute(
                "DELETE FROM rolloutctl.holders WHERE lock = %s AND backend_pid = pg_backend_pid()",
                (name,),
            )
            cur.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", (key,))


# The session holding an advisory lock, from pg_locks (a bigint key is split into classid,
# the high 32 bits, and objid, the low ones), joined with what it wrote in `holders`.
_HOLDER_SQL = """
SELECT l.pid, h.holder FROM pg_locks l
LEFT JOIN rolloutctl.holders h ON h.lock = %s AND h.backend_pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
  AND ((l.classid::bigint << 32) | l.objid::bigint) = hashtextextended(%s, 0)
"""


def _holder(cur: Any, name: str, key: str) -> str:
    """Who holds the lock; a holder that has just taken it may not have written its name
    yet, so look again for a moment before saying it is unknown."""
    backend = None
    for _ in range(10):
        cur.execute(_HOLDER_SQL, (name, key))
        row = cur.fetchone()
        if row is None:
            return "it has just been released; run the command again"
        backend, holder = row
        if holder:
            return str(holder)
        time.sleep(_LOCK_POLL_S)
    return f"database session {backend}, which has not said who it is"


def _insert_event(cur: Any, rollout: str, event: dict[str, Any]) -> None:
    """One audit row; an event with an id already recorded (a spooled event synced twice)
    is not doubled."""
    cur.execute(
        "INSERT INTO rolloutctl.audit (rollout, event_id, event) VALUES (%s, %s, %s) "
        "ON CONFLICT (rollout, event_id) WHERE event_id IS NOT NULL DO NOTHING",
        (rollout, event.get("id"), json.dumps(event)),
    )
