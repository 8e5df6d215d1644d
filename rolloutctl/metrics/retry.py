"""One HTTP query to a metrics service, retried the way both HTTP sources need.

Connection failures and 5xx answers are retried with exponential backoff; a read or write
timeout is not (a slow server would only be waited on longer, and the gate holds rather than
guessing); a 4xx comes back to the caller, which knows what it means for its contract."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx


class SlowAnswer(Exception):
    """The server accepted the request but did not answer within the timeout."""


class GaveUp(Exception):
    """Every try failed: `status` is the last 5xx, or None when the server was unreachable."""

    def __init__(self, failure: str, status: int | None, tries: int) -> None:
        super().__init__(failure)
        self.failure, self.status, self.tries = failure, status, tries


def send(
    call: Callable[[], httpx.Response],
    *,
    retries: int,
    backoff: float,
    on_try: Callable[[], None] = lambda: None,
) -> httpx.Response:
    """call() until it answers below 500; on_try counts each try (sources report calls)."""
    delay, failure, status = backoff, "", None
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(delay)
            delay *= 2
        on_try()
        try:
            response = call()
        except (httpx.ReadTimeout, httpx.WriteTimeout, httpx.PoolTimeout):
            raise SlowAnswer() from None
        except httpx.TransportError as exc:
            failure, status = f"{type(exc).__name__}: {exc}", None
            continue
        if response.status_code >= 500:
            failure, status = (
                f"HTTP {response.status_code}: {short(response.text)}",
                response.status_code,
            )
            continue
        return response
    raise GaveUp(failure, status, retries + 1)


def short(text: str, limit: int = 300) -> str:
    """An answer's text cut for a message, on one line."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} chars)"
