"""Which concerns an installed app and its worker get, in what order, and what each is given.

    concerns = app_concerns(registry, True, service)         # at telemetry.install(app)
    concerns = worker_concerns(context, installed)          # at worker_init

The one place a concern is added: one line in one of the two lists. The order is
the order of ``install``, ``start``, ``ready`` and ``pool_process``; ``stop`` and
``uninstall`` go in reverse (``telemetry.wiring.concern``). Each concern is given
what it depends on when it is built, so the graph is built once, here.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from telemetry.beat.hooks import BEAT_HOOKS
from telemetry.deadletters.safety import PoisonSafety, PoisonTransport
from telemetry.delivery.dropped import DroppedRequests
from telemetry.delivery.request_classes import RequestClasses
from telemetry.endpoints import Endpoints
from telemetry.failed.exhausted import ExhaustedCapture
from telemetry.metrics.concern import Metrics
from telemetry.metrics.otlp import OtlpMetrics
from telemetry.metrics.otlp.readings import WorkerReadings
from telemetry.readiness.concern import Readiness
from telemetry.readiness.health_task import HealthTask
from telemetry.tracing.concern import Tracing
from telemetry.tracing.providers import sdk_disabled
from telemetry.tracing.service import Service
from telemetry.tracing.untraced import UntracedResults
from telemetry.transport.bounds import BrokerBounds
from telemetry.wiring.concern import Concern
from telemetry.wiring.context import WorkerContext
from telemetry.wiring.producer import Publishing


def app_concerns(
    registry: CollectorRegistry | None, poison_safety: bool, service: Service | None = None
) -> list[Concern]:
    """What ``install(app)`` sets up, from what it was given.

    The dead-letter transport comes first: registered in kombu's tables before
    anything else runs, and taken out of them last. The broker bounds follow
    (``telemetry.transport.bounds``): applied when the app is configured, before
    its first connection, whatever else the process does. The beat hooks act in a
    beat process only (``celery -A app beat``), where no worker hook runs.
    """
    ordered = (
        PoisonTransport() if poison_safety else None,
        BrokerBounds(),
        UntracedResults(),
        Publishing(registry, service),
        HealthTask(),
        BEAT_HOOKS,  # one for the process, whatever the number of apps
    )
    return [concern for concern in ordered if concern is not None]


def worker_concerns(context: WorkerContext, installed: Concern) -> list[Concern]:
    """What a worker of the app runs; ``installed`` are the app's concerns, which start first.

    Poison safety holds with ``TELEMETRY_ENABLED=false``, which turns off the
    rest. It follows the app's concerns (so the health task they register gets
    its Request too) and precedes the telemetry's Request classes, which wrap
    its own. ``METRICS_ENABLED=false`` leaves tracing alone: no port, no
    metrics, no probes. The endpoints come last: they bind when built, so a
    taken port exits before anything starts, and they serve once every other
    concern is ready.
    """
    settings = context.settings
    safety = PoisonSafety(settings) if context.poison_safety else None
    if not settings.telemetry_enabled:
        return [safety] if safety is not None else []
    metrics = Metrics(context) if settings.metrics_enabled else None
    readiness = Readiness(context, metrics.metrics) if metrics is not None else None
    readings = (
        WorkerReadings(
            metrics.metrics, metrics.recorder.failed_runtimes, context.system, context.polls_queues
        )
        if metrics is not None
        else None
    )
    endpoints = (
        Endpoints(settings, metrics.cache, readiness.probe if readiness else None)
        if metrics is not None
        else None
    )
    exhausted = (
        ExhaustedCapture(
            context.app,
            settings,
            metrics.registry if metrics is not None else None,
            metrics.labels if metrics is not None else None,
        )
        if context.exhausted
        else None
    )
    ordered = (
        installed,
        safety,
        RequestClasses(context.app, settings.trace_task_args),
        DroppedRequests(),
        metrics,
        readiness,
        exhausted,
        OtlpMetrics(readings, context.service),
        None if sdk_disabled() else Tracing(context),
        endpoints,
    )
    return [concern for concern in ordered if concern is not None]
