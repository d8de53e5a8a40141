"""The broker exporter: an app's broker state, and the operator API, served with no worker running.

    exporter = BrokerExporter(app, settings, queues, deadletter_key, version, exhausted=True)
    exporter.start()     # bind, poll, probe, serve
    exporter.stop()

It polls with the worker's own :class:`~telemetry.metrics.queues.QueuePoller`
(one pipelined round trip for every declared queue, its priority sub-lists, the
unacked records and the dead-letter list) into the same series, so the rules
aggregate both with ``max by (queue)``. It exports ``celery_broker_exporter_info``,
the broker check (``celery_readiness_check_up{check="broker"}``,
``celery_broker_ping_seconds``) and ``celery_broker_exporter_ready``, and no
``celery_worker_*`` or ``celery_task_*`` series.

``/livez`` is 200 while the poll loop keeps turning (each poll, successful or
not, marks it alive); ``/readyz`` is 200 while the broker answers its PING.
A scrape only reads the gauges. With ``OTEL_METRICS_EXPORTER=otlp`` it also sends
``celery.queue.depth`` and ``celery.queue.oldest_message.age`` over OTLP
(``telemetry.metrics.otlp``).

On a bind of its own, ``OPS_HOST:OPS_PORT``, it serves the operator API for the
app's failed work (``telemetry.ops``), so dead letters and exhausted tasks can
be read and requeued with no worker running. Its requeues and actions are
counted here (``celery_failed_requeued_total``, ``celery_ops_actions_total``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from celery import Celery
from prometheus_client import CollectorRegistry, Gauge, disable_created_metrics

from telemetry.broker import driver_type, visibility_timeout
from telemetry.endpoints import Liveness, RenderCache, TelemetryServer
from telemetry.failed.locate import polled_stores
from telemetry.metrics.catalogue import BrokerMetrics
from telemetry.metrics.failed_catalogue import OpsMetrics
from telemetry.metrics.otlp import OtlpMetrics
from telemetry.metrics.otlp.readings import BrokerReadings
from telemetry.metrics.queues import PollingThread, QueuePoller
from telemetry.ops.server import OpsServer
from telemetry.readiness.checks import BrokerCheck
from telemetry.readiness.probe import ReadinessProbe
from telemetry.settings import TelemetrySettings
from telemetry.tracing.attributes import messaging_system
from telemetry.tracing.service import Service

logger = logging.getLogger("telemetry.broker_exporter")


class ExporterMetrics:
    """The exporter's registry: the broker series and its own identity and readiness."""

    def __init__(self, registry: CollectorRegistry, version: str) -> None:
        self.broker = BrokerMetrics(registry)
        self.ops = OpsMetrics(registry)
        self.info = Gauge(
            "celery_broker_exporter_info",
            "Identity of this broker exporter; always 1.",
            ("version",),
            registry=registry,
        )
        self.info.labels(version).set(1)
        self.ready = Gauge(
            "celery_broker_exporter_ready",
            "1 when the broker check passes.",
            registry=registry,
        )


class BrokerExporter:
    """Everything one exporter process holds for ``app``."""

    def __init__(
        self,
        app: Celery,
        settings: TelemetrySettings,
        queues: Iterable[str],
        deadletter_key: str | None,
        version: str,
        service: Service | None = None,
        exhausted: bool = False,
    ) -> None:
        """``service``: the OTLP metrics' service defaults (``telemetry.tracing.service``).
        ``exhausted``: the app keeps an exhausted set (``install(app, exhausted=True)``).
        Raises OSError when either address cannot be bound."""
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.app = app
        self.settings = settings
        self.queues = sorted(set(queues))
        self.registry = CollectorRegistry()
        self.metrics = ExporterMetrics(self.registry, version)
        broker = self.metrics.broker
        self.otlp = OtlpMetrics(
            BrokerReadings(broker, messaging_system(driver_type(app))), service=service
        )
        self.otlp.configure()  # a bad OTEL_* variable: ConfigError, before anything binds
        broker.visibility_timeout.set(visibility_timeout(app))
        for queue in self.queues:
            broker.queue_depth.labels(queue).set(0)
            broker.queue_oldest_age.labels(queue).set(0)
        self.liveness = Liveness(settings.liveness_timeout)
        self.probe = ReadinessProbe(
            [BrokerCheck.for_app(app, broker.ping.observe)],
            frozenset({BrokerCheck.name}),
            settings.readiness_interval,
            broker.readiness_check_up,
            self.metrics.ready,
        )
        # Binds now: a taken port fails before anything starts.
        self.server = TelemetryServer(
            settings.metrics_host,
            settings.broker_exporter_port,
            RenderCache(self.registry, settings.metrics_render_interval),
            self.liveness,
            self.probe,
        )
        self.ops = OpsServer.for_app(app, settings, self.queues, self.metrics.ops)
        self.poller = QueuePoller.for_app(
            app, self.queues, polled_stores(app, settings, deadletter_key, exhausted), broker
        )
        self.thread = PollingThread(self._poll, settings.queue_poll_interval, "broker-poller")

    def _poll(self) -> None:
        self.poller.poll()
        self.liveness.tick()

    @property
    def address(self) -> tuple[str, int]:
        return self.server.address

    def start(self) -> None:
        self.thread.start()
        self.probe.start()
        self.server.start()
        self.otlp.ready(None)
        self.ops.start()
        host, port = self.address
        logger.info(
            "broker exporter: %d queue(s), serving /metrics, /livez and /readyz on http://%s:%d",
            len(self.queues),
            host,
            port,
        )
        ops_host, ops_port = self.ops.address
        logger.info(
            "broker exporter: the operator API on http://%s:%d/api/v1/failed (writes %s, reads %s)",
            ops_host,
            ops_port,
            self.ops.policy.writes,
            self.ops.policy.reads,
        )

    def stop(self) -> None:
        self.thread.stop()
        self.probe.stop()
        self.server.stop()
        self.otlp.stop()
        self.ops.stop()
