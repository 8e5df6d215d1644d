"""Sources and flag backends from other packages, through entry points (standard library
only: `rollback` may load a flag backend plugin on its fast path).

A package adds a source kind or a flag backend by declaring, in its pyproject.toml:

    [project.entry-points."rolloutctl.sources"]
    clickhouse-http = "my_package.source:ClickHouseHttpSource"

    [project.entry-points."rolloutctl.flags"]
    flipt = "my_package.flag:FliptFlagBackend"

The entry point's name is the playbook's `kind:` (a source) or `backend:` (a flag); a built-in
name cannot be taken. A source class has `from_spec(name, spec, loaded)`, `spec` being the
playbook's source section (its keys in `spec.model_extra`), and `measure(request)` as
`metrics/base.py`'s MetricSource says; a flag backend class has `from_spec(spec)`, `spec`
being the flag section as a dict, and the methods of `flags/base.py`'s FlagBackend. See
docs/plugins.md."""

from __future__ import annotations

from functools import cache
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from rolloutctl.errors import InvalidInput

SOURCES = "rolloutctl.sources"
FLAGS = "rolloutctl.flags"


@cache
def _installed(group: str) -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=group)}


def names(group: str) -> list[str]:
    """The names installed plugins provide in a group."""
    return sorted(_installed(group))


def load(group: str, name: str) -> Any | None:
    """The class a plugin provides under `name`, or None when no installed plugin does."""
    found = _installed(group).get(name)
    if found is None:
        return None
    try:
        return found.load()
    except Exception as exc:  # the plugin's own import failed
        package = found.dist.name if found.dist else found.value
        raise InvalidInput(
            f"the {name!r} plugin ({package}) cannot be loaded: {type(exc).__name__}: {exc}",
            hint=f"reinstall it or check its dependencies: pip install --force-reinstall {package}",
        ) from None
