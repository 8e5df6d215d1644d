"""The launchdarkly flag backend against a local server that checks LaunchDarkly's documented
REST formats: raw token in Authorization, semantic-patch content type, instruction shapes,
rollout weights in thousandths of a percent summing to 100000."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from rolloutctl.errors import BackendError
from rolloutctl.flags.launchdarkly import SEMANTIC_PATCH, LaunchDarklyFlagBackend
from rolloutctl.flags.registry import build_backend
from tests.conftest import PLAYBOOK, START, Workspace
from tests.flags.test_webhook import LocalServer, serve

TOKEN = "api-0123-secret"
ENV = "production"
KINDS = {"turnFlagOn", "turnFlagOff", "updateFallthroughVariationOrRollout"}


def flag(key: str, values: list[Any]) -> dict[str, Any]:
    return {
        "key": key,
        "variations": [{"_id": f"{key}-id-{i}", "value": v} for i, v in enumerate(values)],
        "environments": {
            ENV: {
                "on": False,
                "offVariation": 0,
                "fallthrough": {"variation": 0},
                "rules": [],
                "targets": [],
            },
            "staging": {"on": True, "offVariation": 0, "fallthrough": {"variation": 1}},
        },
    }


class FakeLaunchDarkly:
    def __init__(self) -> None:
        self.flags = {
            "answer-model": flag("answer-model", ["v1", "v2"]),
            "ai-answers-health": flag("ai-answers-health", [True, False]),
            "review-threshold": flag("review-threshold", [0.0, 0.5, 1.0]),
        }
        self.patches: list[dict[str, Any]] = []

    def __call__(
        self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: Any
    ) -> tuple[int, Any]:
        assert headers.get("authorization") == TOKEN, "Authorization must be the raw token"
        parts = path.split("/")
        assert parts[:4] == ["", "api", "v2", "flags"] and parts[4] == "search", path
        current = self.flags.get(parts[5])
        if current is None:
            return 404, {"code": "not_found", "message": "Unknown resource"}
        if method == "GET":
            assert query.get("env") == ENV, "GET must name the environment"
            return 200, current
        assert method == "PATCH", method
        assert headers.get("content-type") == SEMANTIC_PATCH, headers.get("content-type")
        assert set(body) == {"environmentKey", "comment", "instructions"}, set(body)
        assert body["environmentKey"] == ENV and isinstance(body["comment"], str)
        self.patches.append(body)
        env = current["environments"][ENV]
        ids = [v["_id"] for v in current["variations"]]
        for step in body["instructions"]:
            assert step["kind"] in KINDS, step["kind"]
            if step["kind"] in ("turnFlagOn", "turnFlagOff"):
                env["on"] = step["kind"] == "turnFlagOn"
            elif "rolloutWeights" in step:
                weights = step["rolloutWeights"]
                assert set(weights) <= set(ids), "unknown variation id"
                assert sum(weights.values()) == 100_000, "weights must sum to 100000"
                assert all(isinstance(w, int) for w in weights.values()), "integer weights"
                env["fallthrough"] = {
                    "rollout": {
                        "variations": [
                            {"variation": ids.index(i), "weight": w} for i, w in weights.items()
                        ]
                    }
                }
            else:
                assert step["variationId"] in ids, "unknown variation id"
                env["fallthrough"] = {"variation": ids.index(step["variationId"])}
        return 200, current


@pytest.fixture
def ld() -> Iterator[tuple[FakeLaunchDarkly, LocalServer]]:
    app = FakeLaunchDarkly()
    for server in serve(app):
        yield app, server
        assert server.problems == []


def build(server: LocalServer, monkeypatch: pytest.MonkeyPatch) -> LaunchDarklyFlagBackend:
    monkeypatch.setenv("LD_TEST_TOKEN", TOKEN)
    backend = build_backend(
        {
            "backend": "launchdarkly",
            "project": "search",
            "environment": ENV,
            "key": "answer-model",
            "control": "v1",
            "canary": "v2",
            "token_env": "LD_TEST_TOKEN",
            "base_url": server.url,
            "timeout": "5s",
        }
    )
    assert isinstance(backend, LaunchDarklyFlagBackend) and backend.KIND == "launchdarkly"
    return backend


def test_split_and_rollback_write_the_default_rule(
    ld: tuple[FakeLaunchDarkly, LocalServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    app, server = ld
    backend = build(server, monkeypatch)
    assert backend.read() is not None and backend.read().canary_percent == 0  # type: ignore[union-attr]
    split = backend.set_split(2.5, None, rollout="shop", stage="c1")
    assert split.canary_percent == 2.5
    env = app.flags["answer-model"]["environments"][ENV]
    assert env["on"] is True
    assert env["fallthrough"]["rollout"]["variations"] == [
        {"variation": 0, "weight": 97_500},
        {"variation": 1, "weight": 2_500},
    ]
    assert app.patches[-1]["instructions"][1]["rolloutWeights"] == {
        "answer-model-id-0": 97_500,
        "answer-model-id-1": 2_500,
    }
    assert "c1" in app.patches[-1]["comment"]
    back = backend.rollback(rollout="shop", reason="pager")
    assert back.canary_percent == 0 and env["fallthrough"] == {"variation": 0}
    assert back.fingerprint != split.fingerprint
    assert app.flags["answer-model"]["environments"]["staging"]["fallthrough"] == {"variation": 1}


def test_outside_change_is_seen_and_scoped_stage_is_refused(
    ld: tuple[FakeLaunchDarkly, LocalServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    app, server = ld
    backend = build(server, monkeypatch)
    split = backend.set_split(10, None, rollout="shop", stage="c1")
    before = copy.deepcopy(app.flags)
    with pytest.raises(BackendError, match="cannot target segments"):
        backend.set_split(20, {"==": [{"var": "lang"}, "en"]}, rollout="shop", stage="c2")
    assert app.flags == before
    app.flags["answer-model"]["environments"][ENV]["fallthrough"]["rollout"]["variations"][1][
        "weight"
    ] = 50_000
    now = backend.read()
    assert now is not None and now.fingerprint != split.fingerprint


def test_controls_toggle_or_select_a_variation(
    ld: tuple[FakeLaunchDarkly, LocalServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    app, server = ld
    backend = build(server, monkeypatch)
    backend.set_control("ai-answers-health", True)
    assert app.flags["ai-answers-health"]["environments"][ENV]["on"] is True
    backend.set_control("ai-answers-health", False)
    assert backend.read_control("ai-answers-health") is False
    assert app.patches[-1]["instructions"] == [{"kind": "turnFlagOff"}]
    backend.set_control("review-threshold", 1.0)
    assert backend.read_control("review-threshold") == 1.0
    with pytest.raises(BackendError, match=r"no variation with value 0\.7"):
        backend.set_control("review-threshold", 0.7)
    with pytest.raises(BackendError, match="has no variation 'v3'"):
        LaunchDarklyFlagBackend(
            "search", ENV, "answer-model", "v1", "v3", TOKEN, base_url=server.url
        ).set_split(5, None, rollout="s", stage="c")


def test_missing_token_is_named_not_guessed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LD_API_TOKEN", raising=False)
    with pytest.raises(BackendError, match="LD_API_TOKEN"):
        build_backend(
            {
                "backend": "launchdarkly",
                "project": "p",
                "environment": ENV,
                "key": "k",
                "control": "a",
                "canary": "b",
            }
        )


def mock(
    handler: Callable[[httpx.Request], httpx.Response],
) -> tuple[LaunchDarklyFlagBackend, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)

    backend = LaunchDarklyFlagBackend(
        "search",
        ENV,
        "answer-model",
        "v1",
        "v2",
        TOKEN,
        retries=3,
        backoff=0.001,
        transport=httpx.MockTransport(record),
    )
    return backend, seen


def test_500_storm_is_bounded_and_401_is_not_retried() -> None:
    backend, seen = mock(lambda request: httpx.Response(500))
    with pytest.raises(BackendError, match="HTTP 500 after 4 tries"):
        backend.rollback(rollout="shop", reason="pager")
    assert len(seen) == 4
    backend, seen = mock(lambda request: httpx.Response(401, json={"message": "Invalid token"}))
    with pytest.raises(BackendError) as info:
        backend.rollback(rollout="shop", reason="pager")
    assert len(seen) == 1 and "not authorized" in info.value.message
    assert TOKEN not in info.value.message + (info.value.hint or "")
    assert seen[0].headers["authorization"] == TOKEN  # raw, no "Bearer"


def test_connection_refused_is_retried_then_reported() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    backend, seen = mock(refuse)
    with pytest.raises(BackendError, match="unreachable"):
        backend.read()
    assert len(seen) == 4


def test_start_and_rollback_through_the_cli(
    ld: tuple[FakeLaunchDarkly, LocalServer], monkeypatch: pytest.MonkeyPatch, ws: Workspace
) -> None:
    """A remote flag has no file path: the CLI starts, splits and rolls back through the API."""
    app, server = ld
    monkeypatch.setenv("LD_TEST_TOKEN", TOKEN)
    ws.playbook.write_text(
        PLAYBOOK.replace(
            "flag: {backend: file, path: flags/flags.json, key: answer-model, control: v1, canary: v2}",
            "flag: {backend: launchdarkly, project: search, environment: " + ENV + ", "
            "key: answer-model, control: v1, canary: v2, token_env: LD_TEST_TOKEN, "
            f"base_url: '{server.url}'}}",
        )
    )
    started = ws.run("start", str(ws.playbook), now=START)
    assert started.code == 0, started.err
    env = app.flags["answer-model"]["environments"][ENV]
    assert env["fallthrough"]["rollout"]["variations"] == [
        {"variation": 0, "weight": 80_000},
        {"variation": 1, "weight": 20_000},
    ]
    rolled = ws.run("--json", "rollback", "shop-answers", "--reason", "pager")
    assert rolled.code == 0, rolled.err
    assert env["fallthrough"] == {"variation": 0}
    assert ws.state()["status"] == "rolled_back"
    assert TOKEN not in (started.out + started.err + rolled.out + rolled.err)
