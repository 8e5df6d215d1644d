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
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.servers.postgres import (
    Started,
    free_port,
    postgres_bin,
    run_as,
    start_postgres,
    stop,
    tail,
)

UNLEASH_VERSION = "7.5.1"
START_TIMEOUT = 120.0  # the first start runs all of Unleash's database migrations


def unleash_dir() -> Path:
    cache = os.environ.get("ROLLOUTCTL_TEST_CACHE") or str(
        Path.home() / ".cache" / "rolloutctl-tests"
    )
    return Path(cache) / f"unleash-{UNLEASH_VERSION}"


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
