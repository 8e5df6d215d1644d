"""HTTP plumbing shared by the flag backends that talk to a service (http, launchdarkly,
unleash): bounded retries with backoff on 5xx, connection errors and timeouts (never on 4xx),
`${ENV}` expansion that names the missing variable, messages that name only a URL's scheme and
host (paths and query strings often carry secrets), and a stable fingerprint of what a service
answered, so a flag changed outside rolloutctl is noticed."""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any
from urllib.parse import urlsplit

import httpx

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


def request(
    client: httpx.Client,
    method: str,
    url: str,
    *,
    what: str,
    retries: int,
    backoff: float,
    allow_404: bool = False,
    **kwargs: Any,
) -> httpx.Response | None:
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
        except httpx.TimeoutException:
            last = "timed out"
            continue
        except httpx.TransportError as exc:
            last = f"unreachable ({type(exc).__name__})"
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


def _short_detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return ""
    message = body.get("message") if isinstance(body, dict) else None
    return f" ({str(message)[:200]})" if message else ""


def json_of(response: httpx.Response, *, what: str) -> Any:
    try:
        return response.json()
    except ValueError:
        raise BackendError(
            f"{what}: the answer is not JSON (HTTP {response.status_code})",
            hint="check that the URL points at the flag service",
        ) from None
