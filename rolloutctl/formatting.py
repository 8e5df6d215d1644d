"""How numbers read everywhere a person sees them: gate reasons, HTML reports, Markdown and
JUnit. One place, so a value reads the same in the terminal, the report and CI; and numbers as
JSON carries them (`json_safe`: JSON has no NaN or infinity)."""

from __future__ import annotations

import math
from typing import Any


def finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def value(v: Any, kind: str = "", relative: bool = False) -> str:
    """A metric's value: a rate as a percentage, a count with separators, else 4 digits."""
    if not finite(v):
        return "—"
    if relative:
        return f"{v:+.2%}"
    if kind == "proportion":
        return f"{v:.3%}"
    if isinstance(v, int):
        return f"{v:,}"
    return f"{v:.4g}"


def delta(v: Any, kind: str, relative: bool) -> str:
    """A difference (canary − control) or a margin: relative in %, rates in points."""
    if not finite(v):
        return "—"
    if relative:
        return f"{v:+.2%}"
    if kind == "proportion":
        return f"{v * 100:+.3f} pt"
    return f"{v:+.4g}"


def p_value(v: Any) -> str:
    if not finite(v):
        return "—"
    return "< 0.0001" if v < 1e-4 else f"{v:.2g}" if v < 0.01 else f"{v:.3f}"


def p_is(v: Any) -> str:
    """What follows "p" in a sentence: "= 0.012" or "< 0.0001" (never "p = < 0.0001")."""
    text = p_value(v)
    return text if text.startswith("<") else f"= {text}"


def json_safe(value: Any) -> Any:
    """JSON-safe: NaN and infinities become null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def p_name(test: str | None) -> str:
    """How a comparison's p-value is named: a fixed-horizon test's is a plain p, valid at its
    planned end only; a sequential test's is always valid, whenever it is looked at."""
    return "p" if (test or "").endswith(", fixed") else "always-valid p"
