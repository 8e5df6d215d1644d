"""The rollout playbook as a validated model: what a team writes down before the first user
sees the change. Field names follow ../shared/playbook-example.yaml; `rolloutctl schema` prints
the JSON Schema generated from these classes."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)

from rolloutctl.durations import DURATION_PATTERN, parse_duration
from rolloutctl.flags.registry import KINDS as FLAG_BACKENDS
from rolloutctl.state.store import NAME_PATTERN

NAME_RE = NAME_PATTERN
METRIC_NAME_RE = r"^[A-Za-z_][A-Za-z0-9_]*$"


class Strict(BaseModel):
    # A margin, limit or threshold of .inf or .nan could never be crossed: refused.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


Duration = Annotated[
    str,
    Field(
        pattern=DURATION_PATTERN,
        description="a duration such as 30m, 2h, 7d",
        examples=["30m", "2h", "7d"],
    ),
]


# ---------------------------------------------------------------- scope, constraints, flag


class Scope(Strict):
    first: str | None = Field(None, description="who gets the change first, in words")
    held_back_until_shown_safe: list[str] = Field(
        default_factory=list, description="segment values kept on the control until shown safe"
    )


class _Flag(Strict):
    key: str = Field(description="the flag key that selects control or canary")
    control: str = Field(description="variant name of the current version")
    canary: str = Field(description="variant name of the candidate")

    @model_validator(mode="after")
    def _distinct(self) -> _Flag:
        if self.control == self.canary:
            raise ValueError("control and canary must be different variant names")
        return self


class FileFlag(_Flag):
    """The embedded default: a flagd / OpenFeature flag definition file."""

    backend: Literal["file"] = "file"
    path: str = Field(description="flag file (flagd JSON); relative to the playbook's folder")
    targeting_key: str = Field(
        "targetingKey", description="evaluation-context attribute the fractional split hashes"
    )


class GatewayFlag(_Flag):
    """An LLM gateway's weighted model list: a LiteLLM proxy config file the gateway reloads."""

    backend: Literal["gateway"]
    path: str = Field(description="gateway config (LiteLLM config.yaml); relative to the playbook")
    key: str = Field(description="the `model_name` group whose deployments share the traffic")
    control: str = Field(
        description="current deployment: its model_info.id or litellm_params.model"
    )
    canary: str = Field(description="candidate deployment: model_info.id or litellm_params.model")


class WebhookFlag(_Flag):
    """Any other flag system behind a small JSON webhook (contract in README, Flag backends)."""

    backend: Literal["http"]
    url: str = Field(description="POST target of every change; may use ${ENV} (never reported)")
    read_url: str = Field(description="GET ?flag=KEY answers the flag now; may use ${ENV}")
    headers: dict[str, str] = Field(
        default_factory=dict, description="extra HTTP headers; values may use ${ENV}"
    )
    token_env: str | None = Field(
        None, description="environment variable holding a bearer token (never the token)"
    )
    timeout: Duration = "10s"
    retries: int = Field(2, ge=0, le=10, description="retries on 5xx and connection errors")


class LaunchDarklyFlag(_Flag):
    """A LaunchDarkly flag's default rule, changed through the REST API's semantic patch."""

    backend: Literal["launchdarkly"]
    project: str = Field(description="LaunchDarkly project key")
    environment: str = Field(description="LaunchDarkly environment key, e.g. production")
    control: str = Field(description="value (or name) of the flag's current variation")
    canary: str = Field(description="value (or name) of the flag's candidate variation")
    token_env: str = Field(
        "LD_API_TOKEN", description="environment variable holding the API access token"
    )
    base_url: str = Field("https://app.launchdarkly.com", description="API base URL")
    context_kind: str = Field(
        "user",
        pattern=r"^[A-Za-z0-9._-]+$",
        description="context kind the percentage rollout buckets (rolloutContextKind)",
    )
    bucket_by: str = Field(
        "key",
        min_length=1,
        description="attribute of that context kind the rollout hashes (rolloutBucketBy)",
    )
    timeout: Duration = "10s"
    retries: int = Field(2, ge=0, le=10, description="retries on 5xx and connection errors")


class UnleashFlag(_Flag):
    """An Unleash feature in one environment: a flexibleRollout strategy through the Admin API."""

    backend: Literal["unleash"]
    url: str = Field(
        description="Unleash base URL, e.g. https://unleash.example.com; may use ${ENV}"
    )
    project: str = Field("default", description="Unleash project id")
    environment: str = Field(description="Unleash environment, e.g. production")
    key: str = Field(description="the feature (flag) name; enabled = canary, disabled = control")
    stickiness: str = Field(
        "default", description="what keeps a user on one arm: default, userId, sessionId, ..."
    )
    token_env: str = Field(
        "UNLEASH_ADMIN_TOKEN", description="environment variable holding an admin API token"
    )
    timeout: Duration = "10s"
    retries: int = Field(2, ge=0, le=10, description="retries on 5xx and connection errors")


class PluginFlag(_Flag):
    """A flag backend an installed plugin provides (entry point group `rolloutctl.flags`,
    docs/plugins.md); its other keys are the plugin's to check."""

    model_config = ConfigDict(extra="allow", frozen=True, allow_inf_nan=False)
    backend: str = Field(description="a backend an installed plugin provides")

    @field_validator("backend")
    @classmethod
    def _installed(cls, backend: str) -> str:
        return _provided("flag backend", backend, FLAG_BACKENDS, "rolloutctl.flags")


def _provided(what: str, name: str, builtin: tuple[str, ...], group: str) -> str:
    from rolloutctl import plugins

    if name not in plugins.names(group):
        installed = ", ".join(plugins.names(group)) or "none installed"
        raise ValueError(
            f"expected a {what}: one of {', '.join(builtin)}, or one a plugin provides "
            f"({installed})"
        )
    return name


def _tag(key: str, builtin: tuple[str, ...], default: str | None = None) -> Any:
    """The union member for a section: its `key` when built in, "plugin" for any other name
    (the plugin models check it is installed), None when the key is missing."""

    def tag(value: Any) -> str | None:
        name = value.get(key, default) if isinstance(value, dict) else getattr(value, key, default)
        if name is None:
            return None
        return str(name) if name in builtin else "plugin"

    return tag


FlagSpec = Annotated[
    Annotated[FileFlag, Tag("file")]
    | Annotated[GatewayFlag, Tag("gateway")]
    | Annotated[WebhookFlag, Tag("http")]
    | Annotated[LaunchDarklyFlag, Tag("launchdarkly")]
    | Annotated[UnleashFlag, Tag("unleash")]
    | Annotated[PluginFlag, Tag("plugin")],
    Discriminator(_tag("backend", FLAG_BACKENDS, default="file")),
]


# ---------------------------------------------------------------- sources


class RequestLogSpec(Strict):
    """Request logs (JSONL / CSV / Parquet, a path or glob) queried in place by DuckDB."""

    kind: Literal["requestlog"]
    path: str | list[str] = Field(description="file, glob, or list of them; relative to playbook")
    format: Literal["auto", "jsonl", "csv", "parquet"] = "auto"


SqlEngine = Literal[
    "duckdb", "postgres", "clickhouse", "bigquery", "snowflake", "databricks", "trino"
]


class SqlSpec(Strict):
    """Request logs in a SQL engine: the request-log aggregation runs there, and only
    sufficient statistics come back."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    kind: Literal["sql"]
    engine: SqlEngine = Field(description="the engine the SQL is written for and run on")
    url: str | None = Field(
        None,
        description="connection URL or DSN, from the environment (${DATABASE_URL}); never "
        "printed. duckdb: a database file or empty for an in-memory engine",
    )
    table: str | None = Field(None, description="the table (or view) of request logs")
    from_: str | None = Field(
        None, alias="from", description="a subquery in the engine's SQL, instead of table:"
    )
    columns: dict[str, str] = Field(
        default_factory=dict,
        description="request-log column -> the engine's column or expression, e.g. "
        "{ts: event_time, unit_id: user_id, latency_ms: 'duration_ns / 1e6'}",
    )
    variants: dict[str, str] = Field(
        default_factory=dict,
        description="flag variant -> the value the variant column holds for it, e.g. "
        "{v1: answer-model-v1}; values not listed are counted as unknown variants",
    )

    @model_validator(mode="after")
    def _one_relation(self) -> SqlSpec:
        if (self.table is None) == (self.from_ is None):
            raise ValueError("give exactly one of table: or from:")
        return self


class PrometheusSpec(Strict):
    """A Prometheus-compatible HTTP API (Prometheus, VictoriaMetrics, Thanos, Mimir)."""

    kind: Literal["prometheus"]
    url: str = Field(description="base URL, e.g. http://prometheus:9090 (may use ${ENV})")
    headers: dict[str, str] = Field(
        default_factory=dict, description="extra HTTP headers; values may use ${ENV}"
    )
    timeout: Duration = "10s"
    bearer_token_env: str | None = Field(
        None, description="environment variable holding a bearer token (never the token)"
    )
    basic_auth_env: str | None = Field(
        None, description="environment variable holding user:password for basic auth"
    )
    tls_verify: bool | str = Field(
        True, description="verify the server's certificate: true, false, or a CA bundle path"
    )
    retries: int = Field(
        2, ge=0, le=10, description="retries after the first try on 5xx and connection errors"
    )
    step: Duration = Field(
        "5m", description="interval of the range queries that estimate a mean's variance"
    )
    variants: dict[str, str] = Field(
        default_factory=dict,
        description="the arm label's value for each flag variant whose series carry another "
        "value, e.g. {v1: answer-model-v1} (OpenTelemetry's gen_ai.request.model)",
    )

    @model_validator(mode="after")
    def _one_auth(self) -> PrometheusSpec:
        if self.bearer_token_env and self.basic_auth_env:
            raise ValueError("give at most one of bearer_token_env and basic_auth_env")
        if len(set(self.variants.values())) < len(self.variants):
            raise ValueError("variants: two variants map to the same label value")
        return self


class HttpSpec(Strict):
    """A JSON web service answering sufficient statistics per arm (Argo Rollouts' web metric)."""

    kind: Literal["http"]
    url: str = Field(
        description="URL template: {{variant}}, {{start}}, {{end}}, {{window}}, {{segment.<dim>}}"
    )
    method: Literal["GET", "POST"] = "GET"
    headers: dict[str, str] = Field(
        default_factory=dict, description="header values may use ${ENV} (never reported)"
    )
    body: str | None = Field(None, description="POST body template, same placeholders as url")
    json_path: str | None = Field(
        None,
        description="where the statistics are in the answer, e.g. $.data.stats; a metric's "
        "`query:` overrides it",
    )
    timeout: Duration = "10s"
    retries: int = Field(3, ge=0, le=10, description="retries on 5xx and connection errors")
    segments: dict[str, list[str]] = Field(
        default_factory=dict,
        description="segment values to ask for, per dimension, when a template names "
        "{{segment.<dimension>}}",
    )


class EvalRunPick(Strict):
    """One promptfoo file holding both runs: which prompt or provider is which run."""

    baseline: str
    candidate: str


class EvalFileSpec(Strict):
    """Offline eval results of a baseline run and a candidate run on the same samples."""

    kind: Literal["evalfile"]
    baseline: str = Field(description="eval result file, folder or glob; relative to playbook")
    candidate: str = Field(description="the candidate's run of the same samples")
    format: Literal["auto", "promptfoo", "inspect", "lm_eval", "jsonl"] = "auto"
    scorer: str | None = Field(
        None,
        description="which score decides pass: an Inspect scorer (scorer or scorer/key) or an "
        "lm-eval metric (acc, exact_match, ...); default: the first one",
    )
    pass_threshold: float = Field(
        1.0, description="a numeric score passes at or above this (Inspect C = 1, P = 0.5)"
    )
    category_field: str = Field(
        "category", description="metadata key (or JSONL field) holding the sample's category"
    )
    prompt: str | EvalRunPick | None = Field(
        None,
        description="promptfoo: the prompt whose results are the run (its label, file or id) "
        "when a file compares several; {baseline: ..., candidate: ...} picks each run's",
    )
    provider: str | EvalRunPick | None = Field(
        None,
        description="promptfoo: the provider whose results are the run (its id or label) when "
        "a file compares several; {baseline: ..., candidate: ...} picks each run's",
    )


BUILTIN_SOURCES = ("requestlog", "sql", "prometheus", "http", "evalfile")
LOG_KINDS = ("requestlog", "sql")  # sources of request rows: files, or a SQL engine


class PluginSourceSpec(BaseModel):
    """A source an installed plugin provides (entry point group `rolloutctl.sources`,
    docs/plugins.md): `kind:` names it; its other keys are the plugin's to check."""

    model_config = ConfigDict(extra="allow", frozen=True, allow_inf_nan=False)
    kind: str = Field(description="a source kind an installed plugin provides")

    @field_validator("kind")
    @classmethod
    def _installed(cls, kind: str) -> str:
        return _provided("source kind", kind, BUILTIN_SOURCES, "rolloutctl.sources")


Source = Annotated[
    Annotated[RequestLogSpec, Tag("requestlog")]
    | Annotated[SqlSpec, Tag("sql")]
    | Annotated[PrometheusSpec, Tag("prometheus")]
    | Annotated[HttpSpec, Tag("http")]
    | Annotated[EvalFileSpec, Tag("evalfile")]
    | Annotated[PluginSourceSpec, Tag("plugin")],
    Discriminator(
        _tag("kind", BUILTIN_SOURCES),
        custom_error_type="source_kind",
        custom_error_message="a source needs `kind:` (requestlog, sql, prometheus, http, "
        "evalfile, or a plugin's)",
    ),
]


# ---------------------------------------------------------------- segments, analysis


class Segments(Strict):
    dimensions: list[str] = Field(
        default_factory=list, description="request-log columns to break every metric down by"
    )
    critical: dict[str, list[str]] = Field(
        default_factory=dict,
        description="segment values whose regression vetoes on its own, per dimension",
    )

    @model_validator(mode="after")
    def _critical_dims_declared(self) -> Segments:
        for dim in self.critical:
            if dim not in self.dimensions:
                raise ValueError(
                    f"critical dimension {dim!r} is not in dimensions {self.dimensions}"
                )
        return self

    def never_pooled(self) -> tuple[tuple[str, tuple[str, ...]], ...]:
        """The critical values per dimension, as MeasureRequest.never_pooled takes them."""
        return tuple((dim, tuple(str(v) for v in values)) for dim, values in self.critical.items())


class Analysis(Strict):
    alpha: float = Field(
        0.05, gt=0, lt=0.5, description="chance of any false rollback over a whole stage"
    )
    method: Literal["sequential", "fixed"] = "sequential"
    min_samples_per_arm: int = Field(1000, ge=1)
    min_samples_per_segment: int = Field(
        200, ge=1, description="segments with fewer samples per arm are shown but not judged"
    )
    expected_samples_per_arm: int | None = Field(
        None,
        ge=100,
        description="sample size per arm at which the sequential interval is tuned to be "
        "tightest; by default the traffic the stage sees by its minimum (else maximum) "
        "duration at the observed request rate",
    )
    max_segments: int = Field(
        60, ge=1, description="cap on segment values judged per dimension (guards explosion)"
    )
    srm_p: float = Field(0.001, gt=0, lt=0.5, description="sample-ratio-mismatch threshold")
    on_no_data: Literal["hold", "pause", "rollback"] = "hold"
    pass_requires: Literal["non_inferiority", "no_failure"] = Field(
        "non_inferiority",
        description="non_inferiority: every deciding metric must be shown within its margin; "
        "no_failure: the stage passes at its minimum duration and samples unless something "
        "failed (how Argo Rollouts, Flagger and GrowthBook safe rollouts pass)",
    )
    consecutive_error_limit: int = Field(4, ge=1)
    diagnostic_fdr: float = Field(
        0.10,
        gt=0,
        lt=1,
        description="false discovery rate (Benjamini-Hochberg) for flagging segments that are "
        "shown but do not veto",
    )


# ---------------------------------------------------------------- metrics


class Margin(Strict):
    """How much worse the canary may be before it counts as a regression."""

    absolute: float | None = Field(None, ge=0, description="in the metric's own units")
    relative: float | None = Field(None, ge=0, description="as a fraction of the control value")

    @model_validator(mode="after")
    def _exactly_one(self) -> Margin:
        if (self.absolute is None) == (self.relative is None):
            raise ValueError("give exactly one of absolute or relative")
        return self


class Metric(Strict):
    name: str = Field(pattern=METRIC_NAME_RE)
    title: str | None = Field(None, description="plain-language label for reports")
    group: Literal["product", "quality", "technical", "safety"]
    source: str = Field(description="a key of `sources`")
    kind: Literal["proportion", "mean", "quantile", "ratio"]
    event: str | None = Field(None, description="proportion: a boolean column or condition")
    value: str | None = Field(None, description="mean / quantile: a numeric column")
    q: float | None = Field(None, gt=0, lt=1, description="quantile: e.g. 0.95")
    numerator: str | None = Field(None, description="ratio: numeric column summed on top")
    denominator: str | None = Field(None, description="ratio: column summed below")
    query: str | None = Field(None, description="prometheus / http: the query template")
    histogram: str | None = Field(None, description="prometheus: a histogram query template")
    total: str | None = Field(
        None,
        description="prometheus: query template of the totals: the request counter when "
        "`query` gives events of another counter (proportion), or the `_count` increase when "
        "`query` gives the `_sum` increase (mean)",
    )
    worse: Literal["higher", "lower"]
    margin: Margin
    limit: float | None = Field(None, description="an absolute limit on the canary's value")
    critical: bool = Field(
        False,
        description="vetoes on its own: overall and in the critical segments (in every segment "
        "with per_segment)",
    )
    advisory: bool = Field(False, description="reported, never decides (a dry run)")
    per_segment: bool = Field(False, description="judge every segment value, not only overall")
    weight: float = Field(
        1.0,
        gt=0,
        allow_inf_nan=False,
        description="its share of the false-rollback budget (alpha) against the other metrics'"
        " (each vetoing comparison of this metric weighs this much in Holm's weighted"
        " procedure): raise it where harm must be caught fastest, e.g. safety",
    )
    test: Literal["auto", "normal", "exact"] = Field(
        "auto",
        description="proportion: 'exact' judges harm with the exact conditional test built "
        "for rare events (a handful of unsafe answers); 'auto' is exact for the safety group",
    )

    @model_validator(mode="after")
    def _fields_for_kind(self) -> Metric:
        if self.critical and self.advisory:
            raise ValueError("a metric cannot be both critical and advisory")
        if self.test == "exact" and self.kind != "proportion":
            raise ValueError("test: exact is for proportion metrics (rare events)")
        if self.query or self.histogram:
            return self  # a query-based source supplies the numbers
        needs = {
            "proportion": ("event",),
            "mean": ("value",),
            "quantile": ("value", "q"),
            "ratio": ("numerator", "denominator"),
        }[self.kind]
        missing = [f for f in needs if getattr(self, f) is None]
        if missing:
            raise ValueError(f"a {self.kind} metric needs {' and '.join(missing)}")
        return self

    @property
    def deciding(self) -> bool:
        return not self.advisory

    @property
    def exact(self) -> bool:
        """Is harm judged by the exact rare-event test?"""
        if self.kind != "proportion":
            return False
        return self.test == "exact" or (self.test == "auto" and self.group == "safety")


# ---------------------------------------------------------------- stages


StageKind = Literal["canary", "smoke", "offline_eval", "shadow", "ab", "monitor"]


class Stage(Strict):
    name: str = Field(pattern=NAME_RE)
    kind: StageKind = "canary"
    traffic: float | None = Field(None, ge=0, le=100, description="percent served by the canary")
    min_duration: Duration | None = None
    max_duration: Duration | None = None
    duration: Duration | None = Field(None, description="planned length (ab, monitor)")
    min_samples_per_arm: int | None = Field(None, ge=1)
    expected_samples_per_arm: int | None = Field(
        None, ge=100, description="overrides analysis.expected_samples_per_arm for this stage"
    )
    scope: str | None = Field(
        None,
        description="who may get the canary in this stage: a condition on segment columns, "
        "or 'all'; inherited by later stages until changed",
    )
    approval: Literal["none", "required"] = "none"
    on_inconclusive_at_max: Literal["hold", "pause", "rollback", "advance"] = "hold"
    method: Literal["sequential", "fixed"] | None = None
    pass_requires: Literal["non_inferiority", "no_failure"] | None = None
    metrics: list[str] | None = Field(None, description="judge only these metrics here")
    # stage kinds other than canary
    source: str | None = Field(
        None, description="offline_eval: the evalfile source; shadow, monitor: the request log"
    )
    endpoint: str | None = Field(
        None, description="smoke: OpenAI-compatible base URL, e.g. ${CANDIDATE_BASE_URL}"
    )
    model: str | None = Field(None, description="smoke: the model name the endpoint must serve")
    api_key: str | None = Field(
        None, description="smoke: the key, as ${ENV} (never written in the playbook itself)"
    )
    route: str = Field("/v1/chat/completions", description="smoke: chat completions path")
    calls: int = Field(3, ge=1, le=20, description="smoke: sequential calls timed for latency")
    max_latency: Duration | None = Field(
        None, description="smoke: limit on the median latency of those calls"
    )
    timeout: Duration | None = Field(None, description="smoke: timeout of each call")
    min_pass_rate: float | None = Field(None, ge=0, le=1)
    no_new_failures_in: list[str] | None = Field(
        None, description="offline_eval: categories where any sample that passed must still pass"
    )
    baseline: Literal["pre-rollout"] | None = Field(
        None, description="monitor: what recent traffic is compared with"
    )
    window: Duration | None = Field(
        None, description="monitor: the recent window compared with the baseline (default 24h)"
    )

    @model_validator(mode="after")
    def _traffic_for_kind(self) -> Stage:
        if self.kind in ("canary", "ab") and self.traffic is None:
            raise ValueError(f"a {self.kind} stage needs traffic (percent for the canary)")
        if self.kind in ("smoke", "offline_eval", "monitor") and self.traffic is not None:
            raise ValueError(f"a {self.kind} stage does not move traffic; remove `traffic`")
        if self.kind == "shadow" and self.traffic not in (None, 0):
            raise ValueError("a shadow stage keeps the flag at 0%; remove `traffic`")
        if self.kind == "smoke" and (not self.endpoint or not self.model):
            raise ValueError("a smoke stage needs `endpoint` and `model`")
        if self.kind == "offline_eval" and not self.source:
            raise ValueError("an offline_eval stage needs `source` (an evalfile source)")
        if self.kind == "ab" and (self.method or "sequential") == "fixed" and not self.duration:
            raise ValueError("an A/B stage with `method: fixed` needs its planned `duration`")
        if (
            self.min_duration
            and self.max_duration
            and parse_duration(self.max_duration) < parse_duration(self.min_duration)
        ):
            raise ValueError("max_duration is shorter than min_duration")
        return self


# ---------------------------------------------------------------- triggers, controls, notify


class Trigger(Strict):
    name: str
    when: str = Field(description="e.g. 'canary.error_rate > 2 * control.error_rate'")
    action: Literal["rollback", "pause"]


class Control(Strict):
    name: str = Field(pattern=NAME_RE)
    layer: Literal["provider", "feature", "scenario", "ux_fallback", "review"]
    title: str = Field(description="what it does, in plain language for operators")
    set: dict[str, Any] = Field(description="flag key -> value (or {canary_percent: N})")


NotifyEvent = Literal["advance", "hold", "pause", "rollback", "control", "complete", "drift"]


class Notify(Strict):
    kind: Literal["slack", "webhook"]
    url: str
    on: list[NotifyEvent] = Field(default_factory=lambda: list[NotifyEvent](["rollback", "pause"]))


# ---------------------------------------------------------------- the playbook


class Playbook(Strict):
    rollout: str = Field(pattern=NAME_RE, description="the rollout's name (its state folder)")
    description: str | None = None
    goal: str | None = Field(None, description="why: accuracy, latency, cost or safety")
    scope: Scope = Field(default_factory=Scope)
    constraints: dict[str, float | int | str] = Field(default_factory=dict)
    flag: FlagSpec
    sources: dict[str, Source]
    segments: Segments = Field(default_factory=Segments)
    analysis: Analysis = Field(default_factory=Analysis)
    metrics: list[Metric] = Field(min_length=1)
    stages: list[Stage] = Field(min_length=1)
    triggers: list[Trigger] = Field(default_factory=list)
    controls: list[Control] = Field(default_factory=list)
    notify: list[Notify] = Field(default_factory=list)

    @field_validator("metrics")
    @classmethod
    def _unique_metric_names(cls, metrics: list[Metric]) -> list[Metric]:
        _no_duplicates([m.name for m in metrics], "metric")
        return metrics

    @field_validator("stages")
    @classmethod
    def _unique_stage_names(cls, stages: list[Stage]) -> list[Stage]:
        _no_duplicates([s.name for s in stages], "stage")
        return stages

    def metric(self, name: str) -> Metric:
        for m in self.metrics:
            if m.name == name:
                return m
        raise KeyError(name)

    def stage_index(self, name: str) -> int:
        for i, s in enumerate(self.stages):
            if s.name == name:
                return i
        raise KeyError(name)


def _no_duplicates(names: list[str], what: str) -> None:
    seen: set[str] = set()
    for n in names:
        if n in seen:
            raise ValueError(f"{what} name {n!r} is used twice")
        seen.add(n)
