"""The one place that knows every source kind; imports each backend only when used."""

from __future__ import annotations

import importlib

from rolloutctl.errors import InvalidInput
from rolloutctl.metrics.base import MetricSource
from rolloutctl.playbook.load import LoadedPlaybook

_KINDS = {
    "requestlog": "rolloutctl.metrics.requestlog:RequestLogSource",
    "sql": "rolloutctl.metrics.sql:SqlSource",
    "prometheus": "rolloutctl.metrics.prometheus:PrometheusSource",
    "http": "rolloutctl.metrics.http:HttpSource",
    "evalfile": "rolloutctl.metrics.evalfile:EvalFileSource",
}


def available_kinds() -> list[str]:
    from rolloutctl import plugins

    return sorted([*_KINDS, *plugins.names(plugins.SOURCES)])


def build_source(name: str, loaded: LoadedPlaybook) -> MetricSource:
    spec = loaded.playbook.sources[name]
    target = _KINDS.get(spec.kind)
    if target is None:
        from rolloutctl import plugins

        plugin = plugins.load(plugins.SOURCES, spec.kind)
        if plugin is not None:
            built: MetricSource = plugin.from_spec(name, spec, loaded)
            return built
        raise InvalidInput(
            f"{loaded.path}: source {name!r} has kind {spec.kind!r}, which this version of "
            f"rolloutctl cannot query yet (available: {', '.join(available_kinds())})",
            hint="use a requestlog source for this stage's metrics, or mark them advisory",
        )
    module_name, class_name = target.split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    source: MetricSource = cls.from_spec(name, spec, loaded)
    return source
