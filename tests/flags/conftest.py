"""A real Unleash server (npm package unleash-server 7.5.1) against a real PostgreSQL in a
temporary cluster, both on 127.0.0.1 only and both stopped by PID at teardown.

PostgreSQL refuses to run as root, and the tests run as root under CI, so as root initdb and
postgres run as the `postgres` system user (`nobody` when that user does not exist), over a
temporary directory chowned to it; the unix socket goes into that directory too (`-k`). The
temporary directory is made with tempfile, not pytest's tmp_path: pytest's are 0700 and root's,
so the postgres user could not reach them.

What has to be installed (see tests/run.sh): Debian's postgresql (/usr/lib/postgresql/*/bin),
node on PATH, and unleash-server@7.5.1 npm-installed into
${ROLLOUTCTL_TEST_CACHE:-$HOME/.cache/rolloutctl-tests}/unleash-7.5.1. When anything is missing
the tests skip on a developer's machine and fail when CI is set (tests/conftest.py)."""

from __future__ import annotations

import dataclasses
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

UNLEASH_VERSION = "7.5.1"
DB_USER = "unleash"
DB_NAME = "unleash"
START_TIMEOUT = 120.0  # the first start runs all of Unleash's database migrations


def unleash_dir() -> Path:
    cache = os.environ.get("ROLLOUTCTL_TEST_CACHE") or str(
        Path.home() / ".cache" / "rolloutctl-tests"
    )
    return Path(cache) / f"unleash-{UNLEASH_VERSION}"


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
    # A small environment of our own: no PG* variable of the caller's leaks into the cluster.
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
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
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [
                str(bindir / "postgres"),
                "-D",
                str(data),
                "-p",
                str(port),
                "-k",
                str(sockets),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
            ],
            stdout=sink,
            stderr=subprocess.STDOUT,
            cwd=root,
            env=env,
            **owner.popen_args(),
        )
    # SIGINT is PostgreSQL's fast shutdown (pg_ctl stop -m fast): it does not wait for clients.
    started.append((proc, signal.SIGINT))
    db = Postgres(port, password, proc, log)
    client_env = {**env, "PGPASSWORD": password}
    deadline = time.monotonic() + 30
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"postgres exited {proc.returncode}:\n{tail(log)}")
        ready = subprocess.run(
            [str(bindir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(port)],
            env=client_env,
            capture_output=True,
        )
        if ready.returncode == 0:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"postgres not ready on 127.0.0.1:{port}:\n{tail(log)}")
        time.sleep(0.1)
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


# ---------------------------------------------------------------- Unleash


@dataclass(frozen=True)
class UnleashServer:
    """A running Unleash and the admin API calls the tests make against it."""

    url: str
    token: str  # the exact Authorization header value
    project: str = "default"
    environment: str = "development"
    log: Path | None = None
    startup_seconds: float = 0.0  # from starting node to the admin API accepting the token

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": self.token}

    def request(self, method: str, path: str, json: Any = None) -> httpx.Response:
        """One admin API call with the token; `path` starts at /api/..."""
        return httpx.request(method, self.url + path, json=json, headers=self.headers, timeout=30)

    def features_path(self, name: str | None = None) -> str:
        path = f"/api/admin/projects/{self.project}/features"
        return path if name is None else f"{path}/{name}"

    def create_feature(self, name: str, *, type: str = "release") -> None:
        """Create the feature flag in self.project; one that already exists is fine."""
        answer = self.request("POST", self.features_path(), {"name": name, "type": type})
        if answer.status_code == 409:
            return
        answer.raise_for_status()

    def feature(self, name: str) -> dict[str, Any]:
        answer = self.request("GET", self.features_path(name))
        answer.raise_for_status()
        body: dict[str, Any] = answer.json()
        return body

    def environment_entry(self, name: str, environment: str | None = None) -> dict[str, Any]:
        """The feature's entry in its `environments` list for the environment (self.environment
        by default). Not called `environment`: that is the field."""
        wanted = environment or self.environment
        for entry in self.feature(name)["environments"]:
            if entry["name"] == wanted:
                found: dict[str, Any] = entry
                return found
        raise KeyError(f"feature {name} has no environment {wanted}")

    def set_enabled(self, name: str, on: bool) -> None:
        """Turn the feature on or off in self.environment."""
        path = f"{self.features_path(name)}/environments/{self.environment}/{'on' if on else 'off'}"
        self.request("POST", path).raise_for_status()

    def playground(self, name: str, context: dict[str, Any]) -> dict[str, Any]:
        """How Unleash's own evaluator answers the feature in self.environment for an SDK
        context (the advanced playground): `isEnabled`, `variant`, per-constraint results."""
        body = {
            "projects": [self.project],
            "environments": [self.environment],
            "context": {"appName": "rolloutctl-tests", **context},
        }
        answer = self.request("POST", "/api/admin/playground/advanced", body)
        answer.raise_for_status()
        for feature in answer.json()["features"]:
            if feature["name"] == name:
                [result] = feature["environments"][self.environment]
                found: dict[str, Any] = result
                return found
        raise KeyError(f"the playground did not evaluate feature {name}")


def wait_for(
    check: str, ok: Callable[[], bool], proc: subprocess.Popen[bytes], log: Path, deadline: float
) -> None:
    """Poll until ok() is true; the server exiting or the deadline passing fails the test."""
    while True:
        if proc.poll() is not None:
            pytest.fail(f"unleash exited {proc.returncode} before {check}; log tail:\n{tail(log)}")
        try:
            if ok():
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"unleash: no {check} within {START_TIMEOUT:.0f} s; log tail:\n{tail(log)}")
        time.sleep(0.25)


def unleash_server() -> Iterator[UnleashServer]:
    """PostgreSQL and Unleash up, yielded, and stopped by PID; usable outside pytest too
    (benchmarks/bench_rollback.py wraps it in contextlib.contextmanager)."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed (Unleash is a Node.js server)")
    server_js = unleash_dir() / "node_modules" / "unleash-server" / "dist" / "server.js"
    if not server_js.exists():
        pytest.skip(
            f"unleash-server@{UNLEASH_VERSION} is not installed at {unleash_dir()} (tests/run.sh)"
        )
    bindir = postgres_bin()
    if bindir is None:
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    owner = run_as()
    root = Path(tempfile.mkdtemp(prefix="rolloutctl-unleash-"))
    procs: Started = []
    try:
        try:
            db = start_postgres(bindir, root, owner, procs)
        except RuntimeError as exc:
            pytest.fail(f"PostgreSQL did not start: {exc}")
        token = f"*:*.{secrets.token_hex(24)}"
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(root),
            "DATABASE_URL": db.url,
            "DATABASE_SSL": "false",
            "HTTP_HOST": "127.0.0.1",
            "HTTP_PORT": str(port),
            "INIT_ADMIN_API_TOKENS": token,
            "CHECK_VERSION": "false",
            "SEND_TELEMETRY": "false",
            "LOG_LEVEL": "warn",
        }
        log = root / "unleash.log"
        started = time.monotonic()
        with log.open("wb") as sink:
            proc = subprocess.Popen(
                [node, str(server_js)], stdout=sink, stderr=subprocess.STDOUT, env=env, cwd=root
            )
        procs.append((proc, signal.SIGTERM))
        deadline = started + START_TIMEOUT
        wait_for(
            "200 from /health",
            lambda: httpx.get(url + "/health", timeout=2).status_code == 200,
            proc,
            log,
            deadline,
        )
        server = UnleashServer(url=url, token=token, log=log)
        wait_for(
            "admin API accepting the token",
            lambda: server.request("GET", "/api/admin/projects").status_code == 200,
            proc,
            log,
            deadline,
        )
        yield dataclasses.replace(server, startup_seconds=time.monotonic() - started)
    finally:
        for started_proc, sig in reversed(procs):  # Unleash first, then PostgreSQL
            stop(started_proc, sig)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def unleash() -> Iterator[UnleashServer]:
    yield from unleash_server()
