"""Offline eval results: every format normalizes to the same records, the source gives the gate
pass counts per arm and category, and the offline-eval stage checks find the new failures.

The files under tests/data/evalfiles/ are one support-answer eval set (12 questions in billing,
health, finance and general) run by a baseline (v1) and a candidate (v2), written in the shapes
promptfoo, Inspect AI and lm-evaluation-harness produce. Baseline: q03, q08 and q11 fail.
Candidate: q05 (health) and q11 fail, q03 and q08 are fixed."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rolloutctl.errors import InvalidInput
from rolloutctl.metrics.base import MeasureRequest
from rolloutctl.metrics.evalfile import (
    EvalFileSource,
    check_new_failures,
    check_pass_rate,
    offline_eval,
    pair_records,
    pass_rates,
)
from rolloutctl.metrics.evalformats import EvalRecord, EvalRun, ReadOptions, read_run
from rolloutctl.playbook.load import load_playbook
from rolloutctl.playbook.model import Metric
from rolloutctl.stats.sufficient import Moments, Proportion

DATA = Path(__file__).resolve().parents[1] / "data" / "evalfiles"
CATEGORY = {
    "q01": "billing",
    "q02": "billing",
    "q03": "billing",
    "q04": "health",
    "q05": "health",
    "q06": "health",
    "q07": "finance",
    "q08": "finance",
    "q09": "general",
    "q10": "general",
    "q11": "general",
    "q12": "general",
}
BASELINE_FAILS = {"q03", "q08", "q11"}
CANDIDATE_FAILS = {"q05", "q11"}
T0 = datetime(2026, 3, 2, 9, tzinfo=UTC)


def _metric(**kw: object) -> Metric:
    base = {"group": "quality", "source": "evals", "margin": {"absolute": 0.05}}
    return Metric.model_validate({**base, **kw})


def _request(*metrics: Metric, max_segments: int = 60) -> MeasureRequest:
    return MeasureRequest(
        metrics=metrics,
        start=T0,
        end=T0,
        control="v1",
        canary="v2",
        dimensions=("category",),
        max_segments=max_segments,
    )


def _passes(run: EvalRun) -> dict[str, bool]:
    assert run.records is not None
    return {r.id: r.passed for r in run.records}


# ------------------------------------------------------------------ reading each format


def test_plain_jsonl_records() -> None:
    run = read_run(str(DATA / "jsonl" / "v1.jsonl"))
    assert run.format == "jsonl"
    assert run.records is not None and len(run.records) == 12
    assert run.records[0] == EvalRecord("q01", "billing", True, 0.92)
    assert {r.id for r in run.records if not r.passed} == BASELINE_FAILS
    assert {r.id: r.category for r in run.records} == CATEGORY
    assert run.overall == Proportion(12, 9)
    assert run.totals["finance"] == Proportion(2, 1)


def test_jsonl_without_passed_uses_the_score_threshold() -> None:
    path = str(DATA / "jsonl" / "scores_only.jsonl")
    strict = _passes(read_run(path))
    lenient = _passes(read_run(path, opts=ReadOptions(pass_threshold=0.5)))
    assert strict == {"a1": True, "a2": False, "a3": False}
    assert lenient == {"a1": True, "a2": True, "a3": False}


def test_promptfoo_output() -> None:
    base = read_run(str(DATA / "promptfoo" / "v1.json"))
    cand = read_run(str(DATA / "promptfoo" / "v2.json"))
    assert (base.format, cand.format) == ("promptfoo", "promptfoo")
    assert base.records is not None and cand.records is not None
    # id: the test case's description, unique in the file; category from testCase.metadata
    first = base.records[0]
    assert first.id == "billing: Why was I charged twice for my March invoice?"
    assert (first.category, first.passed, first.score) == ("billing", True, 1.0)
    assert base.overall == Proportion(12, 9) and cand.overall == Proportion(12, 10)
    # the candidate's q11 errored (request timeout): it counts as a failure
    errored = [r for r in cand.records if r.id.startswith("general: Do you have an Android")]
    assert errored == [EvalRecord(errored[0].id, "general", False, 0.0)]
    assert cand.totals["health"] == Proportion(3, 2)


def test_inspect_log_and_partial_credit() -> None:
    base = read_run(str(DATA / "inspect" / "v1.json"))
    cand = read_run(str(DATA / "inspect" / "v2.json"))
    assert base.format == "inspect"
    assert {i for i, ok in _passes(base).items() if not ok} == BASELINE_FAILS
    assert {i for i, ok in _passes(cand).items() if not ok} == CANDIDATE_FAILS
    assert base.records is not None
    q11 = next(r for r in base.records if r.id == "q11")
    assert (q11.score, q11.passed, q11.category) == (0.5, False, "general")  # "P" at threshold 1
    half = read_run(str(DATA / "inspect" / "v1.json"), opts=ReadOptions(pass_threshold=0.5))
    assert _passes(half)["q11"] is True


def test_inspect_unknown_scorer_names_the_scorers() -> None:
    with pytest.raises(InvalidInput, match=r"no scorer 'includes' \(scorers: model_graded_qa\)"):
        read_run(str(DATA / "inspect" / "v1.json"), opts=ReadOptions(scorer="includes"))


def test_lm_eval_folder_reads_the_per_sample_files() -> None:
    run = read_run(str(DATA / "lm_eval" / "v1"))
    assert run.format == "lm_eval" and run.records is not None
    assert len(run.records) == 12  # one filter of two ("none"), not 24 records
    assert any("strict-match, none; using 'none'" in n for n in run.notes)
    assert run.records[4] == EvalRecord("support_qa/4", "health", True, 1.0)
    assert sorted(r.id for r in run.records if not r.passed) == [
        "support_qa/10",
        "support_qa/2",
        "support_qa/7",
    ]


def test_lm_eval_results_file_finds_its_samples_and_a_glob_works_too() -> None:
    folder = DATA / "lm_eval" / "v2" / "support-model-v2"
    results = next(folder.glob("results_*.json"))
    by_results = read_run(str(results))
    by_glob = read_run(str(folder / "samples_*.jsonl"))
    assert by_results.records == by_glob.records
    assert by_results.overall == Proportion(12, 10)


def test_lm_eval_aggregate_only() -> None:
    run = read_run(str(DATA / "lm_eval" / "aggregate"))
    assert run.records is None and not run.has_samples
    # 0.81397... * 2376 and 0.57637... * 10042 are whole numbers; the group row is skipped
    assert run.totals == {"arc_easy": Proportion(2376, 1934), "hellaswag": Proportion(10042, 5788)}
    norm = read_run(str(DATA / "lm_eval" / "aggregate"), opts=ReadOptions(scorer="acc_norm"))
    assert norm.totals["arc_easy"] == Proportion(2376, 1876)


def test_every_format_gives_the_same_pass_pattern() -> None:
    patterns = []
    for run in (
        read_run(str(DATA / "jsonl" / "v2.jsonl")),
        read_run(str(DATA / "inspect" / "v2.json")),
        read_run(str(DATA / "lm_eval" / "v2")),
    ):
        assert run.records is not None
        patterns.append([(r.category, r.passed) for r in run.records])
    assert patterns[0] == patterns[1] == patterns[2]
    assert sum(ok for _, ok in patterns[0]) == 10


# ------------------------------------------------------------------ bad input


def test_duplicate_ids_name_the_file_and_the_ids() -> None:
    with pytest.raises(InvalidInput, match=r"duplicate\.jsonl: 1 sample id.*'q02'"):
        read_run(str(DATA / "jsonl" / "duplicate.jsonl"))


def test_mismatched_ids_name_both_files() -> None:
    base = read_run(str(DATA / "jsonl" / "v1.jsonl"))
    other = read_run(str(DATA / "jsonl" / "mismatch.jsonl"))
    with pytest.raises(InvalidInput) as info:
        pair_records(base, other)
    message = info.value.message
    assert "mismatch.jsonl lacks 1 baseline id(s) ('q12')" in message
    assert "has 1 id(s) not in the baseline ('q13')" in message
    assert "v1.jsonl" in message


def test_unreadable_files_say_what_was_expected(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match=r"garbage\.json: not valid JSON"):
        read_run(str(DATA / "garbage.json"))
    with pytest.raises(InvalidInput, match=r"bad_line\.jsonl:2: not a JSON object"):
        read_run(str(DATA / "jsonl" / "bad_line.jsonl"))
    with pytest.raises(InvalidInput, match="no such file"):
        read_run(str(tmp_path / "missing.json"))
    unknown = tmp_path / "other.json"
    unknown.write_text('{"accuracy": 0.9}')
    with pytest.raises(InvalidInput, match="cannot tell which tool wrote it"):
        read_run(str(unknown))
    binary = tmp_path / "2025-01-14T11-20-05_support_abc.eval"
    binary.write_bytes(b"PK\x03\x04")
    with pytest.raises(InvalidInput, match=r"binary \.eval log") as info:
        read_run(str(binary))
    assert info.value.hint and "inspect log convert --to json" in info.value.hint
    with pytest.raises(InvalidInput, match="expected promptfoo output"):
        read_run(str(DATA / "inspect" / "v1.json"), "promptfoo")


def test_jsonl_passed_must_be_boolean(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    path.write_text('{"id": "a", "category": "x", "passed": "yes"}\n')
    with pytest.raises(InvalidInput, match=r"run\.jsonl:1: passed must be true or false"):
        read_run(str(path))


def test_a_folder_with_two_runs_is_ambiguous(tmp_path: Path) -> None:
    shutil.copytree(DATA / "lm_eval", tmp_path / "lm_eval")
    with pytest.raises(InvalidInput, match=r"expected one lm-eval results_\*\.json, found 3"):
        read_run(str(tmp_path / "lm_eval"))


# ------------------------------------------------------------------ the stage checks


def _runs(fmt: str = "jsonl") -> tuple[EvalRun, EvalRun]:
    files = {
        "jsonl": ("jsonl/v1.jsonl", "jsonl/v2.jsonl"),
        "inspect": ("inspect/v1.json", "inspect/v2.json"),
        "lm_eval": ("lm_eval/v1", "lm_eval/v2"),
    }[fmt]
    return read_run(str(DATA / files[0])), read_run(str(DATA / files[1]))


def test_pass_rate_against_the_threshold() -> None:
    base, cand = _runs()
    check = check_pass_rate(base, cand, 0.80)
    assert check.ok and check.rate.candidate == Proportion(12, 10)
    lo, hi = check.rate.candidate_ci
    assert lo < 10 / 12 < hi
    assert not check_pass_rate(base, cand, 0.85).ok  # 0.833 < 0.85


def test_pass_rates_per_category() -> None:
    rates = {r.category: r for r in pass_rates(*_runs())}
    assert rates[None].baseline == Proportion(12, 9)
    assert (rates["health"].baseline, rates["health"].candidate) == (
        Proportion(3, 3),
        Proportion(3, 2),
    )
    assert (rates["finance"].baseline, rates["finance"].candidate) == (
        Proportion(2, 1),
        Proportion(2, 2),
    )


@pytest.mark.parametrize("fmt", ["jsonl", "inspect", "lm_eval"])
def test_new_failures_in_named_categories(fmt: str) -> None:
    base, cand = _runs(fmt)
    health, finance = check_new_failures(base, cand, ["health", "finance"])
    expected_new = {"jsonl": "q05", "inspect": "q05", "lm_eval": "support_qa/4"}[fmt]
    assert health.new_failures == (expected_new,) and health.fixed == ()
    assert health.pairs == 3 and not health.ok
    assert health.test.p_worse == pytest.approx(0.5)  # one discordant pair, against
    assert finance.new_failures == () and len(finance.fixed) == 1 and finance.ok
    assert finance.test.p_worse == 1.0


def test_tolerating_noise_needs_a_significant_excess_of_new_failures() -> None:
    base, cand = _runs()
    (health,) = check_new_failures(base, cand, ["health"], tolerate_noise=True)
    assert health.ok  # one new failure, p = 0.5: not shown to be systematic
    # six new failures and no fix: p = 1/64 < 0.05
    base6 = EvalRun(
        "b",
        "jsonl",
        tuple(EvalRecord(f"s{i}", "health", True) for i in range(6)),
        {"health": Proportion(6, 6)},
    )
    cand6 = EvalRun(
        "c",
        "jsonl",
        tuple(EvalRecord(f"s{i}", "health", False) for i in range(6)),
        {"health": Proportion(6, 0)},
    )
    (bad,) = check_new_failures(base6, cand6, ["health"], tolerate_noise=True)
    assert not bad.ok and bad.test.p_worse == pytest.approx(1 / 64)


def test_a_named_category_without_samples_does_not_pass() -> None:
    (legal,) = check_new_failures(*_runs(), ["legal"])
    assert not legal.ok and legal.pairs == 0 and "no samples" in legal.note


def test_new_failures_need_per_sample_results() -> None:
    base = read_run(str(DATA / "lm_eval" / "aggregate"))
    with pytest.raises(InvalidInput, match="pass counts only") as info:
        check_new_failures(base, base, ["arc_easy"])
    assert info.value.hint and "--log_samples" in info.value.hint


def test_offline_eval_stage_combines_the_checks() -> None:
    base, cand = _runs()
    result = offline_eval(base, cand, min_pass_rate=0.8, no_new_failures_in=["finance"])
    assert result.ok and result.pass_rate is not None and result.pass_rate.ok
    assert len(result.rates) == 5  # overall + 4 categories
    worse = offline_eval(base, cand, min_pass_rate=0.8, no_new_failures_in=["health", "finance"])
    assert not worse.ok and worse.new_failures[0].new_failures == ("q05",)


@st.composite
def _paired_runs(draw: st.DrawFn) -> tuple[EvalRun, EvalRun]:
    n = draw(st.integers(min_value=1, max_value=30))
    cats = draw(st.lists(st.sampled_from(["a", "b"]), min_size=n, max_size=n))
    base_ok = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    cand_ok = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    runs = []
    for oks in (base_ok, cand_ok):
        records = tuple(EvalRecord(f"s{i}", cats[i], oks[i]) for i in range(n))
        totals: dict[str, Proportion] = {}
        for r in records:
            totals[r.category] = totals.get(r.category, Proportion(0, 0)) + Proportion(
                1, int(r.passed)
            )
        runs.append(EvalRun("x", "jsonl", records, totals))
    return runs[0], runs[1]


@given(_paired_runs())
def test_new_failures_account_for_the_change_in_passes(runs: tuple[EvalRun, EvalRun]) -> None:
    base, cand = runs
    for check in check_new_failures(base, cand, ["a", "b"]):
        b, c = base.totals.get(check.category), cand.totals.get(check.category)
        if b is None or c is None:
            assert check.pairs == 0 and not check.ok
            continue
        assert c.events - b.events == len(check.fixed) - len(check.new_failures)
        assert 0.0 <= check.test.p_worse <= 1.0
        assert check.ok == (not check.new_failures)


# ------------------------------------------------------------------ as a metric source


def test_measure_gives_pass_counts_per_arm_and_category() -> None:
    source = EvalFileSource(
        "evals", str(DATA / "jsonl" / "v1.jsonl"), str(DATA / "jsonl" / "v2.jsonl")
    )
    fail_rate = _metric(
        name="eval_fail_rate", kind="proportion", event="not passed", worse="higher"
    )
    pass_rate = _metric(name="eval_pass_rate", kind="proportion", event="passed", worse="lower")
    mean_score = _metric(name="eval_score", kind="mean", value="score", worse="lower")
    out = source.measure(_request(fail_rate, pass_rate, mean_score))
    assert out.errors == {}
    assert out.stats[("eval_pass_rate", None)] == {
        "control": Proportion(12, 9),
        "canary": Proportion(12, 10),
    }
    assert out.stats[("eval_fail_rate", None)]["canary"] == Proportion(12, 2)
    assert out.stats[("eval_fail_rate", ("category", "health"))] == {
        "control": Proportion(3, 0),
        "canary": Proportion(3, 1),
    }
    assert out.arm_counts[None] == {"control": 12, "canary": 12}
    assert out.arm_counts[("category", "general")] == {"control": 4, "canary": 4}
    score = out.stats[("eval_score", None)]["control"]
    assert isinstance(score, Moments) and score.n == 12
    assert score.sum == pytest.approx(
        sum([0.92, 0.93, 0.33, 0.95, 0.92, 0.93, 0.94, 0.34, 0.92, 0.93, 0.33, 0.95])
    )
    assert "v1.jsonl" in out.queries["eval_pass_rate"]
    assert "event: not passed" in out.queries["eval_fail_rate"]


def test_measure_reports_a_bad_event_as_that_metrics_error() -> None:
    source = EvalFileSource(
        "evals", str(DATA / "jsonl" / "v1.jsonl"), str(DATA / "jsonl" / "v2.jsonl")
    )
    typo = _metric(name="typo", kind="proportion", event="pased", worse="lower")
    good = _metric(name="good", kind="proportion", event="passed", worse="lower")
    mixed = _metric(name="mixed", kind="proportion", event="score > 'high'", worse="lower")
    out = source.measure(_request(typo, good, mixed))
    assert "unknown eval field 'pased'" in out.errors["typo"]
    assert out.errors["mixed"].startswith("event: score > 'high': ")
    assert not any(key[0] == "typo" for key in out.stats)
    assert out.stats[("good", None)]["canary"] == Proportion(12, 10)


def test_measure_on_aggregate_only_results() -> None:
    folder = str(DATA / "lm_eval" / "aggregate")
    source = EvalFileSource("evals", folder, folder)
    acc = _metric(name="acc", kind="proportion", event="passed", worse="lower")
    score = _metric(name="score", kind="mean", value="score", worse="lower")
    out = source.measure(_request(acc, score))
    assert out.stats[("acc", ("category", "hellaswag"))]["canary"] == Proportion(10042, 5788)
    assert out.stats[("acc", None)]["control"] == Proportion(12418, 7722)
    assert "needs per-sample scores" in out.errors["score"]


def test_measure_refuses_runs_of_different_samples() -> None:
    source = EvalFileSource(
        "evals", str(DATA / "jsonl" / "v1.jsonl"), str(DATA / "jsonl" / "mismatch.jsonl")
    )
    with pytest.raises(InvalidInput, match="expected the same samples"):
        source.measure(
            _request(_metric(name="p", kind="proportion", event="passed", worse="lower"))
        )


def test_from_spec_resolves_paths_from_the_playbook_folder(tmp_path: Path) -> None:
    shutil.copytree(DATA / "inspect", tmp_path / "evals")
    (tmp_path / "playbook.yaml").write_text(
        "rollout: support-v2\n"
        "flag: {backend: file, path: flags.json, key: answer-model, control: v1, canary: v2}\n"
        "sources:\n"
        "  evals: {kind: evalfile, baseline: evals/v1.json, candidate: evals/v2.json,\n"
        "          format: inspect, pass_threshold: 0.5}\n"
        "metrics:\n"
        "  - {name: eval_pass_rate, group: quality, source: evals, kind: proportion,\n"
        "     event: passed, worse: lower, margin: {absolute: 0.05}}\n"
        "stages:\n"
        "  - {name: offline-eval, kind: offline_eval, source: evals, min_pass_rate: 0.8,\n"
        "     no_new_failures_in: [health]}\n"
    )
    loaded = load_playbook(tmp_path / "playbook.yaml")
    source = EvalFileSource.from_spec("evals", loaded.playbook.sources["evals"], loaded)
    assert source.baseline == str(tmp_path / "evals" / "v1.json")
    assert source.options.pass_threshold == 0.5
    base, cand = source.load()
    # at threshold 0.5 the baseline's partial answer to q11 passes, so q11 is a new failure
    assert _passes(base)["q11"] and not _passes(cand)["q11"]
    (general,) = check_new_failures(base, cand, ["general"])
    assert general.new_failures == ("q11",)
