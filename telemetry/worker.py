"""Worker-side telemetry, wired through Celery signals by ``connect()``.

``worker_init`` (main process, before the pool forks): build the registry and
metrics, bind the HTTP port (a taken port is one line and a non-zero exit),
register the delivery recorder and start every series at zero.
``worker_ready``: identity, pool and consumed-queue gauges; start serving;
count event-loop ticks for ``/livez``.
``worker_process_init`` (each pool process): close the inherited socket.
``worker_shutdown``: stop serving.

With ``TELEMETRY_ENABLED=false`` every receiver returns at once.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import celery
from celery.signals import (
    task_received,
    worker_init,
    worker_process_init,
    worker_ready,
    worker_shutdown,
)
from celery.worker import state as worker_state
from prometheus_client import CollectorRegistry, disable_created_metrics

from telemetry.catalogue import WorkerMetrics
from telemetry.lifecycle import HEALTH_TASK, DeliveryRecorder
from telemetry.publish import PublishRecorder
from telemetry.server import Liveness, RenderCache, TelemetryServer
from worker import lifecycle, routing
from worker.celery_app import app, settings_of

logger = logging.getLogger("telemetry.worker")


class WorkerTelemetry:
    """Everything the main process holds for one worker."""

    def __init__(self, registry: CollectorRegistry, queues: frozenset[str]) -> None:
        self.registry = registry
        self.metrics = WorkerMetrics(registry)
        self.recorder = DeliveryRecorder(self.metrics, queues, lambda name: name in app.tasks)
        self.publisher = PublishRecorder(
            self._count_publish, settings_of(app).metrics_max_task_names
        )
        self.server: TelemetryServer | None = None
        self.liveness = Liveness(settings_of(app).liveness_timeout)

    def _count_publish(self, queue: str, task: str) -> None:
        self.metrics.task_published.labels(self.recorder.queue_label(queue), task).inc()


current: WorkerTelemetry | None = None


def _enabled() -> bool:
    return bool(settings_of(app).telemetry_enabled)


def _on_worker_init(sender: Any = None, **_: Any) -> None:
    global current
    if not _enabled() or current is not None:
        return
    settings = settings_of(app)
    disable_created_metrics()  # type: ignore[no-untyped-call]
    telemetry = WorkerTelemetry(CollectorRegistry(), frozenset(routing.QUEUE_NAMES))
    try:
        telemetry.server = TelemetryServer(
            settings.metrics_host,
            settings.metrics_port,
            RenderCache(telemetry.registry, settings.metrics_render_interval),
            telemetry.liveness,
        )
    except OSError as exc:
        raise SystemExit(
            f"metrics: cannot listen on {settings.metrics_host}:{settings.metrics_port}: {exc.strerror or exc}"
        ) from None
    app.loader.import_default_modules()
    telemetry.recorder.prime(app.tasks, routing.queue_for)
    telemetry.metrics.health_check_last_success.set(time.time())
    lifecycle.add_observer(telemetry.recorder)
    telemetry.publisher.connect()
    current = telemetry


def _on_worker_ready(sender: Any = None, **_: Any) -> None:
    telemetry = current
    if telemetry is None or telemetry.server is None:
        return
    metrics = telemetry.metrics
    consumer = sender
    hostname = str(getattr(consumer, "hostname", "") or "")
    pool = getattr(getattr(consumer, "pool", None), "__class__", type(None)).__module__.rsplit(
        ".", 1
    )[-1]
    metrics.worker_info.labels(celery.__version__, pool, hostname).set(1)
    concurrency = getattr(getattr(consumer, "controller", None), "concurrency", None)
    if concurrency is not None:
        metrics.worker_pool_processes.set(concurrency)
    metrics.worker_pool_busy.set_function(
        lambda: sum(1 for r in worker_state.active_requests if r.type != HEALTH_TASK)
    )
    task_consumer = getattr(consumer, "task_consumer", None)
    for queue in getattr(task_consumer, "queues", ()) or ():
        if queue.name in telemetry.recorder.queues:
            metrics.worker_consumed_queue.labels(queue.name).set(1)
    hub = getattr(getattr(consumer, "controller", None), "hub", None)
    if hub is not None:
        hub.on_tick.add(telemetry.liveness.tick)
    telemetry.server.start()
    host, port = telemetry.server.address
    logger.info("telemetry: serving /metrics and /livez on http://%s:%d", host, port)


def _on_worker_process_init(**_: Any) -> None:
    global current
    if current is not None and current.server is not None:
        current.server.close_inherited_socket()
        lifecycle.remove_observer(current.recorder)
        current = None


def _on_task_received(request: Any = None, **_: Any) -> None:
    if current is not None and request is not None:
        current.recorder.on_received(request)


def _on_worker_shutdown(**_: Any) -> None:
    global current
    if current is not None:
        if current.server is not None:
            current.server.stop()
        lifecycle.remove_observer(current.recorder)
        current.publisher.disconnect()
        current = None


SIGNAL_HANDLERS = (
    (worker_init, _on_worker_init),
    (worker_ready, _on_worker_ready),
    (worker_process_init, _on_worker_process_init),
    (task_received, _on_task_received),
    (worker_shutdown, _on_worker_shutdown),
)


def connect() -> None:
    """Connect the receivers; idempotent through ``dispatch_uid``."""
    for signal, handler in SIGNAL_HANDLERS:
        signal.connect(handler, weak=False, dispatch_uid=f"jobpilot.telemetry.{handler.__name__}")


def disconnect() -> None:
    for signal, handler in SIGNAL_HANDLERS:
        signal.disconnect(handler, dispatch_uid=f"jobpilot.telemetry.{handler.__name__}")
