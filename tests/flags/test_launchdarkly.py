"""The launchdarkly flag backend against a local server that checks LaunchDarkly's documented
REST formats: raw token in Authorization, semantic-patch content type, the parameters of each
instruction ("Update feature flag"), rollout weights in thousandths of a percent summing to
100000. The server also evaluates flags in the order LaunchDarkly's SDKs do (off variation,
prerequisites, individual targets, rules, default rule, with LaunchDarkly's sha1 bucketing), so
a test can ask what a context is served instead of reading the flag's JSON."""

from __future__ import annotations

import copy
import hashlib
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from rolloutctl.errors import BackendError, PlaybookInvalid
from rolloutctl.flags.launchdarkly import SEMANTIC_PATCH, LaunchDarklyFlagBackend
from rolloutctl.flags.registry import build_backend
from rolloutctl.playbook.load import load_playbook
from tests.conftest import PLAYBOOK, START, Workspace
from tests.flags.test_webhook import LocalServer, serve

TOKEN = "api-0123-secret"
ENV = "production"
FULL = 100_000
ROLLOUT = {"rolloutWeights", "rolloutBucketBy", "rolloutContextKind"}
PARAMETERS = {  # per instruction kind, as documented
    "turnFlagOn": set(),
    "turnFlagOff": set(),
    "updateOffVariation": {"variationId"},
    "updateFallthroughVariationOrRollout": {"variationId"} | ROLLOUT,
    "updateRuleVariationOrRollout": {"ruleId", "variationId"} | ROLLOUT,
    "addTargets": {"values", "contextKind", "variationId"},
    "removeTargets": {"values", "contextKind", "variationId"},
}
CODE_DEFAULT = "<the caller's code default>"
FILE_FLAG = (
    "flag: {backend: file, path: flags/flags.json, key: answer-model, control: v1, canary: v2}"
)


def flag(key: str, values: list[Any]) -> dict[str, Any]:
    return {
        "key": key,
        "salt": f"{key}-salt",
        "variations": [{"_id": f"{key}-id-{i}", "value": v} for i, v in enumerate(values)],
        "environments": {
            ENV: {
                "on": False,
                "offVariation": 0,
                "fallthrough": {"variation": 0},
                "prerequisites": [],
                "targets": [],
                "contextTargets": [],
                "rules": [],
                "_version": 1,
            },
            "staging": {"on": True, "offVariation": 0, "fallthrough": {"variation": 1}},
        },
    }


def rule(
    rule_id: str, serves: dict[str, Any], description: str = "", **clauses: Any
) -> dict[str, Any]:
    """A targeting rule as LaunchDarkly answers it: `attribute in [values]` on user contexts."""
    return {
        "_id": rule_id,
        "description": description,
        "trackEvents": False,
        "clauses": [
            {
                "_id": f"{rule_id}-{attribute}",
                "contextKind": "user",
                "attribute": attribute,
                "op": "in",
                "values": values,
                "negate": False,
            }
            for attribute, values in clauses.items()
        ],
        **serves,
    }


def half(a: int, b: int) -> dict[str, Any]:
    return {
        "rollout": {
            "variations": [{"variation": a, "weight": 50_000}, {"variation": b, "weight": 50_000}]
        }
    }


class Refused(Exception):
    """A well-formed request LaunchDarkly answers with 400 (nothing of the patch is applied)."""


class FakeLaunchDarkly:
    def __init__(self) -> None:
        self.flags = {
            "answer-model": flag("answer-model", ["v1", "v2"]),
            "ai-answers-health": flag("ai-answers-health", [True, False]),
            "review-threshold": flag("review-threshold", [0.0, 0.5, 1.0]),
        }
        self.patches: list[dict[str, Any]] = []
        self.refuse: set[str] = set()  # instruction kinds answered with 400
        self.drop_bucketing = False  # store rollouts without their context kind and attribute

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
        try:  # a semantic patch applies whole or not at all
            self.apply(copy.deepcopy(current), body["instructions"])
        except Refused as exc:
            return 400, {"code": "invalid_request", "message": str(exc)}
        self.patches.append(body)
        self.apply(current, body["instructions"])
        return 200, current

    def apply(self, current: dict[str, Any], instructions: list[dict[str, Any]]) -> None:
        env = current["environments"][ENV]
        ids = [v["_id"] for v in current["variations"]]
        for step in instructions:
            kind = step["kind"]
            assert kind in PARAMETERS, kind
            assert set(step) - {"kind"} <= PARAMETERS[kind], f"{kind}: {set(step)}"
            if kind in self.refuse:
                raise Refused(f"{kind} is not allowed on this flag")
            if kind in ("turnFlagOn", "turnFlagOff"):
                env["on"] = kind == "turnFlagOn"
            elif kind == "updateOffVariation":
                env["offVariation"] = self.variation(ids, step)
            elif kind == "updateFallthroughVariationOrRollout":
                env["fallthrough"] = self.serves(ids, step)
            elif kind == "updateRuleVariationOrRollout":
                found = [r for r in env["rules"] if r["_id"] == step["ruleId"]]
                if not found:
                    raise Refused(f"no rule {step['ruleId']}")
                found[0].pop("variation", None)
                found[0].pop("rollout", None)
                found[0].update(self.serves(ids, step))
            else:
                self.target(env, step, self.variation(ids, step), add=kind == "addTargets")

    def variation(self, ids: list[str], step: dict[str, Any]) -> int:
        assert step["variationId"] in ids, "unknown variation id"
        return ids.index(step["variationId"])

    def serves(self, ids: list[str], step: dict[str, Any]) -> dict[str, Any]:
        if "variationId" in step:
            assert not set(step) & ROLLOUT, "a variation or a rollout, not both"
            return {"variation": self.variation(ids, step)}
        weights = step["rolloutWeights"]
        assert set(weights) <= set(ids), "unknown variation id"
        assert sum(weights.values()) == FULL, "weights must sum to 100000"
        assert all(isinstance(w, int) for w in weights.values()), "integer weights"
        rollout: dict[str, Any] = {
            "variations": [{"variation": ids.index(i), "weight": w} for i, w in weights.items()]
        }
        if not self.drop_bucketing:
            rollout["contextKind"] = step.get("rolloutContextKind", "user")
            if "rolloutBucketBy" in step:
                rollout["bucketBy"] = step["rolloutBucketBy"]
        return {"rollout": rollout}

    def target(self, env: dict[str, Any], step: dict[str, Any], variation: int, add: bool) -> None:
        kind = step.get("contextKind", "user")
        rows = env.setdefault("targets" if kind == "user" else "contextTargets", [])
        mine = [
            r for r in rows if r["variation"] == variation and r.get("contextKind", "user") == kind
        ]
        if not add:
            for row in mine:
                row["values"] = [v for v in row["values"] if v not in step["values"]]
            return
        elsewhere = {
            v
            for r in env.get("targets", []) + env.get("contextTargets", [])
            if r.get("contextKind", "user") == kind and r["variation"] != variation
            for v in r["values"]
        }
        if elsewhere & set(step["values"]):
            raise Refused("a context key can be individually targeted by one variation only")
        if not mine:
            mine = [{"contextKind": kind, "variation": variation, "values": []}]
            rows.append(mine[0])
        mine[0]["values"] += [v for v in step["values"] if v not in mine[0]["values"]]


# ---------------------------------------------------------------- what SDKs serve


def evaluate(flags: dict[str, Any], key: str, context: dict[str, dict[str, Any]]) -> Any:
    """What an SDK serves `context` (context kind -> attributes) from flag `key`."""
    flag = flags[key]
    env = flag["environments"][ENV]

    def value(index: int | None) -> Any:
        return CODE_DEFAULT if index is None else flag["variations"][index]["value"]

    if not env["on"]:
        return value(env.get("offVariation"))
    for need in env.get("prerequisites", []):
        other = flags[need["key"]]
        wanted = other["variations"][need["variation"]]["value"]
        if not other["environments"][ENV]["on"] or evaluate(flags, need["key"], context) != wanted:
            return value(env.get("offVariation"))
    for target in env.get("targets", []) + env.get("contextTargets", []):
        attributes = context.get(target.get("contextKind", "user"))
        if attributes is not None and attributes["key"] in target["values"]:
            return value(target["variation"])
    for candidate in env.get("rules", []):
        if all(_matches(clause, context) for clause in candidate["clauses"]):
            return value(_bucketed(flag, candidate, context))
    return value(_bucketed(flag, env["fallthrough"], context))


def _matches(clause: dict[str, Any], context: dict[str, dict[str, Any]]) -> bool:
    assert clause["op"] == "in", "the fake evaluates `in` clauses only"
    attributes = context.get(clause.get("contextKind", "user"))
    if attributes is None:
        return False
    return (attributes.get(clause["attribute"]) in clause["values"]) != clause.get("negate", False)


def _bucketed(
    flag: dict[str, Any], part: dict[str, Any], context: dict[str, dict[str, Any]]
) -> int:
    if "variation" in part:
        return int(part["variation"])
    rollout = part["rollout"]
    attributes = context.get(rollout.get("contextKind", "user")) or {}
    by = attributes.get(rollout.get("bucketBy", "key"))
    bucket = 0.0
    if by is not None:  # LaunchDarkly: sha1("key.salt.value"), first 15 hex digits
        digest = hashlib.sha1(f"{flag['key']}.{flag['salt']}.{by}".encode()).hexdigest()
        bucket = int(digest[:15], 16) / 0xFFFFFFFFFFFFFFF
    edge = 0.0
    for item in rollout["variations"]:
        edge += item["weight"] / FULL
        if bucket < edge:
            return int(item["variation"])
    return int(rollout["variations"][-1]["variation"])


QA = {"user": {"key": "qa-1", "team": "qa"}}
VIP = {"user": {"key": "vip-1", "plan": "pro"}}
ACME = {"user": {"key": "acme-7"}, "organization": {"key": "acme"}}
PEOPLE = [{"user": {"key": f"u{i}", "plan": "free"}} for i in range(300)] + [QA, VIP, ACME]


def served(app: FakeLaunchDarkly, key: str = "answer-model") -> set[Any]:
    return {evaluate(app.flags, key, context) for context in PEOPLE}


# ---------------------------------------------------------------- fixtures


@pytest.fixture
def ld() -> Iterator[tuple[FakeLaunchDarkly, LocalServer]]:
    app = FakeLaunchDarkly()
    for server in serve(app):
        yield app, server
        assert server.problems == []


def build(
    server: LocalServer, monkeypatch: pytest.MonkeyPatch, **extra: Any
) -> LaunchDarklyFlagBackend:
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
            **extra,
        }
    )
    assert isinstance(backend, LaunchDarklyFlagBackend) and backend.KIND == "launchdarkly"
    return backend


# ---------------------------------------------------------------- the split


def test_split_and_rollback_write_the_default_rule(
    ld: tuple[FakeLaunchDarkly, LocalServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    app, server = ld
    backend = build(server, monkeypatch)
    assert backend.read() is not None and backend.read().canary_percent == 0  # type: ignore[union-attr]
    split = backend.set_split(2.5, None, rollout="shop", stage="c1")
    assert split.canary_percent == 2.5 and split.problem is None
    env = app.flags["answer-model"]["environments"][ENV]
    assert env["on"] is True
    assert env["fallthrough"]["rollout"]["variations"] == [
        {"variation": 0, "weight": 97_500},
        {"variation": 1, "weight": 2_500},
    ]
    assert app.patches[-1]["instructions"][1] == {
        "kind": "updateFallthroughVariationOrRollout",
        "rolloutWeights": {"answer-model-id-0": 97_500, "answer-model-id-1": 2_500},
        "rolloutContextKind": "user",
        "rolloutBucketBy": "key",
    }
    assert "c1" in app.patches[-1]["comment"]
    back = backend.rollback(rollout="shop", reason="pager")
    assert back.canary_percent == 0 and env["fallthrough"] == {"variation": 0}
    assert env["on"] is True  # a rollback leaves on/off alone: dependent flags keep working
    assert back.fingerprint != split.fingerprint
    assert app.flags["answer-model"]["environments"]["staging"]["fallthrough"] == {"variation": 1}
    assert served(app) == {"v1"}


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


@pytest.mark.parametrize(
    "change",
    [
        lambda env: env.update(targets=[{"contextKind": "user", "variation": 0, "values": ["u1"]}]),
        lambda env: env.update(
            contextTargets=[{"contextKind": "organization", "variation": 0, "values": ["acme"]}]
        ),
        lambda env: env.update(rules=[rule("r1", {"variation": 0}, plan=["enterprise"])]),
        lambda env: env.update(prerequisites=[{"key": "ai-answers-health", "variation": 0}]),
        lambda env: env.update(on=False),
        lambda env: env.update(offVariation=1),
        lambda env: env["fallthrough"]["rollout"].update(bucketBy="tenantId"),
    ],
    ids=["targets", "contextTargets", "rules", "prerequisites", "on", "offVariation", "bucketBy"],
)
def test_fingerprint_covers_everything_that_decides_what_sdks_serve(
    ld: tuple[FakeLaunchDarkly, LocalServer],
    monkeypatch: pytest.MonkeyPatch,
    change: Callable[[dict[str, Any]], None],
) -> None:
    app, server = ld
    backend = build(server, monkeypatch)
    split = backend.set_split(10, None, rollout="shop", stage="c1")
    change(app.flags["answer-model"]["environments"][ENV])
    now = backend.read()
    assert now is not None and now.fingerprint != split.fingerprint


def test_fingerprint_ignores_what_does_not_change_what_sdks_serve(
    ld: tuple[FakeLaunchDarkly, LocalServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    app, server = ld
    env = app.flags["answer-model"]["environments"][ENV]
    env["rules"] = [rule("r1", {"variation": 0}, "enterprise stays", plan=["enterprise"])]
    backend = build(server, monkeypatch)
    split = backend.set_split(10, None, rollout="shop", stage="c1")
    env["rules"][0].update(description="enterprise stays on v1", trackEvents=True)
    env["_version"] = 7
    env["_summary"] = {"variations": {"0": {"rules": 1}}}
    now = backend.read()
    assert now is not None and now.fingerprint == split.fingerprint


def _add_v3(flag: dict[str, Any]) -> None:
    flag["variations"].append({"_id": "answer-model-id-2", "value": "v3"})
    flag["environments"][ENV]["rules"] = [rule("r1", {"variation": 2}, plan=["beta"])]


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (
            lambda f: f["environments"][ENV].update(
                rules=[rule("r1", {"variation": 1}, "QA team", team=["qa"])]
            ),
            r"rule 1 \('QA team'\) serves 'v2'",
        ),
        (
            lambda f: f["environments"][ENV].update(rules=[rule("r1", half(0, 1), plan=["pro"])]),
            r"rule 1 serves 'v1' and 'v2'",
        ),
        (
            lambda f: f["environments"][ENV].update(
                targets=[{"contextKind": "user", "variation": 1, "values": ["vip-1"]}]
            ),
            r"1 individual user target serves 'v2'",
        ),
        (
            lambda f: f["environments"][ENV].update(
                contextTargets=[
                    {"contextKind": "user", "variation": 1, "values": []},
                    {"contextKind": "organization", "variation": 1, "values": ["acme", "globex"]},
                ]
            ),
            r"2 individual organization targets serve 'v2'",
        ),
        (_add_v3, r"rule 1 serves 'v3'"),
        (
            lambda f: f["environments"][ENV].update(
                prerequisites=[{"key": "ai-answers-health", "variation": 0}], offVariation=1
            ),
            r"prerequisite ai-answers-health \(contexts failing it get the off variation\) "
            r"serves 'v2'; its off variation is 'v2'",
        ),
        (
            lambda f: f["environments"][ENV].update(offVariation=1),
            r"its off variation is 'v2' \(what turning the flag off",
        ),
        (
            lambda f: f["environments"][ENV].update(offVariation=None),
            r"its off variation is the caller's code default",
        ),
    ],
    ids=[
        "canary-rule",
        "rollout-rule",
        "user-target",
        "context-targets",
        "third-variation",
        "prerequisite",
        "off-variation",
        "no-off-variation",
    ],
)
def test_split_is_refused_while_contexts_would_bypass_it(
    ld: tuple[FakeLaunchDarkly, LocalServer],
    monkeypatch: pytest.MonkeyPatch,
    change: Callable[[dict[str, Any]], None],
    named: str,
) -> None:
    """Like Unleash's other strategies: who gets the canary outside the split is not counted."""
    app, server = ld
    change(app.flags["answer-model"])
    before = copy.deepcopy(app.flags)
    backend = build(server, monkeypatch)
    with pytest.raises(BackendError, match=named) as info:
        backend.set_split(10, None, rollout="shop", stage="c1")
    assert "nothing was changed" in info.value.message
    assert "make 'v1' the off variation" in (info.value.hint or "")
    assert app.flags == before and app.patches == []


def test_targets_and_rules_serving_only_the_control_are_allowed(
    ld: tuple[FakeLaunchDarkly, LocalServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Those contexts stay on the control, as they would after a rollback."""
    app, server = ld
    env = app.flags["answer-model"]["environments"][ENV]
    env["rules"] = [rule("r1", {"variation": 0}, "enterprise stays", plan=["pro"])]
    env["targets"] = [{"contextKind": "user", "variation": 0, "values": ["qa-1"]}]
    env["prerequisites"] = [{"key": "ai-answers-health", "variation": 0}]  # not met: off var v1
    backend = build(server, monkeypatch)
    split = backend.set_split(50, None, rollout="shop", stage="c1")
    assert split.canary_percent == 50 and split.problem is None
    assert evaluate(app.flags, "answer-model", VIP) == "v1"
    assert evaluate(app.flags, "answer-model", QA) == "v1"


def test_canary_served_outside_the_split_makes_the_share_unknown(
    ld: tuple[FakeLaunchDarkly, LocalServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    app, server = ld
    backend = build(server, monkeypatch)
    backend.set_split(10, None, rollout="shop", stage="c1")
    app.flags["answer-model"]["environments"][ENV]["rules"] = [
        rule("r1", {"variation": 1}, "QA team", team=["qa"])
    ]
    now = backend.read()
    assert now is not None and math.isnan(now.canary_percent)
    assert now.problem == "outside the split, rule 1 ('QA team') serves 'v2'"


def test_bucketing_comes_from_the_flag_section_and_is_read_back(
    ld: tuple[FakeLaunchDarkly, LocalServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    app, server = ld
    backend = build(server, monkeypatch, context_kind="organization", bucket_by="tenantId")
    backend.set_split(50, None, rollout="shop", stage="c1")
    step = app.patches[-1]["instructions"][1]
    assert (step["rolloutContextKind"], step["rolloutBucketBy"]) == ("organization", "tenantId")
    arms = {
        tenant: {
            evaluate(
                app.flags,
                "answer-model",
                {
                    "user": {"key": f"{tenant}-u{i}"},
                    "organization": {"key": "o", "tenantId": tenant},
                },
            )
            for i in range(10)
        }
        for tenant in (f"t{n}" for n in range(40))
    }
    assert all(len(got) == 1 for got in arms.values())  # one tenant, one arm
    assert set().union(*arms.values()) == {"v1", "v2"}
    app.drop_bucketing = True
    with pytest.raises(
        BackendError, match="buckets user contexts by key, not organization contexts by tenantId"
    ):
        backend.set_split(60, None, rollout="shop", stage="c2")


# ---------------------------------------------------------------- rollback


def _serve_the_canary_by_hand(app: FakeLaunchDarkly) -> None:
    env = app.flags["answer-model"]["environments"][ENV]
    env["rules"] = [
        rule("r1", {"variation": 1}, "QA team", team=["qa"]),
        rule("r2", half(0, 1), plan=["pro"]),
    ]
    env["targets"] = [{"contextKind": "user", "variation": 1, "values": ["u1", "u2"]}]
    env["contextTargets"] = [
        {"contextKind": "user", "variation": 1, "values": []},
        {"contextKind": "organization", "variation": 1, "values": ["acme"]},
    ]
    env["prerequisites"] = [{"key": "ai-answers-health", "variation": 0}]
    env["offVariation"] = 1


def test_rollback_moves_everything_serving_the_canary_to_the_control(
    ld: tuple[FakeLaunchDarkly, LocalServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    app, server = ld
    backend = build(server, monkeypatch)
    backend.set_split(10, None, rollout="shop", stage="c1")
    _serve_the_canary_by_hand(app)
    assert "v2" in {evaluate(app.flags, "answer-model", c) for c in (QA, VIP, ACME)}
    back = backend.rollback(rollout="shop", reason="pager")
    assert back.canary_percent == 0 and back.problem is None
    assert served(app) == {"v1"}
    env = app.flags["answer-model"]["environments"][ENV]
    assert [r["clauses"][0]["attribute"] for r in env["rules"]] == ["team", "plan"]  # kept
    assert [r["variation"] for r in env["rules"]] == [0, 0]
    assert {"u1", "u2"} <= {v for t in env["targets"] if t["variation"] == 0 for v in t["values"]}
    assert env["offVariation"] == 0
    assert "moved from v2 to v1" in app.patches[-1]["comment"]
    env["on"] = False  # the LaunchDarkly off switch, pressed afterwards, serves the control too
    assert served(app) == {"v1"}


def test_rollback_that_cannot_reach_every_context_fails_and_says_what_is_left(
    ld: tuple[FakeLaunchDarkly, LocalServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    app, server = ld
    backend = build(server, monkeypatch)
    backend.set_split(10, None, rollout="shop", stage="c1")
    _serve_the_canary_by_hand(app)
    app.refuse.add("updateRuleVariationOrRollout")
    with pytest.raises(BackendError) as info:
        backend.rollback(rollout="shop", reason="pager")
    message = info.value.message
    assert (
        "still serves 'v2': its default rule now serves 'v1', but rule 1 ('QA team') serves "
        "'v2'; rule 2 serves 'v1' and 'v2'"
    ) in message
    assert "moving rule 1 ('QA team') to 'v1' failed" in message
    assert "make those serve 'v1'" in message
    # what could be moved was: the targets, in patches of their own
    assert evaluate(app.flags, "answer-model", ACME) == "v1"
    assert evaluate(app.flags, "answer-model", {"user": {"key": "u1"}}) == "v1"
    # the kill went through: contexts no rule matches are on the control
    assert evaluate(app.flags, "answer-model", {"user": {"key": "u9", "plan": "free"}}) == "v1"


def test_controls_read_back_what_sdks_serve(
    ld: tuple[FakeLaunchDarkly, LocalServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    app, server = ld
    backend = build(server, monkeypatch)
    health = app.flags["ai-answers-health"]["environments"][ENV]
    assert health["on"] is False and health["offVariation"] == 0
    assert backend.read_control("ai-answers-health") is True  # off, serving its off variation
    backend.set_control("ai-answers-health", False)
    assert app.patches[-1]["instructions"] == [
        {"kind": "turnFlagOn"},
        {"kind": "updateFallthroughVariationOrRollout", "variationId": "ai-answers-health-id-1"},
    ]
    assert served(app, "ai-answers-health") == {False}
    assert backend.read_control("ai-answers-health") is False
    backend.set_control("ai-answers-health", True)
    assert served(app, "ai-answers-health") == {True}
    # with `false` as its off variation, off means false for everyone, targeted contexts too
    health["offVariation"] = 1
    health["targets"] = [{"contextKind": "user", "variation": 0, "values": ["vip-1"]}]
    backend.set_control("ai-answers-health", False)
    assert app.patches[-1]["instructions"] == [{"kind": "turnFlagOff"}]
    assert served(app, "ai-answers-health") == {False}
    backend.set_control("review-threshold", 1.0)
    assert backend.read_control("review-threshold") == 1.0
    assert served(app, "review-threshold") == {1.0}
    with pytest.raises(BackendError, match=r"no variation with value 0\.7"):
        backend.set_control("review-threshold", 0.7)
    with pytest.raises(BackendError, match="has no variation 'v3'"):
        LaunchDarklyFlagBackend(
            "search", ENV, "answer-model", "v1", "v3", TOKEN, base_url=server.url
        ).set_split(5, None, rollout="s", stage="c")


def test_a_control_without_one_value_is_reported_not_guessed(
    ld: tuple[FakeLaunchDarkly, LocalServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    app, server = ld
    backend = build(server, monkeypatch)
    threshold = app.flags["review-threshold"]["environments"][ENV]
    threshold.update(on=True, fallthrough=half(0, 2))
    with pytest.raises(BackendError, match="serves a percentage rollout by default"):
        backend.read_control("review-threshold")
    app.flags["ai-answers-health"]["environments"][ENV]["offVariation"] = None
    with pytest.raises(BackendError, match="code default; its value is unknown"):
        backend.read_control("ai-answers-health")
    backend.set_control("ai-answers-health", False)  # a definite value again
    assert served(app, "ai-answers-health") == {False}


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


# ---------------------------------------------------------------- playbook and CLI


def _launchdarkly_flag(server: LocalServer, extra: str = "") -> str:
    return (
        "flag: {backend: launchdarkly, project: search, environment: " + ENV + ", "
        "key: answer-model, control: v1, canary: v2, token_env: LD_TEST_TOKEN, "
        f"base_url: '{server.url}'{extra}}}"
    )


def test_start_and_rollback_through_the_cli(
    ld: tuple[FakeLaunchDarkly, LocalServer], monkeypatch: pytest.MonkeyPatch, ws: Workspace
) -> None:
    """A remote flag has no file path: the CLI starts, splits and rolls back through the API,
    with the bucketing the playbook names."""
    app, server = ld
    monkeypatch.setenv("LD_TEST_TOKEN", TOKEN)
    flag_section = _launchdarkly_flag(server, ", context_kind: organization, bucket_by: tenantId")
    ws.playbook.write_text(PLAYBOOK.replace(FILE_FLAG, flag_section))
    started = ws.run("start", str(ws.playbook), now=START)
    assert started.code == 0, started.err
    env = app.flags["answer-model"]["environments"][ENV]
    assert env["fallthrough"]["rollout"] == {
        "variations": [{"variation": 0, "weight": 80_000}, {"variation": 1, "weight": 20_000}],
        "contextKind": "organization",
        "bucketBy": "tenantId",
    }
    assert ws.state()["flag"]["context_kind"] == "organization"
    rolled = ws.run("--json", "rollback", "shop-answers", "--reason", "pager")
    assert rolled.code == 0, rolled.err
    assert env["fallthrough"] == {"variation": 0}
    assert ws.state()["status"] == "rolled_back"
    assert TOKEN not in (started.out + started.err + rolled.out + rolled.err)


def test_cli_rollback_exits_4_while_a_rule_still_serves_the_canary(
    ld: tuple[FakeLaunchDarkly, LocalServer], monkeypatch: pytest.MonkeyPatch, ws: Workspace
) -> None:
    app, server = ld
    monkeypatch.setenv("LD_TEST_TOKEN", TOKEN)
    ws.playbook.write_text(PLAYBOOK.replace(FILE_FLAG, _launchdarkly_flag(server)))
    assert ws.run("start", str(ws.playbook), now=START).code == 0
    app.flags["answer-model"]["environments"][ENV]["rules"] = [
        rule("r1", {"variation": 1}, "QA team", team=["qa"])
    ]
    app.refuse.add("updateRuleVariationOrRollout")
    failed = ws.run("rollback", "shop-answers", "--reason", "pager")
    assert failed.code == 4, failed.err
    assert "rule 1 ('QA team') serves 'v2'" in failed.err
    assert ws.state()["status"] != "rolled_back"
    app.refuse.clear()
    rolled = ws.run("rollback", "shop-answers", "--reason", "pager")
    assert rolled.code == 0, rolled.err
    assert ws.state()["status"] == "rolled_back" and served(app) == {"v1"}


LD_SECTION = (
    "flag: {backend: launchdarkly, project: search, environment: production, key: k, "
    "control: a, canary: b%s}"
)


@pytest.mark.parametrize(
    ("flag_section", "problem"),
    [
        (LD_SECTION % ", context_kind: organization", None),
        (LD_SECTION % ", context_kind: 'org unit'", "context_kind"),
        (LD_SECTION % ", bucket_by: ''", "bucket_by"),
        (FILE_FLAG[:-1] + ", bucket_by: tenantId}", "bucket_by"),
    ],
    ids=["valid", "bad-context-kind", "empty-bucket-by", "not-for-the-file-backend"],
)
def test_bucketing_keys_in_the_playbook(
    tmp_path: Path, flag_section: str, problem: str | None
) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(PLAYBOOK.replace(FILE_FLAG, flag_section))
    if problem is None:
        spec = load_playbook(path).playbook.flag.model_dump()
        assert (spec["context_kind"], spec["bucket_by"]) == ("organization", "key")
        return
    with pytest.raises(PlaybookInvalid, match=problem):
        load_playbook(path)
