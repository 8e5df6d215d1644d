"""Median wall time of `rolloutctl rollback` (process start to flag and state written),
beside `python -c pass`. Prints figures; asserts nothing.

`--unleash` also measures it against a real local unleash-server on PostgreSQL (started and
stopped here, as the tests do: tests/flags/conftest.py; `bash tests/run.sh` installs them)."""

from __future__ import annotations

import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PLAYBOOK = """\
rollout: bench
flag: {backend: file, path: flags.json, key: m, control: v1, canary: v2}
sources: {r: {kind: requestlog, path: "data/*.parquet"}}
metrics:
  - {name: err, group: technical, source: r, kind: proportion, event: "status = 'error'", worse: higher, margin: {absolute: 0.01}}
stages:
  - {name: c1, traffic: 10}
"""


def timed(cmd: list[str], env: dict[str, str], cwd: Path) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, env=env, cwd=cwd, check=True, capture_output=True)
    return time.perf_counter() - t


def main(
    runs: int = 30,
    playbook: str = PLAYBOOK,
    label: str = "file backend",
    extra_env: dict[str, str] | None = None,
) -> None:
    root = Path(tempfile.mkdtemp())
    (root / "p.yaml").write_text(playbook)
    env = {**os.environ, **(extra_env or {}), "ROLLOUTCTL_STATE_DIR": str(root / "state")}
    # As installed: byte-code cached (a shell with PYTHONDONTWRITEBYTECODE would recompile
    # every module on every run, which no user's install does).
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    # The console script beside this interpreter (a version-manager shim on PATH would add
    # its own start-up time to every run).
    script = Path(sys.executable).parent / "rolloutctl"
    cli = [str(script)] if script.exists() else [sys.executable, "-m", "rolloutctl"]
    base, roll = [], []
    for _ in range(runs):
        subprocess.run(
            [*cli, "start", "p.yaml"], env=env, cwd=root, check=True, capture_output=True
        )
        base.append(timed([sys.executable, "-c", "pass"], env, root))
        roll.append(timed([*cli, "rollback", "bench", "--reason", "bench"], env, root))
        shutil.rmtree(root / "state")
    print(f"[{label}] python -c pass      median {statistics.median(base) * 1000:6.1f} ms")
    print(
        f"[{label}] rolloutctl rollback median {statistics.median(roll) * 1000:6.1f} ms "
        f"(p90 {sorted(roll)[int(0.9 * runs)] * 1000:.1f} ms, {runs} runs)"
    )
    shutil.rmtree(root)


def main_unleash(runs: int = 30) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.flags.conftest import unleash_server

    with contextlib.contextmanager(unleash_server)() as server:
        server.create_feature("bench-model")
        playbook = PLAYBOOK.replace(
            "flag: {backend: file, path: flags.json, key: m, control: v1, canary: v2}",
            f"flag: {{backend: unleash, url: '{server.url}', environment: {server.environment}, "
            "key: bench-model, control: v1, canary: v2}",
        )
        main(
            runs, playbook, f"unleash-server at {server.url}", {"UNLEASH_ADMIN_TOKEN": server.token}
        )


if __name__ == "__main__":
    main()
    if "--unleash" in sys.argv[1:]:
        main_unleash()
