"""transport.Client through a real forward proxy on 127.0.0.1, to real http and https servers
whose CA is a self-signed certificate made with the openssl command line; 429 handling with
httpx.MockTransport (a real server cannot be made to rate limit on cue).

The proxy is written here: a threading socket server that tunnels `CONNECT host:port` and
forwards absolute-URI requests with http.client, recording what passed through it. It and the
servers accept connections to 127.0.0.1 only, bound every socket wait with a timeout, and are
shut down (their threads joined) when a test ends."""

from __future__ import annotations

import base64
import json
import os
import selectors
import shutil
import socket
import socketserver
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.utils import formatdate
from http.client import HTTPConnection
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from rolloutctl import retrying
from rolloutctl.errors import BackendError
from rolloutctl.flags.webhook import WebhookFlagBackend
from rolloutctl.retrying import retry_after
from rolloutctl.transport import Client, Proxy, Response, proxy_for, request

WAIT = 10.0  # seconds any socket of these servers waits before giving up
HOP_BY_HOP = {"connection", "keep-alive", "proxy-authorization", "proxy-connection", "te"}
ENVIRONMENT = (
    *(f"{name}_proxy" for name in ("http", "https", "all", "no")),
    *(f"{name}_PROXY" for name in ("HTTP", "HTTPS", "ALL", "NO")),
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "REQUEST_METHOD",
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No proxy or CA variable of the machine running the tests leaks into them, and no
    thread a test started outlives it (this fixture is torn down after the servers)."""
    for name in ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    before = set(threading.enumerate())
    yield
    assert set(threading.enumerate()) <= before


# ---------------------------------------------------------------- certificates


@dataclass(frozen=True)
class Cert:
    cert: Path
    key: Path


def make_cert(folder: Path, name: str) -> Cert:
    """A self-signed certificate for IP 127.0.0.1, which is also its own CA. Each has its
    own subject: OpenSSL looks an issuer up by subject name."""
    folder.mkdir(parents=True, exist_ok=True)
    cert, key = folder / f"{name}.pem", folder / f"{name}.key"
    new_key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    subject = ["-subj", f"/CN={name}", "-addext", "subjectAltName=IP:127.0.0.1", "-days", "2"]
    subprocess.run(
        ["openssl", "req", "-x509", *new_key, *subject, "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return Cert(cert, key)


@dataclass(frozen=True)
class Certs:
    server: Cert  # what the https target presents
    stranger: Cert  # a valid CA that did not sign it
    rehashed: Path  # a CA directory holding server's certificate, for SSL_CERT_DIR


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command line is not installed (apt-get install openssl)")
    root = tmp_path_factory.mktemp("certs")
    server, stranger = make_cert(root, "server"), make_cert(root, "stranger")
    rehashed = root / "cadir"
    rehashed.mkdir()
    shutil.copy(server.cert, rehashed / "server.pem")
    subprocess.run(["openssl", "rehash", str(rehashed)], check=True, capture_output=True)
    return Certs(server, stranger, rehashed)


# ---------------------------------------------------------------- the target


@dataclass
class Target:
    """An HTTP/1.1 server keeping flags as the http backend's webhook contract says, plus
    GET /hello; `tls` makes it https. `seen` holds (method, path, lower-cased headers)."""

    tls: Cert | None = None
    seen: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    flags: dict[str, Any] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)  # failed TLS handshakes, mostly

    def __post_init__(self) -> None:
        self.server = _Server(("127.0.0.1", 0), self._handler())
        self.server.failures = self.failures
        if self.tls is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(self.tls.cert, self.tls.key)
            self.server.tls = context
        self.port = self.server.server_address[1]
        self.url = f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"
        self.thread = _serve(self.server)

    def answer(self, method: str, path: str, query: dict[str, str], body: Any) -> tuple[int, Any]:
        if path == "/hello":
            return 200, {"hello": "world"}
        if method == "GET" and path == "/flags":
            flag = self.flags.get(query.get("flag", ""))
            return (404, {"message": "no such flag"}) if flag is None else (200, flag)
        if method == "POST" and path == "/hook":
            self.flags[body["flag"]] = {k: body[k] for k in ("canary_percent", "scope")}
            return 200, {"ok": True}
        return 404, {"message": "no route"}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive
            timeout = WAIT
            disable_nagle_algorithm = True  # headers and body are separate writes

            def setup(self) -> None:
                if isinstance(self.request, ssl.SSLSocket):
                    self.request.settimeout(WAIT)
                    self.request.do_handshake()
                super().setup()

            def _handle(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                owner.seen.append((self.command, self.path, _lower(self.headers.items())))
                query = {k: v[0] for k, v in parse_qs(parts.query).items()}
                status, answer = owner.answer(self.command, parts.path, query, body)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("X-Served-By", "target")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _handle

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler

    def stop(self) -> None:
        _stop(self.server, self.thread)


class _Server(ThreadingHTTPServer):
    """Joins its request threads on close; a failed TLS handshake is recorded, not printed."""

    daemon_threads = False
    tls: ssl.SSLContext | None = None
    failures: list[str]

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, address = self.socket.accept()
        if self.tls is None:
            return sock, address
        return self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), address

    def handle_error(self, request: Any, client_address: Any) -> None:
        self.failures.append(repr(sys.exc_info()[1]))


def _serve(server: socketserver.BaseServer) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    return thread


def _lower(items: Any) -> dict[str, str]:
    return {str(k).lower(): str(v) for k, v in items}


def _stop(server: socketserver.BaseServer, thread: threading.Thread) -> None:
    """Idempotent: a test may stop a server early to read what its threads recorded."""
    server.shutdown()
    server.server_close()  # joins the request threads, each bounded by WAIT
    thread.join(timeout=WAIT)
    assert not thread.is_alive()


# ---------------------------------------------------------------- the forward proxy


@dataclass(frozen=True)
class Passed:
    method: str
    target: str  # `host:port` for CONNECT, the absolute URL otherwise
    headers: dict[str, str]


@dataclass
class ForwardProxy:
    """An HTTP forward proxy: CONNECT tunnels and absolute-URI forwarding to 127.0.0.1 only.
    With `credentials`, a request without the right Proxy-Authorization gets 407."""

    credentials: tuple[str, str] | None = None
    passed: list[Passed] = field(default_factory=list)
    connections: int = 0

    def __post_init__(self) -> None:
        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), self._handler())
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = _serve(self.server)

    def authorized(self, headers: dict[str, str]) -> bool:
        if self.credentials is None:
            return True
        token = base64.b64encode(":".join(self.credentials).encode()).decode()
        return headers.get("proxy-authorization") == f"Basic {token}"

    def _handler(self) -> type[socketserver.StreamRequestHandler]:
        owner = self

        class Handler(socketserver.StreamRequestHandler):
            rbufsize = 0  # unbuffered: nothing of a tunnelled stream is left in a buffer
            timeout = WAIT
            disable_nagle_algorithm = True  # relayed TLS records go on at once

            def handle(self) -> None:
                owner.connections += 1
                while (head := self._read_head()) is not None:
                    owner.passed.append(head)
                    length = int(head.headers.get("content-length") or 0)
                    body = self.rfile.read(length) if length else None
                    if not owner.authorized(head.headers):
                        self._reply(407, b"", {"Proxy-Authenticate": 'Basic realm="test"'})
                        if head.method == "CONNECT":
                            return
                    elif head.method == "CONNECT":
                        return self._tunnel(head.target)
                    else:
                        self._forward(head, body)

            def _read_head(self) -> Passed | None:
                line = self.rfile.readline(65536).decode("latin-1").strip()
                if not line:
                    return None
                method, target, _ = line.split(" ", 2)
                headers = {}
                while (header := self.rfile.readline(65536).decode("latin-1").strip()) != "":
                    name, _, value = header.partition(":")
                    headers[name.strip().lower()] = value.strip()
                return Passed(method, target, headers)

            def _reply(self, status: int, body: bytes, headers: dict[str, str]) -> None:
                lines = [f"HTTP/1.1 {status} {'OK' if status < 300 else 'Refused'}"]
                lines += [f"{k}: {v}" for k, v in {**headers, "Content-Length": len(body)}.items()]
                self.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)

            def _tunnel(self, target: str) -> None:
                host, _, port = target.rpartition(":")
                assert host == "127.0.0.1", f"the test proxy tunnels to 127.0.0.1 only: {host}"
                with socket.create_connection((host, int(port)), timeout=WAIT) as upstream:
                    upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    _relay(self.connection, upstream)

            def _forward(self, head: Passed, body: bytes | None) -> None:
                parts = urlsplit(head.target)
                assert parts.scheme == "http" and parts.hostname == "127.0.0.1", head.target
                sent = {k: v for k, v in head.headers.items() if k not in HOP_BY_HOP}
                upstream = HTTPConnection(parts.hostname, parts.port, timeout=WAIT)
                try:
                    path = parts.path + (f"?{parts.query}" if parts.query else "")
                    upstream.request(head.method, path, body=body, headers=sent)
                    answer = upstream.getresponse()
                    data = answer.read()
                finally:
                    upstream.close()
                kept = _lower(answer.getheaders())
                kept = {k: v for k, v in kept.items() if k not in HOP_BY_HOP | {"content-length"}}
                self._reply(answer.status, data, kept)

        return Handler

    def stop(self) -> None:
        _stop(self.server, self.thread)


def _relay(client: socket.socket, upstream: socket.socket) -> None:
    """Copy bytes both ways until one side closes or both are quiet for WAIT seconds."""
    with selectors.DefaultSelector() as selector:
        selector.register(client, selectors.EVENT_READ, upstream)
        selector.register(upstream, selectors.EVENT_READ, client)
        while events := selector.select(timeout=WAIT):
            for key, _ in events:
                data = key.fileobj.recv(65536)  # type: ignore[union-attr]
                if not data:
                    return
                key.data.sendall(data)


@pytest.fixture
def target() -> Iterator[Target]:
    server = Target()
    yield server
    server.stop()


@pytest.fixture
def tls_target(certs: Certs) -> Iterator[Target]:
    server = Target(tls=certs.server)
    yield server
    server.stop()


@pytest.fixture
def proxy() -> Iterator[ForwardProxy]:
    server = ForwardProxy()
    yield server
    server.stop()


@pytest.fixture
def locked_proxy() -> Iterator[ForwardProxy]:
    server = ForwardProxy(credentials=("deploy", "p@ss:word"))
    yield server
    server.stop()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def get(url: str, **kwargs: Any) -> Response:
    """One GET the way the backends make it: retried, errors as BackendError."""
    with Client(timeout=5) as client:
        answer = request(client, "GET", url, what="test", retries=1, backoff=0.01, **kwargs)
    assert answer is not None
    return answer


# ---------------------------------------------------------------- proxies


def test_an_http_request_goes_through_http_proxy_with_keep_alive(
    target: Target, proxy: ForwardProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    with Client(timeout=5) as client:
        first = client.request("GET", f"{target.url}/hello")
        second = client.request("GET", f"{target.url}/hello", params={"n": "2"})
    assert first.json() == second.json() == {"hello": "world"}
    assert first.headers["x-served-by"] == "target"  # names lower-cased
    assert [(p.method, p.target) for p in proxy.passed] == [
        ("GET", f"{target.url}/hello"),
        ("GET", f"{target.url}/hello?n=2"),
    ]
    assert proxy.connections == 1  # both requests on one kept-alive connection to the proxy
    assert [(m, p) for m, p, _ in target.seen] == [("GET", "/hello"), ("GET", "/hello?n=2")]
    assert target.seen[0][2]["host"] == f"127.0.0.1:{target.port}"


def test_proxied_and_direct_requests_never_share_a_kept_alive_connection(
    target: Target, proxy: ForwardProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Client(timeout=5) as client:
        for no_proxy in ("", "127.0.0.1", "", "127.0.0.1"):  # decided per request
            monkeypatch.setenv("HTTP_PROXY", proxy.url)
            monkeypatch.setenv("NO_PROXY", no_proxy)
            assert client.request("GET", f"{target.url}/hello").status_code == 200
    assert len(target.seen) == 4
    assert len(proxy.passed) == 2 and proxy.connections == 1


@pytest.mark.parametrize(
    ("no_proxy", "bypassed"),
    [
        ("127.0.0.1", True),
        ("example.com, 127.0.0.1", True),
        ("*", True),
        ("{port}", True),  # host:port entry
        ("localhost", False),  # a name is not resolved: 127.0.0.1 is not `localhost`
        ("127.0.0.2", False),
        ("example.com", False),
    ],
)
def test_no_proxy_bypasses_the_proxy_for_the_hosts_it_names(
    target: Target,
    proxy: ForwardProxy,
    monkeypatch: pytest.MonkeyPatch,
    no_proxy: str,
    bypassed: bool,
) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.setenv("NO_PROXY", no_proxy.replace("{port}", f"127.0.0.1:{target.port}"))
    assert get(f"{target.url}/hello").json() == {"hello": "world"}
    assert len(target.seen) == 1
    assert len(proxy.passed) == (0 if bypassed else 1)


def test_a_lower_case_variable_wins_and_all_proxy_is_the_fallback(
    target: Target, proxy: ForwardProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{closed_port()}")  # would fail
    monkeypatch.setenv("http_proxy", proxy.url)
    assert get(f"{target.url}/hello").status_code == 200
    monkeypatch.delenv("HTTP_PROXY")
    monkeypatch.delenv("http_proxy")
    monkeypatch.setenv("ALL_PROXY", proxy.url)
    assert get(f"{target.url}/hello").status_code == 200
    monkeypatch.setenv("https_proxy", f"http://127.0.0.1:{closed_port()}")  # not for http
    assert get(f"{target.url}/hello").status_code == 200
    assert len(proxy.passed) == 3


def test_proxy_urls_are_read_like_httpx_and_requests_read_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "proxy.corp:3128")
    assert proxy_for("https", "api.example.com", None) == Proxy(
        "proxy.corp", 3128, None, "http://proxy.corp:3128"
    )
    assert proxy_for("http", "api.example.com", None) is None
    monkeypatch.setenv("HTTPS_PROXY", "http://me%40corp:p%3Ass@proxy.corp")
    found = proxy_for("https", "api.example.com", 443)
    assert found is not None and (found.port, found.shown) == (80, "http://proxy.corp")
    assert found.authorization == "Basic " + base64.b64encode(b"me@corp:p:ss").decode()
    monkeypatch.setenv("NO_PROXY", ".example.com")
    assert proxy_for("https", "api.example.com", 443) is None
    assert proxy_for("https", "example.org", 443) is not None
    monkeypatch.setenv("https_proxy", "")  # an empty lower-case variable unsets the proxy
    assert proxy_for("https", "example.org", 443) is None


def test_an_https_request_is_tunnelled_with_connect_and_verified_with_ssl_cert_file(
    tls_target: Target, proxy: ForwardProxy, certs: Certs, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{closed_port()}")  # not for https
    monkeypatch.setenv("SSL_CERT_FILE", str(certs.server.cert))
    with Client(timeout=5) as client:
        for _ in range(2):
            assert client.request("GET", f"{tls_target.url}/hello").status_code == 200
    assert [(p.method, p.target) for p in proxy.passed] == [
        ("CONNECT", f"127.0.0.1:{tls_target.port}")  # once: the tunnel is kept alive
    ]
    assert [(m, p) for m, p, _ in tls_target.seen] == [("GET", "/hello")] * 2


def test_proxy_credentials_go_to_the_proxy_and_never_to_the_target(
    target: Target,
    tls_target: Target,
    locked_proxy: ForwardProxy,
    certs: Certs,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = f"http://deploy:p%40ss%3Aword@127.0.0.1:{locked_proxy.port}"
    monkeypatch.setenv("HTTP_PROXY", url)
    monkeypatch.setenv("HTTPS_PROXY", url)
    monkeypatch.setenv("SSL_CERT_FILE", str(certs.server.cert))
    assert get(f"{target.url}/hello").status_code == 200
    assert get(f"{tls_target.url}/hello").status_code == 200
    expected = "Basic " + base64.b64encode(b"deploy:p@ss:word").decode()
    assert [(p.method, p.headers.get("proxy-authorization")) for p in locked_proxy.passed] == [
        ("GET", expected),
        ("CONNECT", expected),
    ]
    for _, _, headers in target.seen + tls_target.seen:
        assert "proxy-authorization" not in headers


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_a_proxy_refusing_the_credentials_is_reported_without_them(
    scheme: str,
    target: Target,
    tls_target: Target,
    locked_proxy: ForwardProxy,
    certs: Certs,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(f"{scheme}_proxy", f"http://deploy:hunter2@127.0.0.1:{locked_proxy.port}")
    monkeypatch.setenv("SSL_CERT_FILE", str(certs.server.cert))
    with pytest.raises(BackendError) as caught:
        get(f"{(target if scheme == 'http' else tls_target).url}/hello")
    text = f"{caught.value.message} {caught.value.hint}"
    assert "407" in text and "hunter2" not in text
    assert target.seen == tls_target.seen == []


def test_an_unreachable_proxy_is_named_without_its_password(
    target: Target, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = closed_port()
    monkeypatch.setenv("HTTP_PROXY", f"http://deploy:hunter2@127.0.0.1:{port}")
    with pytest.raises(BackendError) as caught:
        get(f"{target.url}/hello")
    assert f"via the proxy http://127.0.0.1:{port}" in caught.value.message
    assert "hunter2" not in caught.value.message and "2 tries" in caught.value.message
    assert target.seen == []


def test_a_proxy_other_than_http_is_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "socks5://deploy:hunter2@127.0.0.1:1080")
    with pytest.raises(BackendError) as caught:
        get("https://127.0.0.1:9/hello")
    assert "socks5://127.0.0.1:1080" in caught.value.message
    assert "HTTPS_PROXY" in caught.value.message and "hunter2" not in caught.value.message


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_the_webhook_backend_flips_its_flag_through_the_proxy(
    scheme: str,
    target: Target,
    tls_target: Target,
    proxy: ForwardProxy,
    certs: Certs,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    service = target if scheme == "http" else tls_target
    monkeypatch.setenv(f"{scheme.upper()}_PROXY", proxy.url)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(certs.server.cert))
    monkeypatch.setenv("HOOK_TOKEN", "t0ken")
    backend = WebhookFlagBackend.from_spec(
        {"url": f"{service.url}/hook", "read_url": f"{service.url}/flags", "key": "answer-model"}
        | {"control": "v1", "canary": "v2", "token_env": "HOOK_TOKEN", "timeout": 5}
    )
    assert backend.set_split(20, None, rollout="shop", stage="c1").canary_percent == 20
    assert backend.rollback(rollout="shop", reason="pager").canary_percent == 0
    assert service.flags == {"answer-model": {"canary_percent": 0, "scope": None}}
    assert [(m, p.split("?")[0]) for m, p, _ in service.seen] == [
        ("POST", "/hook"),
        ("GET", "/flags"),
    ] * 2
    assert all(h["authorization"] == "Bearer t0ken" for _, _, h in service.seen)
    through = [(p.method, p.target) for p in proxy.passed]
    if scheme == "http":
        assert through[1] == ("GET", f"{service.url}/flags?flag=answer-model")
    else:  # each call makes its own Client: one tunnel per call
        assert through == [("CONNECT", f"127.0.0.1:{service.port}")] * 4


# ---------------------------------------------------------------- CA certificates


@pytest.mark.parametrize(
    ("environment", "verified"),
    [
        ({}, False),  # the system's CAs do not know the self-signed one
        ({"SSL_CERT_FILE": "server"}, True),
        ({"REQUESTS_CA_BUNDLE": "server"}, True),
        ({"CURL_CA_BUNDLE": "server"}, True),
        ({"SSL_CERT_FILE": "stranger", "REQUESTS_CA_BUNDLE": "server"}, False),
        ({"REQUESTS_CA_BUNDLE": "server", "CURL_CA_BUNDLE": "stranger"}, True),
        ({"SSL_CERT_DIR": "rehashed"}, True),
        ({"SSL_CERT_FILE": "stranger", "SSL_CERT_DIR": "rehashed"}, True),  # both trusted
    ],
)
def test_the_ca_variables_decide_what_is_trusted_in_their_documented_order(
    tls_target: Target,
    certs: Certs,
    monkeypatch: pytest.MonkeyPatch,
    environment: dict[str, str],
    verified: bool,
) -> None:
    paths = {"server": certs.server.cert, "stranger": certs.stranger.cert}
    paths["rehashed"] = certs.rehashed
    for name, which in environment.items():
        monkeypatch.setenv(name, str(paths[which]))
    if verified:
        assert get(f"{tls_target.url}/hello").status_code == 200
        assert tls_target.failures == []
        return
    with pytest.raises(BackendError) as caught:
        get(f"{tls_target.url}/hello")
    assert "SSLCertVerificationError" in caught.value.message
    tls_target.stop()  # its threads joined: every failed handshake is recorded
    assert tls_target.seen == [] and len(tls_target.failures) == 2  # one per try


@pytest.mark.parametrize(
    ("name", "make", "problem"),
    [
        ("SSL_CERT_FILE", None, "does not exist"),
        ("REQUESTS_CA_BUNDLE", "not a certificate\n", "cannot be read as PEM certificates"),
        ("CURL_CA_BUNDLE", "dir", "is a directory, not a file"),
        ("SSL_CERT_DIR", None, "does not exist"),
    ],
)
def test_a_missing_or_broken_ca_is_a_backend_error_naming_variable_and_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, make: str | None, problem: str
) -> None:
    path = tmp_path / "ca.pem"
    if make == "dir":
        path.mkdir()
    elif make is not None:
        path.write_text(make)
    monkeypatch.setenv(name, str(path))
    with Client(timeout=5) as client, pytest.raises(BackendError) as caught:
        request(client, "GET", "https://127.0.0.1:9/", what="test", retries=2, backoff=0)
    assert f"{name}={path} {problem}" in caught.value.message
    assert caught.value.hint is not None and name in caught.value.hint


def test_importing_the_transport_loads_neither_httpx_nor_urllib_request() -> None:
    code = (
        "import sys, rolloutctl.transport as t\n"
        "assert t.proxy_for('https', 'example.com', None) is None\n"
        "sys.exit(sorted({'httpx', 'urllib.request'} & set(sys.modules)) or 0)"
    )
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr


# ---------------------------------------------------------------- HTTP 429


def mock_client(*answers: httpx.Response) -> tuple[Client, list[float]]:
    """A Client answering from `answers` in turn (the last one forever); the list gets the
    time.monotonic() of every request."""
    calls: list[float] = []

    def answer(_: httpx.Request) -> httpx.Response:
        calls.append(time.monotonic())
        given = answers[min(len(calls), len(answers)) - 1]
        return httpx.Response(given.status_code, headers=given.headers, content=given.content)

    return Client(timeout=5, transport=httpx.MockTransport(answer)), calls


def call(client: Client, retries: int = 2) -> Response | None:
    url = "https://flags.example.com/api/x?secret=1"
    return request(client, "POST", url, what="t", retries=retries, backoff=0.01, json={"on": 0})


def test_a_429_with_retry_after_zero_is_retried_and_succeeds() -> None:
    client, calls = mock_client(
        httpx.Response(429, headers={"Retry-After": "0"}), httpx.Response(200, json={"ok": 1})
    )
    answer = call(client)
    assert answer is not None and answer.json() == {"ok": 1} and len(calls) == 2
    assert answer.headers["content-type"] == "application/json"  # from the httpx path too


def test_a_429_without_retry_after_waits_the_usual_backoff() -> None:
    client, calls = mock_client(httpx.Response(429), httpx.Response(200))
    assert call(client) is not None and len(calls) == 2


def test_rate_limiting_that_never_ends_fails_saying_so_within_the_budget() -> None:
    client, calls = mock_client(httpx.Response(429, headers={"Retry-After": "0"}))
    with pytest.raises(BackendError) as caught:
        call(client, retries=3)
    assert len(calls) == 4  # the same budget of tries as a 5xx
    assert "rate limited (HTTP 429, Retry-After 0 s) after 4 tries" in caught.value.message
    assert "secret" not in caught.value.message
    assert caught.value.hint is not None and "limits" in caught.value.hint


def test_a_retry_after_http_date_is_waited_for() -> None:
    when = formatdate(time.time() + 2, usegmt=True)  # whole seconds: 1 to 2 s from now
    client, calls = mock_client(
        httpx.Response(429, headers={"Retry-After": when}), httpx.Response(200)
    )
    assert call(client) is not None
    assert len(calls) == 2 and 0.9 <= calls[1] - calls[0] < 5


def test_a_long_retry_after_is_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(retrying, "RATE_LIMIT_WAIT_MAX", 0.2)
    client, calls = mock_client(
        httpx.Response(429, headers={"Retry-After": "3600"}), httpx.Response(200)
    )
    assert call(client) is not None
    assert 0.15 <= calls[1] - calls[0] < 3


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (None, None),
        ("0", 0.0),
        (" 120 ", 120.0),
        ("1.5", 1.5),
        ("-1", None),
        ("nan", None),
        ("soon", None),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 30.0),  # RFC 9110's example date
        ("Wed, 21 Oct 2015 07:27:00 GMT", 0.0),  # passed: retry now
        ("Wed, 21 Oct 2015 07:28:00 -0000", 30.0),
    ],
)
def test_retry_after_reads_seconds_and_http_dates(value: str | None, seconds: float | None) -> None:
    now = 1445412450.0  # 2015-10-21 07:27:30 UTC
    assert retry_after(value, now=now) == seconds
