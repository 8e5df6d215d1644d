"""Wall time of the commands that read a playbook but query nothing, as a user runs them:
`validate` of the example playbooks and `plan` without a log, beside the interpreter's own
start (`python -c pass`). Median of N runs after one warm-up run (which also writes the
bytecode cache, as an installed package has it). Prints figures; asserts nothing.

    python benchmarks/bench_startup.py [N]
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def median_wall(cmd: list[str], runs: int, env: dict[str, str]) -> tuple[float, float, float]:
    subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, check=False)  # warm-up
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, check=False)
        times.append(time.perf_counter() - started)
    return statistics.median(times), min(times), max(times)


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 15
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.update(CANDIDATE_API_KEY="x", CANDIDATE_BASE_URL="http://127.0.0.1:9")
    script = Path(sys.executable).parent / "rolloutctl"
    cli = [str(script)] if script.exists() else [sys.executable, "-m", "rolloutctl"]
    playbooks = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "playbooks").glob("*.yaml"))
    cases = {
        "python -c pass": [sys.executable, "-c", "pass"],
        f"validate {' '.join(playbooks)}": [*cli, "validate", *playbooks],
        f"plan {playbooks[0]} (no log)": [*cli, "plan", playbooks[0]],
    }
    print(f"median of {runs} runs (min-max):")
    for name, cmd in cases.items():
        median, low, high = median_wall(cmd, runs, env)
        print(f"  {name}: {median * 1000:.0f} ms ({low * 1000:.0f}-{high * 1000:.0f})")


if __name__ == "__main__":
    main()
