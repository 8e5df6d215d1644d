"""Optional installs (`pip install 'rolloutctl[EXTRA]'`): their packages are imported only
where a feature needs them, and a missing one is a usage error naming the install."""

from __future__ import annotations

import importlib
from typing import Any

from rolloutctl.errors import UsageError


def require(module: str, extra: str, needed_by: str) -> Any:
    """The module, imported; UsageError (exit 2) naming `pip install` when it is missing."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise UsageError(
            f"{needed_by} needs {module.split('.')[0]}, which is not installed",
            hint=f"pip install 'rolloutctl[{extra}]'",
        ) from None
