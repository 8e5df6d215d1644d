"""The PostgreSQL state store as a user meets it, beside the file store, in one run against a
PostgreSQL started here (tests/servers/postgres.py; `bash tests/run.sh` installs Debian's
server) and stopped at the end. Prints figures; asserts nothing.

- `rolloutctl rollback` (the real CLI in a child process, `--state URL` vs `--state FOLDER`):
  wall time of the rollback command only, median and p90 over RUNS runs each, and the ratio;
  before each run `retry` restarts the rolled-back stage so there is something to roll back.
- 8 concurrent `rolloutctl --wait 30 advance` processes on one rollout in PostgreSQL, started
  together: wall time until all have finished, and their exit codes (they queue on the
  rollout's lock; the first judges the gate and advances, the others find the rollout changed
  while they waited and report that decision, exit 0, without judging it again).
- whether the rollback on the PostgreSQL store imports pandas, scipy or duckdb
  (`python -X importtime`: every module imported, on stderr).

    python benchmarks/bench_state.py [--runs 15] [--advancers 8]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.conftest import START, Workspace, cli_env, make_workspace

ROLLOUT = "shop-answers"
HEAVY = ("pandas", "scipy", "duckdb")


def cli(store_spec: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "rolloutctl", "--state", store_spec, *args]


def env_for(ws: Workspace, store_spec: str) -> dict[str, str]:
    env = cli_env(ws.root, store_spec)
    # As installed: byte-code cached (bench_rollback.py).
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def run_ok(ws: Workspace, store_spec: str, *args: str) -> None:
    proc = subprocess.run(
        cli(store_spec, *args),
        env=env_for(ws, store_spec),
        cwd=ws.root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if proc.returncode != 0:
        sys.exit(f"`rolloutctl {' '.join(args)}` exited {proc.returncode}: {proc.stderr}")


def p90(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]


def time_rollbacks(ws: Workspace, store_spec: str, runs: int) -> list[float]:
    """Wall seconds of each `rollback`, the rollout restarted (`retry`) before each."""
    env = env_for(ws, store_spec)
    run_ok(ws, store_spec, "start", str(ws.playbook))
    times = []
    for i in range(runs):
        if i:
            run_ok(ws, store_spec, "retry", ROLLOUT, "--reason", "bench")
        cmd = cli(store_spec, "rollback", ROLLOUT, "--reason", "bench")
        t = time.perf_counter()
        proc = subprocess.run(cmd, env=env, cwd=ws.root, capture_output=True, text=True)
        times.append(time.perf_counter() - t)
        if proc.returncode != 0:
            sys.exit(f"rollback exited {proc.returncode}: {proc.stderr}")
    return times


def heavy_imports(ws: Workspace, store_spec: str) -> tuple[list[str], int]:
    """The heavy packages a rollback imports (none expected), and how many modules it
    imports in all."""
    run_ok(ws, store_spec, "retry", ROLLOUT, "--reason", "bench")
    rollback = cli(store_spec, "rollback", ROLLOUT, "--reason", "bench")
    proc = subprocess.run(
        [rollback[0], "-X", "importtime", *rollback[1:]],
        env=env_for(ws, store_spec),
        cwd=ws.root,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        sys.exit(f"rollback exited {proc.returncode}: {proc.stderr}")
    modules = [
        line.rsplit("|", 1)[1].strip()
        for line in proc.stderr.splitlines()
        if line.startswith("import time:") and "|" in line and "imported package" not in line
    ]
    heavy = sorted({m.split(".")[0] for m in modules} & set(HEAVY))
    return heavy, len(modules)


def concurrent_advance(ws: Workspace, store_spec: str, n: int) -> tuple[float, list[int]]:
    """n `advance` processes started together: wall seconds until the last exits, and
    their exit codes."""
    ws.log("healthy", START, 2, 20, "p1", seed=1)
    env = env_for(ws, store_spec)
    env["ROLLOUTCTL_NOW"] = (START + timedelta(hours=2)).isoformat()
    run_ok(ws, store_spec, "--now", START.isoformat(), "start", str(ws.playbook))
    cmd = cli(store_spec, "--wait", "30", "advance", ROLLOUT)
    logs = [ws.root / f"advance-{i}.err" for i in range(n)]
    sinks = [log.open("wb") for log in logs]  # files, not pipes: nobody reads while they run
    t = time.perf_counter()
    procs = [
        subprocess.Popen(cmd, env=env, cwd=ws.root, stdout=subprocess.DEVNULL, stderr=sink)
        for sink in sinks
    ]
    codes = [p.wait(timeout=120) for p in procs]
    elapsed = time.perf_counter() - t
    for sink, log, code in zip(sinks, logs, codes, strict=True):
        sink.close()
        if code not in (0, 11):  # advanced, or held (inconclusive: the new stage is too young)
            print(f"  advance exited {code}: {log.read_text().strip()[-300:]}")
    return elapsed, codes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=15, help="rollbacks per store")
    parser.add_argument("--advancers", type=int, default=8, help="concurrent advance runs")
    args = parser.parse_args()

    from rolloutctl.state.postgres import PostgresStore
    from tests.servers.postgres import start_state_server

    try:
        server = start_state_server()
    except BaseException as exc:  # pytest.skip outside pytest: PostgreSQL is not installed
        sys.exit(f"cannot start PostgreSQL: {exc}")
    root = Path(tempfile.mkdtemp(prefix="bench-state-"))
    try:
        for name in ("pg", "file", "advance"):
            (root / name).mkdir()
        pg_ws, file_ws = make_workspace(root / "pg"), make_workspace(root / "file")
        pg_url = server.new_database()
        file_dir = str(file_ws.root / "state")

        pg_times = time_rollbacks(pg_ws, pg_url, args.runs)
        file_times = time_rollbacks(file_ws, file_dir, args.runs)
        pg_med, file_med = statistics.median(pg_times), statistics.median(file_times)
        print(f"rolloutctl rollback, {args.runs} runs each (wall time of the command):")
        print(
            f"  PostgreSQL store  median {pg_med * 1000:6.1f} ms  "
            f"p90 {p90(pg_times) * 1000:6.1f} ms"
        )
        print(
            f"  file store        median {file_med * 1000:6.1f} ms  "
            f"p90 {p90(file_times) * 1000:6.1f} ms"
        )
        print(
            f"  ratio PG/file     median {pg_med / file_med:.2f}x  "
            f"p90 {p90(pg_times) / p90(file_times):.2f}x"
        )

        heavy, count = heavy_imports(pg_ws, pg_url)
        found = f"IMPORTED {', '.join(heavy)}" if heavy else "none imported"
        print(f"rollback on PostgreSQL imports {count} modules; {', '.join(HEAVY)}: {found}")

        adv_ws = make_workspace(root / "advance")
        adv_url = server.new_database()
        elapsed, codes = concurrent_advance(adv_ws, adv_url, args.advancers)
        print(
            f"{args.advancers} concurrent `rolloutctl --wait 30 advance` on one rollout "
            f"(PostgreSQL): all finished in {elapsed:.2f} s"
        )
        tally = {code: codes.count(code) for code in sorted(set(codes))}
        print(f"  exit codes: {codes} (count by code: {tally})")
        store = PostgresStore(adv_url)
        try:
            state = store.load(ROLLOUT)
            moves = [
                (e.get("verdict") or {}).get("decision") or e["command"]
                for e in store.history(ROLLOUT)
                if e.get("id")
            ]
        finally:
            store.close()
        print(
            f"  afterwards: stage {state.stage} ({state.canary_percent:g}%), version "
            f"{state.version}; transitions in the audit (decision): {moves}"
        )
    finally:
        server.stop()
        shutil.rmtree(server.root, ignore_errors=True)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
