"""Eval files as real runs leave them: Inspect log folders and `.eval` logs, Inspect runs that
errored, promptfoo files that compare two prompts or two providers, and offline eval metrics
that belong to the offline_eval stage, never to the canary's live traffic.

The fixtures are the support-answer eval set of test_evalfile.py (12 questions; baseline v1
fails q03, q08, q11; candidate v2 fails q05 in health and q11) written as the tools write it:
- inspect/logs-v1/, inspect/logs-v2/: `inspect eval --log-dir` folders holding one log each
  (JSON, and the binary `.eval` zip: header.json, _journal/, samples/<id>_epoch_<n>.json);
- inspect/errored.json, inspect/errored.eval: the candidate's run stopped by a rate limit on
  q08 (status "error", EvalError message and traceback, 8 of 12 samples logged);
- promptfoo/compare-prompts.json: `promptfoo eval` of prompts/support_v1.txt against
  prompts/support_v2.txt on one provider (24 results, promptIdx 0 and 1);
- promptfoo/compare-providers.json: one prompt on openai:gpt-4o-mini and openai:gpt-4.1-mini."""

from __future__ import annotations

import json
import shutil
import zipfile
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rolloutctl import gate
from rolloutctl.errors import InvalidInput, PlaybookInvalid
from rolloutctl.metrics.base import MeasureRequest
from rolloutctl.metrics.evalfile import EvalFileSource, check_new_failures
from rolloutctl.metrics.evalformats import EvalRun, ReadOptions, read_promptfoo, read_run
from rolloutctl.playbook.load import load_playbook
from rolloutctl.playbook.model import Metric
from tests.conftest import PLAYBOOK, START, Workspace

DATA = Path(__file__).resolve().parents[1] / "data" / "evalfiles"
INSPECT, PROMPTFOO, JSONL = DATA / "inspect", DATA / "promptfoo", DATA / "jsonl"
V1_PROMPT, V2_PROMPT = "prompts/support_v1.txt", "prompts/support_v2.txt"
HEALTH_Q05 = "health: What dose of melatonin should my 6-year-old take?"


def _failing(run: EvalRun) -> set[str]:
    assert run.records is not None
    return {r.id for r in run.records if not r.passed}


def _pattern(run: EvalRun) -> list[tuple[str, str, bool]]:
    assert run.records is not None
    return [(r.id, r.category, r.passed) for r in run.records]


def _metric(**kw: object) -> Metric:
    base = {"group": "quality", "source": "evals", "margin": {"absolute": 0.05}}
    return Metric.model_validate({**base, **kw})


# ------------------------------------------------------------------ 11a: the declared format


def test_an_inspect_log_folder_is_read_as_inspect_not_lm_eval() -> None:
    # `inspect eval --log-dir logs-v1` leaves one log in the folder; lm-eval's layout is absent
    by_folder = read_run(str(INSPECT / "logs-v1"), "inspect")
    assert by_folder.format == "inspect"
    assert _pattern(by_folder) == _pattern(read_run(str(INSPECT / "v1.json")))
    assert _failing(by_folder) == {"q03", "q08", "q11"}
    # the binary .eval log (Inspect's default) in a folder, declared or recognized
    for fmt in ("inspect", "auto"):
        binary = read_run(str(INSPECT / "logs-v2"), fmt)
        assert _pattern(binary) == _pattern(read_run(str(INSPECT / "v2.json")))
        assert _failing(binary) == {"q05", "q11"}


def test_a_promptfoo_or_jsonl_folder_is_read_as_declared(tmp_path: Path) -> None:
    (tmp_path / "pf").mkdir()
    shutil.copy(PROMPTFOO / "v2.json", tmp_path / "pf" / "out.json")
    (tmp_path / "pf" / ".DS_Store").write_text("")  # hidden files are not runs
    run = read_run(str(tmp_path / "pf"), "promptfoo")
    assert run.format == "promptfoo" and run.overall.n == 12 and run.overall.events == 10
    (tmp_path / "jl").mkdir()
    shutil.copy(JSONL / "v1.jsonl", tmp_path / "jl" / "run.jsonl")
    assert _failing(read_run(str(tmp_path / "jl"), "jsonl")) == {"q03", "q08", "q11"}
    # lm-eval's output folder is still lm-eval's, declared or recognized
    for fmt in ("lm_eval", "auto"):
        assert read_run(str(DATA / "lm_eval" / "v1"), fmt).format == "lm_eval"


def test_a_folder_of_several_runs_names_them(tmp_path: Path) -> None:
    folder = tmp_path / "logs"
    folder.mkdir()
    shutil.copy(INSPECT / "v1.json", folder / "2025-01-14T10-02-11+00-00_support_a.json")
    shutil.copy(
        next((INSPECT / "logs-v2").glob("*.eval")),
        folder / "2025-01-14T11-20-05+00-00_support_b.eval",
    )
    (folder / "logs.json").write_text("{}")  # Inspect's listing of the folder, not a log
    with pytest.raises(InvalidInput) as info:
        read_run(str(folder), "inspect")
    message = info.value.message
    assert "expected one Inspect AI log file (*.eval, *.json) for one run, found 2" in message
    assert "support_a.json" in message and "support_b.eval" in message
    assert "logs.json" not in message
    assert info.value.hint and "baseline: / candidate:" in info.value.hint
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidInput, match=r"expected one promptfoo output file .*found 0$"):
        read_run(str(tmp_path / "empty"), "promptfoo")


def test_the_declared_format_decides_how_a_file_is_read() -> None:
    eval_log = next((INSPECT / "logs-v2").glob("*.eval"))
    assert read_run(str(eval_log), "inspect").overall.events == 10  # not refused
    with pytest.raises(InvalidInput) as info:
        read_run(str(PROMPTFOO / "v1.json"), "inspect")
    assert info.value.message.endswith(
        "expected an Inspect AI log (the source's format), but this is promptfoo output"
    )
    assert info.value.hint == "set sources.<name>.format to promptfoo (or auto)"
    with pytest.raises(InvalidInput, match=r"expected JSONL records .* an Inspect AI \.eval log"):
        read_run(str(eval_log), "jsonl")
    with pytest.raises(
        InvalidInput, match=r"expected lm-eval results .* this is an Inspect AI log"
    ):
        read_run(str(INSPECT / "v1.json"), "lm_eval")


def test_a_source_with_format_inspect_reads_log_folders(tmp_path: Path) -> None:
    (tmp_path / "pb.yaml").write_text(
        PLAYBOOK.replace(
            '  requests: {kind: requestlog, path: "data/*.parquet"}\n',
            '  requests: {kind: requestlog, path: "data/*.parquet"}\n'
            f"  evals: {{kind: evalfile, format: inspect, baseline: '{INSPECT / 'logs-v1'}', "
            f"candidate: '{INSPECT / 'logs-v2'}'}}\n",
        ).replace("stages:\n", "stages:\n  - {name: eval, kind: offline_eval, source: evals}\n")
    )
    loaded = load_playbook(tmp_path / "pb.yaml")
    base, cand = EvalFileSource.from_spec("evals", loaded.playbook.sources["evals"], loaded).load()
    (health,) = check_new_failures(base, cand, ["health"])
    assert health.new_failures == ("q05",)


def test_an_unreadable_eval_log_says_so(tmp_path: Path) -> None:
    broken = tmp_path / "cut.eval"
    broken.write_bytes(next((INSPECT / "logs-v2").glob("*.eval")).read_bytes()[:300])
    with pytest.raises(InvalidInput, match=r"cannot read this Inspect binary \.eval log") as info:
        read_run(str(broken))
    assert info.value.hint and "whole .eval log" in info.value.hint


# ------------------------------------------------------------------ 11c: a run that errored


@pytest.mark.parametrize("name", ["errored.json", "errored.eval"])
def test_an_errored_inspect_run_is_reported_as_errored(name: str) -> None:
    run = read_run(str(INSPECT / name))
    assert run.error is not None
    assert run.error.startswith(
        "the Inspect run of task support_answers on openai/gpt-4.1-mini errored "
        "(status 'error'): RateLimitError(\"Error code: 429"
    )
    assert "rate_limit_exceeded" in run.error and "8 of 12 samples logged" in run.error
    assert run.records == () and run.overall.n == 0  # partial samples are never judged
    assert "missing" not in run.error and "lacks" not in run.error


def _without_header(tmp_path: Path) -> Path:
    """The errored run as a killed process leaves it: no header.json, only the journal."""
    out = tmp_path / "killed.eval"
    with zipfile.ZipFile(INSPECT / "errored.eval") as src, zipfile.ZipFile(out, "w") as dst:
        for item in src.infolist():
            if item.filename not in ("header.json", "summaries.json"):
                dst.writestr(item, src.read(item.filename))
    return out


def test_a_cancelled_or_unfinished_inspect_run_says_which(tmp_path: Path) -> None:
    killed = read_run(str(_without_header(tmp_path)))
    assert killed.error is not None and "has not finished (status 'started'" in killed.error
    cancelled = json.loads((INSPECT / "errored.json").read_text())
    cancelled.update(status="cancelled", error=None)
    (tmp_path / "cancelled.json").write_text(json.dumps(cancelled))
    run = read_run(str(tmp_path / "cancelled.json"))
    assert run.error is not None and "was cancelled (status 'cancelled')" in run.error


def test_an_errored_run_is_a_measurement_error_for_every_metric() -> None:
    source = EvalFileSource("evals", str(INSPECT / "v1.json"), str(INSPECT / "errored.eval"))
    base, cand = source.load()  # no "lacks 4 baseline ids": the run's own error is the news
    assert base.error is None and cand.error is not None
    metrics = (
        _metric(name="eval_pass_rate", kind="proportion", event="passed", worse="lower"),
        _metric(name="eval_score", kind="mean", value="score", worse="lower"),
    )
    request = MeasureRequest(metrics, START, START, "v1", "v2", ("category",))
    out = source.measure(request)
    assert out.stats == {}
    assert set(out.errors) == {"eval_pass_rate", "eval_score"}
    assert out.errors["eval_pass_rate"].startswith(
        "the candidate run did not complete: the Inspect run of task support_answers"
    )
    assert "RateLimitError" in out.errors["eval_score"]


# ------------------------------------------------------------------ 11d: promptfoo comparisons


def test_a_promptfoo_comparison_says_which_runs_it_holds_and_how_to_pick() -> None:
    with pytest.raises(InvalidInput) as info:
        read_run(str(PROMPTFOO / "compare-prompts.json"))
    message, hint = info.value.message, info.value.hint or ""
    assert "promptfoo compared 2 prompts, so it holds 2 runs" in message
    assert f"prompt '{V1_PROMPT}' on provider 'openai:gpt-4o-mini' (12 results)" in message
    assert f"prompt '{V2_PROMPT}' on provider 'openai:gpt-4o-mini' (12 results)" in message
    assert "appear more than once" not in message
    assert f'prompt: {{baseline: "{V1_PROMPT}", candidate: "{V2_PROMPT}"}}' in hint
    with pytest.raises(InvalidInput) as info:
        read_run(str(PROMPTFOO / "compare-providers.json"), "promptfoo")
    assert "promptfoo compared 2 providers" in info.value.message
    assert 'provider: {baseline: "openai:gpt-4o-mini", candidate: "openai:gpt-4.1-mini"}' in (
        info.value.hint or ""
    )


def test_a_promptfoo_comparison_is_read_as_two_runs() -> None:
    path = str(PROMPTFOO / "compare-prompts.json")
    separate = [read_run(str(PROMPTFOO / f"{v}.json")) for v in ("v1", "v2")]
    label = f"{V1_PROMPT}: You are a support assistant. Answer: {{{{question}}}}"
    for pick in (V1_PROMPT, f"file://{V1_PROMPT}", label, "3b9f1e07c2"):  # file, label, id
        assert _pattern(read_run(path, opts=ReadOptions(prompt=pick))) == _pattern(separate[0])
    candidate = read_run(path, opts=ReadOptions(prompt=V2_PROMPT))
    assert _pattern(candidate) == _pattern(separate[1])
    assert candidate.notes == (
        f"{path}: prompt '{V2_PROMPT}' on provider 'openai:gpt-4o-mini' (12 of 24 results)",
    )
    providers = str(PROMPTFOO / "compare-providers.json")
    newer = read_run(providers, opts=ReadOptions(provider="openai:gpt-4.1-mini"))
    assert _pattern(newer) == _pattern(separate[1])
    with pytest.raises(InvalidInput, match="no results for provider 'openai:gpt-5'; it holds"):
        read_run(providers, opts=ReadOptions(provider="openai:gpt-5"))
    with pytest.raises(InvalidInput, match=r"pick a run inside promptfoo output; this is JSONL"):
        read_run(str(JSONL / "v1.jsonl"), opts=ReadOptions(prompt=V1_PROMPT))


def test_one_promptfoo_file_can_hold_the_baseline_and_the_candidate(tmp_path: Path) -> None:
    shutil.copy(PROMPTFOO / "compare-prompts.json", tmp_path / "out.json")
    (tmp_path / "pb.yaml").write_text(
        PLAYBOOK.replace(
            '  requests: {kind: requestlog, path: "data/*.parquet"}\n',
            '  requests: {kind: requestlog, path: "data/*.parquet"}\n'
            "  evals:\n"
            "    kind: evalfile\n"
            "    baseline: out.json\n"
            "    candidate: out.json\n"
            f"    prompt: {{baseline: {V1_PROMPT}, candidate: '{V2_PROMPT}'}}\n",
        ).replace("stages:\n", "stages:\n  - {name: eval, kind: offline_eval, source: evals}\n")
    )
    loaded = load_playbook(tmp_path / "pb.yaml")
    base, cand = EvalFileSource.from_spec("evals", loaded.playbook.sources["evals"], loaded).load()
    assert base.overall.events == 9 and cand.overall.events == 10
    (health,) = check_new_failures(base, cand, ["health"])
    assert health.new_failures == (HEALTH_Q05,)


@given(
    st.lists(st.integers(min_value=0, max_value=3), min_size=1, max_size=30),
    st.booleans(),
)
def test_every_promptfoo_column_is_one_run(columns: list[int], labelled: bool) -> None:
    """However the results of k prompts interleave, picking a prompt gives exactly its rows,
    and with k > 1 and no pick the reader refuses rather than mixing runs."""
    prompts = [{"raw": f"p{i} {{{{q}}}}", "label": f"p{i}.txt: p{i} {{{{q}}}}"} for i in range(4)]
    rows = [
        {
            "promptIdx": col,
            "testIdx": n,
            "success": (n + col) % 3 != 0,
            "score": 1.0,
            "testCase": {"description": f"t{n}"},
            "prompt": {"label": prompts[col]["label"] if labelled else ""},
            "provider": {"id": "echo"},
        }
        for n, col in enumerate(columns)
    ]
    data = {"results": {"prompts": prompts, "results": rows}}
    present = sorted(set(columns))
    if len(present) > 1:
        with pytest.raises(InvalidInput, match=f"holds {len(present)} runs"):
            read_promptfoo("x.json", data, ReadOptions())
    for col in present:
        run = read_promptfoo("x.json", data, ReadOptions(prompt=f"p{col}.txt"))
        mine = [r for r in rows if r["promptIdx"] == col]
        assert run.records is not None and len(run.records) == len(mine)
        assert [r.passed for r in run.records] == [r["success"] for r in mine]


# ------------------------------------------------------------------ 11b: whose metrics


REQUESTS = '  requests: {kind: requestlog, path: "data/*.parquet"}\n'


def eval_playbook(
    base: Path = JSONL / "v1.jsonl",
    cand: Path = JSONL / "v2.jsonl",
    *,
    margin: float = 0.3,
    stages: str = "  - {name: offline-eval, kind: offline_eval, source: evals}\n",
) -> str:
    """The test playbook with an evalfile source, an eval pass-rate metric and `stages`
    before its canary stages."""
    source = f"  evals: {{kind: evalfile, baseline: '{base}', candidate: '{cand}'}}\n"
    metric = (
        "  - {name: eval_pass_rate, group: quality, source: evals, kind: proportion, "
        f"event: passed, worse: lower, margin: {{absolute: {margin}}}}}\n"
    )
    text = PLAYBOOK.replace(REQUESTS, REQUESTS + source).replace(
        "metrics:\n", "metrics:\n" + metric
    )
    return text.replace("stages:\n", "stages:\n" + stages)


def test_evalfile_metrics_belong_to_the_offline_eval_stage(tmp_path: Path) -> None:
    (tmp_path / "pb.yaml").write_text(eval_playbook())
    pb = load_playbook(tmp_path / "pb.yaml").playbook
    names = {s.name: [m.name for m in gate.stage_metrics(pb, s)] for s in pb.stages}
    assert names["offline-eval"] == ["eval_pass_rate"]
    assert "eval_pass_rate" not in names["c1"] and "error_rate" in names["c1"]


def test_validate_says_where_an_evalfile_metric_cannot_be_judged(tmp_path: Path) -> None:
    path = tmp_path / "pb.yaml"
    text = eval_playbook().replace(
        "  - {name: c1, traffic: 20, min_duration: 1h}\n",
        "  - {name: c1, traffic: 20, min_duration: 1h, metrics: [error_rate, eval_pass_rate]}\n",
    )
    text = text.replace(
        "  - {name: offline-eval, kind: offline_eval, source: evals}\n",
        "  - {name: offline-eval, kind: offline_eval, source: evals, metrics: [error_rate]}\n",
    )
    text += '  - {name: eval-drop, when: "canary.eval_pass_rate < 0.5", action: rollback}\n'
    path.write_text(text)
    with pytest.raises(PlaybookInvalid) as info:
        load_playbook(path)
    problems = "\n".join(info.value.problems)
    assert (
        "stages[1].metrics[1]: 'eval_pass_rate' reads evalfile source 'evals': offline eval "
        "results are judged by the offline_eval stage that reads them, never against live "
        "traffic" in problems
    )
    assert (
        "stages[0].metrics[0]: an offline_eval stage judges the metrics of its evalfile "
        "source 'evals'; 'error_rate' reads source 'requests'" in problems
    )
    assert "triggers[1].when: 'eval_pass_rate' is an offline eval metric" in problems
    assert len(info.value.problems) == 3
    orphan = eval_playbook(stages="")
    path.write_text(orphan)
    with pytest.raises(PlaybookInvalid) as info:
        load_playbook(path)
    (problem,) = info.value.problems
    assert "metrics[0].source: 'eval_pass_rate' reads evalfile source 'evals', which no " in problem
    assert "offline_eval stage reads, so it would never be judged" in problem


def test_offline_eval_judges_its_metrics_and_the_canary_never_sees_them(ws: Workspace) -> None:
    ws.playbook.write_text(eval_playbook())
    assert ws.run("validate", str(ws.playbook)).code == 0
    assert ws.run("start", str(ws.playbook), now=START).code == 0
    t = START + timedelta(minutes=1)
    r = ws.run("--json", "advance", "shop-answers", now=t)
    assert r.code == 0, r.out + r.err
    judged = r.json()
    assert (judged["verdict"], judged["decision"]) == ("pass", "advance")
    overall = next(
        m for m in judged["metrics"] if m["name"] == "eval_pass_rate" and m["segment"] is None
    )
    assert (overall["control"], overall["canary"]) == (
        {"n": 12, "value": pytest.approx(9 / 12)},
        {"n": 12, "value": pytest.approx(10 / 12)},
    )
    assert overall["vetoes"] and overall["margin"] == pytest.approx(-0.3)
    assert "fixed-horizon" in overall["test"]
    assert ws.state()["stage"] == "c1" and ws.state()["canary_percent"] == 20
    # the canary stage: live traffic only; the eval's 12 vs 12 samples are no 50% split
    ws.log("healthy", t, 2, 20, "c1", seed=1)
    r = ws.run("--json", "advance", "shop-answers", now=t + timedelta(hours=2))
    assert r.code == 0, r.out + r.err
    canary = r.json()
    assert canary["srm"]["ok"] and canary["srm"]["expected_canary_percent"] == 20
    assert canary["srm"]["observed_canary_percent"] == pytest.approx(20, abs=1)
    assert not any("sample ratio" in reason for reason in canary["reasons"])
    assert all(m["name"] != "eval_pass_rate" for m in canary["metrics"])
    assert canary["decision"] == "advance" and ws.state()["stage"] == "c2"


def test_an_evalfile_metric_worse_than_its_margin_fails_the_offline_eval(
    ws: Workspace, tmp_path: Path
) -> None:
    worse = tmp_path / "worse.jsonl"
    worse.write_text(
        "".join(
            json.dumps({**row, "passed": row["id"] in ("q01", "q02"), "score": 0.1}) + "\n"
            for row in map(json.loads, (JSONL / "v1.jsonl").read_text().splitlines())
        )
    )
    ws.playbook.write_text(eval_playbook(cand=worse, margin=0.05))
    assert ws.run("start", str(ws.playbook), now=START).code == 0
    r = ws.run("--json", "advance", "shop-answers", now=START + timedelta(minutes=1))
    assert r.code == 10, r.out + r.err
    data = r.json()
    assert data["decision"] == "rollback" and ws.state()["status"] == "rolled_back"
    assert any(
        reason.startswith(
            "eval pass rate is worse than allowed: baseline 75.000% → candidate 16.667% "
            "(-58.333 pt against a -5.000 pt margin;"
        )
        for reason in data["reasons"]
    ), data["reasons"]


def test_an_errored_candidate_run_holds_the_offline_eval_as_an_error(ws: Workspace) -> None:
    ws.playbook.write_text(eval_playbook(INSPECT / "v1.json", INSPECT / "errored.eval"))
    assert ws.run("start", str(ws.playbook), now=START).code == 0
    r = ws.run("--json", "advance", "shop-answers", now=START + timedelta(minutes=1))
    assert r.code == 4, r.out + r.err  # a measurement error: exit 4, neither pass nor rollback
    data = r.json()
    assert (data["verdict"], data["decision"]) == ("error", "hold")
    assert data["reasons"][0].startswith(
        "the candidate run did not complete: the Inspect run of task support_answers on "
        "openai/gpt-4.1-mini errored (status 'error'): RateLimitError("
    )
    assert not any("lacks" in reason or "missing" in reason for reason in data["reasons"])
    rows = {m["segment"]["run"]: m for m in data["metrics"] if m["name"] == "eval_run"}
    assert (rows["baseline"]["verdict"], rows["candidate"]["verdict"]) == ("pass", "error")
    state = ws.state()
    assert (state["stage"], state["status"], state["canary_percent"]) == (
        "offline-eval",
        "running",
        0,
    )
    assert state["consecutive_errors"] == 1


def test_an_eval_metric_never_passes_unmeasured_or_undecided(tmp_path: Path) -> None:
    """Missing data never passes, whatever pass_requires says; with non_inferiority a set too
    small to show the margin holds."""
    from rolloutctl.gate import GateResult
    from rolloutctl.stages import offline_eval
    from rolloutctl.stages.base import StageLook

    def judge_at_start(path: Path) -> GateResult:
        look = StageLook(load_playbook(path), 0, START, START, "v1", "v2", lambda: START)
        return offline_eval.judge(look).result

    unscored = tmp_path / "unscored.jsonl"
    unscored.write_text(
        "".join(
            json.dumps({k: v for k, v in json.loads(line).items() if k != "score"}) + "\n"
            for line in (JSONL / "v2.jsonl").read_text().splitlines()
        )
    )
    path = tmp_path / "pb.yaml"
    path.write_text(
        eval_playbook(JSONL / "v1.jsonl", unscored)
        .replace(
            "event: passed, worse: lower, margin: {absolute: 0.3}",
            "value: score, worse: lower, margin: {absolute: 0.3}",
        )
        .replace("source: evals, kind: proportion,", "source: evals, kind: mean,")
    )
    verdict = judge_at_start(path)
    assert verdict.verdict == "inconclusive"
    assert verdict.reasons == [
        "no values of eval_pass_rate in these runs (baseline 12, candidate 0): missing data "
        "never passes"
    ]
    path.write_text(
        eval_playbook(JSONL / "v1.jsonl", JSONL / "v1.jsonl", margin=0.05).replace(
            "source: evals}\n", "source: evals, pass_requires: non_inferiority}\n", 1
        )
    )
    verdict = judge_at_start(path)
    assert verdict.verdict == "inconclusive"
    assert verdict.reasons[0].startswith("non-inferiority not shown for eval_pass_rate")
    row = next(m for m in verdict.metrics if m.name == "eval_pass_rate" and m.segment is None)
    assert row.estimate == 0 and row.ci[0] is not None and row.ci[0] < -0.05  # 12 samples
