"""Observability for any Celery app: exact per-queue metrics, readiness, traces.

    import telemetry
    telemetry.install(app)      # in every process that publishes or runs app's tasks
    telemetry.uninstall(app)

``install`` reads no variable and starts nothing when called
(``telemetry.installation``). In a process that publishes, each message gets
``x-jobpilot-published-at``, argsrepr/kwargsrepr become ``<N args>`` and
``<N kwargs>`` (unless ``TRACE_TASK_ARGS=true``), ``celery_task_published_total``
is counted in the given registry (prometheus-client's default otherwise) and an
``apply_async/{task}`` span is recorded. When the app starts a worker
(``celery -A yourmodule worker -Q ...``), the worker serves ``/metrics``,
``/livez`` and ``/readyz`` on ``METRICS_HOST:METRICS_PORT``, polls the depth and
age of the app's queues, and sends every span to an export process of its own;
what the worker cannot run is dead-lettered instead of stopping it
(``telemetry.deadletters``; ``install(app, poison_safety=False)`` leaves it out).
With ``install(app, exhausted=True)`` it also keeps every task that fails for
good, to be listed and requeued (``telemetry.failed``; the operator API,
``telemetry.ops``, is served by the broker exporter).
``celery -A yourmodule beat`` serves the same three on ``METRICS_HOST:BEAT_METRICS_PORT``,
with per-entry sent, late, missed and failed runs (``telemetry.beat``).
``uninstall`` undoes all of it: the app is left as stock Celery left it.

The layout: ``settings`` (the variables), ``delivery`` (the delivery lifecycle),
``metrics``, ``readiness``, ``tracing`` (with the export hop, ``tracing.export``),
``endpoints`` (HTTP), ``deadletters`` and ``transport`` (poison safety),
``failed`` and ``ops`` (failed work), ``beat``, and ``wiring`` (the lifecycle
every part keeps, and the order of the parts).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from telemetry.extensions import Extensions
    from telemetry.installation import install, uninstall
    from telemetry.settings import ConfigError, TelemetrySettings

__all__ = ["ConfigError", "Extensions", "TelemetrySettings", "install", "uninstall"]

#: Where each public name lives. Imported on first use (PEP 562), so importing a
#: submodule (the zero-code entry point, which every auto-instrumented process loads,
#: or the dead-letter transport) does not import the whole telemetry.
_PUBLIC = {
    "ConfigError": "telemetry.settings",
    "Extensions": "telemetry.extensions",
    "TelemetrySettings": "telemetry.settings",
    "install": "telemetry.installation",
    "uninstall": "telemetry.installation",
}


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'telemetry' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
