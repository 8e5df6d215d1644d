"""The real Unleash server of tests/flags/conftest.py, and the facts of its admin API that the
unleash flag backend relies on: the admin token is required, a new flag has its environments
(off, with no strategies), turning an environment on shows in the flag's GET, flexibleRollout
strategies round-trip with `rollout` as a string and PUT replaces a strategy whole, the
per-environment variants endpoint refuses new flags (strategy variants replace it), and how
Unleash's own evaluator (the playground) answers constraints when the context lacks the field."""

from __future__ import annotations

import itertools
from typing import Any

import httpx
import pytest

from tests.flags.conftest import UnleashServer

_names = itertools.count(1)


def test_admin_api_requires_the_token(unleash: UnleashServer) -> None:
    path = f"/api/admin/projects/{unleash.project}/features"
    without = httpx.get(unleash.url + path, timeout=30)
    assert without.status_code in (401, 403), without.text
    wrong = httpx.get(unleash.url + path, headers={"Authorization": "*:*.wrong"}, timeout=30)
    assert wrong.status_code in (401, 403), wrong.text
    with_token = unleash.request("GET", path)
    assert with_token.status_code == 200, with_token.text
    assert isinstance(with_token.json()["features"], list)


def test_default_project_has_the_environment(unleash: UnleashServer) -> None:
    # 7.5.1 has no GET /api/admin/projects/{id}; the overview lists the project's environments.
    answer = unleash.request("GET", f"/api/admin/projects/{unleash.project}/overview")
    assert answer.status_code == 200, answer.text
    names = {env["environment"] for env in answer.json()["environments"]}
    assert names == {"development", "production"}, names
    assert unleash.environment in names


def test_created_feature_has_its_environments(unleash: UnleashServer) -> None:
    unleash.create_feature("answer-model-created")
    unleash.create_feature("answer-model-created")  # a second create is not an error
    feature = unleash.feature("answer-model-created")
    assert feature["name"] == "answer-model-created"
    assert feature["project"] == unleash.project
    assert feature["type"] == "release"
    names = [env["name"] for env in feature["environments"]]
    assert unleash.environment in names, names
    entry = unleash.environment_entry("answer-model-created")
    assert entry["enabled"] is False
    assert entry["strategies"] == []


def test_turning_an_environment_on_shows_in_the_get(unleash: UnleashServer) -> None:
    unleash.create_feature("answer-model-toggled")
    path = f"{unleash.features_path('answer-model-toggled')}/environments/{unleash.environment}"
    on = unleash.request("POST", path + "/on")
    assert on.status_code == 200, on.text
    entry = unleash.environment_entry("answer-model-toggled")
    assert entry["enabled"] is True
    # Turning on an environment without strategies adds Unleash's default one.
    assert [s["name"] for s in entry["strategies"]] == ["flexibleRollout"]
    others = [
        e
        for e in unleash.feature("answer-model-toggled")["environments"]
        if e["name"] != unleash.environment
    ]
    assert all(e["enabled"] is False for e in others), others
    unleash.set_enabled("answer-model-toggled", False)
    assert unleash.environment_entry("answer-model-toggled")["enabled"] is False


def test_flexible_rollout_strategy_round_trip(unleash: UnleashServer) -> None:
    unleash.create_feature("answer-model-strategy")
    path = f"{unleash.features_path('answer-model-strategy')}/environments/production/strategies"
    body = {
        "name": "flexibleRollout",
        "parameters": {"rollout": 20, "stickiness": "default", "groupId": "answer-model"},
        "constraints": [],
        "variants": [
            {"name": "v2", "weight": 0, "weightType": "variable", "stickiness": "default"}
        ],
    }
    created = unleash.request("POST", path, body)
    assert created.status_code == 200, created.text  # 200, not 201
    strategy_id = created.json()["id"]
    listed = unleash.request("GET", path).json()
    assert [s["id"] for s in listed] == [strategy_id]
    # A number sent as rollout comes back as a string; variable weights are filled in (1000).
    assert listed[0]["parameters"] == {
        "rollout": "20",
        "stickiness": "default",
        "groupId": "answer-model",
    }
    assert listed[0]["constraints"] == []
    assert [(v["name"], v["weight"]) for v in listed[0]["variants"]] == [("v2", 1000)]
    # PUT replaces the whole strategy: what it leaves out goes back to the defaults.
    put = unleash.request(
        "PUT", f"{path}/{strategy_id}", {"name": "flexibleRollout", "parameters": {"rollout": "50"}}
    )
    assert put.status_code == 200, put.text
    one = unleash.request("GET", f"{path}/{strategy_id}").json()
    assert one["parameters"] == {
        "rollout": "50",
        "stickiness": "default",
        "groupId": "answer-model-strategy",
    }
    assert one["variants"] == []
    entry = unleash.environment_entry("answer-model-strategy", "production")
    assert [s["parameters"]["rollout"] for s in entry["strategies"]] == ["50"]


def test_environment_variants_are_deprecated(unleash: UnleashServer) -> None:
    unleash.create_feature("answer-model-variants")
    path = f"{unleash.features_path('answer-model-variants')}/environments/{unleash.environment}"
    variants = [
        {"name": "v1", "weight": 500, "weightType": "variable", "stickiness": "default"},
        {"name": "v2", "weight": 500, "weightType": "variable", "stickiness": "default"},
    ]
    put = unleash.request("PUT", path + "/variants", variants)
    assert put.status_code == 403, put.text
    assert "Use strategy variants instead" in put.json()["message"]
    assert unleash.request("GET", path + "/variants").json()["variants"] == []


def scoped_feature(unleash: UnleashServer, constraint: dict[str, Any]) -> str:
    """A feature on for everyone (100%) who satisfies the one constraint."""
    name = f"evaluated-{next(_names)}"
    unleash.create_feature(name)
    path = f"{unleash.features_path(name)}/environments/{unleash.environment}/strategies"
    body = {
        "name": "flexibleRollout",
        "parameters": {"rollout": "100", "stickiness": "default", "groupId": name},
        "constraints": [constraint],
    }
    unleash.request("POST", path, body).raise_for_status()
    unleash.set_enabled(name, True)
    return name


# Without the field: IN and NUM_* are false, NOT_IN is true (so a scope `category not in
# (...)` needs one more constraint to keep out requests without a category), and REGEX ".*"
# is false, and true for any value: that is the constraint the backend adds.
@pytest.mark.parametrize(
    ("constraint", "values"),
    [
        ({"operator": "IN", "values": ["books"]}, {"books": True, "toys": False}),
        ({"operator": "NOT_IN", "values": ["books"]}, {"books": False, "toys": True}),
        ({"operator": "NUM_GTE", "value": "3"}, {"3": True, "12": True, "2": False, "x": False}),
        ({"operator": "NUM_LT", "value": "3"}, {"2": True, "-1.5": True, "3": False, "x": False}),
        ({"operator": "REGEX", "value": ".*"}, {"books": True, "3": True, "a b": True}),
        # " " is trimmed to "" by the server (and the Node SDK), not by yggdrasil (Python SDK 6)
        # nor the Python SDK 5: no presence test the SDKs agree on.
        ({"operator": "STR_STARTS_WITH", "values": [" "]}, {"books": True, "x": True}),
    ],
    ids=["IN", "NOT_IN", "NUM_GTE", "NUM_LT", "REGEX", "STR_STARTS_WITH-space"],
)
def test_how_unleash_evaluates_a_context_without_the_field(
    unleash: UnleashServer, constraint: dict[str, Any], values: dict[str, bool]
) -> None:
    absent = constraint["operator"] == "NOT_IN"
    name = scoped_feature(unleash, {"contextName": "category", **constraint})
    for context in ({}, {"userId": "u1"}, {"properties": {"tier": "3"}}):
        assert unleash.playground(name, context)["isEnabled"] is absent, context
    for value, expected in values.items():
        result = unleash.playground(name, {"properties": {"category": value}})
        assert result["isEnabled"] is expected, value
    # A top-level field (userId) behaves like a custom property.
    on_user = scoped_feature(unleash, {"contextName": "userId", **constraint})
    assert unleash.playground(on_user, {"properties": {"category": "books"}})["isEnabled"] is (
        absent
    )


def test_empty_constraint_values_are_refused(unleash: UnleashServer) -> None:
    unleash.create_feature("evaluated-empty")
    path = f"{unleash.features_path('evaluated-empty')}/environments/{unleash.environment}"
    body = {
        "name": "flexibleRollout",
        "parameters": {"rollout": "100"},
        "constraints": [{"contextName": "category", "operator": "STR_STARTS_WITH", "values": [""]}],
    }
    answer = unleash.request("POST", path + "/strategies", body)
    assert answer.status_code == 400, answer.text
    assert "not allowed to be empty" in answer.text
    assert unleash.environment_entry("evaluated-empty")["strategies"] == []
