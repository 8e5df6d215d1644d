"""The embedded default flag backend: a flagd / OpenFeature flag definition file.

The rollout flag holds the control and canary variants, the control as default, and a
`fractional` split as targeting; a stage's scope wraps the split in an `if`, so requests
outside the scope keep the control. Controls are boolean or numeric flags in the same file.
Other flags in the file are preserved. Every write is atomic and read back."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from rolloutctl.atomic import atomic_write
from rolloutctl.errors import BackendError
from rolloutctl.flags.base import FlagSplit

SCHEMA = "https://flagd.dev/schema/v0/flags.json"
WEIGHT_SCALE = 1000  # weights in thousandths of a percent: 0.5% -> 500 of 100000


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

    # ------------------------------------------------------------ file I/O

    def _load(self) -> dict[str, Any]:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return {"$schema": SCHEMA, "flags": {}}
        except OSError as exc:
            raise BackendError(f"flag file {self.path}: cannot read: {exc.strerror}") from None
        try:
            data = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise BackendError(
                f"flag file {self.path}: not valid JSON ({exc}); nothing was changed",
                hint=f"restore {self.path} from version control, then run the command again",
            ) from None
        if not isinstance(data, dict) or not isinstance(data.get("flags", {}), dict):
            raise BackendError(
                f'flag file {self.path}: expected a flagd definition {{"flags": {{...}}}}',
                hint=f"restore {self.path} from version control, then run the command again",
            )
        data.setdefault("flags", {})
        return data

    def _write(self, data: dict[str, Any]) -> None:
        text = json.dumps(data, indent=2, sort_keys=False) + "\n"
        try:
            atomic_write(self.path, text.encode())
        except OSError as exc:
            raise BackendError(
                f"flag file {self.path}: cannot write: {exc.strerror}; the flag is unchanged",
                hint="check the folder's permissions and free space",
            ) from None

    # ------------------------------------------------------------ the rollout flag

    def definition(self, canary_percent: float, scope: Any, metadata: dict[str, Any]) -> Any:
        canary_weight = round(canary_percent * WEIGHT_SCALE)
        flag: dict[str, Any] = {
            "state": "ENABLED",
            "variants": {self.control: self.control, self.canary: self.canary},
            "defaultVariant": self.control,
        }
        if canary_weight > 0:
            split = {
                "fractional": [
                    [self.control, 100 * WEIGHT_SCALE - canary_weight],
                    [self.canary, canary_weight],
                ]
            }
            flag["targeting"] = split if scope is None else {"if": [scope, split, self.control]}
        flag["metadata"] = {"managedBy": "rolloutctl", **metadata}
        return flag

    def _split_of(self, flag: Any) -> FlagSplit:
        percent, scope = 0.0, None
        targeting = flag.get("targeting") if isinstance(flag, dict) else None
        if isinstance(targeting, dict) and "if" in targeting:
            scope, targeting = targeting["if"][0], targeting["if"][1]
        if isinstance(targeting, dict) and "fractional" in targeting:
            weights = {
                item[0]: item[1]
                for item in targeting["fractional"]
                if isinstance(item, list) and len(item) == 2
            }
            total = sum(weights.values()) or 1
            percent = 100 * weights.get(self.canary, 0) / total
        return FlagSplit(percent, scope, fingerprint(flag))

    def read(self) -> FlagSplit | None:
        flag = self._load()["flags"].get(self.key)
        return None if flag is None else self._split_of(flag)

    def _put(self, key: str, flag: Any) -> None:
        data = self._load()
        data["flags"][key] = flag
        data.setdefault("$schema", SCHEMA)
        self._write(data)
        if self._load()["flags"].get(key) != flag:
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
        data = self._load()
        data["flags"].pop(key, None)
        self._write(data)

    def read_control(self, key: str) -> Any:
        flag = self._load()["flags"].get(key)
        if not isinstance(flag, dict):
            return None
        return flag.get("variants", {}).get(flag.get("defaultVariant"))
