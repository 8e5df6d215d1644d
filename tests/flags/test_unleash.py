"""The unleash flag backend against a real unleash-server (tests/flags/conftest.py): every
change is checked through Unleash's own Admin API, not through the backend that made it."""

from __future__ import annotations

import itertools
import json
import socket
import subprocess
import sys
from datetime import timedelta
from typing import Any

import httpx
import pytest

from rolloutctl.errors import BackendError
from rolloutctl.flags.unleash import (
    ScopeNotExpressible,
    UnleashFlagBackend,
    _same_constraints,
    constraints_of,
    scope_of,
)
from rolloutctl.playbook import expr
from tests.conftest import PLAYBOOK, START, Workspace, cli_env
from tests.flags.conftest import UnleashServer

_names = itertools.count(1)


def new_feature(unleash: UnleashServer, prefix: str = "answer-model") -> str:
    name = f"{prefix}-{next(_names)}"
    unleash.create_feature(name)
    return name


def backend(unleash: UnleashServer, key: str, **kw: Any) -> UnleashFlagBackend:
    return UnleashFlagBackend(
        url=unleash.url,
        project=unleash.project,
        environment=unleash.environment,
        key=key,
        control="v1",
        canary="v2",
        token=unleash.token,
        **kw,
    )


def jsonlogic(text: str) -> Any:
    return expr.to_jsonlogic(expr.parse(text))


def owned(env: dict[str, Any]) -> dict[str, Any]:
    [strategy] = [s for s in env["strategies"] if (s.get("title") or "").startswith("rolloutctl")]
    return strategy


# ---------------------------------------------------------------- scope <-> constraints


PRESENT = {"operator": "REGEX", "value": ".*"}  # true exactly when the context has the field


def present(name: str) -> dict[str, Any]:
    return {"contextName": name, **PRESENT}


def test_scopes_become_constraints_and_back() -> None:
    scope = jsonlogic("category not in ('health', 'finance') and tier >= 2 and device = 'ios'")
    constraints = constraints_of(scope)
    assert constraints == [
        present("category"),
        {"contextName": "category", "operator": "NOT_IN", "values": ["health", "finance"]},
        {"contextName": "tier", "operator": "NUM_GTE", "value": "2"},
        {"contextName": "device", "operator": "IN", "values": ["ios"]},
    ]
    assert scope_of(constraints) == scope
    assert constraints_of(scope_of(constraints)) == constraints
    assert constraints_of(None) == [] and scope_of([]) is None
    assert constraints_of(jsonlogic("3 < tier")) == [
        {"contextName": "tier", "operator": "NUM_GT", "value": "3"}
    ]
    # Unleash has one IN / NOT_IN for `=` and a one-value list: both read back as `=` / `!=`.
    assert scope_of(constraints_of(jsonlogic("category not in ('health')"))) == jsonlogic(
        "category != 'health'"
    )
    # `not` is pushed down to the comparison by to_jsonlogic, so this is `tier <= 2`
    assert constraints_of(jsonlogic("not (tier > 2)")) == [
        {"contextName": "tier", "operator": "NUM_LTE", "value": "2"}
    ]
    refused = {
        "category = 'a' or device = 'b'": "`or` cannot",
        "tier < limit": "`<` between two columns or non-numbers",
        "category is null": "`is null` cannot",
        "category = ''": "server refuses empty values",
        "category in ('a', ' b')": "trim spaces",
    }
    for text, message in refused.items():
        with pytest.raises(ScopeNotExpressible, match=message):
            constraints_of(jsonlogic(text))
    with pytest.raises(ScopeNotExpressible, match="`>` between two columns or non-numbers"):
        constraints_of({">": [{"+": [{"var": "tier"}, 1]}, 2]})


def test_presence_tests_become_constraints_only_where_unleash_needs_them() -> None:
    """The two forms to_jsonlogic writes, spelled out: beside NOT_IN (true without the
    field) the presence test is a constraint; beside IN and NUM_* (false) it is dropped."""
    category, tier = {"var": "category"}, {"var": "tier"}
    not_in = {
        "and": [
            {"!==": [category, None]},
            {"!": {"in": [category, ["health", "finance"]]}},
        ]
    }
    assert constraints_of(not_in) == [
        present("category"),
        {"contextName": "category", "operator": "NOT_IN", "values": ["health", "finance"]},
    ]
    assert scope_of(constraints_of(not_in)) == not_in
    not_equal = {"and": [{"!==": [category, None]}, {"!=": [category, "health"]}]}
    assert constraints_of(not_equal) == [
        present("category"),
        {"contextName": "category", "operator": "NOT_IN", "values": ["health"]},
    ]
    assert scope_of(constraints_of(not_equal)) == not_equal
    both = {
        "and": [
            {"!==": [category, None]},
            {"==": [category, "x"]},
            {"!==": [tier, None]},
            {">=": [tier, 3]},
        ]
    }
    assert constraints_of(both) == [
        {"contextName": "category", "operator": "IN", "values": ["x"]},
        {"contextName": "tier", "operator": "NUM_GTE", "value": "3"},
    ]
    assert scope_of(constraints_of(both)) == both
    # An IN on the attribute already requires it: the NOT_IN beside it needs nothing more.
    assert constraints_of(jsonlogic("category = 'x' and category != 'y'")) == [
        {"contextName": "category", "operator": "IN", "values": ["x"]},
        {"contextName": "category", "operator": "NOT_IN", "values": ["y"]},
    ]
    # One presence constraint per attribute, however many comparisons read it.
    twice = jsonlogic("category != 'a' and category != 'b'")
    assert constraints_of(twice) == [
        present("category"),
        {"contextName": "category", "operator": "NOT_IN", "values": ["a"]},
        {"contextName": "category", "operator": "NOT_IN", "values": ["b"]},
    ]
    assert scope_of(constraints_of(twice)) == twice
    # `is not null` alone is the presence constraint alone.
    assert constraints_of(jsonlogic("category is not null")) == [present("category")]
    assert scope_of([present("category")]) == {"!==": [category, None]}
    for text in ("tier >= 2 and device is not null", "not (category in ('a', 'b') or tier < 3)"):
        assert scope_of(constraints_of(jsonlogic(text))) == jsonlogic(text)


def test_unguarded_negations_are_translated_as_they_read() -> None:
    """JsonLogic without presence tests (a scope written before they existed) means what
    it says, `{"!": {"in": [null, ...]}}` is true, and so does the NOT_IN it becomes."""
    old = {"!": {"in": [{"var": "category"}, ["health"]]}}
    assert constraints_of(old) == [
        {"contextName": "category", "operator": "NOT_IN", "values": ["health"]}
    ]
    assert scope_of(constraints_of(old)) == {"!=": [{"var": "category"}, "health"]}
    # A NOT_IN made by hand in Unleash reads back the same way: absent attributes pass it.
    assert scope_of([{"contextName": "category", "operator": "NOT_IN", "values": ["a", "b"]}]) == {
        "!": {"in": [{"var": "category"}, ["a", "b"]]}
    }


def test_same_constraints_ignores_what_unleash_adds() -> None:
    written = constraints_of(jsonlogic("category != 'a' and tier < 3"))
    stored = [
        {**c, "values": c.get("values", []), "inverted": False, "caseInsensitive": False}
        for c in reversed(written)
    ]
    assert _same_constraints(stored, written)
    assert not _same_constraints(stored[1:], written)
    assert not _same_constraints([{**stored[0], "inverted": True}, *stored[1:]], written)


# ---------------------------------------------------------------- the rollout feature


def test_split_scope_and_rollback_as_unleash_shows_them(unleash: UnleashServer) -> None:
    key = new_feature(unleash)
    flags = backend(unleash, key, stickiness="userId")
    assert flags.read() is not None and flags.read().canary_percent == 0  # type: ignore[union-attr]

    scope = jsonlogic("category not in ('health', 'finance')")
    split = flags.set_split(5, scope, rollout="shop", stage="canary-5")
    env = unleash.environment_entry(key)
    strategy = owned(env)
    assert env["enabled"] is True and len(env["strategies"]) == 1
    assert strategy["name"] == "flexibleRollout"
    assert strategy["parameters"] == {"rollout": "5", "stickiness": "userId", "groupId": key}
    presence, constraint = strategy["constraints"]
    assert (presence["contextName"], presence["operator"], presence["value"]) == (
        "category",
        "REGEX",
        ".*",
    )
    assert (constraint["contextName"], constraint["operator"]) == ("category", "NOT_IN")
    assert constraint["values"] == ["health", "finance"] and not constraint.get("inverted")
    assert [v["name"] for v in strategy["variants"]] == ["v2"]
    assert split.canary_percent == 5 and split.scope == scope
    again = flags.read()
    assert again is not None and again.scope == scope and again.fingerprint == split.fingerprint

    widened = flags.set_split(50, None, rollout="shop", stage="ramp-50")
    strategy = owned(unleash.environment_entry(key))
    assert strategy["parameters"]["rollout"] == "50" and strategy["constraints"] == []
    assert widened.fingerprint != split.fingerprint

    rolled = flags.rollback(rollout="shop", reason="unsafe answers")
    env = unleash.environment_entry(key)
    assert env["enabled"] is False and owned(env)["parameters"]["rollout"] == "0"
    assert rolled.canary_percent == 0
    again = flags.read()
    assert again is not None and again.fingerprint == rolled.fingerprint

    unleash.set_enabled(key, True)  # switched on by hand: no canary traffic comes back
    after = flags.read()
    assert after is not None and after.canary_percent == 0
    assert after.fingerprint != rolled.fingerprint  # ... and the change is seen


# Scopes as the playbook writes them, and who Unleash's own evaluator (the playground) gives
# the canary at 100%: SDK contexts carry strings, custom fields under `properties`.
SCOPED = [
    ("category not in ('health', 'finance')", "category", {"books": True, "health": False}),
    ("category != 'health'", "category", {"books": True, "finance": True, "health": False}),
    ("tier >= 3", "tier", {"3": True, "12": True, "2": False}),
    (
        "category not in ('health', 'finance') and tier < 3",
        "category",
        {"toys": True, "finance": False},
    ),
]


@pytest.mark.parametrize(("text", "field", "answers"), SCOPED, ids=[s[0] for s in SCOPED])
def test_a_scoped_stage_never_serves_the_canary_without_the_attribute(
    unleash: UnleashServer, text: str, field: str, answers: dict[str, bool]
) -> None:
    key = new_feature(unleash)
    flags = backend(unleash, key, stickiness="userId")
    scope = jsonlogic(text)
    split = flags.set_split(100, scope, rollout="shop", stage="scoped")
    read = flags.read()
    assert read is not None and read.canary_percent == 100
    assert read.scope == scope and read.fingerprint == split.fingerprint

    others = {"tier": "1"} if field == "category" else {"category": "books"}
    for value, in_scope in answers.items():
        for user in ("u1", "u2", "u3"):
            context = {"userId": user, "properties": {**others, field: value}}
            result = unleash.playground(key, context)
            assert result["isEnabled"] is in_scope, (value, user)
            assert result["variant"]["name"] == ("v2" if in_scope else "disabled")
    # Without the attribute: never the canary, whatever else the request carries.
    for context in (
        {"userId": "u1"},
        {"userId": "u2", "properties": others},
        {"userId": "u3", "properties": {"other": "books"}},
        {},
    ):
        result = unleash.playground(key, context)
        assert result["isEnabled"] is False, context
        assert result["variant"]["name"] == "disabled"


def test_refusals_change_nothing(unleash: UnleashServer) -> None:
    key = new_feature(unleash)
    flags = backend(unleash, key)
    flags.set_split(10, None, rollout="shop", stage="c1")
    before = unleash.environment_entry(key)
    with pytest.raises(BackendError, match="not a whole percent"):
        flags.set_split(0.5, None, rollout="shop", stage="c0")
    with pytest.raises(BackendError, match="cannot be an Unleash constraint"):
        flags.set_split(20, jsonlogic("device = 'ios' or tier > 2"), rollout="shop", stage="c2")
    assert unleash.environment_entry(key) == before

    other = new_feature(unleash)
    unleash.set_enabled(other, True)  # Unleash adds its default strategy: 100% for everyone
    with pytest.raises(BackendError, match="other enabled strategies"):
        backend(unleash, other).set_split(10, None, rollout="shop", stage="c1")
    assert [s["title"] for s in unleash.environment_entry(other)["strategies"]] == [None]

    with pytest.raises(BackendError, match="does not exist"):
        backend(unleash, "no-such-feature").set_split(10, None, rollout="shop", stage="c1")
    assert backend(unleash, "no-such-feature").read() is None
    with pytest.raises(BackendError, match="no environment 'staging'") as info:
        UnleashFlagBackend(
            url=unleash.url,
            project="default",
            environment="staging",
            key=key,
            control="v1",
            canary="v2",
            token=unleash.token,
        ).read()
    assert "development" in info.value.message and "production" in info.value.message


def test_wrong_token_and_missing_token(
    unleash: UnleashServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = new_feature(unleash)
    bad = UnleashFlagBackend(
        url=unleash.url,
        project="default",
        environment="development",
        key=key,
        control="v1",
        canary="v2",
        token="*:*.wrong",
    )
    with pytest.raises(BackendError, match="not authorized"):
        bad.rollback(rollout="shop", reason="x")
    monkeypatch.delenv("UNLEASH_ADMIN_TOKEN", raising=False)
    spec = {
        "backend": "unleash",
        "url": unleash.url,
        "environment": "development",
        "key": key,
        "control": "v1",
        "canary": "v2",
    }
    with pytest.raises(BackendError, match="UNLEASH_ADMIN_TOKEN") as info:
        UnleashFlagBackend.from_spec(spec)
    assert "export UNLEASH_ADMIN_TOKEN" in (info.value.hint or "")


def test_unleash_down_is_bounded_and_names_the_host() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again before use: nothing listens there
    flags = UnleashFlagBackend(
        url=f"http://127.0.0.1:{port}/secret-path",
        project="default",
        environment="production",
        key="k",
        control="v1",
        canary="v2",
        token="t",
        retries=2,
        backoff=0.01,
        timeout=1,
    )
    with pytest.raises(BackendError) as info:
        flags.rollback(rollout="shop", reason="x")
    assert "unreachable" in info.value.message and "after 3 tries" in info.value.message
    assert "secret-path" not in info.value.message


def test_a_500_during_rollback_is_retried_then_succeeds() -> None:
    """Unleash answering 503 once (a restarting pod) does not fail the rollback."""
    calls: list[str] = []
    env = {"name": "production", "enabled": True, "strategies": []}

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(f"{request.method} {request.url.path}")
        assert request.headers["Authorization"] == "*:*.token"
        if request.url.path.endswith("/off"):
            if sum(c.endswith("/off") for c in calls) == 1:
                return httpx.Response(503)
            env["enabled"] = False
            return httpx.Response(200)
        return httpx.Response(200, json={"name": "k", "environments": [env]})

    flags = UnleashFlagBackend(
        url="http://unleash.test",
        project="default",
        environment="production",
        key="k",
        control="v1",
        canary="v2",
        token="*:*.token",
        backoff=0.001,
        transport=httpx.MockTransport(handler),
    )
    assert flags.rollback(rollout="shop", reason="x").canary_percent == 0
    off = "POST /api/admin/projects/default/features/k/environments/production/off"
    assert calls[:2] == [off, off]


# ---------------------------------------------------------------- controls


def test_kill_switches_on_features_created_disabled(unleash: UnleashServer) -> None:
    flags = backend(unleash, "unused")
    on, off, untouched = (new_feature(unleash, p) for p in ("switch-on", "switch-off", "as-is"))
    assert all(not unleash.environment_entry(k)["enabled"] for k in (on, off, untouched))

    flags.set_control(on, True)
    assert unleash.environment_entry(on)["enabled"] is True
    assert flags.read_control(on) is True
    assert unleash.playground(on, {"userId": "u1"})["isEnabled"] is True

    flags.set_control(off, False)
    env = unleash.environment_entry(off)
    assert env["enabled"] is False and env["strategies"] == []  # nothing added to say "off"
    assert flags.read_control(off) is False
    assert unleash.playground(off, {"userId": "u1"})["isEnabled"] is False

    # A feature rolloutctl never touched reads as Unleash serves it: off while its
    # environment is off, on once switched on by hand (Unleash adds its default strategy).
    assert flags.read_control(untouched) is False
    unleash.set_enabled(untouched, True)
    assert flags.read_control(untouched) is True
    assert unleash.playground(untouched, {"userId": "u1"})["isEnabled"] is True


def test_boolean_and_numeric_controls(unleash: UnleashServer) -> None:
    flags = backend(unleash, "unused")
    switch, threshold = new_feature(unleash, "ai-answers"), new_feature(unleash, "review")
    flags.set_control(switch, True)
    env = unleash.environment_entry(switch)
    assert env["enabled"] is True
    assert [s["parameters"]["rollout"] for s in env["strategies"]] == ["100"]
    assert flags.read_control(switch) is True
    flags.set_control(switch, False)
    assert unleash.environment_entry(switch)["enabled"] is False
    assert flags.read_control(switch) is False

    flags.set_control(threshold, 0.7)
    env = unleash.environment_entry(threshold)
    [variant] = owned(env)["variants"]
    assert variant["payload"] == {"type": "number", "value": "0.7"} and env["enabled"]
    assert flags.read_control(threshold) == 0.7
    flags.set_control(threshold, 1)
    assert flags.read_control(threshold) == 1
    assert len(unleash.environment_entry(threshold)["strategies"]) == 1  # updated in place
    assert flags.read_control("no-such-control") is None


# ---------------------------------------------------------------- full rollouts through the CLI

UNLEASH_PLAYBOOK = (
    PLAYBOOK.replace(
        "flag: {backend: file, path: flags/flags.json, key: answer-model, control: v1, canary: v2}",
        'flag: {backend: unleash, url: "${UNLEASH_URL}", environment: development, '
        "key: KEY, control: v1, canary: v2, stickiness: userId}",
    )
    .replace(
        "  - {name: c2, traffic: 50, min_duration: 1h}",
        "  - {name: c2, traffic: 50, min_duration: 1h, scope: \"category not in ('health')\"}",
    )
    .replace(
        "  - {name: full, traffic: 100, min_duration: 30m}",
        "  - {name: full, traffic: 100, min_duration: 30m, scope: all}",
    )
    + """\
controls:
  - {name: provider-off, layer: provider, title: "Send all answers to the stable model", set: {KEY: {canary_percent: 0}}}
  - {name: health-off, layer: scenario, title: "Stop AI answers for health questions", set: {HEALTH: false}}
  - {name: review-all, layer: review, title: "Require human review before answers are sent", set: {REVIEW: 1.0}}
"""
)


def test_full_rollout_with_controls_and_rollback(
    unleash: UnleashServer, ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    key, health, review = (new_feature(unleash, p) for p in ("answer-model", "health", "review"))
    assert unleash.environment_entry(health)["enabled"] is False  # created off: engaged
    ws.playbook.write_text(
        UNLEASH_PLAYBOOK.replace("KEY", key).replace("HEALTH", health).replace("REVIEW", review)
    )
    monkeypatch.setenv("UNLEASH_URL", unleash.url)
    monkeypatch.setenv("UNLEASH_ADMIN_TOKEN", unleash.token)

    def rollout_now() -> tuple[bool, str, list[Any]]:
        env = unleash.environment_entry(key)
        strategy = owned(env)
        return env["enabled"], strategy["parameters"]["rollout"], strategy["constraints"]

    assert ws.run("validate", str(ws.playbook)).code == 0
    started = ws.run("start", str(ws.playbook), now=START)
    assert started.code == 0, started.err
    assert rollout_now() == (True, "20", [])
    # The kill switch starts released, as with every backend, and start says it changed it.
    assert unleash.environment_entry(health)["enabled"] is True
    assert unleash.playground(health, {"userId": "u1"})["isEnabled"] is True
    assert f"{health!r} was False, released it to True" in started.err + started.out

    # Controls while the rollout runs: each checked in Unleash.
    applied = ws.run("--json", "control", "apply", "shop-answers", "health-off", "--reason", "x")
    assert applied.code == 0, applied.err
    assert unleash.environment_entry(health)["enabled"] is False
    assert ws.run("control", "apply", "shop-answers", "review-all", "--reason", "audit").code == 0
    [variant] = owned(unleash.environment_entry(review))["variants"]
    assert variant["payload"] == {"type": "number", "value": "1"}
    listed = ws.run("--json", "control", "list", "shop-answers").json()["controls"]
    states = {c["name"]: c["state"] for c in listed}
    assert states["health-off"] == "applied" and states["review-all"] == "applied"
    assert states["provider-off"] == "not applied"
    assert ws.run("control", "revert", "shop-answers", "health-off", "--reason", "ok").code == 0
    assert unleash.environment_entry(health)["enabled"] is True

    # The gate advances c1 -> c2: 50% outside the health category.
    ws.log("healthy", START, 2, 20, "p1", seed=1)
    advanced = ws.run("--json", "advance", "shop-answers", now=START + timedelta(hours=2))
    assert advanced.code == 0, advanced.out + advanced.err
    assert advanced.json()["decision"] == "advance"
    enabled, rollout, constraints = rollout_now()
    assert (enabled, rollout) == (True, "50")
    assert [(c["contextName"], c["operator"], c["values"] or c["value"]) for c in constraints] == [
        ("category", "REGEX", ".*"),
        ("category", "NOT_IN", ["health"]),
    ]
    status = ws.run("status")
    assert status.code == 0 and "changed outside rolloutctl" not in status.err, status.err
    for user in (f"user-{i}" for i in range(40)):  # no category: never the canary
        assert unleash.playground(key, {"userId": user})["isEnabled"] is False
    served = [
        unleash.playground(key, {"userId": f"user-{i}", "properties": {"category": "books"}})
        for i in range(40)
    ]
    assert 0 < sum(r["isEnabled"] for r in served) < 40  # 50% of the in-scope users

    # provider-off holds the rollout flag at 0%; reverting restores 50%.
    assert ws.run("control", "apply", "shop-answers", "provider-off", "--reason", "spend").code == 0
    assert rollout_now()[1] == "0"
    assert ws.run("control", "revert", "shop-answers", "provider-off", "--reason", "ok").code == 0
    assert rollout_now()[:2] == (True, "50")

    promoted = ws.run("promote", "shop-answers", "--reason", "exec decision")
    assert promoted.code == 0, promoted.err
    assert rollout_now() == (True, "100", [])

    rolled = subprocess.run(
        [
            sys.executable,
            "-X",
            "importtime",
            "-m",
            "rolloutctl",
            "--json",
            "rollback",
            "shop-answers",
            "--reason",
            "pager",
        ],
        capture_output=True,
        text=True,
        env=cli_env(ws.root),
        cwd=ws.root,
        timeout=60,
    )
    assert rolled.returncode == 0, rolled.stderr
    imported = {
        line.split("|")[-1].strip().split(".")[0]
        for line in rolled.stderr.splitlines()
        if line.startswith("import time:")
    }
    assert not imported & {"httpx", "httpcore", "pydantic", "typer", "pandas"}, imported
    assert unleash.environment_entry(key)["enabled"] is False
    assert owned(unleash.environment_entry(key))["parameters"]["rollout"] == "0"
    assert ws.state()["status"] == "rolled_back" and ws.state()["canary_percent"] == 0
    # rollback leaves controls as they are
    assert owned(unleash.environment_entry(review))["variants"][0]["payload"]["value"] == "1"
    commands = [e["command"] for e in ws.audit()]
    assert commands[0] == "start" and commands[-1] == "rollback"
    assert commands.count("control") == 5  # 3 applied, 2 reverted


def test_a_feature_switched_by_hand_is_detected_and_unreachable_rollback_exits_4(
    unleash: UnleashServer, ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = new_feature(unleash)
    ws.playbook.write_text(UNLEASH_PLAYBOOK.split("controls:")[0].replace("KEY", key))
    monkeypatch.setenv("UNLEASH_URL", unleash.url)
    monkeypatch.setenv("UNLEASH_ADMIN_TOKEN", unleash.token)
    assert ws.run("start", str(ws.playbook), now=START).code == 0
    unleash.request(
        "PATCH",
        f"{unleash.features_path(key)}/environments/development/strategies/"
        f"{owned(unleash.environment_entry(key))['id']}",
        json=[{"op": "replace", "path": "/parameters/rollout", "value": "80"}],
    ).raise_for_status()
    status = ws.run("status")
    assert "changed outside rolloutctl" in status.err and "80%" in status.err
    ws.log("healthy", START, 2, 20, "p1", seed=2)
    refused = ws.run("advance", "shop-answers", now=START + timedelta(hours=2))
    assert refused.code == 5 and "--force" in refused.err
    assert owned(unleash.environment_entry(key))["parameters"]["rollout"] == "80"

    # Unleash unreachable: bounded retries, exit 4, the manual step, state untouched.
    state_file = ws.root / "state" / "shop-answers" / "state.json"
    data = json.loads(state_file.read_text())
    data["flag"]["url"] = "http://127.0.0.1:9"  # discard port: nothing answers
    state_file.write_text(json.dumps(data))
    before = state_file.read_text()
    down = ws.run("rollback", "shop-answers", "--reason", "pager")
    assert down.code == 4, down.err
    assert "did NOT complete" in down.err and f"flag {key!r}" in down.err
    assert "Traceback" not in down.err
    assert state_file.read_text() == before
