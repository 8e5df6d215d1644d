"""Smoke test of a candidate model behind an OpenAI-compatible chat-completions endpoint.

Before any traffic moves to a candidate, `run_smoke` makes a few real calls to the endpoint the
rollout will use and checks the integration, not the model's quality:

- reachable: a chat completion gets an HTTP answer at all (DNS, TLS, routing, a running server);
- auth: the API key is not refused (HTTP 401/403);
- response_shape: HTTP 200 with a JSON body whose `choices[0].message.content` is a string;
- model: the answer names the requested model, or a dated version of it (a route pointing at
  the wrong deployment is a classic failure that every other check misses);
- json_mode: `response_format: {"type": "json_object"}` returns content that parses to a JSON
  object (code that parses answers depends on it, and not every server supports it);
- usage: `usage.prompt_tokens`, `completion_tokens` and `total_tokens` are non-negative
  integers (cost metrics and budgets are computed from them);
- timeout_honoured: a call with a deliberately short timeout ends within that timeout plus
  PROBE_SLACK_S, answered or abandoned: a hung endpoint must not hang the rollout;
- latency: `calls` sequential calls all answer; the median, against an optional limit.

Every check passes or fails with a specific reason (a status code, a missing field's path, a
parse error, a measurement against its limit). When the endpoint cannot be reached or refuses
the key, the checks that depend on an answer fail as "skipped: <that failure>"; when the first
call times out, the timeout probe still runs, since it is exactly what such an endpoint needs.

Requests: the first call is also the first latency sample, so a run makes `calls` + 2 requests
(the calls, one in JSON mode, one probe), sequentially, over one httpx client, never retried.
A call's timeout bounds the whole call, not only each network read.

The API key travels only in the `Authorization: Bearer` header. Results never hold it, and any
text taken from the server or an error (a body snippet, an error message, a model name) has it
replaced by "***" before it goes into a reason. The endpoint is shown as its scheme, host and
path only: credentials (`user:password@`, sent as HTTP Basic by httpx) and the query string
(`?token=...`, sent after the route) never are, and they are masked like the key (each part of
4 characters or more, raw, percent-decoded and as the Basic header) in any text, so no report,
JSON, JUnit, Markdown, audit or gate record built from a result can hold them. Network and
HTTP failures become failed checks; `run_smoke` raises only ValueError, for invalid
arguments, and never with the key in it."""

from __future__ import annotations

import base64
import json
import re
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit, urlunsplit

import httpx

from rolloutctl.results import SmokeCheckJSON, SmokeResultJSON
from rolloutctl.transport import redact

PROMPT = "Reply with the single word: pong"
JSON_PROMPT = 'Reply with the JSON object {"status": "ok"} and nothing else.'
MAX_TOKENS = 16
PROBE_SLACK_S = 0.5  # how much longer than its timeout the probe call may take
SNIPPET_CHARS = 80  # how much of a server's text goes into a reason
USAGE_FIELDS = ("prompt_tokens", "completion_tokens", "total_tokens")
CONTENT_PATH: tuple[str | int, ...] = ("choices", 0, "message", "content")

# Every check's stable name and plain-language title, in the order of SmokeResult.checks.
TITLES: dict[str, str] = {
    "reachable": "the endpoint answers a chat completion",
    "auth": "the endpoint accepts the API key",
    "response_shape": "the answer is a chat completion with text in choices[0].message.content",
    "model": "the answer comes from the requested model",
    "json_mode": "JSON mode returns a JSON object",
    "usage": "the answer reports its token usage",
    "timeout_honoured": "a call with a short timeout ends in time, answered or abandoned",
    "latency": "sequential calls all answer, with the median latency within the limit",
}


@dataclass(frozen=True)
class SmokeCheck:
    name: str  # one of TITLES
    title: str
    passed: bool
    reason: str
    value: float | None = None  # milliseconds for timeout_honoured and latency, else None

    def to_json(self) -> SmokeCheckJSON:
        return {
            "name": self.name,
            "title": self.title,
            "passed": self.passed,
            "reason": self.reason,
            "value": self.value,
        }


@dataclass(frozen=True)
class SmokeResult:
    endpoint: str  # scheme, host and path only (no credentials, no query string)
    model: str
    checks: list[SmokeCheck]

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)

    def check(self, name: str) -> SmokeCheck:
        """The check with this name; KeyError for a name not in TITLES."""
        for check in self.checks:
            if check.name == name:
                return check
        raise KeyError(name)

    def to_json(self) -> SmokeResultJSON:
        return {
            "endpoint": self.endpoint,
            "model": self.model,
            "passed": self.passed,
            "checks": [check.to_json() for check in self.checks],
        }


def run_smoke(
    endpoint: str,
    model: str,
    *,
    api_key: str | None,
    timeout_s: float,
    route: str = "/v1/chat/completions",
    calls: int = 3,
    max_latency_ms: float | None = None,
    probe_timeout_s: float = 0.5,
    transport: httpx.BaseTransport | None = None,
) -> SmokeResult:
    """Smoke-test `model` at `endpoint` + `route` (see the module docstring for the checks).

    `endpoint` is the base URL without the route (e.g. `https://llm.internal`, not `.../v1`
    with the default route). An empty `api_key` counts as none: no Authorization header.
    `transport` is for tests (e.g. httpx.MockTransport); by default httpx's own, which honours
    the usual proxy environment variables."""
    _validate(endpoint, model, api_key, timeout_s, calls, max_latency_ms, probe_timeout_s)
    url, shown, secrets = _endpoint(endpoint, route)
    shown_url = shown.rstrip("/") + "/" + route.lstrip("/")
    mask = _masker(api_key, {endpoint: shown, url: shown_url}, secrets)
    headers = {"Accept": "application/json", "User-Agent": "rolloutctl-smoke"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    basic = _payload(model, PROMPT)
    json_mode = {**_payload(model, JSON_PROMPT), "response_format": {"type": "json_object"}}

    checks: dict[str, SmokeCheck] = {}

    def put(name: str, passed: bool, reason: str, value: float | None = None) -> None:
        checks[name] = SmokeCheck(name, TITLES[name], passed, mask(reason), value)

    with httpx.Client(transport=transport, headers=headers, follow_redirects=False) as client:

        def call(payload: dict[str, Any], limit_s: float) -> _Answer:
            return _post(client, url, payload, limit_s)

        first = call(basic, timeout_s)
        blocker: str | None = None  # why the checks that need an answer cannot run
        if first.status is None:
            blocker = f"POST {shown_url}: {first.error}"
            put("reachable", False, blocker)
            put("auth", False, f"skipped: {blocker}")
        else:
            put("reachable", True, f"HTTP {first.status} from {shown_url} in {first.ms:.0f} ms")
            passed, reason = _auth(first, bool(api_key), mask)
            put("auth", passed, reason)
            blocker = None if passed else reason

        if blocker is None:
            body, problem = _body(first, url, mask)
            put("response_shape", *_shape(body, problem))
            if body is None:
                put("model", False, f"skipped: {problem}")
                put("usage", False, f"skipped: {problem}")
            else:
                put("model", *_model(body, model, mask))
                put("usage", *_usage(body, mask))
            put("latency", *_latency(first, lambda: call(basic, timeout_s), calls, max_latency_ms))
            put("json_mode", *_json_mode(call(json_mode, timeout_s), url, mask))
        else:
            for name in ("response_shape", "model", "json_mode", "usage"):
                put(name, False, f"skipped: {blocker}")
            if first.timed_out:
                put("latency", False, f"call 1 of {calls}: {first.error}")
            else:
                put("latency", False, f"skipped: {blocker}")

        if blocker is None or first.timed_out:
            put("timeout_honoured", *_probe(call(basic, probe_timeout_s), probe_timeout_s))
        else:
            put("timeout_honoured", False, f"skipped: {blocker}")

    return SmokeResult(shown, model, [checks[name] for name in TITLES])


# ---------------------------------------------------------------- requests


@dataclass(frozen=True)
class _Answer:
    """One call's outcome: an HTTP answer, or the error that ended the call without one."""

    elapsed_s: float
    status: int | None = None  # None when no HTTP answer arrived
    text: str = ""
    error: str | None = None  # why no answer arrived, e.g. "no answer within 20s (ReadTimeout)"
    timed_out: bool = False

    @property
    def ms(self) -> float:
        return self.elapsed_s * 1000


class _Deadline(Exception):
    """The whole call outlasted its timeout (httpx's own timeouts bound each read, not the sum,
    so a server that trickles its body would otherwise keep the call going)."""


def _post(client: httpx.Client, url: str, payload: dict[str, Any], limit_s: float) -> _Answer:
    start = time.perf_counter()

    def check_deadline() -> None:
        if time.perf_counter() - start > limit_s:
            raise _Deadline

    try:
        with client.stream("POST", url, json=payload, timeout=limit_s) as response:
            body = bytearray()
            for chunk in response.iter_bytes():
                check_deadline()
                body += chunk
            check_deadline()
            text = body.decode(response.encoding or "utf-8", errors="replace")
            return _Answer(time.perf_counter() - start, response.status_code, text)
    except (httpx.TimeoutException, _Deadline) as exc:
        error = f"no answer within {_seconds(limit_s)} ({type(exc).__name__})"
        return _Answer(time.perf_counter() - start, error=error, timed_out=True)
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        return _Answer(time.perf_counter() - start, error=f"{type(exc).__name__}: {exc}")


def _payload(model: str, prompt: str) -> dict[str, Any]:
    return {
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": MAX_TOKENS,
    }


# ---------------------------------------------------------------- checks
# Each returns (passed, reason) or (passed, reason, value), for `put`.


def _auth(answer: _Answer, has_key: bool, mask: Callable[[str], str]) -> tuple[bool, str]:
    if answer.status in (401, 403):
        says = _server_says(answer, mask)
        if has_key:
            return False, f"the endpoint refused the API key (HTTP {answer.status}: {says})"
        return False, f"the endpoint wants an API key and none was given (HTTP {answer.status})"
    if has_key:
        return True, f"the API key was not refused (HTTP {answer.status})"
    return True, f"no API key given, and none asked for (HTTP {answer.status})"


def _body(
    answer: _Answer, url: str, mask: Callable[[str], str]
) -> tuple[dict[str, Any] | None, str]:
    """The answer's JSON object, or None and why there is none."""
    if answer.status != 200:
        reason = f"HTTP {answer.status}, expected 200: {_server_says(answer, mask)}"
        if answer.status == 404 and "/v1/v1/" in url:
            reason += "; the URL has /v1 twice: give the endpoint without /v1"
        return None, reason
    try:
        body = json.loads(answer.text)
    except ValueError:
        return None, f"the body is not JSON: {_quote(answer.text, mask)}"
    if not isinstance(body, dict):
        return None, f"the body is JSON but {_kind(body)}, not an object"
    return body, ""


def _shape(body: dict[str, Any] | None, problem: str) -> tuple[bool, str]:
    if body is None:
        return False, problem
    content, missing = _at(body, CONTENT_PATH)
    if missing:
        return False, missing
    if not isinstance(content, str):
        return False, f"{_dotted(CONTENT_PATH)} is {_kind(content)}, not a string"
    return True, f"HTTP 200, {_dotted(CONTENT_PATH)} is a string of {len(content)} characters"


def _model(body: dict[str, Any], model: str, mask: Callable[[str], str]) -> tuple[bool, str]:
    answered = body.get("model")
    if "model" not in body:
        return False, "the answer has no model field"
    if not isinstance(answered, str):
        return False, f"model is {_kind(answered)}, not a string"
    if answered == model or re.fullmatch(
        rf"{re.escape(model)}-\d{{4}}-?\d{{2}}-?\d{{2}}", answered
    ):
        return True, f"answered by {_quote(answered, mask)}"
    return False, (
        f"the answer came from {_quote(answered, mask)}, not {_quote(model, mask)}: "
        "the route may point at the wrong deployment"
    )


def _usage(body: dict[str, Any], mask: Callable[[str], str]) -> tuple[bool, str]:
    if "usage" not in body:
        return False, "usage is missing (no " + ", ".join(USAGE_FIELDS) + ")"
    usage = body["usage"]
    if not isinstance(usage, dict):
        return False, f"usage is {_kind(usage)}, not an object"
    problems = []
    missing = [f"usage.{name}" for name in USAGE_FIELDS if name not in usage]
    if missing:
        problems.append(f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} missing")
    for name in USAGE_FIELDS:
        if name in usage and not _is_count(usage[name]):
            shown = _quote(json.dumps(usage[name]), mask)
            problems.append(f"usage.{name} is not a non-negative integer (got {shown})")
    if problems:
        return False, "; ".join(problems)
    return True, ", ".join(f"{name} {usage[name]}" for name in USAGE_FIELDS)


def _json_mode(answer: _Answer, url: str, mask: Callable[[str], str]) -> tuple[bool, str]:
    if answer.status is None:
        return False, str(answer.error)
    body, problem = _body(answer, url, mask)
    if body is None:
        return False, problem
    content, missing = _at(body, CONTENT_PATH)
    if missing:
        return False, missing
    if not isinstance(content, str):
        return False, f"{_dotted(CONTENT_PATH)} is {_kind(content)}, not a string"
    try:
        parsed = json.loads(content)
    except ValueError as exc:
        return False, f"the content is not JSON ({exc}): {_quote(content, mask)}"
    if not isinstance(parsed, dict):
        return False, f"the content is JSON but {_kind(parsed)}, not an object"
    return True, f"the content parses to a JSON object with {len(parsed)} keys"


def _probe(answer: _Answer, probe_timeout_s: float) -> tuple[bool, str, float]:
    took = f"{answer.elapsed_s:.2f}s"
    limit = f"{_seconds(probe_timeout_s)} + {_seconds(PROBE_SLACK_S)} slack"
    if answer.elapsed_s > probe_timeout_s + PROBE_SLACK_S:
        how = "answered" if answer.status is not None else "ended"
        return (
            False,
            (
                f"a call with a {_seconds(probe_timeout_s)} timeout {how} after {took}, more than "
                f"{limit}: the client-side timeout is not enforced against this endpoint"
            ),
            answer.ms,
        )
    if answer.timed_out:
        return True, f"the client gave up after {took}, within {limit}", answer.ms
    if answer.status is not None:
        return True, f"answered in {took} (HTTP {answer.status}), within {limit}", answer.ms
    return True, f"the call failed in {took}, within {limit}: {answer.error}", answer.ms


def _latency(
    first: _Answer, another: Callable[[], _Answer], calls: int, max_latency_ms: float | None
) -> tuple[bool, str, float | None]:
    """Stops at the first failed call: waiting for more of them would tell nothing new."""
    answers = [first]
    while len(answers) < calls and answers[-1].status == 200:
        answers.append(another())
    for number, answer in enumerate(answers, start=1):
        if answer.status != 200:
            why = answer.error if answer.status is None else f"HTTP {answer.status}"
            return False, f"call {number} of {calls}: {why}", None
    samples = [answer.ms for answer in answers]
    median, worst = statistics.median(samples), max(samples)
    spread = f"max {worst:.0f} ms over {calls} call{'s' if calls != 1 else ''}"
    if max_latency_ms is None:
        return True, f"median {median:.0f} ms, {spread} (no limit set)", median
    if median > max_latency_ms:
        return (
            False,
            f"median {median:.0f} ms exceeds the limit of {max_latency_ms:g} ms ({spread})",
            median,
        )
    return (
        True,
        f"median {median:.0f} ms, within the limit of {max_latency_ms:g} ms ({spread})",
        median,
    )


# ---------------------------------------------------------------- helpers


def _validate(
    endpoint: str,
    model: str,
    api_key: str | None,
    timeout_s: float,
    calls: int,
    max_latency_ms: float | None,
    probe_timeout_s: float,
) -> None:
    if not endpoint.strip():
        raise ValueError("the endpoint is empty")
    if not model:
        raise ValueError("the model is empty")
    if api_key and not (api_key.isascii() and api_key.isprintable()):
        raise ValueError(
            "the API key has characters an HTTP header cannot carry (a stray newline?)"
        )
    if not timeout_s > 0 or not probe_timeout_s > 0:
        raise ValueError("timeouts must be positive")
    if calls < 1:
        raise ValueError(f"calls must be at least 1, not {calls}")
    if max_latency_ms is not None and not max_latency_ms > 0:
        raise ValueError("max_latency_ms must be positive")


def _endpoint(endpoint: str, route: str) -> tuple[str, str, list[str]]:
    """The URL to call (the route joined to the endpoint's path, its query string kept), the
    endpoint as shown (scheme, host and path), and the secrets the URL carries."""
    parts = urlsplit(endpoint.strip())
    path = parts.path.rstrip("/") + "/" + route.lstrip("/")
    url = urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))
    try:
        shown = redact(endpoint.strip()) + parts.path if parts.hostname else parts.path
    except ValueError:  # urllib's message names the port, never the rest
        raise ValueError("the endpoint's port is not a number") from None
    userinfo = parts.netloc.rpartition("@")[0]
    values = [v for pair in parse_qsl(parts.query, keep_blank_values=True) for v in pair[1:]]
    found = [userinfo, parts.query, parts.fragment, parts.username, parts.password, *values]
    if userinfo:  # what httpx sends for them: Authorization: Basic base64(user:password)
        pair = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}"
        found.append(base64.b64encode(pair.encode()).decode())
    secrets = {text for raw in found if raw for text in (raw, unquote(raw)) if len(text) >= 4}
    return url, shown, sorted(secrets, key=len, reverse=True)


def _masker(
    api_key: str | None, shown: dict[str, str] | None = None, secrets: list[str] | None = None
) -> Callable[[str], str]:
    """Replaces the key and the URL's secrets with *** wherever they appear in a text, after
    each URL in `shown` (URL -> as shown) by its shown form."""
    urls = sorted((shown or {}).items(), key=lambda item: len(item[0]), reverse=True)
    hidden = [*([api_key] if api_key else []), *(secrets or [])]

    def mask(text: str) -> str:
        for url, as_shown in urls:
            text = text.replace(url, as_shown)
        for secret in hidden:
            text = text.replace(secret, "***")
        return text

    return mask


def _quote(text: str, mask: Callable[[str], str]) -> str:
    """Text from the server for a reason: key masked first, then cut, then escaped as a JSON
    string (control characters never reach a terminal)."""
    masked = mask(text)
    cut = masked[:SNIPPET_CHARS]
    return json.dumps(cut) + ("..." if len(masked) > SNIPPET_CHARS else "")


def _server_says(answer: _Answer, mask: Callable[[str], str]) -> str:
    """An error answer's message: OpenAI's `error.message` when present, else the body."""
    try:
        body = json.loads(answer.text)
    except ValueError:
        body = None
    if isinstance(body, dict):
        error = body.get("error")
        message = error.get("message") if isinstance(error, dict) else error
        if isinstance(message, str) and message:
            return _quote(message, mask)
    return _quote(answer.text, mask) if answer.text.strip() else "empty body"


def _at(body: Any, path: tuple[str | int, ...]) -> tuple[Any, str]:
    """The value at `path` in `body`, or None and which step is missing or mistyped."""
    value = body
    for depth, step in enumerate(path):
        parent, here = _dotted(path[:depth]), _dotted(path[: depth + 1])
        if isinstance(step, int):
            if not isinstance(value, list):
                return None, f"{parent} is {_kind(value)}, not a list"
            if step >= len(value):
                return None, f"{here} is missing ({parent} has {len(value)} items)"
            value = value[step]
        else:
            if not isinstance(value, dict):
                return None, f"{parent} is {_kind(value)}, not an object"
            if step not in value:
                return None, f"{here} is missing"
            value = value[step]
    return value, ""


def _dotted(path: tuple[str | int, ...]) -> str:
    text = ""
    for step in path:
        if isinstance(step, int):
            text += f"[{step}]"
        else:
            text += f".{step}" if text else step
    return text


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object"


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _seconds(value: float) -> str:
    return f"{value:g}s"
