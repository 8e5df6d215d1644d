"""The one HTTP client of rolloutctl: the flag backends that talk to a service (http,
launchdarkly, unleash), notifications and the metrics sources (prometheus, http) send through
it. Retries follow rolloutctl/retrying.py; here: `${ENV}` expansion that names the missing variable, messages that name only a
URL's scheme and host (paths and query strings often carry secrets), and a stable fingerprint
of what a service answered, so a flag changed outside rolloutctl is noticed.

`Client` speaks HTTP/1.1 with the standard library: the flag backends run on rollback's fast
path, where importing httpx and httpcore (~200 ms with their optional extras installed) would
cost more than the flip itself. Tests hand it an httpx transport (`httpx.MockTransport`) for
the faults a real server cannot produce; only then is httpx imported.

It honours the environment the way httpx and requests do, so a rollback works from wherever
the metrics queries work:

- Proxy, decided per request. `urllib.request.getproxies_environment()` reads `<scheme>_proxy`
  in any case, a lower-case variable winning over its upper-case twin (an empty lower-case
  one unsets it; under CGI, where `REQUEST_METHOD` is set, upper-case `HTTP_PROXY` is
  ignored). An http URL uses `http_proxy`, an https URL `https_proxy`, else `all_proxy`.
  `urllib.request.proxy_bypass_environment()` applies `no_proxy`: `*` bypasses every host;
  otherwise a comma list of host names, IP addresses or domain suffixes (`example.com` and
  `.example.com` both cover `api.example.com`), optionally with `:port`; no CIDR ranges.
  urllib is imported only when some `*_proxy` variable is set.
- Only `http://` proxies (a scheme-less `host:port` counts as one): an https target is
  tunnelled with CONNECT, an http target is asked for with its absolute URL. Credentials in
  the proxy URL (`http://user:password@host:3128`, percent-encoded) become
  `Proxy-Authorization: Basic`; messages show the proxy as scheme://host:port only.
- CA certificates for https: the first set of `SSL_CERT_FILE` (httpx's and OpenSSL's
  variable, so flags and metrics trust the same CAs), `REQUESTS_CA_BUNDLE`, `CURL_CA_BUNDLE`
  is the CA file; `SSL_CERT_DIR` is a CA directory (`openssl rehash` layout); both may be set.
  When either is set it replaces the system's CA store, as it does in httpx and requests. A
  missing or unreadable one is a BackendError naming the variable and the path.

Retries follow the rules every HTTP call of rolloutctl shares (rolloutctl/retrying.py); a
flag call must land, so a timeout is tried again."""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlencode, urlsplit

from rolloutctl import envvars
from rolloutctl.errors import BackendError
from rolloutctl.retrying import GaveUp, RetryPolicy, Try, retried, retry_after

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    import ssl

DEFAULT_RETRIES = 2
DEFAULT_BACKOFF = 0.25  # seconds before the first retry; doubles after each

CA_FILE_VARIABLES = ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")  # first set wins
CA_DIR_VARIABLE = "SSL_CERT_DIR"


def expand_env(value: str, *, what: str) -> str:
    """${VAR} and ${VAR:-default}; an unset variable is a backend error naming the variable."""
    try:
        return envvars.expand(value)
    except envvars.UnsetVariable as exc:
        raise BackendError(
            f"{what}: environment variable {exc.name} is not set; nothing was changed",
            hint=f"export {exc.name}=... and run the command again",
        ) from None


def redact(url: str) -> str:
    """Scheme and host only: webhook paths and query strings often carry the secret."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}"


def fingerprint(data: Any) -> str:
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def seconds(value: Any, default: float = 10.0) -> float:
    """A timeout from the spec: a number of seconds or a duration string such as 10s."""
    if value is None:
        return default
    if isinstance(value, int | float):
        return float(value)
    from rolloutctl.durations import parse_duration

    return parse_duration(str(value)).total_seconds()


# ---------------------------------------------------------------- proxy and CAs from the environment


@dataclass(frozen=True)
class Proxy:
    """The http:// forward proxy one request goes through."""

    host: str
    port: int
    authorization: str | None  # the Proxy-Authorization value, from the URL's user:password
    shown: str  # scheme://host:port for messages: never the credentials

    def auth_headers(self) -> dict[str, str]:
        return {} if self.authorization is None else {"Proxy-Authorization": self.authorization}


def proxy_for(scheme: str, host: str, port: int | None) -> Proxy | None:
    """The proxy the environment names for this URL, or None to connect directly."""
    if not _proxy_variables_set():
        return None  # the common case: urllib.request (~6 ms to import) stays unloaded
    from urllib.request import getproxies_environment

    proxies = getproxies_environment()
    url = proxies.get(scheme) or proxies.get("all")
    if not url or _bypassed(host, port, proxies):
        return None
    return parse_proxy(url, scheme=scheme)


def _proxy_variables_set() -> bool:
    return any(value and name.lower().endswith("_proxy") for name, value in os.environ.items())


def _bypassed(host: str, port: int | None, proxies: dict[str, str]) -> bool:
    """no_proxy covers the host (`::1` as written), or host:port for port-specific entries."""
    # Public in urllib.request (requests imports it too) but missing from typeshed's stubs.
    from urllib.request import proxy_bypass_environment  # type: ignore[attr-defined]

    if proxy_bypass_environment(host, proxies):
        return True
    return port is not None and bool(proxy_bypass_environment(f"{host}:{port}", proxies))


def parse_proxy(url: str, *, scheme: str) -> Proxy:
    """A proxy URL as httpx and requests read it: no scheme means http://, port 80 by default."""
    if "://" not in url:
        url = "http://" + url
    parts = urlsplit(url)
    where = f"the proxy for {scheme} URLs ({scheme.upper()}_PROXY, {scheme}_proxy or ALL_PROXY)"
    try:
        port = parts.port
    except ValueError:
        raise BackendError(
            f"{where}, {parts.scheme}://{parts.hostname}, has an invalid port",
            hint="set it to http://host:port",
        ) from None
    if parts.scheme != "http" or not parts.hostname:
        raise BackendError(
            f"{where} is {redact(url)}: the flag backends support only http:// proxies",
            hint="set it to http://host:port (https targets are tunnelled with CONNECT)",
        )
    return Proxy(
        parts.hostname, port or 80, _basic_auth(parts.username, parts.password), redact(url)
    )


def _basic_auth(username: str | None, password: str | None) -> str | None:
    if username is None:
        return None
    import base64

    pair = f"{unquote(username)}:{unquote(password or '')}".encode()
    return "Basic " + base64.b64encode(pair).decode("ascii")


@dataclass(frozen=True)
class CALocation:
    """A CA file or directory and the environment variable that named it."""

    variable: str
    path: str

    def problem(self, *, directory: bool) -> str | None:
        if not os.path.exists(self.path):
            return "does not exist"
        if directory != os.path.isdir(self.path):
            return "is not a directory" if directory else "is a directory, not a file"
        return None


def ca_locations() -> tuple[CALocation | None, CALocation | None]:
    """(CA file, CA directory) named by the environment; see the module's docstring."""
    cafile = next(
        (CALocation(name, os.environ[name]) for name in CA_FILE_VARIABLES if os.environ.get(name)),
        None,
    )
    capath = os.environ.get(CA_DIR_VARIABLE)
    return cafile, CALocation(CA_DIR_VARIABLE, capath) if capath else None


def tls_context() -> ssl.SSLContext:
    """Certificate-verifying TLS, trusting the environment's CAs when it names some."""
    import ssl

    cafile, capath = ca_locations()
    for location, directory in ((cafile, False), (capath, True)):
        if location is not None and (problem := location.problem(directory=directory)):
            raise _ca_error(location, problem)
    try:
        return ssl.create_default_context(
            cafile=cafile.path if cafile else None, capath=capath.path if capath else None
        )
    except (OSError, ssl.SSLError) as exc:
        blamed = cafile or capath
        if blamed is None:  # the system's store: not ours to explain
            raise
        raise _ca_error(
            blamed, f"cannot be read as PEM certificates ({type(exc).__name__})"
        ) from None


def tls_for(verify: bool | str) -> ssl.SSLContext | None:
    """A source's `tls_verify`: True verifies against the environment's CAs (the client's
    default, None here), a path against that CA bundle, False not at all."""
    import ssl

    if verify is True:
        return None
    if verify is False:
        unverified = ssl.create_default_context()
        unverified.check_hostname = False
        unverified.verify_mode = ssl.CERT_NONE
        return unverified
    return ssl.create_default_context(cafile=verify)


def _ca_error(location: CALocation, problem: str) -> BackendError:
    return BackendError(
        f"{location.variable}={location.path} {problem}: no https request can be verified",
        hint=f"point {location.variable} at the CA certificates (PEM) to trust, or unset it",
    )


# ---------------------------------------------------------------- a small HTTP client


class Unreachable(Exception):
    """No answer: refused, reset, DNS, TLS, a proxy that would not tunnel. Retried."""


class TimedOut(Unreachable):
    """Connected, but no answer within the timeout. Retried when the request must land
    (rolloutctl/retrying.py)."""


@dataclass(frozen=True)
class Response:
    status_code: int
    content: bytes
    headers: dict[str, str] = field(default_factory=dict)  # names lower-cased

    def json(self) -> Any:
        """Raises ValueError when the body is not JSON."""
        return json.loads(self.content)

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")


_json_dumps = json.dumps  # Client.request's `json=` parameter shadows the module

# One keep-alive connection per target and route: a proxied one never serves a direct request.
_Route = tuple[str, str, int | None, Proxy | None]


class Client:
    """Blocking HTTP/1.1 with keep-alive per target and route (direct, or which proxy);
    `with Client(...) as c: c.request(...)`. `request` raises Unreachable or TimedOut when no
    answer came, BackendError when the environment's proxy or CA settings cannot be used."""

    def __init__(
        self,
        *,
        timeout: float,
        headers: dict[str, str] | None = None,
        transport: Any = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.timeout = timeout
        self.headers = {"Accept": "application/json", "User-Agent": "rolloutctl", **(headers or {})}
        self.transport = transport  # an httpx transport: tests only
        self._connections: dict[_Route, http.client.HTTPConnection] = {}
        self._tls = tls  # None: verify against the environment's CAs (tls_context)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for conn in self._connections.values():
            conn.close()
        self._connections.clear()

    def request(
        self,
        method: str,
        url: str,
        *,
        params: dict[str, str] | None = None,
        json: Any = None,
        data: dict[str, str] | None = None,
        content: str | bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        """One request: a JSON body (`json`), a form (`data`) or raw bytes (`content`)."""
        headers = {**self.headers, **(headers or {})}
        body = None
        if json is not None:
            body = _json_dumps(json).encode()
            headers.setdefault("Content-Type", "application/json")
        elif data is not None:
            body = urlencode(data).encode()
            headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
        elif content is not None:
            body = content.encode() if isinstance(content, str) else content
        if "query" in (params or data or {}):  # a PromQL query, in the URL or the form
            log.debug("query: %s", (params or data or {})["query"])
        if params:
            url += ("&" if "?" in url else "?") + urlencode(params)
        started = time.perf_counter()
        answer = self._request(method, url, body, headers)
        if log.isEnabledFor(logging.INFO):  # the address without its query (it may hold a key)
            parts = urlsplit(url)
            ms = (time.perf_counter() - started) * 1000
            where = f"{parts.hostname}{f':{parts.port}' if parts.port else ''}{parts.path}"
            log.info("%s %s -> %s in %.0f ms", method, where, answer.status_code, ms)
        return answer

    def _request(
        self, method: str, url: str, body: bytes | None, headers: dict[str, str]
    ) -> Response:
        if self.transport is not None:
            return self._via_httpx(method, url, body, headers)
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise Unreachable(f"not an http(s) URL: {parts.scheme}://")
        proxy = proxy_for(parts.scheme, parts.hostname, parts.port)
        route: _Route = (parts.scheme, parts.hostname, parts.port, proxy)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        if proxy is not None and parts.scheme == "http":
            target = f"http://{_authority(parts.hostname, parts.port)}{target}"
            headers.update(proxy.auth_headers())
        return self._send(route, method, target, body, headers)

    def _send(
        self, route: _Route, method: str, target: str, body: bytes | None, headers: dict[str, str]
    ) -> Response:
        conn = self._connection(route)
        if conn.sock is None:  # a new or dropped connection: its failure is no answer at all
            try:
                conn.connect()
            except (OSError, http.client.HTTPException) as exc:
                self._drop(route)
                raise Unreachable(_failure(exc, route[3])) from None
        try:
            conn.request(method, target, body=body, headers=headers)
            answer = conn.getresponse()
            content = answer.read()
        except TimeoutError as exc:
            self._drop(route)
            raise TimedOut(_failure(exc, route[3])) from None
        except (OSError, http.client.HTTPException) as exc:
            self._drop(route)
            raise Unreachable(_failure(exc, route[3])) from None
        return Response(answer.status, content, {k.lower(): v for k, v in answer.getheaders()})

    def _connection(self, route: _Route) -> http.client.HTTPConnection:
        if route not in self._connections:
            self._connections[route] = self._open(route)
        return self._connections[route]

    def _open(self, route: _Route) -> http.client.HTTPConnection:
        scheme, host, port, proxy = route
        address = (host, port) if proxy is None else (proxy.host, proxy.port)
        if scheme == "http":
            return http.client.HTTPConnection(*address, timeout=self.timeout)
        if self._tls is None:
            self._tls = tls_context()
        conn = http.client.HTTPSConnection(*address, timeout=self.timeout, context=self._tls)
        if proxy is not None:
            conn.set_tunnel(host, port, headers=proxy.auth_headers())
        return conn

    def _drop(self, route: _Route) -> None:
        conn = self._connections.pop(route, None)
        if conn is not None:
            conn.close()

    def _via_httpx(
        self, method: str, url: str, body: bytes | None, headers: dict[str, str]
    ) -> Response:
        import httpx

        with httpx.Client(timeout=self.timeout, transport=self.transport) as client:
            try:
                answer = client.request(method, url, content=body, headers=headers)
            except httpx.ConnectTimeout as exc:
                raise Unreachable(type(exc).__name__) from None
            except httpx.TimeoutException as exc:
                raise TimedOut(type(exc).__name__) from None
            except httpx.TransportError as exc:
                raise Unreachable(type(exc).__name__) from None
        return Response(
            answer.status_code, answer.content, {k.lower(): v for k, v in answer.headers.items()}
        )


def _authority(host: str, port: int | None) -> str:
    name = f"[{host}]" if ":" in host else host
    return name if port is None else f"{name}:{port}"


def _failure(exc: BaseException, proxy: Proxy | None) -> str:
    """The exception's kind with the system's reason (`ConnectionRefusedError: Connection
    refused`, `gaierror: Name or service not known`), and the proxy's answer when it refused
    to tunnel (http.client says `Tunnel connection failed: 407 ...`); never a URL or the
    proxy's credentials."""
    reason = getattr(exc, "strerror", None)
    kind = (
        f"{type(exc).__name__}: {reason}"
        if isinstance(reason, str) and reason
        else type(exc).__name__
    )
    if proxy is None:
        return kind
    text = str(exc)
    if text.startswith("Tunnel connection failed"):
        return f"the proxy {proxy.shown} refused the tunnel: {text.split(': ', 1)[-1]}"
    return f"{kind} via the proxy {proxy.shown}"


# ---------------------------------------------------------------- one call, retried


def request(
    client: Client,
    method: str,
    url: str,
    *,
    what: str,
    retries: int,
    backoff: float,
    allow_404: bool = False,
    **kwargs: Any,
) -> Response | None:
    """One HTTP call under the retry rules of rolloutctl/retrying.py (a flag call must land:
    timeouts are retried); None for a 404 when allowed. Raises BackendError with the status
    (never the body's secrets, never the full URL) when it gives up."""
    where = f"{what} ({method} {redact(url)})"

    def attempt() -> Try[Response]:
        try:
            response = client.request(method, url, **kwargs)
        except TimedOut:
            return Try("timed out", detail="timed out")
        except Unreachable as exc:
            return Try("unreachable", detail=f"unreachable ({exc})")
        status = response.status_code
        if status >= 500:
            return Try("server error", detail=f"answered HTTP {status}", status=status)
        if status == 429:
            wait = retry_after(response.headers.get("retry-after"))
            asked = "" if wait is None else f", Retry-After {math.ceil(wait)} s"
            return Try("rate limited", detail=f"rate limited (HTTP 429{asked})", wait=wait)
        return Try("answer", answer=response)

    policy = RetryPolicy(retries=retries, backoff=backoff, retry_timeouts=True)
    try:
        response = retried(attempt, policy)
    except GaveUp as exc:
        tries = f"{exc.tries} tr{'y' if exc.tries == 1 else 'ies'}"
        hint = _RATE_LIMIT_HINT if exc.last.kind == "rate limited" else None
        raise BackendError(f"{where}: {exc.last.detail} after {tries}", hint=hint) from None
    if response.status_code == 404 and allow_404:
        return None
    _refuse(where, response)
    return response


_RATE_LIMIT_HINT = (
    "the flag service limits how often rolloutctl may call it; wait, then run the command "
    "again (or raise the rate limit)"
)


def _refuse(where: str, response: Response) -> None:
    """Raises for a 4xx answer, which no retry would change."""
    status = response.status_code
    if status in (401, 403):
        raise BackendError(
            f"{where}: refused with HTTP {status} (not authorized); nothing was retried",
            hint="check the token's environment variable and the token's permissions",
        )
    if status == 407:
        raise BackendError(
            f"{where}: the proxy refused with HTTP 407 (proxy authentication required)",
            hint="put the proxy's credentials in its URL: HTTP_PROXY=http://user:password@host:port",
        )
    if status >= 400:
        detail = _short_detail(response)
        raise BackendError(
            f"{where}: refused with HTTP {status}{detail}; nothing was retried",
            hint="the request does not match what the server expects; check the flag spec",
        )


def _short_detail(response: Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return ""
    message = body.get("message") if isinstance(body, dict) else None
    return f" ({str(message)[:200]})" if message else ""


def json_of(response: Response, *, what: str) -> Any:
    try:
        return response.json()
    except ValueError:
        raise BackendError(
            f"{what}: the answer is not JSON (HTTP {response.status_code})",
            hint="check that the URL points at the flag service",
        ) from None
