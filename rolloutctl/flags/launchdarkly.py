"""The `launchdarkly` flag backend: LaunchDarkly's REST API with semantic patches.

What SDKs serve in one environment decides everything here, in LaunchDarkly's order: a flag
that is off serves its off variation to every context (no off variation: the caller's code
default); a flag that is on serves the off variation to contexts whose prerequisites are not
met, then individual targets, then the first matching targeting rule, then the default rule
(fallthrough).

The split is the rollout flag's default rule: `turnFlagOn` and
`updateFallthroughVariationOrRollout` with `rolloutWeights` (variation id -> thousandths of a
percent, 100000 = 100%), `rolloutContextKind` and `rolloutBucketBy` (the playbook's
`context_kind`, default `user`, and `bucket_by`, default `key`); the read-back checks weights
and bucketing. Scoped stages are refused: rolloutctl writes no targeting rules.

Outside the default rule only the control may be served. A split is refused while an
individual target, a rule or (through the off variation) a prerequisite could serve anything
else, and while the off variation is not the control: LaunchDarkly's off switch, the first
thing an on-call person reaches for, would then serve it to everyone. Targets and rules that
serve only the control are allowed: those contexts never enter the split (the canary's share
of all traffic is below the stage's percent, and they stay on the control after promotion),
and they are harmless for rollback. A flag read with anything else outside its default rule
has an unknown share (`problem`), so `advance` stops on it.

Rollback must leave nothing that serves the canary, whatever was added by hand meanwhile. One
patch (the kill) points the default rule at the control and makes the control the off
variation, leaving on/off alone (turning the flag off would fail flags that have it as a
prerequisite). A second patch points every rule that could serve the canary at the control and
moves individual canary targets to the control (if LaunchDarkly refuses it, one patch per rule
or target list, so one locked rule does not keep the rest on the canary): a rollback means
nobody gets the canary, and the rules and targets stay visible in LaunchDarkly, the audit-log
comment naming them. Rules serving a third variation are left alone. The flag is then read
back; if anything still serves the canary, rollback fails (exit 4) naming it and the step to
take by hand, so it never exits 0 while some contexts still get the canary.

A control flag's value is what SDKs serve to a context that matches no individual target or
rule (prerequisites met): the default rule's variation when the flag is on, the off variation
when it is off. A percentage rollout there, or an off flag without an off variation, has no
one value, and reading it fails saying so. Setting a control turns the flag on with the
default rule at the variation holding the value, except boolean `false` on a flag whose off
variation is `false`: that turns the flag off, which serves `false` to every context, targeted
ones included. The read-back compares what SDKs serve with what was asked.

The API token comes from the environment variable the spec names (default LD_API_TOKEN) and is
sent as the `Authorization` header, raw, as LaunchDarkly expects. Every change is read back
with `GET /api/v2/flags/{project}/{flag}?env={environment}`."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import quote

from rolloutctl.errors import BackendError
from rolloutctl.flags.base import FlagSplit
from rolloutctl.transport import (
    DEFAULT_BACKOFF,
    DEFAULT_RETRIES,
    Client,
    fingerprint,
    json_of,
    request,
    seconds,
)

SEMANTIC_PATCH = "application/json; domain-model=launchdarkly.semanticpatch"
FULL = 100_000  # LaunchDarkly weights: thousandths of a percent
DEFAULT_BASE_URL = "https://app.launchdarkly.com"
DEFAULT_TOKEN_ENV = "LD_API_TOKEN"
DEFAULT_CONTEXT_KIND = "user"  # LaunchDarkly's default for rollouts and individual targets
DEFAULT_BUCKET_BY = "key"
COMMENT_LIMIT = 500


class _Unreadable(Exception):
    """A rollout flag whose canary share SDKs cannot be said to serve."""


# ---------------------------------------------------------------- what SDKs serve


def _index(value: Any, count: int) -> int | None:
    """A variation index the flag has; None stands for the caller's code default (what SDKs
    serve when the flag names no variation of its own)."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < count:
        return value
    return None


def _weight(item: dict[str, Any]) -> int:
    try:
        return int(item.get("weight", 0))
    except (TypeError, ValueError):
        return 0


def _weights(rollout: dict[str, Any], count: int) -> dict[int | None, int]:
    weights: dict[int | None, int] = {}
    for item in rollout.get("variations") or []:
        if isinstance(item, dict):
            index = _index(item.get("variation"), count)
            weights[index] = weights.get(index, 0) + _weight(item)
    return weights


def _serves(part: Any, count: int) -> frozenset[int | None]:
    """The variations a targeting rule or the default rule can serve."""
    if isinstance(part, dict) and part.get("variation") is not None:
        return frozenset({_index(part["variation"], count)})
    rollout = part.get("rollout") if isinstance(part, dict) else None
    if isinstance(rollout, dict):
        served = frozenset(i for i, w in _weights(rollout, count).items() if w > 0)
        return served or frozenset({None})
    return frozenset({None})


@dataclass(frozen=True)
class _Bypass:
    """Contexts served before the default rule: individual targets, a rule, prerequisites."""

    what: str
    serves: frozenset[int | None]
    plural: bool = False
    rule_id: str | None = None
    context_kind: str | None = None
    keys: tuple[str, ...] = ()


def _bypasses(env: dict[str, Any], count: int) -> list[_Bypass]:
    found: list[_Bypass] = []
    for field in ("targets", "contextTargets"):
        for target in env.get(field) or []:
            # contextTargets also holds empty user-kind entries that order the user targets
            if not isinstance(target, dict) or not target.get("values"):
                continue
            kind = str(target.get("contextKind") or DEFAULT_CONTEXT_KIND)
            keys = tuple(str(v) for v in target["values"])
            found.append(
                _Bypass(
                    f"{len(keys)} individual {kind} target{'s' if len(keys) != 1 else ''}",
                    frozenset({_index(target.get("variation"), count)}),
                    plural=len(keys) != 1,
                    context_kind=kind,
                    keys=keys,
                )
            )
    for number, rule in enumerate(env.get("rules") or [], 1):
        if isinstance(rule, dict):
            about = f" ({rule['description']!r})" if rule.get("description") else ""
            rule_id = rule.get("_id")
            found.append(
                _Bypass(
                    f"rule {number}{about}",
                    _serves(rule, count),
                    rule_id=rule_id if isinstance(rule_id, str) else None,
                )
            )
    needs = [str(p.get("key")) for p in env.get("prerequisites") or [] if isinstance(p, dict)]
    if needs:
        many = len(needs) != 1
        found.append(
            _Bypass(
                f"prerequisite{'s' if many else ''} {', '.join(needs)} (contexts failing "
                f"{'them' if many else 'it'} get the off variation)",
                frozenset({_index(env.get("offVariation"), count)}),
                plural=many,
            )
        )
    return found


def _bucketing(env: dict[str, Any]) -> tuple[str, str] | None:
    """(context kind, attribute) the default rule's rollout hashes; None when not a rollout."""
    rollout = (env.get("fallthrough") or {}).get("rollout")
    if not isinstance(rollout, dict):
        return None
    kind = rollout.get("contextKind") or DEFAULT_CONTEXT_KIND
    return str(kind), str(rollout.get("bucketBy") or DEFAULT_BUCKET_BY)


def _view(flag: dict[str, Any], env: dict[str, Any]) -> dict[str, Any]:
    """What decides what SDKs serve: the fingerprint covers this and nothing else
    (LaunchDarkly adds versions, dates, rule descriptions and summaries that do not)."""

    def serve(part: Any) -> Any:
        rollout = part.get("rollout") if isinstance(part, dict) else None
        if isinstance(rollout, dict):
            keep = ("contextKind", "bucketBy", "seed", "kind")
            return {
                "rollout": [
                    [v.get("variation"), v.get("weight")]
                    for v in rollout.get("variations") or []
                    if isinstance(v, dict)
                ],
                **{k: rollout.get(k) for k in keep if rollout.get(k) is not None},
            }
        return part.get("variation") if isinstance(part, dict) else part

    def targets(items: Any) -> list[Any]:
        rows = [
            [t.get("contextKind") or DEFAULT_CONTEXT_KIND, t.get("variation"), sorted(map(str, v))]
            for t in items or []
            if isinstance(t, dict) and (v := t.get("values"))
        ]
        return sorted(rows, key=str)

    def clause(c: Any) -> Any:
        if not isinstance(c, dict):
            return c
        return {
            "contextKind": c.get("contextKind") or DEFAULT_CONTEXT_KIND,
            "attribute": c.get("attribute"),
            "op": c.get("op"),
            "values": c.get("values"),
            "negate": bool(c.get("negate")),
        }

    return {
        "variations": [v.get("value") for v in flag["variations"] if isinstance(v, dict)],
        "on": bool(env.get("on")),
        "offVariation": env.get("offVariation"),
        "fallthrough": serve(env.get("fallthrough")),
        "prerequisites": [
            [p.get("key"), p.get("variation")]
            for p in env.get("prerequisites") or []
            if isinstance(p, dict)
        ],
        "targets": targets(env.get("targets")),
        "contextTargets": targets(env.get("contextTargets")),
        "rules": [
            {"clauses": [clause(c) for c in r.get("clauses") or []], "serves": serve(r)}
            for r in env.get("rules") or []
            if isinstance(r, dict)
        ],
    }


# ---------------------------------------------------------------- the backend


@dataclass
class LaunchDarklyFlagBackend:
    KIND: ClassVar[str] = "launchdarkly"
    project: str
    environment: str
    key: str
    control: str
    canary: str
    token: str
    base_url: str = DEFAULT_BASE_URL
    timeout: float = 10.0
    retries: int = DEFAULT_RETRIES
    backoff: float = DEFAULT_BACKOFF
    transport: Any = None  # an httpx transport (tests)
    context_kind: str = DEFAULT_CONTEXT_KIND
    bucket_by: str = DEFAULT_BUCKET_BY

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> LaunchDarklyFlagBackend:
        token_env = spec.get("token_env") or DEFAULT_TOKEN_ENV
        token = os.environ.get(token_env)
        if not token:
            raise BackendError(
                f"flag {spec.get('key')!r} (backend launchdarkly): environment variable "
                f"{token_env} (the API access token) is not set; nothing was changed",
                hint=f"export {token_env}=<a LaunchDarkly access token with writer role>",
            )
        return cls(
            project=spec["project"],
            environment=spec["environment"],
            key=spec["key"],
            control=spec["control"],
            canary=spec["canary"],
            token=token,
            base_url=(spec.get("base_url") or DEFAULT_BASE_URL).rstrip("/"),
            timeout=seconds(spec.get("timeout")),
            retries=int(spec.get("retries", DEFAULT_RETRIES)),
            context_kind=spec.get("context_kind") or DEFAULT_CONTEXT_KIND,
            bucket_by=spec.get("bucket_by") or DEFAULT_BUCKET_BY,
        )

    # ------------------------------------------------------------ API calls

    def _flag_url(self, key: str) -> str:
        return f"{self.base_url}/api/v2/flags/{quote(self.project, safe='')}/{quote(key, safe='')}"

    def _client(self) -> Client:
        return Client(
            timeout=self.timeout,
            headers={"Authorization": self.token, "Accept": "application/json"},
            transport=self.transport,
        )

    def _get_flag(self, key: str) -> dict[str, Any] | None:
        what = f"LaunchDarkly, reading flag {key!r}"
        with self._client() as client:
            response = request(
                client,
                "GET",
                self._flag_url(key),
                what=what,
                retries=self.retries,
                backoff=self.backoff,
                allow_404=True,
                params={"env": self.environment},
            )
        if response is None:
            return None
        flag = json_of(response, what=what)
        if not isinstance(flag, dict) or not isinstance(flag.get("variations"), list):
            raise BackendError(f"{what}: the answer has no `variations` list")
        env = (flag.get("environments") or {}).get(self.environment)
        if not isinstance(env, dict):
            raise BackendError(
                f"{what}: the answer has no environment {self.environment!r}",
                hint="check `environment:` in the playbook against the project's environments",
            )
        return flag

    def _patch(self, key: str, instructions: list[dict[str, Any]], comment: str) -> None:
        body = {
            "environmentKey": self.environment,
            "comment": comment[:COMMENT_LIMIT],
            "instructions": instructions,
        }
        with self._client() as client:
            request(
                client,
                "PATCH",
                self._flag_url(key),
                what=f"LaunchDarkly, updating flag {key!r}",
                retries=self.retries,
                backoff=self.backoff,
                json=body,
                headers={"Content-Type": SEMANTIC_PATCH},
            )

    def _require_flag(self, key: str) -> dict[str, Any]:
        flag = self._get_flag(key)
        if flag is None:
            raise BackendError(
                f"LaunchDarkly: flag {key!r} does not exist in project {self.project!r}",
                hint="create the flag with its variations in LaunchDarkly first",
            )
        return flag

    def _env(self, flag: dict[str, Any]) -> dict[str, Any]:
        env: dict[str, Any] = flag["environments"][self.environment]
        return env

    def _variation_index(self, flag: dict[str, Any], name: str) -> int:
        for index, variation in enumerate(flag["variations"]):
            if not isinstance(variation, dict):
                continue
            value = variation.get("value")
            if (
                value == name
                or variation.get("name") == name
                or (not isinstance(value, dict | list) and str(value).lower() == name.lower())
            ):
                return index
        values = ", ".join(repr(v.get("value")) for v in flag["variations"] if isinstance(v, dict))
        raise BackendError(
            f"LaunchDarkly: flag {flag.get('key', self.key)!r} has no variation {name!r} "
            f"(its variations: {values})",
            hint="control and canary must name the flag's variation values (or names)",
        )

    @staticmethod
    def _label(flag: dict[str, Any], index: int | None) -> str:
        if index is None:
            return "the caller's code default"
        variation = flag["variations"][index]
        return repr(variation.get("value") if isinstance(variation, dict) else variation)

    def _labels(self, flag: dict[str, Any], indices: frozenset[int | None]) -> str:
        ordered = sorted(indices, key=lambda i: -1 if i is None else i)
        return " and ".join(self._label(flag, i) for i in ordered)

    def _serving(self, flag: dict[str, Any], bypass: _Bypass) -> str:
        verb = "serve" if bypass.plural else "serves"
        return f"{bypass.what} {verb} {self._labels(flag, bypass.serves)}"

    # ------------------------------------------------------------ the rollout flag

    def _share(self, flag: dict[str, Any]) -> float:
        env = self._env(flag)
        count = len(flag["variations"])
        control = self._variation_index(flag, self.control)
        canary = self._variation_index(flag, self.canary)
        if not env.get("on"):
            off = _index(env.get("offVariation"), count)
            if off not in (control, canary):
                raise _Unreadable(f"it is off and serves {self._label(flag, off)} to everyone")
            return 100.0 if off == canary else 0.0
        outside = [self._serving(flag, b) for b in _bypasses(env, count) if b.serves - {control}]
        if outside:
            raise _Unreadable("outside the split, " + "; ".join(outside))
        fallthrough = env.get("fallthrough") or {}
        rollout = fallthrough.get("rollout") if isinstance(fallthrough, dict) else None
        if isinstance(rollout, dict):
            weights = _weights(rollout, count)
            strays = frozenset(i for i, w in weights.items() if w > 0) - {control, canary}
            if strays:
                raise _Unreadable(f"its default rule also serves {self._labels(flag, strays)}")
            total = sum(weights.values())
            if total <= 0:
                raise _Unreadable("the weights of its default rule add up to zero")
            return 100.0 * weights.get(canary, 0) / total
        served = _serves(fallthrough, count)
        if served == {control}:
            return 0.0
        if served == {canary}:
            return 100.0
        raise _Unreadable(f"its default rule serves {self._labels(flag, served)}")

    def _split_of(self, flag: dict[str, Any]) -> FlagSplit:
        """The split as SDKs serve it. When anything outside the default rule may serve
        something other than the control, or the default rule names another variation, the
        canary's share is unknown and `problem` says why."""
        seen = fingerprint(_view(flag, self._env(flag)))
        try:
            percent = self._share(flag)
        except _Unreadable as exc:
            return FlagSplit(math.nan, None, seen, problem=str(exc))
        return FlagSplit(percent, None, seen)

    def read(self) -> FlagSplit | None:
        flag = self._get_flag(self.key)
        return None if flag is None else self._split_of(flag)

    def _refuse_bypasses(self, flag: dict[str, Any]) -> None:
        env = self._env(flag)
        count = len(flag["variations"])
        control = self._variation_index(flag, self.control)
        found = [self._serving(flag, b) for b in _bypasses(env, count) if b.serves - {control}]
        off = _index(env.get("offVariation"), count)
        if off != control:
            found.append(
                f"its off variation is {self._label(flag, off)} (what turning the flag off "
                "in LaunchDarkly serves to everyone)"
            )
        if found:
            raise BackendError(
                f"LaunchDarkly: flag {self.key!r} in {self.environment!r} serves more than its "
                f"default rule: {'; '.join(found)}; those contexts would bypass the split, so "
                "nothing was changed",
                hint=f"in LaunchDarkly, remove those targets, rules and prerequisites (or make "
                f"them serve {self.control!r}) and make {self.control!r} the off variation: "
                "outside the default rule rolloutctl owns, only the control may be served",
            )

    def set_split(
        self, canary_percent: float, scope: Any, *, rollout: str, stage: str
    ) -> FlagSplit:
        if scope is not None:
            raise BackendError(
                f"stage {stage!r} is scoped, and the launchdarkly backend cannot target "
                "segments (it only writes the flag's default rule); nothing was changed",
                hint="remove the stage's `scope:` (or use `scope: all`), or use the file backend",
            )
        comment = f"rolloutctl: {rollout} stage {stage}: {canary_percent:g}% to canary"
        canary_weight = round(canary_percent * FULL / 100)
        if canary_weight <= 0:
            return self._close(comment)
        flag = self._require_flag(self.key)
        self._refuse_bypasses(flag)
        control = flag["variations"][self._variation_index(flag, self.control)]["_id"]
        canary = flag["variations"][self._variation_index(flag, self.canary)]["_id"]
        weights = {control: FULL - canary_weight, canary: canary_weight}
        instructions: list[dict[str, Any]] = [
            {"kind": "turnFlagOn"},
            {
                "kind": "updateFallthroughVariationOrRollout",
                "rolloutWeights": weights,
                "rolloutContextKind": self.context_kind,
                "rolloutBucketBy": self.bucket_by,
            },
        ]
        self._patch(self.key, instructions, comment)
        flag = self._require_flag(self.key)
        split = self._split_of(flag)
        if (
            split.problem is not None
            or abs(split.canary_percent - canary_weight * 100 / FULL) > 1e-9
        ):
            now = split.problem or f"{split.canary_percent:g}% to {self.canary!r}"
            raise BackendError(
                f"LaunchDarkly: read-back of flag {self.key!r} in {self.environment!r} shows "
                f"{now}, not the {canary_percent:g}% just written",
                hint=f"check the targeting of {self.key!r} in LaunchDarkly by hand",
            )
        bucketing = _bucketing(self._env(flag))
        if bucketing != (self.context_kind, self.bucket_by):
            now = (
                "no rollout" if bucketing is None else f"{bucketing[0]} contexts by {bucketing[1]}"
            )
            raise BackendError(
                f"LaunchDarkly: read-back of flag {self.key!r} in {self.environment!r} buckets "
                f"{now}, not {self.context_kind} contexts by {self.bucket_by} as written",
                hint="check `context_kind:` and `bucket_by:` against the project's context "
                "kinds, and the default rule's bucketing in LaunchDarkly",
            )
        return split

    def rollback(self, *, rollout: str, reason: str) -> FlagSplit:
        return self._close(f"rolloutctl: {rollout} rolled back: {reason}")

    def _close(self, comment: str) -> FlagSplit:
        """Nobody gets the canary: the kill first, then whatever else still serves it."""
        flag = self._require_flag(self.key)
        env = self._env(flag)
        count = len(flag["variations"])
        control = self._variation_index(flag, self.control)
        canary = self._variation_index(flag, self.canary)
        ids = [v.get("_id") if isinstance(v, dict) else None for v in flag["variations"]]
        kill = [{"kind": "updateFallthroughVariationOrRollout", "variationId": ids[control]}]
        if _index(env.get("offVariation"), count) != control:
            kill.append({"kind": "updateOffVariation", "variationId": ids[control]})
        self._patch(self.key, kill, comment)
        groups = [
            (bypass.what, self._to_control(bypass, ids, control, canary))
            for bypass in _bypasses(env, count)
            if canary in bypass.serves
        ]
        failed = self._move(comment, [(what, steps) for what, steps in groups if steps])
        flag = self._require_flag(self.key)
        env = self._env(flag)
        left = [self._serving(flag, b) for b in _bypasses(env, count) if canary in b.serves]
        default = _serves(env.get("fallthrough"), count)
        if default != {control}:
            left.insert(0, f"the default rule serves {self._labels(flag, default)}")
        off = _index(env.get("offVariation"), count)
        if off != control:
            left.insert(0, f"the off variation is {self._label(flag, off)}")
        if left:
            done = (
                f"its default rule now serves {self.control!r}, but "
                if default == {control}
                else ""
            )
            raise BackendError(
                f"LaunchDarkly: flag {self.key!r} in {self.environment!r} still serves "
                f"{self.canary!r}: {done}{'; '.join(left)}{failed}; in LaunchDarkly, make "
                f"those serve {self.control!r} (or remove them)",
                hint=f"make everything in {self.key!r} serve {self.control!r} in LaunchDarkly, "
                "then run the rollback again",
            )
        return self._split_of(flag)

    @staticmethod
    def _to_control(
        bypass: _Bypass, ids: list[Any], control: int, canary: int
    ) -> list[dict[str, Any]]:
        """The instructions that make a rule or individual targets serve the control; none for
        prerequisites (the kill made the control their off variation)."""
        if bypass.rule_id is not None:
            return [
                {
                    "kind": "updateRuleVariationOrRollout",
                    "ruleId": bypass.rule_id,
                    "variationId": ids[control],
                }
            ]
        return [
            {
                "kind": kind,
                "contextKind": bypass.context_kind,
                "variationId": ids[variation],
                "values": list(bypass.keys),
            }
            for kind, variation in (("removeTargets", canary), ("addTargets", control))
            if bypass.keys
        ]

    def _move(self, comment: str, groups: list[tuple[str, list[dict[str, Any]]]]) -> str:
        """One patch for every group; if LaunchDarkly refuses it (a patch applies whole or not
        at all), one patch per group, so one locked rule does not keep the rest on the
        canary. Returns what failed, for the message."""
        if not groups:
            return ""
        note = f" moved from {self.canary} to {self.control}"
        try:
            everything = [step for _, steps in groups for step in steps]
            self._patch(
                self.key, everything, f"{comment[:300]}: {', '.join(w for w, _ in groups)}{note}"
            )
            return ""
        except BackendError:
            pass
        failures = []
        for what, steps in groups:
            try:
                self._patch(self.key, steps, f"{comment[:300]}: {what}{note}")
            except BackendError as exc:
                failures.append(f"moving {what} to {self.control!r} failed: {exc.message}")
        return f" ({'; '.join(failures)})" if failures else ""

    # ------------------------------------------------------------ controls

    def set_control(self, key: str, value: Any) -> None:
        flag = self._require_flag(key)
        env = self._env(flag)
        index = next(
            (
                i
                for i, v in enumerate(flag["variations"])
                if isinstance(v, dict)
                and isinstance(v.get("value"), bool) == isinstance(value, bool)
                and v.get("value") == value
            ),
            None,
        )
        if index is None:
            raise BackendError(
                f"LaunchDarkly: control flag {key!r} has no variation with value {value!r}",
                hint=f"add a variation {value!r} to {key!r} in LaunchDarkly first",
            )
        instructions: list[dict[str, Any]]
        if value is False and _index(env.get("offVariation"), len(flag["variations"])) == index:
            instructions = [{"kind": "turnFlagOff"}]  # false for every context, targets included
        else:
            instructions = [
                {"kind": "turnFlagOn"},
                {
                    "kind": "updateFallthroughVariationOrRollout",
                    "variationId": flag["variations"][index].get("_id"),
                },
            ]
        self._patch(key, instructions, f"rolloutctl: control {key} = {value!r}")
        served = self.read_control(key)
        if isinstance(served, bool) != isinstance(value, bool) or served != value:
            raise BackendError(
                f"LaunchDarkly: read-back of control flag {key!r} in {self.environment!r}: "
                f"SDKs serve {served!r}, not {value!r}",
                hint=f"set {key!r} in {self.environment!r} by hand",
            )

    def remove_control(self, key: str) -> None:
        raise BackendError(
            f"LaunchDarkly: control flag {key!r} was not created by rolloutctl and is not deleted",
            hint=f"turn {key!r} off in LaunchDarkly by hand if it should not stay on",
        )

    def read_control(self, key: str) -> Any:
        """What SDKs serve to a context matching no individual target or rule."""
        flag = self._get_flag(key)
        if flag is None:
            return None
        env = self._env(flag)
        where = f"LaunchDarkly: control flag {key!r} in {self.environment!r}"
        if env.get("on"):
            fallthrough = env.get("fallthrough")
            fallthrough = fallthrough if isinstance(fallthrough, dict) else {}
            if isinstance(fallthrough.get("rollout"), dict):
                raise BackendError(
                    f"{where} serves a percentage rollout by default, not one value",
                    hint=f"point the default rule of {key!r} at one variation in LaunchDarkly",
                )
            raw, part = fallthrough.get("variation"), "its default rule"
        else:
            raw, part = env.get("offVariation"), "it is off and its off variation"
            if raw is None:
                raise BackendError(
                    f"{where} is off without an off variation, so SDKs serve each caller's "
                    "code default; its value is unknown",
                    hint=f"give {key!r} an off variation in LaunchDarkly (or turn it on)",
                )
        index = _index(raw, len(flag["variations"]))
        variation = flag["variations"][index] if index is not None else None
        if not isinstance(variation, dict):
            raise BackendError(
                f"{where}: {part} names variation {raw!r}, which the flag does not have",
                hint=f"check {key!r} in LaunchDarkly by hand",
            )
        return variation.get("value")
