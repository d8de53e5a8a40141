"""Observability for the jobpilot worker.

    import telemetry
    telemetry.install(app)      # any process that publishes tasks; idempotent
    telemetry.uninstall(app)

``install`` stamps ``x-jobpilot-published-at`` on every published message and
counts ``celery_task_published_total`` in the given registry (the default
prometheus-client registry otherwise). It starts no server, thread or probe,
so a web app may call it; a pre-forking web server calls it after fork.

In a worker, ``import worker`` connects ``telemetry.worker``'s signal receivers
instead; nothing starts until the worker does, and nothing at all with
``TELEMETRY_ENABLED=false``.
"""

from __future__ import annotations

from celery import Celery
from prometheus_client import REGISTRY, CollectorRegistry, Counter

from telemetry.publish import PublishRecorder

_installed: dict[int, PublishRecorder] = {}


def install(app: Celery, registry: CollectorRegistry | None = None) -> None:
    """Producer-side telemetry for ``app``; a second call is a no-op."""
    if id(app) in _installed or not app.conf.jobpilot_settings.telemetry_enabled:
        return
    published = Counter(
        "celery_task_published",
        "Task messages published by this process.",
        ("queue", "task"),
        registry=registry if registry is not None else REGISTRY,
    )
    recorder = PublishRecorder(
        lambda queue, task: published.labels(queue, task).inc(),
        app.conf.jobpilot_settings.metrics_max_task_names,
    )
    recorder.connect()
    _installed[id(app)] = recorder


def uninstall(app: Celery) -> None:
    """Undo ``install``; a second call is a no-op."""
    if _installed.pop(id(app), None) is not None:
        PublishRecorder.disconnect()
