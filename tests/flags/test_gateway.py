"""The gateway flag backend against a real LiteLLM-style config file, and a rollout through the
real CLI that moves the gateway's weights."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from rolloutctl.errors import BackendError
from rolloutctl.flags.gateway import GatewayFlagBackend
from rolloutctl.flags.registry import build_backend
from tests.conftest import PLAYBOOK, START, Workspace

CONFIG = """\
model_list:
  - model_name: answer
    litellm_params: {model: openai/gpt-4o-mini, api_key: os.environ/OPENAI_API_KEY}
    model_info: {id: v1}
  - model_name: answer
    litellm_params: {model: openai/gpt-4.1-mini, api_key: os.environ/OPENAI_API_KEY}
    model_info: {id: v2}
  - model_name: embed
    litellm_params: {model: openai/text-embedding-3-small, weight: 3}
router_settings: {routing_strategy: simple-shuffle}
general_settings: {master_key: os.environ/LITELLM_MASTER_KEY}
"""


def weights(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    return {
        (e.get("model_info") or {}).get("id", e["litellm_params"]["model"]): e[
            "litellm_params"
        ].get("weight")
        for e in data["model_list"]
    }


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "litellm" / "config.yaml"
    path.parent.mkdir()
    path.write_text(CONFIG)
    return path


def backend_for(config: Path) -> GatewayFlagBackend:
    spec = {
        "backend": "gateway",
        "path": "config.yaml",
        "key": "answer",
        "control": "v1",
        "canary": "v2",
    }
    backend = build_backend(spec, base_dir=config.parent)
    assert isinstance(backend, GatewayFlagBackend) and backend.KIND == "gateway"
    return backend


def test_split_and_rollback_write_weights_and_keep_everything_else(config: Path) -> None:
    backend = backend_for(config)
    assert backend.read() is not None and backend.read().canary_percent == 50  # type: ignore[union-attr]
    split = backend.set_split(20, None, rollout="shop", stage="c1")
    assert split.canary_percent == 20
    assert weights(config) == {"v1": 80, "v2": 20, "openai/text-embedding-3-small": 3}
    data = yaml.safe_load(config.read_text())
    assert data["router_settings"] == {"routing_strategy": "simple-shuffle"}
    assert data["general_settings"] == {"master_key": "os.environ/LITELLM_MASTER_KEY"}
    assert data["model_list"][1]["litellm_params"]["api_key"] == "os.environ/OPENAI_API_KEY"
    assert backend.set_split(0.5, None, rollout="shop", stage="c0").canary_percent == 0.5
    assert weights(config)["v1"] == 99.5
    back = backend.rollback(rollout="shop", reason="pager")
    assert back.canary_percent == 0
    assert weights(config) == {"v1": 100, "v2": 0, "openai/text-embedding-3-small": 3}
    assert not list(config.parent.glob(".*.tmp"))  # the atomic write left no temp file


def test_drift_is_seen_in_the_group_only(config: Path) -> None:
    backend = backend_for(config)
    split = backend.set_split(10, None, rollout="shop", stage="c1")
    data = yaml.safe_load(config.read_text())
    data["model_list"][2]["litellm_params"]["weight"] = 9  # another group: not our flag
    config.write_text(yaml.safe_dump(data))
    assert backend.read() == split
    data["model_list"][1]["litellm_params"]["weight"] = 40
    config.write_text(yaml.safe_dump(data))
    now = backend.read()
    assert now is not None and now.fingerprint != split.fingerprint
    assert round(now.canary_percent, 6) == round(100 * 40 / 130, 6)


def test_scoped_stage_and_missing_deployment_are_refused_without_writing(config: Path) -> None:
    backend = backend_for(config)
    before = config.read_bytes()
    with pytest.raises(BackendError, match="cannot target segments"):
        backend.set_split(5, {"==": [{"var": "language"}, "en"]}, rollout="shop", stage="c1")
    other = GatewayFlagBackend(config, "answer", "v1", "v3")
    with pytest.raises(BackendError, match="no deployment 'v3'") as info:
        other.set_split(5, None, rollout="shop", stage="c1")
    assert "model_list" in (info.value.hint or "")
    assert GatewayFlagBackend(config, "chat", "v1", "v2").read() is None
    assert config.read_bytes() == before
    config.write_text("model_list: [unclosed\n")
    with pytest.raises(BackendError, match="not valid YAML"):
        backend.read()


def test_controls_live_in_their_own_map(config: Path) -> None:
    backend = backend_for(config)
    assert backend.read_control("ai-answers-health") is None
    backend.set_control("ai-answers-health", False)
    backend.set_control("review-threshold", 1.0)
    data = yaml.safe_load(config.read_text())
    assert data["rolloutctl_controls"] == {"ai-answers-health": False, "review-threshold": 1.0}
    assert backend.read_control("review-threshold") == 1.0
    assert len(data["model_list"]) == 3


def test_start_advance_rollback_through_the_cli(ws: Workspace) -> None:
    config = ws.root / "gateway" / "config.yaml"
    config.parent.mkdir()
    config.write_text(CONFIG)
    ws.playbook.write_text(
        PLAYBOOK.replace(
            "flag: {backend: file, path: flags/flags.json, key: answer-model, control: v1, canary: v2}",
            "flag: {backend: gateway, path: gateway/config.yaml, key: answer, control: v1, canary: v2}",
        )
    )
    r = ws.run("start", str(ws.playbook), now=START)
    assert r.code == 0, r.err
    assert weights(config)["v1"] == 80 and weights(config)["v2"] == 20
    assert ws.state()["flag"]["backend"] == "gateway"

    ws.log("healthy", START, 2, 20, "p1", seed=1)
    r = ws.run("--json", "advance", "shop-answers", now=START + timedelta(hours=2))
    assert r.code == 0, r.out + r.err
    assert r.json()["decision"] == "advance"
    assert weights(config)["v2"] == 50 and ws.state()["stage"] == "c2"

    r = ws.run("--json", "rollback", "shop-answers", "--reason", "pager: answers look off")
    assert r.code == 0, r.err
    assert weights(config)["v1"] == 100 and weights(config)["v2"] == 0
    assert ws.state()["status"] == "rolled_back"
    assert weights(config)["openai/text-embedding-3-small"] == 3


def test_a_change_outside_rolloutctl_stops_advance_with_exit_5(ws: Workspace) -> None:
    config = ws.root / "gateway" / "config.yaml"
    config.parent.mkdir()
    config.write_text(CONFIG)
    ws.playbook.write_text(
        PLAYBOOK.replace(
            "flag: {backend: file, path: flags/flags.json, key: answer-model, control: v1, canary: v2}",
            "flag: {backend: gateway, path: gateway/config.yaml, key: answer, control: v1, canary: v2}",
        )
    )
    assert ws.run("start", str(ws.playbook), now=START).code == 0
    data = yaml.safe_load(config.read_text())
    data["model_list"][1]["litellm_params"]["weight"] = 60
    config.write_text(yaml.safe_dump(data))
    ws.log("healthy", START, 2, 20, "p1", seed=1)
    r = ws.run("advance", "shop-answers", now=START + timedelta(hours=2))
    assert r.code == 5, r.out + r.err
    assert "changed outside rolloutctl" in r.err + r.out
    assert weights(config)["v2"] == 60  # left as the person set it


def test_a_rollback_that_cannot_write_the_config_exits_4_and_records_nothing(
    ws: Workspace,
) -> None:
    config = ws.root / "gateway" / "config.yaml"
    config.parent.mkdir()
    config.write_text(CONFIG)
    ws.playbook.write_text(
        PLAYBOOK.replace(
            "flag: {backend: file, path: flags/flags.json, key: answer-model, control: v1, canary: v2}",
            "flag: {backend: gateway, path: gateway/config.yaml, key: answer, control: v1, canary: v2}",
        )
    )
    assert ws.run("start", str(ws.playbook), now=START).code == 0
    config.write_text("model_list: [unclosed\n")  # a bad deploy left the gateway config broken
    state = ws.root / "state" / "shop-answers" / "state.json"
    before = state.read_text()
    r = ws.run("rollback", "shop-answers", "--reason", "pager")
    assert r.code == 4, r.err
    assert "the rollback did NOT complete" in r.err and str(config) in r.err
    assert "serve only 'v1' by hand" in r.err and "Traceback" not in r.err
    assert state.read_text() == before
    assert config.read_text() == "model_list: [unclosed\n"
