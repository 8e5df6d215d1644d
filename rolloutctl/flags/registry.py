"""The one place that maps a flag `backend:` to its class."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rolloutctl.errors import InvalidInput
from rolloutctl.flags.base import FlagBackend


def build_backend(spec: dict[str, Any], base_dir: Path | None = None) -> FlagBackend:
    """From the flag section as stored in state.json (plain data: no playbook parsing)."""
    kind = spec.get("backend", "file")
    if kind == "file":
        from rolloutctl.flags.file import FileFlagBackend

        path = Path(spec["path"])
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        return FileFlagBackend(path, spec["key"], spec["control"], spec["canary"])
    raise InvalidInput(f"flag backend {kind!r} is not available (available: file)")
