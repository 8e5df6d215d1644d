"""One set of retry rules for every HTTP call rolloutctl makes: the flag backends' (over the
standard-library client of transport.py, for the fast path) and the metrics sources'
(over httpx, metrics/retry.py). Each caller turns one try into a `Try`; `retried` applies:

- no answer (refused, reset, DNS, TLS, a proxy that would not tunnel) and HTTP 5xx: tried
  again, after a backoff that doubles (`backoff`, 2 × `backoff`, …), `retries` times at most;
- HTTP 429: tried again within the same budget, after the `Retry-After` the server sent
  (capped at RATE_LIMIT_WAIT_MAX), else after the usual backoff;
- a timeout: tried again only when the request must land (`retry_timeouts`: a flag write or
  the read-back that verifies it, where a rollback that gives up leaves users on the
  candidate). A metrics query that timed out is not sent again: a slow server would only be
  waited on longer, and the gate holds on the error and asks again at its next look;
- any other answer, 4xx included, is the caller's to read: no retry would change it.

Standard library only."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

RATE_LIMIT_WAIT_MAX = 30.0  # seconds: the longest a Retry-After makes one retry wait

T = TypeVar("T")
TryKind = Literal["answer", "unreachable", "timed out", "server error", "rate limited"]


@dataclass(frozen=True)
class RetryPolicy:
    retries: int  # tries after the first
    backoff: float  # seconds before the first retry; doubles after each
    retry_timeouts: bool


@dataclass(frozen=True)
class Try(Generic[T]):
    """How one try ended: an answer for the caller, or why it should be tried again."""

    kind: TryKind
    answer: T | None = None
    detail: str = ""  # what went wrong, as the caller words it
    status: int | None = None  # the HTTP status of a server error or rate limit
    wait: float | None = None  # seconds a 429's Retry-After asked for


class GaveUp(Exception, Generic[T]):
    """Every try failed, or a timeout the policy does not retry: `last` says how."""

    def __init__(self, last: Try[T], tries: int) -> None:
        super().__init__(last.detail)
        self.last, self.tries = last, tries


def retried(attempt: Callable[[], Try[T]], policy: RetryPolicy) -> T:
    """The first answer `attempt` gets under the policy's rules; GaveUp otherwise."""
    pause = 0.0
    last: Try[T] = Try("unreachable")
    for number in range(policy.retries + 1):
        if number:
            time.sleep(pause)
        pause = policy.backoff * 2**number  # before the next try, unless a 429 says otherwise
        last = attempt()
        if last.kind == "answer":
            assert last.answer is not None
            return last.answer
        if last.kind == "timed out" and not policy.retry_timeouts:
            raise GaveUp(last, number + 1)
        if last.kind == "rate limited" and last.wait is not None:
            pause = min(last.wait, RATE_LIMIT_WAIT_MAX)
    raise GaveUp(last, policy.retries + 1)


def retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds a Retry-After header asks to wait (RFC 9110 §10.2.3: delay-seconds or an
    HTTP date, 0 once that date has passed); None when absent or unreadable."""
    if value is None:
        return None
    value = value.strip()
    try:
        delay = float(value)
    except ValueError:
        return _seconds_until(value, time.time() if now is None else now)
    return delay if math.isfinite(delay) and delay >= 0 else None


def _seconds_until(http_date: str, now: float) -> float | None:
    from datetime import UTC
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(http_date)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # `-0000`: UTC, says RFC 5322
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)
