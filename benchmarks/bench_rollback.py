"""Median wall time of `rolloutctl rollback` (process start to flag and state written),
beside `python -c pass`. Prints figures; asserts nothing."""

from __future__ import annotations

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


def main(runs: int = 30) -> None:
    root = Path(tempfile.mkdtemp())
    (root / "p.yaml").write_text(PLAYBOOK)
    env = {**os.environ, "ROLLOUTCTL_STATE_DIR": str(root / "state")}
    # The console script beside this interpreter (a version-manager shim on PATH would add
    # its own start-up time to every run).
    script = Path(sys.executable).parent / "rolloutctl"
    cli = [str(script)] if script.exists() else [sys.executable, "-m", "rolloutctl"]
    base, roll = [], []
    for _ in range(runs):
        subprocess.run([*cli, "start", "p.yaml"], env=env, cwd=root, check=True,
                       capture_output=True)  # fmt: skip
        base.append(timed([sys.executable, "-c", "pass"], env, root))
        roll.append(timed([*cli, "rollback", "bench", "--reason", "bench"], env, root))
        shutil.rmtree(root / "state")
    print(f"python -c pass     median {statistics.median(base) * 1000:6.1f} ms")
    print(f"rolloutctl rollback median {statistics.median(roll) * 1000:6.1f} ms "
          f"(p90 {sorted(roll)[int(0.9 * runs)] * 1000:.1f} ms, {runs} runs)")  # fmt: skip
    shutil.rmtree(root)


if __name__ == "__main__":
    main()
