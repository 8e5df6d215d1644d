"""The smoke test against a real local OpenAI-compatible server: one server, one behaviour per
path prefix (`/good/v1/chat/completions`, `/slow/...`, ...), every check's verdict and reason
asserted, and the API key nowhere in any result."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from rolloutctl.stages.smoke_calls import TITLES, SmokeResult, run_smoke

KEY = "test-key-123"
MODEL = "v2"
SLOW_S = 1.5  # how long /slow sleeps: longer than any timeout the tests give it
SLUGGISH_S = 0.12  # how long /sluggish sleeps: an answer, but a slow one
USAGE = {"prompt_tokens": 12, "completion_tokens": 1, "total_tokens": 13}


def completion(model: str, content: str, *, usage: bool = True) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 1767225600,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
            }
        ],
    }
    if usage:
        body["usage"] = dict(USAGE)
    return body


def _without_choices(model: str, content: str) -> dict[str, Any]:
    body = completion(model, content)
    del body["choices"]
    return body


# How the server answers each behaviour (the first part of the request's path).
ANSWERS: dict[str, Callable[[str, str], dict[str, Any]]] = {
    "good": completion,
    "dated": lambda model, content: completion(f"{model}-2026-03-01", content),
    # a different model whose name extends the asked one
    "sibling": lambda model, content: completion(f"{model}-mini-2026-03-01", content),
    "nochoices": _without_choices,
    "nousage": lambda model, content: completion(model, content, usage=False),
    "wrongmodel": lambda model, content: completion("gpt-3.5-turbo-0125", content),
    "plaintext": lambda model, content: completion(model, "pong"),  # ignores response_format
}
DELAYS = {"slow": SLOW_S, "sluggish": SLUGGISH_S}  # a good answer, after this many seconds


class Server:
    """A chat-completions server on 127.0.0.1; records every request it gets."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                behaviour, _, route = self.path.lstrip("/").partition("/")
                length = int(self.headers.get("Content-Length", 0))
                payload = json.loads(self.rfile.read(length))
                auth = self.headers.get("Authorization")
                server.requests.append({"path": self.path, "auth": auth, "payload": payload})
                # a client that gave up, as it should, leaves a broken connection behind
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.answer(behaviour, route, auth, payload)

            def answer(
                self, behaviour: str, route: str, auth: str | None, payload: dict[str, Any]
            ) -> None:
                model = payload["model"]
                wants_json = payload.get("response_format") == {"type": "json_object"}
                content = json.dumps({"status": "ok"}) if wants_json else "pong"
                if route != "v1/chat/completions":
                    return self.send(404, {"error": {"message": f"no route {route}"}})
                if behaviour == "unauth" or auth != f"Bearer {KEY}":
                    key = (auth or "").removeprefix("Bearer ")
                    message = f"Incorrect API key provided: {key}."
                    error = {"message": message, "type": "invalid_request_error"}
                    return self.send(401, {"error": {**error, "code": "invalid_api_key"}})
                if behaviour in ANSWERS:
                    return self.send(200, ANSWERS[behaviour](model, content))
                if behaviour in DELAYS:
                    time.sleep(DELAYS[behaviour])
                    return self.send(200, completion(model, content))
                if behaviour == "trickle":  # ten bytes every 0.1 s: each read is quick
                    data = json.dumps(completion(model, content)).encode()
                    self.send_head(200, len(data))
                    for start in range(0, len(data), 10):
                        self.wfile.write(data[start : start + 10])
                        self.wfile.flush()
                        time.sleep(0.1)
                    return None
                if behaviour == "malformed":  # a proxy's error page, echoing the header
                    page = f"<html><body>\n<h1>Bad gateway</h1> upstream said no to {auth}"
                    return self.send_text(200, page + "</body></html>")
                return self.send(404, {"error": {"message": f"no behaviour {behaviour}"}})

            def send(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_head(status, len(data))
                self.wfile.write(data)

            def send_text(self, status: int, text: str) -> None:
                data = text.encode()
                self.send_head(status, len(data), "text/html")
                self.wfile.write(data)

            def send_head(self, status: int, length: int, kind: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(length))
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def server() -> Iterator[Server]:
    running = Server()
    yield running
    running.stop()


def smoke(server: Server, behaviour: str, **options: Any) -> SmokeResult:
    settings: dict[str, Any] = {"api_key": KEY, "timeout_s": 2.0, "calls": 3}
    settings.update(options)
    return run_smoke(f"{server.url}/{behaviour}", MODEL, **settings)


def verdicts(result: SmokeResult) -> dict[str, bool]:
    return {check.name: check.passed for check in result.checks}


def reason(result: SmokeResult, name: str) -> str:
    return result.check(name).reason


def assert_no_key(result: SmokeResult) -> None:
    assert KEY not in json.dumps(result.to_json())
    assert KEY not in repr(result)
    for check in result.checks:
        assert KEY not in check.reason


ALL_PASS = dict.fromkeys(TITLES, True)


def test_a_good_endpoint_passes_every_check(server: Server) -> None:
    result = smoke(server, "good", max_latency_ms=1000)

    assert verdicts(result) == ALL_PASS
    assert result.passed
    assert [check.name for check in result.checks] == list(TITLES)
    assert [check.title for check in result.checks] == list(TITLES.values())
    url = f"{server.url}/good/v1/chat/completions"
    assert reason(result, "reachable").startswith(f"HTTP 200 from {url} in ")
    assert reason(result, "auth") == "the API key was not refused (HTTP 200)"
    assert reason(result, "response_shape") == (
        "HTTP 200, choices[0].message.content is a string of 4 characters"
    )
    assert reason(result, "model") == 'answered by "v2"'
    assert reason(result, "json_mode") == "the content parses to a JSON object with 1 keys"
    assert reason(result, "usage") == "prompt_tokens 12, completion_tokens 1, total_tokens 13"
    assert reason(result, "timeout_honoured").startswith("answered in ")
    assert "(HTTP 200), within 0.5s + 0.5s slack" in reason(result, "timeout_honoured")
    assert "within the limit of 1000 ms (max " in reason(result, "latency")
    assert "over 3 calls" in reason(result, "latency")
    latency = result.check("latency").value
    assert latency is not None and 0 < latency < 1000
    probe = result.check("timeout_honoured").value
    assert probe is not None and 0 < probe < 1000
    assert result.check("auth").value is None
    assert_no_key(result)

    # the first call is the first latency sample: 3 calls + JSON mode + probe, no retries
    assert len(server.requests) == 5
    assert {r["path"] for r in server.requests} == {"/good/v1/chat/completions"}
    assert {r["auth"] for r in server.requests} == {f"Bearer {KEY}"}
    plain = [r["payload"] for r in server.requests if "response_format" not in r["payload"]]
    json_mode = [r["payload"] for r in server.requests if "response_format" in r["payload"]]
    assert len(plain) == 4 and len(json_mode) == 1
    for payload in plain + json_mode:
        assert payload["model"] == MODEL
        assert payload["messages"][0]["role"] == "user"
        assert payload["max_tokens"] == 16
    assert json_mode[0]["response_format"] == {"type": "json_object"}
    assert "JSON" in json_mode[0]["messages"][0]["content"]

    data = result.to_json()
    assert json.loads(json.dumps(data)) == data
    assert data["endpoint"] == f"{server.url}/good"
    assert data["model"] == MODEL
    assert data["passed"] is True
    assert data["checks"][0] == {
        "name": "reachable",
        "title": TITLES["reachable"],
        "passed": True,
        "reason": reason(result, "reachable"),
        "value": None,
    }


def test_a_dated_model_version_counts_as_the_requested_model(server: Server) -> None:
    result = smoke(server, "dated/", calls=1)

    assert verdicts(result) == ALL_PASS
    assert reason(result, "model") == 'answered by "v2-2026-03-01"'
    assert "over 1 call (no limit set)" in reason(result, "latency")
    assert len(server.requests) == 3


def test_a_slow_endpoint_fails_reachable_and_latency_but_the_client_gives_up_in_time(
    server: Server,
) -> None:
    started = time.perf_counter()
    result = smoke(server, "slow", timeout_s=0.3, probe_timeout_s=0.2)
    elapsed = time.perf_counter() - started

    assert verdicts(result) == {
        "reachable": False,
        "auth": False,
        "response_shape": False,
        "model": False,
        "json_mode": False,
        "usage": False,
        "timeout_honoured": True,
        "latency": False,
    }
    first = f"POST {server.url}/slow/v1/chat/completions: no answer within 0.3s (ReadTimeout)"
    assert reason(result, "reachable") == first
    for name in ("auth", "response_shape", "model", "json_mode", "usage"):
        assert reason(result, name) == f"skipped: {first}"
    assert reason(result, "latency") == "call 1 of 3: no answer within 0.3s (ReadTimeout)"
    assert result.check("latency").value is None
    assert reason(result, "timeout_honoured").startswith("the client gave up after 0.")
    assert reason(result, "timeout_honoured").endswith("within 0.2s + 0.5s slack")
    probe = result.check("timeout_honoured").value
    assert probe is not None and 200 <= probe < 700
    assert elapsed < 1.2  # neither call waited for the server's 1.5 s
    assert len(server.requests) == 2  # the main call and the probe: no latency calls, no retry
    assert_no_key(result)


def test_a_trickling_body_is_cut_off_at_the_whole_call_timeout(server: Server) -> None:
    # each 10-byte chunk arrives well within httpx's read timeout; the total takes ~3 s
    started = time.perf_counter()
    result = smoke(server, "trickle", timeout_s=0.4, probe_timeout_s=0.3)
    elapsed = time.perf_counter() - started

    assert verdicts(result)["reachable"] is False
    assert reason(result, "reachable").endswith("no answer within 0.4s (_Deadline)")
    assert verdicts(result)["timeout_honoured"] is True
    assert reason(result, "timeout_honoured").startswith("the client gave up after 0.")
    assert verdicts(result)["latency"] is False
    assert elapsed < 1.5


def test_a_slow_but_answering_endpoint_fails_only_the_latency_limit(server: Server) -> None:
    result = smoke(server, "sluggish", calls=2, max_latency_ms=50)

    assert verdicts(result) == {**ALL_PASS, "latency": False}
    latency = result.check("latency")
    assert latency.value is not None and latency.value >= SLUGGISH_S * 1000
    assert f"median {latency.value:.0f} ms exceeds the limit of 50 ms (max " in latency.reason
    assert "over 2 calls" in latency.reason
    assert reason(result, "timeout_honoured").startswith("answered in 0.")
    assert len(server.requests) == 4


def test_a_non_json_body_fails_the_shape_and_masks_an_echoed_key(server: Server) -> None:
    result = smoke(server, "malformed")

    assert verdicts(result) == {
        **ALL_PASS,
        "response_shape": False,
        "model": False,
        "json_mode": False,
        "usage": False,
    }
    shape = reason(result, "response_shape")
    assert shape == (
        'the body is not JSON: "<html><body>\\n<h1>Bad gateway</h1> upstream said no to Bearer'
        ' ***</body></html>"'
    )
    assert reason(result, "model") == f"skipped: {shape}"
    assert reason(result, "usage") == f"skipped: {shape}"
    assert reason(result, "json_mode") == shape
    assert_no_key(result)


def test_json_without_choices_fails_the_shape_naming_the_path(server: Server) -> None:
    result = smoke(server, "nochoices")

    assert verdicts(result) == {**ALL_PASS, "response_shape": False, "json_mode": False}
    assert reason(result, "response_shape") == "choices is missing"
    assert reason(result, "json_mode") == "choices is missing"
    assert reason(result, "model") == 'answered by "v2"'


def test_a_missing_usage_fails_naming_the_fields(server: Server) -> None:
    result = smoke(server, "nousage")

    assert verdicts(result) == {**ALL_PASS, "usage": False}
    assert reason(result, "usage") == (
        "usage is missing (no prompt_tokens, completion_tokens, total_tokens)"
    )


def test_a_refused_key_fails_auth_skips_the_rest_and_never_shows_the_key(
    server: Server,
) -> None:
    result = smoke(server, "unauth")

    assert verdicts(result) == {**dict.fromkeys(TITLES, False), "reachable": True}
    assert not result.passed
    refused = 'the endpoint refused the API key (HTTP 401: "Incorrect API key provided: ***.")'
    assert reason(result, "auth") == refused
    assert reason(result, "reachable").startswith("HTTP 401 from ")
    for name in ("response_shape", "model", "json_mode", "usage", "timeout_honoured", "latency"):
        assert reason(result, name) == f"skipped: {refused}"
    assert len(server.requests) == 1
    assert_no_key(result)


def test_no_key_where_one_is_needed_says_so(server: Server) -> None:
    result = smoke(server, "good", api_key=None)

    assert verdicts(result)["auth"] is False
    assert reason(result, "auth") == ("the endpoint wants an API key and none was given (HTTP 401)")
    assert server.requests[0]["auth"] is None


def test_the_wrong_model_answering_fails_naming_it(server: Server) -> None:
    result = smoke(server, "wrongmodel")

    assert verdicts(result) == {**ALL_PASS, "model": False}
    assert reason(result, "model") == (
        'the answer came from "gpt-3.5-turbo-0125", not "v2": '
        "the route may point at the wrong deployment"
    )


def test_an_endpoint_ignoring_json_mode_fails_it(server: Server) -> None:
    result = smoke(server, "plaintext")

    assert verdicts(result) == {**ALL_PASS, "json_mode": False}
    assert reason(result, "json_mode") == (
        'the content is not JSON (Expecting value: line 1 column 1 (char 0)): "pong"'
    )


def test_a_wrong_route_fails_the_shape_with_the_status(server: Server) -> None:
    result = smoke(server, "good", route="/v1/completions")

    assert verdicts(result)["reachable"] is True
    assert reason(result, "response_shape") == ('HTTP 404, expected 200: "no route v1/completions"')
    assert reason(result, "latency") == "call 1 of 3: HTTP 404"
    assert verdicts(result)["json_mode"] is False


def test_nothing_listening_fails_reachable_and_skips_the_rest() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # the socket is closed: nothing listens on the port
    result = run_smoke(f"http://127.0.0.1:{port}/", MODEL, api_key=KEY, timeout_s=2.0)

    assert verdicts(result) == dict.fromkeys(TITLES, False)
    first = reason(result, "reachable")
    assert first.startswith(f"POST http://127.0.0.1:{port}/v1/chat/completions: ConnectError: ")
    for name in TITLES:
        if name != "reachable":
            assert reason(result, name) == f"skipped: {first}"
    assert_no_key(result)


def test_a_client_that_outlasts_its_timeout_fails_the_probe() -> None:
    # a transport that ignores timeouts: the probe (the only call with a short one) hangs
    def handler(request: httpx.Request) -> httpx.Response:
        timeout = request.extensions["timeout"]
        if timeout["read"] < 1:
            time.sleep(1.0)
        payload = json.loads(request.content)
        return httpx.Response(200, json=completion(payload["model"], '{"status": "ok"}'))

    result = run_smoke(
        "http://llm.invalid",
        MODEL,
        api_key=KEY,
        timeout_s=5.0,
        calls=1,
        probe_timeout_s=0.2,
        transport=httpx.MockTransport(handler),
    )

    assert verdicts(result) == {**ALL_PASS, "timeout_honoured": False}
    probe = result.check("timeout_honoured")
    assert probe.value is not None and probe.value >= 1000
    assert probe.reason.startswith("a call with a 0.2s timeout ended after 1.")
    assert probe.reason.endswith(
        "more than 0.2s + 0.5s slack: the client-side timeout is not enforced against this endpoint"
    )


def test_invalid_arguments_raise_without_the_key() -> None:
    with pytest.raises(ValueError, match="calls must be at least 1"):
        run_smoke("http://x", MODEL, api_key=KEY, timeout_s=1, calls=0)
    with pytest.raises(ValueError, match="timeouts must be positive"):
        run_smoke("http://x", MODEL, api_key=KEY, timeout_s=0)
    with pytest.raises(ValueError, match="cannot carry") as raised:
        run_smoke("http://x", MODEL, api_key=KEY + "\n", timeout_s=1)
    assert KEY not in str(raised.value)


def test_a_model_whose_name_only_starts_with_the_requested_one_fails(server: Server) -> None:
    result = smoke(server, "sibling/", calls=1)
    assert verdicts(result)["model"] is False
    assert "v2-mini-2026-03-01" in reason(result, "model")
