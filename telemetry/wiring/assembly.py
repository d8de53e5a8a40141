"""Which concerns an installed app and its worker get, in what order, and what each is given.

    concerns = app_concerns(registry)        # at telemetry.install(app)
    concerns = worker_concerns(context)      # at worker_init, after the app's

The one place a concern is added: one line in one of the two lists. The order is
the order of ``install``, ``start``, ``ready`` and ``pool_process``; ``stop`` and
``uninstall`` go in reverse (``telemetry.wiring.concern``). Each concern is given
what it depends on when it is built, so the graph is built once, here.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from telemetry.delivery.request_classes import RequestClasses
from telemetry.endpoints import Endpoints
from telemetry.metrics.concern import Metrics
from telemetry.readiness.concern import Readiness
from telemetry.readiness.health_task import HealthTask
from telemetry.tracing.concern import Tracing
from telemetry.tracing.providers import sdk_disabled
from telemetry.wiring.concern import Concern
from telemetry.wiring.context import WorkerContext
from telemetry.wiring.producer import Publishing


def app_concerns(registry: CollectorRegistry | None) -> list[Concern]:
    """What ``install(app)`` sets up, from what it was given.

    Poison safety (the dead-letter transport in kombu's tables) belongs first:
    registered before anything opens a connection, and taken out last.
    """
    return [
        Publishing(registry),
        HealthTask(),  # before the worker's RequestClasses, which give its Request the mixin
    ]


def worker_concerns(context: WorkerContext) -> list[Concern]:
    """What a worker of the app runs, after the app's concerns.

    ``METRICS_ENABLED=false`` leaves tracing alone: no port, no metrics, no
    probes. The endpoints come last: they bind when built, so a taken port exits
    before anything starts, and they serve once every other concern is ready.
    """
    settings = context.settings
    metrics = Metrics(context) if settings.metrics_enabled else None
    readiness = Readiness(context, metrics.metrics) if metrics is not None else None
    tracing = None if sdk_disabled() else Tracing(context)
    endpoints = (
        Endpoints(settings, metrics.cache, readiness.probe if readiness else None)
        if metrics is not None
        else None
    )
    ordered = (
        RequestClasses(context.app, settings.trace_task_args),
        metrics,
        readiness,
        tracing,
        endpoints,
    )
    return [concern for concern in ordered if concern is not None]
