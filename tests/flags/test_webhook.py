"""The http flag backend against a local webhook server that checks the documented contract."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from rolloutctl.errors import BackendError, ExitCode
from rolloutctl.flags.registry import build_backend
from rolloutctl.flags.webhook import WebhookFlagBackend
from tests.conftest import PLAYBOOK, START, Workspace

BODY_KEYS = {"rollout", "stage", "flag", "control", "canary", "canary_percent", "scope", "action"}
TOKEN = "s3cret-token-value"

# (method, path, query, headers, body) -> (status, JSON answer)
App = Callable[[str, str, dict[str, str], dict[str, str], Any], tuple[int, Any]]


@dataclass
class LocalServer:
    """A stdlib HTTP server on 127.0.0.1 in a thread; `problems` collects contract breaches."""

    app: App
    requests: list[tuple[str, str]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    url: str = ""

    def __post_init__(self) -> None:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                parts = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(parts.query).items()}
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body: Any = None
                if raw:
                    try:
                        body = json.loads(raw)
                    except ValueError:
                        owner.problems.append(f"{self.command} {parts.path}: body is not JSON")
                owner.requests.append((self.command, parts.path))
                headers = {k.lower(): v for k, v in self.headers.items()}
                try:
                    status, answer = owner.app(self.command, parts.path, query, headers, body)
                except AssertionError as exc:
                    owner.problems.append(f"{self.command} {parts.path}: {exc}")
                    status, answer = 400, {"message": str(exc)}
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PATCH = _handle

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def serve(app: App) -> Iterator[LocalServer]:
    server = LocalServer(app)
    try:
        yield server
    finally:
        server.stop()


class FlagService:
    """Keeps flags as the webhook contract describes them."""

    def __init__(self) -> None:
        self.flags: dict[str, dict[str, Any]] = {}

    def __call__(
        self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: Any
    ) -> tuple[int, Any]:
        assert headers.get("authorization") == f"Bearer {TOKEN}", "missing bearer token"
        assert headers.get("x-team") == "search", "missing the configured header"
        if method == "GET" and path == "/flags":
            flag = self.flags.get(query.get("flag", ""))
            return (404, {"message": "no such flag"}) if flag is None else (200, flag)
        if method == "POST" and path == "/hook/abc":
            assert headers.get("content-type", "").startswith("application/json"), "not JSON"
            assert isinstance(body, dict), "body must be an object"
            assert set(body) >= BODY_KEYS, f"missing keys {BODY_KEYS - set(body)}"
            actions = {"set_split", "rollback", "set_control", "remove_control"}
            assert body["action"] in actions, body["action"]
            if body["action"] == "set_control":
                self.flags[body["flag"]] = {"value": body["value"]}
            elif body["action"] == "remove_control":
                self.flags.pop(body["flag"], None)
            else:
                assert isinstance(body["canary_percent"], int | float), "canary_percent"
                assert 0 <= body["canary_percent"] <= 100, "canary_percent out of range"
                self.flags[body["flag"]] = {
                    "canary_percent": body["canary_percent"],
                    "scope": body["scope"],
                }
            return 200, {"ok": True}
        return 404, {"message": f"no route {method} {path}"}


SPEC = {
    "backend": "http",
    "url": "${FLAG_HOOK_BASE}/hook/abc",
    "read_url": "${FLAG_HOOK_BASE}/flags",
    "headers": {"X-Team": "search"},
    "token_env": "FLAG_HOOK_TOKEN",
    "key": "answer-model",
    "control": "v1",
    "canary": "v2",
    "timeout": "5s",
    "retries": 2,
}


@pytest.fixture
def service() -> Iterator[tuple[FlagService, LocalServer]]:
    app = FlagService()
    yield from ((app, server) for server in serve(app))


@pytest.fixture
def backend(
    service: tuple[FlagService, LocalServer], monkeypatch: pytest.MonkeyPatch
) -> WebhookFlagBackend:
    monkeypatch.setenv("FLAG_HOOK_BASE", service[1].url)
    monkeypatch.setenv("FLAG_HOOK_TOKEN", TOKEN)
    built = build_backend(dict(SPEC))
    assert isinstance(built, WebhookFlagBackend) and built.KIND == "http"
    return built


def test_split_rollback_and_controls_follow_the_contract(
    service: tuple[FlagService, LocalServer], backend: WebhookFlagBackend
) -> None:
    app, server = service
    assert backend.read() is None  # 404: the flag does not exist yet
    scope = {"in": [{"var": "language"}, ["en"]]}
    split = backend.set_split(20, scope, rollout="shop", stage="c1")
    assert split.canary_percent == 20 and split.scope == scope
    assert app.flags["answer-model"] == {"canary_percent": 20, "scope": scope}
    assert backend.read() == split
    back = backend.rollback(rollout="shop", reason="pager")
    assert back.canary_percent == 0 and back.scope is None
    assert back.fingerprint != split.fingerprint
    backend.set_control("ai-answers-health", False)
    backend.set_control("review-threshold", 0.8)
    assert backend.read_control("ai-answers-health") is False
    assert backend.read_control("review-threshold") == 0.8
    assert server.problems == []
    posts = [r for r in server.requests if r[0] == "POST"]
    assert len(posts) == 4


def test_a_change_made_outside_rolloutctl_changes_the_fingerprint(
    service: tuple[FlagService, LocalServer], backend: WebhookFlagBackend
) -> None:
    app, _ = service
    split = backend.set_split(5, None, rollout="shop", stage="c1")
    app.flags["answer-model"]["canary_percent"] = 50
    now = backend.read()
    assert now is not None and now.canary_percent == 50
    assert now.fingerprint != split.fingerprint


def test_a_service_that_does_not_apply_the_change_fails_the_read_back(
    service: tuple[FlagService, LocalServer], backend: WebhookFlagBackend
) -> None:
    app, _ = service
    app.flags["answer-model"] = {"canary_percent": 0}

    def ignore_posts(method: str, path: str, *rest: Any) -> tuple[int, Any]:
        if method == "POST":
            return 202, {}
        return app(method, path, *rest)

    service[1].app = ignore_posts
    with pytest.raises(BackendError, match="read-back"):
        backend.set_split(10, None, rollout="shop", stage="c1")


def test_an_unset_environment_variable_is_named() -> None:
    with pytest.raises(BackendError, match="FLAG_HOOK_BASE_UNSET"):
        build_backend({**SPEC, "url": "${FLAG_HOOK_BASE_UNSET}/x", "token_env": None})


# ------------------------------------------------------------ faults (MockTransport)


def mock(
    handler: Callable[[httpx.Request], httpx.Response],
) -> tuple[WebhookFlagBackend, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)

    backend = WebhookFlagBackend(
        url="https://hooks.example/secret-path/abc",
        read_url="https://hooks.example/flags",
        key="answer-model",
        control="v1",
        canary="v2",
        headers={"Authorization": f"Bearer {TOKEN}"},
        retries=2,
        backoff=0.001,
        transport=httpx.MockTransport(record),
    )
    return backend, seen


def test_a_500_storm_gives_up_after_bounded_retries() -> None:
    backend, seen = mock(lambda request: httpx.Response(503))
    with pytest.raises(BackendError) as info:
        backend.rollback(rollout="shop", reason="pager")
    assert len(seen) == 3  # the first try and two retries
    assert "HTTP 503 after 3 tries" in info.value.message
    assert info.value.exit_code == ExitCode.BACKEND


def test_401_is_not_retried_and_no_secret_is_printed() -> None:
    backend, seen = mock(lambda request: httpx.Response(401, json={"message": "bad token"}))
    with pytest.raises(BackendError) as info:
        backend.set_split(10, None, rollout="shop", stage="c1")
    assert len(seen) == 1
    text = f"{info.value.message} {info.value.hint}"
    assert "401" in text and "not authorized" in text
    assert TOKEN not in text and "secret-path" not in text
    assert seen[0].headers["authorization"] == f"Bearer {TOKEN}"


def test_a_timeout_is_retried_then_reported() -> None:
    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    backend, seen = mock(slow)
    with pytest.raises(BackendError, match="timed out after 3 tries"):
        backend.read()
    assert len(seen) == 3


def test_a_transient_error_is_retried_until_it_passes() -> None:
    answers = iter([httpx.Response(502), httpx.Response(200, json={"canary_percent": 7})])
    backend, seen = mock(lambda request: next(answers))
    split = backend.read()
    assert split is not None and split.canary_percent == 7 and len(seen) == 2


def test_garbage_is_a_backend_error() -> None:
    backend, _ = mock(lambda request: httpx.Response(200, content=b"<html>"))
    with pytest.raises(BackendError, match="not JSON"):
        backend.read()
    backend, _ = mock(lambda request: httpx.Response(200, json={"canary_percent": "ten"}))
    with pytest.raises(BackendError, match="canary_percent"):
        backend.read()


def test_a_rollout_with_controls_and_rollback_through_the_cli(
    service: tuple[FlagService, LocalServer], monkeypatch: pytest.MonkeyPatch, ws: Workspace
) -> None:
    app, server = service
    monkeypatch.setenv("FLAG_HOOK_BASE", server.url)
    monkeypatch.setenv("FLAG_HOOK_TOKEN", TOKEN)
    flag = (
        "flag: {backend: http, url: '${FLAG_HOOK_BASE}/hook/abc', "
        "read_url: '${FLAG_HOOK_BASE}/flags', headers: {X-Team: search}, "
        "token_env: FLAG_HOOK_TOKEN, key: answer-model, control: v1, canary: v2}"
    )
    ws.playbook.write_text(
        PLAYBOOK.replace(
            "flag: {backend: file, path: flags/flags.json, key: answer-model, control: v1, "
            "canary: v2}",
            flag,
        )
        + "controls:\n"
        '  - {name: review-all, layer: review, title: "Review every answer", '
        "set: {review-threshold: 1.0}}\n"
    )
    started = ws.run("start", str(ws.playbook), now=START)
    assert started.code == 0, started.err
    assert app.flags["answer-model"] == {"canary_percent": 20, "scope": None}
    assert ws.run("control", "apply", "shop-answers", "review-all", "--reason", "x").code == 0
    assert app.flags["review-threshold"] == {"value": 1.0}
    reverted = ws.run("control", "revert", "shop-answers", "review-all", "--reason", "ok")
    assert reverted.code == 0, reverted.err
    assert "review-threshold" not in app.flags  # did not exist before: removed again
    rolled = ws.run("--json", "rollback", "shop-answers", "--reason", "pager")
    assert rolled.code == 0, rolled.err
    assert app.flags["answer-model"] == {"canary_percent": 0, "scope": None}
    assert ws.state()["status"] == "rolled_back"
    assert server.problems == []
    assert TOKEN not in "".join((started.out, started.err, rolled.out, rolled.err))


def test_a_flag_service_down_during_rollback_exits_4_and_records_nothing(
    monkeypatch: pytest.MonkeyPatch, ws: Workspace
) -> None:
    app = FlagService()
    with contextlib.contextmanager(serve)(app) as server:
        monkeypatch.setenv("FLAG_HOOK_BASE", server.url)
        monkeypatch.setenv("FLAG_HOOK_TOKEN", TOKEN)
        ws.playbook.write_text(
            PLAYBOOK.replace(
                "flag: {backend: file, path: flags/flags.json, key: answer-model, control: v1, "
                "canary: v2}",
                "flag: {backend: http, url: '${FLAG_HOOK_BASE}/hook/abc', read_url: "
                "'${FLAG_HOOK_BASE}/flags', headers: {X-Team: search}, token_env: "
                "FLAG_HOOK_TOKEN, key: answer-model, control: v1, canary: v2, retries: 1}",
            )
        )
        assert ws.run("start", str(ws.playbook), now=START).code == 0
    before = (ws.root / "state" / "shop-answers" / "state.json").read_text()
    down = ws.run("rollback", "shop-answers", "--reason", "pager")  # the server is gone
    assert down.code == ExitCode.BACKEND, down.err
    assert "the rollback did NOT complete" in down.err and "after 2 tries" in down.err
    assert "set flag 'answer-model' to serve only 'v1' by hand" in down.err
    assert "Traceback" not in down.err
    assert (ws.root / "state" / "shop-answers" / "state.json").read_text() == before
