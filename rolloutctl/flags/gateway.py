"""The `gateway` flag backend: an LLM gateway's weighted model list (LiteLLM proxy config YAML).

The rollout's `key` is a `model_name` group of the config's `model_list`; `control` and
`canary` name two deployments of that group, each matched by `model_info.id` or else by
`litellm_params.model`. A split writes `litellm_params.weight` on both: the canary gets the
canary percent, the control 100 minus it (LiteLLM's default `simple-shuffle` routing picks a
deployment of a group with probability weight / sum of weights). Rollback writes weight 0 on
the canary and keeps its entry, so the next `retry` needs no credentials. Every other entry
and key of the file is preserved (YAML comments are not); writes are atomic, then read back.

A weight list cannot say "only these users": a scoped stage is refused. Controls are kept in a
top-level `rolloutctl_controls:` map of the same file (LiteLLM ignores the key; the product or a
gateway callback reads it)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import yaml

from rolloutctl.errors import BackendError
from rolloutctl.flags.base import FlagSplit
from rolloutctl.flags.localfile import LocalFlagFile
from rolloutctl.transport import fingerprint

CONTROLS_KEY = "rolloutctl_controls"


def _params(entry: dict[str, Any]) -> dict[str, Any]:
    params = entry.get("litellm_params")
    return params if isinstance(params, dict) else {}


def _is_weight(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value >= 0
    )


def _weight(value: float) -> int | float:
    return int(value) if float(value).is_integer() else round(float(value), 6)


@dataclass
class GatewayFlagBackend:
    KIND: ClassVar[str] = "gateway"
    path: Path
    key: str  # the model_name group
    control: str
    canary: str

    # ------------------------------------------------------------ file I/O

    @property
    def _file(self) -> LocalFlagFile:
        return LocalFlagFile(self.path, "gateway config")

    def _load(self) -> dict[str, Any]:
        data = self._file.parse(yaml.safe_load, (yaml.YAMLError,), "valid YAML")
        if data is None:
            raise BackendError(
                f"gateway config {self.path} does not exist",
                hint="point `path:` at the gateway's config file (LiteLLM's config.yaml)",
            )
        if not isinstance(data, dict) or not isinstance(data.get("model_list"), list):
            raise BackendError(
                f"gateway config {self.path}: expected a mapping with a `model_list:` list",
                hint=self._file.restore_hint,
            )
        return data

    def _write(self, data: dict[str, Any]) -> None:
        text = yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True)
        self._file.write_bytes(text.encode())

    # ------------------------------------------------------------ the model group

    def _group(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        return [
            entry
            for entry in data["model_list"]
            if isinstance(entry, dict) and entry.get("model_name") == self.key
        ]

    @staticmethod
    def _names(entry: dict[str, Any]) -> set[str]:
        names = set()
        info, params = entry.get("model_info"), entry.get("litellm_params")
        if isinstance(info, dict) and info.get("id") is not None:
            names.add(str(info["id"]))
        if isinstance(params, dict) and params.get("model") is not None:
            names.add(str(params["model"]))
        return names

    def _find(self, group: list[dict[str, Any]], name: str) -> dict[str, Any] | None:
        by_id = [e for e in group if str((e.get("model_info") or {}).get("id")) == name]
        if by_id:
            return by_id[0]
        by_model = [e for e in group if name in self._names(e)]
        return by_model[0] if by_model else None

    def _split_of(self, data: dict[str, Any]) -> FlagSplit | None:
        group = self._group(data)
        control, canary = self._find(group, self.control), self._find(group, self.canary)
        if control is None:
            return None
        percent = 0.0
        if canary is not None:
            weights = [_params(e).get("weight") for e in group]
            if not all(w is None or _is_weight(w) for w in weights):
                problem = f"a weight of model group {self.key!r} is not a non-negative number"
                return FlagSplit(math.nan, None, fingerprint(group), problem=problem)
            if any(w is not None for w in weights):
                total = sum(float(w or 0) for w in weights)
                mine = float(_params(canary).get("weight") or 0)
                percent = 100.0 * mine / total if total else 0.0
            else:  # no weights: LiteLLM spreads requests evenly over the group
                percent = 100.0 / len(group)
        return FlagSplit(percent, None, fingerprint(group))

    def read(self) -> FlagSplit | None:
        return self._split_of(self._load())

    def _apply(self, percent: float) -> FlagSplit:
        with self._file.locked():
            return self._apply_locked(percent)

    def _apply_locked(self, percent: float) -> FlagSplit:
        data = self._load()
        group = self._group(data)
        control, canary = self._find(group, self.control), self._find(group, self.canary)
        missing = [n for n, e in ((self.control, control), (self.canary, canary)) if e is None]
        if missing:
            raise BackendError(
                f"gateway config {self.path}: model group {self.key!r} has no deployment "
                f"{' or '.join(repr(m) for m in missing)}; nothing was changed",
                hint=f"add the deployment to `model_list` under model_name {self.key!r} "
                "(matched by model_info.id or litellm_params.model), then run this again",
            )
        assert control is not None and canary is not None
        for entry, weight in ((control, 100.0 - percent), (canary, percent)):
            params = entry.setdefault("litellm_params", {})
            params["weight"] = _weight(weight)
        others = [e for e in group if e is not control and e is not canary]
        for entry in others:  # other deployments of the group would take a share of traffic
            entry.setdefault("litellm_params", {})["weight"] = 0
        self._write(data)
        split = self.read()
        if split is None or not math.isclose(split.canary_percent, percent, abs_tol=1e-6):
            raise BackendError(
                f"gateway config {self.path}: read-back of group {self.key!r} does not show "
                f"{percent:g}% to {self.canary!r}",
                hint="another process may be writing the file; check it by hand",
            )
        return split

    def set_split(
        self, canary_percent: float, scope: Any, *, rollout: str, stage: str
    ) -> FlagSplit:
        if scope is not None:
            raise BackendError(
                f"stage {stage!r} is scoped, and the gateway backend cannot target segments "
                "(a weight list splits all traffic of a model group); nothing was changed",
                hint="remove the stage's `scope:` (or use `scope: all`), or use the file backend",
            )
        return self._apply(canary_percent)

    def rollback(self, *, rollout: str, reason: str) -> FlagSplit:
        return self._apply(0.0)

    # ------------------------------------------------------------ controls

    def set_control(self, key: str, value: Any) -> None:
        with self._file.locked():
            data = self._load()
            controls = data.get(CONTROLS_KEY)
            if not isinstance(controls, dict):
                controls = data[CONTROLS_KEY] = {}
            controls[key] = value
            self._write(data)
            written = self.read_control(key)
        if written != value:
            raise BackendError(
                f"gateway config {self.path}: read-back of control {key!r} does not show {value!r}",
                hint=f"set {CONTROLS_KEY}.{key} in {self.path} by hand",
            )

    def remove_control(self, key: str) -> None:
        with self._file.locked():
            data = self._load()
            controls = data.get(CONTROLS_KEY)
            if isinstance(controls, dict) and key in controls:
                del controls[key]
                if not controls:
                    del data[CONTROLS_KEY]
                self._write(data)

    def read_control(self, key: str) -> Any:
        controls = self._load().get(CONTROLS_KEY)
        return controls.get(key) if isinstance(controls, dict) else None
