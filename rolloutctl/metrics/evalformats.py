"""Eval result files (promptfoo, Inspect AI, lm-evaluation-harness, plain JSONL) read into
one shape: an EvalRun of records (id, category, passed, score), one per sample.

- promptfoo (`promptfoo eval -o out.json`): `results.results[]`; passed = `success`, score =
  `score`; id from `testCase.metadata.id`, `vars.id`, a unique `testCase.description`, else
  the test's index; category from `testCase.metadata`, the result's `metadata` or `vars`.
- Inspect AI eval logs in JSON (`inspect log convert --to json` for .eval files): `samples[]`;
  score = the chosen scorer's value (C = 1, P = 0.5, I = N = 0, or the number); id = the
  sample id (with `#epoch` when the log has several epochs); category from sample metadata.
- lm-evaluation-harness: per-sample `samples_<task>_<time>.jsonl` (written with
  `--log_samples`, found next to `results_<time>.json` or given directly): id =
  `<task>/<doc_id>`, score = the metric (`acc`, `exact_match`, ...), category = the task; a
  results JSON without sample files is read as aggregate-only pass counts per task
  (`results.<task>["acc,none"]` times `n-samples.<task>.effective`).
- plain JSONL: one `{"id", "category", "passed", "score"}` object a line.

A sample that errored counts as failed: a candidate that crashes is not a candidate that
passes. Numeric scores pass at or above the source's `pass_threshold`."""

from __future__ import annotations

import glob
import json
import math
import os
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rolloutctl.errors import InvalidInput
from rolloutctl.stats.sufficient import Proportion

FORMATS = ("promptfoo", "inspect", "lm_eval", "jsonl")
FIELDS = ("id", "category", "passed", "score")
NO_CATEGORY = "(none)"
_INSPECT_VALUES = {"C": 1.0, "I": 0.0, "P": 0.5, "N": 0.0}
_LM_EVAL_METRICS = ("acc", "exact_match", "acc_norm", "pass@1", "em", "f1")
_SAMPLES_NAME = re.compile(r"^samples_(?P<task>.+)_(?P<stamp>\d{4}-\d{2}-\d{2}T[0-9.\-]+)\.jsonl$")
_RESULTS_NAME = re.compile(r"^results_(?P<stamp>\d{4}-\d{2}-\d{2}T[0-9.\-]+)\.json$")


@dataclass(frozen=True)
class EvalRecord:
    id: str
    category: str
    passed: bool
    score: float | None = None


@dataclass(frozen=True)
class EvalRun:
    """One run of an eval set. `records` is None for aggregate-only results (lm-eval without
    sample files): then only pass counts per category are known."""

    path: str
    format: str
    records: tuple[EvalRecord, ...] | None
    totals: dict[str, Proportion]  # category -> pass counts
    notes: tuple[str, ...] = ()

    @property
    def overall(self) -> Proportion:
        return sum(self.totals.values(), Proportion(0, 0))

    @property
    def has_samples(self) -> bool:
        return self.records is not None


def _totals(records: Iterable[EvalRecord]) -> dict[str, Proportion]:
    totals: dict[str, Proportion] = {}
    for r in records:
        totals[r.category] = totals.get(r.category, Proportion(0, 0)) + Proportion(1, int(r.passed))
    return totals


def _make_run(path: str, fmt: str, records: list[EvalRecord], notes: list[str]) -> EvalRun:
    counts = Counter(r.id for r in records)
    duplicates = sorted(i for i, n in counts.items() if n > 1)
    if duplicates:
        raise InvalidInput(
            f"eval file {path}: {len(duplicates)} sample id(s) appear more than once "
            f"({sample_ids(duplicates)}); expected one result per sample",
            hint="a file must hold one run of one model and prompt; export each run separately",
        )
    if not records:
        raise InvalidInput(f"eval file {path}: no samples found (read as {fmt})")
    return EvalRun(path, fmt, tuple(records), _totals(records), tuple(notes))


def sample_ids(items: list[str], k: int = 5) -> str:
    shown = ", ".join(repr(i) for i in items[:k])
    return shown + (f" and {len(items) - k} more" if len(items) > k else "")


# ------------------------------------------------------------------ reading the formats


@dataclass(frozen=True)
class ReadOptions:
    scorer: str | None = None
    pass_threshold: float = 1.0
    category_field: str = "category"


def _read_json(path: str) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except OSError as exc:
        raise InvalidInput(f"eval file {path}: cannot read it ({exc.strerror})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"eval file {path}: not valid JSON ({exc})") from None


def _read_jsonl(path: str) -> Iterator[tuple[int, dict[str, Any]]]:
    try:
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise InvalidInput(
                        f"eval file {path}:{lineno}: not a JSON object ({exc.msg})"
                    ) from None
                if not isinstance(obj, dict):
                    raise InvalidInput(f"eval file {path}:{lineno}: expected a JSON object")
                yield lineno, obj
    except OSError as exc:
        raise InvalidInput(f"eval file {path}: cannot read it ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"eval file {path}: not UTF-8 text ({exc.reason})") from None


def as_number(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return None


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _category(*sources: Any, key: str) -> str:
    for source in sources:
        if isinstance(source, dict) and source.get(key) not in (None, ""):
            return str(source[key])
    return NO_CATEGORY


def read_promptfoo(path: str, data: Any, opts: ReadOptions) -> EvalRun:
    results = data.get("results") if isinstance(data, dict) else None
    rows = results.get("results") if isinstance(results, dict) else None
    if not isinstance(rows, list):
        raise InvalidInput(
            f"eval file {path}: expected promptfoo output with a results.results list",
            hint="write it with `promptfoo eval -o out.json`",
        )
    descriptions = Counter(_obj(_obj(r).get("testCase")).get("description") for r in rows)
    records = []
    for index, row in enumerate(rows):
        if not isinstance(row, dict) or not isinstance(row.get("success"), bool):
            raise InvalidInput(
                f"eval file {path}: results.results[{index}] has no boolean `success`"
            )
        case = _obj(row.get("testCase"))
        case_meta = _obj(case.get("metadata"))
        variables = row.get("vars") or case.get("vars") or {}
        description = case.get("description")
        if case_meta.get("id") is not None:
            sid = str(case_meta["id"])
        elif isinstance(variables, dict) and variables.get("id") is not None:
            sid = str(variables["id"])
        elif description and descriptions[description] == 1:
            sid = str(description)
        else:
            sid = f"test-{row.get('testIdx', index)}"
        category = _category(case_meta, row.get("metadata"), variables, key=opts.category_field)
        records.append(EvalRecord(sid, category, row["success"], as_number(row.get("score"))))
    return _make_run(path, "promptfoo", records, [])


def _inspect_score(scores: dict[str, Any], opts: ReadOptions, where: str) -> float | None:
    if not scores:
        return None
    name, _, key = (opts.scorer or next(iter(scores))).partition("/")
    if name not in scores:
        raise InvalidInput(
            f"{where}: no scorer {name!r} (scorers: {', '.join(scores)})",
            hint="set sources.<name>.scorer to one of them",
        )
    value = scores[name].get("value") if isinstance(scores[name], dict) else None
    if isinstance(value, dict):
        if key not in value:
            raise InvalidInput(
                f"{where}: scorer {name!r} has several values ({', '.join(value)})",
                hint=f"set sources.<name>.scorer to {name}/<one of them>",
            )
        value = value[key]
    if isinstance(value, str) and value in _INSPECT_VALUES:
        return _INSPECT_VALUES[value]
    number = as_number(value)
    if number is None:
        raise InvalidInput(f"{where}: score value {value!r} is not C/I/P/N, a number or a bool")
    return number


def read_inspect(path: str, data: Any, opts: ReadOptions) -> EvalRun:
    samples = data.get("samples") if isinstance(data, dict) else None
    if not isinstance(samples, list):
        raise InvalidInput(
            f"eval file {path}: expected an Inspect AI log with a samples list",
            hint="logs written with --no-log-samples have no samples; rerun with samples",
        )
    epochs = {s.get("epoch", 1) for s in samples if isinstance(s, dict)}
    notes = [f"{path}: status {data.get('status')!r}"] if data.get("status") != "success" else []
    records = []
    for index, sample in enumerate(samples):
        where = f"eval file {path}: samples[{index}]"
        if not isinstance(sample, dict) or sample.get("id") is None:
            raise InvalidInput(f"{where} has no id")
        sid = str(sample["id"]) + (f"#{sample.get('epoch', 1)}" if len(epochs) > 1 else "")
        scores = _obj(sample.get("scores"))
        score = None if sample.get("error") else _inspect_score(scores, opts, where)
        passed = score is not None and score >= opts.pass_threshold
        category = _category(sample.get("metadata"), key=opts.category_field)
        records.append(EvalRecord(sid, category, passed, score))
    return _make_run(path, "inspect", records, notes)


def _lm_eval_metric(row: dict[str, Any], opts: ReadOptions) -> str | None:
    if opts.scorer:
        return opts.scorer if opts.scorer in row else None
    listed = row.get("metrics")
    candidates = [m for m in listed if isinstance(m, str)] if isinstance(listed, list) else []
    for name in [*_LM_EVAL_METRICS, *candidates]:
        if name in row and as_number(row[name]) is not None:
            return name
    return None


def read_lm_eval_samples(files: list[str], opts: ReadOptions) -> EvalRun:
    records: list[EvalRecord] = []
    notes: list[str] = []
    for path in files:
        match = _SAMPLES_NAME.match(os.path.basename(path))
        task = match["task"] if match else Path(path).stem.removeprefix("samples_")
        rows = list(_read_jsonl(path))
        filters = list(dict.fromkeys(str(r.get("filter", "none")) for _, r in rows))
        chosen = "none" if "none" in filters else (filters[0] if filters else "none")
        if len(filters) > 1:
            notes.append(f"{path}: filters {', '.join(filters)}; using {chosen!r}")
        for lineno, row in rows:
            if str(row.get("filter", "none")) != chosen:
                continue
            if "doc_id" not in row:
                raise InvalidInput(f"eval file {path}:{lineno}: no doc_id (lm-eval sample)")
            metric = _lm_eval_metric(row, opts)
            if metric is None:
                raise InvalidInput(
                    f"eval file {path}:{lineno}: no "
                    f"{opts.scorer or ' / '.join(_LM_EVAL_METRICS)} value",
                    hint="set sources.<name>.scorer to the metric that decides pass",
                )
            score = as_number(row[metric])
            assert score is not None
            category = _category(row.get("doc"), key=opts.category_field)
            category = task if category == NO_CATEGORY else category
            records.append(
                EvalRecord(f"{task}/{row['doc_id']}", category, score >= opts.pass_threshold, score)
            )
    return _make_run(", ".join(files), "lm_eval", records, notes)


def read_lm_eval_results(path: str, data: Any, opts: ReadOptions) -> EvalRun:
    """Aggregate-only: pass counts per task from the rates and sample counts."""
    results, counts = data.get("results"), data.get("n-samples")
    if not isinstance(results, dict):
        raise InvalidInput(f"eval file {path}: expected lm-eval results with a results object")
    groups = set(data.get("groups") or {}) | {
        g for g, subtasks in (data.get("group_subtasks") or {}).items() if subtasks
    }
    totals: dict[str, Proportion] = {}
    for task, values in results.items():
        if task in groups or not isinstance(values, dict):
            continue
        names = [opts.scorer] if opts.scorer else list(_LM_EVAL_METRICS)
        rate = None
        for name in names:
            for key in (f"{name},none", name):
                if as_number(values.get(key)) is not None:
                    rate = as_number(values[key])
                    break
            if rate is not None:
                break
        n_info = counts.get(task) if isinstance(counts, dict) else None
        n = n_info.get("effective", n_info.get("original")) if isinstance(n_info, dict) else None
        if rate is None or not isinstance(n, int):
            raise InvalidInput(
                f"eval file {path}: task {task!r} has no "
                f"{' / '.join(names)} rate with an n-samples count",
                hint="run lm-eval with --log_samples and give the samples_*.jsonl files",
            )
        totals[task] = Proportion(n, round(rate * n))
    if not totals:
        raise InvalidInput(f"eval file {path}: no task results found")
    note = f"{path}: aggregate-only lm-eval results (no per-sample files): pass counts per task"
    return EvalRun(path, "lm_eval", None, totals, (note,))


def read_jsonl(path: str, opts: ReadOptions) -> EvalRun:
    records = []
    for lineno, row in _read_jsonl(path):
        where = f"eval file {path}:{lineno}"
        if row.get("id") is None:
            raise InvalidInput(f"{where}: no id (expected {{id, category, passed, score}})")
        score = as_number(row.get("score"))
        passed = row.get("passed")
        if passed is None and score is not None:
            passed = score >= opts.pass_threshold
        if not isinstance(passed, bool):
            raise InvalidInput(f"{where}: passed must be true or false (or give a score)")
        category = _category(row, key=opts.category_field)
        records.append(EvalRecord(str(row["id"]), category, passed, score))
    return _make_run(path, "jsonl", records, [])


def _detect_json(path: str, data: Any) -> str:
    if isinstance(data, dict):
        results = data.get("results")
        if isinstance(results, dict) and isinstance(results.get("results"), list):
            return "promptfoo"
        if isinstance(data.get("samples"), list) or isinstance(data.get("eval"), dict):
            return "inspect"
        if isinstance(results, dict) and (
            "n-samples" in data or "versions" in data or "configs" in data
        ):
            return "lm_eval"
    raise InvalidInput(
        f"eval file {path}: cannot tell which tool wrote it",
        hint="expected promptfoo output (results.results), an Inspect AI log (samples) or "
        "lm-eval results (results, n-samples); or set sources.<name>.format",
    )


def _expand(pattern: str) -> list[str]:
    """Files named by a path, a glob or an lm-eval output folder."""
    if os.path.isdir(pattern):
        found = sorted(glob.glob(os.path.join(pattern, "**", "results_*.json"), recursive=True))
        if len(found) != 1:
            raise InvalidInput(
                f"eval folder {pattern}: expected one lm-eval results_*.json, found {len(found)}",
                hint="name the results file (or the samples_*.jsonl files) instead",
            )
        return found
    files = sorted(f for f in glob.glob(pattern) if os.path.isfile(f))
    if not files and not glob.has_magic(pattern):
        raise InvalidInput(f"eval file {pattern}: no such file")
    if not files:
        raise InvalidInput(f"eval files {pattern}: no file matches")
    return files


def _siblings(results_path: str) -> list[str]:
    """lm-eval's per-sample files written in the same run as a results_<time>.json."""
    match = _RESULTS_NAME.match(os.path.basename(results_path))
    if not match:
        return []
    folder = os.path.dirname(results_path)
    return sorted(
        f
        for f in glob.glob(os.path.join(glob.escape(folder), "samples_*.jsonl"))
        if (m := _SAMPLES_NAME.match(os.path.basename(f))) and m["stamp"] == match["stamp"]
    )


def read_run(pattern: str, fmt: str = "auto", opts: ReadOptions | None = None) -> EvalRun:
    """Read one eval run (a file, a glob, or an lm-eval output folder) into records."""
    opts = opts or ReadOptions()
    files = _expand(pattern)
    if fmt not in ("auto", *FORMATS):
        raise InvalidInput(f"eval format {fmt!r} is not one of {', '.join(FORMATS)}")
    for path in files:
        if path.endswith(".eval"):
            raise InvalidInput(
                f"eval file {path}: Inspect's binary .eval log; expected its JSON form",
                hint="convert it with `inspect log convert --to json`",
            )
    samples = [f for f in files if _SAMPLES_NAME.match(os.path.basename(f))]
    if fmt in ("auto", "lm_eval") and samples:
        return read_lm_eval_samples(samples, opts)
    if len(files) > 1:
        raise InvalidInput(
            f"eval files {pattern}: {len(files)} files match; expected one run",
            hint="a glob may only name lm-eval samples_*.jsonl files of one run",
        )
    path = files[0]
    lines = path.endswith((".jsonl", ".ndjson"))
    if fmt == "jsonl" or (lines and fmt in ("auto", "lm_eval")):
        first = next(iter(_read_jsonl(path)), None)
        if fmt == "lm_eval" or (fmt == "auto" and first is not None and "doc_id" in first[1]):
            return read_lm_eval_samples([path], opts)
        return read_jsonl(path, opts)
    data = _read_json(path)
    kind = _detect_json(path, data) if fmt == "auto" else fmt
    if kind == "promptfoo":
        return read_promptfoo(path, data, opts)
    if kind == "inspect":
        return read_inspect(path, data, opts)
    siblings = _siblings(path)
    if siblings:
        return read_lm_eval_samples(siblings, opts)
    if not isinstance(data, dict):
        raise InvalidInput(f"eval file {path}: expected a JSON object")
    return read_lm_eval_results(path, data, opts)
