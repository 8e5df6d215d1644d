"""A rolloutctl plugin: `kind: counts`, a source that reports the counts a playbook gives it
(what a source wrapping a metrics API returns), and `backend: jsonfile`, a flag backend that
keeps the canary's share in a small JSON file (what a backend wrapping a flag service does)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, ClassVar

from rolloutctl.flags.base import FlagSplit
from rolloutctl.metrics.base import Measurement, MeasureRequest
from rolloutctl.stats.sufficient import Proportion


class CountsSource:
    """sources: {api: {kind: counts, metrics: {error_rate: {control: [n, events], canary:
    [n, events]}}}}"""

    KIND: ClassVar[str] = "counts"

    def __init__(self, name: str, counts: dict[str, dict[str, list[int]]]) -> None:
        self.name, self.counts = name, counts

    @classmethod
    def from_spec(cls, name: str, spec: Any, loaded: Any) -> CountsSource:
        return cls(name, dict((spec.model_extra or {})["metrics"]))

    def measure(self, request: MeasureRequest) -> Measurement:
        out = Measurement(latest=request.end)
        for metric in request.metrics:
            arms = self.counts.get(metric.name)
            if arms is None:
                out.errors[metric.name] = f"source {self.name!r} has no counts for it"
                continue
            out.stats[(metric.name, None)] = {
                "control": Proportion(*arms["control"]),
                "canary": Proportion(*arms["canary"]),
            }
            out.arm_counts.setdefault(
                None, {"control": arms["control"][0], "canary": arms["canary"][0]}
            )
        return out


class JsonFileFlag:
    """flag: {backend: jsonfile, path: FILE, key: K, control: A, canary: B}; the file holds
    {"canary_percent": P, "rollout": NAME, "controls": {...}}."""

    KIND: ClassVar[str] = "jsonfile"

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> JsonFileFlag:
        return cls(Path(spec["path"]))

    def _data(self) -> dict[str, Any] | None:
        if not self.path.exists():
            return None
        data: dict[str, Any] = json.loads(self.path.read_text())
        return data

    def _write(self, data: dict[str, Any]) -> None:
        self.path.write_text(json.dumps(data, sort_keys=True))

    def read(self) -> FlagSplit | None:
        data = self._data()
        if data is None:
            return None
        fingerprint = hashlib.sha256(self.path.read_bytes()).hexdigest()[:16]
        return FlagSplit(
            float(data["canary_percent"]), None, fingerprint, owner=data.get("rollout")
        )

    def set_split(
        self, canary_percent: float, scope: Any, *, rollout: str, stage: str
    ) -> FlagSplit:
        data = self._data() or {}
        self._write({**data, "canary_percent": canary_percent, "rollout": rollout})
        split = self.read()
        assert split is not None
        return split

    def rollback(self, *, rollout: str, reason: str) -> FlagSplit:
        return self.set_split(0.0, None, rollout=rollout, stage="rollback")

    def set_control(self, key: str, value: Any) -> None:
        data = self._data() or {"canary_percent": 0.0}
        self._write({**data, "controls": {**data.get("controls", {}), key: value}})

    def read_control(self, key: str) -> Any:
        return ((self._data() or {}).get("controls") or {}).get(key)

    def remove_control(self, key: str) -> None:
        data = self._data() or {}
        controls = dict(data.get("controls", {}))
        controls.pop(key, None)
        self._write({**data, "controls": controls})
