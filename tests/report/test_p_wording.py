"""A p-value in a sentence reads "p < 0.0001" or "p = 0.012", never "p = < 0.0001"."""

from __future__ import annotations

from pathlib import Path

from rolloutctl import formatting as fmt
from rolloutctl.report.ci import markdown_summary
from rolloutctl.stages import shadow_pairs as shadow

REPORTS = Path(__file__).resolve().parents[2] / "reports"


def test_p_is_one_operator() -> None:
    assert fmt.p_is(1e-7) == "< 0.0001"
    assert fmt.p_is(0.0123) == "= 0.012"
    assert fmt.p_is(0.5) == "= 0.500"
    assert fmt.p_is(None) == "= —"
    assert shadow._p_is(1e-9) == "< 0.0001" and shadow._p_is(0.03) == "= 0.03"


def test_markdown_srm_line_has_one_operator() -> None:
    data = {
        "rollout": "r",
        "stage": "s",
        "verdict": "inconclusive",
        "decision": "hold",
        "reasons": ["sample ratio mismatch"],
        "metrics": [],
        "srm": {
            "ok": False,
            "p_value": 1e-12,
            "control_n": 1000,
            "canary_n": 2000,
            "observed_canary_percent": 66.7,
            "expected_canary_percent": 50,
        },
        "exit_code": 11,
    }
    text = markdown_summary(data)
    assert "p < 0.0001" in text and "= <" not in text


def test_committed_example_report_has_one_operator() -> None:
    for page in REPORTS.rglob("*.html"):
        text = page.read_text()
        assert "= &lt;" not in text and "= <" not in text, page
