"""The `launchdarkly` flag backend: LaunchDarkly's REST API with semantic patches.

The rollout flag's default rule (fallthrough) in one environment carries the split:
`updateFallthroughVariationOrRollout` with `rolloutWeights` (variation id -> weight in
thousandths of a percent, 100000 = 100%) and `turnFlagOn`. Rollback points the fallthrough at
the control variation (the flag stays on, so the off variation's value does not matter).
Targeting rules and individual targets are left as they are; a scoped stage is refused,
because rolloutctl does not write LaunchDarkly targeting rules.

A boolean control is the control flag's on/off toggle (`turnFlagOn` / `turnFlagOff`); any
other control value selects the control flag's variation with that value as its fallthrough.

The API token comes from the environment variable the spec names (default LD_API_TOKEN) and is
sent as the `Authorization` header, raw, as LaunchDarkly expects. Every change is read back
with `GET /api/v2/flags/{project}/{flag}?env={environment}`."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import quote

from rolloutctl.errors import BackendError
from rolloutctl.flags.base import FlagSplit
from rolloutctl.flags.transport import (
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
            "comment": comment,
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

    # ------------------------------------------------------------ the rollout flag

    def _split_of(self, flag: dict[str, Any]) -> FlagSplit:
        env = flag["environments"][self.environment]
        canary = self._variation_index(flag, self.canary)
        percent = 0.0
        if not env.get("on", False):
            percent = 100.0 if env.get("offVariation") == canary else 0.0
        else:
            fallthrough = env.get("fallthrough") or {}
            rollout = fallthrough.get("rollout")
            if isinstance(rollout, dict):
                total = sum(int(v.get("weight", 0)) for v in rollout.get("variations", [])) or FULL
                weight = sum(
                    int(v.get("weight", 0))
                    for v in rollout.get("variations", [])
                    if v.get("variation") == canary
                )
                percent = 100.0 * weight / total
            elif fallthrough.get("variation") == canary:
                percent = 100.0
        seen = {
            "on": env.get("on"),
            "fallthrough": env.get("fallthrough"),
            "offVariation": env.get("offVariation"),
            "rules": env.get("rules"),
            "targets": env.get("targets"),
            "variations": [v.get("value") for v in flag["variations"] if isinstance(v, dict)],
        }
        return FlagSplit(percent, None, fingerprint(seen))

    def read(self) -> FlagSplit | None:
        flag = self._get_flag(self.key)
        return None if flag is None else self._split_of(flag)

    def _apply(self, percent: float, comment: str) -> FlagSplit:
        flag = self._require_flag(self.key)
        control = flag["variations"][self._variation_index(flag, self.control)]["_id"]
        canary = flag["variations"][self._variation_index(flag, self.canary)]["_id"]
        canary_weight = round(percent * FULL / 100)
        if canary_weight <= 0:
            rule: dict[str, Any] = {"variationId": control}
        else:
            rule = {"rolloutWeights": {control: FULL - canary_weight, canary: canary_weight}}
        instructions = [
            {"kind": "turnFlagOn"},
            {"kind": "updateFallthroughVariationOrRollout", **rule},
        ]
        self._patch(self.key, instructions, comment)
        split = self.read()
        if split is None or abs(split.canary_percent - canary_weight * 100 / FULL) > 1e-9:
            now = "missing" if split is None else f"{split.canary_percent:g}%"
            raise BackendError(
                f"LaunchDarkly: read-back of flag {self.key!r} in {self.environment!r} shows "
                f"{now} to {self.canary!r}, not the {percent:g}% just written",
                hint=f"check the default rule of {self.key!r} in LaunchDarkly by hand",
            )
        return split

    def set_split(
        self, canary_percent: float, scope: Any, *, rollout: str, stage: str
    ) -> FlagSplit:
        if scope is not None:
            raise BackendError(
                f"stage {stage!r} is scoped, and the launchdarkly backend cannot target "
                "segments (it only writes the flag's default rule); nothing was changed",
                hint="remove the stage's `scope:` (or use `scope: all`), or use the file backend",
            )
        return self._apply(
            canary_percent, f"rolloutctl: {rollout} stage {stage}: {canary_percent:g}% to canary"
        )

    def rollback(self, *, rollout: str, reason: str) -> FlagSplit:
        return self._apply(0.0, f"rolloutctl: {rollout} rolled back: {reason}"[:500])

    # ------------------------------------------------------------ controls

    def set_control(self, key: str, value: Any) -> None:
        if isinstance(value, bool):
            instructions = [{"kind": "turnFlagOn" if value else "turnFlagOff"}]
        else:
            flag = self._require_flag(key)
            ids = [v.get("_id") for v in flag["variations"] if v.get("value") == value]
            if not ids:
                raise BackendError(
                    f"LaunchDarkly: control flag {key!r} has no variation with value {value!r}",
                    hint=f"add a variation {value!r} to {key!r} in LaunchDarkly first",
                )
            instructions = [
                {"kind": "turnFlagOn"},
                {"kind": "updateFallthroughVariationOrRollout", "variationId": ids[0]},
            ]
        self._patch(key, instructions, f"rolloutctl: control {key} = {value!r}")
        if self.read_control(key) != value:
            raise BackendError(
                f"LaunchDarkly: read-back of control flag {key!r} does not show {value!r}",
                hint=f"set {key!r} in {self.environment!r} by hand",
            )

    def remove_control(self, key: str) -> None:
        raise BackendError(
            f"LaunchDarkly: control flag {key!r} was not created by rolloutctl and is not deleted",
            hint=f"turn {key!r} off in LaunchDarkly by hand if it should not stay on",
        )

    def read_control(self, key: str) -> Any:
        flag = self._get_flag(key)
        if flag is None:
            return None
        env = flag["environments"][self.environment]
        variations = flag["variations"]
        if all(isinstance(v.get("value"), bool) for v in variations):
            return bool(env.get("on"))
        index = (
            env.get("offVariation")
            if not env.get("on")
            else ((env.get("fallthrough") or {}).get("variation"))
        )
        if isinstance(index, int) and 0 <= index < len(variations):
            return variations[index].get("value")
        return None
