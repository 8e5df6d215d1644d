"""Comparing a computed JSON value with a reviewed copy (tests/data/*golden*)."""

from __future__ import annotations

import math
from typing import Any


def differences(got: Any, want: Any, where: str) -> list[str]:
    """Where two JSON values differ, numbers compared to 1e-9 relative."""
    if isinstance(want, float) or isinstance(got, float):
        numbers = isinstance(got, int | float) and isinstance(want, int | float)
        if numbers and math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-12):
            return []
        return [f"{where}: {got!r} != {want!r}"]
    if isinstance(want, dict) and isinstance(got, dict):
        if want.keys() != got.keys():
            return [f"{where}: keys {sorted(got)} != {sorted(want)}"]
        return [d for k in want for d in differences(got[k], want[k], f"{where}.{k}")]
    if isinstance(want, list) and isinstance(got, list):
        if len(want) != len(got):
            return [f"{where}: {len(got)} items != {len(want)}: {got!r}"]
        pairs = enumerate(zip(got, want, strict=True))
        return [d for i, (g, w) in pairs for d in differences(g, w, f"{where}[{i}]")]
    return [] if got == want else [f"{where}: {got!r} != {want!r}"]
