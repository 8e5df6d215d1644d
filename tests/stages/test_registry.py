"""Every stage kind a playbook may name has a module that judges it, behind one interface."""

from __future__ import annotations

import inspect
from typing import get_args

from rolloutctl.playbook.model import StageKind
from rolloutctl.stages import registry
from rolloutctl.stages.base import StageLook


def test_every_kind_a_playbook_accepts_has_a_judge() -> None:
    assert set(registry.KINDS) == set(get_args(StageKind))


def test_each_judge_takes_a_look() -> None:
    for kind in registry.KINDS:
        judge = registry.judge_for(kind).judge
        [parameter] = inspect.signature(judge).parameters.values()
        assert parameter.annotation in ("StageLook", StageLook), kind
        assert inspect.signature(judge).return_annotation in ("Judged",), kind
