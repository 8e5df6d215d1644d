"""The smoke stage: a few real calls to the candidate's OpenAI-compatible endpoint before
anyone is exposed (`smoke_calls.py` makes and checks them). Any failed check rolls back."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rolloutctl.durations import parse_duration
from rolloutctl.envvars import resolve_env
from rolloutctl.errors import InvalidInput
from rolloutctl.playbook.load import LoadedPlaybook
from rolloutctl.playbook.model import Stage
from rolloutctl.results import GateResult
from rolloutctl.stages.base import Judged, StageLook, result, row

if TYPE_CHECKING:
    pass


def smoke_settings(loaded: LoadedPlaybook, stage: Stage) -> dict[str, Any]:
    """The smoke stage's call settings with ${ENV} resolved (InvalidInput names a missing
    variable; the key's value is never part of a message)."""
    where = f"{loaded.path}: stage {stage.name}"
    assert stage.endpoint and stage.model
    timeout = parse_duration(stage.timeout).total_seconds() if stage.timeout else 20.0
    limit = parse_duration(stage.max_latency).total_seconds() * 1000 if stage.max_latency else None
    return {
        "endpoint": resolve_env(stage.endpoint, where=where),
        "model": resolve_env(stage.model, where=where),
        "api_key": resolve_env(stage.api_key, where=where) if stage.api_key else None,
        "timeout_s": timeout,
        "route": stage.route,
        "calls": stage.calls,
        "max_latency_ms": limit,
    }


def _gate(look: StageLook) -> GateResult:
    from rolloutctl.stages.smoke_calls import run_smoke

    loaded, stage = look.loaded, look.stage
    settings = smoke_settings(loaded, stage)
    endpoint, model = settings.pop("endpoint"), settings.pop("model")
    try:
        outcome = run_smoke(endpoint, model, **settings)
    except ValueError as exc:
        raise InvalidInput(f"{loaded.path}: stage {stage.name}: {exc}") from None
    rows = [
        row(c.name, c.title, "smoke", "pass" if c.passed else "fail", c.reason, canary=(1, c.value))
        for c in outcome.checks
    ]
    failed = [c for c in outcome.checks if not c.passed]
    if failed:
        reasons = [
            f"smoke test of {outcome.endpoint} ({model}) failed: {c.title}: {c.reason}"
            for c in failed
            if not c.reason.startswith("skipped")
        ]
        return result(
            look,
            verdict="fail",
            reasons=reasons or [failed[0].reason],
            rows=rows,
        )
    return result(
        look,
        verdict="pass",
        rows=rows,
        reasons=[f"all {len(rows)} smoke checks of {outcome.endpoint} ({model}) passed"],
    )


def judge(look: StageLook) -> Judged:
    return Judged(_gate(look))
