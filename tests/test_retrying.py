"""The retry rules every HTTP call shares (rolloutctl/retrying.py), one rule at a time, with
the pauses recorded instead of slept; then a metrics query under them, through the shared
client on a mock transport."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from rolloutctl import retrying, transport
from rolloutctl.metrics import retry
from rolloutctl.retrying import GaveUp, RetryPolicy, Try, retried


@pytest.fixture
def pauses(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    slept: list[float] = []
    monkeypatch.setattr(retrying.time, "sleep", slept.append)
    return slept


def _tries(*kinds: Try[str]) -> Iterator[Try[str]]:
    yield from kinds


def _run(policy: RetryPolicy, *tries: Try[str]) -> tuple[str | GaveUp[str], int]:
    sequence = _tries(*tries)
    count = 0

    def attempt() -> Try[str]:
        nonlocal count
        count += 1
        return next(sequence)

    try:
        return retried(attempt, policy), count
    except GaveUp as exc:
        return exc, count


ANSWER = Try("answer", answer="ok")
FLAG = RetryPolicy(retries=3, backoff=0.25, retry_timeouts=True)
QUERY = RetryPolicy(retries=3, backoff=0.25, retry_timeouts=False)


def test_no_answer_and_server_errors_are_retried_with_a_doubling_backoff(
    pauses: list[float],
) -> None:
    tries = (Try("unreachable"), Try("server error", status=503), Try("unreachable"), ANSWER)
    assert _run(QUERY, *tries) == ("ok", 4)
    assert pauses == [0.25, 0.5, 1.0]


def test_after_its_retries_it_gives_up_with_the_last_failure(pauses: list[float]) -> None:
    failures = [Try[str]("server error", detail=f"HTTP 50{i}", status=500 + i) for i in range(4)]
    gave_up, count = _run(FLAG, *failures)
    assert isinstance(gave_up, GaveUp) and count == 4
    assert (gave_up.tries, gave_up.last.detail) == (4, "HTTP 503")


def test_a_timeout_is_retried_only_when_the_request_must_land(pauses: list[float]) -> None:
    assert _run(FLAG, Try("timed out"), ANSWER) == ("ok", 2)
    gave_up, count = _run(QUERY, Try("timed out"), ANSWER)
    assert isinstance(gave_up, GaveUp) and (count, gave_up.tries) == (1, 1)
    assert gave_up.last.kind == "timed out"


def test_a_rate_limit_waits_what_the_server_asks_capped(pauses: list[float]) -> None:
    tries = (Try("rate limited", wait=2.0), Try("rate limited", wait=3600.0), Try("rate limited"))
    assert _run(QUERY, *tries, ANSWER) == ("ok", 4)
    assert pauses == [2.0, retrying.RATE_LIMIT_WAIT_MAX, 1.0]  # no Retry-After: the backoff


def test_a_metrics_query_is_retried_after_a_429_and_not_after_a_read_timeout(
    pauses: list[float],
) -> None:
    answers = iter([httpx.Response(429, headers={"Retry-After": "1"}), httpx.Response(200)])
    client = transport.Client(timeout=1, transport=httpx.MockTransport(lambda _: next(answers)))
    response = retry.send(
        lambda: client.request("GET", "http://metrics.test/q"), retries=2, backoff=0.1
    )
    assert response.status_code == 200 and pauses == [1.0]

    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("no answer", request=request)

    client = transport.Client(timeout=1, transport=httpx.MockTransport(slow))
    with pytest.raises(GaveUp) as slow_answer:
        retry.send(lambda: client.request("GET", "http://metrics.test/q"), retries=2, backoff=0.1)
    assert (slow_answer.value.last.kind, slow_answer.value.tries) == ("timed out", 1)
    assert pauses == [1.0]  # nothing more was waited for: not tried again


def test_a_metrics_query_that_keeps_failing_reports_the_last_status(pauses: list[float]) -> None:
    client = transport.Client(
        timeout=1, transport=httpx.MockTransport(lambda _: httpx.Response(502, text="bad"))
    )
    with pytest.raises(GaveUp) as caught:
        retry.send(lambda: client.request("GET", "http://metrics.test/q"), retries=1, backoff=0.1)
    last = caught.value.last
    assert (last.detail, last.status, caught.value.tries) == ("HTTP 502: bad", 502, 2)
