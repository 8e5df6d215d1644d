"""The one place that maps a flag `backend:` to its class."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rolloutctl.errors import InvalidInput
from rolloutctl.flags.base import FlagBackend

KINDS = ("file", "gateway", "http", "launchdarkly", "unleash")


def _path(spec: dict[str, Any], base_dir: Path | None) -> Path:
    path = Path(spec["path"])
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    return path


def build_backend(spec: dict[str, Any], base_dir: Path | None = None) -> FlagBackend:
    """From the flag section as stored in state.json (plain data: no playbook parsing). Each
    backend module is imported only when its kind is asked for."""
    kind = spec.get("backend", "file")
    if kind == "file":
        from rolloutctl.flags.file import DEFAULT_TARGETING_KEY, FileFlagBackend

        return FileFlagBackend(
            _path(spec, base_dir),
            spec["key"],
            spec["control"],
            spec["canary"],
            spec.get("targeting_key") or DEFAULT_TARGETING_KEY,
        )
    if kind == "gateway":
        from rolloutctl.flags.gateway import GatewayFlagBackend

        return GatewayFlagBackend(
            _path(spec, base_dir), spec["key"], spec["control"], spec["canary"]
        )
    if kind == "http":
        from rolloutctl.flags.webhook import WebhookFlagBackend

        return WebhookFlagBackend.from_spec(spec)
    if kind == "launchdarkly":
        from rolloutctl.flags.launchdarkly import LaunchDarklyFlagBackend

        return LaunchDarklyFlagBackend.from_spec(spec)
    if kind == "unleash":
        from rolloutctl.flags.unleash import UnleashFlagBackend

        return UnleashFlagBackend.from_spec(spec)
    from rolloutctl import plugins

    plugin = plugins.load(plugins.FLAGS, kind)
    if plugin is not None:
        backend: FlagBackend = plugin.from_spec(spec)
        return backend
    available = ", ".join([*KINDS, *plugins.names(plugins.FLAGS)])
    raise InvalidInput(
        f"flag backend {kind!r} is not available (available: {available})",
        hint="a plugin's backend needs its package installed where rolloutctl runs",
    )
