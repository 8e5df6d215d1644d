"""The real Unleash server of tests/flags/conftest.py, and the facts of its admin API that the
unleash flag backend relies on: the admin token is required, a new flag has its environments
(off, with no strategies), turning an environment on shows in the flag's GET, flexibleRollout
strategies round-trip with `rollout` as a string and PUT replaces a strategy whole, and the
per-environment variants endpoint refuses new flags (strategy variants replace it)."""

from __future__ import annotations

import httpx

from tests.flags.conftest import UnleashServer


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
