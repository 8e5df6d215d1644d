"""One HTTP query to a metrics service, through the client every HTTP call of rolloutctl
shares (rolloutctl/transport.py) and under the shared retry rules (rolloutctl/retrying.py).
A query is a read for a decision that can wait: a timed-out one is not sent again (the gate
holds and asks at its next look); no answer, a 5xx and a 429 are
tried again; any other answer, 4xx included, is the caller's to read."""

from __future__ import annotations

from collections.abc import Callable

from rolloutctl.retrying import RetryPolicy, Try, retried, retry_after
from rolloutctl.transport import Response, TimedOut, Unreachable


def send(
    call: Callable[[], Response],
    *,
    retries: int,
    backoff: float,
    on_try: Callable[[], None] = lambda: None,
) -> Response:
    """call() until it answers neither 5xx nor 429; on_try counts each try (sources report
    calls). Raises retrying.GaveUp: its `last` try says why (`timed out`: not sent again)."""

    def attempt() -> Try[Response]:
        on_try()
        try:
            response = call()
        except TimedOut:
            return Try("timed out")
        except Unreachable as exc:
            return Try("unreachable", detail=str(exc))
        status = response.status_code
        failure = f"HTTP {status}: {short(response.text)}"
        if status >= 500:
            return Try("server error", detail=failure, status=status)
        if status == 429:
            wait = retry_after(response.headers.get("retry-after"))
            return Try("rate limited", detail=failure, status=status, wait=wait)
        return Try("answer", answer=response)

    return retried(attempt, RetryPolicy(retries=retries, backoff=backoff, retry_timeouts=False))


def short(text: str, limit: int = 300) -> str:
    """An answer's text cut for a message, on one line."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} chars)"
