"""What a worker's main process holds and starts, from ``worker_init`` to ``worker_shutdown``.

``WorkerTelemetry.start`` (``worker_init``, before the pool forks): bind the
HTTP port (a taken port is one line and a non-zero exit), register the delivery
recorder, start every series at zero, take over the publish hooks, and start the
span export process. ``ready`` (``worker_ready``): identity, pool and
consumed-queue gauges; start the queue poller and the readiness probe; start
serving; a timer on the consumer's event loop marks it alive for ``/livez``.
``shutting_down`` (SIGTERM): /readyz turns 503 at once. ``stop``
(``worker_shutdown``): stop polling, probing and serving. A pool process
continues in ``telemetry.wiring.pool_process``.

With ``METRICS_ENABLED=false`` only tracing is set up: no port, no metrics, no
probes. On a broker that is not Redis there is no depth, age or broker check.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterable
from typing import Any

import celery
from celery import Celery
from celery.concurrency import get_implementation
from celery.concurrency.prefork import TaskPool as PreforkPool
from celery.utils.nodenames import worker_direct
from celery.worker import state as worker_state
from kombu.entity import Queue
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry, disable_created_metrics

from telemetry.broker import (
    REDIS_DRIVERS,
    app_queues,
    driver_type,
    visibility_timeout,
)
from telemetry.delivery.observers import OBSERVERS, DeliveryObserver
from telemetry.endpoints import Liveness, RenderCache, TelemetryServer
from telemetry.extensions import Extensions
from telemetry.failed.locate import polled_stores
from telemetry.messages import HEALTH_TASK, PROBE_HEADER
from telemetry.metrics.at_least_once import EtaTrap, StartedWindow
from telemetry.metrics.catalogue import WorkerMetrics
from telemetry.metrics.consumer import ConsumerView, pool_processes
from telemetry.metrics.forwarding import PublishForwarder
from telemetry.metrics.held import HeldRequests, scheduled_requests
from telemetry.metrics.otlp import OtlpMetrics
from telemetry.metrics.otlp.readings import WorkerReadings
from telemetry.metrics.publish import PublishRecorder
from telemetry.metrics.queues import PollingThread, QueuePoller
from telemetry.metrics.recorder import DeliveryRecorder
from telemetry.readiness.checks import BrokerCheck, Check, DatabaseCheck, HealthTaskCheck
from telemetry.readiness.probe import ReadinessProbe, required_checks
from telemetry.settings import ConfigError, TelemetrySettings
from telemetry.tracing.export.supervisor import ExportProcess, relayed_provider
from telemetry.tracing.handlers import (
    INSTRUMENTATION,
    MainProcessSpans,
    ProducerSpans,
    messaging_system,
)
from telemetry.tracing.providers import exporter_from_environment, sdk_disabled
from telemetry.tracing.service import Service
from telemetry.tracing.wiring import RunSpanWiring
from telemetry.wiring.producer import PUBLISH_HOOKS

#: How often the consumer's event loop marks itself alive for /livez.
LIVENESS_TICK_SECONDS = 1.0
#: Attempts at reading Celery's active requests from another thread.
BUSY_READ_ATTEMPTS = 5

logger = logging.getLogger("telemetry.wiring")


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


class WorkerTelemetry:
    """Everything the main process holds for one worker of ``app``."""

    def __init__(
        self,
        app: Celery,
        settings: TelemetrySettings,
        extensions: Extensions,
        health_task: bool,
        service: Service,
        exhausted: bool = False,
    ) -> None:
        """``exhausted``: the app keeps an exhausted set, whose size the poller reads."""
        self.app = app
        self.service = service
        self.exhausted = exhausted
        self.settings = settings
        self.extensions = extensions
        self.health_task = health_task
        self.main_pid = os.getpid()
        self.registry = CollectorRegistry()
        self.metrics = WorkerMetrics(self.registry)
        driver = driver_type(app)
        self.redis = driver in REDIS_DRIVERS
        self.system = messaging_system(driver)
        # Only Redis restores what stays unacked past a visibility timeout.
        self.visibility_timeout = visibility_timeout(app) if self.redis else None
        self.recorder = DeliveryRecorder(
            self.metrics,
            app_queues(app),
            lambda n: n in app.tasks,
            StartedWindow(settings.duplicate_window, settings.duplicate_window_max),
            None
            if self.visibility_timeout is None
            else EtaTrap(self.visibility_timeout, app.conf.task_time_limit),
        )
        self.otlp = OtlpMetrics(
            WorkerReadings(
                self.metrics, self.recorder.failed_runtimes, self.system, self.polls_queues
            ),
            settings.metrics_enabled,
            service,
        )
        self.liveness = Liveness(settings.liveness_timeout)
        self.forwarder = PublishForwarder(self._count_publish)
        self.server: TelemetryServer | None = None
        self.threads: list[PollingThread] = []
        self.export: ExportProcess | None = None
        self.producer_spans: ProducerSpans | None = None
        self.probe: ReadinessProbe | None = None
        self.view: ConsumerView | None = None
        self.observers: list[DeliveryObserver] = []
        self.hostname = ""
        self.forks = True

    @property
    def polls_queues(self) -> bool:
        """Depth and age are read here unless QUEUE_POLL_ENABLED=false (the broker exporter reads them)."""
        return self.redis and self.settings.queue_poll_enabled

    def _count_publish(self, queue: str, task: str) -> None:
        self.metrics.task_published.labels(self.recorder.queue_label(queue), task).inc()

    def labels(self, queue: str | None, task: str | None) -> tuple[str, str]:
        """The (queue, task) labels of a routing key and task name, as the task series have them."""
        return self.recorder.queue_label(queue), self.recorder.task_label(task)

    def _observe(self, observer: DeliveryObserver) -> None:
        OBSERVERS.add(observer)
        self.observers.append(observer)

    # worker_init -------------------------------------------------------------
    def start(self, worker: Any) -> None:
        self.hostname = str(getattr(worker, "hostname", "") or "")
        self.forks = _forks_pool_processes(worker)
        disable_created_metrics()  # type: ignore[no-untyped-call]
        recorder = None
        if self.settings.metrics_enabled:
            self._start_metrics(worker)
            recorder = PublishRecorder(
                self._count_publish,
                self.settings.metrics_max_task_names,
                keep_argsrepr=self.settings.trace_task_args,
            )
        self.otlp.start(worker)
        if not sdk_disabled():
            self._start_tracing()
        PUBLISH_HOOKS.take_over(recorder, self.producer_spans)

    def _start_metrics(self, worker: Any) -> None:
        """Bind the HTTP port, start every series at zero and record from here on."""
        settings = self.settings
        try:
            self.server = TelemetryServer(
                settings.metrics_host,
                settings.metrics_port,
                RenderCache(self.registry, settings.metrics_render_interval),
                self.liveness,
            )
        except OSError as exc:
            raise SystemExit(
                f"metrics: cannot listen on {settings.metrics_host}:{settings.metrics_port}: {exc.strerror or exc}"
            ) from None
        router = self.app.amqp.router
        self.recorder.prime(
            self.app.tasks,
            lambda name: router.route({}, name)["queue"].name,
            depth=self.polls_queues,
        )
        self.metrics.health_check_last_success.set(time.time())
        if self.visibility_timeout is not None:
            self.metrics.broker.visibility_timeout.set(self.visibility_timeout)
        self.metrics.tasks.held = HeldRequests(
            scheduled_requests(worker), worker_state.active_requests
        )
        self._observe(self.recorder)
        self.forwarder.start_reading()

    def _start_tracing(self) -> None:
        """Prefork: a provider the main process keeps to itself, never installed
        globally, since the global one is inherited through fork and can be set only
        once; pool processes install theirs. Solo and threads pools run tasks here,
        so the main process installs the global provider and the task spans."""
        try:
            exporter = exporter_from_environment()
        except ConfigError as exc:
            raise SystemExit(str(exc)) from None  # one line and a non-zero exit, as for settings
        if exporter is not None:
            exporter.shutdown()
            self.export = ExportProcess(self.settings.log_level, self.settings.log_format)
            self.export.start()
        provider, relay = relayed_provider(self.export, self.hostname, self.service)
        self._observe(MainProcessSpans(provider.get_tracer(INSTRUMENTATION), self.system))
        self.producer_spans = ProducerSpans(provider.get_tracer(INSTRUMENTATION), self.system)
        if not self.forks:
            trace.set_tracer_provider(provider)
            self.run_spans(provider, relay).connect()

    def run_spans(self, provider: TracerProvider, relay: Any) -> RunSpanWiring:
        return RunSpanWiring(
            provider, relay, self.system, self.settings.trace_task_args, self.extensions
        )

    # worker_ready ------------------------------------------------------------
    def ready(self, consumer: Any) -> None:
        self.otlp.ready(consumer)
        if self.server is None:
            return
        metrics = self.metrics
        hostname = self.hostname = str(getattr(consumer, "hostname", "") or "")
        pool = type(getattr(consumer, "pool", None)).__module__.rsplit(".", 1)[-1]
        metrics.worker_info.labels(celery.__version__, pool, hostname).set(1)
        metrics.worker_pool_busy.set_function(lambda: busy_requests(worker_state.active_requests))
        self.view = ConsumerView(
            consumer,
            metrics,
            self.recorder.queues,
            self._start_queue_poller() if self.polls_queues else None,
        )
        self.view.follow()
        self.server.cache.before_render = self.view.follow
        hub = getattr(getattr(consumer, "controller", None), "hub", None)
        if hub is not None:
            # A timer, not an on_tick callback: the loop iterates several times per
            # task, and a stuck loop runs no timers either.
            hub.call_repeatedly(LIVENESS_TICK_SECONDS, self.liveness.tick)
        self._start_readiness(hostname, lambda: pool_processes(consumer))
        self.server.start()
        host, port = self.server.address
        logger.info("telemetry: serving /metrics and /livez on http://%s:%d", host, port)
        # Logged here, not at worker_init: Celery sets up the worker's logging in between.
        if not self.redis:
            logger.info("telemetry: the broker is not Redis: no queue depth, age or broker check")
        if not self.health_task:
            logger.info("telemetry: worker_direct is off, so readiness has no health_task check")

    def _start_queue_poller(self) -> Callable[[Iterable[str]], None]:
        """Poll depth and age in a thread; returns how to change the polled queues.
        Each poll first follows the consumer, so queues added at run time are polled."""
        poller = QueuePoller.for_app(
            self.app,
            sorted(self.recorder.queues),
            polled_stores(self.app, self.settings, self.extensions.deadletter_key, self.exhausted),
            self.metrics.broker,
        )

        def poll() -> bool:
            if self.view is not None:
                self.view.follow()
            return poller.poll()

        thread = PollingThread(poll, self.settings.queue_poll_interval, "queue-poller")
        thread.start()
        self.threads.append(thread)
        return poller.watch

    def _start_readiness(self, hostname: str, concurrency: Callable[[], int]) -> None:
        checks: list[Check] = []
        if self.redis:
            checks.append(BrokerCheck.for_app(self.app, self.metrics.broker.ping.observe))
        if self.health_task:
            health = HealthTaskCheck(
                self._health_publisher(worker_direct(hostname)),
                lambda: busy_requests(worker_state.active_requests) >= max(1, concurrency()),
                self.metrics,
            )
            self._observe(health)
            checks.append(health)
        if self.extensions.select_one is not None:
            checks.append(DatabaseCheck(self.extensions.select_one))
        self.probe = ReadinessProbe(
            checks,
            required_checks(self.settings.readiness_required, [check.name for check in checks]),
            self.settings.readiness_interval,
            self.metrics.broker.readiness_check_up,
            self.metrics.worker_ready,
        )
        if self.server is not None:
            self.server.readiness = self.probe
        self.probe.start()

    def _health_publisher(self, direct_queue: Queue) -> Callable[[str, float], None]:
        def publish(task_id: str, timeout: float) -> None:
            self.app.send_task(
                HEALTH_TASK,
                task_id=task_id,
                queue=direct_queue,
                expires=timeout,
                headers={PROBE_HEADER: "1"},
            )

        return publish

    # worker_shutting_down, worker_shutdown -------------------------------------
    def shutting_down(self) -> None:
        if self.probe is not None:
            self.probe.shutting_down()

    def stop(self) -> None:
        for thread in self.threads:
            thread.stop()
        if self.probe is not None:
            self.probe.stop()
        if self.server is not None:
            self.server.stop()
        if self.export is not None:
            self.export.stop()
        self.otlp.stop()
        self.forget_observers()

    def forget_observers(self) -> None:
        for observer in self.observers:
            OBSERVERS.remove(observer)
        self.observers.clear()


def _forks_pool_processes(worker: Any) -> bool:
    pool_cls = getattr(worker, "pool_cls", None)
    if pool_cls is None:
        return True
    resolved = get_implementation(pool_cls)
    return isinstance(resolved, type) and issubclass(resolved, PreforkPool)
