"""Which module judges each stage kind. A module is imported only when its kind is judged, so
a smoke or shadow look never loads what a canary gate needs, and the reverse."""

from __future__ import annotations

import importlib
from typing import cast

from rolloutctl.stages.base import Judged, StageJudge, StageLook

# A playbook stage's `kind:` -> the module whose `judge(look)` decides its gate.
KINDS: dict[str, str] = {
    "smoke": "rolloutctl.stages.smoke",
    "offline_eval": "rolloutctl.stages.offline_eval",
    "shadow": "rolloutctl.stages.shadow",
    "canary": "rolloutctl.stages.canary",
    "ab": "rolloutctl.stages.canary",  # the A/B rules live in the gate (gate.ab_metrics)
    "monitor": "rolloutctl.stages.monitor",
}


def judge_for(kind: str) -> StageJudge:
    return cast(StageJudge, importlib.import_module(KINDS[kind]))


def judge(look: StageLook) -> Judged:
    """The gate of the look's stage, by the module of its kind."""
    return judge_for(look.stage.kind).judge(look)
