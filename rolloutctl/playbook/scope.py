"""Who may get the canary at each stage: a stage's `scope:` holds until a later stage
changes it (`scope: all` lifts it). Cheap to import: the expression parser loads on use."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rolloutctl.playbook.load import LoadedPlaybook


def effective_scopes(loaded: LoadedPlaybook) -> list[Any]:
    """Per stage, the JsonLogic scope (None = everyone); a stage inherits until changed."""
    from rolloutctl.playbook import expr

    scopes: list[Any] = []
    current: Any = None
    for stage in loaded.playbook.stages:
        if stage.scope is not None:
            text = stage.scope.strip()
            current = None if text.lower() == "all" else expr.to_jsonlogic(expr.parse(text))
        scopes.append(current)
    return scopes


def scope_text(loaded: LoadedPlaybook, index: int) -> str | None:
    current: str | None = None
    for stage in loaded.playbook.stages[: index + 1]:
        if stage.scope is not None:
            current = None if stage.scope.strip().lower() == "all" else stage.scope
    return current
