"""Gate results for CI: a GitHub-flavoured Markdown summary and JUnit XML.

Both take the dict of a gate command's `Outcome.to_dict()` (the GateResult keys plus the
command's `action`, `message` and `exit_code`) and return text; the CLI writes the files.

Segment values come from request logs and metric titles from playbooks, so every value that
is not rolloutctl's own wording is treated as hostile: in Markdown it is escaped and kept on
one line (a `|` or a newline must not break a table, `<script>` must stay text); in XML it is
escaped by ElementTree and stripped of the characters XML 1.0 forbids.

The JUnit document follows the Jenkins / Ant schema (`junit-4.xsd`): one testcase per check
of the gate (each metric row overall and per segment, each absolute limit, the sample ratio,
each trigger, the stage's minimum duration and samples, and the measurements themselves).
"""

from __future__ import annotations

import re
import unicodedata
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from typing import Any

from rolloutctl import formatting as fmt

__all__ = ["error_junit_xml", "error_markdown", "junit_xml", "markdown_summary"]

# ---------------------------------------------------------------- numbers (as the HTML report)


# ---------------------------------------------------------------- hostile text

# Bidirectional overrides and isolates can make a segment value display as something else.
_BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_LINE_BREAKS = frozenset("\t\n\r\v\f\x85\u2028\u2029")


def _one_line(value: Any, limit: int) -> str:
    """One line of printable text, at most `limit` characters (then an ellipsis)."""
    text = "" if value is None else str(value)
    text = text[: limit * 4]  # bound the work on very long values before looking at each char
    kept: list[str] = []
    for ch in text:
        if ch in _LINE_BREAKS:
            kept.append(" ")
        elif ch in _BIDI or unicodedata.category(ch) in ("Cc", "Cs", "Co", "Cn"):
            continue
        else:
            kept.append(ch)
    text = " ".join("".join(kept).split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


_MD_PUNCT = re.compile(r"([\\`*_\[\]|~#])")


def md_escape(value: Any, limit: int = 120) -> str:
    """Text that renders as itself in GFM, on one line, inside or outside a table cell."""
    text = _MD_PUNCT.sub(r"\\\1", _one_line(value, limit))
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _md_line_start(text: str) -> str:
    """Escape what would open a block (list, quote, heading, rule) at the start of a line."""
    if re.match(r"[-+=>]", text):
        return "\\" + text
    match = re.match(r"(\d+)([.)])", text)
    if match:
        return f"{match.group(1)}\\{text[len(match.group(1)) :]}"
    return text


# XML 1.0 allows tab, newline, carriage return and these ranges; nothing else.
_XML_FORBIDDEN = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def xml_text(value: Any, limit: int = 4000) -> str:
    text = _XML_FORBIDDEN.sub("", "" if value is None else str(value))
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ---------------------------------------------------------------- wording shared by both

_VERDICT_WORDS = {
    "pass": "gate passed",
    "fail": "gate failed",
    "inconclusive": "gate inconclusive",
    "error": "gate error",
}
_STATUS_MARK = {"pass": "✅", "fail": "❌", "inconclusive": "⏳", "error": "⚠️"}
_DONE = {
    "advance": "advanced",
    "complete": "completed",
    "hold": "holding",
    "pause": "paused",
    "rollback": "rolled back",
}
_WOULD = {
    "advance": "would advance",
    "complete": "would complete",
    "hold": "would hold",
    "pause": "would pause",
    "rollback": "would roll back",
}


def _decision_phrase(data: dict[str, Any]) -> str:
    decision = str(data.get("decision") or "")
    table = _WOULD if data.get("action") == "check" else _DONE
    return table.get(decision, decision or "no decision")


def _segment_text(segment: dict[str, Any] | None) -> str:
    if not segment:
        return ""
    return ", ".join(f"{k}={v}" for k, v in segment.items())


def _relative(m: dict[str, Any]) -> bool:
    return m.get("margin_kind") == "relative"


def _arm(m: dict[str, Any], arm: str) -> str:
    side = m.get(arm) or {}
    return f"{fmt.value(side.get('value'), m.get('kind', ''))} ({fmt.value(side.get('n'))})"


def _interval(m: dict[str, Any]) -> tuple[str, str]:
    ci = [*(m.get("ci") or []), None, None]
    kind, rel = m.get("kind", ""), _relative(m)
    return fmt.delta(ci[0], kind, rel), fmt.delta(ci[1], kind, rel)


def _margin(m: dict[str, Any]) -> str:
    text = fmt.delta(m.get("margin"), m.get("kind", ""), _relative(m))
    if m.get("limit") is not None:
        text += f"; limit {fmt.value(m.get('limit'), m.get('kind', ''))}"
    return text


def _detail(m: dict[str, Any]) -> str:
    """The numbers behind one comparison, in one sentence."""
    lo, hi = _interval(m)
    kind, rel = m.get("kind", ""), _relative(m)
    text = (
        f"control {_arm(m, 'control')} → canary {_arm(m, 'canary')}; "
        f"estimate {fmt.delta(m.get('estimate'), kind, rel)}, interval [{lo}, {hi}], "
        f"margin {fmt.delta(m.get('margin'), kind, rel)} (worse is {m.get('worse', '?')}); "
        f"{fmt.p_name(m.get('test'))} {fmt.p_is(m.get('p_value'))}, "
        f"adjusted {fmt.p_value(m.get('p_adjusted'))}"
    )
    if fmt.finite(m.get("alpha")):
        text += f", α = {m['alpha']:.3g}"
        if fmt.finite(m.get("alpha_pass")) and m["alpha_pass"] != m["alpha"]:
            text += f" to fail, {m['alpha_pass']:.3g} to pass"
    if m.get("test"):
        text += f"; test: {m['test']}"
    if m.get("note"):
        text += f"; {m['note']}"
    return text


def _label(m: dict[str, Any]) -> str:
    where = _segment_text(m.get("segment"))
    return str(m.get("title") or m.get("name") or "?") + (f" in {where}" if where else "")


def _find_reason(data: dict[str, Any], *starts: str, contains: str = "") -> str | None:
    for reason in data.get("reasons") or []:
        text = str(reason)
        if text.startswith(starts) and contains in text:
            return text
    return None


# ---------------------------------------------------------------- Markdown

_MD_ROW_LIMIT = 25
_OVERALL_HEAD = ("Metric", "Control (n)", "Canary (n)", "Estimate", "Interval", "Margin", "Verdict")
_OVERALL_ALIGN = "|---|--:|--:|--:|--:|--:|---|"
_SEGMENT_HEAD = (
    "Metric",
    "Segment",
    "Control (n)",
    "Canary (n)",
    "Estimate",
    "Interval",
    "Verdict",
)
_SEGMENT_ALIGN = "|---|---|--:|--:|--:|--:|---|"


def _md_row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _md_table(head: tuple[str, ...], align: str, rows: list[list[str]]) -> list[str]:
    """A GFM table; every row is built with as many cells as the header, already escaped."""
    return [_md_row(list(head)), align, *(_md_row(row) for row in rows)]


def _md_verdict(m: dict[str, Any]) -> str:
    verdict = str(m.get("verdict") or "?")
    if verdict == "fail" and not m.get("vetoes", True):
        return "⚠️ flagged (diagnostic)"
    return f"{_STATUS_MARK.get(verdict, '')} {md_escape(verdict)}".strip()


def _md_numbers(m: dict[str, Any]) -> list[str]:
    """Control (n), canary (n), estimate and interval cells of one comparison."""
    lo, hi = _interval(m)
    estimate = fmt.delta(m.get("estimate"), m.get("kind", ""), _relative(m))
    return [_arm(m, "control"), _arm(m, "canary"), estimate, f"\\[{lo}, {hi}\\]"]


def markdown_summary(data: dict[str, Any]) -> str:
    """A GitHub step summary: decision first, then the evidence in two small tables."""
    rollout, stage = md_escape(data.get("rollout")), md_escape(data.get("stage"))
    verdict = data.get("verdict")
    if verdict is None:  # the command evaluated no gate (already completed, paused, ...)
        mark = "✅" if data.get("exit_code", 0) == 0 else "⏸️"
        message = md_escape(data.get("message"), 300)
        return f"### {mark} {rollout} · {stage}: {message}\n"

    lines = [
        f"### {_STATUS_MARK.get(str(verdict), '❔')} {rollout} · {stage}: "
        f"{_VERDICT_WORDS.get(str(verdict), md_escape(verdict))}, {_decision_phrase(data)}",
        "",
    ]
    reasons = [str(r) for r in data.get("reasons") or []]
    if reasons:
        first = md_escape(reasons[0], 600)
        lines += [f"**Why:** {first}{'' if first.endswith(('.', '…')) else '.'}", ""]
        for reason in reasons[1:6]:
            lines.append(f"- {_md_line_start(md_escape(reason, 400))}")
        if len(reasons) > 6:
            lines.append(f"- …and {len(reasons) - 6} more reasons in the report")
        if len(reasons) > 1:
            lines.append("")

    metrics = [m for m in data.get("metrics") or [] if isinstance(m, dict)]
    overall = [m for m in metrics if not m.get("segment") and not m.get("advisory")]
    if overall:
        rows = [
            [
                md_escape(m.get("title") or m.get("name"))
                + (" (critical)" if m.get("critical") else ""),
                *_md_numbers(m),
                _margin(m),
                _md_verdict(m),
            ]
            for m in overall
        ]
        lines += [*_md_table(_OVERALL_HEAD, _OVERALL_ALIGN, rows), ""]

    failing = [m for m in metrics if m.get("segment") and m.get("verdict") == "fail"]
    failing.sort(key=lambda m: (not m.get("vetoes"), str(m.get("name")), _label(m)))
    if failing:
        rows = [
            [
                md_escape(m.get("title") or m.get("name")),
                md_escape(_segment_text(m.get("segment"))),
                *_md_numbers(m),
                _md_verdict(m),
            ]
            for m in failing[:_MD_ROW_LIMIT]
        ]
        lines += ["**Failing segments**", "", *_md_table(_SEGMENT_HEAD, _SEGMENT_ALIGN, rows), ""]
        if len(failing) > _MD_ROW_LIMIT:
            more = len(failing) - _MD_ROW_LIMIT
            lines += [f"…and {more} more failing segments in the report.", ""]

    srm = data.get("srm") or {}
    if srm:
        lines.append(
            f"**Sample ratio:** {'✅ OK' if srm.get('ok') else '❌ mismatch'} — control "
            f"{fmt.value(srm.get('control_n'))}, canary {fmt.value(srm.get('canary_n'))} "
            f"{md_escape(srm.get('counted') or 'requests')} "
            f"({fmt.value(srm.get('observed_canary_percent'))}% observed, "
            f"{fmt.value(srm.get('expected_canary_percent'))}% configured), "
            f"p {fmt.p_is(srm.get('p_value'))}."
        )
        lines.append("")
    window = data.get("window") or {}
    if window:
        lines += [
            f"**Window:** {md_escape(window.get('start'))} → {md_escape(window.get('end'))} "
            f"({md_escape(data.get('elapsed'))})",
            "",
        ]
    report = data.get("report")
    if report:
        target = re.sub(r"([<>\\])", r"\\\1", _one_line(report, 2000))
        name = md_escape(str(report).replace("\\", "/").rsplit("/", 1)[-1])
        lines += [f"**Report:** [{name}](<{target}>)", ""]
    return "\n".join(lines).rstrip("\n") + "\n"


# ---------------------------------------------------------------- JUnit XML


class _Suite:
    """The testcases of one gate evaluation, built in order."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data
        self.classname = xml_text(f"{data.get('rollout') or '?'}.{data.get('stage') or '?'}", 300)
        self.cases: list[ET.Element] = []

    def case(self, name: str) -> ET.Element:
        element = ET.Element(
            "testcase", {"classname": self.classname, "name": xml_text(name, 300), "time": "0"}
        )
        self.cases.append(element)
        return element


def _child(case: ET.Element, tag: str, text: str, **attrs: str) -> ET.Element:
    element = ET.SubElement(case, tag, {k: xml_text(v, 1000) for k, v in attrs.items()})
    element.text = xml_text(text)
    return element


def _metric_case(suite: _Suite, m: dict[str, Any]) -> None:
    where = _segment_text(m.get("segment"))
    name = str(m.get("name") or "?") + (f"[{_one_line(where, 200)}]" if where else "")
    case = suite.case(name)
    verdict = m.get("verdict")
    label, detail = _label(m), _detail(m)
    if verdict == "fail" and m.get("vetoes", True):
        _child(
            case,
            "failure",
            f"{label}\n{detail}\nquery: {m.get('query') or '—'}",
            message=f"{label} is worse than allowed: {detail}",
            type="regression",
        )
    elif verdict == "fail":
        _child(
            case,
            "system-out",
            f"diagnostic: {label} is flagged (false discovery rate), but this comparison "
            f"does not veto the gate: {detail}",
        )
    elif verdict == "error":
        _child(
            case,
            "error",
            f"{label}\n{detail}",
            message=f"{label}: {m.get('note') or detail}",
            type="measurement",
        )
    elif verdict != "pass":
        # junit-4.xsd gives <skipped> text content and no attributes: the why goes inside.
        _child(
            case, "skipped", f"{verdict}: {label}: {m.get('note') or 'not yet decided'}; {detail}"
        )
    else:
        _child(case, "system-out", f"{label}: {detail}")


def _limit_case(suite: _Suite, m: dict[str, Any]) -> None:
    case = suite.case(f"{m.get('name')}[limit]")
    title = str(m.get("title") or m.get("name"))
    limit = fmt.value(m.get("limit"), m.get("kind", ""))
    breach = _find_reason(suite.data, f"{title}: canary ", contains="beyond the limit")
    if breach:
        _child(case, "failure", breach, message=breach, type="limit")
    elif not fmt.finite((m.get("canary") or {}).get("value")):
        _child(case, "skipped", f"{title}: no canary value yet to hold against the limit {limit}")
    else:
        _child(case, "system-out", f"{title}: canary {_arm(m, 'canary')}, limit {limit}")


def _srm_case(suite: _Suite, srm: dict[str, Any]) -> None:
    case = suite.case("sample_ratio")
    text = (
        f"control {fmt.value(srm.get('control_n'))}, canary {fmt.value(srm.get('canary_n'))} "
        f"{srm.get('counted') or 'requests'}: {fmt.value(srm.get('observed_canary_percent'))}% "
        f"observed, {fmt.value(srm.get('expected_canary_percent'))}% configured; "
        f"chi-square p {fmt.p_is(srm.get('p_value'))}"
    )
    if srm.get("ok"):
        _child(case, "system-out", text)
    else:
        why = _find_reason(suite.data, "sample ratio mismatch") or f"sample ratio mismatch: {text}"
        _child(case, "error", f"{why}\n{text}", message=why, type="sample-ratio-mismatch")


def _trigger_case(suite: _Suite, trig: dict[str, Any]) -> None:
    case = suite.case(f"trigger[{_one_line(trig.get('name'), 200)}]")
    text = f"when {trig.get('when')}: {trig.get('action')}"
    if trig.get("fired"):
        message = f"trigger {trig.get('name')!r} fired ({trig.get('when')}): {trig.get('action')}"
        _child(case, "failure", message, message=message, type=f"trigger-{trig.get('action')}")
    elif not trig.get("evaluated", True):
        _child(case, "skipped", f"not evaluable yet ({text})")
    else:
        _child(case, "system-out", f"did not fire ({text})")


def _readiness_cases(suite: _Suite) -> None:
    data = suite.data
    case = suite.case("min_duration")
    waiting = _find_reason(data, "minimum duration not reached")
    if data.get("min_duration_met") is False or waiting:
        _child(case, "skipped", waiting or "minimum duration not reached")
    else:
        _child(case, "system-out", f"stage window {data.get('elapsed') or '?'}")
    case = suite.case("min_samples")
    waiting = _find_reason(data, "minimum samples not reached", "no requests from one of the arms")
    if waiting:
        _child(case, "skipped", waiting)


def _measurement_case(suite: _Suite) -> None:
    """Measurement errors no metric's own testcase shows (a trigger that cannot be evaluated;
    a gate that errored): each failing metric is an <error> in its own testcase."""
    data = suite.data
    rows = [m for m in data.get("metrics") or [] if isinstance(m, dict)]
    shown = sum(1 for m in rows if m.get("verdict") == "error" and not m.get("segment"))
    if data.get("errors", 0) <= shown and data.get("verdict") != "error":
        return
    case = suite.case("measurements")
    why = _find_reason(data, "no measurement") or "; ".join(map(str, data.get("reasons") or []))
    _child(case, "error", why, message=why or "measurement error", type="measurement")


def junit_xml(data: dict[str, Any]) -> str:
    """JUnit XML (Jenkins / Ant `junit-4.xsd`): one testsuite, one testcase per check."""
    suite = _Suite(data)
    if data.get("verdict") is None:  # the command evaluated no gate (completed, paused, ...)
        case = suite.case("gate")
        message = str(data.get("message") or "no gate evaluated")
        if data.get("exit_code", 0) == 0:
            _child(case, "system-out", message)
        else:
            _child(case, "skipped", message)
    else:
        metrics = [m for m in data.get("metrics") or [] if isinstance(m, dict)]
        for m in metrics:
            _metric_case(suite, m)
        for m in metrics:
            if not m.get("segment") and m.get("limit") is not None and not m.get("advisory"):
                _limit_case(suite, m)
        if data.get("srm"):
            _srm_case(suite, data["srm"])
        for trig in data.get("triggers") or []:
            _trigger_case(suite, trig)
        _readiness_cases(suite)
        _measurement_case(suite)

    def count(tag: str) -> int:
        return sum(1 for c in suite.cases if c.find(tag) is not None)

    totals = {
        "tests": str(len(suite.cases)),
        "failures": str(count("failure")),
        "errors": str(count("error")),
    }
    root = ET.Element("testsuites", {"name": "rolloutctl", **totals, "time": "0"})
    attrs = {"name": suite.classname, **totals, "skipped": str(count("skipped")), "time": "0"}
    stamp = _timestamp(data.get("evaluated_at"))
    if stamp:
        attrs["timestamp"] = stamp
    testsuite = ET.SubElement(root, "testsuite", attrs)
    props = ET.SubElement(testsuite, "properties")
    for key in ("action", "verdict", "decision", "exit_code", "report"):
        if data.get(key) is not None:
            ET.SubElement(props, "property", {"name": key, "value": xml_text(data[key], 1000)})
    window = data.get("window") or {}
    for key in ("start", "end"):
        if window.get(key):
            ET.SubElement(
                props, "property", {"name": f"window.{key}", "value": xml_text(window[key], 100)}
            )
    testsuite.extend(suite.cases)
    reasons = [str(r) for r in data.get("reasons") or []]
    out = ET.SubElement(testsuite, "system-out")
    out.text = xml_text("\n".join([str(data.get("message") or ""), *reasons]).strip(), 20_000)
    ET.indent(root)
    body = ET.tostring(root, encoding="unicode")
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + body + "\n"


def error_markdown(command: str, message: str, hint: str | None, exit_code: int) -> str:
    """The Markdown summary of a gate command that stopped on an error before any verdict."""
    lines = [f"### ⚠️ rolloutctl {md_escape(command)}: error (exit {exit_code})", ""]
    lines.append(_md_line_start(md_escape(message, 2000)))
    if hint:
        lines += ["", "hint: " + md_escape(hint, 500)]
    return "\n".join(lines) + "\n"


def error_junit_xml(command: str, message: str, hint: str | None, exit_code: int) -> str:
    """JUnit XML of a gate command that stopped on an error: one suite, one <error>."""
    attrs = {"tests": "1", "failures": "0", "errors": "1", "time": "0"}
    root = ET.Element("testsuites", {"name": "rolloutctl", **attrs})
    testsuite = ET.SubElement(root, "testsuite", {"name": "rolloutctl", **attrs, "skipped": "0"})
    props = ET.SubElement(testsuite, "properties")
    ET.SubElement(props, "property", {"name": "exit_code", "value": str(exit_code)})
    case = ET.SubElement(testsuite, "testcase", {"name": command, "classname": "rolloutctl"})
    text = message + (f"\nhint: {hint}" if hint else "")
    error = ET.SubElement(
        case, "error", {"message": xml_text(_one_line(message, 1000)), "type": f"exit {exit_code}"}
    )
    error.text = xml_text(text, 20_000)
    ET.indent(root)
    body = ET.tostring(root, encoding="unicode")
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + body + "\n"


def _timestamp(text: Any) -> str | None:
    """Ant's timestamp form: UTC, seconds, no offset."""
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S")
