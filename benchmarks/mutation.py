"""Mutation testing of rolloutctl's core: the score per module, and what survived.

    pip install -e '.[mutation]'
    python benchmarks/mutation.py                      # every module of [tool.mutmut]
    python benchmarks/mutation.py --only 'rolloutctl/stats/*' --survivors survivors.txt

mutmut (configured in pyproject.toml's [tool.mutmut]: the modules it mutates and the test files
it runs) changes one operator, constant or call at a time and runs the tests that call the
changed function; a mutant the tests still pass on "survived". The run happens in a copy of the
tracked files (mutmut writes a mutants/ folder beside the code), so a test run in the work tree
is never disturbed. The score is mutmut's own: (killed + timed out) / (all - skipped); a mutant
no selected test calls counts against it.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# mutmut's exit codes (mutmut/stats.py): what each says about a mutant.
KILLED = {1, 3, 36, -24, 24, 152, 255}
SURVIVED = {0}
NO_TESTS = {5, 33}
SKIPPED = {34}


@dataclass
class ModuleScore:
    module: str
    counts: Counter[str] = field(default_factory=Counter)
    survivors: list[str] = field(default_factory=list)

    @property
    def tested(self) -> int:
        return sum(self.counts.values()) - self.counts["skipped"]

    @property
    def score(self) -> float:
        return self.counts["killed"] / self.tested if self.tested else 0.0


def _status(code: int | None) -> str:
    if code in KILLED:
        return "killed"
    if code in SURVIVED:
        return "survived"
    if code in NO_TESTS:
        return "no tests"
    if code in SKIPPED:
        return "skipped"
    return "not checked" if code is None else "suspicious"


def copy_tree(dest: Path) -> Path:
    """The tracked files as they are now (uncommitted edits included), with ../shared beside."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout.split(b"\0")
    work = dest / "main"
    for raw in filter(None, listed):
        source = ROOT / raw.decode()
        if source.is_file():
            target = work / raw.decode()
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    shared = ROOT.parent / "shared"
    if shared.is_dir():
        (dest / "shared").symlink_to(shared)
    return work


def restrict(work: Path, only: list[str]) -> None:
    """Mutate only these globs (a subset of [tool.mutmut] only_mutate) in the copy."""
    import tomllib

    pyproject = work / "pyproject.toml"
    text = pyproject.read_text()
    configured = tomllib.loads(text)["tool"]["mutmut"]["only_mutate"]
    block = "only_mutate = [\n" + "".join(f'  "{g}",\n' for g in configured) + "]"
    if block not in text:
        raise SystemExit("pyproject.toml: [tool.mutmut] only_mutate must be one item per line")
    chosen = "only_mutate = [\n" + "".join(f'  "{g}",\n' for g in only) + "]"
    pyproject.write_text(text.replace(block, chosen))


def read_scores(work: Path) -> list[ModuleScore]:
    scores: dict[str, ModuleScore] = defaultdict(lambda: ModuleScore(""))
    for meta in sorted((work / "mutants").rglob("*.py.meta")):
        module = str(meta.relative_to(work / "mutants"))[: -len(".meta")]
        score = scores[module]
        score.module = module
        for name, code in json.loads(meta.read_text())["exit_code_by_key"].items():
            status = _status(code)
            score.counts[status] += 1
            if status in ("survived", "no tests"):
                score.survivors.append(name)
    return [s for s in scores.values() if s.counts]


def survivor_diffs(work: Path, python: str, names: list[str]) -> str:
    shown = []
    for name in names:
        diff = subprocess.run(
            [python, "-m", "mutmut", "show", name], cwd=work, capture_output=True, text=True
        )
        shown.append(diff.stdout.strip())
    return "\n\n".join(shown) + "\n"


def print_table(scores: list[ModuleScore]) -> None:
    heading = (
        f"{'module':<40} {'mutants':>7} {'killed':>6} {'survived':>8} {'no test':>7} {'score':>6}"
    )
    print(heading)
    print("-" * len(heading))
    total: Counter[str] = Counter()
    for s in scores:
        total.update(s.counts)
        print(
            f"{s.module:<40} {sum(s.counts.values()):>7} {s.counts['killed']:>6} "
            f"{s.counts['survived']:>8} {s.counts['no tests']:>7} {s.score:>6.1%}"
        )
    tested = sum(total.values()) - total["skipped"]
    overall = total["killed"] / tested if tested else 0.0
    print("-" * len(heading))
    print(
        f"{'all':<40} {sum(total.values()):>7} {total['killed']:>6} "
        f"{total['survived']:>8} {total['no tests']:>7} {overall:>6.1%}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", action="append", default=[], help="glob of modules to mutate")
    parser.add_argument("--max-children", type=int, default=2)
    parser.add_argument("--survivors", type=Path, help="write each survivor's diff here")
    parser.add_argument("--keep", type=Path, help="run in this folder and keep it")
    args = parser.parse_args()
    python = sys.executable
    if subprocess.run([python, "-c", "import mutmut"], capture_output=True).returncode:
        raise SystemExit("mutmut is not installed: pip install -e '.[mutation]'")
    scratch = args.keep or Path(tempfile.mkdtemp(prefix="rolloutctl-mutation-"))
    if args.keep and scratch.exists():
        shutil.rmtree(scratch)
    scratch.mkdir(parents=True, exist_ok=True)
    try:
        work = copy_tree(scratch)
        if args.only:
            restrict(work, args.only)
        started = time.monotonic()
        log = scratch / "mutmut.log"
        with log.open("w") as out:
            run = subprocess.run(
                [python, "-m", "mutmut", "run", "--max-children", str(args.max_children)],
                cwd=work,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        scores = read_scores(work)
        if run.returncode or not scores:
            print(log.read_text()[-4000:], file=sys.stderr)
            print(f"mutmut exited {run.returncode}", file=sys.stderr)
            return 1
        print_table(scores)
        print(f"\n{time.monotonic() - started:.0f} s with {args.max_children} workers")
        if args.survivors:
            names = [n for s in scores for n in s.survivors]
            args.survivors.write_text(survivor_diffs(work, python, names))
            print(f"{len(names)} survivors' diffs in {args.survivors}")
        return 0
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
