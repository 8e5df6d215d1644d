"""What a user installs: the wheel built from this tree, installed as a tool (`uv tool
install`, what `pipx install` also does: its own virtualenv and a `rolloutctl` on PATH), runs
`--version` and the full demo outside the source tree, with the license and the package's
data files inside."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dist = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(ROOT)],
        check=True,
        timeout=600,
    )
    (built,) = dist.glob("rolloutctl-*.whl")
    return built


def test_the_wheel_carries_the_license_the_templates_and_the_starter_playbook(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert any(n.endswith("licenses/LICENSE") for n in names)
    for data in ("report/templates/gate.html", "playbook/starter.yaml", "py.typed"):
        assert f"rolloutctl/{data}" in names, data
    assert not any(n.startswith(("tests/", "benchmarks/")) for n in names)
    metadata = zipfile.ZipFile(wheel).read(f"rolloutctl-{VERSION}.dist-info/METADATA").decode()
    assert "License-Expression: Apache-2.0" in metadata
    assert "Operating System :: POSIX :: Linux" in metadata


def test_a_tool_install_of_the_wheel_runs_version_and_the_demo(wheel: Path, tmp_path: Path) -> None:
    uv = Path(sys.executable).parent / "uv"
    uv_bin = str(uv) if uv.exists() else shutil.which("uv")
    assert uv_bin, "uv is in the test extra"
    env = {
        **os.environ,
        "UV_TOOL_DIR": str(tmp_path / "tools"),
        "UV_TOOL_BIN_DIR": str(tmp_path / "bin"),
        "UV_NATIVE_TLS": "1",  # the machine's certificates, as pip uses them
    }
    env.pop("VIRTUAL_ENV", None)
    installed = subprocess.run(
        [uv_bin, "tool", "install", "--python", sys.executable, str(wheel)],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert installed.returncode == 0, installed.stderr
    exe = tmp_path / "bin" / "rolloutctl"
    away = tmp_path / "elsewhere"  # not the source tree: nothing imported from it
    away.mkdir()
    clean_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}

    version = subprocess.run(
        [str(exe), "--version"], capture_output=True, text=True, cwd=away, env=clean_env
    )
    assert version.returncode == 0 and version.stdout == f"rolloutctl {VERSION}\n"

    demo = subprocess.run(
        [str(exe), "demo", "--workdir", str(away / "demo")],
        capture_output=True,
        text=True,
        cwd=away,
        env=clean_env,
        timeout=900,
    )
    assert demo.returncode == 0, demo.stderr[-3000:]
    assert re.search(r"ai-search-answer-v2 \(healthy\): completed", demo.stdout), demo.stdout
    assert re.search(r"ai-search-answer-v3 \(\w+\): rolled_back", demo.stdout), demo.stdout
    assert (away / "demo" / "reports" / "index.html").exists()
    assert not (away / "reports").exists()  # --workdir holds the reports too
    where = subprocess.run(
        [
            str(tmp_path / "tools" / "rolloutctl" / "bin" / "python"),
            "-c",
            "import rolloutctl; print(rolloutctl.__file__)",
        ],
        capture_output=True,
        text=True,
        cwd=away,
        env=clean_env,
    )
    assert str(tmp_path / "tools") in where.stdout, where.stdout  # the installed copy ran
