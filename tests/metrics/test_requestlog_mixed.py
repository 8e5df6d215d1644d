"""A request-log source given a list that mixes formats reads each and unions them by name."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from rolloutctl import simulate
from rolloutctl.errors import InvalidInput
from rolloutctl.metrics import requestlog
from rolloutctl.metrics.base import MeasureRequest
from rolloutctl.metrics.requestlog import RequestLogSource
from rolloutctl.playbook import expr
from rolloutctl.playbook.model import Metric

START = datetime(2026, 1, 1, tzinfo=UTC)
ERR = Metric.model_validate(
    {
        "name": "err",
        "group": "technical",
        "source": "r",
        "kind": "proportion",
        "event": "status = 'error'",
        "worse": "higher",
        "margin": {"absolute": 0.01},
    }
)


def test_a_list_mixing_jsonl_csv_and_parquet_is_one_log(tmp_path: Path) -> None:
    hour = timedelta(hours=1)
    parts = []
    for i, suffix in enumerate((".jsonl", ".csv", ".parquet")):
        frame = simulate.generate(
            "healthy",
            START + i * hour,
            START + (i + 1) * hour,
            requests_per_hour=3_000,
            canary_percent=30,
            seed=i,
        )
        parts.append((frame, simulate.write(frame, tmp_path / f"part{i}{suffix}")))
    source = RequestLogSource("r", [str(path) for _, path in parts])
    m = source.measure(MeasureRequest((ERR,), START, START + 3 * hour, "v1", "v2", ("category",)))
    for arm, name in (("control", "v1"), ("canary", "v2")):
        rows = [f[f.variant == name] for f, _ in parts]
        assert m.arm_counts[None][arm] == sum(len(r) for r in rows)
        assert m.stats[("err", None)][arm].events == sum(
            int((r.status == "error").sum()) for r in rows
        )
    assert source.time_range() is not None


def test_an_unknown_suffix_is_named(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("ts,variant\n")
    (tmp_path / "b.csv").write_text("ts,variant\n")
    source = RequestLogSource("r", [str(tmp_path / "a.txt"), str(tmp_path / "b.csv")])
    with pytest.raises(InvalidInput, match=r"cannot tell the format of \['.txt'\]"):
        source.measure(MeasureRequest((ERR,), START, START + timedelta(hours=1), "v1", "v2"))


def test_unreadable_csv_lines_are_counted_exactly_across_files(tmp_path: Path) -> None:
    """Data lines that did not become rows, per file: all lines but the header, a last line
    without its newline included. a.csv has 2 bad lines of 5; b.csv 1 of 3 and no final
    newline; c.csv is clean."""
    t = "2026-01-01T00:10:00Z"
    (tmp_path / "a.csv").write_text(
        f"ts,variant,status\n{t},v1,ok\n{t},v2,error\n{t},v1,ok,extra,fields\n{t},v2,ok\n{t}\n"
    )
    (tmp_path / "b.csv").write_text(f"ts,variant,status\n{t},v1,ok\n{t},v2,ok,x,y\n{t},v2,ok")
    (tmp_path / "c.csv").write_text(f"ts,variant,status\n{t},v1,error\n")
    source = RequestLogSource("r", [str(tmp_path / n) for n in ("a.csv", "b.csv", "c.csv")])
    m = source.measure(MeasureRequest((ERR,), START, START + timedelta(hours=1), "v1", "v2"))
    assert m.bad_rows == {"unreadable CSV lines": 3}
    assert m.arm_counts[None] == {"control": 3, "canary": 3}
    assert m.stats[("err", None)]["canary"].events == 1


@pytest.mark.parametrize(
    ("text", "types", "boolean"),
    [
        ("flag", {"flag": "BOOLEAN"}, True),
        ("flag", {"flag": "INTEGER"}, False),  # 0/1: cast what parses
        ("flag", {}, False),
        ("status = 'error'", {}, True),
        ("x != 1", {}, True),
        ("x < 1", {}, True),
        ("x <= 1", {}, True),
        ("x > 1", {}, True),
        ("x >= 1", {}, True),
        ("flag and other", {"flag": "BOOLEAN", "other": "BOOLEAN"}, True),
        ("flag and other", {"flag": "BOOLEAN", "other": "VARCHAR"}, False),
        ("flag or other", {"flag": "VARCHAR", "other": "BOOLEAN"}, False),
        ("flag or x > 1", {"flag": "BOOLEAN"}, True),
        ("x + 1", {}, False),
        ("status in ('a', 'b')", {}, True),
        ("status is null", {}, True),
        ("not flag", {"flag": "BOOLEAN"}, True),
        ("not flag", {"flag": "VARCHAR"}, False),
        ("1", {}, False),
    ],
)
def test_which_event_expressions_are_boolean_in_sql_already(
    text: str, types: dict[str, str], boolean: bool
) -> None:
    """A proportion's `event` is cast to BOOLEAN (TRY_CAST) unless SQL types it so already."""
    assert requestlog._is_boolean(expr.parse(text), types) is boolean
