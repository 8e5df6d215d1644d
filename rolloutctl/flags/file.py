"""The embedded default flag backend: a flagd / OpenFeature flag definition file.

The rollout flag holds the control and canary variants, the control as default, and a
`fractional` split as targeting; a stage's scope wraps the split in an `if`, so requests
outside the scope keep the control. Controls are boolean or numeric flags in the same file.
Other flags in the file are preserved. Every write is atomic and read back."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from rolloutctl.errors import BackendError
from rolloutctl.flags.base import FlagSplit
from rolloutctl.flags.localfile import LocalFlagFile
from rolloutctl.playbook.expr import jl_present

SCHEMA = "https://flagd.dev/schema/v0/flags.json"
WEIGHT_SCALE = 1000  # weights in thousandths of a percent: 0.5% -> 500 of 100000
DEFAULT_TARGETING_KEY = "targetingKey"  # what flagd's `fractional` hashes unless told


def fingerprint(definition: Any) -> str:
    canonical = json.dumps(definition, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


@dataclass
class FileFlagBackend:
    KIND: ClassVar[str] = "file"
    path: Path
    key: str
    control: str
    canary: str
    targeting_key: str = DEFAULT_TARGETING_KEY

    # ------------------------------------------------------------ file I/O

    @property
    def _file(self) -> LocalFlagFile:
        return LocalFlagFile(self.path, "flag file")

    def _load(self) -> dict[str, Any]:
        errors = (json.JSONDecodeError, UnicodeDecodeError)
        data = self._file.parse(json.loads, errors, "valid JSON")
        if data is None:
            return {"$schema": SCHEMA, "flags": {}}
        if not isinstance(data, dict) or not isinstance(data.get("flags", {}), dict):
            raise BackendError(
                f'flag file {self.path}: expected a flagd definition {{"flags": {{...}}}}',
                hint=self._file.restore_hint,
            )
        data.setdefault("flags", {})
        return data

    def _write(self, data: dict[str, Any]) -> None:
        try:
            text = json.dumps(data, indent=2, sort_keys=False, allow_nan=False) + "\n"
        except ValueError:
            raise BackendError(
                f"flag file {self.path}: the change holds a number JSON cannot say (infinite "
                "or NaN, such as 1e999 in a scope); nothing was changed",
                hint="use a finite number in the playbook's scope",
            ) from None
        self._file.write_bytes(text.encode())

    # ------------------------------------------------------------ the rollout flag

    def definition(self, canary_percent: float, scope: Any, metadata: dict[str, Any]) -> Any:
        """The rollout flag. The split hashes the flag key and the targeting attribute (as
        flagd does by default with `targetingKey`); with another attribute, a request that
        lacks it gets the control, like a request outside the scope."""
        canary_weight = round(canary_percent * WEIGHT_SCALE)
        flag: dict[str, Any] = {
            "state": "ENABLED",
            "variants": {self.control: self.control, self.canary: self.canary},
            "defaultVariant": self.control,
        }
        if canary_weight > 0:
            weights: list[Any] = [
                [self.control, 100 * WEIGHT_SCALE - canary_weight],
                [self.canary, canary_weight],
            ]
            condition = scope
            if self.targeting_key != DEFAULT_TARGETING_KEY:
                bucket = {"cat": [{"var": "$flagd.flagKey"}, {"var": self.targeting_key}]}
                weights.insert(0, bucket)
                present = jl_present(self.targeting_key)
                condition = present if scope is None else {"and": [present, scope]}
            split = {"fractional": weights}
            flag["targeting"] = (
                split if condition is None else {"if": [condition, split, self.control]}
            )
        flag["metadata"] = {"managedBy": "rolloutctl", **metadata}
        return flag

    def _split_of(self, flag: Any) -> FlagSplit:
        """The split as flagd would serve it, for a flag in the shape `definition` writes; for
        anything else (a hand edit) the share is unknown and `problem` says why."""
        owner = _owner(flag)
        try:
            percent, scope = self._percent_and_scope(flag)
        except _Unreadable as exc:
            return FlagSplit(math.nan, None, fingerprint(flag), problem=str(exc), owner=owner)
        return FlagSplit(percent, scope, fingerprint(flag), owner=owner)

    def _percent_and_scope(self, flag: Any) -> tuple[float, Any]:
        if not isinstance(flag, dict):
            raise _Unreadable("the flag is not a JSON object")
        if flag.get("state", "ENABLED") != "ENABLED":
            raise _Unreadable("it is not ENABLED (clients then serve their own code default)")
        scope, targeting = None, flag.get("targeting")
        if targeting in (None, {}):
            default = flag.get("defaultVariant")
            return (100.0 if default == self.canary else 0.0), None
        if isinstance(targeting, dict) and "if" in targeting:
            branches = targeting["if"]
            if not (isinstance(branches, list) and len(branches) == 3):
                raise _Unreadable("its `if` does not have the three parts rolloutctl writes")
            if branches[2] != self.control:
                raise _Unreadable("requests outside its scope do not get the control")
            scope, targeting = self._scope_of(branches[0]), branches[1]
        if not (isinstance(targeting, dict) and set(targeting) == {"fractional"}):
            raise _Unreadable("its targeting is not a `fractional` split")
        return _canary_share(targeting["fractional"], self.control, self.canary), scope

    def _scope_of(self, condition: Any) -> Any:
        """The stage's scope in a condition `definition` wrote (without the presence test of
        the targeting attribute)."""
        if self.targeting_key == DEFAULT_TARGETING_KEY:
            return condition
        present = jl_present(self.targeting_key)
        if condition == present:
            return None
        if isinstance(condition, dict) and condition.get("and", [None])[0] == present:
            parts = condition["and"][1:]
            return parts[0] if len(parts) == 1 else {"and": parts}
        return condition

    def read(self) -> FlagSplit | None:
        flag = self._load()["flags"].get(self.key)
        return None if flag is None else self._split_of(flag)

    def _put(self, key: str, flag: Any) -> None:
        """Replace one flag, keeping every other flag of the file, under the file's lock."""
        with self._file.locked():
            data = self._load()
            data["flags"][key] = flag
            data.setdefault("$schema", SCHEMA)
            self._write(data)
            written = self._load()["flags"].get(key)
        if written != flag:
            raise BackendError(
                f"flag file {self.path}: read-back of {key!r} does not match what was written",
                hint="another process may be writing the file; check it by hand",
            )

    def set_split(
        self, canary_percent: float, scope: Any, *, rollout: str, stage: str
    ) -> FlagSplit:
        flag = self.definition(
            canary_percent,
            scope,
            {"rollout": rollout, "stage": stage, "canaryPercent": canary_percent},
        )
        self._put(self.key, flag)
        return self._split_of(flag)

    def rollback(self, *, rollout: str, reason: str) -> FlagSplit:
        flag = self.definition(
            0.0, None, {"rollout": rollout, "stage": "rolled-back", "canaryPercent": 0}
        )
        self._put(self.key, flag)
        return self._split_of(flag)

    # ------------------------------------------------------------ controls

    def set_control(self, key: str, value: Any) -> None:
        if isinstance(value, bool):
            variants: dict[str, Any] = {"on": True, "off": False}
            default = "on" if value else "off"
        else:
            variants = {"value": value}
            default = "value"
        flag = {
            "state": "ENABLED",
            "variants": variants,
            "defaultVariant": default,
            "metadata": {"managedBy": "rolloutctl", "kind": "control"},
        }
        self._put(key, flag)

    def remove_control(self, key: str) -> None:
        with self._file.locked():
            data = self._load()
            if data["flags"].pop(key, None) is not None:
                self._write(data)

    def read_control(self, key: str) -> Any:
        flag = self._load()["flags"].get(key)
        if not isinstance(flag, dict):
            return None
        return flag.get("variants", {}).get(flag.get("defaultVariant"))


def _owner(flag: Any) -> str | None:
    metadata = flag.get("metadata") if isinstance(flag, dict) else None
    if isinstance(metadata, dict) and metadata.get("managedBy") == "rolloutctl":
        rollout = metadata.get("rollout")
        return rollout if isinstance(rollout, str) else None
    return None


class _Unreadable(Exception):
    """A flag that is not in the shape rolloutctl writes."""


def _canary_share(fractional: Any, control: str, canary: str) -> float:
    """The canary's percent of a flagd `fractional` list: `[[variant, weight], ...]`."""
    if not isinstance(fractional, list):
        raise _Unreadable("its `fractional` is not a list")
    weights: dict[str, float] = {}
    if fractional and isinstance(fractional[0], dict):
        fractional = fractional[1:]  # the bucketing expression
    for item in fractional:
        if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], str)):
            raise _Unreadable(f"its `fractional` holds {json.dumps(item)[:60]}")
        weight = item[1]
        if isinstance(weight, bool) or not isinstance(weight, int | float):
            raise _Unreadable(f"the weight of {item[0]!r} is {json.dumps(weight)[:40]}")
        if not math.isfinite(weight) or weight < 0:
            raise _Unreadable(f"the weight of {item[0]!r} is {weight}")
        weights[item[0]] = weights.get(item[0], 0.0) + float(weight)
    if set(weights) - {control, canary}:
        raise _Unreadable(f"its split names variants other than {control!r} and {canary!r}")
    total = sum(weights.values())
    if total <= 0:
        raise _Unreadable("its split's weights add up to zero")
    return 100 * weights.get(canary, 0.0) / total
