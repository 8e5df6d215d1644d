"""The committed example under reports/ is what the current code renders for the demo's
rolled-back rollout (ai-search-answer-v3), apart from the lines that change from run to run:
the rendered-at line, the local endpoint's port and measured latencies. Regenerate it with
`python -m tests.report.test_example_report`."""

from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path

import pytest

from rolloutctl.demo import run_one
from rolloutctl.demo_endpoint import DEMO_KEY, serving
from rolloutctl.envvars import overridden

EXAMPLE = Path(__file__).resolve().parents[2] / "reports"
ROLLOUT = "ai-search-answer-v3"

_VARYING = [
    (re.compile(r"127\.0\.0\.1:\d+"), "127.0.0.1:PORT"),  # the demo endpoint's free port
    (re.compile(r"\b\d+ ms\b"), "N ms"),  # measured latencies of the smoke calls
    (re.compile(r"\b\d+\.\d+s\b"), "N s"),
    (re.compile(r"<td>[\d.]+ <span class=\"muted\">\(1\)</span>"), "<td>T (1)"),
    (re.compile(r"Rendered [^<]* by rolloutctl"), "Rendered … by rolloutctl"),
]


def render_example(reports: Path) -> None:
    """The demo's v3 rollout alone, as `rolloutctl demo` renders it."""
    with (
        tempfile.TemporaryDirectory() as work,
        serving() as url,
        overridden(CANDIDATE_BASE_URL=url, CANDIDATE_API_KEY=DEMO_KEY),
    ):
        run = run_one(
            Path(work),
            reports,
            rollout=ROLLOUT,
            canary="v3",
            scenario="safety_regression_segment",
            seed=2,
        )
    assert (run.status, run.stage) == ("rolled_back", "shadow")


def normalized(text: str) -> list[str]:
    for pattern, replacement in _VARYING:
        text = pattern.sub(replacement, text)
    return text.replace("><", ">\n<").splitlines()


def pages(folder: Path) -> dict[str, Path]:
    return {str(p.relative_to(folder)): p for p in sorted(folder.rglob("*.html"))}


@pytest.mark.slow
def test_committed_example_is_what_the_code_renders(tmp_path: Path) -> None:
    render_example(tmp_path)
    fresh, committed = pages(tmp_path), pages(EXAMPLE)
    assert fresh.keys() == committed.keys(), (
        "regenerate: python -m tests.report.test_example_report"
    )
    for name, path in fresh.items():
        new, old = normalized(path.read_text()), normalized(committed[name].read_text())
        changed = [(a, b) for a, b in zip(old, new, strict=False) if a != b]
        assert len(old) == len(new) and not changed, (
            f"reports/{name} differs from what the code renders (first: {changed[:1]}); "
            "regenerate: python -m tests.report.test_example_report"
        )


if __name__ == "__main__":  # regenerate the committed example
    import shutil

    target = Path(sys.argv[1]) if len(sys.argv) > 1 else EXAMPLE
    with tempfile.TemporaryDirectory() as out:
        render_example(Path(out))
        for name, path in pages(Path(out)).items():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target / name)
    print(f"wrote {target}")
