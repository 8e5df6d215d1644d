"""The demo's candidate endpoint: a small OpenAI-compatible chat-completions server on
127.0.0.1, so the demo's smoke stage makes real HTTP calls on a machine without network.

It answers like a healthy deployment of the model it is asked for: the OpenAI response shape,
JSON mode honoured, token usage reported, and the API key checked."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

DEMO_KEY = "demo-candidate-key"


def _answer(payload: dict[str, Any]) -> dict[str, Any]:
    wants_json = (payload.get("response_format") or {}).get("type") == "json_object"
    content = json.dumps({"status": "ok"}) if wants_json else "pong"
    return {
        "id": "chatcmpl-demo",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": str(payload.get("model", "")),
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15},
    }


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        try:
            payload = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            payload = {}
        if self.headers.get("Authorization") != f"Bearer {DEMO_KEY}":
            status, body = 401, {"error": {"message": "invalid api key", "type": "auth"}}
        elif not self.path.endswith("/chat/completions"):
            status, body = 404, {"error": {"message": f"no route {self.path}"}}
        else:
            status, body = 200, _answer(payload)
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass


@contextmanager
def serving() -> Iterator[str]:
    """The endpoint's base URL while the block runs; stopped afterwards."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, name="demo-endpoint", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
