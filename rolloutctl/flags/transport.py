"""HTTP plumbing shared by the flag backends that talk to a service (http, launchdarkly,
unleash): bounded retries with backoff on 5xx, connection errors and timeouts (never on 4xx),
`${ENV}` expansion that names the missing variable, messages that name only a URL's scheme and
host (paths and query strings often carry secrets), and a stable fingerprint of what a service
answered, so a flag changed outside rolloutctl is noticed.

`Client` speaks HTTP/1.1 with the standard library: these backends run on rollback's fast
path, where importing httpx and httpcore (~200 ms with their optional extras installed) would
cost more than the flip itself. Tests hand it an httpx transport (`httpx.MockTransport`) for
the faults a real server cannot produce; only then is httpx imported."""

from __future__ import annotations

import hashlib
import http.client
import json
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

from rolloutctl import envvars
from rolloutctl.errors import BackendError

DEFAULT_RETRIES = 2
DEFAULT_BACKOFF = 0.25  # seconds before the first retry; doubles after each


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


# ---------------------------------------------------------------- a small HTTP client


class Unreachable(Exception):
    """No answer: refused, reset, DNS, TLS. Retried."""


class TimedOut(Unreachable):
    """No answer within the timeout. Retried."""


@dataclass(frozen=True)
class Response:
    status_code: int
    content: bytes

    def json(self) -> Any:
        """Raises ValueError when the body is not JSON."""
        return json.loads(self.content)


_json_dumps = json.dumps  # Client.request's `json=` parameter shadows the module


class Client:
    """Blocking HTTP/1.1 with keep-alive per host; `with Client(...) as c: c.request(...)`."""

    def __init__(
        self, *, timeout: float, headers: dict[str, str] | None = None, transport: Any = None
    ) -> None:
        self.timeout = timeout
        self.headers = {"Accept": "application/json", "User-Agent": "rolloutctl", **(headers or {})}
        self.transport = transport  # an httpx transport: tests only
        self._connections: dict[tuple[str, str, int | None], http.client.HTTPConnection] = {}

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
        headers: dict[str, str] | None = None,
    ) -> Response:
        headers = {**self.headers, **(headers or {})}
        body = None
        if json is not None:
            body = _json_dumps(json).encode()
            headers.setdefault("Content-Type", "application/json")
        if params:
            url += ("&" if "?" in url else "?") + urlencode(params)
        if self.transport is not None:
            return self._via_httpx(method, url, body, headers)
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise Unreachable(f"not an http(s) URL: {parts.scheme}://")
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        conn = self._connection(parts.scheme, parts.hostname, parts.port)
        try:
            conn.request(method, target, body=body, headers=headers)
            answer = conn.getresponse()
            return Response(answer.status, answer.read())
        except TimeoutError as exc:
            self._drop(parts.scheme, parts.hostname, parts.port)
            raise TimedOut(type(exc).__name__) from None
        except (OSError, http.client.HTTPException) as exc:
            self._drop(parts.scheme, parts.hostname, parts.port)
            raise Unreachable(type(exc).__name__) from None

    def _connection(self, scheme: str, host: str, port: int | None) -> http.client.HTTPConnection:
        key = (scheme, host, port)
        if key not in self._connections:
            if scheme == "https":
                import ssl

                self._connections[key] = http.client.HTTPSConnection(
                    host, port, timeout=self.timeout, context=ssl.create_default_context()
                )
            else:
                self._connections[key] = http.client.HTTPConnection(
                    host, port, timeout=self.timeout
                )
        return self._connections[key]

    def _drop(self, scheme: str, host: str, port: int | None) -> None:
        conn = self._connections.pop((scheme, host, port), None)
        if conn is not None:
            conn.close()

    def _via_httpx(
        self, method: str, url: str, body: bytes | None, headers: dict[str, str]
    ) -> Response:
        import httpx

        with httpx.Client(timeout=self.timeout, transport=self.transport) as client:
            try:
                answer = client.request(method, url, content=body, headers=headers)
            except httpx.TimeoutException as exc:
                raise TimedOut(type(exc).__name__) from None
            except httpx.TransportError as exc:
                raise Unreachable(type(exc).__name__) from None
        return Response(answer.status_code, answer.content)


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
    """One HTTP call with bounded retries; None for a 404 when allowed. Raises BackendError
    with the status (never the body's secrets, never the full URL) when it gives up."""
    where = f"{what} ({method} {redact(url)})"
    attempts = retries + 1
    last = ""
    for attempt in range(attempts):
        if attempt:
            time.sleep(backoff * 2 ** (attempt - 1))
        try:
            response = client.request(method, url, **kwargs)
        except TimedOut:
            last = "timed out"
            continue
        except Unreachable as exc:
            last = f"unreachable ({exc})"
            continue
        if response.status_code >= 500:
            last = f"answered HTTP {response.status_code}"
            continue
        if response.status_code == 404 and allow_404:
            return None
        if response.status_code in (401, 403):
            raise BackendError(
                f"{where}: refused with HTTP {response.status_code} (not authorized); "
                "nothing was retried",
                hint="check the token's environment variable and the token's permissions",
            )
        if response.status_code >= 400:
            detail = _short_detail(response)
            raise BackendError(
                f"{where}: refused with HTTP {response.status_code}{detail}; nothing was retried",
                hint="the request does not match what the server expects; check the flag spec",
            )
        return response
    tries = f"{attempts} tr{'y' if attempts == 1 else 'ies'}"
    raise BackendError(f"{where}: {last} after {tries}")


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
