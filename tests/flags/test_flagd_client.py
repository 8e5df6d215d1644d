"""What an application gets from the flag file rolloutctl writes, read by the real OpenFeature
flagd provider (openfeature-provider-flagd) in its file mode: flagd's own in-process evaluator
(JsonLogic, `fractional` bucketing) over the local file, no flagd daemon and nothing mocked.

A rollout is driven through the real CLI (`start`, `promote`, `control apply|revert`,
`rollback`); after every step thousands of targeting keys are evaluated with requests inside
the stage's scope, outside it, and without the attribute the scope reads. Two clients read the
file: a fresh provider per check (it loads the file when it starts) and one long-lived
provider, like a running service, whose file watcher must pick every change up within a
bounded wait.

Without the provider the tests skip on a developer's machine and fail under CI
(tests/conftest.py); tests/run.sh installs it with the `test` extra."""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Workspace

try:
    from openfeature import api
    from openfeature.client import OpenFeatureClient
    from openfeature.contrib.provider.flagd import FlagdProvider
    from openfeature.contrib.provider.flagd.config import ResolverType
    from openfeature.evaluation_context import EvaluationContext
    from openfeature.exception import ErrorCode
except ImportError as exc:  # pragma: no cover - the fixture below says what to install
    MISSING: str | None = (
        f"{exc.name} is not installed: python -m pip install -e '.[test]' "
        "(openfeature-provider-flagd, openfeature-sdk)"
    )
else:
    MISSING = None

ROLLOUT = "shop-answers"
FLAG = "answer-model"
CONTROL, CANARY = "v1", "v2"
NO_VARIANT = "<no variant>"  # the code default: served only when evaluation fails

PLAYBOOK = f"""\
rollout: {ROLLOUT}
goal: cheaper answers at equal quality
flag: {{backend: file, path: flags/flags.json, key: {FLAG}, control: {CONTROL}, canary: {CANARY}}}
sources:
  requests: {{kind: requestlog, path: "data/*.parquet"}}
segments:
  dimensions: [category, language]
analysis:
  min_samples_per_arm: 1000
  pass_requires: no_failure
metrics:
  - {{name: error_rate, group: technical, source: requests, kind: proportion, event: "status = 'error'", worse: higher, margin: {{absolute: 0.01}}, critical: true}}
stages:
  - {{name: one, traffic: 1, min_duration: 1h, scope: "category not in ['health', 'finance']"}}
  - {{name: ten, traffic: 10, min_duration: 1h, scope: "language = 'en'"}}
  - {{name: fifty, traffic: 50, min_duration: 1h, scope: all}}
controls:
  - {{name: provider-off, layer: provider, title: "Send all answers to the stable model", set: {{{FLAG}: {{canary_percent: 0}}}}}}
  - {{name: health-off, layer: scenario, title: "Stop AI answers for health questions", set: {{ai-answers-health: false}}}}
  - {{name: review-all, layer: review, title: "Require human review before answers are sent", set: {{review-threshold: 0.25}}}}
"""

KEYS = [f"user-{i}" for i in range(5000)]  # requests inside the scope
FEW = KEYS[:2000]  # requests outside it, or without its attribute: never the canary
SAMPLE = KEYS[:200]  # what the long-lived client is compared on

# A request inside every stage's scope, and the others: (attributes, canary percent) per stage.
IN_SCOPE = {"category": "shopping", "language": "en"}
STAGES: dict[str, list[tuple[dict[str, Any], float]]] = {
    "one": [  # category not in ['health', 'finance']
        (IN_SCOPE, 1),
        ({"category": "travel", "language": "de"}, 1),
        ({"category": "health", "language": "en"}, 0),
        ({"category": "finance", "language": "en"}, 0),
        ({"language": "en"}, 0),  # no category: not in scope, though "not in" reads true
        ({}, 0),
    ],
    "ten": [  # language = 'en' (the stage's own scope replaces the previous one)
        (IN_SCOPE, 10),
        ({"category": "health", "language": "en"}, 10),
        ({"category": "shopping", "language": "de"}, 0),
        ({"category": "shopping"}, 0),
        ({}, 0),
    ],
    "fifty": [  # scope: all
        (IN_SCOPE, 50),
        ({"category": "health", "language": "de"}, 50),
        ({}, 50),
    ],
}
Z = 4.5  # binomial tolerance in standard deviations; keys are fixed, so the counts are too


def within_binomial(canaries: int, n: int, percent: float) -> bool:
    p = percent / 100
    return abs(canaries - n * p) <= Z * math.sqrt(n * p * (1 - p))


# ---------------------------------------------------------------- the client


class Client:
    """An OpenFeature client bound to its own flagd provider reading the flag file."""

    _domains = itertools.count()

    def __init__(self, path: Path, poll_ms: int = 500) -> None:
        # FILE: flagd's in-process evaluator over a local file; deadline_ms is, in this mode,
        # how often its watcher looks at the file's modification time.
        self.provider = FlagdProvider(
            resolver_type=ResolverType.FILE,
            offline_flag_source_path=str(path),
            deadline_ms=poll_ms,
        )
        domain = f"rolloutctl-test-{next(self._domains)}"
        api.set_provider_and_wait(self.provider, domain=domain)  # loads the file now
        self.client: OpenFeatureClient = api.get_client(domain)

    def details(self, key: str, attributes: dict[str, Any]) -> Any:
        ctx = EvaluationContext(targeting_key=key, attributes=attributes)
        found = self.client.get_string_details(FLAG, NO_VARIANT, ctx)
        assert found.error_code is None, (key, attributes, found.error_code, found.error_message)
        return found

    def variants(self, attributes: dict[str, Any], keys: list[str]) -> list[str]:
        return [self.details(key, attributes).value for key in keys]

    def metadata(self) -> dict[str, Any]:
        return dict(self.details("anyone", {}).flag_metadata)

    def control(self, key: str, like: Any) -> Any:
        """A control flag's value as the application reads it (typed like `like`); None when
        the flag does not exist."""
        if isinstance(like, bool) or like is None:
            found: Any = self.client.get_boolean_details(key, False)
        else:
            found = self.client.get_float_details(key, math.nan)
        if found.error_code == ErrorCode.FLAG_NOT_FOUND:
            return None
        assert found.error_code is None, (key, found.error_code, found.error_message)
        return found.value

    def close(self) -> None:
        self.provider.shutdown()


@pytest.fixture
def flagd() -> Iterator[None]:
    if MISSING is not None:
        pytest.skip(MISSING)
    yield
    api.shutdown()


@contextmanager
def fresh(path: Path) -> Iterator[Client]:
    client = Client(path)
    try:
        yield client
    finally:
        client.close()


# ---------------------------------------------------------------- the rollout


class Rollout:
    """The workspace's rollout, its flag file, and the long-lived client of a running service."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self.path = ws.root / "flags" / "flags.json"
        self.service: Client | None = None

    def cli(self, *args: str) -> dict[str, Any]:
        result = self.ws.run("--json", *args)
        assert result.code == 0, (args, result.out, result.err)
        data: dict[str, Any] = result.json()
        return data

    def status(self) -> dict[str, Any]:
        (row,) = self.cli("status", ROLLOUT)["rollouts"]
        return row

    def controls(self) -> dict[str, dict[str, Any]]:
        """`control list`: each control's `current` values, read from the flags by rolloutctl."""
        rows = self.cli("control", "list", ROLLOUT)["controls"]
        return {row["name"]: row for row in rows}

    def view(self, client: Client) -> tuple[Any, ...]:
        """What a client serves on a sample of requests and controls, to compare two clients."""
        contexts = [attrs for rows in STAGES.values() for attrs, _ in rows]
        return (
            client.metadata(),
            [client.variants(attrs, SAMPLE) for attrs in contexts],
            [client.control(key, False) for key in ("ai-answers-health",)],
            [client.control(key, 0.0) for key in ("review-threshold",)],
        )

    def caught_up(self, timeout: float = 5.0) -> None:
        """The long-lived client serves what a fresh one does, within `timeout` seconds."""
        assert self.service is not None
        with fresh(self.path) as now:
            expected = self.view(now)
        deadline = time.monotonic() + timeout
        while (seen := self.view(self.service)) != expected:
            assert time.monotonic() < deadline, f"the running client still serves {seen[0]}"
            time.sleep(0.05)


def check_stage(rollout: Rollout, stage: str, percent: float) -> dict[str, list[str]]:
    """Every context of the stage gets the canary at the stage's share, or never; two provider
    instances agree key by key. Returns the canary's keys per in-scope context."""
    status = rollout.status()
    assert (status["stage"], status["canary_percent"]) == (stage, percent)
    served: dict[str, list[str]] = {}
    with fresh(rollout.path) as first, fresh(rollout.path) as second:
        assert first.metadata() == {
            "managedBy": "rolloutctl",
            "rollout": ROLLOUT,
            "stage": stage,
            "canaryPercent": percent,
        }
        for attrs, share in STAGES[stage]:
            keys = KEYS if attrs == IN_SCOPE else FEW
            got = first.variants(attrs, keys)
            assert set(got) <= {CONTROL, CANARY}
            canaries = got.count(CANARY)
            if share == 0:
                assert canaries == 0, f"{stage}: {attrs} got the canary {canaries} times"
            else:
                assert within_binomial(canaries, len(keys), share), (stage, attrs, canaries)
                # sticky: the same key gets the same variant from another provider instance
                assert second.variants(attrs, keys) == got, (stage, attrs)
                served[repr(attrs)] = [k for k, v in zip(keys, got, strict=True) if v == CANARY]
    rollout.caught_up()
    return served


def test_a_rollout_as_the_flagd_provider_serves_it(ws: Workspace, flagd: None) -> None:
    ws.playbook.write_text(PLAYBOOK)
    rollout = Rollout(ws)
    rollout.cli("start", str(ws.playbook))
    rollout.service = Client(rollout.path, poll_ms=50)
    try:
        walk_the_rollout(rollout)
    finally:
        rollout.service.close()


def walk_the_rollout(rollout: Rollout) -> None:
    # Stage one, 1% outside health and finance.
    one = check_stage(rollout, "one", 1)
    in_one = one[repr(IN_SCOPE)]
    # A user's arm depends on the targeting key only, not on the request's other attributes.
    other = one[repr({"category": "travel", "language": "de"})]
    assert other == [k for k in in_one if k in set(FEW)]

    # Stage ten, 10% of English requests: the 1% stay on the canary as the ramp goes up.
    rollout.cli("promote", ROLLOUT, "--reason", "stage one looked fine")
    ten = check_stage(rollout, "ten", 10)
    in_ten = ten[repr(IN_SCOPE)]
    assert set(in_one) < set(in_ten)

    # The provider kill switch holds the rollout flag at 0% for everyone, and its revert
    # gives every user back exactly the variant they had.
    rollout.cli("control", "apply", ROLLOUT, "provider-off", "--reason", "provider outage")
    listed = rollout.controls()["provider-off"]
    assert listed["applied"] and listed["current"] == {FLAG: {"canary_percent": 0.0}}
    assert rollout.status()["canary_percent"] == 0
    with fresh(rollout.path) as client:
        for attrs, _ in STAGES["ten"]:
            assert CANARY not in client.variants(attrs, FEW), attrs
        assert client.metadata()["canaryPercent"] == 0
    rollout.caught_up()
    rollout.cli("control", "revert", ROLLOUT, "provider-off", "--reason", "provider is back")
    assert rollout.controls()["provider-off"]["current"] == {FLAG: {"canary_percent": 10.0}}
    assert check_stage(rollout, "ten", 10) == ten

    # Boolean and numeric controls are flags of their own: the client reads what
    # `control list` says, applied and reverted.
    check_controls(rollout)
    assert check_stage(rollout, "ten", 10) == ten  # and leave the split alone

    # Stage fifty, scope lifted: everyone, even a request with no attributes at all.
    rollout.cli("promote", ROLLOUT, "--reason", "stage ten looked fine")
    fifty = check_stage(rollout, "fifty", 50)
    assert set(in_ten) < set(fifty[repr(IN_SCOPE)])

    # Rollback: nobody gets the canary; controls stay as they were.
    rollout.cli("control", "apply", ROLLOUT, "health-off", "--reason", "bad health answers")
    rollback = rollout.cli("rollback", ROLLOUT, "--reason", "answers look off")
    assert rollback["status"] == "rolled_back"
    assert rollout.status()["canary_percent"] == 0
    with fresh(rollout.path) as client:
        assert client.metadata()["stage"] == "rolled-back"
        for attrs in (IN_SCOPE, {"category": "health", "language": "de"}, {}):
            found = [client.details(key, attrs) for key in KEYS]
            assert {d.value for d in found} == {CONTROL}, attrs
            assert {d.reason for d in found} == {"STATIC"}  # no targeting left at all
        assert client.control("ai-answers-health", False) is False
    assert rollout.controls()["health-off"]["current"] == {"ai-answers-health": False}
    rollout.caught_up()


def check_controls(rollout: Rollout) -> None:
    def served(name: str) -> dict[str, Any]:
        """The control's flags as a fresh client reads them, next to what `control list` says."""
        listed = rollout.controls()[name]["current"]
        with fresh(rollout.path) as client:
            got = {key: client.control(key, value) for key, value in listed.items()}
        assert got == listed, name
        return got

    # health-off was released at start: the flag exists and is on.
    assert served("health-off") == {"ai-answers-health": True}
    # review-all's flag did not exist before the control; it still does not.
    assert served("review-all") == {"review-threshold": None}

    for name, applied, released in (
        ("health-off", {"ai-answers-health": False}, {"ai-answers-health": True}),
        ("review-all", {"review-threshold": 0.25}, {"review-threshold": None}),
    ):
        rollout.cli("control", "apply", ROLLOUT, name, "--reason", "incident drill")
        assert served(name) == applied
        rollout.caught_up()
        rollout.cli("control", "revert", ROLLOUT, name, "--reason", "drill over")
        assert served(name) == released
        rollout.caught_up()


def test_the_split_hashes_the_playbooks_targeting_key(ws: Workspace, flagd: None) -> None:
    """`flag.targeting_key: userId` says the split hashes the `userId` attribute: a user keeps
    their arm whatever the request's own targeting key is."""
    ws.playbook.write_text(
        PLAYBOOK.replace(f"canary: {CANARY}}}", f"canary: {CANARY}, targeting_key: userId}}")
    )
    rollout = Rollout(ws)
    rollout.cli("start", str(ws.playbook))
    users = [f"user-{i}" for i in range(2000)]
    with fresh(rollout.path) as client:
        arms = [
            [
                client.details(f"request-{i}-{visit}", {**IN_SCOPE, "userId": user}).value
                for visit in (1, 2)
            ]
            for i, user in enumerate(users)
        ]
    flipped = sum(first != second for first, second in arms)
    assert flipped == 0, f"{flipped} of {len(users)} users changed arm between two requests"
    assert within_binomial(sum(first == CANARY for first, _ in arms), len(users), 1)
    with fresh(rollout.path) as client:  # without the attribute: the control, always
        lacking = [client.details(f"request-{i}", IN_SCOPE).value for i in range(2000)]
    assert set(lacking) == {CONTROL}
