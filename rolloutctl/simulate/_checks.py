"""Argument checks shared by every generator, so each rejects bad input with the same
UsageError and hint."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

import numpy as np
import pandas as pd

from rolloutctl.errors import UsageError


def _utc_ns(value: datetime, name: str) -> int:
    if value.tzinfo is None or value.utcoffset() is None:
        raise UsageError(
            f"{name} must be timezone-aware, got {value.isoformat()}",
            hint="pass UTC times, e.g. datetime(2026, 1, 1, tzinfo=timezone.utc)",
        )
    return int(pd.Timestamp(value).tz_convert("UTC").value)


def _scenario(name: str, valid: Mapping[str, str], kind: str) -> None:
    if name not in valid:
        raise UsageError(
            f"unknown {kind}scenario {name!r}; valid scenarios: {', '.join(valid)}",
            hint="`rolloutctl simulate --help` describes each scenario",
        )


def _window(start: datetime, end: datetime) -> tuple[int, int]:
    start_ns = _utc_ns(start, "start")
    end_ns = _utc_ns(end, "end")
    if end_ns <= start_ns:
        raise UsageError(f"end ({end.isoformat()}) must be after start ({start.isoformat()})")
    return start_ns, end_ns


def _check_rate_and_seed(requests_per_hour: float, seed: int) -> None:
    if not np.isfinite(requests_per_hour) or requests_per_hour < 0:
        raise UsageError(f"requests_per_hour must be >= 0, got {requests_per_hour}")
    if seed < 0:
        raise UsageError(f"seed must be >= 0, got {seed}")
