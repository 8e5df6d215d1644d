"""What a metric on an `http` source needs is what README's HTTP section says it needs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from rolloutctl.playbook.model import Metric

README = Path(__file__).resolve().parents[2] / "README.md"
BASE = {"name": "m", "group": "technical", "source": "h", "worse": "higher"}
NEEDS = {
    "proportion": ["event"],
    "mean": ["value"],
    "quantile": ["value", "q"],
    "ratio": ["numerator", "denominator"],
}


def _http_section() -> str:
    text = README.read_text()
    return re.split(r"\n## ", text.split("## HTTP and eval-file sources", 1)[1])[0]


@pytest.mark.parametrize("kind", sorted(NEEDS))
def test_each_kind_needs_its_fields_without_query_and_readme_says_so(kind: str) -> None:
    spec = {**BASE, "kind": kind, "margin": {"absolute": 0.01}}
    with pytest.raises(ValidationError, match=f"a {kind} metric needs"):
        Metric.model_validate(spec)
    query = {**spec, "query": "$.m"} | ({"q": 0.95} if kind == "quantile" else {})
    Metric.model_validate(query)  # with query: only a quantile's q
    section = " ".join(_http_section().split())
    said = " ".join(f"`{field}:`" for field in NEEDS[kind])
    assert re.search(rf"{' and '.join(f'`{f}:`' for f in NEEDS[kind])} for a {kind}", section), said
