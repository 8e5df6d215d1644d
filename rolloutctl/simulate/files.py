"""Writing a request log to disk in a format the gates read, atomically."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

import duckdb
import pandas as pd

from rolloutctl.errors import UsageError

__all__ = ["write"]


def write(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write a request log where the gates can read it, atomically so readers never see half.

    The format follows the suffix: .jsonl (one object per line), .csv or .parquet. In JSONL and
    CSV, timestamps are ISO 8601 UTC with milliseconds and a 'Z'; parquet keeps them typed.
    duckdb does the writing because it is an order of magnitude faster than pandas here.
    """
    target = Path(path)
    fmt = {".jsonl": "json", ".csv": "csv", ".parquet": "parquet"}.get(target.suffix.lower())
    if fmt is None:
        raise UsageError(
            f"cannot write {target}: unknown suffix {target.suffix or '(none)'!r}",
            hint="use a .jsonl, .csv or .parquet file name",
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        _copy_with_duckdb(frame, tmp, fmt)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return target


def _copy_with_duckdb(frame: pd.DataFrame, path: Path, fmt: str) -> None:
    """COPY the frame to path; for text formats, datetimes become ISO 8601 'Z' strings."""
    columns = []
    for name in frame.columns:
        ident = '"' + str(name).replace('"', '""') + '"'
        if fmt != "parquet" and pd.api.types.is_datetime64_any_dtype(frame[name]):
            ident = f"strftime({ident}, '%Y-%m-%dT%H:%M:%S.%gZ') AS {ident}"
        columns.append(ident)
    if fmt != "parquet":
        # Naive UTC wall time, so formatting does not depend on the session's time zone.
        frame = frame.assign(
            **{
                str(c): frame[c].dt.tz_convert(None)
                for c in frame.columns
                if isinstance(frame[c].dtype, pd.DatetimeTZDtype)
            }
        )
    options = {"json": "FORMAT json", "csv": "FORMAT csv, HEADER", "parquet": "FORMAT parquet"}
    literal = str(path).replace("'", "''")
    con = duckdb.connect()
    try:
        con.register("frame_to_write", frame)
        con.execute(
            f"COPY (SELECT {', '.join(columns)} FROM frame_to_write) "
            f"TO '{literal}' ({options[fmt]})"
        )
    finally:
        con.close()
