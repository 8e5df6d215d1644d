"""A smoke endpoint's credentials (`user:password@`) and query string (`?token=`) are sent to
the server and never shown: a smoke stage runs against a real local server through the CLI,
passing and failing, and every output and every file written under the workspace (state,
audit, gate records, reports, Markdown, JUnit) is searched for the secrets."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from rolloutctl.stages.smoke_calls import run_smoke
from tests.cli.test_ai_stages import EVALS, playbook
from tests.conftest import START, Workspace
from tests.stages.test_smoke_calls import KEY, MODEL, completion

USER = "alice-ops"
PASSWORD = "s3cr3t-p@ss"  # '@' travels percent-encoded in the URL
TOKEN = "tok-9f8e7d6c5b4a"
BASIC = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
SECRETS = (USER, PASSWORD, "s3cr3t-p%40ss", TOKEN, BASIC)


class Server:
    """Answers chat completions when the credentials and token arrive; `/echo` refuses them
    and echoes back everything it got, as a careless proxy would."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                url = urlsplit(self.path)
                payload = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                auth = self.headers.get("Authorization", "")
                server.requests.append({"path": url.path, "query": url.query, "auth": auth})
                token = parse_qs(url.query).get("token")
                if url.path.startswith("/echo/"):
                    message = f"refused {auth} for {self.path} (token {token})"
                    return self.send(401, {"error": {"message": message}})
                if url.path != "/good/v1/chat/completions":
                    return self.send(404, {"error": {"message": f"no route {url.path}"}})
                if auth != f"Basic {BASIC}" or token != [TOKEN]:
                    return self.send(401, {"error": {"message": "who are you?"}})
                wants_json = payload.get("response_format") == {"type": "json_object"}
                content = json.dumps({"status": "ok"}) if wants_json else "pong"
                return self.send(200, completion(payload["model"], content))

            def send(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def endpoint(self, behaviour: str) -> str:
        return f"http://{USER}:s3cr3t-p%40ss@127.0.0.1:{self.port}/{behaviour}?token={TOKEN}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def server() -> Iterator[Server]:
    running = Server()
    yield running
    running.stop()


def assert_no_secret(text: str, where: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{secret!r} in {where}"


def assert_no_secret_in_files(root: Path) -> int:
    files = [path for path in root.rglob("*") if path.is_file()]
    for path in files:
        assert_no_secret(path.read_bytes().decode("utf-8", errors="replace"), str(path))
    return len(files)


def test_the_smoke_result_shows_scheme_host_and_path_only(server: Server) -> None:
    result = run_smoke(server.endpoint("good"), MODEL, api_key=None, timeout_s=2.0, calls=1)
    assert result.passed, [(c.name, c.reason) for c in result.checks]
    assert result.endpoint == f"http://127.0.0.1:{server.port}/good"
    shown = json.dumps(result.to_json())
    assert_no_secret(shown, "the result")
    assert f"from http://127.0.0.1:{server.port}/good/v1/chat/completions in" in shown
    # the secrets were sent: the route goes before the query string, the credentials as Basic
    assert {(r["path"], r["query"], r["auth"]) for r in server.requests} == {
        ("/good/v1/chat/completions", f"token={TOKEN}", f"Basic {BASIC}")
    }

    echoed = run_smoke(server.endpoint("echo"), MODEL, api_key=KEY, timeout_s=2.0, calls=1)
    assert not echoed.passed
    assert (
        "refused Basic *** for /echo/v1/chat/completions?*** (token" in echoed.check("auth").reason
    )
    assert_no_secret(json.dumps(echoed.to_json()), "the echoed result")


def test_no_output_or_file_of_a_smoke_stage_holds_the_endpoints_secrets(
    ws: Workspace, server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws.playbook.write_text(playbook(EVALS / "v2.jsonl"))
    monkeypatch.setenv("CANDIDATE_API_KEY", KEY)
    outputs: list[str] = []

    def run(*args: str, code: int) -> Any:
        result = ws.run(*args, now=START + timedelta(minutes=1))
        outputs.append(result.out + result.err)
        assert result.code == code, result.out + result.err
        return result

    monkeypatch.setenv("CANDIDATE_BASE_URL", server.endpoint("good"))
    run("smoke", str(ws.playbook), code=0)
    assert json.loads(run("--json", "smoke", str(ws.playbook), code=0).out)["passed"] is True
    run("start", str(ws.playbook), code=0)
    md, xml = ws.root / "gate.md", ws.root / "gate.xml"
    passed = run(
        "--json", "advance", "shop-answers", "--markdown", str(md), "--junit", str(xml), code=0
    )
    assert passed.json()["decision"] == "advance"  # the smoke stage passed: secrets were sent
    run("history", "shop-answers", code=0)
    run("--json", "history", "shop-answers", code=0)
    run("status", "shop-answers", code=0)
    run("report", "shop-answers", code=0)

    monkeypatch.setenv("CANDIDATE_BASE_URL", server.endpoint("echo"))
    run("smoke", str(ws.playbook), code=10)
    run("--json", "smoke", str(ws.playbook), code=10)
    other = ws.root / "echo.yaml"
    text = playbook(EVALS / "v2.jsonl").replace("rollout: shop-answers", "rollout: echo")
    other.write_text(text.replace("key: answer-model", "key: echo-model"))
    run("start", str(other), code=0)
    failed = run("--json", "advance", "echo", "--markdown", str(md), "--junit", str(xml), code=10)
    assert any("refused the API key" in reason for reason in failed.json()["reasons"])
    run("advance", "echo", code=5)  # rolled back
    run("--json", "history", "echo", code=0)
    run("report", "echo", code=0)
    assert "refused Basic ***" in (ws.root / "state" / "echo" / "audit.jsonl").read_text()

    for number, text in enumerate(outputs):
        assert_no_secret(text, f"output {number}")
    assert assert_no_secret_in_files(ws.root) > 10  # state, audit, gate records, reports, md, xml
    assert any("127.0.0.1" in text for text in outputs)  # the host is still shown
