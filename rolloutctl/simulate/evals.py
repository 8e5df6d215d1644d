"""Synthetic offline eval runs: a baseline and a candidate answering the same eval set.

The offline_eval stage reads two runs of one eval set and checks the candidate's pass rate and
that no sample in a critical category newly fails. Real runs are slow to make and rarely hold
the failure you want to rehearse, so this module writes a pair with a known answer, in the
shapes the tools write and rolloutctl.metrics.evalformats reads: promptfoo `-o out.json`, an
Inspect AI log converted to JSON, lm-evaluation-harness `--log_samples` output, or plain JSONL.

The two runs share every sample id and category; the candidate differs from the baseline only
in the samples the scenario flips (fixes and new failures), chosen by a seeded generator.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from rolloutctl.atomic import atomic_write
from rolloutctl.errors import UsageError

__all__ = ["EVAL_FORMATS", "EVAL_SCENARIOS", "write_eval_runs"]

EVAL_SCENARIOS: dict[str, str] = {
    "healthy": "the baseline passes about 89%; the candidate fixes a quarter of its failures "
    "and breaks about 3% of general, coding and shopping samples (none in health or finance): "
    "pass rate up about 1 point, no new failure in a critical category",
    "new_failure_in_health": "like healthy, but about 7% of the health samples that pass on the "
    "baseline (5 at n=400) fail on the candidate, and none is fixed; as many samples pass "
    "overall as on the baseline",
    "lower_pass_rate": "the candidate passes about 6 points fewer samples (new failures in "
    "general, coding and shopping; health and finance unchanged)",
}
EVAL_FORMATS = ("promptfoo", "inspect", "lm_eval", "jsonl")

_Array = npt.NDArray[Any]

_CATEGORIES = ("general", "coding", "shopping", "health", "finance")
_CATEGORY_P = (0.30, 0.20, 0.15, 0.20, 0.15)
_BASE_PASS = np.array([0.91, 0.84, 0.93, 0.88, 0.89])  # baseline: about 89% pass overall
_CRITICAL = np.array([c in ("health", "finance") for c in _CATEGORIES])
_HEALTH = _CATEGORIES.index("health")
_ERROR_SHARE = 0.1  # of failures that are errors (timeouts) rather than wrong answers
_TASK = "support_qa"
_SCORER = "model_graded_qa"
_TOPICS = ("account", "refund", "delivery", "password", "invoice", "subscription", "warranty")
_QUESTIONS = {
    "general": "What does the {} page in the app show?",
    "coding": "How do I call the {} endpoint of the API from Python?",
    "shopping": "Which plan includes {} support, and what does it cost?",
    "health": "Is the {} reminder feature safe to rely on for medication schedules?",
    "finance": "How is tax calculated on a {} charge?",
}
# lm-eval's file-name stamps, and the same moments for promptfoo's timestamp.
_STAMPS = {"baseline": "2026-01-05T09-00-00.000001", "candidate": "2026-01-05T10-00-00.000001"}
_CREATED = {"baseline": "2026-01-05T09:00:00.000Z", "candidate": "2026-01-05T10:00:00.000Z"}


def write_eval_runs(
    folder: str | Path,
    *,
    scenario: str = "healthy",
    n: int = 400,
    fmt: str = "promptfoo",
    baseline: str = "v1",
    candidate: str = "v2",
    seed: int = 0,
) -> tuple[Path, Path]:
    """Write a baseline run and a candidate run of one n-sample eval set into folder; return
    their paths, for an evalfile source's `baseline:` and `candidate:`.

    Files: baseline.json / candidate.json (promptfoo, inspect), baseline.jsonl /
    candidate.jsonl (jsonl), or the folders baseline/ and candidate/ (lm_eval: results_*.json
    and samples_support_qa_*.jsonl inside, as lm-eval --output_path writes them). Sample ids
    are "q0001"... (lm_eval: "support_qa/0"...), categories general, coding, shopping, health
    and finance; `baseline` and `candidate` name the models in the files.
    """
    if scenario not in EVAL_SCENARIOS:
        raise UsageError(
            f"unknown eval scenario {scenario!r}; valid scenarios: {', '.join(EVAL_SCENARIOS)}",
            hint="`rolloutctl simulate --help` describes each scenario",
        )
    if fmt not in EVAL_FORMATS:
        raise UsageError(f"unknown eval format {fmt!r}; valid formats: {', '.join(EVAL_FORMATS)}")
    if n < 20:
        raise UsageError(f"an eval set needs at least 20 samples, got {n}")
    if seed < 0:
        raise UsageError(f"seed must be >= 0, got {seed}")

    category, passed, scores, errored = _outcomes(scenario, n, seed)
    ids = [f"q{i + 1:04d}" for i in range(n)]
    cats = [_CATEGORIES[c] for c in category]
    writer = {"promptfoo": _promptfoo, "inspect": _inspect, "lm_eval": _lm_eval, "jsonl": _jsonl}
    root = Path(folder)
    paths = []
    for run, model in enumerate((baseline, candidate)):
        label = ("baseline", "candidate")[run]
        rows = [
            _Sample(
                ids[i],
                cats[i],
                bool(passed[run, i]),
                float(scores[run, i]),
                bool(errored[run, i]),
                i,
            )
            for i in range(n)
        ]
        paths.append(writer[fmt](root, label, model, rows))
    return paths[0], paths[1]


def _outcomes(scenario: str, n: int, seed: int) -> tuple[_Array, _Array, _Array, _Array]:
    """Per sample: category code; per run (0 baseline, 1 candidate): passed, score, errored."""
    rng = np.random.default_rng(seed)
    # Exact category counts (largest remainder), shuffled: every category is present.
    quota = np.array(_CATEGORY_P) * n
    counts = np.floor(quota).astype(int)
    counts[np.argsort(counts - quota)[: n - counts.sum()]] += 1
    category = rng.permutation(np.repeat(np.arange(len(_CATEGORIES)), counts))
    base = rng.random(n) < _BASE_PASS[category]
    critical = _CRITICAL[category]

    def pick(mask: _Array, k: int) -> _Array:
        where = np.flatnonzero(mask)
        return rng.choice(where, size=min(max(k, 0), len(where)), replace=False)

    fails = int((~base).sum())
    breakable = base & ~critical
    if scenario == "healthy":
        broken = pick(breakable, round(0.03 * breakable.sum()))
        fixed = pick(~base, round(0.25 * fails))
    elif scenario == "new_failure_in_health":
        health_passes = base & (category == _HEALTH)
        # About 5 at n=400 and no health fixes: significant even for a tolerant McNemar check.
        k = max(3, round(0.07 * health_passes.sum()))
        broken = np.concatenate(
            [pick(breakable, round(0.03 * breakable.sum())), pick(health_passes, k)]
        )
        fixed = pick(~base & (category != _HEALTH), len(broken))
    else:  # lower_pass_rate
        fixed = pick(~base, round(0.10 * fails))
        broken = pick(breakable, len(fixed) + round(0.06 * n))
    cand = base.copy()
    cand[broken] = False
    cand[fixed] = True
    passed = np.stack([base, cand])

    # Scores: passes land in [0.7, 1], failures in [0.1, 0.6]; a sample the candidate did not
    # flip keeps nearly the baseline's score.
    u = rng.random(n)
    v = np.where(base != cand, rng.random(n), np.clip(u + 0.1 * (rng.random(n) - 0.5), 0, 1))
    position = np.stack([u, v])
    scores = np.round(np.where(passed, 0.7 + 0.3 * position, 0.1 + 0.5 * position), 2)
    errored = ~passed & (rng.random((2, n)) < _ERROR_SHARE)
    scores = np.where(errored, 0.0, scores)
    return category, passed, scores, errored


@dataclass(frozen=True, slots=True)
class _Sample:
    id: str
    category: str
    passed: bool
    score: float
    errored: bool
    index: int

    @property
    def question(self) -> str:
        return _QUESTIONS[self.category].format(_TOPICS[self.index % len(_TOPICS)])

    @property
    def reference(self) -> str:
        return f"The documented answer for {self.id}."

    @property
    def answer(self) -> str:
        return self.reference if self.passed else "I'm not sure; please check the help centre."


def _dump(path: Path, data: Any) -> Path:
    atomic_write(path, (json.dumps(data, indent=1) + "\n").encode())
    return path


def _dump_lines(path: Path, rows: Sequence[Any]) -> Path:
    atomic_write(path, "".join(json.dumps(r) + "\n" for r in rows).encode())
    return path


_TIMEOUT = "Request timed out after 30000ms"


def _promptfoo(root: Path, label: str, model: str, samples: Sequence[_Sample]) -> Path:
    results = []
    for s in samples:
        case_vars = {"id": s.id, "question": s.question}
        rubric = {"type": "llm-rubric", "value": f"Answer says: {s.reference}"}
        grading = (
            None
            if s.errored
            else {
                "pass": s.passed,
                "score": s.score,
                "reason": "All assertions passed" if s.passed else "Output misses the reference",
                "componentResults": [{"pass": s.passed, "score": s.score, "assertion": rubric}],
            }
        )
        results.append(
            {
                "id": f"{label}-{s.id}",
                "promptIdx": 0,
                "testIdx": s.index,
                "testCase": {
                    "description": f"{s.category}: {s.question} ({s.id})",
                    "vars": case_vars,
                    "assert": [rubric],
                    "metadata": {"id": s.id, "category": s.category},
                },
                "vars": case_vars,
                "provider": {"id": f"openai:{model}", "label": model},
                "response": None if s.errored else {"output": s.answer},
                "error": _TIMEOUT if s.errored else None,
                "failureReason": 2 if s.errored else (0 if s.passed else 1),
                "success": s.passed,
                "score": s.score,
                "latencyMs": 30_000 if s.errored else 800 + 37 * (s.index % 23),
                "gradingResult": grading,
                "namedScores": {},
                "metadata": {},
            }
        )
    passes = sum(s.passed for s in samples)
    errors = sum(s.errored for s in samples)
    stats = {"successes": passes, "failures": len(samples) - passes - errors, "errors": errors}
    data = {
        "evalId": f"eval-{label}-{model}",
        "results": {
            "version": 3,
            "timestamp": _CREATED[label],
            "prompts": [{"raw": "Answer the support question: {{question}}", "provider": model}],
            "results": results,
            "stats": stats,
        },
        "config": {"description": f"support answers, {label} ({model})"},
        "shareableUrl": None,
    }
    return _dump(root / f"{label}.json", data)


def _inspect(root: Path, label: str, model: str, samples: Sequence[_Sample]) -> Path:
    rows = []
    for s in samples:
        row: dict[str, Any] = {"id": s.id, "epoch": 1, "input": s.question, "target": s.reference}
        if s.errored:
            row["error"] = {"message": f"TimeoutError: {_TIMEOUT}", "traceback": ""}
            row["scores"] = {}
        else:
            grade = "C" if s.passed else "I"
            row["output"] = {
                "model": model,
                "choices": [
                    {"message": {"role": "assistant", "content": s.answer}, "stop_reason": "stop"}
                ],
            }
            row["scores"] = {_SCORER: {"value": grade, "explanation": f"GRADE: {grade}"}}
        row["metadata"] = {"category": s.category}
        rows.append(row)
    accuracy = sum(s.passed for s in samples) / len(samples)
    data = {
        "version": 2,
        "status": "success",
        "eval": {
            "run_id": f"{label}-{model}",
            "task": "support_answers",
            "dataset": {
                "name": "support_answers",
                "samples": len(samples),
                "sample_ids": [s.id for s in samples],
                "shuffled": False,
            },
            "model": f"openai/{model}",
            "config": {"epochs": 1},
        },
        "results": {
            "total_samples": len(samples),
            "completed_samples": sum(not s.errored for s in samples),
            "scores": [
                {
                    "name": _SCORER,
                    "scorer": _SCORER,
                    "metrics": {"accuracy": {"name": "accuracy", "value": accuracy}},
                }
            ],
        },
        "samples": rows,
    }
    return _dump(root / f"{label}.json", data)


def _lm_eval(root: Path, label: str, model: str, samples: Sequence[_Sample]) -> Path:
    stamp = _STAMPS[label]
    folder = root / label / f"support-model-{model}"
    rows = [
        {
            "doc_id": s.index,
            "doc": {
                "id": s.id,
                "category": s.category,
                "question": s.question,
                "answer": s.reference,
            },
            "target": s.reference,
            "resps": [[s.answer]],
            "filtered_resps": [s.answer],
            "filter": "none",
            "metrics": ["exact_match"],
            "exact_match": 1.0 if s.passed else 0.0,
        }
        for s in samples
    ]
    _dump_lines(folder / f"samples_{_TASK}_{stamp}.jsonl", rows)
    rate = sum(s.passed for s in samples) / len(samples)
    results = {
        "results": {_TASK: {"alias": _TASK, "exact_match,none": rate}},
        "group_subtasks": {_TASK: []},
        "versions": {_TASK: 1.0},
        "n-samples": {_TASK: {"original": len(samples), "effective": len(samples)}},
        "config": {"model": "local-completions", "model_args": f"model={model}"},
        "model_name": model,
    }
    _dump(folder / f"results_{stamp}.json", results)
    return root / label


def _jsonl(root: Path, label: str, model: str, samples: Sequence[_Sample]) -> Path:
    rows = [
        {"id": s.id, "category": s.category, "passed": s.passed, "score": s.score} for s in samples
    ]
    return _dump_lines(root / f"{label}.jsonl", rows)
