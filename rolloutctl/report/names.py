"""Report file names, known before anything is drawn (standard library only): the gate
prints its report's path with the verdict, and the page is written after."""

from __future__ import annotations

import re
from datetime import datetime


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip("-") or "x"


def gate_report_name(stage_index: int, stage: str, evaluated_at: str) -> str:
    stamp = datetime.fromisoformat(evaluated_at).strftime("%Y%m%dT%H%M%SZ")
    return f"gate-{stage_index:02d}-{slug(stage)}-{stamp}.html"
