"""Worker-side telemetry, wired through Celery signals by ``attach()``.

``attach`` runs from the worker's ``worker_init`` receiver (main process,
before the pool forks): build the registry and
metrics, bind the HTTP port (a taken port is one line and a non-zero exit),
register the delivery recorder and start every series at zero.
``worker_ready``: identity, pool and consumed-queue gauges; start the queue
poller and the readiness probe; start serving; a timer on the consumer's event loop
marks it alive for ``/livez``.
``worker_process_init`` (each pool process): close the inherited socket.
``worker_shutting_down`` (SIGTERM): /readyz turns 503 at once.
``worker_shutdown``: stop polling, probing and serving.

With ``TELEMETRY_ENABLED=false`` every receiver returns at once. With
``METRICS_ENABLED=false`` only tracing is set up: no port, no metrics, no probes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterable
from typing import Any

import celery
from celery.concurrency import get_implementation
from celery.concurrency.prefork import TaskPool as PreforkPool
from celery.signals import (
    worker_process_init,
    worker_ready,
    worker_shutdown,
    worker_shutting_down,
)
from celery.utils.nodenames import worker_direct
from celery.worker import state as worker_state
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry, disable_created_metrics

from telemetry.catalogue import WorkerMetrics
from telemetry.forwarding import PublishForwarder
from telemetry.lifecycle import HEALTH_TASK, DeliveryRecorder
from telemetry.publish import PublishRecorder
from telemetry.queues import PollingThread, QueuePoller
from telemetry.readiness import (
    PROBE_HEADER,
    BrokerCheck,
    Check,
    DatabaseCheck,
    HealthTaskCheck,
    ReadinessProbe,
    required_checks,
)
from telemetry.server import Liveness, RenderCache, TelemetryServer
from telemetry.span_relay import ExportProcess, relayed_provider
from telemetry.spans import INSTRUMENTATION, MainProcessSpans
from telemetry.trace_wiring import PoolProcessWiring, ProducerWiring
from telemetry.tracing import exporter_from_environment, sdk_disabled
from worker import lifecycle, routing
from worker.celery_app import app, settings_of
from worker.deadletters.records import deadletter_key
from worker.redis_client import broker_redis
from worker.settings import SettingsError

DIRECT_SUFFIX = ".dq2"
#: How often the consumer's event loop marks itself alive for /livez.
LIVENESS_TICK_SECONDS = 1.0
#: The depth poll must never hang a thread on a dead broker.
QUEUE_POLL_SOCKET_TIMEOUT = 1.0

logger = logging.getLogger("telemetry.worker")


class WorkerTelemetry:
    """Everything the main process holds for one worker."""

    def __init__(self, registry: CollectorRegistry, queues: frozenset[str]) -> None:
        self.registry = registry
        self.main_pid = os.getpid()
        self.metrics = WorkerMetrics(registry)
        self.recorder = DeliveryRecorder(self.metrics, queues, lambda name: name in app.tasks)
        self.publisher = PublishRecorder(
            self._count_publish,
            settings_of(app).metrics_max_task_names,
            keep_argsrepr=settings_of(app).trace_task_args,
        )
        self.server: TelemetryServer | None = None
        self.liveness = Liveness(settings_of(app).liveness_timeout)
        self.threads: list[PollingThread] = []
        self.forwarder = PublishForwarder(self._count_publish)
        self.export: ExportProcess | None = None
        self.main_provider: TracerProvider | None = None
        self.main_spans: MainProcessSpans | None = None
        self.producer_spans: ProducerWiring | None = None
        self.probe: ReadinessProbe | None = None
        self.hostname = ""
        self.health_check: HealthTaskCheck | None = None

    def _count_publish(self, queue: str, task: str) -> None:
        self.metrics.task_published.labels(self.recorder.queue_label(queue), task).inc()


current: WorkerTelemetry | None = None

#: Attempts at reading Celery's active requests from another thread.
BUSY_READ_ATTEMPTS = 5


def busy_requests(active: Iterable[Any]) -> int:
    """Requests executing now, health checks aside, read from a scrape or probe thread.

    Celery's ``active_requests`` is a WeakSet the main process's thread changes
    on every start and finish. Iterating it while that thread adds or discards
    raises ``RuntimeError`` (set changed size); the read is then retried.
    """
    for _ in range(BUSY_READ_ATTEMPTS - 1):
        with contextlib.suppress(RuntimeError):
            return sum(1 for request in active if request.type != HEALTH_TASK)
    return sum(1 for request in active if request.type != HEALTH_TASK)


def _enabled() -> bool:
    return bool(settings_of(app).telemetry_enabled)


def attach(sender: Any = None) -> None:
    """Called by the worker's own ``worker_init`` receiver: set up, then listen."""
    connect()
    _on_worker_init(sender)


def _on_worker_init(sender: Any = None, **_: Any) -> None:
    global current
    if not _enabled() or current is not None:
        return
    disable_created_metrics()  # type: ignore[no-untyped-call]
    telemetry = WorkerTelemetry(CollectorRegistry(), frozenset(routing.QUEUE_NAMES))
    telemetry.hostname = str(getattr(sender, "hostname", "") or "")
    if settings_of(app).metrics_enabled:
        _start_metrics(telemetry)
    if not sdk_disabled():
        _start_main_process_tracing(telemetry, sender)
    current = telemetry


def _start_metrics(telemetry: WorkerTelemetry) -> None:
    """Bind the HTTP port, start every series at zero and record from here on."""
    settings = settings_of(app)
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
    telemetry.forwarder.start_reading()


def _start_main_process_tracing(telemetry: WorkerTelemetry, sender: Any) -> None:
    """Prefork: a provider the main process keeps to itself, never installed
    globally, since the global one is inherited through fork and can be set only
    once; pool processes install theirs. Solo and threads pools run tasks here,
    so the main process installs the global provider and the task spans."""
    settings = settings_of(app)
    try:
        exporter = exporter_from_environment()
    except SettingsError as exc:
        raise SystemExit(str(exc)) from None  # one line and a non-zero exit, as for settings
    if exporter is not None:
        exporter.shutdown()
        telemetry.export = ExportProcess(settings.log_level, settings.log_format)
        telemetry.export.start()
    provider, relay = relayed_provider(telemetry.export, telemetry.hostname)
    telemetry.main_provider = provider
    tracer = provider.get_tracer(INSTRUMENTATION)
    telemetry.main_spans = MainProcessSpans(tracer)
    lifecycle.add_observer(telemetry.main_spans)
    if _forks_pool_processes(sender):
        telemetry.producer_spans = ProducerWiring(tracer)
        telemetry.producer_spans.connect()
    else:
        trace.set_tracer_provider(provider)
        PoolProcessWiring(provider, relay, settings.trace_task_args).connect()


def _forks_pool_processes(sender: Any) -> bool:
    pool_cls = getattr(sender, "pool_cls", None)
    if pool_cls is None:
        return True
    resolved = get_implementation(pool_cls)
    return isinstance(resolved, type) and issubclass(resolved, PreforkPool)


def _on_worker_ready(sender: Any = None, **_: Any) -> None:
    telemetry = current
    if telemetry is None or telemetry.server is None:
        return
    metrics = telemetry.metrics
    consumer = sender
    hostname = telemetry.hostname = str(getattr(consumer, "hostname", "") or "")
    pool = getattr(getattr(consumer, "pool", None), "__class__", type(None)).__module__.rsplit(
        ".", 1
    )[-1]
    metrics.worker_info.labels(celery.__version__, pool, hostname).set(1)
    concurrency = getattr(getattr(consumer, "controller", None), "concurrency", None)
    if concurrency is not None:
        metrics.worker_pool_processes.set(concurrency)
    metrics.worker_pool_busy.set_function(lambda: busy_requests(worker_state.active_requests))
    task_consumer = getattr(consumer, "task_consumer", None)
    for queue in getattr(task_consumer, "queues", ()) or ():
        if queue.name in telemetry.recorder.queues:
            metrics.worker_consumed_queue.labels(queue.name).set(1)
    hub = getattr(getattr(consumer, "controller", None), "hub", None)
    if hub is not None:
        # A timer, not an on_tick callback: the loop iterates several times per
        # task, and a stuck loop runs no timers either.
        hub.call_repeatedly(LIVENESS_TICK_SECONDS, telemetry.liveness.tick)
    consumed = {
        q.name
        for q in getattr(task_consumer, "queues", ()) or ()
        if not q.name.endswith(DIRECT_SUFFIX)
    }
    _start_queue_poller(telemetry, telemetry.recorder.queues | consumed)
    _start_readiness(telemetry, hostname, concurrency or 1)
    telemetry.server.start()
    host, port = telemetry.server.address
    logger.info("telemetry: serving /metrics and /livez on http://%s:%d", host, port)


def _start_queue_poller(telemetry: WorkerTelemetry, queues: Iterable[str]) -> None:
    settings = settings_of(app)
    options = app.conf.broker_transport_options or {}
    poller = QueuePoller(
        broker_redis(app, socket_timeout=QUEUE_POLL_SOCKET_TIMEOUT),
        sorted(queues),
        options,
        deadletter_key(options.get("global_keyprefix", "")),
        telemetry.metrics,
    )
    thread = PollingThread(poller.poll, settings.queue_poll_interval, "queue-poller")
    thread.start()
    telemetry.threads.append(thread)


def _start_readiness(telemetry: WorkerTelemetry, hostname: str, concurrency: int) -> None:
    settings = settings_of(app)
    metrics = telemetry.metrics
    direct_queue = worker_direct(hostname)

    def publish_health_check(task_id: str, timeout: float) -> None:
        app.send_task(
            HEALTH_TASK,
            task_id=task_id,
            queue=direct_queue,
            expires=timeout,
            headers={PROBE_HEADER: "1"},
        )

    def pool_saturated() -> bool:
        return busy_requests(worker_state.active_requests) >= concurrency

    health = HealthTaskCheck(publish_health_check, pool_saturated, metrics)
    checks: list[Check] = [
        BrokerCheck(
            lambda timeout: broker_redis(app, socket_timeout=timeout), metrics.broker_ping.observe
        ),
        health,
    ]
    if settings.database_configured:
        checks.append(DatabaseCheck(settings.effective_database_url))
    names = [check.name for check in checks]
    probe = ReadinessProbe(
        checks,
        required_checks(settings.readiness_required, settings.database_configured, names),
        settings.readiness_interval,
        metrics,
    )
    lifecycle.add_observer(health)
    telemetry.health_check, telemetry.probe = health, probe
    if telemetry.server is not None:
        telemetry.server.readiness = probe
    probe.start()


def _on_worker_shutting_down(**_: Any) -> None:
    if current is not None and current.probe is not None:
        current.probe.shutting_down()


def _on_worker_process_init(**_: Any) -> None:
    """In each pool process: serve nothing, observe nothing, forward publish counts,
    and trace the tasks this process runs."""
    global current
    if current is None or os.getpid() == current.main_pid:
        return  # the solo pool sends this signal from the main process
    settings = settings_of(app)
    if current.server is not None:
        current.server.close_inherited_socket()
        current.forwarder.become_child()
        current.publisher.disconnect()
        PublishRecorder(
            current.forwarder.forward,
            settings.metrics_max_task_names,
            keep_argsrepr=settings.trace_task_args,
        ).connect()
        lifecycle.remove_observer(current.recorder)
    if current.health_check is not None:
        lifecycle.remove_observer(current.health_check)
    if current.main_spans is not None:
        lifecycle.remove_observer(current.main_spans)
    if current.producer_spans is not None:
        current.producer_spans.disconnect()
        # The global provider lives in pool processes only, set once after fork.
        if current.export is not None:
            current.export.in_pool_process()
        provider, relay = relayed_provider(current.export, current.hostname)
        trace.set_tracer_provider(provider)
        PoolProcessWiring(provider, relay, settings.trace_task_args).connect()
    current = None


def _on_worker_shutdown(**_: Any) -> None:
    global current
    if current is not None:
        for thread in current.threads:
            thread.stop()
        if current.probe is not None:
            current.probe.stop()
        if current.server is not None:
            current.server.stop()
        if current.export is not None:
            current.export.stop()
        lifecycle.remove_observer(current.recorder)
        if current.health_check is not None:
            lifecycle.remove_observer(current.health_check)
        current.publisher.disconnect()
        current = None


SIGNAL_HANDLERS = (
    (worker_ready, _on_worker_ready),
    (worker_process_init, _on_worker_process_init),
    (worker_shutting_down, _on_worker_shutting_down),
    (worker_shutdown, _on_worker_shutdown),
)


def receiver_uid(handler: Any) -> str:
    """The ``dispatch_uid`` a receiver of ``SIGNAL_HANDLERS`` is connected under."""
    return f"jobpilot.telemetry.{handler.__name__}"


def connect() -> None:
    """Connect the receivers; idempotent through ``dispatch_uid``."""
    for signal, handler in SIGNAL_HANDLERS:
        signal.connect(handler, weak=False, dispatch_uid=receiver_uid(handler))


def disconnect() -> None:
    for signal, handler in SIGNAL_HANDLERS:
        signal.disconnect(handler, dispatch_uid=receiver_uid(handler))
