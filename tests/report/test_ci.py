"""CI outputs of a gate (Markdown summary, JUnit XML) from real gate results, including
segment values as hostile as a request log can make them."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import markdown_it
import pytest
import xmlschema

from rolloutctl import gate
from rolloutctl.context import Outcome
from rolloutctl.errors import ExitCode
from rolloutctl.metrics.base import Measurement
from rolloutctl.playbook.model import Playbook
from rolloutctl.report.ci import junit_xml, markdown_summary, md_escape
from rolloutctl.stats.sufficient import Moments, Proportion

XSD = Path(__file__).with_name("junit.xsd")
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
TITLE = "Unsafe | <b>answers</b> *per* _segment_"

SCRIPT = "<script>alert(1)</script>"
IMG = '"><img src=x onerror=alert(1)>'
PIPES = "a | b || c \\| d"
MARKUP = "`rm -rf` *bold* _em_ [link](javascript:alert(1)) ~~s~~ # h"
BREAKS = "line\nbreak\r\n- item\x00\x1b[31m\x07"
LONG = "🙂" * 400 + "\u202eevil"
FAILING = (SCRIPT, IMG, PIPES, MARKUP)  # the canary's unsafe answers jump in these
SEGMENTS = ("health", *FAILING, BREAKS)

PLAYBOOK: dict[str, Any] = {
    "rollout": "ai-search-answer-v3",
    "flag": {
        "backend": "file",
        "path": "flags.json",
        "key": "answer-model",
        "control": "v1",
        "canary": "v2",
    },
    "sources": {"requests": {"kind": "requestlog", "path": "data/*.parquet"}},
    "segments": {"dimensions": ["category"], "critical": {"category": ["health"]}},
    "analysis": {
        "min_samples_per_arm": 1000,
        "min_samples_per_segment": 200,
        "expected_samples_per_arm": 10000,
        "pass_requires": "no_failure",
    },
    "metrics": [
        {
            "name": "error_rate",
            "group": "technical",
            "source": "requests",
            "kind": "proportion",
            "event": "status = 'error'",
            "worse": "higher",
            "margin": {"absolute": 0.01},
            "critical": True,
        },
        {
            "name": "cost_per_request",
            "group": "technical",
            "source": "requests",
            "kind": "mean",
            "value": "cost_usd",
            "worse": "higher",
            "margin": {"relative": 0.5},
            "limit": 0.01,
        },
        {
            "name": "unsafe_answer_rate",
            "title": TITLE,
            "group": "safety",
            "source": "requests",
            "kind": "proportion",
            "event": "safety_violation",
            "worse": "higher",
            "margin": {"absolute": 0.002},
            "critical": True,
            "per_segment": True,
        },
    ],
    "stages": [{"name": "canary-5", "traffic": 20, "min_duration": "1h"}],
    "triggers": [{"name": "error-spike", "when": "canary.error_rate > 0.5", "action": "rollback"}],
}


def _cost(n: int) -> Moments:
    mean, sd = 0.002, 0.001
    return Moments(n, n * mean, n * (sd**2 + mean**2))


def _measurement(regressed: bool) -> Measurement:
    """Per segment: control has 4x the canary's requests (a 20% split); with `regressed`, the
    canary's unsafe answers jump in the FAILING segments and its errors in PIPES."""
    sizes = {s: (6000, 1500) for s in SEGMENTS} | {"health": (8000, 2000), LONG: (160, 40)}
    m = Measurement()
    totals: dict[str, dict[str, Any]] = {
        "error_rate": {},
        "cost_per_request": {},
        "unsafe_answer_rate": {},
    }
    for value, (nc, nt) in sizes.items():
        unsafe_t = nt * 4 // 150 if regressed and value in FAILING else nt // 2000
        errors_t = nt * 6 // 100 if regressed and value == PIPES else nt // 100
        arms = {
            "error_rate": {
                "control": Proportion(nc, nc // 100),
                "canary": Proportion(nt, errors_t),
            },
            "cost_per_request": {"control": _cost(nc), "canary": _cost(nt)},
            "unsafe_answer_rate": {
                "control": Proportion(nc, nc // 2000),
                "canary": Proportion(nt, unsafe_t),
            },
        }
        for name, stats in arms.items():
            m.stats[(name, ("category", value))] = stats
            for arm, stat in stats.items():
                totals[name][arm] = totals[name][arm] + stat if arm in totals[name] else stat
    for name, stats in totals.items():
        m.stats[(name, None)] = stats
    n_control = sum(nc for nc, _ in sizes.values())
    m.arm_counts[None] = {"control": n_control, "canary": sum(nt for _, nt in sizes.values())}
    return m


def _gate_dict(
    regressed: bool = True,
    *,
    errors: dict[str, str] | None = None,
    consecutive_errors: int = 0,
    action: str = "advance",
) -> dict[str, Any]:
    """What `advance --json` prints for this gate: Outcome.to_dict() of the real evaluation."""
    playbook = Playbook.model_validate(PLAYBOOK)
    measurements = {} if errors else {"requests": _measurement(regressed)}
    result = gate.evaluate(
        playbook,
        0,
        measurements,
        errors or {},
        stage_started=START,
        now=START + timedelta(hours=2),
        consecutive_errors=consecutive_errors,
    )
    result.decision = gate.decide(playbook, 0, result)
    result.report = "reports/ai-search-answer-v3/gate-00-canary-5-20260302T110000Z.html"
    code = {
        "pass": ExitCode.OK,
        "fail": ExitCode.GATE_FAILED,
        "inconclusive": ExitCode.GATE_INCONCLUSIVE,
        "error": ExitCode.BACKEND,
    }
    outcome = Outcome(
        playbook.rollout, action, "running", "canary-5", 20.0, "", code[result.verdict], result
    )
    return outcome.to_dict()


@pytest.fixture(scope="module")
def failed() -> dict[str, Any]:
    data = _gate_dict()
    assert data["verdict"] == "fail" and data["decision"] == "rollback"
    return data


# ---------------------------------------------------------------- Markdown


def _cells(row: str) -> list[str]:
    """Split a GFM table row on its unescaped pipes (a pipe after an odd run of backslashes
    is text)."""
    assert row.startswith("|") and row.endswith("|") and not row.endswith("\\|"), row
    cells, current, i = [], "", 1
    while i < len(row) - 1:
        ch = row[i]
        if ch == "\\":
            current += row[i : i + 2]
            i += 2
            continue
        if ch == "|":
            cells.append(current.strip())
            current = ""
        else:
            current += ch
        i += 1
    cells.append(current.strip())
    return cells


def _tables(markdown: str) -> list[list[str]]:
    tables: list[list[str]] = []
    previous = False
    for line in markdown.splitlines():
        is_row = line.startswith("|")
        if is_row and not previous:
            tables.append([])
        if is_row:
            tables[-1].append(line)
        previous = is_row
    return tables


def test_the_decision_comes_first_then_the_reason(failed: dict[str, Any]) -> None:
    lines = markdown_summary(failed).splitlines()
    assert lines[0] == "### ❌ ai-search-answer-v3 · canary-5: gate failed, rolled back"
    assert lines[1] == ""
    assert lines[2].startswith("**Why:** ") and "worse than allowed" in lines[2]
    check = markdown_summary({**failed, "action": "check"}).splitlines()[0]
    assert check.endswith("gate failed, would roll back")


def test_tables_are_valid_gfm_with_the_right_rows(failed: dict[str, Any]) -> None:
    markdown = markdown_summary(failed)
    overall, segments = _tables(markdown)
    assert _cells(overall[0]) == [
        "Metric",
        "Control (n)",
        "Canary (n)",
        "Estimate",
        "Interval",
        "Margin",
        "Verdict",
    ]
    assert len(overall) == 2 + 3  # header, alignment, one row per deciding metric overall
    failing = [m for m in failed["metrics"] if m["segment"] and m["verdict"] == "fail"]
    assert len(failing) >= len(FAILING)  # every hostile segment that regressed, plus PIPES' errors
    assert len(segments) == 2 + len(failing)
    for table in (overall, segments):
        widths = {len(_cells(row)) for row in table}
        assert widths == {7}, table
    # Values as the HTML report writes them: percentages, points, relative percent.
    errors = next(row for row in overall if row.startswith("| error rate"))
    overall_rows = {m["name"]: m for m in failed["metrics"] if not m["segment"]}
    control = overall_rows["error_rate"]["control"]["value"]
    assert f"| {control:.3%} (38,160) |" in errors and " pt\\]" in errors
    cost = next(row for row in overall if row.startswith("| cost per request"))
    assert "+50.00%; limit 0.01" in cost
    assert "| 0.2 pt" not in markdown and "+0.200 pt" in markdown
    assert f"[{failed['report'].rsplit('/', 1)[-1].replace('_', chr(92) + '_')}]" in markdown


def test_hostile_text_is_escaped(failed: dict[str, Any]) -> None:
    markdown = markdown_summary(failed)
    for raw in ("<script", "<img", "<b>", "\x00", "\x1b", "\x07", "\u202e"):
        assert raw not in markdown, raw
    assert not re.search(r"(?<!\\)\]\(javascript", markdown)  # no link from data
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in markdown
    assert "Unsafe \\| &lt;b&gt;answers&lt;/b&gt; \\*per\\* \\_segment\\_" in markdown
    assert (
        "\\`rm -rf\\` \\*bold\\* \\_em\\_ \\[link\\](javascript:alert(1)) \\~\\~s\\~\\~ \\# h"
        in markdown
    )
    # A title or segment value can never add a line to a table or open a block.
    for line in markdown.splitlines():
        assert not line.startswith(("- item", "break")), line
    assert md_escape(LONG).endswith("…") and len(md_escape(LONG)) == 120
    assert md_escape("a\\|b") == "a\\\\\\|b"  # the user's backslash cannot unescape our pipe


def test_markdown_renders_as_gfm_tables_without_markup_from_data(failed: dict[str, Any]) -> None:
    # CommonMark with raw HTML allowed (stricter than GitHub, which also sanitizes), plus tables.
    md = markdown_it.MarkdownIt("commonmark").enable(["table", "strikethrough"])
    html = md.render(markdown_summary(failed))
    failing = [m for m in failed["metrics"] if m["segment"] and m["verdict"] == "fail"]
    assert html.count("<table>") == 2
    assert html.count("<tr>") == (1 + 3) + (1 + len(failing))
    for tag in ("<script", "<img", "<b>", "<em>", "<code>", "<s>", "<h1"):
        assert tag not in html, tag
    assert re.findall(r"<a [^>]*>", html) == [f'<a href="{failed["report"]}">']  # ours alone
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<td>category=a | b || c \\| d</td>" in html
    assert html.startswith("<h3>❌ ai-search-answer-v3 · canary-5: gate failed, rolled back</h3>")


# ---------------------------------------------------------------- JUnit XML


def _validate(xml: str) -> None:
    xmlschema.XMLSchema(str(XSD)).validate(xml)


def _counts(suite: ET.Element) -> dict[str, int]:
    cases = suite.findall("testcase")
    return {
        "tests": len(cases),
        "failures": sum(1 for c in cases if c.find("failure") is not None),
        "errors": sum(1 for c in cases if c.find("error") is not None),
        "skipped": sum(1 for c in cases if c.find("skipped") is not None),
    }


def _case(suite: ET.Element, name: str) -> ET.Element:
    found = [c for c in suite.findall("testcase") if c.get("name") == name]
    assert len(found) == 1, (name, [c.get("name") for c in suite.findall("testcase")])
    return found[0]


def test_junit_validates_against_the_jenkins_schema(failed: dict[str, Any]) -> None:
    _validate(junit_xml(failed))
    _validate(junit_xml(_gate_dict(regressed=False)))
    _validate(junit_xml(_gate_dict(errors={"requests": "connection refused"})))
    schema = xmlschema.XMLSchema(str(XSD))  # the schema itself is strict enough to catch drift
    assert not schema.is_valid(junit_xml(failed).replace("<skipped>", '<skipped message="x">', 1))


def test_junit_counts_match_its_testcases(failed: dict[str, Any]) -> None:
    root = ET.fromstring(junit_xml(failed))
    assert root.tag == "testsuites"
    (suite,) = root.findall("testsuite")
    counts = _counts(suite)
    for key, value in counts.items():
        assert suite.get(key) == str(value), key
    for key in ("tests", "failures", "errors"):
        assert root.get(key) == str(counts[key])
    rows = len(failed["metrics"])
    limits = 1  # cost_per_request has a limit
    extra = 1 + len(failed["triggers"]) + 2  # sample ratio, triggers, min duration and samples
    assert counts["tests"] == rows + limits + extra
    assert counts["failures"] == sum(
        1 for m in failed["metrics"] if m["verdict"] == "fail" and m["vetoes"]
    )
    assert counts["failures"] >= 1 + len(FAILING)  # overall plus each regressed segment
    assert suite.get("timestamp") == "2026-03-02T11:00:00"
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props["verdict"] == "fail" and props["decision"] == "rollback"


def test_a_failing_metric_carries_its_reason(failed: dict[str, Any]) -> None:
    suite = ET.fromstring(junit_xml(failed)).find("testsuite")
    assert suite is not None
    for name in ("unsafe_answer_rate", f"unsafe_answer_rate[category={SCRIPT}]"):
        failure = _case(suite, name).find("failure")
        assert failure is not None and failure.get("type") == "regression"
        message = failure.get("message") or ""
        assert "is worse than allowed" in message and TITLE in message
        for part in (
            "control ",
            "→ canary ",
            "estimate +",
            "margin +0.200 pt",
            "always-valid p ",
            "adjusted ",
        ):
            assert part in message, part
    assert _case(suite, "error_rate").find("failure") is None
    # Errors up in one segment where error rate does not veto: shown, never a failure.
    diagnostic = _case(suite, f"error_rate[category={PIPES}]")
    assert diagnostic.find("failure") is None
    assert "does not veto" in (diagnostic.findtext("system-out") or "")
    # Too few requests to judge: skipped, saying why (junit-4.xsd: the why is the text).
    skipped = _case_prefix(suite, "unsafe_answer_rate[category=🙂")
    assert "too few samples" in (skipped.findtext("skipped") or "")
    assert _case(suite, "trigger[error-spike]").find("failure") is None
    assert _case(suite, "sample_ratio").find("error") is None


def _case_prefix(suite: ET.Element, prefix: str) -> ET.Element:
    found = [c for c in suite.findall("testcase") if (c.get("name") or "").startswith(prefix)]
    assert len(found) == 1, prefix
    return found[0]


def test_hostile_text_is_escaped_and_stripped_in_xml(failed: dict[str, Any]) -> None:
    xml = junit_xml(failed)
    for raw in ("<script", "<img", "<b>", "\x00", "\x1b", "\x07"):
        assert raw not in xml, raw
    suite = ET.fromstring(xml).find("testsuite")
    assert suite is not None
    names = {c.get("name") for c in suite.findall("testcase")}
    assert f"unsafe_answer_rate[category={IMG}]" in names  # escaped on the wire, intact parsed
    assert "unsafe_answer_rate[category=line break - item[31m]" in names
    long_name = _case_prefix(suite, "unsafe_answer_rate[category=🙂").get("name") or ""
    assert len(long_name) <= 300 and "…" in long_name


def test_measurement_errors_are_junit_errors() -> None:
    holding = _gate_dict(errors={"requests": "connection refused"})
    assert holding["verdict"] == "inconclusive" and holding["errors"] == 3
    suite = ET.fromstring(junit_xml(holding)).find("testsuite")
    assert suite is not None
    # Each metric without a measurement is an <error> in its own testcase, with its cause.
    failing = [m["name"] for m in holding["metrics"] if m["verdict"] == "error"]
    assert len(failing) == 3
    for name in failing:
        error = _case(suite, name).find("error")
        assert error is not None and "connection refused" in (error.get("message") or "")
    assert suite.get("errors") == "3"
    given_up = _gate_dict(errors={"requests": "connection refused"}, consecutive_errors=3)
    assert given_up["verdict"] == "error"
    first = markdown_summary(given_up).splitlines()[0]
    assert first == "### ⚠️ ai-search-answer-v3 · canary-5: gate error, holding"


def test_a_healthy_gate_passes_in_both_outputs() -> None:
    data = _gate_dict(regressed=False)
    assert data["verdict"] == "pass" and data["decision"] == "complete"
    markdown = markdown_summary(data)
    assert markdown.splitlines()[0] == (
        "### ✅ ai-search-answer-v3 · canary-5: gate passed, completed"
    )
    assert "Failing segments" not in markdown and "✅ OK" in markdown
    suite = ET.fromstring(junit_xml(data)).find("testsuite")
    assert suite is not None
    assert (suite.get("failures"), suite.get("errors")) == ("0", "0")
    assert suite.get("tests") == str(_counts(suite)["tests"])


def test_a_command_without_a_gate_still_writes_both() -> None:
    paused = {
        "rollout": "ai-search-answer-v3",
        "action": "advance",
        "status": "paused",
        "stage": "canary-5",
        "canary_percent": 5.0,
        "exit_code": 12,
        "warnings": [],
        "message": "ai-search-answer-v3 is paused (holiday | <freeze>)",
    }
    first = markdown_summary(paused).splitlines()[0]
    assert first.startswith("### ⏸️ ai-search-answer-v3 · canary-5: ") and "<freeze>" not in first
    xml = junit_xml(paused)
    _validate(xml)
    suite = ET.fromstring(xml).find("testsuite")
    assert suite is not None and suite.get("skipped") == "1"
    assert "holiday | <freeze>" in (_case(suite, "gate").findtext("skipped") or "")
