"""Eval result files (promptfoo, Inspect AI, lm-evaluation-harness, plain JSONL) read into
one shape: an EvalRun of records (id, category, passed, score), one per sample.

- promptfoo (`promptfoo eval -o out.json`): `results.results[]`; passed = `success`, score =
  `score`; id from `testCase.metadata.id`, `vars.id`, a unique `testCase.description`, else
  the test's index; category from `testCase.metadata`, the result's `metadata` or `vars`.
  A file that compares several prompts or providers holds one run per (prompt, provider)
  column (`promptIdx`): the source's `prompt` / `provider` pick one, never a mix.
- Inspect AI eval logs, `.eval` (a zip: `header.json`, `samples/*.json`) or JSON: `samples[]`;
  score = the chosen scorer's value (C = 1, P = 0.5, I = N = 0, or the number); id = the
  sample id (with `#epoch` when the log has several epochs); category from sample metadata.
  A log whose status is not `success` (error, cancelled, started) is a run that did not
  complete: its error message is the measurement's error, and its samples are not judged.
- lm-evaluation-harness: per-sample `samples_<task>_<time>.jsonl` (written with
  `--log_samples`, found next to `results_<time>.json` or given directly): id =
  `<task>/<doc_id>`, score = the metric (`acc`, `exact_match`, ...), category = the task; a
  results JSON without sample files is read as aggregate-only pass counts per task
  (`results.<task>["acc,none"]` times `n-samples.<task>.effective`).
- plain JSONL: one `{"id", "category", "passed", "score"}` object a line.

The declared format decides how a file or a folder is read (`auto` recognizes the file); a
folder holds one run: lm-eval's output folder, or one promptfoo, Inspect or JSONL file.

A sample that errored counts as failed: a candidate that crashes is not a candidate that
passes. Numeric scores pass at or above the source's `pass_threshold`."""

from __future__ import annotations

import glob
import json
import math
import os
import re
import zipfile
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rolloutctl.errors import InvalidInput
from rolloutctl.stats.sufficient import Proportion

FORMATS = ("promptfoo", "inspect", "lm_eval", "jsonl")
FORMAT_NAMES = {
    "promptfoo": "promptfoo output",
    "inspect": "an Inspect AI log",
    "lm_eval": "lm-eval results",
    "jsonl": "JSONL records",
}
FIELDS = ("id", "category", "passed", "score")
NO_CATEGORY = "(none)"
_INSPECT_VALUES = {"C": 1.0, "I": 0.0, "P": 0.5, "N": 0.0}
_LM_EVAL_METRICS = ("acc", "exact_match", "acc_norm", "pass@1", "em", "f1")
_SAMPLES_NAME = re.compile(r"^samples_(?P<task>.+)_(?P<stamp>\d{4}-\d{2}-\d{2}T[0-9.\-]+)\.jsonl$")
_RESULTS_NAME = re.compile(r"^results_(?P<stamp>\d{4}-\d{2}-\d{2}T[0-9.\-]+)\.json$")
_FOLDER_FILES = {
    "promptfoo": (".json",),
    "inspect": (".eval", ".json"),
    "jsonl": (".jsonl", ".ndjson"),
}
_INSPECT_LISTING = "logs.json"  # Inspect's index of a log folder, not a log
_INSPECT_UNFINISHED = ("error", "cancelled", "started")


@dataclass(frozen=True)
class EvalRecord:
    id: str
    category: str
    passed: bool
    score: float | None = None


@dataclass(frozen=True)
class EvalRun:
    """One run of an eval set. `records` is None for aggregate-only results (lm-eval without
    sample files): then only pass counts per category are known. `error` says why a run that
    did not complete (the eval tool's own status and message) cannot be judged at all."""

    path: str
    format: str
    records: tuple[EvalRecord, ...] | None
    totals: dict[str, Proportion]  # category -> pass counts
    notes: tuple[str, ...] = ()
    error: str | None = None

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
    prompt: str | None = None  # promptfoo: the prompt (label, file or id) whose results to read
    provider: str | None = None  # promptfoo: the provider (id or label) whose results to read


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
    for index, row in enumerate(rows):
        if not isinstance(row, dict) or not isinstance(row.get("success"), bool):
            raise InvalidInput(
                f"eval file {path}: results.results[{index}] has no boolean `success`"
            )
    assert isinstance(results, dict)
    columns = _promptfoo_columns(results, rows)
    key = _pick_column(path, columns, opts)
    notes = []
    if len(columns) > 1:
        chosen = columns[key]
        notes.append(
            f"{path}: prompt {chosen.prompt!r} on provider {chosen.provider!r} "
            f"({chosen.count} of {len(rows)} results)"
        )
    rows = [row for row in rows if _column_key(row) == key]
    descriptions = Counter(_obj(r.get("testCase")).get("description") for r in rows)
    records = []
    for index, row in enumerate(rows):
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
    return _make_run(path, "promptfoo", records, notes)


@dataclass(frozen=True)
class _Column:
    """One (prompt, provider) column of a promptfoo comparison: one run of the eval set."""

    prompt: str  # as shown
    provider: str
    prompt_names: frozenset[str]  # what `prompt:` may say to pick it
    provider_names: frozenset[str]
    count: int

    def picked_by(self, opts: ReadOptions) -> bool:
        return (opts.prompt is None or _selector(opts.prompt) in self.prompt_names) and (
            opts.provider is None or _selector(opts.provider) in self.provider_names
        )


def _selector(text: str) -> str:
    return text.removeprefix("file://")


def _column_key(row: dict[str, Any]) -> Any:
    index = row.get("promptIdx")
    if isinstance(index, int) and not isinstance(index, bool):
        return index
    provider = row.get("provider")
    return (str(_obj(row.get("prompt")).get("label")), str(_obj(provider).get("id", provider)))


def _promptfoo_columns(results: dict[str, Any], rows: list[Any]) -> dict[Any, _Column]:
    """The file's runs by column, named as promptfoo names them: a prompt by its label (a
    file's prompt is labelled "<file>: <text>"), its file, template or id; a provider by its
    id or label."""
    prompts = results.get("prompts")
    listed: list[Any] = prompts if isinstance(prompts, list) else []
    columns = {}
    for key, count in Counter(_column_key(row) for row in rows).items():
        row = next(r for r in rows if _column_key(r) == key)
        head = _obj(listed[key]) if isinstance(key, int) and 0 <= key < len(listed) else {}
        prompt, provider = _obj(row.get("prompt")), row.get("provider")
        label = str(head.get("label") or prompt.get("label") or "")
        short = label.split(": ", 1)[0]
        providers = [_obj(provider).get("label"), _obj(provider).get("id"), provider]
        providers.append(head.get("provider"))
        columns[key] = _Column(
            short if short and " " not in short else label[:60],
            next((p for p in providers if isinstance(p, str) and p), "?"),
            _names(label, short, head.get("raw"), head.get("id"), prompt.get("label"))
            | _names(row.get("promptId")),
            _names(*providers),
            count,
        )
    return columns


def _names(*values: Any) -> frozenset[str]:
    return frozenset(v for v in values if isinstance(v, str) and v)


def _pick_column(path: str, columns: dict[Any, _Column], opts: ReadOptions) -> Any:
    """The one column the source asks for; several or none is an error that lists them."""
    picked = [key for key, column in columns.items() if column.picked_by(opts)]
    if len(picked) == 1 or not columns:
        return picked[0] if picked else None
    listing = "; ".join(
        f"prompt {c.prompt!r} on provider {c.provider!r} ({c.count} results)"
        for c in columns.values()
    )
    asked = ", ".join(
        f"{name} {value!r}"
        for name, value in (("prompt", opts.prompt), ("provider", opts.provider))
        if value is not None
    )
    prompts = list(dict.fromkeys(c.prompt for c in columns.values()))
    providers = list(dict.fromkeys(c.provider for c in columns.values()))
    key, names = ("prompt", prompts) if len(prompts) > 1 else ("provider", providers)
    pick = f"{key}: {json.dumps(names[0])}"
    example = f"{key}: {{baseline: {json.dumps(names[0])}, candidate: {json.dumps(names[1])}}}"
    hint = (
        f"pick one run with sources.<name>.prompt and/or provider (e.g. `{pick}`); when this "
        f"file holds both the baseline and the candidate, pick each: `{example}`"
    )
    if not picked:
        raise InvalidInput(
            f"eval file {path}: no results for {asked}; it holds {listing}", hint=hint
        )
    compared = " on ".join(
        f"{len(names)} {what}s"
        for what, names in (("prompt", prompts), ("provider", providers))
        if len(names) > 1
    )
    raise InvalidInput(
        f"eval file {path}: promptfoo compared {compared}, so it holds {len(picked)} runs"
        + (f" for {asked}" if asked else "")
        + f": {listing}; expected one run",
        hint=hint,
    )


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
    status = data.get("status") if isinstance(data, dict) else None
    if status in _INSPECT_UNFINISHED:
        return _unfinished_inspect(path, data, str(status))
    samples = data.get("samples") if isinstance(data, dict) else None
    if not isinstance(samples, list):
        raise InvalidInput(
            f"eval file {path}: expected an Inspect AI log with a samples list",
            hint="logs written with --no-log-samples have no samples; rerun with samples",
        )
    epochs = {s.get("epoch", 1) for s in samples if isinstance(s, dict)}
    notes = [] if status in (None, "success") else [f"{path}: status {status!r}"]
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


def _unfinished_inspect(path: str, data: dict[str, Any], status: str) -> EvalRun:
    """A run Inspect did not finish: what it says happened, never its partial samples (the
    samples it did not reach would read as missing ids, or worse, as a smaller eval set)."""
    spec = _obj(data.get("eval"))
    run = "the Inspect run" + "".join(
        f" {word} {spec[key]}"
        for key, word in (("task", "of task"), ("model", "on"))
        if spec.get(key)
    )
    if status == "error":
        message = str(_obj(data.get("error")).get("message") or "no error message in the log")
        what = f"errored (status 'error'): {message[:500]}"
    elif status == "cancelled":
        what = "was cancelled (status 'cancelled')"
    else:
        what = "has not finished (status 'started': still running, or stopped before it ended)"
    samples = data.get("samples")
    samples = samples if isinstance(samples, list) else []
    planned = _obj(spec.get("dataset")).get("samples")
    logged = f"{len(samples)} of {planned}" if isinstance(planned, int) else f"{len(samples)}"
    error = f"{run} {what}; {logged} samples logged ({path})"
    return EvalRun(path, "inspect", (), {}, (), error)


def _read_eval_log(path: str) -> dict[str, Any]:
    """Inspect's `.eval` log (a zip) in its JSON form: `header.json` once the run has ended,
    else only `_journal/start.json` (a run still going, or killed: status "started"), and
    one `samples/<id>_epoch_<n>.json` per sample."""
    try:
        with zipfile.ZipFile(path) as log:
            names = list(dict.fromkeys(log.namelist()))  # a re-logged sample: the last wins
            if "header.json" in names:
                data = json.loads(log.read("header.json"))
            elif "_journal/start.json" in names:
                data = {"status": "started", **json.loads(log.read("_journal/start.json"))}
            else:
                raise zipfile.BadZipFile("neither header.json nor _journal/start.json in it")
            if not isinstance(data, dict):
                raise zipfile.BadZipFile("header.json is not a JSON object")
            data["samples"] = [
                json.loads(log.read(name))
                for name in names
                if name.startswith("samples/") and name.endswith(".json")
            ]
    except (zipfile.BadZipFile, json.JSONDecodeError, UnicodeDecodeError, KeyError) as exc:
        raise InvalidInput(
            f"eval file {path}: cannot read this Inspect binary .eval log ({exc})",
            hint="check that the file is a whole .eval log; `inspect log convert --to json` "
            "writes its JSON form",
        ) from None
    except OSError as exc:
        raise InvalidInput(f"eval file {path}: cannot read it ({exc.strerror})") from None

    def order(sample: Any) -> tuple[int, int, str]:
        sample = _obj(sample)
        sid = sample.get("id")
        return (sample.get("epoch", 1), isinstance(sid, str), str(sid).zfill(12))

    data["samples"].sort(key=order)
    return data


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


def _detect_json(data: Any) -> str | None:
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
    return None


def _expand(pattern: str, fmt: str) -> list[str]:
    """Files named by a path, a glob or a folder."""
    if os.path.isdir(pattern):
        return _folder(pattern, fmt)
    files = sorted(f for f in glob.glob(pattern) if os.path.isfile(f))
    if not files and not glob.has_magic(pattern):
        raise InvalidInput(f"eval file {pattern}: no such file")
    if not files:
        raise InvalidInput(f"eval files {pattern}: no file matches")
    return files


def _folder(folder: str, fmt: str) -> list[str]:
    """The run a folder holds, read as the declared format: lm-eval's output folder (one
    results_*.json, searched below it), or the one promptfoo, Inspect or JSONL file in it.
    `auto` takes lm-eval's layout when it is there, else the one eval file."""
    results = sorted(
        glob.glob(os.path.join(glob.escape(folder), "**", "results_*.json"), recursive=True)
    )
    if fmt == "lm_eval" or (fmt == "auto" and results):
        if len(results) != 1:
            raise InvalidInput(
                f"eval folder {folder}: expected one lm-eval results_*.json, found {len(results)}",
                hint="name the results file (or the samples_*.jsonl files) instead",
            )
        return results
    suffixes = _FOLDER_FILES.get(fmt) or tuple(dict.fromkeys(sum(_FOLDER_FILES.values(), ())))
    found = sorted(
        entry.path
        for entry in os.scandir(folder)
        if entry.is_file()
        and entry.name.endswith(suffixes)
        and not entry.name.startswith(".")
        and entry.name != _INSPECT_LISTING
    )
    if len(found) != 1:
        what = FORMAT_NAMES[fmt].removeprefix("an ") if fmt != "auto" else "eval"
        names = ", ".join(os.path.basename(f) for f in found[:5])
        more = f" and {len(found) - 5} more" if len(found) > 5 else ""
        raise InvalidInput(
            f"eval folder {folder}: expected one {what} file "
            f"({', '.join('*' + s for s in suffixes)}) for one run, found {len(found)}"
            + (f": {names}{more}" if found else ""),
            hint="name the run's file in the source's baseline: / candidate:",
        )
    return found


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
    """Read one eval run (a file, a glob, or a folder) into records, as the declared format."""
    opts = opts or ReadOptions()
    if fmt not in ("auto", *FORMATS):
        raise InvalidInput(f"eval format {fmt!r} is not one of {', '.join(FORMATS)}")
    run = _read_files(pattern, _expand(pattern, fmt), fmt, opts)
    if (opts.prompt is not None or opts.provider is not None) and run.format != "promptfoo":
        raise InvalidInput(
            f"eval file {run.path}: `prompt` and `provider` pick a run inside promptfoo output; "
            f"this is {FORMAT_NAMES[run.format]}",
            hint="remove them from the source, or point the source at promptfoo output",
        )
    return run


def _read_files(pattern: str, files: list[str], fmt: str, opts: ReadOptions) -> EvalRun:
    samples = [f for f in files if _SAMPLES_NAME.match(os.path.basename(f))]
    if fmt in ("auto", "lm_eval") and samples:
        return read_lm_eval_samples(samples, opts)
    if len(files) > 1:
        raise InvalidInput(
            f"eval files {pattern}: {len(files)} files match; expected one run",
            hint="a glob may only name lm-eval samples_*.jsonl files of one run",
        )
    path = files[0]
    if path.endswith(".eval"):
        if fmt not in ("auto", "inspect"):
            raise InvalidInput(
                f"eval file {path}: expected {FORMAT_NAMES[fmt]} (the source's format), but "
                "this is an Inspect AI .eval log",
                hint="set sources.<name>.format to inspect (or auto)",
            )
        return read_inspect(path, _read_eval_log(path), opts)
    lines = path.endswith((".jsonl", ".ndjson"))
    if fmt == "jsonl" or (lines and fmt in ("auto", "lm_eval")):
        first = next(iter(_read_jsonl(path)), None)
        if fmt == "lm_eval" or (fmt == "auto" and first is not None and "doc_id" in first[1]):
            return read_lm_eval_samples([path], opts)
        return read_jsonl(path, opts)
    data = _read_json(path)
    detected = _detect_json(data)
    if fmt == "auto" and detected is None:
        raise InvalidInput(
            f"eval file {path}: cannot tell which tool wrote it",
            hint="expected promptfoo output (results.results), an Inspect AI log (samples) or "
            "lm-eval results (results, n-samples); or set sources.<name>.format",
        )
    kind = fmt if detected is None or fmt != "auto" else detected
    if detected is not None and detected != kind:
        raise InvalidInput(
            f"eval file {path}: expected {FORMAT_NAMES[kind]} (the source's format), but this "
            f"is {FORMAT_NAMES[detected]}",
            hint=f"set sources.<name>.format to {detected} (or auto)",
        )
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
