"""A real PostgreSQL for the tests: Debian's server (what tests/run.sh installs), a temporary
cluster on 127.0.0.1 with a random password, stopped by PID. Used by the Unleash server's
tests (tests/flags/) and the PostgreSQL state store's (tests/state/).

PostgreSQL refuses to run as root, and the tests run as root under CI, so as root initdb and
postgres run as the `postgres` system user (`nobody` when that user does not exist)."""

from __future__ import annotations

import os
import pwd
import secrets
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

DB_USER = "unleash"
DB_NAME = "unleash"


def postgres_bin() -> Path | None:
    """The bin directory of the highest installed Debian PostgreSQL, or None."""
    found = [p.parent for p in Path("/usr/lib/postgresql").glob("*/bin/initdb")]
    found = [p for p in found if (p / "postgres").exists() and (p.parent.name.isdigit())]
    return max(found, key=lambda p: int(p.parent.name), default=None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError as exc:
        return f"(no log: {exc})"


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, wait: float = 15) -> None:
    """Signal the process by its PID and wait; SIGKILL when it does not exit in time."""
    if proc.poll() is None:
        os.kill(proc.pid, sig)
        try:
            proc.wait(wait)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)


# ---------------------------------------------------------------- PostgreSQL


@dataclass(frozen=True)
class RunAs:
    """Who runs initdb and postgres: the postgres user when we are root, else ourselves."""

    user: str | None
    uid: int
    gid: int

    def popen_args(self) -> dict[str, Any]:
        if self.user is None:
            return {}
        return {"user": self.uid, "group": self.gid, "extra_groups": []}


def run_as() -> RunAs:
    if os.geteuid() != 0:
        return RunAs(None, os.getuid(), os.getgid())
    for name in ("postgres", "nobody"):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        return RunAs(name, entry.pw_uid, entry.pw_gid)
    pytest.skip(
        "running as root and neither a `postgres` nor a `nobody` user exists for PostgreSQL"
    )


@dataclass(frozen=True)
class Postgres:
    port: int
    password: str
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        return f"postgres://{DB_USER}:{self.password}@127.0.0.1:{self.port}/{DB_NAME}"


# A started process and the signal that stops it; the fixture stops them in reverse order.
Started = list[tuple[subprocess.Popen[bytes], int]]


# A small environment of our own: no PG* variable of the caller's leaks into the cluster.
_ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}


def launch(
    bindir: Path, root: Path, port: int, owner: RunAs, password: str, log: Path
) -> subprocess.Popen[bytes]:
    """Start postgres on the cluster under root (made by start_postgres) and wait until it
    accepts connections; also used to start it again after a test stopped it."""
    with log.open("ab") as sink:
        proc = subprocess.Popen(
            [
                str(bindir / "postgres"),
                "-D",
                str(root / "data"),
                "-p",
                str(port),
                "-k",
                str(root / "sockets"),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=200",
            ],
            stdout=sink,
            stderr=subprocess.STDOUT,
            cwd=root,
            env=_ENV,
            **owner.popen_args(),
        )
    deadline = time.monotonic() + 30
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"postgres exited {proc.returncode}:\n{tail(log)}")
        ready = subprocess.run(
            [str(bindir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(port)],
            env={**_ENV, "PGPASSWORD": password},
            capture_output=True,
        )
        if ready.returncode == 0:
            return proc
        if time.monotonic() > deadline:
            stop(proc, signal.SIGINT)
            raise RuntimeError(f"postgres not ready on 127.0.0.1:{port}:\n{tail(log)}")
        time.sleep(0.1)


def start_postgres(bindir: Path, root: Path, owner: RunAs, started: Started) -> Postgres:
    """initdb a cluster under root, start postgres on 127.0.0.1, create the Unleash database.
    The postmaster goes into `started` as soon as it runs, so it is stopped even when this
    raises."""
    data, sockets = root / "data", root / "sockets"
    sockets.mkdir()
    password = secrets.token_hex(16)
    pwfile = root / "pwfile"
    pwfile.write_text(password + "\n")
    pwfile.chmod(0o600)
    for path in (root, sockets, pwfile):
        os.chown(path, owner.uid, owner.gid)
    env = _ENV
    init_log = root / "initdb.log"
    with init_log.open("wb") as sink:
        code = subprocess.call(
            [
                str(bindir / "initdb"),
                "-D",
                str(data),
                "-U",
                DB_USER,
                f"--pwfile={pwfile}",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
                "--no-locale",
            ],
            stdout=sink,
            stderr=subprocess.STDOUT,
            cwd=root,
            env=env,
            **owner.popen_args(),
        )
    if code != 0:
        raise RuntimeError(f"initdb exited {code} (as {owner.user}):\n{tail(init_log)}")
    port = free_port()
    log = root / "postgres.log"
    proc = launch(bindir, root, port, owner, password, log)
    # SIGINT is PostgreSQL's fast shutdown (pg_ctl stop -m fast): it does not wait for clients.
    started.append((proc, signal.SIGINT))
    db = Postgres(port, password, proc, log)
    client_env = {**_ENV, "PGPASSWORD": password}
    # Over TCP with the password, the way Unleash will connect.
    created = subprocess.run(
        [str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", DB_USER, DB_NAME],
        env=client_env,
        capture_output=True,
        text=True,
    )
    if created.returncode != 0:
        raise RuntimeError(f"createdb failed: {created.stderr}\n{tail(log)}")
    return db


@dataclass
class StateServer:
    """A cluster for the state store's tests: a fresh database per test, and a server that a
    test may stop and start again on the same port."""

    bindir: Path
    root: Path
    owner: RunAs
    db: Postgres
    proc: subprocess.Popen[bytes]

    def admin_url(self, database: str = DB_NAME) -> str:
        return f"postgresql://{DB_USER}:{self.db.password}@127.0.0.1:{self.db.port}/{database}"

    def new_database(self) -> str:
        """A new empty database; its URL (with the password in it)."""
        import psycopg

        name = "t" + secrets.token_hex(6)
        with psycopg.connect(self.admin_url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.admin_url(name)

    def stop(self) -> None:
        stop(self.proc, signal.SIGINT)

    def start(self) -> None:
        if self.proc.poll() is None:
            return
        log = self.root / "postgres.log"
        self.proc = launch(self.bindir, self.root, self.db.port, self.owner, self.db.password, log)


def start_state_server() -> StateServer:
    """Skips (fails under CI, tests/conftest.py) when PostgreSQL is not installed."""
    import tempfile

    bindir = postgres_bin()
    if bindir is None:
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    owner = run_as()
    root = Path(tempfile.mkdtemp(prefix="rolloutctl-state-pg-"))
    started: Started = []
    try:
        db = start_postgres(bindir, root, owner, started)
    except BaseException:
        for proc, sig in reversed(started):
            stop(proc, sig)
        raise
    return StateServer(bindir, root, owner, db, db.proc)
