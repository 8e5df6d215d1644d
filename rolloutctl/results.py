"""What a gate gives back, as JSON carries it: the contract CI jobs parse.

`GateResult` is one evaluation of a stage's gate (the `gate` object of a gate record, and
the gate keys of `check`/`advance --json`); `MetricResult` is one row of it, a comparison
of one metric overall or in one segment, or one check of a non-traffic stage. Every nested
object has its own type, so `rolloutctl schema --output gate-result` publishes the whole
shape (derived from these classes by pydantic, in `json_schema`) and a test validates what
the commands really print against it.

Standard library only: the fast commands render these without the analysis stack."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import (
    Any,
    Literal,
    NotRequired,  # pydantic reads these on 3.11
)

from typing_extensions import TypedDict

from rolloutctl import formatting

GateVerdict = Literal["pass", "fail", "inconclusive", "error"]

# Unknown keys are refused when a JSON document is validated against these types.
_FORBID_EXTRA = {"extra": "forbid"}


class ArmValue(TypedDict):
    """One arm's sample size and value (a rate, mean, ratio or quantile; null: unmeasured)."""

    n: int
    value: float | None


class ErrorDetail(TypedDict):
    """Why a metric could not be measured."""

    message: str
    query: str | None
    error_type: str | None  # the backend's own error class, when it says one


class RankView(TypedDict):
    """Kayenta's view of a quantile metric, shown beside the decision, never deciding:
    Mann-Whitney's one-sided p-values and the Hodges-Lehmann shift with its interval."""

    shift: float
    ci_low: float
    ci_high: float
    p_greater: float
    p_less: float


class SampleRatio(TypedDict, total=False):
    """The sample-ratio check of a stage with two live arms (empty for other stages)."""

    p_value: float
    ok: bool
    counted: str  # "units" (distinct unit_id) or "requests"
    control_n: int
    canary_n: int
    expected_canary_percent: float
    observed_canary_percent: float


class TriggerResult(TypedDict):
    """One rollback or pause trigger, evaluated at this look."""

    name: str
    when: str
    action: str  # rollback | pause
    fired: bool
    evaluated: bool  # false when a value it reads is missing
    error: NotRequired[str]


class Window(TypedDict):
    """The time window both arms were measured over (ISO 8601); a monitor stage compares
    its recent window with a baseline window before the rollout."""

    start: str
    end: str
    baseline_start: NotRequired[str]
    baseline_end: NotRequired[str]


@dataclass
class MetricResult:
    __pydantic_config__ = _FORBID_EXTRA

    name: str
    title: str
    group: str
    kind: str
    segment: dict[str, str] | None
    critical: bool
    advisory: bool
    vetoes: bool  # does a failure here fail the gate?
    control: ArmValue
    canary: ArmValue
    estimate: float | None
    ci: list[float | None]
    margin: float
    margin_kind: str  # absolute | relative
    worse: str
    verdict: str  # pass | fail | inconclusive | error
    note: str = ""
    limit: float | None = None
    alpha: float | None = None  # of the harmful side: fail (split over the vetoing comparisons)
    alpha_pass: float | None = None  # of the safe side: pass (an intersection-union test)
    query: str | None = None
    p_value: float | None = None  # always-valid one-sided p of "not worse than the margin"
    p_adjusted: float | None = None  # Holm for vetoing comparisons, BH for diagnostic ones
    test: str = ""
    # Kayenta's view, reported beside the decision and never deciding (quantile metrics,
    # whose histograms carry the distributions).
    rank: RankView | None = None
    # A metric that could not be measured (verdict "error").
    error: ErrorDetail | None = None


@dataclass
class GateResult:
    __pydantic_config__ = _FORBID_EXTRA

    rollout: str
    stage: str
    stage_index: int
    verdict: GateVerdict
    reasons: list[str]
    srm: SampleRatio
    metrics: list[MetricResult]
    triggers: list[TriggerResult]
    window: Window
    evaluated_at: str
    elapsed: str
    min_duration_met: bool
    max_duration_passed: bool
    no_data: bool
    errors: int  # deciding metrics without a measurement this time
    trigger_action: str | None = None  # rollback | pause when a trigger fired
    tuned_at: int = 0  # total requests at which the sequential mixture is tightest
    bad_rows: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    decision: str | None = None  # filled by the engine
    report: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        return formatting.json_safe(data)


# What the commands that judge no gate print with --json.


class SmokeCheckJSON(TypedDict):
    """One smoke check: its stable name, what it checks, and why it passed or failed."""

    name: str
    title: str
    passed: bool
    reason: str
    value: float | None  # milliseconds for timeout_honoured and latency


class SmokeResultJSON(TypedDict):
    """One smoke stage's calls to the candidate's endpoint."""

    endpoint: str  # scheme, host and path only
    model: str
    passed: bool
    checks: list[SmokeCheckJSON]


class SmokeStageJSON(SmokeResultJSON):
    stage: str


class SmokeRun(TypedDict):
    """What `smoke --json` prints."""

    playbook: str
    passed: bool
    stages: list[SmokeStageJSON]


class ReportResult(TypedDict):
    """What `report --json` prints: the rollout and its re-rendered index page."""

    rollout: str
    report: str


class SimulatedLog(TypedDict):
    """What `simulate --json` prints for a request log (every stage but eval)."""

    out: str
    rows: int
    scenario: str | None
    stage: str
    requests: NotRequired[int]  # shadow: the live requests, without the shadow calls
    shadow_calls: NotRequired[int]


class SimulatedEvals(TypedDict):
    """What `simulate --stage eval --json` prints: the two eval runs written."""

    stage: str
    scenario: str
    baseline: str
    candidate: str
    format: str
    samples: int


class DemoRollout(TypedDict):
    rollout: str
    scenario: str
    status: str
    stage: str
    hours: int
    rows: int
    report: str | None
    steps: list[str]


class InitResult(TypedDict):
    """What `init --json` prints: the playbook written and the command to run next."""

    wrote: str
    next: str


class DemoResult(TypedDict):
    """What `demo --json` prints: where the demo ran and how each rollout ended."""

    workdir: str
    rollouts: list[DemoRollout]


def queries_served(rows: Iterable[tuple[str, str | None]]) -> dict[str, list[str]]:
    """Each distinct query of a gate with the metrics it measured, from (metric, query) of
    the overall rows: one request-log scan or one Prometheus query often serves several."""
    served: dict[str, list[str]] = {}
    for name, query in rows:
        if query:
            served.setdefault(query, []).append(name)
    return served
