"""The `unleash` flag backend: a feature in one Unleash environment, through the Admin API.

The rollout feature carries one strategy that rolloutctl owns (its title starts with
`rolloutctl`): `flexibleRollout` with `rollout` = the canary's whole percent, the playbook's
`stickiness`, `groupId` = the feature name, and the stage's scope as constraints. An SDK's
`isEnabled(feature)` is true for the canary and false for the control; the strategy also
carries a single variant named after the canary, so `getVariant(feature)` names it too (the
control gets Unleash's `disabled` variant). Rollback is one call, the environment switched
off, read back; the strategy is then set to 0% as well, so switching the environment on by
hand does not reopen canary traffic.

Other enabled strategies in the environment would turn the feature on for users rolloutctl
does not count, so a split is refused while any exist. A stage's scope becomes constraints
(all must hold): `x in [..]` / `x not in [..]` / `x = v` / `x != v` and numeric comparisons,
joined by `and`; anything else (`or`, arithmetic) is refused before anything is changed. A
request that lacks an attribute the scope reads is out of scope, as in the gate's SQL: where
Unleash's own operator would let it in (NOT_IN), a constraint requiring the attribute is added.

Controls are features too: a boolean control is the environment's on/off (with a 100%
strategy so "on" means on for everyone); any other value is the payload of the single variant
of a 100% strategy rolloutctl owns.

The admin token comes from the environment variable the spec names (default
UNLEASH_ADMIN_TOKEN) and is sent as the `Authorization` header, raw, as Unleash expects."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import quote

from rolloutctl.errors import BackendError
from rolloutctl.flags.base import FlagSplit
from rolloutctl.playbook.expr import jl_presence_of, jl_present
from rolloutctl.transport import (
    DEFAULT_BACKOFF,
    DEFAULT_RETRIES,
    Client,
    expand_env,
    fingerprint,
    json_of,
    redact,
    request,
    seconds,
)

DEFAULT_TOKEN_ENV = "UNLEASH_ADMIN_TOKEN"
OWNED = "rolloutctl"  # title prefix of the strategies rolloutctl owns
FULL = 1000  # Unleash variant weights: 1000 = 100%


class ScopeNotExpressible(ValueError):
    """A stage scope that Unleash constraints cannot say."""


# ---------------------------------------------------------------- scope <-> constraints
#
# A scope arrives from `expr.to_jsonlogic` as an `and` of comparisons, each after a presence
# test `{"!==": [{"var": x}, null]}` per attribute it reads: a request without the attribute
# is never in scope (SQL's rule). What Unleash makes of a constraint when the context lacks
# its field, as unleash-server 7.5.1's own evaluator (the playground), the Node SDK 6.12,
# yggdrasil (the engine of the Python SDK 6 and others) and the Python SDK 5 evaluate it:
#
#   IN, NUM_*        false everywhere, so the presence test beside them is dropped;
#   NOT_IN           true everywhere, so the presence test becomes a constraint, `_present`:
#   REGEX ".*"       false without the field, true for any value it has, in the server, Node
#                    and yggdrasil 0.21+; an SDK without REGEX (Python 5, older Node or engines)
#                    takes the constraint as false: the stage then serves nobody the
#                    canary, never someone outside the scope;
#   STR_* [""]       refused by the Admin API ("values[0] is not allowed to be empty");
#   STR_* [" "]      the server and Node trim it to "" (true for any value), yggdrasil and
#                    Python 5 do not (false for nearly all): it cannot be the presence test.
#
# `scope_of` writes the presence test back before every comparison on an attribute that a
# constraint requires, so the scope read back is the one written.

PRESENT_OPERATOR, PRESENT_VALUE = "REGEX", ".*"
_NUMERIC = {"<": "NUM_LT", "<=": "NUM_LTE", ">": "NUM_GT", ">=": "NUM_GTE"}
_NUMERIC_BACK = {v: k for k, v in _NUMERIC.items()}
_FLIPPED = {"<": ">", "<=": ">=", ">": "<", ">=": "<="}
_FALSE_WHEN_MISSING = {"IN", *_NUMERIC.values()}
_SAYABLE = (
    "Unleash can say `column in (...)`, `column not in (...)`, `column = value`, "
    "`column != value`, `column < number` (and <=, >, >=) and `column is not null`, "
    "all joined by `and`"
)


def _var(node: Any) -> str | None:
    if isinstance(node, dict) and set(node) == {"var"} and isinstance(node["var"], str):
        return node["var"]
    return None


def _present(name: str) -> dict[str, Any]:
    """The constraint that holds exactly when the context has `name` (see the table above)."""
    return {"contextName": name, "operator": PRESENT_OPERATOR, "value": PRESENT_VALUE}


def _is_present(constraint: dict[str, Any]) -> bool:
    return (
        constraint.get("operator") == PRESENT_OPERATOR
        and constraint.get("value") == PRESENT_VALUE
        and not constraint.get("inverted")
    )


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _value(value: Any) -> str:
    """A literal as an IN / NOT_IN value, the same in every SDK."""
    text = _text(value)
    if not text or text != text.strip():
        raise ScopeNotExpressible(
            f"{json.dumps(value)} cannot be an Unleash constraint value: the server refuses "
            "empty values, and it and the Node SDK trim spaces that other SDKs keep"
        )
    return text


def _literal(value: Any) -> bool:
    return isinstance(value, str | int | float | bool) and not isinstance(value, dict)


def _constraint(node: Any, negated: bool = False) -> dict[str, Any]:
    if not isinstance(node, dict) or len(node) != 1:
        raise ScopeNotExpressible(f"{json.dumps(node)} is not a condition Unleash can say")
    ((op, args),) = node.items()
    if op == "!":
        return _constraint(args, not negated)
    if not isinstance(args, list) or len(args) != 2:
        raise ScopeNotExpressible(f"`{op}` cannot be an Unleash constraint")
    left, right = args
    if op == "in" and _var(left) and isinstance(right, list) and all(map(_literal, right)):
        return {
            "contextName": _var(left),
            "operator": "NOT_IN" if negated else "IN",
            "values": [_value(v) for v in right],
        }
    if op in ("==", "!=") and _var(left) and _literal(right):
        negated = negated != (op == "!=")
        return {
            "contextName": _var(left),
            "operator": "NOT_IN" if negated else "IN",
            "values": [_value(right)],
        }
    if op in _NUMERIC and not negated:
        if _var(right) and not _var(left):
            left, right, op = right, left, _FLIPPED[op]
        number = right if isinstance(right, int | float) and not isinstance(right, bool) else None
        if _var(left) and number is not None:
            return {"contextName": _var(left), "operator": _NUMERIC[op], "value": _text(number)}
    what = {"or": "`or`", "!": "`not` around a comparison"}.get(op, f"`{op}` here")
    if op in _NUMERIC:
        what = f"`not` around `{op}`" if negated else f"`{op}` between two columns or non-numbers"
    if op == "===" and right is None:
        what = "`is null`"
    raise ScopeNotExpressible(f"{what} cannot be an Unleash constraint; {_SAYABLE}")


def _conjuncts(scope: Any) -> list[Any]:
    """`a and (b and c)` as [a, b, c]."""
    if isinstance(scope, dict) and set(scope) == {"and"} and isinstance(scope["and"], list):
        return [part for item in scope["and"] for part in _conjuncts(item)]
    return [scope]


def constraints_of(scope: Any) -> list[dict[str, Any]]:
    """Unleash constraints (all must hold) for a JsonLogic scope; None means everyone.

    A presence test becomes a `_present` constraint (once per attribute, where its first
    test stood) unless an IN or NUM_* constraint on the attribute already fails without it."""
    if scope is None:
        return []
    parts = _conjuncts(scope)
    comparisons = [_constraint(part) for part in parts if jl_presence_of(part) is None]
    required = {c["contextName"] for c in comparisons if c["operator"] in _FALSE_WHEN_MISSING}
    out: list[dict[str, Any]] = []
    for part in parts:
        name = jl_presence_of(part)
        if name is None:
            out.append(comparisons.pop(0))
        elif name not in required:
            required.add(name)
            out.append(_present(name))
    return out


def scope_of(constraints: list[dict[str, Any]]) -> Any:
    """The JsonLogic a list of constraints stands for (inverse of constraints_of): every
    comparison on an attribute that some constraint requires is preceded by its presence
    test; a `_present` constraint alone on its attribute is `column is not null`."""
    required = {
        c.get("contextName")
        for c in constraints
        if _is_present(c) or (c.get("operator") in _FALSE_WHEN_MISSING and not c.get("inverted"))
    }
    compared = [c.get("contextName") for c in constraints if not _is_present(c)]
    parts: list[Any] = []
    for c in constraints:
        name, op = {"var": c.get("contextName")}, c.get("operator")
        presence = jl_present(str(c.get("contextName")))
        if _is_present(c):
            if c.get("contextName") not in compared:
                parts.append(presence)
            continue
        if op in ("IN", "NOT_IN"):
            values = list(c.get("values") or [])
            part: Any = {"in": [name, values]} if len(values) != 1 else {"==": [name, values[0]]}
            if op == "NOT_IN":
                part = {"!": part} if len(values) != 1 else {"!=": [name, values[0]]}
        elif op in _NUMERIC_BACK:
            part = {_NUMERIC_BACK[op]: [name, float(c.get("value", "nan"))]}
        else:
            part = {"unleash": c}
        if c.get("inverted"):
            part = {"!": part}
        if c.get("contextName") in required:
            parts.append(presence)
        parts.append(part)
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else {"and": parts}


def _same_constraints(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> bool:
    """Whether two constraint lists say the same (Unleash adds defaults such as
    `values: []`, `inverted: false` and `caseInsensitive: false` to what it stores)."""

    def norm(c: dict[str, Any]) -> tuple[Any, ...]:
        return (
            str(c.get("contextName")),
            str(c.get("operator")),
            tuple(c.get("values") or ()),
            str(c.get("value") or ""),
            bool(c.get("inverted")),
            bool(c.get("caseInsensitive")),
        )

    return sorted(map(norm, a)) == sorted(map(norm, b))


def whole_percent(percent: float) -> int:
    """Unleash rolls out in whole percents; anything else is refused, not rounded."""
    if not math.isclose(percent, round(percent), abs_tol=1e-9) or not 0 <= percent <= 100:
        raise ValueError(f"{percent:g}% is not a whole percent from 0 to 100")
    return round(percent)


# ---------------------------------------------------------------- the backend


@dataclass
class UnleashFlagBackend:
    KIND: ClassVar[str] = "unleash"
    url: str
    project: str
    environment: str
    key: str
    control: str
    canary: str
    token: str
    stickiness: str = "default"
    timeout: float = 10.0
    retries: int = DEFAULT_RETRIES
    backoff: float = DEFAULT_BACKOFF
    transport: Any = None  # an httpx transport (tests)

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> UnleashFlagBackend:
        what = f"flag {spec.get('key')!r} (backend unleash)"
        token_env = spec.get("token_env") or DEFAULT_TOKEN_ENV
        token = os.environ.get(token_env)
        if not token:
            raise BackendError(
                f"{what}: environment variable {token_env} (the Unleash admin API token) is "
                "not set; nothing was changed",
                hint=f"export {token_env}=<an Unleash admin or personal access token>",
            )
        return cls(
            url=expand_env(spec["url"], what=what).rstrip("/"),
            project=spec.get("project") or "default",
            environment=spec["environment"],
            key=spec["key"],
            control=spec["control"],
            canary=spec["canary"],
            token=token,
            stickiness=spec.get("stickiness") or "default",
            timeout=seconds(spec.get("timeout")),
            retries=int(spec.get("retries", DEFAULT_RETRIES)),
        )

    # ------------------------------------------------------------ API calls

    def _feature_url(self, feature: str) -> str:
        return (
            f"{self.url}/api/admin/projects/{quote(self.project, safe='')}/features/"
            f"{quote(feature, safe='')}"
        )

    def _env_url(self, feature: str) -> str:
        return f"{self._feature_url(feature)}/environments/{quote(self.environment, safe='')}"

    def _client(self) -> Client:
        return Client(
            timeout=self.timeout,
            headers={"Authorization": self.token, "Accept": "application/json"},
            transport=self.transport,
        )

    def _call(self, client: Client, method: str, url: str, what: str, **kw: Any) -> Any:
        response = request(
            client, method, url, what=what, retries=self.retries, backoff=self.backoff, **kw
        )
        return None if response is None or not response.content else json_of(response, what=what)

    def _environment(self, client: Client, feature: str) -> dict[str, Any] | None:
        """The feature's entry for our environment; None when the feature does not exist."""
        what = f"Unleash, reading feature {feature!r}"
        response = request(
            client,
            "GET",
            self._feature_url(feature),
            what=what,
            retries=self.retries,
            backoff=self.backoff,
            allow_404=True,
        )
        if response is None:
            return None
        data = json_of(response, what=what)
        envs = data.get("environments") if isinstance(data, dict) else None
        if not isinstance(envs, list):
            raise BackendError(f"{what}: the answer has no `environments` list")
        for env in envs:
            if isinstance(env, dict) and env.get("name") == self.environment:
                env.setdefault("strategies", [])
                return env
        names = ", ".join(str(e.get("name")) for e in envs if isinstance(e, dict)) or "none"
        raise BackendError(
            f"{what}: project {self.project!r} has no environment {self.environment!r} "
            f"(it has: {names})",
            hint="check `environment:` in the playbook, or enable the environment in the project",
        )

    def _require(self, client: Client, feature: str) -> dict[str, Any]:
        env = self._environment(client, feature)
        if env is None:
            raise BackendError(
                f"Unleash: feature {feature!r} does not exist in project {self.project!r} at "
                f"{redact(self.url)}; nothing was changed",
                hint=f"create feature {feature!r} in Unleash (any type) and run this again",
            )
        return env

    def _switch(self, client: Client, feature: str, on: bool) -> None:
        state = "on" if on else "off"
        self._call(
            client,
            "POST",
            f"{self._env_url(feature)}/{state}",
            f"Unleash, switching {feature!r} {state} in {self.environment!r}",
        )

    def _put_strategy(
        self, client: Client, feature: str, env: dict[str, Any], body: dict[str, Any]
    ) -> None:
        """Create or update the one strategy rolloutctl owns on the feature."""
        owned = _owned(env)
        what = f"Unleash, writing the strategy of {feature!r} in {self.environment!r}"
        if owned is None:
            self._call(client, "POST", f"{self._env_url(feature)}/strategies", what, json=body)
        else:
            url = f"{self._env_url(feature)}/strategies/{quote(str(owned['id']), safe='')}"
            self._call(client, "PUT", url, what, json=body)

    # ------------------------------------------------------------ the rollout flag

    def _split_of(self, env: dict[str, Any]) -> FlagSplit:
        owned = _owned(env)
        percent, scope = 0.0, None
        if owned is not None:
            scope = scope_of(owned.get("constraints") or [])
            if env.get("enabled") and not owned.get("disabled"):
                percent = _rollout(owned)
        seen = {
            "enabled": bool(env.get("enabled")),
            "strategies": sorted(
                (_strategy_view(s) for s in env["strategies"] if isinstance(s, dict)),
                key=lambda s: json.dumps(s, sort_keys=True),
            ),
        }
        return FlagSplit(percent, scope, fingerprint(seen))

    def read(self) -> FlagSplit | None:
        with self._client() as client:
            env = self._environment(client, self.key)
        return None if env is None else self._split_of(env)

    def _rollout_strategy(
        self, percent: int, constraints: list[dict[str, Any]], title: str
    ) -> dict[str, Any]:
        return {
            "name": "flexibleRollout",
            "title": title[:100],
            "disabled": False,
            "constraints": constraints,
            "parameters": {
                "rollout": str(percent),
                "stickiness": self.stickiness,
                "groupId": self.key,
            },
            "variants": [
                {
                    "name": self.canary,
                    "weight": FULL,
                    "weightType": "variable",
                    "stickiness": self.stickiness,
                }
            ],
        }

    def set_split(
        self, canary_percent: float, scope: Any, *, rollout: str, stage: str
    ) -> FlagSplit:
        try:
            percent = whole_percent(canary_percent)
            constraints = constraints_of(scope)
        except ValueError as exc:
            raise BackendError(
                f"Unleash cannot serve stage {stage!r}: {exc}; nothing was changed",
                hint="use whole percents and scopes Unleash constraints can say (see README)",
            ) from None
        with self._client() as client:
            env = self._require(client, self.key)
            others = [
                s.get("name", "?")
                for s in env["strategies"]
                if isinstance(s, dict) and s is not _owned(env) and not s.get("disabled")
            ]
            if others:
                raise BackendError(
                    f"Unleash: feature {self.key!r} in {self.environment!r} has other enabled "
                    f"strategies ({', '.join(others)}) that would also serve {self.canary!r}; "
                    "nothing was changed",
                    hint="disable or remove them: rolloutctl owns this feature's rollout",
                )
            body = self._rollout_strategy(percent, constraints, f"{OWNED}: {rollout} {stage}")
            self._put_strategy(client, self.key, env, body)
            if percent > 0 and not env.get("enabled"):
                self._switch(client, self.key, True)
            elif percent == 0 and env.get("enabled"):
                self._switch(client, self.key, False)
            env = self._require(client, self.key)
        split = self._split_of(env)
        if split.canary_percent != percent or not _same_constraints(
            (_owned(env) or {}).get("constraints") or [], constraints
        ):
            raise BackendError(
                f"Unleash: read-back of {self.key!r} in {self.environment!r} shows "
                f"{split.canary_percent:g}% to {self.canary!r}, not the {percent}% just written",
                hint=f"check feature {self.key!r} in Unleash by hand",
            )
        return split

    def rollback(self, *, rollout: str, reason: str) -> FlagSplit:
        """The environment off first (one call: the kill), then the strategy at 0%, so the
        feature does not come back at the old percent when someone switches it on."""
        with self._client() as client:
            self._switch(client, self.key, False)
            env = self._require(client, self.key)
            owned = _owned(env)
            if owned is not None and _rollout(owned) > 0:
                body = self._rollout_strategy(
                    0, owned.get("constraints") or [], f"{OWNED}: {rollout} rolled back"
                )
                try:
                    self._put_strategy(client, self.key, env, body)
                    env = self._require(client, self.key)
                except BackendError:
                    pass  # the environment is off: the rollback stands without it
        split = self._split_of(env)
        if env.get("enabled") or split.canary_percent != 0:
            raise BackendError(
                f"Unleash: read-back of {self.key!r} shows the environment "
                f"{self.environment!r} still on after switching it off",
                hint=f"switch {self.key!r} off in {self.environment!r} in Unleash by hand",
            )
        return split

    # ------------------------------------------------------------ controls

    def set_control(self, key: str, value: Any) -> None:
        with self._client() as client:
            env = self._require(client, key)
            if isinstance(value, bool):
                body = _control_strategy(None)
                if value and _owned(env) is None and not _active(env):
                    self._put_strategy(client, key, env, body)
                self._switch(client, key, value)
            else:
                self._put_strategy(client, key, env, _control_strategy(value))
                self._switch(client, key, True)
        if self.read_control(key) != value:
            raise BackendError(
                f"Unleash: read-back of control {key!r} does not show {value!r}",
                hint=f"set {key!r} in {self.environment!r} in Unleash by hand",
            )

    def remove_control(self, key: str) -> None:
        raise BackendError(
            f"Unleash: control feature {key!r} was not created by rolloutctl and is not deleted",
            hint=f"switch {key!r} off in {self.environment!r} in Unleash by hand",
        )

    def read_control(self, key: str) -> Any:
        with self._client() as client:
            env = self._environment(client, key)
        if env is None:
            return None
        owned = _owned(env)
        for variant in (owned or {}).get("variants") or []:
            payload = variant.get("payload") if isinstance(variant, dict) else None
            if isinstance(payload, dict) and "value" in payload:
                return _payload_value(payload)
        return bool(env.get("enabled")) and bool(_active(env))


# ---------------------------------------------------------------- helpers


def _owned(env: dict[str, Any]) -> dict[str, Any] | None:
    for strategy in env.get("strategies") or []:
        if isinstance(strategy, dict) and str(strategy.get("title") or "").startswith(OWNED):
            return strategy
    return None


def _active(env: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for s in env.get("strategies") or [] if isinstance(s, dict) and not s.get("disabled")]


def _rollout(strategy: dict[str, Any]) -> float:
    try:
        return float((strategy.get("parameters") or {}).get("rollout", 0))
    except (TypeError, ValueError):
        return 0.0


def _strategy_view(strategy: dict[str, Any]) -> dict[str, Any]:
    """What decides who gets the feature: the fingerprint covers this and nothing else
    (Unleash adds ids, sort orders and segment lists that do not change the answer)."""
    return {
        "name": strategy.get("name"),
        "title": strategy.get("title"),
        "disabled": bool(strategy.get("disabled")),
        "parameters": strategy.get("parameters") or {},
        "constraints": strategy.get("constraints") or [],
        "segments": strategy.get("segments") or [],
        "variants": [
            {k: v.get(k) for k in ("name", "weight", "payload")}
            for v in strategy.get("variants") or []
            if isinstance(v, dict)
        ],
    }


def _control_strategy(value: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "flexibleRollout",
        "title": f"{OWNED}: control",
        "disabled": False,
        "constraints": [],
        "parameters": {"rollout": "100", "stickiness": "default", "groupId": "rolloutctl"},
        "variants": [],
    }
    if value is not None:
        kind = "number" if isinstance(value, int | float) else "string"
        text = _text(value) if kind == "number" else str(value)
        if not isinstance(value, int | float | str):
            kind, text = "json", json.dumps(value)
        body["variants"] = [
            {
                "name": "value",
                "weight": FULL,
                "weightType": "variable",
                "stickiness": "default",
                "payload": {"type": kind, "value": text},
            }
        ]
    return body


def _payload_value(payload: dict[str, Any]) -> Any:
    text = str(payload.get("value"))
    if payload.get("type") == "number":
        number = float(text)
        return int(number) if number.is_integer() and "." not in text else number
    if payload.get("type") == "json":
        return json.loads(text)
    return text
