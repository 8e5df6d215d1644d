"""The shadow stage: the candidate answers the same requests in the background, the flag stays
at 0%, and each request's two answers are compared as a pair (`shadow_pairs.py`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rolloutctl import formatting as fmt
from rolloutctl.durations import format_duration, parse_duration
from rolloutctl.gate import FALLBACK_SAMPLES_PER_ARM, stage_metrics
from rolloutctl.results import GateResult, GateVerdict
from rolloutctl.stages.base import Judged, StageLook, request_log, result, row

if TYPE_CHECKING:
    pass


_SHADOW_KINDS = {
    "paired_mean": "mean",
    "paired_proportion": "proportion",
    "paired_quantile": "quantile",
    "ratio": "ratio",
    "rate": "proportion",
}


def _gate(look: StageLook) -> GateResult:
    """The candidate answered the same requests in the background (`shadow:<canary>` rows):
    paired comparisons per request (`shadow.analyze_shadow`), with the stage's minimum
    duration and pairs. The flag stays at 0% throughout."""
    from rolloutctl.gate import planned_vetoes
    from rolloutctl.stages.shadow_pairs import analyze_shadow
    from rolloutctl.stats import sequential

    pb, stage = look.playbook, look.stage
    name, source = request_log(look, ("requestlog",))  # pairing joins files in DuckDB
    metrics = [m for m in stage_metrics(pb, stage) if m.source == name]
    # Pairs are per request; without a written size, tune at the fallback (pairing only
    # removes noise, so the normal sequence's tuning is not critical here).
    expected = (
        stage.expected_samples_per_arm
        or pb.analysis.expected_samples_per_arm
        or FALLBACK_SAMPLES_PER_ARM
    )
    alpha = pb.analysis.alpha
    outcome = analyze_shadow(
        source,
        start=look.started,
        end=look.now,
        control=look.control,
        candidate=look.canary,
        metrics=metrics,
        dimensions=pb.segments.dimensions,
        alpha=alpha,
        rho2=sequential.tune_rho2(alpha / planned_vetoes(pb, metrics), expected),
        min_pairs=stage.min_samples_per_arm or pb.analysis.min_samples_per_arm,
        min_segment_pairs=pb.analysis.min_samples_per_segment,
        critical_segments={(d, v) for d, values in pb.segments.critical.items() for v in values},
    )
    worse = {m.name: m.worse for m in metrics}
    rows = []
    for c in outcome.comparisons:
        note = c.note
        if c.mcnemar_p is not None:
            note = (note + "; " if note else "") + f"exact McNemar p {fmt.p_is(c.mcnemar_p)}"
        rows.append(
            row(
                c.name,
                c.title,
                c.group,
                c.verdict,
                note,
                kind=_SHADOW_KINDS.get(c.kind, c.kind),
                segment=c.segment,
                control=(c.n_pairs, c.control_value),
                canary=(c.n_pairs, c.shadow_value),
                estimate=c.estimate,
                ci=c.ci,
                margin=c.margin or 0.0,
                margin_kind="relative" if c.relative else "absolute",
                worse=worse.get(c.name, "higher"),
                vetoes=c.vetoes,
                p_value=c.p_value,
                p_adjusted=c.p_adjusted,
                test=f"{c.kind.replace('_', ' ')}, paired by request_id",
            )
        )
    if rows:
        rows[0].query = outcome.query
    verdict: GateVerdict = outcome.verdict  # type: ignore[assignment]
    reasons = list(outcome.reasons)
    elapsed = look.now - look.started
    if verdict == "pass" and stage.min_duration and elapsed < parse_duration(stage.min_duration):
        verdict = "inconclusive"
        reasons = [
            f"minimum duration not reached ({format_duration(elapsed)} of "
            f"{stage.min_duration}); the shadow comparison passes so far"
        ]
    notes = [
        *outcome.notes,
        f"{outcome.pairs:,} requests answered by both {look.control} and "
        f"shadow:{look.canary}; the flag stays at 0% in this stage",
    ]
    return result(
        look,
        verdict=verdict,
        reasons=reasons,
        rows=rows,
        notes=notes,
        no_data=outcome.pairs == 0,
    )


def judge(look: StageLook) -> Judged:
    return Judged(_gate(look))
