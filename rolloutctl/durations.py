"""Durations as people write them in playbooks and flags: 30s, 15m, 2h, 7d, 1w."""

from __future__ import annotations

import re
from datetime import timedelta

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
# The one duration grammar: parse_duration reads it, the playbook schema validates with it.
DURATION_PATTERN = r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)\s*$"
_RE = re.compile(DURATION_PATTERN)


def parse_duration(text: str) -> timedelta:
    match = _RE.match(text)
    if not match:
        raise ValueError(f"not a duration: {text!r} (expected e.g. 30m, 2h, 7d)")
    return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])


def format_duration(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds < 0:
        return "-" + format_duration(-delta)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [
        f"{days}d" if days else "",
        f"{hours}h" if hours else "",
        f"{minutes}m" if minutes else "",
    ]
    text = "".join(parts)
    return text or f"{secs}s"
