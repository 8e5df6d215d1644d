"""Playbook validation: every problem, located, with what was expected."""

from __future__ import annotations

from pathlib import Path

import pytest

from rolloutctl.errors import InvalidInput, PlaybookInvalid
from rolloutctl.playbook.load import load_playbook

ROOT = Path(__file__).resolve().parents[2]

BAD = """\
rollout: shop
flag: {backend: file, path: f.json, key: k, control: v1, canary: v2}
sources:
  req: {kind: requestlog, path: x.jsonl}
analysis:
  alpah: 0.05
metrics:
  - {name: err, group: technical, source: reqs, kind: proportion, event: "status = 'error'", worse: higher, margin: {absolute: 0.01}}
  - {name: lat, group: tech, source: req, kind: mean, value: latency_ms, worse: higher, margin: {absolute: 1}}
stages:
  - {name: c1, traffic: 5, min_duration: 2 hours}
"""

SEMANTIC = """\
rollout: shop
flag: {backend: file, path: f.json, key: k, control: v1, canary: v2}
sources:
  req: {kind: requestlog, path: x.jsonl}
metrics:
  - {name: err, group: technical, source: reqs, kind: proportion, event: "statuss = 'error'", worse: higher, margin: {absolute: 0.01}}
stages:
  - {name: c1, traffic: 5}
  - {name: c2, traffic: 1}
triggers:
  - {name: t, when: "canary.eror_rate > 1", action: rollback}
"""


@pytest.mark.parametrize("path", sorted((ROOT / "playbooks").glob("*.yaml")))
def test_example_playbooks_are_valid(path: Path) -> None:
    assert load_playbook(path).playbook.stages


def test_every_problem_is_located_with_a_suggestion(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(BAD)
    with pytest.raises(PlaybookInvalid) as info:
        load_playbook(path)
    problems = info.value.problems
    assert f"{path}:6:3: analysis.alpah: unknown key 'alpah'; did you mean 'alpha'?" in problems
    assert any(
        p.startswith(f"{path}:9:") and "metrics[1].group: expected" in p and "(got 'tech')" in p
        for p in problems
    )
    assert any(":11:" in p and "min_duration" in p and "30s, 15m, 2h" in p for p in problems)
    # Cross-reference checks run beside the schema's, so one pass shows everything.
    assert any(
        p.startswith(f"{path}:8:") and "unknown source 'reqs'; did you mean 'req'?" in p
        for p in problems
    )
    assert len(problems) == 4


def test_semantic_problems(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(SEMANTIC)
    with pytest.raises(PlaybookInvalid) as info:
        load_playbook(path)
    text = "\n".join(info.value.problems)
    assert "unknown source 'reqs'; did you mean 'req'?" in text
    assert "traffic 1% is lower than the stage before it" in text
    assert "unknown metric 'eror_rate'" in text


FLAG_LIMITS = """\
rollout: shop
flag: FLAG
sources:
  req: {kind: requestlog, path: x.jsonl}
metrics:
  - {name: err, group: technical, source: req, kind: proportion, event: "status = 'error'", worse: higher, margin: {absolute: 0.01}}
stages:
  - {name: c1, traffic: 0.5, scope: "category = 'chat' or device = 'ios'"}
  - {name: c2, traffic: 5, scope: "category not in ('health')"}
  - {name: c3, traffic: 50, scope: all}
"""


@pytest.mark.parametrize(
    ("flag", "expected"),
    [
        (
            "{backend: gateway, path: g.yaml, key: k, control: a, canary: b}",
            [
                "8:37: stages[0].scope: the gateway flag backend cannot limit a stage",
                "9:35: stages[1].scope: the gateway flag backend cannot limit a stage",
            ],
        ),
        (
            "{backend: launchdarkly, project: p, environment: e, key: k, control: a, canary: b}",
            [
                "8:37: stages[0].scope: the launchdarkly flag backend cannot limit",
                "9:35: stages[1].scope: the launchdarkly flag backend cannot limit",
            ],
        ),
        (
            "{backend: unleash, url: 'http://u', environment: e, key: k, control: a, canary: b}",
            [
                "8:25: stages[0].traffic: Unleash rolls out in whole percents; 0.5% is not one",
                "8:37: stages[0].scope: \"category = 'chat' or device = 'ios'\": `or` cannot "
                "be an Unleash constraint",
            ],
        ),
        ("{backend: file, path: f.json, key: k, control: a, canary: b}", []),
    ],
)
def test_what_the_flag_backend_cannot_do_is_found_by_validate(
    tmp_path: Path, flag: str, expected: list[str]
) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(FLAG_LIMITS.replace("FLAG", flag))
    if not expected:
        assert load_playbook(path).playbook.flag.backend == "file"
        return
    with pytest.raises(PlaybookInvalid) as info:
        load_playbook(path)
    text = "\n".join(info.value.problems)
    for part in expected:
        assert part in text
    assert len(info.value.problems) == 2


def test_malformed_yaml_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("rollout: x\nflag: [unclosed\nstages: []\n")
    with pytest.raises(InvalidInput) as info:
        load_playbook(path)
    assert f"{path}:3:" in info.value.message and "not valid YAML" in info.value.message


def test_missing_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="no such playbook"):
        load_playbook(tmp_path / "nope.yaml")
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    with pytest.raises(InvalidInput, match="empty"):
        load_playbook(empty)


NEVER_WORKS = """\
rollout: shop
flag: {backend: file, path: f.json, key: k, control: v1, canary: v2}
sources:
  req: {kind: requestlog, path: x.jsonl}
metrics:
  - {name: err, group: technical, source: req, kind: proportion, event: "'x'", worse: higher, margin: {absolute: .inf}}
  - {name: lat, group: technical, source: req, kind: mean, value: "latency_ms + 'ms'", worse: higher, margin: {relative: 0.1}, limit: .nan}
stages:
  - {name: c1, traffic: 5}
triggers:
  - {name: a, when: "canary.err > 'abc'", action: rollback}
  - {name: b, when: "1", action: rollback}
  - {name: c, when: "canary.lat * 2", action: pause}
"""


def test_expressions_and_numbers_that_could_never_work_are_refused(tmp_path: Path) -> None:
    """A trigger that could never fire, an event that is a constant, a margin of infinity:
    each would pass every look silently; validate names each one with its line."""
    path = tmp_path / "p.yaml"
    path.write_text(NEVER_WORKS)
    with pytest.raises(PlaybookInvalid) as info:
        load_playbook(path)
    text = "\n".join(info.value.problems)
    expected = [
        "6:",  # the err metric's line: its event and its margin
        "metrics[0].event: \"'x'\" is a constant",
        "metrics[0].margin.absolute",
        "metrics[1].value: \"latency_ms + 'ms'\" arithmetic on a string",
        "metrics[1].limit",
        "triggers[0].when: \"canary.err > 'abc'\" compares a number with a string",
        "triggers[1].when: '1' is a constant",
        "triggers[2].when: 'canary.lat * 2' is a number, not a condition",
    ]
    for part in expected:
        assert part in text, (part, text)
