"""Which state store a command uses: `--state` (or `ROLLOUTCTL_STATE`) is a folder for the
file store, or a `postgresql://` URL for the PostgreSQL store a team shares. `--state-dir`
and `ROLLOUTCTL_STATE_DIR` still name a folder. The PostgreSQL driver is imported only when
a URL names it."""

from __future__ import annotations

import os
from pathlib import Path

from rolloutctl.state.store import Store, is_postgres

DEFAULT = ".rolloutctl"


def choose(state: str | None, state_dir: str | None) -> str:
    """The store's spec from the options, then the environment, then the default folder."""
    return (
        state
        or state_dir
        or os.environ.get("ROLLOUTCTL_STATE")
        or os.environ.get("ROLLOUTCTL_STATE_DIR")
        or DEFAULT
    )


def open_store(spec: str) -> Store:
    if is_postgres(spec):
        from rolloutctl.state.postgres import PostgresStore

        return PostgresStore(spec)
    from rolloutctl.state.file import FileStore

    return FileStore(Path(spec.removeprefix("file://")))
