"""The `http` flag backend: a generic JSON webhook for flag systems rolloutctl has no backend for.

Contract (README, "Flag backends"):

- every change is `POST url` with a JSON body
  `{rollout, stage, flag, control, canary, canary_percent, scope, action}`; `action` is
  `set_split`, `rollback`, `set_control` (which also carries `value`) or `remove_control`
  (a control flag rolloutctl created, reverted); any 2xx accepts.
- `GET read_url?flag=KEY` answers the flag as it is now: `{"canary_percent": N, "scope": ...,
  "version": ...}` for the rollout flag (`scope` and `version` optional), `{"value": V}` for a
  control flag; 404 means the flag does not exist.

Every change is read back through `read_url`. URLs and header values may name environment
variables (`${FLAG_WEBHOOK_URL}`), expanded when the backend is built so state.json keeps the
reference, not the secret; messages name only the scheme and host of a URL."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any, ClassVar

from rolloutctl.errors import BackendError
from rolloutctl.flags.base import FlagSplit
from rolloutctl.transport import (
    DEFAULT_BACKOFF,
    DEFAULT_RETRIES,
    Client,
    expand_env,
    fingerprint,
    json_of,
    request,
    seconds,
)


@dataclass
class WebhookFlagBackend:
    KIND: ClassVar[str] = "http"
    url: str
    read_url: str
    key: str
    control: str
    canary: str
    headers: dict[str, str] = field(default_factory=dict)
    timeout: float = 10.0
    retries: int = DEFAULT_RETRIES
    backoff: float = DEFAULT_BACKOFF
    transport: Any = None  # an httpx transport (tests)

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> WebhookFlagBackend:
        what = f"flag {spec.get('key')!r} (backend http)"
        headers = {k: expand_env(str(v), what=what) for k, v in (spec.get("headers") or {}).items()}
        token_env = spec.get("token_env")
        if token_env:
            token = os.environ.get(token_env)
            if not token:
                raise BackendError(
                    f"{what}: environment variable {token_env} (the webhook's token) is not set",
                    hint=f"export {token_env}=... and run the command again",
                )
            headers["Authorization"] = f"Bearer {token}"
        return cls(
            url=expand_env(spec["url"], what=what),
            read_url=expand_env(spec["read_url"], what=what),
            key=spec["key"],
            control=spec["control"],
            canary=spec["canary"],
            headers=headers,
            timeout=seconds(spec.get("timeout")),
            retries=int(spec.get("retries", DEFAULT_RETRIES)),
        )

    # ------------------------------------------------------------ transport

    def _client(self) -> Client:
        return Client(timeout=self.timeout, headers=self.headers, transport=self.transport)

    def _get(self, key: str) -> dict[str, Any] | None:
        what = f"flag webhook, reading {key!r}"
        with self._client() as client:
            response = request(
                client,
                "GET",
                self.read_url,
                what=what,
                retries=self.retries,
                backoff=self.backoff,
                allow_404=True,
                params={"flag": key},
            )
        if response is None:
            return None
        data = json_of(response, what=what)
        if not isinstance(data, dict):
            raise BackendError(f"{what}: expected a JSON object, got {type(data).__name__}")
        return data

    def _post(self, body: dict[str, Any]) -> None:
        what = f"flag webhook, {body['action']} of {body['flag']!r}"
        with self._client() as client:
            request(
                client,
                "POST",
                self.url,
                what=what,
                retries=self.retries,
                backoff=self.backoff,
                json=body,
            )

    # ------------------------------------------------------------ the rollout flag

    def _split_of(self, data: dict[str, Any]) -> FlagSplit:
        percent = data.get("canary_percent")
        if not isinstance(percent, int | float) or isinstance(percent, bool):
            raise BackendError(
                f"flag webhook, reading {self.key!r}: expected a number `canary_percent`, "
                f"got {percent!r}",
                hint='the read URL must answer {"canary_percent": N, "scope": ...}',
            )
        scope = data.get("scope")
        seen = {"canary_percent": float(percent), "scope": scope, "version": data.get("version")}
        return FlagSplit(float(percent), scope, fingerprint(seen))

    def read(self) -> FlagSplit | None:
        data = self._get(self.key)
        return None if data is None else self._split_of(data)

    def _apply(
        self, percent: float, scope: Any, *, rollout: str, stage: str, action: str
    ) -> FlagSplit:
        self._post(
            {
                "rollout": rollout,
                "stage": stage,
                "flag": self.key,
                "control": self.control,
                "canary": self.canary,
                "canary_percent": percent,
                "scope": scope,
                "action": action,
            }
        )
        split = self.read()
        if (
            split is None
            or not math.isclose(split.canary_percent, percent, abs_tol=1e-9)
            or (split.scope != scope)
        ):
            now = "missing" if split is None else f"{split.canary_percent:g}% to {self.canary}"
            raise BackendError(
                f"flag webhook: read-back of {self.key!r} does not match what was sent "
                f"({percent:g}% to {self.canary} was sent, the read URL answers {now})",
                hint=f"check flag {self.key!r} in the flag service by hand",
            )
        return split

    def set_split(
        self, canary_percent: float, scope: Any, *, rollout: str, stage: str
    ) -> FlagSplit:
        return self._apply(canary_percent, scope, rollout=rollout, stage=stage, action="set_split")

    def rollback(self, *, rollout: str, reason: str) -> FlagSplit:
        return self._apply(0.0, None, rollout=rollout, stage="rolled-back", action="rollback")

    # ------------------------------------------------------------ controls

    def set_control(self, key: str, value: Any) -> None:
        self._post(
            {
                "rollout": None,
                "stage": None,
                "flag": key,
                "control": None,
                "canary": None,
                "canary_percent": None,
                "scope": None,
                "action": "set_control",
                "value": value,
            }
        )
        if self.read_control(key) != value:
            raise BackendError(
                f"flag webhook: read-back of control {key!r} does not show {value!r}",
                hint=f"set {key!r} to {value!r} in the flag service by hand",
            )

    def remove_control(self, key: str) -> None:
        self._post(
            {
                "rollout": None,
                "stage": None,
                "flag": key,
                "control": None,
                "canary": None,
                "canary_percent": None,
                "scope": None,
                "action": "remove_control",
            }
        )
        if self._get(key) is not None:
            raise BackendError(
                f"flag webhook: control {key!r} still exists after remove_control",
                hint=f"delete flag {key!r} in the flag service by hand",
            )

    def read_control(self, key: str) -> Any:
        data = self._get(key)
        return None if data is None else data.get("value")
