"""Observability for the jobpilot worker.

    import telemetry
    telemetry.install(app)      # any process that publishes tasks; idempotent
    telemetry.uninstall(app)

``install`` stamps ``x-jobpilot-published-at`` on every published message,
replaces Celery's ``argsrepr``/``kwargsrepr`` headers with ``<N args>`` and
``<N kwargs>`` (unless ``TRACE_TASK_ARGS=true``), counts
``celery_task_published_total`` in the given registry (the default
prometheus-client registry otherwise) and records ``apply_async/{task}`` spans
on the process's SDK tracer provider, creating one from ``OTEL_*`` if it has
none. It starts no server or probe, so a web app may call it; a pre-forking web
server calls it after fork.

In a worker, ``import worker`` connects ``telemetry.worker``'s signal receivers
instead; nothing starts until the worker does, and nothing at all with
``TELEMETRY_ENABLED=false``.
"""

from __future__ import annotations

import atexit

from celery import Celery
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import REGISTRY, CollectorRegistry, Counter

from telemetry.publish import PublishRecorder
from telemetry.spans import INSTRUMENTATION
from telemetry.trace_wiring import ProducerWiring
from telemetry.tracing import CollectorState, build_provider, flush_within, sdk_disabled

_installed: dict[int, PublishRecorder] = {}
_producer_spans: ProducerWiring | None = None


def install(app: Celery, registry: CollectorRegistry | None = None) -> None:
    """Producer-side telemetry for ``app``; a second call is a no-op."""
    if id(app) in _installed or not app.conf.jobpilot_settings.telemetry_enabled:
        return
    if not sdk_disabled():
        _install_tracing()
    published = Counter(
        "celery_task_published",
        "Task messages published by this process.",
        ("queue", "task"),
        registry=registry if registry is not None else REGISTRY,
    )
    recorder = PublishRecorder(
        lambda queue, task: published.labels(queue, task).inc(),
        app.conf.jobpilot_settings.metrics_max_task_names,
        keep_argsrepr=app.conf.jobpilot_settings.trace_task_args,
    )
    recorder.connect()
    _installed[id(app)] = recorder


def _install_tracing() -> None:
    """Producer spans, on the process's SDK provider if it has one, else on a new global one."""
    global _producer_spans
    if _producer_spans is not None:
        return
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        state = CollectorState()
        provider = build_provider(state)
        trace.set_tracer_provider(provider)
        atexit.register(flush_within, provider, state)
    _producer_spans = ProducerWiring(provider.get_tracer(INSTRUMENTATION))
    _producer_spans.connect()


def uninstall(app: Celery) -> None:
    """Undo ``install``; a second call is a no-op."""
    global _producer_spans
    if _installed.pop(id(app), None) is not None:
        PublishRecorder.disconnect()
        if _producer_spans is not None:
            _producer_spans.disconnect()
            _producer_spans = None
