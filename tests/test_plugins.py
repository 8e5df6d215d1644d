"""Sources and flag backends from another package: tests/data/plugin, installed by pip into
a folder of its own (as a user's `pip install rolloutctl-something` would add it), provides
`kind: counts` and `backend: jsonfile` through entry points. A playbook using them
validates, starts, is judged on the plugin's numbers, advances and rolls back through the
plugin's backend (the fast path too); without the plugin, validate names what is missing."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from tests.conftest import START, Workspace

PLUGIN = Path(__file__).resolve().parent / "data" / "plugin"
PLAYBOOK = """\
rollout: plugged
flag: {backend: jsonfile, path: flag.json, key: answer-model, control: v1, canary: v2}
sources:
  api:
    kind: counts
    metrics: {error_rate: {control: [40000, 400], canary: [10000, 98]}}
metrics:
  - {name: error_rate, group: technical, source: api, kind: proportion, event: "status = 'error'",
     worse: higher, margin: {absolute: 0.01}}
stages:
  - {name: c1, traffic: 20, min_duration: 1h}
  - {name: full, traffic: 100}
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("plugin-site")
    source = tmp_path_factory.mktemp("plugin-source") / "plugin"
    shutil.copytree(PLUGIN, source)  # the build writes beside the sources: not in the tree
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--target",
            str(target),
            str(source),
        ],
        check=True,
        timeout=600,
    )
    assert list(target.glob("rolloutctl_example_plugin-*.dist-info"))
    return target


def test_a_plugin_source_and_flag_backend_run_a_rollout(ws: Workspace, site: Path) -> None:
    env = {"PYTHONPATH": str(site)}
    playbook = ws.root / "plugged.yaml"
    playbook.write_text(PLAYBOOK)
    assert ws.run("validate", str(playbook), env=env).code == 0
    flag = ws.root / "flag.json"

    assert ws.run("start", str(playbook), now=START, env=env).code == 0
    assert json.loads(flag.read_text())["canary_percent"] == 20

    r = ws.run("--json", "check", "plugged", now=START + timedelta(hours=2), env=env)
    assert r.code == 0, r.err
    (row,) = [m for m in r.json()["metrics"] if m["name"] == "error_rate"]
    assert row["control"]["n"] == 40000 and row["canary"]["n"] == 10000  # the plugin's numbers
    assert row["verdict"] == "pass"

    r = ws.run("advance", "plugged", now=START + timedelta(hours=2), env=env)
    assert r.code == 0, r.err
    assert json.loads(flag.read_text())["canary_percent"] == 100

    r = ws.run("rollback", "plugged", "--reason", "drill", env=env)  # the fast path
    assert r.code == 0, r.err
    assert json.loads(flag.read_text())["canary_percent"] == 0
    status = ws.run("--json", "status", "plugged", env=env)
    assert status.json()["rollouts"][0]["status"] == "rolled_back"


def test_without_the_plugin_validate_names_what_is_missing(ws: Workspace) -> None:
    playbook = ws.root / "plugged.yaml"
    playbook.write_text(PLAYBOOK)
    r = ws.run("validate", str(playbook))
    assert r.code == 3
    assert "plugged.yaml:2:" in r.out and "got 'jsonfile'" in r.out
    assert "plugged.yaml:5:" in r.out and "got 'counts'" in r.out
    assert "or one a plugin provides (none installed)" in r.out


def test_the_schema_knows_the_sources_the_registry_builds() -> None:
    """A built-in kind is one the registry builds; any other name is a plugin's."""
    from rolloutctl.metrics.registry import _KINDS
    from rolloutctl.playbook.model import BUILTIN_SOURCES

    assert set(BUILTIN_SOURCES) == set(_KINDS)
