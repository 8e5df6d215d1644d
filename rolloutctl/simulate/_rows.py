"""The request log's rows: hex ids, sessions and text labels, assembled into the documented
columns without a Python loop per row."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from rolloutctl.simulate._hashing import _U64, _Array, _splitmix64

if TYPE_CHECKING:
    from rolloutctl.simulate._population import _Traffic

_SESSION_MS = 30 * 60 * 1000


@functools.cache
def _hex_table() -> _Array:
    """Each 16-bit value -> its four hex digits as UTF-32 code units, packed in two uint64."""
    digits = "0123456789abcdef"
    pairs = np.array([digits[i >> 4] + digits[i & 15] for i in range(256)], dtype="<U2")
    pair64 = pairs.view(np.uint64)
    idx = np.arange(65536)
    return np.stack([pair64[idx >> 8], pair64[idx & 255]], axis=1)


def _string_dtype() -> Any:
    """The dtype pandas itself gives text (str on pandas 3, object before), so frames match
    what read_csv/read_json return."""
    return pd.Series([""]).dtype


def _hex_ids(values: _Array, prefix: str, digits: int) -> pd.Series:
    """Format uint64 values as prefix + lowest `digits` hex digits, without a Python loop."""
    assert len(prefix) == 2 and digits % 4 == 0 and 0 < digits <= 16
    n = len(values)
    quads = digits // 4
    packed = np.empty((n, 1 + 2 * quads), dtype=np.uint64)
    packed[:, 0] = np.array([prefix], dtype="<U2").view(np.uint64)[0]
    table = _hex_table()
    for q in range(quads):
        shift = _U64(16 * (quads - 1 - q))
        word = ((values >> shift) & _U64(0xFFFF)).astype(np.intp)
        packed[:, 1 + 2 * q : 3 + 2 * q] = table[word]
    text = packed.view(f"<U{2 + digits}").reshape(n)
    return pd.Series(text, dtype=_string_dtype())


def _labels(codes: _Array, names: Sequence[str]) -> pd.Series:
    """Integer codes -> a string column, by a vectorised take from the few distinct labels."""
    return pd.Series(pd.Series(list(names), dtype=_string_dtype()).array.take(codes))


def _frame(
    t: _Traffic,
    answers: Mapping[str, _Array],
    variant: pd.Series,
    *,
    rows: _Array | None = None,
    ts_ms: _Array | None = None,
) -> pd.DataFrame:
    """The request-log rows of t picked by `rows` (all when None), in the documented columns.
    ts_ms overrides the logged time (a shadow call is logged after its control call); ids and
    sessions always follow the request itself."""

    def pick(values: _Array) -> _Array:
        return values if rows is None else values[rows]

    n = len(t.ts_ms)
    row_keys = _splitmix64(np.arange(n, dtype=np.uint64) ^ _U64(t.salt))
    unit = t.unit_vals[t.user]
    unit_mix = _splitmix64(unit.astype(np.uint64))
    phase = (unit_mix % _U64(_SESSION_MS)).astype(np.int64)
    session_keys = _splitmix64(unit_mix ^ ((t.ts_ms + phase) // _SESSION_MS).astype(np.uint64))
    unit_ids = _hex_ids(t.unit_vals.astype(np.uint64), "u-", 8).array
    segments = t.segments(rows)
    shown = t.ts_ms if ts_ms is None else ts_ms
    return pd.DataFrame(
        {
            "ts": pd.to_datetime(pick(shown) * 1_000_000, unit="ns", utc=True),
            "request_id": _hex_ids(pick(row_keys), "r-", 16),
            "session_id": _hex_ids(pick(session_keys), "s-", 12),
            "unit_id": pd.Series(unit_ids.take(pick(t.user))),
            "variant": variant,
            **{c: segments[c] for c in segments.columns},
            "status": _labels(pick(answers["status"]), ["ok", "error", "timeout"]),
            **{name: pick(values) for name, values in answers.items() if name != "status"},
        }
    )
