"""Canary, ramp, A/B and 100% stages: live traffic split by the flag, both arms measured over
the same window by the metrics sources, compared by the statistical gate (`gate.py`; an A/B
stage's product metrics are compared once, at its planned end, by the rules there)."""

from __future__ import annotations

from typing import Any

from rolloutctl import gate
from rolloutctl.errors import BackendError
from rolloutctl.metrics.base import Measurement, MeasureRequest
from rolloutctl.metrics.registry import available_kinds, build_source
from rolloutctl.playbook import expr
from rolloutctl.playbook.scope import scope_text
from rolloutctl.report.evidence import interval_for
from rolloutctl.stages.base import Judged, StageLook


def judge(look: StageLook) -> Judged:
    """Each source measures its metrics over the stage so far (with the cumulative looks the
    report charts, when the source can give them in the same pass); a source that fails is
    an error of the look, never a pass."""
    pb = look.playbook
    metrics = gate.stage_metrics(pb, look.stage)
    scope = scope_text(look.loaded, look.stage_index)
    measurements: dict[str, Measurement] = {}
    looks: dict[str, Any] = {}
    source_errors: dict[str, str] = {}
    for source_name in sorted({m.source for m in metrics}):
        if pb.sources[source_name].kind not in available_kinds():
            source_errors[source_name] = f"source kind {pb.sources[source_name].kind!r} unavailable"
            continue
        request = MeasureRequest(
            metrics=tuple(m for m in metrics if m.source == source_name),
            start=look.started,
            end=look.now,
            control=look.control,
            canary=look.canary,
            dimensions=tuple(pb.segments.dimensions),
            scope=expr.parse(scope) if scope else None,
            max_segments=pb.analysis.max_segments,
            never_pooled=pb.segments.never_pooled(),
        )
        try:
            source = build_source(source_name, look.loaded)
            every = interval_for(request.end - request.start)
            series_of = getattr(source, "measure_series", None)
            if series_of is not None and request.end - request.start >= 2 * every:
                looks[source_name] = series_of(request, every, segments_per_look=False)
                measurements[source_name] = looks[source_name][-1][1]
            else:
                measurements[source_name] = source.measure(request)
        except BackendError as exc:
            source_errors[source_name] = exc.message
    result = gate.evaluate(
        pb,
        look.stage_index,
        measurements,
        source_errors,
        stage_started=look.started,
        now=look.now,
        consecutive_errors=look.consecutive_errors,
    )
    return Judged(result, measurements, looks)
