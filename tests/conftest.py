"""Fixtures that run the real CLI against real files in a temporary folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from rolloutctl import simulate

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
# A file flag for playbooks built in code (its path is never read by the tests using it).
FILE_FLAG = {"backend": "file", "path": "f.json", "key": "k", "control": "v1", "canary": "v2"}

if "MUTANT_UNDER_TEST" in os.environ:
    # Under mutation testing (benchmarks/mutation.py) mutmut calls every function through a
    # trampoline, three frames a call: the expression parser's depth-limit tests need room
    # to reach the limit they test.
    sys.setrecursionlimit(10_000)


@pytest.fixture(autouse=True)
def _no_cached_statistics_under_mutation() -> Any:
    """mutmut forks each mutant's run from a process that already ran the tests: a value
    memoized then (sequential.critical_z) would hide the mutant. Under mutation testing every
    test starts with the cache empty."""
    if "MUTANT_UNDER_TEST" in os.environ:
        from rolloutctl.stats import sequential

        sequential.critical_z.cache_clear()
    yield


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Under CI every test runs: a skip (a server, a browser or a binary the tests start is
    missing) is a failure there, so a green CI never hides a missing install step. On a
    developer's machine such tests skip and say what to install."""
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if report.skipped and in_ci() and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        reason = str(reason).removeprefix("Skipped: ")
        report.outcome = "failed"
        report.longrepr = f"skipped under CI, where every test must run: {reason}"


# Markers for a quick run while working (`pytest -m "not slow and not real_server and not
# browser"`); tests/run.sh and CI run everything. Given by what a test uses, so a new test is
# marked without anyone remembering to.
_REAL_SERVERS = {"unleash", "prometheus_url", "victoria_url", "server_url", "state_server"}
_CHILD_PROCESSES = {"ws", "cws", "demo"}  # rolloutctl in a child process, or the whole demo


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--state-backend") == "postgres":
        # Bytes written into a folder store's files mean nothing to PostgreSQL's rows.
        left_out = [item for item in items if item.get_closest_marker("folder_store")]
        if left_out:
            config.hook.pytest_deselected(items=left_out)
            items[:] = [item for item in items if item not in left_out]
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        if used & _REAL_SERVERS:
            item.add_marker(pytest.mark.real_server)
        if item.path.name == "test_browser.py":
            item.add_marker(pytest.mark.browser)
        if used & _CHILD_PROCESSES or item.path.parent.name == "simulate":
            item.add_marker(pytest.mark.slow)


PLAYBOOK = """\
rollout: shop-answers
goal: cheaper answers at equal quality
flag: {backend: file, path: flags/flags.json, key: answer-model, control: v1, canary: v2}
sources:
  requests: {kind: requestlog, path: "data/*.parquet"}
segments:
  dimensions: [category, device]
  critical: {category: [health]}
analysis:
  min_samples_per_arm: 1000
  min_samples_per_segment: 200
  expected_samples_per_arm: 10000
  pass_requires: no_failure
metrics:
  - {name: error_rate, group: technical, source: requests, kind: proportion, event: "status = 'error'", worse: higher, margin: {absolute: 0.01}, critical: true}
  - {name: hallucination_rate, group: quality, source: requests, kind: proportion, event: hallucination, worse: higher, margin: {absolute: 0.005}, critical: true}
  - {name: p95_latency_ms, group: technical, source: requests, kind: quantile, q: 0.95, value: latency_ms, worse: higher, margin: {relative: 0.15}}
  - {name: cost_per_request, group: technical, source: requests, kind: mean, value: cost_usd, worse: higher, margin: {relative: 0.5}}
  - {name: unsafe_answer_rate, group: safety, source: requests, kind: proportion, event: safety_violation, worse: higher, margin: {absolute: 0.002}, critical: true, per_segment: true}
stages:
  - {name: c1, traffic: 20, min_duration: 1h}
  - {name: c2, traffic: 50, min_duration: 1h}
  - {name: full, traffic: 100, min_duration: 30m}
triggers:
  - {name: cost-spike, when: "canary.cost_per_request > 3 * control.cost_per_request", action: pause}
"""


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--state-backend",
        choices=("file", "postgres"),
        default="file",
        help="the state store the CLI tests' workspaces use (tests/run.sh runs the state "
        "scenarios with both)",
    )


@pytest.fixture(scope="session")
def state_server() -> Iterator[Any]:
    """A real PostgreSQL for the state store (tests/servers/postgres.py), once per run."""
    import shutil

    from tests.servers.postgres import start_state_server

    server = start_state_server()
    yield server
    server.stop()
    shutil.rmtree(server.root, ignore_errors=True)


@pytest.fixture
def pg_url(state_server: Any) -> str:
    """A new empty database on the test server: its postgresql:// URL."""
    url: str = state_server.new_database()
    return url


@dataclass
class Workspace:
    root: Path
    playbook: Path
    run: Callable[..., Result]
    store_spec: str | None = None  # a postgresql:// URL when the workspace's store is one

    def log(
        self,
        scenario: str,
        start: datetime,
        hours: float,
        percent: float,
        part: str,
        seed: int = 0,
        rate: float = 30_000,
    ) -> Path:
        frame = simulate.generate(
            scenario,
            start,
            start + timedelta(hours=hours),
            requests_per_hour=rate,
            canary_percent=percent,
            seed=seed,
        )
        return simulate.write(frame, self.root / "data" / f"{part}.parquet")

    @property
    def flag(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.root / "flags" / "flags.json").read_text())
        return data["flags"]["answer-model"]

    def state(self, name: str = "shop-answers") -> dict[str, Any]:
        if self.store_spec:
            return self._store().load(name).to_dict()
        data: dict[str, Any] = json.loads((self.root / "state" / name / "state.json").read_text())
        return data

    def audit(self, name: str = "shop-answers") -> list[dict[str, Any]]:
        if self.store_spec:
            return [dict(event) for event in self._store().history(name)]
        path = self.root / "state" / name / "audit.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()]

    def doc(self, name: str, rollout: str = "shop-answers") -> Any:
        """A stored document (controls, notify) as the store holds it."""
        if self.store_spec:
            return self._store().read_doc(rollout, name)
        return json.loads((self.root / "state" / rollout / f"{name}.json").read_text())

    def write_doc(self, name: str, data: Any, rollout: str = "shop-answers") -> None:
        if self.store_spec:
            self._store().write_doc(rollout, name, data)
        else:
            (self.root / "state" / rollout / f"{name}.json").write_text(json.dumps(data))

    def intent(self, rollout: str = "shop-answers") -> Any:
        """The pending intent (pending.json in a folder store), or None."""
        if self.store_spec:
            return self._store().read_intent(rollout)
        path = self.root / "state" / rollout / "pending.json"
        return json.loads(path.read_text()) if path.exists() else None

    def write_intent(self, intent: dict[str, Any], rollout: str = "shop-answers") -> None:
        if self.store_spec:
            self._store().write_intent(rollout, intent)
        else:
            (self.root / "state" / rollout / "pending.json").write_text(json.dumps(intent))

    def spec(self) -> str:
        """The store's spec as `--state` takes it."""
        return self.store_spec or str(self.root / "state")

    def _store(self) -> Any:
        from rolloutctl.state.registry import open_store

        assert self.store_spec is not None
        return open_store(self.store_spec)


def cli_env(root: Path, store_spec: str | None = None) -> dict[str, str]:
    env = os.environ.copy()
    env.update(
        ROLLOUTCTL_STATE_DIR=str(root / "state"),
        ROLLOUTCTL_REPORTS_DIR=str(root / "reports"),
        ROLLOUTCTL_ACTOR="tester",
        ROLLOUTCTL_SPOOL=str(root / "spool"),
    )
    env.pop("ROLLOUTCTL_STATE", None)
    if store_spec:
        env["ROLLOUTCTL_STATE"] = store_spec
    env.pop("ROLLOUTCTL_NOW", None)
    env.pop("GITHUB_STEP_SUMMARY", None)  # a test run must not write to its CI's summary
    return env


@pytest.fixture
def ws(tmp_path: Path, request: pytest.FixtureRequest) -> Workspace:
    """The workspace, its state in a folder or (`--state-backend postgres`) in a new
    PostgreSQL database."""
    if request.config.getoption("--state-backend") == "postgres":
        return make_workspace(tmp_path, request.getfixturevalue("pg_url"))
    return make_workspace(tmp_path)


def make_workspace(tmp_path: Path, store_spec: str | None = None) -> Workspace:
    """A folder with the test playbook and a runner of the real CLI in it (also used by
    benchmarks/bench_report.py)."""
    playbook = tmp_path / "rollout.yaml"
    playbook.write_text(PLAYBOOK)

    def run(
        *args: str,
        now: datetime | None = None,
        timeout: float = 120,
        env: dict[str, str | None] | None = None,  # None: the variable removed
    ) -> Result:
        merged = {**cli_env(tmp_path, store_spec), **(env or {})}
        env = {k: v for k, v in merged.items() if v is not None}
        if now is not None:
            env["ROLLOUTCTL_NOW"] = now.isoformat()
        proc = subprocess.run(
            [sys.executable, "-m", "rolloutctl", *args],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=timeout,
        )
        return Result(proc.returncode, proc.stdout, proc.stderr)

    return Workspace(tmp_path, playbook, run, store_spec)
