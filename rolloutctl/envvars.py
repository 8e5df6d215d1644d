"""`${VAR}` and `${VAR:-default}` in playbook values: secrets and endpoints come from the
environment, never from the playbook.

Standard library only: the rollback fast path, the flag backends and notifications expand
references without loading the playbook machinery."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager

from rolloutctl.errors import InvalidInput

ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class UnsetVariable(LookupError):
    """A reference to a variable that is not set and has no default."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def expand(value: str) -> str:
    """The value with every reference replaced; raises UnsetVariable for the first one that
    is unset without a default. Callers turn that into their own error kind."""

    def sub(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in os.environ:
            return os.environ[name]
        if default is not None:
            return default
        raise UnsetVariable(name)

    return ENV_REF.sub(sub, value)


def references(text: str) -> list[str]:
    """The variables a text reads without a default."""
    return sorted({m.group(1) for m in ENV_REF.finditer(text) if m.group(2) is None})


def resolve_env(value: str, *, where: str) -> str:
    """Expand ${VAR} and ${VAR:-default}; an unset variable without default is invalid input."""
    try:
        return expand(value)
    except UnsetVariable as exc:
        raise InvalidInput(
            f"{where}: environment variable {exc.name} is not set",
            hint=f"export {exc.name}=... (the playbook reads it as ${{{exc.name}}})",
        ) from None


@contextmanager
def overridden(**values: str) -> Iterator[None]:
    """The environment with `values` set for the duration, then as it was (the demo's
    endpoint and key, a test server's credentials)."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old
